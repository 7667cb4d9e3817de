//! The GitHub PAT as a value that cannot leak by accident.
//!
//! `Pat` has no `Display`, a redacting `Debug`, and no `Serialize`: the only way to read the token is
//! [`Pat::expose`], which the wire and GitHub modules call at the moment they send it. Everything that
//! needs to *talk about* the PAT (state files, logs, JSON) uses [`Pat::redacted`] (`***` + last 4) or
//! [`Pat::fingerprint`] (a one-way tag that says whether two PATs are the same).

use sha2::{Digest, Sha256};
use std::fmt;

/// A GitHub personal access token. Whitespace around it is trimmed on construction (a credential file
/// usually ends in a newline, which upstream forwards verbatim and which makes every GitHub call fail).
#[derive(Clone, PartialEq, Eq)]
pub struct Pat(String);

impl Pat {
    /// Wrap a token, trimming surrounding whitespace. Returns `None` when nothing is left.
    pub fn new(raw: &str) -> Option<Pat> {
        let t = raw.trim();
        if t.is_empty() { None } else { Some(Pat(t.to_string())) }
    }

    /// The token itself. Call only where it is sent to GitHub or in a broadcast.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `***` plus the last four characters: the most any output may show.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }

    /// A stable one-way tag of the token (16 hex chars of a domain-separated SHA-256). PATs carry
    /// ~200 bits of entropy, so the tag cannot be inverted; it lets state files record *which* PAT a
    /// validator accepted without holding it.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.0)
    }
}

/// `***` + last 4 characters of any secret string (or just `***` if it is short).
pub fn redact(s: &str) -> String {
    let n = s.chars().count();
    if n <= 8 {
        return "***".to_string();
    }
    let tail: String = s.chars().skip(n - 4).collect();
    format!("***{tail}")
}

/// Fingerprint of a raw token string; see [`Pat::fingerprint`].
pub fn fingerprint(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"patrol-pat-fingerprint-v1\0");
    h.update(token.as_bytes());
    hex::encode(&h.finalize()[..8])
}

impl fmt::Debug for Pat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pat({})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_redacts() {
        let p = Pat::new("  ghp_abcdefghijklmnop1234\n").unwrap();
        assert_eq!(p.expose(), "ghp_abcdefghijklmnop1234");
        assert_eq!(p.redacted(), "***1234");
        assert_eq!(format!("{p:?}"), "Pat(***1234)");
        assert!(!format!("{p:?}").contains("abcdefgh"));
        assert!(Pat::new(" \n\t").is_none());
        assert_eq!(redact("short"), "***");
    }

    #[test]
    fn fingerprint_is_stable_and_distinct() {
        let a = Pat::new("ghp_aaaaaaaaaaaaaaaaaaaa").unwrap();
        let b = Pat::new("ghp_aaaaaaaaaaaaaaaaaaab").unwrap();
        assert_eq!(a.fingerprint(), Pat::new("ghp_aaaaaaaaaaaaaaaaaaaa\n").unwrap().fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 16);
        assert!(!a.fingerprint().contains("aaaa"));
    }
}
