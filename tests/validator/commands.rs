//! The commands as real processes: `patrol validator serve` (ready line, config file, signals),
//! `patrol dev fake-github` (ready line, control API), `patrol demo` (exit 0, shows the re-broadcast).

use std::time::Duration;

use patrol::wire::{CallOutcome, CheckFields};
use serde_json::Value;

use super::{VALIDATOR_SEED_HEX, dendrite, miner_key};
use crate::support::cli::{Scratch, patrol_bin, run_bounded};
use crate::support::serve::PatrolProcess;

#[tokio::test]
async fn serve_from_a_config_file_answers_and_stops_on_sigint_and_sigterm() {
    let s = Scratch::new();
    let key = miner_key(7);
    let store = s.path("data/store.json");
    let toml = format!(
        "hotkey_seed = \"{VALIDATOR_SEED_HEX}\"\nlisten = \"127.0.0.1:0\"\nstore = \"{}\"\nmode = \"parity\"\nclock_offset = \"-1s\"\n\
         [github]\napi_url_is_not_here = 1\n",
        store.display()
    );
    let bad = s.write("bad.toml", &toml, 0o600);
    let run = s.run(&["validator", "serve", "--validator-config", bad.to_str().unwrap()]);
    run.expect_code(78);
    assert!(run.stderr.contains("api_url_is_not_here"), "the error names the key\n{run}");

    let good = s.write(
        "v.toml",
        &format!(
            "hotkey_seed = \"{VALIDATOR_SEED_HEX}\"\nlisten = \"127.0.0.1:0\"\nstore = \"{}\"\nmode = \"parity\"\n\
             [github]\ntimeout = \"1s\"\n[[miners]]\nuid = 7\nhotkey = \"{}\"\nstake = 5.0\n",
            store.display(),
            key.ss58()
        ),
        0o600,
    );
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let mut p = PatrolProcess::spawn(
            &["validator", "serve", "--validator-config", good.to_str().unwrap()],
            &[],
            &s.path("serve.stderr"),
        );
        let keys: Vec<&str> = p.ready.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["ready", "listen", "hotkey"], "{}", p.ready);
        assert_eq!(std::fs::read_to_string(&store).unwrap(), "[]", "an empty store is created at boot");
        let t = patrol::wire::Target {
            ip: p.listen().ip(),
            port: p.listen().port(),
            hotkey: p.ready["hotkey"].as_str().unwrap().into(),
        };
        let out = dendrite(key.clone()).check(&t, Duration::from_secs(10)).await.outcome;
        assert_eq!(
            out,
            CallOutcome::Answered(CheckFields {
                has_pat: Some(false),
                pat_valid: Some(false),
                rejection_reason: Some("No PAT stored for this miner".into())
            })
        );
        let st = p.signal_and_wait(signal, Duration::from_secs(10));
        assert!(st.success(), "signal {signal}: {st}\n{}", p.stderr());
    }
}

#[test]
fn serve_refuses_bad_flags_with_exit_78() {
    let s = Scratch::new();
    for (args, needle) in [
        (vec!["validator", "serve", "--listen", "127.0.0.1:0"], "hotkey is required"),
        (vec!["validator", "serve", "--hotkey-seed", "0x11", "--listen", "127.0.0.1:0"], "need 32 bytes"),
        (vec!["validator", "serve", "--hotkey-seed", VALIDATOR_SEED_HEX, "--listen", "nowhere"], "listen"),
        (vec!["validator", "serve", "--hotkey-seed", VALIDATOR_SEED_HEX, "--miner", "1:notakey"], "not an SS58"),
        (vec!["validator", "serve", "--hotkey-seed", VALIDATOR_SEED_HEX, "--mode", "strict"], "unknown github mode"),
        (vec!["validator", "serve", "--hotkey-seed", VALIDATOR_SEED_HEX, "--clock-offset", "soon"], "clock_offset"),
    ] {
        let run = s.run(&args);
        run.expect_code(78);
        assert!(run.stderr.contains(needle), "{needle:?}\n{run}");
    }
}

#[tokio::test]
async fn dev_fake_github_serves_its_config_and_control_api() {
    let s = Scratch::new();
    let cfg = s.write(
        "gh.json",
        r#"{"accounts": [{"token": "ghp_devfakegithubtoken00000000000001", "id": 5, "login": "five"}],
            "faults": [{"scope": "graphql", "times": 1, "fault": {"kind": "status", "status": 503}}]}"#,
        0o600,
    );
    let mut p =
        PatrolProcess::spawn(&["dev", "fake-github", "--config", cfg.to_str().unwrap()], &[], &s.path("gh.stderr"));
    let url = format!("http://{}", p.listen());
    patrol::tls::install_default_provider();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let user: Value = http
        .get(format!("{url}/user"))
        .header("authorization", "token ghp_devfakegithubtoken00000000000001")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((user["id"].as_u64(), user["login"].as_str()), (Some(5), Some("five")));
    let first =
        http.post(format!("{url}/graphql")).bearer_auth("ghp_devfakegithubtoken00000000000001").send().await.unwrap();
    assert_eq!(first.status().as_u16(), 503, "the configured fault");
    let stats: Value = http.get(format!("{url}/_fake/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["graphql"]["total"], 1);
    let st = p.signal_and_wait(libc::SIGTERM, Duration::from_secs(10));
    assert!(st.success(), "{st}");
    assert!(!p.stderr().contains("ghp_devfakegithubtoken"), "{}", p.stderr());
}

#[test]
fn demo_restores_coverage_and_exits_0() {
    let mut cmd = std::process::Command::new(patrol_bin());
    cmd.args(["demo"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let run = run_bounded(cmd, Duration::from_secs(60), &["demo"]);
    run.expect_code(0);
    let wiped = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("wiped the PAT store of validator uid "))
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("no wipe line\n{run}"))
        .to_string();
    assert!(run.stdout.contains(&format!("broadcast to uids [{wiped}]; coverage 4 valid")), "{run}");
    assert!(run.stdout.contains("broadcast to uids [1, 2, 3, 4]; coverage 4 valid"), "{run}");
    assert!(
        run.stdout.contains(&format!("patrol re-broadcast to uid {wiped} only and coverage is 4/4 again")),
        "{run}"
    );

    let mut cmd = std::process::Command::new(patrol_bin());
    cmd.args(["demo", "--json", "--validators", "3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let run = run_bounded(cmd, Duration::from_secs(60), &["demo", "--json"]);
    run.expect_code(0);
    let v = run.json();
    assert_eq!(v["success"], true);
    assert_eq!(v["validators"], 3);
    assert_eq!(v["passes"][0]["broadcast_to"], serde_json::json!([1, 2, 3]));
    assert_eq!(v["passes"][1]["broadcast_to"], serde_json::json!([v["passes"][1]["wiped_uid"]]));
    assert_eq!(v["passes"][1]["final"]["valid"], 3);
}
