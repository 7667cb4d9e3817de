//! `patrol reconcile`: one pass for cron and CI. Checks every eligible validator not in a backoff
//! window, re-broadcasts only where coverage is missing (after the local preflight), confirms, saves
//! the state, and exits with the coverage verdict of the final state (0/1/2/3). `--dry-run` prints
//! the plan and sends no PAT (and saves nothing).

use std::sync::Arc;

use crate::cli::check::verdict_exit;
use crate::cli::common;
use crate::cli::post::github_client;
use crate::cli::{Exit, ReconcileArgs};
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::reconcile::pass::{self, PassConfig, Work};
use crate::reconcile::state::StateFile;
use crate::reconcile::transport::{NetLimits, NetTransport};
use crate::report::{self, ReconcileReport};

/// Run the command.
pub async fn run(settings: &Settings, args: &ReconcileArgs) -> anyhow::Result<Exit> {
    let miner = settings.single_miner()?;
    let loaded = miner.load_pat()?;
    let caller = common::caller(settings, miner)?;
    if !args.json {
        common::banner(settings, miner, caller.hotkey.ss58());
    }
    let el = common::eligible(settings, caller.hotkey.ss58(), args.json).await?;
    let file = StateFile::new(&settings.agent.state_dir, caller.hotkey.ss58(), settings.chain.netuid);
    // A dry run only reads; a real pass owns the state for its duration.
    let _lock = if args.dry_run { None } else { Some(file.try_lock()?) };
    let mut state = file.load(caller.hotkey.ss58(), settings.chain.netuid);
    let net = NetTransport::new(
        caller.dendrite.clone(),
        Arc::new(github_client(settings)?),
        NetLimits::from_settings(&settings.reconcile),
    );
    let save = |s: &crate::reconcile::state::MinerState| file.checkpoint(s);
    let checkpoint: Option<pass::Checkpoint<'_>> = if args.dry_run { None } else { Some(&save) };
    let cfg = PassConfig::from_settings(settings, args.dry_run);
    let out = pass::run(&net, &cfg, &el.selection, &mut state, &loaded.pat, &Work::one_shot(), checkpoint).await;
    if !args.dry_run {
        file.save(&state)?;
    }
    let rep =
        ReconcileReport::new(caller.hotkey.ss58(), &out, el.selection.skipped.clone(), el.source.clone(), args.dry_run);
    if let Some(path) = &args.metrics_file {
        let m = Metrics::new();
        m.observe_pass(caller.hotkey.ss58(), &out, &state);
        m.set_metagraph_age(settings.chain.netuid, el.source.metagraph_age_s.unwrap_or(0) as f64);
        // The io::Error stays in the chain: a refused target (a device, a FIFO) is exit 78.
        crate::fsutil::atomic_write(path, m.encode_prometheus().as_bytes(), 0o644)
            .map_err(|e| anyhow::Error::new(e).context(format!("cannot write metrics file {}", path.display())))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        print!("{}", report::reconcile_table(&rep));
        if let Some(pf) = rep.preflight.as_deref().filter(|p| !p.starts_with("valid")) {
            eprintln!("PAT preflight: {pf}");
        }
        for a in &rep.alerts {
            eprintln!("ALERT {}: {}", a.kind, a.message);
        }
        let g = &rep.github;
        if g.interval_s > settings.reconcile.interval.as_secs() {
            eprintln!(
                "GitHub budget: {} validators' checks at every {} would pass the {} calls/h budget; checking every {} instead",
                rep.check.total_validators,
                humantime::format_duration(settings.reconcile.interval),
                g.budget_per_hour.unwrap_or(0),
                humantime::format_duration(std::time::Duration::from_secs(g.interval_s))
            );
        }
    }
    let summary = rep.check.summary();
    eprintln!(
        "{}/{} covered ({:.1}% of stake); {} broadcast(s) sent{}",
        summary.covered,
        summary.total,
        summary.stake_weighted_coverage * 100.0,
        rep.broadcasts_sent,
        if args.dry_run {
            format!(", dry run: would broadcast to uids {:?}", rep.planned_broadcasts)
        } else {
            String::new()
        }
    );
    Ok(verdict_exit(summary.verdict()))
}
