//! The agent's work cycle ([`Cycle`]): starting what the wake-up plan
//! ([`Scheduler::plan`](super::schedule::Scheduler::plan)) says is due — a round, a re-check of
//! validators whose timers fired, a probe sweep — as one job, and taking a finished job's results
//! into the miners' state, the metrics, the logs (once per change) and the health bookkeeping. It
//! owns the scheduler and the validator set the re-checks run on; the main loop owns the job's
//! task and everything the job's news goes to.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::http::{MetagraphSeen, Shared};
use super::job::{self, Done, InFlight, Kind, Task, TaskDone};
use super::miner::{Miner, Problem, ProblemKind};
use super::schedule::{PlanInput, ScheduleConfig, Scheduler};
use super::tell::{JobNews, Teller};
use super::world::World;
use crate::chain::{ChainClient, ChainError};
use crate::config::{LoadedPat, PatError, Settings};
use crate::metrics::Metrics;
use crate::reconcile::core::Secs;
use crate::validators::Selection;

/// What runs when, and on which validator set.
pub(super) struct Cycle {
    scheduler: Scheduler,
    /// Kept across rounds (one connection); lent to the round in flight.
    chain: Option<ChainClient>,
    /// The last round's eligible validators (re-checks run on it).
    selection: Option<Arc<Selection>>,
    /// Their uids.
    eligible: BTreeSet<u16>,
    /// Why the last round could not read the validator set (logged once).
    view_error: Option<String>,
}

impl Cycle {
    /// The first round is due at `now`.
    pub fn new(settings: &Settings, now: Secs) -> Cycle {
        Cycle {
            scheduler: Scheduler::new(ScheduleConfig::from(&settings.reconcile), now),
            chain: None,
            selection: None,
            eligible: BTreeSet::new(),
            view_error: None,
        }
    }

    /// When the next round is due.
    pub fn next_round(&self) -> Secs {
        self.scheduler.next_round()
    }

    /// A round at once (a reload, a rotated PAT).
    pub fn round_now(&mut self, now: Secs) {
        self.scheduler.round_now(now);
    }

    /// Take reloaded settings, keeping the timers; a new `[chain]` gets a new connection.
    pub fn reconfigure(&mut self, settings: &Settings, chain_changed: bool, now: Secs) {
        if chain_changed {
            self.chain = None;
        }
        self.scheduler.reconfigure(ScheduleConfig::from(&settings.reconcile), now);
    }

    /// The earliest of the next round, the next sweep and every validator timer (idle only).
    pub fn next_wake(&self, world: &World) -> Secs {
        let miners: Vec<PlanInput<'_>> = world.miners.iter().map(Miner::plan_input).collect();
        self.scheduler.next_wake(&miners, &self.eligible)
    }

    /// Start what the wake-up plan says is due at `now`: a round, or a re-check / probe sweep.
    pub fn start(&mut self, now: Secs, world: &mut World, metrics: &Metrics) -> Option<InFlight> {
        let mut pats: Vec<Option<Result<LoadedPat, PatError>>> = (0..world.miners.len()).map(|_| None).collect();
        let plan = {
            let all = &world.miners;
            let miners: Vec<PlanInput<'_>> = all.iter().map(Miner::plan_input).collect();
            let eligible = self.selection.as_ref().map(|_| &self.eligible);
            self.scheduler.plan(now, &miners, eligible, |i| {
                let read = all[i].settings.load_pat();
                let fp = read.as_ref().ok().map(|l| l.pat.fingerprint());
                pats[i] = Some(read);
                fp
            })
        };
        self.scheduler.started(&plan, now, rand::random::<f64>);
        // What reading the PATs found: one that cannot be read is its miner's problem (no pass),
        // one that reads again ends that problem.
        for (m, read) in world.miners.iter_mut().zip(&pats) {
            match read {
                Some(Err(e)) => m.set_problem(
                    Some(Problem::new(ProblemKind::PatUnavailable, crate::secret::error_chain(e))),
                    metrics,
                ),
                Some(Ok(_)) if m.problem.as_ref().is_some_and(|p| p.is(ProblemKind::PatUnavailable)) => {
                    m.set_problem(None, metrics)
                }
                _ => {}
            }
        }
        let kind = plan.job?;
        let mut tasks = Vec::new();
        for p in plan.passes {
            let (Some(Ok(loaded)), Some(transport)) = (pats[p.index].take(), world.transport(p.index)) else {
                continue;
            };
            let m = &world.miners[p.index];
            if p.rotated {
                // The pass logs the change itself (once, at info); this says where it came from.
                tracing::debug!(miner = %m.name(), pat = %loaded.pat.redacted(), from = %loaded.origin, "the PAT changed; re-asserting it everywhere");
            }
            tasks.push(Task {
                index: p.index,
                hotkey: m.ss58().to_string(),
                transport,
                state: m.state.clone(),
                pat: loaded.pat,
                work: p.work,
                state_file: m.checkpoint_file(),
            });
        }
        let handle = match kind {
            Kind::Round => {
                let chain = self.chain.take().unwrap_or_else(|| ChainClient::from_settings(&world.settings.chain));
                tokio::spawn(job::round(world.settings.clone(), chain, world.cfg.clone(), tasks))
            }
            Kind::Recheck => {
                let sel = self.selection.clone()?;
                tracing::debug!(miners = tasks.len(), sweep = plan.sweep, "re-checking validators whose timers fired");
                tokio::spawn(job::recheck(sel, world.cfg.clone(), tasks))
            }
        };
        Some(InFlight { handle, kind })
    }

    /// Take a finished job's results (of `kind`, as started) at `now`; returns what it has to tell.
    pub fn finish(
        &mut self,
        r: Result<Done, tokio::task::JoinError>,
        kind: Option<Kind>,
        now: Secs,
        world: &mut World,
        shared: &Shared,
        teller: &Teller,
    ) -> JobNews {
        let done = match r {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "a pass task failed; retrying later");
                if kind == Some(Kind::Round) {
                    let _ = self.round_failed(None, now, world, &shared.metrics);
                }
                let failure = Some(format!("internal error: a pass task failed: {e}"));
                return JobNews { kind, failure, ..JobNews::default() };
            }
        };
        if let Some(c) = done.chain {
            self.chain = Some(c);
        }
        let mut failure = None;
        match done.view {
            Some(Ok(read)) => self.round_succeeded(read, world, shared),
            Some(Err(e)) => failure = Some(self.round_failed(Some(e), now, world, &shared.metrics)),
            None => {}
        }
        let mut news = take_results(done.kind, done.tasks, now, world, shared, teller);
        news.failure = failure.or(news.failure);
        news
    }

    fn round_succeeded(&mut self, read: job::ViewRead, world: &mut World, shared: &Shared) {
        let metrics = &shared.metrics;
        metrics.inc_metagraph_reads(read.netuid, read.source);
        metrics.set_metagraph_age(read.netuid, read.age.as_secs_f64());
        if let Some(e) = self.view_error.take() {
            tracing::info!(source = read.source, "the validator set is readable again (was: {e})");
        }
        for m in &mut world.miners {
            if m.problem.as_ref().is_some_and(|p| p.is(ProblemKind::NoValidatorSource)) {
                m.set_problem(None, metrics);
            }
        }
        let now: BTreeSet<u16> = read.selection.eligible.iter().map(|v| v.uid).collect();
        match &self.selection {
            None => tracing::info!(
                netuid = read.netuid,
                source = read.source,
                block = ?read.block,
                eligible = now.len(),
                "validator set: {} eligible", now.len()
            ),
            Some(_) if self.eligible != now => {
                let joined: Vec<u16> = now.difference(&self.eligible).copied().collect();
                let left: Vec<u16> = self.eligible.difference(&now).copied().collect();
                tracing::info!(
                    netuid = read.netuid,
                    ?joined,
                    ?left,
                    eligible = now.len(),
                    "the eligible validator set changed"
                );
            }
            Some(_) => {}
        }
        if now.is_empty() {
            tracing::warn!(netuid = read.netuid, "no validator is eligible: the PAT would go nowhere");
        }
        shared.round_finished(MetagraphSeen {
            netuid: read.netuid,
            at: Instant::now(),
            age_at_read: read.age,
            source: read.source,
        });
        self.selection = Some(read.selection);
        self.eligible = now;
        self.scheduler.round_succeeded();
    }

    /// A round could not read the validator set (`None`: its task failed). Returns the problem's
    /// message (what the dead-man ping says too).
    fn round_failed(&mut self, error: Option<ChainError>, now: Secs, world: &mut World, metrics: &Metrics) -> String {
        let msg = error.map_or_else(|| "the pass task failed".to_string(), |e| crate::secret::error_chain(&e));
        let retry = Duration::from_secs(self.scheduler.round_failed(now));
        if self.view_error.as_deref() != Some(msg.as_str()) {
            tracing::error!(retry_in = %humantime::format_duration(retry), "cannot read the validator set: {msg}");
        }
        let problem = Problem::new(ProblemKind::NoValidatorSource, format!("no validator source: {msg}"));
        for m in &mut world.miners {
            if m.problem.as_ref().is_none_or(|p| p.is(ProblemKind::NoValidatorSource)) {
                m.set_problem(Some(problem.clone()), metrics);
            }
        }
        self.view_error = Some(msg);
        problem.message
    }
}

/// Each miner's pass result into its state, metrics, logs and notifications; its state saved.
fn take_results(
    kind: Kind,
    tasks: Vec<TaskDone>,
    now: Secs,
    world: &mut World,
    shared: &Shared,
    teller: &Teller,
) -> JobNews {
    let metrics = &shared.metrics;
    let mut news = JobNews { kind: Some(kind), ..JobNews::default() };
    let mut seen = BTreeSet::new();
    let problem_of = |m: &Miner| m.problem.as_ref().map(|p| p.message.clone()).unwrap_or_default();
    for t in tasks {
        // A reload waits for the job in flight, so the index is still this miner's.
        let Some(m) = world.miners.get_mut(t.index) else { continue };
        m.state = t.state;
        seen.insert(t.index);
        match t.result {
            Ok(out) => {
                news.passed += 1;
                if m.problem.as_ref().is_some_and(|p| !p.is(ProblemKind::PatUnavailable)) {
                    m.set_problem(None, metrics);
                }
                m.absorb(&out);
                match kind {
                    Kind::Round => {
                        metrics.observe_pass(m.ss58(), &out, &m.state);
                        m.force_full = false;
                    }
                    Kind::Recheck => metrics.observe_recheck(m.ss58(), &out, &m.state),
                }
                news.events.extend(teller.observe(m, Some(&out), now));
            }
            Err(problem) => {
                m.set_problem(Some(problem), metrics);
                news.failure.get_or_insert_with(|| problem_of(m));
                news.events.extend(teller.observe(m, None, now));
            }
        }
        m.save();
        shared.state_saved(m.ss58(), m.save_error.as_deref());
    }
    // A round's miners that did not pass (no validator source, no PAT): their problem is news.
    if kind == Kind::Round && teller.is_on() {
        for (i, m) in world.miners.iter_mut().enumerate() {
            if !seen.contains(&i) && m.problem.is_some() {
                news.failure.get_or_insert_with(|| problem_of(m));
                news.events.extend(teller.observe(m, None, now));
            }
        }
    }
    news
}
