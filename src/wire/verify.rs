//! Axon-side verification primitives (docs §5): header parsing, the nonce window, per
//! `hotkey:uuid` monotonic nonces and the signature check. The embedded validator's server is built
//! on these; they are here, next to the dendrite, so both sides share one definition of the protocol.
//!
//! Error texts are the Python axon's, after its "Not Verified with error: " prefix, so clients that
//! parse them see the same words.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{ALLOWED_DELTA_NS, V_7_2_0, signed_message};
use crate::wallet;

/// The `bt_header_*` values an axon uses, read from a request's headers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestHeaders {
    pub timeout: Option<f64>,
    pub version: Option<u64>,
    pub nonce: Option<u64>,
    pub uuid: Option<String>,
    pub hotkey: Option<String>,
    pub signature: Option<String>,
    pub computed_body_hash: Option<String>,
    /// `bt_header_input_obj_*` field names present.
    pub input_obj_fields: Vec<String>,
}

/// A header that cannot be parsed: the Python axon answers 500 (`SynapseParsingError`, docs §6.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("header {name} is not valid: {value:?}")]
pub struct HeaderParseError {
    pub name: String,
    pub value: String,
}

impl RequestHeaders {
    /// Parse from `(name, value)` pairs; names are matched case-insensitively (the axon does).
    pub fn parse<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Result<RequestHeaders, HeaderParseError> {
        let mut h = RequestHeaders::default();
        for (name, raw) in pairs {
            let name = name.to_ascii_lowercase();
            let value = String::from_utf8_lossy(raw).into_owned();
            let bad = || HeaderParseError { name: name.clone(), value: value.clone() };
            match name.as_str() {
                "timeout" => h.timeout = Some(value.trim().parse::<f64>().map_err(|_| bad())?),
                "bt_header_dendrite_version" => h.version = Some(value.trim().parse().map_err(|_| bad())?),
                "bt_header_dendrite_nonce" => h.nonce = Some(value.trim().parse().map_err(|_| bad())?),
                "bt_header_dendrite_uuid" => h.uuid = Some(value),
                "bt_header_dendrite_hotkey" => h.hotkey = Some(value),
                "bt_header_dendrite_signature" => h.signature = Some(value),
                "computed_body_hash" => h.computed_body_hash = Some(value),
                "header_size" | "total_size" => {
                    value.trim().parse::<i64>().map_err(|_| bad())?;
                }
                n => {
                    if let Some(field) = n.strip_prefix("bt_header_input_obj_") {
                        h.input_obj_fields.push(field.to_string());
                    }
                }
            }
        }
        Ok(h)
    }

    /// `"{hotkey}:{uuid}"`, the nonce-tracking key; absent parts are Python's `None`.
    pub fn endpoint_key(&self) -> String {
        format!("{}:{}", self.hotkey.as_deref().unwrap_or("None"), self.uuid.as_deref().unwrap_or("None"))
    }
}

/// Why verification failed (HTTP 401). `Display` is the Python text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    #[error("Missing Nonce")]
    MissingNonce,
    #[error("No SS58 formatted address or public key provided.")]
    MissingHotkey,
    #[error("Invalid SS58 address.")]
    BadHotkey,
    /// patrol's hardening: the Python axon accepts unsigned requests for any hotkey (docs §12.1).
    #[error("Missing signature: unsigned requests are refused by this validator")]
    MissingSignature,
    #[error("Invalid signature format. Expected hex string.")]
    BadSignatureFormat,
    #[error("Signature mismatch with {message} and {signature}")]
    SignatureMismatch { message: String, signature: String },
    #[error("Nonce is too old: acceptable delta is {allowed_s:.2} seconds but request was {age_s:.2} seconds old")]
    NonceTooOld { allowed_s: f64, age_s: f64 },
    #[error("Nonce is too old, a newer one was last processed")]
    NonceNotNewer,
}

impl VerifyError {
    /// Bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            VerifyError::MissingNonce => "missing_nonce",
            VerifyError::MissingHotkey | VerifyError::BadHotkey => "bad_hotkey",
            VerifyError::MissingSignature => "unsigned",
            VerifyError::BadSignatureFormat | VerifyError::SignatureMismatch { .. } => "bad_signature",
            VerifyError::NonceTooOld { .. } | VerifyError::NonceNotNewer => "stale_nonce",
        }
    }
}

/// Last accepted nonce per `hotkey:uuid`, held in memory like the Python axon's `self.nonces`.
#[derive(Debug, Default)]
pub struct NonceTracker {
    last: Mutex<HashMap<String, u64>>,
}

impl NonceTracker {
    /// The freshness rule (docs §5.1). `now_ns` is passed in so tests control time.
    pub fn check(&self, h: &RequestHeaders, now_ns: u64) -> Result<(), VerifyError> {
        let nonce = h.nonce.ok_or(VerifyError::MissingNonce)?;
        let key = h.endpoint_key();
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner()).get(&key).copied();
        let modern = h.version.is_some_and(|v| v >= V_7_2_0);
        match last {
            Some(last) if nonce <= last => Err(VerifyError::NonceNotNewer),
            Some(_) => Ok(()),
            None if modern => {
                let timeout_ns = (h.timeout.unwrap_or(0.0).max(0.0) * 1e9) as u64;
                let window = ALLOWED_DELTA_NS.saturating_add(timeout_ns);
                let oldest = now_ns.saturating_sub(window);
                if nonce > oldest {
                    Ok(())
                } else {
                    Err(VerifyError::NonceTooOld {
                        allowed_s: window as f64 / 1e9,
                        age_s: now_ns.saturating_sub(nonce) as f64 / 1e9,
                    })
                }
            }
            None => Ok(()),
        }
    }

    /// Record an accepted nonce (only after the signature passed, as Python does). Keeps the max,
    /// so a racing older request cannot lower the bar.
    pub fn record(&self, h: &RequestHeaders) {
        if let Some(n) = h.nonce {
            let mut m = self.last.lock().unwrap_or_else(|p| p.into_inner());
            let e = m.entry(h.endpoint_key()).or_insert(0);
            *e = (*e).max(n);
        }
    }

    /// Number of `hotkey:uuid` keys held.
    pub fn len(&self) -> usize {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no nonce has been recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Check the signature over the message the axon rebuilds with its *own* hotkey (docs §4).
/// `require` = refuse unsigned requests (patrol's hardening); with `false`, an absent or empty
/// signature passes, as in the Python axon.
pub fn verify_signature(h: &RequestHeaders, own_hotkey: &str, require: bool) -> Result<(), VerifyError> {
    let hotkey = h.hotkey.as_deref().filter(|s| !s.is_empty()).ok_or(VerifyError::MissingHotkey)?;
    let public = wallet::ss58_decode(hotkey).map_err(|_| VerifyError::BadHotkey)?;
    let sig = match h.signature.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => s,
        None if require => return Err(VerifyError::MissingSignature),
        None => return Ok(()),
    };
    let message = signed_message(
        h.nonce.unwrap_or(0),
        hotkey,
        own_hotkey,
        h.uuid.as_deref().unwrap_or("None"),
        h.computed_body_hash.as_deref().unwrap_or("None"),
    );
    let bytes = sig.strip_prefix("0x").and_then(|x| hex::decode(x).ok()).ok_or(VerifyError::BadSignatureFormat)?;
    if wallet::verify(&public, message.as_bytes(), &bytes) {
        Ok(())
    } else {
        Err(VerifyError::SignatureMismatch { message, signature: sig.to_string() })
    }
}

/// Python's `default_verify` order: hotkey present, nonce present and fresh, signature; then record.
pub fn verify_request(
    h: &RequestHeaders,
    own_hotkey: &str,
    nonces: &NonceTracker,
    now_ns: u64,
    require_signature: bool,
) -> Result<(), VerifyError> {
    if h.hotkey.as_deref().is_none_or(str::is_empty) {
        return Err(VerifyError::MissingHotkey);
    }
    nonces.check(h, now_ns)?;
    verify_signature(h, own_hotkey, require_signature)?;
    nonces.record(h);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wallet::Hotkey;
    use crate::wire::{EMPTY_BODY_HASH, VERSION_AS_INT};

    const AXON: &str = "5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi";

    fn signed(key: &Hotkey, nonce: u64, uuid: &str, axon: &str) -> RequestHeaders {
        let msg = signed_message(nonce, key.ss58(), axon, uuid, EMPTY_BODY_HASH);
        RequestHeaders {
            timeout: Some(12.0),
            version: Some(VERSION_AS_INT),
            nonce: Some(nonce),
            uuid: Some(uuid.into()),
            hotkey: Some(key.ss58().into()),
            signature: Some(key.sign_hex(msg.as_bytes())),
            computed_body_hash: Some(EMPTY_BODY_HASH.into()),
            input_obj_fields: vec![],
        }
    }

    const NOW: u64 = 1_800_000_000_000_000_000;

    #[test]
    fn accepts_fresh_rejects_replay_and_lower() {
        let k = Hotkey::from_seed(&[9; 32]);
        let t = NonceTracker::default();
        let h = signed(&k, NOW - 1_000_000, "u1", AXON);
        verify_request(&h, AXON, &t, NOW, true).unwrap();
        assert_eq!(verify_request(&h, AXON, &t, NOW, true), Err(VerifyError::NonceNotNewer));
        let lower = signed(&k, NOW - 2_000_000, "u1", AXON);
        assert_eq!(verify_request(&lower, AXON, &t, NOW, true), Err(VerifyError::NonceNotNewer));
        // after first contact only monotonicity counts
        let later_old = signed(&k, NOW + 1, "u1", AXON);
        verify_request(&later_old, AXON, &t, NOW + 100_000_000_000, true).unwrap();
    }

    #[test]
    fn window_is_four_seconds_plus_timeout() {
        let k = Hotkey::from_seed(&[9; 32]);
        let t = NonceTracker::default();
        let old = signed(&k, NOW - 60_000_000_000, "u2", AXON);
        let e = verify_request(&old, AXON, &t, NOW, true).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Nonce is too old: acceptable delta is 16.00 seconds but request was 60.00 seconds old"
        );
        let mut wide = signed(&k, NOW - 60_000_000_000, "u3", AXON);
        wide.timeout = Some(120.0);
        verify_request(&wide, AXON, &t, NOW, true).unwrap();
        // far future accepted (no upper bound, like Python)
        verify_request(&signed(&k, NOW + 3_600_000_000_000, "u4", AXON), AXON, &t, NOW, true).unwrap();
        // legacy version: no window
        let mut legacy = signed(&k, 1, "u5", AXON);
        legacy.version = Some(7_001_000);
        verify_request(&legacy, AXON, &t, NOW, true).unwrap();
    }

    #[test]
    fn signature_failures() {
        let k = Hotkey::from_seed(&[9; 32]);
        let t = NonceTracker::default();
        let other_axon = signed(&k, NOW, "u6", "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV");
        assert!(matches!(verify_request(&other_axon, AXON, &t, NOW, true), Err(VerifyError::SignatureMismatch { .. })));
        let mut nohex = signed(&k, NOW, "u7", AXON);
        nohex.signature = nohex.signature.map(|s| s[2..].to_string());
        assert_eq!(verify_request(&nohex, AXON, &t, NOW, true), Err(VerifyError::BadSignatureFormat));
        let mut unsigned = signed(&k, NOW, "u8", AXON);
        unsigned.signature = None;
        assert_eq!(verify_request(&unsigned, AXON, &t, NOW, true), Err(VerifyError::MissingSignature));
        verify_request(&unsigned, AXON, &t, NOW, false).unwrap();
        let mut nononce = signed(&k, NOW, "u9", AXON);
        nononce.nonce = None;
        assert_eq!(verify_request(&nononce, AXON, &t, NOW, true), Err(VerifyError::MissingNonce));
        // only the one accepted request (unsigned, require=false) recorded a nonce
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn header_parsing() {
        let h = RequestHeaders::parse([
            ("Timeout", b"15.0".as_slice()),
            ("BT_HEADER_DENDRITE_NONCE", b"42"),
            ("bt_header_input_obj_github_access_token", b"IiI="),
        ])
        .unwrap();
        assert_eq!(h.timeout, Some(15.0));
        assert_eq!(h.nonce, Some(42));
        assert_eq!(h.input_obj_fields, vec!["github_access_token"]);
        assert!(RequestHeaders::parse([("header_size", b"abc".as_slice())]).is_err());
    }
}
