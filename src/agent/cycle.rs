//! What runs when, and what its results change: the next wake-up (round or validator timer),
//! starting a round or a re-check as a job, and taking a finished job's results into the miners'
//! state, the metrics, the logs (once per change) and the health bookkeeping.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::http::MetagraphSeen;
use super::job::{self, Done, Kind, Task};
use super::miner::Problem;
use super::{Agent, InFlight, schedule};
use crate::chain::ChainClient;
use crate::reconcile::core::Secs;
use crate::validators::Selection;

impl Agent<'_> {
    /// The earliest of the next round and every validator timer (idle only).
    pub(super) fn next_wake(&self) -> Option<Instant> {
        let mut wake = self.next_round;
        if let Some(sel) = &self.selection {
            let eligible: BTreeSet<u16> = sel.eligible.iter().map(|v| v.uid).collect();
            let gap = self.min_gap();
            // Wall clock first: the deadline then errs late, never early (an early wake finds
            // nothing due and would loop until the second turns).
            let now_unix = schedule::unix_now();
            let now = Instant::now();
            for m in self.world.miners.iter().filter(|m| m.problem.is_none()) {
                if let Some(at) = schedule::earliest(&m.state, &eligible, gap) {
                    wake = wake.min(schedule::deadline(at, now_unix, now));
                }
            }
        }
        Some(wake)
    }

    /// The shortest time between two contacts of one validator when the core left its timer in
    /// the past (see [`schedule::due_at`]).
    fn min_gap(&self) -> Secs {
        self.world.settings.reconcile.backoff_initial.as_secs().max(1)
    }

    /// Start a round or a re-check if one is due now.
    pub(super) fn start_due_work(&mut self) {
        if Instant::now() >= self.next_round {
            self.start_round();
            return;
        }
        let Some(sel) = self.selection.clone() else { return };
        let eligible: BTreeSet<u16> = sel.eligible.iter().map(|v| v.uid).collect();
        let gap = self.min_gap();
        let now = schedule::unix_now() as Secs;
        let mut tasks = Vec::new();
        for (index, m) in self.world.miners.iter_mut().enumerate() {
            // Deliberate: with a problem (e.g. `no_validator_source`: neither the chain nor a cache
            // younger than `metagraph_max_age` could be read) no re-check or repair runs on the old
            // set: the PAT goes only to validators known eligible within that age.
            if m.problem.is_some() {
                continue;
            }
            let due = schedule::due_uids(&m.state, &eligible, gap, now);
            if due.is_empty() {
                continue;
            }
            match m.load_pat() {
                Ok((_, true)) => {
                    // A rotation the file watcher did not report: re-assert everywhere now.
                    m.force_full = true;
                    self.start_round();
                    return;
                }
                Ok((pat, false)) => tasks.push(Task {
                    index,
                    hotkey: m.ss58().to_string(),
                    dendrite: m.dendrite.clone(),
                    state: m.state.clone(),
                    pat,
                    only: Some(due),
                    one_shot: false,
                    refresh_preflight: false,
                    state_file: m.checkpoint_file(),
                }),
                Err(e) => m.set_problem(Some(Problem::new("pat_unavailable", e.to_string())), &self.shared.metrics),
            }
        }
        if tasks.is_empty() {
            return;
        }
        tracing::debug!(miners = tasks.len(), "re-checking validators whose timers fired");
        let fut = job::recheck(sel, self.world.github.clone(), self.world.cfg.clone(), tasks);
        self.job = Some(InFlight { handle: tokio::spawn(fut), kind: Kind::Recheck });
    }

    /// Start a round: fresh validator set, one pass per miner that has a PAT.
    fn start_round(&mut self) {
        let mut tasks = Vec::new();
        for (index, m) in self.world.miners.iter_mut().enumerate() {
            let pat = match m.load_pat() {
                Ok((pat, changed)) => {
                    m.force_full |= changed;
                    if m.problem.as_ref().is_some_and(|p| p.kind == "pat_unavailable") {
                        m.set_problem(None, &self.shared.metrics);
                    }
                    pat
                }
                Err(e) => {
                    m.set_problem(Some(Problem::new("pat_unavailable", e.to_string())), &self.shared.metrics);
                    continue;
                }
            };
            tasks.push(Task {
                index,
                hotkey: m.ss58().to_string(),
                dendrite: m.dendrite.clone(),
                state: m.state.clone(),
                pat,
                only: None,
                one_shot: m.force_full,
                refresh_preflight: m.preflight_due(),
                state_file: m.checkpoint_file(),
            });
        }
        let chain = self.chain.take().unwrap_or_else(|| ChainClient::from_settings(&self.world.settings.chain));
        let fut =
            job::round(self.world.settings.clone(), chain, self.world.github.clone(), self.world.cfg.clone(), tasks);
        self.job = Some(InFlight { handle: tokio::spawn(fut), kind: Kind::Round });
        // Until this round reports, the next one is an interval away (a failure shortens it).
        self.next_round = Instant::now() + self.round_delay();
    }

    fn round_delay(&self) -> Duration {
        let r = &self.world.settings.reconcile;
        schedule::round_delay(r.interval, r.jitter, rand::random::<f64>())
    }

    /// Take a finished job's results.
    pub(super) fn finish(&mut self, r: Result<Done, tokio::task::JoinError>) {
        let kind = self.job.take().map(|j| j.kind);
        let done = match r {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "a pass task failed; retrying later");
                if kind == Some(Kind::Round) {
                    self.round_failed("the pass task failed".into());
                }
                self.publish_status();
                return;
            }
        };
        if let Some(c) = done.chain {
            self.chain = Some(c);
        }
        match done.view {
            Some(Ok(read)) => self.round_succeeded(read),
            Some(Err(msg)) => self.round_failed(msg),
            None => {}
        }
        let metrics = &self.shared.metrics;
        for t in done.tasks {
            // A reload waits for the job in flight, so the index is still this miner's.
            let Some(m) = self.world.miners.get_mut(t.index) else { continue };
            m.state = t.state;
            match t.result {
                Ok(out) => {
                    if m.problem.as_ref().is_some_and(|p| p.kind != "pat_unavailable") {
                        m.set_problem(None, metrics);
                    }
                    m.absorb(&out, t.extra_preflight.as_ref());
                    match done.kind {
                        Kind::Round => metrics.observe_pass(m.ss58(), &out, &m.state),
                        Kind::Recheck => metrics.observe_recheck(m.ss58(), &out, &m.state),
                    }
                    if let Some(pf) = &t.extra_preflight {
                        metrics.observe_preflight(m.ss58(), pf);
                    }
                    if done.kind == Kind::Round {
                        m.force_full = false;
                    }
                }
                Err(problem) => m.set_problem(Some(problem), metrics),
            }
            m.save();
        }
        self.publish_status();
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
            if m.problem.as_ref().is_some_and(|p| p.kind == "no_validator_source") {
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
        self.round_failures = 0;
        self.next_round = Instant::now() + self.round_delay();
    }

    fn round_failed(&mut self, msg: String) {
        self.round_failures += 1;
        let r = &self.world.settings.reconcile;
        let retry = schedule::round_retry(r.backoff_initial, r.interval, self.round_failures);
        if self.view_error.as_deref() != Some(msg.as_str()) {
            tracing::error!(retry_in = %humantime::format_duration(retry), "cannot read the validator set: {msg}");
        }
        let problem = Problem::new("no_validator_source", format!("no validator source: {msg}"));
        for m in &mut self.world.miners {
            if m.problem.as_ref().is_none_or(|p| p.kind == "no_validator_source") {
                m.set_problem(Some(problem.clone()), &self.shared.metrics);
            }
        }
        self.view_error = Some(msg);
        self.next_round = Instant::now() + retry;
    }
}

/// Give the pages a finished job freed back to the kernel. A fan-out to a whole subnet allocates
/// per-connection buffers on every tokio worker's arena; glibc keeps those arenas' free pages
/// mapped, so an idle agent would keep the peak of its last pass as RSS (24.4 MB vs 19.1 MB after
/// trimming, measured at 256 validators; BENCHMARKS.md). Once per job, it costs microseconds.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas and takes their locks; no pointers of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}
