//! The agent's side of [`crate::notify`]: after each job, every miner's pass outcome (or the
//! problem that kept it from a pass) goes through the same pure event function `reconcile` uses;
//! the job's events leave as one message per target; after each round, the dead-man ping. All of
//! it is queued: nothing here waits on a target.

use std::sync::Arc;

use super::Agent;
use super::http::Shared;
use super::job::Kind;
use super::miner::{Miner, ProblemKind};
use crate::config::Settings;
use crate::notify::{self, Event, Input, Notifications, NotifyError, Poster, Problem};
use crate::reconcile::pass::PassOutcome;
use crate::reconcile::transport::Clock;

/// Start the notifications of `settings` (`None`: none configured), counted in `/metrics`.
pub(super) fn start(
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

/// The events one miner's pass (or problem) calls for; its record is updated.
pub(super) fn observe(notes: &Notifications, m: &mut Miner, out: Option<&PassOutcome>, now: u64) -> Vec<Event> {
    let mut record = std::mem::take(&mut m.state.notify);
    let problem = m.problem.as_ref().map(|p| {
        let kind = match p.kind {
            ProblemKind::NotRegistered => Problem::NotRegistered,
            ProblemKind::NoValidatorSource => Problem::NoValidatorSource,
            ProblemKind::PatUnavailable => Problem::PatUnavailable,
        };
        (kind, p.message.as_str())
    });
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

impl Agent<'_> {
    /// After a job: send its events as one batch; after a round, the ping (success when some
    /// miner's pass ran, failure with the reason when none could).
    pub(super) fn tell(&mut self, kind: Option<Kind>, mut events: Vec<Event>, passed: usize, failure: Option<String>) {
        let Some(notes) = &self.notes else { return };
        let now = self.clock.now();
        if kind == Some(Kind::Round) && !self.told_start && passed > 0 {
            self.told_start = true;
            let (covered, total) = self.world.miners.iter().fold((0, 0), |(c, t), m| match &m.view {
                super::status::MinerView::Coverage { covered, total, .. } => (c + covered, t + total),
                _ => (c, t),
            });
            let miners = self.world.miners.len();
            events.insert(0, notify::event::started(env!("CARGO_PKG_VERSION"), miners, total, covered, now));
        }
        notes.send(&events);
        if kind != Some(Kind::Recheck) {
            match failure {
                Some(why) if passed == 0 => notes.ping(false, &why),
                _ => notes.ping(true, &self.status_line()),
            }
        }
    }

    /// A stop signal: say so (queued; the flush at shutdown sends it).
    pub(super) fn tell_stopping(&self, signal: &str) {
        if let Some(n) = &self.notes {
            n.send(&[notify::event::stopping(signal, self.clock.now())]);
        }
    }

    /// A reload: the new configuration's notifications (URLs read again by [`start`] before the
    /// swap, so a bad one rejects the reload) take over, with what the old ones still had queued
    /// handed over by target name.
    pub(super) async fn swap_notes(&mut self, next: Option<Notifications>) {
        if let Some(old) = self.notes.take() {
            let left = old.close_within(std::time::Duration::ZERO).await;
            if let Some(n) = &next {
                n.take_over(left);
            }
        }
        self.notes = next;
    }
}
