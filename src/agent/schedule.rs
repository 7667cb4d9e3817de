//! The agent's clock arithmetic, pure: when the next round is due (interval plus jitter, or a
//! capped backoff after a round that could not read the validator set), and when each validator's
//! own re-check timer fires (from its persisted [`History`]), so a validator in backoff or waiting
//! for an inconclusive re-check is contacted at its own time, not only at round boundaries.
//!
//! Nothing here reads a clock or sleeps; the main loop passes `now` in and converts the answers to
//! tokio deadlines with [`deadline`].

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::reconcile::core::{History, Secs};
use crate::reconcile::state::MinerState;

/// When the agent should next contact a validator.
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

/// Time to the next round: the interval plus a uniform share of `jitter` (`u` ∈ [0, 1)), so many
/// miners restarted together do not probe validators in lockstep.
pub fn round_delay(interval: Duration, jitter: Duration, u: f64) -> Duration {
    interval + jitter.mul_f64(u.clamp(0.0, 1.0))
}

/// Time to retry a round that could not read the validator set, after `failures` (≥ 1) such rounds
/// in a row: `initial` doubling, capped at `interval` (never later than a normal round).
pub fn round_retry(initial: Duration, interval: Duration, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    initial.saturating_mul(1u32 << exp).min(interval).max(Duration::from_secs(1))
}

/// Unix time now, with sub-second precision.
pub fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The `Instant` at which wall-clock second `at` has begun, given that `now` is `now_unix`. Firing
/// at the start of the second (not a fraction before it) matters: the pass compares whole seconds,
/// and a timer that fired early would find nothing due and spin.
pub fn deadline(at: Secs, now_unix: f64, now: Instant) -> Instant {
    let wait = (at as f64 - now_unix).max(0.0);
    now + Duration::from_secs_f64(wait.min(1e9))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(next: Secs, checked: Option<Secs>) -> History {
        History { next_check_at: next, checked_at: checked, ..History::new("vk") }
    }

    #[test]
    fn timers_follow_the_core_but_never_spin() {
        // (next_check_at, checked_at, min_gap) -> due
        let cases = [
            (0, None, 60, 0),             // never seen: at once
            (1900, Some(1000), 60, 1900), // covered: next interval
            (1030, Some(1000), 60, 1030), // backoff shorter than min_gap: the core wins
            (1000, Some(1000), 60, 1060), // stale (dry-run broadcast): wait min_gap
            (0, Some(1000), 60, 1060),
            (0, Some(1000), 0, 1001), // a zero gap still moves forward
        ];
        for (next, checked, gap, want) in cases {
            assert_eq!(due_at(&h(next, checked), gap), want, "{next} {checked:?} {gap}");
        }
    }

    #[test]
    fn due_and_earliest_over_the_eligible_set() {
        let mut s = MinerState::new("5Hk", 74);
        s.validators.insert(1, h(100, Some(50)));
        s.validators.insert(2, h(300, Some(50)));
        let mut gone = h(10, Some(5));
        gone.left_at = Some(7);
        s.validators.insert(3, gone);
        let eligible: BTreeSet<u16> = [1, 2, 3].into();
        assert_eq!(due_uids(&s, &eligible, 60, 150), [1].into());
        assert_eq!(due_uids(&s, &eligible, 60, 300), [1, 2].into());
        assert_eq!(earliest(&s, &eligible, 60), Some(100));
        let with_new: BTreeSet<u16> = [2, 4].into();
        assert_eq!(earliest(&s, &with_new, 60), Some(0));
        assert_eq!(due_uids(&s, &with_new, 60, 1), [4].into());
        assert_eq!(earliest(&s, &[3].into(), 60), None);
    }

    #[test]
    fn round_delays() {
        let m = Duration::from_secs(60);
        assert_eq!(round_delay(15 * m, 90 * Duration::from_secs(1), 0.0), 15 * m);
        assert_eq!(round_delay(15 * m, 2 * m, 0.5), 16 * m);
        assert_eq!(round_retry(Duration::from_secs(30), 15 * m, 1), Duration::from_secs(30));
        assert_eq!(round_retry(Duration::from_secs(30), 15 * m, 3), 2 * m);
        assert_eq!(round_retry(Duration::from_secs(30), 15 * m, 30), 15 * m);
    }

    #[test]
    fn deadlines_start_at_the_second() {
        let now = Instant::now();
        assert_eq!(deadline(100, 100.5, now), now);
        assert_eq!(deadline(101, 100.25, now), now + Duration::from_millis(750));
    }
}
