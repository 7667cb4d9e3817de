//! The fake's vocabulary: endpoints, fault rules, accounts, and the counters it reports. Plain data
//! with serde, shared by the Rust handle and the `/_fake/...` control API.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::secret::fingerprint;

/// One of the two endpoints the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// `GET /user`, the identity lookup.
    User,
    /// `POST /graphql`, the test query.
    Graphql,
}

impl Endpoint {
    /// `"user"` or `"graphql"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::User => "user",
            Endpoint::Graphql => "graphql",
        }
    }

    pub(super) fn resource(self) -> &'static str {
        match self {
            Endpoint::User => "core",
            Endpoint::Graphql => "graphql",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which endpoints a [`FaultRule`] applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    User,
    Graphql,
    #[default]
    Both,
}

impl Scope {
    pub(super) fn covers(self, endpoint: Endpoint) -> bool {
        matches!(
            (self, endpoint),
            (Scope::Both, _) | (Scope::User, Endpoint::User) | (Scope::Graphql, Endpoint::Graphql)
        )
    }
}

/// What the fake does instead of its normal answer. JSON: `{"kind": "<snake_case name>", ...fields}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// This status with GitHub's JSON error body; `message` defaults to the reason phrase.
    Status {
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// 429 with `Retry-After: <retry_after_secs>` (a secondary rate limit).
    TooManyRequests { retry_after_secs: u64 },
    /// 403 "API rate limit exceeded" with `x-ratelimit-remaining: 0` and `x-ratelimit-reset` set
    /// `reset_after_secs` from now.
    RateLimited { reset_after_secs: u64 },
    /// 200 with `{"errors":[{"type": error_type, "message": message}]}`.
    GraphqlErrors {
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_type: Option<String>,
    },
    /// 200 with `{"data":{"viewer":null}}` (a fine-grained PAT without public-repository access).
    ViewerNull,
    /// Any status with a raw body (a 200 that is not JSON, a 502 HTML page…).
    Body { status: u16, body: String },
    /// Wait `ms`, then answer normally (for client timeouts).
    Delay { ms: u64 },
    /// Answer normally, but write the response `bytes` at a time every `every_ms`.
    Trickle { bytes: usize, every_ms: u64 },
    /// Close the connection without answering.
    Reset,
}

impl Fault {
    /// `Fault::Status` with the default message.
    pub fn status(status: u16) -> Fault {
        Fault::Status { status, message: None }
    }

    /// Short label for the request log.
    pub fn label(&self) -> String {
        match self {
            Fault::Status { status, .. } => format!("status {status}"),
            Fault::TooManyRequests { retry_after_secs } => {
                format!("429 retry-after {retry_after_secs}s")
            }
            Fault::RateLimited { reset_after_secs } => {
                format!("403 rate-limited, reset in {reset_after_secs}s")
            }
            Fault::GraphqlErrors { .. } => "graphql errors".into(),
            Fault::ViewerNull => "viewer null".into(),
            Fault::Body { status, body } => {
                format!("status {status} with a {}-byte body", body.len())
            }
            Fault::Delay { ms } => format!("delay {ms}ms"),
            Fault::Trickle { bytes, every_ms } => format!("trickle {bytes}B/{every_ms}ms"),
            Fault::Reset => "reset".into(),
        }
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        match self {
            Fault::Status { status, .. } | Fault::Body { status, .. } if StatusCode::from_u16(*status).is_err() => {
                Err(format!("{status} is not an HTTP status"))
            }
            _ => Ok(()),
        }
    }
}

/// A fault, where it applies, and for how long.
///
/// JSON: `{"scope": "user"|"graphql"|"both", "token": "<PAT>" | "token_fingerprint": "<fp>",
/// "times": N, "fault": {...}}`; all but `fault` optional. A raw `token` is turned into its
/// fingerprint on arrival.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "FaultRuleSpec")]
pub struct FaultRule {
    pub scope: Scope,
    /// Only requests with this token (by fingerprint); None = every request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_fingerprint: Option<String>,
    /// Matching requests left before the rule expires; None = forever.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    pub fault: Fault,
}

impl FaultRule {
    /// `fault` on both endpoints, for every token, forever.
    pub fn new(fault: Fault) -> FaultRule {
        FaultRule { scope: Scope::Both, token_fingerprint: None, times: None, fault }
    }

    /// Restrict to some endpoints.
    pub fn on(mut self, scope: Scope) -> FaultRule {
        self.scope = scope;
        self
    }

    /// Restrict to requests carrying `token`.
    pub fn for_token(mut self, token: &str) -> FaultRule {
        self.token_fingerprint = Some(fingerprint(token));
        self
    }

    /// Apply to the next `n` matching requests only ("fail N times, then recover").
    pub fn times(mut self, n: u32) -> FaultRule {
        self.times = Some(n);
        self
    }

    pub(super) fn matches(&self, endpoint: Endpoint, token_fp: Option<&str>) -> bool {
        self.scope.covers(endpoint)
            && self.times != Some(0)
            && self.token_fingerprint.as_deref().is_none_or(|want| Some(want) == token_fp)
    }
}

/// The wire form of a [`FaultRule`], which may carry a raw token.
#[derive(Deserialize)]
struct FaultRuleSpec {
    #[serde(default)]
    scope: Scope,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    token_fingerprint: Option<String>,
    #[serde(default)]
    times: Option<u32>,
    fault: Fault,
}

impl From<FaultRuleSpec> for FaultRule {
    fn from(s: FaultRuleSpec) -> FaultRule {
        let token_fingerprint = s.token.as_deref().map(fingerprint).or(s.token_fingerprint);
        FaultRule { scope: s.scope, token_fingerprint, times: s.times, fault: s.fault }
    }
}

/// A GitHub account the fake knows, with the token that authenticates as it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct FakeAccount {
    pub token: String,
    pub id: u64,
    pub login: String,
    /// Sent verbatim as `github-authentication-token-expiration`, e.g. "2026-12-31 00:00:00 UTC".
    #[serde(default)]
    pub expiry: Option<String>,
}

impl FakeAccount {
    /// An account with no expiry.
    pub fn new(token: &str, id: u64, login: &str) -> FakeAccount {
        FakeAccount { token: token.to_string(), id, login: login.to_string(), expiry: None }
    }

    /// Report `expiry` in `github-authentication-token-expiration`.
    pub fn expiring(mut self, expiry: &str) -> FakeAccount {
        self.expiry = Some(expiry.to_string());
        self
    }
}

// The token is a secret even in a fake: tests grep output for it.
impl fmt::Debug for FakeAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeAccount")
            .field("token_fingerprint", &fingerprint(&self.token))
            .field("id", &self.id)
            .field("login", &self.login)
            .field("expiry", &self.expiry)
            .finish()
    }
}

/// Starting state of a fake.
#[derive(Debug, Clone, Default)]
pub struct FakeGithubConfig {
    pub accounts: Vec<FakeAccount>,
    pub faults: Vec<FaultRule>,
}

impl FakeGithubConfig {
    /// Add an account.
    pub fn with_account(mut self, account: FakeAccount) -> FakeGithubConfig {
        self.accounts.push(account);
        self
    }

    /// Add a fault rule.
    pub fn with_fault(mut self, rule: FaultRule) -> FakeGithubConfig {
        self.faults.push(rule);
        self
    }
}

/// Request counts of one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EndpointStats {
    pub total: u64,
    /// Requests per token fingerprint (requests without a token are counted in `total` only).
    pub by_token: BTreeMap<String, u64>,
}

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    pub endpoint: Endpoint,
    pub token_fingerprint: Option<String>,
    /// Time since the fake was created (JSON: `at_ms`).
    #[serde(rename = "at_ms", serialize_with = "as_millis")]
    pub at: Duration,
    /// What the fake answered: "ok", "bad credentials", or a [`Fault::label`].
    pub answer: String,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// Everything the fake has counted (`GET /_fake/stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FakeStats {
    pub user: EndpointStats,
    pub graphql: EndpointStats,
    /// The newest requests, oldest first.
    pub requests: Vec<RequestRecord>,
}

impl FakeStats {
    /// Counts of one endpoint.
    pub fn endpoint(&self, endpoint: Endpoint) -> &EndpointStats {
        match endpoint {
            Endpoint::User => &self.user,
            Endpoint::Graphql => &self.graphql,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_json_takes_a_raw_token_and_keeps_only_its_fingerprint() {
        let rule: FaultRule = serde_json::from_str(
            r#"{"scope":"user","token":"ghp_rawsecret","times":3,"fault":{"kind":"too_many_requests","retry_after_secs":2}}"#,
        )
        .unwrap();
        assert_eq!(
            rule,
            FaultRule::new(Fault::TooManyRequests { retry_after_secs: 2 })
                .on(Scope::User)
                .for_token("ghp_rawsecret")
                .times(3)
        );
        let back = serde_json::to_string(&rule).unwrap();
        assert!(!back.contains("rawsecret"), "{back}");
        assert!(!format!("{rule:?}").contains("rawsecret"));
        let reset: Fault = serde_json::from_str(r#"{"kind":"reset"}"#).unwrap();
        assert_eq!(reset, Fault::Reset);
        assert!(Fault::status(42).validate().is_err());
    }

    #[test]
    fn account_debug_hides_the_token() {
        let a = FakeAccount::new("ghp_verysecrettoken", 7, "alice");
        assert!(!format!("{a:?}").contains("verysecret"));
    }
}
