//! The GitHub half of the fake: `GET /user` and `POST /graphql` as api.github.com answers them,
//! with the first matching fault rule applied instead.

use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::conn::{Conn, Trickle};
use super::{Account, Endpoint, FakeGithubHandle, Fault, lock, unix_now};
use crate::secret::fingerprint;

/// Requests per hour GitHub grants a PAT (both buckets), reported in `x-ratelimit-limit`.
const RATE_LIMIT: u64 = 5000;

pub(super) async fn user(
    State(github): State<FakeGithubHandle>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    headers: HeaderMap,
) -> Response {
    answer(&github, &conn, Endpoint::User, &headers, Bytes::new()).await
}

pub(super) async fn graphql(
    State(github): State<FakeGithubHandle>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(&github, &conn, Endpoint::Graphql, &headers, body).await
}

/// Count, apply the first matching fault, otherwise answer like GitHub.
async fn answer(
    github: &FakeGithubHandle,
    conn: &Conn,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    // A kept-alive connection may still be throttled from the previous request.
    conn.set_trickle(None);
    let token_fp = presented_token(headers).map(fingerprint);
    let token_fp = token_fp.as_deref();
    let fault = github.admit(endpoint, token_fp);
    match fault {
        Some(Fault::Reset) => {
            github.log(endpoint, token_fp, Fault::Reset.label());
            conn.kill();
            // Never written: the killed stream fails hyper's first write.
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        Some(Fault::Delay { ms }) => {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(ms)) => {}
                () = github.shared.shutdown.cancelled() => {
                    github.log(endpoint, token_fp, "cut by shutdown".into());
                    conn.kill();
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
            }
        }
        Some(Fault::Trickle { bytes, every_ms }) => {
            conn.set_trickle(Some(Trickle { bytes, every: Duration::from_millis(every_ms) }));
        }
        Some(other) => {
            github.log(endpoint, token_fp, other.label());
            let account = github.account(token_fp);
            return fault_response(&other, endpoint, account.as_ref());
        }
        None => {}
    }
    let (response, label) = normal_response(github, endpoint, token_fp, &body);
    github.log(endpoint, token_fp, fault.map_or(label, |f| f.label()));
    response
}

/// The token of `Authorization: token X` or `Bearer X` (scheme case-insensitive, as GitHub).
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (["token", "bearer"].iter().any(|s| scheme.eq_ignore_ascii_case(s)) && !token.is_empty()).then_some(token)
}

fn normal_response(
    github: &FakeGithubHandle,
    endpoint: Endpoint,
    token_fp: Option<&str>,
    body: &[u8],
) -> (Response, String) {
    if token_fp.is_none() {
        let message = match endpoint {
            Endpoint::User => "Requires authentication",
            Endpoint::Graphql => "This endpoint requires you to be authenticated.",
        };
        return (error_json(StatusCode::UNAUTHORIZED, message, endpoint), "no token".into());
    }
    let Some(account) = github.account(token_fp) else {
        return (error_json(StatusCode::UNAUTHORIZED, "Bad credentials", endpoint), "bad credentials".into());
    };
    let payload = match endpoint {
        Endpoint::User => json!({"login": account.login, "id": account.id, "type": "User"}),
        Endpoint::Graphql => {
            let query_ok = serde_json::from_slice::<Value>(body)
                .ok()
                .is_some_and(|v| v.get("query").is_some_and(Value::is_string));
            if !query_ok {
                return (error_json(StatusCode::BAD_REQUEST, "Problems parsing JSON", endpoint), "bad request".into());
            }
            json!({"data": {"viewer": {"login": account.login}}})
        }
    };
    let used = token_fp.map_or(0, |fp| lock(github.counter(endpoint)).by_token.get(fp).copied().unwrap_or(0));
    let mut response = (StatusCode::OK, Json(payload)).into_response();
    let h = response.headers_mut();
    rate_limit_headers(h, endpoint, RATE_LIMIT.saturating_sub(used), used, github.shared.window_reset_unix);
    if let Some(expiry) = account.expiry.as_deref().and_then(|e| HeaderValue::from_str(e).ok()) {
        h.insert("github-authentication-token-expiration", expiry);
    }
    (response, "ok".into())
}

fn fault_response(fault: &Fault, endpoint: Endpoint, account: Option<&Account>) -> Response {
    match fault {
        Fault::Status { status, message } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = message.clone().unwrap_or_else(|| status.canonical_reason().unwrap_or_default().to_string());
            error_json(status, &message, endpoint)
        }
        Fault::TooManyRequests { retry_after_secs } => {
            let message = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.";
            let mut r = error_json(StatusCode::TOO_MANY_REQUESTS, message, endpoint);
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            r
        }
        Fault::RateLimited { reset_after_secs } => {
            let message = match account {
                Some(a) => format!("API rate limit exceeded for user ID {}.", a.id),
                None => "API rate limit exceeded.".to_string(),
            };
            let mut r = error_json(StatusCode::FORBIDDEN, &message, endpoint);
            rate_limit_headers(r.headers_mut(), endpoint, 0, RATE_LIMIT, unix_now().saturating_add(*reset_after_secs));
            r
        }
        Fault::GraphqlErrors { message, error_type } => {
            let mut error = json!({"message": message});
            if let Some(t) = error_type {
                error["type"] = json!(t);
            }
            (StatusCode::OK, Json(json!({"errors": [error]}))).into_response()
        }
        Fault::ViewerNull => (StatusCode::OK, Json(json!({"data": {"viewer": null}}))).into_response(),
        Fault::Body { status, body } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], Body::from(body.clone()))
                .into_response()
        }
        // Answered in `answer` before a response is built.
        Fault::Delay { .. } | Fault::Trickle { .. } | Fault::Reset => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn error_json(status: StatusCode, message: &str, endpoint: Endpoint) -> Response {
    let docs = match endpoint {
        Endpoint::User => "https://docs.github.com/rest",
        Endpoint::Graphql => "https://docs.github.com/graphql",
    };
    (status, Json(json!({"message": message, "documentation_url": docs, "status": status.as_u16().to_string()})))
        .into_response()
}

fn rate_limit_headers(h: &mut HeaderMap, endpoint: Endpoint, remaining: u64, used: u64, reset_unix: u64) {
    h.insert("x-ratelimit-limit", HeaderValue::from(RATE_LIMIT));
    h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    h.insert("x-ratelimit-used", HeaderValue::from(used));
    h.insert("x-ratelimit-reset", HeaderValue::from(reset_unix));
    h.insert("x-ratelimit-resource", HeaderValue::from_static(endpoint.resource()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presented_token_accepts_both_schemes() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("token abc"));
        assert_eq!(presented_token(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(presented_token(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(presented_token(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("token "));
        assert_eq!(presented_token(&h), None);
    }
}
