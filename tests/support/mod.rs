//! Shared helpers for the integration tests.

/// Real Python `bittensor==10.3.1` harness launchers (venv, axon, dendrite).
pub mod python;

pub mod cli;
/// Loopback Subtensor JSON-RPC mock node serving the recorded chain fixtures.
pub mod mock_node;

/// Long-running patrol processes (validator serve, dev fake-github) with ready lines.
pub mod serve;
pub mod subnet;
