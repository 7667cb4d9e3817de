//! The reconciler: keep every eligible validator holding our current, valid PAT.
//!
//! - [`core`]: observed + history + desired → action (pure; time and jitter passed in).
//! - [`budget`]: the GitHub calls patrol causes on the PAT, and how they are spent (pure).
//! - [`state`]: the per-miner state file (atomic JSON, no secrets).
//! - [`transport`]: the seam between a pass and the world (network, simulation, scripted fakes).
//! - [`pass`]: the one reconcile pass, in phases, over a transport.

pub mod budget;
pub mod core;
pub mod pass;
pub mod state;
pub mod transport;
