//! What the event function reads and writes: the events (what they are about, their validator),
//! the announced record kept in the state file, its inputs and timing rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Severity;
use crate::metrics::ProblemKind;
use crate::reconcile::core::Secs;
use crate::reconcile::pass::PassOutcome;
use crate::reconcile::state::MinerState;

/// What an event is about (a target's `events` names these; `config::notify::EVENT_NAMES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum EventKind {
    Coverage,
    PatInvalid,
    PatExpiry,
    PatRotated,
    PatUnavailable,
    Terminal,
    StoreUnavailable,
    NotRegistered,
    NoValidatorSource,
    Budget,
    Churning,
    StateNotSaved,
    Repaired,
    Started,
    Stopping,
    Digest,
    /// `patrol notify test` (sent to every target whatever it filters).
    Test,
}

impl EventKind {
    /// Every kind but `test`, in the order of `EVENT_NAMES`.
    pub const ALL: [EventKind; 16] = [
        EventKind::Coverage,
        EventKind::PatInvalid,
        EventKind::PatExpiry,
        EventKind::PatRotated,
        EventKind::PatUnavailable,
        EventKind::Terminal,
        EventKind::StoreUnavailable,
        EventKind::NotRegistered,
        EventKind::NoValidatorSource,
        EventKind::Budget,
        EventKind::Churning,
        EventKind::StateNotSaved,
        EventKind::Repaired,
        EventKind::Started,
        EventKind::Stopping,
        EventKind::Digest,
    ];

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The validator an event is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidatorInfo {
    pub uid: u16,
    pub hotkey: String,
    /// Its category when the event was made (`no_response` for a validator silent at the probes).
    pub category: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Since when it is uncovered (coverage events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Secs>,
    /// How long it was uncovered (a recovery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncovered_for_s: Option<Secs>,
}

/// One thing to tell the miner. Holds no secret: a miner's name and hotkey, validators' public
/// data, texts patrol wrote (a validator's reason is kept short and printable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub severity: Severity,
    /// It says a condition raised earlier is over.
    #[serde(default)]
    pub resolved: bool,
    pub at: Secs,
    /// The miner's name (empty for the agent's own events).
    pub miner: String,
    pub hotkey: String,
    /// One line: what happened.
    pub title: String,
    /// What patrol is doing about it, or what to do.
    #[serde(default)]
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator: Option<ValidatorInfo>,
}

/// An open coverage episode of one validator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Open {
    pub since: Secs,
    /// When its loss was announced.
    #[serde(default)]
    pub announced: Option<Secs>,
    /// Covered again since then (the episode ends after `hold` of it, or with the recovery).
    #[serde(default)]
    pub covered_at: Option<Secs>,
}

/// What has been announced about one miner (persisted in its state file, `notify`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Announced {
    /// Coverage episodes by uid.
    #[serde(default)]
    pub open: BTreeMap<u16, Open>,
    /// Conditions raised (announced) and not resolved yet, by key, with when.
    #[serde(default)]
    pub raised: BTreeMap<String, Secs>,
    /// The expiry thresholds (days) announced, and for which PAT.
    #[serde(default)]
    pub expiry: Option<(String, Vec<u32>)>,
    /// The PAT fingerprint last seen (a different one is a rotation).
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Repairs since the last digest: (when, uid), at most [`MAX_REPAIRS`].
    #[serde(default)]
    pub repairs: Vec<(Secs, u16)>,
    /// GitHub calls estimated since the last digest.
    #[serde(default)]
    pub calls: u64,
    /// The last digest (or when digests started).
    #[serde(default)]
    pub digest_at: Option<Secs>,
    /// Events not yet accepted, by target name: retried until accepted or `give_up` old.
    #[serde(default)]
    pub outbox: BTreeMap<String, Vec<Event>>,
}

/// Repairs a digest lists at most.
pub const MAX_REPAIRS: usize = 100;

/// The expiry thresholds, in days, largest first.
pub const EXPIRY_DAYS: [u32; 3] = [14, 7, 1];

/// The problems ([`ProblemKind`]: why no pass ran for the miner) in the order their events are
/// derived.
pub(super) const PROBLEMS: [ProblemKind; 3] =
    [ProblemKind::NotRegistered, ProblemKind::NoValidatorSource, ProblemKind::PatUnavailable];

/// The event a problem raises and resolves.
pub(super) fn problem_event(p: ProblemKind) -> EventKind {
    match p {
        ProblemKind::NotRegistered => EventKind::NotRegistered,
        ProblemKind::NoValidatorSource => EventKind::NoValidatorSource,
        ProblemKind::PatUnavailable => EventKind::PatUnavailable,
    }
}

/// Everything [`derive`] looks at for one miner.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub miner: &'a str,
    pub hotkey: &'a str,
    pub state: &'a MinerState,
    /// The pass just run (`None`: none could run, see `problem`).
    pub outcome: Option<&'a PassOutcome>,
    pub problem: Option<(ProblemKind, &'a str)>,
    /// Why the state could not be saved, if it could not.
    pub save_error: Option<&'a str>,
    pub now: Secs,
}

/// The timing rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// `[notify] hold`, seconds.
    pub hold: Secs,
    /// `[reconcile] alert_after`, seconds (a store unavailable this long is announced).
    pub alert_after: Secs,
    /// `[notify] digest` (UTC hour, minute).
    pub digest: Option<(u8, u8)>,
}
