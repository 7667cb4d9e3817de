//! What a validator answers, when it is hostile or broken, on the real binary and the library's
//! dendrite:
//!
//! - garbage (not HTTP, not JSON, wrong types, bodies beyond the cap, an HTML 502): a coverage
//!   category with the reason, never a panic, nothing huge echoed;
//! - a validator answering `307`/`308 Location: <another host>` is never followed: the other host
//!   receives nothing (check, broadcast, probe), and the row is `rejected`, naming the redirect
//!   without the Location's userinfo or query;
//! - text a validator writes (a rejection reason quoting the PAT as pydantic's `input_value='…'`
//!   does, terminal escapes, CR/LF, an OSC title, 63 KB of it) reaches no table, JSON, log or state
//!   file raw: tokens redacted, control characters escaped, at most 512 characters.
//!
//! The validators here are tiny loopback HTTP servers written for the test (a real axon cannot be
//! made to say these things). Everything binds 127.0.0.1; every run and wait is bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use patrol::secret::{FOREIGN_TEXT_MAX, Pat};
use patrol::wallet::Hotkey;
use patrol::wire::{CallOutcome, Dendrite, Target};
use serde_json::{Value, json};

use crate::support::agent::Agent;
use crate::support::cli::{Run, Scratch, static_validator};
use crate::support::fake_github::FakeGithubProcess;
use crate::support::python::{DENDRITE_HOTKEY, DENDRITE_SEED, VALIDATOR_HOTKEY};

const PAT: &str = "ghp_hostileValidatorToken000000000000020";
const RUN: Duration = Duration::from_secs(60);

// --------------------------------------------------------------------------------------------
// a loopback HTTP/1.1 server answering every request with whatever the test says

/// One request as the server read it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    body: String,
}

type Respond = dyn Fn(&Seen) -> Vec<u8> + Send + Sync;

/// A loopback server: accepts, reads one request, answers `respond(request)`, closes. Stops on drop.
struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(respond: impl Fn(&Seen) -> Vec<u8> + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let respond: Arc<Respond> = Arc::new(respond);
        let (s, st) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (s, respond) = (s.clone(), respond.clone());
                        std::thread::spawn(move || serve_one(conn, &s, &*respond));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server { addr, seen, stop }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_one(mut conn: TcpStream, seen: &Mutex<Vec<Seen>>, respond: &Respond) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut chunk) {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match conn.read(&mut chunk) {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    let mut first = head.split_whitespace();
    let request = Seen {
        method: first.next().unwrap_or_default().to_string(),
        path: first.next().unwrap_or_default().to_string(),
        body: String::from_utf8_lossy(&buf[head_end..]).into_owned(),
    };
    seen.lock().unwrap().push(request.clone());
    let _ = conn.write_all(&respond(&request));
    let _ = conn.flush();
}

fn http(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n", body.len());
    for (k, v) in headers {
        out += &format!("{k}: {v}\r\n");
    }
    out += "\r\n";
    out += body;
    out.into_bytes()
}

/// The other host: answers like a validator that holds and accepts our PAT, so that a followed
/// redirect would look like success.
fn other_host() -> Server {
    Server::start(|_| {
        http(
            "200 OK",
            &[("content-type", "application/json")],
            &json!({"has_pat": true, "pat_valid": true, "accepted": true}).to_string(),
        )
    })
}

/// A validator answering every request with `code` and a Location on `to`, with userinfo, a query
/// and a fragment that must not be shown.
fn redirector(code: u16, to: SocketAddr) -> Server {
    Server::start(move |_| {
        let location = format!("http://user:locationSecret@{to}/steal?apikey=queryKey123#frag");
        http(&format!("{code} Redirect"), &[("location", &location)], "")
    })
}

fn dendrite() -> Arc<Dendrite> {
    Arc::new(Dendrite::new(Arc::new(Hotkey::from_seed_hex(DENDRITE_SEED).unwrap()), Default::default()).unwrap())
}

fn target(addr: SocketAddr) -> Target {
    Target { ip: addr.ip(), port: addr.port(), hotkey: VALIDATOR_HOTKEY.into() }
}

/// A scratch dir with the miner's hotkey and PAT, and a config with one static validator at
/// `validator` and GitHub at `github`.
fn setup(validator: SocketAddr, github: &str) -> Scratch {
    let mut s = Scratch::new();
    s.hotkey("hotkey", DENDRITE_SEED);
    s.pat("pat", PAT);
    s.write(
        "c.toml",
        &format!(
            "[wallet]\nhotkey_file = \"hotkey\"\n[pat]\nfile = \"pat\"\n[agent]\nstate_dir = \"state\"\nlisten = \"off\"\n\
             [github]\napi_url = \"{github}\"\ntimeout = \"5s\"\n\
             [reconcile]\ninterval = \"60s\"\njitter = \"0s\"\ncheck_timeout = \"5s\"\nbroadcast_timeout = \"5s\"\n\
             backoff_initial = \"1s\"\nbackoff_max = \"5s\"\n{}",
            static_validator(1, VALIDATOR_HOTKEY, "127.0.0.1", validator.port(), 1e5)
        ),
        0o600,
    );
    s
}

fn run(s: &Scratch, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--config", "c.toml"]);
    s.run_env(&all, &[], RUN)
}

// --------------------------------------------------------------------------------------------
// item 2: redirects

#[test]
fn a_redirecting_validator_is_rejected_and_the_other_host_receives_nothing() {
    let other = other_host();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let d = dendrite();
    let pat = Pat::new(PAT).unwrap();
    let want = |code: u16| format!("redirect ({code}) to http://{}/steal refused", other.addr);
    for code in [307, 308] {
        let v = redirector(code, other.addr);
        let t = target(v.addr);
        // the check, the broadcast (a POST with the PAT in its body) and the probe (a GET)
        let check = rt.block_on(d.check(&t, Duration::from_secs(5)));
        assert_eq!(check.outcome, CallOutcome::Rejected { status: code, message: want(code) });
        let broadcast = rt.block_on(d.broadcast(&t, Duration::from_secs(5), &pat));
        assert_eq!(broadcast.outcome, CallOutcome::Rejected { status: code, message: want(code) });
        let probe = rt.block_on(d.probe(&t, Duration::from_secs(5)));
        assert!(matches!(probe.outcome, CallOutcome::Answered(p) if p.status == code), "{:?}", probe.outcome);
        let paths: Vec<String> = v.seen().iter().map(|r| format!("{} {}", r.method, r.path)).collect();
        assert_eq!(paths, ["POST /PatCheckSynapse", "POST /PatBroadcastSynapse", "GET /Synapse"]);
        assert!(other.seen().is_empty(), "the other host received {:?}", other.seen());
    }

    // the commands: a `rejected` row naming the redirect, nothing sent elsewhere
    let gh = FakeGithubProcess::new(&[(PAT, 4242, "hostile-miner")]);
    let v = redirector(308, other.addr);
    let s = setup(v.addr, &gh.url());
    let r = run(&s, &["check", "--json"]);
    r.expect_code(3);
    let row = &r.json()["results"][0];
    assert_eq!((row["category"].as_str(), row["status_code"].as_u64()), (Some("rejected"), Some(308)), "{r}");
    assert_eq!(row["detail"], want(308), "{r}");
    let r = run(&s, &["post", "--json"]);
    let row = &r.json()["results"][0];
    assert_eq!((row["accepted"].as_bool(), row["status_code"].as_u64()), (None, Some(308)), "{r}");
    assert_eq!(row["detail"], want(308), "{r}");
    let r = run(&s, &["check"]);
    assert!(r.stdout.contains(&want(308)), "{r}");
    for text in [&r.stdout, &r.stderr] {
        assert!(!text.contains("locationSecret") && !text.contains("queryKey123"), "{r}");
    }
    assert!(other.seen().is_empty(), "the other host received {:?}", other.seen());
}

// --------------------------------------------------------------------------------------------
// items 6 and 9: validator text

/// A reason quoting the PAT (as pydantic's `input_value` does), clearing the screen, forging a
/// log line and setting the terminal title, then 63 KB of filler.
fn hostile_reason() -> String {
    format!(
        "1 validation error for PatBroadcastSynapse\ngithub_access_token\n  Value error [type=value_error, \
         input_value='{PAT}', input_type=str]\x1b[2J\r\n2099-01-01T00:00:00Z ERROR forged log line\x1b]0;pwned\x07 \
         \u{202e}gnp.exe {}",
        "F".repeat(63 * 1024)
    )
}

/// A validator that holds "an invalid PAT" for us, refuses every broadcast, and answers the probe
/// with a 500 — each with [`hostile_reason`].
fn hostile() -> Server {
    Server::start(|req| {
        let reason = hostile_reason();
        let (status, body) = match req.path.as_str() {
            "/PatCheckSynapse" => ("200 OK", json!({"has_pat": true, "pat_valid": false, "rejection_reason": reason})),
            "/PatBroadcastSynapse" => ("200 OK", json!({"accepted": false, "rejection_reason": reason})),
            _ => ("500 Internal Server Error", json!({"message": reason})),
        };
        http(status, &[("content-type", "application/json"), ("bt_header_axon_uuid", "hostile-1")], &body.to_string())
    })
}

/// `text` holds none of what the hostile reason must not bring: the PAT, raw control characters,
/// bidi overrides, or more than the cap of its filler.
fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(&PAT[4..]), "{what}: the PAT leaked\n{text}");
    let bad = text.chars().find(|&c| (c.is_control() && c != '\n') || c == '\u{202e}');
    assert!(bad.is_none(), "{what}: raw control character {bad:?}\n{}", text.escape_debug());
    let longest = text.split(|c| c != 'F').map(str::len).max().unwrap_or(0);
    assert!(longest < FOREIGN_TEXT_MAX, "{what}: {longest} characters of the reason's filler");
    assert!(!text.contains("\r\n2099"), "{what}: the forged log line starts a line");
}

/// Every string in a JSON value, checked with [`assert_clean`]; returns the `rejection_reason`s.
fn assert_clean_json(what: &str, v: &Value, reasons: &mut Vec<String>) {
    match v {
        Value::String(s) => assert_clean(what, s),
        Value::Array(a) => a.iter().for_each(|x| assert_clean_json(what, x, reasons)),
        Value::Object(o) => {
            for (k, x) in o {
                if (k == "rejection_reason" || k == "reason") && x.is_string() {
                    reasons.push(x.as_str().unwrap().to_string());
                }
                assert_clean_json(what, x, reasons);
            }
        }
        _ => {}
    }
}

/// What the clean form of [`hostile_reason`] starts with.
const CLEAN_START: &str = "1 validation error for PatBroadcastSynapse\\ngithub_access_token\\n  Value error \
                           [type=value_error, input_value='***0020', input_type=str]\\u{1b}[2J\\r\\n2099-01-01T00:00:00Z \
                           ERROR forged log line\\u{1b}]0;pwned\\u{7} \\u{202e}gnp.exe FFF";

#[test]
fn validator_text_is_redacted_escaped_and_capped_in_tables_json_logs_and_state() {
    let v = hostile();
    let gh = FakeGithubProcess::new(&[(PAT, 4242, "hostile-miner")]);
    let s = setup(v.addr, &gh.url());

    // check: the table and the JSON
    let r = run(&s, &["check"]);
    r.expect_code(2);
    assert_clean("check table", &r.stdout);
    assert_clean("check stderr", &r.stderr);
    assert!(r.stdout.contains("input_value='***0020'"), "{r}");
    let r = run(&s, &["check", "--json"]);
    let mut reasons = Vec::new();
    assert_clean_json("check --json", &r.json(), &mut reasons);
    assert_eq!(reasons.len(), 1, "{r}");
    assert!(reasons[0].starts_with(CLEAN_START), "{}", reasons[0]);
    assert_eq!(reasons[0].chars().count(), FOREIGN_TEXT_MAX, "capped, with the `…`");
    assert!(reasons[0].ends_with('…'));

    // reconcile: the invalid_pat answer brings a preflight and a broadcast, refused
    let r = run(&s, &["reconcile", "--json"]);
    let j = r.json();
    assert_eq!(j["broadcasts_sent"], 1, "{r}");
    let mut reasons = Vec::new();
    assert_clean_json("reconcile --json", &j, &mut reasons);
    assert!(reasons.iter().all(|x| x.chars().count() <= FOREIGN_TEXT_MAX), "{reasons:?}");
    assert!(!reasons.is_empty() && reasons.iter().any(|x| x.starts_with(CLEAN_START)), "{r}");
    assert_clean("reconcile stderr", &r.stderr);

    // the state file
    let state_path = s.path("state").join(format!("state-{DENDRITE_HOTKEY}-74.json"));
    let raw = std::fs::read_to_string(&state_path).unwrap();
    assert_clean("state file", &raw);
    assert!(!raw.contains("\\u001b") && !raw.contains("\\r\\n"), "escapes JSON would decode back: {raw}");
    let mut reasons = Vec::new();
    assert_clean_json("state file", &serde_json::from_str(&raw).unwrap(), &mut reasons);
    assert!(reasons.iter().any(|x| x.starts_with(CLEAN_START)), "{raw}");

    // post: the broadcast's refusal (after reconcile: post records its results in the state)
    let r = run(&s, &["post"]);
    assert_clean("post table", &r.stdout);
    assert_clean("post stderr", &r.stderr);
    assert!(r.stdout.contains("input_value='***0020'"), "{r}");

    // the agent's text log: `reason=` of "not covered"
    std::fs::remove_file(&state_path).unwrap();
    let mut agent = Agent::start(&s, &["--config", "c.toml"], &[], None, &[PAT]);
    agent.wait_log("is not covered", Duration::from_secs(60));
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(30)).code(), Some(0), "{}", agent.log());
    let log = agent.log();
    assert_clean("agent log", &log);
    let line = log.lines().find(|l| l.contains("is not covered")).unwrap();
    assert!(line.contains(&format!("reason={CLEAN_START}")), "{line}");
    assert!(v.seen().iter().any(|r| r.path == "/PatBroadcastSynapse" && r.body.contains(PAT)), "the PAT was sent");
}

/// A state file written before validator text was cleaned where it enters patrol (a reason quoting
/// the PAT, escapes, 63 KB): its reasons are in the cleaned form once loaded, so the agent, which
/// logs a stored reason, never shows the raw one.
#[test]
fn reasons_in_a_state_file_written_before_are_cleaned_when_it_is_loaded() {
    use patrol::reconcile::core::{History, Terminal};
    use patrol::reconcile::state::{MinerState, StateFile};
    let d = tempfile::tempdir().unwrap();
    let file = StateFile::new(d.path(), DENDRITE_HOTKEY, 74);
    let mut old = MinerState::new(DENDRITE_HOTKEY, 74);
    let mut h = History::new(VALIDATOR_HOTKEY);
    h.reason = Some(hostile_reason());
    h.terminal = Some(Terminal { reason: hostile_reason(), fingerprint: "f".into(), since: 1 });
    old.validators.insert(1, h);
    std::fs::write(&file.path, serde_json::to_vec(&old).unwrap()).unwrap();
    let loaded = file.load(DENDRITE_HOTKEY, 74);
    let h = &loaded.validators[&1];
    for text in [h.reason.as_deref().unwrap(), h.terminal.as_ref().unwrap().reason.as_str()] {
        assert!(text.starts_with(CLEAN_START), "{text}");
        assert!(text.chars().count() <= FOREIGN_TEXT_MAX);
        assert_clean("a loaded reason", text);
    }
}

// --------------------------------------------------------------------------------------------
// garbage answers

/// A fake "validator" that answers every request with `response` (or closes at once when empty).
fn garbage_server(response: Vec<u8>) -> Server {
    Server::start(move |_| response.clone())
}

#[test]
fn misbehaving_validators_get_a_category_not_a_panic() {
    let s = Scratch::new();
    s.hotkey("hotkey", DENDRITE_SEED);
    let big = {
        let mut r = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n".to_vec();
        r.extend(std::iter::repeat_n(b' ', 10 * 1024 * 1024));
        r
    };
    let chunked_big = {
        let mut r = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..160 {
            r.extend(b"10000\r\n");
            r.extend(std::iter::repeat_n(b'{', 0x10000));
            r.extend(b"\r\n");
        }
        r.extend(b"0\r\n\r\n");
        r
    };
    let servers = [
        (garbage_server(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec()), "no_response", "malformed"),
        (
            garbage_server(b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n{\"has_pat\": \"x\"}".to_vec()),
            "no_response",
            "wrong type",
        ),
        (garbage_server(big), "no_response", "exceeds"),
        (garbage_server(chunked_big), "no_response", "exceeds"),
        (garbage_server(Vec::new()), "no_response", ""),
        (garbage_server(b"not http at all\r\n\r\n".to_vec()), "no_response", ""),
        (
            garbage_server(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: 13\r\n\r\n<html>x</html>"
                    .to_vec(),
            ),
            "rejected",
            "Bad Gateway",
        ),
    ];
    let validators: String = servers
        .iter()
        .enumerate()
        .map(|(i, (server, _, _))| {
            static_validator(i as u16 + 1, VALIDATOR_HOTKEY, "127.0.0.1", server.addr.port(), 1e5)
        })
        .collect();
    s.write(
        "c.toml",
        &format!("[wallet]\nhotkey_file = \"hotkey\"\n[reconcile]\ncheck_timeout = \"3s\"\n{validators}"),
        0o600,
    );
    let run = s.run(&["check", "--json", "--config", "c.toml"]);
    run.expect_code(3);
    let j = run.json();
    for (i, (_, category, detail)) in servers.iter().enumerate() {
        let r = &j["results"][i];
        assert_eq!(r["category"], *category, "server {i}: {r}");
        assert!(r["detail"].as_str().unwrap_or("").contains(detail), "server {i}: {r}");
    }
    assert!(run.stdout.len() < 64 * 1024, "a huge body must not be echoed");
}
