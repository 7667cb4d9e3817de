//! Helpers for the agent tests: a running `patrol run` (killed on drop), a reference validator
//! (`patrol validator serve`, killed on drop), a systemd-style notify socket, a plain HTTP GET and
//! a strict parser for the Prometheus text format. Everything on 127.0.0.1 or in a temp dir.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::cli::{Scratch, patrol_bin};
use crate::support::dechunk;

/// Poll `f` every 50 ms until it returns `Some`, or panic after `timeout` with `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

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
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(patrol_bin());
                c
            }
            None => Command::new(patrol_bin()),
        };
        cmd.arg("run")
            .args(args)
            .current_dir(s.dir.path())
            .env_remove("PATROL_CONFIG")
            .env_remove("GITTENSOR_MINER_PAT")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            .env("HOME", s.dir.path())
            .env("XDG_CONFIG_HOME", s.path("xdg-config"))
            .env("XDG_STATE_HOME", s.path("xdg-state"))
            .env("RUST_LOG", "patrol=debug,info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn patrol run");
        Agent { child, log, secrets: secrets.iter().map(|s| s.to_string()).collect(), port }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Send a signal (libc::SIGTERM, SIGHUP, …).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }

    /// Everything it logged so far; panics if a secret leaked into it.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        for s in &self.secrets {
            assert!(!text.contains(s.as_str()), "the PAT leaked into the agent's output:\n{text}");
        }
        text
    }

    /// Wait until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting for {needle:?} in the agent log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait for the process to exit, at most `timeout` (then kill it and panic).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                let _ = self.log();
                return st;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("patrol run did not exit within {timeout:?}\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET to 127.0.0.1:`port` (`Connection: close`).
pub fn http_get(port: u16, path: &str, accept: Option<&str>) -> std::io::Result<(u16, String)> {
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
    Ok((status, if chunked { dechunk(body) } else { body.to_string() }))
}

/// The `Content-Type` of `GET path` (for the OpenMetrics negotiation).
pub fn content_type(port: u16, path: &str, accept: Option<&str>) -> String {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{accept}\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw.lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

/// One sample of the text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The value of `name{labels ⊆ sample labels}` (the first match).
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
}

fn valid_metric_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

fn valid_label_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_') && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// A strict parser of the classic Prometheus text format (0.0.4): `# HELP`/`# TYPE` lines with
/// valid names (one TYPE per family, before its samples), samples whose family was declared, valid
/// label names, quoted and escaped label values, float values, no duplicate series, a final newline.
pub fn parse_prometheus(text: &str) -> Result<Vec<Sample>, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the text does not end with a newline".into());
    }
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples: Vec<Sample> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let at = |m: String| format!("line {}: {m}: {line:?}", i + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix("HELP ") {
                let name = r.split(' ').next().unwrap_or("");
                if !valid_metric_name(name) {
                    return Err(at("bad metric name in HELP".into()));
                }
            } else if let Some(r) = rest.strip_prefix("TYPE ") {
                let mut it = r.split(' ');
                let (name, kind) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
                if !valid_metric_name(name) || it.next().is_some() {
                    return Err(at("bad TYPE line".into()));
                }
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(at(format!("unknown type {kind:?}")));
                }
                if types.insert(name.to_string(), kind.to_string()).is_some() {
                    return Err(at("second TYPE for the family".into()));
                }
                if samples.iter().any(|s| s.name == name) {
                    return Err(at("TYPE after the family's samples".into()));
                }
            }
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(p) => (&line[..p], &line[p..]),
            None => return Err(at("no value".into())),
        };
        if !valid_metric_name(name) {
            return Err(at("bad metric name".into()));
        }
        let mut labels = BTreeMap::new();
        let mut rest = rest;
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let end = loop {
                // label name
                let start = chars.peek().map(|(i, _)| *i).ok_or_else(|| at("unterminated labels".into()))?;
                if r[start..].starts_with('}') {
                    break start + 1;
                }
                let eq = r[start..].find('=').ok_or_else(|| at("label without '='".into()))? + start;
                let lname = &r[start..eq];
                if !valid_label_name(lname) {
                    return Err(at(format!("bad label name {lname:?}")));
                }
                while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                    chars.next();
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(at("label value not quoted".into()));
                }
                let mut val = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => val.push('\n'),
                            Some((_, '\\')) => val.push('\\'),
                            Some((_, '"')) => val.push('"'),
                            _ => return Err(at("bad escape in a label value".into())),
                        },
                        Some((_, '"')) => break,
                        Some((_, c)) => val.push(c),
                        None => return Err(at("unterminated label value".into())),
                    }
                }
                if labels.insert(lname.to_string(), val).is_some() {
                    return Err(at(format!("label {lname} twice")));
                }
                match chars.next() {
                    Some((_, ',')) => continue,
                    Some((i, '}')) => break i + 1,
                    _ => return Err(at("expected ',' or '}' after a label".into())),
                }
            };
            rest = &r[end..];
        }
        let mut fields = rest.split_whitespace();
        let v = fields.next().ok_or_else(|| at("no value".into()))?;
        let value: f64 = match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| at(format!("bad value {v:?}")))?,
        };
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|_| at("bad timestamp".into()))?;
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        let family = types
            .keys()
            .find(|f| {
                name == f.as_str()
                    || ["_bucket", "_sum", "_count"].iter().any(|suf| name.strip_suffix(suf) == Some(f.as_str()))
            })
            .ok_or_else(|| at("sample of an undeclared family".into()))?;
        if types[family] == "counter" && !name.ends_with("_total") {
            return Err(at("a counter sample must end in _total".into()));
        }
        if !seen.insert((name.to_string(), labels.clone())) {
            return Err(at("duplicate series".into()));
        }
        samples.push(Sample { name: name.to_string(), labels, value });
    }
    Ok(samples)
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
    child: Child,
    pub port: u16,
    pub hotkey: String,
    store: PathBuf,
    _dir: tempfile::TempDir,
}

impl RefValidator {
    /// Serve with `seed` (0x + 64 hex) as the validator's key, `miners` (uid, hotkey) registered,
    /// checking PATs against the GitHub at `github`.
    pub fn start(seed: &str, miners: &[(u16, &str)], github: SocketAddr) -> RefValidator {
        let dir = tempfile::Builder::new().prefix("patrol-refval-").tempdir().unwrap();
        let store = dir.path().join("miner_pats.json");
        let mut cmd = Command::new(patrol_bin());
        cmd.args(["validator", "serve", "--hotkey-seed", seed, "--listen", "127.0.0.1:0"])
            .arg("--store")
            .arg(&store)
            .args(["--github-api-url", &format!("http://{github}")])
            .args(["--identity-attempts", "1"])
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .env_remove("PATROL_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(File::create(dir.path().join("stderr.log")).unwrap()));
        for (uid, hk) in miners {
            cmd.args(["--miner", &format!("{uid}:{hk}:100")]);
        }
        let mut child = cmd.spawn().expect("spawn patrol validator serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut v = RefValidator { child, port: 0, hotkey: String::new(), store, _dir: dir };
        let ready: Value = loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) => {
                    if let Ok(j) = serde_json::from_str::<Value>(&line)
                        && j["ready"] == true
                    {
                        break j;
                    }
                }
                Err(_) => panic!("patrol validator serve printed no ready line\n{}", v.stderr()),
            }
        };
        let listen: SocketAddr = ready["listen"].as_str().and_then(|s| s.parse().ok()).expect("ready.listen");
        v.port = listen.port();
        v.hotkey = ready["hotkey"].as_str().unwrap_or_default().to_string();
        v
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
        std::fs::read_to_string(self._dir.path().join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for RefValidator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
