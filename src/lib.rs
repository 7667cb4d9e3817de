//! patrol keeps a gittensor miner's GitHub PAT stored and valid at every eligible validator of
//! Bittensor subnet 74.
//!
//! # Layout
//! - [`secret`]: the PAT newtype that cannot be printed; fingerprints.
//! - [`wallet`]: bittensor hotkey files, SS58, sr25519 signing.
//! - [`wire`]: the dendrite → axon protocol, client and axon-side primitives.
//! - [`fsutil`]: atomic file replacement used by every state file.
//! - [`tls`]: process-wide TLS provider setup.
//! - [`validators`]: the eligibility rule (pure).
//! - [`chain`]: the subnet from Subtensor (subxt, legacy backend), metagraph cache, validator source.
//! - [`agent`]: `patrol run`, the systemd service: scheduling, reload, health/metrics endpoint.
//! - [`validator`]: the embedded reference validator (PAT store, handlers, axon, scoring gate).

pub mod agent;
pub mod chain;
pub mod cli;
pub mod config;
pub mod coverage;
pub mod fanout;
pub mod fsutil;
pub mod github;
pub mod lab;
pub mod metrics;
pub mod observe;
pub mod reconcile;
pub mod report;
pub mod secret;
pub mod tls;
pub mod validators;
pub mod wallet;
pub mod wire;
