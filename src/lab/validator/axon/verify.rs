//! Axon-side verification primitives (docs §5): header parsing, the nonce window, per
//! `hotkey:uuid` monotonic nonces and the signature check. The reference validator's axon is built
//! on these; the constants and the signed message they check are the dendrite's ([`crate::wire`]),
//! so both sides share one definition of the protocol.
//!
//! Error texts are the Python axon's, after its "Not Verified with error: " prefix, so clients that
//! parse them see the same words.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use num_bigint::BigInt;

use crate::wallet;
use crate::wire::{ALLOWED_DELTA_NS, V_7_2_0};

/// The `timeout` the priority stage waits when the header is absent (`Synapse.timeout`'s default;
/// the header-derived synapse itself has `None`, so the nonce window is then 4 s).
pub const DEFAULT_TIMEOUT_S: f64 = 12.0;

/// CPython's `sys.get_int_max_str_digits()` default: `int()` refuses longer decimal strings.
const PY_INT_MAX_STR_DIGITS: usize = 4300;

/// A Python `int` as `int(header_value)` makes it: any size (what `str()` gives back is what the
/// axon puts in the signed message). The Python axon parses every integer header this way
/// (`synapse.py` `cast_int`), so `u64::MAX`, `-5` or `2**70` are valid nonces there, each with its
/// own answer; a fixed-width integer would turn them into 500s.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PyInt(BigInt);

impl PyInt {
    /// `int(s)`: surrounding whitespace, an optional sign, ASCII digits with single underscores
    /// between them, at most 4300 digits. `None` where Python raises `ValueError`.
    pub fn parse(s: &str) -> Option<PyInt> {
        let t = s.trim_matches(py_whitespace);
        let (sign, body) = match t.as_bytes().first() {
            Some(b'-') => ("-", &t[1..]),
            Some(b'+') => ("", &t[1..]),
            _ => ("", t),
        };
        let digits = strip_digit_underscores(body)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > PY_INT_MAX_STR_DIGITS {
            return None;
        }
        format!("{sign}{digits}").parse().ok().map(PyInt)
    }

    /// A non-negative integer.
    pub fn from_u64(n: u64) -> PyInt {
        PyInt(BigInt::from(n))
    }

    /// Any `i128`.
    pub fn from_i128(n: i128) -> PyInt {
        PyInt(BigInt::from(n))
    }

    /// `math.floor(x)` of a finite float, exactly (a float's decimal expansion is finite).
    fn floor_of(x: f64) -> PyInt {
        // `{:.0}` of an integral float prints its exact value; parsing it back cannot fail.
        PyInt::parse(&format!("{:.0}", x.floor())).unwrap_or_else(|| PyInt::from_u64(0))
    }

    /// The value, if it fits a `u64`.
    pub fn to_u64(&self) -> Option<u64> {
        u64::try_from(&self.0).ok()
    }

    /// `self - other`, exactly.
    fn sub(&self, other: &PyInt) -> PyInt {
        PyInt(&self.0 - &other.0)
    }

    /// `self / 10**9` as Python's true division of two ints does it: correctly rounded, or
    /// `OverflowError` ("integer division result too large for a float") when it exceeds a float.
    fn div_1e9(&self) -> Option<f64> {
        // Rust's float parsing is correctly rounded too, and says `inf` exactly where Python overflows.
        let q: f64 = format!("{}e-9", self.0).parse().ok()?;
        q.is_finite().then_some(q)
    }

    /// `self <= x` for a float, exactly as Python compares an int with a float.
    fn le_float(&self, x: f64) -> bool {
        if x.is_nan() {
            false
        } else if x.is_infinite() {
            x > 0.0
        } else {
            *self <= PyInt::floor_of(x)
        }
    }
}

impl fmt::Display for PyInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What Python's `str.strip()` / `int()` / `float()` treat as whitespace, for a Latin-1 string.
fn py_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// PEP 515: an underscore is allowed only between two digits. The string without them, or `None`.
fn strip_digit_underscores(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in b.iter().enumerate() {
        if c == b'_' {
            let between = i > 0 && b[i - 1].is_ascii_digit() && b.get(i + 1).is_some_and(u8::is_ascii_digit);
            if !between {
                return None;
            }
        } else {
            out.push(c as char);
        }
    }
    Some(out)
}

/// `float(s)` as the Python axon parses `timeout` and the `process_time` headers: whitespace,
/// underscores between digits, `inf`/`nan` in any case, correctly rounded (`1e400` is `inf`).
pub fn py_float_parse(s: &str) -> Option<f64> {
    let t = s.trim_matches(py_whitespace);
    if !t.is_ascii() {
        return None;
    }
    strip_digit_underscores(t)?.parse().ok()
}

/// Python's `f"{x:.2f}"`.
fn py_fixed2(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{x:.2}")
    }
}

/// The `bt_header_*` values an axon uses, read from a request's headers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestHeaders {
    pub timeout: Option<f64>,
    pub version: Option<PyInt>,
    pub nonce: Option<PyInt>,
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
    /// Values are decoded as Latin-1, as Starlette decodes them for the Python axon (so a uuid
    /// byte 0xE9 is `é` in the signed message there, and here).
    pub fn parse<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Result<RequestHeaders, HeaderParseError> {
        let mut h = RequestHeaders::default();
        for (name, raw) in pairs {
            let name = name.to_ascii_lowercase();
            let value: String = raw.iter().map(|&b| char::from(b)).collect();
            let bad = || HeaderParseError { name: name.clone(), value: value.clone() };
            match name.as_str() {
                "timeout" => h.timeout = Some(py_float_parse(&value).ok_or_else(bad)?),
                "bt_header_dendrite_version" => h.version = Some(PyInt::parse(&value).ok_or_else(bad)?),
                "bt_header_dendrite_nonce" => h.nonce = Some(PyInt::parse(&value).ok_or_else(bad)?),
                "bt_header_dendrite_uuid" => h.uuid = Some(value),
                "bt_header_dendrite_hotkey" => h.hotkey = Some(value),
                "bt_header_dendrite_signature" => h.signature = Some(value),
                "computed_body_hash" => h.computed_body_hash = Some(value),
                "header_size" | "total_size" => {
                    PyInt::parse(&value).ok_or_else(bad)?;
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

    /// The `timeout` header, else the class default (for waits; the nonce window uses the header).
    pub fn timeout_or_default(&self) -> f64 {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT_S)
    }
}

/// Why verification failed (HTTP 401). `Display` is the Python text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    #[error("Missing Nonce")]
    MissingNonce,
    #[error("No SS58 formatted address or public key provided.")]
    MissingHotkey,
    /// `Keypair(ss58_address=…)` refused the hotkey; the detail is the library's.
    #[error("Invalid SS58 address: {0}")]
    BadHotkey(&'static str),
    /// patrol's hardening: the Python axon accepts unsigned requests for any hotkey (docs §12.1).
    #[error("Missing signature: unsigned requests are refused by this validator")]
    MissingSignature,
    #[error("Invalid signature format. Expected hex string.")]
    BadSignatureFormat,
    #[error("Signature mismatch with {message} and {signature}")]
    SignatureMismatch { message: String, signature: String },
    #[error(
        "Nonce is too old: acceptable delta is {} seconds but request was {} seconds old",
        py_fixed2(*allowed_s),
        py_fixed2(*age_s)
    )]
    NonceTooOld { allowed_s: f64, age_s: f64 },
    /// A first-contact nonce so far in the past that Python's age arithmetic overflows a float.
    #[error("integer division result too large for a float")]
    NonceAgeOverflow,
    #[error("Nonce is too old, a newer one was last processed")]
    NonceNotNewer,
}

impl VerifyError {
    /// Bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            VerifyError::MissingNonce => "missing_nonce",
            VerifyError::MissingHotkey | VerifyError::BadHotkey(_) => "bad_hotkey",
            VerifyError::MissingSignature => "unsigned",
            VerifyError::BadSignatureFormat | VerifyError::SignatureMismatch { .. } => "bad_signature",
            VerifyError::NonceTooOld { .. } | VerifyError::NonceAgeOverflow | VerifyError::NonceNotNewer => {
                "stale_nonce"
            }
        }
    }
}

/// The public key of an SS58 address as bittensor's `Keypair(ss58_address=…)` reads it: any
/// address format (one- or two-byte prefix, except the reserved 46 and 47), with the library's
/// error texts. Which network the address is encoded for does not matter to the signature.
pub fn keypair_public(ss58: &str) -> Result<[u8; 32], &'static str> {
    use blake2::{Blake2b512, Digest};
    let data = bs58::decode(ss58).into_vec().map_err(|_| "Base 58 requirement is violated")?;
    if data.len() < 2 {
        return Err("Length is bad");
    }
    let (prefix_len, ident) = match data[0] {
        0..=63 => (1, u16::from(data[0])),
        64..=127 => {
            let lower = (data[0] << 2) | (data[1] >> 6);
            let upper = data[1] & 0b0011_1111;
            (2, u16::from(lower) | (u16::from(upper) << 8))
        }
        _ => return Err("Invalid SS58 prefix byte."),
    };
    if data.len() != prefix_len + 32 + 2 {
        return Err("Length is bad");
    }
    if matches!(ident, 46 | 47) {
        return Err("Disallowed SS58 Address Format for this datatype.");
    }
    let mut h = Blake2b512::new();
    h.update(b"SS58PRE");
    h.update(&data[..prefix_len + 32]);
    let sum = h.finalize();
    if data[prefix_len + 32..] != sum[..2] {
        return Err("Invalid checksum");
    }
    let mut pk = [0u8; 32];
    pk.copy_from_slice(&data[prefix_len..prefix_len + 32]);
    Ok(pk)
}

/// Last accepted nonce per `hotkey:uuid`, held in memory like the Python axon's `self.nonces`.
#[derive(Debug, Default)]
pub struct NonceTracker {
    last: Mutex<HashMap<String, PyInt>>,
}

impl NonceTracker {
    /// The freshness rule (docs §5.1), with Python's arithmetic: the window is
    /// `now - 4 s - timeout` (`from_headers` leaves the timeout `None` without its header, which
    /// counts as 0; a non-zero one makes the window a float, so a negative timeout moves it into
    /// the future and a NaN one disables it), compared exactly with the nonce. `now_ns` is passed
    /// in so tests control time.
    pub fn check(&self, h: &RequestHeaders, now_ns: u64) -> Result<(), VerifyError> {
        let nonce = h.nonce.as_ref().ok_or(VerifyError::MissingNonce)?;
        let key = h.endpoint_key();
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
        if let Some(last) = &last {
            return if nonce <= last { Err(VerifyError::NonceNotNewer) } else { Ok(()) };
        }
        let modern = h.version.as_ref().is_some_and(|v| *v >= PyInt::from_u64(V_7_2_0));
        if !modern {
            return Ok(());
        }
        let timeout = h.timeout.unwrap_or(0.0);
        let now = PyInt::from_u64(now_ns);
        let base = i128::from(now_ns) - i128::from(ALLOWED_DELTA_NS);
        // `(synapse.timeout or 0) * 1e9`: a zero timeout keeps the arithmetic in integers.
        let (too_old, allowed_s) = if timeout == 0.0 {
            (*nonce <= PyInt::from_i128(base), ALLOWED_DELTA_NS as f64 / 1e9)
        } else {
            let timeout_ns = timeout * 1e9;
            (nonce.le_float(base as f64 - timeout_ns), (ALLOWED_DELTA_NS as f64 + timeout_ns) / 1e9)
        };
        if !too_old {
            return Ok(());
        }
        let age_s = now.sub(nonce).div_1e9().ok_or(VerifyError::NonceAgeOverflow)?;
        Err(VerifyError::NonceTooOld { allowed_s, age_s })
    }

    /// Record an accepted nonce (only after the signature passed, as Python does). Keeps the max,
    /// so a racing older request cannot lower the bar.
    pub fn record(&self, h: &RequestHeaders) {
        if let Some(n) = &h.nonce {
            let mut m = self.last.lock().unwrap_or_else(|p| p.into_inner());
            match m.get_mut(&h.endpoint_key()) {
                Some(e) if *e >= *n => {}
                Some(e) => *e = n.clone(),
                None => {
                    m.insert(h.endpoint_key(), n.clone());
                }
            }
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

/// Check the signature over the message the axon rebuilds with its *own* hotkey (docs §4), for
/// the caller's already decoded `public` key. `require` = refuse unsigned requests (patrol's
/// hardening); with `false`, an absent or empty signature passes, as in the Python axon.
fn check_signature(h: &RequestHeaders, public: &[u8; 32], own_hotkey: &str, require: bool) -> Result<(), VerifyError> {
    let sig = match h.signature.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => s,
        None if require => return Err(VerifyError::MissingSignature),
        None => return Ok(()),
    };
    let nonce = h.nonce.as_ref().map_or_else(|| "None".to_string(), PyInt::to_string);
    let message = format!(
        "{nonce}.{}.{own_hotkey}.{}.{}",
        h.hotkey.as_deref().unwrap_or("None"),
        h.uuid.as_deref().unwrap_or("None"),
        h.computed_body_hash.as_deref().unwrap_or("None"),
    );
    let bytes = sig.strip_prefix("0x").and_then(|x| hex::decode(x).ok()).ok_or(VerifyError::BadSignatureFormat)?;
    if wallet::verify(public, message.as_bytes(), &bytes) {
        Ok(())
    } else {
        Err(VerifyError::SignatureMismatch { message, signature: sig.to_string() })
    }
}

/// [`check_signature`] for a request whose hotkey has not been decoded yet.
pub fn verify_signature(h: &RequestHeaders, own_hotkey: &str, require: bool) -> Result<(), VerifyError> {
    let hotkey = h.hotkey.as_deref().ok_or(VerifyError::MissingHotkey)?;
    let public = keypair_public(hotkey).map_err(VerifyError::BadHotkey)?;
    check_signature(h, &public, own_hotkey, require)
}

/// Python's `default_verify` order: the hotkey (absent; not an SS58 address — checked before
/// anything else, as `Keypair(ss58_address=…)` is built first), nonce present and fresh, signature;
/// then record.
pub fn verify_request(
    h: &RequestHeaders,
    own_hotkey: &str,
    nonces: &NonceTracker,
    now_ns: u64,
    require_signature: bool,
) -> Result<(), VerifyError> {
    let hotkey = h.hotkey.as_deref().ok_or(VerifyError::MissingHotkey)?;
    let public = keypair_public(hotkey).map_err(VerifyError::BadHotkey)?;
    nonces.check(h, now_ns)?;
    check_signature(h, &public, own_hotkey, require_signature)?;
    nonces.record(h);
    Ok(())
}

#[cfg(test)]
mod tests;
