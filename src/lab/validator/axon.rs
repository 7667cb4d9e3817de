//! An axon that speaks the bittensor 10.x wire protocol as the Python `bt.Axon` does (wire doc
//! §5–§6), serving the embedded validator's handlers on an already-bound `TcpListener`.
//!
//! Pipeline, in Python's order: route by the first path segment (404 with Python's message) →
//! headers (500 `Internal Server Error #<uuid>` when they don't parse) → **blacklist** (403, runs
//! before the signature check) → **verify** (401 `Not Verified with error: …`: nonce window,
//! per-`hotkey:uuid` monotonic nonces, signature over the axon's own hotkey) → **priority** (stake
//! ordered slots; 408 when the wait exceeds the request's timeout) → method (anything but GET and
//! POST: Starlette's 405, as FastAPI's router answers behind the middleware) → body (size limit
//! 413, arrival deadline 408; content type, JSON, class validation and body hash 500) → handler
//! (500 if it fails) → the full synapse as compact JSON with `axon.status_code` 200 / "Success" and
//! the `bt_header_*` response headers. Header integers and floats are read as Python's `int()` and
//! `float()` read them, hotkeys as bittensor's `Keypair` does (see [`verify`]).
//!
//! Hardenings (documented deviations from the Python axon, see [`super`]): unsigned requests get
//! 401, and the body's `dendrite.hotkey` must equal the signed header hotkey (401), because the
//! handlers act on the authenticated caller only. [`AxonConfig`] can switch both off to reproduce
//! upstream in tests; `patrol validator serve` never does.
//!
//! Must not: log request bodies (a broadcast carries a PAT), echo the token, or block the executor.
//!
//! Serving ([`server`]): the accept loop shared with the agent's endpoint ([`crate::serve`]), with
//! a header-read timeout, an idle timeout, a connection cap and a bounded graceful shutdown.

mod body;
/// In-process entry points for `fuzz/fuzz_targets/axon_request.rs` (feature `fuzzing` only).
#[cfg(feature = "fuzzing")]
pub mod fuzz_entry;
mod gate;
mod headers;
mod server;
pub mod verify;

pub use crate::serve::{effective_max_connections, listen};

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use tokio::net::TcpListener;

pub use self::body::{Answer, BodySynapse, Route};
pub use self::gate::{GateTimeout, Permit, PriorityGate};
use self::headers::Echo;
use super::handlers::PatValidator;
use crate::wallet::Hotkey;
use crate::wire::{EMPTY_BODY_HASH, py_float};
use verify::{NonceTracker, RequestHeaders, verify_request};

/// Default request-body limit: a real broadcast is about 1 KB.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// Default number of requests past the priority stage at once.
pub const DEFAULT_MAX_HANDLERS: usize = 256;

/// Default header-read timeout: a dendrite sends its ~1.5 KB of headers in one write.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Default idle timeout: uvicorn's keep-alive timeout, which the Python axon runs with.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Default connection cap (further limited to half the open-file limit, see [`AxonConfig::max_connections`]).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Default time in-flight requests get to finish after a shutdown was asked for.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Knobs of an [`Axon`].
#[derive(Debug, Clone)]
pub struct AxonConfig {
    /// Larger request bodies get 413.
    pub body_limit: usize,
    /// Added to the wall clock for the nonce window, to test clock skew (`"-60s"` = 60 s behind).
    pub clock_offset_ns: i64,
    /// Requests past the priority stage at once; the rest wait, highest stake first.
    pub max_handlers: usize,
    /// Hardening 1: refuse unsigned requests (Python accepts them).
    pub require_signature: bool,
    /// Hardening 2: the body's `dendrite.hotkey` must be the signed header hotkey.
    pub require_body_hotkey_match: bool,
    /// From the moment a connection can take a request (just accepted, or its last response
    /// sent) until the request's head is complete; then the body gets as long again. Past it the
    /// connection is closed (a late body: 408). Bounds slowloris, silent and idle keep-alive
    /// connections alike.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and no byte moving either way for this long is
    /// closed (a client that stopped reading its answer, an idle keep-alive connection).
    pub idle_timeout: Duration,
    /// Connections open at once; the effective cap is also at most half the process's open-file
    /// limit, so sockets can never starve the store, the GitHub client or the listener. At the
    /// cap, a new connection displaces the oldest one without a complete request head, whatever
    /// its age (a slowloris or silent one), else the one idle longest between requests; when every
    /// connection has a request in flight it gets an immediate 503 and is closed.
    pub max_connections: usize,
    /// After shutdown is asked for: connections without a request in flight close at once,
    /// requests in flight get this long to finish, then every connection is dropped.
    pub shutdown_grace: Duration,
}

impl Default for AxonConfig {
    fn default() -> Self {
        AxonConfig {
            body_limit: DEFAULT_BODY_LIMIT,
            clock_offset_ns: 0,
            max_handlers: DEFAULT_MAX_HANDLERS,
            require_signature: true,
            require_body_hotkey_match: true,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// A running validator's axon: its hotkey, nonce memory, priority slots and handlers. Cheap to clone.
#[derive(Clone)]
pub struct Axon {
    inner: Arc<Inner>,
}

struct Inner {
    validator: Arc<PatValidator>,
    hotkey: Arc<Hotkey>,
    /// The axon's own uuid (stamped into error responses, as Python's).
    uuid: String,
    nonces: NonceTracker,
    gate: Arc<PriorityGate>,
    cfg: AxonConfig,
}

impl std::fmt::Debug for Axon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Axon").field("hotkey", &self.hotkey()).field("cfg", &self.inner.cfg).finish()
    }
}

/// An early answer: the status and the `message` of the error body.
struct Reject {
    status: StatusCode,
    message: String,
}

impl Reject {
    fn new(status: StatusCode, message: impl Into<String>) -> Reject {
        Reject { status, message: message.into() }
    }

    /// Python's opaque 500; the real cause goes to our log under the same id.
    fn internal(cause: &dyn std::fmt::Display) -> Reject {
        let id = uuid::Uuid::new_v4();
        tracing::info!(error_id = %id, %cause, "request answered 500");
        Reject::new(StatusCode::INTERNAL_SERVER_ERROR, format!("Internal Server Error #{id}"))
    }
}

impl Axon {
    /// An axon for `validator`, signing as `hotkey`.
    pub fn new(validator: Arc<PatValidator>, hotkey: Arc<Hotkey>, cfg: AxonConfig) -> Axon {
        let gate = PriorityGate::new(cfg.max_handlers);
        let inner = Inner {
            validator,
            hotkey,
            uuid: uuid::Uuid::new_v4().to_string(),
            nonces: NonceTracker::default(),
            gate,
            cfg,
        };
        Axon { inner: Arc::new(inner) }
    }

    /// The axon's hotkey (SS58): what dendrites must sign for.
    pub fn hotkey(&self) -> &str {
        self.inner.hotkey.ss58()
    }

    /// The validator behind it.
    pub fn validator(&self) -> &Arc<PatValidator> {
        &self.inner.validator
    }

    /// Serve on `listener` until `shutdown` resolves; then requests in flight get
    /// [`AxonConfig::shutdown_grace`] to finish and every connection is closed (see [`server`]).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        server::serve(self, listener, shutdown).await
    }

    /// This axon's uuid (`bt_header_axon_uuid` of its error responses): new for every `Axon`, so a
    /// restarted validator answers with a different one.
    pub fn uuid(&self) -> &str {
        &self.inner.uuid
    }

    fn now_ns(&self) -> u64 {
        let now = i128::from(crate::wire::now_ns()) + i128::from(self.inner.cfg.clock_offset_ns);
        u64::try_from(now.max(0)).unwrap_or(u64::MAX)
    }
}

/// One request, from the connection of `peer`.
async fn handle(axon: Axon, peer: Option<SocketAddr>, req: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let first = parts.uri.path().split('/').nth(1).unwrap_or_default().to_string();
    let route = Route::from_name(&first).filter(|_| parts.uri.path() == format!("/{first}"));
    let Some(route) = route else {
        let message = format!("Synapse name '{first}' not found. Available synapses {}", Route::AVAILABLE);
        return headers::error(&axon, Reject::new(StatusCode::NOT_FOUND, message), &Echo::bare(started));
    };
    let h = match parse_headers(route, &parts.headers) {
        Ok(h) => h,
        Err(reject) => return headers::error(&axon, reject, &Echo::bare(started)),
    };
    let echo = Echo { route: Some(route), request: Some(&parts.headers), parsed: Some(&h), peer, started };
    match pipeline(&axon, route, &h, &parts, body, &echo).await {
        Ok(response) => response,
        Err(reject) => {
            tracing::debug!(synapse = route.name(), status = reject.status.as_u16(), message = %reject.message, "request rejected");
            headers::error(&axon, reject, &echo)
        }
    }
}

/// Headers → [`RequestHeaders`]; what Python's `from_headers` refuses is a 500.
fn parse_headers(route: Route, map: &HeaderMap) -> Result<RequestHeaders, Reject> {
    let h =
        RequestHeaders::parse(map.iter().map(|(k, v)| (k.as_str(), v.as_bytes()))).map_err(|e| Reject::internal(&e))?;
    headers::check_terminal_ints(map).map_err(|e| Reject::internal(&e))?;
    if route == Route::Broadcast && !h.input_obj_fields.iter().any(|f| f == "github_access_token") {
        return Err(Reject::internal(&"required field github_access_token has no bt_header_input_obj header"));
    }
    Ok(h)
}

async fn pipeline(
    axon: &Axon,
    route: Route,
    h: &RequestHeaders,
    parts: &axum::http::request::Parts,
    body: axum::body::Body,
    echo: &Echo<'_>,
) -> Result<Response, Reject> {
    let s = &axon.inner;
    let request_headers = &parts.headers;
    let hotkey = h.hotkey.as_deref();
    // blacklist: before the signature (a blacklisted hotkey with a bad signature gets 403); an
    // empty hotkey is a hotkey too, and not registered
    if let (Some(hk), true) = (hotkey, route != Route::Ping)
        && let Err(reason) = s.validator.blacklist(hk)
    {
        return Err(Reject::new(StatusCode::FORBIDDEN, format!("Forbidden. Key is blacklisted: {reason}.")));
    }
    // verify
    verify_request(h, axon.hotkey(), &s.nonces, axon.now_ns(), s.cfg.require_signature)
        .map_err(|e| Reject::new(StatusCode::UNAUTHORIZED, format!("Not Verified with error: {e}")))?;
    let hotkey = hotkey.unwrap_or_default();
    // priority (the permit is held until the answer is built)
    let timeout = h.timeout_or_default();
    let permit = match route {
        Route::Ping => None,
        _ => {
            let wait = Duration::try_from_secs_f64(timeout.clamp(0.0, 86_400.0)).unwrap_or(Duration::ZERO);
            let permit = s.gate.acquire(s.validator.priority(hotkey), wait).await.map_err(|GateTimeout| {
                Reject::new(StatusCode::REQUEST_TIMEOUT, format!("Response timeout after: {}s", py_float(timeout)))
            })?;
            Some(permit)
        }
    };
    // routing: FastAPI serves the synapses on GET and POST only; anything else reaches the router
    // after the middleware (blacklist, verify, priority) and gets Starlette's 405
    if parts.method != Method::GET && parts.method != Method::POST {
        return Ok(headers::method_not_allowed());
    }
    // body
    let content_type =
        request_headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    if content_type.as_deref().is_some_and(|ct| ct != "application/json" && !ct.starts_with("application/json;")) {
        return Err(Reject::internal(&"content type is not application/json"));
    }
    let bytes = match tokio::time::timeout(s.cfg.header_read_timeout, read_capped(body, s.cfg.body_limit)).await {
        Ok(read) => read?,
        Err(_) => {
            let secs = py_float(s.cfg.header_read_timeout.as_secs_f64());
            return Err(Reject::new(StatusCode::REQUEST_TIMEOUT, format!("Request body not received within {secs}s")));
        }
    };
    let synapse = BodySynapse::parse(route, &bytes).map_err(|e| Reject::internal(&e))?;
    if h.computed_body_hash.as_deref() != Some(EMPTY_BODY_HASH) {
        return Err(Reject::internal(&"computed_body_hash does not match the body"));
    }
    if s.cfg.require_body_hotkey_match && synapse.dendrite.hotkey.as_deref() != Some(hotkey) {
        return Err(Reject::new(
            StatusCode::UNAUTHORIZED,
            "Not Verified with error: the body's dendrite.hotkey does not match the signed bt_header_dendrite_hotkey",
        ));
    }
    // Without the hardening, upstream's handlers act on the (unsigned) body hotkey.
    let caller =
        if s.cfg.require_body_hotkey_match { hotkey } else { synapse.dendrite.hotkey.as_deref().unwrap_or_default() }
            .to_string();
    // The handler runs as its own task, holding the slot: like Python's, it finishes even when the
    // client hangs up (a broadcast whose caller timed out may still store the PAT).
    let (validator, token) = (Arc::clone(&s.validator), synapse.token.clone().unwrap_or_default());
    let handler = tokio::spawn(async move {
        let _permit = permit;
        match route {
            Route::Ping => Ok(Answer::Ping),
            Route::Check => validator.check(&caller).await.map(|f| Answer::Check {
                has_pat: f.has_pat,
                pat_valid: f.pat_valid,
                rejection_reason: f.rejection_reason,
            }),
            Route::Broadcast => {
                let f = validator.broadcast(&caller, token).await;
                Ok(Answer::Broadcast { accepted: f.accepted, rejection_reason: f.rejection_reason })
            }
        }
    });
    let answer = match handler.await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => return Err(Reject::internal(&e)),
        Err(e) => return Err(Reject::internal(&format!("handler task failed: {e}"))),
    };
    Ok(headers::success(route, &synapse, &answer, echo.started))
}

/// The request body, or 413 as soon as it exceeds `limit` (checked on `Content-Length` and while
/// reading, so a chunked body cannot get past it either).
async fn read_capped(mut body: axum::body::Body, limit: usize) -> Result<Vec<u8>, Reject> {
    use axum::body::HttpBody;
    let too_large = || Reject::new(StatusCode::PAYLOAD_TOO_LARGE, format!("Request body larger than {limit} bytes"));
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large());
    }
    let mut buf = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await {
        let frame =
            frame.map_err(|e| Reject::new(StatusCode::BAD_REQUEST, format!("Could not read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(too_large());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf)
}

#[cfg(test)]
mod tests;
