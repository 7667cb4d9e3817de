//! The pure decision core: observed state + history + desired state → action. No I/O, no clock, no
//! randomness of its own (time and a jitter sample are passed in), so `reconcile`, `run` and the
//! simulation all run exactly this code, and property tests can drive it.
//!
//! Desired state: every eligible validator holds our current, valid PAT — identified by its
//! fingerprint, never the PAT. The table it implements is docs/gittensor-pat-semantics.md §4.3:
//!
//! | observed | action |
//! |---|---|
//! | valid, current fingerprint accepted (or adopted) | nothing until the next interval |
//! | valid, but this validator never accepted the current fingerprint (PAT rotated) | broadcast once |
//! | inconclusive, or invalid_pat with a transient reason | nothing; check again sooner |
//! | store_unavailable | back off, no broadcast; alert after `alert_after` |
//! | no_pat, invalid_pat (permanent) | broadcast if the local preflight passes; preflight invalid → alert for all, send nothing |
//! | no_response, rejected (HTTP error) | check again with backoff; never a blind re-broadcast |
//! | broadcast accepted | confirm with a check |
//! | broadcast rejected, transient | back off and retry |
//! | broadcast rejected, permanent | terminal for this validator until the PAT changes; alert |
//!
//! # Guarantees
//! - Never returns `Broadcast` for a validator whose check says `valid` and that accepted (or
//!   adopted) the current fingerprint.
//! - Never returns `Broadcast` before the validator's backoff window (`not_before`) has passed,
//!   nor within `backoff_initial` of a previous broadcast of the same PAT unless a check confirmed
//!   that validator held it in between.
//! - Never returns `Broadcast` unless the preflight says the PAT is valid.
//!
//! The caller guarantees it only asks about eligible validators.

use serde::{Deserialize, Serialize};

use crate::config::ReconcileSettings;
pub use crate::observe::{BroadcastObs, CheckObs, ProbeObs};
use crate::observe::{Category, Refusal, Silence};

/// Unix seconds.
pub type Secs = u64;

/// Unix seconds as RFC 3339 (UTC).
pub fn rfc3339(secs: Secs) -> String {
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// Timing and limits of the reconciler (from `[reconcile]`), in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Routine re-check of a covered validator (stretched by the GitHub budget, see
    /// [`super::budget::intervals`]).
    pub interval: Secs,
    /// The same for a validator that lost our PAT lately (checked more often).
    pub interval_lossy: Secs,
    pub recheck_inconclusive: Secs,
    pub backoff_initial: Secs,
    pub backoff_max: Secs,
    /// Alert when a validator stays uncovered / its store unavailable this long (one scoring round).
    pub alert_after: Secs,
    /// Consecutive rejections with transient-looking reasons before we stop (terminal).
    pub max_rejections: u32,
}

impl From<&ReconcileSettings> for Policy {
    fn from(s: &ReconcileSettings) -> Policy {
        Policy {
            interval: s.interval.as_secs().max(1),
            interval_lossy: s.interval.as_secs().max(1),
            recheck_inconclusive: s.recheck_inconclusive.as_secs().max(1),
            backoff_initial: s.backoff_initial.as_secs().max(1),
            backoff_max: s.backoff_max.as_secs().max(1),
            alert_after: s.alert_after.as_secs().max(1),
            max_rejections: 5,
        }
    }
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::from(&ReconcileSettings::default())
    }
}

impl Policy {
    /// The routine interval for this validator: shorter when it lost our PAT lately.
    pub fn interval_for(&self, h: &History, now: Secs) -> Secs {
        if h.is_lossy(now) { self.interval_lossy } else { self.interval }
    }

    /// Backoff after `failures` (≥ 1) consecutive failures: base = initial·2^(failures−1), capped at
    /// `backoff_max`, jittered uniformly over [base/2, base] ("equal jitter"). Not full jitter
    /// ([0, base]): a near-zero draw would re-send a PAT right after a failure. `u` ∈ [0, 1).
    pub fn backoff(&self, failures: u32, u: f64) -> Secs {
        let exp = failures.saturating_sub(1).min(32);
        let base = self.backoff_initial.saturating_mul(1u64 << exp).min(self.backoff_max).max(1);
        let half = base as f64 / 2.0;
        (half + half * u.clamp(0.0, 1.0)).ceil().max(1.0) as Secs
    }
}

/// What the local GitHub preflight said about the current PAT this pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum PreflightStatus {
    /// Not run (nobody needed a broadcast yet).
    NotRun,
    Valid,
    /// GitHub unreachable or rate-limited from here: don't send, retry later.
    Transient(String),
    /// Revoked, expired, lacks scope: never send it; alert.
    Invalid(String),
}

/// The desired state for one miner.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Fingerprint of the PAT we want every validator to hold.
    pub fingerprint: String,
    /// Fingerprint of the PAT patrol first saw for this miner. A validator already `valid` when
    /// patrol first meets it is assumed to hold it (adopted) if it equals `fingerprint`, so a first
    /// `reconcile` after `gitt miner post` does not re-send the PAT everywhere.
    pub adopt_fingerprint: Option<String>,
    pub preflight: PreflightStatus,
}

/// What to do about one validator now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Covered: next check at the normal interval.
    None { next_check_at: Secs },
    /// Send the PAT now.
    Broadcast,
    /// Check again at `at` (sooner than the interval, or after a backoff); no broadcast.
    Recheck { at: Secs, why: String },
    /// Terminal for this validator until the PAT changes; alert.
    GiveUp { reason: String, next_check_at: Secs },
}

impl Action {
    /// Short label for reports and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Action::None { .. } => "none",
            Action::Broadcast => "broadcast",
            Action::Recheck { .. } => "recheck",
            Action::GiveUp { .. } => "give_up",
        }
    }

    /// When the validator should be looked at next (for `Broadcast`: now).
    pub fn next_at(&self, now: Secs) -> Secs {
        match self {
            Action::None { next_check_at } | Action::GiveUp { next_check_at, .. } => *next_check_at,
            Action::Recheck { at, .. } => *at,
            Action::Broadcast => now,
        }
    }
}

/// Does this observation call for sending the PAT (so the preflight must run)? Pure and cheap; the
/// caller runs the GitHub preflight only when some validator says yes.
pub fn wants_broadcast(d: &Desired, h: &History, obs: &CheckObs) -> bool {
    if h.terminal.as_ref().is_some_and(|t| t.fingerprint == d.fingerprint) {
        return false;
    }
    match obs.category {
        // InvalidPat is a permanent verdict: transient reasons were classified inconclusive.
        Category::NoPat | Category::InvalidPat => true,
        Category::Valid => !holds_current(d, h) && !adopts(d, h),
        // Inconclusive: its GitHub is failing, so a broadcast would be refused now (and back off);
        // after a rotation it is re-checked at `recheck_inconclusive` until it says which PAT it has.
        _ => false,
    }
}

fn holds_current(d: &Desired, h: &History) -> bool {
    h.accepted_fingerprint.as_deref() == Some(d.fingerprint.as_str())
}

/// First meeting with a validator that already holds a valid PAT while our PAT is still the one we
/// first saw: assume it is ours rather than re-sending it everywhere.
fn adopts(d: &Desired, h: &History) -> bool {
    h.accepted_fingerprint.is_none()
        && h.broadcasts == 0
        && d.adopt_fingerprint.as_deref() == Some(d.fingerprint.as_str())
}

/// Decide after a check. Returns the action and the updated history. `u` ∈ [0,1) is a jitter sample.
pub fn after_check(p: &Policy, d: &Desired, h: &History, obs: &CheckObs, now: Secs, u: f64) -> (Action, History) {
    let mut h = h.clone();
    let was_holding = h.held_ours();
    // An answer says it is alive; a refused connection that its process is down. A check that
    // times out or is cut off may be a handler that hangs on an axon that answers probes: calling
    // that silence would make the next probe "revive" it, checked out of its backoff every sweep
    // (issue 20 item 12), so it leaves liveness to the probes.
    match obs.silence {
        None | Some(Silence::Refused) => h.saw(obs.axon_uuid.as_deref(), obs.silence, now),
        Some(Silence::Timeout | Silence::Dropped) => {}
    }
    if h.category != Some(obs.category) {
        h.category_since = Some(now);
    }
    h.category = Some(obs.category);
    h.reason = obs.reason.clone();
    h.checked_at = Some(now);
    // A new PAT clears a terminal verdict about the old one.
    if h.terminal.as_ref().is_some_and(|t| t.fingerprint != d.fingerprint) {
        h.terminal = None;
        h.rejections = 0;
    }
    if obs.category.is_covered() {
        h.uncovered_since = None;
    } else if h.uncovered_since.is_none() {
        h.uncovered_since = Some(now);
    }
    if obs.category == Category::StoreUnavailable {
        h.unavailable_since.get_or_insert(now);
    } else {
        h.unavailable_since = None;
    }
    // It no longer holds what it accepted (store wiped, or the PAT it holds is dead).
    if matches!(obs.category, Category::NoPat | Category::InvalidPat) {
        if was_holding {
            h.record_loss(now);
        }
        h.accepted_fingerprint = None;
    }

    if obs.category == Category::Valid && adopts(d, &h) {
        h.accepted_fingerprint = Some(d.fingerprint.clone());
    }

    if let Some(t) = &h.terminal {
        let reason = t.reason.clone();
        h.next_check_at = now + p.interval;
        return (Action::GiveUp { reason, next_check_at: h.next_check_at }, h);
    }

    match obs.category {
        Category::Valid if holds_current(d, &h) => {
            h.confirmed = true;
            h.clear_failures();
            h.rejections = 0;
            h.next_check_at = now + p.interval_for(&h, now);
            (Action::None { next_check_at: h.next_check_at }, h)
        }
        Category::Inconclusive => {
            h.clear_failures();
            h.next_check_at = now + p.recheck_inconclusive;
            (Action::Recheck { at: h.next_check_at, why: "inconclusive: GitHub blip at the validator".into() }, h)
        }
        Category::StoreUnavailable => {
            let at = h.record_failure(p, now, u);
            (Action::Recheck { at, why: "validator store unavailable; a broadcast would be rejected".into() }, h)
        }
        Category::NoResponse | Category::Rejected => {
            let at = h.record_failure(p, now, u);
            let why = match obs.status {
                Some(s) if obs.category == Category::Rejected => format!("rejected with HTTP {s}"),
                _ => "no response".into(),
            };
            (Action::Recheck { at, why }, h)
        }
        // NoPat, permanent InvalidPat, or Valid with a PAT that isn't (known to be) the current one.
        _ => match &d.preflight {
            _ if now < earliest_broadcast(p, &h, &d.fingerprint) => {
                let at = earliest_broadcast(p, &h, &d.fingerprint);
                h.next_check_at = at;
                (Action::Recheck { at, why: "in backoff: too soon after the last broadcast".into() }, h)
            }
            PreflightStatus::Valid => (Action::Broadcast, h),
            PreflightStatus::Invalid(reason) => {
                h.next_check_at = now + p.interval;
                (
                    Action::GiveUp {
                        reason: format!("PAT revoked, expired or lacks scope: {reason}"),
                        next_check_at: h.next_check_at,
                    },
                    h,
                )
            }
            PreflightStatus::Transient(reason) => {
                let at = h.record_failure(p, now, u);
                (Action::Recheck { at, why: format!("local PAT preflight inconclusive: {reason}") }, h)
            }
            PreflightStatus::NotRun => {
                // The caller must run the preflight when `wants_broadcast` says so; if it didn't,
                // don't guess: look again soon.
                h.next_check_at = now + p.recheck_inconclusive;
                (Action::Recheck { at: h.next_check_at, why: "preflight not run".into() }, h)
            }
        },
    }
}

/// The earliest time another broadcast of PAT `fingerprint` to this validator is allowed: after its
/// backoff window, and never sooner than `backoff_initial` after a previous broadcast of the *same*
/// PAT unless a check confirmed the validator held it since (a validator that accepts and then loses
/// the PAT at once must not get it every pass; one that demonstrably lost a confirmed PAT, or a new
/// PAT after a rotation, goes out at once).
pub fn earliest_broadcast(p: &Policy, h: &History, fingerprint: &str) -> Secs {
    let spacing = match h.last_broadcast_at {
        Some(t) if !h.confirmed && h.last_broadcast_fingerprint.as_deref() == Some(fingerprint) => {
            t.saturating_add(p.backoff_initial)
        }
        _ => 0,
    };
    h.not_before.max(spacing)
}

/// Record that a broadcast of PAT `fingerprint` is being sent now (call before sending).
pub fn broadcast_sent(h: &History, now: Secs, fingerprint: &str) -> History {
    let mut h = h.clone();
    h.last_broadcast_fingerprint = Some(fingerprint.to_string());
    h.broadcasts = h.broadcasts.saturating_add(1);
    h.last_broadcast_at = Some(now);
    h.confirmed = false;
    h
}

/// Decide after a broadcast. `Accepted` → confirm with a check (the caller re-checks now).
pub fn after_broadcast(
    p: &Policy,
    d: &Desired,
    h: &History,
    obs: &BroadcastObs,
    now: Secs,
    u: f64,
) -> (Action, History) {
    let mut h = h.clone();
    match obs {
        BroadcastObs::Accepted => {
            h.accepted_fingerprint = Some(d.fingerprint.clone());
            h.clear_failures();
            h.rejections = 0;
            h.next_check_at = now;
            (Action::Recheck { at: now, why: "accepted; confirm with a check".into() }, h)
        }
        BroadcastObs::Rejected { reason, refusal } => {
            h.rejections = h.rejections.saturating_add(1);
            let text = reason.clone().unwrap_or_else(|| "rejected without a reason".into());
            let permanent = *refusal == Refusal::Permanent;
            // Known-transient texts ("store temporarily unavailable; please retry") back off for as
            // long as they last; only unrecognised texts escalate after `max_rejections`.
            let escalate = *refusal == Refusal::Unknown && h.rejections >= p.max_rejections;
            if permanent || escalate {
                let why = if permanent { text } else { format!("rejected {} times in a row: {text}", h.rejections) };
                h.terminal = Some(Terminal { reason: why.clone(), fingerprint: d.fingerprint.clone(), since: now });
                h.next_check_at = now + p.interval;
                return (Action::GiveUp { reason: why, next_check_at: h.next_check_at }, h);
            }
            // Nothing was stored, so a check before the next broadcast is allowed would learn nothing.
            let at = h.record_failure(p, now, u).max(earliest_broadcast(p, &h, &d.fingerprint));
            h.next_check_at = at;
            (Action::Recheck { at, why: format!("broadcast rejected (transient): {text}") }, h)
        }
        BroadcastObs::Failed { status, detail } => {
            let at = h.record_failure(p, now, u);
            let why = match status {
                Some(s) => format!("broadcast got HTTP {s}: {detail}"),
                None => format!("broadcast got no response: {detail}"),
            };
            (Action::Recheck { at, why }, h)
        }
    }
}

/// Make `histories` match the eligible set. A new validator gets a fresh history; a uid whose
/// hotkey changed starts over. A validator that left is marked and kept for `retain` seconds (then
/// forgotten): if it comes back within that time its backoff is forgotten, as for a newcomer, but its
/// last broadcast time and accepted fingerprint are kept — so a validator flapping around the vtrust
/// threshold cannot be sent the PAT on every re-entry.
pub fn sync(
    histories: &mut std::collections::BTreeMap<u16, History>,
    eligible: &[(u16, &str)],
    now: Secs,
    retain: Secs,
) {
    // The usual case, every pass: nothing joined, left or changed hotkey (one walk: both are in
    // uid order when the eligible list is, as the metagraph's is).
    if histories.len() == eligible.len()
        && histories
            .iter()
            .zip(eligible)
            .all(|((uid, h), (e_uid, e_hk))| uid == e_uid && h.hotkey == *e_hk && h.left_at.is_none())
    {
        return;
    }
    let by_uid: std::collections::HashMap<u16, &str> = eligible.iter().copied().collect();
    histories.retain(|uid, h| match by_uid.get(uid) {
        Some(hk) => *hk == h.hotkey,
        None => {
            let left = *h.left_at.get_or_insert(now);
            now.saturating_sub(left) <= retain
        }
    });
    for (uid, hk) in eligible {
        let h = histories.entry(*uid).or_insert_with(|| History::new(hk));
        if h.left_at.take().is_some() {
            h.clear_failures();
            h.next_check_at = 0;
        }
    }
}

/// The histories of eligible validators only (departed ones kept by [`sync`] are skipped).
pub fn active(histories: &std::collections::BTreeMap<u16, History>) -> impl Iterator<Item = (u16, &History)> {
    histories.iter().filter(|(_, h)| h.left_at.is_none()).map(|(u, h)| (*u, h))
}

/// One validator's decision in a pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub uid: u16,
    pub action: Action,
    pub history: History,
}

/// Decide for every eligible validator observed this pass (observations for anything else are
/// ignored, so a validator that left the set can never be sent the PAT). `jitter` yields samples in
/// [0, 1).
pub fn plan(
    p: &Policy,
    d: &Desired,
    histories: &std::collections::BTreeMap<u16, History>,
    eligible: &[(u16, &str)],
    observations: &std::collections::BTreeMap<u16, CheckObs>,
    now: Secs,
    mut jitter: impl FnMut() -> f64,
) -> Vec<Decision> {
    let mut out = Vec::new();
    for (uid, hotkey) in eligible {
        let Some(obs) = observations.get(uid) else { continue };
        let fresh;
        let h = match histories.get(uid).filter(|h| h.hotkey == *hotkey) {
            Some(h) => h,
            None => {
                fresh = History::new(hotkey);
                &fresh
            }
        };
        let (action, history) = after_check(p, d, h, obs, now, jitter());
        out.push(Decision { uid: *uid, action, history });
    }
    out
}

/// Does any observation this pass need the preflight? (Run the GitHub preflight only then.)
pub fn needs_preflight(
    d: &Desired,
    histories: &std::collections::BTreeMap<u16, History>,
    observations: &std::collections::BTreeMap<u16, CheckObs>,
) -> bool {
    observations.iter().any(|(uid, obs)| {
        let empty = History::default();
        wants_broadcast(d, histories.get(uid).unwrap_or(&empty), obs)
    })
}

/// Which of a validator's timers a check goes by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// A one-shot pass (`patrol reconcile`, the agent's start, a rotated PAT): every validator out of
    /// its backoff window (`not_before`).
    OneShot,
    /// An agent round: its own timer (`next_check_at`).
    Timer,
    /// The agent's wake-up for one validator: its own timer — but the core leaves `next_check_at`
    /// untouched when its decision was a broadcast that did not happen in that pass (a dry run, or a
    /// confirm check that still wants one and waits for the spacing rule), so it can lie in the past
    /// right after a contact; then the validator waits `min_gap` after that contact instead of being
    /// checked again in a tight loop.
    Spaced { min_gap: Secs },
}

/// When validator `h` is next due for a check, by `rule` — the one reading of its timers: the
/// agent's scheduler (which validators a wake-up checks, when it next wakes) and the pass's
/// selection both ask it. What sets the timers: the decisions of this core and the GitHub budget's
/// deferral ([`History::defer`]).
pub fn due_at(h: &History, rule: Due) -> Secs {
    match rule {
        Due::OneShot => h.not_before,
        Due::Timer => h.next_check_at,
        Due::Spaced { min_gap } => match h.checked_at {
            Some(checked) if h.next_check_at <= checked => checked.saturating_add(min_gap.max(1)),
            _ => h.next_check_at,
        },
    }
}

/// Is validator `h` due for a check at `now` ([`due_at`])?
pub fn due(h: &History, now: Secs, rule: Due) -> bool {
    now >= due_at(h, rule)
}

mod alerts;
mod history;
mod probe;

pub use alerts::{Alert, AlertKind, alerts};
pub use history::{History, LOSS_MEMORY, MAX_LOSSES, MAX_TRIGGERS, Silent, TRIGGER_WINDOW, Terminal};
pub use probe::{ProbeVerdict, after_probe};

#[cfg(test)]
mod tests;
