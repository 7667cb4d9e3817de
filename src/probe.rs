//! Concurrent fan-out of checks and broadcasts to many validators, bounded by a semaphore. The only
//! place patrol talks to validators in bulk; `check`, `post` and the reconciler all go through it.
//! Results come back in the input order.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::secret::Pat;
use crate::validators::Validator;
use crate::wire::dendrite::Reply;
use crate::wire::{BroadcastFields, CallOutcome, CheckFields, Dendrite, NoResponseKind};

/// `PatCheckSynapse` to every validator, at most `concurrency` at once.
pub async fn check_all(
    dendrite: &Arc<Dendrite>,
    validators: &[Validator],
    timeout: Duration,
    concurrency: usize,
) -> Vec<Reply<CheckFields>> {
    fan_out(validators, concurrency, {
        let d = dendrite.clone();
        move |v: Validator| {
            let d = d.clone();
            async move { d.check(&v.target(), timeout).await }
        }
    })
    .await
}

/// `PatBroadcastSynapse` with `pat` to every validator given, at most `concurrency` at once.
/// Callers decide *which* validators: this function sends to all of them.
pub async fn broadcast_all(
    dendrite: &Arc<Dendrite>,
    validators: &[Validator],
    pat: &Pat,
    timeout: Duration,
    concurrency: usize,
) -> Vec<Reply<BroadcastFields>> {
    fan_out(validators, concurrency, {
        let d = dendrite.clone();
        let pat = pat.clone();
        move |v: Validator| {
            let d = d.clone();
            let pat = pat.clone();
            async move { d.broadcast(&v.target(), timeout, &pat).await }
        }
    })
    .await
}

/// A call whose task panicked (a bug) is reported as no response, keeping rows aligned.
fn panicked<F>() -> Reply<F> {
    Reply {
        outcome: CallOutcome::NoResponse {
            kind: NoResponseKind::Disconnected,
            detail: "internal error: call task panicked".into(),
        },
        latency: Duration::ZERO,
    }
}

async fn fan_out<F, Fut, R>(validators: &[Validator], concurrency: usize, call: F) -> Vec<Reply<R>>
where
    R: Send + 'static,
    F: Fn(Validator) -> Fut,
    Fut: std::future::Future<Output = Reply<R>> + Send + 'static,
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
    let mut out: Vec<Option<Reply<R>>> = (0..validators.len()).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, r)) => out[i] = Some(r),
            // A panic inside one call must not take the others down.
            Err(e) => tracing::error!(error = %e, "validator call task failed"),
        }
    }
    out.into_iter().map(|r| r.unwrap_or_else(panicked)).collect()
}
