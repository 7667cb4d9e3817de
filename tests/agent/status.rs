//! `patrol status` (issue 21): against a running agent whose validators (reference validators and
//! a dead port, on loopback) and GitHub (the in-process fake) count what they receive — status
//! shows what the agent's last pass saw and costs no validator request and no GitHub call — then
//! from the state file alone once the agent has stopped (the same miners), and exit 3 once that
//! state is older than 2 × (interval + jitter).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use patrol::lab::fake_github::{Endpoint, FakeAccount, FakeGithubConfig, FakeGithubHandle, spawn_fake_github};
use serde_json::Value;

use super::{PAT, START, scratch};
use crate::support::agent::{Agent, RefValidator, free_port, value};
use crate::support::cli::{Run, Scratch, dead_port, static_validator};
use crate::support::python::{BLACKLISTED_HOTKEY, DENDRITE_HOTKEY, VALIDATOR_HOTKEY};

/// A TCP forwarder on 127.0.0.1 that counts the connections made to it: the validator's view of
/// how often it was contacted, whatever the request.
struct CountingProxy {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl CountingProxy {
    fn start(to: u16) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (accepted, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let (a, s) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        a.fetch_add(1, Ordering::SeqCst);
                        let _ = client.set_nonblocking(false);
                        if let Ok(upstream) = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], to))) {
                            pipe(client, upstream);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        CountingProxy { port, accepted, stop }
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Copy both ways until either side closes (each direction on its own thread).
fn pipe(a: TcpStream, b: TcpStream) {
    for (mut from, mut to) in [(a.try_clone().unwrap(), b.try_clone().unwrap()), (b, a)] {
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        });
    }
}

/// One miner, validators from `validators`, quiet timers: a round and a probe sweep an hour, a long
/// backoff — so nothing but the first round reaches a validator while the test watches.
fn quiet_config(listen: u16, gh: SocketAddr, interval: &str, validators: &str) -> String {
    format!(
        "[wallet]\nhotkey_file = \"hotkey\"\n[pat]\nfile = \"pat\"\n\
         [agent]\nstate_dir = \"state\"\nlisten = \"127.0.0.1:{listen}\"\n\
         [github]\napi_url = \"http://{gh}\"\ntimeout = \"3s\"\n\
         [reconcile]\ninterval = \"{interval}\"\njitter = \"0s\"\ncheck_timeout = \"3s\"\nbroadcast_timeout = \"3s\"\n\
         backoff_initial = \"30m\"\nbackoff_max = \"1h\"\nprobe_interval = \"1h\"\n{validators}"
    )
}

fn github_calls(gh: &FakeGithubHandle) -> u64 {
    gh.calls(Endpoint::User) + gh.calls(Endpoint::Graphql)
}

fn status(s: &Scratch, config: &str, json: bool) -> Run {
    let mut args = vec!["status", "--config", config];
    if json {
        args.push("--json");
    }
    s.run_env(&args, &[], Duration::from_secs(30))
}

/// The status rows say what the agent's last pass saw: the categories of its metrics, the
/// check times and axon uuids of the state it saved, a learned uuid, a broadcast, a backoff.
fn rows_match_the_last_pass(m: &Value, state: &Value, metrics: &[crate::support::agent::Sample]) {
    for (i, uid, category) in [(0, 1, "valid"), (1, 2, "no_response")] {
        let row = &m["validators"][i];
        let saved = &state["validators"][uid.to_string()];
        assert_eq!((row["uid"].as_u64(), row["category"].as_str()), (Some(uid), Some(category)), "{row}");
        let labels = [("hotkey", DENDRITE_HOTKEY), ("uid", &uid.to_string()), ("category", category)];
        assert_eq!(value(metrics, "patrol_validator_state", &labels), Some(1.0), "the agent's metrics say otherwise");
        assert_eq!(row["axon_uuid"], saved["axon_uuid"]);
        assert_eq!(row["restarts"], 0);
        let checked = saved["checked_at"].as_u64().unwrap();
        assert_eq!(row["last_check_at"].as_str(), Some(patrol::reconcile::core::rfc3339(checked).as_str()));
    }
    let valid = &m["validators"][0];
    assert!(valid["axon_uuid"].as_str().is_some_and(|u| !u.is_empty()), "the uuid was learned: {valid}");
    assert_eq!((valid["backoff"].clone(), valid["broadcasts"].as_u64()), (Value::Null, Some(1)));
    let dead = &m["validators"][1];
    assert_eq!(dead["backoff"]["failures"], 1, "{dead}");
    assert!(dead["silent"]["kind"].as_str().is_some(), "{dead}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_agents_last_pass_without_contacting_anyone_then_reads_the_state_file() {
    let (gh_addr, gh) =
        spawn_fake_github(FakeGithubConfig::default().with_account(FakeAccount::new(PAT, 4242, "agent-miner"))).await;
    let v = RefValidator::for_miner(gh_addr);
    let proxy = CountingProxy::start(v.port);
    let s = scratch();
    let port = free_port();
    let validators = [
        static_validator(1, &v.hotkey, "127.0.0.1", proxy.port, 30000.0),
        static_validator(2, BLACKLISTED_HOTKEY, "127.0.0.1", dead_port(), 20000.0),
    ]
    .concat();
    s.write("agent.toml", &quiet_config(port, gh_addr, "1h", &validators), 0o600);
    let mut agent = Agent::start(&s, &["--config", "agent.toml"], &[], Some(port), &[PAT]);
    agent.wait_metric("patrol_passes_total", &[("hotkey", DENDRITE_HOTKEY)], START, |n| n >= 1.0);
    assert_eq!(v.pat_of(DENDRITE_HOTKEY).as_deref(), Some(PAT), "the first pass sent the PAT");
    let metrics = agent.metrics();
    let (contacts, calls) = (proxy.connections(), github_calls(&gh));
    assert!(contacts > 0 && calls > 0, "the counters see the agent's own traffic ({contacts}, {calls})");

    // --- live: the agent's /status, three times, and the human form
    let live = status(&s, "agent.toml", true);
    live.expect_code(1);
    let view = live.json();
    for _ in 0..2 {
        assert_eq!(status(&s, "agent.toml", true).code, 1);
    }
    let text = status(&s, "agent.toml", false);
    assert_eq!(text.code, 1, "{text}");
    assert_eq!(
        (proxy.connections(), github_calls(&gh)),
        (contacts, calls),
        "patrol status reached a validator or GitHub\n{}",
        agent.log()
    );
    assert_eq!(view["source"], "agent", "{live}");
    assert_eq!(view["note"], Value::Null);
    assert_eq!(view["agent"]["pid"], agent.pid());
    let long_version = patrol::version::LONG;
    assert_eq!(view["agent"]["version"], long_version);
    assert!(view["agent"]["uptime_s"].as_u64().is_some_and(|u| u < 600), "{view}");
    assert_eq!((view["exit_code"].as_u64(), view["verdict"].as_str()), (Some(1), Some("partial")));
    assert!(text.stdout.starts_with(&format!("agent: patrol {long_version}, pid {}", agent.pid())), "{text}");
    assert!(text.stdout.contains("1/2 covered"), "{text}");
    let m = &view["miners"][0];
    assert_eq!((m["hotkey"].as_str(), m["stale"].as_bool()), (Some(DENDRITE_HOTKEY), Some(false)));
    assert_eq!((m["total"].as_u64(), m["covered"].as_u64()), (Some(2), Some(1)));
    assert_eq!(m["github"]["budget_per_hour"], 150);
    assert!(
        m["github"]["spent_last_hour"].as_u64().is_some_and(|n| n >= 4),
        "a check, a broadcast, the preflight: {m}"
    );

    // what the agent's last pass saw: its metrics and the state it saved
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(s.path(&format!("state/state-{DENDRITE_HOTKEY}-74.json"))).unwrap(),
    )
    .unwrap();
    rows_match_the_last_pass(m, &state, &metrics);

    // what status spares: `check` asks every validator again and costs GitHub calls on the PAT
    // (the counters above would have seen it); it agrees on the exit code
    let check = s.run_env(&["check", "--config", "agent.toml"], &[], Duration::from_secs(60));
    assert_eq!(check.code, 1, "{check}");
    assert!(proxy.connections() > contacts && github_calls(&gh) >= calls + 2, "{check}");

    // --- no agent: the state file, saying so; the same miners
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(20)).code(), Some(0));
    let (contacts, calls) = (proxy.connections(), github_calls(&gh));
    let file = status(&s, "agent.toml", true);
    file.expect_code(1);
    let fv = file.json();
    assert_eq!(fv["source"], "state_file");
    let note = fv["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with(&format!("no agent answered at 127.0.0.1:{port}")) && note.contains("last written"),
        "{note}"
    );
    assert_eq!(fv["agent"], Value::Null);
    assert_eq!(fv["miners"], view["miners"], "the state file and the agent disagree");
    let text = status(&s, "agent.toml", false);
    assert!(text.stdout.starts_with(&format!("no agent answered at 127.0.0.1:{port}")), "{text}");
    // the packaged service's hotkey is a credential, gone while it is stopped: the state file is
    // found without it
    std::fs::rename(s.path("hotkey"), s.path("hotkey.away")).unwrap();
    let keyless = status(&s, "agent.toml", true);
    keyless.expect_code(1);
    assert_eq!(keyless.json()["miners"], view["miners"], "{keyless}");
    std::fs::rename(s.path("hotkey.away"), s.path("hotkey")).unwrap();
    assert_eq!((proxy.connections(), github_calls(&gh)), (contacts, calls), "status reached a validator or GitHub");

    // --- stale: the same state under a 1 s interval is older than 2 × (1 s + 0 s): undetermined
    s.write("fast.toml", &quiet_config(port, gh_addr, "1s", &validators), 0o600);
    // (its times moved back 3 s, as if 3 s had passed since the last pass)
    crate::support::state::pass_time(&crate::support::state::path(&s, "state"), 3);
    let stale = status(&s, "fast.toml", true);
    stale.expect_code(3);
    let sv = stale.json();
    assert_eq!((sv["miners"][0]["stale"].as_bool(), sv["verdict"].as_str()), (Some(true), Some("undetermined")));
    assert_eq!(sv["stale_after_s"], 2);
    assert!(status(&s, "fast.toml", false).stdout.contains("stale: no pass for more than 2s"));
}

#[test]
fn status_with_no_agent_and_no_state_is_undetermined_and_names_the_missing_file() {
    let s = scratch();
    let port = free_port();
    s.write(
        "agent.toml",
        &quiet_config(
            port,
            "127.0.0.1:9".parse().unwrap(),
            "15m",
            &static_validator(1, VALIDATOR_HOTKEY, "127.0.0.1", 9, 20000.0),
        ),
        0o600,
    );
    let run = status(&s, "agent.toml", true);
    run.expect_code(3);
    let v = run.json();
    assert_eq!(v["source"], "state_file");
    assert!(v["note"].as_str().is_some_and(|n| n.contains("no state file in")), "{run}");
    assert_eq!(v["miners"][0]["problem"]["kind"], "no_state");
    // no hotkey and no state file: nothing to show, said so (not a configuration error)
    std::fs::remove_file(s.path("hotkey")).unwrap();
    let keyless = status(&s, "agent.toml", true);
    keyless.expect_code(3);
    let problem = &keyless.json()["miners"][0]["problem"];
    assert_eq!(problem["kind"], "hotkey_unreadable", "{keyless}");
    assert!(
        problem["message"].as_str().is_some_and(|m| m.contains("hotkey") && m.contains("no state file")),
        "{problem}"
    );
    s.hotkey("hotkey", crate::support::python::DENDRITE_SEED);
    // "off": no agent to ask, straight to the files
    let off =
        s.run_env(&["status", "--config", "agent.toml", "--listen", "off", "--json"], &[], Duration::from_secs(30));
    off.expect_code(3);
    assert!(off.json()["note"].as_str().is_some_and(|n| n.starts_with("[agent] listen is off")), "{off}");
}
