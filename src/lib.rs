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

pub mod cli;
pub mod config;
pub mod fsutil;
pub mod secret;
pub mod tls;
pub mod validators;
pub mod wallet;
pub mod wire;
