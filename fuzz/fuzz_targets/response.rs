//! The dendrite's response side on arbitrary bodies: the JSON step (bytes → `serde_json::Value`,
//! as `Dendrite::send` does), `wire::synapse::parse_check` / `parse_broadcast` (never panic; what
//! they read survives being written back), `TerminalInfo::from_json`, and `wire::pyjson::dumps`
//! (output is ASCII and parses back to the same value).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use patrol::wire::pyjson;
use patrol::wire::synapse::{self, BroadcastFields, CheckFields, FieldError, TerminalInfo};
use serde_json::{Value, json};

/// Every object key, depth first, in order.
fn keys(v: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(m) => {
                for (k, x) in m {
                    out.push(k);
                    walk(x, out);
                }
            }
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<Value>(data) else { return };

    // pyjson::dumps: Python's json.dumps, ASCII only, and lossless.
    let text = pyjson::dumps(&v);
    assert!(text.is_ascii(), "dumps wrote non-ASCII: {text:?}");
    let back: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("dumps output does not parse ({e}): {text}"));
    assert!(common::json_eq(&back, &v), "dumps round trip changed the value:\n{back:?}\n{v:?}");
    if *common::FLOATS_ROUND_TRIP {
        assert_eq!(back, v, "dumps round trip changed the value");
    }
    // key order is kept (preserve_order)
    assert_eq!(keys(&back), keys(&v), "dumps changed the key order");

    // The 200-body readers: a non-object is NotAnObject; a field read is written back the same.
    match synapse::parse_check(&v) {
        Ok(f) => {
            let again = json!({"has_pat": f.has_pat, "pat_valid": f.pat_valid, "rejection_reason": f.rejection_reason});
            assert_eq!(synapse::parse_check(&again), Ok(f.clone()));
            let CheckFields { has_pat, pat_valid, rejection_reason } = f;
            assert_eq!(v.get("has_pat").and_then(Value::as_bool), has_pat);
            assert_eq!(v.get("pat_valid").and_then(Value::as_bool), pat_valid);
            assert_eq!(v.get("rejection_reason").and_then(Value::as_str), rejection_reason.as_deref());
        }
        Err(FieldError::NotAnObject) => assert!(!v.is_object()),
        Err(FieldError::WrongType(k)) => assert!(v.get(k).is_some_and(|x| !x.is_null())),
    }
    match synapse::parse_broadcast(&v) {
        Ok(f) => {
            let again = json!({"accepted": f.accepted, "rejection_reason": f.rejection_reason});
            assert_eq!(synapse::parse_broadcast(&again), Ok(f.clone()));
            let BroadcastFields { accepted, rejection_reason } = f;
            assert_eq!(v.get("accepted").and_then(Value::as_bool), accepted);
            assert_eq!(v.get("rejection_reason").and_then(Value::as_str), rejection_reason.as_deref());
        }
        Err(FieldError::NotAnObject) => assert!(!v.is_object()),
        Err(FieldError::WrongType(k)) => assert!(v.get(k).is_some_and(|x| !x.is_null())),
    }
    for kind in [synapse::SynapseKind::Check, synapse::SynapseKind::Broadcast] {
        let _ = synapse::parse_request_token(kind, &v);
    }

    // The terminal objects of a response: tolerant, and stable through to_json.
    for key in ["axon", "dendrite"] {
        let t = TerminalInfo::from_json(v.get(key));
        assert_eq!(TerminalInfo::from_json(Some(&t.to_json())), t, "{key} changed through to_json");
    }
});
