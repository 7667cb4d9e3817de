//! Local receivers on 127.0.0.1 that answer as each notification service does — Discord, Slack,
//! Telegram, ntfy, a generic webhook, healthchecks.io and Uptime Kuma — and check every request
//! against that service's documented schema (a violation is recorded and answered 400, as the
//! service would). Each can be told to rate-limit (429 in the service's own retry-after form),
//! fail (5xx) or hang. Runs in the test's tokio runtime; every URL carries a secret to grep for.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Discord,
    Slack,
    Telegram,
    Ntfy,
    Webhook,
    Healthchecks,
    Kuma,
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behave {
    Ok,
    /// 429 in the service's form, asking for `retry_after` seconds, for the next `times` requests.
    RateLimit {
        times: usize,
        retry_after: f64,
    },
    /// 503.
    Down,
    /// Never answers.
    Hang,
    /// 404 (a deleted webhook).
    Gone,
}

/// One request that was accepted.
#[derive(Debug, Clone)]
pub struct Got {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Got {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// Everything the service received, as one text (to grep for secrets and content).
    pub fn all(&self) -> String {
        format!("{} {}?{} {:?} {}", self.method, self.path, self.query, self.headers, self.text())
    }
}

struct Inner {
    service: Service,
    secret: String,
    behave: Mutex<Behave>,
    got: Mutex<Vec<Got>>,
    /// Every request (accepted or not), with when.
    seen: Mutex<Vec<Instant>>,
    violations: Mutex<Vec<String>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

impl Receiver {
    pub async fn start(service: Service) -> Receiver {
        let secret = format!("s3cr3t{:?}{}", service, std::process::id()).replace(' ', "");
        let inner = Arc::new(Inner {
            service,
            secret,
            behave: Mutex::new(Behave::Ok),
            got: Mutex::default(),
            seen: Mutex::default(),
            violations: Mutex::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(handle).with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, inner }
    }

    /// The secret part of the URL (what must never appear in patrol's output).
    pub fn secret(&self) -> &str {
        &self.inner.secret
    }

    /// The URL a user would paste.
    pub fn url(&self) -> String {
        let (a, s) = (self.addr, &self.inner.secret);
        match self.inner.service {
            Service::Discord => format!("http://{a}/api/webhooks/123456789012345678/{s}"),
            Service::Slack => format!("http://{a}/services/T0001/B0002/{s}"),
            Service::Telegram => format!("http://{a}/bot123456:{s}/sendMessage?chat_id=-1001234"),
            Service::Ntfy => format!("http://{a}/{s}"),
            Service::Webhook => format!("http://{a}/hook/{s}"),
            Service::Healthchecks => format!("http://{a}/ping/{s}"),
            Service::Kuma => format!("http://{a}/api/push/{s}?status=up&msg=OK&ping="),
        }
    }

    pub fn set(&self, b: Behave) {
        *self.inner.behave.lock().unwrap() = b;
    }

    /// The accepted requests.
    pub fn got(&self) -> Vec<Got> {
        self.inner.got.lock().unwrap().clone()
    }

    /// When every request came (accepted or not).
    pub fn seen(&self) -> Vec<Instant> {
        self.inner.seen.lock().unwrap().clone()
    }

    /// Requests that broke the service's schema (must stay empty).
    pub fn violations(&self) -> Vec<String> {
        self.inner.violations.lock().unwrap().clone()
    }

    /// Wait until `n` requests were accepted (at most `timeout`).
    pub async fn wait(&self, n: usize, timeout: Duration) -> Vec<Got> {
        let end = Instant::now() + timeout;
        while self.got().len() < n && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.got()
    }
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    inner.seen.lock().unwrap().push(Instant::now());
    let got = Got {
        at: Instant::now(),
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect(),
        body: body.to_vec(),
    };
    // doctor's reachability checks: describe the webhook / the bot, answer a HEAD of the root
    let gone = *inner.behave.lock().unwrap() == Behave::Gone;
    if method == Method::GET && inner.service == Service::Discord && got.path.contains(&inner.secret) && !gone {
        return axum::Json(json!({"id": "123456789012345678", "type": 1, "name": "patrol", "token": inner.secret}))
            .into_response();
    }
    if method == Method::GET && inner.service == Service::Telegram && got.path.ends_with("/getMe") {
        return axum::Json(
            json!({"ok": true, "result": {"id": 123456, "is_bot": true, "username": "patrol_test_bot"}}),
        )
        .into_response();
    }
    if method == Method::HEAD {
        return StatusCode::NOT_FOUND.into_response();
    }
    let behave = {
        let mut b = inner.behave.lock().unwrap();
        let now = *b;
        if let Behave::RateLimit { times, retry_after } = now {
            *b = if times <= 1 { Behave::Ok } else { Behave::RateLimit { times: times - 1, retry_after } };
        }
        now
    };
    match behave {
        Behave::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        Behave::Down => return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response(),
        Behave::Gone => {
            return (StatusCode::NOT_FOUND, axum::Json(json!({"message": "Unknown Webhook", "code": 10015})))
                .into_response();
        }
        Behave::RateLimit { retry_after, .. } => return rate_limited(inner.service, retry_after),
        Behave::Ok => {}
    }
    if let Err(v) = check(inner.service, &inner.secret, &got) {
        inner.violations.lock().unwrap().push(format!("{:?}: {v}: {}", inner.service, got.all()));
        return (StatusCode::BAD_REQUEST, v).into_response();
    }
    inner.got.lock().unwrap().push(got.clone());
    match inner.service {
        Service::Discord => StatusCode::NO_CONTENT.into_response(),
        Service::Slack => "ok".into_response(),
        Service::Telegram => axum::Json(json!({"ok": true, "result": {"message_id": 1, "date": 0, "chat": {"id": -1001234, "type": "supergroup"}, "text": got.json()["text"]}})).into_response(),
        Service::Ntfy => axum::Json(json!({"id": "xE73Iyuabi", "time": 1673542291, "event": "message", "topic": inner.secret, "message": got.text()})).into_response(),
        Service::Webhook => StatusCode::NO_CONTENT.into_response(),
        Service::Healthchecks => "OK".into_response(),
        Service::Kuma => axum::Json(json!({"ok": true})).into_response(),
    }
}

/// 429 the way each service says it.
fn rate_limited(service: Service, retry_after: f64) -> Response {
    let secs = retry_after.ceil() as u64;
    let mut r = match service {
        Service::Discord => (StatusCode::TOO_MANY_REQUESTS, axum::Json(json!({"message": "You are being rate limited.", "retry_after": retry_after, "global": false}))).into_response(),
        Service::Telegram => (StatusCode::TOO_MANY_REQUESTS, axum::Json(json!({"ok": false, "error_code": 429, "description": format!("Too Many Requests: retry after {secs}"), "parameters": {"retry_after": secs}}))).into_response(),
        Service::Ntfy => (StatusCode::TOO_MANY_REQUESTS, axum::Json(json!({"code": 42901, "http": 429, "error": "limit reached: too many requests"}))).into_response(),
        _ => (StatusCode::TOO_MANY_REQUESTS, "rate_limited").into_response(),
    };
    if !matches!(service, Service::Telegram | Service::Ntfy) {
        r.headers_mut().insert("retry-after", secs.to_string().parse().unwrap());
    }
    r
}

fn header<'a>(g: &'a Got, name: &str) -> Option<&'a str> {
    g.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// The service's documented request schema.
fn check(service: Service, secret: &str, g: &Got) -> Result<(), String> {
    let is_json = header(g, "content-type").is_some_and(|c| c.starts_with("application/json"));
    let chars = |v: &Value| v.as_str().map(|s| s.chars().count());
    match service {
        Service::Discord => {
            ensure(
                g.method == "POST" && g.path.ends_with(&format!("/{secret}")) && is_json,
                "POST JSON to the webhook",
            )?;
            let j = g.json();
            let obj = j.as_object().ok_or("not a JSON object")?;
            for k in obj.keys() {
                ensure(
                    ["content", "username", "avatar_url", "tts", "embeds", "allowed_mentions", "flags", "thread_name"]
                        .contains(&k.as_str()),
                    "unknown field",
                )?;
            }
            let n = chars(&j["content"]).ok_or("content must be a string")?;
            ensure((1..=2000).contains(&n), "content must be 1 to 2000 characters")
        }
        Service::Slack => {
            ensure(g.method == "POST" && is_json, "POST JSON")?;
            let j = g.json();
            ensure(j["text"].is_string() || j["blocks"].is_array(), "text or blocks")?;
            let blocks = j["blocks"].as_array().cloned().unwrap_or_default();
            ensure(blocks.len() <= 50, "at most 50 blocks")?;
            for b in &blocks {
                match b["type"].as_str() {
                    Some("header") => ensure(
                        b["text"]["type"] == "plain_text"
                            && chars(&b["text"]["text"]).is_some_and(|n| (1..=150).contains(&n)),
                        "header: plain_text of 1-150",
                    )?,
                    Some("section") => ensure(
                        chars(&b["text"]["text"]).is_some_and(|n| (1..=3000).contains(&n)),
                        "section text of 1-3000",
                    )?,
                    _ => return Err("unknown block type".into()),
                }
            }
            Ok(())
        }
        Service::Telegram => {
            ensure(
                g.method == "POST" && g.path == format!("/bot123456:{secret}/sendMessage") && is_json,
                "POST JSON to /bot<token>/sendMessage",
            )?;
            let j = g.json();
            ensure(j["chat_id"].is_string() || j["chat_id"].is_i64(), "chat_id")?;
            ensure(chars(&j["text"]).is_some_and(|n| (1..=4096).contains(&n)), "text of 1-4096 characters")
        }
        Service::Ntfy => {
            ensure(g.method == "POST" && g.path == format!("/{secret}"), "POST to the topic")?;
            ensure(!g.body.is_empty() && g.body.len() <= 4096, "a message of at most 4096 bytes")?;
            ensure(
                header(g, "priority").is_none_or(|p| {
                    ["1", "2", "3", "4", "5", "min", "low", "default", "high", "max", "urgent"].contains(&p)
                }),
                "priority",
            )?;
            ensure(header(g, "title").is_none_or(|t| t.is_ascii()), "title")
        }
        Service::Webhook => {
            ensure(g.method == "POST" && is_json, "POST JSON")?;
            let j = g.json();
            ensure(
                j["version"] == 1 && j["source"] == "patrol" && j["text"].is_string() && j["host"].is_string(),
                "payload v1 header fields",
            )?;
            ensure(
                ["info", "warning", "critical"].contains(&j["max_severity"].as_str().unwrap_or("")),
                "max_severity",
            )?;
            for e in j["events"].as_array().ok_or("events")? {
                ensure(
                    e["kind"].is_string()
                        && e["severity"].is_string()
                        && e["resolved"].is_boolean()
                        && e["at"].is_string()
                        && e["title"].is_string(),
                    "event fields",
                )?;
            }
            Ok(())
        }
        Service::Healthchecks => ensure(
            matches!(g.method.as_str(), "POST" | "GET" | "HEAD")
                && (g.path == format!("/ping/{secret}") || g.path == format!("/ping/{secret}/fail"))
                && g.body.len() <= 10_000,
            "a ping to /ping/<uuid>[/fail]",
        ),
        Service::Kuma => {
            ensure(g.method == "GET" && g.path == format!("/api/push/{secret}"), "GET /api/push/<token>")?;
            ensure(g.query.contains("status=up") || g.query.contains("status=down"), "status=up|down")
        }
    }
}

fn ensure(ok: bool, what: &str) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what.to_string()) }
}
