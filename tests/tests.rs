/// `patrol run` as a systemd service, reload, metrics, multi-miner, `patrol doctor` (issue 6).
mod agent;
/// Bad config, PAT, hotkey and misbehaving peers: clear errors, exit codes, no leaks (issue 2).
mod bad_input;
/// Chain access: recorded mainnet bytes, the mock node, `patrol validators` end to end.
mod chain;
/// `--version`, completions, man page and the .deb shipping them; a self-contained repository (issue 21).
mod conventions;
/// Real-process faults: SIGKILL of `patrol run`, validators with empty/corrupt/read-only stores,
/// GitHub 5xx/429/slow/reset, the chain dropping connections, clock skew (issue 7).
mod faults;
mod github; // GitHub client (identity, test query, preflight) against the fake GitHub.
/// The validator axon's hardening (issue 15 items 4, 6, 12, 13; issue 14): limits, parity, memory, probe.
mod hardening_axon;
/// Config/PAT hardening: no PAT fall-through, no PAT in errors, capped reads, flag errors (issue 15).
mod hardening_config;
/// Files patrol reads and writes: devices, FIFOs, symlinks, caps, move-aside, state dir (issue 15).
mod hardening_files;
/// A hostile validator: redirects never followed, its text redacted, escaped and capped (issue 20).
mod hostile_validator;
/// patrol check/post against a real Python bt.Axon; request vs captured vectors (issue 2).
mod interop;
/// `reconcile --metrics-file`: ready, counters across runs, preflight series, refused paths, a
/// result kept when the state cannot be saved (issues 19, 20).
mod metrics_file;
/// Notifications (issue 22): notify test per kind, reconcile transitions, the agent's hold, 429s, stop.
mod notify;
/// Packaging: systemd units verify, the .deb contents, alert rules and dashboard names (issue 6).
mod packaging;
/// Self-tests of the real-Python bittensor harness (bt.Dendrite <-> bt.Axon).
mod python_harness;
/// patrol reconcile against patrol validator serve processes + fake GitHub (issue 5).
mod reconcile_e2e;
/// patrol simulate: the #1481 scenario, determinism, plots, bad scenarios (issue 7).
mod simulate;
/// Shared test helpers (Python harness launchers, ...).
mod support;
/// The embedded validator: interop, store safety, modes, serve/demo commands (issue 3).
mod validator;
