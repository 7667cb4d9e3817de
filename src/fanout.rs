//! Concurrent fan-out to many validators, bounded by a semaphore: the one place patrol talks to
//! validators in bulk. `check` and `post` call it directly, the reconciler through its network
//! [`Transport`](crate::reconcile::transport::Transport). Results come back in the input order, and
//! a call whose task panicked (a bug) comes back as a no-response reply instead of taking the
//! others down.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::secret::Pat;
use crate::validators::Validator;
use crate::wire::{BroadcastFields, CheckFields, Dendrite, NoResponseKind, ProbeFields, Reply, Target};

/// The miner's dendrite and how many calls it may have in flight: what every bulk call needs.
#[derive(Clone, Copy)]
pub struct Fanout<'a> {
    pub dendrite: &'a Arc<Dendrite>,
    pub concurrency: usize,
}

impl Fanout<'_> {
    /// `PatCheckSynapse` to every validator.
    pub async fn check(self, validators: &[Validator], timeout: Duration) -> Vec<Reply<CheckFields>> {
        self.on_each(validators, move |d, t| async move { d.check(&t, timeout).await }).await
    }

    /// The liveness probe ([`Dendrite::probe`]) to every validator.
    pub async fn probe(self, validators: &[Validator], timeout: Duration) -> Vec<Reply<ProbeFields>> {
        self.on_each(validators, move |d, t| async move { d.probe(&t, timeout).await }).await
    }

    /// `PatBroadcastSynapse` with `pat` to every validator given. Callers decide *which*
    /// validators: this sends to all of them.
    pub async fn broadcast(
        self,
        validators: &[Validator],
        pat: &Pat,
        timeout: Duration,
    ) -> Vec<Reply<BroadcastFields>> {
        let pat = pat.clone();
        self.on_each(validators, move |d, t| {
            let pat = pat.clone();
            async move { d.broadcast(&t, timeout, &pat).await }
        })
        .await
    }

    /// `call` with the dendrite and each validator's axon, at most `concurrency` at once.
    async fn on_each<R, Fut>(
        self,
        validators: &[Validator],
        call: impl Fn(Arc<Dendrite>, Target) -> Fut,
    ) -> Vec<Reply<R>>
    where
        R: Send + 'static,
        Fut: Future<Output = Reply<R>> + Send + 'static,
    {
        let d = self.dendrite.clone();
        replies(each(validators, self.concurrency, move |v| call(d.clone(), v.target()))).await
    }
}

/// Replies in order; a panicked call becomes a no-response reply, keeping rows aligned.
async fn replies<R>(all: impl Future<Output = Vec<Option<Reply<R>>>>) -> Vec<Reply<R>> {
    all.await
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| Reply::no_response(NoResponseKind::Disconnected, "internal error: call task panicked"))
        })
        .collect()
}

/// Run `call` for every validator, at most `concurrency` at once; results in input order, `None`
/// where the call's task panicked.
pub async fn each<F, Fut, T>(validators: &[Validator], concurrency: usize, call: F) -> Vec<Option<T>>
where
    T: Send + 'static,
    F: Fn(Validator) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    for (i, v) in validators.iter().enumerate() {
        let fut = call(v.clone());
        let sem = sem.clone();
        set.spawn(async move {
            // The semaphore is never closed, so acquire cannot fail.
            let _permit = sem.acquire_owned().await;
            (i, fut.await)
        });
    }
    let mut out: Vec<Option<T>> = (0..validators.len()).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, r)) => out[i] = Some(r),
            // A panic inside one call must not take the others down.
            Err(e) => tracing::error!(error = %e, "validator call task failed"),
        }
    }
    out
}
