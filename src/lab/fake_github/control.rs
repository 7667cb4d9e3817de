//! The fake's control API (`/_fake/...`): the same operations as [`FakeGithubHandle`], in JSON, so
//! a test can drive a fake that serves a separate `patrol` process.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{FakeAccount, FakeGithubHandle, FaultRule};
use crate::secret::fingerprint;

/// The `/_fake/...` routes (see [`super::router`]).
pub(super) fn routes() -> Router<FakeGithubHandle> {
    Router::new()
        .route("/_fake/behaviour", get(get_behaviour).post(set_behaviour).delete(clear_behaviour))
        .route("/_fake/faults", post(add_fault))
        .route("/_fake/tokens", post(add_token))
        .route("/_fake/tokens/revoke", post(revoke_token))
        .route("/_fake/tokens/remove", post(remove_token))
        .route("/_fake/stats", get(get_stats).delete(reset_stats))
}

#[derive(Debug, Serialize, Deserialize)]
struct Behaviour {
    faults: Vec<FaultRule>,
}

/// Names a token in the control API, raw or by fingerprint.
#[derive(Deserialize)]
struct TokenRef {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    token_fingerprint: Option<String>,
}

impl TokenRef {
    fn fingerprint(&self) -> Option<String> {
        self.token.as_deref().map(fingerprint).or_else(|| self.token_fingerprint.clone())
    }
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": message}))).into_response()
}

fn validate_rules(rules: &[FaultRule]) -> Result<(), String> {
    rules.iter().try_for_each(|r| r.fault.validate())
}

async fn get_behaviour(State(github): State<FakeGithubHandle>) -> Response {
    Json(Behaviour { faults: github.faults() }).into_response()
}

async fn set_behaviour(State(github): State<FakeGithubHandle>, Json(b): Json<Behaviour>) -> Response {
    if let Err(e) = validate_rules(&b.faults) {
        return bad_request(e);
    }
    github.set_faults(b.faults);
    Json(Behaviour { faults: github.faults() }).into_response()
}

async fn clear_behaviour(State(github): State<FakeGithubHandle>) -> Response {
    github.clear_faults();
    Json(Behaviour { faults: Vec::new() }).into_response()
}

async fn add_fault(State(github): State<FakeGithubHandle>, Json(rule): Json<FaultRule>) -> Response {
    if let Err(e) = validate_rules(std::slice::from_ref(&rule)) {
        return bad_request(e);
    }
    github.add_fault(rule);
    Json(Behaviour { faults: github.faults() }).into_response()
}

async fn add_token(State(github): State<FakeGithubHandle>, Json(account): Json<FakeAccount>) -> Response {
    if account.token.trim().is_empty() {
        return bad_request("token must not be empty".into());
    }
    let fp = fingerprint(&account.token);
    github.add_account(account);
    (StatusCode::CREATED, Json(json!({"token_fingerprint": fp}))).into_response()
}

async fn revoke_token(State(github): State<FakeGithubHandle>, Json(t): Json<TokenRef>) -> Response {
    on_token(&t, "revoked", |fp| github.revoke_fingerprint(fp))
}

async fn remove_token(State(github): State<FakeGithubHandle>, Json(t): Json<TokenRef>) -> Response {
    on_token(&t, "removed", |fp| github.remove_fingerprint(fp))
}

/// `op` on the token `t` names: 200 `{token_fingerprint, <done>: true}`, 404 if unknown.
fn on_token(t: &TokenRef, done: &str, op: impl FnOnce(&str) -> bool) -> Response {
    let Some(fp) = t.fingerprint() else {
        return bad_request("give token or token_fingerprint".into());
    };
    let known = op(&fp);
    let status = if known { StatusCode::OK } else { StatusCode::NOT_FOUND };
    (status, Json(json!({"token_fingerprint": fp, (done): known}))).into_response()
}

async fn get_stats(State(github): State<FakeGithubHandle>) -> Response {
    Json(github.stats()).into_response()
}

async fn reset_stats(State(github): State<FakeGithubHandle>) -> Response {
    github.reset_stats();
    StatusCode::NO_CONTENT.into_response()
}
