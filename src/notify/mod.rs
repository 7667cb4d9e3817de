//! Telling the miner what patrol cannot fix itself, through Discord, Slack, Telegram, ntfy or a
//! generic JSON webhook, and a dead-man ping (docs/notifications.md).
//!
//! - [`event`]: the pure part — the events a pass calls for, given what was already announced
//!   (the hold, once-per-change conditions, expiry thresholds, the digest);
//! - [`render`]: one message per target per batch, in each service's format and size limit;
//! - [`target`]: the targets in force, their URLs (secrets) read from the config, a file or a
//!   systemd credential;
//! - [`deliver`]: off the main loop — a bounded queue and a sending task per target, timeouts,
//!   retries honouring each service's rate-limit answer, give-up;
//! - [`ping`]: the dead-man ping (healthchecks.io, Uptime Kuma);
//! - [`reach`]: `patrol doctor`'s "is it reachable" without sending anything.
//!
//! [`Notifications`] ties them together for `patrol run` (the agent) and `patrol reconcile`: both
//! feed the same [`event::derive`] with each miner's state and pass outcome, and keep the
//! [`event::Announced`] record (with the events not delivered yet) in the miner's state file.

pub mod deliver;
pub mod event;
pub mod ping;
pub mod reach;
pub mod render;
pub mod target;

use std::sync::Arc;
use std::time::Duration;

pub use deliver::{Answer, Count, HttpPoster, Poster};
pub use event::{Announced, Event, EventKind, Input, Rules};
pub use target::{Target, TargetError};

use crate::config::Settings;
use crate::reconcile::core::Secs;
use crate::reconcile::transport::Clock;

/// The notifications in force for one process.
pub struct Notifications {
    dispatcher: deliver::Dispatcher,
    pinger: Option<ping::Pinger>,
    rules: Rules,
    flush: Duration,
    give_up: Secs,
    clock: Arc<dyn Clock>,
}

/// Why notifications could not start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("cannot build the HTTP client for notifications")]
    Http(#[source] reqwest::Error),
}

impl Notifications {
    /// Read every target's URL and start the senders; `None` when `[notify]` configures nothing
    /// (or only targets that are off on purpose). `poster`: `None` for the real network.
    pub fn start(
        settings: &Settings,
        poster: Option<Arc<dyn Poster>>,
        clock: Arc<dyn Clock>,
        count: Count,
    ) -> Result<Option<Notifications>, NotifyError> {
        let n = &settings.notify;
        if !n.is_enabled() {
            return Ok(None);
        }
        let resolved = target::resolve_env(n)?;
        for (name, why) in &resolved.off {
            tracing::debug!(target = %name, "notification target off: {why}");
        }
        if resolved.targets.is_empty() && resolved.ping.is_none() {
            return Ok(None);
        }
        let poster: Arc<dyn Poster> = match poster {
            Some(p) => p,
            None => Arc::new(HttpPoster::new(n.timeout).map_err(NotifyError::Http)?),
        };
        let env = deliver::Env {
            poster: poster.clone(),
            clock: clock.clone(),
            count: count.clone(),
            give_up: n.give_up,
            host: hostname(),
        };
        Ok(Some(Notifications {
            dispatcher: deliver::Dispatcher::start(resolved.targets, env),
            pinger: resolved.ping.map(|u| ping::Pinger::new(ping::Ping::new(u), poster, count)),
            rules: rules(settings),
            flush: n.flush,
            give_up: n.give_up.as_secs(),
            clock,
        }))
    }

    /// The targets, as shown (`name (kind, scheme://host/***)`).
    pub fn shown(&self) -> Vec<String> {
        let mut v: Vec<String> = self.dispatcher.targets().map(Target::shown).collect();
        v.extend(self.pinger.as_ref().map(ping::Pinger::shown));
        v
    }

    /// The events one miner's pass (or problem) calls for; `record` (the state's `notify`) is
    /// updated to what is now announced.
    pub fn observe(&self, record: &mut serde_json::Value, input: &Input<'_>) -> Vec<Event> {
        let prev = Announced::from_value(record);
        let (events, next) = event::derive(&prev, input, &self.rules);
        *record = next.to_value();
        events
    }

    /// Queue one message per target for `events` (one pass's batch).
    pub fn send(&self, events: &[Event]) {
        if !events.is_empty() {
            self.dispatcher.send(events);
        }
    }

    /// Queue again what a previous run could not deliver (the record's outbox, emptied); events
    /// older than `give_up` are dropped.
    pub fn resume(&self, record: &mut serde_json::Value) {
        let mut a = Announced::from_value(record);
        if a.outbox.is_empty() {
            return;
        }
        let now = self.clock.now();
        for (name, events) in std::mem::take(&mut a.outbox) {
            let fresh: Vec<Event> = events.into_iter().filter(|e| now.saturating_sub(e.at) < self.give_up).collect();
            if !fresh.is_empty() && !self.dispatcher.resend(&name, fresh) {
                tracing::debug!(target = %name, "undelivered notifications for a target no longer configured: dropped");
            }
        }
        *record = a.to_value();
    }

    /// The dead-man ping: `ok` = a pass completed.
    pub fn ping(&self, ok: bool, msg: &str) {
        if let Some(p) = &self.pinger {
            p.send(ok, msg);
        }
    }

    /// Nothing is waiting to be sent.
    pub fn is_idle(&self) -> bool {
        self.dispatcher.is_idle()
    }

    /// Flush within `[notify] flush`, then stop; what was not delivered, by target.
    pub async fn close(self) -> Vec<(String, Vec<Event>)> {
        let grace = self.flush;
        self.close_within(grace).await
    }

    /// [`close`](Self::close) with another grace (a reload hands the queues over at once).
    pub async fn close_within(self, grace: Duration) -> Vec<(String, Vec<Event>)> {
        let started = tokio::time::Instant::now();
        let left = self.dispatcher.close(grace).await;
        if let Some(p) = &self.pinger {
            p.flush(grace.saturating_sub(started.elapsed())).await;
        }
        left
    }

    /// Hand undelivered events over to another instance (a reload): by target name.
    pub fn take_over(&self, left: Vec<(String, Vec<Event>)>) {
        for (name, events) in left {
            self.dispatcher.resend(&name, events);
        }
    }
}

/// Keep `hotkey`'s undelivered events in its record's outbox (the agent's own events, without a
/// miner, are not kept: they were about a process that is gone).
pub fn keep(record: &mut serde_json::Value, hotkey: &str, left: &[(String, Vec<Event>)]) {
    let mut a = Announced::from_value(record);
    for (name, events) in left {
        let mine: Vec<Event> = events.iter().filter(|e| e.hotkey == hotkey).cloned().collect();
        if !mine.is_empty() {
            a.outbox.entry(name.clone()).or_default().extend(mine);
        }
    }
    *record = a.to_value();
}

/// The timing rules of `settings`.
pub fn rules(settings: &Settings) -> Rules {
    Rules {
        hold: settings.notify.hold.as_secs(),
        alert_after: settings.reconcile.alert_after.as_secs(),
        digest: settings.notify.digest,
    }
}

impl Announced {
    /// The record kept in a state file (`null` or unreadable: nothing announced yet).
    pub fn from_value(v: &serde_json::Value) -> Announced {
        if v.is_null() {
            return Announced::default();
        }
        serde_json::from_value(v.clone()).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the state's notification record is unreadable; starting it afresh");
            Announced::default()
        })
    }

    /// As kept in the state file.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// This machine's name, for messages.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname(2) writes at most `len` bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "this host".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    if name.is_empty() { "this host".into() } else { event::short(&name) }
}
