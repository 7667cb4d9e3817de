//! Launchers for the real Python `bittensor==10.3.1` harness in `tests/python/`.
//!
//! Wire compatibility is proven against the real library, never a re-implementation:
//!
//! * [`python`] creates the venv once per test process (`scripts/setup-python.sh`) and returns its
//!   interpreter. A failed setup fails the test with the script's output; nothing is silently skipped.
//! * [`PyAxon`] runs `tests/python/bt_axon.py`: a real `bt.Axon` serving gittensor's
//!   `PatCheckSynapse`/`PatBroadcastSynapse` on 127.0.0.1 with scriptable handlers. It is killed and
//!   reaped on drop (also when the test panics), and exits by itself when its stdin closes.
//! * [`py_dendrite`] / [`py_dendrite_async`] run `tests/python/bt_dendrite.py`: a real `bt.Dendrite`.
//!
//! Everything stays on loopback: the Python side stubs `get_external_ip`, binds 127.0.0.1 only and
//! refuses any non-loopback connect or name lookup (see `tests/python/README.md`).

#![allow(dead_code)]

use std::collections::HashSet;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use super::process;

/// Validator (axon) hotkey seed, `0x11` × 32 (`tests/data/vectors/keys.json` → `axon_hotkey`).
pub const VALIDATOR_SEED: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";
/// SS58 of [`VALIDATOR_SEED`].
pub const VALIDATOR_HOTKEY: &str = "5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi";
/// The public Substrate dev phrase used as the miner (dendrite) hotkey in the vectors.
pub const DENDRITE_MNEMONIC: &str = "bottom drive obey lake curtain smoke basket hold race lonely fit walk";
/// Mini secret (`secretSeed`) of [`DENDRITE_MNEMONIC`].
pub const DENDRITE_SEED: &str = "0xfac7959dbfe72f052e5a0c3c8d6530f202b02fd8f9f5ca3580ec8deb7797479e";
/// SS58 of [`DENDRITE_MNEMONIC`].
pub const DENDRITE_HOTKEY: &str = "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV";
/// A hotkey the default [`PyAxon`] does not register (seed `0x33` × 32): blacklisted, HTTP 403.
pub const BLACKLISTED_SEED: &str = "0x3333333333333333333333333333333333333333333333333333333333333333";
/// SS58 of [`BLACKLISTED_SEED`].
pub const BLACKLISTED_HOTKEY: &str = "5HBcPkCPJuNzWBstouENkvnpsyEqo1dn9Sj4Q1oihXGro6Jg";

/// How long `scripts/setup-python.sh` may take (a fresh machine downloads bittensor and its deps).
const SETUP_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// How long a `bt_axon.py` may take to print its ready line (importing bittensor takes a few seconds).
const AXON_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Default bound for one `bt_dendrite.py` run.
pub const DENDRITE_TIMEOUT: Duration = Duration::from_secs(120);

/// `tests/python/`.
pub fn harness_dir() -> PathBuf {
    super::repo().join("tests").join("python")
}

/// The venv's python with `bittensor==10.3.1`, set up at most once per test process.
///
/// Panics (failing the calling test) with the setup script's output when setup fails.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(setup_python) {
        Ok(path) => path.clone(),
        Err(message) => panic!("Python harness setup failed (scripts/setup-python.sh):\n{message}"),
    }
}

fn setup_python() -> Result<PathBuf, String> {
    let script = super::repo().join("scripts").join("setup-python.sh");
    let started = Instant::now();
    let child = Command::new("bash")
        .arg(&script)
        .current_dir(super::repo())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let out = wait_bounded(child, SETUP_TIMEOUT).map_err(|e| format!("{} {e}", script.display()))?;
    if !out.status_ok {
        return Err(format!(
            "{} exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            script.display(),
            out.status,
            out.stdout,
            out.stderr
        ));
    }
    let path = out
        .stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| PathBuf::from(l.trim()))
        .ok_or_else(|| format!("{} printed no python path\n{}", script.display(), out.stderr))?;
    if !path.is_file() {
        return Err(format!("{} printed {}, which does not exist", script.display(), path.display()));
    }
    let elapsed = started.elapsed();
    if elapsed > Duration::from_secs(2) {
        eprintln!("python harness: venv ready in {elapsed:.1?} ({})", path.display());
    }
    Ok(path)
}

/// Output of a finished child process.
struct Finished {
    status: String,
    status_ok: bool,
    stdout: String,
    stderr: String,
}

/// Waits for `child` (stdout/stderr piped) at most `timeout`; kills and reaps it on timeout.
fn wait_bounded(mut child: Child, timeout: Duration) -> Result<Finished, String> {
    let (stdout, stderr) = (process::drain(child.stdout.take()), process::drain(child.stderr.take()));
    let Some(status) = process::wait_exit(&mut child, timeout) else {
        process::kill(&mut child);
        let err = stderr.join().unwrap_or_default();
        return Err(format!("timed out after {timeout:?}; killed\n--- stderr ---\n{err}"));
    };
    Ok(Finished {
        status: status.to_string(),
        status_ok: status.success(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// The default `bt_axon.py` config: validator hotkey [`VALIDATOR_SEED`], [`DENDRITE_HOTKEY`]
/// registered as uid 0 with stake 100, checks answered from the PAT store, broadcasts accepted.
pub fn default_axon_config() -> Value {
    json!({
        "hotkey_seed": VALIDATOR_SEED,
        "registered": [{"hotkey": DENDRITE_HOTKEY, "stake": 100.0}],
        "check": "store",
        "broadcast": "accept",
    })
}

/// Runs the script named by `sys.argv[1]` as `__main__` with `time.time_ns` (and `time.time`)
/// shifted by `$PATROL_PY_CLOCK_OFFSET` seconds: a machine whose clock is off, for the library code.
const CLOCK_SHIFT_WRAPPER: &str = "\
import os, runpy, sys, time
_offset_ns = int(round(float(os.environ['PATROL_PY_CLOCK_OFFSET']) * 1e9))
_time_ns, _time = time.time_ns, time.time
time.time_ns = lambda: _time_ns() + _offset_ns
time.time = lambda: _time() + _offset_ns / 1e9
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
";

/// A real `bt.Axon` (Python) on 127.0.0.1, serving gittensor's two PAT synapses.
///
/// Its config file, request log (`received.json`) and PAT store (`miner_pats.json`, mode 0600)
/// live in a [`TempDir`] owned by this value. Dropping it kills and reaps the process.
pub struct PyAxon {
    child: Child,
    /// Held only so that the child sees EOF (and exits) if this process dies without dropping us.
    stdin: Option<ChildStdin>,
    dir: TempDir,
    config: Mutex<Value>,
    port: u16,
    hotkey: String,
    /// The axon's `axon.uuid` (from the ready line).
    uuid: String,
    clock_offset_s: Option<f64>,
}

impl PyAxon {
    /// Starts an axon with [`default_axon_config`].
    pub fn start() -> PyAxon {
        PyAxon::with_config(default_axon_config())
    }

    /// Starts an axon with `overrides` merged (top-level keys) into [`default_axon_config`].
    pub fn with_config(overrides: Value) -> PyAxon {
        PyAxon::start_inner(overrides, None)
    }

    /// [`with_config`](Self::with_config), with the axon's clock `offset_s` seconds off (positive:
    /// ahead). The script runs unchanged under a wrapper that shifts `time.time_ns` before bittensor
    /// is imported, so the library's own nonce check (`default_verify`) sees the skewed clock.
    pub fn with_clock_offset(overrides: Value, offset_s: f64) -> PyAxon {
        PyAxon::start_inner(overrides, Some(offset_s))
    }

    fn start_inner(overrides: Value, clock_offset_s: Option<f64>) -> PyAxon {
        let mut config = default_axon_config();
        merge_top_level(&mut config, overrides);
        let dir = tempfile::Builder::new().prefix("patrol-pyaxon-").tempdir().expect("create temp dir for bt_axon.py");
        write_json_atomic(&dir.path().join("config.json"), &config);
        let (child, stdin) = spawn_axon(dir.path(), clock_offset_s);
        // From here on a panic drops `guard`, which kills and reaps the child.
        let mut guard = PyAxon {
            child,
            stdin,
            dir,
            config: Mutex::new(config),
            port: 0,
            hotkey: String::new(),
            uuid: String::new(),
            clock_offset_s,
        };
        guard.wait_ready();
        guard
    }

    /// Reads the ready line of the current child (its stdout), filling in port, hotkey and uuid.
    fn wait_ready(&mut self) {
        let stdout = self.child.stdout.take().expect("bt_axon.py stdout");
        let log = self.dir.path().join("stderr.log");
        let (ready, before) = process::ready_line(&mut self.child, stdout, AXON_READY_TIMEOUT, "bt_axon.py", || {
            format!("--- bt_axon.py stderr ---\n{}", fs::read_to_string(&log).unwrap_or_default())
        });
        for line in before {
            eprintln!("bt_axon.py stdout: {line}");
        }
        self.port = ready["port"].as_u64().and_then(|p| u16::try_from(p).ok()).expect("ready.port");
        self.hotkey = ready["hotkey"].as_str().expect("ready.hotkey").to_owned();
        self.uuid = ready["uuid"].as_str().expect("ready.uuid").to_owned();
    }

    /// Stops the axon (SIGKILL, reaped) and starts a new process with the same config, directory
    /// (request log, store) and port: a validator restart. The new process has a new `axon.uuid`.
    pub fn restart(&mut self) {
        self.stdin.take();
        process::kill(&mut self.child);
        let port = self.port;
        self.set_behaviour(json!({ "port": port }));
        let (child, stdin) = spawn_axon(self.dir.path(), self.clock_offset_s);
        self.child = child;
        self.stdin = stdin;
        self.wait_ready();
        assert_eq!(self.port, port, "the restarted axon listens where the old one did");
    }

    /// The axon's `axon.uuid` (`str(uuid.uuid1())`, made once per process in `Axon.__init__`).
    pub fn uuid(&self) -> &str {
        &self.uuid
    }

    /// How often each forward function ran, by synapse name (`Synapse` is the SDK's `ping`); a
    /// name that never ran is absent (0).
    pub fn handler_calls(&self) -> std::collections::BTreeMap<String, u64> {
        let log = self.log();
        let calls = log.get("handler_calls").and_then(Value::as_object).cloned().unwrap_or_default();
        calls.into_iter().map(|(k, v)| (k, v.as_u64().unwrap_or(0))).collect()
    }

    /// The TCP port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The axon's hotkey (SS58): the one a dendrite must sign for.
    pub fn hotkey(&self) -> &str {
        &self.hotkey
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `127.0.0.1:<port>:<hotkey>`, the `--axon` argument of `bt_dendrite.py`.
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}:{}", self.port, self.hotkey)
    }

    /// The process id of the Python axon.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temp dir holding `config.json`, `received.json`, `miner_pats.json` and `stderr.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The current config (as last written).
    pub fn config(&self) -> Value {
        self.config.lock().unwrap().clone()
    }

    /// Merges `patch`'s top-level keys into the config (a `null` value removes the key) and rewrites
    /// the file atomically. The axon re-reads it on the next request, no restart needed.
    /// A scripted `queue` list restarts from its first entry when that list (or `queue_id`) changes.
    pub fn set_behaviour(&self, patch: Value) {
        let mut config = self.config.lock().unwrap();
        merge_top_level(&mut config, patch);
        write_json_atomic(&self.dir.path().join("config.json"), &config);
    }

    /// Default `PatCheckSynapse` mode (`store`, `valid`, `no_pat`, `invalid_pat[:reason]`,
    /// `test_failed[:detail]`, `inconclusive`, `store_unavailable`, `raise`, `sleep:<s>[:mode]`).
    pub fn set_check_mode(&self, mode: &str) {
        self.set_behaviour(json!({ "check": mode }));
    }

    /// Default `PatBroadcastSynapse` mode (`accept[:github_id]`, `reject:<reason>`, `raise`,
    /// `sleep:<s>[:mode]`).
    pub fn set_broadcast_mode(&self, mode: &str) {
        self.set_behaviour(json!({ "broadcast": mode }));
    }

    /// Scripts the next requests: one mode per request, in order, then the defaults again.
    /// Scripting the same lists again restarts them.
    pub fn script(&self, check: &[&str], broadcast: &[&str]) {
        static QUEUE_ID: AtomicU64 = AtomicU64::new(0);
        let id = QUEUE_ID.fetch_add(1, Ordering::Relaxed);
        self.set_behaviour(json!({ "queue": { "check": check, "broadcast": broadcast }, "queue_id": id }));
    }

    /// The whole request log: `{"requests": [...], "blacklisted": [...], "store_size": n}`.
    pub fn log(&self) -> Value {
        read_json(&self.dir.path().join("received.json"))
    }

    /// What the handlers received, one object per request, oldest first (see the README for keys).
    pub fn received(&self) -> Vec<Value> {
        array_of(&self.log(), "requests")
    }

    /// Requests the blacklist rejected (403) before any handler ran.
    pub fn blacklisted(&self) -> Vec<Value> {
        array_of(&self.log(), "blacklisted")
    }

    /// The PAT store in gittensor's format (`[{uid, hotkey, pat, github_id, stored_at}]`).
    pub fn store(&self) -> Vec<Value> {
        let path = self.dir.path().join("miner_pats.json");
        if !path.exists() {
            return Vec::new();
        }
        match read_json(&path) {
            Value::Array(items) => items,
            other => panic!("miner_pats.json is not a list: {other}"),
        }
    }

    /// The axon's stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        let text = fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        format!("--- bt_axon.py stderr ---\n{text}")
    }

    /// Local addresses of the TCP sockets this process is listening on (from `/proc`).
    pub fn listening_addrs(&self) -> Vec<SocketAddr> {
        listening_addrs_of(self.child.id())
    }
}

impl Drop for PyAxon {
    fn drop(&mut self) {
        self.stdin.take();
        process::kill(&mut self.child);
    }
}

/// Spawns `bt_axon.py` on `dir/config.json` (stderr appended to `dir/stderr.log`), optionally
/// under the clock-shifting wrapper.
fn spawn_axon(dir: &Path, clock_offset_s: Option<f64>) -> (Child, Option<ChildStdin>) {
    let python = python();
    let stderr_file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("stderr.log"))
        .expect("create bt_axon.py stderr log");
    let mut cmd = Command::new(&python);
    cmd.arg("-B");
    if let Some(offset) = clock_offset_s {
        // `python -c WRAPPER bt_axon.py …`: sys.argv is ["-c", "bt_axon.py", …] until the shift.
        cmd.arg("-c").arg(CLOCK_SHIFT_WRAPPER).env("PATROL_PY_CLOCK_OFFSET", offset.to_string());
    }
    let mut child = cmd
        .arg(harness_dir().join("bt_axon.py"))
        .arg(dir.join("config.json"))
        .arg("--exit-on-stdin-eof")
        .current_dir(dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr_file))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {} bt_axon.py: {e}", python.display()));
    let stdin = child.stdin.take();
    (child, stdin)
}

fn merge_top_level(config: &mut Value, patch: Value) {
    let (Some(config), Value::Object(patch)) = (config.as_object_mut(), patch) else {
        panic!("axon config and patch must be JSON objects");
    };
    for (key, value) in patch {
        if value.is_null() {
            config.remove(&key);
        } else {
            config.insert(key, value);
        }
    }
}

fn write_json_atomic(path: &Path, value: &Value) {
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, serde_json::to_vec_pretty(value).unwrap())
        .unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}\n{text}", path.display()))
}

fn array_of(v: &Value, key: &str) -> Vec<Value> {
    v.get(key).and_then(Value::as_array).cloned().unwrap_or_default()
}

/// Local addresses of the listening TCP sockets owned by `pid` (Linux `/proc`).
pub fn listening_addrs_of(pid: u32) -> Vec<SocketAddr> {
    let mut inodes = HashSet::new();
    if let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in entries.flatten() {
            if let Ok(target) = fs::read_link(entry.path()) {
                let target = target.to_string_lossy().into_owned();
                if let Some(inode) = target.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                    inodes.insert(inode.to_owned());
                }
            }
        }
    }
    let mut out = Vec::new();
    for (table, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if cols.len() < 10 || cols[3] != "0A" || !inodes.contains(cols[9]) {
                continue;
            }
            if let Some(addr) = parse_proc_addr(cols[1], v6) {
                out.push(addr);
            }
        }
    }
    out
}

fn parse_proc_addr(field: &str, v6: bool) -> Option<SocketAddr> {
    let (ip_hex, port_hex) = field.split_once(':')?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    let ip = if v6 {
        let mut bytes = [0u8; 16];
        for (i, chunk) in bytes.chunks_mut(4).enumerate() {
            let word = u32::from_str_radix(ip_hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(bytes))
    } else {
        IpAddr::V4(Ipv4Addr::from(u32::from_str_radix(ip_hex, 16).ok()?.to_ne_bytes()))
    };
    Some(SocketAddr::new(ip, port))
}

/// Runs `bt_dendrite.py ARGS` (a real `bt.Dendrite`) and returns its JSON list of results.
/// Bounded by [`DENDRITE_TIMEOUT`]. Blocking: inside a tokio test that serves the other end on
/// the same runtime, use [`py_dendrite_async`].
pub fn py_dendrite(args: &[&str]) -> Value {
    py_dendrite_with(args, &[], DENDRITE_TIMEOUT)
}

/// [`py_dendrite`] with extra environment variables (e.g. the PAT for `--token-env`) and a bound.
pub fn py_dendrite_with(args: &[&str], envs: &[(&str, &str)], timeout: Duration) -> Value {
    let python = python();
    let mut cmd = dendrite_command(&python, args, envs);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn bt_dendrite.py: {e}"));
    let out = wait_bounded(child, timeout).unwrap_or_else(|e| panic!("bt_dendrite.py {args:?}: {e}"));
    parse_dendrite_output(args, out.status_ok, &out.status, &out.stdout, &out.stderr)
}

/// Async [`py_dendrite`] (tokio process; the child is killed if the future is dropped).
pub async fn py_dendrite_async(args: &[&str]) -> Value {
    py_dendrite_async_with(args, &[], DENDRITE_TIMEOUT).await
}

/// Async [`py_dendrite_with`].
pub async fn py_dendrite_async_with(args: &[&str], envs: &[(&str, &str)], timeout: Duration) -> Value {
    let python = tokio::task::spawn_blocking(python).await.expect("python setup task");
    let mut cmd = tokio::process::Command::from(dendrite_command(&python, args, envs));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn bt_dendrite.py: {e}"));
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(out) => out.unwrap_or_else(|e| panic!("bt_dendrite.py {args:?}: {e}")),
        Err(_) => panic!("bt_dendrite.py {args:?} timed out after {timeout:?} (killed)"),
    };
    parse_dendrite_output(
        args,
        out.status.success(),
        &out.status.to_string(),
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
    )
}

fn dendrite_command(python: &Path, args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg("-B")
        .arg(harness_dir().join("bt_dendrite.py"))
        .args(args)
        .current_dir(harness_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

fn parse_dendrite_output(args: &[&str], ok: bool, status: &str, stdout: &str, stderr: &str) -> Value {
    if !ok {
        panic!("bt_dendrite.py {args:?} exited with {status}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    }
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    match serde_json::from_str::<Value>(line) {
        Ok(v @ Value::Array(_)) => v,
        _ => panic!("bt_dendrite.py {args:?} printed no JSON list\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"),
    }
}
