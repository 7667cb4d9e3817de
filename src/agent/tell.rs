//! The agent's side of [`crate::notify`] ([`Teller`]): after each job, every miner's pass outcome
//! (or the problem that kept it from a pass) goes through the same pure event function `reconcile`
//! uses; the job's events leave as one message per target; after each round, the dead-man ping. All
//! of it is queued: nothing here waits on a target.

use std::sync::Arc;

use super::http::Shared;
use super::job::Kind;
use super::miner::Miner;
use super::status::MinerView;
use crate::config::Settings;
use crate::notify::{self, Event, Input, Notifications, NotifyError, Poster};
use crate::reconcile::pass::PassOutcome;
use crate::reconcile::transport::Clock;

/// What a finished job has to tell.
#[derive(Debug, Default)]
pub(super) struct JobNews {
    /// The job's kind (`None`: its task failed before saying).
    pub kind: Option<Kind>,
    pub events: Vec<Event>,
    /// Miners whose pass ran.
    pub passed: usize,
    /// Why a miner's pass could not run (the first such reason).
    pub failure: Option<String>,
}

/// The notifications in force and what has been announced.
pub(super) struct Teller {
    /// `None`: none configured.
    notes: Option<Notifications>,
    /// Where messages go (`None`: the network; tests hand in a recorder).
    poster: Option<Arc<dyn Poster>>,
    clock: Arc<dyn Clock>,
    /// `started` was announced (after the first round).
    told_start: bool,
}

impl Teller {
    /// Start the notifications of `settings`, counted in `/metrics`; each miner's undelivered
    /// events (kept in its state) are queued again.
    pub fn start(
        settings: &Settings,
        poster: Option<Arc<dyn Poster>>,
        clock: Arc<dyn Clock>,
        shared: &Arc<Shared>,
        miners: &mut [Miner],
    ) -> Result<Teller, NotifyError> {
        let notes = open(settings, poster.clone(), clock.clone(), shared)?;
        if let Some(n) = &notes {
            for m in miners {
                n.resume(&mut m.state.notify);
            }
        }
        Ok(Teller { notes, poster, clock, told_start: false })
    }

    /// Notifications are configured.
    pub fn is_on(&self) -> bool {
        self.notes.is_some()
    }

    /// The events one miner's pass (or problem) calls for; its record is updated.
    pub fn observe(&self, m: &mut Miner, out: Option<&PassOutcome>, now: u64) -> Vec<Event> {
        let Some(notes) = &self.notes else { return Vec::new() };
        let mut record = std::mem::take(&mut m.state.notify);
        let problem = m.problem.as_ref().map(|p| (p.kind, p.message.as_str()));
        let input = Input {
            miner: m.name(),
            hotkey: m.ss58(),
            state: &m.state,
            outcome: out,
            problem,
            save_error: m.save_error.as_deref(),
            now,
        };
        let events = notes.observe(&mut record, &input);
        m.state.notify = record;
        events
    }

    /// After a job: send its events as one batch; after a round, the ping (success with the
    /// `status` line when some miner's pass ran, failure with the reason when none could).
    pub fn after_job(&mut self, news: JobNews, miners: &[Miner], status: &str) {
        let Some(notes) = &self.notes else { return };
        let JobNews { kind, mut events, passed, failure } = news;
        if kind == Some(Kind::Round) && !self.told_start && passed > 0 {
            self.told_start = true;
            let (covered, total) = miners.iter().fold((0, 0), |(c, t), m| match &m.view {
                MinerView::Coverage { covered, total, .. } => (c + covered, t + total),
                _ => (c, t),
            });
            let now = self.clock.now();
            events.insert(0, notify::event::started(env!("CARGO_PKG_VERSION"), miners.len(), total, covered, now));
        }
        notes.send(&events);
        if kind != Some(Kind::Recheck) {
            match failure {
                Some(why) if passed == 0 => notes.ping(false, &why),
                _ => notes.ping(true, status),
            }
        }
    }

    /// A stop signal: say so (queued; the flush at shutdown sends it).
    pub fn stopping(&self, signal: &str) {
        if let Some(n) = &self.notes {
            n.send(&[notify::event::stopping(signal, self.clock.now())]);
        }
    }

    /// A reload's notifications, started (URLs read again) before the swap, so a bad one rejects
    /// the reload.
    pub fn prepare(&self, settings: &Settings, shared: &Arc<Shared>) -> Result<Option<Notifications>, NotifyError> {
        open(settings, self.poster.clone(), self.clock.clone(), shared)
    }

    /// A reload: the new configuration's notifications take over, with what the old ones still
    /// had queued handed over by target name.
    pub async fn swap(&mut self, next: Option<Notifications>) {
        if let Some(old) = self.notes.take() {
            let left = old.close_within(std::time::Duration::ZERO).await;
            if let Some(n) = &next {
                n.take_over(left);
            }
        }
        self.notes = next;
    }

    /// Shutdown: flush (within `[notify] flush`); what could not be delivered is kept in each
    /// miner's state for the next start.
    pub async fn close(&mut self, miners: &mut [Miner]) {
        if let Some(n) = self.notes.take() {
            let left = n.close().await;
            for m in miners {
                let hotkey = m.ss58().to_string();
                notify::keep(&mut m.state.notify, &hotkey, &left);
            }
        }
    }
}

/// The notifications of `settings` (`None`: none configured), counted in `/metrics`.
fn open(
    settings: &Settings,
    poster: Option<Arc<dyn Poster>>,
    clock: Arc<dyn Clock>,
    shared: &Arc<Shared>,
) -> Result<Option<Notifications>, NotifyError> {
    let shared = shared.clone();
    let count: notify::Count = Arc::new(move |target, result| shared.metrics.inc_notifications(target, result));
    let notes = Notifications::start(settings, poster, clock, count)?;
    if let Some(n) = &notes {
        tracing::info!(targets = ?n.shown(), "notifications on");
    }
    Ok(notes)
}
