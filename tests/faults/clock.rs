//! A validator whose clock is ahead of ours by more than the nonce window (4 s + the request
//! timeout; docs `bittensor-wire-protocol.md` §5.1) answers every request 401 "Nonce is too old".
//! patrol must say why — a `hint` naming the clock and NTP on the row of `check`, `post` and
//! `reconcile`, in JSON and in the tables — never re-broadcast blindly, and cover the validator once
//! the clocks agree. Against `patrol validator serve --clock-offset` and against the real Python
//! `bt.Axon` with its clock shifted (the hint must trigger on the library's own text).

use serde_json::{Value, json};

use super::{PAT, accounts, config, make_due, our_pat_in, patrol, row};
use crate::support::cli::{Scratch, static_validator};
use crate::support::fake_github::FakeGithubProcess;
use crate::support::python::{DENDRITE_SEED, PyAxon};
use crate::support::subnet::Subnet;

fn assert_clock_hint(r: &Value, what: &str) {
    assert_eq!(r["status_code"], 401, "{what}: {r}");
    let detail = r["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("Not Verified with error: Nonce is too old: acceptable delta is"), "{what}: {r}");
    let hint = r["hint"].as_str().unwrap_or_else(|| panic!("{what}: no hint: {r}"));
    assert!(hint.contains("request nonce") && hint.contains("clock") && hint.contains("NTP"), "{what}: {hint}");
}

#[test]
fn a_validator_clock_beyond_the_nonce_window_gets_a_clock_hint_and_no_blind_broadcast() {
    let gh = FakeGithubProcess::new(&accounts());
    let mut net = Subnet::with_pat(3, gh.addr, PAT);
    // uid 11's clock is 60 s *behind* ours: accepted (the window has no upper bound);
    // uid 13's is 60 s *ahead*: our nonces are 60 s old there, the window is 4 s + 5 s
    for (i, offset) in [(0, "-60s"), (2, "60s")] {
        net.nodes[i].kill();
        net.nodes[i].extra_args = vec!["--clock-offset".into(), offset.into()];
        net.nodes[i].start();
    }
    let validators = net.validators_toml(&[0, 1, 2]);
    net.scratch.write("c.toml", &config(&gh.url(), &validators, ""), 0o600);

    // check: JSON and table
    let run = patrol(&net.scratch, "c.toml", &["check", "--json"]);
    run.expect_code(2);
    let r = row(&run, 13);
    assert_eq!(r["category"], "rejected", "{run}");
    assert_clock_hint(&r, "check");
    assert!(r["detail"].as_str().unwrap().contains("acceptable delta is 9.00 seconds but request was 6"), "{run}");
    assert!(r["hint"].as_str().unwrap().contains("accepts 9.0 s"), "{run}");
    assert_eq!(row(&run, 11)["hint"], Value::Null);
    let table = patrol(&net.scratch, "c.toml", &["check"]);
    table.expect_code(2);
    let line = table.stdout.lines().find(|l| l.starts_with("13 ")).unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains("rejected") && line.contains("(hint: the validator rejected the request nonce"), "{line}");

    // reconcile: the PAT to the two that answer, a re-check with backoff for the 401, never a
    // broadcast into it
    let run = patrol(&net.scratch, "c.toml", &["reconcile", "--json"]);
    run.expect_code(1);
    assert_eq!(run.json()["broadcasts_sent"], 2, "{run}");
    assert_eq!(row(&run, 11)["final_category"], "valid", "a clock behind ours is accepted: {run}");
    let r = row(&run, 13);
    assert_clock_hint(&r, "reconcile");
    assert_eq!((r["action"].as_str(), r["why"].as_str()), (Some("recheck"), Some("rejected with HTTP 401")), "{run}");
    assert_eq!(our_pat_in(&net.nodes[2].store), None);
    // the table of a reconcile that contacts it (a second state dir, so it is not in backoff there)
    let cfg2 = config(&gh.url(), &validators, "").replace("state_dir = \"state\"", "state_dir = \"state2\"");
    net.scratch.write("c2.toml", &cfg2, 0o600);
    let table = patrol(&net.scratch, "c2.toml", &["reconcile"]);
    table.expect_code(1);
    let line = table.stdout.lines().find(|l| l.starts_with("13 ")).unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains("rejected with HTTP 401 (hint: the validator rejected the request nonce"), "{line}");

    // post: uid 13 refuses every request with 401 (not retried: a fresh request is as old)
    let run = patrol(&net.scratch, "c.toml", &["post", "--json"]);
    run.expect_code(1);
    let r = row(&run, 13);
    assert_clock_hint(&r, "post");
    assert_eq!((r["outcome"].as_str(), r["attempts"].as_u64()), (Some("no_response"), Some(1)), "{run}");
    let table = patrol(&net.scratch, "c.toml", &["post"]);
    assert!(table.stdout.contains("(hint: the validator rejected the request nonce"), "{table}");
    assert_eq!(our_pat_in(&net.nodes[2].store), None);

    // the reconcile table, inside the backoff `post` extended: not contacted
    let table = patrol(&net.scratch, "c.toml", &["reconcile"]);
    table.expect_code(1);
    let line = table.stdout.lines().find(|l| l.starts_with("13 ")).unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains("not_due"), "{line}");
    let pending = row(&patrol(&net.scratch, "c.toml", &["reconcile", "--json"]), 13);
    assert_eq!(pending["action"], "not_due", "{pending}");

    // the validator's clock is fixed (restarted without the offset): covered after its backoff
    net.nodes[2].kill();
    net.nodes[2].extra_args.clear();
    net.nodes[2].start();
    make_due(&net.scratch, 13);
    let table = patrol(&net.scratch, "c.toml", &["reconcile"]);
    table.expect_code(0);
    assert!(!table.stdout.contains("hint:"), "{table}");
    assert_eq!(our_pat_in(&net.nodes[2].store).as_deref(), Some(PAT));
    net.assert_no_leak(PAT);
}

#[test]
fn the_real_python_axon_with_its_clock_ahead_gets_the_same_hint() {
    let axon = PyAxon::with_clock_offset(json!({}), 60.0);
    let gh = FakeGithubProcess::new(&accounts());
    let mut s = Scratch::new();
    s.hotkey("hotkey", DENDRITE_SEED);
    s.pat("pat", PAT);
    let validators = static_validator(0, axon.hotkey(), "127.0.0.1", axon.port(), 20_000.0);
    s.write("c.toml", &config(&gh.url(), &validators, ""), 0o600);

    // nobody answered: undetermined, and the row says why
    let run = patrol(&s, "c.toml", &["check", "--json"]);
    run.expect_code(3);
    let r = row(&run, 0);
    assert_eq!(r["category"], "rejected", "{run}");
    assert_clock_hint(&r, "check against bt.Axon");
    let table = patrol(&s, "c.toml", &["check"]);
    assert!(table.stdout.contains("(hint: the validator rejected the request nonce"), "{table}");

    let run = patrol(&s, "c.toml", &["reconcile", "--json"]);
    run.expect_code(3);
    assert_eq!(run.json()["broadcasts_sent"], 0, "{run}");
    assert_clock_hint(&row(&run, 0), "reconcile against bt.Axon");
    // the library refused before any handler: nothing reached the miner's forward functions
    assert!(axon.received().is_empty(), "{:?}\n{}", axon.received(), axon.stderr());
    assert!(axon.store().is_empty());
}
