//! What runs when — the agent's scheduler, pure. The main loop (real time) and the simulation
//! (virtual time) both ask it; nothing here reads a clock or sleeps: `now` is passed in, answers
//! are unix seconds, and the main loop turns them into tokio deadlines.
//!
//! Three kinds of wake-up:
//! - a **round** every `interval` (+ up to `jitter`): re-read the validator set, then pass every
//!   miner over the validators whose own timer has come (after a round that could not read the
//!   set: a capped backoff instead);
//! - a validator's **timer** (`next_check_at` from its persisted history: its backoff, an
//!   inconclusive re-check, its routine interval as the GitHub budget stretches it);
//! - a **probe sweep** every `probe_interval` (+ up to `probe_jitter`): the liveness probe to every
//!   validator that answers, and to the silent ones at that same short cadence for
//!   `fast_probe_refused_for` (a refused port: a restart usually ends soon) or
//!   `fast_probe_timeout_for` (a black hole may be gone), then every `backoff_max`. A probe that
//!   finds a validator answering again, or answering with a new process uuid, gets it checked (and
//!   repaired) in the same pass ([`crate::reconcile::pass::Pass::probe`]).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::config::ReconcileSettings;
use crate::observe::Silence;
use crate::reconcile::core::{self, Due, History, Secs};
use crate::reconcile::pass::Work;
use crate::reconcile::state::MinerState;

/// The probe cadence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeCadence {
    pub interval: Secs,
    pub jitter: Secs,
    pub fast_refused_for: Secs,
    pub fast_timeout_for: Secs,
    /// A validator silent longer than its fast window is probed this often.
    pub slow_every: Secs,
}

/// The scheduler's settings, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleConfig {
    pub interval: Secs,
    pub jitter: Secs,
    /// The first retry of a round that could not read the validator set, and the shortest time
    /// between two contacts of one validator when its timer lies in the past.
    pub backoff_initial: Secs,
    /// `None`: no probes (the fixed-interval scheduler).
    pub probe: Option<ProbeCadence>,
}

impl From<&ReconcileSettings> for ScheduleConfig {
    fn from(r: &ReconcileSettings) -> ScheduleConfig {
        let s = |d: Duration| d.as_secs();
        ScheduleConfig {
            interval: s(r.interval).max(1),
            jitter: s(r.jitter),
            backoff_initial: s(r.backoff_initial).max(1),
            probe: r.probe_interval.map(|p| ProbeCadence {
                interval: s(p).max(1),
                jitter: s(r.probe_jitter),
                fast_refused_for: s(r.fast_probe_refused_for),
                fast_timeout_for: s(r.fast_probe_timeout_for),
                slow_every: s(r.backoff_max).max(1),
            }),
        }
    }
}

/// The agent's timers (one per agent; validator timers live in each miner's state).
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduler {
    cfg: ScheduleConfig,
    next_round: Secs,
    round_failures: u32,
    next_sweep: Option<Secs>,
}

impl Scheduler {
    /// A scheduler whose first round is due at `now`; the first sweep follows one probe interval
    /// later (the round checks everything first).
    pub fn new(cfg: ScheduleConfig, now: Secs) -> Scheduler {
        let next_sweep = cfg.probe.map(|p| now.saturating_add(p.interval));
        Scheduler { cfg, next_round: now, round_failures: 0, next_sweep }
    }

    /// Take new settings (a reload), keeping the timers.
    pub fn reconfigure(&mut self, cfg: ScheduleConfig, now: Secs) {
        self.next_sweep = match (cfg.probe, self.next_sweep) {
            (None, _) => None,
            (Some(_), Some(t)) => Some(t),
            (Some(p), None) => Some(now.saturating_add(p.interval)),
        };
        self.cfg = cfg;
    }

    /// The settings in force.
    pub fn config(&self) -> &ScheduleConfig {
        &self.cfg
    }

    /// When the next round is due.
    pub fn next_round(&self) -> Secs {
        self.next_round
    }

    /// A round is due.
    pub fn round_due(&self, now: Secs) -> bool {
        now >= self.next_round
    }

    /// Run a round at once (a reload, a rotated PAT).
    pub fn round_now(&mut self, now: Secs) {
        self.next_round = self.next_round.min(now);
    }

    /// A round starts: until it reports, the next one is an interval (+ jitter `u` ∈ [0, 1)) away.
    pub fn round_started(&mut self, now: Secs, u: f64) {
        self.next_round = now.saturating_add(round_delay(self.cfg.interval, self.cfg.jitter, u));
    }

    /// The round read the validator set.
    pub fn round_succeeded(&mut self) {
        self.round_failures = 0;
    }

    /// The round could not read the validator set: retry after a capped backoff. Returns the delay.
    pub fn round_failed(&mut self, now: Secs) -> Secs {
        self.round_failures = self.round_failures.saturating_add(1);
        let retry = round_retry(self.cfg.backoff_initial, self.cfg.interval, self.round_failures);
        self.next_round = now.saturating_add(retry);
        retry
    }

    /// A probe sweep is due.
    pub fn sweep_due(&self, now: Secs) -> bool {
        self.next_sweep.is_some_and(|t| now >= t)
    }

    /// A sweep starts: the next one is a probe interval (+ jitter `u`) away.
    pub fn sweep_started(&mut self, now: Secs, u: f64) {
        if let Some(p) = self.cfg.probe {
            self.next_sweep = Some(now.saturating_add(round_delay(p.interval, p.jitter, u)));
        }
    }

    /// What one miner's pass should do at `now`: the validators whose timers fired, and — when a
    /// sweep is due — the ones to probe. `round`: the checks of a round (everything due; `one_shot`
    /// at start-up and after a rotation).
    pub fn work(&self, state: &MinerState, eligible: &BTreeSet<u16>, now: Secs, round: Option<bool>) -> Work {
        let probe = match (self.cfg.probe, self.sweep_due(now)) {
            (Some(p), true) => probes_due(state, eligible, self.cfg.backoff_initial, &p, now),
            _ => BTreeSet::new(),
        };
        let learn_uuids = self.cfg.probe.is_some();
        match round {
            // a round that must look at everything (start-up, rotation) re-asserts the PAT
            // a round also keeps the PAT's preflight fresh (hourly)
            Some(one_shot) => {
                Work { only: None, one_shot, probe, reassert: one_shot, learn_uuids, telemetry_preflight: true }
            }
            None => Work {
                only: Some(due_uids(state, eligible, self.cfg.backoff_initial, now)),
                one_shot: false,
                probe,
                reassert: false,
                learn_uuids,
                telemetry_preflight: false,
            },
        }
    }

    /// The earliest of the next round, the next sweep and the validator timers of every miner that
    /// nothing blocks.
    pub fn next_wake(&self, miners: &[PlanInput<'_>], eligible: &BTreeSet<u16>) -> Secs {
        let mut wake = self.next_round;
        if let Some(t) = self.next_sweep {
            wake = wake.min(t);
        }
        for m in miners.iter().filter(|m| !m.blocked) {
            if let Some(t) = earliest(m.state, eligible, self.cfg.backoff_initial) {
                wake = wake.min(t);
            }
        }
        wake
    }

    /// The wake-up plan: what to start at `now` — the agent's main loop and the simulation both
    /// execute it, so neither holds a copy of this logic. Pure: the only thing it asks the caller is
    /// `pat(i)`, the fingerprint of miner `i`'s PAT read now (`None`: it cannot be read), and only
    /// for the miners a pass would use (at most once each).
    ///
    /// - A **round** when one is due: a pass for every miner whose PAT reads (a miner with a
    ///   problem too: the round is what finds it over), checking everything due; one that re-asserts
    ///   everywhere (`one_shot`) for a miner at start-up or with a rotated PAT.
    /// - Otherwise, on the last round's validator set (`eligible`; `None`: no round has read one
    ///   yet, so nothing else can run), a **re-check**: a pass for each miner that nothing blocks
    ///   whose validator timers fired or that a due sweep probes. A rotated PAT found there makes it
    ///   a round instead (a rotation the file watcher did not report).
    ///
    /// [`Scheduler::started`] records what the plan starts.
    pub fn plan(
        &self,
        now: Secs,
        miners: &[PlanInput<'_>],
        eligible: Option<&BTreeSet<u16>>,
        pat: impl FnMut(usize) -> Option<String>,
    ) -> Plan {
        let mut pats = Pats { read: vec![None; miners.len()], pat };
        let none = BTreeSet::new();
        if self.round_due(now) {
            return self.round_plan(now, miners, eligible.unwrap_or(&none), &mut pats);
        }
        let Some(eligible) = eligible else { return Plan::default() };
        let mut passes = Vec::new();
        for (index, m) in miners.iter().enumerate() {
            // Deliberate: with a problem (e.g. `no_validator_source`: neither the chain nor a cache
            // younger than `metagraph_max_age` could be read) no re-check, probe or repair runs on
            // the old set: the PAT goes only to validators known eligible within that age.
            if m.blocked {
                continue;
            }
            let work = self.work(m.state, eligible, now, None);
            if work.only.as_ref().is_none_or(BTreeSet::is_empty) && work.probe.is_empty() {
                continue;
            }
            // An unreadable PAT: no pass (the caller makes it the miner's problem).
            let Some(rotated) = pats.get(index).map(|fp| m.state.rotated(fp)) else { continue };
            if rotated {
                return self.round_plan(now, miners, eligible, &mut pats);
            }
            passes.push(Planned { index, work, rotated });
        }
        let job = (!passes.is_empty()).then_some(Kind::Recheck);
        Plan { job, sweep: self.sweep_due(now), passes }
    }

    fn round_plan(
        &self,
        now: Secs,
        miners: &[PlanInput<'_>],
        eligible: &BTreeSet<u16>,
        pats: &mut Pats<impl FnMut(usize) -> Option<String>>,
    ) -> Plan {
        let mut passes = Vec::new();
        for (index, m) in miners.iter().enumerate() {
            let Some(fp) = pats.get(index) else { continue };
            let rotated = m.state.rotated(fp);
            let work = self.work(m.state, eligible, now, Some(m.force_full || rotated));
            passes.push(Planned { index, work, rotated });
        }
        Plan { job: Some(Kind::Round), sweep: self.sweep_due(now), passes }
    }

    /// Record what `plan` starts at `now`: a round puts the next one an interval (+ jitter) away
    /// (until it reports: a failure shortens it), a sweep the next one a probe interval (+ jitter).
    /// `u` draws the jitters, ∈ [0, 1), the round's first.
    pub fn started(&mut self, plan: &Plan, now: Secs, mut u: impl FnMut() -> f64) {
        if plan.job == Some(Kind::Round) {
            self.round_started(now, u());
        }
        if plan.sweep {
            self.sweep_started(now, u());
        }
    }
}

/// One miner as the wake-up plan sees it.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub state: &'a MinerState,
    /// A problem keeps it from passes (no validator source, not registered, no PAT): its validator
    /// timers do not run; a round still tries it.
    pub blocked: bool,
    /// Its next round re-asserts the PAT everywhere (the agent's start-up).
    pub force_full: bool,
}

/// A round (a fresh validator set, then one pass per miner) or a re-check (passes on the last
/// round's set, limited to validators whose timers fired and to a sweep's probes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Round,
    Recheck,
}

/// What a wake-up starts ([`Scheduler::plan`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The job to start (`None`: nothing is due).
    pub job: Option<Kind>,
    /// A probe sweep starts (its probes are in the passes' work).
    pub sweep: bool,
    /// One pass per miner taking part, in miner order.
    pub passes: Vec<Planned>,
}

/// One miner's pass in a [`Plan`].
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// The miner's index in the list the plan was given.
    pub index: usize,
    pub work: Work,
    /// Its PAT is not the one its last pass used.
    pub rotated: bool,
}

/// The PAT fingerprints a plan has asked for (each miner's at most once).
struct Pats<F> {
    read: Vec<Option<Option<String>>>,
    pat: F,
}

impl<F: FnMut(usize) -> Option<String>> Pats<F> {
    fn get(&mut self, index: usize) -> Option<&str> {
        let pat = &mut self.pat;
        self.read[index].get_or_insert_with(|| pat(index)).as_deref()
    }
}

/// When the agent next checks a validator on its own timer: [`core::due_at`], spaced by `min_gap`.
pub fn due_at(h: &History, min_gap: Secs) -> Secs {
    core::due_at(h, Due::Spaced { min_gap })
}

/// The eligible validators (of `eligible`) whose timers have fired at `now`.
pub fn due_uids(state: &MinerState, eligible: &BTreeSet<u16>, min_gap: Secs, now: Secs) -> BTreeSet<u16> {
    eligible
        .iter()
        .copied()
        .filter(|uid| state.validators.get(uid).is_none_or(|h| h.left_at.is_none() && due_at(h, min_gap) <= now))
        .collect()
}

/// The earliest timer among `eligible` (a validator with no history is due at once).
pub fn earliest(state: &MinerState, eligible: &BTreeSet<u16>, min_gap: Secs) -> Option<Secs> {
    eligible
        .iter()
        .map(|uid| match state.validators.get(uid) {
            Some(h) if h.left_at.is_none() => due_at(h, min_gap),
            Some(_) => Secs::MAX,
            None => 0,
        })
        .min()
        .filter(|&t| t != Secs::MAX)
}

/// Whether a sweep at `now` probes this validator: every sweep while it answers; while silent, at
/// the sweep cadence for its fast window, then every `slow_every`.
pub fn probe_wanted(h: &History, p: &ProbeCadence, now: Secs) -> bool {
    let Some(s) = h.silent else { return true };
    let fast_for = match s.kind {
        Silence::Refused | Silence::Dropped => p.fast_refused_for,
        Silence::Timeout => p.fast_timeout_for,
    };
    now.saturating_sub(s.since) <= fast_for || h.last_probe_at.is_none_or(|t| now >= t.saturating_add(p.slow_every))
}

/// The validators a sweep at `now` probes: those patrol has met, that are still eligible, that
/// [`probe_wanted`] says so for, and whose check is not due anyway (a check answers the same
/// question, and more).
pub fn probes_due(
    state: &MinerState,
    eligible: &BTreeSet<u16>,
    min_gap: Secs,
    p: &ProbeCadence,
    now: Secs,
) -> BTreeSet<u16> {
    eligible
        .iter()
        .copied()
        .filter(|uid| {
            state
                .validators
                .get(uid)
                .is_some_and(|h| h.left_at.is_none() && due_at(h, min_gap) > now && probe_wanted(h, p, now))
        })
        .collect()
}

/// Time to the next round: the interval plus a uniform share of `jitter` (`u` ∈ [0, 1)), so many
/// miners restarted together do not probe validators in lockstep.
pub fn round_delay(interval: Secs, jitter: Secs, u: f64) -> Secs {
    interval.saturating_add((jitter as f64 * u.clamp(0.0, 1.0)) as Secs)
}

/// Time to retry a round that could not read the validator set, after `failures` (≥ 1) such rounds
/// in a row: `initial` doubling, capped at `interval` (never later than a normal round).
pub fn round_retry(initial: Secs, interval: Secs, failures: u32) -> Secs {
    let exp = failures.saturating_sub(1).min(20);
    initial.saturating_mul(1u64 << exp).min(interval).max(1)
}

#[cfg(test)]
mod tests;
