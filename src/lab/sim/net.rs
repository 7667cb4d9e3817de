//! The simulation's [`Transport`]: the reconcile pass (the product's own, unchanged) talks to the
//! simulated validators through it, in virtual time. A validator that is up answers with its real
//! handlers (store on tmpfs, GitHub checks against [`SimGithub`]); one that is down answers
//! nothing — refused while its process is down, a timeout while the network swallows it — and a
//! probe of a live one gets the 500 with its process uuid that a bittensor 10.x axon answers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::world::{SimGithub, SimValidator};
use crate::github::{PreflightOutcome, PreflightReport};
use crate::lab::validator::{PatValidator, RawPat};
use crate::reconcile::core::Secs;
use crate::reconcile::transport::{BoxFuture, Clock, Transport};
use crate::secret::Pat;
use crate::validators::Validator;
use crate::wire::{BroadcastFields, CallOutcome, CheckFields, NoResponseKind, ProbeFields, Reply};

/// What a call finds at a validator right now.
#[derive(Clone)]
pub enum Reach {
    /// Its process answers; the uuid of this process.
    Up { validator: Arc<PatValidator>, uuid: String },
    /// The process is down: connections are refused.
    Refused,
    /// The network drops everything: calls time out.
    Blackhole,
}

/// The simulated network and clock a pass runs on.
pub struct SimNet {
    /// Virtual unix seconds.
    now: AtomicU64,
    rng: Mutex<ChaCha8Rng>,
    github: SimGithub,
    our_hotkey: String,
    /// Per validator (index = uid): how it can be reached.
    reach: Mutex<Vec<Reach>>,
    /// Validators that accepted a broadcast since the engine last asked (it re-reads their stores).
    touched: Mutex<Vec<u16>>,
    counts: Mutex<Counts>,
}

/// Calls the transport carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub checks: u64,
    pub broadcasts: u64,
    /// Broadcasts that reached a validator's handler (the PAT left the miner).
    pub pats_sent: u64,
    pub probes: u64,
    pub preflights: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SimNet {
    pub fn new(github: SimGithub, our_hotkey: String, seed: u64, validators: usize) -> SimNet {
        SimNet {
            now: AtomicU64::new(0),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            github,
            our_hotkey,
            reach: Mutex::new(vec![Reach::Refused; validators]),
            touched: Mutex::new(Vec::new()),
            counts: Mutex::new(Counts::default()),
        }
    }

    /// Set the virtual clock.
    pub fn set_now(&self, now: Secs) {
        self.now.store(now, Ordering::SeqCst);
    }

    /// How validator `v` can be reached from now on.
    pub fn set_reach(&self, v: &SimValidator, index: usize) {
        let r = if !v.up() {
            Reach::Refused
        } else if v.partitioned > 0 {
            Reach::Blackhole
        } else {
            Reach::Up { validator: v.validator.clone(), uuid: v.uuid() }
        };
        if let Some(slot) = lock(&self.reach).get_mut(index) {
            *slot = r;
        }
    }

    fn reach(&self, uid: u16) -> Reach {
        lock(&self.reach).get(usize::from(uid)).cloned().unwrap_or(Reach::Refused)
    }

    /// Validators that accepted a broadcast since the last call.
    pub fn take_touched(&self) -> Vec<u16> {
        std::mem::take(&mut *lock(&self.touched))
    }

    /// What the transport carried so far.
    pub fn counts(&self) -> Counts {
        *lock(&self.counts)
    }

    /// A uniform sample in [0, 1) from the run's seeded generator.
    pub fn sample(&self) -> f64 {
        lock(&self.rng).r#gen::<f64>()
    }

    fn silent<F>(r: &Reach) -> Reply<F> {
        match r {
            Reach::Blackhole => Reply::no_response(NoResponseKind::Timeout, "no answer within the timeout"),
            _ => Reply::no_response(NoResponseKind::Connect, "Connection refused"),
        }
    }

    fn answered<F>(outcome: CallOutcome<F>, uuid: Option<String>) -> Reply<F> {
        Reply { outcome, latency: Duration::ZERO, axon_uuid: uuid }
    }
}

impl Clock for SimNet {
    fn now_f64(&self) -> f64 {
        self.now.load(Ordering::SeqCst) as f64
    }
}

impl Transport for SimNet {
    fn probe<'a>(&'a self, validators: &'a [Validator]) -> BoxFuture<'a, Vec<Reply<ProbeFields>>> {
        lock(&self.counts).probes += validators.len() as u64;
        let out = validators
            .iter()
            .map(|v| match self.reach(v.uid) {
                // The SDK's ping endpoint without a body: 500 with the axon's uuid, no handler.
                Reach::Up { uuid, .. } => {
                    Self::answered(CallOutcome::Answered(ProbeFields { status: 500 }), Some(uuid))
                }
                r => Self::silent(&r),
            })
            .collect();
        Box::pin(async move { out })
    }

    fn check<'a>(&'a self, validators: &'a [Validator]) -> BoxFuture<'a, Vec<Reply<CheckFields>>> {
        Box::pin(async move {
            lock(&self.counts).checks += validators.len() as u64;
            let mut out = Vec::with_capacity(validators.len());
            for v in validators {
                let r = self.reach(v.uid);
                out.push(match r {
                    Reach::Up { validator, uuid } => match validator.check(&self.our_hotkey).await {
                        // a success answer echoes the caller's body: no axon uuid
                        Ok(f) => Self::answered(CallOutcome::Answered(f), None),
                        Err(e) => Self::answered(
                            CallOutcome::Rejected { status: 500, message: format!("Internal Server Error ({e})") },
                            Some(uuid),
                        ),
                    },
                    r => Self::silent(&r),
                });
            }
            out
        })
    }

    fn broadcast<'a>(
        &'a self,
        validators: &'a [Validator],
        pat: &'a Pat,
    ) -> BoxFuture<'a, Vec<Reply<BroadcastFields>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(validators.len());
            for v in validators {
                lock(&self.counts).broadcasts += 1;
                let r = self.reach(v.uid);
                out.push(match r {
                    Reach::Up { validator, .. } => {
                        lock(&self.counts).pats_sent += 1;
                        let f = validator.broadcast(&self.our_hotkey, RawPat::new(pat.expose())).await;
                        if f.accepted == Some(true) {
                            lock(&self.touched).push(v.uid);
                        }
                        Self::answered(CallOutcome::Answered(f), None)
                    }
                    r => Self::silent(&r),
                });
            }
            out
        })
    }

    fn preflight<'a>(&'a self, pat: &'a Pat) -> BoxFuture<'a, PreflightReport> {
        lock(&self.counts).preflights += 1;
        let outcome: PreflightOutcome = self.github.preflight(pat.expose());
        let pf = PreflightReport::judged(outcome);
        Box::pin(async move { pf })
    }

    fn clock(&self) -> &dyn Clock {
        self
    }

    fn jitter(&self) -> f64 {
        self.sample()
    }
}
