//! Delivery, off the main loop: one bounded queue and one sending task per target. A target that
//! is down never delays a pass, a reload or a stop:
//!
//! - each request has a timeout (`[notify] timeout`); a rate-limit answer is honoured in the
//!   service's own form (Discord's JSON `retry_after`, Telegram's `parameters.retry_after`, the
//!   `Retry-After` header of Slack and the others); 5xx, timeouts and refused connections are
//!   retried with exponential backoff (backon, 1 s … 5 min, jittered); another 4xx is a refusal
//!   (a deleted webhook, a wrong token): one log line, the message is dropped;
//! - a message no retry delivered within `[notify] give_up` of being made is given up: one log
//!   line and `patrol_notifications_total{target,result="gave_up"}`;
//! - a full queue drops an info-only message first (counted `dropped`), then a warning-only one,
//!   never one with a critical event;
//! - [`Dispatcher::close`] waits at most a grace for the queues to drain, then hands back what is
//!   still undelivered (the caller keeps it in the state's outbox: an event counts as announced
//!   for a target only once that target accepted it).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder};

use super::event::Event;
use super::render::{Message, render};
use super::target::Target;
use crate::config::{Severity, TargetKind};
use crate::reconcile::core::Secs;
use crate::reconcile::transport::{BoxFuture, Clock};
use crate::secret::HookUrl;

/// Messages waiting per target.
pub const QUEUE_CAPACITY: usize = 32;

/// The longest rate-limit wait honoured at once (a longer one is waited in steps, bounded by
/// `give_up`).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How a service answered one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Delivered (the HTTP status).
    Accepted(u16),
    /// Try again: after what the service asked for, or after the next backoff step.
    Retry { after: Option<Duration>, why: String },
    /// Refused for good (a deleted webhook, a wrong token): not retried.
    Refused(String),
}

/// Sends one message (the seam the tests replace).
pub trait Poster: Send + Sync {
    fn post<'a>(&'a self, kind: TargetKind, msg: &'a Message) -> BoxFuture<'a, Answer>;
}

/// Counts a delivery outcome: (target name, `sent` | `retried` | `failed` | `gave_up` | `dropped`).
pub type Count = Arc<dyn Fn(&str, &'static str) + Send + Sync>;

/// The real network.
#[derive(Debug, Clone)]
pub struct HttpPoster {
    client: reqwest::Client,
}

impl HttpPoster {
    /// A client with `timeout` per request, no redirects (a webhook that redirects is misconfigured,
    /// and a redirect would carry the message elsewhere).
    pub fn new(timeout: Duration) -> Result<HttpPoster, reqwest::Error> {
        crate::tls::install_default_provider();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("patrol/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(HttpPoster { client })
    }

    /// The client (the doctor's reachability checks use it too).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

impl Poster for HttpPoster {
    fn post<'a>(&'a self, kind: TargetKind, msg: &'a Message) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let mut req = if msg.get { self.client.get(&msg.url) } else { self.client.post(&msg.url) };
            for (k, v) in &msg.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            if !msg.get {
                req = req.body(msg.body.clone());
            }
            let scrub = |t: String| HookUrl::new(&msg.url).map_or(t.clone(), |u| u.scrub(&t));
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => return Answer::Retry { after: None, why: scrub(e.without_url().to_string()) },
            };
            let status = resp.status().as_u16();
            let header = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
            // Bounded: an answer is a few hundred bytes; a huge one is cut, not buffered whole.
            let body = read_some(resp, 16 * 1024).await;
            match classify(kind, status, header.as_deref(), &body) {
                Answer::Refused(w) => Answer::Refused(scrub(w)),
                Answer::Retry { after, why } => Answer::Retry { after, why: scrub(why) },
                a => a,
            }
        })
    }
}

async fn read_some(mut resp: reqwest::Response, cap: usize) -> String {
    let mut buf = Vec::new();
    while buf.len() < cap {
        match resp.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c),
            _ => break,
        }
    }
    buf.truncate(cap);
    String::from_utf8_lossy(&buf).into_owned()
}

/// What an HTTP answer means, per service (pure).
pub fn classify(kind: TargetKind, status: u16, retry_after: Option<&str>, body: &str) -> Answer {
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let header_secs = retry_after.and_then(|h| h.trim().parse::<f64>().ok());
    let secs = |v: Option<f64>| {
        v.filter(|s| s.is_finite() && *s >= 0.0).map(|s| Duration::from_secs_f64(s).min(MAX_RETRY_AFTER))
    };
    let short: String = super::event::short(body).chars().take(120).collect();
    match status {
        200..=299 => {
            // Telegram says ok:false on a 200 only in theory; believe the body when it says so.
            if kind == TargetKind::Telegram
                && json.as_ref().and_then(|j| j.get("ok")).and_then(|o| o.as_bool()) == Some(false)
            {
                return Answer::Refused(format!("HTTP {status}: {short}"));
            }
            Answer::Accepted(status)
        }
        429 => {
            let from_body = match kind {
                TargetKind::Discord => json.as_ref().and_then(|j| j.get("retry_after")).and_then(|v| v.as_f64()),
                TargetKind::Telegram => {
                    json.as_ref().and_then(|j| j.pointer("/parameters/retry_after")).and_then(|v| v.as_f64())
                }
                _ => None,
            };
            Answer::Retry { after: secs(from_body.or(header_secs)), why: format!("rate limited (HTTP 429): {short}") }
        }
        408 | 425 | 500..=599 => Answer::Retry { after: secs(header_secs), why: format!("HTTP {status}: {short}") },
        _ => Answer::Refused(format!("HTTP {status}: {short}")),
    }
}

/// A message waiting (the events it is made of, so an undelivered one can be kept).
#[derive(Debug, Clone)]
struct Item {
    events: Vec<Event>,
    /// When its oldest event was made (give-up age).
    made: Secs,
}

impl Item {
    fn top(&self) -> Severity {
        self.events.iter().map(|e| e.severity).max().unwrap_or(Severity::Info)
    }
}

#[derive(Default)]
struct QState {
    items: VecDeque<Item>,
    in_flight: Option<Item>,
    closed: bool,
}

struct Queue {
    target: Target,
    state: Mutex<QState>,
    wake: tokio::sync::Notify,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the sending tasks share.
pub struct Env {
    pub poster: Arc<dyn Poster>,
    pub clock: Arc<dyn Clock>,
    pub count: Count,
    pub give_up: Duration,
    /// Names the machine in messages.
    pub host: String,
}

/// The queues and their sending tasks.
pub struct Dispatcher {
    queues: Vec<Arc<Queue>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    env: Arc<Env>,
}

impl Dispatcher {
    /// Start one sending task per target (on the current tokio runtime).
    pub fn start(targets: Vec<Target>, env: Env) -> Dispatcher {
        let env = Arc::new(env);
        let queues: Vec<Arc<Queue>> = targets
            .into_iter()
            .map(|target| Arc::new(Queue { target, state: Mutex::default(), wake: tokio::sync::Notify::new() }))
            .collect();
        let tasks = queues.iter().map(|q| tokio::spawn(send_loop(q.clone(), env.clone()))).collect();
        Dispatcher { queues, tasks, env }
    }

    /// The targets, in config order.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.queues.iter().map(|q| &q.target)
    }

    /// Queue one message per target made of the events it wants (none: nothing queued).
    pub fn send(&self, events: &[Event]) {
        for q in &self.queues {
            let wanted: Vec<Event> = events.iter().filter(|e| q.target.wants(e)).cloned().collect();
            self.push(q, wanted);
        }
    }

    /// Queue `events` for the target called `name` as they are (undelivered ones from a previous
    /// run; they were filtered then). Unknown name: `false`.
    pub fn resend(&self, name: &str, events: Vec<Event>) -> bool {
        match self.queues.iter().find(|q| q.target.name == name) {
            Some(q) => {
                self.push(q, events);
                true
            }
            None => false,
        }
    }

    fn push(&self, q: &Queue, events: Vec<Event>) {
        let Some(made) = events.iter().map(|e| e.at).min() else { return };
        let item = Item { events, made };
        let mut s = q.lock();
        if s.closed {
            return;
        }
        if s.items.len() >= QUEUE_CAPACITY {
            // Make room: the oldest info-only message, else the new one if it is info-only, else
            // the oldest warning-only message; a message with a critical event is never dropped.
            let victim = s.items.iter().position(|i| i.top() == Severity::Info);
            let dropped = match victim {
                Some(i) => s.items.remove(i).is_some(),
                None if item.top() == Severity::Info => {
                    drop(s);
                    self.dropped(q);
                    return;
                }
                None => match s.items.iter().position(|i| i.top() == Severity::Warning) {
                    Some(i) => s.items.remove(i).is_some(),
                    None => false,
                },
            };
            if dropped {
                self.dropped(q);
            }
        }
        s.items.push_back(item);
        drop(s);
        q.wake.notify_one();
    }

    fn dropped(&self, q: &Queue) {
        tracing::warn!(target = %q.target.shown(), "notification queue full ({QUEUE_CAPACITY} messages): dropped the least severe one");
        (self.env.count)(&q.target.name, "dropped");
    }

    /// Nothing queued or being sent anywhere.
    pub fn is_idle(&self) -> bool {
        self.queues.iter().all(|q| {
            let s = q.lock();
            s.items.is_empty() && s.in_flight.is_none()
        })
    }

    /// Stop taking messages, wait up to `grace` for the queues to drain, stop the tasks, and hand
    /// back what was not delivered: (target name, its events).
    pub async fn close(self, grace: Duration) -> Vec<(String, Vec<Event>)> {
        for q in &self.queues {
            q.lock().closed = true;
            q.wake.notify_one();
        }
        let deadline = tokio::time::Instant::now() + grace;
        while !self.is_idle() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20).min(grace)).await;
        }
        for t in &self.tasks {
            t.abort();
        }
        let mut left = Vec::new();
        for q in &self.queues {
            let mut s = q.lock();
            let mut events: Vec<Event> = s.in_flight.take().map(|i| i.events).unwrap_or_default();
            events.extend(s.items.drain(..).flat_map(|i| i.events));
            if !events.is_empty() {
                tracing::warn!(target = %q.target.shown(), events = events.len(), "notifications not delivered before the stop; kept for the next run");
                left.push((q.target.name.clone(), events));
            }
        }
        left
    }
}

impl Drop for Dispatcher {
    /// The sending tasks end with their dispatcher (a dropped one sends nothing more).
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn send_loop(q: Arc<Queue>, env: Arc<Env>) {
    loop {
        let notified = q.wake.notified();
        let item = {
            let mut s = q.lock();
            match s.items.pop_front() {
                Some(i) => {
                    s.in_flight = Some(i.clone());
                    Some(i)
                }
                None if s.closed => return,
                None => None,
            }
        };
        match item {
            Some(item) => {
                deliver(&q.target, &item, &env).await;
                q.lock().in_flight = None;
            }
            None => notified.await,
        }
    }
}

/// Send one message until it is accepted, refused, or given up.
async fn deliver(target: &Target, item: &Item, env: &Env) {
    let msg = render(target, &item.events, &env.host);
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(300))
        .without_max_times()
        .with_jitter()
        .build();
    let give_up = env.give_up.as_secs();
    loop {
        match env.poster.post(target.kind, &msg).await {
            Answer::Accepted(status) => {
                tracing::debug!(target = %target.shown(), status, events = item.events.len(), "notification delivered");
                (env.count)(&target.name, "sent");
                return;
            }
            Answer::Refused(why) => {
                tracing::warn!(target = %target.shown(), "notification refused, not retried: {why}; check the target's URL");
                (env.count)(&target.name, "failed");
                return;
            }
            Answer::Retry { after, why } => {
                let age = env.clock.now().saturating_sub(item.made);
                let delay = after.unwrap_or_else(|| backoff.next().unwrap_or(Duration::from_secs(300)));
                if age.saturating_add(delay.as_secs()) >= give_up {
                    tracing::warn!(
                        target = %target.shown(), events = item.events.len(),
                        "gave up a notification after {}: {why}", super::event::human(age.max(1))
                    );
                    (env.count)(&target.name, "gave_up");
                    return;
                }
                tracing::debug!(target = %target.shown(), retry_in = ?delay, "notification not delivered yet: {why}");
                (env.count)(&target.name, "retried");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
