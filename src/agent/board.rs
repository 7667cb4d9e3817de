//! The agent's `/status` (the view itself is [`crate::status_view`]'s): after every job the main
//! loop publishes what it knows — each miner's state and problem, the next round — to the
//! [`Board`] in [`Shared`]; the handler builds the view at request time, so ages and the staleness
//! verdict are current. It reads memory only: no validator, no GitHub call, no file.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::http::Shared;
use super::world::World;
use crate::reconcile::state::MinerState;
use crate::reconcile::transport::Clock;
use crate::status_view::{self, AgentFacts, Limits, MinerInput, Problem, Source, StatusView};

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
    miners: Vec<(String, String, MinerState, Option<Problem>)>,
    clock: Arc<dyn Clock>,
}

impl Board {
    fn lock(&self) -> MutexGuard<'_, Option<Published>> {
        // A panicking handler must not take `/status` down with it.
        self.published.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The view now; `None` before the agent published anything.
    pub fn view(&self) -> Option<StatusView> {
        let guard = self.lock();
        let p = guard.as_ref()?;
        let miners: Vec<MinerInput<'_>> = p
            .miners
            .iter()
            .map(|(name, hotkey, state, problem)| MinerInput { name, hotkey, state, problem: problem.clone() })
            .collect();
        Some(status_view::build(&Source::Agent(p.facts.clone()), &p.limits, &miners, p.clock.now()))
    }
}

/// `GET /status`: the view as JSON.
pub async fn serve(State(shared): State<Arc<Shared>>) -> Response {
    match shared.board.view() {
        Some(view) => Json(view).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response(),
    }
}

/// Publish the miners' state (a copy: the handler never waits for the main loop) and the agent's
/// `facts`. After every job and once at start.
pub(super) fn publish(shared: &Shared, world: &World, clock: Arc<dyn Clock>, facts: AgentFacts) {
    let settings = &world.settings;
    let limits = Limits {
        netuid: settings.chain.netuid,
        interval: settings.reconcile.interval.as_secs(),
        jitter: settings.reconcile.jitter.as_secs(),
        budget_per_hour: settings.reconcile.github_budget,
    };
    let miners = world
        .miners
        .iter()
        .map(|m| {
            let problem =
                m.problem.as_ref().map(|p| Problem { kind: p.kind.as_str().to_string(), message: p.message.clone() });
            (m.name().to_string(), m.ss58().to_string(), m.state.clone(), problem)
        })
        .collect();
    *shared.board.lock() = Some(Published { facts, limits, miners, clock });
}
