//! Pure classification of GitHub answers: status + headers + body in, verdict out. No I/O, no clock
//! reads (callers pass `now`), so every rule of docs §2.5/§2.6 is a table row in the tests below.
//!
//! Upstream's Python is quoted where our guard differs from it: a few inputs make upstream raise
//! (`AttributeError` → axon 500); we answer them the closest documented way instead.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use serde_json::Value;

use super::{Mode, RateLimit, ResponseMeta, TestQueryResult, TokenExpiry};

/// gittensor's "viewer is null" text: a fine-grained PAT without public-repository read access.
pub const VIEWER_NULL_DETAIL: &str = "Fine-grained PATs need 'Public Repositories (read-only)' permission";

/// GitHub messages are echoed into details; cap them so a hostile body cannot bloat a reason.
const MAX_MESSAGE_CHARS: usize = 200;

/// One `/user` answer's verdict, before the retry loop decides whether to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityStep {
    /// 200 with an id.
    Valid { id: String, login: String },
    /// Worth another attempt; `retry_after` is GitHub's hint ([`Mode::Fixed`] only).
    Retry { detail: String, retry_after: Option<Duration> },
    /// Permanent: a 4xx that is neither 408 nor a rate limit.
    InvalidAuth { status: u16, message: String },
}

/// Classify one `GET /user` answer (`get_github_identity`'s loop body).
pub fn classify_identity(mode: Mode, status: u16, headers: &HeaderMap, body: &[u8], now: SystemTime) -> IdentityStep {
    if status == 200 {
        return classify_identity_ok(mode, body);
    }
    let message = github_message(body);
    if status == 408 || is_rate_limited(status, headers, body) || !(400..500).contains(&status) {
        let retry_after = if mode == Mode::Fixed { retry_hint(headers, now) } else { None };
        return IdentityStep::Retry { detail: status_detail("GitHub /user", status, &message), retry_after };
    }
    IdentityStep::InvalidAuth { status, message }
}

fn classify_identity_ok(mode: Mode, body: &[u8]) -> IdentityStep {
    let retry = |detail: &str| IdentityStep::Retry { detail: detail.to_string(), retry_after: None };
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return retry(&format!("GitHub /user returned 200 with a body that is not JSON: {e}"));
        }
    };
    // Upstream calls `user_data.get('id')`: a non-object raises AttributeError, which its loop catches
    // and retries like any other exception.
    let Some(object) = value.as_object() else {
        return retry("GitHub /user returned 200 with a body that is not a JSON object");
    };
    let login = object.get("login").and_then(Value::as_str).unwrap_or_default().to_string();
    let id = match (mode, object.get("id")) {
        (_, Some(Value::Number(n))) if n.is_u64() || n.is_i64() => n.to_string(),
        // Upstream accepts any non-null id and stores `str(id)`.
        (Mode::Parity, Some(v)) if !v.is_null() => py_str(v),
        _ => return retry("GitHub /user returned 200 without an integer id"),
    };
    IdentityStep::Valid { id, login }
}

/// Classify one `POST /graphql` answer (`_test_pat_against_repo` after the request returned).
pub fn classify_test_query(
    mode: Mode,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> TestQueryResult {
    let fixed = mode == Mode::Fixed;
    if status != 200 {
        let transient = fixed && (status >= 500 || status == 408 || is_rate_limited(status, headers, body));
        let retry_after = if transient { retry_hint(headers, now) } else { None };
        return TestQueryResult::Failed {
            detail: format!("GitHub GraphQL API returned {status}"),
            transient,
            retry_after,
        };
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        // Upstream: requests' JSONDecodeError is a RequestException → `str(e)`; #1332 calls it transient.
        Err(e) => return test_query_transport_failure(mode, e.to_string()),
    };
    // Upstream raises AttributeError here (axon 500); a malformed 200 is GitHub's fault, not the PAT's.
    let Some(object) = value.as_object() else {
        return test_query_transport_failure(
            mode,
            "GitHub GraphQL API returned a body that is not a JSON object".into(),
        );
    };
    if let Some(errors) = object.get("errors").filter(|e| py_truthy(e)) {
        let (message, rate_limited) = first_graphql_error(errors);
        let transient = fixed && rate_limited;
        let retry_after = if transient { retry_hint(headers, now) } else { None };
        return TestQueryResult::Failed { detail: format!("GraphQL error: {message}"), transient, retry_after };
    }
    // `(data.get('data') or {}).get('viewer') is None`, with a non-object `data` guarded (upstream raises).
    let viewer = object.get("data").filter(|d| py_truthy(d)).map(|d| d.as_object().and_then(|d| d.get("viewer")));
    match viewer {
        Some(Some(v)) if !v.is_null() => TestQueryResult::Ok,
        _ => TestQueryResult::Failed { detail: VIEWER_NULL_DETAIL.to_string(), transient: false, retry_after: None },
    }
}

/// The test query's verdict when no usable answer arrived: `str(e)` upstream, transient in
/// [`Mode::Fixed`] (#1332).
pub fn test_query_transport_failure(mode: Mode, detail: String) -> TestQueryResult {
    TestQueryResult::Failed { detail, transient: mode == Mode::Fixed, retry_after: None }
}

/// `errors[0].get("message", "unknown")`, guarded for shapes upstream would crash on, plus whether
/// the error is GitHub's GraphQL rate limit (`type: RATE_LIMITED`).
fn first_graphql_error(errors: &Value) -> (String, bool) {
    let first = errors.as_array().and_then(|a| a.first()).and_then(Value::as_object);
    let message = match first.and_then(|f| f.get("message")) {
        Some(Value::String(s)) => truncate(s),
        Some(v) => truncate(&py_str(v)),
        None => "unknown".to_string(),
    };
    let rate_limited = first.and_then(|f| f.get("type")).and_then(Value::as_str) == Some("RATE_LIMITED");
    (message, rate_limited)
}

/// Upstream's `_is_rate_limited_response`: 429, or 403 with `x-ratelimit-remaining: 0` or a
/// "rate limit" message (from the JSON `message`, else the raw body).
pub fn is_rate_limited(status: u16, headers: &HeaderMap, body: &[u8]) -> bool {
    match status {
        429 => true,
        403 => {
            header_str(headers, "x-ratelimit-remaining") == Some("0") || {
                let text = match serde_json::from_slice::<Value>(body) {
                    Ok(Value::Object(o)) => o.get("message").map(py_str).unwrap_or_default(),
                    _ => String::from_utf8_lossy(body).into_owned(),
                };
                text.to_lowercase().contains("rate limit")
            }
        }
        _ => false,
    }
}

/// GitHub's wait hint: `Retry-After` seconds, else — only when the window is spent — the time until
/// `x-ratelimit-reset`. A reset time on a response with quota left says nothing about this failure.
pub fn retry_hint(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(secs) = header_u64(headers, "retry-after") {
        return Some(Duration::from_secs(secs));
    }
    if header_str(headers, "x-ratelimit-remaining") != Some("0") {
        return None;
    }
    let reset = UNIX_EPOCH.checked_add(Duration::from_secs(header_u64(headers, "x-ratelimit-reset")?))?;
    Some(reset.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Status, rate-limit and expiry headers of one response.
pub fn response_meta(status: u16, headers: &HeaderMap) -> ResponseMeta {
    ResponseMeta { status: Some(status), rate_limit: rate_limit(headers), token_expiry: token_expiry(headers) }
}

/// The `x-ratelimit-*` headers, None when none is present.
pub fn rate_limit(headers: &HeaderMap) -> Option<RateLimit> {
    let rl = RateLimit {
        limit: header_u64(headers, "x-ratelimit-limit"),
        remaining: header_u64(headers, "x-ratelimit-remaining"),
        reset_unix: header_u64(headers, "x-ratelimit-reset"),
        used: header_u64(headers, "x-ratelimit-used"),
        resource: header_str(headers, "x-ratelimit-resource").map(str::to_string),
    };
    (rl != RateLimit::default()).then_some(rl)
}

/// `github-authentication-token-expiration`, e.g. "2026-12-31 00:00:00 UTC" (or "… +0000").
pub fn token_expiry(headers: &HeaderMap) -> Option<TokenExpiry> {
    let text = header_str(headers, "github-authentication-token-expiration")?.trim();
    Some(TokenExpiry { text: text.to_string(), unix_seconds: parse_expiry(text) })
}

fn parse_expiry(text: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let (stamp, zone) = text.split_at_checked(19)?;
    let local = time::PrimitiveDateTime::parse(stamp, format).ok()?;
    let zone = zone.trim();
    let offset = if zone.eq_ignore_ascii_case("UTC") || zone.is_empty() {
        time::UtcOffset::UTC
    } else {
        let sign: i8 = match zone.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let digits = zone.get(1..)?.replace(':', "");
        let hours: i8 = digits.get(..2)?.parse().ok()?;
        let minutes: i8 = digits.get(2..4)?.parse().ok()?;
        time::UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()?
    };
    Some(local.assume_offset(offset).unix_timestamp())
}

/// "<what> returned <status>" plus GitHub's message when it sent one.
pub(crate) fn status_detail(what: &str, status: u16, message: &str) -> String {
    if message.is_empty() {
        format!("{what} returned {status}")
    } else {
        format!("{what} returned {status}: {message}")
    }
}

/// GitHub's JSON `message` field, truncated; empty when absent.
pub(crate) fn github_message(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => o.get("message").and_then(Value::as_str).map(truncate).unwrap_or_default(),
        _ => String::new(),
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    header_str(headers, name)?.parse().ok()
}

/// Python truthiness of a JSON value (`if errors:`, `x or {}`).
fn py_truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Python `str()` of a JSON scalar (`str(True)` is "True"); containers as JSON text.
fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    const NOW_UNIX: u64 = 1_800_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW_UNIX)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    /// status, headers, body, expected in fixed mode, expected in parity mode.
    type Row<'a, T> = (u16, Vec<(&'a str, &'a str)>, &'a str, T, T);

    /// Each row's answer classified in both modes, against the row's two expectations.
    fn assert_table<T: PartialEq + std::fmt::Debug>(
        table: Vec<Row<'_, T>>,
        classify: impl Fn(Mode, u16, &HeaderMap, &[u8]) -> T,
    ) {
        for (status, hs, body, fixed, parity) in table {
            let h = headers(&hs);
            assert_eq!(classify(Mode::Fixed, status, &h, body.as_bytes()), fixed, "fixed {status} {body}");
            assert_eq!(classify(Mode::Parity, status, &h, body.as_bytes()), parity, "parity {status} {body}");
        }
    }

    fn retry(detail: &str, after: Option<u64>) -> IdentityStep {
        IdentityStep::Retry { detail: detail.into(), retry_after: after.map(Duration::from_secs) }
    }

    fn valid(id: &str, login: &str) -> IdentityStep {
        IdentityStep::Valid { id: id.into(), login: login.into() }
    }

    fn invalid(status: u16, message: &str) -> IdentityStep {
        IdentityStep::InvalidAuth { status, message: message.into() }
    }

    #[test]
    fn identity_table() {
        let reset = (NOW_UNIX + 30).to_string();
        let spent = [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", reset.as_str())];
        let rl_msg = r#"{"message":"API rate limit exceeded for user ID 1."}"#;
        #[rustfmt::skip]
        let table: Vec<Row<IdentityStep>> = vec![
            // status, headers, body, fixed, parity
            (200, vec![], r#"{"id":42,"login":"alice"}"#, valid("42", "alice"), valid("42", "alice")),
            (200, vec![], r#"{"id":42}"#, valid("42", ""), valid("42", "")),
            (200, vec![], r#"{"id":"42","login":"a"}"#, retry("GitHub /user returned 200 without an integer id", None), valid("42", "a")),
            (200, vec![], r#"{"id":true}"#, retry("GitHub /user returned 200 without an integer id", None), valid("True", "")),
            (200, vec![], r#"{"id":null,"login":"a"}"#, retry("GitHub /user returned 200 without an integer id", None), retry("GitHub /user returned 200 without an integer id", None)),
            (200, vec![], r#"{"login":"a"}"#, retry("GitHub /user returned 200 without an integer id", None), retry("GitHub /user returned 200 without an integer id", None)),
            (200, vec![], r#"[1]"#, retry("GitHub /user returned 200 with a body that is not a JSON object", None), retry("GitHub /user returned 200 with a body that is not a JSON object", None)),
            (401, vec![], r#"{"message":"Bad credentials"}"#, invalid(401, "Bad credentials"), invalid(401, "Bad credentials")),
            (404, vec![], "not json", invalid(404, ""), invalid(404, "")),
            (403, vec![], r#"{"message":"Resource not accessible by personal access token"}"#, invalid(403, "Resource not accessible by personal access token"), invalid(403, "Resource not accessible by personal access token")),
            (403, spent.to_vec(), rl_msg, retry("GitHub /user returned 403: API rate limit exceeded for user ID 1.", Some(30)), retry("GitHub /user returned 403: API rate limit exceeded for user ID 1.", None)),
            (403, vec![], rl_msg, retry("GitHub /user returned 403: API rate limit exceeded for user ID 1.", None), retry("GitHub /user returned 403: API rate limit exceeded for user ID 1.", None)),
            (403, vec![], "secondary RATE LIMIT hit", retry("GitHub /user returned 403", None), retry("GitHub /user returned 403", None)),
            (429, vec![("retry-after", "7")], "{}", retry("GitHub /user returned 429", Some(7)), retry("GitHub /user returned 429", None)),
            (408, vec![], "", retry("GitHub /user returned 408", None), retry("GitHub /user returned 408", None)),
            (503, vec![("retry-after", "3")], r#"{"message":"Service Unavailable"}"#, retry("GitHub /user returned 503: Service Unavailable", Some(3)), retry("GitHub /user returned 503: Service Unavailable", None)),
            (500, vec![], "", retry("GitHub /user returned 500", None), retry("GitHub /user returned 500", None)),
            (204, vec![], "", retry("GitHub /user returned 204", None), retry("GitHub /user returned 204", None)),
        ];
        assert_table(table, |mode, status, h, body| classify_identity(mode, status, h, body, now()));
    }

    #[test]
    fn identity_bad_json_retries_with_parser_text() {
        match classify_identity(Mode::Fixed, 200, &HeaderMap::new(), b"<html>", now()) {
            IdentityStep::Retry { detail, retry_after: None } => {
                assert!(detail.starts_with("GitHub /user returned 200 with a body that is not JSON: "), "{detail}")
            }
            other => panic!("{other:?}"),
        }
    }

    fn failed(detail: &str, transient: bool, after: Option<u64>) -> TestQueryResult {
        TestQueryResult::Failed { detail: detail.into(), transient, retry_after: after.map(Duration::from_secs) }
    }

    #[test]
    fn test_query_table() {
        let ok = TestQueryResult::Ok;
        let reset = (NOW_UNIX + 12).to_string();
        let spent = [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", reset.as_str())];
        let vn = VIEWER_NULL_DETAIL;
        #[rustfmt::skip]
        let table: Vec<Row<TestQueryResult>> = vec![
            // status, headers, body, fixed, parity
            (200, vec![], r#"{"data":{"viewer":{"login":"a"}}}"#, ok.clone(), ok.clone()),
            (200, vec![], r#"{"data":{"viewer":false}}"#, ok.clone(), ok.clone()),
            (200, vec![], r#"{"data":{"viewer":null}}"#, failed(vn, false, None), failed(vn, false, None)),
            (200, vec![], r#"{"data":null}"#, failed(vn, false, None), failed(vn, false, None)),
            (200, vec![], r#"{"errors":[]}"#, failed(vn, false, None), failed(vn, false, None)),
            (200, vec![], r#"{}"#, failed(vn, false, None), failed(vn, false, None)),
            (200, vec![], r#"{"data":"x"}"#, failed(vn, false, None), failed(vn, false, None)),
            (200, vec![], r#"{"data":[1]}"#, failed(vn, false, None), failed(vn, false, None)),
            (200, vec![], r#"{"data":{}}"#, failed(vn, false, None), failed(vn, false, None)),
            (200, vec![], r#"{"errors":[{"message":"Bad token"}],"data":{"viewer":{"login":"a"}}}"#, failed("GraphQL error: Bad token", false, None), failed("GraphQL error: Bad token", false, None)),
            (200, vec![], r#"{"errors":[{"type":"X"}]}"#, failed("GraphQL error: unknown", false, None), failed("GraphQL error: unknown", false, None)),
            (200, vec![], r#"{"errors":["boom"]}"#, failed("GraphQL error: unknown", false, None), failed("GraphQL error: unknown", false, None)),
            (200, vec![], r#"{"errors":{"a":1}}"#, failed("GraphQL error: unknown", false, None), failed("GraphQL error: unknown", false, None)),
            (200, spent.to_vec(), r#"{"errors":[{"type":"RATE_LIMITED","message":"API rate limit exceeded"}]}"#, failed("GraphQL error: API rate limit exceeded", true, Some(12)), failed("GraphQL error: API rate limit exceeded", false, None)),
            (200, vec![], "[1,2]", failed("GitHub GraphQL API returned a body that is not a JSON object", true, None), failed("GitHub GraphQL API returned a body that is not a JSON object", false, None)),
            (401, vec![], r#"{"message":"Bad credentials"}"#, failed("GitHub GraphQL API returned 401", false, None), failed("GitHub GraphQL API returned 401", false, None)),
            (404, vec![], "", failed("GitHub GraphQL API returned 404", false, None), failed("GitHub GraphQL API returned 404", false, None)),
            (403, vec![], r#"{"message":"Resource not accessible"}"#, failed("GitHub GraphQL API returned 403", false, None), failed("GitHub GraphQL API returned 403", false, None)),
            (403, spent.to_vec(), "{}", failed("GitHub GraphQL API returned 403", true, Some(12)), failed("GitHub GraphQL API returned 403", false, None)),
            (403, vec![], r#"{"message":"You have exceeded a secondary rate limit"}"#, failed("GitHub GraphQL API returned 403", true, None), failed("GitHub GraphQL API returned 403", false, None)),
            (429, vec![("retry-after", "5")], "", failed("GitHub GraphQL API returned 429", true, Some(5)), failed("GitHub GraphQL API returned 429", false, None)),
            (408, vec![], "", failed("GitHub GraphQL API returned 408", true, None), failed("GitHub GraphQL API returned 408", false, None)),
            (502, vec![], "", failed("GitHub GraphQL API returned 502", true, None), failed("GitHub GraphQL API returned 502", false, None)),
            (503, vec![("retry-after", "2")], "", failed("GitHub GraphQL API returned 503", true, Some(2)), failed("GitHub GraphQL API returned 503", false, None)),
            (301, vec![], "", failed("GitHub GraphQL API returned 301", false, None), failed("GitHub GraphQL API returned 301", false, None)),
        ];
        assert_table(table, |mode, status, h, body| classify_test_query(mode, status, h, body, now()));
    }

    #[test]
    fn test_query_non_json_body_is_transport_like() {
        for (mode, transient) in [(Mode::Fixed, true), (Mode::Parity, false)] {
            match classify_test_query(mode, 200, &HeaderMap::new(), b"<html>oops", now()) {
                TestQueryResult::Failed { detail, transient: t, retry_after: None } => {
                    assert_eq!(t, transient);
                    assert!(detail.contains("expected value"), "{detail}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn retry_hint_prefers_retry_after_and_ignores_reset_with_quota_left() {
        let r = (NOW_UNIX + 40).to_string();
        assert_eq!(
            retry_hint(&headers(&[("retry-after", "9"), ("x-ratelimit-remaining", "0")]), now()),
            Some(Duration::from_secs(9))
        );
        assert_eq!(
            retry_hint(&headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &r)]), now()),
            Some(Duration::from_secs(40))
        );
        assert_eq!(retry_hint(&headers(&[("x-ratelimit-remaining", "12"), ("x-ratelimit-reset", &r)]), now()), None);
        assert_eq!(
            retry_hint(&headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "5")]), now()),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_hint(&headers(&[("retry-after", "soon")]), now()), None);
        let huge = [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "18446744073709551615")];
        assert_eq!(retry_hint(&headers(&huge), now()), None, "an absurd reset must not overflow");
    }

    #[test]
    fn meta_reads_rate_limit_and_expiry() {
        let h = headers(&[
            ("x-ratelimit-limit", "5000"),
            ("x-ratelimit-remaining", "4990"),
            ("x-ratelimit-reset", "1800003600"),
            ("x-ratelimit-used", "10"),
            ("x-ratelimit-resource", "core"),
            ("github-authentication-token-expiration", "2026-12-31 00:00:00 UTC"),
        ]);
        let m = response_meta(200, &h);
        assert_eq!(m.status, Some(200));
        let rl = m.rate_limit.unwrap();
        assert_eq!(
            (rl.limit, rl.remaining, rl.reset_unix, rl.used),
            (Some(5000), Some(4990), Some(1_800_003_600), Some(10))
        );
        assert_eq!(rl.resource.as_deref(), Some("core"));
        assert_eq!(m.token_expiry.unwrap().unix_seconds, Some(1_798_675_200));
        assert_eq!(response_meta(500, &HeaderMap::new()).rate_limit, None);
        assert_eq!(parse_expiry("2026-12-31 01:00:00 +0100"), Some(1_798_675_200));
        assert_eq!(parse_expiry("2026-12-30 17:00:00 -0700"), Some(1_798_675_200));
        assert_eq!(parse_expiry("next tuesday"), None);
    }

    #[test]
    fn messages_are_truncated() {
        let long = format!(r#"{{"message":"{}"}}"#, "x".repeat(1000));
        assert_eq!(github_message(long.as_bytes()).chars().count(), MAX_MESSAGE_CHARS + 1);
    }
}
