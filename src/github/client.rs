//! The HTTP side of the GitHub checks: one reqwest client, the identity retry loop, the test query
//! and the miner preflight. Verdicts come from [`super::classify`]; this file only moves bytes,
//! sleeps between attempts and keeps the PAT inside a sensitive header.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, Url};

use super::classify::{self, IdentityStep};
use super::{
    DEFAULT_API_URL, GithubError, IdentityReport, IdentityResult, Mode, PreflightOutcome, PreflightReport,
    ResponseMeta, TestQueryReport, TestQueryResult,
};
use crate::secret::Pat;

/// The body upstream sends, byte for byte (`json.dumps({'query': GRAPHQL_VIEWER_QUERY})`).
const VIEWER_QUERY_BODY: &str = r#"{"query": "{ viewer { login } }"}"#;

/// Why a request could not be sent at all: the token holds bytes no HTTP header may carry (say an
/// inner newline). Upstream's `requests` raises `InvalidHeader` with the token in its text; we never
/// echo it.
const UNSENDABLE_TOKEN: &str = "the token contains characters that cannot be sent in an HTTP header";

/// Settings of a [`GithubClient`]. `Default` is what validators use against github.com.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubOptions {
    /// API root without trailing slash; `/user` and `/graphql` are appended.
    pub api_url: String,
    /// Which classification [`GithubClient::identity`] and [`GithubClient::test_query`] follow.
    pub mode: Mode,
    /// Total deadline of one request (upstream `GITHUB_HTTP_TIMEOUT_SECONDS` = 15 s).
    pub timeout: Duration,
    /// Identity attempts before giving up as transient (upstream: 6).
    pub identity_attempts: u32,
    /// Flat sleep between identity attempts (upstream: 2 s); in [`Mode::Fixed`] GitHub's hint wins
    /// when longer.
    pub identity_retry_sleep: Duration,
    /// Longest hinted wait slept inside one call. A longer hint ends the retries at once and is
    /// reported as `retry_after`, so the caller backs off instead of a task sleeping for an hour.
    pub max_retry_wait: Duration,
    /// Identity attempts in [`GithubClient::preflight`]. 1: gitt's CLI does not retry, and the
    /// reconciler has its own backoff.
    pub preflight_attempts: u32,
    /// Sent as `User-Agent` (GitHub rejects requests without one).
    pub user_agent: String,
    /// Response bodies larger than this are a transport failure (real ones are ~2 KB).
    pub max_body_bytes: usize,
}

impl Default for GithubOptions {
    fn default() -> Self {
        GithubOptions {
            api_url: DEFAULT_API_URL.to_string(),
            mode: Mode::Fixed,
            timeout: Duration::from_secs(15),
            identity_attempts: 6,
            identity_retry_sleep: Duration::from_secs(2),
            max_retry_wait: Duration::from_secs(60),
            preflight_attempts: 1,
            user_agent: concat!("patrol/", env!("CARGO_PKG_VERSION")).to_string(),
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// Client for the two credential calls. Cheap to clone (one connection pool).
#[derive(Debug, Clone)]
pub struct GithubClient {
    http: reqwest::Client,
    opts: GithubOptions,
    user_url: Url,
    graphql_url: Url,
}

/// What one request produced: an answer, or why there was none.
enum Answer {
    Http { status: u16, headers: HeaderMap, body: Vec<u8> },
    Failed(String),
}

/// How many identity attempts, and which classification (which also decides whether GitHub's wait
/// hints are honoured between them).
#[derive(Clone, Copy)]
struct RetryPolicy {
    attempts: u32,
    mode: Mode,
}

impl GithubClient {
    /// Build the client. Proxies from the environment apply, except when `api_url` is loopback (the
    /// fake GitHub in tests and `patrol demo` must never be reached through a proxy).
    pub fn new(opts: GithubOptions) -> Result<GithubClient, GithubError> {
        let base = opts.api_url.trim_end_matches('/');
        let bad = |reason: String| GithubError::InvalidApiUrl { url: opts.api_url.clone(), reason };
        let user_url = Url::parse(&format!("{base}/user")).map_err(|e| bad(e.to_string()))?;
        let graphql_url = Url::parse(&format!("{base}/graphql")).map_err(|e| bad(e.to_string()))?;
        if !matches!(user_url.scheme(), "http" | "https") {
            return Err(bad("scheme must be http or https".into()));
        }
        crate::tls::install_default_provider();
        let mut builder = reqwest::Client::builder()
            .user_agent(opts.user_agent.clone())
            .tcp_nodelay(true)
            .redirect(same_origin_redirects());
        if is_loopback(&user_url) {
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(GithubError::Client)?;
        Ok(GithubClient { http, opts, user_url, graphql_url })
    }

    /// The settings this client was built with.
    pub fn options(&self) -> &GithubOptions {
        &self.opts
    }

    /// `get_github_identity(pat)`: `GET /user`, retried per the client's [`Mode`].
    pub async fn identity(&self, pat: &Pat) -> IdentityReport {
        self.identity_raw(pat.expose()).await
    }

    /// [`identity`](Self::identity) for a token exactly as a validator received it (untrimmed, maybe
    /// empty): the embedded validator must reproduce upstream on such input.
    pub async fn identity_raw(&self, token: &str) -> IdentityReport {
        let policy = RetryPolicy { attempts: self.opts.identity_attempts, mode: self.opts.mode };
        self.identity_with(token, policy).await
    }

    /// `_test_pat_against_repo(pat)`: the GraphQL viewer query, once, classified per the client's [`Mode`].
    pub async fn test_query(&self, pat: &Pat) -> TestQueryReport {
        self.test_query_raw(pat.expose()).await
    }

    /// [`test_query`](Self::test_query) for a token exactly as a validator received it.
    pub async fn test_query_raw(&self, token: &str) -> TestQueryReport {
        self.test_query_with(token, self.opts.mode).await
    }

    /// The miner-side check before a broadcast: identity, then (if it passed) the test query, judged
    /// the way a [`Mode::Fixed`] validator would judge them, whatever the client's mode.
    pub async fn preflight(&self, pat: &Pat) -> PreflightReport {
        if auth_header("token ", pat.expose()).is_none() {
            return PreflightReport::without_calls(PreflightOutcome::Invalid {
                reason: format!("PAT rejected: {UNSENDABLE_TOKEN}"),
            });
        }
        let policy = RetryPolicy { attempts: self.opts.preflight_attempts, mode: Mode::Fixed };
        let IdentityReport { result, attempts, meta } = self.identity_with(pat.expose(), policy).await;
        let (outcome, test) = match &result {
            IdentityResult::Valid { id, login } => {
                let test = self.test_query_with(pat.expose(), Mode::Fixed).await;
                (test_query_outcome(test.result.clone(), id.clone(), login.clone()), Some(test))
            }
            failure => (identity_failure(failure.clone()), None),
        };
        let (test_query, graphql) = test.map(|t| (Some(t.result), t.meta)).unwrap_or_default();
        PreflightReport {
            outcome,
            identity: Some(result),
            test_query,
            identity_attempts: attempts,
            token_expiry: meta.token_expiry.or(graphql.token_expiry),
            rate_limit: meta.rate_limit,
            graphql_rate_limit: graphql.rate_limit,
        }
    }

    async fn identity_with(&self, token: &str, policy: RetryPolicy) -> IdentityReport {
        let mut meta = ResponseMeta::default();
        if token.is_empty() {
            let result = IdentityResult::InvalidAuth { status: None, message: "no token".into() };
            return IdentityReport { result, attempts: 0, meta };
        }
        let auth = auth_header("token ", token);
        let max_attempts = policy.attempts.max(1);
        let mut attempts = 0;
        let result = loop {
            attempts += 1;
            let (detail, hint) = match self.identity_attempt(auth.as_ref(), policy.mode, &mut meta).await {
                IdentityStep::Valid { id, login } => break IdentityResult::Valid { id, login },
                IdentityStep::InvalidAuth { status, message } => {
                    break IdentityResult::InvalidAuth { status: Some(status), message };
                }
                IdentityStep::Retry { detail, retry_after } => (detail, retry_after),
            };
            tracing::debug!(attempt = attempts, of = max_attempts, %detail, "github identity lookup failed");
            let wait = match hint {
                Some(h) if h > self.opts.max_retry_wait => None,
                Some(h) => Some(h.max(self.opts.identity_retry_sleep)),
                None => Some(self.opts.identity_retry_sleep),
            };
            match wait {
                Some(wait) if attempts < max_attempts => tokio::time::sleep(wait).await,
                // Out of attempts, or GitHub's hint is beyond the cap: a retry before it cannot pass,
                // so the caller gets the hint and backs off instead of this task sleeping.
                _ => {
                    break IdentityResult::Transient { detail, retry_after: hint };
                }
            }
        };
        IdentityReport { result, attempts, meta }
    }

    /// One `GET /user`, classified.
    async fn identity_attempt(&self, auth: Option<&HeaderValue>, mode: Mode, meta: &mut ResponseMeta) -> IdentityStep {
        let accept = "application/vnd.github.v3+json";
        match self.send(Method::GET, &self.user_url, auth, accept, None).await {
            Answer::Http { status, headers, body } => {
                merge_meta(meta, status, &headers);
                classify::classify_identity(mode, status, &headers, &body, SystemTime::now())
            }
            Answer::Failed(detail) => {
                IdentityStep::Retry { detail: format!("GitHub /user request failed: {detail}"), retry_after: None }
            }
        }
    }

    async fn test_query_with(&self, token: &str, mode: Mode) -> TestQueryReport {
        let mut meta = ResponseMeta::default();
        let auth = auth_header("Bearer ", token);
        let body = Some(VIEWER_QUERY_BODY);
        let result = match self.send(Method::POST, &self.graphql_url, auth.as_ref(), "application/json", body).await {
            Answer::Http { status, headers, body } => {
                merge_meta(&mut meta, status, &headers);
                classify::classify_test_query(mode, status, &headers, &body, SystemTime::now())
            }
            Answer::Failed(detail) => classify::test_query_transport_failure(mode, detail),
        };
        TestQueryReport { result, meta }
    }

    /// One request with a total deadline. `auth` None means the token could not become a header:
    /// reported like a transport error, as `requests` raises before sending.
    async fn send(
        &self,
        method: Method,
        url: &Url,
        auth: Option<&HeaderValue>,
        accept: &'static str,
        json_body: Option<&'static str>,
    ) -> Answer {
        let Some(auth) = auth else {
            return Answer::Failed(UNSENDABLE_TOKEN.to_string());
        };
        let mut request = self
            .http
            .request(method, url.clone())
            .timeout(self.opts.timeout)
            .header(AUTHORIZATION, auth.clone())
            .header(ACCEPT, accept);
        if let Some(body) = json_body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Answer::Failed(self.transport_detail(&e)),
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        match read_capped(response, self.opts.max_body_bytes).await {
            Ok(body) => Answer::Http { status, headers, body },
            Err(detail) => Answer::Failed(detail),
        }
    }

    /// A transport error on one line. reqwest's text names the URL (never the token); timeouts get a
    /// plain sentence because the chain ("operation timed out") hides which deadline fired.
    fn transport_detail(&self, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            let url = e.url().map(Url::as_str).unwrap_or("GitHub");
            return format!("request to {url} timed out after {}", humantime::format_duration(self.opts.timeout));
        }
        crate::secret::error_chain(e)
    }
}

impl PreflightReport {
    fn without_calls(outcome: PreflightOutcome) -> PreflightReport {
        PreflightReport { identity_attempts: 0, ..PreflightReport::judged(outcome) }
    }
}

/// The preflight verdict when `/user` did not answer with an id.
fn identity_failure(result: IdentityResult) -> PreflightOutcome {
    match result {
        IdentityResult::Valid { id, login } => PreflightOutcome::Valid { login, id },
        IdentityResult::Transient { detail, retry_after } => {
            PreflightOutcome::Transient { reason: detail, retry_after }
        }
        IdentityResult::InvalidAuth { status: Some(code), message } => {
            PreflightOutcome::Invalid { reason: classify::status_detail("GitHub /user", code, &message) }
        }
        IdentityResult::InvalidAuth { status: None, .. } => PreflightOutcome::Invalid { reason: "no PAT".into() },
    }
}

/// The preflight verdict once `/user` passed, from the test query's fixed-mode result.
fn test_query_outcome(result: TestQueryResult, id: String, login: String) -> PreflightOutcome {
    match result {
        TestQueryResult::Ok => PreflightOutcome::Valid { login, id },
        TestQueryResult::Failed { detail, transient: true, retry_after } => {
            PreflightOutcome::Transient { reason: format!("PAT test query: {detail}"), retry_after }
        }
        TestQueryResult::Failed { detail, .. } => {
            PreflightOutcome::Invalid { reason: format!("PAT test query: {detail}") }
        }
    }
}

/// Redirects GitHub may send (GitHub Enterprise moving its API root on the same host) are followed
/// within the same origin (scheme, host, port), at most [`MAX_REDIRECTS`]; a redirect to another
/// origin is not followed and comes back as its 3xx status (`/user`: transient; the test query: a
/// failure naming the status). api.github.com answers `/user` and `/graphql` without redirects
/// (its 301/307 are for renamed repositories), and the PAT rides in `Authorization`: it must never
/// go to another host, whatever reqwest's own header stripping does.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same = attempt.previous().first().is_some_and(|first| {
            let next = attempt.url();
            (first.scheme(), first.host_str(), first.port_or_known_default())
                == (next.scheme(), next.host_str(), next.port_or_known_default())
        });
        if !same {
            attempt.stop()
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    })
}

/// Redirects followed within one GitHub origin before giving up.
const MAX_REDIRECTS: usize = 5;

/// `<scheme><token>` as a sensitive header value (hyper then keeps it out of its own debug output and
/// HPACK tables). None when the token holds bytes a header cannot carry.
fn auth_header(scheme: &str, token: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("{scheme}{token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Keep the newest status and rate limit, and an expiry once seen.
fn merge_meta(meta: &mut ResponseMeta, status: u16, headers: &HeaderMap) {
    let fresh = classify::response_meta(status, headers);
    meta.status = fresh.status;
    meta.rate_limit = fresh.rate_limit.or(meta.rate_limit.take());
    meta.token_expiry = fresh.token_expiry.or(meta.token_expiry.take());
}

async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Vec<u8>, String> {
    let too_large = || format!("response body exceeds {cap} bytes");
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() > cap => return Err(too_large()),
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => return Ok(body),
            Err(e) if e.is_timeout() => {
                let url = e.url().map(Url::as_str).unwrap_or("GitHub");
                return Err(format!("reading the response of {url} timed out"));
            }
            Err(e) => return Err(crate::secret::error_chain(&e)),
        }
    }
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_url_is_validated_and_trailing_slash_ignored() {
        let c =
            GithubClient::new(GithubOptions { api_url: "http://127.0.0.1:9/".into(), ..Default::default() }).unwrap();
        assert_eq!(c.user_url.as_str(), "http://127.0.0.1:9/user");
        assert_eq!(c.graphql_url.as_str(), "http://127.0.0.1:9/graphql");
        let e =
            GithubClient::new(GithubOptions { api_url: "ftp://example.com".into(), ..Default::default() }).unwrap_err();
        assert_eq!(e.kind(), "invalid_api_url");
        assert!(GithubClient::new(GithubOptions { api_url: "not a url".into(), ..Default::default() }).is_err());
    }

    #[test]
    fn loopback_detection() {
        for (u, want) in [
            ("http://127.0.0.1:1/user", true),
            ("http://[::1]:1/user", true),
            ("http://LOCALHOST:1/user", true),
            ("https://api.github.com/user", false),
            ("http://10.0.0.1/user", false),
        ] {
            assert_eq!(is_loopback(&Url::parse(u).unwrap()), want, "{u}");
        }
    }

    #[test]
    fn auth_header_is_sensitive_and_rejects_newlines() {
        let v = auth_header("token ", "ghp_secretsecret").unwrap();
        assert!(v.is_sensitive());
        assert!(!format!("{v:?}").contains("secret"));
        assert!(auth_header("token ", "ghp_x\n").is_none());
    }

    #[test]
    fn viewer_query_body_matches_python_json_dumps() {
        let v: serde_json::Value = serde_json::from_str(VIEWER_QUERY_BODY).unwrap();
        assert_eq!(v["query"], "{ viewer { login } }");
    }
}
