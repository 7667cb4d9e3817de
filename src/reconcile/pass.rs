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

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::budget::{self, Budget, Intervals};
use super::core::{self, Action, BroadcastObs, CheckObs, Desired, Policy, Preflight, ProbeObs, ProbeVerdict, Secs};
use super::state::{MinerState, PassKind, Totals};
use super::transport::Transport;
use crate::config::Settings;
use crate::github::{self, PreflightOutcome};
use crate::observe::{BroadcastOutcome, Category};
use crate::secret::Pat;
use crate::validators::{Selection, Validator};
use crate::wire::{CheckFields, Reply};

/// Knobs of a pass.
#[derive(Debug, Clone, PartialEq)]
pub struct PassConfig {
    pub policy: Policy,
    /// GitHub calls per hour patrol may cause on the PAT.
    pub budget: Budget,
    /// Plan only; never send the PAT.
    pub dry_run: bool,
}

impl PassConfig {
    /// From `[reconcile]`.
    pub fn from_settings(settings: &Settings, dry_run: bool) -> PassConfig {
        PassConfig {
            policy: Policy::from(&settings.reconcile),
            budget: Budget(settings.reconcile.github_budget),
            dry_run,
        }
    }
}

/// What to do in a pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Work {
    /// Check only these validators, if due (the agent's timers that fired); `None`: every one.
    pub only: Option<BTreeSet<u16>>,
    /// `reconcile` (and the agent's start, a rotation): every validator not in a backoff window is
    /// due; otherwise a validator is due when its own `next_check_at` has come.
    pub one_shot: bool,
    /// Probe these first; the revived and the restarted are checked too, due or not.
    pub probe: BTreeSet<u16>,
    /// Re-establishing coverage (the agent's start, a rotated PAT): the checks have a repair's
    /// priority in the GitHub budget.
    pub reassert: bool,
    /// Probe the validators that answered a check in this pass but whose axon uuid patrol has not
    /// seen yet: a success answer carries none, so without it a restart before the first sweep
    /// (the agent's start, a newcomer) would look like a first meeting, not a restart.
    pub learn_uuids: bool,
    /// When no answer needed a preflight, run one of our own anyway if the last one of this PAT
    /// is [`PREFLIGHT_REFRESH`](super::state::PREFLIGHT_REFRESH) old, so the PAT's validity and
    /// expiry stay known while every validator is covered (the agent's rounds, a `reconcile`).
    pub telemetry_preflight: bool,
}

impl Work {
    /// `patrol reconcile`: everything not in backoff.
    pub fn one_shot() -> Work {
        Work { one_shot: true, ..Work::default() }
    }

    /// A full pass (every due validator) or one limited to the validators whose timers fired.
    pub fn kind(&self) -> PassKind {
        if self.only.is_some() { PassKind::Recheck } else { PassKind::Full }
    }
}

/// What a pass did about one validator (`reconcile --json` `action`, logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionTaken {
    /// Covered: nothing until the next check.
    None,
    /// The PAT was sent and accepted (then confirmed with a check).
    Broadcast,
    /// Checked again later (backoff, inconclusive, a refused broadcast, spacing, budget).
    Recheck,
    /// Terminal until the PAT changes.
    GiveUp,
    /// Dry run: the PAT would have been sent.
    WouldBroadcast,
    /// Not contacted this pass (its timer has not fired, in backoff, or deferred by the budget).
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

/// What a pass did about one eligible validator.
#[derive(Debug, Clone)]
pub struct ValidatorOutcome {
    pub validator: Validator,
    /// What the first check this pass said, read (`None`: not contacted for a check).
    pub checked: Option<crate::observe::CheckReading>,
    pub action: ActionTaken,
    /// Why (for recheck / give-up / backoff / budget).
    pub why: Option<String>,
    /// Broadcasts sent to it this pass.
    pub attempts: u32,
    /// Category after the pass (confirm check, or the last known one).
    pub final_category: Option<Category>,
    pub next_check_at: Secs,
    pub failures: u32,
    /// What a probe this pass said, if it was probed.
    pub probe: Option<ProbeVerdict>,
}

/// GitHub calls on the PAT: this pass, the last hour, the budget and the intervals it implies.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Spend {
    /// Estimated calls this pass caused.
    pub pass_calls: u32,
    /// Estimated calls in the hour up to the end of the pass (this pass included).
    pub last_hour: u32,
    /// Calls per hour allowed (`null`: unlimited).
    pub budget_per_hour: Option<u32>,
    /// `[reconcile] interval`, seconds.
    pub configured_interval_s: Secs,
    /// The routine interval the budget allows (≥ the configured one), seconds.
    pub interval_s: Secs,
    /// The same for validators that lost the PAT lately.
    pub interval_lossy_s: Secs,
    /// Checks deferred this pass to stay within the budget.
    pub deferred: usize,
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
    /// Probes sent this pass.
    pub probes: usize,
    pub github: Spend,
}

impl PassOutcome {
    /// Final coverage categories with stakes (validators never observed count as no_response).
    pub fn final_rows(&self) -> impl Iterator<Item = (Category, f64)> + '_ {
        self.validators.iter().map(|v| (v.final_category.unwrap_or(Category::NoResponse), v.validator.stake))
    }

    /// Restarts and revivals the probes found this pass.
    pub fn restarts(&self) -> usize {
        self.validators.iter().filter(|v| v.probe.is_some_and(ProbeVerdict::is_restart)).count()
    }

    /// Add what this pass did to the lifetime counts.
    fn tally(&self, totals: &mut Totals, kind: PassKind) {
        match kind {
            PassKind::Full => totals.passes += 1,
            PassKind::Recheck => totals.rechecks += 1,
        }
        for c in &self.checks {
            *totals.checks.entry(*c).or_default() += 1;
        }
        for b in &self.broadcasts {
            *totals.broadcasts.entry(*b).or_default() += 1;
        }
        totals.probes += self.probes as u64;
        totals.restarts += self.restarts() as u64;
    }
}

/// Saves the state mid-pass: called once the plan marks validators as broadcast to and before the
/// PAT leaves, so a process killed while broadcasting restarts knowing it sent.
pub type Checkpoint<'a> = &'a (dyn Fn(&MinerState) + Send + Sync);

/// Run one pass over `selection.eligible`. Updates `state`.
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
    checked: BTreeMap<u16, Reply<CheckFields>>,
    observations: BTreeMap<u16, CheckObs>,
    checks: Vec<Category>,
    preflight: Option<github::Preflight>,
    /// `(action, broadcasts sent)` per validator decided on.
    actions: BTreeMap<u16, (Action, u32)>,
    planned: Vec<u16>,
    sent: Vec<Validator>,
    broadcasts: Vec<BroadcastOutcome>,
    accepted: BTreeSet<u16>,
    /// Estimated GitHub calls: spent this pass, and reserved (spent + admitted but not yet made).
    calls: u32,
    reserved: u32,
    /// Priority calls per validator this hour (the ledger's, plus this pass's reservations): what
    /// its [`budget::SHARE`] has used.
    share_used: BTreeMap<u16, u32>,
    /// This pass's priority reservations per validator (recorded in the ledger at the end).
    share_pass: BTreeMap<u16, u32>,
    /// What each admitted check was estimated to cost, and whether it was priority work (refunded
    /// when the answer costs less).
    estimates: BTreeMap<u16, (u32, bool)>,
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
        if state.first_fingerprint.is_none() {
            state.first_fingerprint = Some(fp.clone());
        }
        if state.fingerprint.as_deref() != Some(fp.as_str()) {
            if state.fingerprint.is_some() {
                tracing::info!(pat = %pat.redacted(), "PAT changed; every validator will get the new one once");
            }
            state.fingerprint = Some(fp.clone());
        }
        let desired = Desired {
            fingerprint: fp,
            adopt_fingerprint: state.first_fingerprint.clone(),
            preflight: Preflight::NotRun,
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
        let reserved = state.github.spent(now);
        let share_used = eligible
            .iter()
            .map(|(uid, _)| (*uid, state.github.share_spent(*uid, now)))
            .filter(|(_, n)| *n > 0)
            .collect();
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
            reserved,
            share_used,
            share_pass: BTreeMap::new(),
            estimates: BTreeMap::new(),
        }
    }

    /// What is left of validator `uid`'s share this hour.
    fn unspent(&self, uid: u16) -> u32 {
        budget::SHARE.saturating_sub(self.share_used.get(&uid).copied().unwrap_or(0))
    }

    /// What is held back for every validator's unspent share.
    fn held(&self) -> u32 {
        self.eligible.iter().fold(0u32, |a, (u, _)| a.saturating_add(self.unspent(*u)))
    }

    /// Admit `cost` calls of priority work (a triggered or first check, a re-assertion, a repair,
    /// the preflight a repair needs) at validator `uid`, within the repair allowance: from what is
    /// left of its own share first, the rest from the allowance beyond every validator's unspent
    /// share — which is held back, so one validator's churn can never spend another's repair.
    fn admit_priority(&mut self, uid: u16, cost: u32) -> bool {
        if cost == 0 {
            return true;
        }
        // What is left of its own share is always there (the share is one re-assertion an hour,
        // so spending the allowance did not plan — a check that cost more than estimated, `patrol
        // check` runs — can delay a repair by an hour at most, never starve it); the rest comes
        // from the allowance beyond what is held back for the others.
        let beyond = cost.saturating_sub(self.unspent(uid));
        if beyond > 0 && self.reserved.saturating_add(self.held()).saturating_add(beyond) > self.repair_limit() {
            return false;
        }
        self.reserved = self.reserved.saturating_add(cost);
        *self.share_used.entry(uid).or_default() += cost;
        *self.share_pass.entry(uid).or_default() += cost;
        true
    }

    /// Give back calls reserved for `uid` that were not spent (an answer that cost less).
    fn refund(&mut self, uid: u16, calls: u32, priority: bool) {
        self.reserved = self.reserved.saturating_sub(calls);
        if priority {
            for m in [&mut self.share_used, &mut self.share_pass] {
                if let Some(n) = m.get_mut(&uid) {
                    *n = n.saturating_sub(calls);
                }
            }
        }
    }

    /// A call to `uid` estimated at `estimate` cost `actual`: give back the difference, or count
    /// what it cost beyond (a validator believed to have lost our PAT that holds one again).
    fn settle(&mut self, uid: u16, estimate: u32, actual: u32, priority: bool) {
        if actual <= estimate {
            self.refund(uid, estimate - actual, priority);
            return;
        }
        let more = actual - estimate;
        self.reserved = self.reserved.saturating_add(more);
        if priority {
            *self.share_used.entry(uid).or_default() += more;
            *self.share_pass.entry(uid).or_default() += more;
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

    /// Phase 3: the validators to check now — due by their timers (within `work.only`) or
    /// triggered by a probe — admitted within the GitHub budget: free checks always, triggered
    /// ones and first checks up to the repair limit, routine ones up to
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
            let timer = work.only.as_ref().is_none_or(|o| o.contains(&v.uid))
                && h.is_none_or(|h| core::due(h, self.now, work.one_shot));
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
            let limit = if priority { self.repair_limit() } else { self.cfg.budget.routine_limit() };
            let admitted = if priority {
                self.admit_priority(uid, c.cost)
            } else if c.cost == 0 || self.reserved.saturating_add(c.cost) <= limit {
                self.reserved = self.reserved.saturating_add(c.cost);
                true
            } else {
                false
            };
            if admitted {
                self.estimates.insert(uid, (c.cost, priority));
                due.push(c.v.clone());
                continue;
            }
            let at = self.free_at(c.cost, limit);
            let mut h = self.history(c.v);
            h.next_check_at = h.next_check_at.max(at);
            let mut why =
                format!("deferred to stay within the GitHub budget ({} of {limit} calls this hour)", self.reserved);
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

    /// What repairs may fill the hour up to on this subnet ([`Budget::repair_limit`]).
    fn repair_limit(&self) -> u32 {
        self.cfg.budget.repair_limit(self.eligible.len())
    }

    /// When `need` more calls fit under `limit`, given what this pass has reserved so far.
    fn free_at(&self, need: u32, limit: u32) -> Secs {
        let pending = self.reserved.saturating_sub(self.state.github.spent(self.now));
        self.state.github.free_at(self.now, need.saturating_add(pending), limit).max(self.now + 1)
    }

    /// Phase 4: check `due`.
    pub async fn check(&mut self, t: &dyn Transport, due: &[Validator]) {
        if due.is_empty() {
            return;
        }
        let replies = t.check(due).await;
        for (v, r) in due.iter().zip(replies) {
            let obs = CheckObs::of(&r);
            let cost = budget::check_cost(obs.category);
            if let Some((estimate, priority)) = self.estimates.get(&v.uid).copied() {
                self.settle(v.uid, estimate, cost, priority);
            }
            self.calls += cost;
            self.checks.push(obs.category);
            self.observations.insert(v.uid, obs);
            self.checked.insert(v.uid, r);
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
            self.desired.preflight = Preflight::Valid;
            return;
        }
        let (need, limit) = (budget::CALLS_PER_PREFLIGHT, self.repair_limit());
        // Charged to the share of a validator that needs the PAT (or the allowance beyond).
        let wanting: Vec<u16> = self
            .observations
            .iter()
            .filter(|(uid, obs)| {
                self.state.validators.get(uid).is_none_or(|h| core::wants_broadcast(&self.desired, h, obs))
            })
            .map(|(uid, _)| *uid)
            .collect();
        if !wanting.into_iter().any(|uid| self.admit_priority(uid, need)) {
            self.desired.preflight = Preflight::Transient(format!(
                "the GitHub budget ({limit} calls an hour) is spent until {}",
                core::rfc3339(self.free_at(need, limit))
            ));
            return;
        }
        let pf = t.preflight(pat).await;
        self.calls += need;
        self.state.remember_preflight(&self.desired.fingerprint, &pf, self.now);
        self.desired.preflight = match &pf.outcome {
            PreflightOutcome::Valid { .. } => Preflight::Valid,
            PreflightOutcome::Transient { reason, .. } => Preflight::Transient(reason.clone()),
            PreflightOutcome::Invalid { reason } => Preflight::Invalid(reason.clone()),
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
                let limit = self.repair_limit();
                if self.cfg.dry_run {
                    self.planned.push(d.uid);
                    // Nothing was sent, so nothing moved the validator's next check: without this
                    // it stays in the past and `patrol run --dry-run` would re-check it every tick.
                    h.next_check_at = self.now + self.policy.interval;
                } else if !self.admit_priority(d.uid, budget::CALLS_PER_REPAIR) {
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
            let obs = BroadcastObs::of(r);
            let outcome = obs.outcome();
            self.calls += budget::CALLS_PER_BROADCAST;
            self.broadcasts.push(outcome);
            let (action, h) =
                core::after_broadcast(&self.policy, &self.desired, &self.history(v), &obs, self.now, t.jitter());
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
            self.refund(uid, budget::CALLS_PER_HELD_CHECK, true);
        }
        let confirm: Vec<Validator> = self.sent.iter().filter(|v| self.accepted.contains(&v.uid)).cloned().collect();
        if confirm.is_empty() {
            return;
        }
        let replies = t.check(&confirm).await;
        for (v, r) in confirm.iter().zip(&replies) {
            let obs = CheckObs::of(r);
            let cost = budget::check_cost(obs.category);
            self.settle(v.uid, budget::CALLS_PER_HELD_CHECK, cost, true);
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
        if self.reserved.saturating_add(self.held()).saturating_add(need) > self.repair_limit() {
            return;
        }
        self.reserved = self.reserved.saturating_add(need);
        let pf = t.preflight(pat).await;
        self.calls += budget::CALLS_PER_PREFLIGHT;
        self.state.remember_preflight(&self.desired.fingerprint, &pf, self.now);
        self.preflight = Some(pf);
    }

    /// Phase 10: what happened to each validator, alerts, the spend; the state's pass bookkeeping.
    pub fn finish(self, started: Instant) -> PassOutcome {
        let now = self.now;
        self.state.github.record(now, self.calls);
        for (uid, calls) in &self.share_pass {
            self.state.github.record_share(*uid, now, *calls);
        }
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
            checked: self.checked.get(&v.uid).map(crate::observe::CheckReading::of),
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

#[cfg(test)]
mod tests;
