//! `patrol reconcile`: one pass for cron and CI. Checks every eligible validator not in a backoff
//! window, re-broadcasts only where coverage is missing (after the local preflight), confirms, saves
//! the state, and exits with the coverage verdict of the final state (0/1/2/3). `--dry-run` prints
//! the plan and sends no PAT (and saves nothing).
//!
//! `--metrics-file` (node_exporter's textfile collector) is checked before the pass
//! ([`outputs::check`]) and written after it with the same families the agent serves: `ready` is
//! 1 after a pass on a live validator set, counters continue from run to run (the state keeps the
//! totals), and the PAT preflight series come from the last preflight the state remembers. When no
//! pass can run (the hotkey is not registered, no validator source) the file still says why
//! (`patrol_miner_problem`, `patrol_ready 0`). A pass whose state or metrics cannot be saved
//! afterwards keeps its result: the report (JSON or table) is printed with the error beside it, and
//! the exit code is the error's.
//!
//! Notifications (`[notify]`, not in a dry run): the same event function as the agent's, fed this
//! run's outcome (or the problem that kept it from a pass) and the record of what earlier runs
//! announced, kept in the state file — so a timer's runs send on transitions only. What a target
//! has not accepted within `[notify] flush` stays in the state's outbox for the next run. The
//! dead-man ping says success after a completed pass, failure when none could run.

use std::path::Path;
use std::sync::Arc;

use crate::chain::ChainError;
use crate::cli::{Exit, ReconcileArgs, common, exit, outputs};
use crate::config::Settings;
use crate::metrics::{Metrics, ProblemKind};
use crate::notify::{Input, Notifications};
use crate::reconcile::pass::{self, PassConfig, PassOutcome, Work};
use crate::reconcile::state::{MinerState, StateFile};
use crate::reconcile::transport::{Clock, NetLimits, NetTransport, SystemClock};
use crate::report::{self, ReconcileReport};

/// Run the command.
pub async fn run(settings: &Settings, args: &ReconcileArgs) -> anyhow::Result<Exit> {
    let mut notes = if args.dry_run {
        None
    } else {
        Notifications::start(settings, None, Arc::new(SystemClock), Arc::new(|_: &str, _: &'static str| {}))?
    };
    let result = reconcile(settings, args, &mut notes).await;
    // No pass could run, and the state was not reached: the ping says so.
    if let (Some(n), Err(e)) = (notes, &result) {
        n.ping(false, &crate::secret::error_chain(e.as_ref()));
        n.close().await;
    }
    result
}

async fn reconcile(
    settings: &Settings,
    args: &ReconcileArgs,
    notes: &mut Option<Notifications>,
) -> anyhow::Result<Exit> {
    let miner = settings.single_miner()?;
    let loaded = miner.load_pat()?;
    let caller = common::caller(settings, miner)?;
    let hotkey = caller.hotkey.ss58();
    if let Some(path) = &args.metrics_file {
        outputs::check("metrics file", "--metrics-file", path, Some(settings), &[])?;
    }
    if !args.json {
        common::banner(settings, miner, hotkey);
    }
    let file = StateFile::of(settings, hotkey);
    // A dry run only reads; a real pass owns the state for its duration.
    let _lock = if args.dry_run { None } else { Some(file.try_lock()?) };
    let mut state = file.load(hotkey, settings.chain.netuid);
    if !args.dry_run {
        state.absorb_spent(&file.take_spent(), SystemClock.now());
    }
    let el = match common::eligible(settings, hotkey, args.json).await {
        Ok(el) => el,
        Err(e) => {
            if let Some(path) = &args.metrics_file {
                write_problem_metrics(path, hotkey, &state, &e);
            }
            if let Some(n) = notes.take() {
                let problem = problem_kind(&e);
                let message = crate::secret::error_chain(e.as_ref());
                n.ping(false, &message);
                let told = Told {
                    miner: &miner.name,
                    hotkey,
                    outcome: None,
                    problem: problem.map(|p| (p, message.as_str())),
                    save_error: None,
                    now: SystemClock.now(),
                };
                tell(n, &mut state, &file, told).await;
            }
            return Err(e);
        }
    };
    let net = NetTransport::new(
        caller.dendrite.clone(),
        Arc::new(common::github_client(settings)?),
        NetLimits::from_settings(&settings.reconcile),
    );
    let save = |s: &MinerState| file.checkpoint(s);
    let checkpoint: Option<pass::Checkpoint<'_>> = if args.dry_run { None } else { Some(&save) };
    let cfg = PassConfig::from_settings(settings, args.dry_run);
    let work = Work { telemetry_preflight: !args.dry_run, ..Work::one_shot() };
    let out = pass::run(&net, &cfg, &el.selection, &mut state, &loaded.pat, &work, checkpoint).await;
    let rep = ReconcileReport::new(hotkey, &out, el.selection.skipped.clone(), el.source.clone(), args.dry_run);
    // The pass is done (and may have broadcast): from here a failure is reported beside its result.
    let saved = if args.dry_run { Ok(()) } else { file.save(&state).map_err(anyhow::Error::from) };
    let written = match &args.metrics_file {
        Some(path) => {
            let live = el.source.source != "cache";
            write_metrics(path, hotkey, &out, &state, settings.chain.netuid, el.source.metagraph_age_s, live)
        }
        None => Ok(()),
    };
    if args.dry_run {
        // The dry run's checks cost GitHub calls on the PAT too: into the ledger the owner keeps.
        common::note_spent(&file, out.github.pass_calls);
    }
    if let Some(n) = notes.take() {
        let save_error = saved.as_ref().err().map(|e| crate::secret::error_chain(e.as_ref()));
        let summary = rep.check.summary();
        n.ping(
            true,
            &format!(
                "{}/{} covered ({:.1}% of stake); {} broadcast(s) sent",
                summary.covered,
                summary.total,
                summary.stake_weighted_coverage * 100.0,
                rep.broadcasts_sent
            ),
        );
        let told = Told {
            miner: &miner.name,
            hotkey,
            outcome: Some(&out),
            problem: None,
            save_error: save_error.as_deref(),
            now: out.started_at,
        };
        tell(n, &mut state, &file, told).await;
    }
    let failure = saved.err().or(written.err());
    print_report(settings, args, &rep, failure.as_ref())?;
    match failure {
        None => Ok(Exit::from(rep.check.summary().verdict())),
        Some(e) => {
            let (code, _) = exit::classify(&e);
            eprintln!("patrol: {}", crate::secret::error_chain(e.as_ref()));
            Ok(code)
        }
    }
}

/// The textfile after a pass.
fn write_metrics(
    path: &Path,
    hotkey: &str,
    out: &PassOutcome,
    state: &MinerState,
    netuid: u16,
    metagraph_age_s: Option<u64>,
    live: bool,
) -> anyhow::Result<()> {
    let m = Metrics::new();
    m.observe_pass(hotkey, out, state);
    m.set_metagraph_age(netuid, metagraph_age_s.unwrap_or(0) as f64);
    m.set_miner_problem(hotkey, None);
    // As /readyz: a pass finished on a set read from the chain (or the static list), not the cache.
    m.set_ready(live);
    write(path, &m)
}

/// What [`tell`] feeds the event function besides the state.
struct Told<'a> {
    miner: &'a str,
    hotkey: &'a str,
    outcome: Option<&'a PassOutcome>,
    problem: Option<(ProblemKind, &'a str)>,
    save_error: Option<&'a str>,
    now: crate::reconcile::core::Secs,
}

/// Announce what this run calls for (after queueing again what earlier runs could not deliver),
/// wait for delivery within `[notify] flush`, keep the rest in the state's outbox, save the state.
async fn tell(n: Notifications, state: &mut MinerState, file: &StateFile, t: Told<'_>) {
    n.resume(&mut state.notify);
    let mut record = std::mem::take(&mut state.notify);
    let input = Input {
        miner: t.miner,
        hotkey: t.hotkey,
        state,
        outcome: t.outcome,
        problem: t.problem,
        save_error: t.save_error,
        now: t.now,
    };
    let events = n.observe(&mut record, &input);
    state.notify = record;
    n.send(&events);
    let left = n.close().await;
    crate::notify::keep(&mut state.notify, t.hotkey, &left);
    if let Err(e) = file.save(state) {
        tracing::warn!(error = %crate::secret::error_chain(&e), "cannot save what the notifications announced; the next run may repeat it");
    }
}

/// `not_registered` or `no_validator_source` when that is why no pass could run.
fn problem_kind(e: &anyhow::Error) -> Option<ProblemKind> {
    match e.chain().find_map(|c| c.downcast_ref::<ChainError>()) {
        Some(ChainError::NotRegistered { .. }) => Some(ProblemKind::NotRegistered),
        Some(c) if c.is_undetermined() => Some(ProblemKind::NoValidatorSource),
        _ => None,
    }
}

/// The textfile when no pass could run: why, and the counters so far (they must not vanish).
fn write_problem_metrics(path: &Path, hotkey: &str, state: &MinerState, e: &anyhow::Error) {
    let Some(kind) = problem_kind(e) else { return };
    let m = Metrics::new();
    m.observe_totals(hotkey, state);
    m.set_miner_problem(hotkey, Some(kind));
    m.set_ready(false);
    if let Err(w) = write(path, &m) {
        eprintln!("patrol: {}", crate::secret::error_chain(w.as_ref()));
    }
}

fn write(path: &Path, m: &Metrics) -> anyhow::Result<()> {
    // The io::Error stays in the chain: a refused target (a device, a FIFO) is exit 78.
    crate::fsutil::atomic_write(path, m.encode_prometheus().as_bytes(), 0o644)
        .map_err(|e| anyhow::Error::new(e).context(format!("cannot write metrics file {}", path.display())))
}

/// The report: JSON on stdout (with `error` beside the result when saving failed), or the table
/// and the summary lines.
fn print_report(
    settings: &Settings,
    args: &ReconcileArgs,
    rep: &ReconcileReport,
    failure: Option<&anyhow::Error>,
) -> anyhow::Result<()> {
    if args.json {
        let mut v = serde_json::to_value(rep)?;
        if let (Some(e), Some(obj)) = (failure, v.as_object_mut()) {
            let (_, kind) = exit::classify(e);
            obj.insert("success".into(), false.into());
            obj.insert(
                "error".into(),
                serde_json::json!({"type": kind, "message": crate::secret::error_chain(e.as_ref())}),
            );
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", report::reconcile_table(rep));
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
    Ok(())
}
