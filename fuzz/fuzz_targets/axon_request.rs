//! The embedded validator's axon on arbitrary requests (headers + body), through the real request
//! handler in-process (`validator::axon::fuzz_entry`: routing, `RequestHeaders::parse` and the typed
//! header checks, blacklist, signature/nonce verification, priority, body limit, `BodySynapse`
//! parsing, handlers on a real store, response building), once with patrol's hardenings on and
//! once with them off (upstream behaviour), plus the pure parsers directly.
//!
//! Input: one or more requests separated by a line `=====`, each written like HTTP:
//!
//! ```text
//! POST /PatCheckSynapse
//! name: value
//! ...
//!
//! {"body": ...}
//! ```
//!
//! Invariants: nothing panics; every answer is one of the axon's statuses with a JSON object body
//! (`{"message"}` for errors, the synapse with the token cleared for 200); a PAT sent in a
//! broadcast body never appears in any answer (headers or body), even to later requests; the store
//! file is always a JSON list; a body that parses survives `success_json` and parses back the same.
#![no_main]

mod common;

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use patrol::lab::validator::{AxonConfig, RawPat};
use patrol::lab::validator::axon::fuzz_entry::{Reply, Session, VECTORS_TIME_NS, success_json};
use patrol::lab::validator::axon::{Answer, BodySynapse, Route};
use patrol::wire::synapse::TerminalInfo;
use patrol::lab::validator::axon::verify::RequestHeaders;
use serde_json::Value;

struct Req<'a> {
    method: &'a [u8],
    target: &'a [u8],
    headers: Vec<(&'a [u8], &'a [u8])>,
    body: &'a [u8],
}

fn split<'a>(data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(i) = find(rest, sep) {
        out.push(&rest[..i]);
        rest = &rest[i + sep.len()..];
    }
    out.push(rest);
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\r', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r'] = s {
        s = rest;
    }
    s
}

fn parse_request(chunk: &[u8]) -> Req<'_> {
    let (head, body) = match find(chunk, b"\n\n") {
        Some(i) => (&chunk[..i], &chunk[i + 2..]),
        None => (chunk, &b""[..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let start = trim(lines.next().unwrap_or_default());
    let (method, target) = match start.iter().position(|&b| b == b' ') {
        Some(i) => (&start[..i], trim(&start[i + 1..])),
        None => (&b"POST"[..], start),
    };
    // "POST /x HTTP/1.1": drop the version
    let target = match target.iter().position(|&b| b == b' ') {
        Some(i) => &target[..i],
        None => target,
    };
    let headers = lines
        .filter_map(|l| {
            let i = l.iter().position(|&b| b == b':')?;
            Some((trim(&l[..i]), trim(&l[i + 1..])))
        })
        .collect();
    Req { method, target, headers, body }
}

/// Keys and strings of a JSON value, except the top-level `github_access_token` value.
fn public_strings(v: &Value, top: bool, out: &mut Vec<Vec<u8>>) {
    match v {
        Value::String(s) => out.push(s.as_bytes().to_vec()),
        Value::Array(a) => a.iter().for_each(|x| public_strings(x, false, out)),
        Value::Object(m) => {
            for (k, x) in m {
                out.push(k.as_bytes().to_vec());
                if !(top && k == "github_access_token") {
                    public_strings(x, false, out);
                }
            }
        }
        _ => {}
    }
}

/// PATs the requests carry that appear nowhere else in the input: none of them may ever be echoed.
fn secrets(reqs: &[Req<'_>]) -> Vec<Vec<u8>> {
    let mut public: Vec<Vec<u8>> = Vec::new();
    let mut tokens = Vec::new();
    for r in reqs {
        public.push(r.method.to_vec());
        public.push(r.target.to_vec());
        for (k, v) in &r.headers {
            public.push(k.to_vec());
            public.push(v.to_vec());
        }
        match serde_json::from_slice::<Value>(r.body) {
            Ok(v) => {
                public_strings(&v, true, &mut public);
                if let Some(t) = v.get("github_access_token").and_then(Value::as_str) {
                    tokens.push(t.as_bytes().to_vec());
                }
            }
            Err(_) => public.push(r.body.to_vec()),
        }
    }
    // Only tokens of word characters: the axon's messages join request values with separators
    // (`.`, ` `, `...`) and escape what it echoes (JSON, `?` for control characters), so such a
    // token can only appear in an answer as part of one echoed value, which then holds it.
    tokens
        .into_iter()
        .filter(|t| t.starts_with(b"ghp_") && t.len() >= 12)
        .filter(|t| t.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_'))
        .filter(|t| public.iter().all(|p| find(p, t).is_none()))
        .collect()
}

fn check_reply(req: &Req<'_>, reply: &Reply, secrets: &[Vec<u8>]) {
    assert!(matches!(reply.status, 200 | 401 | 403 | 404 | 405 | 408 | 413 | 500), "unexpected status {}", reply.status);
    for t in secrets {
        assert!(find(&reply.body, t).is_none(), "a PAT was echoed in a response body");
        for (k, v) in &reply.headers {
            assert!(find(v, t).is_none(), "a PAT was echoed in response header {k}");
        }
    }
    let body: Value = serde_json::from_slice(&reply.body).expect("response body is JSON");
    let o = body.as_object().expect("response body is an object");
    if reply.status == 200 {
        let name = o.get("name").and_then(Value::as_str).expect("a 200 body names its synapse");
        assert!(find(req.target, name.as_bytes()).is_some(), "200 for another synapse");
        if name == "PatBroadcastSynapse" {
            assert_eq!(o.get("github_access_token"), Some(&Value::String(String::new())), "token not cleared");
        }
        let route = Route::from_name(name).expect("200 on an unknown route");
        BodySynapse::parse(route, &reply.body).expect("a 200 body is a valid synapse");
    } else if reply.status == 405 {
        // Starlette's answer, from behind the middleware
        assert_eq!(o.get("detail"), Some(&Value::String("Method Not Allowed".into())), "405 body");
    } else {
        assert!(o.get("message").is_some_and(Value::is_string), "error without a message");
    }
}

/// The pure parsers on one request.
fn pure(req: &Req<'_>) {
    let pairs = req.headers.iter().filter_map(|(k, v)| Some((std::str::from_utf8(k).ok()?, *v)));
    let _ = RequestHeaders::parse(pairs);
    for route in [Route::Ping, Route::Check, Route::Broadcast] {
        let Ok(b) = BodySynapse::parse(route, req.body) else { continue };
        let answer = match route {
            Route::Ping => Answer::Ping,
            Route::Check => Answer::Check { has_pat: Some(true), pat_valid: None, rejection_reason: Some("x".into()) },
            Route::Broadcast => Answer::Broadcast { accepted: Some(false), rejection_reason: None },
        };
        let json = success_json(route, &b, &b.axon, &answer);
        let bytes = serde_json::to_vec(&json).unwrap();
        let again = BodySynapse::parse(route, &bytes).expect("success_json output parses");
        let expected = BodySynapse { token: b.token.as_ref().map(|_| RawPat::default()), ..b };
        if *common::FLOATS_ROUND_TRIP {
            assert_eq!(again, expected, "a synapse changed through success_json");
        } else {
            // Floats to within serde_json's parsing imprecision (see common::FLOATS_ROUND_TRIP).
            let f = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(x), Some(y)) => common::f64_eq(x, y),
                (x, y) => x == y,
            };
            let t = |a: &TerminalInfo, b: &TerminalInfo| {
                f(a.process_time, b.process_time)
                    && TerminalInfo { process_time: None, ..a.clone() }
                        == TerminalInfo { process_time: None, ..b.clone() }
            };
            let same = f(again.timeout, expected.timeout)
                && t(&again.dendrite, &expected.dendrite)
                && t(&again.axon, &expected.axon)
                && BodySynapse {
                    timeout: None,
                    dendrite: TerminalInfo::default(),
                    axon: TerminalInfo::default(),
                    ..again.clone()
                } == BodySynapse {
                    timeout: None,
                    dendrite: TerminalInfo::default(),
                    axon: TerminalInfo::default(),
                    ..expected.clone()
                };
            assert!(same, "a synapse changed through success_json:\n{again:?}\n{expected:?}");
        }
    }
}

fn base() -> Option<&'static Path> {
    let shm = Path::new("/dev/shm");
    shm.is_dir().then_some(shm)
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"))
}

fuzz_target!(|data: &[u8]| {
    let reqs: Vec<Req<'_>> = split(data, b"\n=====\n").into_iter().take(4).map(parse_request).collect();
    for r in &reqs {
        pure(r);
    }
    let secrets = secrets(&reqs);
    let hardened = AxonConfig::default();
    // Upstream behaviour, with a body limit small enough for inputs to reach the 413 path.
    let upstream = AxonConfig {
        require_signature: false,
        require_body_hotkey_match: false,
        body_limit: 4096,
        ..AxonConfig::default()
    };
    for cfg in [hardened, upstream] {
        let session = Session::new(base(), cfg, Some(VECTORS_TIME_NS)).expect("session");
        for r in &reqs {
            let Some(reply) = runtime().block_on(session.request(r.method, r.target, &r.headers, r.body)) else {
                continue;
            };
            check_reply(r, &reply, &secrets);
        }
        if let Ok(bytes) = std::fs::read(session.store_path()) {
            let v: Value = serde_json::from_slice(&bytes).expect("the store file is JSON");
            assert!(v.is_array(), "the store file is a list");
        }
    }
});
