//! The priority stage: a bounded number of requests run their handler at once; when all slots are
//! taken, waiters are admitted highest priority (stake) first, FIFO among equals, and a request that
//! waits longer than its own `timeout` gets 408, as the Python axon's priority queue does.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

/// A bounded, priority-ordered admission gate.
#[derive(Debug)]
pub struct PriorityGate {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    free: usize,
    seq: u64,
    waiters: BinaryHeap<Waiter>,
}

#[derive(Debug)]
struct Waiter {
    priority: f64,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    // Max-heap: higher priority first, then the earlier arrival.
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority.total_cmp(&other.priority).then_with(|| other.seq.cmp(&self.seq))
    }
}

/// Waited longer than the request's timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateTimeout;

/// A slot; released (to the best waiter) on drop.
#[derive(Debug)]
pub struct Permit {
    gate: Arc<PriorityGate>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.release();
    }
}

impl PriorityGate {
    /// A gate with `slots` concurrent permits (at least 1).
    pub fn new(slots: usize) -> Arc<PriorityGate> {
        Arc::new(PriorityGate { state: Mutex::new(State { free: slots.max(1), seq: 0, waiters: BinaryHeap::new() }) })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait for a slot at `priority`, at most `timeout`.
    pub async fn acquire(self: &Arc<Self>, priority: f64, timeout: Duration) -> Result<Permit, GateTimeout> {
        let mut rx = {
            let mut s = self.lock();
            if s.free > 0 && s.waiters.is_empty() {
                s.free -= 1;
                return Ok(Permit { gate: Arc::clone(self) });
            }
            let (tx, rx) = oneshot::channel();
            s.seq += 1;
            let seq = s.seq;
            let priority = if priority.is_nan() { 0.0 } else { priority };
            s.waiters.push(Waiter { priority, seq, wake: tx });
            rx
        };
        match tokio::time::timeout(timeout, &mut rx).await {
            Ok(Ok(())) => Ok(Permit { gate: Arc::clone(self) }),
            Ok(Err(_)) => Err(GateTimeout),
            Err(_) => {
                // A release may have handed us the slot just as the timer fired: keep it then,
                // otherwise it would leak. After close() no release can pick this waiter.
                rx.close();
                match rx.try_recv() {
                    Ok(()) => Ok(Permit { gate: Arc::clone(self) }),
                    Err(_) => Err(GateTimeout),
                }
            }
        }
    }

    fn release(&self) {
        let mut s = self.lock();
        while let Some(w) = s.waiters.pop() {
            if w.wake.send(()).is_ok() {
                return;
            }
        }
        s.free += 1;
    }

    /// Requests waiting for a slot (including ones that already gave up but were not popped).
    pub fn waiting(&self) -> usize {
        self.lock().waiters.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn highest_priority_first_and_timeouts() {
        let gate = PriorityGate::new(1);
        let held = gate.acquire(0.0, Duration::from_secs(1)).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, prio) in [("low", 1.0), ("high", 100.0), ("mid", 50.0), ("high2", 100.0)] {
            let (g, o) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let p = g.acquire(prio, Duration::from_secs(5)).await.unwrap();
                o.lock().unwrap().push(name);
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(p);
            }));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(gate.waiting(), 4);
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec!["high", "high2", "mid", "low"]);
        // a full gate times out, and the slot is not leaked afterwards
        let held = gate.acquire(0.0, Duration::from_secs(1)).await.unwrap();
        assert_eq!(gate.acquire(5.0, Duration::from_millis(20)).await.unwrap_err(), GateTimeout);
        drop(held);
        let _again = gate.acquire(0.0, Duration::from_millis(100)).await.unwrap();
    }
}
