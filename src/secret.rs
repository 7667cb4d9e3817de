//! The GitHub PAT (and notification URLs) as values that cannot leak by accident.
//!
//! `Pat` has no `Display`, a redacting `Debug`, and no `Serialize`: the only way to read the token is
//! [`Pat::expose`], which the wire and GitHub modules call at the moment they send it. Everything that
//! needs to *talk about* the PAT (state files, logs, JSON) uses [`Pat::redacted`] (`***` + last 4) or
//! [`Pat::fingerprint`] (a one-way tag that says whether two PATs are the same).

use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt;

/// A secret as read from a file or a flag: surrounding whitespace dropped, `None` when nothing is
/// left.
fn trimmed(raw: &str) -> Option<String> {
    Some(raw.trim()).filter(|t| !t.is_empty()).map(str::to_string)
}

/// A GitHub personal access token. Whitespace around it is trimmed on construction (a credential file
/// usually ends in a newline, which upstream forwards verbatim and which makes every GitHub call fail).
#[derive(Clone, PartialEq, Eq)]
pub struct Pat(String);

impl Pat {
    /// Wrap a token, trimming surrounding whitespace. Returns `None` when nothing is left.
    pub fn new(raw: &str) -> Option<Pat> {
        trimmed(raw).map(Pat)
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

/// The prefixes GitHub gives its tokens (classic PAT, OAuth, user-to-server, server-to-server,
/// refresh, fine-grained PAT).
const TOKEN_PREFIXES: [&str; 6] = ["github_pat_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_"];

/// A matched token shorter than this shows no tail at all: `***` + last 4 of a short string would
/// show most of it. Real tokens are 40 (classic) or 93 (fine-grained) characters.
const MIN_TAIL_LEN: usize = 16;

/// One line for an error and its causes, each joined with ": " — the one renderer of an error
/// chain. Errors keep their cause in `source()`, never in their own
/// text; a cause whose text the line already shows (another crate's error that prints its source)
/// is not repeated. Tokens are redacted ([`redact_tokens`]): errors quote paths and values the
/// user typed, and a PAT pasted as `--pat-file`, `--config` or `--network` must not be echoed.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    redact_tokens(&out).into_owned()
}

/// Replace every secret patrol can recognise in `text`: GitHub tokens ([`redact_github_tokens`])
/// and the secret parts of notification URLs ([`redact_hook_paths`]: a Discord or Slack webhook's
/// path, a Telegram bot token). For text that leaves the process and may quote user input: an
/// error message, a log line. Borrows when there is nothing to redact.
pub fn redact_tokens(text: &str) -> Cow<'_, str> {
    match redact_github_tokens(text) {
        Cow::Borrowed(t) => redact_hook_paths(t),
        Cow::Owned(s) => Cow::Owned(redact_hook_paths(&s).into_owned()),
    }
}

/// Replace everything in `text` that looks like a GitHub token — one of the prefixes `ghp_`,
/// `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_` followed by token characters (`A-Z a-z 0-9 _`),
/// wherever it starts (a token glued to other text is still a token) — by `***` + its last 4
/// characters (`***` alone for a match shorter than 16 characters). Borrows when there is nothing
/// to redact.
pub fn redact_github_tokens(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let is_token_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    splice(text, |i| {
        let Some(prefix) = TOKEN_PREFIXES.iter().find(|p| bytes[i..].starts_with(p.as_bytes())) else {
            return Found::Nothing(i + 1);
        };
        let body = i + prefix.len();
        let end = body + bytes[body..].iter().take_while(|b| is_token_byte(**b)).count();
        if end == body {
            return Found::Nothing(body);
        }
        // Every byte of the match is ASCII, so `i` and `end` are char boundaries.
        let token = &text[i..end];
        let with = if token.len() < MIN_TAIL_LEN { "***".to_string() } else { redact(token) };
        Found::Secret { start: i, end, with }
    })
}

/// What a redaction scan found at one byte index of the text ([`splice`]).
enum Found {
    /// No secret starts here: go on from this index.
    Nothing(usize),
    /// `text[start..end]` is a secret, shown as `with`; the scan goes on after it.
    Secret { start: usize, end: usize, with: String },
}

/// Copy `text` with every secret `at` finds replaced: the one scan behind both redactions, so a
/// fix to it (boundaries, the borrowed fast path) is made once. Borrows when nothing was found.
/// `at` is asked at byte indices; the `start`/`end` it returns must be char boundaries.
fn splice(text: &str, mut at: impl FnMut(usize) -> Found) -> Cow<'_, str> {
    let mut out: Option<String> = None;
    // `copied`: bytes of `text` before this index are already in `out`.
    let mut copied = 0;
    let mut i = 0;
    while i < text.len() {
        match at(i) {
            Found::Nothing(next) => i = next,
            Found::Secret { start, end, with } => {
                let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
                o.push_str(&text[copied..start]);
                o.push_str(&with);
                copied = end;
                i = end;
            }
        }
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(&text[copied..]);
            Cow::Owned(o)
        }
    }
}

/// The most characters of another party's text patrol keeps ([`foreign_text`]): the same bound as
/// the HTTP error messages it already capped. Real validator reasons are under 200 characters.
pub const FOREIGN_TEXT_MAX: usize = 512;

/// Text another party wrote — a validator's `rejection_reason`, the message of its HTTP error, a
/// redirect's `Location` — made safe to print, log, store and serialise. Done once, where the text
/// enters patrol (the dendrite), so every consumer gets this form:
/// - anything shaped like a GitHub token is redacted ([`redact_tokens`]): a validator that quotes
///   its input (pydantic's `input_value='ghp_…'`) must not put our PAT in a table, a log or a file;
/// - control characters cannot reach a terminal or a log line: `\n`, `\r`, `\t` become those two
///   characters, every other C0/C1 control (ESC of `ESC[2J`, an OSC title's BEL, DEL) and the
///   invisible bidi/format characters (U+202E and friends, which reorder what a terminal shows)
///   become `\u{…}`;
/// - at most [`FOREIGN_TEXT_MAX`] characters, the last one `…` when something was cut.
///
/// Classification reads this form too: the words it looks for are plain text at the start of
/// every reason a validator really sends, which redaction, escaping and the cap leave intact.
pub fn foreign_text(raw: &str) -> String {
    let redacted = redact_tokens(raw);
    let mut out = String::with_capacity(redacted.len().min(FOREIGN_TEXT_MAX + 8));
    let mut chars = 0;
    // The length of `out` (bytes) that still leaves room for the `…` of a cut.
    let mut fits_with_ellipsis = 0;
    let mut piece = String::new();
    for c in redacted.chars() {
        piece.clear();
        escape_foreign(c, &mut piece);
        let n = piece.chars().count();
        if chars + n > FOREIGN_TEXT_MAX {
            out.truncate(fits_with_ellipsis);
            out.push('…');
            return out;
        }
        out.push_str(&piece);
        chars += n;
        if chars < FOREIGN_TEXT_MAX {
            fits_with_ellipsis = out.len();
        }
    }
    out
}

/// One character of [`foreign_text`]: itself, or its escape.
fn escape_foreign(c: char, out: &mut String) {
    use std::fmt::Write as _;
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_control() || is_invisible_format(c) => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

/// Bidi overrides, embeddings and isolates, zero-width characters, line/paragraph separators and
/// the BOM: invisible, and able to make a terminal show text in another order than it is.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// Where a notification URL's secret starts, recognisable in any text: what follows the marker up
/// to the end of the URL is the secret (a Discord webhook's id and token, a Slack webhook's
/// workspace/channel/secret path); for Telegram the bot token (`bot<id>:<secret>`) up to the next
/// `/`.
const HOOK_MARKERS: [(&str, bool); 4] = [
    ("/api/webhooks/", false),
    ("hooks.slack.com/services/", false),
    ("hooks.slack.com/workflows/", false),
    ("/bot", true),
];

/// Does `b` end a URL in running text (a log line, an error, a TOML excerpt)?
fn ends_url(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'<' | b'>' | b')' | b']' | b'}' | b',' | b'`')
}

/// Replace the secret parts of notification URLs in `text` by `***` (see [`HOOK_MARKERS`]):
/// `https://discord.com/api/webhooks/***`, `https://hooks.slack.com/services/***`,
/// `https://api.telegram.org/bot***/sendMessage`. URLs of other services (an ntfy topic, a
/// generic webhook) have no recognisable shape: they are held as [`HookUrl`] and never printed
/// whole. Borrows when there is nothing to redact.
pub fn redact_hook_paths(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    splice(text, |i| {
        let Some((marker, telegram)) = HOOK_MARKERS.iter().find(|(m, _)| bytes[i..].starts_with(m.as_bytes())) else {
            return Found::Nothing(i + 1);
        };
        let start = i + marker.len();
        let rest = &bytes[start..];
        let len = if *telegram {
            // `bot` + digits + `:` + token characters: anything else is not a bot token
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 || rest.get(digits) != Some(&b':') {
                return Found::Nothing(start);
            }
            rest.iter().take_while(|b| !ends_url(**b) && **b != b'/' && **b != b'?').count()
        } else {
            rest.iter().take_while(|b| !ends_url(**b)).count()
        };
        if len == 0 {
            return Found::Nothing(start);
        }
        // The marker and the secret are ASCII-delimited: `start` and `start + len` are boundaries.
        Found::Secret { start, end: start + len, with: "***".to_string() }
    })
}

/// A notification URL — a webhook, a Telegram URL with its bot token, an ntfy topic, a dead-man
/// ping URL. Whoever has it can post as patrol (or keep a dead-man switch quiet), so it is a
/// secret like the PAT: no `Display`, a `Debug` and [`HookUrl::shown`] of `scheme://host/***`,
/// and [`HookUrl::expose`] only where it is sent to.
#[derive(Clone, PartialEq, Eq)]
pub struct HookUrl(String);

impl HookUrl {
    /// Wrap a URL, trimming surrounding whitespace (a credential file ends in a newline).
    /// `None` when nothing is left.
    pub fn new(raw: &str) -> Option<HookUrl> {
        trimmed(raw).map(HookUrl)
    }

    /// The URL itself. Call only where a request is made to it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `scheme://host[:port]/***`: the only form patrol prints, logs or stores (the path, query
    /// and userinfo may each be the secret).
    pub fn shown(&self) -> String {
        let (scheme, rest) = match self.0.find("://") {
            Some(i) => self.0.split_at(i + 3),
            None => ("", self.0.as_str()),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        format!("{scheme}{host}/***")
    }

    /// `text` with this URL, and every part of it that could be the secret, replaced: the whole
    /// URL by its shown form, the userinfo, the path and the query (whole and each segment or
    /// value of 6 characters or more) by `***`; then [`redact_tokens`]. For messages of libraries
    /// that may quote the URL.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(self.expose(), &self.shown());
        let (_, rest) = self.0.split_once("://").unwrap_or(("", &self.0));
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let mut parts: Vec<&str> = vec![tail];
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            parts.push(userinfo);
            parts.extend(userinfo.split(':'));
        }
        parts.extend(tail.split(['/', '?', '&', '=', '#', ':']));
        parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in parts {
            if p.len() >= 6 {
                out = out.replace(p, "***");
            }
        }
        redact_tokens(&out).into_owned()
    }
}

impl fmt::Debug for HookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HookUrl({})", self.shown())
    }
}

/// Fingerprint of a raw token string; see [`Pat::fingerprint`].
pub fn fingerprint(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"patrol-pat-fingerprint-v1\0");
    h.update(token.as_bytes());
    hex::encode(&h.finalize()[..8])
}

/// An endpoint URL that may carry credentials: userinfo (`wss://user:TOKEN@host`), an API key in
/// the query (`?apikey=KEY`) or as a path segment (`wss://host/<key>`, as some RPC providers issue
/// them). [`Display`](fmt::Display) and `Debug` show it without those ([`SecretUrl::shown`]); only
/// [`SecretUrl::expose`] gives the URL to connect to, and a file named after the endpoint uses
/// [`SecretUrl::tag`], a hash.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(std::sync::Arc<UrlForms>);

/// Shared: a client, the settings and the jobs that carry them clone it cheaply.
#[derive(PartialEq, Eq)]
struct UrlForms {
    full: String,
    shown: String,
}

impl SecretUrl {
    pub fn new(url: &str) -> SecretUrl {
        SecretUrl(std::sync::Arc::new(UrlForms { full: url.to_string(), shown: shown_url(url) }))
    }

    /// The URL itself. Call only where it is connected to.
    pub fn expose(&self) -> &str {
        &self.0.full
    }

    /// `scheme://host[:port]/path` without userinfo, query and fragment, with path segments that
    /// look like keys replaced by `***`: the only form patrol prints, logs or stores.
    pub fn shown(&self) -> &str {
        &self.0.shown
    }

    /// A stable one-way tag of the whole URL (16 hex characters): distinct per endpoint,
    /// credentials included, without showing them.
    pub fn tag(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"patrol-endpoint-v1\0");
        h.update(self.0.full.as_bytes());
        hex::encode(&h.finalize()[..8])
    }

    /// `text` (an error message of the RPC library, which may quote the URL) with the URL and each
    /// of its credential parts replaced: the URL by its shown form, the parts by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(self.expose(), self.shown());
        for part in secret_parts(self.expose()) {
            // Short parts ("1", "ws") would replace innocent text and are no credential.
            if part.len() >= 6 {
                out = out.replace(part, "***");
            }
        }
        out
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.shown())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.shown())
    }
}

/// `scheme://`, the authority and the rest of `url` (a text without `://` is all authority).
fn split_url(url: &str) -> (&str, &str, &str) {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    (scheme, &rest[..end], &rest[end..])
}

/// The userinfo, the query and fragment (whole and each value), and the key-like path segments.
fn secret_parts(url: &str) -> Vec<&str> {
    let (_, authority, rest) = split_url(url);
    let mut parts = Vec::new();
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        parts.push(userinfo);
        parts.extend(userinfo.split(':'));
    }
    let path_end = rest.find(['?', '#']).unwrap_or(rest.len());
    parts.extend(rest[..path_end].split('/').filter(|s| looks_like_key(s)));
    let tail = &rest[path_end..];
    if !tail.is_empty() {
        parts.push(&tail[1..]);
        parts.extend(tail[1..].split(['&', '#', ';']).map(|kv| kv.split_once('=').map_or(kv, |(_, v)| v)));
    }
    parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
    parts
}

/// A path segment that is a key rather than a name: 16 or more characters of `A-Z a-z 0-9 - _`
/// with both letters and digits (a UUID, a hex or base62 key).
fn looks_like_key(segment: &str) -> bool {
    segment.len() >= 16
        && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && segment.bytes().any(|b| b.is_ascii_digit())
        && segment.bytes().any(|b| b.is_ascii_alphabetic())
}

fn shown_url(url: &str) -> String {
    let (scheme, authority, rest) = split_url(url);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let path = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    let path: Vec<&str> = path.split('/').map(|s| if looks_like_key(s) { "***" } else { s }).collect();
    format!("{scheme}{host}{}", path.join("/"))
}

impl fmt::Debug for Pat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pat({})", self.redacted())
    }
}

#[cfg(test)]
mod tests;
