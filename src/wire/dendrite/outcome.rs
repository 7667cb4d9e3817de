//! What a call ends in: the three outcomes, their reply with its latency, and the raw answer
//! before it is typed.

use std::time::Duration;

use serde_json::Value;

/// Why a call produced no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoResponseKind {
    /// Nothing complete within the timeout.
    Timeout,
    /// TCP connect failed (refused, unreachable).
    Connect,
    /// The connection was closed or reset before a full response.
    Disconnected,
    /// HTTP 200 whose body is not the synapse (not JSON, wrong field types).
    Malformed,
    /// The response body exceeded the size cap.
    TooLarge,
}

impl NoResponseKind {
    /// The status the Python dendrite would have put in `dendrite.status_code` (gitt's post JSON).
    pub fn python_status(self) -> u16 {
        match self {
            NoResponseKind::Timeout => 408,
            NoResponseKind::Connect | NoResponseKind::Disconnected => 503,
            NoResponseKind::Malformed | NoResponseKind::TooLarge => 422,
        }
    }

    /// Short lowercase label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            NoResponseKind::Timeout => "timeout",
            NoResponseKind::Connect => "connect",
            NoResponseKind::Disconnected => "disconnected",
            NoResponseKind::Malformed => "malformed",
            NoResponseKind::TooLarge => "too_large",
        }
    }
}

/// The three things a call can end in.
#[derive(Debug, Clone, PartialEq)]
pub enum CallOutcome<F> {
    /// HTTP 200 with a well-formed synapse (its `rejection_reason` as [`foreign_text`](crate::secret::foreign_text)).
    Answered(F),
    /// Any other HTTP status; `message` from the JSON body, the status header or the reason phrase,
    /// as [`foreign_text`](crate::secret::foreign_text). A redirect (3xx) is never followed: it is a rejection naming it.
    Rejected { status: u16, message: String },
    /// No usable HTTP answer.
    NoResponse { kind: NoResponseKind, detail: String },
}

impl<F> CallOutcome<F> {
    /// The HTTP status of the answer: 200, or the error status of a rejection; `None` when no
    /// HTTP answer came.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            CallOutcome::Answered(_) => Some(200),
            CallOutcome::Rejected { status, .. } => Some(*status),
            CallOutcome::NoResponse { .. } => None,
        }
    }

    /// The status as the Python dendrite reports it (`dendrite.status_code`, in gitt's JSON): the
    /// HTTP status, or [`NoResponseKind::python_status`] without an answer.
    pub fn status_code(&self) -> u16 {
        match self {
            CallOutcome::NoResponse { kind, .. } => kind.python_status(),
            _ => self.http_status().unwrap_or_default(),
        }
    }

    /// What kept it from being an answer, on one line: the rejection's message, or how it failed
    /// (`timeout: no answer within 12s`); `None` for an answer.
    pub fn detail(&self) -> Option<String> {
        match self {
            CallOutcome::Answered(_) => None,
            CallOutcome::Rejected { message, .. } => Some(message.clone()),
            CallOutcome::NoResponse { kind, detail } => Some(format!("{}: {detail}", kind.as_str())),
        }
    }

    /// The answer's fields, if it was one.
    pub fn answer(&self) -> Option<&F> {
        match self {
            CallOutcome::Answered(f) => Some(f),
            _ => None,
        }
    }
}

/// An outcome plus how long it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply<F> {
    pub outcome: CallOutcome<F>,
    pub latency: Duration,
    /// The answering axon's `bt_header_axon_uuid`: made once per process start (bittensor 10.x
    /// `Axon.__init__`), stamped into every *error* response after preprocessing (success responses
    /// echo the caller's body instead, wire doc §6). A different one than last time means the
    /// validator restarted.
    pub axon_uuid: Option<String>,
}

impl<F> Reply<F> {
    /// A reply that never reached the wire (a panicked task, a skipped call).
    pub fn no_response(kind: NoResponseKind, detail: impl Into<String>) -> Reply<F> {
        Reply {
            outcome: CallOutcome::NoResponse { kind, detail: detail.into() },
            latency: Duration::ZERO,
            axon_uuid: None,
        }
    }
}

/// What came back from one request, before typing.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// The HTTP status, 0 when there was none.
    pub status: u16,
    pub outcome: CallOutcome<Value>,
    pub axon_uuid: Option<String>,
}

/// The liveness probe's answer: any HTTP response at all means the axon is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeFields {
    /// The HTTP status (a bittensor axon answers the probe with 500, see [`Dendrite::probe`]).
    pub status: u16,
}
