//! The embedded validator: the validator side of gittensor's PAT flow, reproduced as a library for
//! full-system parity. The reconciler is tested against it, the simulation runs it, and operators
//! run it locally (`patrol validator serve`, `patrol demo`).
//!
//! Spec: `docs/gittensor-pat-semantics.md` §2 (handlers, store, GitHub checks, scoring gate) and
//! `docs/bittensor-wire-protocol.md` §4–§7 (the axon).
//!
//! # What it reproduces
//! - [`store`]: `miner_pats.json`, byte-compatible with upstream's `pat_storage` (fail-closed
//!   upsert by uid, tolerant per-round snapshot).
//! - [`handlers`]: `handle_pat_broadcast` / `handle_pat_check` with upstream's step order, branches
//!   and reason texts; the blacklist (unregistered → 403) and the stake priority. GitHub calls are
//!   async ([`crate::github`]) in either [`Mode`](crate::github::Mode).
//! - [`axon`]: an HTTP server speaking the bittensor 10.x axon protocol as the Python `bt.Axon` does:
//!   routing by synapse name, blacklist *before* verification, status codes and `{"message"}`
//!   bodies, the full synapse as the success body; integers and floats in headers read as Python's
//!   `int()`/`float()` do, hotkeys as bittensor's `Keypair`, Starlette's 405 for methods other than
//!   GET and POST.
//! - [`scoring`]: the scoring-round gate (per-UID outcome, cache fallback, duplicate-id penalty,
//!   EMA with alpha 0.7 and normalised weights), pure, so a simulation can run many rounds.
//!
//! # Deliberate deviations (hardenings), each documented where it is implemented
//! 1. Unsigned requests are rejected with 401 (the Python axon accepts them for any hotkey; wire doc §12.1).
//! 2. The body's `dendrite.hotkey` must equal the signed `bt_header_dendrite_hotkey` (401 otherwise);
//!    upstream's handler trusts the unsigned body (wire doc §12.2).
//! 3. The broadcast's second identity-pin check and the save run as one critical section under the
//!    store's write lock, closing the race upstream only narrows (semantics doc §2.4).
//! 4. The store is written with fsync of file and directory and an advisory lock; upstream does neither.
//! 5. A structurally wrong store (valid JSON, not a list of objects) is treated like a corrupt one
//!    (upstream PR #1658, unmerged): the check answers "store unavailable" instead of an axon 500.
//! 6. Body fields are validated strictly (a wrong type is a 500), where pydantic would coerce
//!    (`"1"` → `1`); a request that is not Python-shaped is rejected, never guessed at.
//! 7. A request body larger than the configured limit gets 413 (Python has no limit).
//! 8. The priority stage bounds how many handlers run at once and admits waiters by stake; a wait
//!    longer than the request's timeout is 408 with Python's message (Python's priority executor
//!    only orders work, see [`axon::PriorityGate`]).
//! 9. Connections are bounded (issue 15 item 4; uvicorn bounds none of these but keep-alive): a
//!    request's head must arrive within the header-read timeout, its body within as long again
//!    (408 otherwise), quiet connections close after the idle timeout, at most `max_connections`
//!    are open (the oldest quiet one is displaced, else 503), and a shutdown waits at most
//!    `shutdown_grace` for requests in flight ([`AxonConfig`]).
//! 10. A store read is capped ([`store::STORE_READ_CAP`], regular files only) and a lookup
//!     streams the file and shares one pass among concurrent checks, so memory per check is
//!     bounded.
//!
//! Switching off 1 and 2 ([`AxonConfig`]) makes the axon answer every recorded request of the real
//! Python axon exactly as it did (`axon/tests.rs` replays `tests/data/vectors/axon_responses.json`).
//!
//! # Must not
//! - log, echo or `Debug`-print a PAT (at most `***` + last 4);
//! - block the executor (file I/O runs on the blocking pool, GitHub calls are async);
//! - overwrite a store it could not read.

pub mod axon;
pub mod handlers;
pub mod scoring;
pub mod store;

use std::collections::{BTreeMap, HashMap};

pub use axon::{Axon, AxonConfig};
pub use handlers::{CredentialChecker, HandlerError, PatValidator};
pub use scoring::{Evaluation, RoundReport, ScoringGate};
pub use store::{PatEntry, PatStore, RawPat, StoreError, StoreSnapshot};

/// A registered miner as the validator's metagraph knows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisteredMiner {
    pub uid: u16,
    /// SS58 hotkey.
    pub hotkey: String,
    /// `metagraph.S[uid]` in α: the priority of its requests.
    #[serde(default)]
    pub stake: f64,
}

/// The validator's view of the subnet: which hotkey holds which uid, and its stake. Upstream reads
/// `metagraph.hotkeys` / `metagraph.S`; uids without a miner are simply absent here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metagraph {
    by_uid: BTreeMap<u16, RegisteredMiner>,
    by_hotkey: HashMap<String, u16>,
}

/// A metagraph that cannot exist on chain.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetagraphError {
    #[error("uid {0} is registered twice")]
    DuplicateUid(u16),
    #[error("hotkey {hotkey} is registered at uids {first} and {second}")]
    DuplicateHotkey { hotkey: String, first: u16, second: u16 },
    #[error("uid {uid}: hotkey {hotkey:?} is not an SS58 address")]
    BadHotkey { uid: u16, hotkey: String },
    #[error("uid {uid}: stake {stake} is not a finite, non-negative number")]
    BadStake { uid: u16, stake: f64 },
}

impl Metagraph {
    /// Build from registered miners; rejects duplicates and malformed hotkeys.
    pub fn new(miners: impl IntoIterator<Item = RegisteredMiner>) -> Result<Metagraph, MetagraphError> {
        let mut m = Metagraph::default();
        for miner in miners {
            if crate::wallet::ss58_decode(&miner.hotkey).is_err() {
                return Err(MetagraphError::BadHotkey { uid: miner.uid, hotkey: miner.hotkey });
            }
            if !miner.stake.is_finite() || miner.stake < 0.0 {
                return Err(MetagraphError::BadStake { uid: miner.uid, stake: miner.stake });
            }
            if m.by_uid.contains_key(&miner.uid) {
                return Err(MetagraphError::DuplicateUid(miner.uid));
            }
            if let Some(&first) = m.by_hotkey.get(&miner.hotkey) {
                return Err(MetagraphError::DuplicateHotkey { hotkey: miner.hotkey, first, second: miner.uid });
            }
            m.by_hotkey.insert(miner.hotkey.clone(), miner.uid);
            m.by_uid.insert(miner.uid, miner);
        }
        Ok(m)
    }

    /// `metagraph.hotkeys.index(hotkey)`.
    pub fn uid_of(&self, hotkey: &str) -> Option<u16> {
        self.by_hotkey.get(hotkey).copied()
    }

    /// `metagraph.hotkeys[uid]`, `None` for an empty slot.
    pub fn hotkey_of(&self, uid: u16) -> Option<&str> {
        self.by_uid.get(&uid).map(|m| m.hotkey.as_str())
    }

    /// `metagraph.S[uid]` of a hotkey, 0.0 when unregistered (upstream's priority function).
    pub fn stake_of(&self, hotkey: &str) -> f64 {
        self.uid_of(hotkey).and_then(|u| self.by_uid.get(&u)).map_or(0.0, |m| m.stake)
    }

    /// Registered miners in uid order.
    pub fn miners(&self) -> impl Iterator<Item = &RegisteredMiner> {
        self.by_uid.values()
    }

    /// Number of registered miners.
    pub fn len(&self) -> usize {
        self.by_uid.len()
    }

    /// True when nobody is registered.
    pub fn is_empty(&self) -> bool {
        self.by_uid.is_empty()
    }
}

/// The first 16 characters of a hotkey, as upstream prints them (`hotkey[:16]`).
pub fn short_hotkey(hotkey: &str) -> String {
    hotkey.chars().take(16).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV";
    const B: &str = "5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi";

    fn m(uid: u16, hotkey: &str, stake: f64) -> RegisteredMiner {
        RegisteredMiner { uid, hotkey: hotkey.into(), stake }
    }

    #[test]
    fn metagraph_lookups_and_errors() {
        let g = Metagraph::new([m(3, A, 10.0), m(1, B, 2.5)]).unwrap();
        assert_eq!(g.uid_of(A), Some(3));
        assert_eq!(g.hotkey_of(1), Some(B));
        assert_eq!(g.stake_of(B), 2.5);
        assert_eq!(g.stake_of("5Other"), 0.0);
        assert_eq!(g.miners().map(|m| m.uid).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(Metagraph::new([m(1, A, 0.0), m(1, B, 0.0)]), Err(MetagraphError::DuplicateUid(1)));
        assert!(matches!(Metagraph::new([m(1, A, 0.0), m(2, A, 0.0)]), Err(MetagraphError::DuplicateHotkey { .. })));
        assert!(matches!(Metagraph::new([m(1, "nope", 0.0)]), Err(MetagraphError::BadHotkey { .. })));
        assert!(matches!(Metagraph::new([m(1, A, f64::NAN)]), Err(MetagraphError::BadStake { .. })));
        assert_eq!(short_hotkey(A), "5DfhGyQdFobKM8Ns");
    }
}
