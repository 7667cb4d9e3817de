//! gittensor's two synapses: request bodies (Python `model_dump()` shape) and response fields.
//!
//! Field names and order follow entrius/gittensor:gittensor/synapses.py and the captured requests in
//! `vectors/dendrite_request_capture.json`.

use serde_json::{Map, Value, json};

/// Which gittensor synapse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SynapseKind {
    /// `PatCheckSynapse`: asks whether the validator holds a valid PAT for the caller. Carries no PAT.
    Check,
    /// `PatBroadcastSynapse`: hands the validator the caller's PAT.
    Broadcast,
}

impl SynapseKind {
    /// The Python class name, which is also the URL path.
    pub fn name(self) -> &'static str {
        match self {
            SynapseKind::Check => "PatCheckSynapse",
            SynapseKind::Broadcast => "PatBroadcastSynapse",
        }
    }

    /// Parse a URL path segment (case-sensitive, as the axon routes).
    pub fn from_name(s: &str) -> Option<SynapseKind> {
        match s {
            "PatCheckSynapse" => Some(SynapseKind::Check),
            "PatBroadcastSynapse" => Some(SynapseKind::Broadcast),
            _ => None,
        }
    }
}

/// The terminal-info object (`dendrite` / `axon` in the body): 10 keys in Python's order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TerminalInfo {
    pub status_code: Option<u16>,
    pub status_message: Option<String>,
    pub process_time: Option<f64>,
    pub ip: Option<String>,
    pub port: Option<u16>,
    pub version: Option<u64>,
    pub nonce: Option<u64>,
    pub uuid: Option<String>,
    pub hotkey: Option<String>,
    pub signature: Option<String>,
}

impl TerminalInfo {
    /// As a JSON object with Python's key order.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("status_code".into(), json!(self.status_code));
        m.insert("status_message".into(), json!(self.status_message));
        m.insert("process_time".into(), json!(self.process_time));
        m.insert("ip".into(), json!(self.ip));
        m.insert("port".into(), json!(self.port));
        m.insert("version".into(), json!(self.version));
        m.insert("nonce".into(), json!(self.nonce));
        m.insert("uuid".into(), json!(self.uuid));
        m.insert("hotkey".into(), json!(self.hotkey));
        m.insert("signature".into(), json!(self.signature));
        Value::Object(m)
    }

    /// Read back from a JSON object, tolerating absent keys and wrong types (they become `None`).
    pub fn from_json(v: Option<&Value>) -> TerminalInfo {
        let Some(o) = v.and_then(Value::as_object) else { return TerminalInfo::default() };
        let s = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
        let u = |k: &str| o.get(k).and_then(Value::as_u64);
        TerminalInfo {
            status_code: u("status_code").and_then(|x| u16::try_from(x).ok()),
            status_message: s("status_message"),
            process_time: o.get("process_time").and_then(Value::as_f64),
            ip: s("ip"),
            port: u("port").and_then(|x| u16::try_from(x).ok()),
            version: u("version"),
            nonce: u("nonce"),
            uuid: s("uuid"),
            hotkey: s("hotkey"),
            signature: s("signature"),
        }
    }
}

/// The synapse-specific request/response fields.
#[derive(Debug, Clone, PartialEq)]
pub enum Fields {
    Check(CheckFields),
    Broadcast(BroadcastFields, Option<String>),
}

/// What a validator answers to `PatCheckSynapse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckFields {
    pub has_pat: Option<bool>,
    pub pat_valid: Option<bool>,
    pub rejection_reason: Option<String>,
}

/// What a validator answers to `PatBroadcastSynapse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BroadcastFields {
    pub accepted: Option<bool>,
    pub rejection_reason: Option<String>,
}

/// Build the full request body (`model_dump()` order): base fields, then the synapse's own.
/// `github_access_token` is the only place a PAT ever enters a body.
pub fn request_body(
    kind: SynapseKind,
    timeout_s: f64,
    dendrite: &TerminalInfo,
    axon: &TerminalInfo,
    github_access_token: Option<&str>,
) -> Value {
    let mut m = base_fields(kind, timeout_s, dendrite, axon);
    match kind {
        SynapseKind::Check => {
            m.insert("has_pat".into(), Value::Null);
            m.insert("pat_valid".into(), Value::Null);
            m.insert("rejection_reason".into(), Value::Null);
        }
        SynapseKind::Broadcast => {
            m.insert("github_access_token".into(), json!(github_access_token.unwrap_or("")));
            m.insert("accepted".into(), Value::Null);
            m.insert("rejection_reason".into(), Value::Null);
        }
    }
    Value::Object(m)
}

/// The base `Synapse` fields in declaration order.
pub fn base_fields(
    kind: SynapseKind,
    timeout_s: f64,
    dendrite: &TerminalInfo,
    axon: &TerminalInfo,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("name".into(), json!(kind.name()));
    m.insert("timeout".into(), json!(timeout_s));
    m.insert("total_size".into(), json!(0));
    m.insert("header_size".into(), json!(0));
    m.insert("dendrite".into(), dendrite.to_json());
    m.insert("axon".into(), axon.to_json());
    m.insert("computed_body_hash".into(), json!(""));
    m
}

/// Why a 200 body could not be read as the synapse (the Python dendrite's 422 cases).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("response body is not a JSON object")]
    NotAnObject,
    #[error("response field {0} has the wrong type")]
    WrongType(&'static str),
}

fn opt_bool(o: &Map<String, Value>, k: &'static str) -> Result<Option<bool>, FieldError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(FieldError::WrongType(k)),
    }
}

fn opt_string(o: &Map<String, Value>, k: &'static str) -> Result<Option<String>, FieldError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(FieldError::WrongType(k)),
    }
}

/// Read `has_pat`/`pat_valid`/`rejection_reason` from a 200 body.
pub fn parse_check(v: &Value) -> Result<CheckFields, FieldError> {
    let o = v.as_object().ok_or(FieldError::NotAnObject)?;
    Ok(CheckFields {
        has_pat: opt_bool(o, "has_pat")?,
        pat_valid: opt_bool(o, "pat_valid")?,
        rejection_reason: opt_string(o, "rejection_reason")?,
    })
}

/// Read `accepted`/`rejection_reason` from a 200 body.
pub fn parse_broadcast(v: &Value) -> Result<BroadcastFields, FieldError> {
    let o = v.as_object().ok_or(FieldError::NotAnObject)?;
    Ok(BroadcastFields { accepted: opt_bool(o, "accepted")?, rejection_reason: opt_string(o, "rejection_reason")? })
}

/// Read the request-side fields of a body an axon received: `github_access_token` for a broadcast.
/// `None` for a check; `Err` when a broadcast body lacks the token or it is not a string (the Python
/// axon answers 500 to both).
pub fn parse_request_token(kind: SynapseKind, v: &Value) -> Result<Option<String>, FieldError> {
    let o = v.as_object().ok_or(FieldError::NotAnObject)?;
    match kind {
        SynapseKind::Check => Ok(None),
        SynapseKind::Broadcast => match o.get("github_access_token") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(FieldError::WrongType("github_access_token")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_types_are_errors_absent_are_none() {
        assert_eq!(parse_check(&json!({"has_pat": true})).unwrap().pat_valid, None);
        assert_eq!(parse_check(&json!({"has_pat": "definitely-not-a-bool"})), Err(FieldError::WrongType("has_pat")));
        assert_eq!(parse_check(&json!([1])), Err(FieldError::NotAnObject));
        assert_eq!(
            parse_broadcast(&json!({"accepted": false, "rejection_reason": "x"})).unwrap().accepted,
            Some(false)
        );
        assert!(parse_request_token(SynapseKind::Broadcast, &json!({})).is_err());
        assert_eq!(
            parse_request_token(SynapseKind::Broadcast, &json!({"github_access_token": "t"})).unwrap().as_deref(),
            Some("t")
        );
    }

    #[test]
    fn names_round_trip() {
        for k in [SynapseKind::Check, SynapseKind::Broadcast] {
            assert_eq!(SynapseKind::from_name(k.name()), Some(k));
        }
        assert_eq!(SynapseKind::from_name("patchecksynapse"), None);
    }
}
