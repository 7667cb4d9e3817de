//! A fake GitHub for tests, `patrol demo` and the simulation: `GET /user` and `POST /graphql`
//! answered the way api.github.com answers them, programmable faults, and request counts.
//!
//! # Behaviour
//! - A known, unrevoked token gets 200 with `{"id","login"}` / `{"data":{"viewer":{"login"}}}` plus
//!   GitHub's `x-ratelimit-*` headers and, when set, `github-authentication-token-expiration`.
//!   Anything else gets GitHub's 401 `{"message":"Bad credentials"}`. Both endpoints accept
//!   `token <PAT>` and `Bearer <PAT>`, as GitHub does.
//! - Faults are an ordered list of [`FaultRule`]s, each scoped to an endpoint and optionally a
//!   token, forever or for the next N matching requests. The first matching rule answers.
//! - Everything is settable from Rust ([`FakeGithubHandle`]) and over HTTP on the same server, so a
//!   test can drive the fake that a separate `patrol` process talks to.
//!
//! # Control API (JSON, same server)
//! - `GET|POST|DELETE /_fake/behaviour`: read, replace (`{"faults":[rule…]}`) or clear the rules.
//!   A rule is `{"scope":"user"|"graphql"|"both", "token":"<PAT>" | "token_fingerprint":"<fp>",
//!   "times":N, "fault":{"kind":"status","status":503}}`; all but `fault` optional (see [`Fault`]
//!   for the kinds).
//! - `POST /_fake/faults`: append one rule.
//! - `POST /_fake/tokens` (`{"token","id","login","expiry"?}`), `POST /_fake/tokens/revoke` and
//!   `POST /_fake/tokens/remove` (`{"token"}` or `{"token_fingerprint"}`).
//! - `GET|DELETE /_fake/stats`: read ([`FakeStats`]) or zero the counters.
//!
//! # Guarantees
//! The fake never stores, logs or returns a token: accounts, rules and counts are keyed by
//! [`fingerprint`](crate::secret::fingerprint).
//!
//! Layout: this file holds the shared state and its handle; `model` the serde vocabulary, `respond`
//! the GitHub endpoints, `control` the `/_fake` API, `conn` the connection-level faults.

mod conn;
mod control;
mod model;
mod respond;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use self::conn::{Conn, FakeListener};
pub use self::model::{
    Endpoint, EndpointStats, FakeAccount, FakeGithubConfig, FakeStats, Fault, FaultRule, RequestRecord, Scope,
};
use crate::secret::fingerprint;

/// The request log keeps this many entries (a long `patrol demo` must not grow without bound).
const MAX_REQUEST_LOG: usize = 10_000;

#[derive(Debug, Clone)]
struct Account {
    id: u64,
    login: String,
    expiry: Option<String>,
    revoked: bool,
}

struct Shared {
    created: Instant,
    /// End of the fake's rate-limit window (unix seconds), reported in `x-ratelimit-reset`.
    window_reset_unix: u64,
    /// Keyed by token fingerprint.
    accounts: Mutex<HashMap<String, Account>>,
    faults: Mutex<Vec<FaultRule>>,
    user: Mutex<EndpointStats>,
    graphql: Mutex<EndpointStats>,
    log: Mutex<VecDeque<RequestRecord>>,
    shutdown: CancellationToken,
}

/// Control of a running fake; clones share state. Also the axum state of its router.
#[derive(Clone)]
pub struct FakeGithubHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for FakeGithubHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeGithubHandle").field("accounts", &lock(&self.shared.accounts).len()).finish()
    }
}

/// Lock, recovering from a poisoned mutex (a panicking test thread must not wedge the fake).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl FakeGithubHandle {
    /// A fake with `config`'s accounts and faults, not yet serving (see [`serve`]).
    pub fn new(config: FakeGithubConfig) -> FakeGithubHandle {
        let handle = FakeGithubHandle {
            shared: Arc::new(Shared {
                created: Instant::now(),
                window_reset_unix: unix_now() + 3600,
                accounts: Mutex::default(),
                faults: Mutex::new(config.faults),
                user: Mutex::default(),
                graphql: Mutex::default(),
                log: Mutex::default(),
                shutdown: CancellationToken::new(),
            }),
        };
        for account in config.accounts {
            handle.add_account(account);
        }
        handle
    }

    /// Add (or replace) an account; a revoked token added again is valid again.
    pub fn add_account(&self, account: FakeAccount) {
        let entry = Account { id: account.id, login: account.login, expiry: account.expiry, revoked: false };
        lock(&self.shared.accounts).insert(fingerprint(&account.token), entry);
    }

    /// Forget a token entirely. Returns whether it was known.
    pub fn remove_token(&self, token: &str) -> bool {
        self.remove_fingerprint(&fingerprint(token))
    }

    fn remove_fingerprint(&self, fp: &str) -> bool {
        lock(&self.shared.accounts).remove(fp).is_some()
    }

    /// Revoke a token: it answers 401 "Bad credentials" from now on. Returns whether it was known.
    pub fn revoke_token(&self, token: &str) -> bool {
        self.revoke_fingerprint(&fingerprint(token))
    }

    fn revoke_fingerprint(&self, fp: &str) -> bool {
        lock(&self.shared.accounts).get_mut(fp).map(|a| a.revoked = true).is_some()
    }

    /// Replace all fault rules.
    pub fn set_faults(&self, rules: Vec<FaultRule>) {
        *lock(&self.shared.faults) = rules;
    }

    /// Append a fault rule (checked after the existing ones).
    pub fn add_fault(&self, rule: FaultRule) {
        lock(&self.shared.faults).push(rule);
    }

    /// Remove every fault rule: the fake answers normally again.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// The fault rules in force (expired ones are dropped).
    pub fn faults(&self) -> Vec<FaultRule> {
        lock(&self.shared.faults).clone()
    }

    /// A snapshot of the counters and the request log.
    pub fn stats(&self) -> FakeStats {
        FakeStats {
            user: lock(&self.shared.user).clone(),
            graphql: lock(&self.shared.graphql).clone(),
            requests: lock(&self.shared.log).iter().cloned().collect(),
        }
    }

    /// Zero the counters and the request log.
    pub fn reset_stats(&self) {
        *lock(&self.shared.user) = EndpointStats::default();
        *lock(&self.shared.graphql) = EndpointStats::default();
        lock(&self.shared.log).clear();
    }

    /// Requests received on `endpoint`, any token.
    pub fn calls(&self, endpoint: Endpoint) -> u64 {
        lock(self.counter(endpoint)).total
    }

    /// Requests received on `endpoint` carrying `token`.
    pub fn calls_with(&self, endpoint: Endpoint, token: &str) -> u64 {
        lock(self.counter(endpoint)).by_token.get(&fingerprint(token)).copied().unwrap_or(0)
    }

    /// When each request on `endpoint` carrying `token` arrived (time since the fake was created).
    pub fn arrivals(&self, endpoint: Endpoint, token: &str) -> Vec<Duration> {
        let fp = fingerprint(token);
        let log = lock(&self.shared.log);
        log.iter()
            .filter(|r| r.endpoint == endpoint && r.token_fingerprint.as_deref() == Some(&fp))
            .map(|r| r.at)
            .collect()
    }

    /// Stop serving: no new connections, in-flight delays and trickles are cut.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    fn counter(&self, endpoint: Endpoint) -> &Mutex<EndpointStats> {
        match endpoint {
            Endpoint::User => &self.shared.user,
            Endpoint::Graphql => &self.shared.graphql,
        }
    }

    /// Count a request and pick the fault that answers it, spending one of its `times`.
    fn admit(&self, endpoint: Endpoint, token_fp: Option<&str>) -> Option<Fault> {
        {
            let mut counter = lock(self.counter(endpoint));
            counter.total += 1;
            if let Some(fp) = token_fp {
                *counter.by_token.entry(fp.to_string()).or_default() += 1;
            }
        }
        let mut rules = lock(&self.shared.faults);
        let index = rules.iter().position(|r| r.matches(endpoint, token_fp))?;
        let fault = rules[index].fault.clone();
        if let Some(times) = rules[index].times.as_mut() {
            *times -= 1;
            if *times == 0 {
                rules.remove(index);
            }
        }
        Some(fault)
    }

    fn log(&self, endpoint: Endpoint, token_fp: Option<&str>, answer: String) {
        let at = self.shared.created.elapsed();
        let mut log = lock(&self.shared.log);
        if log.len() >= MAX_REQUEST_LOG {
            log.pop_front();
        }
        log.push_back(RequestRecord { endpoint, token_fingerprint: token_fp.map(str::to_string), at, answer });
    }

    fn account(&self, token_fp: Option<&str>) -> Option<Account> {
        let accounts = lock(&self.shared.accounts);
        token_fp.and_then(|fp| accounts.get(fp)).filter(|a| !a.revoked).cloned()
    }
}

/// Serve the fake on an already-bound `listener` until `shutdown` resolves or
/// [`FakeGithubHandle::shutdown`] is called.
pub async fn serve(
    listener: TcpListener,
    github: FakeGithubHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let token = github.shared.shutdown.clone();
    let signal = {
        let token = token.clone();
        async move {
            tokio::select! {
                () = shutdown => token.cancel(),
                () = token.cancelled() => {}
            }
        }
    };
    let app = router(github).into_make_service_with_connect_info::<Conn>();
    axum::serve(FakeListener::new(listener, token), app).with_graceful_shutdown(signal).await
}

/// Bind `127.0.0.1:0`, serve a fake there in a background task, and return its address (the API url
/// is `http://{addr}`) and handle. Stops on [`FakeGithubHandle::shutdown`] or with the runtime.
///
/// # Panics
/// When the loopback socket cannot be bound (a test environment without networking).
pub async fn spawn_fake_github(config: FakeGithubConfig) -> (SocketAddr, FakeGithubHandle) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind 127.0.0.1:0 for the fake github");
    let addr = listener.local_addr().expect("local address of a bound listener");
    let handle = FakeGithubHandle::new(config);
    let served = handle.clone();
    tokio::spawn(async move {
        if let Err(e) = serve(listener, served, std::future::pending()).await {
            tracing::warn!(error = %e, "fake github stopped");
        }
    });
    (addr, handle)
}

/// GitHub's two endpoints plus the control API. Needs `ConnectInfo<Conn>`, i.e. [`serve`].
fn router(github: FakeGithubHandle) -> axum::Router {
    axum::Router::new()
        .route("/user", get(respond::user))
        .route("/graphql", post(respond::graphql))
        .merge(control::routes())
        .with_state(github)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_scope_token_and_expire() {
        let g = FakeGithubHandle::new(FakeGithubConfig::default());
        g.add_fault(FaultRule::new(Fault::status(503)).on(Scope::User).for_token("ghp_one").times(2));
        g.add_fault(FaultRule::new(Fault::ViewerNull).on(Scope::Graphql));
        let one = fingerprint("ghp_one");
        let two = fingerprint("ghp_two");
        assert_eq!(g.admit(Endpoint::User, Some(&two)), None);
        assert_eq!(g.admit(Endpoint::User, Some(&one)), Some(Fault::status(503)));
        assert_eq!(g.admit(Endpoint::Graphql, Some(&one)), Some(Fault::ViewerNull));
        assert_eq!(g.admit(Endpoint::User, Some(&one)), Some(Fault::status(503)));
        assert_eq!(g.admit(Endpoint::User, Some(&one)), None, "times=2 spent");
        assert_eq!(g.faults().len(), 1);
        assert_eq!(g.calls(Endpoint::User), 4);
        assert_eq!(g.calls_with(Endpoint::User, "ghp_one"), 3);
        assert_eq!(g.calls_with(Endpoint::Graphql, "ghp_one"), 1);
    }
}
