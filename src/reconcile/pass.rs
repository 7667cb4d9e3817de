//! One reconcile pass — the only one: `patrol reconcile` runs one, `patrol run` runs them as its
//! scheduler says, the simulation runs them in virtual time, and the tests run them against a
//! scripted [`Transport`]. All I/O goes through the transport; every decision is the pure core's
//! ([`super::core`]) or the budget's ([`super::budget`]).
//!
//! The phases, in order, each a method of [`Pass`]:
//! 1. [`Pass::begin`]: sync the histories with the eligible set, note a rotated PAT, stretch the
//!    routine interval to the GitHub budget;
//! 2. [`Pass::probe`]: liveness probes; a validator that answers again after silence, or answers
//!    with a new axon uuid (a restart), is checked in this same pass;
//! 3. [`Pass::select`]: which validators to check — timers that fired and those triggered by a
//!    probe — within the budget;
//! 4. [`Pass::check`]: check them;
//! 5. [`Pass::preflight`]: the PAT preflight, only if some answer calls for a broadcast;
//! 6. [`Pass::decide`]: the core's plan; who gets the PAT (never in a dry run);
//! 7. the checkpoint (the state is saved *before* the PAT leaves, so a crash mid-broadcast keeps
//!    the spacing), then [`Pass::broadcast`];
//! 8. [`Pass::confirm`]: check every accepted broadcast in the same pass;
//! 9. [`Pass::finish`]: what happened to each validator, alerts, GitHub spend.
//!
//! The pass mutates a [`MinerState`] in memory; saving it after the pass is the caller's decision
//! (a dry run never saves).
//!
//! Over 600 lines for a reason: the phases are one sequence over one struct, and splitting them
//! would spread `impl Pass` over files; what a pass is asked to do (`work.rs`), what it produced
//! (`outcome.rs`) and its budget accounting ([`budget::Reservations`]) live apart.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::budget::{self, Intervals, Reservations};
use super::core::{
    self, Action, BroadcastObs, CheckObs, Desired, Policy, PreflightStatus, ProbeObs, ProbeVerdict, Secs,
};
use super::state::MinerState;
use super::transport::Transport;
use crate::github::{self, PreflightOutcome};
use crate::observe::{BroadcastOutcome, Category, CheckReading};
use crate::secret::Pat;
use crate::validators::{Selection, Validator};

/// The span of a validator the pass acts on (its fields are formatted only when a subscriber
/// wants the span).
fn validator_span(v: &Validator) -> tracing::Span {
    tracing::info_span!("validator", uid = v.uid, hotkey = %v.hotkey, addr = %v.target())
}

/// Saves the state mid-pass: called once the plan marks validators as broadcast to and before the
/// PAT leaves, so a process killed while broadcasting restarts knowing it sent.
pub type Checkpoint<'a> = &'a (dyn Fn(&MinerState) + Send + Sync);

/// Run one pass over `selection.eligible`. Updates `state`.
///
/// Traced as a `pass` span (the miner's hotkey, the netuid, [`Work::label`]), as kube-rs traces a
/// reconcile; inside it a `validator` span (uid, hotkey, address) around what the pass logs about a
/// validator — its broadcasts. Checks, confirms and probes log nothing per validator (a sweep
/// probes every validator every 25 s), so they open no span whose fields would be formatted for
/// nothing.
#[tracing::instrument(
    name = "pass",
    skip_all,
    fields(miner = %state.hotkey, netuid = state.netuid, kind = %work.label())
)]
pub async fn run(
    transport: &dyn Transport,
    cfg: &PassConfig,
    selection: &Selection,
    state: &mut MinerState,
    pat: &Pat,
    work: &Work,
    checkpoint: Option<Checkpoint<'_>>,
) -> PassOutcome {
    let started = Instant::now();
    let mut pass = Pass::begin(cfg, selection, state, pat, transport.clock().now());
    pass.probe(transport, &work.probe).await;
    let due = pass.select(work);
    pass.check(transport, &due).await;
    if work.learn_uuids {
        pass.learn_uuids(transport).await;
    }
    pass.preflight(transport, pat).await;
    let to_send = pass.decide(transport);
    if !to_send.is_empty() {
        if let Some(save) = checkpoint {
            save(pass.state);
        }
        pass.broadcast(transport, &to_send, pat).await;
        pass.confirm(transport).await;
    }
    if work.telemetry_preflight {
        pass.telemetry_preflight(transport, pat).await;
    }
    let out = pass.finish(started);
    out.tally(&mut state.totals, work.kind());
    out
}

/// One pass in progress.
pub struct Pass<'a> {
    cfg: &'a PassConfig,
    selection: &'a Selection,
    state: &'a mut MinerState,
    now: Secs,
    desired: Desired,
    /// The policy with the budget's intervals.
    policy: Policy,
    intervals: Intervals,
    eligible: Vec<(u16, &'a str)>,
    probes: usize,
    probe_verdicts: BTreeMap<u16, ProbeVerdict>,
    /// Checked in this pass because a probe said so.
    triggered: BTreeSet<u16>,
    /// Not checked although due, and why.
    deferred: BTreeMap<u16, String>,
    /// Each check answer, read once ([`CheckReading`]); `observations` holds their `obs` for
    /// the pure core, which takes a map of observations.
    checked: BTreeMap<u16, CheckReading>,
    observations: BTreeMap<u16, CheckObs>,
    checks: Vec<Category>,
    preflight: Option<github::PreflightReport>,
    /// `(action, broadcasts sent)` per validator decided on.
    actions: BTreeMap<u16, (Action, u32)>,
    planned: Vec<u16>,
    sent: Vec<Validator>,
    broadcasts: Vec<BroadcastOutcome>,
    accepted: BTreeSet<u16>,
    /// Estimated GitHub calls spent this pass.
    calls: u32,
    /// The hour's GitHub budget: spent, reserved, every validator's share.
    res: Reservations,
}

impl<'a> Pass<'a> {
    /// Phase 1: histories follow the eligible set; the desired state; the budget's intervals.
    pub fn begin(
        cfg: &'a PassConfig,
        selection: &'a Selection,
        state: &'a mut MinerState,
        pat: &Pat,
        now: Secs,
    ) -> Pass<'a> {
        let eligible: Vec<(u16, &'a str)> = selection.eligible.iter().map(|v| (v.uid, v.hotkey.as_str())).collect();
        let horizon = budget::MAX_INTERVAL.max(cfg.policy.backoff_max).max(cfg.policy.interval);
        state.settle(now, horizon);
        core::sync(&mut state.validators, &eligible, now, cfg.policy.alert_after);
        let fp = pat.fingerprint();
        if state.use_pat(&fp) {
            tracing::info!(pat = %pat.redacted(), "PAT changed; every validator will get the new one once");
        }
        let desired = Desired {
            fingerprint: fp,
            adopt_fingerprint: state.first_fingerprint.clone(),
            preflight: PreflightStatus::NotRun,
        };
        // Who holds a PAT for us, as far as we know (one never seen might: count it). After `sync`
        // the active histories are exactly the eligible validators.
        let (mut steady, mut lossy) = (0, 0);
        for (_, h) in core::active(&state.validators) {
            match h {
                h if h.category.is_some_and(|c| !c.holds_a_pat()) => {}
                h if h.is_lossy(now) => lossy += 1,
                _ => steady += 1,
            }
        }
        let intervals = budget::intervals(cfg.policy.interval, cfg.budget, steady, lossy);
        let policy = Policy { interval: intervals.steady, interval_lossy: intervals.lossy, ..cfg.policy };
        let res = Reservations::new(&state.github, cfg.budget, eligible.iter().map(|(uid, _)| *uid).collect(), now);
        Pass {
            cfg,
            selection,
            state,
            now,
            desired,
            policy,
            intervals,
            eligible,
            probes: 0,
            probe_verdicts: BTreeMap::new(),
            triggered: BTreeSet::new(),
            deferred: BTreeMap::new(),
            checked: BTreeMap::new(),
            observations: BTreeMap::new(),
            checks: Vec::new(),
            preflight: None,
            actions: BTreeMap::new(),
            planned: Vec::new(),
            sent: Vec::new(),
            broadcasts: Vec::new(),
            accepted: BTreeSet::new(),
            calls: 0,
            res,
        }
    }

    fn validator(&self, uid: u16) -> Option<&'a Validator> {
        self.selection.eligible.iter().find(|v| v.uid == uid)
    }

    fn history(&self, v: &Validator) -> core::History {
        self.state.validators.get(&v.uid).cloned().unwrap_or_else(|| core::History::new(&v.hotkey))
    }

    /// Phase 2: probe `which` (validators patrol has met; a newcomer is checked anyway).
    pub async fn probe(&mut self, t: &dyn Transport, which: &BTreeSet<u16>) {
        if which.is_empty() {
            return;
        }
        let picked: Vec<Validator>;
        let all = &self.selection.eligible;
        // A sweep usually probes everyone: then the eligible list itself is the list to probe.
        let vs: &[Validator] = if which.len() == all.len() && all.iter().all(|v| which.contains(&v.uid)) {
            all
        } else {
            picked = all.iter().filter(|v| which.contains(&v.uid)).cloned().collect();
            &picked
        };
        let vs: Vec<&Validator> = vs.iter().filter(|v| self.state.validators.contains_key(&v.uid)).collect();
        if vs.is_empty() {
            return;
        }
        let owned: Vec<Validator>;
        let vs: &[Validator] = if vs.len() == all.len() {
            all
        } else {
            owned = vs.into_iter().cloned().collect();
            &owned
        };
        let replies = t.probe(vs).await;
        self.probes += vs.len();
        for (v, r) in vs.iter().zip(&replies) {
            let Some(h) = self.state.validators.get_mut(&v.uid) else { continue };
            let verdict = core::after_probe(h, &ProbeObs::of(r), self.now);
            if verdict.wants_check() {
                tracing::debug!(uid = v.uid, addr = %v.addr(), ?verdict, "probe: checking now");
                self.triggered.insert(v.uid);
            }
            if verdict != ProbeVerdict::Quiet {
                self.probe_verdicts.insert(v.uid, verdict);
            }
        }
    }

    /// Phase 3: the validators to check now — a wake-up's `work.only`, or those due by their
    /// timers, and those triggered by a probe — admitted within the GitHub budget: free checks
    /// always, triggered ones and first checks up to the repair limit, routine ones up to
    /// [`budget::ROUTINE_GUARD`] of the budget; validators that lost the PAT lately first, then the
    /// longest unchecked. The rest wait for the budget.
    pub fn select(&mut self, work: &Work) -> Vec<Validator> {
        if work.only.as_ref().is_some_and(BTreeSet::is_empty) && self.triggered.is_empty() {
            return Vec::new(); // a probe sweep that found nothing: no timer fired, nobody to check
        }
        struct Candidate<'v> {
            v: &'v Validator,
            cost: u32,
            triggered: bool,
            lossy: bool,
            checked_at: Option<Secs>,
        }
        let mut candidates: Vec<Candidate<'_>> = Vec::new();
        for v in &self.selection.eligible {
            let h = self.state.validators.get(&v.uid);
            let triggered = self.triggered.contains(&v.uid);
            // A wake-up's validators were picked by the scheduler (`core::due_at`, spaced); a
            // round's and a one-shot's are picked here, on the fresh validator set.
            let timer = match &work.only {
                Some(only) => only.contains(&v.uid),
                None => h.is_none_or(|h| core::due(h, self.now, work.due_rule())),
            };
            if !triggered && !timer {
                continue;
            }
            // A silent validator answers nothing, so it costs nothing; one never met might hold a PAT.
            let cost = match h {
                Some(h) if h.silent.is_some() => 0,
                Some(h) => h.category.map_or(budget::CALLS_PER_HELD_CHECK, budget::check_cost),
                None => budget::CALLS_PER_HELD_CHECK,
            };
            let lossy = h.is_some_and(|h| h.is_lossy(self.now));
            // Its coverage is unknown — never checked (a fresh state, a newcomer), or a restart's
            // check had to wait — so the check has a re-assertion's priority, or a first
            // `reconcile` of a large subnet would report most of it unchecked.
            let first = h.is_none_or(|h| h.checked_at.is_none() || h.category.is_none());
            candidates.push(Candidate {
                v,
                cost,
                triggered: triggered || first,
                lossy,
                checked_at: h.and_then(|h| h.checked_at),
            });
        }
        candidates.sort_by_key(|c| (!c.triggered, !c.lossy, c.checked_at));
        let mut due = Vec::new();
        for c in candidates {
            let uid = c.v.uid;
            let priority = c.triggered || work.reassert;
            let limit = if priority { self.res.repair_limit() } else { self.cfg.budget.routine_limit() };
            let admitted = if priority { self.res.admit_priority(uid, c.cost) } else { self.res.admit_routine(c.cost) };
            if admitted {
                self.res.estimate(uid, c.cost, priority);
                due.push(c.v.clone());
                continue;
            }
            let at = self.free_at(c.cost, limit);
            let mut h = self.history(c.v);
            h.defer(at);
            let mut why = format!(
                "deferred to stay within the GitHub budget ({} of {limit} calls this hour)",
                self.res.reserved()
            );
            if self.triggered.contains(&uid) {
                // A restart may have emptied its store: what it held before says nothing now.
                h.category = None;
                h.uncovered_since.get_or_insert(self.now);
                why.push_str("; its coverage since the restart is unknown");
            }
            self.state.validators.insert(uid, h);
            self.deferred.insert(uid, why);
        }
        due
    }

    /// When `need` more calls fit under `limit`, given what this pass has reserved so far.
    fn free_at(&self, need: u32, limit: u32) -> Secs {
        let pending = self.res.reserved().saturating_sub(self.state.github.spent(self.now));
        self.state.github.free_at(self.now, need.saturating_add(pending), limit).max(self.now + 1)
    }

    /// Phase 4: check `due`.
    pub async fn check(&mut self, t: &dyn Transport, due: &[Validator]) {
        if due.is_empty() {
            return;
        }
        let replies = t.check(due).await;
        for (v, r) in due.iter().zip(replies) {
            let reading = CheckReading::of(&r);
            let cost = budget::check_cost(reading.obs.category);
            self.res.checked(v.uid, cost);
            self.calls += cost;
            self.checks.push(reading.obs.category);
            self.observations.insert(v.uid, reading.obs.clone());
            self.checked.insert(v.uid, reading);
        }
    }

    /// Phase 4b: learn the uuid of the validators that answered a check without one (see
    /// [`Work::learn_uuids`]). Free on GitHub, once per validator; a probe that fails changes
    /// nothing (the check has just answered; the next sweep tells).
    pub async fn learn_uuids(&mut self, t: &dyn Transport) {
        let unknown: Vec<Validator> = self
            .selection
            .eligible
            .iter()
            .filter(|v| {
                self.observations
                    .get(&v.uid)
                    .is_some_and(|o| o.category != Category::NoResponse && o.axon_uuid.is_none())
                    && self.state.validators.get(&v.uid).is_some_and(|h| h.axon_uuid.is_none())
            })
            .cloned()
            .collect();
        if unknown.is_empty() {
            return;
        }
        let replies = t.probe(&unknown).await;
        self.probes += unknown.len();
        for (v, r) in unknown.iter().zip(&replies) {
            if let (ProbeObs::Alive { axon_uuid: Some(u) }, Some(h)) =
                (ProbeObs::of(r), self.state.validators.get_mut(&v.uid))
            {
                h.note_axon_uuid(&u, self.now);
                h.last_probe_at = Some(self.now);
            }
        }
    }

    /// Phase 5: the GitHub preflight, only when some validator needs the PAT.
    pub async fn preflight(&mut self, t: &dyn Transport, pat: &Pat) {
        if !core::needs_preflight(&self.desired, &self.state.validators, &self.observations) {
            return;
        }
        if self.state.preflight_still_valid(&self.desired.fingerprint, self.now) {
            self.desired.preflight = PreflightStatus::Valid;
            return;
        }
        let (need, limit) = (budget::CALLS_PER_PREFLIGHT, self.res.repair_limit());
        // Charged to the share of a validator that needs the PAT (or the allowance beyond).
        let wanting: Vec<u16> = self
            .observations
            .iter()
            .filter(|(uid, obs)| {
                self.state.validators.get(uid).is_none_or(|h| core::wants_broadcast(&self.desired, h, obs))
            })
            .map(|(uid, _)| *uid)
            .collect();
        if !wanting.into_iter().any(|uid| self.res.admit_priority(uid, need)) {
            self.desired.preflight = PreflightStatus::Transient(format!(
                "the GitHub budget ({limit} calls an hour) is spent until {}",
                core::rfc3339(self.free_at(need, limit))
            ));
            return;
        }
        let pf = t.preflight(pat).await;
        self.calls += need;
        self.state.remember_preflight(&self.desired.fingerprint, &pf, self.now);
        self.desired.preflight = match &pf.outcome {
            PreflightOutcome::Valid { .. } => PreflightStatus::Valid,
            PreflightOutcome::Transient { reason, .. } => PreflightStatus::Transient(reason.clone()),
            PreflightOutcome::Invalid { reason } => PreflightStatus::Invalid(reason.clone()),
        };
        // Debug only: the callers report it once — `reconcile` on stderr, the agent on a change.
        match &pf.outcome {
            PreflightOutcome::Valid { login, .. } => tracing::debug!(login = %login, "PAT preflight passed"),
            PreflightOutcome::Transient { reason, .. } => {
                tracing::debug!(%reason, "PAT preflight inconclusive; not sending this pass")
            }
            PreflightOutcome::Invalid { reason } => tracing::debug!(%reason, "PAT is invalid; it will not be sent"),
        }
        self.preflight = Some(pf);
    }

    /// Phase 6: the core's decisions; returns the validators to send the PAT to (none in a dry
    /// run, none beyond the budget) and marks them as sent to in the state (before sending).
    pub fn decide(&mut self, t: &dyn Transport) -> Vec<Validator> {
        let decisions = core::plan(
            &self.policy,
            &self.desired,
            &self.state.validators,
            &self.eligible,
            &self.observations,
            self.now,
            || t.jitter(),
        );
        let mut to_send = Vec::new();
        for d in decisions {
            let mut h = d.history;
            let mut action = d.action;
            if action == Action::Broadcast {
                let limit = self.res.repair_limit();
                if self.cfg.dry_run {
                    self.planned.push(d.uid);
                    // Nothing was sent, so nothing moved the validator's next check: without this
                    // it stays in the past and `patrol run --dry-run` would re-check it every tick.
                    h.next_check_at = self.now + self.policy.interval;
                } else if !self.res.admit_priority(d.uid, budget::CALLS_PER_REPAIR) {
                    let at = self.free_at(budget::CALLS_PER_REPAIR, limit);
                    h.next_check_at = at;
                    action = Action::Recheck {
                        at,
                        why: format!("repair deferred: the GitHub budget ({limit} calls an hour) is spent"),
                    };
                } else if let Some(v) = self.validator(d.uid) {
                    h = core::broadcast_sent(&h, self.now, &self.desired.fingerprint);
                    to_send.push(v.clone());
                }
            }
            self.state.validators.insert(d.uid, h);
            self.actions.insert(d.uid, (action, 0));
        }
        to_send
    }

    /// Phase 7: send the PAT to `to_send` and take the answers in.
    pub async fn broadcast(&mut self, t: &dyn Transport, to_send: &[Validator], pat: &Pat) {
        let replies = t.broadcast(to_send, pat).await;
        for (v, r) in to_send.iter().zip(&replies) {
            let _span = validator_span(v).entered();
            let obs = BroadcastObs::of(r);
            let outcome = obs.outcome();
            self.calls += budget::CALLS_PER_BROADCAST;
            self.broadcasts.push(outcome);
            let (action, h) =
                core::after_broadcast(&self.policy, &self.desired, &self.history(v), &obs, self.now, t.jitter());
            // uid and address again as the event's own fields: the JSON log puts spans in a list,
            // and a filter on the line's `uid` must keep working
            tracing::info!(uid = v.uid, addr = %v.addr(), result = %outcome, "broadcast");
            if obs == BroadcastObs::Accepted {
                self.accepted.insert(v.uid);
            }
            self.state.validators.insert(v.uid, h);
            self.actions.insert(v.uid, (action, 1));
        }
        self.sent = to_send.to_vec();
    }

    /// Phase 8: confirm the accepted broadcasts with a check, in this pass.
    pub async fn confirm(&mut self, t: &dyn Transport) {
        let refused: Vec<u16> = self.sent.iter().map(|v| v.uid).filter(|u| !self.accepted.contains(u)).collect();
        for uid in refused {
            self.res.refund(uid, budget::CALLS_PER_HELD_CHECK, true);
        }
        let confirm: Vec<Validator> = self.sent.iter().filter(|v| self.accepted.contains(&v.uid)).cloned().collect();
        if confirm.is_empty() {
            return;
        }
        let replies = t.check(&confirm).await;
        for (v, r) in confirm.iter().zip(&replies) {
            let obs = CheckObs::of(r);
            let cost = budget::check_cost(obs.category);
            self.res.settle(v.uid, budget::CALLS_PER_HELD_CHECK, cost, true);
            self.calls += cost;
            self.checks.push(obs.category);
            let (action, h) =
                core::after_check(&self.policy, &self.desired, &self.history(v), &obs, self.now, t.jitter());
            // A confirm that still wants a broadcast waits for the next pass (spacing rule).
            self.state.validators.insert(v.uid, h);
            self.actions.insert(v.uid, (action, 1));
        }
    }

    /// Phase 9: the hourly preflight of our own, when no answer needed one this pass (see
    /// [`Work::telemetry_preflight`]). Planned for in the budget's intervals
    /// ([`budget::PREFLIGHTS_PER_HOUR`]); in an hour whose allowance is spent it waits for a later
    /// round rather than take what is held back for the validators' repairs.
    pub async fn telemetry_preflight(&mut self, t: &dyn Transport, pat: &Pat) {
        if self.preflight.is_some() || !self.state.preflight_due(&self.desired.fingerprint, self.now) {
            return;
        }
        let need = budget::CALLS_PER_PREFLIGHT;
        if !self.res.admit_telemetry(need) {
            return;
        }
        let pf = t.preflight(pat).await;
        self.calls += budget::CALLS_PER_PREFLIGHT;
        self.state.remember_preflight(&self.desired.fingerprint, &pf, self.now);
        self.preflight = Some(pf);
    }

    /// Phase 10: what happened to each validator, alerts, the spend; the state's pass bookkeeping.
    pub fn finish(self, started: Instant) -> PassOutcome {
        let now = self.now;
        self.state.github.record(now, self.calls);
        self.res.record_shares(&mut self.state.github, now);
        let validators: Vec<ValidatorOutcome> = self.selection.eligible.iter().map(|v| self.outcome_of(v)).collect();
        if !validators.is_empty() && validators.iter().all(|v| v.final_category.is_some_and(Category::is_covered)) {
            self.state.last_full_coverage_at = Some(now);
        }
        self.state.last_pass_at = Some(now);
        self.state.updated_at = now;
        let alerts = core::alerts(&self.policy, &self.desired, core::active(&self.state.validators), now);
        self.state.alerts.clone_from(&alerts);
        // Debug only: `reconcile` prints them, the agent logs raised/cleared transitions.
        for a in &alerts {
            tracing::debug!(kind = a.kind.as_str(), uid = ?a.uid, "{}", a.message);
        }
        let github = Spend {
            pass_calls: self.calls,
            last_hour: self.state.github.spent(now),
            budget_per_hour: self.cfg.budget.0,
            configured_interval_s: self.cfg.policy.interval,
            interval_s: self.intervals.steady,
            interval_lossy_s: self.intervals.lossy,
            deferred: self.deferred.len(),
        };
        PassOutcome {
            started_at: now,
            duration: started.elapsed(),
            validators,
            alerts,
            preflight: self.preflight,
            checks: self.checks,
            broadcasts: self.broadcasts,
            planned_broadcasts: self.planned,
            probes: self.probes,
            github,
        }
    }

    fn outcome_of(&self, v: &Validator) -> ValidatorOutcome {
        let now = self.now;
        let h = self.state.validators.get(&v.uid);
        let (action, why, attempts, next) = match self.actions.get(&v.uid) {
            Some((a, n)) => {
                let why = match a {
                    Action::Recheck { why, .. } => Some(why.clone()),
                    Action::GiveUp { reason, .. } => Some(reason.clone()),
                    _ => None,
                };
                // what this pass did: an accepted broadcast (then confirmed) reports as
                // `broadcast`; a refused one as what follows from the refusal
                let taken = if self.cfg.dry_run && *a == Action::Broadcast {
                    ActionTaken::WouldBroadcast
                } else if self.accepted.contains(&v.uid) {
                    ActionTaken::Broadcast
                } else {
                    ActionTaken::of(a)
                };
                (taken, why, *n, h.map(|h| h.next_check_at).unwrap_or_else(|| a.next_at(now)))
            }
            None => {
                let next = h.map(|h| h.not_before.max(h.next_check_at)).unwrap_or(now);
                let why = self.deferred.get(&v.uid).cloned().or_else(|| {
                    h.filter(|_| next > now).map(|h| match h.failures {
                        0 => format!("next check due at {}", core::rfc3339(next)),
                        n => format!("in backoff after {n} failures, until {}", core::rfc3339(next)),
                    })
                });
                (ActionTaken::NotDue, why, 0, next)
            }
        };
        ValidatorOutcome {
            validator: v.clone(),
            checked: self.checked.get(&v.uid).cloned(),
            action,
            why,
            attempts,
            final_category: h.and_then(|h| h.category),
            next_check_at: next,
            failures: h.map(|h| h.failures).unwrap_or(0),
            probe: self.probe_verdicts.get(&v.uid).copied(),
        }
    }
}

mod outcome;
mod work;
pub use outcome::{ActionTaken, PassOutcome, Spend, ValidatorOutcome};
pub use work::{PassConfig, Work};

#[cfg(test)]
mod tests;
