//! `patrol post`: check the PAT locally (both GitHub calls, with the validator's body semantics),
//! then send it to every eligible validator, retrying only those that gave no response (bounded,
//! exponential backoff with jitter). An explicit accept or reject is final. A permanently invalid
//! PAT is never sent (exit 78); if GitHub can't be reached from here nothing is sent either (exit 3).
//! Accepted fingerprints are recorded in the state dir, so a later `reconcile` knows who holds it.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::cli::common;
use crate::cli::{Coded, Exit, PostArgs};
use crate::config::Settings;
use crate::fanout;
use crate::github::PreflightOutcome;
use crate::observe::BroadcastReading;
use crate::reconcile::budget;
use crate::reconcile::core::{self, BroadcastObs, Desired, Policy, PreflightStatus};
use crate::reconcile::state::StateFile;
use crate::reconcile::transport::{Clock, SystemClock};
use crate::report::{self, PostReport, PostRow};
use crate::secret::Pat;
use crate::validators::Validator;
use crate::wire::{BroadcastFields, CallOutcome, Dendrite, NoResponseKind, Reply};

/// Is this broadcast result worth another attempt? Silence and errors that a fresh request can
/// clear (408 priority timeout, 429, 5xx) — not 401/403/404, and never an explicit answer.
fn retryable(r: &Reply<BroadcastFields>) -> bool {
    match &r.outcome {
        CallOutcome::NoResponse { .. } => true,
        CallOutcome::Rejected { status, .. } => matches!(status, 408 | 429 | 500..=599),
        CallOutcome::Answered(f) => f.accepted.is_none(),
    }
}

/// Broadcast to one validator with up to `retries` extra attempts on retryable results.
async fn broadcast_with_retries(
    d: Arc<Dendrite>,
    v: Validator,
    pat: Pat,
    timeout: Duration,
    retries: u32,
) -> (Reply<BroadcastFields>, u32) {
    let attempts = std::sync::atomic::AtomicU32::new(0);
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(8))
        .with_max_times(retries as usize)
        .with_jitter();
    let target = v.target();
    let result = (|| async {
        attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let r = d.broadcast(&target, timeout, &pat).await;
        if retryable(&r) { Err(r) } else { Ok(r) }
    })
    .retry(backoff)
    .notify(|r, wait| {
        // a retryable reply is always a failure (silence, a 408/429/5xx, no `accepted`)
        if let BroadcastObs::Failed { status, detail } = BroadcastObs::of(r) {
            tracing::info!(uid = v.uid, addr = %v.addr(), ?wait, ?status, %detail, "no answer; retrying broadcast")
        }
    })
    .await;
    let reply = match result {
        Ok(r) | Err(r) => r,
    };
    (reply, attempts.load(std::sync::atomic::Ordering::SeqCst))
}

/// Run the command.
pub async fn run(settings: &Settings, args: &PostArgs) -> anyhow::Result<Exit> {
    let miner = settings.single_miner()?;
    let loaded = miner.load_pat()?;
    let caller = common::caller(settings, miner)?;
    if !args.json {
        common::banner(settings, miner, caller.hotkey.ss58());
        eprintln!("PAT: {} (from {})", loaded.pat.redacted(), loaded.origin);
    }
    let github = common::github_client(settings)?;
    let pf = github.preflight(&loaded.pat).await;
    let login = match &pf.outcome {
        PreflightOutcome::Valid { login, .. } => login.clone(),
        PreflightOutcome::Invalid { reason } => {
            return Err(Coded::new(
                Exit::Config,
                "pat_invalid",
                format!("GitHub PAT is invalid, expired or lacks scope: {reason}; nothing was sent"),
            ));
        }
        PreflightOutcome::Transient { reason, .. } => {
            return Err(Coded::new(
                Exit::Undetermined,
                "github_unavailable",
                format!("could not verify the PAT with GitHub ({reason}); nothing was sent, try again later"),
            ));
        }
    };
    if !args.json {
        eprintln!("GitHub login: {login}");
    }
    let el = common::eligible(settings, caller.hotkey.ss58(), args.json).await?;
    let retries = args.retries.unwrap_or(settings.reconcile.post_retries);
    let timeout = settings.reconcile.broadcast_timeout;
    let (d, pat) = (caller.dendrite.clone(), loaded.pat.clone());
    let results = fanout::each(&el.selection.eligible, settings.reconcile.concurrency, move |v| {
        broadcast_with_retries(d.clone(), v, pat.clone(), timeout, retries)
    })
    .await;
    let read: Vec<(BroadcastReading, u32)> = results
        .into_iter()
        .map(|r| match r {
            Some((reply, attempts)) => (BroadcastReading::of(&reply), attempts),
            None => (BroadcastReading::of(&Reply::no_response(NoResponseKind::Disconnected, "internal error")), 0),
        })
        .collect();
    record(settings, caller.hotkey.ss58(), &loaded.pat, &el.selection.eligible, &read);
    let rows: Vec<PostRow> =
        el.selection.eligible.iter().zip(&read).map(|(v, (r, attempts))| PostRow::new(v, r, *attempts)).collect();
    let rep = PostReport::new(
        caller.hotkey.ss58(),
        Some(login),
        loaded.pat.redacted(),
        rows,
        el.selection.skipped.clone(),
        el.source.clone(),
    );
    print!("{}", report::stdout(&rep, args.json, report::post_table)?);
    eprintln!("{}", rep.summary_line());
    Ok(Exit::from(rep.summary().verdict()))
}

/// Remember which validators accepted this PAT (and which refused it for good), so `reconcile`
/// neither re-sends it needlessly nor retries a locked identity. Best effort: a busy or unwritable
/// state dir only costs a warning.
fn record(settings: &Settings, hotkey: &str, pat: &Pat, eligible: &[Validator], results: &[(BroadcastReading, u32)]) {
    let file = StateFile::of(settings, hotkey);
    // the preflight and every broadcast sent count against the GitHub budget the agent keeps
    let attempts: u32 = results.iter().map(|(_, n)| n).sum();
    let calls = budget::CALLS_PER_PREFLIGHT.saturating_add(attempts.saturating_mul(budget::CALLS_PER_BROADCAST));
    let _lock = match file.try_lock() {
        Ok(l) => l,
        Err(e) => {
            // e.g. the agent runs: it takes the spending into its ledger at its next pass
            tracing::warn!(error = %crate::secret::error_chain(&e), "not recording the result in the state file");
            common::note_spent(&file, calls);
            return;
        }
    };
    let mut state = file.load(hotkey, settings.chain.netuid);
    let now = SystemClock.now();
    let p = Policy::from(&settings.reconcile);
    let fp = pat.fingerprint();
    state.first_fingerprint.get_or_insert_with(|| fp.clone());
    state.fingerprint = Some(fp.clone());
    let d = Desired {
        fingerprint: fp,
        adopt_fingerprint: state.first_fingerprint.clone(),
        preflight: PreflightStatus::Valid,
    };
    for (v, (read, _)) in eligible.iter().zip(results) {
        let h = state.validators.entry(v.uid).or_insert_with(|| core::History::new(&v.hotkey));
        if h.hotkey != v.hotkey {
            *h = core::History::new(&v.hotkey);
        }
        let sent = core::broadcast_sent(h, now, &d.fingerprint);
        let (_, mut h2) = core::after_broadcast(&p, &d, &sent, &read.obs, now, rand::random::<f64>());
        if read.obs == BroadcastObs::Accepted {
            // accepted just now: covered until the next check says otherwise
            h2.category = Some(crate::observe::Category::Valid);
            h2.next_check_at = now + p.interval;
        }
        state.validators.insert(v.uid, h2);
    }
    state.absorb_spent(&file.take_spent(), now);
    state.github.record(now, calls);
    state.updated_at = now;
    if let Err(e) = file.save(&state) {
        tracing::warn!(error = %crate::secret::error_chain(&e), "could not save the state file");
    }
}
