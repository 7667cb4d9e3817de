//! Validators' free-text reasons, read once: transient or permanent, and what a miner can do about a
//! rejection. These texts are the only signal gittensor gives (docs/gittensor-pat-semantics.md
//! §2.2, §2.3, §2.6); no other module of patrol reads them. Pure and table-tested.
//!
//! The upstream bug this exists for: a GraphQL test query that hit a GitHub 5xx or a network error is
//! reported as `invalid_pat` ("PAT test query failed: GitHub GraphQL API returned 502"), which tells
//! the miner to rotate a working token. patrol reads the reason and treats those as transient.

use super::Refusal;

/// Whether retrying later can change the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// A blip at GitHub, the network or the validator's store: retry later, don't re-send now.
    Transient,
    /// The PAT or our registration is the problem: retrying with the same PAT won't help.
    Permanent,
}

/// Words a transport or store failure uses (Python `requests`/`urllib3` texts, reqwest texts, the
/// validator's own "please retry").
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

/// Words of verdicts about the PAT or the registration.
const PERMANENT_MARKERS: &[&str] = &[
    "not registered",
    "identity is locked",
    "no github id found",
    "no github pat provided",
    "graphql error",
    "fine-grained",
    "bad credentials",
];

/// The start of gittensor's `_test_pat_against_repo` failure reason.
const TEST_QUERY_PREFIX: &str = "PAT test query failed:";

/// gittensor's viewer-null detail (a fine-grained PAT without the repository permission).
const VIEWER_NULL: &str = "Fine-grained PATs need";

/// HTTP status inside "... returned <code>".
fn returned_status(reason: &str) -> Option<u16> {
    let i = reason.find("returned ")?;
    reason[i + 9..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn is_transient_status(code: u16) -> bool {
    code >= 500 || code == 408 || code == 429
}

/// A test-query failure detail (what follows "PAT test query failed: "): a 5xx/408/429 status, a
/// rate-limited GraphQL error and any transport or JSON error text are transient; other statuses,
/// GraphQL errors and the viewer-null text are verdicts on the PAT.
pub fn test_query_failure(detail: &str) -> Persistence {
    let detail = detail.trim();
    let detail = detail.strip_prefix(TEST_QUERY_PREFIX).map_or(detail, str::trim_start);
    let code = detail
        .strip_prefix("GitHub GraphQL API returned ")
        .or_else(|| detail.strip_prefix("GitHub API returned "))
        .map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next().unwrap_or_default().parse::<u16>());
    let transient = match code {
        Some(Ok(code)) => is_transient_status(code),
        Some(Err(_)) => false,
        None if detail.starts_with("GraphQL error:") => detail.to_lowercase().contains("rate limit"),
        None => !detail.starts_with(VIEWER_NULL),
    };
    if transient { Persistence::Transient } else { Persistence::Permanent }
}

/// What the words of a reason say, when they say anything: a `returned <status>`, a verdict on the
/// PAT or the registration, or a transport/store failure. `None`: nothing we recognise.
fn verdict(reason: &str) -> Option<Persistence> {
    let lower = reason.to_ascii_lowercase();
    if let Some(code) = returned_status(&lower) {
        return Some(if is_transient_status(code) { Persistence::Transient } else { Persistence::Permanent });
    }
    if PERMANENT_MARKERS.iter().any(|m| lower.contains(m)) {
        return Some(Persistence::Permanent);
    }
    TRANSIENT_MARKERS.iter().any(|m| lower.contains(m)).then_some(Persistence::Transient)
}

/// Classify the `rejection_reason` of an `invalid_pat` check answer (has_pat, pat_valid=false).
/// Unknown texts are permanent: calling a dead PAT covered would leave the miner unscored silently,
/// while a needless re-broadcast only costs the validator two GitHub calls.
pub fn invalid_pat_reason(reason: Option<&str>) -> Persistence {
    let Some(r) = reason else { return Persistence::Permanent };
    if r.trim_start().starts_with(TEST_QUERY_PREFIX) {
        return test_query_failure(r);
    }
    verdict(r).unwrap_or(Persistence::Permanent)
}

/// Classify the `rejection_reason` of a broadcast answered with `accepted=false`. Texts we know to
/// mean "retry later" back off for as long as they last; unknown texts are retried with backoff and
/// become terminal after the reconciler's `max_rejections` in a row.
pub fn broadcast_refusal(reason: Option<&str>) -> Refusal {
    match reason.and_then(verdict) {
        Some(Persistence::Permanent) => Refusal::Permanent,
        Some(Persistence::Transient) => Refusal::KnownTransient,
        None => Refusal::Unknown,
    }
}

/// What the miner can do about an HTTP rejection whose cause is on this side, for the `hint` of a
/// row; `None` when there is nothing specific to say.
///
/// Today that is the axon's nonce check (bittensor's `default_verify`, docs
/// `bittensor-wire-protocol.md` §5.1), which answers 401 with, after "Not Verified with error: ",
/// either "Nonce is too old: acceptable delta is A seconds but request was B seconds old" (first
/// contact: our nonce, i.e. this machine's clock, is more than 4 s + the timeout behind the
/// validator's clock) or "Nonce is too old, a newer one was last processed" (it already saw a later
/// nonce from this process: the clock stepped back, or a request was replayed). Both mean every
/// request to that validator fails until the clocks agree; a bare "rejected with HTTP 401" would
/// hide it.
pub fn rejection_hint(status: u16, message: &str) -> Option<String> {
    if status != 401 || !message.contains("Nonce is too old") {
        return None;
    }
    const FIX: &str =
        "check this machine's clock (NTP: timedatectl set-ntp true; `patrol doctor` compares it with the chain's)";
    if message.contains("a newer one was last processed") {
        return Some(format!(
            "the validator rejected the request nonce: it already saw a newer one from this process (the clock \
             stepped back?); {FIX}"
        ));
    }
    let number = |s: &str| s.trim().parse::<f64>().ok().filter(|x| x.is_finite());
    let ages = message
        .split_once("acceptable delta is ")
        .and_then(|(_, rest)| rest.split_once(" seconds but request was "))
        .and_then(|(allowed, rest)| Some((number(allowed)?, number(rest.split_once(" seconds")?.0)?)));
    Some(match ages {
        Some((allowed, age)) => format!(
            "the validator rejected the request nonce as too old: by its clock the request was {age:.1} s old and \
             it accepts {allowed:.1} s, so this machine's clock is behind the validator's; {FIX}"
        ),
        None => format!(
            "the validator rejected the request nonce as too old: this machine's clock is behind the validator's; {FIX}"
        ),
    })
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
            ("PAT test query failed: GraphQL error: API rate limit exceeded for user", Transient),
            ("PAT test query failed: Fine-grained PATs need 'Public Repositories (read-only)' permission", Permanent),
            ("PAT test query failed: HTTPSConnectionPool(host='api.github.com', port=443): Read timed out.", Transient),
            ("PAT test query failed: ('Connection aborted.', RemoteDisconnected('Remote end closed'))", Transient),
            ("PAT test query failed: Expecting value: line 1 column 1 (char 0)", Transient),
            ("No Github id found for miner 12's PAT", Permanent),
            ("Could not validate Github id for miner 3: GitHub /user lookup failed transiently", Transient),
            ("something new", Permanent),
        ] {
            assert_eq!(invalid_pat_reason(Some(reason)), want, "{reason}");
        }
        assert_eq!(invalid_pat_reason(None), Permanent);
    }

    /// The details our own validator library writes after "PAT test query failed: " (fixed mode):
    /// the miner side must read every transient one as transient.
    #[test]
    fn test_query_details() {
        #[rustfmt::skip]
        let table = [
            ("GitHub GraphQL API returned 503", Transient),
            ("GitHub GraphQL API returned 429", Transient),
            ("GitHub GraphQL API returned 408", Transient),
            ("GitHub GraphQL API returned 401", Permanent),
            ("GitHub GraphQL API returned 403", Permanent),
            ("GitHub API returned 500", Transient),
            ("GraphQL error: Bad credentials", Permanent),
            ("GraphQL error: API rate limit exceeded for user", Transient),
            ("Fine-grained PATs need 'Public Repositories (read-only)' permission", Permanent),
            ("HTTPSConnectionPool(host='api.github.com', port=443): Read timed out. (read timeout=15)", Transient),
            ("('Connection aborted.', RemoteDisconnected('Remote end closed connection without response'))", Transient),
            ("Expecting value: line 1 column 1 (char 0)", Transient),
        ];
        for (detail, want) in table {
            assert_eq!(test_query_failure(detail), want, "{detail}");
            assert_eq!(invalid_pat_reason(Some(&format!("{TEST_QUERY_PREFIX} {detail}"))), want, "{detail}");
        }
    }

    #[test]
    fn broadcast_reasons() {
        for (reason, want) in [
            ("Hotkey not registered on subnet", Refusal::Permanent),
            (
                "GitHub identity is locked for this hotkey. Deregister and re-register to change GitHub accounts.",
                Refusal::Permanent,
            ),
            ("No Github id found for miner 3's PAT", Refusal::Permanent),
            ("No Github PAT provided by miner 3", Refusal::Permanent),
            ("PAT test query failed: GraphQL error: x", Refusal::Permanent),
            ("PAT test query failed: GitHub GraphQL API returned 500", Refusal::KnownTransient),
            (
                "Could not validate Github id for miner 3: GitHub /user lookup failed transiently",
                Refusal::KnownTransient,
            ),
            (
                "Validator PAT store temporarily unavailable; please retry. ([Errno 28] No space left on device)",
                Refusal::KnownTransient,
            ),
            (
                "GitHub API temporarily unavailable during PAT test query; retry the broadcast in a few minutes. (503)",
                Refusal::KnownTransient,
            ),
            ("who knows", Refusal::Unknown),
        ] {
            assert_eq!(broadcast_refusal(Some(reason)), want, "{reason}");
        }
        assert_eq!(broadcast_refusal(None), Refusal::Unknown);
    }

    #[test]
    fn nonce_rejections_get_a_clock_hint() {
        // The Python axon's texts, as recorded in tests/data/vectors/axon_responses.json (real bt.Axon).
        let old = "Not Verified with error: Nonce is too old: acceptable delta is 16.00 seconds but request was 60.01 seconds old";
        let hint = rejection_hint(401, old).unwrap();
        assert!(hint.contains("request nonce") && hint.contains("NTP"), "{hint}");
        assert!(hint.contains("60.0 s old") && hint.contains("accepts 16.0 s"), "{hint}");
        let newer = "Not Verified with error: Nonce is too old, a newer one was last processed";
        let hint = rejection_hint(401, newer).unwrap();
        assert!(hint.contains("request nonce") && hint.contains("clock"), "{hint}");
        // numbers that do not parse: still the hint, without them
        let odd =
            "Not Verified with error: Nonce is too old: acceptable delta is x seconds but request was y seconds old";
        assert!(!rejection_hint(401, odd).unwrap().contains(" s old"));
        // other rejections: nothing to add
        assert_eq!(rejection_hint(401, "Not Verified with error: Signature mismatch with 1.2.3 and 0xab"), None);
        assert_eq!(rejection_hint(401, "Not Verified with error: Missing Nonce"), None);
        assert_eq!(rejection_hint(403, old), None, "only the axon's 401");
        assert_eq!(rejection_hint(500, "Internal Server Error"), None);
    }
}
