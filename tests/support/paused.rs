//! The agent's main loop (`patrol::agent::run_with`) in tokio's paused time over the scripted
//! transport (`patrol::reconcile::transport::script`): validators answer what the test scripts,
//! notifications go to a recording poster, and hours pass in milliseconds. For behaviours that
//! would otherwise be waited out on the wall clock (holds, backoffs, cadences) — the process-level
//! tests keep what needs the process boundary.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use patrol::agent::reload::Signal;
use patrol::agent::{AgentError, Deps, Options, run_with};
use patrol::config::{ConfigError, Overrides, Settings, TargetKind};
use patrol::notify::render::Message;
use patrol::notify::{Answer, Poster};
use patrol::reconcile::core::Secs;
use patrol::reconcile::transport::BoxFuture;
use patrol::reconcile::transport::script::{self, Call, Script};
use patrol::wallet::Hotkey;
use serde_json::Value;
use tokio::sync::mpsc;

/// A unix time to start the scripted clock at.
pub const T0: Secs = 1_800_000_000;

/// Settings for one miner (hotkey seed `0x42` × 32, a PAT file) and validators `uids` (hotkeys
/// from seeds `uid + 100`), state in `dir`, no endpoint, `extra` TOML before the validators.
pub fn settings(dir: &std::path::Path, uids: &[u16], extra: &str) -> Settings {
    let (hotkey, pat) = (dir.join("hotkey"), dir.join("pat"));
    std::fs::write(&hotkey, format!("{{\"secretSeed\":\"0x{}\"}}", "42".repeat(32))).unwrap();
    std::fs::write(&pat, "ghp_agentInPausedTime00000001\n").unwrap();
    std::fs::set_permissions(&pat, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let files = format!(
        "[wallet]\nhotkey_file = \"{}\"\n[pat]\nfile = \"{}\"\n[agent]\nstate_dir = \"{}\"\nlisten = \"off\"\n",
        hotkey.display(),
        pat.display(),
        dir.join("state").display()
    );
    let validators: String = uids
        .iter()
        .map(|&uid| {
            let hk = Hotkey::from_seed(&[u8::try_from(uid + 100).unwrap(); 32]).ss58().to_string();
            crate::support::cli::static_validator(uid, &hk, "127.0.0.1", 9000 + uid, 20_000.0)
        })
        .collect();
    // the agent's sections first: `extra` may open [reconcile] or [notify]
    let text = format!("{files}{extra}\n{validators}");
    Settings::build(None, Some(&text), &Overrides::default(), |_| None).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// One message a target was asked to take: when, and its JSON body.
#[derive(Debug, Clone)]
pub struct Posted {
    pub at: Secs,
    pub body: Value,
    /// What the poster answered.
    pub answer: Answer,
}

/// A notification target that answers from a script (`Answer::Accepted(204)` once it is empty)
/// and records every request with the scripted clock's time.
pub struct Recorder {
    clock: Arc<Script>,
    answers: Mutex<std::collections::VecDeque<Answer>>,
    posted: Mutex<Vec<Posted>>,
}

impl Recorder {
    pub fn new(clock: &Arc<Script>) -> Arc<Recorder> {
        Arc::new(Recorder { clock: clock.clone(), answers: Mutex::default(), posted: Mutex::default() })
    }

    /// The next requests get these answers, in order.
    pub fn answer(&self, answers: impl IntoIterator<Item = Answer>) {
        self.answers.lock().unwrap().extend(answers);
    }

    /// Every request so far.
    pub fn posted(&self) -> Vec<Posted> {
        self.posted.lock().unwrap().clone()
    }

    /// The requests that were accepted: the messages the miner got.
    pub fn delivered(&self) -> Vec<Posted> {
        self.posted().into_iter().filter(|p| matches!(p.answer, Answer::Accepted(_))).collect()
    }
}

impl Poster for Recorder {
    fn post<'a>(&'a self, _: TargetKind, msg: &'a Message) -> BoxFuture<'a, Answer> {
        use patrol::reconcile::transport::Clock as _;
        let answer = self.answers.lock().unwrap().pop_front().unwrap_or(Answer::Accepted(204));
        let body = serde_json::from_slice(&msg.body).unwrap_or(Value::Null);
        self.posted.lock().unwrap().push(Posted { at: self.clock.now(), body, answer: answer.clone() });
        Box::pin(async move { answer })
    }
}

/// A running agent.
pub struct Running {
    tx: mpsc::Sender<Signal>,
    task: tokio::task::JoinHandle<Result<(), AgentError>>,
}

fn no_reload() -> Result<Settings, ConfigError> {
    Err(ConfigError::Parse { path: "test".into(), message: "no reloads in this test".into() })
}

/// Start the agent on `script` (its clock too), notifications to `poster`.
pub fn start(s: Settings, script: &Arc<Script>, poster: Option<Arc<Recorder>>) -> Running {
    let (deps, tx) = Deps::scripted(script, poster.map(|p| p as Arc<dyn Poster>));
    Running { tx, task: tokio::spawn(async move { run_with(s, &no_reload, Options::default(), deps).await }) }
}

impl Running {
    /// SIGTERM; how long (virtual) the agent took to stop.
    pub async fn stop(self) -> Duration {
        let t = tokio::time::Instant::now();
        self.tx.send(Signal::Stop("SIGTERM")).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(300), self.task).await.expect("the agent stops").unwrap();
        assert!(r.is_ok(), "{r:?}");
        t.elapsed()
    }
}

/// Let `secs` of virtual time pass.
pub async fn pass(secs: u64) {
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

/// Validator `uid` answers probes (process `uuid`) and checks as a healthy one holding our PAT.
pub fn healthy(script: &Script, uid: u16, uuid: &str) {
    script.forget(uid).probes_answer(uid, script::alive(uuid)).checks_answer_with(uid, |_| script::valid());
}

/// Validator `uid` is down: every probe and check refused.
pub fn down(script: &Script, uid: u16) {
    script.forget(uid).probes_answer(uid, script::refused()).checks_answer_with(uid, |_| script::refused());
}

/// Validator `uid` is back as a new process (`uuid`) without its store: the first check says
/// `no_pat`, a broadcast is accepted, every later check says `valid`.
pub fn back_empty(script: &Script, uid: u16, uuid: &str) {
    script
        .forget(uid)
        .probes_answer(uid, script::alive(uuid))
        .checks_answer_with(uid, |n| if n == 0 { script::no_pat() } else { script::valid() })
        .broadcasts_answer_with(uid, |_| script::broadcast(true, None));
}

/// The virtual times of the calls `call` in the script's log.
pub fn times(script: &Script, call: &Call) -> Vec<Secs> {
    script.log().iter().filter(|(_, c)| c == call).map(|(t, _)| *t).collect()
}
