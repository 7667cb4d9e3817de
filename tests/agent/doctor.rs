//! `patrol doctor`: one line per check, `ok`/`fail` with the fix; exit 0 when all pass, 78 when
//! not. Against a static list (the chain checks say "skipped: no chain"), the mock chain (with the
//! chain's clock and our registration injected into its storage), and broken setups.

use std::time::Duration;

use blake2::Digest as _;
use patrol::chain::time::TIMESTAMP_NOW_KEY;
use patrol::lab::fake_github::{FakeAccount, FakeGithubConfig, Fault, FaultRule, Scope, spawn_fake_github};
use serde_json::Value;

use super::{MINER2_SEED, PAT, config, scratch};
use crate::support::cli::{Run, Scratch, static_validator};
use crate::support::mock_node::{Fixture, MockNode, unhex};
use crate::support::python::{DENDRITE_SEED, VALIDATOR_HOTKEY};

fn doctor(s: &Scratch, args: &[&str]) -> Run {
    let mut all = vec!["doctor", "--config", "agent.toml"];
    all.extend_from_slice(args);
    s.run_env(&all, &[], Duration::from_secs(60))
}

/// The check named `name` in `doctor --json` output.
fn check<'a>(j: &'a Value, name: &str) -> &'a Value {
    j["checks"].as_array().unwrap().iter().find(|c| c["check"] == name).unwrap_or_else(|| panic!("no {name} in {j}"))
}

/// The synthetic netuid-74 fixture with `Timestamp::Now` = `now_ms`, and our hotkey registered as
/// uid 7 (a `SubtensorModule::Uids` entry built on the recorded one's netuid prefix).
fn chain_fixture(now_ms: u64, register: Option<&str>) -> Fixture {
    let mut f = Fixture::synthetic_netuid74();
    f.storage.insert(TIMESTAMP_NOW_KEY.to_string(), format!("0x{}", hex::encode(now_ms.to_le_bytes())));
    if let Some(seed) = register {
        let recorded = f.storage.keys().find(|k| k.len() > 100).cloned().expect("a recorded Uids key");
        // twox128(pallet) ++ twox128(item) ++ identity(netuid u16): 32 + 2 bytes; then
        // blake2_128concat(account)
        let prefix = &unhex(&recorded)[..34];
        let pk = patrol::wallet::Hotkey::from_seed_hex(seed).unwrap().public_key();
        let mut key = prefix.to_vec();
        key.extend_from_slice(&blake2::Blake2b::<blake2::digest::consts::U16>::digest(pk));
        key.extend_from_slice(&pk);
        f.storage.insert(format!("0x{}", hex::encode(key)), "0x0700".into());
    }
    f
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_with_a_static_list_and_says_skipped_no_chain() {
    let (gh, _g) = spawn_fake_github(
        FakeGithubConfig::default()
            .with_account(FakeAccount::new(PAT, 4242, "doc-miner").expiring("2031-01-01 00:00:00 UTC")),
    )
    .await;
    let s = scratch();
    s.write(
        "agent.toml",
        &config(None, gh, &static_validator(1, VALIDATOR_HOTKEY, "127.0.0.1", 9, 20000.0), ""),
        0o600,
    );
    let run = doctor(&s, &[]);
    run.expect_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let line = |name: &str| {
        *lines.iter().find(|l| l[5..].starts_with(name)).unwrap_or_else(|| panic!("no {name} line\n{run}"))
    };
    assert!(line("config").starts_with("ok") && line("config").contains("agent.toml parsed"), "{run}");
    assert!(line("wallet").contains("hotkey 5DfhGy"), "{run}");
    assert!(line("chain").starts_with("ok") && line("chain").contains("skipped: no chain"), "{run}");
    assert!(line("clock").starts_with("ok") && line("clock").contains("skipped: no chain"), "{run}");
    assert!(line("pat").contains("***0001 from file"), "{run}");
    assert!(line("github identity").contains("doc-miner (id 4242); expires 2031-01-01"), "{run}");
    assert!(line("github test query").starts_with("ok"), "{run}");
    assert!(line("eligible validators").contains("1 eligible (uids 1)"), "{run}");
    assert!(line("state dir").contains("is writable"), "{run}");
    assert_eq!(lines.last(), Some(&"all checks passed"));
    let j = doctor(&s, &["--json"]).json();
    assert_eq!(j["success"], true);
    assert_eq!(check(&j, "clock")["skipped"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_each_failure_and_its_fix() {
    let (gh, github) = spawn_fake_github(
        FakeGithubConfig::default()
            .with_account(FakeAccount::new(PAT, 4242, "doc-miner"))
            .with_fault(FaultRule::new(Fault::ViewerNull).on(Scope::Graphql)),
    )
    .await;
    let s = scratch();
    // the state dir lies under a regular file: not creatable
    s.write("blocker", "", 0o600);
    let validators = static_validator(1, VALIDATOR_HOTKEY, "127.0.0.1", 9, 20000.0);
    s.write(
        "agent.toml",
        &config(None, gh, &validators, "").replace("state_dir = \"state\"", "state_dir = \"blocker/state\""),
        0o600,
    );
    // a PAT GitHub knows but whose GraphQL viewer is null: validators reject it
    let run = doctor(&s, &[]);
    run.expect_code(78);
    let j = doctor(&s, &["--json"]).json();
    assert_eq!(j["success"], false);
    assert_eq!(check(&j, "github identity")["ok"], true);
    let q = check(&j, "github test query");
    assert_eq!(q["ok"], false);
    assert!(q["detail"].as_str().unwrap().contains("validators would reject this PAT"), "{q}");
    assert!(q["fix"].as_str().unwrap().contains("classic PAT"), "{q}");
    let st = check(&j, "state dir");
    assert_eq!(st["ok"], false);
    assert!(st["fix"].as_str().unwrap().contains("StateDirectory"), "{st}");
    assert!(run.stdout.contains("\nfail github test query") && run.stdout.contains("fix: "), "{run}");

    // revoked: the identity call fails, the test query is not run
    github.revoke_token(PAT);
    let j = doctor(&s, &["--json"]).json();
    let id = check(&j, "github identity");
    assert_eq!(id["ok"], false);
    assert!(id["detail"].as_str().unwrap().contains("HTTP 401"), "{id}");
    assert!(id["fix"].as_str().unwrap().contains("create a new one"), "{id}");

    // no hotkey, an open PAT file
    std::fs::remove_file(s.path("hotkey")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(s.path("pat"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let j = doctor(&s, &["--json"]).json();
    assert_eq!(check(&j, "wallet")["ok"], false);
    assert!(check(&j, "wallet")["fix"].as_str().unwrap().contains("hotkey_file"));
    assert_eq!(check(&j, "registered")["ok"], false);
    let pat = check(&j, "pat");
    assert_eq!(pat["ok"], false);
    assert!(pat["detail"].as_str().unwrap().contains("chmod 600"), "{pat}");

    // a config that does not load is the first (and only) failure
    s.write("agent.toml", "[reconcile]\ninterval = \"soon\"\n", 0o600);
    let run = doctor(&s, &[]);
    run.expect_code(78);
    assert!(run.stdout.starts_with("fail config") && run.stdout.contains("reconcile.interval"), "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_against_the_chain_checks_registration_clock_and_eligibility() {
    let (gh, _g) =
        spawn_fake_github(FakeGithubConfig::default().with_account(FakeAccount::new(PAT, 4242, "doc-miner"))).await;
    let node = MockNode::start(chain_fixture(now_ms() - 6_000, Some(DENDRITE_SEED))).await;
    let s = scratch();
    let chain = format!("[chain]\nnetwork = \"{}\"\nnetuid = 74\n", node.url());
    s.write("agent.toml", &config(None, gh, &chain, ""), 0o600);
    // gitt's default stake floor leaves nobody eligible on the synthetic subnet; 0 lets uids 0 and 2 in
    let run = doctor(&s, &["--min-stake", "0"]);
    run.expect_code(0);
    assert!(run.stdout.contains("block 5000000, 4 neurons on netuid 74"), "{run}");
    assert!(run.stdout.contains("uid 7 on netuid 74"), "{run}");
    // the block is 6 s old when the fixture is made; doctor reads it a little later
    let clock = run.stdout.lines().find(|l| l.starts_with("ok   clock")).unwrap_or_else(|| panic!("{run}"));
    let skew: f64 = clock
        .split("latest block is ")
        .nth(1)
        .and_then(|r| r.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no skew in {clock:?}"));
    assert!((5.5..60.0).contains(&skew), "{clock}");
    assert!(run.stdout.contains("2 eligible (uids 0,2)"), "{run}");
    let j = doctor(&s, &["--json"]).json();
    let el = check(&j, "eligible validators");
    assert_eq!(el["ok"], false);
    assert!(el["detail"].as_str().unwrap().contains("stake >= 15000"), "{el}");
    drop(node);

    // the local clock an hour ahead of the chain, and a hotkey that is not registered
    let node = MockNode::start(chain_fixture(now_ms() - 3_600_000, None)).await;
    let mut s = Scratch::new();
    s.hotkey("hotkey", MINER2_SEED);
    s.pat("pat", PAT);
    let chain = format!("[chain]\nnetwork = \"{}\"\nnetuid = 74\n", node.url());
    s.write("agent.toml", &config(None, gh, &chain, ""), 0o600);
    let j = doctor(&s, &["--json", "--min-stake", "0"]).json();
    assert_eq!(j["success"], false);
    let clock = check(&j, "clock");
    assert_eq!(clock["ok"], false);
    assert!(clock["fix"].as_str().unwrap().contains("timedatectl set-ntp true"), "{clock}");
    let reg = check(&j, "registered");
    assert_eq!(reg["ok"], false);
    assert!(reg["fix"].as_str().unwrap().contains("btcli subnet register --netuid 74"), "{reg}");
    assert_eq!(check(&j, "chain")["ok"], true);

    // no chain at all
    drop(node);
    let j = doctor(&s, &["--json"]).json();
    assert_eq!(check(&j, "chain")["ok"], false);
    assert!(check(&j, "chain")["fix"].as_str().unwrap().contains("--network"));
    assert_eq!(check(&j, "clock")["detail"], "cannot tell: the chain is unreachable");
}

/// Issue 20 item 16: two miners whose PATs belong to one GitHub account (two tokens of one account
/// are one account) fail doctor, naming both: gittensor penalises a GitHub id used by several miners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_miners_with_one_github_account_fail_doctor() {
    const SECOND_TOKEN: &str = "ghp_doctorSameAccountSecondToken00002";
    const OTHER: &str = "ghp_doctorOtherAccountToken000000003";
    let (gh, _g) = spawn_fake_github(
        FakeGithubConfig::default()
            .with_account(FakeAccount::new(PAT, 4242, "doc-miner"))
            .with_account(FakeAccount::new(SECOND_TOKEN, 4242, "doc-miner"))
            .with_account(FakeAccount::new(OTHER, 777, "someone-else")),
    )
    .await;
    let mut s = scratch();
    s.hotkey("hotkey2", MINER2_SEED);
    s.pat("pat2", SECOND_TOKEN);
    s.pat("pat3", OTHER);
    let body = |second_pat: &str| {
        format!(
            "[[miner]]\nname = \"alpha\"\nwallet = {{ hotkey_file = \"hotkey\" }}\npat = {{ file = \"pat\" }}\n\
             [[miner]]\nname = \"beta\"\nwallet = {{ hotkey_file = \"hotkey2\" }}\npat = {{ file = \"{second_pat}\" }}\n\
             [agent]\nstate_dir = \"state\"\nlisten = \"off\"\n[github]\napi_url = \"http://{gh}\"\ntimeout = \"3s\"\n{}",
            static_validator(1, VALIDATOR_HOTKEY, "127.0.0.1", 9, 20000.0)
        )
    };
    s.write("agent.toml", &body("pat2"), 0o600);
    let run = doctor(&s, &[]);
    run.expect_code(78);
    let line = run.stdout.lines().find(|l| l.contains("github account")).unwrap_or_else(|| panic!("{run}"));
    assert!(line.starts_with("fail") && line.contains("alpha and beta") && line.contains("id 4242"), "{line}\n{run}");
    // accounts of their own: no such line
    s.write("agent.toml", &body("pat3"), 0o600);
    let run = doctor(&s, &[]);
    assert!(!run.stdout.contains("github account"), "{run}");
}
