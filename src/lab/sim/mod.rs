//! `patrol simulate`: weeks of a subnet in virtual time, deterministic (seeded), no sockets.
//!
//! - [`scenario`]: the scenario file (subnet, faults, strategies to compare).
//! - [`faults`]: fault specs → a concrete timeline (pure, seeded).
//! - [`world`]: simulated GitHub and validators (the real embedded validator library on tmpfs).
//! - [`engine`]: the event loop for one strategy (the real reconcile core for `patrol`).
//! - [`report`]: runs every strategy plus a fault-free baseline and compares them.
//! - [`plot`]: an SVG chart of stake-weighted coverage over time.

pub mod engine;
pub mod faults;
pub mod plot;
pub mod report;
pub mod scenario;
pub mod world;
