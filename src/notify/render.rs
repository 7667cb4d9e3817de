//! One message per target per batch, in each service's format and within its size limit:
//!
//! | kind | request | limit |
//! |---|---|---|
//! | Discord | `POST` JSON `{"content", "username", "allowed_mentions"}` | content 2,000 characters |
//! | Slack | `POST` JSON `{"text", "blocks": [header, section…]}` | header 150, section 3,000 characters, 50 blocks |
//! | Telegram | `POST` JSON `{"chat_id", "text", …}` (the URL's query moves into the body) | text 4,096 characters |
//! | ntfy | `POST` text, headers `Title`, `Priority`, `Tags` (URL userinfo → `Authorization`) | 4,096 bytes |
//! | webhook | `POST` JSON, the versioned payload of docs/notifications.md | every event |
//!
//! A batch's lines go critical first; when they do not all fit, the message names the first ones
//! and says how many more there are.

use base64::Engine as _;
use serde_json::{Value, json};

use super::event::{Event, EventKind, human};
use super::target::Target;
use crate::config::{Severity, TargetKind};
use crate::reconcile::core::rfc3339;

/// The generic webhook payload's version (docs/notifications.md).
pub const PAYLOAD_VERSION: u32 = 1;

/// Discord's `content` limit.
pub const DISCORD_MAX: usize = 2000;
/// Telegram's `text` limit.
pub const TELEGRAM_MAX: usize = 4096;
/// ntfy turns a longer body into an attachment.
pub const NTFY_MAX_BYTES: usize = 4096;
/// Slack: a `section` block's text, a `header` block's text, blocks per message.
pub const SLACK_SECTION_MAX: usize = 3000;
pub const SLACK_HEADER_MAX: usize = 150;
pub const SLACK_MAX_BLOCKS: usize = 50;
/// The webhook's `text` (the full list is in `events`).
pub const WEBHOOK_TEXT_MAX: usize = 4096;

/// An HTTP request to make (the URL is the secret: only the delivery sees it).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `GET` (Uptime Kuma's push) instead of `POST`.
    pub get: bool,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The message `events` make for `target` (`host` names the machine).
pub fn render(target: &Target, events: &[Event], host: &str) -> Message {
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.resolved.cmp(&b.resolved)).then(a.kind.cmp(&b.kind)));
    let header = header(&sorted, host);
    let several_miners = {
        let mut m: Vec<&str> = sorted.iter().map(|e| e.miner.as_str()).filter(|m| !m.is_empty()).collect();
        m.dedup();
        m.len() > 1
    };
    let lines: Vec<String> = sorted.iter().map(|e| line(e, several_miners)).collect();
    let url = target.url.expose().to_string();
    let json_body = |v: Value| v.to_string().into_bytes();
    let json_headers = vec![("content-type".to_string(), "application/json".to_string())];
    match target.kind {
        TargetKind::Discord => Message {
            get: false,
            url,
            headers: json_headers,
            body: json_body(json!({
                "content": fit(&header, &lines, DISCORD_MAX),
                "username": "patrol",
                "allowed_mentions": {"parse": []},
            })),
        },
        TargetKind::Slack => slack(url, &header, &lines),
        TargetKind::Telegram => telegram(&url, &fit(&header, &lines, TELEGRAM_MAX)),
        TargetKind::Ntfy => ntfy(&url, &sorted, &header, &lines),
        TargetKind::Webhook => Message {
            get: false,
            url,
            headers: json_headers,
            body: json_body(payload(&sorted, host, &fit(&header, &lines, WEBHOOK_TEXT_MAX))),
        },
    }
}

/// "patrol on HOST: 1 critical, 3 warning" (or the one event's title when there is one).
fn header(events: &[&Event], host: &str) -> String {
    let count = |s: Severity| events.iter().filter(|e| e.severity == s && !e.resolved).count();
    let resolved = events.iter().filter(|e| e.resolved).count();
    let mut parts: Vec<String> = Severity::ALL
        .iter()
        .rev()
        .map(|s| (count(*s), s.as_str()))
        .filter(|(n, _)| *n > 0)
        .map(|(n, s)| format!("{n} {s}"))
        .collect();
    if resolved > 0 {
        parts.push(format!("{resolved} resolved"));
    }
    format!("patrol on {host}: {}", parts.join(", "))
}

/// One event as a line of text.
fn line(e: &Event, with_miner: bool) -> String {
    let tag = if e.resolved {
        "RESOLVED"
    } else {
        match e.severity {
            Severity::Critical => "CRITICAL",
            Severity::Warning => "WARNING",
            Severity::Info => "INFO",
        }
    };
    let mut s = format!("{tag}: ");
    if with_miner && !e.miner.is_empty() {
        s.push_str(&format!("[{}] ", e.miner));
    }
    s.push_str(&e.title);
    if let Some(v) = &e.validator {
        s.push_str(&format!(" (hotkey {})", prefix(&v.hotkey)));
        if let Some(r) = v.reason.as_deref().filter(|r| !r.is_empty() && !e.resolved) {
            s.push_str(&format!(": {r}"));
        }
    }
    if !e.detail.is_empty() {
        s.push_str(&format!(" — {}", e.detail));
    }
    cap_chars(&s, 400)
}

/// The first 8 characters of a hotkey and `…`.
fn prefix(hotkey: &str) -> String {
    if hotkey.chars().count() <= 10 {
        return hotkey.to_string();
    }
    format!("{}…", hotkey.chars().take(8).collect::<String>())
}

fn cap_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The header and as many lines as fit in `max` characters, then "… and N more".
pub fn fit(header: &str, lines: &[String], max: usize) -> String {
    fit_by(header, lines, max, |s| s.chars().count())
}

/// [`fit`], measuring with `len` (characters, or bytes for ntfy).
fn fit_by(header: &str, lines: &[String], max: usize, len: fn(&str) -> usize) -> String {
    let tail = |n: usize| format!("… and {n} more (`patrol check` shows every validator)");
    let mut out = cap_chars(header, max / 4);
    let mut used = len(&out);
    for (i, l) in lines.iter().enumerate() {
        let n = len(l) + 1;
        let left = lines.len() - i - 1;
        let reserve = if left > 0 { len(&tail(left)) + 1 } else { 0 };
        if used + n + reserve > max {
            out.push('\n');
            out.push_str(&tail(lines.len() - i));
            return out;
        }
        out.push('\n');
        out.push_str(l);
        used += n;
    }
    out
}

fn slack(url: String, header: &str, lines: &[String]) -> Message {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let lines: Vec<String> = lines.iter().map(|l| esc(l)).collect();
    // Sections of up to 3,000 characters; the whole list within 40 sections (the header and the
    // "more" line make the rest of Slack's 50 blocks).
    let text = fit("", &lines, (SLACK_SECTION_MAX - 100) * 40);
    let mut sections: Vec<String> = Vec::new();
    for l in text.lines().filter(|l| !l.is_empty()) {
        match sections.last_mut() {
            Some(s) if s.chars().count() + l.chars().count() < SLACK_SECTION_MAX - 1 => {
                s.push('\n');
                s.push_str(l);
            }
            _ => sections.push(cap_chars(l, SLACK_SECTION_MAX)),
        }
    }
    let mut blocks =
        vec![json!({"type": "header", "text": {"type": "plain_text", "text": cap_chars(header, SLACK_HEADER_MAX)}})];
    blocks.extend(
        sections
            .into_iter()
            .take(SLACK_MAX_BLOCKS - 1)
            .map(|s| json!({"type": "section", "text": {"type": "mrkdwn", "text": s}})),
    );
    Message {
        get: false,
        url,
        headers: vec![("content-type".into(), "application/json".into())],
        body: json!({"text": cap_chars(header, 3000), "blocks": blocks}).to_string().into_bytes(),
    }
}

/// Telegram: the URL's query (`chat_id`, `message_thread_id`, …) goes into the JSON body.
fn telegram(url: &str, text: &str) -> Message {
    let (base, _) = url.split_once('?').unwrap_or((url, ""));
    let mut body = serde_json::Map::new();
    if let Ok(parsed) = reqwest::Url::parse(url) {
        for (k, v) in parsed.query_pairs() {
            body.insert(k.into_owned(), Value::String(v.into_owned()));
        }
    }
    body.insert("text".into(), Value::String(text.to_string()));
    body.insert("disable_web_page_preview".into(), Value::Bool(true));
    Message {
        get: false,
        url: base.to_string(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Value::Object(body).to_string().into_bytes(),
    }
}

/// ntfy: plain text; the URL's userinfo becomes the `Authorization` (an access token as
/// `https://:tk_…@host/topic`, or a user and password).
fn ntfy(url: &str, events: &[&Event], header: &str, lines: &[String]) -> Message {
    let top = events.iter().map(|e| e.severity).max().unwrap_or(Severity::Info);
    let (priority, tag) = match top {
        Severity::Critical => ("5", "rotating_light"),
        Severity::Warning => ("4", "warning"),
        Severity::Info => ("3", "information_source"),
    };
    let title: String = header.chars().map(|c| if c.is_ascii() && !c.is_ascii_control() { c } else { '?' }).collect();
    let mut headers = vec![
        ("title".to_string(), cap_chars(&title, 200)),
        ("priority".to_string(), priority.to_string()),
        ("tags".to_string(), tag.to_string()),
        ("content-type".to_string(), "text/plain; charset=utf-8".to_string()),
    ];
    let mut url = url.to_string();
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@').filter(|(u, _)| !u.contains('/'))
    {
        let auth = base64::engine::general_purpose::STANDARD.encode(userinfo.as_bytes());
        headers.push(("authorization".into(), format!("Basic {auth}")));
        url = format!("{scheme}://{host}");
    }
    // bytes, not characters
    let text = fit_by("", lines, NTFY_MAX_BYTES, str::len);
    Message { get: false, url, headers, body: text.trim_start().as_bytes().to_vec() }
}

/// The generic webhook payload, version [`PAYLOAD_VERSION`] (docs/notifications.md).
pub fn payload(events: &[&Event], host: &str, text: &str) -> Value {
    let max = events.iter().map(|e| e.severity).max().unwrap_or(Severity::Info);
    json!({
        "version": PAYLOAD_VERSION,
        "source": "patrol",
        "host": host,
        "sent_at": rfc3339(events.iter().map(|e| e.at).max().unwrap_or(0)),
        "max_severity": max.as_str(),
        "test": events.iter().any(|e| e.kind == EventKind::Test),
        "text": text,
        "events": events.iter().map(|e| {
            let mut v = json!({
                "kind": e.kind.as_str(),
                "severity": e.severity.as_str(),
                "resolved": e.resolved,
                "at": rfc3339(e.at),
                "miner": e.miner,
                "hotkey": e.hotkey,
                "title": e.title,
                "detail": e.detail,
                "validator": null,
            });
            if let Some(val) = &e.validator {
                v["validator"] = json!({
                    "uid": val.uid,
                    "hotkey": val.hotkey,
                    "category": val.category,
                    "reason": val.reason,
                    "since": val.since.map(rfc3339),
                    "uncovered_for_s": val.uncovered_for_s,
                    "uncovered_for": val.uncovered_for_s.map(human),
                });
            }
            v
        }).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests;
