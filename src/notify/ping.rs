//! The dead-man ping: after every round of `patrol run` and every `patrol reconcile`, a request
//! to `[notify] ping` that says whether patrol *could reconcile* — success after every completed
//! pass whatever the coverage (coverage is told through the held events), failure only when no pass
//! could run (no validator source, a config or credential error, an internal error). Whoever
//! watches the URL notices a dead agent, a dead host or a broken cron by its silence.
//!
//! Two styles, told apart by the URL:
//! - healthchecks.io (and compatible): `POST <url>` on success, `POST <url>/fail` on failure, the
//!   body a one-line summary;
//! - Uptime Kuma push monitors (`…/api/push/<token>`): `GET <url>?status=up|down&msg=…&ping=`.
//!
//! Sent off the main loop like the messages; a newer ping replaces one still being retried.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::deliver::{Answer, Count, Poster};
use super::render::Message;
use crate::config::TargetKind;
use crate::secret::HookUrl;

/// The target name pings are counted under (`patrol_notifications_total{target="ping"}`).
pub const PING_NAME: &str = "ping";

/// Retries of one ping (it is repeated every round anyway).
const PING_ATTEMPTS: u32 = 3;

/// The largest summary sent (healthchecks.io keeps 10 KB of a ping's body).
const MAX_BODY: usize = 1000;

/// Which dead-man service the URL is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingKind {
    Healthchecks,
    UptimeKuma,
}

/// A ping URL and its style.
#[derive(Debug, Clone)]
pub struct Ping {
    pub url: HookUrl,
    pub kind: PingKind,
}

impl Ping {
    /// Uptime Kuma when the path is `/api/push/…`; else healthchecks.io style.
    pub fn new(url: HookUrl) -> Ping {
        let kind = if url.expose().contains("/api/push/") { PingKind::UptimeKuma } else { PingKind::Healthchecks };
        Ping { url, kind }
    }

    /// The request saying `ok` (a pass completed) or not, with `msg` as the summary.
    pub fn message(&self, ok: bool, msg: &str) -> Message {
        let msg: String = super::event::short(msg).chars().take(MAX_BODY).collect();
        match self.kind {
            PingKind::Healthchecks => {
                let url = self.url.expose();
                let url = if ok {
                    url.to_string()
                } else {
                    // `/fail` goes on the path, before any query
                    let (path, query) = url.split_once('?').map_or((url, None), |(p, q)| (p, Some(q)));
                    let path = path.trim_end_matches('/');
                    match query {
                        Some(q) => format!("{path}/fail?{q}"),
                        None => format!("{path}/fail"),
                    }
                };
                Message {
                    get: false,
                    url,
                    headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
                    body: msg.into_bytes(),
                }
            }
            PingKind::UptimeKuma => {
                let url = match reqwest::Url::parse(self.url.expose()) {
                    Ok(mut u) => {
                        let keep: Vec<(String, String)> = u
                            .query_pairs()
                            .filter(|(k, _)| !matches!(k.as_ref(), "status" | "msg" | "ping"))
                            .map(|(k, v)| (k.into_owned(), v.into_owned()))
                            .collect();
                        u.query_pairs_mut()
                            .clear()
                            .extend_pairs(keep)
                            .append_pair("status", if ok { "up" } else { "down" })
                            .append_pair("msg", &msg)
                            .append_pair("ping", "");
                        u.to_string()
                    }
                    Err(_) => self.url.expose().to_string(),
                };
                Message { get: true, url, headers: Vec::new(), body: Vec::new() }
            }
        }
    }
}

/// Sends pings in the background: one at a time, a newer one replacing a retrying older one.
pub struct Pinger {
    ping: Ping,
    poster: Arc<dyn Poster>,
    count: Count,
    last: Mutex<Option<tokio::task::JoinHandle<bool>>>,
}

impl Pinger {
    pub fn new(ping: Ping, poster: Arc<dyn Poster>, count: Count) -> Pinger {
        Pinger { ping, poster, count, last: Mutex::new(None) }
    }

    /// The URL as shown.
    pub fn shown(&self) -> String {
        format!(
            "ping ({}, {})",
            if self.ping.kind == PingKind::UptimeKuma { "uptime_kuma" } else { "healthchecks" },
            self.ping.url.shown()
        )
    }

    /// Ping in the background.
    pub fn send(&self, ok: bool, msg: &str) {
        let msg = self.ping.message(ok, msg);
        let (poster, count, shown) = (self.poster.clone(), self.count.clone(), self.shown());
        let task = tokio::spawn(async move { ping_once(&*poster, &msg, &count, &shown).await });
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = last.replace(task) {
            old.abort();
        }
    }

    /// Wait up to `grace` for the last ping; `true` if it was accepted.
    pub async fn flush(&self, grace: Duration) -> bool {
        let task = self.last.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(mut task) = task else { return true };
        match tokio::time::timeout(grace, &mut task).await {
            Ok(Ok(ok)) => ok,
            _ => {
                task.abort();
                false
            }
        }
    }
}

/// One ping with a few retries; `true` when accepted.
pub async fn ping_once(poster: &dyn Poster, msg: &Message, count: &Count, shown: &str) -> bool {
    let mut delay = Duration::from_secs(2);
    for attempt in 1..=PING_ATTEMPTS {
        match poster.post(TargetKind::Webhook, msg).await {
            Answer::Accepted(_) => {
                count(PING_NAME, "sent");
                return true;
            }
            Answer::Refused(why) => {
                tracing::warn!(target = %shown, "dead-man ping refused: {why}; check [notify] ping");
                count(PING_NAME, "failed");
                return false;
            }
            Answer::Retry { after, why } if attempt == PING_ATTEMPTS => {
                let _ = after;
                tracing::warn!(target = %shown, "dead-man ping not delivered: {why}");
                count(PING_NAME, "gave_up");
            }
            Answer::Retry { after, .. } => {
                count(PING_NAME, "retried");
                tokio::time::sleep(after.unwrap_or(delay).min(Duration::from_secs(30))).await;
                delay *= 2;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthchecks_and_uptime_kuma_styles() {
        let hc = Ping::new(HookUrl::new("https://hc-ping.com/1234-abcd").unwrap());
        assert_eq!(hc.kind, PingKind::Healthchecks);
        let ok = hc.message(true, "16/16 covered");
        assert_eq!(
            (ok.get, ok.url.as_str(), ok.body.as_slice()),
            (false, "https://hc-ping.com/1234-abcd", &b"16/16 covered"[..])
        );
        let fail = hc.message(false, "no validator source: chain down");
        assert_eq!(fail.url, "https://hc-ping.com/1234-abcd/fail");
        let q = Ping::new(HookUrl::new("https://hc.example/ping/key/slug/?create=1").unwrap()).message(false, "x");
        assert_eq!(q.url, "https://hc.example/ping/key/slug/fail?create=1");
        let kuma = Ping::new(HookUrl::new("http://127.0.0.1:3001/api/push/AbCdEf?status=up&msg=OK&ping=").unwrap());
        assert_eq!(kuma.kind, PingKind::UptimeKuma);
        let down = kuma.message(false, "config error: notify.target[0].url");
        assert!(down.get);
        assert_eq!(
            down.url,
            "http://127.0.0.1:3001/api/push/AbCdEf?status=down&msg=config+error%3A+notify.target%5B0%5D.url&ping="
        );
        assert!(kuma.message(true, "ok").url.contains("status=up&msg=ok"));
    }
}
