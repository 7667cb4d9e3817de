//! One reconcile pass, the I/O around [`super::core`]: check the due validators concurrently, run
//! the GitHub preflight only if some validator needs the PAT, broadcast where the plan says so,
//! confirm accepted broadcasts with a check, and report. `reconcile` runs one pass; `run` runs
//! passes (or subsets of validators whose timers fired) forever.
//!
//! The pass mutates a [`MinerState`] in memory; saving it is the caller's decision (a dry run
//! doesn't).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::core::{self, Action, BroadcastObs, CheckObs, Decision, Desired, Policy, Preflight, Secs};
use super::state::MinerState;
use crate::coverage::{self, Category};
use crate::github::{self, GithubClient, PreflightOutcome};
use crate::probe;
use crate::report::CheckRow;
use crate::secret::Pat;
use crate::validators::{Selection, Validator};
use crate::wire::dendrite::Reply;
use crate::wire::{CallOutcome, CheckFields, Dendrite};

/// Knobs of a pass.
#[derive(Debug, Clone)]
pub struct PassConfig {
    pub policy: Policy,
    pub check_timeout: Duration,
    pub broadcast_timeout: Duration,
    pub concurrency: usize,
    /// Plan only; never send the PAT.
    pub dry_run: bool,
    /// `reconcile` semantics for "due" (everything not in backoff) vs `run`'s timers.
    pub one_shot: bool,
}

/// What a pass did about one eligible validator.
#[derive(Debug, Clone)]
pub struct ValidatorOutcome {
    pub validator: Validator,
    /// The first check this pass (`None`: not due, so not contacted).
    pub checked: Option<CheckRow>,
    pub action: String,
    /// Why (for recheck / give-up / backoff).
    pub why: Option<String>,
    /// Broadcasts sent to it this pass.
    pub attempts: u32,
    /// Category after the pass (confirm check, or the last known one).
    pub final_category: Option<Category>,
    pub next_check_at: Secs,
    pub failures: u32,
}

/// Everything a pass produced.
#[derive(Debug, Clone)]
pub struct PassOutcome {
    pub started_at: Secs,
    pub duration: Duration,
    pub validators: Vec<ValidatorOutcome>,
    pub alerts: Vec<core::Alert>,
    /// The preflight, if it ran.
    pub preflight: Option<github::Preflight>,
    pub checks: Vec<Category>,
    /// Broadcast outcomes ("accepted", "rejected", "no_response", "rejected_http").
    pub broadcasts: Vec<&'static str>,
    /// Validators a dry run would have sent the PAT to.
    pub planned_broadcasts: Vec<u16>,
}

impl PassOutcome {
    /// Final coverage categories with stakes (validators never observed count as no_response).
    pub fn final_rows(&self) -> impl Iterator<Item = (Category, f64)> + '_ {
        self.validators.iter().map(|v| (v.final_category.unwrap_or(Category::NoResponse), v.validator.stake))
    }
}

/// Clock and randomness, injected so tests and the simulation control them.
pub trait Env: Send {
    fn now(&self) -> Secs;
    /// A jitter sample in [0, 1).
    fn jitter(&mut self) -> f64;
}

/// The real clock and a thread RNG.
pub struct SystemEnv;

impl Env for SystemEnv {
    fn now(&self) -> Secs {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }
    fn jitter(&mut self) -> f64 {
        rand::random::<f64>()
    }
}

/// Saves the state mid-pass. Called once the plan marks validators as broadcast to and before
/// the PAT leaves: a process killed while broadcasting then restarts knowing it sent, so the
/// per-validator spacing survives a crash.
pub type Checkpoint<'a> = &'a (dyn Fn(&MinerState) + Send + Sync);

/// The network side of a pass.
pub struct Io<'a> {
    pub dendrite: &'a Arc<Dendrite>,
    pub github: &'a GithubClient,
    /// `None`: the caller saves only after the pass (or never, for a dry run).
    pub checkpoint: Option<Checkpoint<'a>>,
}

fn to_obs(reply: &Reply<CheckFields>) -> CheckObs {
    let category = coverage::classify(&reply.outcome);
    let (reason, status) = match &reply.outcome {
        CallOutcome::Answered(f) => (f.rejection_reason.clone(), Some(200)),
        CallOutcome::Rejected { status, message } => (Some(message.clone()), Some(*status)),
        CallOutcome::NoResponse { kind, detail } => (Some(format!("{}: {detail}", kind.as_str())), None),
    };
    CheckObs { category, reason, status }
}

fn to_preflight(p: &github::Preflight) -> Preflight {
    match &p.outcome {
        PreflightOutcome::Valid { .. } => Preflight::Valid,
        PreflightOutcome::Transient { reason, .. } => Preflight::Transient(reason.clone()),
        PreflightOutcome::Invalid { reason } => Preflight::Invalid(reason.clone()),
    }
}

/// Run one pass for `selection.eligible` (or only `only`, when given: the agent's per-validator
/// timers). Updates `state`.
pub async fn run(
    io: &Io<'_>,
    cfg: &PassConfig,
    selection: &Selection,
    state: &mut MinerState,
    pat: &Pat,
    env: &mut dyn Env,
    only: Option<&BTreeSet<u16>>,
) -> PassOutcome {
    let started = Instant::now();
    let now = env.now();
    let p = &cfg.policy;
    let eligible: Vec<(u16, &str)> = selection.eligible.iter().map(|v| (v.uid, v.hotkey.as_str())).collect();
    core::sync(&mut state.validators, &eligible, now, p.alert_after);

    let fp = pat.fingerprint();
    if state.first_fingerprint.is_none() {
        state.first_fingerprint = Some(fp.clone());
    }
    if state.fingerprint.as_deref() != Some(fp.as_str()) {
        if state.fingerprint.is_some() {
            tracing::info!(pat = %pat.redacted(), "PAT changed; every validator will get the new one once");
        }
        state.fingerprint = Some(fp.clone());
    }
    let mut desired =
        Desired { fingerprint: fp, adopt_fingerprint: state.first_fingerprint.clone(), preflight: Preflight::NotRun };

    // 1. check the due validators
    let due: Vec<Validator> = selection
        .eligible
        .iter()
        .filter(|v| only.is_none_or(|o| o.contains(&v.uid)))
        .filter(|v| state.validators.get(&v.uid).is_none_or(|h| core::due(h, now, cfg.one_shot)))
        .cloned()
        .collect();
    let replies = probe::check_all(io.dendrite, &due, cfg.check_timeout, cfg.concurrency).await;
    let mut checked: BTreeMap<u16, CheckRow> = BTreeMap::new();
    let mut observations: BTreeMap<u16, CheckObs> = BTreeMap::new();
    let mut checks = Vec::new();
    for (v, r) in due.iter().zip(&replies) {
        let row = CheckRow::new(v, r);
        checks.push(row.category);
        checked.insert(v.uid, row);
        observations.insert(v.uid, to_obs(r));
    }

    // 2. preflight only when someone needs the PAT
    let mut preflight = None;
    if core::needs_preflight(&desired, &state.validators, &observations) {
        let pf = io.github.preflight(pat).await;
        desired.preflight = to_preflight(&pf);
        // Debug only: the callers report it once — `reconcile` on stderr, the agent on a change.
        match &pf.outcome {
            PreflightOutcome::Valid { login, .. } => tracing::debug!(login = %login, "PAT preflight passed"),
            PreflightOutcome::Transient { reason, .. } => {
                tracing::debug!(%reason, "PAT preflight inconclusive; not sending this pass")
            }
            PreflightOutcome::Invalid { reason } => tracing::debug!(%reason, "PAT is invalid; it will not be sent"),
        }
        preflight = Some(pf);
    }

    // 3. decide
    let decisions: Vec<Decision> =
        core::plan(p, &desired, &state.validators, &eligible, &observations, now, || env.jitter());
    let mut actions: BTreeMap<u16, (Action, u32)> = BTreeMap::new();
    let mut to_send: Vec<Validator> = Vec::new();
    let mut planned = Vec::new();
    for d in decisions {
        if d.action == Action::Broadcast {
            if cfg.dry_run {
                planned.push(d.uid);
                // Nothing was sent, so nothing moved the validator's next check: without this it
                // stays in the past and `patrol run --dry-run` would re-check it on every tick.
                let mut h = d.history;
                h.next_check_at = now + p.interval;
                state.validators.insert(d.uid, h);
                actions.insert(d.uid, (Action::Broadcast, 0));
                continue;
            }
            state.validators.insert(d.uid, core::broadcast_sent(&d.history, now, &desired.fingerprint));
            if let Some(v) = selection.eligible.iter().find(|v| v.uid == d.uid) {
                to_send.push(v.clone());
            }
        } else {
            state.validators.insert(d.uid, d.history);
        }
        actions.insert(d.uid, (d.action, 0));
    }

    // 4. broadcast, then confirm the accepted ones with a check
    let mut broadcasts = Vec::new();
    let mut accepted: BTreeSet<u16> = BTreeSet::new();
    if !to_send.is_empty() {
        if let Some(save) = io.checkpoint {
            save(state);
        }
        let results = probe::broadcast_all(io.dendrite, &to_send, pat, cfg.broadcast_timeout, cfg.concurrency).await;
        let mut confirm = Vec::new();
        for (v, r) in to_send.iter().zip(&results) {
            let (obs, label) = match &r.outcome {
                CallOutcome::Answered(f) if f.accepted == Some(true) => (BroadcastObs::Accepted, "accepted"),
                CallOutcome::Answered(f) if f.accepted == Some(false) => {
                    (BroadcastObs::Rejected { reason: f.rejection_reason.clone() }, "rejected")
                }
                CallOutcome::Answered(_) => (
                    BroadcastObs::Failed { status: Some(200), detail: "answer without `accepted`".into() },
                    "no_response",
                ),
                CallOutcome::Rejected { status, message } => {
                    (BroadcastObs::Failed { status: Some(*status), detail: message.clone() }, "rejected_http")
                }
                CallOutcome::NoResponse { kind, detail } => (
                    BroadcastObs::Failed { status: None, detail: format!("{}: {detail}", kind.as_str()) },
                    "no_response",
                ),
            };
            broadcasts.push(label);
            let h = state.validators.get(&v.uid).cloned().unwrap_or_else(|| core::History::new(&v.hotkey));
            let (action, h) = core::after_broadcast(p, &desired, &h, &obs, now, env.jitter());
            tracing::info!(uid = v.uid, addr = %v.addr(), result = label, "broadcast");
            if obs == BroadcastObs::Accepted {
                confirm.push(v.clone());
                accepted.insert(v.uid);
            }
            state.validators.insert(v.uid, h);
            actions.insert(v.uid, (action, 1));
        }
        if !confirm.is_empty() {
            let replies = probe::check_all(io.dendrite, &confirm, cfg.check_timeout, cfg.concurrency).await;
            for (v, r) in confirm.iter().zip(&replies) {
                let obs = to_obs(r);
                checks.push(obs.category);
                let h = state.validators.get(&v.uid).cloned().unwrap_or_else(|| core::History::new(&v.hotkey));
                let (action, h) = core::after_check(p, &desired, &h, &obs, now, env.jitter());
                // A confirm that still wants a broadcast waits for the next pass (spacing rule).
                state.validators.insert(v.uid, h);
                actions.insert(v.uid, (action, 1));
            }
        }
    }

    // 5. report
    let validators: Vec<ValidatorOutcome> = selection
        .eligible
        .iter()
        .map(|v| {
            let h = state.validators.get(&v.uid);
            let (label, why, attempts, next) = match actions.get(&v.uid) {
                Some((a, n)) => {
                    let why = match a {
                        Action::Recheck { why, .. } => Some(why.clone()),
                        Action::GiveUp { reason, .. } => Some(reason.clone()),
                        _ => None,
                    };
                    // what this pass did: an accepted broadcast (then confirmed) reports as
                    // `broadcast`; a refused one as what follows from the refusal
                    let label = if cfg.dry_run && *a == Action::Broadcast {
                        "would_broadcast"
                    } else if accepted.contains(&v.uid) {
                        "broadcast"
                    } else {
                        a.label()
                    };
                    (label.to_string(), why, *n, h.map(|h| h.next_check_at).unwrap_or_else(|| a.next_at(now)))
                }
                None => {
                    let next = h.map(|h| h.not_before.max(h.next_check_at)).unwrap_or(now);
                    let why =
                        h.filter(|h| h.not_before > now).map(|h| format!("in backoff after {} failures", h.failures));
                    ("not_due".to_string(), why, 0, next)
                }
            };
            ValidatorOutcome {
                validator: v.clone(),
                checked: checked.get(&v.uid).cloned(),
                action: label,
                why,
                attempts,
                final_category: h.and_then(|h| h.category),
                next_check_at: next,
                failures: h.map(|h| h.failures).unwrap_or(0),
            }
        })
        .collect();
    if !validators.is_empty() && validators.iter().all(|v| v.final_category.is_some_and(Category::is_covered)) {
        state.last_full_coverage_at = Some(now);
    }
    state.last_pass_at = Some(now);
    state.updated_at = now;
    let alerts = core::alerts(p, &desired, core::active(&state.validators), now);
    // Debug only: `reconcile` prints them, the agent logs raised/cleared transitions.
    for a in &alerts {
        tracing::debug!(kind = a.kind, uid = ?a.uid, "{}", a.message);
    }
    PassOutcome {
        started_at: now,
        duration: started.elapsed(),
        validators,
        alerts,
        preflight,
        checks,
        broadcasts,
        planned_broadcasts: planned,
    }
}
