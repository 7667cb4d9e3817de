//! The reconciler: keep every eligible validator holding our current, valid PAT.
//!
//! - [`core`]: observed + history + desired → action (pure; time and jitter passed in).
//! - [`state`]: the per-miner state file (atomic JSON, no secrets).
//! - [`pass`]: one pass of I/O around the core (check, preflight, broadcast, confirm).

pub mod core;
pub mod pass;
pub mod state;
