//! The reference validator's axon against real processes (issue 15 items 4, 6, 12, 13; issue 14):
//! `patrol validator serve` (or in process where its hardenings must be off) and the real
//! Python `bt.Axon` of `bittensor==10.3.1`.
//!
//! - connection limits: a slowloris client is cut off by the header-read timeout; silent and idle
//!   keep-alive connections are closed; at the connection cap a fresh signed check is still
//!   answered, and when every connection is busy a new one is refused at once; SIGTERM with slow
//!   clients and a request in flight exits within the shutdown grace;
//! - parity with `bt.Axon`: the same raw requests (odd nonces, every HTTP method, hotkeys that are
//!   not SS58, odd timeouts and versions) get the same status, message and `bt_header_axon_uuid`;
//! - memory: RSS returns near its baseline after bursts of connections; 100 concurrent checks on a
//!   ~100 MB store are answered correctly with a bounded peak;
//! - the liveness probe (signed `GET /Synapse`, no body): 500 with the axon's uuid and no handler
//!   run, at the Python axon and at ours; a new process, a new uuid.
//!
//! Everything binds 127.0.0.1; every process is killed on drop; every wait is bounded. Time is only
//! ever an upper bound with generous slack.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use patrol::lab::validator::{AxonConfig, RegisteredMiner};
use patrol::wallet::Hotkey;
use patrol::wire::dendrite::PreparedRequest;
use patrol::wire::{CallOutcome, CheckFields, EMPTY_BODY_HASH, SynapseKind, Target};
use serde_json::{Value, json};

use crate::support::cli::{Scratch, dead_port};
use crate::support::fake_github::FakeGithubProcess;
use crate::support::python::{DENDRITE_HOTKEY, DENDRITE_SEED, PyAxon, VALIDATOR_HOTKEY};
use crate::support::serve::{self, PatrolProcess};
use crate::validator::{VALIDATOR_SEED_HEX, dendrite, github_options, miner_key, start_in_process};

/// Slowloris, idle and silent connections, the connection cap, busy connections, SIGTERM.
mod limits;
/// RSS after bursts of connections; a 100 MB store under 100 concurrent checks.
mod memory;
/// The same raw requests as the Python `bt.Axon`: the same answers.
mod parity;
/// The liveness probe at the Python axon and ours.
mod probe;

// --------------------------------------------------------------------------------------------
// helpers

/// A GitHub API root where nothing listens (for validators that must not need one).
fn nowhere() -> String {
    format!("http://127.0.0.1:{}", dead_port())
}

/// `patrol validator serve` on 127.0.0.1:0 with `miners` registered as uids 1, 2, …, its store in
/// `s`, asking the GitHub at `github`, with `extra` flags, started through `wrapper` (a command
/// prefix that execs patrol, or nothing).
fn serve(s: &Scratch, name: &str, miners: &[&Hotkey], github: &str, extra: &[&str], wrapper: &[&str]) -> PatrolProcess {
    let specs: Vec<String> = miners.iter().enumerate().map(|(i, k)| format!("{}:{}:1.0", i + 1, k.ss58())).collect();
    let common = ["--github-timeout", "30s", "--identity-attempts", "1"];
    let store = s.path(&format!("{name}-store.json"));
    let args = serve::validator_args(
        VALIDATOR_SEED_HEX,
        "127.0.0.1:0",
        &store,
        github,
        &specs,
        &[&common[..], extra].concat(),
    );
    PatrolProcess::spawn_wrapped(
        wrapper,
        &crate::support::process::strs(&args),
        &[("RUST_LOG", "patrol=debug")],
        &s.path(&format!("{name}.log")),
    )
}

fn target_of(p: &PatrolProcess) -> Target {
    let listen = p.listen();
    Target { ip: listen.ip(), port: listen.port(), hotkey: p.ready["hotkey"].as_str().expect("ready.hotkey").into() }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_write_timeout(Some(Duration::from_secs(10))).expect("write timeout");
    s
}

/// The request line and headers of `req` (a dendrite-built request) as raw HTTP/1.1.
fn raw(req: &PreparedRequest, host: SocketAddr, keep_alive: bool) -> Vec<u8> {
    let path = req.url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap_or_else(|| "/".into());
    let mut out = format!("{} {path} HTTP/1.1\r\nhost: {host}\r\n", req.method);
    out += &format!("connection: {}\r\n", if keep_alive { "keep-alive" } else { "close" });
    out += &format!("content-type: application/json\r\ncontent-length: {}\r\n", req.body.len());
    for (k, v) in &req.headers {
        out += &format!("{k}: {v}\r\n");
    }
    out += "\r\n";
    out += &req.body;
    out.into_bytes()
}

/// One HTTP response read off `s` (its head, then `content-length` bytes of body).
fn read_response(s: &mut TcpStream) -> (u16, Vec<(String, String)>, Vec<u8>) {
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            other => panic!("connection ended inside a response head ({other:?}): {}", String::from_utf8_lossy(&buf)),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("response body");
    (status, headers, body)
}

/// Waits until the server closes `s`: EOF, a reset, or (with `drip`) a write that fails while one
/// byte a second is sent. `Err` if it is still open after `bound`.
fn wait_closed(s: &mut TcpStream, drip: bool, bound: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200))).expect("read timeout");
    let mut dripped = started;
    let mut buf = [0u8; 4096];
    loop {
        if started.elapsed() > bound {
            return Err(format!("still open after {bound:?}"));
        }
        if drip && dripped.elapsed() >= Duration::from_secs(1) {
            if s.write_all(b"a").is_err() {
                return Ok(started.elapsed());
            }
            dripped = Instant::now();
        }
        match s.read(&mut buf) {
            Ok(0) => return Ok(started.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Ok(started.elapsed()),
        }
    }
}

/// `VmRSS` and `VmHWM` of `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
}

fn no_pat() -> CallOutcome<CheckFields> {
    CallOutcome::Answered(CheckFields {
        has_pat: Some(false),
        pat_valid: Some(false),
        rejection_reason: Some("No PAT stored for this miner".into()),
    })
}

/// The dendrite's key of the Python harness ([`DENDRITE_SEED`]).
fn dendrite_key() -> Hotkey {
    let key = Hotkey::from_seed_hex(DENDRITE_SEED).unwrap();
    assert_eq!(key.ss58(), DENDRITE_HOTKEY);
    key
}

/// A half-sent request: the request line and a header, never finished.
const HALF: &[u8] = b"POST /PatCheckSynapse HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ";
