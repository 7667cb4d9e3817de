//! The body-derived synapse: what FastAPI builds from the request body for the forward handler, and
//! what the success response is made of (wire doc §2.1, §6.1).
//!
//! Validation is strict where pydantic is lax: a field of the wrong type is a 500 (as pydantic's
//! failures are), and so is a numeric string pydantic would have coerced. Unknown keys are ignored,
//! missing ones take the class defaults.

use serde_json::{Map, Value, json};

use crate::lab::validator::store::RawPat;
use crate::wire::synapse::TerminalInfo;

/// Which class the path named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The base `Synapse` (the default `ping` forward every axon attaches).
    Ping,
    Check,
    Broadcast,
}

impl Route {
    /// The class name (URL path and `name` field).
    pub fn name(self) -> &'static str {
        match self {
            Route::Ping => "Synapse",
            Route::Check => "PatCheckSynapse",
            Route::Broadcast => "PatBroadcastSynapse",
        }
    }

    /// Route by the first path segment, case-sensitively.
    pub fn from_name(name: &str) -> Option<Route> {
        match name {
            "Synapse" => Some(Route::Ping),
            "PatCheckSynapse" => Some(Route::Check),
            "PatBroadcastSynapse" => Some(Route::Broadcast),
            _ => None,
        }
    }

    /// Python's `list(axon.forward_class_types.keys())`.
    pub const AVAILABLE: &'static str = "['Synapse', 'PatCheckSynapse', 'PatBroadcastSynapse']";
}

/// The synapse a request body describes. `Debug` shows the token as `***` + last 4 ([`RawPat`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BodySynapse {
    pub timeout: Option<f64>,
    pub total_size: Option<i64>,
    pub header_size: Option<i64>,
    pub dendrite: TerminalInfo,
    pub axon: TerminalInfo,
    pub computed_body_hash: String,
    /// `github_access_token` of a broadcast (required there).
    pub token: Option<RawPat>,
}

/// Why a body is not the synapse (the Python axon answers 500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid request body: {0}")]
pub struct BodyError(pub String);

fn bad(field: &str, want: &str) -> BodyError {
    BodyError(format!("field {field} is not {want}"))
}

fn opt_int(o: &Map<String, Value>, field: &str) -> Result<Option<i64>, BodyError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Some(i)),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
            _ => Err(bad(field, "an integer")),
        },
        Some(_) => Err(bad(field, "an integer")),
    }
}

fn opt_u64(o: &Map<String, Value>, field: &str) -> Result<Option<u64>, BodyError> {
    match o.get(field) {
        Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
        _ => opt_int(o, field)?.map(|i| u64::try_from(i).map_err(|_| bad(field, "a non-negative integer"))).transpose(),
    }
}

fn opt_u16(o: &Map<String, Value>, field: &str) -> Result<Option<u16>, BodyError> {
    opt_int(o, field)?.map(|i| u16::try_from(i).map_err(|_| bad(field, "an integer in 0..=65535"))).transpose()
}

fn opt_float(o: &Map<String, Value>, field: &str) -> Result<Option<f64>, BodyError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_f64().filter(|f| f.is_finite()).map(Some).ok_or_else(|| bad(field, "a number")),
        Some(_) => Err(bad(field, "a number")),
    }
}

fn opt_str(o: &Map<String, Value>, field: &str) -> Result<Option<String>, BodyError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(field, "a string")),
    }
}

fn opt_bool(o: &Map<String, Value>, field: &str) -> Result<Option<bool>, BodyError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(field, "a boolean")),
    }
}

fn terminal(o: &Map<String, Value>, field: &str) -> Result<TerminalInfo, BodyError> {
    let t = match o.get(field) {
        None | Some(Value::Null) => return Ok(TerminalInfo::default()),
        Some(Value::Object(t)) => t,
        Some(_) => return Err(bad(field, "an object")),
    };
    // Name the nested field in errors ("dendrite.port", not "port").
    fn wrap<T>(r: Result<T, BodyError>, field: &str, k: &str) -> Result<T, BodyError> {
        r.map_err(|e| BodyError(e.0.replacen(k, &format!("{field}.{k}"), 1)))
    }
    Ok(TerminalInfo {
        status_code: wrap(opt_u16(t, "status_code"), field, "status_code")?,
        status_message: wrap(opt_str(t, "status_message"), field, "status_message")?,
        process_time: wrap(opt_float(t, "process_time"), field, "process_time")?,
        ip: wrap(opt_str(t, "ip"), field, "ip")?,
        port: wrap(opt_u16(t, "port"), field, "port")?,
        version: wrap(opt_u64(t, "version"), field, "version")?,
        nonce: wrap(opt_u64(t, "nonce"), field, "nonce")?,
        uuid: wrap(opt_str(t, "uuid"), field, "uuid")?,
        hotkey: wrap(opt_str(t, "hotkey"), field, "hotkey")?,
        signature: wrap(opt_str(t, "signature"), field, "signature")?,
    })
}

impl BodySynapse {
    /// Build the `route` class from a JSON body.
    pub fn parse(route: Route, bytes: &[u8]) -> Result<BodySynapse, BodyError> {
        // serde_json's error names a position, never the content (a broadcast body holds a PAT).
        let v: Value = serde_json::from_slice(bytes).map_err(|e| BodyError(format!("not JSON: {e}")))?;
        let Value::Object(o) = v else { return Err(BodyError("not a JSON object".into())) };
        opt_str(&o, "name")?;
        let body = BodySynapse {
            timeout: match o.get("timeout") {
                None => Some(12.0),
                _ => opt_float(&o, "timeout")?,
            },
            total_size: if o.contains_key("total_size") { opt_int(&o, "total_size")? } else { Some(0) },
            header_size: if o.contains_key("header_size") { opt_int(&o, "header_size")? } else { Some(0) },
            dendrite: terminal(&o, "dendrite")?,
            axon: terminal(&o, "axon")?,
            computed_body_hash: opt_str(&o, "computed_body_hash")?.unwrap_or_default(),
            token: match route {
                Route::Broadcast => {
                    let token = opt_str(&o, "github_access_token")?;
                    Some(RawPat::new(token.ok_or_else(|| bad("github_access_token", "a string"))?))
                }
                _ => None,
            },
        };
        match route {
            Route::Check => {
                opt_bool(&o, "has_pat")?;
                opt_bool(&o, "pat_valid")?;
                opt_str(&o, "rejection_reason")?;
            }
            Route::Broadcast => {
                opt_bool(&o, "accepted")?;
                opt_str(&o, "rejection_reason")?;
            }
            Route::Ping => {}
        }
        Ok(body)
    }
}

/// The handler's answer, to be merged into the response synapse.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Ping,
    Check {
        has_pat: Option<bool>,
        pat_valid: Option<bool>,
        rejection_reason: Option<String>,
    },
    /// The token is always cleared in the response.
    Broadcast {
        accepted: Option<bool>,
        rejection_reason: Option<String>,
    },
}

/// The success body: the full synapse, compact, `axon` stamped 200/"Success"/process time.
pub fn success_json(route: Route, body: &BodySynapse, axon: &TerminalInfo, answer: &Answer) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(route.name()));
    m.insert("timeout".into(), json!(body.timeout));
    m.insert("total_size".into(), json!(body.total_size));
    m.insert("header_size".into(), json!(body.header_size));
    m.insert("dendrite".into(), body.dendrite.to_json());
    m.insert("axon".into(), axon.to_json());
    m.insert("computed_body_hash".into(), json!(body.computed_body_hash));
    match answer {
        Answer::Ping => {}
        Answer::Check { has_pat, pat_valid, rejection_reason } => {
            m.insert("has_pat".into(), json!(has_pat));
            m.insert("pat_valid".into(), json!(pat_valid));
            m.insert("rejection_reason".into(), json!(rejection_reason));
        }
        Answer::Broadcast { accepted, rejection_reason } => {
            m.insert("github_access_token".into(), json!(""));
            m.insert("accepted".into(), json!(accepted));
            m.insert("rejection_reason".into(), json!(rejection_reason));
        }
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_types_and_token() {
        let b = BodySynapse::parse(Route::Check, br#"{"dendrite": {"hotkey": "5X"}, "extra": [1]}"#).unwrap();
        assert_eq!(b.timeout, Some(12.0));
        assert_eq!(b.total_size, Some(0));
        assert_eq!(b.dendrite.hotkey.as_deref(), Some("5X"));
        assert!(BodySynapse::parse(Route::Check, br#"{"timeout": "12"}"#).is_err());
        assert!(BodySynapse::parse(Route::Check, br#"{"dendrite": {"port": 70000}}"#).is_err());
        assert!(BodySynapse::parse(Route::Check, br#"{"has_pat": "yes"}"#).is_err());
        assert!(BodySynapse::parse(Route::Check, b"[]").is_err());
        assert!(BodySynapse::parse(Route::Broadcast, br#"{}"#).is_err(), "token is required");
        let b =
            BodySynapse::parse(Route::Broadcast, br#"{"github_access_token": "ghp_x", "dendrite": {"nonce": 5.0}}"#)
                .unwrap();
        assert_eq!(b.token.as_ref().map(RawPat::expose), Some("ghp_x"));
        let secret =
            BodySynapse::parse(Route::Broadcast, br#"{"github_access_token": "ghp_verysecretvalue1234"}"#).unwrap();
        assert!(!format!("{secret:?}").contains("verysecret"), "{secret:?}");
        assert_eq!(b.dendrite.nonce, Some(5));
        let e =
            BodySynapse::parse(Route::Broadcast, br#"{"github_access_token": "ghp_secret_value", "x": }"#).unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn success_body_clears_the_token() {
        let b = BodySynapse::parse(Route::Broadcast, br#"{"github_access_token": "ghp_x"}"#).unwrap();
        let v = success_json(
            Route::Broadcast,
            &b,
            &TerminalInfo::default(),
            &Answer::Broadcast { accepted: Some(true), rejection_reason: None },
        );
        assert_eq!(v["github_access_token"], "");
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "name",
                "timeout",
                "total_size",
                "header_size",
                "dendrite",
                "axon",
                "computed_body_hash",
                "github_access_token",
                "accepted",
                "rejection_reason"
            ]
        );
    }
}
