//! Coverage bookkeeping over one run, in virtual time: which validators hold our valid PAT, by
//! count and by stake, sampled per window; how long each loss took to repair counting only the
//! time a repair was possible (the validator up, reachable, its store readable); minutes a running
//! validator did not hold the PAT; the miner's time-averaged weight share. The event loop
//! ([`super::engine`]) tells it what happened when; [`Tracker::finish`] sums it up as [`RunStats`].

use super::faults::T;

/// What one run measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunStats {
    pub validators: usize,
    pub min_covered: usize,
    pub mean_covered: f64,
    pub final_covered: usize,
    pub min_stake_coverage: f64,
    pub mean_stake_coverage: f64,
    /// Seconds with fewer than all validators covered.
    pub time_below_full_s: u64,
    /// Broadcasts that reached a validator (the PAT left the miner).
    pub pats_sent: u64,
    pub broadcast_attempts: u64,
    pub checks: u64,
    pub probes: u64,
    /// Broadcasts a dry run planned (and did not send).
    pub planned_broadcasts: u64,
    /// Time-averaged stake-weighted share of our miner's weight across validators.
    pub mean_weight_share: f64,
    /// Losses of coverage that were repaired, and how long repairs took: time the validator was
    /// uncovered while a repair was possible (it was up, reachable and its store readable).
    pub repairs: usize,
    pub repair_p50_s: u64,
    pub repair_p95_s: u64,
    pub repair_max_s: u64,
    /// Losses never repaired by the end.
    pub unrepaired: usize,
    /// The slowest repair: validator index, lost at, repaired at (virtual seconds).
    pub worst_repair: Option<(usize, T, T)>,
    /// Minutes per validator per day that a running validator did not hold our valid PAT.
    pub unscored_min_per_validator_day: f64,
    /// GitHub calls made with the miner's PAT because of the strategy, per hour.
    pub github_calls_per_hour: f64,
    /// The busiest clock hour's GitHub calls.
    pub github_calls_max_hour: u64,
    /// The validators' own scoring calls with the PAT, per hour (the same for every strategy).
    pub scoring_calls_per_hour: f64,
    /// Stake-weighted coverage per sample window (window minimum).
    #[serde(skip)]
    pub series: Vec<f64>,
}

/// Coverage bookkeeping over time.
pub(super) struct Tracker {
    stakes: Vec<f64>,
    pub(super) total_stake: f64,
    covered: Vec<bool>,
    /// Up, reachable, store readable: a repair is possible.
    repairable: Vec<bool>,
    /// The process runs (it scores, or would).
    running: Vec<bool>,
    count: usize,
    stake: f64,
    last_t: T,
    acc_count: f64,
    acc_stake: f64,
    below: u64,
    unscored: u64,
    min_count: usize,
    min_stake: f64,
    sample: T,
    series: Vec<f64>,
    share: f64,
    acc_share: f64,
    last_share_t: T,
    lost_at: Vec<Option<T>>,
    /// Repairable time accumulated since the loss.
    repairable_acc: Vec<T>,
    repairs: Vec<T>,
    worst: Option<(usize, T, T)>,
}

impl Tracker {
    pub(super) fn new(stakes: &[f64], duration: T, sample: T) -> Tracker {
        let n = stakes.len();
        Tracker {
            stakes: stakes.to_vec(),
            total_stake: stakes.iter().sum(),
            covered: vec![false; n],
            repairable: vec![true; n],
            running: vec![true; n],
            count: 0,
            stake: 0.0,
            last_t: 0,
            acc_count: 0.0,
            acc_stake: 0.0,
            below: 0,
            unscored: 0,
            min_count: 0,
            min_stake: 0.0,
            sample: sample.max(1),
            series: vec![1.0; duration.div_ceil(sample.max(1)).max(1) as usize],
            share: 0.0,
            acc_share: 0.0,
            last_share_t: 0,
            lost_at: vec![None; n],
            repairable_acc: vec![0; n],
            repairs: Vec::new(),
            worst: None,
        }
    }

    pub(super) fn advance(&mut self, t: T) {
        if t <= self.last_t {
            return;
        }
        let dt = t - self.last_t;
        self.acc_count += self.count as f64 * dt as f64;
        let frac = self.stake / self.total_stake;
        self.acc_stake += frac * dt as f64;
        if self.count < self.covered.len() {
            self.below += dt;
        }
        for v in 0..self.covered.len() {
            if !self.covered[v] && self.running[v] {
                self.unscored += dt;
            }
            if self.lost_at[v].is_some() && self.repairable[v] {
                self.repairable_acc[v] += dt;
            }
        }
        let (w0, w1) = ((self.last_t / self.sample) as usize, ((t - 1) / self.sample) as usize);
        for w in w0..=w1.min(self.series.len().saturating_sub(1)) {
            self.series[w] = self.series[w].min(frac);
        }
        self.last_t = t;
    }

    /// Start of the run: initial coverage counts from now on.
    pub(super) fn start(&mut self) {
        self.min_count = self.count;
        self.min_stake = self.stake / self.total_stake;
    }

    /// Validator `v` at `t`.
    pub(super) fn set(&mut self, t: T, v: usize, covered: bool, repairable: bool, running: bool) {
        self.advance(t);
        self.repairable[v] = repairable;
        self.running[v] = running;
        if self.covered[v] == covered {
            return;
        }
        self.covered[v] = covered;
        // summed afresh: incremental add/subtract drifts below zero in floating point
        self.stake = self.covered.iter().zip(&self.stakes).filter(|(c, _)| **c).map(|(_, s)| s).sum::<f64>() + 0.0;
        if covered {
            self.count += 1;
            if self.lost_at[v].take().is_some() {
                let took = self.repairable_acc[v];
                if self.worst.is_none_or(|(_, a, b)| took > b - a) {
                    self.worst = Some((v, t - took, t));
                }
                self.repairs.push(took);
            }
        } else {
            self.count -= 1;
            self.lost_at[v] = Some(t);
            self.repairable_acc[v] = 0;
        }
        self.min_count = self.min_count.min(self.count);
        self.min_stake = self.min_stake.min(self.stake / self.total_stake);
    }

    pub(super) fn set_share(&mut self, t: T, share: f64) {
        self.acc_share += self.share * (t - self.last_share_t) as f64;
        self.last_share_t = t;
        self.share = share;
    }

    pub(super) fn finish(mut self, end: T) -> RunStats {
        self.advance(end);
        self.set_share(end, self.share);
        let mut r = self.repairs.clone();
        r.sort_unstable();
        let pct =
            |p: f64| if r.is_empty() { 0 } else { r[((r.len() as f64 * p).ceil() as usize).clamp(1, r.len()) - 1] };
        let n = self.covered.len().max(1) as f64;
        let days = end as f64 / 86_400.0;
        RunStats {
            validators: self.covered.len(),
            min_covered: self.min_count,
            mean_covered: self.acc_count / end as f64,
            final_covered: self.count,
            min_stake_coverage: self.min_stake,
            mean_stake_coverage: self.acc_stake / end as f64,
            time_below_full_s: self.below,
            mean_weight_share: self.acc_share / end as f64,
            repairs: r.len(),
            repair_p50_s: pct(0.5),
            repair_p95_s: pct(0.95),
            repair_max_s: r.last().copied().unwrap_or(0),
            unrepaired: self.lost_at.iter().filter(|x| x.is_some()).count(),
            worst_repair: self.worst,
            unscored_min_per_validator_day: self.unscored as f64 / 60.0 / n / days.max(f64::MIN_POSITIVE),
            series: self.series,
            ..RunStats::default()
        }
    }
}
