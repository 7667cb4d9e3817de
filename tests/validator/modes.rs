//! Parity vs fixed, end to end: a Rust dendrite → our axon → the real GitHub client → the fake
//! GitHub over HTTP answering 503 / timeout / 429 / rate-limited 403 / 401 / GraphQL error /
//! `viewer: null` on either endpoint. Each row states the exact check and broadcast answers of each
//! mode (semantics doc §2.2, §2.3, §2.6).

use std::time::Duration;

use patrol::github::Mode;
use patrol::lab::fake_github::{FakeAccount, FakeGithubConfig, Fault, FaultRule, Scope, spawn_fake_github};
use patrol::lab::validator::handlers::{REASON_CHECK_RETRY, reason_identity_transient, reason_no_github_id};
use patrol::lab::validator::{AxonConfig, PatStore, RawPat, RegisteredMiner};
use patrol::wire::{BroadcastFields, CallOutcome, CheckFields};

use super::{InProcess, dendrite, github_options, miner_key, start_in_process};

const TOKEN: &str = "ghp_modesTESTtoken0000000000000000001";
const UID: u16 = 5;

fn check(has_pat: bool, pat_valid: Option<bool>, reason: Option<&str>) -> CheckFields {
    CheckFields { has_pat: Some(has_pat), pat_valid, rejection_reason: reason.map(str::to_string) }
}

fn rejected(reason: &str) -> BroadcastFields {
    BroadcastFields { accepted: Some(false), rejection_reason: Some(reason.to_string()) }
}

fn test_failed(detail: &str) -> String {
    format!("PAT test query failed: {detail}")
}

fn test_transient(detail: &str) -> String {
    format!(
        "GitHub API temporarily unavailable during PAT test query; retry the broadcast in a few minutes. ({detail})"
    )
}

struct Row {
    name: &'static str,
    fault: Fault,
    scope: Scope,
    /// (parity check, parity broadcast, fixed check, fixed broadcast)
    want: (CheckFields, BroadcastFields, CheckFields, BroadcastFields),
}

/// One row against a fake GitHub and a parity and a fixed validator of its own: the rows run at
/// once (most of their time is GitHub's timeouts and Retry-After waits, not work).
async fn run_row(row: Row, url: &str, gh: &patrol::lab::fake_github::FakeGithubHandle) {
    let key = miner_key(UID.into());
    let miners = vec![RegisteredMiner { uid: UID, hotkey: key.ss58().to_string(), stake: 10.0 }];
    let timeout = Duration::from_secs(1);
    let parity =
        start_in_process(miners.clone(), github_options(url, Mode::Parity, timeout), AxonConfig::default()).await;
    let fixed = start_in_process(miners, github_options(url, Mode::Fixed, timeout), AxonConfig::default()).await;
    let d = dendrite(key.clone());
    gh.set_faults(vec![FaultRule::new(row.fault.clone()).on(row.scope)]);
    let (pc, pb, fc, fb) = row.want.clone();
    let case = |mode: &'static str, v: InProcess, want_check: CheckFields, want_broadcast: BroadcastFields| {
        let (d, key, name) = (&d, &key, row.name);
        async move {
            // check: the store holds this miner's PAT
            PatStore::new(&v.store).save(UID, key.ss58(), &RawPat::new(TOKEN), "77").unwrap();
            let r = d.check(&v.target(), Duration::from_secs(15)).await;
            assert_eq!(r.outcome, CallOutcome::Answered(want_check), "{name} [{mode}] check");
            // broadcast: an empty store
            std::fs::write(&v.store, "[]").unwrap();
            let pat = patrol::secret::Pat::new(TOKEN).unwrap();
            let r = d.broadcast(&v.target(), Duration::from_secs(15), &pat).await;
            assert_eq!(r.outcome, CallOutcome::Answered(want_broadcast.clone()), "{name} [{mode}] broadcast");
            let stored = PatStore::new(&v.store).read_all().unwrap();
            assert_eq!(stored.len(), usize::from(want_broadcast.accepted == Some(true)), "{name} [{mode}] store");
        }
    };
    futures_util::future::join(case("parity", parity, pc, pb), case("fixed", fixed, fc, fb)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_github_failure_in_both_modes() {
    // each row's own fake GitHub (its URL is in the timeout text; every one is on 127.0.0.1)
    let mut fakes = Vec::new();
    for _ in 0..12 {
        let fake = FakeGithubConfig::default().with_account(FakeAccount::new(TOKEN, 77, "octo"));
        let (addr, gh) = spawn_fake_github(fake).await;
        fakes.push((format!("http://{addr}"), gh));
    }
    let gql_timeout = |url: &str| format!("request to {url}/graphql timed out after 1s");
    let retry = || check(true, None, Some(REASON_CHECK_RETRY));
    let permanent =
        |detail: &str| (check(true, Some(false), Some(&test_failed(detail))), rejected(&test_failed(detail)));
    let both_permanent = |detail: &str| {
        let (c, b) = permanent(detail);
        (c.clone(), b.clone(), c, b)
    };
    let mode_split = |detail: &str| {
        let (c, b) = permanent(detail);
        (c, b, retry(), rejected(&test_transient(detail)))
    };
    let identity_transient =
        (retry(), rejected(&reason_identity_transient(UID)), retry(), rejected(&reason_identity_transient(UID)));
    let invalid = check(true, Some(false), Some(&reason_no_github_id(UID)));
    let ok = BroadcastFields { accepted: Some(true), rejection_reason: None };
    #[rustfmt::skip]
    let rows = vec![
        Row { name: "503 on the test query", fault: Fault::status(503), scope: Scope::Graphql, want: mode_split("GitHub GraphQL API returned 503") },
        Row { name: "timeout on the test query", fault: Fault::Delay { ms: 2500 }, scope: Scope::Graphql, want: mode_split(&gql_timeout(&fakes[1].0)) },
        Row { name: "429 on the test query", fault: Fault::TooManyRequests { retry_after_secs: 1 }, scope: Scope::Graphql, want: mode_split("GitHub GraphQL API returned 429") },
        Row { name: "rate-limited 403 on the test query", fault: Fault::RateLimited { reset_after_secs: 1 }, scope: Scope::Graphql, want: mode_split("GitHub GraphQL API returned 403") },
        Row { name: "401 on the test query", fault: Fault::status(401), scope: Scope::Graphql, want: both_permanent("GitHub GraphQL API returned 401") },
        Row { name: "GraphQL error", fault: Fault::GraphqlErrors { message: "Something went wrong".into(), error_type: None }, scope: Scope::Graphql, want: both_permanent("GraphQL error: Something went wrong") },
        Row { name: "viewer null", fault: Fault::ViewerNull, scope: Scope::Graphql, want: both_permanent("Fine-grained PATs need 'Public Repositories (read-only)' permission") },
        Row { name: "503 on /user", fault: Fault::status(503), scope: Scope::User, want: identity_transient.clone() },
        Row { name: "timeout on /user", fault: Fault::Delay { ms: 2500 }, scope: Scope::User, want: identity_transient.clone() },
        Row { name: "429 on /user", fault: Fault::TooManyRequests { retry_after_secs: 1 }, scope: Scope::User, want: identity_transient.clone() },
        Row { name: "401 on /user", fault: Fault::status(401), scope: Scope::User, want: (invalid.clone(), rejected(&reason_no_github_id(UID)), invalid.clone(), rejected(&reason_no_github_id(UID))) },
        Row { name: "no fault", fault: Fault::Delay { ms: 0 }, scope: Scope::Both, want: (check(true, Some(true), None), ok.clone(), check(true, Some(true), None), ok) },
    ];
    assert_eq!(rows.len(), fakes.len());
    let runs = rows.into_iter().zip(&fakes).map(|(row, (url, gh))| run_row(row, url, gh));
    futures_util::future::join_all(runs).await;
}
