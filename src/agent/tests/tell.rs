//! The agent's notifications in tokio's paused time over the scripted transport: the default hold
//! (10 minutes) with the real scheduler and pass, a wave of validators as one message, a hung
//! target at a stop, and undelivered events kept in the state for the next start.

use std::sync::Mutex;

use serde_json::Value;

use super::*;
use crate::notify::render::Message;
use crate::notify::{Answer, Poster};
use crate::reconcile::transport::BoxFuture;
use crate::wallet::Hotkey;

/// Records every message (its time and webhook payload); hangs when told to.
#[derive(Default)]
struct Recorder {
    got: Mutex<Vec<(Secs, Value)>>,
    hang: std::sync::atomic::AtomicBool,
    clock: Mutex<Option<Arc<Script>>>,
}

impl Poster for Recorder {
    fn post<'a>(&'a self, _: crate::config::TargetKind, msg: &'a Message) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            if self.hang.load(std::sync::atomic::Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            let now = self.clock.lock().unwrap().as_ref().map_or(0, |c| c.clock().now());
            self.got.lock().unwrap().push((now, serde_json::from_slice(&msg.body).unwrap_or(Value::Null)));
            Answer::Accepted(204)
        })
    }
}

/// One event of a message: kind, resolved, uid.
type Said = (String, bool, Option<u64>);

impl Recorder {
    /// (time, [(kind, resolved, uid)]) per message.
    fn messages(&self) -> Vec<(Secs, Vec<Said>)> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(t, v)| {
                let evs = v["events"].as_array().cloned().unwrap_or_default();
                let evs = evs
                    .iter()
                    .map(|e| {
                        (
                            e["kind"].as_str().unwrap_or("").to_string(),
                            e["resolved"] == true,
                            e["validator"]["uid"].as_u64(),
                        )
                    })
                    .collect();
                (*t, evs)
            })
            .collect()
    }
}

/// Validators 1..=n (hotkeys from seeds), a webhook target, `extra` TOML.
fn settings(dir: &std::path::Path, n: u16, extra: &str) -> Settings {
    let mut text = format!("[[notify.target]]\nurl = \"http://127.0.0.1:9/hook\"\n{extra}\n");
    for uid in 1..=n {
        let hk = Hotkey::from_seed(&[u8::try_from(uid).unwrap() + 100; 32]).ss58().to_string();
        text.push_str(&format!(
            "[[validators.static]]\nuid = {uid}\nhotkey = \"{hk}\"\nip = \"127.0.0.1\"\nport = {}\nstake = 20000.0\nvtrust = 0.9\n",
            9000 + uid
        ));
    }
    settings_of(dir, &text, "ghp_agentNotifyTest000000001")
}

/// Start the agent on `script`, its notifications recorded by `rec`.
fn start(s: Settings, script: &Arc<Script>, rec: &Arc<Recorder>) -> Running {
    *rec.clock.lock().unwrap() = Some(script.clone());
    start_with(s, script, Some(rec.clone()))
}

/// A state dir, the scripted validators on tokio's clock, and a recorder for the messages.
fn setup() -> (tempfile::TempDir, Arc<Script>, Arc<Recorder>) {
    (tempfile::tempdir().unwrap(), Script::on_tokio_time(T0), Arc::new(Recorder::default()))
}

/// Validator `uid` answers probes and checks as a healthy one holding our PAT.
fn healthy(script: &Script, uid: u16, uuid: &str) {
    let uuid = uuid.to_string();
    script.probes_answer(uid, script::alive(&uuid)).checks_answer_with(uid, |_| script::valid());
}

/// Validator `uid` is down: every probe and check refused.
fn down(script: &Script, uid: u16) {
    script.probes_answer(uid, script::refused()).checks_answer_with(uid, |_| script::refused());
}

#[tokio::test(start_paused = true)]
async fn a_restart_repaired_within_the_default_hold_says_nothing_an_outage_past_it_one_loss_then_one_recovery() {
    let (dir, script, rec) = setup();
    healthy(&script, 1, "uuid-a");
    let agent = start(settings(dir.path(), 1, ""), &script, &rec);
    tokio::time::sleep(Duration::from_secs(120)).await;

    // a restart with the store wiped: down 40 s, then repaired at the next sweep
    down(&script, 1);
    tokio::time::sleep(Duration::from_secs(40)).await;
    script.probes_answer(1, script::alive("uuid-b")).checks_answer_with(1, |_| script::valid());
    script.on_check(1, script::no_pat()).on_broadcast(1, script::broadcast(true, None));
    tokio::time::sleep(Duration::from_secs(20 * 60)).await;
    assert_eq!(script.unused(), 0, "the restart was repaired");
    assert!(rec.messages().is_empty(), "a restart repaired within the hold pages nobody: {:?}", rec.messages());

    // down 15 minutes: one loss once the hold (10 min) is over, one recovery when it is back
    let went = script.clock().now();
    down(&script, 1);
    tokio::time::sleep(Duration::from_secs(15 * 60)).await;
    healthy(&script, 1, "uuid-c");
    tokio::time::sleep(Duration::from_secs(20 * 60)).await;
    let msgs = rec.messages();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert_eq!(msgs[0].1, vec![("coverage".to_string(), false, Some(1))]);
    assert_eq!(msgs[1].1, vec![("coverage".to_string(), true, Some(1))]);
    let lost_after = msgs[0].0 - went;
    assert!((600..=660).contains(&lost_after), "said {lost_after} s after it went down (hold 600 s, sweeps 25-30 s)");
    // the recovery: at most one message per hold, so no sooner than a hold after the loss
    let gap = msgs[1].0 - msgs[0].0;
    assert!((600..=640).contains(&gap), "{gap}");
    let uncovered = rec.got.lock().unwrap()[1].1["events"][0]["validator"]["uncovered_for_s"].as_u64().unwrap();
    assert!(
        (15 * 60 - 30..=15 * 60 + 30).contains(&uncovered),
        "uncovered for {uncovered} s: from going silent to answering"
    );
    stop(agent).await;
}

#[tokio::test(start_paused = true)]
async fn twenty_validators_down_at_once_are_one_message_and_come_back_in_one() {
    let (dir, script, rec) = setup();
    for uid in 1..=20 {
        healthy(&script, uid, &format!("uuid-{uid}"));
    }
    let agent =
        start(settings(dir.path(), 20, "[notify]\nhold = 60\n[reconcile]\ngithub_budget = \"off\"\n"), &script, &rec);
    tokio::time::sleep(Duration::from_secs(120)).await;
    for uid in 1..=20 {
        down(&script, uid);
    }
    tokio::time::sleep(Duration::from_secs(5 * 60)).await;
    for uid in 1..=20 {
        healthy(&script, uid, &format!("uuid-{uid}-2"));
    }
    tokio::time::sleep(Duration::from_secs(5 * 60)).await;
    let msgs = rec.messages();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    let uids = |m: &Vec<Said>, resolved: bool| {
        assert!(m.iter().all(|(k, r, _)| k == "coverage" && *r == resolved), "{m:?}");
        m.iter().filter_map(|(_, _, u)| *u).collect::<Vec<_>>()
    };
    assert_eq!(uids(&msgs[0].1, false), (1..=20).collect::<Vec<u64>>());
    assert_eq!(uids(&msgs[1].1, true), (1..=20).collect::<Vec<u64>>());
    stop(agent).await;
}

#[tokio::test(start_paused = true)]
async fn a_hung_target_does_not_hold_a_stop_and_what_it_missed_is_sent_after_the_restart() {
    let (dir, script, rec) = setup();
    rec.hang.store(true, std::sync::atomic::Ordering::SeqCst);
    healthy(&script, 1, "uuid-a");
    let extra = "min_severity = \"info\"\n[notify]\nhold = 30\nflush = \"5s\"\n";
    let agent = start(settings(dir.path(), 1, extra), &script, &rec);
    tokio::time::sleep(Duration::from_secs(60)).await;
    down(&script, 1);
    tokio::time::sleep(Duration::from_secs(120)).await;
    let took = stop(agent).await;
    assert!(took <= Duration::from_secs(6), "the stop waited {took:?} for a hung target (flush 5 s)");
    assert!(rec.messages().is_empty());

    // the next start delivers the miner's undelivered event (the loss; the old process's own
    // started/stopping are not kept), then its own `started`
    rec.hang.store(false, std::sync::atomic::Ordering::SeqCst);
    let agent = start(settings(dir.path(), 1, extra), &script, &rec);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let kinds: Vec<String> = rec.messages().iter().flat_map(|(_, evs)| evs.iter().map(|e| e.0.clone())).collect();
    assert_eq!(kinds.first().map(String::as_str), Some("coverage"), "{kinds:?}");
    assert!(kinds.contains(&"started".to_string()), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "coverage").count(), 1, "the loss is not announced twice: {kinds:?}");
    stop(agent).await;
}
