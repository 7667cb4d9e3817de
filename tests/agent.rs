//! `patrol run` as a systemd service, on the real binary (issue 6): the notify protocol, reload
//! (SIGHUP and file changes), graceful stop mid-pass, PAT rotation, `/metrics` as strict Prometheus
//! text, several miners sharing one validator-set read, `--dry-run`; and `patrol doctor` (in
//! `agent/doctor.rs`).
//!
//! Validators are `patrol validator serve` (the embedded reference validator: starts in
//! milliseconds) or, where a scripted fault is needed (a broadcast that hangs), the real Python
//! `bt.Axon`. GitHub is the in-process fake. Everything is on 127.0.0.1; every child process is
//! killed on drop; every wait is bounded.

/// `patrol doctor` against a static list, the mock chain and broken setups.
mod doctor;
/// `patrol status`: the agent's view over `/status`, the state-file fallback, stale state (issue 21).
mod status;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::agent::{
    Agent, NotifySocket, RefValidator, content_type, free_port, http_get, parse_prometheus, replace_file, value,
};
use crate::support::wait_for;
use patrol::lab::fake_github::{FakeAccount, FakeGithubConfig, spawn_fake_github};
use patrol::wallet::Hotkey;
use serde_json::json;

use crate::support::cli::{Scratch, dead_port, static_validator};
use crate::support::mock_node::{Fixture, MockNode};
use crate::support::python::{DENDRITE_HOTKEY, DENDRITE_SEED, PyAxon, VALIDATOR_HOTKEY, VALIDATOR_SEED};
use crate::support::root;

const PAT: &str = "ghp_patrolAgentToken0000000000000000001";
const PAT2: &str = "ghp_patrolAgentToken0000000000000000002";
/// A second miner's hotkey seed (0x44 × 32).
const MINER2_SEED: &str = "0x4444444444444444444444444444444444444444444444444444444444444444";

/// Generous bounds: debug binaries on a loaded 2-core machine.
const START: Duration = Duration::from_secs(30);

fn hotkey_of(seed: &str) -> String {
    Hotkey::from_seed_hex(seed).unwrap().ss58().to_string()
}

/// A fake GitHub knowing both test PATs (same account, so validators' identity pin holds).
async fn github() -> SocketAddr {
    let (addr, _handle) = spawn_fake_github(
        FakeGithubConfig::default()
            .with_account(FakeAccount::new(PAT, 4242, "agent-miner").expiring("2031-01-01 00:00:00 UTC"))
            .with_account(FakeAccount::new(PAT2, 4242, "agent-miner")),
    )
    .await;
    addr
}

/// A config with one miner (`hotkey`, `pat` in the scratch dir), fast timers, `extra` appended.
fn config(port: Option<u16>, gh: SocketAddr, validators: &str, extra: &str) -> String {
    let listen = port.map(|p| format!("127.0.0.1:{p}")).unwrap_or_else(|| "off".into());
    format!(
        "[wallet]\nhotkey_file = \"hotkey\"\n[pat]\nfile = \"pat\"\n\
         [agent]\nstate_dir = \"state\"\nlisten = \"{listen}\"\n\
         [github]\napi_url = \"http://{gh}\"\ntimeout = \"3s\"\n\
         [reconcile]\ninterval = \"60s\"\njitter = \"0s\"\ncheck_timeout = \"3s\"\nbroadcast_timeout = \"3s\"\n\
         backoff_initial = \"1s\"\nbackoff_max = \"5s\"\n{extra}\n{validators}"
    )
}

/// A fake GitHub, a reference validator for our miner and a scratch dir with the miner's files and
/// `agent.toml`: the validator as uid 1 (stake 20 000), the endpoint on `port`, `extra` appended.
async fn one_validator(port: Option<u16>, extra: &str) -> (SocketAddr, RefValidator, Scratch) {
    let (gh, v, s) = for_miner().await;
    s.write("agent.toml", &config(port, gh, &v.entry(1, 20000.0), extra), 0o600);
    (gh, v, s)
}

/// A fake GitHub, a reference validator for our miner and a scratch dir with the miner's files, for
/// a test that writes its own `agent.toml`.
async fn for_miner() -> (SocketAddr, RefValidator, Scratch) {
    let gh = github().await;
    let v = RefValidator::for_miner(gh);
    (gh, v, scratch())
}

fn scratch() -> Scratch {
    let mut s = Scratch::new();
    s.hotkey("hotkey", DENDRITE_SEED);
    s.pat("pat", PAT);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_socket_gets_ready_status_watchdog_stopping_in_order() {
    let port = free_port();
    let (_, v, s) = one_validator(Some(port), "").await;
    let notify = NotifySocket::bind(s.dir.path());
    let sock = notify.path.to_string_lossy().into_owned();
    let mut agent = Agent::start(
        &s,
        &["--config", "agent.toml"],
        &[("NOTIFY_SOCKET", &sock), ("WATCHDOG_USEC", "300000")],
        Some(port),
        &[PAT],
    );
    let ready = notify.wait("READY=1", START);
    let status = notify.messages()[ready].clone();
    assert!(
        status.contains("STATUS=1/1 covered (100.0% stake), next pass "),
        "READY carries the status line: {status:?}\n{}",
        agent.log()
    );
    // the first pass sent the PAT: the validator stores exactly it
    assert_eq!(v.pat_of(DENDRITE_HOTKEY).as_deref(), Some(PAT));
    let watchdog = notify.wait("WATCHDOG=1", Duration::from_secs(5));
    agent.signal(libc::SIGTERM);
    let stopping = notify.wait("STOPPING=1", Duration::from_secs(10));
    let st = agent.wait_exit(Duration::from_secs(10));
    assert_eq!(st.code(), Some(0), "{}", agent.log());
    assert!(ready < watchdog && watchdog < stopping, "order READY < WATCHDOG < STOPPING: {:?}", notify.messages());
    assert!(
        notify.messages()[..ready].iter().all(|m| !m.contains("WATCHDOG=1")),
        "no watchdog ping before READY (systemd arms it only then): {:?}",
        notify.messages()
    );
    // without WATCHDOG_USEC / NOTIFY_SOCKET the agent runs the same, silently (every other test)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_health_endpoints_answer() {
    let (gh, v, s) = for_miner().await;
    let port = free_port();
    let validators =
        [v.entry(1, 30000.0), static_validator(2, VALIDATOR_HOTKEY, "127.0.0.1", dead_port(), 20000.0)].concat();
    s.write("agent.toml", &config(Some(port), gh, &validators, ""), 0o600);
    let agent = Agent::start(&s, &["--config", "agent.toml"], &[], Some(port), &[PAT]);
    let hk = [("hotkey", DENDRITE_HOTKEY)];
    agent.wait_metric("patrol_passes_total", &hk, START, |v| v >= 1.0);
    let m = agent.metrics();
    let v1 = |name: &str, extra: &[(&str, &str)]| {
        let mut l = hk.to_vec();
        l.extend_from_slice(extra);
        value(&m, name, &l).unwrap_or_else(|| panic!("no {name}{l:?} in /metrics"))
    };
    assert_eq!(v1("patrol_coverage_validators", &[("category", "valid")]), 1.0);
    assert_eq!(v1("patrol_coverage_validators", &[("category", "no_response")]), 1.0);
    assert_eq!(v1("patrol_eligible_validators", &[]), 2.0);
    assert_eq!(v1("patrol_stake_weighted_coverage_ratio", &[]), 0.6);
    assert_eq!(v1("patrol_validator_state", &[("uid", "1"), ("category", "valid")]), 1.0);
    assert_eq!(v1("patrol_validator_state", &[("uid", "2"), ("category", "no_response")]), 1.0);
    assert_eq!(v1("patrol_broadcasts_total", &[("outcome", "accepted")]), 1.0);
    assert!(v1("patrol_checks_total", &[("category", "no_pat")]) >= 1.0);
    assert!(v1("patrol_pass_duration_seconds", &[]) > 0.0);
    assert_eq!(v1("patrol_pat_preflight", &[("outcome", "valid")]), 1.0);
    assert_eq!(v1("patrol_pat_expiry_timestamp_seconds", &[]), 1_924_992_000.0);
    assert_eq!(value(&m, "patrol_metagraph_reads_total", &[("netuid", "74"), ("source", "static")]), Some(1.0));
    assert!(value(&m, "patrol_metagraph_age_seconds", &[("netuid", "74")]).is_some());
    assert_eq!(value(&m, "patrol_build_info", &[]), Some(1.0));
    // not every validator covered yet: no full-coverage timestamp
    assert_eq!(value(&m, "patrol_last_full_coverage_timestamp_seconds", &hk), None);
    // the dead validator is re-checked on its own backoff timer, before the next round (60 s)
    agent.wait_metric("patrol_rechecks_total", &hk, Duration::from_secs(15), |v| v >= 1.0);
    assert_eq!(value(&agent.metrics(), "patrol_passes_total", &hk), Some(1.0));

    assert_eq!(agent.get("/healthz"), (200, "ok\n".into()));
    assert_eq!(agent.get("/readyz"), (200, "ready\n".into()));
    assert_eq!(agent.get("/nope").0, 404);
    assert_eq!(value(&agent.metrics(), "patrol_ready", &[]), Some(1.0));
    // Prometheus negotiates OpenMetrics; curl gets the classic format
    let om = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    assert!(content_type(port, "/metrics", Some(om)).starts_with("application/openmetrics-text"));
    assert!(content_type(port, "/metrics", None).starts_with("text/plain; version=0.0.4"));
    let (_, body) = agent.get_with("/metrics", Some(om));
    assert!(body.ends_with("# EOF\n") && body.contains("# TYPE patrol_broadcasts counter"), "{body}");
    let (_, classic) = agent.get("/metrics");
    assert!(!classic.contains("# EOF") && classic.contains("# TYPE patrol_broadcasts_total counter"));
    let _ = agent.log(); // leak check
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rejects_a_broken_config_keeps_serving_and_applies_a_good_one() {
    let (gh, v, s) = for_miner().await;
    let port = free_port();
    let one = v.entry(1, 20000.0);
    s.write("agent.toml", &config(Some(port), gh, &one, ""), 0o600);
    let notify = NotifySocket::bind(s.dir.path());
    let sock = notify.path.to_string_lossy().into_owned();
    let mut agent = Agent::start(&s, &["--config", "agent.toml"], &[("NOTIFY_SOCKET", &sock)], Some(port), &[PAT]);
    let hk = [("hotkey", DENDRITE_HOTKEY)];
    notify.wait("READY=1", START);
    assert_eq!(value(&agent.metrics(), "patrol_eligible_validators", &hk), Some(1.0));

    // broken: an unknown key (the file watcher may reload too; SIGHUP certainly does)
    replace_file(&s.path("agent.toml"), &format!("{}\n[agent2]\nx = 1\n", config(Some(port), gh, &one, "")), 0o600);
    agent.signal(libc::SIGHUP);
    agent.wait_log("configuration reload rejected", Duration::from_secs(10));
    assert!(agent.log().contains("SIGHUP: reloading"), "{}", agent.log());
    agent.wait_metric("patrol_reloads_total", &[("result", "rejected")], Duration::from_secs(5), |v| v >= 1.0);
    // the old configuration keeps running and serving
    let m = agent.metrics();
    assert_eq!(value(&m, "patrol_eligible_validators", &hk), Some(1.0));
    assert_eq!(value(&m, "patrol_reloads_total", &[("result", "applied")]), Some(0.0));
    wait_for(Duration::from_secs(5), "STATUS saying the reload was rejected", || {
        notify.last_status().is_some_and(|st| st.contains("reload rejected")).then_some(())
    });
    let reloading = notify.position("RELOADING=1").expect("RELOADING=1 sent");
    let msg = &notify.messages()[reloading];
    assert!(msg.lines().any(|l| l.starts_with("MONOTONIC_USEC=")), "RELOADING=1 carries MONOTONIC_USEC: {msg:?}");

    // broken too: a typo in the PAT path (issue 20 item 11) is rejected like a hotkey typo, not
    // applied with the miner left unreconciled while /readyz says ready
    let typo = config(Some(port), gh, &one, "").replace("file = \"pat\"", "file = \"pta\"");
    replace_file(&s.path("agent.toml"), &typo, 0o600);
    agent.signal(libc::SIGHUP);
    agent.wait_metric("patrol_reloads_total", &[("result", "rejected")], Duration::from_secs(10), |v| v >= 2.0);
    assert!(agent.log().contains("pta"), "the rejection names the PAT file: {}", agent.log());
    let m = agent.metrics();
    assert_eq!(value(&m, "patrol_reloads_total", &[("result", "applied")]), Some(0.0));
    assert_ne!(
        value(&m, "patrol_miner_problem", &[("hotkey", DENDRITE_HOTKEY), ("kind", "pat_unavailable")]),
        Some(1.0)
    );
    assert_eq!(value(&m, "patrol_ready", &[]), Some(1.0));

    // broken by what the file is, not what it says: the rejection gives the cause, not only
    // "cannot read config file"
    let huge = format!("{}\n#{}\n", config(Some(port), gh, &one, ""), "x".repeat(1024 * 1024));
    replace_file(&s.path("agent.toml"), &huge, 0o600);
    agent.signal(libc::SIGHUP);
    agent.wait_metric("patrol_reloads_total", &[("result", "rejected")], Duration::from_secs(10), |v| v >= 3.0);
    assert!(agent.log().contains("is larger than 1048576 bytes"), "the rejection says why: {}", agent.log());

    // good: a second validator; applied, and a pass runs at once on the new set
    let two = [one.clone(), static_validator(2, VALIDATOR_HOTKEY, "127.0.0.1", dead_port(), 20000.0)].concat();
    replace_file(&s.path("agent.toml"), &config(Some(port), gh, &two, ""), 0o600);
    agent.signal(libc::SIGHUP);
    agent.wait_metric("patrol_reloads_total", &[("result", "applied")], Duration::from_secs(10), |v| v >= 1.0);
    agent.wait_metric("patrol_eligible_validators", &hk, Duration::from_secs(10), |v| v == 2.0);
    let after: Vec<String> = notify.messages()[reloading..].to_vec();
    assert!(after.iter().any(|m| m.contains("READY=1")), "READY=1 after each reload: {after:?}");
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_pass_exits_0_within_the_broadcast_timeout_and_leaves_a_valid_state_file() {
    let gh = github().await;
    // check: the empty store says no_pat; broadcast: the handler hangs far beyond our timeout
    let axon = PyAxon::with_config(json!({"broadcast": "sleep:30"}));
    let s = scratch();
    s.write(
        "agent.toml",
        &config(None, gh, &static_validator(1, VALIDATOR_HOTKEY, "127.0.0.1", axon.port(), 20000.0), ""),
        0o600,
    );
    let mut agent = Agent::start(&s, &["--config", "agent.toml"], &[], None, &[PAT]);
    // the broadcast is in the axon's handler now (it counts a call before running it)
    agent.wait_log("PAT preflight passed", START);
    wait_for(START, "the broadcast at the axon's handler", || {
        axon.handler_calls().get("PatBroadcastSynapse").is_some_and(|n| *n >= 1).then_some(())
    });
    let t0 = Instant::now();
    agent.signal(libc::SIGTERM);
    let st = agent.wait_exit(Duration::from_secs(15));
    let took = t0.elapsed();
    assert_eq!(st.code(), Some(0), "{}", agent.log());
    let broadcast_timeout = Duration::from_secs(3);
    assert!(took <= broadcast_timeout + Duration::from_millis(1500), "took {took:?}\n{}", agent.log());
    let log = agent.log();
    assert!(log.contains("SIGTERM: stopping") && log.contains("stopped"), "{log}");
    // the state file is whole, and records the broadcast that was in flight
    let path = s.path(&format!("state/state-{DENDRITE_HOTKEY}-74.json"));
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(state["version"], 1);
    assert_eq!(state["hotkey"], DENDRITE_HOTKEY);
    assert_eq!(state["validators"]["1"]["broadcasts"], 1, "{state}");
    assert!(state["validators"]["1"]["last_broadcast_at"].is_u64(), "{state}");
    assert!(!std::fs::read_to_string(&path).unwrap().contains(PAT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_pat_file_triggers_a_pass_that_rebroadcasts_it() {
    let port = free_port();
    let (_, v, s) = one_validator(Some(port), "").await;
    let agent = Agent::start(&s, &["--config", "agent.toml"], &[], Some(port), &[PAT, PAT2]);
    wait_for(START, "the first PAT at the validator", || {
        (v.pat_of(DENDRITE_HOTKEY).as_deref() == Some(PAT)).then_some(())
    });
    agent.wait_metric("patrol_passes_total", &[("hotkey", DENDRITE_HOTKEY)], START, |v| v >= 1.0);
    // rotate as a script would: write a new file, rename it over the old one (interval is 60 s, so
    // only the file watcher can make the next pass happen this soon)
    replace_file(&s.path("pat"), &format!("{PAT2}\n"), 0o600);
    wait_for(Duration::from_secs(15), "the new PAT at the validator", || {
        (v.pat_of(DENDRITE_HOTKEY).as_deref() == Some(PAT2)).then_some(())
    });
    let log = agent.log();
    assert!(log.contains("changed on disk: reloading") && log.contains("the PAT changed"), "{log}");
    agent.wait_metric("patrol_broadcasts_total", &[("outcome", "accepted")], Duration::from_secs(5), |v| v >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_miners_share_one_validator_set_read_and_metrics_are_labelled_by_hotkey() {
    let gh = github().await;
    let miner2 = hotkey_of(MINER2_SEED);
    let v = RefValidator::start(VALIDATOR_SEED, &[(0, DENDRITE_HOTKEY), (1, &miner2)], gh);
    let mut s = scratch();
    s.hotkey("hotkey2", MINER2_SEED);
    s.pat("pat2", PAT2);
    let port = free_port();
    let base = config(Some(port), gh, &v.entry(1, 20000.0), "");
    // [[miner]] entries instead of the top-level [wallet]/[pat]
    let miners = "[[miner]]\nname = \"alpha\"\nwallet = { hotkey_file = \"hotkey\" }\npat = { file = \"pat\" }\n\
                  [[miner]]\nname = \"beta\"\nwallet = { hotkey_file = \"hotkey2\" }\npat = { file = \"pat2\" }\n";
    let cfg = base.replace("[wallet]\nhotkey_file = \"hotkey\"\n[pat]\nfile = \"pat\"\n", miners);
    s.write("agent.toml", &cfg, 0o600);
    let notify = NotifySocket::bind(s.dir.path());
    let sock = notify.path.to_string_lossy().into_owned();
    let agent = Agent::start(&s, &["--config", "agent.toml"], &[("NOTIFY_SOCKET", &sock)], Some(port), &[PAT, PAT2]);
    let ready = notify.wait("READY=1", START);
    let m = agent.metrics();
    for hk in [DENDRITE_HOTKEY, miner2.as_str()] {
        assert_eq!(value(&m, "patrol_passes_total", &[("hotkey", hk)]), Some(1.0), "{hk}");
        assert_eq!(value(&m, "patrol_coverage_validators", &[("hotkey", hk), ("category", "valid")]), Some(1.0));
        assert_eq!(value(&m, "patrol_broadcasts_total", &[("hotkey", hk), ("outcome", "accepted")]), Some(1.0));
    }
    // two passes, one read of the validator set
    assert_eq!(value(&m, "patrol_metagraph_reads_total", &[("netuid", "74")]), Some(1.0));
    assert_eq!(v.pat_of(DENDRITE_HOTKEY).as_deref(), Some(PAT));
    assert_eq!(v.pat_of(&miner2).as_deref(), Some(PAT2));
    let status = &notify.messages()[ready];
    assert!(
        status.contains("alpha: 1/1 covered (100.0% stake); beta: 1/1 covered (100.0% stake), next pass"),
        "{status:?}"
    );
    let _ = agent.log();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_miners_on_the_chain_cost_one_neurons_read_per_round() {
    let gh = github().await;
    let node = MockNode::start(Fixture::synthetic_netuid74()).await;
    let mut s = scratch();
    s.hotkey("hotkey2", MINER2_SEED);
    s.pat("pat2", PAT2);
    let port = free_port();
    let miners = "[[miner]]\nname = \"alpha\"\nwallet = { hotkey_file = \"hotkey\" }\npat = { file = \"pat\" }\n\
                  [[miner]]\nname = \"beta\"\nwallet = { hotkey_file = \"hotkey2\" }\npat = { file = \"pat2\" }\n";
    let cfg = config(Some(port), gh, &format!("[chain]\nnetwork = \"{}\"\nnetuid = 74\n", node.url()), "")
        .replace("[wallet]\nhotkey_file = \"hotkey\"\n[pat]\nfile = \"pat\"\n", miners);
    s.write("agent.toml", &cfg, 0o600);
    let agent = Agent::start(&s, &["--config", "agent.toml"], &[], Some(port), &[PAT, PAT2]);
    let neurons = "state_call NeuronInfoRuntimeApi_get_neurons_lite";
    // neither test hotkey is registered on the synthetic subnet: both miners say so, nothing is sent
    let miner2 = hotkey_of(MINER2_SEED);
    for hk in [DENDRITE_HOTKEY, miner2.as_str()] {
        agent.wait_metric("patrol_miner_problem", &[("hotkey", hk), ("kind", "not_registered")], START, |v| v == 1.0);
    }
    assert_eq!(node.calls(neurons), 1, "one read for two miners: {:?}", node.log());
    agent.signal(libc::SIGHUP);
    agent.wait_metric("patrol_metagraph_reads_total", &[("netuid", "74"), ("source", "chain")], START, |v| v >= 2.0);
    assert_eq!(node.calls(neurons), 2, "{:?}", node.log());
    assert!(agent.log().contains("is not registered on netuid 74"), "{}", agent.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_never_sends_the_pat_nor_writes_state() {
    let (_, v, s) = one_validator(None, "").await;
    let notify = NotifySocket::bind(s.dir.path());
    let sock = notify.path.to_string_lossy().into_owned();
    let mut agent =
        Agent::start(&s, &["--config", "agent.toml", "--dry-run"], &[("NOTIFY_SOCKET", &sock)], None, &[PAT]);
    let ready = notify.wait("READY=1", START);
    let status = notify.messages()[ready].clone();
    assert!(status.contains("STATUS=dry run: 0/1 covered (0.0% stake), 1 no_pat uid 1"), "{status:?}");
    agent.signal(libc::SIGINT);
    assert_eq!(agent.wait_exit(Duration::from_secs(10)).code(), Some(0));
    // stopped: whatever the dry run did in its whole life, it stored nothing
    assert!(v.store().is_empty(), "a dry run stored a PAT: {:?}", v.store());
    assert!(!s.path("state").join(format!("state-{DENDRITE_HOTKEY}-74.json")).exists(), "a dry run wrote state");
    // the plan is in the log: the uncovered validator's line names the broadcast a real run would send
    // (the start-up line's `dry_run=true` is printed whatever happens, so it proves nothing)
    assert!(agent.log().contains("would_broadcast"), "{}", agent.log());
}

#[test]
fn a_taken_listen_address_is_a_config_error() {
    let s = scratch();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    // no validator source is ever read: both failures come first
    let nowhere = "[chain]\nnetwork = \"ws://127.0.0.1:9\"\n";
    let cfg = config(Some(port), "127.0.0.1:9".parse().unwrap(), nowhere, "");
    s.write("agent.toml", &cfg, 0o600);
    let run = s.run_env(&["run", "--config", "agent.toml"], &[], Duration::from_secs(30));
    run.expect_code(78);
    assert!(run.stderr.contains("cannot listen on") && run.stderr.contains("--listen"), "{run}");
    // another patrol holding the state: refused, not interleaved
    let s2 = scratch();
    s2.write("agent.toml", &config(None, "127.0.0.1:9".parse().unwrap(), nowhere, ""), 0o600);
    let lock = patrol::reconcile::state::StateFile::new(&s2.path("state"), DENDRITE_HOTKEY, 74);
    let _held = lock.try_lock().unwrap();
    let run = s2.run_env(&["run", "--config", "agent.toml"], &[], Duration::from_secs(30));
    run.expect_code(78);
    assert!(run.stderr.contains("locked by another patrol process"), "{run}");
}

#[test]
fn metrics_parser_is_strict() {
    assert!(parse_prometheus("# TYPE a gauge\na 1\n").is_ok());
    assert!(parse_prometheus("# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\"} 2\n").is_ok());
    for bad in [
        "a 1\n",                            // undeclared
        "# TYPE a gauge\na 1",              // no final newline
        "# TYPE a gauge\na{x=1} 1\n",       // unquoted
        "# TYPE a gauge\na{1x=\"1\"} 1\n",  // bad label name
        "# TYPE a gauge\na one\n",          // bad value
        "# TYPE a gauge\na 1\na 2\n",       // duplicate series
        "# TYPE a counter\na 1\n",          // counter without _total
        "# TYPE a gauge\n# TYPE a gauge\n", // two TYPEs
        "# TYPE a gauge\na{x=\"1\"\n",      // unterminated
    ] {
        assert!(parse_prometheus(bad).is_err(), "accepted {bad:?}");
    }
}

/// Open `n` connections to the agent's endpoint: silent ones, and slowloris ones that send half a
/// request head (and never the rest).
fn endpoint_flood(port: u16, n: usize) -> Vec<std::net::TcpStream> {
    use std::io::Write;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    (0..n)
        .filter_map(|i| {
            let mut c = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
            if i % 2 == 1 {
                let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
            }
            Some(c)
        })
        .collect()
}

/// `last_pass_at` of the miner's state file, if it has one.
fn last_pass_at(s: &Scratch) -> Option<u64> {
    let text = std::fs::read_to_string(s.path(&format!("state/state-{DENDRITE_HOTKEY}-74.json"))).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["last_pass_at"].as_u64()
}

/// Issue 20 item 7: 300 idle connections to `/metrics` under `LimitNOFILE=256` took every
/// descriptor ("cannot read PAT file: Too many open files": no checks, no saves). Under
/// `ulimit -n 64` (soft = hard: nothing to raise), 200 silent and slowloris connections: the
/// endpoint holds at most its cap (32, half the limit), a pass still completes and saves its state,
/// and `/metrics` is answered (a complete request displaces a connection without one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_endpoints_connections_at_their_cap_a_pass_completes_and_saves() {
    let (gh, v, s) = for_miner().await;
    let port = free_port();
    s.write(
        "agent.toml",
        &format!(
            "[wallet]\nhotkey_file = \"hotkey\"\n[pat]\nfile = \"pat\"\n\
             [agent]\nstate_dir = \"state\"\nlisten = \"127.0.0.1:{port}\"\n\
             [github]\napi_url = \"http://{gh}\"\ntimeout = \"3s\"\n\
             [reconcile]\ninterval = \"2s\"\njitter = \"0s\"\ncheck_timeout = \"3s\"\nbroadcast_timeout = \"3s\"\n\
             github_budget = \"off\"\n{}",
            v.entry(1, 20000.0)
        ),
        0o600,
    );
    let wrapper = ["sh", "-c", "ulimit -n 64 && exec \"$0\" \"$@\""];
    let mut agent = Agent::start_wrapped(&wrapper, &s, &["--config", "agent.toml"], &[], Some(port), &[PAT]);
    agent.wait_log("open-file limit already at its hard limit", START);
    let hk = [("hotkey", DENDRITE_HOTKEY)];
    agent.wait_metric("patrol_passes_total", &hk, START, |v| v >= 1.0);
    let flood = endpoint_flood(port, 200);
    assert!(flood.len() >= 150, "only {} connections opened", flood.len());
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    // a pass that began after the flood: saved with a later last_pass_at
    wait_for(Duration::from_secs(40), "a pass saved after the flood", || last_pass_at(&s).filter(|&t| t > started + 1));
    let (status, body) = wait_for(Duration::from_secs(20), "/metrics answered during the flood", || {
        http_get(port, "/metrics", None).ok().filter(|(status, _)| *status == 200)
    });
    assert_eq!(status, 200);
    assert!(body.contains("patrol_passes_total"), "{body}");
    let fds = std::fs::read_dir(format!("/proc/{}/fd", agent.pid())).map(|d| d.count()).unwrap_or(0);
    eprintln!("the agent holds {fds} file descriptors of its 64 with 200 connections at its endpoint");
    let log = agent.log();
    assert!(!log.contains("Too many open files") && !log.contains("os error 24"), "{log}");
    drop(flood);
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(20)).code(), Some(0), "{}", agent.log());
}

/// `patrol run` raises its soft open-file limit to the hard one and says so.
#[test]
fn the_agent_raises_its_soft_open_file_limit_to_the_hard_one() {
    let s = scratch();
    s.write(
        "agent.toml",
        &format!(
            "[wallet]\nhotkey_file = \"hotkey\"\n[pat]\nfile = \"pat\"\n[agent]\nstate_dir = \"state\"\nlisten = \"off\"\n{}",
            static_validator(1, VALIDATOR_HOTKEY, "127.0.0.1", dead_port(), 20000.0)
        ),
        0o600,
    );
    let wrapper = ["sh", "-c", "ulimit -S -n 100 && exec \"$0\" \"$@\""];
    let mut agent = Agent::start_wrapped(&wrapper, &s, &["--config", "agent.toml"], &[], None, &[PAT]);
    agent.wait_log("raised the soft open-file limit to the hard limit", START);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", agent.pid())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap().to_string();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[3], fields[4], "soft = hard: {line}");
    assert!(agent.log().contains("from=100"), "{}", agent.log());
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(20)).code(), Some(0), "{}", agent.log());
}

/// Issue 20 item 15: a state the agent cannot save (a full disk: its state dir on a full tmpfs in a
/// mount namespace of its own) is visible to monitoring — `/readyz` fails saying why,
/// `patrol_state_save_failed` is 1 — and logged once, not after every sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_that_cannot_be_saved_is_not_ready_and_logged_once() {
    let port = free_port();
    let (_, _v, s) = one_validator(Some(port), "probe_interval = \"1s\"\nprobe_jitter = \"0s\"").await;
    let state = s.path("state");
    std::fs::create_dir_all(&state).unwrap();
    let wrapper = root::full_disk_at(&state);
    let mut agent = Agent::start_wrapped(
        &crate::support::process::strs(&wrapper),
        &s,
        &["--config", "agent.toml"],
        &[],
        Some(port),
        &[PAT],
    );
    let hk = [("hotkey", DENDRITE_HOTKEY)];
    agent.wait_metric("patrol_state_save_failed", &hk, START, |v| v == 1.0);
    let (code, body) = agent.get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("cannot be saved") && body.contains("No space left"), "{body}");
    assert_eq!(value(&agent.metrics(), "patrol_ready", &[]), Some(0.0));
    // several probe sweeps later: still one error line
    agent.wait_metric("patrol_probes_total", &hk, Duration::from_secs(20), |v| v >= 5.0);
    let log = agent.log();
    assert_eq!(log.matches("cannot save the state; retrying").count(), 1, "{log}");
    agent.signal(libc::SIGTERM);
    let _ = agent.wait_exit(Duration::from_secs(10));
}
