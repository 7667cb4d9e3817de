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
use crate::fanout;
use crate::github::{self, GithubClient, PreflightOutcome};
use crate::observe::{BroadcastOutcome, Category};
use crate::secret::Pat;
use crate::validators::{Selection, Validator};
use crate::wire::{CheckFields, Dendrite, Reply};

/// What a pass did about one validator (`reconcile --json` `action`, logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionTaken {
    /// Covered: nothing until the next check.
    None,
    /// The PAT was sent and accepted (then confirmed with a check).
    Broadcast,
    /// Checked again later (backoff, inconclusive, a refused broadcast, spacing).
    Recheck,
    /// Terminal until the PAT changes.
    GiveUp,
    /// Dry run: the PAT would have been sent.
    WouldBroadcast,
    /// Not contacted this pass (its timer has not fired, or in backoff).
    NotDue,
}

impl ActionTaken {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionTaken::None => "none",
            ActionTaken::Broadcast => "broadcast",
            ActionTaken::Recheck => "recheck",
            ActionTaken::GiveUp => "give_up",
            ActionTaken::WouldBroadcast => "would_broadcast",
            ActionTaken::NotDue => "not_due",
        }
    }

    fn of(a: &Action) -> ActionTaken {
        match a {
            Action::None { .. } => ActionTaken::None,
            Action::Broadcast => ActionTaken::Broadcast,
            Action::Recheck { .. } => ActionTaken::Recheck,
            Action::GiveUp { .. } => ActionTaken::GiveUp,
        }
    }
}

impl std::fmt::Display for ActionTaken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// The first check's reply this pass (`None`: not due, so not contacted).
    pub checked: Option<Reply<CheckFields>>,
    pub action: ActionTaken,
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
    /// How each broadcast of this pass ended.
    pub broadcasts: Vec<BroadcastOutcome>,
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
    let replies = fanout::check_all(io.dendrite, &due, cfg.check_timeout, cfg.concurrency).await;
    let mut checked: BTreeMap<u16, Reply<CheckFields>> = BTreeMap::new();
    let mut observations: BTreeMap<u16, CheckObs> = BTreeMap::new();
    let mut checks = Vec::new();
    for (v, r) in due.iter().zip(replies) {
        let obs = CheckObs::of(&r);
        checks.push(obs.category);
        observations.insert(v.uid, obs);
        checked.insert(v.uid, r);
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
        let results = fanout::broadcast_all(io.dendrite, &to_send, pat, cfg.broadcast_timeout, cfg.concurrency).await;
        let mut confirm = Vec::new();
        for (v, r) in to_send.iter().zip(&results) {
            let obs = BroadcastObs::of(r);
            let label = obs.outcome();
            broadcasts.push(label);
            let h = state.validators.get(&v.uid).cloned().unwrap_or_else(|| core::History::new(&v.hotkey));
            let (action, h) = core::after_broadcast(p, &desired, &h, &obs, now, env.jitter());
            tracing::info!(uid = v.uid, addr = %v.addr(), result = %label, "broadcast");
            if obs == BroadcastObs::Accepted {
                confirm.push(v.clone());
                accepted.insert(v.uid);
            }
            state.validators.insert(v.uid, h);
            actions.insert(v.uid, (action, 1));
        }
        if !confirm.is_empty() {
            let replies = fanout::check_all(io.dendrite, &confirm, cfg.check_timeout, cfg.concurrency).await;
            for (v, r) in confirm.iter().zip(&replies) {
                let obs = CheckObs::of(r);
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
                        ActionTaken::WouldBroadcast
                    } else if accepted.contains(&v.uid) {
                        ActionTaken::Broadcast
                    } else {
                        ActionTaken::of(a)
                    };
                    (label, why, *n, h.map(|h| h.next_check_at).unwrap_or_else(|| a.next_at(now)))
                }
                None => {
                    let next = h.map(|h| h.not_before.max(h.next_check_at)).unwrap_or(now);
                    let why =
                        h.filter(|h| h.not_before > now).map(|h| format!("in backoff after {} failures", h.failures));
                    (ActionTaken::NotDue, why, 0, next)
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
