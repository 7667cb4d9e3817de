//! The client side: build a signed request exactly as `bt.Dendrite` does, send it with a per-call
//! timeout and a response-size cap, and classify what came back (docs §7.1).
//!
//! Guarantees: a PAT appears only in the body of a `PatBroadcastSynapse` (never a header, never an
//! error message); nonces are strictly increasing for the process's uuid; every call ends within its
//! timeout with one of three outcomes. A redirect is never followed (a 3xx is a rejection naming
//! it), and every text the validator wrote is kept as [`foreign_text`]: this is where such text
//! enters patrol, so tables, JSON, logs and the state file only ever see that form.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::synapse::{self, BroadcastFields, CheckFields, SynapseKind, TerminalInfo};
use super::{
    EMPTY_BODY_HASH, EMPTY_STRING_INPUT_OBJ, Target, VERSION_AS_INT, now_ns, py_float, pyjson, signed_message,
};
use crate::secret::{Pat, foreign_text};
use crate::wallet::Hotkey;

mod outcome;
pub use outcome::*;

/// Default cap on a response body. Real answers are ~1 KB; anything this large is not a validator.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// A fully built request, before sending: what goes on the wire.
#[derive(Clone)]
pub struct PreparedRequest {
    /// `POST` for the synapses; `GET` (no body) for the liveness probe.
    pub method: reqwest::Method,
    pub url: String,
    /// Headers in wire order (lowercase names).
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body, Python-formatted.
    pub body: String,
    pub nonce: u64,
    /// The exact string that was signed.
    pub signed_message: String,
}

// The body of a broadcast holds the PAT: Debug shows its size only.
impl std::fmt::Debug for PreparedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &self.headers)
            .field("body_bytes", &self.body.len())
            .field("nonce", &self.nonce)
            .finish()
    }
}

/// Settings of a [`Dendrite`].
#[derive(Debug, Clone)]
pub struct DendriteOptions {
    /// Sent as `bt_header_dendrite_ip`; validators ignore it (they use the TCP peer), but the Python
    /// dendrite always sends its public IP, so a placeholder keeps the header set identical.
    pub external_ip: String,
    pub max_response_bytes: usize,
}

impl Default for DendriteOptions {
    fn default() -> Self {
        DendriteOptions { external_ip: "0.0.0.0".into(), max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES }
    }
}

/// A signing client bound to one hotkey, with one uuid for the process (docs §5.2).
pub struct Dendrite {
    hotkey: Arc<Hotkey>,
    uuid: String,
    last_nonce: AtomicU64,
    /// One turn per axon endpoint: see [`Dendrite::exchange`].
    turns: std::sync::Mutex<HashMap<(IpAddr, u16), Turn>>,
    http: reqwest::Client,
    opts: DendriteOptions,
}

/// Held while a request to one endpoint is in flight.
type Turn = Arc<tokio::sync::Mutex<()>>;

/// Above this many remembered endpoints, the idle ones are forgotten (a metagraph's axons move).
const TURNS_KEPT: usize = 1024;

/// How long an idle connection stays pooled.
const POOL_IDLE: Duration = Duration::from_secs(4);

impl std::fmt::Debug for Dendrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dendrite").field("hotkey", &self.hotkey.ss58()).field("uuid", &self.uuid).finish()
    }
}

impl Dendrite {
    /// A dendrite for `hotkey` with a fresh random uuid.
    pub fn new(hotkey: Arc<Hotkey>, opts: DendriteOptions) -> Result<Dendrite, reqwest::Error> {
        crate::tls::install_default_provider();
        // aiohttp's dendrite ignores proxy env vars (trust_env=False); so do we: a PAT must go
        // straight to the validator, never via whatever HTTP_PROXY happens to be set.
        let http = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            // Below uvicorn's 5 s keep-alive timeout: a pooled connection the axon is about to
            // close would race our next request; and between probe sweeps (25 s) patrol then holds
            // no connections (256 warm ones cost the agent ~5 MB of RSS).
            .pool_idle_timeout(POOL_IDLE)
            // Never follow a validator's redirect: reqwest's default re-sends a 307/308 POST with
            // its body, so the PAT would go to whatever host the `Location` names, and that host's
            // answer would count as the validator's. A 3xx is a rejection naming it.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("patrol/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Dendrite {
            hotkey,
            uuid: uuid::Uuid::new_v4().to_string(),
            last_nonce: AtomicU64::new(0),
            turns: std::sync::Mutex::default(),
            http,
            opts,
        })
    }

    /// The caller hotkey (SS58).
    pub fn hotkey(&self) -> &str {
        self.hotkey.ss58()
    }

    /// The IP it sends as `bt_header_dendrite_ip`.
    pub fn external_ip(&self) -> &str {
        &self.opts.external_ip
    }

    /// This process's dendrite uuid.
    pub fn uuid(&self) -> &str {
        &self.uuid
    }

    /// `max(now_ns, last + 1)`: strictly increasing even if the clock steps back or two calls race.
    fn next_nonce(&self) -> u64 {
        let now = now_ns();
        let prev = self
            .last_nonce
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(now.max(last.saturating_add(1))))
            .unwrap_or(0);
        now.max(prev.saturating_add(1))
    }

    /// Build a request with a fresh nonce. `pat` is used only for a broadcast.
    pub fn prepare(&self, kind: SynapseKind, target: &Target, timeout: Duration, pat: Option<&Pat>) -> PreparedRequest {
        let nonce = self.next_nonce();
        self.prepare_with(kind, target, timeout, pat, nonce, &self.uuid.clone())
    }

    /// Build a request with an explicit nonce and uuid (deterministic, for vector tests).
    pub fn prepare_with(
        &self,
        kind: SynapseKind,
        target: &Target,
        timeout: Duration,
        pat: Option<&Pat>,
        nonce: u64,
        uuid: &str,
    ) -> PreparedRequest {
        let me = self.hotkey.ss58();
        let message = signed_message(nonce, me, &target.hotkey, uuid, EMPTY_BODY_HASH);
        let signature = self.hotkey.sign_hex(message.as_bytes());
        let timeout_s = timeout.as_secs_f64();
        let ip = target.ip.to_string();
        let dendrite = TerminalInfo {
            ip: Some(self.opts.external_ip.clone()),
            version: Some(VERSION_AS_INT),
            nonce: Some(nonce),
            uuid: Some(uuid.to_string()),
            hotkey: Some(me.to_string()),
            signature: Some(signature.clone()),
            ..TerminalInfo::default()
        };
        let axon = TerminalInfo {
            ip: Some(ip.clone()),
            port: Some(target.port),
            hotkey: Some(target.hotkey.clone()),
            ..TerminalInfo::default()
        };
        let token = match kind {
            SynapseKind::Broadcast => pat.map(Pat::expose),
            SynapseKind::Check => None,
        };
        let body = pyjson::dumps(&synapse::request_body(kind, timeout_s, &dendrite, &axon, token));
        let mut headers: Vec<(&'static str, String)> = vec![
            ("name", kind.name().to_string()),
            ("timeout", py_float(timeout_s)),
            ("bt_header_axon_ip", ip),
            ("bt_header_axon_port", target.port.to_string()),
            ("bt_header_axon_hotkey", target.hotkey.clone()),
            ("bt_header_dendrite_ip", self.opts.external_ip.clone()),
            ("bt_header_dendrite_version", VERSION_AS_INT.to_string()),
            ("bt_header_dendrite_nonce", nonce.to_string()),
            ("bt_header_dendrite_uuid", uuid.to_string()),
            ("bt_header_dendrite_hotkey", me.to_string()),
            ("bt_header_dendrite_signature", signature),
        ];
        if kind == SynapseKind::Broadcast {
            headers.push(("bt_header_input_obj_github_access_token", EMPTY_STRING_INPUT_OBJ.to_string()));
        }
        headers.push(("header_size", "0".into()));
        headers.push(("total_size", "0".into()));
        headers.push(("computed_body_hash", EMPTY_BODY_HASH.into()));
        PreparedRequest {
            method: reqwest::Method::POST,
            url: target.url(kind),
            headers,
            body,
            nonce,
            signed_message: message,
        }
    }

    /// The liveness probe: a signed `GET /Synapse` without a body, with the header set a
    /// `bt.Dendrite` sends for the SDK's built-in `Synapse` (ping) endpoint.
    ///
    /// Why this request: a bittensor 10.x axon stamps its per-process uuid only into *error*
    /// responses, after preprocessing, so the probe must fail late and harmlessly. `Synapse` has no
    /// blacklist and no priority function; the signature, our registered hotkey and a fresh nonce
    /// pass verification like any check; then the body (none) fails to parse: HTTP 500 with
    /// `bt_header_axon_uuid`. No handler runs, so the validator makes no GitHub call, and its log
    /// shows one `JSONDecodeError#<id>` line from a correctly signed, registered caller — not a
    /// signature, nonce or blacklist failure, which would read as an attack.
    pub fn prepare_probe(&self, target: &Target, timeout: Duration) -> PreparedRequest {
        let nonce = self.next_nonce();
        let me = self.hotkey.ss58();
        let message = signed_message(nonce, me, &target.hotkey, &self.uuid, EMPTY_BODY_HASH);
        let signature = self.hotkey.sign_hex(message.as_bytes());
        let headers: Vec<(&'static str, String)> = vec![
            ("name", PROBE_SYNAPSE.to_string()),
            ("timeout", py_float(timeout.as_secs_f64())),
            ("bt_header_axon_ip", target.ip.to_string()),
            ("bt_header_axon_port", target.port.to_string()),
            ("bt_header_axon_hotkey", target.hotkey.clone()),
            ("bt_header_dendrite_ip", self.opts.external_ip.clone()),
            ("bt_header_dendrite_version", VERSION_AS_INT.to_string()),
            ("bt_header_dendrite_nonce", nonce.to_string()),
            ("bt_header_dendrite_uuid", self.uuid.clone()),
            ("bt_header_dendrite_hotkey", me.to_string()),
            ("bt_header_dendrite_signature", signature),
            ("header_size", "0".into()),
            ("total_size", "0".into()),
            ("computed_body_hash", EMPTY_BODY_HASH.into()),
        ];
        PreparedRequest {
            method: reqwest::Method::GET,
            url: target.url_for(PROBE_SYNAPSE),
            headers,
            body: String::new(),
            nonce,
            signed_message: message,
        }
    }

    /// Send a prepared request and classify the answer. Never takes longer than `timeout`.
    pub async fn send(&self, req: PreparedRequest, timeout: Duration) -> Sent {
        tokio::time::timeout(timeout, self.send_inner(req)).await.unwrap_or_else(|_| timed_out(timeout))
    }

    /// Take this endpoint's turn, then prepare (drawing the nonce) and send; all within `timeout`.
    ///
    /// Why one request at a time per `ip:port`: the axon keeps one "last nonce" per dendrite
    /// hotkey and uuid, and refuses any request whose nonce is not above it (401 "Nonce is too
    /// old, a newer one was last processed"). Two concurrent requests to one axon (two uids
    /// sharing an endpoint, a probe beside a check) can arrive in the other order, and the one
    /// with the older nonce is refused for no fault of the validator. Waiting counts against
    /// `timeout`, so many uids behind one silent endpoint still end within one timeout.
    async fn exchange(&self, target: &Target, timeout: Duration, prepare: impl FnOnce() -> PreparedRequest) -> Sent {
        let turn = self.turn(target);
        let work = async {
            let _held = turn.lock().await;
            self.send_inner(prepare()).await
        };
        tokio::time::timeout(timeout, work).await.unwrap_or_else(|_| timed_out(timeout))
    }

    fn turn(&self, target: &Target) -> Turn {
        let mut turns = self.turns.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if turns.len() >= TURNS_KEPT {
            turns.retain(|_, t| Arc::strong_count(t) > 1);
        }
        Arc::clone(turns.entry((target.ip, target.port)).or_default())
    }

    async fn send_inner(&self, req: PreparedRequest) -> Sent {
        let no_answer =
            |kind, detail| Sent { status: 0, outcome: CallOutcome::NoResponse { kind, detail }, axon_uuid: None };
        let mut headers = HeaderMap::with_capacity(req.headers.len() + 1);
        for (k, v) in &req.headers {
            // Every value we build is ASCII (numbers, SS58, hex, uuid, IP), so this cannot fail.
            if let Ok(v) = HeaderValue::from_str(v) {
                headers.insert(HeaderName::from_static(k), v);
            }
        }
        let req_url = req.url.clone();
        let builder = if req.method == reqwest::Method::POST {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            self.http.post(&req.url).body(req.body)
        } else {
            self.http.request(req.method.clone(), &req.url)
        };
        let resp = match builder.headers(headers).send().await {
            Ok(r) => r,
            Err(e) => return no_answer(transport_kind(&e), root_cause(&e)),
        };
        let status = resp.status();
        let latin1 = |v: &HeaderValue| v.as_bytes().iter().map(|&b| b as char).collect::<String>();
        let header_message = resp.headers().get("bt_header_axon_status_message").map(latin1);
        // A uuid is a short token; anything else there is not an axon's uuid.
        let axon_uuid = resp
            .headers()
            .get("bt_header_axon_uuid")
            .map(latin1)
            .filter(|u| !u.is_empty() && u.len() <= 64 && u.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        let resp_location = resp.headers().get(reqwest::header::LOCATION).map(latin1);
        let sent = |status: u16, outcome| Sent { status, outcome, axon_uuid: axon_uuid.clone() };
        let body = match read_capped(resp, self.opts.max_response_bytes).await {
            Ok(b) => b,
            Err(BodyReadError::TooLarge) if status.as_u16() == 200 => {
                return sent(
                    200,
                    CallOutcome::NoResponse {
                        kind: NoResponseKind::TooLarge,
                        detail: format!("response body exceeds {} bytes", self.opts.max_response_bytes),
                    },
                );
            }
            Err(BodyReadError::TooLarge) => Vec::new(),
            Err(BodyReadError::Transport(e)) => {
                return sent(
                    status.as_u16(),
                    CallOutcome::NoResponse { kind: NoResponseKind::Disconnected, detail: root_cause(&e) },
                );
            }
        };
        let code = status.as_u16();
        if status.is_redirection() {
            let message = redirect_refused(code, resp_location.as_deref(), &req_url);
            return sent(code, CallOutcome::Rejected { status: code, message });
        }
        if code == 200 {
            return match serde_json::from_slice::<Value>(&body) {
                Ok(v) if v.is_object() => sent(200, CallOutcome::Answered(v)),
                _ => sent(
                    200,
                    CallOutcome::NoResponse {
                        kind: NoResponseKind::Malformed,
                        detail: format!("HTTP 200 but the body ({} bytes) is not a JSON object", body.len()),
                    },
                ),
            };
        }
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
            .or(header_message)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string());
        sent(code, CallOutcome::Rejected { status: code, message: foreign_text(&message) })
    }

    /// `PatCheckSynapse` to one validator.
    pub async fn check(&self, target: &Target, timeout: Duration) -> Reply<CheckFields> {
        let started = Instant::now();
        let sent = self.exchange(target, timeout, || self.prepare(SynapseKind::Check, target, timeout, None)).await;
        Reply {
            outcome: typed(sent.outcome, |v| {
                synapse::parse_check(v).map(|f| CheckFields { rejection_reason: clean(f.rejection_reason), ..f })
            }),
            latency: started.elapsed(),
            axon_uuid: sent.axon_uuid,
        }
    }

    /// `PatBroadcastSynapse` carrying `pat` to one validator.
    pub async fn broadcast(&self, target: &Target, timeout: Duration, pat: &Pat) -> Reply<BroadcastFields> {
        let started = Instant::now();
        let sent =
            self.exchange(target, timeout, || self.prepare(SynapseKind::Broadcast, target, timeout, Some(pat))).await;
        Reply {
            outcome: typed(sent.outcome, |v| {
                synapse::parse_broadcast(v)
                    .map(|f| BroadcastFields { rejection_reason: clean(f.rejection_reason), ..f })
            }),
            latency: started.elapsed(),
            axon_uuid: sent.axon_uuid,
        }
    }

    /// The liveness probe ([`Dendrite::prepare_probe`]) to one validator: any HTTP status is an
    /// answer (`Answered` with the status), with the axon's uuid when it sent one.
    pub async fn probe(&self, target: &Target, timeout: Duration) -> Reply<ProbeFields> {
        let started = Instant::now();
        let sent = self.exchange(target, timeout, || self.prepare_probe(target, timeout)).await;
        let outcome = match sent.outcome {
            CallOutcome::NoResponse { kind, detail } => CallOutcome::NoResponse { kind, detail },
            // A malformed or oversized body still came from a live server.
            _ => CallOutcome::Answered(ProbeFields { status: sent.status }),
        };
        Reply { outcome, latency: started.elapsed(), axon_uuid: sent.axon_uuid }
    }
}

fn timed_out(timeout: Duration) -> Sent {
    Sent {
        status: 0,
        outcome: CallOutcome::NoResponse {
            kind: NoResponseKind::Timeout,
            detail: format!("no answer within {}", humantime::format_duration(timeout)),
        },
        axon_uuid: None,
    }
}

/// The endpoint the liveness probe calls: the SDK's built-in ping (`Axon.__init__` attaches a
/// `ping(Synapse)` forward to every axon).
pub const PROBE_SYNAPSE: &str = "Synapse";

fn typed<F>(out: CallOutcome<Value>, parse: impl Fn(&Value) -> Result<F, synapse::FieldError>) -> CallOutcome<F> {
    match out {
        CallOutcome::Answered(v) => match parse(&v) {
            Ok(f) => CallOutcome::Answered(f),
            Err(e) => CallOutcome::NoResponse { kind: NoResponseKind::Malformed, detail: format!("HTTP 200 but {e}") },
        },
        CallOutcome::Rejected { status, message } => CallOutcome::Rejected { status, message },
        CallOutcome::NoResponse { kind, detail } => CallOutcome::NoResponse { kind, detail },
    }
}

enum BodyReadError {
    TooLarge,
    Transport(reqwest::Error),
}

async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, BodyReadError> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(BodyReadError::TooLarge);
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyReadError::Transport)? {
        if buf.len() + chunk.len() > cap {
            return Err(BodyReadError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

fn transport_kind(e: &reqwest::Error) -> NoResponseKind {
    if e.is_timeout() {
        NoResponseKind::Timeout
    } else if e.is_connect() {
        NoResponseKind::Connect
    } else {
        NoResponseKind::Disconnected
    }
}

/// The innermost cause ("Connection refused (os error 111)"): reqwest's outer layers only repeat
/// the URL and "error sending request".
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A validator's `rejection_reason` as patrol keeps it ([`foreign_text`]).
fn clean(reason: Option<String>) -> Option<String> {
    reason.map(|r| foreign_text(&r))
}

/// The rejection text of a 3xx: where it pointed (resolved against the request's URL, without
/// userinfo, query or fragment — a `Location` may carry a credential — and as [`foreign_text`]).
fn redirect_refused(code: u16, location: Option<&str>, request_url: &str) -> String {
    let target = location.and_then(|l| reqwest::Url::parse(request_url).ok()?.join(l.trim()).ok()).map(|mut u| {
        let _ = u.set_username("");
        let _ = u.set_password(None);
        u.set_query(None);
        u.set_fragment(None);
        u.to_string()
    });
    match target {
        Some(t) => foreign_text(&format!("redirect ({code}) to {t} refused")),
        None => format!("redirect ({code}) without a usable Location refused"),
    }
}

#[cfg(test)]
mod tests;
