//! Everything patrol says to GitHub.
//!
//! Owns the two credential calls gittensor validators make with a miner's PAT (docs §2.5): the
//! identity lookup `GET /user` (retried) and the GraphQL test query `POST /graphql` (not retried),
//! their classification in the two [`Mode`]s of docs §2.6, and the miner-side preflight ([`PreflightReport`]) that runs
//! both and says whether a PAT is worth broadcasting. The fake GitHub the tests, the demo and the
//! simulation talk to lives in the lab ([`crate::lab::fake_github`]).
//!
//! Layout: [`classify`] is pure (status + headers + body → verdict, table-tested); [`client`] does the
//! I/O, the retry loop and the preflight; this file holds the shared result types.
//!
//! # Guarantees
//! - The PAT is read (via [`Pat::expose`](crate::secret::Pat::expose)) only to build a sensitive
//!   `Authorization` header; no result, error or log line contains it.
//! - Every call ends within `attempts × (timeout + wait)`; nothing blocks the executor.
//!
//! # Caveats
//! - The per-request timeout is a total deadline (connect + headers + body); Python `requests`'
//!   timeout is per socket read, so a body trickling in slower than our deadline but faster than 15 s
//!   per chunk passes upstream and fails here. Patrol prefers bounded calls.

pub mod classify;
pub mod client;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use client::{GithubClient, GithubOptions};

/// `https://api.github.com`: where both calls go unless configured otherwise.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// How closely to follow gittensor's validator code (docs §2.6).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize, strum::IntoStaticStr,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Mode {
    /// Byte-for-byte upstream HEAD: every test-query failure is permanent, identity retries sleep a
    /// flat interval and ignore rate-limit headers. For golden tests against upstream.
    Parity,
    /// Upstream PR #1332 plus 408/429/rate-limited 403 as transient on the test query, and
    /// `Retry-After`/`x-ratelimit-reset` honoured between identity retries. The default.
    #[default]
    Fixed,
}

impl Mode {
    /// `"parity"` or `"fixed"`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = GithubError;

    fn from_str(s: &str) -> Result<Mode, GithubError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "parity" => Ok(Mode::Parity),
            "fixed" => Ok(Mode::Fixed),
            _ => Err(GithubError::UnknownMode(s.to_string())),
        }
    }
}

/// Result of the identity lookup, in gittensor's three states (`GitHubIdentityStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityResult {
    /// `/user` answered 200 with an id. `id` is what gittensor stores (`str(id)`); `login` is empty
    /// when GitHub omitted it.
    Valid { id: String, login: String },
    /// Every attempt failed in a way that may pass later. `retry_after` is GitHub's wait hint
    /// (`Retry-After` or `x-ratelimit-reset`), only in [`Mode::Fixed`].
    Transient { detail: String, retry_after: Option<Duration> },
    /// A 4xx other than 408/429/rate-limited 403 (`status` set), or an empty token (`status` None).
    /// `message` is GitHub's `message` field, e.g. "Bad credentials".
    InvalidAuth { status: Option<u16>, message: String },
}

impl IdentityResult {
    /// The GitHub id when valid.
    pub fn github_id(&self) -> Option<&str> {
        match self {
            IdentityResult::Valid { id, .. } => Some(id),
            _ => None,
        }
    }

    /// Whether this is a transient failure.
    pub fn is_transient(&self) -> bool {
        matches!(self, IdentityResult::Transient { .. })
    }
}

/// Result of the GraphQL test query (`_test_pat_against_repo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestQueryResult {
    /// `data.viewer` came back non-null.
    Ok,
    /// `detail` is upstream's text (docs §2.5), e.g. "GitHub GraphQL API returned 503"; the validator
    /// prefixes it with "PAT test query failed: ". `transient` says whether a retry may pass
    /// (always false in [`Mode::Parity`]); `retry_after` is GitHub's wait hint in [`Mode::Fixed`].
    Failed { detail: String, transient: bool, retry_after: Option<Duration> },
}

impl TestQueryResult {
    /// Whether the query passed.
    pub fn is_ok(&self) -> bool {
        matches!(self, TestQueryResult::Ok)
    }
}

/// GitHub's `x-ratelimit-*` headers of one response. Each field is None when its header was absent
/// or unparsable.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RateLimit {
    /// `x-ratelimit-limit`: requests per window.
    pub limit: Option<u64>,
    /// `x-ratelimit-remaining`: requests left in the window.
    pub remaining: Option<u64>,
    /// `x-ratelimit-reset`: when the window resets, unix seconds.
    pub reset_unix: Option<u64>,
    /// `x-ratelimit-used`: requests spent in the window.
    pub used: Option<u64>,
    /// `x-ratelimit-resource`: the bucket (`core`, `graphql`).
    pub resource: Option<String>,
}

/// GitHub's `github-authentication-token-expiration` header: when the PAT stops working.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenExpiry {
    /// The header as sent, e.g. "2026-12-31 00:00:00 UTC".
    pub text: String,
    /// The same instant in unix seconds, when the text parsed.
    pub unix_seconds: Option<i64>,
}

/// What a call learned from response headers, whatever its verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseMeta {
    /// HTTP status of the last response, None when no response arrived.
    pub status: Option<u16>,
    /// Rate-limit headers of the last response that carried any.
    pub rate_limit: Option<RateLimit>,
    /// PAT expiry, when GitHub reported one.
    pub token_expiry: Option<TokenExpiry>,
}

/// [`IdentityResult`] plus how many requests it took and what the headers said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityReport {
    pub result: IdentityResult,
    /// Requests attempted (0 for an empty token).
    pub attempts: u32,
    pub meta: ResponseMeta,
}

/// [`TestQueryResult`] plus what the headers said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestQueryReport {
    pub result: TestQueryResult,
    pub meta: ResponseMeta,
}

/// The miner-side verdict on a PAT, with the validator's body semantics (stricter than gitt's CLI,
/// which checks status codes only: docs §1.7 "the preflight passes PATs whose viewer is null").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreflightOutcome {
    /// Both calls passed: validators will accept this PAT.
    Valid { login: String, id: String },
    /// GitHub could not say (5xx, 408, 429, rate-limited 403, transport): try again later, no sooner
    /// than `retry_after` when set.
    Transient { reason: String, retry_after: Option<Duration> },
    /// Validators will reject this PAT (401 and other 4xx, GraphQL errors, viewer null).
    Invalid { reason: String },
}

/// Result of [`GithubClient::preflight`]: the verdict, what each call answered, and the
/// telemetry the agent exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightReport {
    pub outcome: PreflightOutcome,
    /// What `GET /user` answered (None: not asked, the token cannot be sent in a header).
    pub identity: Option<IdentityResult>,
    /// What the test query answered (None: not asked, `/user` did not pass).
    pub test_query: Option<TestQueryResult>,
    /// Identity requests made.
    pub identity_attempts: u32,
    /// PAT expiry from either response.
    pub token_expiry: Option<TokenExpiry>,
    /// Rate limit of the REST `core` bucket, from `/user`.
    pub rate_limit: Option<RateLimit>,
    /// Rate limit of the `graphql` bucket; None when the test query did not run.
    pub graphql_rate_limit: Option<RateLimit>,
}

impl PreflightReport {
    /// A preflight judged `outcome` after one identity call, no header seen: what a scripted
    /// transport or the simulation's GitHub answers.
    pub fn judged(outcome: PreflightOutcome) -> PreflightReport {
        PreflightReport {
            outcome,
            identity: None,
            test_query: None,
            identity_attempts: 1,
            token_expiry: None,
            rate_limit: None,
            graphql_rate_limit: None,
        }
    }
}

/// Errors building a [`GithubClient`] or parsing its settings.
#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("invalid github api url {url:?}: {reason}")]
    InvalidApiUrl { url: String, reason: String },
    #[error("unknown github mode {0:?} (expected \"parity\" or \"fixed\")")]
    UnknownMode(String),
    #[error("failed to build the github http client")]
    Client(#[source] reqwest::Error),
}

impl GithubError {
    /// Bounded label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            GithubError::InvalidApiUrl { .. } => "invalid_api_url",
            GithubError::UnknownMode(_) => "unknown_mode",
            GithubError::Client(_) => "client",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_parses_and_round_trips() {
        assert_eq!("parity".parse::<Mode>().unwrap(), Mode::Parity);
        assert_eq!(" Fixed ".parse::<Mode>().unwrap(), Mode::Fixed);
        assert_eq!(Mode::default(), Mode::Fixed);
        let err = "strict".parse::<Mode>().unwrap_err();
        assert_eq!(err.to_string(), "unknown github mode \"strict\" (expected \"parity\" or \"fixed\")");
        assert_eq!(serde_json::to_string(&Mode::Parity).unwrap(), "\"parity\"");
        assert_eq!(serde_json::from_str::<Mode>("\"fixed\"").unwrap(), Mode::Fixed);
        assert_eq!(Mode::Parity.to_string(), "parity");
    }
}
