//! What a liveness probe says about a validator, and the rule that turns it into a check (at most
//! [`MAX_TRIGGERS`](super::MAX_TRIGGERS) an hour).

use super::{History, MAX_TRIGGERS, ProbeObs, Secs, TRIGGER_WINDOW};
use crate::observe::Silence;

/// What a liveness probe says about a validator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeVerdict {
    /// Nothing new: still answering with the same uuid, or still silent.
    Quiet,
    /// It answers again after `silent_for` seconds of silence: check it now (its store may have
    /// come back empty).
    Revived { silent_for: Secs },
    /// It answers with a different process uuid: it restarted (perhaps faster than the probe
    /// cadence, so no silence was seen). Check it now.
    Restarted,
    /// It restarted (or answers again) once more than [`MAX_TRIGGERS`] an hour: churning since
    /// `since`. Not checked for it; its routine interval stands.
    Churning { since: Secs },
    /// It stopped answering.
    WentSilent(Silence),
}

impl ProbeVerdict {
    /// The validator should be checked in this very pass.
    pub fn wants_check(self) -> bool {
        matches!(self, ProbeVerdict::Revived { .. } | ProbeVerdict::Restarted)
    }

    /// A restart or revival was seen (acted on or not).
    pub fn is_restart(self) -> bool {
        matches!(self, ProbeVerdict::Revived { .. } | ProbeVerdict::Restarted | ProbeVerdict::Churning { .. })
    }
}

/// Decide after a probe, updating `h` in place (a sweep probes every validator every half minute:
/// no copy of the history for a probe that changes nothing). A revived or restarted validator is
/// due at once and out of backoff: the backoff was about its silence, which is over, and a restart
/// is exactly when its store may have been lost (the common loss: containers recreated without
/// their volume) — at most [`MAX_TRIGGERS`] times an hour; beyond that it is churning
/// ([`ProbeVerdict::Churning`]) and keeps its routine schedule and backoff.
pub fn after_probe(h: &mut History, obs: &ProbeObs, now: Secs) -> ProbeVerdict {
    h.last_probe_at = Some(now);
    match obs {
        ProbeObs::Alive { axon_uuid } => {
            let restarted = matches!((axon_uuid, &h.axon_uuid), (Some(new), Some(old)) if new != old);
            let mut verdict = match h.silent {
                Some(s) => ProbeVerdict::Revived { silent_for: now.saturating_sub(s.since) },
                None if restarted => ProbeVerdict::Restarted,
                None => ProbeVerdict::Quiet,
            };
            if h.axon_uuid.is_none() || restarted {
                h.saw(axon_uuid.as_deref(), None, now);
            } else {
                h.silent = None;
            }
            if verdict.wants_check() {
                h.triggers.retain(|t| *t <= now && now - *t < TRIGGER_WINDOW);
                if h.triggers.len() >= MAX_TRIGGERS {
                    verdict = ProbeVerdict::Churning { since: *h.churning_since.get_or_insert(now) };
                } else {
                    h.triggers.push(now);
                    h.churning_since = None;
                    h.clear_failures();
                    h.next_check_at = now;
                }
            }
            verdict
        }
        ProbeObs::Silent(kind) => {
            let first = h.silent.is_none();
            h.saw(None, Some(*kind), now);
            if first { ProbeVerdict::WentSilent(*kind) } else { ProbeVerdict::Quiet }
        }
    }
}
