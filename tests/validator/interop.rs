//! Interop with the real Python `bittensor==10.3.1`, both ways:
//! - a real `bt.Dendrite` (tests/python/bt_dendrite.py) sends both synapses to `patrol validator
//!   serve` (a real process) and gets correctly filled synapses back; a tampered signature, a
//!   replayed nonce, an unsigned request and an unregistered hotkey get 401/401/401/403 (plus the
//!   stale-clock and body-hotkey cases);
//! - a Rust dendrite gets the same answers from our axon as from a real Python `bt.Axon`.
//!
//! The serve process runs with trace logging; its whole stderr is then searched for the PAT.

use std::time::Duration;

use patrol::lab::fake_github::{FakeAccount, FakeGithubConfig, spawn_fake_github};
use patrol::wire::{CallOutcome, CheckFields, Target};
use serde_json::Value;

use super::VALIDATOR_SEED_HEX;
use crate::support::python::{
    BLACKLISTED_HOTKEY, BLACKLISTED_SEED, DENDRITE_HOTKEY, DENDRITE_SEED, PyAxon, VALIDATOR_HOTKEY,
    py_dendrite_async_with,
};
use crate::support::serve::{self, PatrolProcess};

const TOKEN: &str = "ghp_interopSECRETtoken0000000000000042";
const TOKEN_ENV: &str = "PATROL_TEST_PAT";
const PY_TIMEOUT: Duration = Duration::from_secs(120);

/// `patrol validator serve` for the dev-phrase miner (uid 1), asking the fake GitHub at `github`.
fn serve(dir: &std::path::Path, github: &str) -> PatrolProcess {
    let miner = [format!("1:{DENDRITE_HOTKEY}:100")];
    let extra = ["--github-timeout", "5s", "--identity-attempts", "2", "--identity-retry-sleep", "10ms"];
    let args =
        serve::validator_args(VALIDATOR_SEED_HEX, "127.0.0.1:0", &dir.join("miner_pats.json"), github, &miner, &extra);
    PatrolProcess::spawn(&crate::support::process::strs(&args), &[("RUST_LOG", "trace")], &dir.join("serve.stderr"))
}

/// One `bt_dendrite.py` run; returns its results.
async fn py(synapse: &str, target: &str, seed: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["--synapse", synapse, "--axon", target, "--seed", seed];
    if synapse == "broadcast" {
        args.extend(["--token-env", TOKEN_ENV]);
    }
    args.extend_from_slice(extra);
    let out = py_dendrite_async_with(&args, &[(TOKEN_ENV, TOKEN)], PY_TIMEOUT).await;
    out.as_array().cloned().unwrap_or_else(|| panic!("not a list: {out}"))
}

fn status(r: &Value) -> (i64, String) {
    (r["status_code"].as_i64().unwrap_or(-1), r["status_message"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_dendrite_against_patrol_validator_serve() {
    let dir = tempfile::Builder::new().prefix("patrol-interop-").tempdir().unwrap();
    let (gh_addr, _gh) =
        spawn_fake_github(FakeGithubConfig::default().with_account(FakeAccount::new(TOKEN, 4242, "octo"))).await;
    let mut server = serve(dir.path(), &format!("http://{gh_addr}"));
    assert_eq!(server.ready["hotkey"], VALIDATOR_HOTKEY);
    let target = format!("{}:{VALIDATOR_HOTKEY}", server.listen());

    // Both synapses, correctly filled.
    let b = py("broadcast", &target, DENDRITE_SEED, &[]).await;
    assert_eq!(status(&b[0]), (200, "Success".into()), "{b:?}");
    assert_eq!(b[0]["accepted"], true, "{b:?}");
    assert_eq!(b[0]["rejection_reason"], Value::Null);
    assert_eq!(b[0]["token_echoed"], false, "the token is cleared in the answer");
    assert_eq!(b[0]["is_success"], true);
    let c = py("check", &target, DENDRITE_SEED, &[]).await;
    assert_eq!(status(&c[0]), (200, "Success".into()), "{c:?}");
    assert_eq!(
        (&c[0]["has_pat"], &c[0]["pat_valid"], &c[0]["rejection_reason"]),
        (&Value::Bool(true), &Value::Bool(true), &Value::Null)
    );
    let stored = std::fs::read_to_string(dir.path().join("miner_pats.json")).unwrap();
    assert!(stored.contains(DENDRITE_HOTKEY) && stored.contains("\"github_id\": \"4242\""), "{stored}");

    // Tampering, concurrently (each run imports bittensor).
    let (bad_sig, replay, unsigned, blacklisted, stale, body_hotkey, bad_sig_broadcast) = tokio::join!(
        py("check", &target, DENDRITE_SEED, &["--corrupt-signature"]),
        py("check", &target, DENDRITE_SEED, &["--replay"]),
        py("check", &target, DENDRITE_SEED, &["--no-signature"]),
        py("check", &target, BLACKLISTED_SEED, &["--corrupt-signature"]),
        py("check", &target, DENDRITE_SEED, &["--clock-offset", "-60"]),
        py("check", &target, DENDRITE_SEED, &["--body-hotkey", BLACKLISTED_HOTKEY]),
        py("broadcast", &target, DENDRITE_SEED, &["--corrupt-signature"]),
    );
    let (code, msg) = status(&bad_sig[0]);
    assert_eq!(code, 401, "{bad_sig:?}");
    assert!(msg.starts_with("Not Verified with error: Signature mismatch with "), "{msg}");
    assert_eq!(status(&replay[0]).0, 200, "{replay:?}");
    assert_eq!(
        status(&replay[1]),
        (401, "Not Verified with error: Nonce is too old, a newer one was last processed".into())
    );
    assert_eq!(
        status(&unsigned[0]),
        (401, "Not Verified with error: Missing signature: unsigned requests are refused by this validator".into())
    );
    assert_eq!(
        status(&blacklisted[0]),
        (403, "Forbidden. Key is blacklisted: Hotkey 5HBcPkCPJuNzWBst... not registered.".into())
    );
    let (code, msg) = status(&stale[0]);
    assert_eq!(code, 401, "{stale:?}");
    assert!(
        msg.starts_with(
            "Not Verified with error: Nonce is too old: acceptable delta is 19.00 seconds but request was 60."
        ),
        "{msg}"
    );
    assert_eq!(
        status(&body_hotkey[0]),
        (
            401,
            "Not Verified with error: the body's dendrite.hotkey does not match the signed bt_header_dendrite_hotkey"
                .into()
        )
    );
    assert_eq!(status(&bad_sig_broadcast[0]).0, 401, "{bad_sig_broadcast:?}");
    for r in [&bad_sig[0], &unsigned[0], &blacklisted[0], &body_hotkey[0]] {
        assert_eq!(r["has_pat"], Value::Null, "an error answer fills no response field: {r}");
    }
    // The rejected broadcast changed nothing.
    assert_eq!(std::fs::read_to_string(dir.path().join("miner_pats.json")).unwrap(), stored);

    let st = server.signal_and_wait(libc::SIGTERM, Duration::from_secs(10));
    assert!(st.success(), "serve exits 0 on SIGTERM: {st}");
    let log = server.stderr();
    assert!(log.contains("PAT broadcast accepted"), "trace logging was on:\n{log}");
    assert!(!log.contains(TOKEN), "the PAT leaked into the validator's output");
    assert!(!log.contains(&TOKEN[4..20]), "part of the PAT leaked into the validator's output");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_dendrite_gets_the_same_answers_from_patrol_and_python_axons() {
    let dir = tempfile::Builder::new().prefix("patrol-interop-").tempdir().unwrap();
    let py_axon = tokio::task::spawn_blocking(PyAxon::start).await.unwrap();
    let server = serve(dir.path(), "http://127.0.0.1:9");
    let targets = [
        Target { ip: "127.0.0.1".parse().unwrap(), port: py_axon.port(), hotkey: py_axon.hotkey().to_string() },
        Target { ip: "127.0.0.1".parse().unwrap(), port: server.listen().port(), hotkey: VALIDATOR_HOTKEY.to_string() },
    ];
    let miner = super::dendrite(patrol::wallet::Hotkey::from_seed_hex(DENDRITE_SEED).unwrap());
    let stranger = super::dendrite(patrol::wallet::Hotkey::from_seed_hex(BLACKLISTED_SEED).unwrap());
    let mut answers = Vec::new();
    for t in &targets {
        let no_pat = miner.check(t, Duration::from_secs(15)).await.outcome;
        let blacklisted = stranger.check(t, Duration::from_secs(15)).await.outcome;
        answers.push((no_pat, blacklisted));
    }
    assert_eq!(answers[0], answers[1], "python axon vs patrol");
    assert_eq!(
        answers[1].0,
        CallOutcome::Answered(CheckFields {
            has_pat: Some(false),
            pat_valid: Some(false),
            rejection_reason: Some("No PAT stored for this miner".into())
        })
    );
    assert!(matches!(answers[1].1, CallOutcome::Rejected { status: 403, .. }));
}
