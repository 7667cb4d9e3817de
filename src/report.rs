//! The output of `check`, `post` and `reconcile`: gitt's JSON keys plus patrol's, and the terminal
//! table. Field order in the structs is the JSON order. Nothing here can hold the PAT: rows are built
//! from validator answers and reasons, which never echo it (gittensor clears the token before
//! answering, and the dendrite never puts it in an error).

use serde::Serialize;

use crate::coverage::Summary;
use crate::observe::{self, Category, GittCategory};
use crate::reconcile::core::rfc3339;
use crate::reconcile::pass::{ActionTaken, PassOutcome, Spend};
use crate::validators::{Skipped, Validator};
use crate::wire::{BroadcastFields, CallOutcome, CheckFields, Reply};

/// Where the validator list came from.
#[derive(Debug, Clone, Serialize, Default)]
pub struct SourceInfo {
    pub netuid: u16,
    pub block: Option<u64>,
    /// "chain", "static" or "cache".
    pub source: String,
    /// Age of a cached metagraph, when one was used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metagraph_age_s: Option<u64>,
}

/// One validator's check result.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRow {
    pub uid: u16,
    /// Full SS58 (gitt truncates to 16 chars + "...").
    pub hotkey: String,
    pub category: Category,
    /// What `gitt miner check` would call it (no refinements).
    pub gitt_category: GittCategory,
    pub has_pat: Option<bool>,
    pub pat_valid: Option<bool>,
    pub rejection_reason: Option<String>,
    /// 200 for an answer, the HTTP status for `rejected`, the Python dendrite's code (408/503/422)
    /// for `no_response`.
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    /// Why there was no answer (timeout, connect, …) or the rejection message.
    pub detail: Option<String>,
    /// What to do about a rejection caused on this side (a nonce refused because this machine's
    /// clock is behind: [`observe::reason::rejection_hint`]); `null` otherwise.
    pub hint: Option<String>,
    pub ip: String,
    pub port: u16,
    pub stake: f64,
    pub vtrust: f64,
}

impl CheckRow {
    /// Build from a validator and its check reply.
    pub fn new(v: &Validator, reply: &Reply<CheckFields>) -> CheckRow {
        let category = observe::classify(&reply.outcome);
        let gitt_category = GittCategory::of(&reply.outcome);
        let (has_pat, pat_valid, rejection_reason, status_code, detail) = match &reply.outcome {
            CallOutcome::Answered(f) => (f.has_pat, f.pat_valid, f.rejection_reason.clone(), Some(200), None),
            CallOutcome::Rejected { status, message } => (None, None, None, Some(*status), Some(message.clone())),
            CallOutcome::NoResponse { kind, detail } => {
                (None, None, None, Some(kind.python_status()), Some(format!("{}: {detail}", kind.as_str())))
            }
        };
        CheckRow {
            uid: v.uid,
            hotkey: v.hotkey.clone(),
            category,
            gitt_category,
            has_pat,
            pat_valid,
            rejection_reason,
            status_code,
            latency_ms: reply.latency.as_millis() as u64,
            detail,
            hint: observe::hint(&reply.outcome),
            ip: v.ip.to_string(),
            port: v.port,
            stake: v.stake,
            vtrust: v.vtrust,
        }
    }
}

/// `text`, followed by `hint` when there is one (a table cell).
fn with_hint(text: String, hint: Option<&str>) -> String {
    match hint {
        Some(h) if text.is_empty() => format!("hint: {h}"),
        Some(h) => format!("{text} (hint: {h})"),
        None => text,
    }
}

/// A row that counts toward coverage.
pub trait CoverageRow {
    /// The category the verdict is judged on.
    fn coverage_category(&self) -> Category;
    /// The validator's stake.
    fn stake(&self) -> f64;
}

impl CoverageRow for CheckRow {
    fn coverage_category(&self) -> Category {
        self.category
    }
    fn stake(&self) -> f64 {
        self.stake
    }
}

/// `patrol check --json` (and, with [`ReconcileRow`]s, the body of `patrol reconcile --json`).
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport<R = CheckRow> {
    /// gitt: at least one validator answered `valid`.
    pub success: bool,
    pub coverage_complete: bool,
    pub total_validators: usize,
    pub valid: usize,
    pub no_pat: usize,
    pub invalid_pat: usize,
    pub inconclusive: usize,
    pub store_unavailable: usize,
    pub no_response: usize,
    pub rejected: usize,
    pub stake_weighted_coverage: f64,
    pub stake_weighted_valid: f64,
    pub skipped: Vec<Skipped>,
    pub results: Vec<R>,
    pub hotkey: String,
    #[serde(flatten)]
    pub source: SourceInfo,
}

impl<R: CoverageRow> CheckReport<R> {
    /// Assemble from rows.
    pub fn new(hotkey: &str, rows: Vec<R>, skipped: Vec<Skipped>, source: SourceInfo) -> CheckReport<R> {
        let s = Summary::of(rows.iter().map(|r| (r.coverage_category(), r.stake())));
        CheckReport {
            success: s.count(Category::Valid) > 0,
            coverage_complete: s.complete(),
            total_validators: rows.len(),
            valid: s.count(Category::Valid),
            no_pat: s.count(Category::NoPat),
            invalid_pat: s.count(Category::InvalidPat),
            inconclusive: s.count(Category::Inconclusive),
            store_unavailable: s.count(Category::StoreUnavailable),
            no_response: s.count(Category::NoResponse),
            rejected: s.count(Category::Rejected),
            stake_weighted_coverage: s.stake_weighted_coverage,
            stake_weighted_valid: s.stake_weighted_valid,
            skipped,
            results: rows,
            hotkey: hotkey.to_string(),
            source,
        }
    }

    /// Coverage summary of the rows.
    pub fn summary(&self) -> Summary {
        Summary::of(self.results.iter().map(|r| (r.coverage_category(), r.stake())))
    }
}

/// Outcome of one broadcast, as gitt names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PostOutcome {
    Accepted,
    Rejected,
    NoResponse,
}

/// One validator's broadcast result.
#[derive(Debug, Clone, Serialize)]
pub struct PostRow {
    pub uid: u16,
    pub hotkey: String,
    pub accepted: Option<bool>,
    pub rejection_reason: Option<String>,
    pub status_code: Option<u16>,
    pub outcome: PostOutcome,
    pub attempts: u32,
    pub latency_ms: u64,
    pub detail: Option<String>,
    /// As [`CheckRow::hint`].
    pub hint: Option<String>,
    pub ip: String,
    pub port: u16,
    pub stake: f64,
}

impl PostRow {
    /// Build from a validator, its last broadcast reply and the number of attempts.
    pub fn new(v: &Validator, reply: &Reply<BroadcastFields>, attempts: u32) -> PostRow {
        let (accepted, rejection_reason, status_code, detail) = match &reply.outcome {
            CallOutcome::Answered(f) => (f.accepted, f.rejection_reason.clone(), Some(200), None),
            CallOutcome::Rejected { status, message } => (None, None, Some(*status), Some(message.clone())),
            CallOutcome::NoResponse { kind, detail } => {
                (None, None, Some(kind.python_status()), Some(format!("{}: {detail}", kind.as_str())))
            }
        };
        let outcome = match accepted {
            Some(true) => PostOutcome::Accepted,
            Some(false) => PostOutcome::Rejected,
            None => PostOutcome::NoResponse,
        };
        PostRow {
            uid: v.uid,
            hotkey: v.hotkey.clone(),
            accepted,
            rejection_reason,
            status_code,
            outcome,
            attempts,
            latency_ms: reply.latency.as_millis() as u64,
            detail,
            hint: observe::hint(&reply.outcome),
            ip: v.ip.to_string(),
            port: v.port,
            stake: v.stake,
        }
    }
}

/// `patrol post --json`.
#[derive(Debug, Clone, Serialize)]
pub struct PostReport {
    /// gitt: at least one validator accepted.
    pub success: bool,
    pub github_login: Option<String>,
    pub total_validators: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub no_response: usize,
    pub coverage_complete: bool,
    /// Share of eligible stake at validators that accepted.
    pub stake_weighted_coverage: f64,
    pub skipped: Vec<Skipped>,
    pub results: Vec<PostRow>,
    pub hotkey: String,
    /// `***` + last 4 of the PAT that was sent.
    pub pat: String,
    #[serde(flatten)]
    pub source: SourceInfo,
}

impl PostReport {
    /// Assemble from rows.
    pub fn new(
        hotkey: &str,
        login: Option<String>,
        pat_redacted: String,
        rows: Vec<PostRow>,
        skipped: Vec<Skipped>,
        source: SourceInfo,
    ) -> PostReport {
        let n = |o| rows.iter().filter(|r| r.outcome == o).count();
        // Folded from +0.0: an empty f64 `sum()` is -0.0 (IEEE), which printed "-0.0% of stake".
        let add = |a: f64, b: f64| a + b;
        let total_stake: f64 = rows.iter().map(|r| r.stake).fold(0.0, add);
        let acc_stake: f64 = rows.iter().filter(|r| r.outcome == PostOutcome::Accepted).map(|r| r.stake).fold(0.0, add);
        let accepted = n(PostOutcome::Accepted);
        PostReport {
            success: accepted > 0,
            github_login: login,
            total_validators: rows.len(),
            accepted,
            rejected: n(PostOutcome::Rejected),
            no_response: n(PostOutcome::NoResponse),
            coverage_complete: !rows.is_empty() && accepted == rows.len(),
            stake_weighted_coverage: if total_stake > 0.0 {
                acc_stake / total_stake
            } else if accepted == rows.len() && accepted > 0 {
                1.0
            } else {
                0.0
            },
            skipped,
            results: rows,
            hotkey: hotkey.to_string(),
            pat: pat_redacted,
            source,
        }
    }
}

/// A plain-text table: header row, then rows; columns padded to the widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

/// Shorten an SS58 hotkey for tables: first 8 + "…" + last 4.
pub fn short_hotkey(h: &str) -> String {
    if h.len() <= 14 { h.to_string() } else { format!("{}…{}", &h[..8], &h[h.len() - 4..]) }
}

/// Render check rows for a terminal.
pub fn check_table(r: &CheckReport<CheckRow>) -> String {
    let rows: Vec<Vec<String>> = r
        .results
        .iter()
        .map(|x| {
            vec![
                x.uid.to_string(),
                short_hotkey(&x.hotkey),
                format!("{}:{}", x.ip, x.port),
                x.category.to_string(),
                x.status_code.map(|c| c.to_string()).unwrap_or_default(),
                format!("{} ms", x.latency_ms),
                with_hint(
                    x.rejection_reason.clone().or_else(|| x.detail.clone()).unwrap_or_default(),
                    x.hint.as_deref(),
                ),
            ]
        })
        .collect();
    table(&["UID", "HOTKEY", "AXON", "CATEGORY", "STATUS", "LATENCY", "REASON"], &rows)
}

/// Render post rows for a terminal.
pub fn post_table(r: &PostReport) -> String {
    let rows: Vec<Vec<String>> = r
        .results
        .iter()
        .map(|x| {
            vec![
                x.uid.to_string(),
                short_hotkey(&x.hotkey),
                format!("{}:{}", x.ip, x.port),
                serde_json::to_value(x.outcome).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                x.status_code.map(|c| c.to_string()).unwrap_or_default(),
                x.attempts.to_string(),
                with_hint(
                    x.rejection_reason.clone().or_else(|| x.detail.clone()).unwrap_or_default(),
                    x.hint.as_deref(),
                ),
            ]
        })
        .collect();
    table(&["UID", "HOTKEY", "AXON", "RESULT", "STATUS", "ATTEMPTS", "REASON"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validator(stake: f64) -> Validator {
        Validator {
            uid: 7,
            hotkey: "5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi".into(),
            ip: "127.0.0.1".parse().unwrap(),
            port: 8091,
            vtrust: 0.9,
            stake,
        }
    }

    /// Issue 15 item 8: nothing accepted printed "-0.0% of stake" and `"stake_weighted_coverage": -0.0`.
    #[test]
    fn nothing_accepted_is_zero_not_negative_zero() {
        let v = validator(20_000.0);
        let refused = Reply {
            outcome: CallOutcome::Answered(BroadcastFields { accepted: Some(false), rejection_reason: None }),
            latency: std::time::Duration::ZERO,
            axon_uuid: None,
        };
        let rep = PostReport::new(
            "5Hk",
            None,
            "***abcd".into(),
            vec![PostRow::new(&v, &refused, 1)],
            Vec::new(),
            SourceInfo::default(),
        );
        assert!(rep.stake_weighted_coverage.is_sign_positive(), "{}", rep.stake_weighted_coverage);
        assert_eq!(format!("{:.1}%", rep.stake_weighted_coverage * 100.0), "0.0%");
        let json = serde_json::to_string(&rep).unwrap();
        assert!(json.contains("\"stake_weighted_coverage\":0.0") && !json.contains("-0.0"), "{json}");
        let empty = PostReport::new("5Hk", None, "***abcd".into(), Vec::new(), Vec::new(), SourceInfo::default());
        assert!(empty.stake_weighted_coverage.is_sign_positive());
    }

    #[test]
    fn table_pads() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
        assert_eq!(short_hotkey("5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi"), "5DtDLm5r…D9Fi");
    }

    #[test]
    fn a_stale_nonce_rejection_carries_the_clock_hint_in_json_and_tables() {
        let v = validator(1.0);
        let message = "Not Verified with error: Nonce is too old: acceptable delta is 19.00 seconds but request was 60.00 seconds old";
        let rejected = |status| Reply {
            outcome: CallOutcome::<CheckFields>::Rejected { status, message: message.into() },
            latency: std::time::Duration::from_millis(3),
            axon_uuid: None,
        };
        let row = CheckRow::new(&v, &rejected(401));
        let hint = row.hint.clone().expect("a hint");
        assert!(hint.contains("clock") && hint.contains("NTP"), "{hint}");
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["hint"], serde_json::Value::String(hint.clone()));
        let rep = CheckReport::new("5Hk", vec![row], Vec::new(), SourceInfo::default());
        let table = check_table(&rep);
        assert!(table.contains("Nonce is too old") && table.contains(&format!("(hint: {hint})")), "{table}");
        // a 403 with the same text, and an answer: no hint (JSON null)
        assert_eq!(CheckRow::new(&v, &rejected(403)).hint, None);
        let answered = Reply {
            outcome: CallOutcome::Answered(CheckFields {
                has_pat: Some(true),
                pat_valid: Some(true),
                rejection_reason: None,
            }),
            latency: std::time::Duration::ZERO,
            axon_uuid: None,
        };
        assert_eq!(serde_json::to_value(CheckRow::new(&v, &answered)).unwrap()["hint"], serde_json::Value::Null);
        let post = PostRow::new(
            &v,
            &Reply {
                outcome: CallOutcome::<BroadcastFields>::Rejected { status: 401, message: message.into() },
                latency: std::time::Duration::ZERO,
                axon_uuid: None,
            },
            1,
        );
        assert_eq!(post.hint.as_deref(), Some(hint.as_str()));
        assert_eq!(with_hint(String::new(), Some("h")), "hint: h");
        assert_eq!(with_hint("x".into(), None), "x");
    }
}

/// One validator in `patrol reconcile --json`: check's row (its `category` is what the first check
/// said, or the last known category if it wasn't contacted) plus what the pass did.
#[derive(Debug, Clone, Serialize)]
pub struct ReconcileRow {
    #[serde(flatten)]
    pub check: CheckRow,
    /// What the pass did (`none`, `broadcast`, `recheck`, `give_up`, `would_broadcast` in a dry run,
    /// `not_due` when in backoff).
    pub action: ActionTaken,
    pub why: Option<String>,
    /// Broadcasts sent to this validator in this pass.
    pub attempts: u32,
    /// Category after the pass (the confirm check after a broadcast); the verdict uses this.
    pub final_category: Category,
    /// RFC 3339.
    pub next_check_at: String,
    /// Consecutive failures (backoff level).
    pub failures: u32,
}

impl CoverageRow for ReconcileRow {
    fn coverage_category(&self) -> Category {
        self.final_category
    }
    fn stake(&self) -> f64 {
        self.check.stake
    }
}

/// `patrol reconcile --json`: check's report, counted on the final categories, plus the pass.
#[derive(Debug, Clone, Serialize)]
pub struct ReconcileReport {
    #[serde(flatten)]
    pub check: CheckReport<ReconcileRow>,
    pub dry_run: bool,
    pub broadcasts_sent: usize,
    pub planned_broadcasts: Vec<u16>,
    pub preflight: Option<String>,
    pub alerts: Vec<crate::reconcile::core::Alert>,
    pub pass_duration_ms: u64,
    /// Estimated GitHub calls on the PAT: this pass, the last hour, the budget, the interval.
    pub github: Spend,
}

impl ReconcileReport {
    /// Assemble from a pass outcome.
    pub fn new(
        hotkey: &str,
        out: &PassOutcome,
        skipped: Vec<Skipped>,
        source: SourceInfo,
        dry_run: bool,
    ) -> ReconcileReport {
        let rows: Vec<ReconcileRow> = out
            .validators
            .iter()
            .map(|v| {
                let last_known = v.final_category.unwrap_or(Category::NoResponse);
                let check = v.checked.as_ref().map(|r| CheckRow::new(&v.validator, r)).unwrap_or_else(|| CheckRow {
                    uid: v.validator.uid,
                    hotkey: v.validator.hotkey.clone(),
                    category: last_known,
                    gitt_category: GittCategory::NoResponse,
                    has_pat: None,
                    pat_valid: None,
                    rejection_reason: None,
                    status_code: None,
                    latency_ms: 0,
                    detail: Some("not contacted this pass (in backoff); category is the last known one".into()),
                    hint: None,
                    ip: v.validator.ip.to_string(),
                    port: v.validator.port,
                    stake: v.validator.stake,
                    vtrust: v.validator.vtrust,
                });
                ReconcileRow {
                    check,
                    action: v.action,
                    why: v.why.clone(),
                    attempts: v.attempts,
                    final_category: last_known,
                    next_check_at: rfc3339(v.next_check_at),
                    failures: v.failures,
                }
            })
            .collect();
        let preflight = out.preflight.as_ref().map(|p| match &p.outcome {
            crate::github::PreflightOutcome::Valid { login, .. } => format!("valid (login {login})"),
            crate::github::PreflightOutcome::Transient { reason, .. } => format!("transient: {reason}"),
            crate::github::PreflightOutcome::Invalid { reason } => format!("invalid: {reason}"),
        });
        ReconcileReport {
            check: CheckReport::new(hotkey, rows, skipped, source),
            dry_run,
            broadcasts_sent: out.broadcasts.len(),
            planned_broadcasts: out.planned_broadcasts.clone(),
            preflight,
            alerts: out.alerts.clone(),
            pass_duration_ms: out.duration.as_millis() as u64,
            github: out.github,
        }
    }
}

/// Render reconcile rows for a terminal.
pub fn reconcile_table(r: &ReconcileReport) -> String {
    let rows: Vec<Vec<String>> = r
        .check
        .results
        .iter()
        .map(|x| {
            vec![
                x.check.uid.to_string(),
                short_hotkey(&x.check.hotkey),
                format!("{}:{}", x.check.ip, x.check.port),
                x.check.category.to_string(),
                x.action.as_str().to_string(),
                x.final_category.to_string(),
                x.next_check_at.clone(),
                with_hint(
                    x.why
                        .clone()
                        .or_else(|| x.check.rejection_reason.clone())
                        .or_else(|| x.check.detail.clone())
                        .unwrap_or_default(),
                    x.check.hint.as_deref(),
                ),
            ]
        })
        .collect();
    table(&["UID", "HOTKEY", "AXON", "OBSERVED", "ACTION", "FINAL", "NEXT CHECK", "WHY"], &rows)
}
