//! The integration tests, one binary, filed by subject (one module each). The deployment test
//! (`tests/deploy/`) is a binary of its own: it boots a container and needs root.

/// `patrol run`: systemd notify, reload, SIGTERM mid-pass, metrics, several miners, dry run, the
/// endpoint's limits, `doctor`, `status`, and the agent's loop in tokio's paused time.
mod agent;
/// Chain access: recorded mainnet bytes, the mock node, `patrol validators` end to end.
mod chain;
/// Configuration and PAT input: named errors and exit codes, PAT sources, capped reads, no echo.
mod config;
/// `--version`, completions, man page and the .deb shipping them; a self-contained repository.
mod conventions;
/// Real-process faults: SIGKILL of `patrol run`, validators with empty/corrupt/read-only stores,
/// GitHub 5xx/429/slow/reset, the chain dropping connections, clock skew.
mod faults;
/// Files patrol reads and writes: devices, FIFOs, symlinks, caps, move-aside, state dir, log loop.
mod files;
/// The GitHub client (identity, test query, preflight) against the fake GitHub.
mod github;
/// The module map of `src/lib.rs`, executed: no module imports one listed above it.
mod layers;
/// Notifications: `notify test` per kind, reconcile transitions, the agent's hold, 429s, stop.
mod notify;
/// Packaging: systemd units verify, the .deb contents, alert rules and dashboard names.
mod packaging;
/// `patrol reconcile` against `validator serve` processes and a fake GitHub; `--metrics-file`.
mod reconcile;
/// `patrol simulate`: the #1481 scenario, determinism, plots, bad scenarios.
mod simulate;
/// Shared helpers: processes, the Python harness, receivers, the mock node, state-file fixtures.
mod support;
/// The reference validator: interop, store safety, modes, commands, its axon's limits and parity.
mod validator;
/// The wire against real Python bittensor (bt.Axon, bt.Dendrite, captured vectors) and validators
/// that answer with garbage, redirects or hostile text.
mod wire;
