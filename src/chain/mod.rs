//! Reading the subnet from Subtensor: who the validators are, where their axons are, what they weigh,
//! and whether our hotkey is registered. Owns everything patrol knows about the chain.
//!
//! - [`client`]: a subxt client on the **legacy** JSON-RPC backend (chosen explicitly, so production
//!   and the loopback mock use the same methods), dynamic API only (no codegen: subxt downloads the
//!   node's metadata per runtime version), connect and per-call timeouts, one reconnect on a
//!   transport failure.
//! - [`decode`]: the two runtime-API answers as small name-matched structs (`NeuronInfoLite`,
//!   `SubnetState`), so runtime upgrades that add fields don't break us; conversion to
//!   [`crate::validators::Neuron`] (vtrust = raw / 65535, stake = rao / 1e9, axon IP from the u128).
//! - [`cache`]: the last good snapshot per (endpoint, netuid) in the state dir, used when the chain
//!   cannot be reached, up to `[chain] metagraph_max_age`.
//! - [`source`]: [`subnet_view`], the single entry point the commands use (static list, else chain,
//!   else cache).
//!
//! **Which stake.** gittensor selects with `metagraph.S`, the chain's stake weight
//! `SubnetState.total_stake` (alpha after child-key inheritance + 0.18 × root TAO), not the hotkey's
//! own alpha in `NeuronInfoLite.stake` (docs `subtensor-chain-access.md` §1.3). So both calls are
//! made at the same pinned block. If the node has no `get_subnet_state` answer for the netuid (it
//! returns `None`, or the runtime lacks the API) patrol falls back to each hotkey's own alpha from
//! `NeuronInfoLite` and says so in a warning: the selection can then differ from `gitt`'s. The
//! synthetic netuid-74 fixture has no recorded `get_subnet_state` and exercises that fallback.

pub mod cache;
pub mod client;
pub mod decode;
pub mod source;
pub mod time;

use std::time::Duration;

pub use client::{ChainClient, StakeSource, SubnetSnapshot};
pub use source::{Origin, SubnetView, subnet_view, subnet_view_using};

/// Why patrol could not get (or use) the subnet from the chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The WebSocket connection (or the genesis-hash request that completes it) failed or timed out.
    #[error("cannot connect to {url} (timeout {}): {reason}", humantime::format_duration(*timeout))]
    Connect { url: String, timeout: Duration, reason: String },
    /// A call failed: JSON-RPC error answer, transport failure or timeout.
    #[error("{what} failed at {url} (netuid {netuid}{}): {reason}", at_block(*block))]
    Call { url: String, netuid: u16, block: Option<u64>, what: String, reason: String },
    /// The node answered, but not in a shape we can read.
    #[error("cannot decode {what} from {url} (netuid {netuid}, block {block}): {reason}")]
    Decode { url: String, netuid: u16, block: u64, what: String, reason: String },
    /// `get_neurons_lite` returned no neuron: the subnet does not exist (the chain answers an empty
    /// list for unknown netuids). Authoritative, so no cache fallback.
    #[error("netuid {netuid} does not exist on {url} at block {block} (get_neurons_lite returned no neurons)")]
    UnknownNetuid { url: String, netuid: u16, block: u64 },
    /// Our hotkey has no UID on the netuid (`SubtensorModule::Uids` is `None`).
    #[error(
        "hotkey {hotkey} is not registered on netuid {netuid}; register it (btcli subnet register) before sending a PAT"
    )]
    NotRegistered { hotkey: String, netuid: u16 },
    /// The hotkey given to look up is not an SS58 address.
    #[error("invalid hotkey {hotkey:?}: {reason}")]
    BadHotkey { hotkey: String, reason: String },
    /// The chain failed and no cache is young enough: there is no validator source.
    #[error("no validator source for netuid {netuid} ({cache})")]
    Unavailable {
        url: String,
        netuid: u16,
        /// What the cache looked like: missing, corrupt, or how old.
        cache: String,
        #[source]
        error: Box<ChainError>,
    },
}

impl ChainError {
    /// True for errors that mean "we could not determine the validator set" (exit 3), as opposed to
    /// a problem with our own configuration or registration (exit 78).
    pub fn is_undetermined(&self) -> bool {
        !matches!(self, ChainError::NotRegistered { .. } | ChainError::BadHotkey { .. })
    }
}

fn at_block(block: Option<u64>) -> String {
    block.map(|b| format!(", block {b}")).unwrap_or_default()
}
