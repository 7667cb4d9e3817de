//! Every kind's message within its service's limits, with a long list (256 validators) naming the
//! first ones and how many more.

use super::*;
use crate::notify::event::ValidatorInfo;
use crate::secret::HookUrl;

fn target(kind: TargetKind, url: &str) -> Target {
    Target { name: "t".into(), kind, url: HookUrl::new(url).unwrap(), events: None, min_severity: Severity::Info }
}

fn loss(uid: u16) -> Event {
    Event {
        kind: EventKind::Coverage,
        severity: Severity::Warning,
        resolved: false,
        at: 1_800_000_000,
        miner: "default/default".into(),
        hotkey: "5Miner".into(),
        title: format!("validator {uid} lost coverage 10m ago: no_response"),
        detail: "probing it; it is checked, and repaired, as soon as it answers".into(),
        validator: Some(ValidatorInfo {
            uid,
            hotkey: format!("5Validator{uid:04}HotkeyXXXXXXXXXXXXXXXXXXXXXXXXXX"),
            category: "no_response".into(),
            reason: Some("not answering (refused)".into()),
            since: Some(1_799_999_400),
            uncovered_for_s: None,
        }),
    }
}

fn json(m: &Message) -> serde_json::Value {
    serde_json::from_slice(&m.body).unwrap()
}

/// How many validators a text names, and the "and N more" it ends with.
fn named_and_more(text: &str) -> (usize, usize) {
    let named = text.lines().filter(|l| l.contains("lost coverage")).count();
    let more = text
        .lines()
        .find_map(|l| l.strip_prefix("… and ").and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    (named, more)
}

#[test]
fn two_hundred_fifty_six_validators_fit_every_service() {
    let events: Vec<Event> = (1..=256).map(loss).collect();
    let mut critical = loss(0);
    critical.kind = EventKind::PatInvalid;
    critical.severity = Severity::Critical;
    critical.validator = None;
    critical.title = "the PAT is invalid (revoked, expired or lacking scope): nothing is being sent anywhere".into();
    let mut all = events.clone();
    all.push(critical);

    let d = render(&target(TargetKind::Discord, "https://discord.com/api/webhooks/1/x"), &all, "host");
    let content = json(&d)["content"].as_str().unwrap().to_string();
    assert!(content.chars().count() <= DISCORD_MAX, "{}", content.chars().count());
    assert!(content.lines().nth(1).unwrap().starts_with("CRITICAL: the PAT is invalid"), "critical first: {content}");
    let (named, more) = named_and_more(&content);
    assert!(named >= 3 && named + more == 256, "{named} + {more}");
    assert_eq!(json(&d)["allowed_mentions"]["parse"], serde_json::json!([]), "no @everyone from a validator's text");

    let t = render(
        &target(
            TargetKind::Telegram,
            "https://api.telegram.org/bot1:abc/sendMessage?chat_id=-100123&message_thread_id=7",
        ),
        &all,
        "host",
    );
    assert_eq!(t.url, "https://api.telegram.org/bot1:abc/sendMessage");
    let body = json(&t);
    assert_eq!((body["chat_id"].as_str(), body["message_thread_id"].as_str()), (Some("-100123"), Some("7")));
    let text = body["text"].as_str().unwrap();
    assert!(text.chars().count() <= TELEGRAM_MAX);
    let (named, more) = named_and_more(text);
    assert!(named > 10 && named + more == 256, "{named} + {more}");

    let s = render(&target(TargetKind::Slack, "https://hooks.slack.com/services/T/B/x"), &all, "host");
    let body = json(&s);
    let blocks = body["blocks"].as_array().unwrap();
    assert!(blocks.len() <= SLACK_MAX_BLOCKS);
    assert_eq!(blocks[0]["type"], "header");
    assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= SLACK_HEADER_MAX);
    let mut text = String::new();
    for b in &blocks[1..] {
        assert_eq!((b["type"].as_str(), b["text"]["type"].as_str()), (Some("section"), Some("mrkdwn")));
        let t = b["text"]["text"].as_str().unwrap();
        assert!(t.chars().count() <= SLACK_SECTION_MAX && !t.is_empty());
        text.push_str(t);
        text.push('\n');
    }
    let (named, more) = named_and_more(&text);
    assert_eq!(named + more, 256);
    assert!(body["text"].as_str().is_some_and(|t| !t.is_empty()), "the notification's fallback text");

    let n = render(&target(TargetKind::Ntfy, "https://:tk_secret0token@ntfy.example/topic"), &all, "host");
    assert!(n.body.len() <= NTFY_MAX_BYTES);
    assert_eq!(n.url, "https://ntfy.example/topic", "the token goes into a header, not the URL");
    let h = |k: &str| n.headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap();
    assert_eq!((h("priority").as_str(), h("tags").as_str()), ("5", "rotating_light"));
    assert!(h("authorization").starts_with("Basic ") && h("title").is_ascii());
    let (named, more) = named_and_more(std::str::from_utf8(&n.body).unwrap());
    assert_eq!(named + more, 256);

    let w = render(&target(TargetKind::Webhook, "http://127.0.0.1:1/hook"), &all, "host");
    let body = json(&w);
    assert_eq!(
        (body["version"].as_u64(), body["source"].as_str(), body["max_severity"].as_str()),
        (Some(1), Some("patrol"), Some("critical"))
    );
    assert_eq!(body["events"].as_array().unwrap().len(), 257, "the webhook carries every event");
    assert!(body["events"][1]["validator"]["uid"].as_u64().is_some());
}

#[test]
fn a_short_batch_is_whole_and_resolved_lines_say_so() {
    let mut back = loss(12);
    back.resolved = true;
    back.title = "validator 12 is covered again, after 25m uncovered".into();
    back.detail.clear();
    let d =
        render(&target(TargetKind::Discord, "https://discord.com/api/webhooks/1/x"), &[loss(11), back], "miner-box");
    let content = json(&d)["content"].as_str().unwrap().to_string();
    assert_eq!(
        content,
        "patrol on miner-box: 1 warning, 1 resolved\n\
         WARNING: validator 11 lost coverage 10m ago: no_response (hotkey 5Validat…): not answering (refused) — probing it; it is checked, and repaired, as soon as it answers\n\
         RESOLVED: validator 12 is covered again, after 25m uncovered (hotkey 5Validat…)"
    );
}
