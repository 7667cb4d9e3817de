//! Response building: the `bt_header_*` sets the Python axon sends (wire doc §6.1 success, §6.2
//! errors) and the JSON bodies. Every header value that comes from a request is copied only when it
//! is a valid header value of the type the Python dendrite parses it as (a badly typed header there
//! would turn our 401 into the dendrite's 422).

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::json;

use super::body::{Answer, BodySynapse, Route};
use super::verify::{PyInt, RequestHeaders, py_float_parse};
use super::{Axon, Reject};
use crate::wire::synapse::TerminalInfo;
use crate::wire::{EMPTY_BODY_HASH, EMPTY_STRING_INPUT_OBJ, VERSION_AS_INT, py_float};

/// What an error response echoes of the request.
pub(super) struct Echo<'a> {
    /// `None`: the request never became a synapse (404, header parse failure): Python answers with
    /// a bare `Synapse()`.
    pub route: Option<Route>,
    pub request: Option<&'a HeaderMap>,
    pub parsed: Option<&'a RequestHeaders>,
    pub peer: Option<SocketAddr>,
    pub started: Instant,
}

impl Echo<'_> {
    pub fn bare(started: Instant) -> Echo<'static> {
        Echo { route: None, request: None, parsed: None, peer: None, started }
    }
}

/// Header names of the terminal-info fields that Python parses as integers / floats.
const INT_HEADERS: [&str; 8] = [
    "bt_header_axon_status_code",
    "bt_header_axon_port",
    "bt_header_axon_version",
    "bt_header_axon_nonce",
    "bt_header_dendrite_status_code",
    "bt_header_dendrite_port",
    "bt_header_dendrite_version",
    "bt_header_dendrite_nonce",
];
const FLOAT_HEADERS: [&str; 2] = ["bt_header_axon_process_time", "bt_header_dendrite_process_time"];

/// A typed `bt_header_*` that does not parse: Python's `from_headers` fails, which is a 500.
/// Python parses them with `int()` / `float()` (any size, sign, underscores between digits).
pub(super) fn check_terminal_ints(map: &HeaderMap) -> Result<(), String> {
    for name in INT_HEADERS {
        if let Some(v) = map.get(name)
            && v.to_str().ok().and_then(PyInt::parse).is_none()
        {
            return Err(format!("header {name} is not an integer"));
        }
    }
    for name in FLOAT_HEADERS {
        if let Some(v) = map.get(name)
            && v.to_str().ok().and_then(py_float_parse).is_none()
        {
            return Err(format!("header {name} is not a number"));
        }
    }
    Ok(())
}

struct Headers(Vec<(&'static str, String)>);

impl Headers {
    fn push(&mut self, name: &'static str, value: impl Into<String>) {
        self.0.push((name, value.into()));
    }

    fn push_opt<T: ToString>(&mut self, name: &'static str, value: Option<T>) {
        if let Some(v) = value {
            self.push(name, v.to_string());
        }
    }

    /// Copy a request header verbatim, if present.
    fn copy(&mut self, name: &'static str, from: Option<&HeaderMap>) {
        if let Some(v) = from.and_then(|m| m.get(name)).and_then(|v| v.to_str().ok()) {
            self.push(name, v);
        }
    }

    fn apply(self, map: &mut HeaderMap) {
        for (name, value) in self.0 {
            // Names are our static lowercase tokens; a value that is not a legal header value
            // (say a control character in an echoed field) is dropped, never sent.
            if let Ok(v) = HeaderValue::from_str(&sanitize(&value)) {
                map.append(HeaderName::from_static(name), v);
            }
        }
    }
}

/// Control characters are not allowed in header values; messages may quote caller input.
fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

fn terminal_headers(h: &mut Headers, prefix: &str, t: &TerminalInfo) {
    let names: [&'static str; 10] = if prefix == "axon" {
        [
            "bt_header_axon_status_code",
            "bt_header_axon_status_message",
            "bt_header_axon_process_time",
            "bt_header_axon_ip",
            "bt_header_axon_port",
            "bt_header_axon_version",
            "bt_header_axon_nonce",
            "bt_header_axon_uuid",
            "bt_header_axon_hotkey",
            "bt_header_axon_signature",
        ]
    } else {
        [
            "bt_header_dendrite_status_code",
            "bt_header_dendrite_status_message",
            "bt_header_dendrite_process_time",
            "bt_header_dendrite_ip",
            "bt_header_dendrite_port",
            "bt_header_dendrite_version",
            "bt_header_dendrite_nonce",
            "bt_header_dendrite_uuid",
            "bt_header_dendrite_hotkey",
            "bt_header_dendrite_signature",
        ]
    };
    h.push_opt(names[0], t.status_code);
    h.push_opt(names[1], t.status_message.as_deref());
    h.push_opt(names[2], t.process_time.map(py_float));
    h.push_opt(names[3], t.ip.as_deref());
    h.push_opt(names[4], t.port);
    h.push_opt(names[5], t.version);
    h.push_opt(names[6], t.nonce);
    h.push_opt(names[7], t.uuid.as_deref());
    h.push_opt(names[8], t.hotkey.as_deref());
    h.push_opt(names[9], t.signature.as_deref());
}

fn json_response(status: StatusCode, body: &serde_json::Value, h: Headers) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let length = HeaderValue::from(bytes.len());
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    let map = resp.headers_mut();
    h.apply(map);
    // explicit, so a HEAD answer carries it too (as uvicorn's does), without the body
    map.insert(header::CONTENT_LENGTH, length);
    map.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Starlette's answer to a method the route does not serve (FastAPI's `http_exception_handler`):
/// `{"detail":"Method Not Allowed"}` with `allow: GET, POST` (Python joins a set, so its order
/// varies by process) and no `bt_header_*` at all, because it comes from the router behind the
/// middleware.
pub(super) fn method_not_allowed() -> Response {
    let mut h = Headers(Vec::new());
    h.push("allow", "GET, POST");
    json_response(StatusCode::METHOD_NOT_ALLOWED, &json!({"detail": "Method Not Allowed"}), h)
}

/// `create_error_response`: `{"message": …}` plus the header-derived synapse's headers, including
/// the axon's own version, nonce, uuid and signature and the TCP peer as the dendrite address.
pub(super) fn error(axon: &Axon, reject: Reject, echo: &Echo<'_>) -> Response {
    let status_code = reject.status.as_u16();
    let mut h = Headers(Vec::new());
    let process_time = py_float(echo.started.elapsed().as_secs_f64());
    let (Some(route), Some(req), Some(parsed)) = (echo.route, echo.request, echo.parsed) else {
        h.push("name", "Synapse");
        h.push("timeout", "12.0");
        h.push("bt_header_axon_status_code", status_code.to_string());
        h.push("bt_header_axon_status_message", reject.message.clone());
        h.push("bt_header_axon_process_time", process_time);
        h.push("header_size", "0");
        h.push("total_size", "0");
        h.push("computed_body_hash", EMPTY_BODY_HASH);
        return json_response(reject.status, &json!({"message": reject.message}), h);
    };
    let s = &axon.inner;
    let nonce = crate::wire::now_ns();
    let dendrite_hotkey = parsed.hotkey.as_deref().unwrap_or("None");
    let axon_hotkey = req.get("bt_header_axon_hotkey").and_then(|v| v.to_str().ok()).unwrap_or("None");
    let signature = s.hotkey.sign_hex(format!("{nonce}.{dendrite_hotkey}.{axon_hotkey}.{}", s.uuid).as_bytes());
    h.push("name", route.name());
    // `str(synapse.timeout)`: `None` when the request had no timeout header
    h.push("timeout", parsed.timeout.map_or_else(|| "None".to_string(), py_float));
    h.push("bt_header_axon_status_code", status_code.to_string());
    h.push("bt_header_axon_status_message", reject.message.clone());
    h.push("bt_header_axon_process_time", process_time);
    h.copy("bt_header_axon_ip", Some(req));
    h.copy("bt_header_axon_port", Some(req));
    h.push("bt_header_axon_version", VERSION_AS_INT.to_string());
    h.push("bt_header_axon_nonce", nonce.to_string());
    h.push("bt_header_axon_uuid", s.uuid.clone());
    h.copy("bt_header_axon_hotkey", Some(req));
    h.push("bt_header_axon_signature", signature);
    h.push_opt("bt_header_dendrite_ip", echo.peer.map(|p| p.ip()));
    h.push_opt("bt_header_dendrite_port", echo.peer.map(|p| p.port()));
    // `str(int)` of what Python parsed: " +007" comes back as "7"
    h.push_opt("bt_header_dendrite_version", parsed.version.as_ref());
    h.push_opt("bt_header_dendrite_nonce", parsed.nonce.as_ref());
    for name in ["bt_header_dendrite_uuid", "bt_header_dendrite_hotkey", "bt_header_dendrite_signature"] {
        h.copy(name, Some(req));
    }
    if route == Route::Broadcast {
        h.push("bt_header_input_obj_github_access_token", EMPTY_STRING_INPUT_OBJ);
    }
    h.copy("header_size", Some(req));
    h.copy("total_size", Some(req));
    h.push("computed_body_hash", EMPTY_BODY_HASH);
    json_response(reject.status, &json!({"message": reject.message}), h)
}

/// `synapse_to_response`: the body-derived synapse with the handler's answer, as compact JSON, and
/// its `to_headers()`.
pub(super) fn success(route: Route, synapse: &BodySynapse, answer: &Answer, started: Instant) -> Response {
    let axon = TerminalInfo {
        status_code: Some(200),
        status_message: Some("Success".into()),
        process_time: Some(started.elapsed().as_secs_f64()),
        ..synapse.axon.clone()
    };
    let body = super::body::success_json(route, synapse, &axon, answer);
    let mut h = Headers(Vec::new());
    h.push("name", route.name());
    h.push_opt("timeout", synapse.timeout.map(py_float));
    terminal_headers(&mut h, "axon", &axon);
    terminal_headers(&mut h, "dendrite", &synapse.dendrite);
    if route == Route::Broadcast {
        h.push("bt_header_input_obj_github_access_token", EMPTY_STRING_INPUT_OBJ);
    }
    h.push_opt("header_size", synapse.header_size);
    h.push_opt("total_size", synapse.total_size);
    h.push("computed_body_hash", EMPTY_BODY_HASH);
    json_response(StatusCode::OK, &body, h)
}
