//! Table-driven tests of every branch of semantics doc §2.2 (broadcast) and §2.3 (check), with a
//! scripted GitHub. The same tables against the fake GitHub over HTTP are in tests/validator/.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::lab::validator::RegisteredMiner;

const HK1: &str = "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV";
const HK2: &str = "5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi";
const OTHER: &str = "5HBcPkCPJuNzWBstouENkvnpsyEqo1dn9Sj4Q1oihXGro6Jg";

/// Runs inside every test query (to race two broadcasts, or to break the store mid-broadcast).
type Hook = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// Per-token scripted answers; unknown tokens are invalid. Counts calls.
#[derive(Default)]
struct Scripted {
    identity: Mutex<HashMap<String, IdentityResult>>,
    test: Mutex<HashMap<String, TestQueryResult>>,
    identity_calls: AtomicUsize,
    test_calls: AtomicUsize,
    during_test: Mutex<Option<Hook>>,
}

impl Scripted {
    fn valid(self, token: &str, id: &str) -> Self {
        self.identity.lock().unwrap().insert(token.into(), IdentityResult::Valid { id: id.into(), login: "l".into() });
        self
    }
    fn identity(self, token: &str, r: IdentityResult) -> Self {
        self.identity.lock().unwrap().insert(token.into(), r);
        self
    }
    fn test(self, token: &str, r: TestQueryResult) -> Self {
        self.test.lock().unwrap().insert(token.into(), r);
        self
    }
}

impl CredentialChecker for Scripted {
    fn identity<'a>(&'a self, token: &'a str) -> BoxFuture<'a, IdentityResult> {
        self.identity_calls.fetch_add(1, Ordering::SeqCst);
        let r = self
            .identity
            .lock()
            .unwrap()
            .get(token)
            .cloned()
            .unwrap_or(IdentityResult::InvalidAuth { status: Some(401), message: "Bad credentials".into() });
        Box::pin(async move { r })
    }
    fn test_query<'a>(&'a self, token: &'a str) -> BoxFuture<'a, TestQueryResult> {
        self.test_calls.fetch_add(1, Ordering::SeqCst);
        let r = self.test.lock().unwrap().get(token).cloned().unwrap_or(TestQueryResult::Ok);
        let hook = self.during_test.lock().unwrap().clone();
        Box::pin(async move {
            if let Some(h) = hook {
                h().await;
            }
            r
        })
    }
}

fn failed(detail: &str, transient: bool) -> TestQueryResult {
    TestQueryResult::Failed { detail: detail.into(), transient, retry_after: None }
}

fn transient_identity() -> IdentityResult {
    IdentityResult::Transient { detail: "GitHub /user returned 503".into(), retry_after: None }
}

struct Fixture {
    _dir: tempfile::TempDir,
    v: PatValidator,
    gh: Arc<Scripted>,
}

fn fixture(gh: Scripted, mode: Mode) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(PatStore::new(dir.path().join("miner_pats.json")));
    let metagraph = Metagraph::new([
        RegisteredMiner { uid: 1, hotkey: HK1.into(), stake: 100.0 },
        RegisteredMiner { uid: 2, hotkey: HK2.into(), stake: 5.0 },
    ])
    .unwrap();
    let gh = Arc::new(gh);
    let v = PatValidator::new(metagraph, store, gh.clone(), mode);
    Fixture { _dir: dir, v, gh }
}

fn rejected(reason: &str) -> BroadcastFields {
    BroadcastFields { accepted: Some(false), rejection_reason: Some(reason.into()) }
}

fn accepted() -> BroadcastFields {
    BroadcastFields { accepted: Some(true), rejection_reason: None }
}

/// Setup of the store before a row runs.
#[derive(Clone, Copy, Debug)]
enum Pre {
    Empty,
    Entry { uid: u16, hotkey: &'static str, github_id: &'static str },
    Corrupt,
}

fn apply(f: &Fixture, pre: Pre) {
    match pre {
        Pre::Empty => {}
        Pre::Entry { uid, hotkey, github_id } => {
            f.v.store().save(uid, hotkey, &RawPat::new("ghp_previous"), github_id).unwrap()
        }
        Pre::Corrupt => std::fs::write(f.v.store().path(), "not json{{{").unwrap(),
    }
}

#[tokio::test]
async fn broadcast_every_branch() {
    let store_unavailable = "Validator PAT store temporarily unavailable; please retry. (miner_pats.json is not valid JSON: expected ident at line 1 column 2)";
    #[rustfmt::skip]
    let rows: Vec<(&str, Mode, &str, &str, Pre, BroadcastFields, usize)> = vec![
        // (name, mode, caller, token, store before, answer, test queries made)
        ("1 not registered", Mode::Fixed, OTHER, "ghp_good", Pre::Empty, rejected(REASON_NOT_REGISTERED), 0),
        ("2 empty token", Mode::Fixed, HK1, "", Pre::Empty, rejected("No Github PAT provided by miner 1"), 0),
        ("2 identity 4xx", Mode::Fixed, HK1, "ghp_unknown", Pre::Empty, rejected("No Github id found for miner 1's PAT"), 0),
        ("2 identity transient", Mode::Parity, HK1, "ghp_flaky", Pre::Empty, rejected("Could not validate Github id for miner 1: GitHub /user lookup failed transiently"), 0),
        ("3 identity pin", Mode::Fixed, HK1, "ghp_good", Pre::Entry { uid: 1, hotkey: HK1, github_id: "999" }, rejected(REASON_IDENTITY_LOCKED), 0),
        ("3 store unavailable", Mode::Fixed, HK1, "ghp_good", Pre::Corrupt, rejected(store_unavailable), 0),
        ("4 test query permanent", Mode::Fixed, HK1, "ghp_gqlerr", Pre::Empty, rejected("PAT test query failed: GraphQL error: Bad token"), 1),
        ("4 test query viewer null", Mode::Parity, HK1, "ghp_viewernull", Pre::Empty, rejected("PAT test query failed: Fine-grained PATs need 'Public Repositories (read-only)' permission"), 1),
        ("4 test query 503 fixed", Mode::Fixed, HK1, "ghp_503", Pre::Empty, rejected("GitHub API temporarily unavailable during PAT test query; retry the broadcast in a few minutes. (GitHub GraphQL API returned 503)"), 1),
        ("4 test query 503 parity", Mode::Parity, HK1, "ghp_503p", Pre::Empty, rejected("PAT test query failed: GitHub GraphQL API returned 503"), 1),
        ("6 saved", Mode::Fixed, HK1, "ghp_good", Pre::Empty, accepted(), 1),
        ("rotation, same account", Mode::Fixed, HK1, "ghp_good", Pre::Entry { uid: 1, hotkey: HK1, github_id: "42" }, accepted(), 1),
        ("new hotkey on the uid binds any account", Mode::Fixed, HK1, "ghp_good", Pre::Entry { uid: 1, hotkey: OTHER, github_id: "999" }, accepted(), 1),
        ("empty stored id pins nothing", Mode::Fixed, HK1, "ghp_good", Pre::Entry { uid: 1, hotkey: HK1, github_id: "" }, accepted(), 1),
        ("other uid's entry is irrelevant", Mode::Fixed, HK1, "ghp_good", Pre::Entry { uid: 2, hotkey: HK2, github_id: "999" }, accepted(), 1),
    ];
    for (name, mode, caller, token, pre, want, tests) in rows {
        let gh = Scripted::default()
            .valid("ghp_good", "42")
            .identity("ghp_flaky", transient_identity())
            .valid("ghp_gqlerr", "42")
            .test("ghp_gqlerr", failed("GraphQL error: Bad token", false))
            .valid("ghp_viewernull", "42")
            .test("ghp_viewernull", failed(crate::github::classify::VIEWER_NULL_DETAIL, false))
            .valid("ghp_503", "42")
            .test("ghp_503", failed("GitHub GraphQL API returned 503", true))
            .valid("ghp_503p", "42")
            // a parity client never reports transient; the handler must not act on it either way
            .test("ghp_503p", failed("GitHub GraphQL API returned 503", true));
        let f = fixture(gh, mode);
        apply(&f, pre);
        let before = std::fs::read(f.v.store().path()).ok();
        let got = f.v.broadcast(caller, RawPat::new(token)).await;
        assert_eq!(got, want, "{name}");
        assert_eq!(f.gh.test_calls.load(Ordering::SeqCst), tests, "{name}: test queries");
        let after = std::fs::read(f.v.store().path()).ok();
        if want.accepted == Some(true) {
            let e = f.v.store().get_by_uid(1).unwrap().unwrap();
            assert_eq!(
                (e.hotkey.as_deref(), e.pat.expose(), e.github_id.as_deref()),
                (Some(HK1), token, Some("42")),
                "{name}"
            );
        } else {
            assert_eq!(before, after, "{name}: a rejection leaves the store byte-identical");
        }
    }
}

#[tokio::test]
async fn broadcast_store_breaking_mid_flight_is_unavailable_and_file_kept() {
    let gh = Scripted::default().valid("ghp_good", "42");
    let f = fixture(gh, Mode::Fixed);
    let path = f.v.store().path().to_path_buf();
    let hook: Hook = Arc::new(move || {
        let path = path.clone();
        Box::pin(async move { std::fs::write(&path, "{}").unwrap() })
    });
    *f.gh.during_test.lock().unwrap() = Some(hook);
    let got = f.v.broadcast(HK1, RawPat::new("ghp_good")).await;
    assert_eq!(
        got.rejection_reason.as_deref(),
        Some(
            "Validator PAT store temporarily unavailable; please retry. (miner_pats.json is not a JSON list of objects: the top level is an object)"
        )
    );
    assert_eq!(std::fs::read_to_string(f.v.store().path()).unwrap(), "{}");
}

#[tokio::test]
async fn concurrent_broadcasts_recheck_the_pin_before_save() {
    // Upstream's test_concurrent_broadcast_rechecks_identity_pin_before_save: both broadcasts pass
    // step 3 on an empty store, meet at a barrier inside the test query, then race to save.
    let gh = Scripted::default().valid("ghp_account_a", "github_a").valid("ghp_account_b", "github_b");
    let f = fixture(gh, Mode::Fixed);
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let hook: Hook = Arc::new(move || {
        let b = barrier.clone();
        Box::pin(async move {
            b.wait().await;
        })
    });
    *f.gh.during_test.lock().unwrap() = Some(hook);
    let (a, b) = tokio::join!(
        f.v.broadcast(HK1, RawPat::new("ghp_account_a")),
        f.v.broadcast(HK1, RawPat::new("ghp_account_b"))
    );
    let results = [a, b];
    assert_eq!(results.iter().filter(|r| r.accepted == Some(true)).count(), 1, "{results:?}");
    let locked = results.iter().find(|r| r.accepted == Some(false)).unwrap();
    assert_eq!(locked.rejection_reason.as_deref(), Some(REASON_IDENTITY_LOCKED));
}

fn check(has_pat: bool, pat_valid: Option<bool>, reason: Option<&str>) -> CheckFields {
    CheckFields { has_pat: Some(has_pat), pat_valid, rejection_reason: reason.map(str::to_string) }
}

#[tokio::test]
async fn check_every_branch() {
    #[rustfmt::skip]
    let rows: Vec<(&str, Mode, Pre, &str, CheckFields, usize)> = vec![
        // (name, mode, store before (entry PAT is "ghp_previous"), what "ghp_previous" does, answer, test queries)
        ("store unreadable", Mode::Fixed, Pre::Corrupt, "valid", check(false, None, Some(REASON_STORE_UNAVAILABLE)), 0),
        ("no entry", Mode::Fixed, Pre::Empty, "valid", check(false, Some(false), Some(REASON_NO_PAT_STORED)), 0),
        ("stale entry of a previous miner", Mode::Fixed, Pre::Entry { uid: 1, hotkey: OTHER, github_id: "42" }, "valid", check(false, Some(false), Some(REASON_NO_PAT_STORED)), 0),
        ("identity transient, stored id", Mode::Parity, Pre::Entry { uid: 1, hotkey: HK1, github_id: "42" }, "identity_transient", check(true, None, Some(REASON_CHECK_RETRY)), 0),
        ("identity transient, no stored id", Mode::Fixed, Pre::Entry { uid: 1, hotkey: HK1, github_id: "" }, "identity_transient", check(true, None, Some(REASON_CHECK_RETRY)), 0),
        ("identity 4xx", Mode::Fixed, Pre::Entry { uid: 1, hotkey: HK1, github_id: "42" }, "invalid", check(true, Some(false), Some("No Github id found for miner 1's PAT")), 0),
        ("test query permanent", Mode::Fixed, Pre::Entry { uid: 1, hotkey: HK1, github_id: "42" }, "gql_error", check(true, Some(false), Some("PAT test query failed: GraphQL error: Bad token")), 1),
        ("test query transient, fixed", Mode::Fixed, Pre::Entry { uid: 1, hotkey: HK1, github_id: "42" }, "test_503", check(true, None, Some(REASON_CHECK_RETRY)), 1),
        ("test query transient, parity", Mode::Parity, Pre::Entry { uid: 1, hotkey: HK1, github_id: "42" }, "test_503", check(true, Some(false), Some("PAT test query failed: GitHub GraphQL API returned 503")), 1),
        ("all good", Mode::Parity, Pre::Entry { uid: 1, hotkey: HK1, github_id: "42" }, "valid", check(true, Some(true), None), 1),
        ("identity id differs from stored: not compared", Mode::Fixed, Pre::Entry { uid: 1, hotkey: HK1, github_id: "7" }, "valid", check(true, Some(true), None), 1),
    ];
    for (name, mode, pre, behaviour, want, tests) in rows {
        let t = "ghp_previous";
        let gh = match behaviour {
            "valid" => Scripted::default().valid(t, "42"),
            "identity_transient" => Scripted::default().identity(t, transient_identity()),
            "invalid" => Scripted::default(),
            "gql_error" => Scripted::default().valid(t, "42").test(t, failed("GraphQL error: Bad token", false)),
            "test_503" => Scripted::default().valid(t, "42").test(t, failed("GitHub GraphQL API returned 503", true)),
            other => panic!("unknown behaviour {other}"),
        };
        let f = fixture(gh, mode);
        apply(&f, pre);
        assert_eq!(f.v.check(HK1).await.unwrap(), want, "{name}");
        assert_eq!(f.gh.test_calls.load(Ordering::SeqCst), tests, "{name}: test queries");
    }
}

#[tokio::test]
async fn check_edge_cases() {
    let f = fixture(Scripted::default(), Mode::Fixed);
    assert_eq!(f.v.check(OTHER).await, Err(HandlerError::NotRegistered("5HBcPkCPJuNzWBst".into())));
    f.v.store().save(1, HK1, &RawPat::new(""), "42").unwrap();
    assert_eq!(f.v.check(HK1).await.unwrap(), check(true, Some(false), Some("No Github PAT provided by miner 1")));
    assert_eq!(f.gh.identity_calls.load(Ordering::SeqCst), 0);
}

#[test]
fn blacklist_and_priority() {
    let f = fixture(Scripted::default(), Mode::Fixed);
    assert_eq!(f.v.blacklist(HK1), Ok(()));
    assert_eq!(f.v.blacklist(OTHER), Err("Hotkey 5HBcPkCPJuNzWBst... not registered".into()));
    assert_eq!(f.v.priority(HK1), 100.0);
    assert_eq!(f.v.priority(OTHER), 0.0);
    f.v.set_metagraph(Metagraph::new([RegisteredMiner { uid: 1, hotkey: OTHER.into(), stake: 3.0 }]).unwrap());
    assert_eq!(f.v.blacklist(OTHER), Ok(()));
    assert!(f.v.blacklist(HK1).is_err());
}
