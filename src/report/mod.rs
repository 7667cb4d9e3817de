//! The output of `check`, `post` and `reconcile`: gitt's JSON keys plus patrol's, and the terminal
//! table. Field order in the structs is the JSON order. Nothing here can hold the PAT: rows are built
//! from validator answers and reasons, which never echo it (gittensor clears the token before
//! answering, and the dendrite never puts it in an error).
//!
//! Rows are built from what [`crate::observe`] read of an answer (a [`Reading`](crate::observe::Reading)),
//! never from the wire reply; the counts and the stake share come from [`Summary`], the same sum the
//! exit code is judged on. This file holds the JSON (rows and reports, in command order: check,
//! post, reconcile); `table.rs` renders them for a terminal.

mod table;

use serde::Serialize;

pub use self::table::{check_table, post_table, reconcile_table, short_hotkey, stdout, table};
use crate::coverage::Summary;
use crate::github::PreflightOutcome;
use crate::observe::{BroadcastObs, BroadcastReading, Category, CheckReading, GittCategory, Reading};
use crate::reconcile::core::rfc3339;
use crate::reconcile::pass::{ActionTaken, PassOutcome, Spend, ValidatorOutcome};
use crate::validators::{Skipped, Validator};

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

/// A row that counts toward coverage.
pub trait CoverageRow {
    /// The category the verdict is judged on.
    fn coverage_category(&self) -> Category;
    /// The validator's stake.
    fn stake(&self) -> f64;
}

/// What `rows` add up to: the counts, the stake share and the verdict behind the exit code.
pub fn summary<R: CoverageRow>(rows: &[R]) -> Summary {
    Summary::of(rows.iter().map(|r| (r.coverage_category(), r.stake())))
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
    #[serde(flatten)]
    pub contact: Contact,
    pub vtrust: f64,
}

/// How the call to one validator went and where it is: what check and post rows share.
#[derive(Debug, Clone, Serialize)]
pub struct Contact {
    pub latency_ms: u64,
    /// Why there was no answer (timeout, connect, …) or the rejection message.
    pub detail: Option<String>,
    /// What to do about a rejection caused on this side (a nonce refused because this machine's
    /// clock is behind: [`crate::observe::reason::rejection_hint`]); `null` otherwise.
    pub hint: Option<String>,
    pub ip: String,
    pub port: u16,
    pub stake: f64,
}

impl Contact {
    /// `v`, reached as `r` says.
    fn of<O, F>(v: &Validator, r: &Reading<O, F>) -> Contact {
        Contact {
            latency_ms: r.latency.as_millis() as u64,
            detail: r.detail.clone(),
            hint: r.hint.clone(),
            ..Contact::none(v)
        }
    }

    /// `v`, not reached.
    fn none(v: &Validator) -> Contact {
        Contact { latency_ms: 0, detail: None, hint: None, ip: v.ip.to_string(), port: v.port, stake: v.stake }
    }
}

impl CheckRow {
    /// Build from a validator and what its check answer said.
    pub fn new(v: &Validator, r: &CheckReading) -> CheckRow {
        let answer = r.answer.as_ref();
        CheckRow {
            gitt_category: r.gitt_category(),
            has_pat: answer.and_then(|f| f.has_pat),
            pat_valid: answer.and_then(|f| f.pat_valid),
            rejection_reason: answer.and_then(|f| f.rejection_reason.clone()),
            status_code: Some(r.status_code),
            contact: Contact::of(v, r),
            ..CheckRow::unanswered(v, r.obs.category)
        }
    }

    /// A validator the pass did not contact: its last known category, and why nothing else.
    fn not_contacted(v: &Validator, last_known: Category) -> CheckRow {
        let mut row = CheckRow::unanswered(v, last_known);
        row.contact.detail = Some("not contacted this pass (in backoff); category is the last known one".into());
        row
    }

    fn unanswered(v: &Validator, category: Category) -> CheckRow {
        CheckRow {
            uid: v.uid,
            hotkey: v.hotkey.clone(),
            category,
            gitt_category: GittCategory::NoResponse,
            has_pat: None,
            pat_valid: None,
            rejection_reason: None,
            status_code: None,
            contact: Contact::none(v),
            vtrust: v.vtrust,
        }
    }
}

impl CoverageRow for CheckRow {
    fn coverage_category(&self) -> Category {
        self.category
    }
    fn stake(&self) -> f64 {
        self.contact.stake
    }
}

/// `patrol check --json` (and, with [`ReconcileRow`]s, the body of
/// `patrol reconcile --json`).
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
        let s = summary(&rows);
        CheckReport {
            success: s.count(Category::Valid) > 0,
            coverage_complete: s.complete(),
            total_validators: s.total,
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
        summary(&self.results)
    }

    /// The line `check` ends with on stderr: covered of total, the stake share, every category.
    pub fn summary_line(&self) -> String {
        let s = self.summary();
        format!(
            "{}/{} covered ({:.1}% of stake); valid {}, no_pat {}, invalid_pat {}, inconclusive {}, store_unavailable {}, no_response {}, rejected {}",
            s.covered,
            s.total,
            s.stake_weighted_coverage * 100.0,
            self.valid,
            self.no_pat,
            self.invalid_pat,
            self.inconclusive,
            self.store_unavailable,
            self.no_response,
            self.rejected
        )
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

impl PostOutcome {
    /// gitt's name for a broadcast observation: an HTTP error status and an answer without
    /// `accepted` are `no_response`.
    pub fn of(obs: &BroadcastObs) -> PostOutcome {
        match obs {
            BroadcastObs::Accepted => PostOutcome::Accepted,
            BroadcastObs::Rejected { .. } => PostOutcome::Rejected,
            BroadcastObs::Failed { .. } => PostOutcome::NoResponse,
        }
    }
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
    #[serde(flatten)]
    pub contact: Contact,
}

impl PostRow {
    /// Build from a validator, what its last broadcast answer said and the number of attempts.
    pub fn new(v: &Validator, r: &BroadcastReading, attempts: u32) -> PostRow {
        let answer = r.answer.as_ref();
        PostRow {
            uid: v.uid,
            hotkey: v.hotkey.clone(),
            accepted: answer.and_then(|f| f.accepted),
            rejection_reason: answer.and_then(|f| f.rejection_reason.clone()),
            status_code: Some(r.status_code),
            outcome: PostOutcome::of(&r.obs),
            attempts,
            contact: Contact::of(v, r),
        }
    }
}

/// `post` judged as coverage: a validator that accepted holds our PAT (`valid`: the preflight has
/// just passed), one that refused answered without holding it (`no_pat`), anything else did not
/// answer (`no_response`, as gitt counts an HTTP error status too).
impl CoverageRow for PostRow {
    fn coverage_category(&self) -> Category {
        match self.outcome {
            PostOutcome::Accepted => Category::Valid,
            PostOutcome::Rejected => Category::NoPat,
            PostOutcome::NoResponse => Category::NoResponse,
        }
    }
    fn stake(&self) -> f64 {
        self.contact.stake
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
        let s = summary(&rows);
        PostReport {
            success: s.covered > 0,
            github_login: login,
            total_validators: s.total,
            accepted: s.covered,
            rejected: s.count(Category::NoPat),
            no_response: s.count(Category::NoResponse),
            coverage_complete: s.complete(),
            stake_weighted_coverage: s.stake_weighted_coverage,
            skipped,
            results: rows,
            hotkey: hotkey.to_string(),
            pat: pat_redacted,
            source,
        }
    }

    /// Coverage summary of the rows (see [`PostRow`]'s [`CoverageRow`]): its verdict is `post`'s
    /// exit code.
    pub fn summary(&self) -> Summary {
        summary(&self.results)
    }

    /// The line `post` ends with on stderr.
    pub fn summary_line(&self) -> String {
        format!(
            "{}/{} accepted ({:.1}% of stake); rejected {}, no_response {}",
            self.accepted,
            self.total_validators,
            self.stake_weighted_coverage * 100.0,
            self.rejected,
            self.no_response
        )
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

impl ReconcileRow {
    /// Build from what the pass did about one validator.
    pub fn new(v: &ValidatorOutcome) -> ReconcileRow {
        let last_known = v.final_category.unwrap_or(Category::NoResponse);
        let check = match &v.checked {
            Some(r) => CheckRow::new(&v.validator, r),
            None => CheckRow::not_contacted(&v.validator, last_known),
        };
        ReconcileRow {
            check,
            action: v.action,
            why: v.why.clone(),
            attempts: v.attempts,
            final_category: last_known,
            next_check_at: rfc3339(v.next_check_at),
            failures: v.failures,
        }
    }
}

impl CoverageRow for ReconcileRow {
    fn coverage_category(&self) -> Category {
        self.final_category
    }
    fn stake(&self) -> f64 {
        self.check.contact.stake
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
        let rows: Vec<ReconcileRow> = out.validators.iter().map(ReconcileRow::new).collect();
        let preflight = out.preflight.as_ref().map(|p| match &p.outcome {
            PreflightOutcome::Valid { login, .. } => format!("valid (login {login})"),
            PreflightOutcome::Transient { reason, .. } => format!("transient: {reason}"),
            PreflightOutcome::Invalid { reason } => format!("invalid: {reason}"),
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

#[cfg(test)]
mod tests;
