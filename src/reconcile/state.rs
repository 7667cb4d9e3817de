//! Per-miner reconciler state on disk: per-validator history, backoff, accepted fingerprints,
//! first-uncovered times. JSON, written atomically (temp + fsync + rename), mode 0600, no secrets
//! (only PAT fingerprints).
//!
//! A corrupt file, one with an unknown `version`, or one larger than [`STATE_CAP`], is moved aside
//! (`<name>.corrupt-<unix>`) with a warning and patrol starts fresh: losing history costs at most one
//! extra check round, crashing would cost coverage. What patrol cannot read at all — a FIFO, device
//! or directory at the state path, a file it has no permission to read, a symlink loop — is never
//! moved, replaced or deleted: taking the lock ([`StateFile::try_lock`], which every writer does
//! first) fails with an error naming it (exit 78), and a dry run (which only reads) starts from an
//! empty state with a warning. An exclusive advisory lock on `<name>.lock` keeps two patrol
//! processes (a cron `reconcile` while `patrol run` is up) from interleaving their writes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::budget::Ledger;
use super::core::{Alert, History, Secs};
use crate::github::{PreflightOutcome, PreflightReport};
use crate::observe::{BroadcastOutcome, Category};

/// Current state-file format.
pub const VERSION: u32 = 1;

/// Everything patrol remembers about one miner on one netuid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinerState {
    pub version: u32,
    pub hotkey: String,
    pub netuid: u16,
    /// Fingerprint of the first PAT patrol saw for this miner (adoption, see `core::Desired`).
    pub first_fingerprint: Option<String>,
    /// Fingerprint of the PAT used in the last pass.
    pub fingerprint: Option<String>,
    pub validators: BTreeMap<u16, History>,
    pub last_pass_at: Option<Secs>,
    pub last_full_coverage_at: Option<Secs>,
    pub updated_at: Secs,
    /// Estimated GitHub calls on the PAT, last hour (shared by `reconcile` and `run`).
    #[serde(default)]
    pub github: Ledger,
    /// What the last preflight said, and of which PAT: a valid verdict is reused for
    /// [`PREFLIGHT_REUSE`] instead of two more GitHub calls per repair, and every run exports it
    /// (the PAT's validity and expiry must reach the metrics of a timer's `reconcile` too).
    #[serde(default)]
    pub preflight: Option<PreflightRecord>,
    /// Lifetime counts behind the `*_total` metrics: kept here so that the counters of one-shot
    /// runs (`reconcile --metrics-file` from a timer) continue from run to run instead of
    /// restarting at 1, and an agent restart does not reset them either.
    #[serde(default)]
    pub totals: Totals,
    /// What the notifications have told the miner (and what is still to be delivered), so a
    /// `reconcile` from cron sends on transitions only and an agent restart does not announce
    /// everything again. Its schema is the `notify` module's (above this one in the layering),
    /// kept here as JSON; absent in state files written before notifications.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub notify: serde_json::Value,
    /// The alerts the last pass raised (`patrol status` shows them).
    #[serde(default)]
    pub alerts: Vec<Alert>,
}

/// The verdict of a preflight, without its reason text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantArray)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum PreflightVerdict {
    Valid,
    Transient,
    Invalid,
}

impl PreflightVerdict {
    /// All verdicts (metric label values).
    pub const ALL: &[PreflightVerdict] = <PreflightVerdict as strum::VariantArray>::VARIANTS;

    /// The verdict of an outcome.
    pub fn of(outcome: &PreflightOutcome) -> PreflightVerdict {
        match outcome {
            PreflightOutcome::Valid { .. } => PreflightVerdict::Valid,
            PreflightOutcome::Transient { .. } => PreflightVerdict::Transient,
            PreflightOutcome::Invalid { .. } => PreflightVerdict::Invalid,
        }
    }

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The last preflight of a PAT (no secret: a fingerprint, a verdict and what GitHub's headers said).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreflightRecord {
    /// Fingerprint of the PAT it was about.
    pub fingerprint: String,
    pub at: Secs,
    pub verdict: PreflightVerdict,
    /// When GitHub says the PAT expires (unix seconds); kept from an earlier answer about the same
    /// PAT when a transient failure did not say.
    pub expiry: Option<i64>,
    /// GitHub's core rate limit left for the PAT.
    pub rate_remaining: Option<u64>,
}

/// Lifetime counts (see [`MinerState::totals`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Full passes (a `reconcile`, an agent round).
    pub passes: u64,
    /// Agent passes limited to validators whose own timer fired.
    pub rechecks: u64,
    pub checks: BTreeMap<Category, u64>,
    pub broadcasts: BTreeMap<BroadcastOutcome, u64>,
    pub probes: u64,
    /// Restarts and revivals the probes found.
    pub restarts: u64,
}

/// Which kind of pass is being counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassKind {
    /// Every due validator: `reconcile`, an agent round.
    Full,
    /// Only validators whose own timer fired (the agent's re-checks and probe sweeps).
    Recheck,
}

impl MinerState {
    /// Empty state.
    pub fn new(hotkey: &str, netuid: u16) -> MinerState {
        MinerState {
            version: VERSION,
            hotkey: hotkey.to_string(),
            netuid,
            first_fingerprint: None,
            fingerprint: None,
            validators: BTreeMap::new(),
            last_pass_at: None,
            last_full_coverage_at: None,
            updated_at: 0,
            github: Ledger::default(),
            preflight: None,
            totals: Totals::default(),
            notify: serde_json::Value::Null,
            alerts: Vec::new(),
        }
    }

    /// Is the PAT with `fingerprint` a rotation: another PAT than the last pass used? (A first PAT
    /// is not.) The one place a rotation is told: the agent's wake-up plan asks it before a pass
    /// (a rotated PAT gets a round that re-asserts it everywhere), the pass when it takes the PAT in.
    pub fn rotated(&self, fingerprint: &str) -> bool {
        self.fingerprint.as_deref().is_some_and(|last| last != fingerprint)
    }

    /// A pass uses the PAT with `fingerprint`: remember it (and the first PAT seen, for adoption).
    /// Returns whether it is a rotation ([`MinerState::rotated`]).
    pub fn use_pat(&mut self, fingerprint: &str) -> bool {
        if self.first_fingerprint.is_none() {
            self.first_fingerprint = Some(fingerprint.to_string());
        }
        let rotated = self.rotated(fingerprint);
        if self.fingerprint.as_deref() != Some(fingerprint) {
            self.fingerprint = Some(fingerprint.to_string());
        }
        rotated
    }

    /// Make the state agree with `now` (issue 20 item 3). A state written while the clock was
    /// ahead must not keep patrol quiet, nor the budget spent, until the clock catches up: times of
    /// past events later than `now` become `now`, schedules (next check, backoff window) move back
    /// by how far ahead the writer was and never lie more than `horizon` ahead (the longest delay
    /// patrol schedules), and the ledger drops entries from the future.
    pub fn settle(&mut self, now: Secs, horizon: Secs) {
        let ahead = self.updated_at.saturating_sub(now);
        let limit = now.saturating_add(horizon);
        let past = |t: &mut Secs| *t = (*t).min(now);
        let past_opt = |t: &mut Option<Secs>| {
            if let Some(t) = t {
                *t = (*t).min(now);
            }
        };
        let schedule = |t: &mut Secs| *t = t.saturating_sub(ahead).min(limit);
        past(&mut self.updated_at);
        past_opt(&mut self.last_pass_at);
        past_opt(&mut self.last_full_coverage_at);
        if let Some(r) = &mut self.preflight {
            past(&mut r.at);
        }
        self.github.settle(now);
        for h in self.validators.values_mut() {
            for t in [
                &mut h.checked_at,
                &mut h.last_broadcast_at,
                &mut h.uncovered_since,
                &mut h.unavailable_since,
                &mut h.left_at,
                &mut h.last_probe_at,
                &mut h.churning_since,
            ] {
                past_opt(t);
            }
            if let Some(s) = &mut h.silent {
                past(&mut s.since);
            }
            if let Some(t) = &mut h.terminal {
                past(&mut t.since);
            }
            h.losses.iter_mut().for_each(past);
            h.triggers.retain(|t| *t <= now);
            schedule(&mut h.next_check_at);
            schedule(&mut h.not_before);
        }
    }

    /// Take into the ledger what other patrol commands spent (read with
    /// [`StateFile::take_spent`]): counted now, so an entry is never trusted into the future.
    pub fn absorb_spent(&mut self, spent: &[(Secs, u32)], now: Secs) {
        let calls = spent
            .iter()
            .filter(|(t, _)| t.saturating_add(super::budget::WINDOW) > now)
            .fold(0u32, |a, (_, c)| a.saturating_add(*c));
        self.github.record(now, calls);
    }

    /// Remember what a preflight of the PAT with `fingerprint` said at `now`.
    pub fn remember_preflight(&mut self, fingerprint: &str, pf: &PreflightReport, now: Secs) {
        let verdict = PreflightVerdict::of(&pf.outcome);
        let said = pf.token_expiry.as_ref().and_then(|e| e.unix_seconds);
        // GitHub sends the expiry header with every answer about the token; a transient failure
        // (no answer) says nothing about it, so the last known expiry of the same PAT stays.
        let known = self.preflight.as_ref().filter(|r| r.fingerprint == fingerprint).and_then(|r| r.expiry);
        let expiry = if verdict == PreflightVerdict::Transient { said.or(known) } else { said };
        self.preflight = Some(PreflightRecord {
            fingerprint: fingerprint.to_string(),
            at: now,
            verdict,
            expiry,
            rate_remaining: pf.rate_limit.as_ref().and_then(|r| r.remaining),
        });
    }

    /// The last preflight, if it was about the PAT with `fingerprint`.
    pub fn preflight_of(&self, fingerprint: &str) -> Option<&PreflightRecord> {
        self.preflight.as_ref().filter(|r| r.fingerprint == fingerprint)
    }

    /// A preflight found the PAT with `fingerprint` valid less than [`PREFLIGHT_REUSE`] ago.
    pub fn preflight_still_valid(&self, fingerprint: &str, now: Secs) -> bool {
        self.preflight_of(fingerprint)
            .is_some_and(|r| r.verdict == PreflightVerdict::Valid && now.saturating_sub(r.at) < PREFLIGHT_REUSE)
    }

    /// Whether a telemetry preflight is due: none of this PAT yet, or the last one is
    /// [`PREFLIGHT_REFRESH`] old.
    pub fn preflight_due(&self, fingerprint: &str, now: Secs) -> bool {
        self.preflight_of(fingerprint).is_none_or(|r| now.saturating_sub(r.at) >= PREFLIGHT_REFRESH)
    }
}

/// Run a preflight of our own at most this often when no pass needed one, so the PAT's expiry and
/// validity stay visible in the metrics while every validator is covered (two GitHub calls an hour
/// on the miner's own quota, planned for in the budget).
pub const PREFLIGHT_REFRESH: Secs = 3600;

/// A preflight that found the PAT valid is trusted this long: a wave of restarts is repaired with
/// one preflight, not two GitHub calls per validator. A PAT revoked meanwhile is refused by the
/// validators' own check (terminal until the PAT changes); nothing else can go wrong.
pub const PREFLIGHT_REUSE: Secs = 600;

mod file;
pub use file::{DIR_FIX, STATE_CAP, StateError, StateFile, StateLock, check_dir};

#[cfg(test)]
mod tests;
