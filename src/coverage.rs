//! How a set of check answers adds up: counts, stake-weighted coverage and the verdict that
//! becomes the exit code of `check`, `post` and `reconcile`. Pure. What one answer means is
//! [`crate::observe`]'s business; "covered" is [`Category::is_covered`].

use serde::Serialize;

use crate::observe::Category;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Covered,
    Partial,
    NoneCovered,
    Undetermined,
}

impl Verdict {
    /// The exit code of `check`, `post`, `reconcile` and `status` (0/1/2/3; README "Exit codes").
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Covered => 0,
            Verdict::Partial => 1,
            Verdict::NoneCovered => 2,
            Verdict::Undetermined => 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
