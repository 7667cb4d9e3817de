//! The agent's `/status` (the view itself is [`crate::status_view`]'s): after every job the main
//! loop publishes what it knows — each miner's state and problem, the next round — to the
//! [`Board`] the endpoint shares; the handler builds the view at request time, so ages and the staleness
//! verdict are current. It reads memory only: no validator, no GitHub call, no file.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::reconcile::transport::Clock;
use crate::status_view::{self, AgentFacts, Limits, MinerInput, MinerRecord, Source, StatusView};

/// What the main loop published last.
#[derive(Default)]
pub struct Board {
    published: Mutex<Option<Published>>,
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board").field("published", &self.lock().is_some()).finish()
    }
}

struct Published {
    facts: AgentFacts,
    limits: Limits,
    miners: Vec<MinerRecord>,
    clock: Arc<dyn Clock>,
}

impl Board {
    fn lock(&self) -> MutexGuard<'_, Option<Published>> {
        // A panicking handler must not take `/status` down with it.
        self.published.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publish the miners' state (a copy: the handler never waits for the main loop) and the
    /// agent's `facts`. After every job and once at start.
    pub fn publish(&self, limits: Limits, miners: Vec<MinerRecord>, clock: Arc<dyn Clock>, facts: AgentFacts) {
        *self.lock() = Some(Published { facts, limits, miners, clock });
    }

    /// The view now; `None` before the agent published anything.
    pub fn view(&self) -> Option<StatusView> {
        let guard = self.lock();
        let p = guard.as_ref()?;
        let miners = MinerInput::of(&p.miners);
        Some(status_view::build(&Source::Agent(p.facts.clone()), &p.limits, &miners, p.clock.now()))
    }
}
