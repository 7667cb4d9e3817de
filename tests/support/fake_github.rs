//! `patrol dev fake-github` as a process (the fake GitHub of `patrol::lab::fake_github`, serving other
//! patrol processes), driven over its `/_fake/...` control API with a tiny blocking HTTP/1.1 client,
//! so a test that blocks on `patrol` runs needs no async runtime to inject or clear faults. The
//! process is killed and reaped on drop; everything is on 127.0.0.1; every request is bounded.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::dechunk;
use super::serve::PatrolProcess;

/// A running `patrol dev fake-github`.
pub struct FakeGithubProcess {
    pub proc: PatrolProcess,
    pub addr: SocketAddr,
    /// Its config and log, when it made the directory itself.
    _dir: Option<tempfile::TempDir>,
}

impl FakeGithubProcess {
    /// Start it knowing `accounts` (token, GitHub id, login), its files in a temp dir of its own.
    pub fn new(accounts: &[(&str, u64, &str)]) -> FakeGithubProcess {
        let dir = tempfile::Builder::new().prefix("patrol-fake-github-").tempdir().expect("temp dir");
        let started = FakeGithubProcess::start(dir.path(), accounts);
        FakeGithubProcess { _dir: Some(dir), ..started }
    }

    /// Start it knowing `accounts` (token, GitHub id, login). Its config file (it holds the tokens,
    /// mode 0600) and stderr log go into `dir`.
    pub fn start(dir: &Path, accounts: &[(&str, u64, &str)]) -> FakeGithubProcess {
        use std::os::unix::fs::PermissionsExt;
        let accounts: Vec<Value> =
            accounts.iter().map(|(token, id, login)| json!({"token": token, "id": id, "login": login})).collect();
        let cfg = dir.join("fake-github.json");
        std::fs::write(&cfg, json!({ "accounts": accounts }).to_string()).expect("write the fake GitHub config");
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).expect("chmod the fake GitHub config");
        let cfg = cfg.to_string_lossy().into_owned();
        let proc = PatrolProcess::spawn(
            &["dev", "fake-github", "--listen", "127.0.0.1:0", "--config", &cfg],
            &[("RUST_LOG", "patrol=debug")],
            &dir.join("fake-github.log"),
        );
        let addr = proc.listen();
        FakeGithubProcess { proc, addr, _dir: None }
    }

    /// `http://127.0.0.1:PORT`: the API root for `[github] api_url` and `--github-api-url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Append a fault rule (`POST /_fake/faults`), e.g. `{"fault": {"kind": "status", "status": 503}}`.
    pub fn add_fault(&self, rule: Value) {
        let (status, body) = request(self.addr, "POST", "/_fake/faults", Some(&rule));
        assert_eq!(status, 200, "POST /_fake/faults {rule}: {body}");
    }

    /// Remove every fault rule (`DELETE /_fake/behaviour`): GitHub answers normally again.
    pub fn clear_faults(&self) {
        let (status, body) = request(self.addr, "DELETE", "/_fake/behaviour", None);
        assert_eq!(status, 200, "DELETE /_fake/behaviour: {body}");
    }

    /// The counters (`GET /_fake/stats`): `{"user": {"total", "by_token"}, "graphql": …, "requests": […]}`.
    pub fn stats(&self) -> Value {
        let (status, body) = request(self.addr, "GET", "/_fake/stats", None);
        assert_eq!(status, 200, "GET /_fake/stats: {body}");
        body
    }

    /// Requests received on `endpoint` (`"user"` or `"graphql"`) since the last reset.
    pub fn calls(&self, endpoint: &str) -> u64 {
        self.stats()[endpoint]["total"].as_u64().unwrap_or(0)
    }

    /// Zero the counters (`DELETE /_fake/stats`).
    pub fn reset_stats(&self) {
        let (status, body) = request(self.addr, "DELETE", "/_fake/stats", None);
        assert_eq!(status, 204, "DELETE /_fake/stats: {body}");
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        self.proc.stderr()
    }
}

/// One HTTP/1.1 request with `Connection: close` to `addr`, bounded by 10 s; the status and the body
/// parsed as JSON (`Value::Null` when empty, a string when it is not JSON).
pub fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let bound = Duration::from_secs(10);
    let mut s = TcpStream::connect_timeout(&addr, bound).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(bound)).expect("read timeout");
    s.set_write_timeout(Some(bound)).expect("write timeout");
    let body = body.map(Value::to_string).unwrap_or_default();
    let content = if body.is_empty() { String::new() } else { "Content-Type: application/json\r\n".to_string() };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{content}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let text =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(rest) } else { rest.into() };
    let value =
        if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    (status, value)
}
