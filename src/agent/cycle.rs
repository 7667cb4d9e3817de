//! Starting what the [`Scheduler`](super::schedule::Scheduler) says is due — a round, a re-check
//! of validators whose timers fired, a probe sweep — as one job, and taking a finished job's
//! results into the miners' state, the metrics, the logs (once per change) and the health
//! bookkeeping.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::http::MetagraphSeen;
use super::job::{self, Done, Kind, Task};
use super::miner::{Problem, ProblemKind};
use super::{Agent, InFlight};
use crate::chain::{ChainClient, ChainError};
use crate::heap::release_freed_memory;
use crate::reconcile::core::Secs;
use crate::validators::Selection;

impl Agent<'_> {
    fn eligible(&self) -> BTreeSet<u16> {
        self.selection.as_ref().map(|s| s.eligible.iter().map(|v| v.uid).collect()).unwrap_or_default()
    }

    /// The earliest of the next round, the next sweep and every validator timer (idle only).
    pub(super) fn next_wake(&self) -> Secs {
        let eligible = self.eligible();
        // With a problem (e.g. `no_validator_source`) a miner's timers do not run (see below).
        let states = self.world.miners.iter().filter(|m| m.problem.is_none()).map(|m| &m.state);
        self.scheduler.next_wake(states, &eligible)
    }

    /// Start a round, or a re-check / probe sweep, if one is due now.
    pub(super) fn start_due_work(&mut self) {
        let now = self.clock.now();
        if self.scheduler.round_due(now) {
            self.start_round(now);
            return;
        }
        let Some(sel) = self.selection.clone() else { return };
        let eligible = self.eligible();
        let sweep = self.scheduler.sweep_due(now);
        let mut tasks = Vec::new();
        for index in 0..self.world.miners.len() {
            let m = &self.world.miners[index];
            // Deliberate: with a problem (e.g. `no_validator_source`: neither the chain nor a cache
            // younger than `metagraph_max_age` could be read) no re-check, probe or repair runs on
            // the old set: the PAT goes only to validators known eligible within that age.
            if m.problem.is_some() {
                continue;
            }
            let work = self.scheduler.work(&m.state, &eligible, now, None);
            if work.only.as_ref().is_none_or(BTreeSet::is_empty) && work.probe.is_empty() {
                continue;
            }
            let transport = self.world.transport(index);
            let m = &mut self.world.miners[index];
            match m.load_pat() {
                Ok((_, true)) => {
                    // A rotation the file watcher did not report: re-assert everywhere now.
                    m.force_full = true;
                    self.start_round(now);
                    return;
                }
                Ok((pat, false)) => tasks.extend(transport.map(|transport| Task {
                    index,
                    hotkey: m.ss58().to_string(),
                    transport,
                    state: m.state.clone(),
                    pat,
                    work,
                    state_file: m.checkpoint_file(),
                })),
                Err(e) => m.set_problem(
                    Some(Problem::new(ProblemKind::PatUnavailable, crate::secret::error_chain(&e))),
                    &self.shared.metrics,
                ),
            }
        }
        if sweep {
            self.scheduler.sweep_started(now, rand::random::<f64>());
        }
        if tasks.is_empty() {
            return;
        }
        tracing::debug!(miners = tasks.len(), sweep, "re-checking validators whose timers fired");
        let fut = job::recheck(sel, self.world.cfg.clone(), tasks);
        self.job = Some(InFlight { handle: tokio::spawn(fut), kind: Kind::Recheck });
    }

    /// Start a round: fresh validator set, one pass per miner that has a PAT (with the probe sweep,
    /// when one is due too).
    fn start_round(&mut self, now: Secs) {
        let eligible = self.eligible();
        let sweep = self.scheduler.sweep_due(now);
        let mut tasks = Vec::new();
        for index in 0..self.world.miners.len() {
            let transport = self.world.transport(index);
            let m = &mut self.world.miners[index];
            let pat = match m.load_pat() {
                Ok((pat, changed)) => {
                    m.force_full |= changed;
                    if m.problem.as_ref().is_some_and(|p| p.is(ProblemKind::PatUnavailable)) {
                        m.set_problem(None, &self.shared.metrics);
                    }
                    pat
                }
                Err(e) => {
                    m.set_problem(
                        Some(Problem::new(ProblemKind::PatUnavailable, crate::secret::error_chain(&e))),
                        &self.shared.metrics,
                    );
                    continue;
                }
            };
            let work = self.scheduler.work(&m.state, &eligible, now, Some(m.force_full));
            tasks.extend(transport.map(|transport| Task {
                index,
                hotkey: m.ss58().to_string(),
                transport,
                state: m.state.clone(),
                pat,
                work,
                state_file: m.checkpoint_file(),
            }));
        }
        if sweep {
            self.scheduler.sweep_started(now, rand::random::<f64>());
        }
        let chain = self.chain.take().unwrap_or_else(|| ChainClient::from_settings(&self.world.settings.chain));
        let fut = job::round(self.world.settings.clone(), chain, self.world.cfg.clone(), tasks);
        self.job = Some(InFlight { handle: tokio::spawn(fut), kind: Kind::Round });
        // Until this round reports, the next one is an interval away (a failure shortens it).
        self.scheduler.round_started(now, rand::random::<f64>());
    }

    /// Take a finished job's results.
    pub(super) fn finish(&mut self, r: Result<Done, tokio::task::JoinError>) {
        let kind = self.job.take().map(|j| j.kind);
        let done = match r {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "a pass task failed; retrying later");
                if kind == Some(Kind::Round) {
                    self.round_failed(None);
                }
                self.publish_status();
                self.tell(kind, Vec::new(), 0, Some(format!("internal error: a pass task failed: {e}")));
                return;
            }
        };
        if let Some(c) = done.chain {
            self.chain = Some(c);
        }
        let mut failure = None;
        match done.view {
            Some(Ok(read)) => self.round_succeeded(read),
            Some(Err(e)) => {
                failure = Some(format!("no validator source: {e}"));
                self.round_failed(Some(e));
            }
            None => {}
        }
        let metrics = &self.shared.metrics;
        let now = self.clock.now();
        let (mut events, mut passed, mut seen) = (Vec::new(), 0, BTreeSet::new());
        for t in done.tasks {
            // A reload waits for the job in flight, so the index is still this miner's.
            let Some(m) = self.world.miners.get_mut(t.index) else { continue };
            m.state = t.state;
            seen.insert(t.index);
            match t.result {
                Ok(out) => {
                    passed += 1;
                    if m.problem.as_ref().is_some_and(|p| !p.is(ProblemKind::PatUnavailable)) {
                        m.set_problem(None, metrics);
                    }
                    m.absorb(&out);
                    match done.kind {
                        Kind::Round => metrics.observe_pass(m.ss58(), &out, &m.state),
                        Kind::Recheck => metrics.observe_recheck(m.ss58(), &out, &m.state),
                    }
                    if done.kind == Kind::Round {
                        m.force_full = false;
                    }
                    if let Some(n) = &self.notes {
                        events.extend(super::tell::observe(n, m, Some(&out), now));
                    }
                }
                Err(problem) => {
                    m.set_problem(Some(problem), metrics);
                    failure.get_or_insert_with(|| m.problem.as_ref().map(|p| p.message.clone()).unwrap_or_default());
                    if let Some(n) = &self.notes {
                        events.extend(super::tell::observe(n, m, None, now));
                    }
                }
            }
            m.save();
            self.shared.state_saved(m.ss58(), m.save_error.as_deref());
        }
        // A round's miners that did not pass (no validator source, no PAT): their problem is news.
        if done.kind == Kind::Round
            && let Some(n) = &self.notes
        {
            for (i, m) in self.world.miners.iter_mut().enumerate() {
                if !seen.contains(&i) && m.problem.is_some() {
                    failure.get_or_insert_with(|| m.problem.as_ref().map(|p| p.message.clone()).unwrap_or_default());
                    events.extend(super::tell::observe(n, m, None, now));
                }
            }
        }
        self.publish_status();
        self.tell(Some(done.kind), events, passed, failure);
        // Once per job: an idle agent must not keep its last fan-out's peak as RSS.
        release_freed_memory();
    }

    fn round_succeeded(&mut self, read: job::ViewRead) {
        let metrics = &self.shared.metrics;
        metrics.inc_metagraph_reads(read.netuid, read.source);
        metrics.set_metagraph_age(read.netuid, read.age.as_secs_f64());
        if let Some(e) = self.view_error.take() {
            tracing::info!(source = read.source, "the validator set is readable again (was: {e})");
        }
        for m in &mut self.world.miners {
            if m.problem.as_ref().is_some_and(|p| p.is(ProblemKind::NoValidatorSource)) {
                m.set_problem(None, metrics);
            }
        }
        let uids = |s: &Selection| s.eligible.iter().map(|v| v.uid).collect::<BTreeSet<u16>>();
        let now = uids(&read.selection);
        match self.selection.as_deref().map(uids) {
            None => tracing::info!(
                netuid = read.netuid,
                source = read.source,
                block = ?read.block,
                eligible = now.len(),
                "validator set: {} eligible", now.len()
            ),
            Some(before) if before != now => {
                let joined: Vec<u16> = now.difference(&before).copied().collect();
                let left: Vec<u16> = before.difference(&now).copied().collect();
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
        self.shared.round_finished(MetagraphSeen {
            netuid: read.netuid,
            at: Instant::now(),
            age_at_read: read.age,
            source: read.source,
        });
        self.selection = Some(read.selection);
        self.scheduler.round_succeeded();
    }

    /// A round could not read the validator set (`None`: its task failed).
    fn round_failed(&mut self, error: Option<ChainError>) {
        let msg = error.map_or_else(|| "the pass task failed".to_string(), |e| e.to_string());
        let retry = Duration::from_secs(self.scheduler.round_failed(self.clock.now()));
        if self.view_error.as_deref() != Some(msg.as_str()) {
            tracing::error!(retry_in = %humantime::format_duration(retry), "cannot read the validator set: {msg}");
        }
        let problem = Problem::new(ProblemKind::NoValidatorSource, format!("no validator source: {msg}"));
        for m in &mut self.world.miners {
            if m.problem.as_ref().is_none_or(|p| p.is(ProblemKind::NoValidatorSource)) {
                m.set_problem(Some(problem.clone()), &self.shared.metrics);
            }
        }
        self.view_error = Some(msg);
    }
}
