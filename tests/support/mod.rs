//! Shared helpers for the integration tests.

use std::path::{Path, PathBuf};
use std::process::Command;
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

/// The repository (the crate's root).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `.deb` of the debug binary `cargo test` has built (no second build under cargo's lock):
/// `scripts/package-deb.sh` into `out_dir`, as `version` (default: Cargo.toml's).
pub fn package_deb(out_dir: &Path, version: Option<&str>) -> PathBuf {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("scripts/package-deb.sh"))
        .current_dir(repo())
        .env("PATROL_DEB_OUT", out_dir)
        .env("PATROL_DEB_PROFILE", "dev")
        .env("PATROL_DEB_NO_BUILD", "1");
    if let Some(v) = version {
        cmd.env("PATROL_DEB_VERSION", v);
    }
    let out = cmd.output().expect("run scripts/package-deb.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/package-deb.sh failed ({}); if cargo-deb is missing, run scripts/ci-deps.sh\n{stdout}\n{stderr}",
        out.status
    );
    let deb = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(deb.starts_with(out_dir) && deb.is_file(), "no .deb at {}\n{stderr}", deb.display());
    deb
}

/// A tool on `PATH`; missing, the test fails naming the script that installs it.
pub fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| panic!("{name} is missing: run scripts/ci-deps.sh (CI does, via scripts/test.sh)"))
}

/// `man -l FILE` as plain text, failing on any warning groff or man print.
pub fn render_man(page: &Path) -> String {
    let man = tool("man");
    let out = Command::new(man)
        .args(["--warnings", "-l"])
        .arg(page)
        .env("MANWIDTH", "100")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("run man");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "man -l {}: {}\n{err}", page.display(), out.status);
    // grotty's overstrikes for bold and underline ("N\x08N"): keep the character
    let mut text = String::new();
    for c in String::from_utf8_lossy(&out.stdout).chars() {
        if c == '\x08' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    text
}
