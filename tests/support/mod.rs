//! Shared helpers for the integration tests.

use std::time::{Duration, Instant};

/// `patrol run` as a process, `patrol validator serve` for it, a notify socket, HTTP GET.
pub mod agent;
/// The `patrol` binary run to completion in a scratch dir (bounded, checked for PAT leaks).
pub mod cli;
/// `patrol dev fake-github` as a process, with a blocking client for its control API.
pub mod fake_github;
/// Loopback Subtensor JSON-RPC mock node serving the recorded chain fixtures.
pub mod mock_node;
/// Local Discord/Slack/Telegram/ntfy/webhook/healthchecks/Uptime Kuma receivers with schema checks.
pub mod receivers;

/// The agent's loop in tokio's paused time over the scripted transport, a recording target.
pub mod paused;
/// Child processes: a wrapper prefix, bounded waits, drained pipes, ready lines, signals.
pub mod process;
/// The Prometheus text format, parsed strictly.
pub mod prometheus;
/// Real Python `bittensor==10.3.1` harness launchers (venv, axon, dendrite).
pub mod python;
/// Root, and mounts private to one child: a full disk, a read-only directory.
pub mod root;
/// Long-running patrol processes (validator serve, dev fake-github) with ready lines.
pub mod serve;
/// Times in the state file moved back instead of waiting: a backoff over, a validator due.
pub mod state;
/// Several `validator serve` processes and a config pointing at them.
pub mod subnet;

/// The body of an HTTP/1.1 chunked response (test clients speak raw HTTP over a `TcpStream`).
pub fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Poll `f` every 50 ms until it returns `Some`, or panic after `timeout` with `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let mut found = None;
    if !wait_until(timeout, || {
        found = f();
        found.is_some()
    }) {
        panic!("timed out after {timeout:?} waiting for {what}");
    }
    found.expect("set when wait_until returned true")
}

/// Poll `f` every 50 ms until it is true (`true`) or `timeout` has passed (`false`).
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
