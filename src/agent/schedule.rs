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
use crate::reconcile::core::{History, Secs};
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

    /// The earliest of the next round, the next sweep and every miner's validator timers.
    pub fn next_wake<'a>(&self, states: impl IntoIterator<Item = &'a MinerState>, eligible: &BTreeSet<u16>) -> Secs {
        let mut wake = self.next_round;
        if let Some(t) = self.next_sweep {
            wake = wake.min(t);
        }
        for s in states {
            if let Some(t) = earliest(s, eligible, self.cfg.backoff_initial) {
                wake = wake.min(t);
            }
        }
        wake
    }
}

/// When the agent should next check a validator.
///
/// Normally the decision core's `next_check_at`. But the core leaves `next_check_at` untouched
/// when its decision was a broadcast that did not happen in that pass (a dry run, or a confirm check
/// that still wants one and waits for the spacing rule), so it can lie in the past right after a
/// contact. Then the validator waits `min_gap` after that contact instead of being re-checked in a
/// tight loop.
pub fn due_at(h: &History, min_gap: Secs) -> Secs {
    match h.checked_at {
        Some(checked) if h.next_check_at <= checked => checked.saturating_add(min_gap.max(1)),
        _ => h.next_check_at,
    }
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
