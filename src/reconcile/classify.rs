//! Transient or permanent? Classifying validators' free-text reasons, the only signal gittensor gives
//! (docs/gittensor-pat-semantics.md §2.2, §2.3, §2.6). Pure and table-tested.
//!
//! The upstream bug this exists for: a GraphQL test query that hit a GitHub 5xx or a network error is
//! reported as `invalid_pat` ("PAT test query failed: GitHub GraphQL API returned 502"), which tells
//! the miner to rotate a working token. patrol reads the reason and treats those as transient.

/// Whether retrying later can change the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// A blip at GitHub, the network or the validator's store: retry later, don't re-send now.
    Transient,
    /// The PAT or our registration is the problem: retrying with the same PAT won't help.
    Permanent,
}

const TRANSIENT_MARKERS: &[&str] = &[
    "temporarily unavailable",
    "failed transiently",
    "please retry",
    "retry the",
    "rate limit",
    "timed out",
    "timeout",
    "connection",
    "max retries",
    "remote end closed",
    "remotedisconnected",
    "httpsconnectionpool",
    "name resolution",
    "temporary failure",
];

const PERMANENT_MARKERS: &[&str] = &[
    "not registered",
    "identity is locked",
    "no github id found",
    "no github pat provided",
    "graphql error",
    "fine-grained",
    "bad credentials",
];

/// HTTP status inside "GitHub GraphQL API returned <code>".
fn returned_status(reason: &str) -> Option<u16> {
    let i = reason.find("returned ")?;
    reason[i + 9..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn is_transient_status(code: u16) -> bool {
    code >= 500 || code == 408 || code == 429
}

/// Classify the `rejection_reason` of an `invalid_pat` check answer (has_pat, pat_valid=false).
pub fn invalid_pat_reason(reason: Option<&str>) -> Persistence {
    let Some(r) = reason else { return Persistence::Permanent };
    let lower = r.to_ascii_lowercase();
    if let Some(code) = returned_status(&lower) {
        return if is_transient_status(code) { Persistence::Transient } else { Persistence::Permanent };
    }
    if PERMANENT_MARKERS.iter().any(|m| lower.contains(m)) {
        return Persistence::Permanent;
    }
    // "PAT test query failed: <requests exception text>" — a transport error on the validator side.
    if TRANSIENT_MARKERS.iter().any(|m| lower.contains(m)) {
        return Persistence::Transient;
    }
    Persistence::Permanent
}

/// Does a reason text say, in words we know, that retrying later will help ("temporarily
/// unavailable", "please retry", a GitHub 5xx/429)? Such rejections back off forever (capped);
/// only *unrecognised* texts count toward the reconciler's `max_rejections`.
pub fn is_known_transient(reason: Option<&str>) -> bool {
    let Some(r) = reason else { return false };
    let lower = r.to_ascii_lowercase();
    if let Some(code) = returned_status(&lower) {
        return is_transient_status(code);
    }
    !PERMANENT_MARKERS.iter().any(|m| lower.contains(m)) && TRANSIENT_MARKERS.iter().any(|m| lower.contains(m))
}

/// Classify the `rejection_reason` of a broadcast answered with `accepted=false`. Unknown texts are
/// transient: the backoff bounds how often we retry, and the reconciler turns a repeated rejection
/// with an unrecognised reason into a terminal one after `max_rejections`.
pub fn broadcast_rejection(reason: Option<&str>) -> Persistence {
    let Some(r) = reason else { return Persistence::Transient };
    let lower = r.to_ascii_lowercase();
    if let Some(code) = returned_status(&lower) {
        return if is_transient_status(code) { Persistence::Transient } else { Persistence::Permanent };
    }
    if PERMANENT_MARKERS.iter().any(|m| lower.contains(m)) {
        return Persistence::Permanent;
    }
    Persistence::Transient
}

#[cfg(test)]
mod tests {
    use super::*;
    use Persistence::*;

    #[test]
    fn invalid_pat_reasons() {
        for (reason, want) in [
            ("PAT test query failed: GitHub GraphQL API returned 502", Transient),
            ("PAT test query failed: GitHub GraphQL API returned 503", Transient),
            ("PAT test query failed: GitHub GraphQL API returned 429", Transient),
            ("PAT test query failed: GitHub GraphQL API returned 401", Permanent),
            ("PAT test query failed: GraphQL error: Resource not accessible", Permanent),
            ("PAT test query failed: Fine-grained PATs need 'Public Repositories (read-only)' permission", Permanent),
            ("PAT test query failed: HTTPSConnectionPool(host='api.github.com', port=443): Read timed out.", Transient),
            ("PAT test query failed: ('Connection aborted.', RemoteDisconnected('Remote end closed'))", Transient),
            ("No Github id found for miner 12's PAT", Permanent),
            ("something new", Permanent),
        ] {
            assert_eq!(invalid_pat_reason(Some(reason)), want, "{reason}");
        }
        assert_eq!(invalid_pat_reason(None), Permanent);
    }

    #[test]
    fn broadcast_reasons() {
        for (reason, want) in [
            ("Hotkey not registered on subnet", Permanent),
            (
                "GitHub identity is locked for this hotkey. Deregister and re-register to change GitHub accounts.",
                Permanent,
            ),
            ("No Github id found for miner 3's PAT", Permanent),
            ("No Github PAT provided by miner 3", Permanent),
            ("PAT test query failed: GraphQL error: x", Permanent),
            ("PAT test query failed: GitHub GraphQL API returned 500", Transient),
            ("Could not validate Github id for miner 3: GitHub /user lookup failed transiently", Transient),
            (
                "Validator PAT store temporarily unavailable; please retry. ([Errno 28] No space left on device)",
                Transient,
            ),
            (
                "GitHub API temporarily unavailable during PAT test query; retry the broadcast in a few minutes. (503)",
                Transient,
            ),
            ("who knows", Transient),
        ] {
            assert_eq!(broadcast_rejection(Some(reason)), want, "{reason}");
        }
        assert!(is_known_transient(Some("Validator PAT store temporarily unavailable; please retry. (x)")));
        assert!(is_known_transient(Some("PAT test query failed: GitHub GraphQL API returned 503")));
        assert!(!is_known_transient(Some("who knows")));
        assert!(!is_known_transient(Some("GitHub identity is locked for this hotkey.")));
        assert!(!is_known_transient(None));
    }
}
