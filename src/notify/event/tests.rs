//! The event function in virtual time: every `now` is a number, every pass a state and an outcome
//! built here, so hours of holds and days of expiry run in microseconds.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::config::notify::EVENT_NAMES;
use crate::observe::Silence;
use crate::reconcile::core::{Silent, Terminal};
use crate::reconcile::pass::{Spend, ValidatorOutcome};
use crate::reconcile::state::{MinerState, PreflightRecord};
use crate::validators::Validator;

const T0: Secs = 1_800_000_000;
const FP: &str = "fp-current";
const HOLD: Secs = 600;

fn rules() -> Rules {
    Rules { hold: HOLD, alert_after: 7200, digest: None }
}

/// A miner state with `uids` in the given categories (checked just now).
fn state(uids: &[(u16, Category)]) -> MinerState {
    let mut s = MinerState::new("5Miner", 74);
    s.fingerprint = Some(FP.into());
    for (uid, c) in uids {
        s.validators.insert(
            *uid,
            History {
                category: Some(*c),
                reason: (!c.is_covered()).then(|| "No PAT stored for this miner".to_string()),
                uncovered_since: (!c.is_covered()).then_some(T0),
                ..History::new(&format!("5Validator{uid:04}HotkeyXXXXXXXXXXXXXXXXXXXXXXXXXX"))
            },
        );
    }
    s
}

fn outcome(s: &MinerState, now: Secs) -> PassOutcome {
    PassOutcome {
        started_at: now,
        duration: Duration::ZERO,
        validators: s
            .validators
            .iter()
            .map(|(uid, h)| ValidatorOutcome {
                validator: Validator {
                    uid: *uid,
                    hotkey: h.hotkey.clone(),
                    ip: "127.0.0.1".parse().unwrap(),
                    port: 1,
                    vtrust: 0.9,
                    stake: 1000.0,
                },
                checked: None,
                action: ActionTaken::None,
                why: None,
                attempts: 0,
                final_category: h.category,
                next_check_at: now + 900,
                failures: 0,
                probe: None,
            })
            .collect(),
        alerts: Vec::new(),
        preflight: None,
        checks: Vec::new(),
        broadcasts: Vec::new(),
        planned_broadcasts: Vec::new(),
        probes: 0,
        github: Spend {
            pass_calls: 2,
            last_hour: 2,
            budget_per_hour: Some(150),
            configured_interval_s: 900,
            interval_s: 900,
            interval_lossy_s: 900,
            deferred: 0,
        },
    }
}

/// One pass at `now` over `s`: the events and the new record.
fn pass(prev: &Announced, s: &MinerState, now: Secs, rules: &Rules) -> (Vec<Event>, Announced) {
    let out = outcome(s, now);
    let input =
        Input { miner: "m", hotkey: "5Miner", state: s, outcome: Some(&out), problem: None, save_error: None, now };
    derive(prev, &input, rules)
}

fn set(s: &mut MinerState, uid: u16, c: Category, now: Secs) {
    let h = s.validators.get_mut(&uid).unwrap();
    h.category = Some(c);
    if c.is_covered() {
        h.uncovered_since = None;
    } else {
        h.uncovered_since.get_or_insert(now);
    }
}

/// Drive passes every `step` seconds from `from` to `to`, the category of `uid` given by `at(t)`;
/// every event with its time.
fn drive(
    s: &mut MinerState,
    rec: &mut Announced,
    uid: u16,
    from: Secs,
    to: Secs,
    step: Secs,
    at: impl Fn(Secs) -> Category,
) -> Vec<(Secs, Event)> {
    let mut all = Vec::new();
    let mut t = from;
    while t <= to {
        set(s, uid, at(t), t);
        let (events, next) = pass(rec, s, t, &rules());
        *rec = next;
        all.extend(events.into_iter().map(|e| (t, e)));
        t += step;
    }
    all
}

#[test]
fn event_kinds_are_the_configs_names() {
    let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(names, EVENT_NAMES.to_vec());
    assert!(!EVENT_NAMES.contains(&EventKind::Test.as_str()));
}

#[test]
fn a_loss_repaired_within_the_hold_says_nothing() {
    let mut s = state(&[(1, Category::Valid)]);
    let mut rec = Announced::default();
    // a restart: no_pat for 25 s, repaired at the next sweep; passes every 25 s for an hour
    let ev = drive(&mut s, &mut rec, 1, T0, T0 + 3600, 25, |t| {
        if (T0 + 100..T0 + 125).contains(&t) { Category::NoPat } else { Category::Valid }
    });
    assert!(ev.is_empty(), "{ev:?}");
    assert!(rec.open.is_empty(), "the episode ends after a hold of coverage: {:?}", rec.open);
}

#[test]
fn a_loss_past_the_hold_is_said_once_then_its_recovery_once() {
    let mut s = state(&[(1, Category::Valid), (2, Category::Valid)]);
    let mut rec = Announced::default();
    // uid 1 down for 25 minutes
    let down = T0 + 60..T0 + 60 + 1500;
    let ev = drive(&mut s, &mut rec, 1, T0, T0 + 7200, 30, |t| {
        if down.contains(&t) { Category::NoResponse } else { Category::Valid }
    });
    assert_eq!(ev.len(), 2, "{ev:#?}");
    let (lost_at, lost) = &ev[0];
    assert_eq!((lost.kind, lost.resolved, lost.severity), (EventKind::Coverage, false, Severity::Warning));
    assert_eq!(*lost_at, T0 + 60 + HOLD, "announced once the hold is over");
    let v = lost.validator.as_ref().unwrap();
    assert_eq!((v.uid, v.category.as_str(), v.since), (1, "no_response", Some(T0 + 60)));
    assert!(lost.title.contains("10m ago") && !lost.detail.is_empty(), "{lost:?}");
    let (back_at, back) = &ev[1];
    assert!(back.resolved);
    assert_eq!(*back_at, T0 + 60 + 1500, "said when it is covered again (the loss was said over a hold ago)");
    assert_eq!(back.validator.as_ref().unwrap().uncovered_for_s, Some(1500));
    assert!(back.title.contains("25m uncovered"), "{}", back.title);
}

#[test]
fn a_flapping_validator_is_one_episode_and_at_most_one_message_per_hold() {
    let mut s = state(&[(1, Category::Valid)]);
    let mut rec = Announced::default();
    // 4 minutes down, 1 minute up, for two hours
    let ev = drive(&mut s, &mut rec, 1, T0, T0 + 7200, 30, |t| {
        if (t - T0) % 300 < 240 { Category::NoPat } else { Category::Valid }
    });
    let times: Vec<Secs> = ev.iter().map(|(t, _)| *t).collect();
    // short gaps of coverage do not end the episode: the first loss is said once the hold is
    // over, although it was covered again for a minute several times meanwhile
    assert_eq!(times.first(), Some(&(T0 + HOLD)), "{ev:#?}");
    assert!(times.windows(2).all(|w| w[1] - w[0] >= HOLD), "at most one message per hold: {times:?}");
    assert!(times.len() <= (7200 / HOLD) as usize, "{times:?}");
}

#[test]
fn the_default_hold_is_ten_minutes() {
    let settings = crate::config::Settings::build(None, Some(""), &Default::default(), |_| None).unwrap();
    let r = super::super::rules(&settings);
    assert_eq!(r.hold, 600);
    let mut s = state(&[(1, Category::Valid)]);
    let mut rec = Announced::default();
    let ev =
        drive(&mut s, &mut rec, 1, T0, T0 + 1200, 25, |t| if t >= T0 + 10 { Category::NoPat } else { Category::Valid });
    let first: Vec<Secs> = ev.iter().map(|(t, _)| *t - (T0 + 10)).collect();
    assert_eq!(first.len(), 1);
    assert!((600..625).contains(&first[0]), "announced 10 minutes in: {first:?}");
}

#[test]
fn a_silent_validator_is_uncovered_since_it_went_silent() {
    let mut s = state(&[(1, Category::Valid)]);
    s.validators.get_mut(&1).unwrap().silent = Some(Silent { since: T0, kind: Silence::Refused });
    let (ev, rec) = pass(&Announced::default(), &s, T0 + HOLD - 1, &rules());
    assert!(ev.is_empty());
    let (ev, _) = pass(&rec, &s, T0 + HOLD, &rules());
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].validator.as_ref().unwrap().reason.as_deref(), Some("not answering (refused)"));
}

#[test]
fn twenty_at_once_is_one_batch_of_twenty() {
    let uids: Vec<(u16, Category)> = (1..=20).map(|u| (u, Category::Valid)).collect();
    let mut s = state(&uids);
    for u in 1..=20 {
        set(&mut s, u, Category::NoResponse, T0);
    }
    let (ev, rec) = pass(&Announced::default(), &s, T0 + HOLD, &rules());
    assert_eq!(ev.len(), 20);
    assert!(ev.iter().all(|e| e.kind == EventKind::Coverage && !e.resolved));
    let (again, _) = pass(&rec, &s, T0 + HOLD + 30, &rules());
    assert!(again.is_empty(), "nothing twice: {again:?}");
}

#[test]
fn pat_invalid_once_and_resolved_once_and_a_rotation() {
    let mut s = state(&[(1, Category::NoPat)]);
    let record = |v: PreflightVerdict, expiry: Option<i64>| PreflightRecord {
        fingerprint: FP.into(),
        at: T0,
        verdict: v,
        expiry,
        rate_remaining: None,
    };
    s.preflight = Some(record(PreflightVerdict::Invalid, None));
    let (ev, rec) = pass(&Announced::default(), &s, T0, &rules());
    let pat: Vec<&Event> = ev.iter().filter(|e| e.kind == EventKind::PatInvalid).collect();
    assert_eq!(pat.len(), 1);
    assert_eq!(pat[0].severity, Severity::Critical);
    let (ev, rec) = pass(&rec, &s, T0 + 60, &rules());
    assert!(ev.iter().all(|e| e.kind != EventKind::PatInvalid), "once: {ev:?}");
    // still invalid past the hold: the coverage loss says it is not sending
    let (ev, rec) = pass(&rec, &s, T0 + HOLD, &rules());
    assert_eq!(ev.len(), 1);
    assert!(ev[0].detail.contains("the PAT itself is invalid"), "{:?}", ev[0]);
    // a new PAT: rotated, re-asserted
    s.fingerprint = Some("fp-new".into());
    s.preflight = Some(PreflightRecord { fingerprint: "fp-new".into(), ..record(PreflightVerdict::Valid, None) });
    set(&mut s, 1, Category::Valid, T0 + HOLD + 60);
    let (ev, rec) = pass(&rec, &s, T0 + HOLD + 60, &rules());
    let kinds: Vec<(EventKind, bool)> = ev.iter().map(|e| (e.kind, e.resolved)).collect();
    assert_eq!(
        kinds,
        vec![(EventKind::PatRotated, false)],
        "the old PAT's alarm goes with it; coverage waits for its hold"
    );
    let (ev, _) = pass(&rec, &s, T0 + 2 * HOLD, &rules());
    assert_eq!(ev.iter().map(|e| (e.kind, e.resolved)).collect::<Vec<_>>(), vec![(EventKind::Coverage, true)]);
}

#[test]
fn expiry_is_said_at_14_7_and_1_days_once_each() {
    let mut s = state(&[(1, Category::Valid)]);
    let expiry = T0 + 20 * 86_400;
    s.preflight = Some(PreflightRecord {
        fingerprint: FP.into(),
        at: T0,
        verdict: PreflightVerdict::Valid,
        expiry: Some(expiry as i64),
        rate_remaining: None,
    });
    let mut rec = Announced::default();
    let mut said = Vec::new();
    let mut t = T0;
    while t < expiry {
        let (ev, next) = pass(&rec, &s, t, &rules());
        rec = next;
        said.extend(
            ev.into_iter().filter(|e| e.kind == EventKind::PatExpiry).map(|e| ((expiry - t) / 86_400, e.severity)),
        );
        t += 3600;
    }
    assert_eq!(said, vec![(14, Severity::Warning), (7, Severity::Warning), (1, Severity::Critical)]);
    // first seen 5 days before: only the 7-day one (14 is not said late)
    let (ev, _) = pass(&Announced::default(), &s, expiry - 5 * 86_400, &rules());
    let exp: Vec<&Event> = ev.iter().filter(|e| e.kind == EventKind::PatExpiry).collect();
    assert_eq!(exp.len(), 1);
    assert!(exp[0].title.contains("5d"), "{}", exp[0].title);
}

#[test]
fn conditions_are_raised_and_resolved_once() {
    let mut s = state(&[(1, Category::StoreUnavailable), (2, Category::Valid), (3, Category::InvalidPat)]);
    s.validators.get_mut(&1).unwrap().unavailable_since = Some(T0);
    s.validators.get_mut(&2).unwrap().churning_since = Some(T0);
    s.validators.get_mut(&3).unwrap().terminal =
        Some(Terminal { reason: "GitHub identity is locked".into(), fingerprint: FP.into(), since: T0 });
    let mut rec = Announced::default();
    let mut kinds = BTreeMap::new();
    for t in (T0..T0 + 3 * 3600).step_by(60) {
        let (ev, next) = pass(&rec, &s, t, &rules());
        rec = next;
        for e in ev {
            *kinds.entry((e.kind, e.resolved)).or_insert(0) += 1;
        }
    }
    assert_eq!(kinds.get(&(EventKind::StoreUnavailable, false)), Some(&1));
    assert_eq!(kinds.get(&(EventKind::Churning, false)), Some(&1));
    assert_eq!(kinds.get(&(EventKind::Terminal, false)), Some(&1));
    // store readable again
    s.validators.get_mut(&1).unwrap().unavailable_since = None;
    let (ev, _) = pass(&rec, &s, T0 + 4 * 3600, &rules());
    assert!(ev.iter().any(|e| e.kind == EventKind::StoreUnavailable && e.resolved), "{ev:?}");
}

#[test]
fn problems_and_an_unsaved_state() {
    let s = state(&[(1, Category::Valid)]);
    let input = |problem, save_error, now| Input {
        miner: "m",
        hotkey: "5Miner",
        state: &s,
        outcome: None,
        problem,
        save_error,
        now,
    };
    let (ev, rec) =
        derive(&Announced::default(), &input(Some((ProblemKind::NoValidatorSource, "chain down")), None, T0), &rules());
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].kind, ev[0].severity), (EventKind::NoValidatorSource, Severity::Critical));
    assert!(ev[0].detail.contains("chain down"));
    let (ev, rec) = derive(&rec, &input(Some((ProblemKind::NoValidatorSource, "chain down")), None, T0 + 60), &rules());
    assert!(ev.is_empty());
    let (ev, rec) = derive(&rec, &input(None, Some("disk full"), T0 + 120), &rules());
    let kinds: Vec<(EventKind, bool)> = ev.iter().map(|e| (e.kind, e.resolved)).collect();
    assert_eq!(kinds, vec![(EventKind::NoValidatorSource, true), (EventKind::StateNotSaved, false)]);
    let (ev, _) = derive(&rec, &input(None, None, T0 + 180), &rules());
    assert_eq!(ev.iter().map(|e| (e.kind, e.resolved)).collect::<Vec<_>>(), vec![(EventKind::StateNotSaved, true)]);
}

#[test]
fn repairs_and_the_daily_digest() {
    let mut s = state(&[(1, Category::Valid), (2, Category::Valid)]);
    let rules = Rules { digest: Some((9, 0)), ..rules() };
    let day = T0 - T0 % 86_400;
    // digests start at the first pass (09:30: the first is due at 09:00 the next day); a repair at 10:00
    let (_, rec) = pass(&Announced::default(), &s, day + 9 * 3600 + 1800, &rules);
    let mut out = outcome(&s, day + 10 * 3600);
    out.validators[1].action = ActionTaken::Broadcast;
    let input = Input {
        miner: "m",
        hotkey: "5Miner",
        state: &s,
        outcome: Some(&out),
        problem: None,
        save_error: None,
        now: day + 10 * 3600,
    };
    let (ev, rec) = derive(&rec, &input, &rules);
    assert_eq!(
        ev.iter().map(|e| (e.kind, e.severity)).collect::<Vec<_>>(),
        vec![(EventKind::Repaired, Severity::Info)]
    );
    set(&mut s, 1, Category::NoPat, day + 11 * 3600);
    let (_, rec) = pass(&rec, &s, day + 11 * 3600 + HOLD, &rules);
    // next morning at 09:00
    let (ev, rec) = pass(&rec, &s, day + 86_400 + 9 * 3600, &rules);
    let digest: Vec<&Event> = ev.iter().filter(|e| e.kind == EventKind::Digest).collect();
    assert_eq!(digest.len(), 1, "{ev:?}");
    assert!(digest[0].title.contains("1/2 validators covered (50.0% of stake)"), "{}", digest[0].title);
    assert!(
        digest[0].detail.contains("uid 2 at ") && digest[0].detail.contains("uid 1 uncovered since"),
        "{}",
        digest[0].detail
    );
    let (ev, _) = pass(&rec, &s, day + 86_400 + 10 * 3600, &rules);
    assert!(ev.iter().all(|e| e.kind != EventKind::Digest), "once a day");
}

#[test]
fn budget_stretch_is_said_on_change() {
    let s = state(&[(1, Category::Valid)]);
    let at = |interval_s: Secs| {
        let mut out = outcome(&s, T0);
        out.github.interval_s = interval_s;
        out
    };
    let run = |prev: &Announced, out: &PassOutcome| {
        let input = Input {
            miner: "m",
            hotkey: "5Miner",
            state: &s,
            outcome: Some(out),
            problem: None,
            save_error: None,
            now: T0,
        };
        derive(prev, &input, &rules())
    };
    let (ev, rec) = run(&Announced::default(), &at(1800));
    assert_eq!(ev.len(), 1);
    assert!(ev[0].title.contains("every 30m instead of every 15m"), "{}", ev[0].title);
    let (ev, rec) = run(&rec, &at(1800));
    assert!(ev.is_empty());
    let (ev, _) = run(&rec, &at(900));
    assert!(ev[0].resolved);
}

#[test]
fn the_record_round_trips_through_the_state_file_format() {
    let mut s = state(&[(1, Category::NoPat)]);
    let (_, rec) = pass(&Announced::default(), &s, T0 + HOLD, &rules());
    s.notify = rec.to_value();
    let text = serde_json::to_string(&s).unwrap();
    let back: MinerState = serde_json::from_str(&text).unwrap();
    assert_eq!(Announced::from_value(&back.notify), rec);
    // a state written before notifications loads with nothing announced
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_object_mut().unwrap().remove("notify");
    let old: MinerState = serde_json::from_value(v).unwrap();
    assert_eq!(Announced::from_value(&old.notify), Announced::default());
}

/// The closing note's transcript: a scripted day of one miner with 4 validators, each pass every
/// 30 s, through the event function and Discord's rendering (`cargo test --lib scripted_day --
/// --nocapture` prints what the miner's phone shows).
#[test]
fn scripted_day() {
    use crate::notify::render::render;
    use crate::notify::target::Target;
    let t = Target {
        name: "phone".into(),
        kind: crate::config::TargetKind::Discord,
        url: crate::secret::HookUrl::new("https://discord.com/api/webhooks/1/x").unwrap(),
        events: None,
        min_severity: Severity::Warning,
    };
    let mut s = state(&[(11, Category::Valid), (12, Category::Valid), (13, Category::Valid), (14, Category::Valid)]);
    let pf = |verdict, expiry: Secs| PreflightRecord {
        fingerprint: FP.into(),
        at: T0,
        verdict,
        expiry: Some(expiry as i64),
        rate_remaining: None,
    };
    let expiry = T0 + 14 * 86_400 + 6 * 3600;
    s.preflight = Some(pf(PreflightVerdict::Valid, expiry));
    let mut rec = Announced::default();
    let mut shown = Vec::new();
    for step in 0..(24 * 120) {
        let now = T0 + step * 30;
        let h = (now - T0) / 3600;
        // 02:00 uid 12 restarts: down 40 s, repaired at the next sweep
        let c12 = if (2 * 3600..2 * 3600 + 40).contains(&(now - T0)) { Category::NoResponse } else { Category::Valid };
        set(&mut s, 12, c12, now);
        // 09:00–09:25 uid 13 is down
        let c13 =
            if (9 * 3600..9 * 3600 + 1500).contains(&(now - T0)) { Category::NoResponse } else { Category::Valid };
        set(&mut s, 13, c13, now);
        // 18:00 the PAT is revoked (the preflight says so; nothing is sent)
        if h >= 18 {
            s.preflight = Some(pf(PreflightVerdict::Invalid, expiry));
        }
        let (events, next) = pass(&rec, &s, now, &rules());
        rec = next;
        let wanted: Vec<Event> = events.into_iter().filter(|e| t.wants(e)).collect();
        if !wanted.is_empty() {
            let msg = render(&t, &wanted, "miner-box");
            let content = serde_json::from_slice::<serde_json::Value>(&msg.body).unwrap()["content"]
                .as_str()
                .unwrap()
                .to_string();
            shown.push(format!("[{}] {content}", &crate::reconcile::core::rfc3339(now)[11..19]));
        }
    }
    println!("{}", shown.join("\n\n"));
    // the restart: nothing; the outage: loss and recovery; expiry 14 days: one; the PAT: one
    assert_eq!(shown.len(), 4, "{shown:#?}");
}

/// A target's `events`, the webhook payload and the logs spell a kind alike (strum and serde).
#[test]
fn event_kind_names_are_the_serde_names() {
    for k in EventKind::ALL.into_iter().chain([EventKind::Test]) {
        assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
    }
    assert_eq!(EventKind::NoValidatorSource.as_str(), "no_validator_source");
}
