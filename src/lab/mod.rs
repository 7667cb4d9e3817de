//! The lab: everything patrol ships *besides* the miner's agent, to test it against the real
//! thing without a subnet. None of it runs in `patrol run`, `reconcile`, `check` or `post`, and
//! nothing on the miner's side imports it; it imports the miner's side (the simulation drives the
//! very pass and scheduler the agent runs).
//!
//! - [`validator`]: gittensor's validator side as a library — PAT store, handlers, GitHub checks,
//!   scoring gate, and an axon speaking bittensor 10.x (`patrol validator serve`, `patrol demo`).
//! - [`fake_github`]: an axum GitHub with programmable faults and request counts.
//! - [`sim`]: `patrol simulate`, weeks of a subnet in virtual time, driving the real reconcile pass
//!   and agent scheduler through the [`crate::reconcile::transport::Transport`] seam.

pub mod fake_github;
pub mod sim;
pub mod validator;
