//! The event loop: one run of one strategy over the scenario's fault timeline, in virtual time.
//!
//! Every validator is the real embedded validator (handlers, store on tmpfs, scoring gate with its
//! 2-hour rounds and EMA). The `patrol` strategy is the product itself: the agent's
//! [`Scheduler`] says when to wake and what is due, and the product's reconcile pass
//! ([`crate::reconcile::pass::run`]) runs over the simulation's [`Transport`](SimNet) — there is
//! no reconcile logic in this file. The `post` strategies model `gitt miner post`, once or with
//! retries, over the same transport. Nothing here opens a socket.
//!
//! What is measured (see [`RunStats`]): coverage over time (count and stake-weighted), time to
//! repair (from the moment a validator could accept the PAT again — up, reachable, store readable
//! — to the moment it holds it), minutes unscored (up but not holding our valid PAT), PATs sent,
//! checks, probes, and the GitHub calls made with the miner's PAT because of the strategy
//! (validator handlers and the miner's preflight, as the simulated GitHub counted them).
//!
//! Diagnostics: `PATROL_SIM_TRACE=<validator index>` prints what each pass did about that validator.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::faults::{Effect, Event, T};
use super::net::SimNet;
use super::scenario::{PatrolKnobs, Scenario, Strategy, StrategyKind};
pub use super::tracker::RunStats;
use super::tracker::Tracker;
use super::world::{self, SimGithub, SimValidator};
use crate::agent::schedule::{Kind, PlanInput, ScheduleConfig, Scheduler};
use crate::observe::BroadcastObs;
use crate::reconcile::pass::{self, PassConfig};
use crate::reconcile::state::MinerState;
use crate::reconcile::transport::Transport;
use crate::secret::Pat;
use crate::validators::{Selection, Validator};

/// Our miner's uid at every validator (uid 0 is the recycle uid).
const OUR_UID: u16 = 1;
/// Virtual t = 0 as unix time, for the reconcile core's absolute clock.
const BASE: u64 = 1_800_000_000;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Fault(usize),
    Round(u16),
    /// A post to every validator (`None`) or a retry to one.
    Post(Option<(u16, u32)>),
}

/// Simulated validator `index` as the miner's validator set lists it (the transport maps the uid
/// back to the simulated validator).
fn eligible_validator(index: u16, stake: f64) -> Validator {
    Validator {
        uid: index,
        hotkey: format!("validator{index}"),
        ip: std::net::IpAddr::from([127, 0, 0, 1]),
        port: 10_000 + index,
        vtrust: 1.0,
        stake,
    }
}

/// The patrol strategy's agent: the scheduler, the miner's state and what the pass needs.
struct Agent {
    scheduler: Scheduler,
    cfg: PassConfig,
    state: MinerState,
    selection: Selection,
    eligible: BTreeSet<u16>,
    /// The next round checks everything not in backoff (the start).
    force_full: bool,
}

impl Agent {
    fn input(&self) -> PlanInput<'_> {
        PlanInput { state: &self.state, blocked: false, force_full: self.force_full }
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
    net: SimNet,
    vs: Vec<SimValidator>,
    our_hotkey: String,
    token: String,
    rotations: u32,
    held: Vec<Option<String>>,
    queue: BinaryHeap<Reverse<(T, u64, Ev)>>,
    seq: u64,
    tracker: Tracker,
    agent: Option<Agent>,
    /// Calls with our PAT per clock hour (patrol-caused).
    hourly: Vec<u64>,
    last_calls: u64,
    planned: u64,
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
    /// Set up the world for `strategy`.
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
        github.add_our_token(&token, 4242, "sim-miner");
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
        let seed = s.seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(index + 1));
        let net = SimNet::new(github.clone(), our_hotkey.clone(), seed.rotate_left(17), vs.len());
        for (i, v) in vs.iter().enumerate() {
            net.set_reach(v, i);
        }
        let agent = match &strategy.kind {
            StrategyKind::Patrol(k) => Some(Self::agent(k, &our_hotkey, &vs)),
            _ => None,
        };
        let n = vs.len();
        Ok(Run {
            s,
            timeline,
            strategy,
            rt,
            rng: ChaCha8Rng::seed_from_u64(seed),
            github,
            net,
            vs,
            our_hotkey,
            token,
            rotations: 0,
            held: vec![None; n],
            queue: BinaryHeap::new(),
            seq: 0,
            tracker: Tracker::new(&s.stakes, s.duration.as_secs(), s.sample.as_secs()),
            agent,
            hourly: vec![0; s.duration.as_secs().div_ceil(3600).max(1) as usize],
            last_calls: 0,
            planned: 0,
            _dir: dir,
        })
    }

    fn agent(k: &PatrolKnobs, our_hotkey: &str, vs: &[SimValidator]) -> Agent {
        let settings = k.settings();
        let eligible: Vec<Validator> = vs.iter().map(|v| eligible_validator(v.index, v.stake)).collect();
        let cfg = PassConfig {
            policy: crate::reconcile::core::Policy::from(&settings),
            budget: crate::reconcile::budget::Budget(settings.github_budget),
            dry_run: k.dry_run,
        };
        Agent {
            scheduler: Scheduler::new(ScheduleConfig::from(&settings), BASE),
            cfg,
            state: MinerState::new(our_hotkey, 74),
            eligible: eligible.iter().map(|v| v.uid).collect(),
            selection: Selection { eligible, skipped: Vec::new() },
            force_full: true,
        }
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
        let x = &self.vs[v];
        let (repairable, running) = (x.answering() && x.corrupt == 0, x.up());
        self.tracker.set(t, v, c, repairable, running);
        self.net.set_reach(&self.vs[v], v);
    }

    fn refresh_all(&mut self, t: T) {
        for v in 0..self.vs.len() {
            self.refresh(t, v);
        }
    }

    /// Move the per-hour GitHub tally up to now.
    fn tally(&mut self, t: T) {
        let (calls, _) = self.github.our_calls();
        let hour = ((t / 3600) as usize).min(self.hourly.len() - 1);
        self.hourly[hour] += calls - self.last_calls;
        self.last_calls = calls;
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
        if self.agent.is_none() {
            self.push(0, Ev::Post(None));
        }
        let mut started = false;
        loop {
            let next_event = self.queue.peek().map(|Reverse((t, _, _))| *t);
            let next_patrol =
                self.agent.as_ref().map(|a| a.scheduler.next_wake(&[a.input()], &a.eligible).saturating_sub(BASE));
            // world events first at equal times: the agent sees the world as it is at `t`
            let patrol_first = match (next_event, next_patrol) {
                (Some(e), Some(p)) => p < e,
                (None, Some(_)) => true,
                _ => false,
            };
            let t = if patrol_first { next_patrol } else { next_event };
            let Some(t) = t.filter(|t| *t < end) else { break };
            // Coverage is measured from the end of the initial post/pass at t = 0 on.
            if t > 0 && !started {
                started = true;
                self.tracker.start();
            }
            self.tracker.advance(t);
            if patrol_first {
                self.patrol(t);
            } else if let Some(Reverse((_, _, ev))) = self.queue.pop() {
                match ev {
                    Ev::Fault(i) => self.fault(t, i),
                    Ev::Round(v) => {
                        if self.vs[v as usize].up() {
                            let uids = self.uids();
                            world::scoring_round(&mut self.vs[v as usize], &self.github, uids, OUR_UID);
                            let share =
                                self.vs.iter().map(|x| x.stake * x.weight).sum::<f64>() / self.tracker.total_stake;
                            self.tracker.set_share(t, share);
                        }
                        self.push(t + round, Ev::Round(v));
                    }
                    Ev::Post(target) => self.post(t, target),
                }
            }
            self.tally(t);
        }
        if !started {
            self.tracker.start();
        }
        self.tally(end.saturating_sub(1));
        let counts = self.net.counts();
        let planned = self.planned;
        let (calls, scoring) = self.github.our_calls();
        let hours = end as f64 / 3600.0;
        let mut stats = self.tracker.finish(end);
        stats.pats_sent = counts.pats_sent;
        stats.broadcast_attempts = counts.broadcasts;
        stats.checks = counts.checks;
        stats.probes = counts.probes;
        stats.planned_broadcasts = planned;
        stats.github_calls_per_hour = calls as f64 / hours;
        stats.github_calls_max_hour = self.hourly.iter().copied().max().unwrap_or(0);
        stats.scoring_calls_per_hour = scoring as f64 / hours;
        stats
    }

    fn fault(&mut self, t: T, i: usize) {
        let effect = self.timeline[i].effect.clone();
        match effect {
            Effect::Down(v)
            | Effect::Up(v)
            | Effect::Partition(v)
            | Effect::Heal(v)
            | Effect::Crash(v)
            | Effect::WipeStore(v)
            | Effect::CorruptStart(v)
            | Effect::CorruptEnd(v) => {
                self.validator_fault(&effect, usize::from(v));
                self.refresh(t, usize::from(v));
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
                self.github.add_our_token(&self.token, 4242, "sim-miner");
                self.refresh_all(t);
                match &mut self.agent {
                    // the agent watches the PAT file: a round at once (its plan sees the rotation
                    // and re-asserts everywhere)
                    Some(a) => a.scheduler.round_now(BASE + t + 1),
                    None => match self.strategy.kind {
                        // a person re-runs `post` some time after rotating
                        StrategyKind::PostOnce { repost_delay } | StrategyKind::PostRetries { repost_delay, .. } => {
                            self.push(t + repost_delay.as_secs(), Ev::Post(None));
                        }
                        // cron reads the new PAT file at its next run (and patrol has an agent)
                        StrategyKind::PostEvery { .. } | StrategyKind::Patrol(_) => {}
                    },
                }
            }
        }
    }

    /// What a fault does to validator `v`'s process, network or store (the coverage it leaves is
    /// measured by the caller).
    fn validator_fault(&mut self, effect: &Effect, v: usize) {
        let background = self.s.background_miners;
        let x = &mut self.vs[v];
        match effect {
            Effect::Down(_) => x.down += 1,
            Effect::Up(_) => {
                x.down = x.down.saturating_sub(1);
                if x.up() && x.wiped {
                    x.wiped = false;
                    world::restore_background(x, OUR_UID, background);
                }
            }
            Effect::Partition(_) => x.partitioned += 1,
            Effect::Heal(_) => x.partitioned = x.partitioned.saturating_sub(1),
            Effect::Crash(_) => {
                x.gate.restart();
                // a new process: a new axon uuid
                x.generation += 1;
            }
            Effect::WipeStore(_) => {
                let _ = std::fs::remove_file(x.path());
                if x.up() {
                    // lost while running (no restart): everyone else re-posts as after a wipe
                    world::restore_background(x, OUR_UID, background);
                } else {
                    x.wiped = true;
                }
                self.reread(v);
            }
            Effect::CorruptStart(_) => {
                if x.corrupt == 0 {
                    x.backup = std::fs::read(x.path()).ok();
                    let _ = std::fs::write(x.path(), b"{\"truncated\": [");
                }
                x.corrupt += 1;
            }
            Effect::CorruptEnd(_) => {
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
                    self.reread(v);
                }
            }
            Effect::GithubStart { .. } | Effect::GithubEnd { .. } | Effect::PatRevoked | Effect::PatRotated => {}
        }
    }

    /// `gitt miner post` (once, or with retries for the silent): one broadcast to every validator
    /// (or a retry to one) over the same transport the agent uses.
    fn post(&mut self, t: T, target: Option<(u16, u32)>) {
        let retries = match self.strategy.kind {
            StrategyKind::PostRetries { retries, .. } => retries,
            _ => 0,
        };
        if let (StrategyKind::PostEvery { every }, None) = (&self.strategy.kind, target) {
            // cron: the next run is due whatever this one does
            self.push(t + every.as_secs().max(1), Ev::Post(None));
            self.net.set_now(BASE + t);
            let Some(pat) = Pat::new(&self.token) else { return };
            // `gitt miner post` checks the PAT with GitHub first (two calls) and sends nothing when
            // GitHub says no
            let pf = self.rt.block_on(self.net.preflight(&pat));
            if !matches!(pf.outcome, crate::github::PreflightOutcome::Valid { .. }) {
                return;
            }
        }
        let todo: Vec<(u16, u32)> = match target {
            None => (0..self.vs.len() as u16).map(|v| (v, 0)).collect(),
            Some(x) => vec![x],
        };
        let targets: Vec<Validator> =
            todo.iter().map(|(v, _)| eligible_validator(*v, self.vs[usize::from(*v)].stake)).collect();
        self.net.set_now(BASE + t);
        let Some(pat) = Pat::new(&self.token) else { return };
        let replies = self.rt.block_on(self.net.broadcast(&targets, &pat));
        for ((v, attempt), r) in todo.into_iter().zip(&replies) {
            if let BroadcastObs::Failed { .. } = BroadcastObs::of(r)
                && attempt < retries
            {
                // backon-style exponential backoff with jitter: ~1 s, 2 s, 4 s ...
                let delay = (1u64 << attempt.min(10)) + self.rng.gen_range(0..=1);
                self.push(t + delay, Ev::Post(Some((v, attempt + 1))));
            }
        }
        self.after_broadcasts(t);
    }

    fn after_broadcasts(&mut self, t: T) {
        for v in self.net.take_touched() {
            self.reread(usize::from(v));
            self.refresh(t, usize::from(v));
        }
    }

    /// The agent's wake-up at `t`: the agent's own wake-up plan ([`Scheduler::plan`]), executed as
    /// the agent does, through the product's pass.
    fn patrol(&mut self, t: T) {
        let now = BASE + t;
        self.net.set_now(now);
        let Some(pat) = Pat::new(&self.token) else { return };
        let Some(a) = self.agent.as_mut() else { return };
        let net = &self.net;
        let fingerprint = pat.fingerprint();
        let plan = a.scheduler.plan(now, &[a.input()], Some(&a.eligible), |_| Some(fingerprint.clone()));
        a.scheduler.started(&plan, now, || net.sample());
        let (Some(job), Some(planned)) = (plan.job, plan.passes.first()) else {
            // As the agent does: no job. (The scheduler never leaves a wake-up in the past that
            // has nothing due; if it ever did, a round a second later ends the spin.)
            if a.scheduler.next_wake(&[a.input()], &a.eligible) <= now {
                debug_assert!(false, "a wake-up at {now} with nothing due");
                a.scheduler.round_now(now + 1);
            }
            return;
        };
        if job == Kind::Round {
            // the simulated validator set is always readable
            a.scheduler.round_succeeded();
            a.force_full = false;
        }
        let work = &planned.work;
        let out = self.rt.block_on(pass::run(&self.net, &a.cfg, &a.selection, &mut a.state, &pat, work, None));
        self.planned += out.planned_broadcasts.len() as u64;
        if let Some(trace) = std::env::var("PATROL_SIM_TRACE").ok().and_then(|v| v.parse::<u16>().ok())
            && let Some(v) = out.validators.iter().find(|v| v.validator.uid == trace)
        {
            eprintln!(
                "t={t} uid={trace} probe={:?} action={} why={:?} final={:?} next={}",
                v.probe,
                v.action,
                v.why,
                v.final_category,
                v.next_check_at.saturating_sub(BASE)
            );
        }
        self.after_broadcasts(t);
    }
}
