//! What a check answer means for coverage, and how a set of answers adds up. Pure.
//!
//! Categories refine gitt's (docs/gittensor-pat-semantics.md §1.4): `store_unavailable` is split out
//! of `no_pat` (has_pat=false, pat_valid=null is the validator saying "my store is unreadable, retry",
//! not "I lost your PAT"), and `rejected` (an HTTP error status: 401 nonce/signature, 403 not
//! registered, 404 no handler, 500) is split out of `no_response`.
//!
//! **Covered** means `valid` or `inconclusive`: an inconclusive validator holds our PAT and only
//! failed to reach GitHub just now (it keeps scoring with the stored GitHub id), and nothing a miner
//! can send would change that. Exit codes and `coverage_complete` use this definition.

use serde::Serialize;

use crate::wire::{CallOutcome, CheckFields};

/// Coverage category of one validator after a `PatCheckSynapse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
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
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classify a check answer's fields (top-down, as gitt, plus `store_unavailable`). An `invalid_pat`
/// whose reason is a validator-side GitHub 5xx/429/transport error (upstream's test-query bug,
/// docs §2.6) is `inconclusive`: the PAT is stored and nothing is wrong with it.
pub fn classify_fields(f: &CheckFields) -> Category {
    match (f.has_pat, f.pat_valid) {
        (_, Some(true)) => Category::Valid,
        (Some(false), None) => Category::StoreUnavailable,
        (Some(false), Some(false)) => Category::NoPat,
        (Some(true), Some(false))
            if crate::reconcile::classify::invalid_pat_reason(f.rejection_reason.as_deref())
                == crate::reconcile::classify::Persistence::Transient =>
        {
            Category::Inconclusive
        }
        (Some(true), Some(false)) => Category::InvalidPat,
        (Some(true), None) => Category::Inconclusive,
        // has_pat missing: a 200 that says nothing — gitt's no_response
        (None, _) => Category::NoResponse,
    }
}

/// Classify a whole call outcome.
pub fn classify(outcome: &CallOutcome<CheckFields>) -> Category {
    match outcome {
        CallOutcome::Answered(f) => classify_fields(f),
        CallOutcome::Rejected { .. } => Category::Rejected,
        CallOutcome::NoResponse { .. } => Category::NoResponse,
    }
}

/// gitt's category for an answer (its JSON counts must stay comparable): no refinements.
pub fn gitt_category_of(f: &CheckFields) -> &'static str {
    match (f.has_pat, f.pat_valid) {
        (_, Some(true)) => "valid",
        (Some(false), _) => "no_pat",
        (Some(true), Some(false)) => "invalid_pat",
        (Some(true), None) => "inconclusive",
        _ => "no_response",
    }
}

/// What the miner can do about an HTTP rejection whose cause is on this side, for the `hint` of a
/// row; `None` when there is nothing specific to say. Pure.
///
/// Today that is the axon's nonce check (bittensor's `default_verify`, docs
/// `bittensor-wire-protocol.md` §5.1), which answers 401 with, after "Not Verified with error: ",
/// either "Nonce is too old: acceptable delta is A seconds but request was B seconds old" (first
/// contact: our nonce, i.e. this machine's clock, is more than 4 s + the timeout behind the
/// validator's clock) or "Nonce is too old, a newer one was last processed" (it already saw a later
/// nonce from this process: the clock stepped back, or a request was replayed). Both mean every
/// request to that validator fails until the clocks agree; a bare "rejected with HTTP 401" would
/// hide it.
pub fn rejection_hint(status: u16, message: &str) -> Option<String> {
    if status != 401 || !message.contains("Nonce is too old") {
        return None;
    }
    const FIX: &str =
        "check this machine's clock (NTP: timedatectl set-ntp true; `patrol doctor` compares it with the chain's)";
    if message.contains("a newer one was last processed") {
        return Some(format!(
            "the validator rejected the request nonce: it already saw a newer one from this process (the clock \
             stepped back?); {FIX}"
        ));
    }
    let number = |s: &str| s.trim().parse::<f64>().ok().filter(|x| x.is_finite());
    let ages = message
        .split_once("acceptable delta is ")
        .and_then(|(_, rest)| rest.split_once(" seconds but request was "))
        .and_then(|(allowed, rest)| Some((number(allowed)?, number(rest.split_once(" seconds")?.0)?)));
    Some(match ages {
        Some((allowed, age)) => format!(
            "the validator rejected the request nonce as too old: by its clock the request was {age:.1} s old and \
             it accepts {allowed:.1} s, so this machine's clock is behind the validator's; {FIX}"
        ),
        None => format!(
            "the validator rejected the request nonce as too old: this machine's clock is behind the validator's; {FIX}"
        ),
    })
}

/// Counts and stake shares over a set of (category, stake) rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub total: usize,
    pub covered: usize,
    pub answered: usize,
    pub counts: std::collections::BTreeMap<Category, usize>,
    /// Share of eligible stake whose validator is covered (0..=1; 0 when there is no stake).
    pub stake_weighted_coverage: f64,
    /// Share of eligible stake whose validator answered `valid`.
    pub stake_weighted_valid: f64,
}

impl Summary {
    /// Add up `(category, stake)` rows.
    pub fn of(rows: impl IntoIterator<Item = (Category, f64)>) -> Summary {
        let mut s = Summary::default();
        let (mut stake, mut covered_stake, mut valid_stake) = (0.0, 0.0, 0.0);
        for (c, st) in rows {
            s.total += 1;
            *s.counts.entry(c).or_default() += 1;
            stake += st;
            if c.is_covered() {
                s.covered += 1;
                covered_stake += st;
            }
            if c == Category::Valid {
                valid_stake += st;
            }
            if c.is_answer() {
                s.answered += 1;
            }
        }
        if stake > 0.0 {
            s.stake_weighted_coverage = covered_stake / stake;
            s.stake_weighted_valid = valid_stake / stake;
        } else if s.total > 0 && s.covered == s.total {
            s.stake_weighted_coverage = 1.0;
            s.stake_weighted_valid = if valid_stake == 0.0 && s.count(Category::Valid) == s.total { 1.0 } else { 0.0 };
        }
        s
    }

    /// Number of rows in `c`.
    pub fn count(&self, c: Category) -> usize {
        self.counts.get(&c).copied().unwrap_or(0)
    }

    /// Every eligible validator covered (and there is at least one).
    pub fn complete(&self) -> bool {
        self.total > 0 && self.covered == self.total
    }

    /// The coverage verdict as an exit status.
    pub fn verdict(&self) -> Verdict {
        if self.total == 0 || self.answered == 0 {
            Verdict::Undetermined
        } else if self.covered == self.total {
            Verdict::Covered
        } else if self.covered == 0 {
            Verdict::NoneCovered
        } else {
            Verdict::Partial
        }
    }
}

/// Coverage verdict (maps 1:1 to exit codes 0/1/2/3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Covered,
    Partial,
    NoneCovered,
    Undetermined,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::NoResponseKind;

    fn f(has_pat: Option<bool>, pat_valid: Option<bool>) -> Category {
        classify_fields(&CheckFields { has_pat, pat_valid, rejection_reason: None })
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
        assert_eq!(gitt_category_of(&bug), "invalid_pat");
        assert_eq!(
            gitt_category_of(&CheckFields { has_pat: Some(false), pat_valid: None, rejection_reason: None }),
            "no_pat"
        );
        let r: CallOutcome<CheckFields> = CallOutcome::Rejected { status: 403, message: "x".into() };
        assert_eq!(classify(&r), Category::Rejected);
        let n: CallOutcome<CheckFields> =
            CallOutcome::NoResponse { kind: NoResponseKind::Timeout, detail: String::new() };
        assert_eq!(classify(&n), Category::NoResponse);
    }

    #[test]
    fn nonce_rejections_get_a_clock_hint() {
        // The Python axon's texts, as recorded in shared/vectors/axon_responses.json (real bt.Axon).
        let old = "Not Verified with error: Nonce is too old: acceptable delta is 16.00 seconds but request was 60.01 seconds old";
        let hint = rejection_hint(401, old).unwrap();
        assert!(hint.contains("request nonce") && hint.contains("NTP"), "{hint}");
        assert!(hint.contains("60.0 s old") && hint.contains("accepts 16.0 s"), "{hint}");
        let newer = "Not Verified with error: Nonce is too old, a newer one was last processed";
        let hint = rejection_hint(401, newer).unwrap();
        assert!(hint.contains("request nonce") && hint.contains("clock"), "{hint}");
        // numbers that do not parse: still the hint, without them
        let odd =
            "Not Verified with error: Nonce is too old: acceptable delta is x seconds but request was y seconds old";
        assert!(!rejection_hint(401, odd).unwrap().contains(" s old"));
        // other rejections: nothing to add
        assert_eq!(rejection_hint(401, "Not Verified with error: Signature mismatch with 1.2.3 and 0xab"), None);
        assert_eq!(rejection_hint(401, "Not Verified with error: Missing Nonce"), None);
        assert_eq!(rejection_hint(403, old), None, "only the axon's 401");
        assert_eq!(rejection_hint(500, "Internal Server Error"), None);
    }

    #[test]
    fn verdicts() {
        use Category::*;
        assert_eq!(Summary::of([]).verdict(), Verdict::Undetermined);
        assert_eq!(Summary::of([(NoResponse, 1.0), (Rejected, 1.0)]).verdict(), Verdict::Undetermined);
        assert_eq!(Summary::of([(Valid, 1.0), (Inconclusive, 3.0)]).verdict(), Verdict::Covered);
        assert_eq!(Summary::of([(NoPat, 1.0), (NoResponse, 1.0)]).verdict(), Verdict::NoneCovered);
        let s = Summary::of([(Valid, 3.0), (NoPat, 1.0)]);
        assert_eq!(s.verdict(), Verdict::Partial);
        assert_eq!(s.stake_weighted_coverage, 0.75);
        assert_eq!(s.count(NoPat), 1);
        let s = Summary::of([(Valid, 1.0), (Inconclusive, 1.0)]);
        assert_eq!((s.stake_weighted_coverage, s.stake_weighted_valid), (1.0, 0.5));
    }
}
