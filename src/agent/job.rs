//! The agent's units of work, run as one spawned task at a time so the main loop stays free to
//! ping the watchdog and handle signals while validators are being called:
//!
//! - a **round**: read the validator set once for the netuid (chain, cache or static list; one read
//!   shared by every miner), then one pass per miner, concurrently;
//! - a **re-check**: passes limited to the validators whose own timers fired, or a probe sweep, on
//!   the validator set of the last round.
//!
//! Everything a job needs is moved in (a clone of each miner's state, its PAT, its transport, the
//! chain client) and comes back in [`Done`]; the main loop keeps the originals, so a job that is
//! abandoned at shutdown leaves the last saved state intact.

use std::sync::Arc;

use tokio::task::{JoinHandle, JoinSet};

use super::miner::{Problem, ProblemKind};
pub use super::schedule::Kind;
use crate::chain::{self, ChainClient, ChainError, SubnetView};
use crate::config::Settings;
use crate::reconcile::pass::{self, PassConfig, PassOutcome, Work};
use crate::reconcile::state::{MinerState, StateFile};
use crate::reconcile::transport::Transport;
use crate::secret::Pat;
use crate::validators::Selection;

/// One miner's share of a job.
pub struct Task {
    /// Index of the miner in the agent's list.
    pub index: usize,
    pub hotkey: String,
    pub transport: Arc<dyn Transport>,
    pub state: MinerState,
    pub pat: Pat,
    pub work: Work,
    /// Where to checkpoint the state before broadcasting (`None`: dry run, nothing is saved).
    pub state_file: Option<StateFile>,
}

/// One miner's result.
pub struct TaskDone {
    pub index: usize,
    pub state: MinerState,
    pub result: Result<PassOutcome, Problem>,
}

/// What the round read as the validator set.
#[derive(Debug, Clone)]
pub struct ViewRead {
    pub netuid: u16,
    pub block: Option<u64>,
    /// `chain`, `cache` or `static`.
    pub source: &'static str,
    pub age: std::time::Duration,
    pub selection: Arc<Selection>,
}

/// A job in flight: its task and its kind.
pub struct InFlight {
    pub handle: JoinHandle<Done>,
    pub kind: Kind,
}

/// A finished job.
pub struct Done {
    pub kind: Kind,
    /// The chain client lent to a round, given back.
    pub chain: Option<ChainClient>,
    /// A round's validator set, or why there is none.
    pub view: Option<Result<ViewRead, ChainError>>,
    pub tasks: Vec<TaskDone>,
}

/// A round: read the validator set once, then pass every miner on it.
pub async fn round(settings: Settings, mut chain: ChainClient, cfg: PassConfig, tasks: Vec<Task>) -> Done {
    let view = match chain::subnet_view_using(&mut chain, &settings, None).await {
        Ok(v) => v,
        Err(e) => return Done { kind: Kind::Round, chain: Some(chain), view: Some(Err(e)), tasks: Vec::new() },
    };
    let selection = Arc::new(view.select(settings.validators.thresholds));
    let read = ViewRead {
        netuid: view.netuid,
        block: view.block,
        source: view.origin.label(),
        age: view.origin.cache_age().unwrap_or_default(),
        selection: selection.clone(),
    };
    let done = run_tasks(selection, Some(&view), cfg, tasks).await;
    Done { kind: Kind::Round, chain: Some(chain), view: Some(Ok(read)), tasks: done }
}

/// A re-check on the last round's validator set.
pub async fn recheck(selection: Arc<Selection>, cfg: PassConfig, tasks: Vec<Task>) -> Done {
    let done = run_tasks(selection, None, cfg, tasks).await;
    Done { kind: Kind::Recheck, chain: None, view: None, tasks: done }
}

/// One pass per task, concurrently. A miner whose hotkey the view does not list is not passed (the
/// PAT goes only to a subnet we are registered on).
async fn run_tasks(
    selection: Arc<Selection>,
    view: Option<&SubnetView>,
    cfg: PassConfig,
    tasks: Vec<Task>,
) -> Vec<TaskDone> {
    let mut out = Vec::new();
    let mut set = JoinSet::new();
    for task in tasks {
        if let Some(v) = view
            && let Err(e) = v.require_registered(&task.hotkey)
        {
            out.push(TaskDone {
                index: task.index,
                state: task.state,
                result: Err(Problem::new(ProblemKind::NotRegistered, e.to_string())),
            });
            continue;
        }
        let (selection, cfg) = (selection.clone(), cfg.clone());
        set.spawn(async move {
            let Task { index, hotkey: _, transport, mut state, pat, work, state_file } = task;
            if let Some(f) = &state_file {
                // what `check`, `post` and dry runs beside the agent spent on the PAT
                state.absorb_spent(&f.take_spent(), transport.clock().now());
            }
            let save = |s: &MinerState| {
                if let Some(f) = &state_file {
                    f.checkpoint(s);
                }
            };
            let outcome = pass::run(&*transport, &cfg, &selection, &mut state, &pat, &work, Some(&save)).await;
            TaskDone { index, state, result: Ok(outcome) }
        });
    }
    while let Some(r) = set.join_next().await {
        match r {
            Ok(done) => out.push(done),
            // The main loop keeps that miner's previous state; the next pass retries.
            Err(e) => tracing::error!(error = %e, "a miner's pass failed"),
        }
    }
    out.sort_by_key(|d| d.index);
    out
}
