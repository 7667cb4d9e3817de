//! One line of `patrol doctor`'s report, and its four kinds: ok, warning, skipped, failed.

use serde::Serialize;

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub miner: Option<String>,
    pub ok: bool,
    /// Not applicable here (counts as ok).
    pub skipped: bool,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Passes, but something is worth knowing (counts as ok).
    pub warning: bool,
}

pub(crate) fn ok(check: &'static str, miner: Option<&str>, detail: impl Into<String>) -> Check {
    Check {
        check,
        miner: miner.map(str::to_owned),
        ok: true,
        skipped: false,
        detail: detail.into(),
        fix: None,
        warning: false,
    }
}

pub(crate) fn warn(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check { warning: true, fix: Some(fix.into()), ..ok(check, None, detail) }
}

pub(crate) fn skipped(check: &'static str, miner: Option<&str>, detail: impl Into<String>) -> Check {
    Check { skipped: true, ..ok(check, miner, format!("skipped: {}", detail.into())) }
}

pub(crate) fn fail(
    check: &'static str,
    miner: Option<&str>,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Check {
    Check {
        check,
        miner: miner.map(str::to_owned),
        ok: false,
        skipped: false,
        detail: detail.into(),
        fix: Some(fix.into()),
        warning: false,
    }
}
