//! Run every strategy of a scenario (plus one fault-free baseline) and compare them: coverage over
//! time, PATs sent (exposure), and the miner's weight share lost versus the fault-free run.

use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::engine::{Run, RunStats, SimError};
use super::faults;
use super::plot;
use super::scenario::{Scenario, Strategy, StrategyKind};

/// One strategy's results.
#[derive(Debug, Clone, Serialize)]
pub struct StrategyReport {
    pub name: String,
    #[serde(flatten)]
    pub stats: RunStats,
    /// 1 − (mean weight share / fault-free mean weight share).
    pub score_share_lost: f64,
    pub wall_ms: u64,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    pub scenario: String,
    pub seed: u64,
    pub validators: u16,
    pub days: f64,
    pub fault_events: usize,
    pub baseline_weight_share: f64,
    pub strategies: Vec<StrategyReport>,
    pub wall_ms: u64,
}

/// Simulate `s`.
pub fn simulate(s: &Scenario) -> Result<SimReport, SimError> {
    let started = Instant::now();
    let timeline = faults::timeline(s, &mut ChaCha8Rng::seed_from_u64(s.seed));
    let baseline_strategy =
        Strategy { name: "fault-free".into(), kind: StrategyKind::PostOnce { repost_delay: s.duration } };
    let baseline = Run::new(s, &timeline, &baseline_strategy, 0)?.run(false);
    let mut strategies = Vec::new();
    for (i, st) in s.strategies.iter().enumerate() {
        let t0 = Instant::now();
        let stats = Run::new(s, &timeline, st, i as u64 + 1)?.run(true);
        let lost = if baseline.mean_weight_share > 0.0 {
            1.0 - stats.mean_weight_share / baseline.mean_weight_share
        } else {
            0.0
        };
        strategies.push(StrategyReport {
            name: st.name.clone(),
            stats,
            score_share_lost: lost,
            wall_ms: t0.elapsed().as_millis() as u64,
        });
    }
    Ok(SimReport {
        scenario: s.name.clone(),
        seed: s.seed,
        validators: s.validators,
        days: s.duration.as_secs_f64() / 86_400.0,
        fault_events: timeline.len(),
        baseline_weight_share: baseline.mean_weight_share,
        strategies,
        wall_ms: started.elapsed().as_millis() as u64,
    })
}

fn hm(secs: u64) -> String {
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    } else {
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

/// A plain-text comparison table.
pub fn table(r: &SimReport) -> String {
    let header = [
        "STRATEGY",
        "FINAL",
        "MIN",
        "MEAN",
        "STAKE MIN",
        "STAKE MEAN",
        "BELOW 100%",
        "PATS SENT",
        "CHECKS",
        "SCORE LOST",
        "REPAIR P50/P95/MAX",
        "UNSCORED MIN/V/DAY",
        "GITHUB/H (MAX H)",
        "UNREPAIRED",
    ];
    let n = r.validators;
    let total = r.days * 86_400.0;
    let rows: Vec<Vec<String>> = r
        .strategies
        .iter()
        .map(|s| {
            let st = &s.stats;
            vec![
                s.name.clone(),
                format!("{}/{n}", st.final_covered),
                format!("{}/{n}", st.min_covered),
                format!("{:.2}/{n}", st.mean_covered),
                format!("{:.1}%", st.min_stake_coverage * 100.0),
                format!("{:.2}%", st.mean_stake_coverage * 100.0),
                format!("{:.2}%", st.time_below_full_s as f64 / total * 100.0),
                st.pats_sent.to_string(),
                st.checks.to_string(),
                // a lost share within float noise of zero prints as 0.00 %, not -0.00 %
                format!("{:.2}%", (s.score_share_lost * 10_000.0).round() / 100.0 + 0.0),
                format!("{}/{}/{}", hm(st.repair_p50_s), hm(st.repair_p95_s), hm(st.repair_max_s)),
                format!("{:.2}", st.unscored_min_per_validator_day),
                format!("{:.1} ({})", st.github_calls_per_hour, st.github_calls_max_hour),
                st.unrepaired.to_string(),
            ]
        })
        .collect();
    let mut out = format!(
        "{} — {} validators, {:.1} days, seed {}, {} fault events, simulated in {:.2} s\n\n",
        r.scenario,
        n,
        r.days,
        r.seed,
        r.fault_events,
        r.wall_ms as f64 / 1000.0
    );
    out.push_str(&crate::report::table(&header, &rows));
    out
}

/// The SVG chart of stake-weighted coverage over time.
pub fn svg(r: &SimReport, sample_s: u64) -> String {
    let series: Vec<plot::Series<'_>> = r
        .strategies
        .iter()
        .map(|s| plot::Series {
            name: &s.name,
            points: s
                .stats
                .series
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64 * sample_s as f64 / 86_400.0, *v))
                .collect(),
        })
        .collect();
    plot::svg(&r.scenario, r.days, &series)
}
