//! What a validator's answer means — the one place that classifies it. A check, a broadcast and a
//! liveness probe come back from the wire as a [`Reply`]; this module turns each into the
//! observation the rest of patrol reasons about ([`CheckObs`], [`BroadcastObs`], [`ProbeObs`]).
//! Coverage sums, the reconcile core, reports, metrics and the simulation all take these values and
//! never look at reason texts themselves ([`reason`] holds the texts).
//!
//! Categories refine gitt's (docs/gittensor-pat-semantics.md §1.4): `store_unavailable` is split out
//! of `no_pat` (has_pat=false, pat_valid=null is the validator saying "my store is unreadable, retry",
//! not "I lost your PAT"), and `rejected` (an HTTP error status: 401 nonce/signature, 403 not
//! registered, 404 no handler, 500; or a redirect, never followed) is split out of `no_response`.
//! The reason texts arrive here already cleaned by the wire ([`crate::secret::foreign_text`]:
//! tokens redacted, control characters escaped, 512 characters), and are classified in that form. An `invalid_pat` whose reason is
//! a validator-side GitHub 5xx/429/transport error (upstream's test-query bug, docs §2.6) is
//! `inconclusive`: the PAT is stored and nothing is wrong with it. So a [`Category::InvalidPat`]
//! observation is always a permanent verdict on the PAT.
//!
//! **Covered** means `valid` or `inconclusive`: an inconclusive validator holds our PAT and only
//! failed to reach GitHub just now (it keeps scoring with the stored GitHub id), and nothing a miner
//! can send would change that.
//!
//! Pure: no I/O, no clock.

pub mod reason;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::reason::Persistence;
use crate::wire::{BroadcastFields, CallOutcome, CheckFields, NoResponseKind, ProbeFields, Reply};

/// Coverage category of one validator after a `PatCheckSynapse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Valid,
    NoPat,
    InvalidPat,
    Inconclusive,
    StoreUnavailable,
    NoResponse,
    Rejected,
}

impl Category {
    /// All categories, in report order.
    pub const ALL: [Category; 7] = [
        Category::Valid,
        Category::NoPat,
        Category::InvalidPat,
        Category::Inconclusive,
        Category::StoreUnavailable,
        Category::NoResponse,
        Category::Rejected,
    ];

    /// snake_case name (JSON, metrics labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Valid => "valid",
            Category::NoPat => "no_pat",
            Category::InvalidPat => "invalid_pat",
            Category::Inconclusive => "inconclusive",
            Category::StoreUnavailable => "store_unavailable",
            Category::NoResponse => "no_response",
            Category::Rejected => "rejected",
        }
    }

    /// Holds our PAT (see module docs).
    pub fn is_covered(self) -> bool {
        matches!(self, Category::Valid | Category::Inconclusive)
    }

    /// The validator gave a synapse answer about our PAT (as opposed to an error or silence).
    pub fn is_answer(self) -> bool {
        !matches!(self, Category::NoResponse | Category::Rejected)
    }

    /// The validator holds *a* PAT for us (valid or not): checking it costs GitHub calls on the PAT
    /// at the validator (docs §2.3: `/user`, then the GraphQL query).
    pub fn holds_a_pat(self) -> bool {
        matches!(self, Category::Valid | Category::Inconclusive | Category::InvalidPat)
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// gitt's own name for a check answer (its JSON counts must stay comparable): no refinements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GittCategory {
    Valid,
    NoPat,
    InvalidPat,
    Inconclusive,
    NoResponse,
}

impl GittCategory {
    /// gitt's top-down rule (`helpers.py`) on an answer's fields; no answer is `no_response`.
    pub fn of(answer: Option<&CheckFields>) -> GittCategory {
        let Some(f) = answer else { return GittCategory::NoResponse };
        match (f.has_pat, f.pat_valid) {
            (_, Some(true)) => GittCategory::Valid,
            (Some(false), _) => GittCategory::NoPat,
            (Some(true), Some(false)) => GittCategory::InvalidPat,
            (Some(true), None) => GittCategory::Inconclusive,
            _ => GittCategory::NoResponse,
        }
    }
}

/// Classify a check answer's fields (top-down, as gitt, plus `store_unavailable` and the
/// transient-`invalid_pat` rule).
pub fn classify_fields(f: &CheckFields) -> Category {
    match (f.has_pat, f.pat_valid) {
        (_, Some(true)) => Category::Valid,
        (Some(false), None) => Category::StoreUnavailable,
        (Some(false), Some(false)) => Category::NoPat,
        (Some(true), Some(false))
            if reason::invalid_pat_reason(f.rejection_reason.as_deref()) == Persistence::Transient =>
        {
            Category::Inconclusive
        }
        (Some(true), Some(false)) => Category::InvalidPat,
        (Some(true), None) => Category::Inconclusive,
        // has_pat missing: a 200 that says nothing — gitt's no_response
        (None, _) => Category::NoResponse,
    }
}

/// Classify a whole check outcome.
pub fn classify(outcome: &CallOutcome<CheckFields>) -> Category {
    match outcome {
        CallOutcome::Answered(f) => classify_fields(f),
        CallOutcome::Rejected { .. } => Category::Rejected,
        CallOutcome::NoResponse { .. } => Category::NoResponse,
    }
}

/// The [`reason::rejection_hint`] for an HTTP rejection, if any.
pub fn hint<F>(outcome: &CallOutcome<F>) -> Option<String> {
    match outcome {
        CallOutcome::Rejected { status, message } => reason::rejection_hint(*status, message),
        _ => None,
    }
}

/// One check's result, as the reconcile core needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckObs {
    pub category: Category,
    /// The validator's `rejection_reason`, the HTTP rejection message, or why nothing came back.
    pub reason: Option<String>,
    /// 200, the HTTP status, or `None` without an HTTP answer.
    pub status: Option<u16>,
    /// The axon's process uuid, when the answer carried one (error responses do).
    pub axon_uuid: Option<String>,
    /// How it failed to answer, when it did not.
    pub silence: Option<Silence>,
}

impl CheckObs {
    /// The observation of a check reply.
    pub fn of(reply: &Reply<CheckFields>) -> CheckObs {
        let o = &reply.outcome;
        let reason = match o.answer() {
            Some(f) => f.rejection_reason.clone(),
            None => o.detail(),
        };
        CheckObs {
            category: classify(o),
            reason,
            status: o.http_status(),
            axon_uuid: reply.axon_uuid.clone(),
            silence: ProbeObs::silence_of(o),
        }
    }

    /// The observation of an answered check (HTTP 200 with these fields).
    pub fn answer(f: CheckFields) -> CheckObs {
        CheckObs {
            category: classify_fields(&f),
            reason: f.rejection_reason,
            status: Some(200),
            axon_uuid: None,
            silence: None,
        }
    }
}

/// What a refused broadcast's reason says about retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Retrying with the same PAT cannot help ("identity is locked", "not registered", a 4xx).
    Permanent,
    /// Words we know mean "retry later" ("temporarily unavailable; please retry", a GitHub 5xx).
    KnownTransient,
    /// A text we do not recognise: retried with backoff, terminal after a few in a row.
    Unknown,
}

/// One broadcast's result.
#[derive(Debug, Clone, PartialEq)]
pub enum BroadcastObs {
    Accepted,
    Rejected {
        reason: Option<String>,
        refusal: Refusal,
    },
    /// No answer, an HTTP error status, or an answer without `accepted`.
    Failed {
        status: Option<u16>,
        detail: String,
    },
}

/// How a broadcast ended, for logs, metrics and the report (`patrol_broadcasts_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BroadcastOutcome {
    Accepted,
    /// `accepted: false` with a reason.
    Rejected,
    /// An HTTP error status (401, 403, 404, 500, …).
    RejectedHttp,
    /// Silence, a malformed answer, or one without `accepted`.
    NoResponse,
}

impl BroadcastOutcome {
    /// All outcomes (metric label values).
    pub const ALL: [BroadcastOutcome; 4] = [
        BroadcastOutcome::Accepted,
        BroadcastOutcome::Rejected,
        BroadcastOutcome::RejectedHttp,
        BroadcastOutcome::NoResponse,
    ];

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            BroadcastOutcome::Accepted => "accepted",
            BroadcastOutcome::Rejected => "rejected",
            BroadcastOutcome::RejectedHttp => "rejected_http",
            BroadcastOutcome::NoResponse => "no_response",
        }
    }
}

impl std::fmt::Display for BroadcastOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl BroadcastObs {
    /// The observation of a broadcast reply.
    pub fn of(reply: &Reply<BroadcastFields>) -> BroadcastObs {
        match &reply.outcome {
            CallOutcome::Answered(f) if f.accepted == Some(true) => BroadcastObs::Accepted,
            CallOutcome::Answered(f) if f.accepted == Some(false) => BroadcastObs::refused(f.rejection_reason.clone()),
            o => BroadcastObs::Failed {
                status: o.http_status(),
                detail: o.detail().unwrap_or_else(|| "answer without `accepted`".into()),
            },
        }
    }

    /// `accepted: false` with this reason, classified.
    pub fn refused(reason: Option<String>) -> BroadcastObs {
        let refusal = reason::broadcast_refusal(reason.as_deref());
        BroadcastObs::Rejected { reason, refusal }
    }

    /// How it ended.
    pub fn outcome(&self) -> BroadcastOutcome {
        match self {
            BroadcastObs::Accepted => BroadcastOutcome::Accepted,
            BroadcastObs::Rejected { .. } => BroadcastOutcome::Rejected,
            BroadcastObs::Failed { status: Some(s), .. } if *s != 200 => BroadcastOutcome::RejectedHttp,
            BroadcastObs::Failed { .. } => BroadcastOutcome::NoResponse,
        }
    }
}

/// Why a probe got no answer. A refused port is a process that is down and usually comes back
/// soon (a restart); a timeout is a host or network that swallows packets and may be gone for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Silence {
    Refused,
    Timeout,
    /// Reset, closed early.
    Dropped,
}

impl Silence {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Silence::Refused => "refused",
            Silence::Timeout => "timeout",
            Silence::Dropped => "dropped",
        }
    }

    fn of(kind: NoResponseKind) -> Silence {
        match kind {
            NoResponseKind::Connect => Silence::Refused,
            NoResponseKind::Timeout => Silence::Timeout,
            _ => Silence::Dropped,
        }
    }
}

/// One liveness probe's result.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeObs {
    /// The axon answered (any HTTP status), with its process uuid when it sent one.
    Alive {
        axon_uuid: Option<String>,
    },
    Silent(Silence),
}

impl ProbeObs {
    /// The observation of a probe reply.
    pub fn of(reply: &Reply<ProbeFields>) -> ProbeObs {
        match &reply.outcome {
            CallOutcome::NoResponse { kind, .. } => ProbeObs::Silent(Silence::of(*kind)),
            _ => ProbeObs::Alive { axon_uuid: reply.axon_uuid.clone() },
        }
    }

    /// The silence a check or broadcast without an answer implies (for the probe cadence).
    pub fn silence_of<F>(outcome: &CallOutcome<F>) -> Option<Silence> {
        match outcome {
            CallOutcome::NoResponse { kind, .. } => Some(Silence::of(*kind)),
            _ => None,
        }
    }
}

/// One check or broadcast answer, read once: the observation patrol acts on (`obs`: [`CheckObs`],
/// [`BroadcastObs`]) and what a report row or a log line shows of it. The reconcile pass hands this
/// on, never the wire reply, so nothing after this module reads an answer again.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading<O, F> {
    pub obs: O,
    /// The answer's fields as the validator sent them (gitt prints them as they are); `None`
    /// without an answer.
    pub answer: Option<F>,
    /// [`CallOutcome::status_code`]: as the Python dendrite reports it.
    pub status_code: u16,
    /// [`CallOutcome::detail`]: the rejection message or why nothing came back.
    pub detail: Option<String>,
    /// What to do about a rejection caused on this side ([`hint`]).
    pub hint: Option<String>,
    pub latency: Duration,
}

/// A check answer, read.
pub type CheckReading = Reading<CheckObs, CheckFields>;

/// A broadcast answer, read.
pub type BroadcastReading = Reading<BroadcastObs, BroadcastFields>;

impl<O, F: Clone> Reading<O, F> {
    fn new(obs: O, reply: &Reply<F>) -> Reading<O, F> {
        let o = &reply.outcome;
        Reading {
            obs,
            answer: o.answer().cloned(),
            status_code: o.status_code(),
            detail: o.detail(),
            hint: hint(o),
            latency: reply.latency,
        }
    }
}

impl CheckReading {
    /// Read a check reply.
    pub fn of(reply: &Reply<CheckFields>) -> CheckReading {
        Reading::new(CheckObs::of(reply), reply)
    }

    /// What `gitt miner check` would call it.
    pub fn gitt_category(&self) -> GittCategory {
        GittCategory::of(self.answer.as_ref())
    }
}

impl BroadcastReading {
    /// Read a broadcast reply.
    pub fn of(reply: &Reply<BroadcastFields>) -> BroadcastReading {
        Reading::new(BroadcastObs::of(reply), reply)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn f(has_pat: Option<bool>, pat_valid: Option<bool>) -> Category {
        classify_fields(&CheckFields { has_pat, pat_valid, rejection_reason: None })
    }

    fn reply<F>(outcome: CallOutcome<F>) -> Reply<F> {
        Reply { outcome, latency: Duration::ZERO, axon_uuid: Some("u-1".into()) }
    }

    #[test]
    fn categories_follow_the_handler_table() {
        assert_eq!(f(Some(true), Some(true)), Category::Valid);
        assert_eq!(f(Some(false), Some(false)), Category::NoPat);
        assert_eq!(f(Some(false), None), Category::StoreUnavailable);
        assert_eq!(f(Some(true), Some(false)), Category::InvalidPat);
        assert_eq!(f(Some(true), None), Category::Inconclusive);
        assert_eq!(f(None, None), Category::NoResponse);
        let bug = CheckFields {
            has_pat: Some(true),
            pat_valid: Some(false),
            rejection_reason: Some("PAT test query failed: GitHub GraphQL API returned 502".into()),
        };
        assert_eq!(classify_fields(&bug), Category::Inconclusive, "upstream's transient test-query failure");
        assert_eq!(GittCategory::of(Some(&bug)), GittCategory::InvalidPat);
        let unavailable = CheckFields { has_pat: Some(false), pat_valid: None, rejection_reason: None };
        assert_eq!(GittCategory::of(Some(&unavailable)), GittCategory::NoPat);
        let r: CallOutcome<CheckFields> = CallOutcome::Rejected { status: 403, message: "x".into() };
        assert_eq!(classify(&r), Category::Rejected);
        assert_eq!(GittCategory::of(r.answer()), GittCategory::NoResponse);
        let n: CallOutcome<CheckFields> =
            CallOutcome::NoResponse { kind: NoResponseKind::Timeout, detail: String::new() };
        assert_eq!(classify(&n), Category::NoResponse);
    }

    #[test]
    fn observations_keep_reason_status_and_uuid() {
        let o =
            CheckObs::of(&reply(CallOutcome::<CheckFields>::Rejected { status: 401, message: "Missing Nonce".into() }));
        assert_eq!((o.category, o.status, o.reason.as_deref()), (Category::Rejected, Some(401), Some("Missing Nonce")));
        assert_eq!(o.axon_uuid.as_deref(), Some("u-1"));
        let o = CheckObs::of(&reply(CallOutcome::<CheckFields>::NoResponse {
            kind: NoResponseKind::Connect,
            detail: "refused".into(),
        }));
        assert_eq!((o.category, o.status, o.reason.as_deref()), (Category::NoResponse, None, Some("connect: refused")));
    }

    #[test]
    fn broadcasts_are_classified_once() {
        let ok = reply(CallOutcome::Answered(BroadcastFields { accepted: Some(true), rejection_reason: None }));
        assert_eq!(BroadcastObs::of(&ok).outcome(), BroadcastOutcome::Accepted);
        let locked = reply(CallOutcome::Answered(BroadcastFields {
            accepted: Some(false),
            rejection_reason: Some("GitHub identity is locked for this hotkey.".into()),
        }));
        assert!(matches!(BroadcastObs::of(&locked), BroadcastObs::Rejected { refusal: Refusal::Permanent, .. }));
        let busy = BroadcastObs::refused(Some("Validator PAT store temporarily unavailable; please retry. (x)".into()));
        assert!(matches!(busy, BroadcastObs::Rejected { refusal: Refusal::KnownTransient, .. }));
        assert!(matches!(
            BroadcastObs::refused(Some("who knows".into())),
            BroadcastObs::Rejected { refusal: Refusal::Unknown, .. }
        ));
        let http = reply(CallOutcome::<BroadcastFields>::Rejected { status: 403, message: "blacklisted".into() });
        assert_eq!(BroadcastObs::of(&http).outcome(), BroadcastOutcome::RejectedHttp);
        let silent = reply(CallOutcome::Answered(BroadcastFields { accepted: None, rejection_reason: None }));
        assert_eq!(BroadcastObs::of(&silent).outcome(), BroadcastOutcome::NoResponse);
    }

    #[test]
    fn a_reading_keeps_what_a_row_shows() {
        let nonce = "Not Verified with error: Nonce is too old: acceptable delta is 19.00 seconds but request was 60.00 seconds old";
        let r = CheckReading::of(&reply(CallOutcome::<CheckFields>::Rejected { status: 401, message: nonce.into() }));
        assert_eq!(
            (r.obs.category, r.gitt_category(), r.status_code),
            (Category::Rejected, GittCategory::NoResponse, 401)
        );
        assert_eq!((r.answer.as_ref(), r.detail.as_deref()), (None, Some(nonce)));
        assert!(r.hint.as_deref().is_some_and(|h| h.contains("NTP")), "{:?}", r.hint);
        let store = CheckFields { has_pat: Some(false), pat_valid: None, rejection_reason: None };
        let r = CheckReading::of(&reply(CallOutcome::Answered(store.clone())));
        assert_eq!((r.obs.category, r.gitt_category()), (Category::StoreUnavailable, GittCategory::NoPat));
        assert_eq!((r.answer, r.status_code, r.detail, r.hint), (Some(store), 200, None, None));
        let silent = Reply {
            latency: Duration::from_millis(12),
            ..reply(CallOutcome::<BroadcastFields>::NoResponse { kind: NoResponseKind::Timeout, detail: "slow".into() })
        };
        let r = BroadcastReading::of(&silent);
        assert_eq!(r.obs, BroadcastObs::Failed { status: None, detail: "timeout: slow".into() });
        assert_eq!(
            (r.status_code, r.detail.as_deref(), r.latency),
            (408, Some("timeout: slow"), Duration::from_millis(12))
        );
    }

    #[test]
    fn probes_are_alive_on_any_status_and_silent_by_kind() {
        let up = reply(CallOutcome::Answered(ProbeFields { status: 500 }));
        assert_eq!(ProbeObs::of(&up), ProbeObs::Alive { axon_uuid: Some("u-1".into()) });
        for (kind, want) in [
            (NoResponseKind::Connect, Silence::Refused),
            (NoResponseKind::Timeout, Silence::Timeout),
            (NoResponseKind::Disconnected, Silence::Dropped),
        ] {
            let r = reply(CallOutcome::<ProbeFields>::NoResponse { kind, detail: String::new() });
            assert_eq!(ProbeObs::of(&r), ProbeObs::Silent(want));
        }
    }
}
