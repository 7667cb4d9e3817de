//! The GitHub client against the fake GitHub on 127.0.0.1: every documented classification in both
//! modes, retry counts and hint timing, the preflight, the fake's control API, and that the PAT never
//! shows up in anything printable.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use patrol::github::{GithubClient, GithubOptions, IdentityResult, Mode, PreflightOutcome, TestQueryResult};
use patrol::lab::fake_github::{
    Endpoint, FakeAccount, FakeGithubConfig, FakeGithubHandle, Fault, FaultRule, Scope, spawn_fake_github,
};
use patrol::secret::Pat;
use serde_json::{Value, json};

const PAT: &str = "ghp_Zq9SECRETsecretSECRET0042";
const OTHER_PAT: &str = "ghp_Yw8OTHERotherOTHER0077";
const ID: u64 = 583231;
const LOGIN: &str = "octo-miner";

/// Every test runs under this bound; a hang names the test.
async fn bounded<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(30), fut).await {
        Ok(v) => v,
        Err(_) => {
            panic!("{what}: did not finish within 30 s (client retry loop or fake server hung?)")
        }
    }
}

fn config() -> FakeGithubConfig {
    FakeGithubConfig::default()
        .with_account(FakeAccount::new(PAT, ID, LOGIN).expiring("2026-12-31 00:00:00 UTC"))
        .with_account(FakeAccount::new(OTHER_PAT, 9, "someone-else"))
}

/// Fast settings: short timeout and flat sleep, upstream's 6 attempts.
fn options(addr: std::net::SocketAddr, mode: Mode) -> GithubOptions {
    GithubOptions {
        api_url: format!("http://{addr}"),
        mode,
        timeout: Duration::from_millis(800),
        identity_attempts: 6,
        identity_retry_sleep: Duration::from_millis(20),
        max_retry_wait: Duration::from_secs(5),
        ..GithubOptions::default()
    }
}

async fn fake_with(rules: Vec<FaultRule>) -> (std::net::SocketAddr, FakeGithubHandle) {
    let (addr, fake) = spawn_fake_github(config()).await;
    fake.set_faults(rules);
    (addr, fake)
}

fn client(addr: std::net::SocketAddr, mode: Mode) -> GithubClient {
    GithubClient::new(options(addr, mode)).expect("client")
}

/// A fake with `rules` and a client whose fast options `tune` adjusts (timeout, attempts): the
/// set-up most fault tests share. The address is returned for a second client after the fake.
async fn tuned(
    rules: Vec<FaultRule>,
    mode: Mode,
    tune: impl FnOnce(&mut GithubOptions),
) -> (std::net::SocketAddr, FakeGithubHandle, GithubClient) {
    let (addr, fake) = fake_with(rules).await;
    let mut opts = options(addr, mode);
    tune(&mut opts);
    (addr, fake, GithubClient::new(opts).expect("client"))
}

/// A fake without faults and a fast client for it.
async fn healthy(mode: Mode) -> (FakeGithubHandle, GithubClient) {
    let (_, fake, c) = tuned(vec![], mode, |_| {}).await;
    (fake, c)
}

fn pat() -> Pat {
    Pat::new(PAT).expect("pat")
}

fn transient(detail: &str) -> IdentityResult {
    IdentityResult::Transient { detail: detail.into(), retry_after: None }
}

// ---- identity ----

#[tokio::test]
async fn identity_valid_reports_id_login_expiry_and_rate_limit() {
    bounded("identity_valid", async {
        let (fake, c) = healthy(Mode::Fixed).await;
        let r = c.identity(&pat()).await;
        assert_eq!(r.result, IdentityResult::Valid { id: ID.to_string(), login: LOGIN.into() });
        assert_eq!(r.attempts, 1);
        assert_eq!(r.meta.status, Some(200));
        let expiry = r.meta.token_expiry.expect("expiry header");
        assert_eq!((expiry.text.as_str(), expiry.unix_seconds), ("2026-12-31 00:00:00 UTC", Some(1_798_675_200)));
        let rl = r.meta.rate_limit.expect("rate limit headers");
        assert_eq!((rl.limit, rl.remaining, rl.resource.as_deref()), (Some(5000), Some(4999), Some("core")));
        assert_eq!(fake.calls_with(Endpoint::User, PAT), 1);
        assert_eq!(fake.calls(Endpoint::Graphql), 0);
    })
    .await;
}

#[tokio::test]
async fn identity_unknown_token_is_invalid_auth_after_one_call_in_both_modes() {
    bounded("identity_401", async {
        for mode in [Mode::Fixed, Mode::Parity] {
            let (addr, fake) = fake_with(vec![]).await;
            let r = client(addr, mode).identity_raw("ghp_unknownunknownunknown").await;
            assert_eq!(
                r.result,
                IdentityResult::InvalidAuth { status: Some(401), message: "Bad credentials".into() },
                "{mode}"
            );
            assert_eq!((r.attempts, fake.calls(Endpoint::User)), (1, 1), "{mode}");
        }
    })
    .await;
}

#[tokio::test]
async fn identity_always_503_is_transient_after_exactly_six_calls() {
    bounded("identity_503", async {
        for mode in [Mode::Fixed, Mode::Parity] {
            let (addr, fake) = fake_with(vec![FaultRule::new(Fault::status(503)).on(Scope::User)]).await;
            let r = client(addr, mode).identity(&pat()).await;
            assert_eq!(r.result, transient("GitHub /user returned 503: Service Unavailable"), "{mode}");
            assert_eq!(r.attempts, 6);
            assert_eq!(fake.calls_with(Endpoint::User, PAT), 6, "{mode}: GitHub must see exactly 6 identity calls");
        }
    })
    .await;
}

#[tokio::test]
async fn identity_recovers_when_the_first_two_calls_fail() {
    bounded("identity_recovers", async {
        let (addr, fake) =
            fake_with(vec![FaultRule::new(Fault::status(502)).on(Scope::User).for_token(PAT).times(2)]).await;
        let r = client(addr, Mode::Fixed).identity(&pat()).await;
        assert_eq!(r.result, IdentityResult::Valid { id: ID.to_string(), login: LOGIN.into() });
        assert_eq!(r.attempts, 3);
        assert_eq!(fake.calls_with(Endpoint::User, PAT), 3);
        assert!(fake.faults().is_empty(), "the times=2 rule is spent");
    })
    .await;
}

#[tokio::test]
async fn identity_other_4xx_fails_at_once_but_408_and_rate_limits_retry() {
    bounded("identity_4xx", async {
        for (fault, retried) in [
            (Fault::status(403), false),
            (Fault::status(404), false),
            (Fault::status(408), true),
            (Fault::TooManyRequests { retry_after_secs: 0 }, true),
            (Fault::RateLimited { reset_after_secs: 0 }, true),
            (Fault::Status { status: 403, message: Some("You have exceeded a secondary rate limit".into()) }, true),
        ] {
            let label = fault.label();
            let (_, fake, c) = tuned(vec![FaultRule::new(fault)], Mode::Parity, |o| o.identity_attempts = 3).await;
            let r = c.identity(&pat()).await;
            let calls = fake.calls(Endpoint::User);
            if retried {
                assert!(r.result.is_transient(), "{label}: {:?}", r.result);
                assert_eq!(calls, 3, "{label}");
            } else {
                assert!(
                    matches!(r.result, IdentityResult::InvalidAuth { status: Some(_), .. }),
                    "{label}: {:?}",
                    r.result
                );
                assert_eq!(calls, 1, "{label}");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn identity_timeout_reset_slow_body_and_bad_json_are_transient() {
    bounded("identity_transport", async {
        let cases = [
            (Fault::Delay { ms: 3_000 }, "timed out"),
            (Fault::Reset, "GitHub /user request failed: "),
            (Fault::Trickle { bytes: 4, every_ms: 100 }, "timed out"),
            (Fault::Body { status: 200, body: "<html>unicorn</html>".into() }, "not JSON"),
            (Fault::Body { status: 200, body: r#"{"login":"x"}"#.into() }, "without an integer id"),
        ];
        for (fault, needle) in cases {
            for mode in [Mode::Fixed, Mode::Parity] {
                let label = fault.label();
                let (_, fake, c) = tuned(vec![FaultRule::new(fault.clone())], mode, |o| {
                    o.identity_attempts = 2;
                    o.timeout = Duration::from_millis(300);
                })
                .await;
                let r = c.identity(&pat()).await;
                match &r.result {
                    IdentityResult::Transient { detail, retry_after: None } => {
                        assert!(detail.contains(needle), "{mode} {label}: {detail}")
                    }
                    other => panic!("{mode} {label}: {other:?}"),
                }
                assert_eq!(fake.calls_with(Endpoint::User, PAT), 2, "{mode} {label}");
                fake.shutdown();
            }
        }
    })
    .await;
}

/// One 429 with `Retry-After: secs` on `/user`, then success: the time between the two calls.
async fn retry_after_gap(mode: Mode, secs: u64) -> Duration {
    let rule = FaultRule::new(Fault::TooManyRequests { retry_after_secs: secs }).on(Scope::User).times(1);
    let (addr, fake) = fake_with(vec![rule]).await;
    let r = client(addr, mode).identity(&pat()).await;
    assert!(matches!(r.result, IdentityResult::Valid { .. }), "{mode}: {:?}", r.result);
    let at = fake.arrivals(Endpoint::User, PAT);
    assert_eq!(at.len(), 2, "{mode}");
    at[1] - at[0]
}

#[tokio::test]
async fn identity_retry_after_is_honoured_in_fixed_mode() {
    bounded("retry_after_fixed", async {
        let gap = retry_after_gap(Mode::Fixed, 1).await;
        assert!(gap >= Duration::from_secs(1), "retried after {gap:?}, before the 1 s Retry-After");
    })
    .await;
}

#[tokio::test]
async fn identity_retry_after_is_ignored_in_parity_mode() {
    bounded("retry_after_parity", async {
        let gap = retry_after_gap(Mode::Parity, 2).await;
        assert!(gap < Duration::from_millis(1500), "parity slept {gap:?}: it must use the flat sleep, not Retry-After");
    })
    .await;
}

#[tokio::test]
async fn identity_hint_beyond_the_cap_ends_retries_and_is_reported() {
    bounded("hint_beyond_cap", async {
        let (addr, fake) = fake_with(vec![FaultRule::new(Fault::RateLimited { reset_after_secs: 120 })]).await;
        let r = client(addr, Mode::Fixed).identity(&pat()).await;
        match r.result {
            IdentityResult::Transient { detail, retry_after: Some(wait) } => {
                assert_eq!(detail, format!("GitHub /user returned 403: API rate limit exceeded for user ID {ID}."));
                assert!(wait > Duration::from_secs(110) && wait <= Duration::from_secs(120), "{wait:?}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(fake.calls(Endpoint::User), 1, "retrying before the reset cannot pass");

        // Parity ignores the headers: six calls, flat sleep, no hint.
        let (addr, fake) = fake_with(vec![FaultRule::new(Fault::RateLimited { reset_after_secs: 120 })]).await;
        let r = client(addr, Mode::Parity).identity(&pat()).await;
        assert!(matches!(r.result, IdentityResult::Transient { retry_after: None, .. }), "{:?}", r.result);
        assert_eq!(fake.calls(Endpoint::User), 6);
    })
    .await;
}

#[tokio::test]
async fn identity_short_hint_is_reported_after_the_last_attempt() {
    bounded("short_hint", async {
        let rules = vec![FaultRule::new(Fault::TooManyRequests { retry_after_secs: 0 })];
        let (_, fake, c) = tuned(rules, Mode::Fixed, |o| o.identity_attempts = 2).await;
        let r = c.identity(&pat()).await;
        assert_eq!(r.result, IdentityResult::Transient { detail: "GitHub /user returned 429: You have exceeded a secondary rate limit. Please wait a few minutes before you try again.".into(), retry_after: Some(Duration::ZERO) });
        assert_eq!(fake.calls(Endpoint::User), 2);
    })
    .await;
}

#[tokio::test]
async fn identity_empty_and_unsendable_tokens() {
    bounded("identity_raw_tokens", async {
        let (fake, c) = healthy(Mode::Parity).await;
        let r = c.identity_raw("").await;
        assert_eq!(r.result, IdentityResult::InvalidAuth { status: None, message: "no token".into() });
        assert_eq!(r.attempts, 0);
        // Upstream forwards a credential file's trailing newline; requests refuses the header on every
        // attempt and the lookup ends transient (docs §1.7). Nothing reaches GitHub.
        let r = c.identity_raw("ghp_newline\n").await;
        assert!(r.result.is_transient(), "{:?}", r.result);
        assert_eq!(r.attempts, 6);
        assert!(!format!("{r:?}").contains("ghp_newline"));
        assert_eq!(fake.calls(Endpoint::User), 0);
    })
    .await;
}

#[tokio::test]
async fn revoked_and_removed_tokens_answer_401() {
    bounded("revocation", async {
        let bad = IdentityResult::InvalidAuth { status: Some(401), message: "Bad credentials".into() };
        let (fake, c) = healthy(Mode::Fixed).await;
        assert!(matches!(c.identity(&pat()).await.result, IdentityResult::Valid { .. }));
        assert!(fake.revoke_token(PAT));
        assert_eq!(c.identity(&pat()).await.result, bad);
        fake.add_account(FakeAccount::new(PAT, ID, LOGIN));
        assert!(matches!(c.identity(&pat()).await.result, IdentityResult::Valid { .. }));
        assert!(fake.remove_token(PAT));
        assert_eq!(c.identity(&pat()).await.result, bad);
        assert!(!fake.revoke_token("ghp_neverknownneverknown"));
    })
    .await;
}

// ---- GraphQL test query ----

fn failed(detail: &str, transient: bool) -> TestQueryResult {
    TestQueryResult::Failed { detail: detail.into(), transient, retry_after: None }
}

#[tokio::test]
async fn test_query_statuses_and_bodies_in_both_modes() {
    bounded("test_query_table", async {
        const VN: &str = "Fine-grained PATs need 'Public Repositories (read-only)' permission";
        let gql_error = Fault::GraphqlErrors {
            message: "Your token has not been granted the required scopes".into(),
            error_type: Some("INSUFFICIENT_SCOPES".into()),
        };
        // A status fails with the same text in both modes; only fixed mode may call it transient.
        let status = |code: u16, fixed_transient: bool| {
            let detail = format!("GitHub GraphQL API returned {code}");
            (Some(Fault::status(code)), failed(&detail, fixed_transient), failed(&detail, false))
        };
        // What both modes judge alike: a permanent failure.
        let permanent = |fault: Fault, detail: &str| (Some(fault), failed(detail, false), failed(detail, false));
        let cases: Vec<(Option<Fault>, TestQueryResult, TestQueryResult)> = vec![
            // fault, fixed, parity
            (None, TestQueryResult::Ok, TestQueryResult::Ok),
            status(503, true),
            status(500, true),
            status(408, true),
            status(401, false),
            status(403, false),
            permanent(gql_error, "GraphQL error: Your token has not been granted the required scopes"),
            permanent(Fault::ViewerNull, VN),
            permanent(Fault::Body { status: 200, body: r#"{"errors":[]}"#.into() }, VN),
            permanent(Fault::Body { status: 200, body: r#"{"data":"nope"}"#.into() }, VN),
        ];
        for (fault, fixed, parity) in cases {
            let label = fault.as_ref().map_or("none".into(), Fault::label);
            for (mode, want) in [(Mode::Fixed, &fixed), (Mode::Parity, &parity)] {
                let rules = fault.iter().map(|f| FaultRule::new(f.clone()).on(Scope::Graphql)).collect();
                let (addr, fake) = fake_with(rules).await;
                let r = client(addr, mode).test_query(&pat()).await;
                assert_eq!(&r.result, want, "{mode} {label}");
                assert_eq!(
                    fake.calls_with(Endpoint::Graphql, PAT),
                    1,
                    "{mode} {label}: the test query is never retried"
                );
                fake.shutdown();
            }
        }
    })
    .await;
}

#[tokio::test]
async fn test_query_unknown_token_is_a_permanent_401() {
    bounded("test_query_401", async {
        let (addr, _fake) = fake_with(vec![]).await;
        for mode in [Mode::Fixed, Mode::Parity] {
            let r = client(addr, mode).test_query_raw("ghp_unknownunknownunknown").await;
            assert_eq!(r.result, failed("GitHub GraphQL API returned 401", false), "{mode}");
        }
    })
    .await;
}

#[tokio::test]
async fn test_query_rate_limits_carry_hints_in_fixed_mode_only() {
    bounded("test_query_rate_limits", async {
        let (addr, _fake) =
            fake_with(vec![FaultRule::new(Fault::TooManyRequests { retry_after_secs: 7 }).on(Scope::Graphql)]).await;
        let r = client(addr, Mode::Fixed).test_query(&pat()).await;
        assert_eq!(
            r.result,
            TestQueryResult::Failed {
                detail: "GitHub GraphQL API returned 429".into(),
                transient: true,
                retry_after: Some(Duration::from_secs(7))
            }
        );
        let r = client(addr, Mode::Parity).test_query(&pat()).await;
        assert_eq!(r.result, failed("GitHub GraphQL API returned 429", false));

        let (addr, _fake) =
            fake_with(vec![FaultRule::new(Fault::RateLimited { reset_after_secs: 30 }).on(Scope::Graphql)]).await;
        match client(addr, Mode::Fixed).test_query(&pat()).await.result {
            TestQueryResult::Failed { detail, transient: true, retry_after: Some(w) } => {
                assert_eq!(detail, "GitHub GraphQL API returned 403");
                assert!(w > Duration::from_secs(20) && w <= Duration::from_secs(30), "{w:?}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            client(addr, Mode::Parity).test_query(&pat()).await.result,
            failed("GitHub GraphQL API returned 403", false)
        );
    })
    .await;
}

#[tokio::test]
async fn test_query_transport_failures_are_transient_only_in_fixed_mode() {
    bounded("test_query_transport", async {
        for fault in [
            Fault::Reset,
            Fault::Delay { ms: 3_000 },
            Fault::Trickle { bytes: 4, every_ms: 100 },
            Fault::Body { status: 200, body: "<html>unicorn</html>".into() },
        ] {
            for (mode, want_transient) in [(Mode::Fixed, true), (Mode::Parity, false)] {
                let label = fault.label();
                let rules = vec![FaultRule::new(fault.clone()).on(Scope::Graphql)];
                let (_, fake, c) = tuned(rules, mode, |o| o.timeout = Duration::from_millis(300)).await;
                let r = c.test_query(&pat()).await;
                match &r.result {
                    TestQueryResult::Failed { detail, transient, retry_after: None } => {
                        assert_eq!(*transient, want_transient, "{mode} {label}: {detail}");
                        assert!(!detail.is_empty() && !detail.contains(PAT), "{mode} {label}: {detail}");
                        // The miner side (the one reason classifier) reads our own texts the fixed way.
                        assert_eq!(
                            patrol::observe::reason::test_query_failure(detail),
                            patrol::observe::Persistence::Transient,
                            "{label}: {detail}"
                        );
                    }
                    other => panic!("{mode} {label}: {other:?}"),
                }
                assert_eq!(fake.calls(Endpoint::Graphql), 1, "{mode} {label}");
                fake.shutdown();
            }
        }
    })
    .await;
}

// ---- what goes on the wire ----

type Seen = Arc<Mutex<Vec<(Method, String, HeaderMap, Bytes)>>>;

async fn record(
    State(seen): State<Seen>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::Json<Value> {
    let path = uri.path().to_string();
    seen.lock().unwrap().push((method, path.clone(), headers, body));
    axum::Json(if path.ends_with("/user") {
        json!({"id": 1, "login": "x"})
    } else {
        json!({"data": {"viewer": {"login": "x"}}})
    })
}

/// Serve `app` on a fresh loopback port, for the hand-made servers below.
async fn serve(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn requests_carry_upstream_headers_and_body() {
    bounded("wire", async {
        let seen: Seen = Arc::default();
        let addr = serve(axum::Router::new().fallback(record).with_state(seen.clone())).await;
        let c = client(addr, Mode::Fixed);
        assert!(matches!(c.identity(&pat()).await.result, IdentityResult::Valid { .. }));
        assert_eq!(c.test_query(&pat()).await.result, TestQueryResult::Ok);

        let seen = seen.lock().unwrap();
        let (m, path, h, _) = &seen[0];
        assert_eq!((m, path.as_str()), (&Method::GET, "/user"));
        assert_eq!(h["authorization"], format!("token {PAT}").as_str());
        assert_eq!(h["accept"], "application/vnd.github.v3+json");
        assert!(h["user-agent"].to_str().unwrap().starts_with("patrol/"));
        let (m, path, h, body) = &seen[1];
        assert_eq!((m, path.as_str()), (&Method::POST, "/graphql"));
        assert_eq!(h["authorization"], format!("Bearer {PAT}").as_str());
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["accept"], "application/json");
        assert_eq!(&body[..], br#"{"query": "{ viewer { login } }"}"#);
    })
    .await;
}

/// GitHub's redirects are followed within its origin only: the PAT (in `Authorization`) never goes
/// to another host, and a redirect elsewhere is reported with its status.
#[tokio::test]
async fn redirects_are_followed_within_githubs_origin_only() {
    bounded("redirects", async {
        // the other host records whatever reaches it
        let elsewhere: Seen = Arc::default();
        let other = serve(axum::Router::new().fallback(record).with_state(elsewhere.clone())).await;
        // GitHub: `/old/...` moved to `/...` on the same origin (308); `/user` and `/graphql` point
        // at the other host (307)
        let seen: Seen = Arc::default();
        let redirecting = move |State(seen): State<Seen>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes| async move {
            let path = uri.path().to_string();
            let (code, to) = match path.strip_prefix("/old") {
                Some(rest) => (axum::http::StatusCode::PERMANENT_REDIRECT, format!("/new{rest}")),
                None if path.starts_with("/new") => {
                    return axum::response::IntoResponse::into_response(record(State(seen), method, uri, headers, body).await);
                }
                None => (axum::http::StatusCode::TEMPORARY_REDIRECT, format!("http://{other}{path}")),
            };
            axum::response::IntoResponse::into_response((code, [(axum::http::header::LOCATION, to)]))
        };
        let addr = serve(axum::Router::new().fallback(redirecting).with_state(seen.clone())).await;

        let moved = GithubClient::new(GithubOptions { api_url: format!("http://{addr}/old"), ..options(addr, Mode::Fixed) }).unwrap();
        assert!(matches!(moved.identity(&pat()).await.result, IdentityResult::Valid { .. }));
        assert_eq!(moved.test_query(&pat()).await.result, TestQueryResult::Ok);
        let followed: Vec<_> = seen.lock().unwrap().iter().filter(|r| r.1.starts_with("/new")).cloned().collect();
        assert_eq!(followed.len(), 2, "both calls followed to /new");
        assert!(followed.iter().all(|r| r.2.contains_key("authorization")));

        let c = GithubClient::new(GithubOptions { identity_attempts: 1, ..options(addr, Mode::Fixed) }).unwrap();
        let r = c.identity(&pat()).await.result;
        assert!(matches!(&r, IdentityResult::Transient { detail, .. } if detail.contains("307")), "{r:?}");
        let r = c.test_query(&pat()).await.result;
        assert!(matches!(&r, TestQueryResult::Failed { detail, .. } if detail.contains("307")), "{r:?}");
        assert!(elsewhere.lock().unwrap().is_empty(), "the other host was called: {:?}", elsewhere.lock().unwrap());
    })
    .await;
}

// ---- preflight ----

fn invalid(reason: &str) -> PreflightOutcome {
    PreflightOutcome::Invalid { reason: reason.into() }
}

fn retry_later(reason: &str, after: Option<u64>) -> PreflightOutcome {
    PreflightOutcome::Transient { reason: reason.into(), retry_after: after.map(Duration::from_secs) }
}

#[tokio::test]
async fn preflight_valid_reports_telemetry() {
    bounded("preflight_valid", async {
        let (addr, fake) = fake_with(vec![]).await;
        // The client's mode does not matter: the preflight always judges like a fixed validator.
        let p = client(addr, Mode::Parity).preflight(&pat()).await;
        assert_eq!(p.outcome, PreflightOutcome::Valid { login: LOGIN.into(), id: ID.to_string() });
        assert_eq!(p.identity_attempts, 1);
        assert_eq!(p.token_expiry.expect("expiry").unix_seconds, Some(1_798_675_200));
        assert_eq!(p.rate_limit.expect("core").resource.as_deref(), Some("core"));
        assert_eq!(p.graphql_rate_limit.expect("graphql").resource.as_deref(), Some("graphql"));
        assert_eq!((fake.calls_with(Endpoint::User, PAT), fake.calls_with(Endpoint::Graphql, PAT)), (1, 1));
    })
    .await;
}

#[tokio::test]
async fn preflight_classifies_each_failure() {
    bounded("preflight_table", async {
        let cases: Vec<(Vec<FaultRule>, PreflightOutcome, u64)> = vec![
            // rules, outcome, graphql calls
            (vec![FaultRule::new(Fault::status(401)).on(Scope::User)], invalid("GitHub /user returned 401: Unauthorized"), 0),
            (vec![FaultRule::new(Fault::status(503)).on(Scope::User)], retry_later("GitHub /user returned 503: Service Unavailable", None), 0),
            (vec![FaultRule::new(Fault::TooManyRequests { retry_after_secs: 2 }).on(Scope::User)], retry_later("GitHub /user returned 429: You have exceeded a secondary rate limit. Please wait a few minutes before you try again.", Some(2)), 0),
            (vec![FaultRule::new(Fault::ViewerNull).on(Scope::Graphql)], invalid("PAT test query: Fine-grained PATs need 'Public Repositories (read-only)' permission"), 1),
            (vec![FaultRule::new(Fault::GraphqlErrors { message: "Bad credentials".into(), error_type: None }).on(Scope::Graphql)], invalid("PAT test query: GraphQL error: Bad credentials"), 1),
            (vec![FaultRule::new(Fault::status(502)).on(Scope::Graphql)], retry_later("PAT test query: GitHub GraphQL API returned 502", None), 1),
            (vec![FaultRule::new(Fault::status(404)).on(Scope::Graphql)], invalid("PAT test query: GitHub GraphQL API returned 404"), 1),
        ];
        for (rules, want, graphql_calls) in cases {
            let (addr, fake) = fake_with(rules).await;
            let p = client(addr, Mode::Fixed).preflight(&pat()).await;
            assert_eq!(p.outcome, want);
            assert_eq!(fake.calls(Endpoint::User), 1, "{want:?}: the preflight does not retry");
            assert_eq!(fake.calls(Endpoint::Graphql), graphql_calls, "{want:?}");
            fake.shutdown();
        }

        let (addr, _fake) = fake_with(vec![]).await;
        let unknown = Pat::new("ghp_unknownunknownunknown").unwrap();
        assert_eq!(client(addr, Mode::Fixed).preflight(&unknown).await.outcome, invalid("GitHub /user returned 401: Bad credentials"));
        let unsendable = Pat::new("ghp_in\nside").unwrap();
        let p = client(addr, Mode::Fixed).preflight(&unsendable).await;
        assert!(matches!(&p.outcome, PreflightOutcome::Invalid { reason } if reason.contains("cannot be sent")), "{p:?}");
    })
    .await;
}

#[tokio::test]
async fn preflight_transport_failures_are_transient() {
    bounded("preflight_transport", async {
        for (scope, fault) in [(Scope::User, Fault::Reset), (Scope::Graphql, Fault::Reset), (Scope::Graphql, Fault::Delay { ms: 3_000 })] {
            let label = fault.label();
            let rules = vec![FaultRule::new(fault).on(scope)];
            let (_, fake, c) = tuned(rules, Mode::Fixed, |o| o.timeout = Duration::from_millis(300)).await;
            let p = c.preflight(&pat()).await;
            assert!(matches!(p.outcome, PreflightOutcome::Transient { .. }), "{scope:?} {label}: {p:?}");
            fake.shutdown();
        }
        // Nothing listening at all.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let p = client(addr, Mode::Fixed).preflight(&pat()).await;
        assert!(matches!(&p.outcome, PreflightOutcome::Transient { reason, .. } if reason.starts_with("GitHub /user request failed: ")), "{p:?}");
    })
    .await;
}

#[tokio::test]
async fn the_pat_never_appears_in_printable_output() {
    bounded("no_leak", async {
        let mut printed = Vec::new();
        let scenarios = [
            None,
            Some(FaultRule::new(Fault::status(401))),
            Some(FaultRule::new(Fault::status(503))),
            Some(FaultRule::new(Fault::Reset)),
            Some(FaultRule::new(Fault::Delay { ms: 2_000 })),
            Some(FaultRule::new(Fault::ViewerNull).on(Scope::Graphql)),
            Some(FaultRule::new(Fault::GraphqlErrors { message: "boom".into(), error_type: None }).on(Scope::Graphql)),
            Some(FaultRule::new(Fault::Body { status: 200, body: "not json".into() })),
            Some(FaultRule::new(Fault::RateLimited { reset_after_secs: 1 }).for_token(PAT)),
        ];
        for rule in scenarios {
            let (_, fake, c) = tuned(rule.into_iter().collect(), Mode::Fixed, |o| {
                o.timeout = Duration::from_millis(300);
                o.identity_attempts = 2;
            })
            .await;
            let p = c.preflight(&pat()).await;
            printed.push(format!("{p:?}"));
            if let PreflightOutcome::Transient { reason, .. } | PreflightOutcome::Invalid { reason } = &p.outcome {
                printed.push(reason.clone());
            }
            printed.push(format!("{:?}", c.identity(&pat()).await));
            printed.push(format!("{:?}", c.test_query(&pat()).await));
            printed.push(format!("{:?}", c.identity_raw(&format!("{PAT}\n")).await));
            printed.push(format!("{:?}", c.test_query_raw(&format!("{PAT}\n")).await));
            printed.push(format!("{c:?} {fake:?} {:?} {:?}", fake.stats(), fake.faults()));
            printed.push(serde_json::to_string(&fake.stats()).unwrap());
            printed.push(serde_json::to_string(&fake.faults()).unwrap());
            fake.shutdown();
        }
        printed.push(format!("{:?}", FakeAccount::new(PAT, 1, "x")));
        printed.push(format!("{:?}", config()));
        for text in &printed {
            assert!(!text.contains(PAT) && !text.contains("SECRETsecret"), "PAT leaked into: {text}");
        }
    })
    .await;
}

// ---- the fake's control API ----

fn http() -> reqwest::Client {
    patrol::tls::install_default_provider();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[tokio::test]
async fn control_api_sets_faults_tokens_and_reports_stats_by_fingerprint() {
    bounded("control_api", async {
        let (addr, fake) = spawn_fake_github(FakeGithubConfig::default()).await;
        let base = format!("http://{addr}");
        let h = http();
        let c = client(addr, Mode::Fixed);

        let r = h
            .post(format!("{base}/_fake/tokens"))
            .json(&json!({"token": PAT, "id": ID, "login": LOGIN}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert!(matches!(c.identity(&pat()).await.result, IdentityResult::Valid { .. }));

        let behaviour = json!({"faults": [
            {"scope": "user", "token": PAT, "times": 2, "fault": {"kind": "status", "status": 503}},
            {"scope": "graphql", "fault": {"kind": "viewer_null"}},
        ]});
        let r = h.post(format!("{base}/_fake/behaviour")).json(&behaviour).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let echoed = r.text().await.unwrap();
        assert!(!echoed.contains(PAT) && echoed.contains(&patrol::secret::fingerprint(PAT)), "{echoed}");
        assert_eq!(fake.faults().len(), 2);

        let r = c.identity(&pat()).await;
        assert!(matches!(r.result, IdentityResult::Valid { .. }) && r.attempts == 3, "{r:?}");
        assert!(!c.test_query(&pat()).await.result.is_ok());

        let r = h
            .post(format!("{base}/_fake/faults"))
            .json(&json!({"fault": {"kind": "status", "status": 42}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "invalid status rejected");
        let r = h.delete(format!("{base}/_fake/behaviour")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(c.test_query(&pat()).await.result, TestQueryResult::Ok);

        let r = h.post(format!("{base}/_fake/tokens/revoke")).json(&json!({"token": PAT})).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(matches!(c.identity(&pat()).await.result, IdentityResult::InvalidAuth { status: Some(401), .. }));
        let r = h.post(format!("{base}/_fake/tokens/remove")).json(&json!({"token": "ghp_nope"})).send().await.unwrap();
        assert_eq!(r.status(), 404);

        let stats = h.get(format!("{base}/_fake/stats")).send().await.unwrap().text().await.unwrap();
        assert!(!stats.contains(PAT), "stats leak the token: {stats}");
        let stats: Value = serde_json::from_str(&stats).unwrap();
        let fp = patrol::secret::fingerprint(PAT);
        assert_eq!(stats["user"]["total"], 5);
        assert_eq!(stats["user"]["by_token"][&fp], 5);
        assert_eq!(stats["graphql"]["by_token"][&fp], 2);
        assert_eq!(stats["requests"][1]["answer"], "status 503");
        assert!(stats["requests"][0]["at_ms"].is_number());

        let r = h.delete(format!("{base}/_fake/stats")).send().await.unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(fake.calls(Endpoint::User), 0);
    })
    .await;
}

#[tokio::test]
async fn shutdown_cuts_pending_delays_and_stops_serving() {
    bounded("shutdown", async {
        let stall = FaultRule::new(Fault::Delay { ms: 60_000 });
        let (addr, fake, c) = tuned(vec![stall], Mode::Fixed, |o| o.timeout = Duration::from_secs(20)).await;
        let pending = tokio::spawn(async move { c.test_query(&pat()).await });
        while fake.calls(Endpoint::Graphql) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let started = std::time::Instant::now();
        fake.shutdown();
        let r = pending.await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "shutdown left a 60 s delay running");
        assert!(matches!(r.result, TestQueryResult::Failed { transient: true, .. }), "{r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let after = client(addr, Mode::Fixed).test_query(&pat()).await;
        assert!(matches!(after.result, TestQueryResult::Failed { transient: true, .. }), "{after:?}");
    })
    .await;
}

#[tokio::test]
async fn a_trickled_connection_is_clean_for_the_next_request() {
    bounded("trickle_then_normal", async {
        // One trickled answer (~350 bytes at 32 B / 50 ms: over 400 ms) that fits the deadline,
        // then a normal one, most likely on the same kept-alive connection.
        let trickle = Fault::Trickle { bytes: 32, every_ms: 50 };
        let rules = vec![FaultRule::new(trickle).on(Scope::User).times(1)];
        let (_, fake, c) = tuned(rules, Mode::Fixed, |o| o.timeout = Duration::from_secs(5)).await;
        let started = std::time::Instant::now();
        assert!(matches!(c.identity(&pat()).await.result, IdentityResult::Valid { .. }));
        let first = started.elapsed();
        assert!(first >= Duration::from_millis(400), "the first answer was not trickled ({first:?})");
        let started = std::time::Instant::now();
        assert!(matches!(c.identity(&pat()).await.result, IdentityResult::Valid { .. }));
        let second = started.elapsed();
        assert!(second < Duration::from_millis(400), "the second answer was still trickled ({second:?})");
        assert_eq!(fake.calls(Endpoint::User), 2);
    })
    .await;
}
