//! What a human should look at: a validator refusing the PAT for good, a store unavailable or a
//! validator uncovered past `alert_after`, the PAT itself invalid.

use serde::{Deserialize, Serialize};

use super::{Desired, History, Policy, PreflightStatus, Secs};

/// What an alert is about (`patrol_alerts{kind}`, `reconcile --json` `alerts[].kind`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum AlertKind {
    /// A validator refused the PAT for good; no retries until it changes.
    Terminal,
    /// A validator's store has been unreadable longer than `alert_after`.
    StoreUnavailable,
    /// A validator has been uncovered longer than `alert_after`.
    Uncovered,
    /// The PAT itself is revoked, expired or lacks scope: nothing is sent anywhere.
    PatInvalid,
}

impl AlertKind {
    /// All kinds (metric label values).
    pub const ALL: &[AlertKind] = <AlertKind as strum::VariantArray>::VARIANTS;

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl std::fmt::Display for AlertKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a human should look at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub uid: Option<u16>,
    pub kind: AlertKind,
    pub message: String,
}

/// Alerts implied by the histories now: terminal validators, long store outages, long gaps.
pub fn alerts<'a>(
    p: &Policy,
    d: &Desired,
    histories: impl IntoIterator<Item = (u16, &'a History)>,
    now: Secs,
) -> Vec<Alert> {
    let mut out = Vec::new();
    if let PreflightStatus::Invalid(r) = &d.preflight {
        out.push(Alert {
            uid: None,
            kind: AlertKind::PatInvalid,
            message: format!("PAT revoked, expired or lacks scope: {r}; nothing was sent"),
        });
    }
    for (uid, h) in histories {
        if let Some(t) = &h.terminal {
            out.push(Alert {
                uid: Some(uid),
                kind: AlertKind::Terminal,
                message: format!("uid {uid}: {}; no retries until the PAT changes", t.reason),
            });
        } else if let Some(since) = h.unavailable_since.filter(|s| now.saturating_sub(*s) >= p.alert_after) {
            out.push(Alert {
                uid: Some(uid),
                kind: AlertKind::StoreUnavailable,
                message: format!(
                    "uid {uid}: store unavailable for {} min (more than a scoring round)",
                    (now - since) / 60
                ),
            });
        } else if let Some(since) = h.uncovered_since.filter(|s| now.saturating_sub(*s) >= p.alert_after) {
            out.push(Alert {
                uid: Some(uid),
                kind: AlertKind::Uncovered,
                message: format!("uid {uid}: not covered for {} min (more than a scoring round)", (now - since) / 60),
            });
        }
    }
    out
}
