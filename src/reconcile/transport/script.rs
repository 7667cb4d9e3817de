//! A scripted [`Transport`] for the pass and agent tests (kube-rs' `ApiServerVerifier` shape): each
//! validator's answers are queued per call kind; a call nobody scripted fails the test with the
//! call named, so a test states every contact it expects. Every call, and the checkpoint, is
//! logged with the virtual time it happened at, so tests can assert order and timing.
//!
//! The clock is either set by hand ([`Script::set_now`]) or follows tokio's clock from a base
//! ([`Script::on_tokio_time`]), for tests in paused time.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{BoxFuture, Clock, Transport};
use crate::github::{PreflightOutcome, PreflightReport};
use crate::reconcile::core::Secs;
use crate::secret::Pat;
use crate::validators::Validator;
use crate::wire::{BroadcastFields, CallOutcome, CheckFields, NoResponseKind, ProbeFields, Reply};

/// A call the pass made (or the checkpoint it wrote).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Probe(u16),
    Check(u16),
    Broadcast(u16),
    Preflight,
    Checkpoint,
}

/// How a validator answers every call of a kind once its queue is empty: the n-th such call
/// (0-based) gets `f(n)`.
type Answers<F> = Box<dyn Fn(usize) -> Reply<F> + Send + Sync>;

/// A validator's standing behaviour for one call kind, and how many calls it has answered.
struct Behaviour<F> {
    answer: Answers<F>,
    calls: usize,
}

impl<F> Behaviour<F> {
    fn next(&mut self) -> Reply<F> {
        let r = (self.answer)(self.calls);
        self.calls += 1;
        r
    }
}

/// One call kind's answers: queued per validator, then its standing behaviour.
struct Lane<F> {
    queued: HashMap<u16, VecDeque<Reply<F>>>,
    /// Answered once the queue is empty (none: an unscripted call fails the test).
    standing: HashMap<u16, Behaviour<F>>,
}

impl<F> Default for Lane<F> {
    fn default() -> Self {
        Lane { queued: HashMap::new(), standing: HashMap::new() }
    }
}

impl<F> Lane<F> {
    fn next(&mut self, uid: u16) -> Option<Reply<F>> {
        let scripted = self.queued.get_mut(&uid).and_then(VecDeque::pop_front);
        scripted.or_else(|| self.standing.get_mut(&uid).map(Behaviour::next))
    }

    fn forget(&mut self, uid: u16) {
        self.queued.remove(&uid);
        self.standing.remove(&uid);
    }

    fn unused(&self) -> usize {
        self.queued.values().map(VecDeque::len).sum()
    }
}

#[derive(Default)]
struct Queues {
    probes: Lane<ProbeFields>,
    checks: Lane<CheckFields>,
    broadcasts: Lane<BroadcastFields>,
}

/// How the n-th unscripted call of a kind is answered (0-based).
pub trait AnswerFn<F>: Fn(usize) -> Reply<F> + Send + Sync + 'static {}
impl<F, T: Fn(usize) -> Reply<F> + Send + Sync + 'static> AnswerFn<F> for T {}

/// The scripted transport.
pub struct Script {
    now: AtomicU64,
    /// `(base, start)`: now = base + (tokio now − start).
    tokio_base: Option<(Secs, tokio::time::Instant)>,
    queues: Mutex<Queues>,
    preflight: Mutex<PreflightOutcome>,
    log: Mutex<Vec<(Secs, Call)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn reply<F>(outcome: CallOutcome<F>, uuid: Option<&str>) -> Reply<F> {
    Reply { outcome, latency: Duration::ZERO, axon_uuid: uuid.map(str::to_string) }
}

/// A check answer with these fields.
pub fn check(has_pat: bool, pat_valid: Option<bool>, reason: Option<&str>) -> Reply<CheckFields> {
    reply(
        CallOutcome::Answered(CheckFields {
            has_pat: Some(has_pat),
            pat_valid,
            rejection_reason: reason.map(str::to_string),
        }),
        None,
    )
}

/// `valid`.
pub fn valid() -> Reply<CheckFields> {
    check(true, Some(true), None)
}

/// `no_pat`.
pub fn no_pat() -> Reply<CheckFields> {
    check(false, Some(false), Some("No PAT stored for this miner"))
}

/// A broadcast answer.
pub fn broadcast(accepted: bool, reason: Option<&str>) -> Reply<BroadcastFields> {
    reply(
        CallOutcome::Answered(BroadcastFields {
            accepted: Some(accepted),
            rejection_reason: reason.map(str::to_string),
        }),
        None,
    )
}

/// A live axon's answer to the probe, with its process uuid.
pub fn alive(uuid: &str) -> Reply<ProbeFields> {
    reply(CallOutcome::Answered(ProbeFields { status: 500 }), Some(uuid))
}

/// No answer: a refused connection.
pub fn refused<F>() -> Reply<F> {
    Reply::no_response(NoResponseKind::Connect, "Connection refused")
}

/// No answer: a timeout.
pub fn timeout<F>() -> Reply<F> {
    Reply::no_response(NoResponseKind::Timeout, "no answer within 5s")
}

impl Script {
    /// A script at unix time `now`, whose preflight passes.
    pub fn new(now: Secs) -> Arc<Script> {
        Arc::new(Script {
            now: AtomicU64::new(now),
            tokio_base: None,
            queues: Mutex::new(Queues::default()),
            preflight: Mutex::new(PreflightOutcome::Valid { login: "m".into(), id: "1".into() }),
            log: Mutex::new(Vec::new()),
        })
    }

    /// A script whose clock is `base` at tokio's now and follows tokio's (paused) clock.
    pub fn on_tokio_time(base: Secs) -> Arc<Script> {
        Arc::new(Script {
            now: AtomicU64::new(base),
            tokio_base: Some((base, tokio::time::Instant::now())),
            queues: Mutex::new(Queues::default()),
            preflight: Mutex::new(PreflightOutcome::Valid { login: "m".into(), id: "1".into() }),
            log: Mutex::new(Vec::new()),
        })
    }

    pub fn set_now(&self, now: Secs) {
        self.now.store(now, Ordering::SeqCst);
    }

    pub fn on_check(&self, uid: u16, r: Reply<CheckFields>) -> &Self {
        lock(&self.queues).checks.queued.entry(uid).or_default().push_back(r);
        self
    }

    pub fn on_broadcast(&self, uid: u16, r: Reply<BroadcastFields>) -> &Self {
        lock(&self.queues).broadcasts.queued.entry(uid).or_default().push_back(r);
        self
    }

    pub fn on_probe(&self, uid: u16, r: Reply<ProbeFields>) -> &Self {
        lock(&self.queues).probes.queued.entry(uid).or_default().push_back(r);
        self
    }

    /// Every probe of `uid` not otherwise scripted gets `r`.
    pub fn probes_answer(&self, uid: u16, r: Reply<ProbeFields>) -> &Self {
        self.probes_answer_with(uid, move |_| r.clone())
    }

    /// The n-th probe of `uid` not otherwise scripted gets `f(n)` (e.g. a fresh uuid every time).
    pub fn probes_answer_with(&self, uid: u16, f: impl AnswerFn<ProbeFields>) -> &Self {
        lock(&self.queues).probes.standing.insert(uid, Behaviour { answer: Box::new(f), calls: 0 });
        self
    }

    /// The n-th check of `uid` not otherwise scripted gets `f(n)`.
    pub fn checks_answer_with(&self, uid: u16, f: impl AnswerFn<CheckFields>) -> &Self {
        lock(&self.queues).checks.standing.insert(uid, Behaviour { answer: Box::new(f), calls: 0 });
        self
    }

    /// The n-th broadcast to `uid` not otherwise scripted gets `f(n)`.
    pub fn broadcasts_answer_with(&self, uid: u16, f: impl AnswerFn<BroadcastFields>) -> &Self {
        lock(&self.queues).broadcasts.standing.insert(uid, Behaviour { answer: Box::new(f), calls: 0 });
        self
    }

    /// Forget everything scripted for `uid` (a validator that is about to change its behaviour).
    pub fn forget(&self, uid: u16) -> &Self {
        let mut q = lock(&self.queues);
        q.probes.forget(uid);
        q.checks.forget(uid);
        q.broadcasts.forget(uid);
        drop(q);
        self
    }

    pub fn preflight_says(&self, o: PreflightOutcome) -> &Self {
        *lock(&self.preflight) = o;
        self
    }

    /// Record the checkpoint (the pass calls it through its `Checkpoint` argument).
    pub fn checkpoint(&self) {
        self.record(Call::Checkpoint);
    }

    /// Every call so far, with its time.
    pub fn log(&self) -> Vec<(Secs, Call)> {
        lock(&self.log).clone()
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.log().into_iter().map(|(_, c)| c).collect()
    }

    /// Forget the log.
    pub fn clear_log(&self) {
        lock(&self.log).clear();
    }

    /// Scripted answers not consumed.
    pub fn unused(&self) -> usize {
        let q = lock(&self.queues);
        q.probes.unused() + q.checks.unused() + q.broadcasts.unused()
    }

    /// Log `call` to `v`, and answer it from `lane` (a call nobody scripted fails the test).
    fn answer<F>(&self, call: Call, v: &Validator, lane: impl FnOnce(&mut Queues) -> &mut Lane<F>) -> Reply<F> {
        self.record(call.clone());
        let answer = lane(&mut lock(&self.queues)).next(v.uid);
        answer.unwrap_or_else(|| panic!("unexpected {call:?} of uid {}", v.uid))
    }

    fn record(&self, c: Call) {
        let now = self.clock().now();
        lock(&self.log).push((now, c));
    }
}

impl Clock for Script {
    fn now_f64(&self) -> f64 {
        match self.tokio_base {
            Some((base, start)) => base as f64 + tokio::time::Instant::now().duration_since(start).as_secs_f64(),
            None => self.now.load(Ordering::SeqCst) as f64,
        }
    }
}

impl Transport for Script {
    fn probe<'a>(&'a self, validators: &'a [Validator]) -> BoxFuture<'a, Vec<Reply<ProbeFields>>> {
        let out = validators.iter().map(|v| self.answer(Call::Probe(v.uid), v, |q| &mut q.probes)).collect();
        Box::pin(async move { out })
    }

    fn check<'a>(&'a self, validators: &'a [Validator]) -> BoxFuture<'a, Vec<Reply<CheckFields>>> {
        let out = validators.iter().map(|v| self.answer(Call::Check(v.uid), v, |q| &mut q.checks)).collect();
        Box::pin(async move { out })
    }

    fn broadcast<'a>(
        &'a self,
        validators: &'a [Validator],
        _pat: &'a Pat,
    ) -> BoxFuture<'a, Vec<Reply<BroadcastFields>>> {
        let out = validators.iter().map(|v| self.answer(Call::Broadcast(v.uid), v, |q| &mut q.broadcasts)).collect();
        Box::pin(async move { out })
    }

    fn preflight<'a>(&'a self, _pat: &'a Pat) -> BoxFuture<'a, PreflightReport> {
        self.record(Call::Preflight);
        let outcome = lock(&self.preflight).clone();
        Box::pin(async move { PreflightReport::judged(outcome) })
    }

    fn clock(&self) -> &dyn Clock {
        self
    }

    fn jitter(&self) -> f64 {
        0.5
    }
}
