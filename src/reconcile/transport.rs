//! The seam between a reconcile pass and the world: everything a pass asks of it — probe these
//! validators, check these, broadcast to these, run the PAT preflight, read the clock, draw a
//! jitter sample — and nothing else. The pass ([`super::pass`]) is written against [`Transport`]
//! only, so the agent, `patrol reconcile`, the simulation and the tests run the very same pass:
//!
//! - [`NetTransport`]: the real network — the miner's [`Dendrite`] (fan-out through
//!   [`crate::fanout`]) and the [`GithubClient`];
//! - the simulation's transport over its in-memory validators (`lab::sim::world`), in virtual time;
//! - the scripted fakes of the pass and agent tests.
//!
//! Replies come back as wire-level [`Reply`]s in the order asked; classifying them is
//! [`crate::observe`]'s job, the same for every transport.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::core::Secs;
use crate::fanout::Fanout;
use crate::github::{GithubClient, PreflightReport};
use crate::secret::Pat;
use crate::validators::Validator;
use crate::wire::{BroadcastFields, CheckFields, Dendrite, ProbeFields, Reply};

/// A boxed future, so [`Transport`] can be a trait object (`Arc<dyn Transport>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Wall-clock time, as a pass and the agent's scheduler see it.
pub trait Clock: Send + Sync {
    /// Unix time, seconds with sub-second precision.
    fn now_f64(&self) -> f64;

    /// Unix time, whole seconds (what histories and timers store).
    fn now(&self) -> Secs {
        self.now_f64().max(0.0) as Secs
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_f64(&self) -> f64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
    }
}

/// What a pass asks of the world. Every list comes back in the order of the validators given.
pub trait Transport: Send + Sync {
    /// The liveness probe ([`Dendrite::probe`]) to each validator.
    fn probe<'a>(&'a self, validators: &'a [Validator]) -> BoxFuture<'a, Vec<Reply<ProbeFields>>>;
    /// `PatCheckSynapse` to each validator (no PAT sent).
    fn check<'a>(&'a self, validators: &'a [Validator]) -> BoxFuture<'a, Vec<Reply<CheckFields>>>;
    /// `PatBroadcastSynapse` with `pat` to each validator given (the pass decides which).
    fn broadcast<'a>(&'a self, validators: &'a [Validator], pat: &'a Pat)
    -> BoxFuture<'a, Vec<Reply<BroadcastFields>>>;
    /// The miner-side GitHub preflight of `pat` (the two calls a validator makes with it).
    fn preflight<'a>(&'a self, pat: &'a Pat) -> BoxFuture<'a, PreflightReport>;
    /// The clock.
    fn clock(&self) -> &dyn Clock;
    /// A jitter sample in [0, 1).
    fn jitter(&self) -> f64;
}

/// Timeouts and concurrency of the network transport (from `[reconcile]`).
#[derive(Debug, Clone, Copy)]
pub struct NetLimits {
    pub check_timeout: Duration,
    pub broadcast_timeout: Duration,
    pub probe_timeout: Duration,
    pub concurrency: usize,
}

impl NetLimits {
    /// From `[reconcile]`.
    pub fn from_settings(r: &crate::config::ReconcileSettings) -> NetLimits {
        NetLimits {
            check_timeout: r.check_timeout,
            broadcast_timeout: r.broadcast_timeout,
            probe_timeout: r.probe_timeout,
            concurrency: r.concurrency,
        }
    }
}

/// The real network: the miner's dendrite and the GitHub client.
#[derive(Clone)]
pub struct NetTransport {
    pub dendrite: Arc<Dendrite>,
    pub github: Arc<GithubClient>,
    pub limits: NetLimits,
    /// The system clock, except where a command shifts it (`patrol demo`).
    pub clock: Arc<dyn Clock>,
}

impl NetTransport {
    /// The network with the system clock.
    pub fn new(dendrite: Arc<Dendrite>, github: Arc<GithubClient>, limits: NetLimits) -> NetTransport {
        NetTransport { dendrite, github, limits, clock: Arc::new(SystemClock) }
    }

    fn fanout(&self) -> Fanout<'_> {
        Fanout { dendrite: &self.dendrite, concurrency: self.limits.concurrency }
    }
}

impl Transport for NetTransport {
    fn probe<'a>(&'a self, validators: &'a [Validator]) -> BoxFuture<'a, Vec<Reply<ProbeFields>>> {
        let l = self.limits;
        Box::pin(self.fanout().probe(validators, l.probe_timeout))
    }

    fn check<'a>(&'a self, validators: &'a [Validator]) -> BoxFuture<'a, Vec<Reply<CheckFields>>> {
        let l = self.limits;
        Box::pin(self.fanout().check(validators, l.check_timeout))
    }

    fn broadcast<'a>(
        &'a self,
        validators: &'a [Validator],
        pat: &'a Pat,
    ) -> BoxFuture<'a, Vec<Reply<BroadcastFields>>> {
        let l = self.limits;
        Box::pin(self.fanout().broadcast(validators, pat, l.broadcast_timeout))
    }

    fn preflight<'a>(&'a self, pat: &'a Pat) -> BoxFuture<'a, PreflightReport> {
        Box::pin(self.github.preflight(pat))
    }

    fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    fn jitter(&self) -> f64 {
        rand::random::<f64>()
    }
}

/// The scripted transport of the pass and agent tests; public for the integration tests that run
/// the agent in paused time (`tests/agent/virtual_time.rs`), never used by patrol itself.
#[doc(hidden)]
pub mod script;
