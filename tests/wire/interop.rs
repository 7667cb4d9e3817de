//! Wire compatibility (issue 2): the real `patrol` binary (and the library's dendrite) against a
//! real Python `bittensor==10.3.1` `bt.Axon` with gittensor-shaped handlers, and patrol's request
//! compared with the captured `bt.Dendrite` vectors.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::cli::{Scratch, dead_port, row_of as row, static_validator};
use crate::support::python::{self, BLACKLISTED_SEED, DENDRITE_SEED, PyAxon, VALIDATOR_HOTKEY};
use patrol::lab::fake_github::{FakeAccount, FakeGithubConfig, spawn_fake_github};
use patrol::wallet::Hotkey;
use patrol::wire::dendrite::DendriteOptions;
use patrol::wire::{CallOutcome, Dendrite, SynapseKind, Target};

const PAT: &str = "ghp_patrolInteropToken000000000000001";
/// A valid SS58 that is not the axon's hotkey: signatures made for it fail at the axon (401).
const OTHER_HOTKEY: &str = "5Fpfx4iDtrrY99VGkQnLXASytC2y9Z3o8KUyTtD4w7o5SZcA";

fn config(validators: &str, extra: &str) -> String {
    format!("[wallet]\nhotkey_file = \"hotkey\"\n[agent]\nstate_dir = \"state\"\n{extra}\n{validators}")
}

#[test]
fn check_reports_every_category_from_a_real_axon() {
    let axon = PyAxon::start();
    let s = Scratch::new();
    s.hotkey("hotkey", DENDRITE_SEED);
    s.write(
        "one.toml",
        &config(
            &static_validator(1, VALIDATOR_HOTKEY, "127.0.0.1", axon.port(), 20000.0),
            "[reconcile]\ncheck_timeout = \"2s\"",
        ),
        0o600,
    );
    // (handler mode, category, has_pat, pat_valid, status_code, exit code)
    let cases: &[(&str, &str, Value, Value, u64, i32)] = &[
        ("valid", "valid", json!(true), json!(true), 200, 0),
        ("no_pat", "no_pat", json!(false), json!(false), 200, 2),
        ("invalid_pat", "invalid_pat", json!(true), json!(false), 200, 2),
        ("inconclusive", "inconclusive", json!(true), Value::Null, 200, 0),
        ("store_unavailable", "store_unavailable", json!(false), Value::Null, 200, 2),
        ("raise", "rejected", Value::Null, Value::Null, 500, 3),
        ("sleep:3", "no_response", Value::Null, Value::Null, 408, 3),
    ];
    for (mode, category, has_pat, pat_valid, status, code) in cases {
        axon.set_check_mode(mode);
        let run = s.run(&["check", "--json", "--config", "one.toml"]);
        run.expect_code(*code);
        let j = run.json();
        let r = row(&j, 1);
        assert_eq!(r["category"], *category, "mode {mode}\n{run}");
        assert_eq!(r["has_pat"], *has_pat, "mode {mode}");
        assert_eq!(r["pat_valid"], *pat_valid, "mode {mode}");
        assert_eq!(r["status_code"], *status, "mode {mode}\n{run}");
        assert_eq!(r["hotkey"], VALIDATOR_HOTKEY, "full hotkey, not gitt's truncated one");
        for k in [
            "success",
            "coverage_complete",
            "total_validators",
            "valid",
            "no_pat",
            "invalid_pat",
            "inconclusive",
            "no_response",
            "skipped",
            "stake_weighted_coverage",
        ] {
            assert!(j.get(k).is_some(), "missing {k} in {j}");
        }
        assert_eq!(j[*category], 1, "count for {category}");
        if *category == "invalid_pat" || *category == "store_unavailable" {
            assert!(r["rejection_reason"].as_str().is_some_and(|s| !s.is_empty()), "reason carried through: {r}");
        }
    }
    // the handler saw patrol's checks with our hotkey from the body, and never a token
    // (the `sleep:3` handler logs only after its sleep, after patrol gave up at 2 s: wait for it)
    let mut received = axon.received();
    crate::support::wait_until(Duration::from_secs(8), || {
        received = axon.received();
        received.len() >= cases.len()
    });
    assert_eq!(received.len(), cases.len(), "{received:?}");
    assert!(
        received.iter().all(|r| r["synapse"] == "PatCheckSynapse" && r["hotkey"] == python::DENDRITE_HOTKEY),
        "{received:?}"
    );

    // wrong validator key (signature made for another hotkey) → 401, dead port → no_response
    axon.set_check_mode("valid");
    let mixed = [
        static_validator(1, VALIDATOR_HOTKEY, "127.0.0.1", axon.port(), 30000.0),
        static_validator(2, OTHER_HOTKEY, "127.0.0.1", axon.port(), 20000.0),
        static_validator(3, VALIDATOR_HOTKEY, "127.0.0.1", dead_port(), 50000.0),
    ]
    .concat();
    s.write("mixed.toml", &config(&mixed, "[reconcile]\ncheck_timeout = \"2s\""), 0o600);
    let run = s.run(&["check", "--json", "--config", "mixed.toml"]);
    run.expect_code(1);
    let j = run.json();
    assert_eq!(row(&j, 1)["category"], "valid");
    assert_eq!(row(&j, 2)["category"], "rejected");
    assert_eq!(row(&j, 2)["status_code"], 401);
    assert!(row(&j, 2)["detail"].as_str().unwrap().contains("Signature mismatch"), "{run}");
    assert_eq!(row(&j, 3)["category"], "no_response");
    assert_eq!(j["stake_weighted_coverage"], 0.3);

    // an unregistered miner hotkey is blacklisted: 403
    let s2 = Scratch::new();
    s2.hotkey("hotkey", BLACKLISTED_SEED);
    s2.write("one.toml", &config(&static_validator(1, VALIDATOR_HOTKEY, "127.0.0.1", axon.port(), 1e5), ""), 0o600);
    let run = s2.run(&["check", "--json", "--config", "one.toml"]);
    run.expect_code(3);
    let r = row(&run.json(), 1);
    assert_eq!((r["category"].as_str(), r["status_code"].as_u64()), (Some("rejected"), Some(403)), "{run}");
    assert!(r["detail"].as_str().unwrap().contains("not registered"));

    // human table on a non-JSON run, summary on stderr
    let run = s.run(&["check", "--config", "one.toml"]);
    run.expect_code(0);
    assert!(run.stdout.contains("CATEGORY") && run.stdout.contains("valid"), "{run}");
    assert!(run.stderr.contains("1/1 covered"), "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_against_a_real_axon() {
    let (gh, github) =
        spawn_fake_github(FakeGithubConfig::default().with_account(FakeAccount::new(PAT, 4242, "demo-miner"))).await;
    let axon = PyAxon::start();
    let mut s = Scratch::new();
    s.hotkey("hotkey", DENDRITE_SEED);
    s.pat("pat", PAT);
    let cfg = |retries: u32| {
        config(
            &static_validator(1, VALIDATOR_HOTKEY, "127.0.0.1", axon.port(), 20000.0),
            &format!(
                "[pat]\nfile = \"pat\"\n[github]\napi_url = \"http://{gh}\"\n[reconcile]\nbroadcast_timeout = \"1500ms\"\npost_retries = {retries}"
            ),
        )
    };
    s.write("post.toml", &cfg(2), 0o600);

    // accepted: the validator stored exactly our PAT (trimmed of the file's newline)
    let run = s.run(&["post", "--json", "--config", "post.toml"]);
    run.expect_code(0);
    let j = run.json();
    assert_eq!(
        (j["success"].as_bool(), j["accepted"].as_u64(), j["github_login"].as_str()),
        (Some(true), Some(1), Some("demo-miner")),
        "{run}"
    );
    assert_eq!(row(&j, 1)["accepted"], true);
    assert_eq!(row(&j, 1)["status_code"], 200);
    assert_eq!(j["pat"], "***0001");
    let store = axon.store();
    assert_eq!(store.len(), 1);
    assert_eq!(store[0]["pat"], PAT);
    assert_eq!(store[0]["hotkey"], python::DENDRITE_HOTKEY);

    // explicit rejection is final: one attempt, exit 2
    axon.set_broadcast_mode("reject:GitHub identity is locked for this hotkey.");
    let run = s.run(&["post", "--json", "--config", "post.toml"]);
    run.expect_code(2);
    let r = row(&run.json(), 1);
    assert_eq!((r["accepted"].as_bool(), r["attempts"].as_u64()), (Some(false), Some(1)), "{run}");
    assert_eq!(r["rejection_reason"], "GitHub identity is locked for this hotkey.");

    // no response → retried with backoff; the second attempt is accepted
    axon.set_broadcast_mode("accept");
    axon.script(&[], &["sleep:3", "accept"]);
    let run = s.run(&["post", "--json", "--config", "post.toml"]);
    run.expect_code(0);
    let r = row(&run.json(), 1);
    assert_eq!((r["accepted"].as_bool(), r["attempts"].as_u64()), (Some(true), Some(2)), "{run}");

    // retries exhausted → no_response, exit 3 (nobody answered)
    s.write("post0.toml", &cfg(0), 0o600);
    axon.script(&[], &["sleep:3"]);
    let run = s.run(&["post", "--json", "--config", "post0.toml"]);
    run.expect_code(3);
    let r = row(&run.json(), 1);
    assert_eq!(
        (r["outcome"].as_str(), r["attempts"].as_u64(), r["status_code"].as_u64()),
        (Some("no_response"), Some(1), Some(408)),
        "{run}"
    );

    // a revoked PAT is never broadcast: exit 78, the validator received nothing new
    let before = axon.received().len();
    github.revoke_token(PAT);
    let run = s.run(&["post", "--json", "--config", "post.toml"]);
    run.expect_code(78);
    assert!(run.stdout.contains("\"pat_invalid\"") && run.stderr.contains("nothing was sent"), "{run}");
    assert_eq!(axon.received().len(), before, "a broadcast was sent with a revoked PAT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_nonce_and_wrong_key_are_rejected_401() {
    let axon = PyAxon::start();
    let key = Arc::new(Hotkey::from_seed_hex(DENDRITE_SEED).unwrap());
    let d = Dendrite::new(key, DendriteOptions::default()).unwrap();
    let target = Target { ip: "127.0.0.1".parse().unwrap(), port: axon.port(), hotkey: VALIDATOR_HOTKEY.into() };
    let t = Duration::from_secs(10);
    let nonce = patrol::wire::now_ns();
    let req = d.prepare_with(SynapseKind::Check, &target, t, None, nonce, "0b3c4a5e-8f00-11ef-9a1b-0242ac120002");
    let patrol::wire::dendrite::Sent { status: code, outcome: first, .. } = d.send(req.clone(), t).await;
    assert_eq!(code, 200, "{first:?}");
    assert!(matches!(first, CallOutcome::Answered(_)));
    let replay = d.send(req, t).await.outcome;
    match replay {
        CallOutcome::Rejected { status: 401, message } => assert!(message.contains("Nonce is too old"), "{message}"),
        other => panic!("replay not rejected 401: {other:?}"),
    }
    let wrong = Target { hotkey: OTHER_HOTKEY.into(), ..target };
    let reply = d.check(&wrong, t).await;
    assert!(matches!(reply.outcome, CallOutcome::Rejected { status: 401, .. }), "{reply:?}");
}

fn capture() -> Value {
    let dir = std::env::var("PATROL_VECTORS")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/vectors").into());
    let p = std::path::Path::new(&dir).join("dendrite_request_capture.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("vectors missing at {}: {e}", p.display())))
        .unwrap()
}

/// patrol's request for the captured inputs: same header set, same body (but the randomised
/// signature and CPython's object sizes), same body hash — and its signature verifies in Python.
#[test]
fn request_matches_the_captured_dendrite_request() {
    let cap = capture();
    let key =
        Arc::new(Hotkey::from_phrase("bottom drive obey lake curtain smoke basket hold race lonely fit walk").unwrap());
    let d =
        Dendrite::new(key, DendriteOptions { external_ip: "192.0.2.1".into(), ..DendriteOptions::default() }).unwrap();
    let uuid = cap["setup"]["dendrite_uuid"].as_str().unwrap();
    for (i, kind, timeout, token) in
        [(0, SynapseKind::Broadcast, 30, Some("ghp_test")), (1, SynapseKind::Check, 15, None)]
    {
        let c = &cap["requests"][i]["captured"];
        let headers: Vec<(String, String)> = c["headers_in_order"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h[0].as_str().unwrap().to_ascii_lowercase(), h[1].as_str().unwrap().to_string()))
            .collect();
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap();
        let port: u16 = get("bt_header_axon_port").parse().unwrap();
        let nonce: u64 = get("bt_header_dendrite_nonce").parse().unwrap();
        let target = Target { ip: "127.0.0.1".parse().unwrap(), port, hotkey: get("bt_header_axon_hotkey") };
        let pat = token.map(|t| patrol::secret::Pat::new(t).unwrap());
        let req = d.prepare_with(kind, &target, Duration::from_secs(timeout), pat.as_ref(), nonce, uuid);

        // header set: everything bittensor adds (aiohttp's own headers aside) is present, in order
        let aiohttp = ["host", "accept", "accept-encoding", "user-agent", "content-length", "content-type"];
        let want: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).filter(|k| !aiohttp.contains(k)).collect();
        let ours: Vec<&str> = req.headers.iter().map(|(k, _)| *k).collect();
        assert_eq!(ours, want, "{}", kind.name());
        for (k, v) in &req.headers {
            match *k {
                "bt_header_dendrite_signature" | "header_size" | "total_size" => {}
                _ => assert_eq!(*v, get(k), "header {k}"),
            }
        }
        // body: identical except the signature and CPython's total_size
        let mut ours: Value = serde_json::from_str(&req.body).unwrap();
        let mut theirs: Value = serde_json::from_str(c["body_utf8"].as_str().unwrap()).unwrap();
        for v in [&mut ours, &mut theirs] {
            v["dendrite"]["signature"] = Value::Null;
            v["total_size"] = json!(0);
        }
        assert_eq!(ours, theirs, "{}", kind.name());
        let order = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(order(&ours), order(&theirs));
        assert!(
            req.body.starts_with(&format!("{{\"name\": \"{}\", \"timeout\": {timeout}.0, ", kind.name())),
            "Python separators"
        );
        assert_eq!(get("computed_body_hash"), patrol::wire::EMPTY_BODY_HASH);
        assert_eq!(
            req.signed_message,
            cap["requests"][i]["analysis"]["signed_message_reconstructed_from_headers"].as_str().unwrap()
        );

        // the real library verifies our signature
        let sig = req.headers.iter().find(|(k, _)| *k == "bt_header_dendrite_signature").unwrap().1.clone();
        let script = "import sys\nfrom bittensor_wallet import Keypair\nk = Keypair(ss58_address=sys.argv[1])\nprint(k.verify(sys.argv[2].encode(), bytes.fromhex(sys.argv[3][2:])))";
        let out = std::process::Command::new(python::python())
            .args(["-c", script, "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV", &req.signed_message, &sig])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "True", "{}", String::from_utf8_lossy(&out.stderr));
    }
}
