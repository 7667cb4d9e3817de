//! What patrol remembers about one validator across passes (persisted in the state file; no
//! secret), and the limits on it.

use serde::{Deserialize, Serialize};

use super::{Policy, Secs};
use crate::observe::{Category, Silence};

/// A broadcast that keeps failing permanently: no more broadcasts until the PAT changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Terminal {
    pub reason: String,
    /// Fingerprint of the PAT that was refused; a new PAT clears the terminal state.
    pub fingerprint: String,
    pub since: Secs,
}

/// Everything remembered about one validator across passes (persisted; holds no secret).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The validator's hotkey: if a uid gets a new hotkey, the history restarts.
    pub hotkey: String,
    pub category: Option<Category>,
    /// Since when checks have answered `category` (`patrol status`).
    #[serde(default)]
    pub category_since: Option<Secs>,
    pub reason: Option<String>,
    pub checked_at: Option<Secs>,
    /// When this validator should next be checked (agent scheduling).
    pub next_check_at: Secs,
    /// Backoff window: no broadcast (and in one-shot mode no check) before this.
    pub not_before: Secs,
    /// Consecutive failures driving the backoff.
    pub failures: u32,
    /// Consecutive broadcast rejections.
    pub rejections: u32,
    /// Fingerprint of the last PAT this validator accepted (or we adopted for it).
    pub accepted_fingerprint: Option<String>,
    pub broadcasts: u32,
    pub last_broadcast_at: Option<Secs>,
    /// A check said `valid` with our current fingerprint since the last broadcast.
    #[serde(default)]
    pub confirmed: bool,
    /// Fingerprint of the PAT the last broadcast carried.
    #[serde(default)]
    pub last_broadcast_fingerprint: Option<String>,
    pub uncovered_since: Option<Secs>,
    pub unavailable_since: Option<Secs>,
    pub terminal: Option<Terminal>,
    /// When it left the eligible set (kept for a grace period so flapping can't bypass spacing).
    #[serde(default)]
    pub left_at: Option<Secs>,
    /// The axon's process uuid last seen (probes and error answers carry it): a different one is a
    /// restart.
    #[serde(default)]
    pub axon_uuid: Option<String>,
    /// When `axon_uuid` was first seen (the axon process's age, as far as we know).
    #[serde(default)]
    pub axon_uuid_since: Option<Secs>,
    /// Restarts seen: times the axon answered with a uuid other than the one remembered.
    #[serde(default)]
    pub restarts: u32,
    /// Since when, and how, it has not answered (probe, check or broadcast).
    #[serde(default)]
    pub silent: Option<Silent>,
    /// The last liveness probe.
    #[serde(default)]
    pub last_probe_at: Option<Secs>,
    /// When a check found our PAT gone after the validator had held it (most recent last, at most
    /// [`MAX_LOSSES`]).
    #[serde(default)]
    pub losses: Vec<Secs>,
    /// When probes last triggered a check (a restart or a revival), within the last hour: at most
    /// [`MAX_TRIGGERS`] (see [`after_probe`]).
    #[serde(default)]
    pub triggers: Vec<Secs>,
    /// Since when its restarts come too often to act on (churn): they are seen, not checked.
    #[serde(default)]
    pub churning_since: Option<Secs>,
}

/// Restarts (or revivals) an hour a validator may trigger a check with. A validator restarting
/// more often — a crash loop, several axon processes behind one address answering with their own
/// uuids, or one answering every probe with a fresh uuid on purpose — is churning: each check it
/// triggers costs two GitHub calls on the PAT and may buy a broadcast, so beyond this it is checked
/// at its routine interval only, and said so once.
pub const MAX_TRIGGERS: usize = 3;

/// The window [`MAX_TRIGGERS`] counts in.
pub const TRIGGER_WINDOW: Secs = 3600;

/// A validator that lost our PAT within this time is "lossy": the GitHub budget has it checked
/// twice as often as the others ([`super::budget::intervals`]).
pub const LOSS_MEMORY: Secs = 7 * 86_400;

/// How many loss times a history keeps.
pub const MAX_LOSSES: usize = 8;

/// A validator that stopped answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silent {
    pub since: Secs,
    pub kind: Silence,
}

impl History {
    /// A validator seen for the first time.
    pub fn new(hotkey: &str) -> History {
        History { hotkey: hotkey.to_string(), ..History::default() }
    }

    pub(super) fn record_failure(&mut self, p: &Policy, now: Secs, u: f64) -> Secs {
        self.failures = self.failures.saturating_add(1);
        let at = now + p.backoff(self.failures, u);
        self.not_before = at;
        self.next_check_at = at;
        at
    }

    /// Not checked before `at` (the GitHub budget deferring a check): the timer only moves later.
    pub fn defer(&mut self, at: Secs) {
        self.next_check_at = self.next_check_at.max(at);
    }

    pub(super) fn clear_failures(&mut self) {
        self.failures = 0;
        self.not_before = 0;
    }

    /// It lost our PAT within [`LOSS_MEMORY`].
    pub fn is_lossy(&self, now: Secs) -> bool {
        self.losses.last().is_some_and(|t| now.saturating_sub(*t) < LOSS_MEMORY)
    }

    /// It was holding our PAT as far as we know (so a `no_pat` now is a loss).
    pub(super) fn held_ours(&self) -> bool {
        self.accepted_fingerprint.is_some() && self.category.is_some_and(Category::is_covered)
    }

    pub(super) fn record_loss(&mut self, now: Secs) {
        self.losses.push(now);
        if self.losses.len() > MAX_LOSSES {
            self.losses.remove(0);
        }
    }

    /// Remember the axon's process uuid seen at `now`: a different one than remembered is a restart.
    pub fn note_axon_uuid(&mut self, uuid: &str, now: Secs) {
        if self.axon_uuid.as_deref() == Some(uuid) {
            return;
        }
        if self.axon_uuid.is_some() {
            self.restarts = self.restarts.saturating_add(1);
        }
        self.axon_uuid = Some(uuid.to_string());
        self.axon_uuid_since = Some(now);
    }

    /// Remember what an answer (or its absence) says about liveness and the axon's uuid.
    pub(super) fn saw(&mut self, axon_uuid: Option<&str>, silence: Option<Silence>, now: Secs) {
        if let Some(u) = axon_uuid {
            self.note_axon_uuid(u, now);
        }
        match silence {
            None => self.silent = None,
            Some(kind) => match &mut self.silent {
                Some(s) => s.kind = kind,
                None => self.silent = Some(Silent { since: now, kind }),
            },
        }
    }
}
