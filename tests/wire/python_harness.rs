//! Self-tests of the Python harness: a real `bt.Dendrite` against a real `bt.Axon` (both
//! `bittensor==10.3.1`). They prove the harness before any Rust code is tested against it.

use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::python::{
    BLACKLISTED_HOTKEY, BLACKLISTED_SEED, DENDRITE_HOTKEY, DENDRITE_MNEMONIC, DENDRITE_SEED, DENDRITE_TIMEOUT, PyAxon,
    VALIDATOR_HOTKEY, py_dendrite, py_dendrite_async, py_dendrite_with, python,
};

const TOKEN_ENV: &str = "PATROL_TEST_PAT";

/// Sends `PatCheckSynapse` from the dev-phrase hotkey (plus `extra` flags).
fn check(axon: &PyAxon, extra: &[&str]) -> Vec<Value> {
    let target = axon.target();
    let mut args = vec!["--synapse", "check", "--axon", &target, "--seed", DENDRITE_SEED];
    args.extend_from_slice(extra);
    results(py_dendrite(&args))
}

/// Sends `PatBroadcastSynapse` carrying `token` (through the environment, never argv).
fn broadcast(axon: &PyAxon, token: &str, extra: &[&str]) -> Vec<Value> {
    let target = axon.target();
    let mut args = vec!["--synapse", "broadcast", "--axon", &target, "--seed", DENDRITE_SEED, "--token-env", TOKEN_ENV];
    args.extend_from_slice(extra);
    results(py_dendrite_with(&args, &[(TOKEN_ENV, token)], DENDRITE_TIMEOUT))
}

fn results(v: Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_else(|| panic!("not a list: {v}"))
}

fn only(results: &[Value]) -> &Value {
    assert_eq!(results.len(), 1, "expected one result: {results:#?}");
    &results[0]
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[test]
fn setup_script_is_idempotent_and_fast_when_done() {
    let venv_python = python();
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(crate::support::repo().join("scripts/setup-python.sh"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run setup-python.sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(Path::new(&printed), venv_python);
    assert!(started.elapsed() < Duration::from_secs(5), "re-run took {:?}", started.elapsed());
}

#[test]
fn round_trip_check_broadcast_check() {
    let axon = PyAxon::start();
    assert_eq!(axon.hotkey(), VALIDATOR_HOTKEY);

    let first = check(&axon, &[]);
    let r = only(&first);
    assert_eq!(r["status_code"], 200, "{r:#}");
    assert_eq!(r["is_success"], true);
    assert_eq!(r["dendrite_hotkey"], DENDRITE_HOTKEY);
    assert_eq!((&r["has_pat"], &r["pat_valid"]), (&json!(false), &json!(false)));
    assert_eq!(r["rejection_reason"], "No PAT stored for this miner");

    let token = "ghp_harnessRoundTrip0123456789";
    let sent = broadcast(&axon, token, &[]);
    let r = only(&sent);
    assert_eq!(r["status_code"], 200, "{r:#}");
    assert_eq!(r["accepted"], true);
    assert_eq!(r["rejection_reason"], Value::Null);
    assert_eq!(r["token_echoed"], false, "gittensor clears the token before answering");

    let second = check(&axon, &[]);
    let r = only(&second);
    assert_eq!((&r["has_pat"], &r["pat_valid"], &r["rejection_reason"]), (&json!(true), &json!(true), &Value::Null));

    let received = axon.received();
    assert_eq!(received.len(), 3, "{received:#?}");
    let kinds: Vec<&str> = received.iter().map(|r| r["synapse"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["PatCheckSynapse", "PatBroadcastSynapse", "PatCheckSynapse"]);
    for rec in &received {
        assert_eq!(rec["hotkey"], DENDRITE_HOTKEY);
        assert_eq!(rec["uid"], 0);
    }
    assert_eq!(received[1]["token_sha256"], sha256_hex(token));
    assert_eq!(received[1]["token_len"], token.len());
    assert_eq!(received[1]["timeout"], 30.0, "gittensor's broadcast timeout is the default");
    assert_eq!(received[0]["timeout"], 15.0, "gittensor's check timeout is the default");

    // The log never holds the token in clear; the store (in the test's temp dir) does, mode 0600.
    let log_text = std::fs::read_to_string(axon.dir().join("received.json")).unwrap();
    assert!(!log_text.contains(token), "token leaked into the request log");
    let stderr = axon.stderr();
    assert!(!stderr.contains(token), "token leaked into the axon's stderr");
    let store = axon.store();
    assert_eq!(store.len(), 1);
    assert_eq!(store[0]["uid"], 0);
    assert_eq!(store[0]["hotkey"], DENDRITE_HOTKEY);
    assert_eq!(store[0]["pat"], token);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(axon.dir().join("miner_pats.json")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn axon_listens_on_loopback_only() {
    let axon = PyAxon::start();
    let addrs = axon.listening_addrs();
    assert!(!addrs.is_empty(), "no listening socket found for pid {}", axon.pid());
    for addr in &addrs {
        assert_eq!(addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST), "axon listens on {addr} ({addrs:?})");
        assert_eq!(addr.port(), axon.port());
    }
    TcpStream::connect_timeout(&axon.addr(), Duration::from_secs(5)).expect("connect to the axon");
}

#[test]
fn every_check_mode_gives_gittensor_fields() {
    let axon = PyAxon::start();
    let modes = [
        "valid",
        "no_pat",
        "invalid_pat",
        "test_failed:HTTP 502",
        "inconclusive",
        "store_unavailable",
        "invalid_pat:custom reason",
    ];
    axon.script(&modes, &[]);
    let out = check(&axon, &["--count", &modes.len().to_string()]);
    assert_eq!(out.len(), modes.len());
    let got: Vec<(Value, Value, Value)> =
        out.iter().map(|r| (r["has_pat"].clone(), r["pat_valid"].clone(), r["rejection_reason"].clone())).collect();
    let expected = [
        (json!(true), json!(true), Value::Null),
        (json!(false), json!(false), json!("No PAT stored for this miner")),
        (json!(true), json!(false), json!("No Github id found for miner 0's PAT")),
        (json!(true), json!(false), json!("PAT test query failed: HTTP 502")),
        (json!(true), Value::Null, json!("GitHub API temporarily unavailable; retry the check in a few minutes.")),
        (json!(false), Value::Null, json!("Validator PAT store temporarily unavailable; please retry.")),
        (json!(true), json!(false), json!("custom reason")),
    ];
    assert_eq!(got, expected);
    assert!(out.iter().all(|r| r["status_code"] == 200), "{out:#?}");

    // The queue is used up: back to the default (`store`), reloaded without restarting.
    let r = check(&axon, &[]);
    assert_eq!(only(&r)["rejection_reason"], "No PAT stored for this miner");
    axon.set_check_mode("inconclusive");
    let r = check(&axon, &[]);
    assert_eq!((&only(&r)["has_pat"], &only(&r)["pat_valid"]), (&json!(true), &Value::Null));
    // Per-hotkey override and an explicit field object.
    axon.set_behaviour(json!({
        "per_hotkey": { DENDRITE_HOTKEY: { "check": {"has_pat": true, "pat_valid": false, "rejection_reason": "x"} } }
    }));
    let r = check(&axon, &[]);
    assert_eq!(only(&r)["rejection_reason"], "x");
}

#[test]
fn broadcast_modes() {
    let axon = PyAxon::start();
    axon.script(&[], &["reject:GitHub identity is locked for this hotkey.", "accept", "raise"]);
    let out = broadcast(&axon, "ghp_one", &["--count", "3"]);
    assert_eq!(out[0]["status_code"], 200);
    assert_eq!(out[0]["accepted"], false);
    assert_eq!(out[0]["rejection_reason"], "GitHub identity is locked for this hotkey.");
    assert_eq!(out[1]["accepted"], true);
    assert_eq!(out[2]["status_code"], 500, "handler exception → 500: {:#}", out[2]);
    assert_eq!(out[2]["accepted"], Value::Null);
    assert_eq!((&out[0]["token_echoed"], &out[1]["token_echoed"]), (&json!(false), &json!(false)));
    assert_eq!(out[2]["token_echoed"], Value::Null, "no 200 answer, nothing echoed");

    // An empty token is rejected like gittensor does.
    let r = broadcast(&axon, "", &[]);
    assert_eq!(only(&r)["accepted"], false);
    assert_eq!(only(&r)["rejection_reason"], "No Github PAT provided by miner 0");
    assert_eq!(axon.received().len(), 4);
    assert_eq!(axon.store().len(), 1);
}

#[test]
fn handler_exception_gives_500() {
    let axon = PyAxon::with_config(json!({"check": "raise", "broadcast": "raise"}));
    let r = check(&axon, &[]);
    let r = only(&r);
    assert_eq!(r["status_code"], 500, "{r:#}");
    assert!(r["status_message"].as_str().unwrap().starts_with("Internal Server Error #"), "{r:#}");
    assert_eq!(r["has_pat"], Value::Null);
    let r = broadcast(&axon, "ghp_x", &[]);
    assert_eq!(only(&r)["status_code"], 500);
    assert_eq!(axon.received().len(), 2, "the handler ran and logged before raising");
}

#[test]
fn blacklisted_hotkey_gets_403() {
    let axon = PyAxon::start();
    let target = axon.target();
    let out = results(py_dendrite(&["--synapse", "check", "--axon", &target, "--seed", BLACKLISTED_SEED]));
    let r = only(&out);
    assert_eq!(r["status_code"], 403, "{r:#}");
    assert_eq!(r["is_blacklist"], true);
    assert_eq!(r["status_message"], "Forbidden. Key is blacklisted: Hotkey 5HBcPkCPJuNzWBst... not registered.");
    assert!(axon.received().is_empty(), "the handler must not run");
    let bl = axon.blacklisted();
    assert_eq!(bl.len(), 1);
    assert_eq!(bl[0]["hotkey"], BLACKLISTED_HOTKEY);

    // Registering it (config reload) lets it through.
    axon.set_behaviour(json!({"registered": [DENDRITE_HOTKEY, BLACKLISTED_HOTKEY]}));
    let out = results(py_dendrite(&["--synapse", "check", "--axon", &target, "--seed", BLACKLISTED_SEED]));
    assert_eq!(only(&out)["status_code"], 200);
    assert_eq!(axon.received()[0]["uid"], 1);
}

#[test]
fn corrupt_signature_gets_401() {
    let axon = PyAxon::start();
    let r = check(&axon, &["--corrupt-signature"]);
    let r = only(&r);
    assert_eq!(r["status_code"], 401, "{r:#}");
    assert_eq!(r["failed_verification"], true);
    assert!(r["status_message"].as_str().unwrap().starts_with("Not Verified with error: Signature mismatch"), "{r:#}");
    assert!(axon.received().is_empty());
}

#[test]
fn replay_gets_401_on_second_send() {
    let axon = PyAxon::start();
    let out = check(&axon, &["--replay"]);
    assert_eq!(out.len(), 2, "{out:#?}");
    assert_eq!(out[0]["status_code"], 200, "{out:#?}");
    assert_eq!(out[1]["status_code"], 401, "{out:#?}");
    assert_eq!(out[1]["status_message"], "Not Verified with error: Nonce is too old, a newer one was last processed");
    assert_eq!(out[0]["nonce"], out[1]["nonce"]);
    assert_eq!(out[0]["uuid"], out[1]["uuid"]);
    assert_eq!(axon.received().len(), 1);
}

#[test]
fn other_tamper_modes() {
    let axon = PyAxon::start();
    // Unsigned requests are accepted by the 10.x axon (wire doc §12).
    let r = check(&axon, &["--no-signature"]);
    assert_eq!(only(&r)["status_code"], 200, "{r:#?}");
    assert_eq!(only(&r)["signed"], false);

    // A nonce 60 s in the past fails on first contact (window 4 s + timeout).
    let r = check(&axon, &["--clock-offset", "-60", "--timeout", "12"]);
    let r = only(&r);
    assert_eq!(r["status_code"], 401, "{r:#}");
    let msg = r["status_message"].as_str().unwrap();
    assert!(msg.starts_with("Not Verified with error: Nonce is too old: acceptable delta is 16.00 seconds"), "{msg}");

    // Headers signed by our (registered) hotkey, body naming another: the handler sees the body's.
    let r = check(&axon, &["--body-hotkey", BLACKLISTED_HOTKEY]);
    assert_eq!(only(&r)["status_code"], 200, "{r:#?}");
    let received = axon.received();
    assert_eq!(received.last().unwrap()["hotkey"], BLACKLISTED_HOTKEY);
    assert_eq!(received.last().unwrap()["uid"], -1);
}

#[test]
fn slow_handler_times_out_at_the_client() {
    let axon = PyAxon::with_config(json!({"check": "sleep:5:valid"}));
    let r = check(&axon, &["--timeout", "1"]);
    let r = only(&r);
    assert_eq!(r["status_code"], 408, "{r:#}");
    assert_eq!(r["is_timeout"], true);
    // The dendrite's own clock around the call (not this process's, which includes starting
    // Python): it gave up at its timeout instead of waiting for the 5 s handler.
    let elapsed = r["elapsed"].as_f64().expect("elapsed seconds");
    assert!(elapsed < 4.0, "the call took {elapsed} s: {r:#}");
}

#[test]
fn key_sources_and_several_axons_in_one_run() {
    let a = PyAxon::start();
    let b = PyAxon::with_config(json!({"check": "valid"}));
    let dir = tempfile::tempdir().unwrap();
    // The real hotkey file bittensor-wallet writes for the dev phrase (tests/data/vectors/keyfiles.json).
    let hotkey_file = dir.path().join("default");
    std::fs::write(
        &hotkey_file,
        json!({
            "accountId": "0x46ebddef8cd9bb167dc30878d7113b7e168e6f0646beffd77d69d39bad76b47a",
            "publicKey": "0x46ebddef8cd9bb167dc30878d7113b7e168e6f0646beffd77d69d39bad76b47a",
            "secretPhrase": DENDRITE_MNEMONIC,
            "secretSeed": DENDRITE_SEED,
            "ss58Address": DENDRITE_HOTKEY,
            "privateKey": "0x05d65584630d16cd4af6d0bec10f34bb504a5dcb62dba2122d49f5a663763d0afd190cce74df356432b410bd64682309d6dedb27c76845daf388557cbac3ca34",
        })
        .to_string(),
    )
    .unwrap();
    let (ta, tb) = (a.target(), b.target());
    let hk = hotkey_file.to_str().unwrap();
    let out = results(py_dendrite(&["--synapse", "check", "--axon", &ta, "--axon", &tb, "--hotkey-file", hk]));
    assert_eq!(out.len(), 2);
    assert_eq!(out[0]["axon"], format!("127.0.0.1:{}", a.port()));
    assert_eq!(out[1]["axon"], format!("127.0.0.1:{}", b.port()));
    assert_eq!(out[0]["has_pat"], false);
    assert_eq!(out[1]["pat_valid"], true);
    assert!(out.iter().all(|r| r["dendrite_hotkey"] == DENDRITE_HOTKEY));
    assert_eq!(out[0]["uuid"], out[1]["uuid"], "one Dendrite for the whole run");

    let out = results(py_dendrite_with(
        &["--synapse", "check", "--axon", &tb, "--mnemonic-env", "PATROL_TEST_MNEMONIC"],
        &[("PATROL_TEST_MNEMONIC", DENDRITE_MNEMONIC)],
        DENDRITE_TIMEOUT,
    ));
    assert_eq!(only(&out)["dendrite_hotkey"], DENDRITE_HOTKEY);
    assert_eq!(only(&out)["status_code"], 200);
}

#[test]
fn drop_kills_and_reaps_the_axon() {
    let axon = PyAxon::start();
    let pid = axon.pid();
    let addr = axon.addr();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(axon);
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} still exists (zombie or alive)");
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err());
}

#[tokio::test]
async fn async_dendrite_runner() {
    let axon = tokio::task::spawn_blocking(PyAxon::start).await.unwrap();
    let target = axon.target();
    let out = py_dendrite_async(&["--synapse", "check", "--axon", &target, "--seed", DENDRITE_SEED]).await;
    assert_eq!(out[0]["status_code"], 200, "{out:#}");
    tokio::task::spawn_blocking(move || drop(axon)).await.unwrap();
}
