//! `patrol run` as a process (killed on drop), a reference validator (`patrol validator serve`,
//! killed on drop), a systemd-style notify socket and a plain HTTP GET. Everything on 127.0.0.1 or
//! in a temp dir.

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::support::cli::Scratch;
pub use crate::support::prometheus::{Sample, parse_prometheus, value};
use crate::support::python::{DENDRITE_HOTKEY, VALIDATOR_SEED};
use crate::support::serve::{self, PatrolProcess};
use crate::support::{dechunk, process, wait_for, wait_until};

/// A `patrol run` process. Its stderr goes to a file in the scratch dir; it is killed on drop.
pub struct Agent {
    child: Child,
    log: PathBuf,
    secrets: Vec<String>,
    pub port: Option<u16>,
}

impl Agent {
    /// Start `patrol run ARGS` in `s`'s directory with `env`; `port` is the `[agent] listen` port
    /// the config uses (for [`Agent::get`]). `secrets` must never appear in its output.
    pub fn start(s: &Scratch, args: &[&str], env: &[(&str, &str)], port: Option<u16>, secrets: &[&str]) -> Agent {
        Agent::start_wrapped(&[], s, args, env, port, secrets)
    }

    /// [`Agent::start`] through a command prefix that execs patrol (e.g. `sh -c 'ulimit -n 64 &&
    /// exec "$0" "$@"'`, so the pid and the signals are patrol's); empty: patrol itself.
    pub fn start_wrapped(
        wrapper: &[&str],
        s: &Scratch,
        args: &[&str],
        env: &[(&str, &str)],
        port: Option<u16>,
        secrets: &[&str],
    ) -> Agent {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log = s.path(&format!("agent-{n}.log"));
        let err = File::create(&log).expect("agent log file");
        let out = err.try_clone().expect("agent log file");
        let mut cmd = s.command(wrapper, &[&["run"], args].concat(), env);
        cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err));
        let child = cmd.spawn().expect("spawn patrol run");
        Agent { child, log, secrets: secrets.iter().map(|s| s.to_string()).collect(), port }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Send a signal (libc::SIGTERM, SIGHUP, …).
    pub fn signal(&self, sig: i32) {
        process::signal(self.child.id(), sig);
    }

    /// Everything it logged so far; panics if a secret leaked into it.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        for s in &self.secrets {
            assert!(!text.contains(s.as_str()), "the PAT leaked into the agent's output:\n{text}");
        }
        text
    }

    /// How many times the log says `needle` (a line counted once per occurrence).
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// Wait until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        self.wait_log_count(needle, 1, timeout);
    }

    /// Wait until the log says `needle` at least `n` times.
    pub fn wait_log_count(&self, needle: &str, n: usize, timeout: Duration) {
        let found = wait_until(timeout, || self.log_count(needle) >= n);
        assert!(found, "timed out after {timeout:?} waiting for {n} × {needle:?} in the agent log:\n{}", self.log());
    }

    /// Wait for the process to exit, at most `timeout` (then kill it and panic).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match process::wait_exit(&mut self.child, timeout) {
            Some(st) => {
                let _ = self.log();
                st
            }
            None => {
                process::kill(&mut self.child);
                panic!("patrol run did not exit within {timeout:?}\n{}", self.log());
            }
        }
    }

    /// `GET path` on its endpoint.
    pub fn get(&self, path: &str) -> (u16, String) {
        self.get_with(path, None)
    }

    /// `GET path` with an `Accept` header.
    pub fn get_with(&self, path: &str, accept: Option<&str>) -> (u16, String) {
        let port = self.port.expect("the agent was started without a listen port");
        http_get(port, path, accept).unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.log()))
    }

    /// `/metrics` (classic text), strictly parsed.
    pub fn metrics(&self) -> Vec<Sample> {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "{body}");
        parse_prometheus(&body).unwrap_or_else(|e| panic!("/metrics is not valid Prometheus text: {e}\n{body}"))
    }

    /// Wait until `/metrics` has a sample `name{labels}` whose value satisfies `pred`.
    pub fn wait_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        timeout: Duration,
        pred: impl Fn(f64) -> bool,
    ) -> f64 {
        wait_for(timeout, &format!("metric {name}{labels:?}"), || {
            let port = self.port?;
            let (_, body) = http_get(port, "/metrics", None).ok()?;
            let samples = parse_prometheus(&body).ok()?;
            value(&samples, name, labels).filter(|v| pred(*v))
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        process::kill(&mut self.child);
    }
}

/// A plain HTTP/1.1 GET to 127.0.0.1:`port` (`Connection: close`): status, head, body (dechunked).
fn get_raw(port: u16, path: &str, accept: Option<&str>) -> std::io::Result<(u16, String, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{accept}\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    Ok((status, head.to_string(), if chunked { dechunk(body) } else { body.to_string() }))
}

/// A plain HTTP/1.1 GET to 127.0.0.1:`port` (`Connection: close`).
pub fn http_get(port: u16, path: &str, accept: Option<&str>) -> std::io::Result<(u16, String)> {
    get_raw(port, path, accept).map(|(status, _, body)| (status, body))
}

/// The `Content-Type` of `GET path` (for the OpenMetrics negotiation).
pub fn content_type(port: u16, path: &str, accept: Option<&str>) -> String {
    let (_, head, _) = get_raw(port, path, accept).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    head.lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

/// A datagram socket standing in for systemd's `$NOTIFY_SOCKET`; collects every message.
pub struct NotifySocket {
    pub path: PathBuf,
    messages: Arc<Mutex<Vec<String>>>,
}

impl NotifySocket {
    /// Bind `<dir>/notify.sock` and start collecting.
    pub fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let m = messages.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            // Ends when the test drops the last reference to the message list.
            while Arc::strong_count(&m) > 1 {
                if let Ok(n) = sock.recv(&mut buf) {
                    m.lock().unwrap().push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        });
        NotifySocket { path, messages }
    }

    /// Every datagram so far, in arrival order.
    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    /// Index of the first datagram with a line starting with `prefix`, waiting up to `timeout`.
    pub fn wait(&self, prefix: &str, timeout: Duration) -> usize {
        wait_for(timeout, &format!("{prefix} on the notify socket"), || self.position(prefix))
    }

    /// Index of the first datagram with a line starting with `prefix`.
    pub fn position(&self, prefix: &str) -> Option<usize> {
        self.messages().iter().position(|m| m.lines().any(|l| l.starts_with(prefix)))
    }

    /// The value of the last `STATUS=` line.
    pub fn last_status(&self) -> Option<String> {
        self.messages().iter().rev().find_map(|m| m.lines().find_map(|l| l.strip_prefix("STATUS=").map(str::to_owned)))
    }
}

/// `patrol validator serve`: the embedded reference validator on 127.0.0.1, killed on drop.
pub struct RefValidator {
    process: PatrolProcess,
    pub port: u16,
    pub hotkey: String,
    store: PathBuf,
    dir: tempfile::TempDir,
}

impl RefValidator {
    /// Serve with `seed` (0x + 64 hex) as the validator's key, `miners` (uid, hotkey) registered,
    /// checking PATs against the GitHub at `github`.
    pub fn start(seed: &str, miners: &[(u16, &str)], github: SocketAddr) -> RefValidator {
        let dir = tempfile::Builder::new().prefix("patrol-refval-").tempdir().unwrap();
        let store = dir.path().join("miner_pats.json");
        let specs: Vec<String> = miners.iter().map(|(uid, hk)| format!("{uid}:{hk}:100")).collect();
        let github = format!("http://{github}");
        let args = serve::validator_args(seed, "127.0.0.1:0", &store, &github, &specs, &["--identity-attempts", "1"]);
        let home = dir.path().to_string_lossy().into_owned();
        let process =
            PatrolProcess::spawn(&super::process::strs(&args), &[("HOME", &home)], &dir.path().join("stderr.log"));
        let (port, hotkey) =
            (process.listen().port(), process.ready["hotkey"].as_str().unwrap_or_default().to_string());
        RefValidator { process, port, hotkey, store, dir }
    }

    /// The test miner ([`DENDRITE_HOTKEY`], uid 0) registered at a validator with key
    /// [`VALIDATOR_SEED`], checking PATs against the GitHub at `github`.
    pub fn for_miner(github: SocketAddr) -> RefValidator {
        RefValidator::start(VALIDATOR_SEED, &[(0, DENDRITE_HOTKEY)], github)
    }

    /// Its `[[validators.static]]` entry as `uid` with `stake`.
    pub fn entry(&self, uid: u16, stake: f64) -> String {
        crate::support::cli::static_validator(uid, &self.hotkey, "127.0.0.1", self.port, stake)
    }

    /// The PAT store: `[{uid, hotkey, pat, github_id, …}]`.
    pub fn store(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.store)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// The PAT stored for `hotkey`, if any.
    pub fn pat_of(&self, hotkey: &str) -> Option<String> {
        self.store().iter().find(|e| e["hotkey"] == hotkey).and_then(|e| e["pat"].as_str().map(str::to_owned))
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }
}

/// Replace `path` the way editors and rotation scripts do: write a temp file, rename it over.
pub fn replace_file(path: &Path, body: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("tmp-new");
    std::fs::write(&tmp, body).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A free 127.0.0.1 port (bound, then released).
pub fn free_port() -> u16 {
    crate::support::cli::dead_port()
}
