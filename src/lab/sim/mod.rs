//! `patrol simulate`: weeks of a subnet in virtual time, deterministic (seeded), no sockets.
//!
//! - [`scenario`]: the scenario file (subnet, faults, strategies to compare).
//! - [`faults`]: fault specs → a concrete timeline (pure, seeded).
//! - [`world`]: simulated GitHub and validators (the real embedded validator library on tmpfs).
//! - [`net`]: the [`Transport`](crate::reconcile::transport::Transport) the product's pass talks
//!   to the simulated validators through.
//! - [`engine`]: the event loop for one strategy; `patrol` is the agent's wake-up plan
//!   ([`Scheduler::plan`](crate::agent::schedule::Scheduler::plan)) and the product's reconcile
//!   pass, unchanged.
//! - [`tracker`]: what a run measures (coverage over time, repair times, minutes unscored).
//! - [`report`]: runs every strategy plus a fault-free baseline and compares them.
//! - [`plot`]: an SVG chart of stake-weighted coverage over time.

pub mod engine;
pub mod faults;
pub mod net;
pub mod plot;
pub mod report;
pub mod scenario;
pub mod tracker;
pub mod world;
