//! Each service's answers classified; the queue's retry, give-up and drop rules against a scripted
//! poster in tokio's paused time.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::notify::event::test as test_event;
use crate::reconcile::transport::script::Script;

#[test]
fn each_services_rate_limit_answer() {
    let d = classify(
        TargetKind::Discord,
        429,
        Some("9"),
        r#"{"message": "You are being rate limited.", "retry_after": 1.5, "global": false}"#,
    );
    assert_eq!(d, Answer::Retry { after: Some(Duration::from_millis(1500)), why: d_why(&d) });
    let t = classify(
        TargetKind::Telegram,
        429,
        None,
        r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#,
    );
    assert!(matches!(t, Answer::Retry { after: Some(a), .. } if a == Duration::from_secs(7)));
    let s = classify(TargetKind::Slack, 429, Some("30"), "rate_limited");
    assert!(matches!(s, Answer::Retry { after: Some(a), .. } if a == Duration::from_secs(30)));
    assert!(matches!(classify(TargetKind::Ntfy, 503, None, ""), Answer::Retry { after: None, .. }));
    assert_eq!(classify(TargetKind::Discord, 204, None, ""), Answer::Accepted(204));
    assert_eq!(classify(TargetKind::Slack, 200, None, "ok"), Answer::Accepted(200));
    assert!(
        matches!(classify(TargetKind::Discord, 404, None, r#"{"message": "Unknown Webhook", "code": 10015}"#), Answer::Refused(w) if w.contains("404") && w.contains("Unknown Webhook"))
    );
    assert!(matches!(classify(TargetKind::Slack, 403, None, "invalid_token"), Answer::Refused(_)));
}

fn d_why(a: &Answer) -> String {
    match a {
        Answer::Retry { why, .. } => why.clone(),
        _ => String::new(),
    }
}

/// Answers from a list (then accepts), recording when each post came.
struct Scripted {
    answers: Mutex<VecDeque<Answer>>,
    posts: Mutex<Vec<(tokio::time::Instant, String)>>,
    hang: bool,
}

impl Poster for Scripted {
    fn post<'a>(&'a self, _: TargetKind, msg: &'a Message) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            self.posts
                .lock()
                .unwrap()
                .push((tokio::time::Instant::now(), String::from_utf8_lossy(&msg.body).into_owned()));
            if self.hang {
                std::future::pending::<()>().await;
            }
            self.answers.lock().unwrap().pop_front().unwrap_or(Answer::Accepted(204))
        })
    }
}

fn scripted(answers: Vec<Answer>, hang: bool) -> Arc<Scripted> {
    Arc::new(Scripted { answers: Mutex::new(answers.into()), posts: Mutex::default(), hang })
}

fn target() -> Target {
    Target {
        name: "d".into(),
        kind: TargetKind::Discord,
        url: HookUrl::new("https://discord.com/api/webhooks/1/x").unwrap(),
        events: None,
        min_severity: Severity::Info,
    }
}

fn env(poster: Arc<Scripted>, counted: Arc<Mutex<Vec<&'static str>>>, give_up: Duration) -> Env {
    let clock = Script::on_tokio_time(1_800_000_000);
    Env { poster, clock, count: Arc::new(move |_, r| counted.lock().unwrap().push(r)), give_up, host: "h".into() }
}

fn ev(sev: Severity, at: Secs) -> Event {
    Event { severity: sev, at, ..test_event(at) }
}

#[tokio::test(start_paused = true)]
async fn a_429_storm_delays_but_loses_nothing() {
    let storm: Vec<Answer> =
        (0..20).map(|_| Answer::Retry { after: Some(Duration::from_secs(30)), why: "429".into() }).collect();
    let poster = scripted(storm, false);
    let counted = Arc::new(Mutex::new(Vec::new()));
    let d = Dispatcher::start(vec![target()], env(poster.clone(), counted.clone(), Duration::from_secs(3600)));
    let t0 = tokio::time::Instant::now();
    for i in 0..3 {
        d.send(&[ev(Severity::Warning, 1_800_000_000 + i)]);
    }
    while !d.is_idle() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let posts = poster.posts.lock().unwrap().clone();
    assert_eq!(posts.len(), 23, "20 refused, then the 3 messages");
    assert!(posts.windows(2).take(20).all(|w| w[1].0 - w[0].0 >= Duration::from_secs(30)), "retry_after honoured");
    assert!(t0.elapsed() >= Duration::from_secs(600));
    let c = counted.lock().unwrap().clone();
    assert_eq!((c.iter().filter(|r| **r == "sent").count(), c.iter().filter(|r| **r == "retried").count()), (3, 20));
    assert!(d.close(Duration::ZERO).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_message_is_given_up_after_give_up_and_a_refusal_is_not_retried() {
    let down: Vec<Answer> = (0..1000).map(|_| Answer::Retry { after: None, why: "HTTP 503".into() }).collect();
    let poster = scripted(down, false);
    let counted = Arc::new(Mutex::new(Vec::new()));
    let d = Dispatcher::start(vec![target()], env(poster.clone(), counted.clone(), Duration::from_secs(3600)));
    d.send(&[ev(Severity::Critical, 1_800_000_000)]);
    tokio::time::sleep(Duration::from_secs(2 * 3600)).await;
    assert!(d.is_idle());
    let c = counted.lock().unwrap().clone();
    assert_eq!(c.last(), Some(&"gave_up"));
    let posts = poster.posts.lock().unwrap().clone();
    let span = posts.last().unwrap().0 - posts[0].0;
    assert!(
        span < Duration::from_secs(3600) && posts.len() < 40,
        "backoff up to 5 min: {} posts over {span:?}",
        posts.len()
    );

    let poster = scripted(vec![Answer::Refused("HTTP 404".into())], false);
    let counted = Arc::new(Mutex::new(Vec::new()));
    let d = Dispatcher::start(vec![target()], env(poster.clone(), counted.clone(), Duration::from_secs(3600)));
    d.send(&[ev(Severity::Critical, 1_800_000_000)]);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!((poster.posts.lock().unwrap().len(), counted.lock().unwrap().clone()), (1, vec!["failed"]));
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_drops_info_first_never_critical() {
    let poster = scripted(Vec::new(), true);
    let counted = Arc::new(Mutex::new(Vec::new()));
    let d = Dispatcher::start(vec![target()], env(poster, counted.clone(), Duration::from_secs(3600)));
    d.send(&[ev(Severity::Critical, 1)]); // taken by the hung sender
    tokio::time::sleep(Duration::from_millis(10)).await;
    for i in 0..QUEUE_CAPACITY as u64 {
        d.send(&[ev(if i % 2 == 0 { Severity::Info } else { Severity::Critical }, 10 + i)]);
    }
    // full: each new critical one pushes out an info one; info ones are refused when none is left
    for i in 0..(QUEUE_CAPACITY as u64) {
        d.send(&[ev(Severity::Critical, 100 + i)]);
    }
    d.send(&[ev(Severity::Info, 1000)]);
    let dropped = counted.lock().unwrap().iter().filter(|r| **r == "dropped").count();
    assert_eq!(dropped, QUEUE_CAPACITY / 2 + 1);
    let left = d.close(Duration::from_secs(1)).await;
    let events = &left[0].1;
    assert_eq!(
        events.iter().filter(|e| e.severity == Severity::Critical).count(),
        1 + QUEUE_CAPACITY / 2 + QUEUE_CAPACITY
    );
    assert!(events.iter().all(|e| e.severity == Severity::Critical), "no info left, no critical lost");
}

#[tokio::test(start_paused = true)]
async fn close_is_bounded_by_its_grace_when_a_target_hangs() {
    let poster = scripted(Vec::new(), true);
    let d = Dispatcher::start(vec![target()], env(poster, Arc::default(), Duration::from_secs(3600)));
    d.send(&[ev(Severity::Warning, 1)]);
    let started = tokio::time::Instant::now();
    let left = d.close(Duration::from_secs(5)).await;
    assert!(started.elapsed() <= Duration::from_secs(6));
    assert_eq!(left.len(), 1, "the undelivered message is handed back");
    let _ = AtomicUsize::new(0).load(Ordering::Relaxed);
}
