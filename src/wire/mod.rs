//! The bittensor 10.x dendrite → axon wire protocol, as gittensor validators speak it.
//!
//! Spec: docs/bittensor-wire-protocol.md. This module owns everything byte-level: the Python-shaped
//! JSON body ([`pyjson`], [`synapse`]), and the signed request and its classification on the way
//! back ([`dendrite`]); the axon's side of it is the lab validator's
//! (`lab::validator::axon::verify`). It knows nothing about coverage, GitHub or the chain.

pub mod dendrite;
pub mod pyjson;
pub mod synapse;

use std::fmt;
use std::net::IpAddr;

pub use dendrite::{CallOutcome, Dendrite, NoResponseKind, PreparedRequest, ProbeFields, Reply};
pub use synapse::{BroadcastFields, CheckFields, SynapseKind};

/// `version_as_int` of bittensor 10.3.1 (major·1e6 + minor·1e3 + patch), sent as the dendrite version.
pub const VERSION_AS_INT: u64 = 10_003_001;

/// SHA3-256 of the empty string: the body hash of both gittensor synapses, whose
/// `required_hash_fields` are empty (docs §3).
pub const EMPTY_BODY_HASH: &str = "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a";

/// base64 of the JSON `""`: the `bt_header_input_obj_github_access_token` value (docs §2 item 12).
pub const EMPTY_STRING_INPUT_OBJ: &str = "IiI=";

/// Versions below this get the legacy monotonic-only nonce rule (axon.py `V_7_2_0`).
pub const V_7_2_0: u64 = 7_002_000;

/// Fixed part of the nonce window: 4 s (axon_utils.py `ALLOWED_DELTA`).
pub const ALLOWED_DELTA_NS: u64 = 4_000_000_000;

/// An axon to call: where it listens and which hotkey it signs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Axon IP from the metagraph.
    pub ip: IpAddr,
    /// Axon port.
    pub port: u16,
    /// The validator's hotkey (SS58): part of the signed message.
    pub hotkey: String,
}

impl Target {
    /// `http://ip:port/Name`, with IPv6 bracketed (the Python dendrite doesn't, and fails; docs §1).
    pub fn url(&self, kind: SynapseKind) -> String {
        self.url_for(kind.name())
    }

    /// `http://ip:port/<synapse class name>`.
    pub fn url_for(&self, synapse: &str) -> String {
        match self.ip {
            IpAddr::V4(ip) => format!("http://{ip}:{}/{synapse}", self.port),
            IpAddr::V6(ip) => format!("http://[{ip}]:{}/{synapse}", self.port),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.port),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.port),
        }
    }
}

/// SHA3-256 hex of a string (bittensor `get_hash`).
pub fn sha3_hex(s: &str) -> String {
    use sha3::{Digest, Sha3_256};
    hex::encode(Sha3_256::digest(s.as_bytes()))
}

/// Body hash over the `str()` values of a synapse's `required_hash_fields` (docs §3): hash each,
/// concatenate the hex digests, hash again. With no fields this is [`EMPTY_BODY_HASH`].
pub fn body_hash(field_values: &[&str]) -> String {
    let joined: String = field_values.iter().map(|v| sha3_hex(v)).collect();
    sha3_hex(&joined)
}

/// The string a dendrite signs and an axon rebuilds (docs §4).
pub fn signed_message(nonce: u64, dendrite_hotkey: &str, axon_hotkey: &str, uuid: &str, body_hash: &str) -> String {
    format!("{nonce}.{dendrite_hotkey}.{axon_hotkey}.{uuid}.{body_hash}")
}

/// Python `repr(float)` for the timeout header and body (`15.0`, `1.5`, `1e+16`, `1e-05`, `nan`).
pub fn py_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    let s = format!("{x:?}");
    // Rust and Python switch to exponents at the same magnitudes; Python signs and pads them
    if let Some((mantissa, exp)) = s.split_once('e') {
        let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    if s.contains('.') || s.contains("inf") { s } else { format!("{s}.0") }
}

/// Wall-clock nanoseconds since the Unix epoch (`time.time_ns()`).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_vectors() {
        assert_eq!(sha3_hex(""), EMPTY_BODY_HASH);
        assert_eq!(body_hash(&[]), EMPTY_BODY_HASH);
        // HashedDemoSynapse illustration from body_hash.json
        assert_eq!(
            body_hash(&["ghp_test", "None"]),
            "1bdf024ef34b5765e4f8326472cd10872ac50982c0290b453b78c0db6b8d862c"
        );
    }

    #[test]
    fn urls_and_floats() {
        let t = Target { ip: "2001:db8::1".parse().unwrap(), port: 8091, hotkey: String::new() };
        assert_eq!(t.url(SynapseKind::Check), "http://[2001:db8::1]:8091/PatCheckSynapse");
        let t = Target { ip: "1.2.3.4".parse().unwrap(), port: 8091, hotkey: String::new() };
        assert_eq!(t.url(SynapseKind::Broadcast), "http://1.2.3.4:8091/PatBroadcastSynapse");
        assert_eq!(py_float(15.0), "15.0");
        assert_eq!(py_float(1.5), "1.5");
        assert_eq!(py_float(30.0), "30.0");
        assert_eq!(py_float(1e16), "1e+16");
        assert_eq!(py_float(1.5e300), "1.5e+300");
        assert_eq!(py_float(1e-5), "1e-05");
        assert_eq!(py_float(f64::NAN), "nan");
        assert_eq!(py_float(f64::NEG_INFINITY), "-inf");
    }
}
