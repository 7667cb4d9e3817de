//! The agent's main loop in tokio's paused time, over the scripted transport: its scheduling is
//! asserted on the virtual times of the calls it makes, with no real sleep and no socket.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::reload::Signal;
use super::*;
use crate::config::Overrides;
use crate::reconcile::transport::Transport;
use crate::reconcile::transport::script::{self, Call, Script};

mod tell;

const T0: Secs = 1_800_000_000;
const VALIDATOR: &str = "5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi";

fn no_reload() -> Result<Settings, ConfigError> {
    Err(ConfigError::Parse { path: "test".into(), message: "no reloads in this test".into() })
}

/// Settings from the TOML `text`, with a hotkey file in `dir`, the state in `dir/state`, the PAT
/// `pat` and no endpoint.
fn settings_of(dir: &Path, text: &str, pat: &str) -> Settings {
    let hotkey = dir.join("hotkey");
    std::fs::write(&hotkey, format!("{{\"secretSeed\":\"0x{}\"}}", "42".repeat(32))).unwrap();
    let ov = Overrides {
        pat: Some(pat.into()),
        hotkey_file: Some(hotkey.display().to_string()),
        state_dir: Some(dir.join("state").display().to_string()),
        listen: Some("off".into()),
        ..Overrides::default()
    };
    Settings::build(None, Some(text), &ov, |_| None).unwrap()
}

/// One validator, uid 1, and `extra` TOML.
fn settings(dir: &Path, extra: &str) -> Settings {
    let text = format!(
        "[[validators.static]]\nuid = 1\nhotkey = \"{VALIDATOR}\"\nip = \"127.0.0.1\"\nport = 9\nstake = 20000.0\nvtrust = 0.9\n{extra}"
    );
    settings_of(dir, &text, "ghp_agentSchedulingTest0001")
}

/// A running agent: its stop sender and its task.
type Running = (mpsc::Sender<Signal>, tokio::task::JoinHandle<Result<(), AgentError>>);

/// Start the agent on `script` (its transport and clock), notifications to `poster`.
fn start_with(s: Settings, script: &Arc<Script>, poster: Option<Arc<dyn crate::notify::Poster>>) -> Running {
    let (deps, tx) = Deps::scripted(script, poster);
    (tx, tokio::spawn(async move { run_with(s, &no_reload, Options::default(), deps).await }))
}

/// Start the agent on `script`.
fn start(s: Settings, script: &Arc<Script>) -> Running {
    start_with(s, script, None)
}

/// SIGTERM, and wait (virtual time) for a clean exit; returns how long it took.
async fn stop((tx, agent): Running) -> Duration {
    let t = tokio::time::Instant::now();
    tx.send(Signal::Stop("SIGTERM")).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(300), agent).await.expect("the agent stops").unwrap();
    assert!(r.is_ok(), "{r:?}");
    t.elapsed()
}

fn times(log: &[(Secs, Call)], call: &Call) -> Vec<Secs> {
    log.iter().filter(|(_, c)| c == call).map(|(t, _)| *t).collect()
}

#[tokio::test(start_paused = true)]
async fn a_restarted_validator_is_repaired_at_the_next_probe_sweep_not_the_next_interval() {
    let dir = tempfile::tempdir().unwrap();
    let script = Script::on_tokio_time(T0);
    script.on_check(1, script::valid()).probes_answer(1, script::alive("uuid-before"));
    let agent = start(settings(dir.path(), ""), &script);

    tokio::time::sleep(Duration::from_secs(120)).await;
    let log = script.log();
    assert_eq!(times(&log, &Call::Check(1)), vec![T0], "the first round checks it: {log:?}");
    let probes = times(&log, &Call::Probe(1));
    assert!(probes.len() >= 3, "then the sweeps probe it: {log:?}");
    assert!(probes.windows(2).all(|w| (25..=30).contains(&(w[1] - w[0]))), "every 25 s + up to 5 s: {probes:?}");

    // The validator restarts: refused for 40 s, then a new process with an empty store.
    script.probes_answer(1, script::refused());
    tokio::time::sleep(Duration::from_secs(40)).await;
    let back = script.clock().now();
    script.probes_answer(1, script::alive("uuid-after"));
    script.on_check(1, script::no_pat()).on_broadcast(1, script::broadcast(true, None)).on_check(1, script::valid());
    tokio::time::sleep(Duration::from_secs(60)).await;
    let log = script.log();
    let sent = times(&log, &Call::Broadcast(1));
    assert_eq!(sent.len(), 1, "{log:?}");
    assert!(sent[0] >= back && sent[0] <= back + 30, "repaired {} s after it answered again", sent[0] - back);
    let checks = times(&log, &Call::Check(1));
    assert_eq!(checks.iter().filter(|t| **t == sent[0]).count(), 2, "checked, then confirmed, in that pass: {log:?}");
    assert_eq!(script.unused(), 0);
    stop(agent).await;
}

#[tokio::test(start_paused = true)]
async fn without_probes_a_restart_waits_for_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let script = Script::on_tokio_time(T0);
    script.on_check(1, script::valid());
    let fixed = "[reconcile]\nprobe_interval = \"off\"\ngithub_budget = \"off\"\ninterval = \"15m\"\njitter = \"0s\"\n";
    let agent = start(settings(dir.path(), fixed), &script);
    tokio::time::sleep(Duration::from_secs(300)).await;
    // it lost its store at T0+300; nobody looks until the next check, an interval after the first
    script.on_check(1, script::no_pat()).on_broadcast(1, script::broadcast(true, None)).on_check(1, script::valid());
    tokio::time::sleep(Duration::from_secs(700)).await;
    let log = script.log();
    assert!(times(&log, &Call::Probe(1)).is_empty(), "no probes: {log:?}");
    assert_eq!(times(&log, &Call::Broadcast(1)), vec![T0 + 900], "{log:?}");
    stop(agent).await;
}

#[tokio::test(start_paused = true)]
async fn the_state_saved_at_a_stop_holds_the_budget_ledger_and_the_axon_uuid() {
    let dir = tempfile::tempdir().unwrap();
    let script = Script::on_tokio_time(T0);
    script.on_check(1, script::valid()).probes_answer(1, script::alive("uuid-x"));
    let s = settings(dir.path(), "");
    let file = crate::reconcile::state::StateFile::new(&s.agent.state_dir, our_ss58().as_str(), 74);
    let agent = start(s, &script);
    tokio::time::sleep(Duration::from_secs(60)).await;
    stop(agent).await;
    let state = file.load(&our_ss58(), 74);
    let h = &state.validators[&1];
    assert_eq!(h.axon_uuid.as_deref(), Some("uuid-x"));
    // the check of a held PAT and the first hourly telemetry preflight
    assert_eq!(state.github.spent(script.clock().now()), 4);
}

fn our_ss58() -> String {
    crate::wallet::Hotkey::from_seed(&[0x42; 32]).ss58().to_string()
}

/// A reload keeps the miner's dendrite (its uuid, its per-axon turns) unless the IP it sends
/// changed; the dendrite itself is where that IP is remembered.
#[test]
fn a_reload_rebuilds_the_dendrite_only_when_the_external_ip_changes() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), "");
    let hotkey = s.miners[0].load_hotkey().unwrap();
    let mut miner = Miner::open(&s, &s.miners[0], hotkey, true).unwrap();
    let first = Arc::clone(&miner.dendrite);
    assert_eq!(first.external_ip(), "0.0.0.0");
    miner.update(&s, &s.miners[0]).unwrap();
    assert!(Arc::ptr_eq(&first, &miner.dendrite), "same IP: the dendrite is kept");
    let moved = settings(dir.path(), "[agent]\nexternal_ip = \"192.0.2.7\"\n");
    miner.update(&moved, &moved.miners[0]).unwrap();
    assert_eq!(miner.dendrite.external_ip(), "192.0.2.7");
    assert_ne!(miner.dendrite.uuid(), first.uuid(), "a new IP: a new dendrite");
}
