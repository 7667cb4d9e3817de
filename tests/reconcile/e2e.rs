//! `patrol reconcile` end to end (issue 5): the real `patrol` binary reconciling against several
//! `patrol validator serve` processes and a fake GitHub on 127.0.0.1. What a user would see: exit
//! codes, the JSON rows, what each validator stored (and when it last wrote its store), what GitHub
//! was asked.

use std::time::Duration;

use crate::support::cli::{Run, row};
use crate::support::state;
use crate::support::subnet::Subnet;
use patrol::lab::fake_github::{Endpoint, FakeAccount, FakeGithubConfig, Fault, FaultRule, Scope, spawn_fake_github};

/// Our PAT, a rotated one for the same GitHub account, and one for another account.
const PAT_A: &str = "ghp_reconcileE2eAccount4242tokenA0001";
const PAT_B: &str = "ghp_reconcileE2eAccount4242tokenB0002";
const PAT_OTHER: &str = "ghp_reconcileE2eAccount0777tokenC0003";

fn accounts() -> FakeGithubConfig {
    FakeGithubConfig::default()
        .with_account(FakeAccount::new(PAT_A, 4242, "miner"))
        .with_account(FakeAccount::new(PAT_B, 4242, "miner"))
        .with_account(FakeAccount::new(PAT_OTHER, 777, "someone-else"))
}

/// A reconcile of `cfg` that finds everything covered: exit 0, nothing sent.
fn quiet(net: &Subnet, cfg: &str) {
    let run = reconcile(net, cfg);
    run.expect_code(0);
    assert_eq!(run.json()["broadcasts_sent"], 0, "{run}");
}

fn reconcile(net: &Subnet, cfg: &str) -> Run {
    net.scratch.run_env(&["reconcile", "--json", "--config", cfg], &[], Duration::from_secs(60))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_store_is_repaired_at_exactly_that_validator_then_quiet() {
    let (gh, github) = spawn_fake_github(accounts()).await;
    let mut net = Subnet::with_pat(4, gh, PAT_A);
    net.config("c.toml", &[0, 1, 2, 3], gh, "");
    net.scratch.run(&["post", "--json", "--config", "c.toml"]).expect_code(0);
    assert!(net.nodes.iter().all(|n| n.stored_pat().as_deref() == Some(PAT_A)));

    // steady state: a full check, zero broadcasts, no store written
    let written: Vec<_> = net.nodes.iter().map(|n| n.written_at()).collect();
    let run = reconcile(&net, "c.toml");
    run.expect_code(0);
    assert_eq!(run.json()["broadcasts_sent"], 0, "{run}");
    assert_eq!(net.nodes.iter().map(|n| n.written_at()).collect::<Vec<_>>(), written);

    // validator uid 12 restarts without its store
    net.nodes[1].restart_empty();
    assert_eq!(net.nodes[1].stored_pat(), None);
    let written: Vec<_> = net.nodes.iter().map(|n| n.written_at()).collect();
    github.reset_stats();
    let run = reconcile(&net, "c.toml");
    run.expect_code(0);
    assert_eq!(run.json()["broadcasts_sent"], 1, "{run}");
    let r = row(&run, 12);
    assert_eq!(
        (r["category"].as_str(), r["action"].as_str(), r["final_category"].as_str()),
        (Some("no_pat"), Some("broadcast"), Some("valid")),
        "{run}"
    );
    assert_eq!(r["attempts"], 1);
    for uid in [11, 13, 14] {
        assert_eq!(row(&run, uid)["action"], "none", "{run}");
    }
    assert_eq!(net.nodes[1].stored_pat().as_deref(), Some(PAT_A));
    for i in [0, 2, 3] {
        assert_eq!(net.nodes[i].written_at(), written[i], "validator {i} received the PAT again");
    }
    // GitHub /user with our PAT: 3 checks (the empty validator has nothing to look up), the
    // broadcast and the confirming check; no preflight of our own: the steady run's hourly one,
    // seconds ago, found the PAT valid and is reused for 10 minutes
    assert_eq!(github.calls_with(Endpoint::User, PAT_A), 3 + 1 + 1, "{:?}", github.stats());

    // and quiet again
    quiet(&net, "c.toml");
    net.assert_no_leak(PAT_A);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_validator_is_partial_and_retried_only_after_its_backoff() {
    let (gh, _github) = spawn_fake_github(accounts()).await;
    let mut net = Subnet::with_pat(3, gh, PAT_A);
    net.config("c.toml", &[0, 1, 2], gh, "backoff_initial = \"10s\"\nbackoff_max = \"20s\"");
    net.scratch.run(&["post", "--json", "--config", "c.toml"]).expect_code(0);
    net.nodes[2].stop();
    let _ = std::fs::remove_file(&net.nodes[2].store);

    let run = reconcile(&net, "c.toml");
    run.expect_code(1);
    let r = row(&run, 13);
    assert_eq!((r["final_category"].as_str(), r["failures"].as_u64()), (Some("no_response"), Some(1)), "{run}");
    assert_eq!(run.json()["stake_weighted_coverage"].as_f64().map(|x| (x * 3.0).round()), Some(2.0));

    // it comes back (with an empty store), but we are inside its backoff window: not contacted
    net.nodes[2].start();
    let run = reconcile(&net, "c.toml");
    run.expect_code(1);
    let r = row(&run, 13);
    assert_eq!((r["action"].as_str(), r["final_category"].as_str()), (Some("not_due"), Some("no_response")), "{run}");
    assert_eq!(net.nodes[2].stored_pat(), None, "contacted inside its backoff window");

    // after the backoff (5–10 s for the first failure; the state's times moved back instead of
    // waiting) it is checked and repaired
    state::make_due(&state::path(&net.scratch, "state"), 13, 10, 12);
    let run = reconcile(&net, "c.toml");
    run.expect_code(0);
    assert_eq!(row(&run, 13)["action"], "broadcast", "{run}");
    assert_eq!(net.nodes[2].stored_pat().as_deref(), Some(PAT_A));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_503_at_one_validator_is_inconclusive_not_rebroadcast() {
    let (gh, _github) = spawn_fake_github(accounts()).await;
    // validator uid 13 (parity mode, i.e. today's upstream) and uid 14 (fixed mode) use a GitHub
    // whose GraphQL endpoint answers 503
    let (gh_bad, bad) = spawn_fake_github(accounts()).await;
    let mut net = Subnet::with_pat(4, gh, PAT_A);
    net.config("c.toml", &[0, 1, 2, 3], gh, "");
    net.scratch.run(&["post", "--json", "--config", "c.toml"]).expect_code(0);
    for (i, mode) in [(2, "parity"), (3, "fixed")] {
        net.nodes[i].stop();
        net.nodes[i].github = format!("http://{gh_bad}");
        net.nodes[i].mode = mode;
        net.nodes[i].start();
    }
    bad.set_faults(vec![FaultRule::new(Fault::status(503)).on(Scope::Graphql)]);
    let written: Vec<_> = net.nodes.iter().map(|n| n.written_at()).collect();
    let run = reconcile(&net, "c.toml");
    run.expect_code(0);
    assert_eq!(run.json()["broadcasts_sent"], 0, "{run}");
    // upstream's bug: parity answers invalid_pat "…returned 503"; patrol reads it as inconclusive
    let parity = row(&run, 13);
    assert_eq!(
        (parity["gitt_category"].as_str(), parity["category"].as_str()),
        (Some("invalid_pat"), Some("inconclusive")),
        "{run}"
    );
    assert!(parity["rejection_reason"].as_str().unwrap().contains("returned 503"));
    let fixed = row(&run, 14);
    assert_eq!((fixed["category"].as_str(), fixed["pat_valid"].as_bool()), (Some("inconclusive"), None), "{run}");
    for uid in [13, 14] {
        assert_eq!(row(&run, uid)["action"], "recheck", "{run}");
    }
    assert_eq!(net.nodes.iter().map(|n| n.written_at()).collect::<Vec<_>>(), written, "a store was rewritten");
    assert!(bad.calls(Endpoint::Graphql) >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_locked_is_terminal_until_the_pat_changes() {
    let (gh, github) = spawn_fake_github(accounts()).await;
    let mut net = Subnet::with_pat(3, gh, PAT_A);
    net.scratch.secret(PAT_OTHER);
    net.scratch.secret(PAT_B);
    // uid 11 stores our PAT for GitHub account 4242; the others have nothing yet
    net.config("one.toml", &[0], gh, "");
    net.scratch.run(&["post", "--json", "--config", "one.toml"]).expect_code(0);

    // the miner switches to another GitHub account
    net.scratch.pat("pat", PAT_OTHER);
    net.config("c.toml", &[0, 1, 2], gh, "");
    let run = reconcile(&net, "c.toml");
    let r = row(&run, 11);
    assert_eq!(r["action"], "give_up", "{run}");
    assert!(r["why"].as_str().unwrap().contains("identity is locked"), "{run}");
    let alerts = run.json()["alerts"].clone();
    assert!(alerts.as_array().unwrap().iter().any(|a| a["kind"] == "terminal" && a["uid"] == 11), "{alerts}");
    for uid in [12, 13] {
        assert_eq!(row(&run, uid)["final_category"], "valid");
    }
    assert_eq!(net.nodes[1].stored_pat().as_deref(), Some(PAT_OTHER));

    // no retries while the PAT stays the same: uid 11 is checked, never sent the PAT again
    github.reset_stats();
    let run = reconcile(&net, "c.toml");
    assert_eq!(run.json()["broadcasts_sent"], 0, "{run}");
    assert_eq!(row(&run, 11)["action"], "give_up");
    assert_eq!(github.calls_with(Endpoint::User, PAT_OTHER), 2, "only the checks at uids 12 and 13");

    // a new PAT lifts the verdict: uid 11 gets exactly one new attempt
    net.scratch.pat("pat", PAT_B);
    let run = reconcile(&net, "c.toml");
    assert_eq!(row(&run, 11)["attempts"], 1, "{run}");
    net.assert_no_leak(PAT_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_pat_reaches_every_validator_once_then_quiet() {
    let (gh, _github) = spawn_fake_github(accounts()).await;
    let mut net = Subnet::with_pat(4, gh, PAT_A);
    net.scratch.secret(PAT_B);
    net.config("c.toml", &[0, 1, 2, 3], gh, "");
    net.scratch.run(&["post", "--json", "--config", "c.toml"]).expect_code(0);
    reconcile(&net, "c.toml").expect_code(0);

    net.scratch.pat("pat", PAT_B);
    let run = reconcile(&net, "c.toml");
    run.expect_code(0);
    assert_eq!(run.json()["broadcasts_sent"], 4, "{run}");
    for n in &net.nodes {
        assert_eq!(n.stored_pat().as_deref(), Some(PAT_B), "uid {}", n.uid);
        let r = row(&run, u64::from(n.uid));
        assert_eq!(
            (r["category"].as_str(), r["action"].as_str()),
            (Some("valid"), Some("broadcast")),
            "valid, but not our current PAT"
        );
    }
    quiet(&net, "c.toml");
    net.assert_no_leak(PAT_B);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_sends_nothing_and_metrics_file_is_written() {
    let (gh, github) = spawn_fake_github(accounts()).await;
    let net = Subnet::with_pat(2, gh, PAT_A);
    net.config("c.toml", &[0, 1], gh, "");
    let run = net.scratch.run(&["reconcile", "--json", "--dry-run", "--config", "c.toml"]);
    run.expect_code(2);
    let j = run.json();
    assert_eq!(
        (j["dry_run"].as_bool(), j["planned_broadcasts"].clone()),
        (Some(true), serde_json::json!([11, 12])),
        "{run}"
    );
    assert!(net.nodes.iter().all(|n| n.stored_pat().is_none()), "a dry run sent the PAT");
    assert!(!net.scratch.path("state").join("state").exists());
    let metrics = net.scratch.path("patrol.prom");
    let run =
        net.scratch.run(&["reconcile", "--json", "--config", "c.toml", "--metrics-file", metrics.to_str().unwrap()]);
    run.expect_code(0);
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(text.contains("patrol_coverage_validators{") && text.contains("category=\"valid\"} 2"), "{text}");
    assert!(text.contains("# TYPE patrol_broadcasts_total counter"));
    assert!(!text.contains(PAT_A));
    assert!(github.calls(Endpoint::User) > 0);
}

/// Issue 20 item 13: `check` (and `reconcile --dry-run`) cost GitHub calls on the PAT too; they go
/// into the ledger `reconcile` and the agent keep, also while another process owns the state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_and_dry_runs_count_in_the_github_budget() {
    let (gh, _github) = spawn_fake_github(accounts()).await;
    let net = Subnet::with_pat(2, gh, PAT_A);
    net.config("c.toml", &[0, 1], gh, "");
    net.scratch.run(&["post", "--json", "--config", "c.toml"]).expect_code(0);
    let first = reconcile(&net, "c.toml");
    first.expect_code(0);
    let before = first.json()["github"]["last_hour"].as_u64().unwrap();
    // two `check` runs and a dry run, each asking both validators (2 calls each at the validator)
    for _ in 0..2 {
        net.scratch.run(&["check", "--config", "c.toml"]).expect_code(0);
    }
    net.scratch.run(&["reconcile", "--dry-run", "--config", "c.toml"]).expect_code(0);
    let after = reconcile(&net, "c.toml");
    after.expect_code(0);
    let g = &after.json()["github"];
    let own = g["pass_calls"].as_u64().unwrap();
    assert_eq!(own, 4, "this pass: two checks of a held PAT\n{after}");
    assert_eq!(g["last_hour"].as_u64().unwrap(), before + 3 * 4 + own, "{after}");
}
