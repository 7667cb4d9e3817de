//! The one-line `STATUS=` systemd shows in `systemctl status`, built from the last pass of each
//! miner. Pure formatting:
//!
//! ```text
//! 14/16 covered (97.2% stake), 1 no_response uid 195, next pass 14m
//! miner-a: 3/3 covered (100.0% stake); miner-b: not registered on netuid 74; next pass 14m
//! ```
//!
//! A single miner is not named; with several, each part starts with the miner's name. Only
//! uncovered categories are listed, each with its uids (at most [`MAX_UIDS`], then `…`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::coverage::Summary;
use crate::observe::Category;
use crate::reconcile::pass::PassOutcome;

/// Uids listed per category before the list is cut short.
pub const MAX_UIDS: usize = 4;

/// What the status line says about one miner.
#[derive(Debug, Clone, PartialEq)]
pub enum MinerView {
    /// No pass yet.
    Pending,
    /// It cannot be reconciled right now (not registered, no PAT, …).
    Problem(String),
    /// Coverage after its last pass.
    Coverage { covered: usize, total: usize, stake: f64, uncovered: BTreeMap<Category, Vec<u16>> },
}

impl MinerView {
    /// The view after a pass: final categories (validators never observed count as no_response,
    /// as in reports).
    pub fn of(out: &PassOutcome) -> MinerView {
        let summary = Summary::of(out.final_rows());
        let mut uncovered: BTreeMap<Category, Vec<u16>> = BTreeMap::new();
        for v in &out.validators {
            let c = v.final_category.unwrap_or(Category::NoResponse);
            if !c.is_covered() {
                uncovered.entry(c).or_default().push(v.validator.uid);
            }
        }
        MinerView::Coverage {
            covered: summary.covered,
            total: summary.total,
            stake: summary.stake_weighted_coverage,
            uncovered,
        }
    }

    fn render(&self) -> String {
        match self {
            MinerView::Pending => "first pass running".into(),
            MinerView::Problem(p) => p.clone(),
            MinerView::Coverage { total: 0, .. } => "no eligible validator".into(),
            MinerView::Coverage { covered, total, stake, uncovered } => {
                let mut s = format!("{covered}/{total} covered ({:.1}% stake)", stake * 100.0);
                for (c, uids) in uncovered {
                    let label = if uids.len() == 1 { "uid" } else { "uids" };
                    let mut list: Vec<String> = uids.iter().take(MAX_UIDS).map(u16::to_string).collect();
                    if uids.len() > MAX_UIDS {
                        list.push("…".into());
                    }
                    s.push_str(&format!(", {} {} {label} {}", uids.len(), c.as_str(), list.join(",")));
                }
                s
            }
        }
    }
}

/// The whole line. `next_pass` is the time to the next round (`None` while one runs); `note` is
/// appended (e.g. "reload rejected").
pub fn line(miners: &[(&str, &MinerView)], next_pass: Option<Duration>, dry_run: bool, note: Option<&str>) -> String {
    let mut parts: Vec<String> = match miners {
        [(_, view)] => vec![view.render()],
        many => many.iter().map(|(name, view)| format!("{name}: {}", view.render())).collect(),
    };
    if let Some(n) = note {
        parts.push(n.to_string());
    }
    let mut s = parts.join("; ");
    match next_pass {
        Some(d) => s.push_str(&format!(", next pass {}", human(d))),
        None => s.push_str(", pass running"),
    }
    if dry_run { format!("dry run: {s}") } else { s }
}

/// `45s`, `14m`, `2h5m`: coarse on purpose, the line is for humans.
pub fn human(d: Duration) -> String {
    let s = d.as_secs() + u64::from(d.subsec_millis() >= 500);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", (s + 30) / 60),
        _ => {
            let m = (s + 30) / 60;
            if m.is_multiple_of(60) { format!("{}h", m / 60) } else { format!("{}h{}m", m / 60, m % 60) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cov(covered: usize, total: usize, stake: f64, un: &[(Category, &[u16])]) -> MinerView {
        MinerView::Coverage { covered, total, stake, uncovered: un.iter().map(|(c, u)| (*c, u.to_vec())).collect() }
    }

    #[test]
    fn the_line_reads_like_the_issue() {
        let v = cov(14, 16, 0.972, &[(Category::NoResponse, &[195]), (Category::NoPat, &[3, 7, 9, 11, 12])]);
        assert_eq!(
            line(&[("m", &v)], Some(Duration::from_secs(14 * 60)), false, None),
            "14/16 covered (97.2% stake), 1 no_pat uids 3,7,9,11,…, 1 no_response uid 195, next pass 14m"
                .replace("1 no_pat", "5 no_pat")
        );
        let a = cov(3, 3, 1.0, &[]);
        let b = MinerView::Problem("not registered on netuid 74".into());
        assert_eq!(
            line(&[("a", &a), ("b", &b)], None, true, Some("reload rejected")),
            "dry run: a: 3/3 covered (100.0% stake); b: not registered on netuid 74; reload rejected, pass running"
        );
        assert_eq!(
            line(&[("a", &MinerView::Pending)], Some(Duration::from_secs(5)), false, None),
            "first pass running, next pass 5s"
        );
    }

    #[test]
    fn durations_are_coarse() {
        for (secs, want) in [(0, "0s"), (59, "59s"), (60, "1m"), (14 * 60 + 40, "15m"), (3600, "1h"), (7500, "2h5m")] {
            assert_eq!(human(Duration::from_secs(secs)), want);
        }
    }
}
