//! The event loop: one run of one strategy over the scenario's fault timeline, in virtual time.
//!
//! Every validator is the real embedded validator (handlers, store on tmpfs, scoring gate with its
//! 2-hour rounds and EMA); the `patrol` strategy is the real reconcile core (`plan`,
//! `after_broadcast`, backoff, adoption, spacing) driven with the agent's timing: a pass every
//! interval (+ jitter) and per-validator timers for earlier re-checks. Nothing here opens a socket.
//!
//! Diagnostics: `PATROL_SIM_TRACE=<validator index>` prints every decision the reconciler makes
//! about that validator (observation, action, broadcast result) to stderr.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::faults::{Effect, Event, T};
use super::scenario::{Scenario, Strategy, StrategyKind};
use super::world::{self, SimGithub, SimValidator};
use crate::github::PreflightOutcome;
use crate::observe::Category;
use crate::reconcile::core::{self, BroadcastObs, CheckObs, Desired, History, Policy, Preflight};
use crate::secret::fingerprint;

/// Our miner's uid at every validator (uid 0 is the recycle uid).
const OUR_UID: u16 = 1;
/// Virtual t = 0 as unix time, for the reconcile core's absolute clock.
const BASE: u64 = 1_800_000_000;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Fault(usize),
    Round(u16),
    PatrolPass,
    PatrolTimer(u16),
    /// A post to every validator (`None`) or a retry to one.
    Post(Option<(u16, u32)>),
}

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
    pub pats_sent: u64,
    pub broadcast_attempts: u64,
    pub checks: u64,
    /// Time-averaged stake-weighted share of our miner's weight across validators.
    pub mean_weight_share: f64,
    /// Losses of coverage that were repaired, and how long repairs took: time the validator was
    /// uncovered while a repair was possible (it was up and its store readable).
    pub repairs: usize,
    pub repair_max_s: u64,
    pub repair_p95_s: u64,
    /// Losses never repaired by the end.
    pub unrepaired: usize,
    /// The slowest repair: validator index, lost at, repaired at (virtual seconds).
    pub worst_repair: Option<(usize, T, T)>,
    /// Stake-weighted coverage per sample window (window minimum).
    #[serde(skip)]
    pub series: Vec<f64>,
}

/// Coverage bookkeeping over time.
struct Tracker {
    stakes: Vec<f64>,
    total_stake: f64,
    covered: Vec<bool>,
    count: usize,
    stake: f64,
    last_t: T,
    acc_count: f64,
    acc_stake: f64,
    below: u64,
    min_count: usize,
    min_stake: f64,
    sample: T,
    series: Vec<f64>,
    share: f64,
    acc_share: f64,
    last_share_t: T,
    lost_at: Vec<Option<T>>,
    down_since: Vec<Option<T>>,
    down_acc: Vec<T>,
    repairs: Vec<T>,
    worst: Option<(usize, T, T)>,
}

impl Tracker {
    fn new(stakes: &[f64], duration: T, sample: T) -> Tracker {
        let n = stakes.len();
        Tracker {
            stakes: stakes.to_vec(),
            total_stake: stakes.iter().sum(),
            covered: vec![false; n],
            count: 0,
            stake: 0.0,
            last_t: 0,
            acc_count: 0.0,
            acc_stake: 0.0,
            below: 0,
            min_count: 0,
            min_stake: 0.0,
            sample: sample.max(1),
            series: vec![1.0; duration.div_ceil(sample.max(1)).max(1) as usize],
            share: 0.0,
            acc_share: 0.0,
            last_share_t: 0,
            lost_at: vec![None; n],
            down_since: vec![None; n],
            down_acc: vec![0; n],
            repairs: Vec::new(),
            worst: None,
        }
    }

    fn advance(&mut self, t: T) {
        if t <= self.last_t {
            return;
        }
        let dt = (t - self.last_t) as f64;
        self.acc_count += self.count as f64 * dt;
        let frac = self.stake / self.total_stake;
        self.acc_stake += frac * dt;
        if self.count < self.covered.len() {
            self.below += t - self.last_t;
        }
        let (w0, w1) = ((self.last_t / self.sample) as usize, ((t - 1) / self.sample) as usize);
        for w in w0..=w1.min(self.series.len().saturating_sub(1)) {
            self.series[w] = self.series[w].min(frac);
        }
        self.last_t = t;
    }

    /// Start of the run: initial coverage counts from now on.
    fn start(&mut self) {
        self.min_count = self.count;
        self.min_stake = self.stake / self.total_stake;
    }

    fn set(&mut self, t: T, v: usize, covered: bool, up: bool) {
        if self.covered[v] == covered {
            return;
        }
        self.advance(t);
        self.covered[v] = covered;
        // summed afresh: incremental add/subtract drifts below zero in floating point
        self.stake = self.covered.iter().zip(&self.stakes).filter(|(c, _)| **c).map(|(_, s)| s).sum::<f64>() + 0.0;
        if covered {
            self.count += 1;
            if let Some(at) = self.lost_at[v].take() {
                let down = self.down_acc[v] + self.down_since[v].map_or(0, |d| t - d);
                let took = (t - at).saturating_sub(down);
                if self.worst.is_none_or(|(_, a, b)| took > (b - a)) {
                    self.worst = Some((v, at, t));
                }
                self.repairs.push(took);
            }
        } else {
            self.count -= 1;
            self.lost_at[v] = Some(t);
            self.down_acc[v] = 0;
            self.down_since[v] = (!up).then_some(t);
        }
        self.min_count = self.min_count.min(self.count);
        self.min_stake = self.min_stake.min(self.stake / self.total_stake);
    }

    fn updown(&mut self, t: T, v: usize, up: bool) {
        if self.lost_at[v].is_none() {
            return;
        }
        match (up, self.down_since[v]) {
            (false, None) => self.down_since[v] = Some(t),
            (true, Some(d)) => {
                self.down_acc[v] += t - d;
                self.down_since[v] = None;
            }
            _ => {}
        }
    }

    fn set_share(&mut self, t: T, share: f64) {
        self.acc_share += self.share * (t - self.last_share_t) as f64;
        self.last_share_t = t;
        self.share = share;
    }

    fn finish(mut self, end: T, pats_sent: u64, attempts: u64, checks: u64) -> RunStats {
        self.advance(end);
        self.set_share(end, self.share);
        let mut r = self.repairs.clone();
        r.sort_unstable();
        let p95 = if r.is_empty() { 0 } else { r[((r.len() as f64 * 0.95).ceil() as usize).clamp(1, r.len()) - 1] };
        RunStats {
            validators: self.covered.len(),
            min_covered: self.min_count,
            mean_covered: self.acc_count / end as f64,
            final_covered: self.count,
            min_stake_coverage: self.min_stake,
            mean_stake_coverage: self.acc_stake / end as f64,
            time_below_full_s: self.below,
            pats_sent,
            broadcast_attempts: attempts,
            checks,
            mean_weight_share: self.acc_share / end as f64,
            repairs: r.len(),
            repair_max_s: r.last().copied().unwrap_or(0),
            repair_p95_s: p95,
            unrepaired: self.lost_at.iter().filter(|x| x.is_some()).count(),
            worst_repair: self.worst,
            series: self.series,
        }
    }
}

/// One strategy's run.
pub struct Run<'a> {
    s: &'a Scenario,
    timeline: &'a [Event],
    strategy: &'a Strategy,
    rt: tokio::runtime::Runtime,
    rng: ChaCha8Rng,
    github: SimGithub,
    vs: Vec<SimValidator>,
    our_hotkey: String,
    token: String,
    rotations: u32,
    held: Vec<Option<String>>,
    queue: BinaryHeap<Reverse<(T, u64, Ev)>>,
    seq: u64,
    tracker: Tracker,
    // patrol
    policy: Policy,
    hist: BTreeMap<u16, History>,
    first_fp: Option<String>,
    next_pass: T,
    timers: HashMap<u16, T>,
    force_pass: bool,
    /// (uid, validator hotkey) of every validator, built once.
    eligible: Vec<(u16, String)>,
    // counters
    pats_sent: u64,
    attempts: u64,
    checks: u64,
    _dir: tempfile::TempDir,
}

/// Errors setting a run up.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot create the simulation's temporary store directory: {0}")]
    TempDir(std::io::Error),
    #[error("cannot start the simulation runtime: {0}")]
    Runtime(std::io::Error),
}

impl<'a> Run<'a> {
    /// Set up the world for `strategy` (`faults = false`: the fault-free baseline).
    pub fn new(
        s: &'a Scenario,
        timeline: &'a [Event],
        strategy: &'a Strategy,
        index: u64,
    ) -> Result<Run<'a>, SimError> {
        // tmpfs when available: the store's fsyncs are real code paths but cost nothing there.
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            tempfile::Builder::new().prefix("patrol-sim-").tempdir_in("/dev/shm")
        } else {
            tempfile::Builder::new().prefix("patrol-sim-").tempdir()
        }
        .map_err(SimError::TempDir)?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(SimError::Runtime)?;
        let github = SimGithub::default();
        let token = "ghp_simMinerToken0000".to_string();
        github.add_token(&token, 4242, "sim-miner");
        for b in 0..s.background_miners {
            github.add_token(&world::background_token(b), 1000 + u64::from(b), &format!("bg{b}"));
        }
        let our_hotkey = crate::wallet::Hotkey::from_seed(&[0x42; 32]).ss58().to_string();
        let vs: Vec<SimValidator> = s
            .stakes
            .iter()
            .enumerate()
            .map(|(i, st)| {
                let setup = world::Setup {
                    dir: dir.path(),
                    our_uid: OUR_UID,
                    our_hotkey: &our_hotkey,
                    background: s.background_miners,
                    github: &github,
                    alpha: s.ema_alpha,
                };
                world::validator(&setup, i as u16, *st)
            })
            .collect();
        let policy = match &strategy.kind {
            StrategyKind::Patrol { interval, backoff_initial, backoff_max, .. } => Policy {
                interval: interval.as_secs().max(1),
                backoff_initial: backoff_initial.as_secs().max(1),
                backoff_max: backoff_max.as_secs().max(1),
                ..Policy::default()
            },
            _ => Policy::default(),
        };
        let n = vs.len();
        Ok(Run {
            s,
            timeline,
            strategy,
            rt,
            rng: ChaCha8Rng::seed_from_u64(s.seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(index + 1))),
            github,
            vs,
            our_hotkey,
            token,
            rotations: 0,
            held: vec![None; n],
            queue: BinaryHeap::new(),
            seq: 0,
            tracker: Tracker::new(&s.stakes, s.duration.as_secs(), s.sample.as_secs()),
            policy,
            hist: BTreeMap::new(),
            first_fp: None,
            next_pass: 0,
            timers: HashMap::new(),
            force_pass: false,
            eligible: (0..n as u16).map(|v| (v, format!("validator{v}"))).collect(),
            pats_sent: 0,
            attempts: 0,
            checks: 0,
            _dir: dir,
        })
    }

    fn push(&mut self, t: T, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((t, self.seq, ev)));
    }

    fn uids(&self) -> std::ops::RangeInclusive<u16> {
        OUR_UID..=OUR_UID + self.s.background_miners
    }

    fn is_covered(&self, v: usize) -> bool {
        self.vs[v].corrupt == 0
            && self.held[v].as_deref() == Some(self.token.as_str())
            && self.github.is_valid(&self.token)
    }

    /// Ground truth from the store file itself (not from what we think we sent): our entry's token.
    fn reread(&mut self, v: usize) {
        self.held[v] = match self.vs[v].store.get_by_uid(OUR_UID) {
            Ok(Some(e)) if e.hotkey.as_deref() == Some(self.our_hotkey.as_str()) => Some(e.pat.expose().to_string()),
            _ => None,
        };
    }

    fn refresh(&mut self, t: T, v: usize) {
        let c = self.is_covered(v);
        let up = self.vs[v].up() && self.vs[v].corrupt == 0;
        self.tracker.set(t, v, c, up);
    }

    fn refresh_all(&mut self, t: T) {
        for v in 0..self.vs.len() {
            self.refresh(t, v);
        }
    }

    /// Run to the end; `faults` = apply the timeline.
    pub fn run(mut self, faults: bool) -> RunStats {
        let end = self.s.duration.as_secs();
        if faults {
            for i in 0..self.timeline.len() {
                let at = self.timeline[i].at;
                self.push(at, Ev::Fault(i));
            }
        }
        // scoring rounds: a fixed phase per validator, the same in every run
        let mut phases = ChaCha8Rng::seed_from_u64(self.s.seed);
        let round = self.s.scoring_round.as_secs().max(1);
        for v in 0..self.vs.len() {
            let phase = phases.gen_range(0..round);
            self.push(phase, Ev::Round(v as u16));
        }
        match self.strategy.kind {
            StrategyKind::Patrol { .. } => self.push(0, Ev::PatrolPass),
            _ => self.push(0, Ev::Post(None)),
        }
        let mut started = false;
        while let Some(Reverse((t, _, ev))) = self.queue.pop() {
            if t >= end {
                break;
            }
            // Coverage is measured from the end of the initial post/pass at t = 0 on.
            if t > 0 && !started {
                started = true;
                self.tracker.start();
            }
            self.tracker.advance(t);
            match ev {
                Ev::Fault(i) => self.fault(t, i),
                Ev::Round(v) => {
                    if self.vs[v as usize].up() {
                        let uids = self.uids();
                        world::scoring_round(&mut self.vs[v as usize], &self.github, uids, OUR_UID);
                        let share = self.vs.iter().map(|x| x.stake * x.weight).sum::<f64>() / self.tracker.total_stake;
                        self.tracker.set_share(t, share);
                    }
                    self.push(t + round, Ev::Round(v));
                }
                Ev::PatrolPass => {
                    let force = std::mem::take(&mut self.force_pass);
                    self.patrol(t, None, force);
                    if let StrategyKind::Patrol { interval, jitter, .. } = self.strategy.kind {
                        let j = if jitter.is_zero() { 0 } else { self.rng.gen_range(0..=jitter.as_secs()) };
                        self.next_pass = t + interval.as_secs().max(1) + j;
                        let next = self.next_pass;
                        self.push(next, Ev::PatrolPass);
                        self.schedule_timers();
                    }
                }
                Ev::PatrolTimer(v) => {
                    if self.timers.get(&v) == Some(&t) {
                        self.timers.remove(&v);
                        self.patrol(t, Some(v), false);
                        self.schedule_timers();
                    }
                }
                Ev::Post(target) => self.post(t, target),
            }
        }
        if !started {
            self.tracker.start();
        }
        let (p, a, c) = (self.pats_sent, self.attempts, self.checks);
        self.tracker.finish(end, p, a, c)
    }

    fn fault(&mut self, t: T, i: usize) {
        let effect = self.timeline[i].effect.clone();
        match effect {
            Effect::Down(v) => {
                self.vs[v as usize].down += 1;
                self.tracker.updown(t, v as usize, false);
            }
            Effect::Up(v) => {
                let x = &mut self.vs[v as usize];
                x.down = x.down.saturating_sub(1);
                if x.up() {
                    if x.wiped {
                        x.wiped = false;
                        world::restore_background(x, OUR_UID, self.s.background_miners);
                    }
                    let readable = x.corrupt == 0;
                    self.tracker.updown(t, v as usize, readable);
                }
            }
            Effect::Crash(v) => self.vs[v as usize].gate.restart(),
            Effect::WipeStore(v) => {
                let x = &mut self.vs[v as usize];
                let _ = std::fs::remove_file(x.path());
                x.wiped = true;
                self.reread(v as usize);
                self.refresh(t, v as usize);
            }
            Effect::CorruptStart(v) => {
                let x = &mut self.vs[v as usize];
                if x.corrupt == 0 {
                    x.backup = std::fs::read(x.path()).ok();
                    let _ = std::fs::write(x.path(), b"{\"truncated\": [");
                }
                x.corrupt += 1;
                self.refresh(t, v as usize);
                // an unreadable store can't be repaired by anyone: the repair clock pauses
                self.tracker.updown(t, v as usize, false);
            }
            Effect::CorruptEnd(v) => {
                let x = &mut self.vs[v as usize];
                x.corrupt = x.corrupt.saturating_sub(1);
                if x.corrupt == 0 {
                    match x.backup.take() {
                        Some(b) => {
                            let _ = std::fs::write(x.path(), b);
                        }
                        None => {
                            let _ = std::fs::remove_file(x.path());
                        }
                    }
                    self.reread(v as usize);
                }
                let repairable = self.vs[v as usize].corrupt == 0 && self.vs[v as usize].up();
                self.refresh(t, v as usize);
                self.tracker.updown(t, v as usize, repairable);
            }
            Effect::GithubStart { .. } | Effect::GithubEnd { .. } => self.github.apply(&effect),
            Effect::PatRevoked => {
                self.github.revoke(&self.token);
                self.refresh_all(t);
            }
            Effect::PatRotated => {
                self.github.revoke(&self.token);
                self.rotations += 1;
                self.token = format!("ghp_simMinerRotated{:04}", self.rotations);
                self.github.add_token(&self.token, 4242, "sim-miner");
                self.refresh_all(t);
                match self.strategy.kind {
                    // the agent watches the PAT file: an immediate pass that reaches everyone
                    StrategyKind::Patrol { .. } => {
                        self.force_pass = true;
                        self.push(t + 1, Ev::PatrolPass);
                    }
                    // a person re-runs `post` some time after rotating
                    _ => {
                        let at = t + self.strategy.repost_delay.as_secs();
                        self.push(at, Ev::Post(None));
                    }
                }
            }
        }
    }

    fn check(&mut self, v: usize) -> CheckObs {
        self.checks += 1;
        if !self.vs[v].up() {
            return CheckObs {
                category: Category::NoResponse,
                reason: Some("timeout".into()),
                status: None,
                axon_uuid: None,
            };
        }
        let pv = self.vs[v].validator.clone();
        match self.rt.block_on(pv.check(&self.our_hotkey)) {
            Ok(f) => CheckObs::answer(f),
            Err(e) => CheckObs {
                category: Category::Rejected,
                reason: Some(e.to_string()),
                status: Some(500),
                axon_uuid: None,
            },
        }
    }

    fn broadcast(&mut self, t: T, v: usize) -> BroadcastObs {
        self.attempts += 1;
        if !self.vs[v].up() {
            return BroadcastObs::Failed { status: None, detail: "timeout".into() };
        }
        self.pats_sent += 1;
        let pv = self.vs[v].validator.clone();
        let f = self.rt.block_on(pv.broadcast(&self.our_hotkey, &self.token));
        match f.accepted {
            Some(true) => {
                self.reread(v);
                self.refresh(t, v);
                BroadcastObs::Accepted
            }
            _ => BroadcastObs::refused(f.rejection_reason),
        }
    }

    fn post(&mut self, t: T, target: Option<(u16, u32)>) {
        let retries = match self.strategy.kind {
            StrategyKind::PostRetries { retries } => retries,
            _ => 0,
        };
        let todo: Vec<(usize, u32)> = match target {
            None => (0..self.vs.len()).map(|v| (v, 0)).collect(),
            Some((v, a)) => vec![(v as usize, a)],
        };
        for (v, attempt) in todo {
            if let BroadcastObs::Failed { .. } = self.broadcast(t, v)
                && attempt < retries
            {
                // backon-style exponential backoff with jitter: ~1 s, 2 s, 4 s ...
                let delay = (1u64 << attempt.min(10)) + self.rng.gen_range(0..=1);
                self.push(t + delay, Ev::Post(Some((v as u16, attempt + 1))));
            }
        }
    }

    /// The agent's per-validator timers: a validator whose next check comes before the next pass
    /// gets its own wake-up.
    fn schedule_timers(&mut self) {
        let next_pass = self.next_pass;
        let wanted: Vec<(u16, T)> = self
            .hist
            .iter()
            .filter_map(|(uid, h)| {
                let at = h.next_check_at.saturating_sub(BASE);
                (at < next_pass).then_some((*uid, at))
            })
            .collect();
        for (uid, at) in wanted {
            if self.timers.get(&uid) != Some(&at) {
                self.timers.insert(uid, at);
                self.push(at, Ev::PatrolTimer(uid));
            }
        }
    }

    fn patrol(&mut self, t: T, only: Option<u16>, force: bool) {
        let now = BASE + t;
        let eligible = std::mem::take(&mut self.eligible);
        let el: Vec<(u16, &str)> = eligible.iter().map(|(u, h)| (*u, h.as_str())).collect();
        // The eligible set only changes when the agent re-reads the metagraph, i.e. on full passes.
        if only.is_none() {
            core::sync(&mut self.hist, &el, now, self.policy.alert_after);
        }
        let fp = fingerprint(&self.token);
        self.first_fp.get_or_insert_with(|| fp.clone());
        let mut desired =
            Desired { fingerprint: fp, adopt_fingerprint: self.first_fp.clone(), preflight: Preflight::NotRun };
        let due: Vec<u16> = el
            .iter()
            .map(|(u, _)| *u)
            .filter(|u| only.is_none_or(|o| o == *u))
            .filter(|u| force || self.hist.get(u).is_none_or(|h| core::due(h, now, false)))
            .collect();
        let mut obs = BTreeMap::new();
        for u in &due {
            let o = self.check(*u as usize);
            obs.insert(*u, o);
        }
        if core::needs_preflight(&desired, &self.hist, &obs) {
            desired.preflight = match self.github.preflight(&self.token) {
                PreflightOutcome::Valid { .. } => Preflight::Valid,
                PreflightOutcome::Transient { reason, .. } => Preflight::Transient(reason),
                PreflightOutcome::Invalid { reason } => Preflight::Invalid(reason),
            };
        }
        let mut jit: Vec<f64> = (0..due.len() * 3 + 1).map(|_| self.rng.r#gen::<f64>()).collect();
        let decisions = core::plan(&self.policy, &desired, &self.hist, &el, &obs, now, || jit.pop().unwrap_or(0.5));
        let trace = std::env::var("PATROL_SIM_TRACE").ok().and_then(|v| v.parse::<u16>().ok());
        for d in decisions {
            if trace == Some(d.uid) {
                eprintln!("t={t} uid={} obs={:?} action={:?}", d.uid, obs.get(&d.uid), d.action);
            }
            let mut h = d.history;
            if d.action == core::Action::Broadcast {
                h = core::broadcast_sent(&h, now, &desired.fingerprint);
                let res = self.broadcast(t, d.uid as usize);
                let u = self.rng.r#gen::<f64>();
                let (a2, h2) = core::after_broadcast(&self.policy, &desired, &h, &res, now, u);
                if trace == Some(d.uid) {
                    eprintln!("t={t} uid={} broadcast={res:?} -> {a2:?}", d.uid);
                }
                h = h2;
                if res == BroadcastObs::Accepted {
                    let o = self.check(d.uid as usize);
                    let u = self.rng.r#gen::<f64>();
                    h = core::after_check(&self.policy, &desired, &h, &o, now, u).1;
                }
            }
            self.hist.insert(d.uid, h);
        }
        self.eligible = eligible;
    }
}
