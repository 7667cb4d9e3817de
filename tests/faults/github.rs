//! GitHub misbehaving, through a real `patrol dev fake-github` process whose faults are set over its
//! `/_fake/faults` control API: 5xx, 429 with Retry-After, slow (trickled) bodies, connection
//! resets. The validators (fixed mode, GitHub deadline 1 s) and patrol's own preflight must both
//! come out *transient*: holders of our PAT answer `inconclusive` (still covered), a validator that
//! lost it is not sent the PAT while GitHub cannot confirm it (no invalid-PAT verdict, no alert),
//! `post` exits 3 having sent nothing, no stored PAT is touched — and once GitHub is back a
//! `reconcile` restores full coverage.

use serde_json::{Value, json};

use super::{PAT, accounts, age_preflight, config, make_due, our_pat_in, patrol, row};
use crate::support::fake_github::FakeGithubProcess;
use crate::support::subnet::Subnet;

/// Run one GitHub fault (`fault`: the `fault` object of a rule on both endpoints) through the whole
/// story. `expect_in_reason` must appear in the preflight's transient reason: it names what went
/// wrong (a status, our deadline, the dropped connection), never an empty string that any reason
/// would contain.
fn github_fault_is_transient_everywhere(fault: Value, expect_in_reason: &str) {
    assert!(!expect_in_reason.is_empty(), "say what the reason must contain");
    let gh = FakeGithubProcess::new(&accounts());
    let mut net = Subnet::start_with(3, gh.addr, &["--github-timeout", "1s"]);
    net.scratch.pat("pat", PAT);
    let validators = net.validators_toml(&[0, 1, 2]);
    net.scratch.write("c.toml", &config(&gh.url(), &validators, ""), 0o600);
    patrol(&net.scratch, "c.toml", &["post", "--json"]).expect_code(0);
    // a check confirms what `post` sent (without it, the spacing rule would hold back a re-send to a
    // validator that loses the PAT within `backoff_initial` of the post)
    patrol(&net.scratch, "c.toml", &["reconcile", "--json"]).expect_code(0);
    // (that reconcile's hourly preflight must not be reused: the story is about ours failing too)
    age_preflight(&net.scratch);
    // uid 13 lost its store; the other two hold our PAT
    net.nodes[2].kill();
    std::fs::remove_file(&net.nodes[2].store).unwrap();
    net.nodes[2].start();
    let held: Vec<Vec<u8>> = net.nodes[..2].iter().map(|n| std::fs::read(&n.store).unwrap()).collect();

    gh.add_fault(json!({ "scope": "both", "fault": fault }));
    let label = fault.to_string();

    // `post`: the PAT cannot be confirmed from here, so it goes nowhere
    let run = patrol(&net.scratch, "c.toml", &["post", "--json"]);
    run.expect_code(3);
    let j = run.json();
    assert_eq!(
        (j["success"].as_bool(), j["error"]["type"].as_str()),
        (Some(false), Some("github_unavailable")),
        "{run}"
    );
    assert!(j["error"]["message"].as_str().unwrap().contains("nothing was sent"), "{run}");
    assert_eq!(our_pat_in(&net.nodes[2].store), None, "{label}: post sent the PAT");

    // `reconcile`: holders are inconclusive (covered), the empty one waits for GitHub
    let run = patrol(&net.scratch, "c.toml", &["reconcile", "--json"]);
    run.expect_code(1);
    let j = run.json();
    for uid in [11, 12] {
        let r = row(&run, uid);
        assert_eq!(
            (r["category"].as_str(), r["has_pat"].as_bool(), r["pat_valid"].clone(), r["action"].as_str()),
            (Some("inconclusive"), Some(true), Value::Null, Some("recheck")),
            "{label}: uid {uid}\n{run}"
        );
    }
    let r = row(&run, 13);
    assert_eq!(
        (r["category"].as_str(), r["action"].as_str(), r["attempts"].as_u64(), r["final_category"].as_str()),
        (Some("no_pat"), Some("recheck"), Some(0), Some("no_pat")),
        "{label}\n{run}"
    );
    assert!(r["why"].as_str().unwrap().starts_with("local PAT preflight inconclusive"), "{label}\n{run}");
    let preflight = j["preflight"].as_str().unwrap_or_else(|| panic!("{label}: no preflight\n{run}"));
    assert!(preflight.starts_with("transient: ") && preflight.contains(expect_in_reason), "{label}: {preflight}");
    assert_eq!(j["broadcasts_sent"], 0, "{label}\n{run}");
    assert_eq!((j["inconclusive"].as_u64(), j["invalid_pat"].as_u64()), (Some(2), Some(0)), "{label}\n{run}");
    assert!(
        j["alerts"].as_array().unwrap().iter().all(|a| a["kind"] != "pat_invalid" && a["kind"] != "terminal"),
        "{label}: a transient failure raised a verdict\n{run}"
    );
    for (n, bytes) in net.nodes[..2].iter().zip(&held) {
        assert_eq!(&std::fs::read(&n.store).unwrap(), bytes, "{label}: uid {}'s store changed", n.uid);
    }
    assert_eq!(our_pat_in(&net.nodes[2].store), None);
    assert!(gh.calls("user") > 0, "{label}: GitHub was not asked");

    // GitHub recovers: after uid 13's backoff one reconcile restores full coverage
    gh.clear_faults();
    make_due(&net.scratch, 13);
    let run = patrol(&net.scratch, "c.toml", &["reconcile", "--json"]);
    run.expect_code(0);
    let j = run.json();
    assert_eq!((j["valid"].as_u64(), j["broadcasts_sent"].as_u64()), (Some(3), Some(1)), "{label}\n{run}");
    assert_eq!(row(&run, 13)["action"], "broadcast", "{label}\n{run}");
    for n in &net.nodes {
        assert_eq!(our_pat_in(&n.store).as_deref(), Some(PAT), "{label}: uid {}", n.uid);
    }
    net.assert_no_leak(PAT);
    assert!(!gh.stderr().contains(PAT), "the fake GitHub logged the PAT");
}

#[test]
fn github_5xx_is_transient_at_validators_and_preflight_then_coverage_returns() {
    github_fault_is_transient_everywhere(json!({"kind": "status", "status": 502}), "502");
}

#[test]
fn github_429_with_retry_after_is_transient_then_coverage_returns() {
    github_fault_is_transient_everywhere(json!({"kind": "too_many_requests", "retry_after_secs": 30}), "429");
}

#[test]
fn github_slow_bodies_time_out_as_transient_then_coverage_returns() {
    // a few bytes every 300 ms: far beyond both deadlines (validators 1 s, patrol 2 s)
    github_fault_is_transient_everywhere(json!({"kind": "trickle", "bytes": 4, "every_ms": 300}), "timed out after 2s");
}

#[test]
fn github_connection_resets_are_transient_then_coverage_returns() {
    github_fault_is_transient_everywhere(json!({"kind": "reset"}), "connection closed before message completed");
}
