//! Issue 15 (items 4, 6, 12, 13) and issue 14 against real processes: the reference validator's
//! axon (`patrol validator serve`, or in-process where its hardenings must be off) and the real
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
use crate::support::serve::PatrolProcess;
use crate::validator::{VALIDATOR_SEED_HEX, dendrite, github_options, miner_key, start_in_process};

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
    let store = s.path(&format!("{name}-store.json"));
    let store = store.to_str().expect("utf-8 temp path").to_string();
    let specs: Vec<String> = miners.iter().enumerate().map(|(i, k)| format!("{}:{}:1.0", i + 1, k.ss58())).collect();
    let mut args: Vec<&str> = vec![
        "validator",
        "serve",
        "--hotkey-seed",
        VALIDATOR_SEED_HEX,
        "--listen",
        "127.0.0.1:0",
        "--store",
        &store,
        "--github-api-url",
        github,
        "--github-timeout",
        "30s",
        "--identity-attempts",
        "1",
    ];
    for spec in &specs {
        args.extend(["--miner", spec.as_str()]);
    }
    args.extend_from_slice(extra);
    PatrolProcess::spawn_wrapped(wrapper, &args, &[("RUST_LOG", "patrol=debug")], &s.path(&format!("{name}.log")))
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

/// A half-sent request: the request line and a header, never finished.
const HALF: &[u8] = b"POST /PatCheckSynapse HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ";

// --------------------------------------------------------------------------------------------
// A. connection limits (issue 15 item 4)

#[test]
fn a_slowloris_client_is_cut_off_by_the_header_read_timeout() {
    let s = Scratch::new();
    let key = miner_key(1);
    let p = serve(&s, "v", &[&key], &nowhere(), &["--header-read-timeout", "2s", "--idle-timeout", "1h"], &[]);
    let mut c = connect(p.listen());
    c.write_all(HALF).unwrap();
    // one more header byte a second: never idle, never complete
    let closed = wait_closed(&mut c, true, Duration::from_secs(30));
    assert!(closed.is_ok(), "a slowloris connection outlived the 2 s header-read timeout: {closed:?}\n{}", p.stderr());
    // a body that stops half-way: 408 once the same time has passed again, and the connection closes
    let d = dendrite(key.clone());
    let req = d.prepare(SynapseKind::Check, &target_of(&p), Duration::from_secs(10), None);
    let bytes = raw(&req, p.listen(), true);
    let mut c = connect(p.listen());
    c.write_all(&bytes[..bytes.len() - 10]).unwrap();
    let (status, _, body) = read_response(&mut c);
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&body));
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["message"], "Request body not received within 2.0s");
    assert!(wait_closed(&mut c, false, Duration::from_secs(30)).is_ok());
    // and the validator still answers
    let rt = runtime();
    assert_eq!(rt.block_on(d.check(&target_of(&p), Duration::from_secs(10))).outcome, no_pat());
}

#[test]
fn silent_and_idle_keep_alive_connections_are_closed() {
    let s = Scratch::new();
    let key = miner_key(1);
    let bound = Duration::from_secs(30);
    // a connection that never sends a byte: the header-read timeout (the idle one is far away)
    let p = serve(&s, "v1", &[&key], &nowhere(), &["--header-read-timeout", "2s", "--idle-timeout", "1h"], &[]);
    let mut silent = connect(p.listen());
    let closed = wait_closed(&mut silent, false, bound);
    assert!(closed.is_ok(), "a silent connection: {closed:?}\n{}", p.stderr());
    // a keep-alive connection after one answered request: the idle timeout (the header-read
    // timeout is far beyond the bound, so only the idle timeout can close it)
    let p = serve(&s, "v2", &[&key], &nowhere(), &["--idle-timeout", "2s", "--header-read-timeout", "1h"], &[]);
    let d = dendrite(key);
    let req = d.prepare(SynapseKind::Check, &target_of(&p), Duration::from_secs(10), None);
    let mut kept = connect(p.listen());
    kept.write_all(&raw(&req, p.listen(), true)).unwrap();
    let (status, headers, _) = read_response(&mut kept);
    assert_eq!(status, 200, "{headers:?}");
    assert!(!headers.iter().any(|(k, v)| k == "connection" && v == "close"), "kept alive: {headers:?}");
    let closed = wait_closed(&mut kept, false, bound);
    assert!(closed.is_ok(), "an idle keep-alive connection: {closed:?}\n{}", p.stderr());
}

/// `ulimit -n 64`: half of it, 32, is the connection cap. 100 half-sent connections would
/// otherwise take every file descriptor (the reproduction: 300 under `ulimit -n 256`).
#[test]
fn at_the_connection_cap_a_fresh_signed_check_is_still_answered() {
    let s = Scratch::new();
    let key = miner_key(1);
    let wrapper = ["sh", "-c", "ulimit -n 64 && exec \"$0\" \"$@\""];
    let p = serve(&s, "v", &[&key], &nowhere(), &["--header-read-timeout", "1h", "--idle-timeout", "1h"], &wrapper);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.stderr().contains("max_connections=32") {
        assert!(Instant::now() < deadline, "the cap follows the open-file limit\n{}", p.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut slow: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut c = connect(p.listen());
            c.write_all(HALF).unwrap();
            c
        })
        .collect();
    // beyond the cap each displaces the oldest half-sent one: closed, not left hanging
    let mut closed = 0;
    for c in slow.iter_mut() {
        if wait_closed(c, false, Duration::from_millis(300)).is_ok() {
            closed += 1;
        }
    }
    assert!(closed >= 100 - 32, "only {closed} of the 68 connections beyond the cap were closed\n{}", p.stderr());
    // a real dendrite displaces a half-sent one and gets its answer
    let rt = runtime();
    let reply = rt.block_on(dendrite(key).check(&target_of(&p), Duration::from_secs(15)));
    assert_eq!(reply.outcome, no_pat(), "{}", p.stderr());
    drop(slow);
}

/// Issue 20 item 10: one client opening connections and sending partial heads as fast as it can —
/// far faster than the cap's worth a second, which kept the cap full of "not yet quiet for a
/// second" connections under the old rule (6 of 8 checks got 503) — cannot keep a legitimate check
/// out: at the default cap, 8 of 8 are answered during the flood.
#[test]
fn during_a_flood_of_half_sent_connections_every_legitimate_check_is_answered() {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let s = Scratch::new();
    let key = miner_key(1);
    let p = serve(&s, "v", &[&key], &nowhere(), &["--header-read-timeout", "1h", "--idle-timeout", "1h"], &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.stderr().contains("max_connections=1024") {
        assert!(
            Instant::now() < deadline,
            "the default cap is in force
{}",
            p.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (stop, opened) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let addr = p.listen();
    // two flooders, each keeping its last 800 connections open (more than the cap between them)
    let flooders: Vec<_> = (0..2)
        .map(|_| {
            let (stop, opened) = (stop.clone(), opened.clone());
            std::thread::spawn(move || {
                let mut open = VecDeque::new();
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120) {
                    let Ok(mut c) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { continue };
                    let _ = c.write_all(HALF);
                    open.push_back(c);
                    if open.len() > 2500 {
                        open.pop_front();
                    }
                    opened.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while opened.load(Ordering::Relaxed) < 3000 {
        assert!(Instant::now() < deadline, "the flood did not get going: {opened:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (t0, n0) = (Instant::now(), opened.load(Ordering::Relaxed));
    let rt = runtime();
    let d = dendrite(key);
    let mut slowest = Duration::ZERO;
    let outcomes: Vec<_> = (0..8)
        .map(|_| {
            let r = rt.block_on(d.check(&target_of(&p), Duration::from_secs(10)));
            slowest = slowest.max(r.latency);
            std::thread::sleep(Duration::from_millis(100));
            r.outcome
        })
        .collect();
    let rate = (opened.load(Ordering::Relaxed) - n0) as f64 / t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.join().unwrap();
    }
    eprintln!("flood: {rate:.0} connections/s during the checks; slowest check {slowest:?}");
    assert!(rate > 1024.0, "the flood ({rate:.0}/s) must outrun the cap's worth a second to mean anything");
    let answered = outcomes.iter().filter(|o| **o == no_pat()).count();
    assert_eq!(answered, 8, "only {answered} of 8 checks answered during the flood: {outcomes:?}");
}

/// Issue 20 item 7: `validator serve` raises its soft open-file limit to the hard one (systemd's
/// soft default is 1024 whatever the hard limit) before its connection cap is derived from it.
#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_one_before_the_cap_is_set() {
    let s = Scratch::new();
    let key = miner_key(1);
    let wrapper = ["sh", "-c", "ulimit -S -n 128 && exec \"$0\" \"$@\""];
    let p = serve(&s, "v", &[&key], &nowhere(), &[], &wrapper);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.stderr().contains("connection limits") {
        assert!(Instant::now() < deadline, "no connection limits line\n{}", p.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = p.stderr();
    assert!(log.contains("raised the soft open-file limit to the hard limit from=128"), "{log}");
    // half of 128 would be 64: the cap follows the raised limit
    assert!(!log.contains("max_connections=64"), "{log}");
}

/// When every connection has a request in flight, a new one is refused at once (503, or closed),
/// not queued behind them.
#[test]
fn with_every_connection_busy_a_new_one_is_refused_at_once() {
    let dir = tempfile::Builder::new().prefix("patrol-hardening-gh-").tempdir().unwrap();
    let tokens = ["ghp_hardeningBusyToken00000000000000001", "ghp_hardeningBusyToken00000000000000002"];
    let gh = FakeGithubProcess::start(dir.path(), &[(tokens[0], 1, "one"), (tokens[1], 2, "two")]);
    let s = Scratch::new();
    let keys = [miner_key(1), miner_key(2), miner_key(3)];
    let p = serve(&s, "v", &[&keys[0], &keys[1], &keys[2]], &gh.url(), &["--max-connections", "2"], &[]);
    let rt = runtime();
    let t = target_of(&p);
    for (k, tok) in keys.iter().zip(tokens) {
        let pat = patrol::secret::Pat::new(tok).unwrap();
        let r = rt.block_on(dendrite(k.clone()).broadcast(&t, Duration::from_secs(20), &pat));
        assert!(matches!(r.outcome, CallOutcome::Answered(ref f) if f.accepted == Some(true)), "{:?}", r.outcome);
    }
    // the broadcasts' connections are gone (or quiet long enough to be displaced)
    std::thread::sleep(Duration::from_millis(1500));
    // the two checks now wait 8 s on GitHub, each holding one of the two connections
    gh.reset_stats();
    gh.add_fault(json!({"scope": "user", "fault": {"kind": "delay", "ms": 8000}}));
    let slow: Vec<_> = keys[..2]
        .iter()
        .map(|k| {
            rt.spawn({
                let (d, t) = (dendrite(k.clone()), t.clone());
                async move { d.check(&t, Duration::from_secs(60)).await }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while gh.calls("user") < 2 {
        assert!(Instant::now() < deadline, "the two checks never reached GitHub: {}", gh.stats());
        std::thread::sleep(Duration::from_millis(50));
    }
    let third = rt.block_on(dendrite(keys[2].clone()).check(&t, Duration::from_secs(60)));
    match &third.outcome {
        CallOutcome::Rejected { status: 503, message } => {
            assert!(message.contains("Too many connections"), "{message}")
        }
        CallOutcome::NoResponse { .. } => {}
        other => panic!("the third connection was not refused: {other:?}"),
    }
    assert!(slow.iter().all(|h| !h.is_finished()), "refused while the busy ones were still in flight, not after");
    for h in slow {
        let r = rt.block_on(h).unwrap();
        assert!(matches!(r.outcome, CallOutcome::Answered(ref f) if f.pat_valid == Some(true)), "{:?}", r.outcome);
    }
}

#[test]
fn sigterm_with_slow_clients_and_a_request_in_flight_exits_within_the_grace() {
    let dir = tempfile::Builder::new().prefix("patrol-hardening-gh-").tempdir().unwrap();
    let token = "ghp_hardeningSigtermToken0000000000001";
    let gh = FakeGithubProcess::start(dir.path(), &[(token, 1, "one")]);
    let s = Scratch::new();
    let key = miner_key(1);
    let mut p = serve(
        &s,
        "v",
        &[&key],
        &gh.url(),
        &["--shutdown-grace", "3s", "--header-read-timeout", "1h", "--idle-timeout", "1h"],
        &[],
    );
    let rt = runtime();
    let t = target_of(&p);
    let pat = patrol::secret::Pat::new(token).unwrap();
    let r = rt.block_on(dendrite(key.clone()).broadcast(&t, Duration::from_secs(20), &pat));
    assert!(matches!(r.outcome, CallOutcome::Answered(ref f) if f.accepted == Some(true)), "{:?}", r.outcome);
    // five slow clients: half-sent requests
    let mut slow: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut c = connect(p.listen());
            c.write_all(HALF).unwrap();
            c
        })
        .collect();
    // and one check stuck on GitHub for a minute
    gh.add_fault(json!({"scope": "user", "fault": {"kind": "delay", "ms": 60000}}));
    let calls = gh.calls("user");
    let in_flight = rt.spawn({
        let (d, t) = (dendrite(key), t.clone());
        async move { d.check(&t, Duration::from_secs(120)).await }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while gh.calls("user") <= calls {
        assert!(Instant::now() < deadline, "the check never reached GitHub");
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = Instant::now();
    let status = p.signal_and_wait(libc::SIGTERM, Duration::from_secs(30));
    assert!(status.success(), "{status}\n{}", p.stderr());
    eprintln!("validator serve exited {:?} after SIGTERM (grace 3 s)", started.elapsed());
    // the in-flight request's connection was dropped after the grace; nobody hangs
    let r = rt.block_on(in_flight).unwrap();
    assert!(matches!(r.outcome, CallOutcome::NoResponse { .. }), "{:?}", r.outcome);
    for c in slow.iter_mut() {
        assert!(wait_closed(c, false, Duration::from_secs(5)).is_ok());
    }
    assert!(p.stderr().contains("shutdown grace over"), "{}", p.stderr());
}

// --------------------------------------------------------------------------------------------
// B. parity with the Python bt.Axon (issue 15 item 12)

/// What a parity comparison looks at in an answer.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    status: u16,
    /// `message` of an error body (an `Internal Server Error #<id>` without the id; a nonce age
    /// replaced by `<age>`), or `detail` (Starlette's 405), or `None` for a synapse (200).
    message: Option<String>,
    has_axon_uuid: bool,
    /// `allow`, sorted.
    allow: Option<String>,
    content_type: Option<String>,
    /// For a HEAD answer, its `content-length` (there is no body to compare).
    head_length: Option<String>,
    /// The nonce age in the message, compared with slack (each axon has its own clock).
    #[allow(dead_code)]
    age: Option<f64>,
}

impl Seen {
    fn same_as(&self, other: &Seen) -> bool {
        let ages = match (self.age, other.age) {
            (Some(a), Some(b)) => (a - b).abs() <= 60.0 + a.abs().max(b.abs()) * 1e-12,
            (a, b) => a == b,
        };
        Seen { age: None, ..self.clone() } == Seen { age: None, ..other.clone() } && ages
    }
}

fn normalise(message: &str) -> (String, Option<f64>) {
    if let Some(i) = message.find("Internal Server Error #") {
        return (message[..i + "Internal Server Error #".len()].to_string(), None);
    }
    if let (Some(a), Some(b)) = (message.find("request was "), message.rfind(" seconds old")) {
        let start = a + "request was ".len();
        let age = message[start..b].parse::<f64>().ok();
        return (format!("{}<age>{}", &message[..start], &message[b..]), age);
    }
    (message.to_string(), None)
}

/// Send `request` on a fresh connection (`Connection: close`) and read the answer.
fn ask(addr: SocketAddr, request: &[u8], head: bool) -> Seen {
    let mut c = connect(addr);
    c.write_all(request).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut bytes = Vec::new();
    let _ = c.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head_text, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head_text.split("\r\n");
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let raw_message = json.get("message").or_else(|| json.get("detail")).and_then(Value::as_str);
    let (message, age) = match raw_message {
        Some(m) => {
            let (m, age) = normalise(m);
            (Some(m), age)
        }
        None => (None, None),
    };
    Seen {
        status,
        message,
        has_axon_uuid: headers.contains_key("bt_header_axon_uuid"),
        // a Python set: its order changes with the process's hash seed
        allow: headers.get("allow").map(|a| {
            let mut methods: Vec<&str> = a.split(',').map(str::trim).collect();
            methods.sort_unstable();
            methods.join(", ")
        }),
        content_type: headers.get("content-type").cloned(),
        head_length: if head { headers.get("content-length").cloned() } else { None },
        age,
    }
}

/// A request as a dendrite would send it, with every part replaceable.
struct Req<'a> {
    method: &'a str,
    path: &'a str,
    hotkey: Option<&'a str>,
    /// The nonce header as sent, and the number it stands for (what is signed).
    nonce: Option<(String, String)>,
    timeout: Option<&'a str>,
    version: &'a str,
    sign: bool,
}

impl Req<'_> {
    fn check() -> Req<'static> {
        Req {
            method: "POST",
            path: "/PatCheckSynapse",
            hotkey: Some(DENDRITE_HOTKEY),
            nonce: Some(now_nonce()),
            timeout: Some("12.0"),
            version: "10003001",
            sign: true,
        }
    }

    fn bytes(&self, key: &Hotkey, uuid: &str, host: &str) -> Vec<u8> {
        let name = self.path.trim_start_matches('/');
        let body = json!({"name": name, "timeout": 12.0, "dendrite": {"hotkey": DENDRITE_HOTKEY}}).to_string();
        let mut h = format!(
            "{} {} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            self.method,
            self.path,
            body.len()
        );
        h += &format!("name: {name}\r\n");
        if let Some(t) = self.timeout {
            h += &format!("timeout: {t}\r\n");
        }
        h += &format!(
            "bt_header_axon_ip: 127.0.0.1\r\nbt_header_axon_port: 8091\r\nbt_header_axon_hotkey: {VALIDATOR_HOTKEY}\r\n"
        );
        h += &format!("bt_header_dendrite_ip: 127.0.0.1\r\nbt_header_dendrite_version: {}\r\n", self.version);
        if let Some((sent, _)) = &self.nonce {
            h += &format!("bt_header_dendrite_nonce: {sent}\r\n");
        }
        h += &format!("bt_header_dendrite_uuid: {uuid}\r\n");
        if let Some(hk) = self.hotkey {
            h += &format!("bt_header_dendrite_hotkey: {hk}\r\n");
        }
        if self.sign {
            let n = self.nonce.as_ref().map_or("None", |(_, v)| v.as_str());
            let hk = self.hotkey.unwrap_or("None");
            let msg = format!("{n}.{hk}.{VALIDATOR_HOTKEY}.{uuid}.{EMPTY_BODY_HASH}");
            h += &format!("bt_header_dendrite_signature: {}\r\n", key.sign_hex(msg.as_bytes()));
        }
        h += &format!("header_size: 0\r\ntotal_size: 0\r\ncomputed_body_hash: {EMPTY_BODY_HASH}\r\n\r\n");
        h += &body;
        h.into_bytes()
    }
}

fn now_nonce() -> (String, String) {
    let n = patrol::wire::now_ns().to_string();
    (n.clone(), n)
}

fn nonce(sent: &str, value: &str) -> Option<(String, String)> {
    Some((sent.to_string(), value.to_string()))
}

fn dendrite_key() -> Hotkey {
    let seed: [u8; 32] = hex::decode(DENDRITE_SEED.trim_start_matches("0x")).unwrap().try_into().unwrap();
    let key = Hotkey::from_seed(&seed);
    assert_eq!(key.ss58(), DENDRITE_HOTKEY);
    key
}

/// The cases, each a fresh dendrite uuid: (label, request). Unsigned ones are compared with our
/// hardenings off only.
fn parity_cases() -> Vec<(String, Req<'static>)> {
    let now = patrol::wire::now_ns();
    let mut cases: Vec<(String, Req<'static>)> = Vec::new();
    let big = |s: String| Some((s.clone(), s));
    for sign in [true, false] {
        let tag = if sign { "signed" } else { "unsigned" };
        for (label, n) in [
            ("nonce u64::MAX", nonce("18446744073709551615", "18446744073709551615")),
            ("nonce -5", nonce("-5", "-5")),
            ("nonce 2**70", nonce("1180591620717411303424", "1180591620717411303424")),
            ("nonce 10**40", big(format!("1{}", "0".repeat(40)))),
            ("nonce -10**30", big(format!("-1{}", "0".repeat(30)))),
            ("nonce -10**400 (age overflows a float)", big(format!("-1{}", "0".repeat(400)))),
            ("nonce of 4301 digits", big("9".repeat(4301))),
            ("nonce ' +00<now> '", nonce(&format!(" +00{now} "), &now.to_string())),
            ("nonce 1_<now> (underscore)", nonce(&format!("1_{now}"), &format!("1{now}"))),
            ("nonce 1__5", nonce("1__5", "15")),
            ("nonce <now>.0", nonce(&format!("{now}.0"), &now.to_string())),
            ("nonce 0x10", nonce("0x10", "16")),
            ("nonce empty", nonce("", "")),
            ("nonce -0", nonce("-0", "0")),
            ("no nonce", None),
        ] {
            cases.push((format!("{tag} {label}"), Req { nonce: n, sign, ..Req::check() }));
        }
        for method in ["GET", "PUT", "DELETE", "BREW", "HEAD", "OPTIONS", "PATCH"] {
            cases.push((format!("{tag} {method} /PatCheckSynapse"), Req { method, sign, ..Req::check() }));
            cases.push((format!("{tag} {method} /Synapse"), Req { method, path: "/Synapse", sign, ..Req::check() }));
            cases.push((format!("{tag} {method} /Nope"), Req { method, path: "/Nope", sign, ..Req::check() }));
        }
        for (label, timeout, age_s) in [
            ("timeout -100, nonce now", "-100", 0i64),
            ("timeout -100, nonce 97 s ahead", "-100", -97),
            ("timeout nan, nonce 1000 s old", "nan", 1000),
            ("timeout inf, nonce 10**6 s old", "inf", 1_000_000),
            ("timeout 1_0, nonce 12 s old", "1_0", 12),
            ("timeout ' 12 ', nonce 10 s old", " 12 ", 10),
            ("timeout 0, nonce 5 s old", "0", 5),
            ("timeout 0x1", "0x1", 0),
            ("timeout -1e308, nonce now", "-1e308", 0),
        ] {
            let n = (i128::from(now) - i128::from(age_s) * 1_000_000_000).to_string();
            cases.push((
                format!("{tag} {label}"),
                Req { timeout: Some(timeout), nonce: Some((n.clone(), n)), sign, ..Req::check() },
            ));
        }
        let ten_s_old = (now - 10_000_000_000).to_string();
        cases.push((
            format!("{tag} no timeout header, nonce 10 s old"),
            Req { timeout: None, nonce: Some((ten_s_old.clone(), ten_s_old)), sign, ..Req::check() },
        ));
        for version in ["-5", "7001999", "+10003001", "1_0003001", "abc"] {
            cases.push((
                format!("{tag} version {version:?}, nonce 1"),
                Req { version, nonce: nonce("1", "1"), sign, ..Req::check() },
            ));
        }
    }
    // hotkeys that are not SS58 (unsigned: there is no key to sign with)
    for hk in [
        "nope-hotkey",
        "notregistered",
        "511111111111111111111111111111111111111111111111",
        "",
        "Doawa5eXTJfCetbdJcXy5s1S1FamyLoNt7SiZfKLHdKBQtJ8",
        "5d2rNjFTwSwbr5Rb2xQ27yCb1TrfUKAhQz1x7caeKWZCLK2v",
    ] {
        for path in ["/Synapse", "/PatCheckSynapse"] {
            cases.push((
                format!("unsigned hotkey {hk:?} on {path}"),
                Req { hotkey: Some(hk), path, sign: false, ..Req::check() },
            ));
            cases.push((
                format!("unsigned hotkey {hk:?} on {path}, no nonce"),
                Req { hotkey: Some(hk), path, nonce: None, sign: false, ..Req::check() },
            ));
        }
    }
    // the dendrite's key in Polkadot's address format: the same key to the Python axon
    cases.push((
        "unsigned Polkadot-format hotkey on /Synapse".into(),
        Req {
            hotkey: Some("12bzRJfh7arnnfPPUZHeJUaE62QLEwhK48QnH9LXeK2m1iZU"),
            path: "/Synapse",
            sign: false,
            ..Req::check()
        },
    ));
    cases
}

/// The same raw requests to the real `bt.Axon` and to ours (hardenings off, and on for the
/// signed ones): the same status, message, `bt_header_axon_uuid` presence, `allow` and content type.
#[test]
fn odd_nonces_methods_hotkeys_and_timeouts_get_the_python_axons_answers() {
    let py = PyAxon::start();
    let rt = runtime();
    let miners = vec![RegisteredMiner { uid: 0, hotkey: DENDRITE_HOTKEY.into(), stake: 100.0 }];
    let gh = github_options(&nowhere(), patrol::github::Mode::Fixed, Duration::from_secs(2));
    let upstream = AxonConfig { require_signature: false, require_body_hotkey_match: false, ..AxonConfig::default() };
    let ours = rt.block_on(start_in_process(miners.clone(), gh.clone(), upstream));
    let hardened = rt.block_on(start_in_process(miners, gh, AxonConfig::default()));
    let key = dendrite_key();
    let mut differences = Vec::new();
    let mut seen_statuses = BTreeMap::new();
    for (i, (label, req)) in parity_cases().into_iter().enumerate() {
        let uuid = format!("parity-{i}-{}", std::process::id());
        let bytes = req.bytes(&key, &uuid, "127.0.0.1");
        let head = req.method == "HEAD";
        let python = ask(py.addr(), &bytes, head);
        let mine = ask(ours.addr, &bytes, head);
        *seen_statuses.entry(python.status).or_insert(0) += 1;
        if !python.same_as(&mine) {
            differences.push(format!("{label}:\n  python: {python:?}\n  patrol: {mine:?}"));
        }
        if req.sign {
            let h = ask(hardened.addr, &req.bytes(&key, &format!("{uuid}-h"), "127.0.0.1"), head);
            if !python.same_as(&h) {
                differences.push(format!("{label} (hardened):\n  python: {python:?}\n  patrol: {h:?}"));
            }
        } else if python.status == 200 || python.status == 405 {
            // hardening 1: unsigned requests that Python serves are refused
            let h = ask(hardened.addr, &req.bytes(&key, &format!("{uuid}-h"), "127.0.0.1"), head);
            let unsigned =
                "Not Verified with error: Missing signature: unsigned requests are refused by this validator";
            // a HEAD answer has no body to read the message from
            let refused = h.status == 401 && (head || h.message.as_deref() == Some(unsigned));
            if !refused {
                differences.push(format!("{label} (hardened, unsigned): {h:?}"));
            }
        }
    }
    assert!(differences.is_empty(), "{} differences:\n{}\n{}", differences.len(), differences.join("\n"), py.stderr());
    // the cases cover every kind of answer
    for status in [200, 401, 403, 404, 405, 500] {
        assert!(seen_statuses.contains_key(&status), "no case answered {status}: {seen_statuses:?}");
    }
}

// --------------------------------------------------------------------------------------------
// C. memory (issue 15 items 13 and 6)

#[test]
fn rss_returns_near_its_baseline_after_bursts_of_connections() {
    let s = Scratch::new();
    let key = miner_key(1);
    // room for a whole burst at once (the reproduction: bursts of 2,000 connections)
    let p = serve(&s, "v", &[&key], &nowhere(), &["--max-connections", "4096"], &[]);
    let rt = runtime();
    let t = target_of(&p);
    let d = Arc::new(dendrite(key));
    assert_eq!(rt.block_on(d.check(&t, Duration::from_secs(10))).outcome, no_pat());
    std::thread::sleep(Duration::from_secs(3));
    let (baseline, _) = memory_kib(p.pid());
    let addr = p.listen();
    // Each burst: 2,000 connections, each sends a signed check with keep-alive, reads its answer
    // and stays open, as a dendrite's connection pool does; a burst's connections are dropped when
    // the next burst starts, the last burst's never (the server must close them itself).
    let mut held: Vec<tokio::net::TcpStream> = Vec::new();
    for burst in 0..5 {
        drop(std::mem::take(&mut held));
        held = rt.block_on(async {
            use futures_util::StreamExt;
            futures_util::stream::iter(0..2000)
                .map(|_| {
                    let req = raw(&d.prepare(SynapseKind::Check, &t, Duration::from_secs(30), None), addr, true);
                    async move {
                        let mut c = tokio::net::TcpStream::connect(addr).await.ok()?;
                        tokio::io::AsyncWriteExt::write_all(&mut c, &req).await.ok()?;
                        let mut head = Vec::new();
                        let mut buf = [0u8; 4096];
                        // the whole answer is small: read until its body is in
                        let read = async {
                            loop {
                                let n = tokio::io::AsyncReadExt::read(&mut c, &mut buf).await.ok()?;
                                if n == 0 {
                                    return None;
                                }
                                head.extend_from_slice(&buf[..n]);
                                let text = String::from_utf8_lossy(&head);
                                if let Some((h, body)) = text.split_once("\r\n\r\n") {
                                    let len = h
                                        .lines()
                                        .find_map(|l| {
                                            l.to_ascii_lowercase()
                                                .strip_prefix("content-length:")
                                                .map(|v| v.trim().to_string())
                                        })
                                        .and_then(|v| v.parse::<usize>().ok())?;
                                    if body.len() >= len {
                                        return Some(());
                                    }
                                }
                            }
                        };
                        tokio::time::timeout(Duration::from_secs(60), read).await.ok()??;
                        head.starts_with(b"HTTP/1.1 ").then_some(c)
                    }
                })
                .buffer_unordered(2000)
                .filter_map(|r| async move { r })
                .collect::<Vec<_>>()
                .await
        });
        assert_eq!(held.len(), 2000, "burst {burst}: every connection gets an HTTP answer\n{}", p.stderr());
        eprintln!("after burst {burst}: VmRSS {} KiB", memory_kib(p.pid()).0);
    }
    let bound = 2 * baseline + 20 * 1024;
    let deadline = Instant::now() + Duration::from_secs(30);
    std::thread::sleep(Duration::from_secs(3));
    let mut rss = memory_kib(p.pid()).0;
    while rss >= bound && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        rss = memory_kib(p.pid()).0;
    }
    eprintln!("VmRSS: baseline {baseline} KiB, after the bursts and an idle period {rss} KiB (bound {bound} KiB)");
    assert!(rss < bound, "VmRSS {rss} KiB after the bursts, baseline {baseline} KiB");
    drop(held);
}

/// Writes a store of about `mb` MB: other miners' entries first (1 KB PATs), then `ours`.
fn big_store(path: &std::path::Path, mb: usize, ours: &[Value]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(b"[").unwrap();
    let pad = "p".repeat(1000);
    let entries = mb * 1024 * 1024 / 1100;
    for i in 0..entries {
        let uid = 1000 + i % 60000;
        write!(
            f,
            "{{\"uid\": {uid}, \"hotkey\": \"5Other{i:040}\", \"pat\": \"ghp_{pad}\", \"github_id\": \"{i}\", \"stored_at\": \"2026-01-01T00:00:00+00:00\"}}, "
        )
        .unwrap();
    }
    let tail: Vec<String> = ours.iter().map(Value::to_string).collect();
    f.write_all(tail.join(", ").as_bytes()).unwrap();
    f.write_all(b"]").unwrap();
    f.flush().unwrap();
}

#[test]
fn a_hundred_concurrent_checks_on_a_100_mb_store_are_answered_with_bounded_memory() {
    let dir = tempfile::Builder::new().prefix("patrol-hardening-gh-").tempdir().unwrap();
    let tokens: Vec<String> = (1..=10).map(|i| format!("ghp_hardeningBigStoreToken0000000000{i:03}")).collect();
    let accounts: Vec<(&str, u64, &str)> =
        tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i as u64 + 1, "m")).collect();
    let gh = FakeGithubProcess::start(dir.path(), &accounts);
    let s = Scratch::new();
    let keys: Vec<Hotkey> = (1..=100).map(miner_key).collect();
    // miners 1..=10 hold a valid PAT, at the very end of the file; the other 90 hold none
    let ours: Vec<Value> = keys[..10]
        .iter()
        .zip(&tokens)
        .enumerate()
        .map(|(i, (k, t))| {
            json!({"uid": i + 1, "hotkey": k.ss58(), "pat": t, "github_id": (i + 1).to_string(), "stored_at": "2026-01-01T00:00:00+00:00"})
        })
        .collect();
    big_store(&s.path("v-store.json"), 100, &ours);
    let size = std::fs::metadata(s.path("v-store.json")).unwrap().len();
    assert!(size > 100_000_000, "{size}");
    let refs: Vec<&Hotkey> = keys.iter().collect();
    let p = serve(&s, "v", &refs, &gh.url(), &[], &[]);
    let rt = runtime();
    let t = target_of(&p);
    let replies = rt.block_on(async {
        let calls = keys.iter().map(|k| {
            let (d, t) = (dendrite(k.clone()), t.clone());
            async move { d.check(&t, Duration::from_secs(600)).await }
        });
        futures_util::future::join_all(calls).await
    });
    for (i, r) in replies.iter().enumerate() {
        let want = if i < 10 {
            CallOutcome::Answered(CheckFields { has_pat: Some(true), pat_valid: Some(true), rejection_reason: None })
        } else {
            no_pat()
        };
        assert_eq!(r.outcome, want, "miner {}\n{}", i + 1, p.stderr());
    }
    let (_, peak) = memory_kib(p.pid());
    eprintln!("VmHWM after 100 concurrent checks on a {size}-byte store: {peak} KiB");
    assert!(peak < 1024 * 1024, "peak RSS {peak} KiB");
}

// --------------------------------------------------------------------------------------------
// D. the liveness probe (issue 14)

#[test]
fn the_python_axon_answers_the_probe_with_500_and_its_uuid_and_runs_no_handler() {
    let mut py = PyAxon::start();
    let rt = runtime();
    let d = dendrite(dendrite_key());
    let target = |py: &PyAxon| Target { ip: Ipv4Addr::LOCALHOST.into(), port: py.port(), hotkey: py.hotkey().into() };
    let first_uuid = py.uuid().to_string();
    assert_eq!(first_uuid.len(), 36, "{first_uuid}");

    let sent = rt.block_on(d.send(d.prepare_probe(&target(&py), Duration::from_secs(10)), Duration::from_secs(10)));
    assert_eq!(sent.status, 500, "{:?}", sent.outcome);
    let CallOutcome::Rejected { status: 500, message } = &sent.outcome else { panic!("{:?}", sent.outcome) };
    let error_id = message.strip_prefix("Internal Server Error #").unwrap_or_else(|| panic!("{message}"));
    assert_eq!(sent.axon_uuid.as_deref(), Some(first_uuid.as_str()));
    let probe = rt.block_on(d.probe(&target(&py), Duration::from_secs(10)));
    assert_eq!(probe.outcome, CallOutcome::Answered(patrol::wire::ProbeFields { status: 500 }));
    assert_eq!(probe.axon_uuid.as_deref(), Some(first_uuid.as_str()));
    // no forward function ran (not even the SDK's ping), nothing was blacklisted
    assert_eq!(py.handler_calls(), BTreeMap::new(), "{}", py.log());
    assert!(py.received().is_empty() && py.blacklisted().is_empty(), "{}", py.log());
    // what the axon logs for it, at its default level: one ERROR line with the answer's error id
    let log = strip_ansi(&py.stderr());
    let line = log
        .lines()
        .find(|l| l.contains(&format!("JSONDecodeError#{error_id}")))
        .unwrap_or_else(|| panic!("no log line for error {error_id}\n{log}"));
    assert!(line.split('|').any(|part| part.trim() == "ERROR"), "{line}");
    assert!(
        line.ends_with(&format!("JSONDecodeError#{error_id}: Expecting value: line 1 column 1 (char 0)")),
        "{line}"
    );
    eprintln!("the Python axon's log line for the probe: {line}");

    // a check is answered 200, and a success response carries no axon uuid
    let check = rt.block_on(d.check(&target(&py), Duration::from_secs(10)));
    assert_eq!(check.outcome, no_pat());
    assert_eq!(check.axon_uuid, None);
    assert_eq!(py.handler_calls().get("PatCheckSynapse"), Some(&1));
    assert_eq!(py.handler_calls().get("Synapse"), None);

    // a new process: a new uuid
    py.restart();
    assert_ne!(py.uuid(), first_uuid);
    let probe = rt.block_on(d.probe(&target(&py), Duration::from_secs(10)));
    assert_eq!(probe.outcome, CallOutcome::Answered(patrol::wire::ProbeFields { status: 500 }));
    assert_eq!(probe.axon_uuid.as_deref(), Some(py.uuid()));
    assert_eq!(py.handler_calls(), BTreeMap::new(), "a restarted axon starts counting afresh");
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn our_axon_answers_the_probe_like_python_with_a_per_process_uuid_and_no_github_call() {
    let dir = tempfile::Builder::new().prefix("patrol-hardening-gh-").tempdir().unwrap();
    let token = "ghp_hardeningProbeToken000000000000001";
    let gh = FakeGithubProcess::start(dir.path(), &[(token, 1, "one")]);
    let s = Scratch::new();
    let key = miner_key(1);
    let mut p = serve(&s, "v", &[&key], &gh.url(), &[], &[]);
    let rt = runtime();
    let d = dendrite(key.clone());
    let pat = patrol::secret::Pat::new(token).unwrap();
    let r = rt.block_on(d.broadcast(&target_of(&p), Duration::from_secs(20), &pat));
    assert!(matches!(r.outcome, CallOutcome::Answered(ref f) if f.accepted == Some(true)), "{:?}", r.outcome);
    assert!(gh.calls("user") > 0, "the fake GitHub counts the broadcast's calls");
    gh.reset_stats();

    let probe = |p: &PatrolProcess| {
        let sent =
            rt.block_on(d.send(d.prepare_probe(&target_of(p), Duration::from_secs(10)), Duration::from_secs(10)));
        let CallOutcome::Rejected { status: 500, message } = &sent.outcome else { panic!("{:?}", sent.outcome) };
        assert!(message.starts_with("Internal Server Error #"), "{message}");
        sent.axon_uuid.unwrap_or_else(|| panic!("no bt_header_axon_uuid"))
    };
    let first = probe(&p);
    assert_eq!(first.len(), 36, "{first}");
    // our log: one line, the body's parse error under the answer's error id (no verification failure)
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        if let Some(l) = p.stderr().lines().find(|l| l.contains("request answered 500")).map(str::to_string) {
            break l;
        }
        assert!(Instant::now() < deadline, "no log line for the probe\n{}", p.stderr());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(line.contains("not JSON"), "{line}");
    eprintln!("our axon's log line for the probe: {line}");
    assert_eq!(probe(&p), first, "stable for the process");
    let reply = rt.block_on(d.probe(&target_of(&p), Duration::from_secs(10)));
    assert_eq!(reply.outcome, CallOutcome::Answered(patrol::wire::ProbeFields { status: 500 }));
    assert_eq!(reply.axon_uuid.as_deref(), Some(first.as_str()));
    assert_eq!((gh.calls("user"), gh.calls("graphql")), (0, 0), "the probe made a GitHub call: {}", gh.stats());
    // a check (which does call GitHub) answers 200 without an axon uuid
    let check = rt.block_on(d.check(&target_of(&p), Duration::from_secs(20)));
    assert!(matches!(check.outcome, CallOutcome::Answered(ref f) if f.pat_valid == Some(true)), "{:?}", check.outcome);
    assert_eq!(check.axon_uuid, None);

    // restarted: a new process, a new uuid
    assert!(p.signal_and_wait(libc::SIGTERM, Duration::from_secs(30)).success());
    let p2 = serve(&s, "v", &[&key], &gh.url(), &[], &[]);
    gh.reset_stats();
    let second = probe(&p2);
    assert_ne!(second, first);
    assert_eq!((gh.calls("user"), gh.calls("graphql")), (0, 0), "{}", gh.stats());
}
