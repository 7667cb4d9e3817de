//! SIGKILL of `patrol run` at seeded pseudo-random points — during start-up, mid-pass (two of the
//! four validators answer slowly, so passes last), during state writes, between passes — with
//! validators' stores wiped between kills so there is broadcast work to interrupt. After every kill
//! the state file (if one was ever written) parses strictly, belongs to our miner, never goes back
//! (counters only grow, the adoption fingerprint never changes), nothing was moved aside as corrupt,
//! and the only temp files are those of killed writers. Each restart resumes from it: once the file
//! records a validator (that never lost its store) as holding the PAT, no later start sends it the
//! PAT again; and the last start reaches full coverage. The PAT never appears in the state dir.
//!
//!
//! A kill with a broadcast in flight: the pass checkpoints the state before the PAT leaves, so the
//! next start knows it sent and keeps the spacing (`backoff_initial`) instead of sending again while
//! the validator is still processing the first one.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use patrol::reconcile::state::MinerState;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::{PAT, accounts, our_pat_in};
use crate::support::agent::{Agent, free_port, value};
use crate::support::fake_github::FakeGithubProcess;
use crate::support::python::DENDRITE_HOTKEY;
use crate::support::state;
use crate::support::subnet::Subnet;
use crate::support::wait_for;

/// The seed of the kill schedule (printed, so a failure can be replayed).
const SEED: u64 = 0x7a11_0007;
/// Kills per run (three per [`Phase`]).
const KILLS: usize = 15;
/// Validators whose stores are wiped between kills (indices); the others never lose theirs.
const WIPED: [usize; 2] = [0, 2];

fn agent_config(github: &str, validators: &str, listen: &str) -> String {
    format!(
        "[wallet]\nhotkey_file = \"hotkey\"\n[pat]\nfile = \"pat\"\n\
         [agent]\nstate_dir = \"state\"\nlisten = \"{listen}\"\n\
         [github]\napi_url = \"{github}\"\ntimeout = \"5s\"\n\
         [reconcile]\ninterval = \"2s\"\njitter = \"0s\"\ncheck_timeout = \"10s\"\nbroadcast_timeout = \"10s\"\n\
         backoff_initial = \"1s\"\nbackoff_max = \"3s\"\nrecheck_inconclusive = \"2s\"\n{validators}"
    )
}

/// Where in the agent's life a kill is aimed: what to wait for after the spawn, then a seeded random
/// delay in `0..max_ms`.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Reading the config, the hotkey, the state.
    StartUp,
    /// The first pass: checks to slow validators in flight.
    FirstPass,
    /// A broadcast (to a validator wiped just before) in flight, then its confirming check.
    Broadcast,
    /// The first pass's results taken in: the state file is being written.
    StateWrite,
    /// Idle between rounds, or a later round (interval 2 s) in flight.
    LaterRound,
}

impl Phase {
    const ALL: [Phase; 5] = [Phase::StartUp, Phase::FirstPass, Phase::Broadcast, Phase::StateWrite, Phase::LaterRound];

    /// (what to wait for, random delay bound in ms after it).
    fn aim(self) -> (Trigger, u64) {
        match self {
            Phase::StartUp => (Trigger::Spawn, 400),
            Phase::FirstPass => (Trigger::Line("patrol agent starting"), 800),
            Phase::Broadcast => (Trigger::Checkpoint, 40),
            // `coverage N/M` is logged as a pass's results are absorbed, right before the save
            Phase::StateWrite => (Trigger::Line("coverage "), 3),
            Phase::LaterRound => (Trigger::Line("first pass done"), 2_500),
        }
    }
}

/// What a kill waits for after the spawn.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    Spawn,
    /// A line in the agent's log.
    Line(&'static str),
    /// The agent's first write of the state file: with a broadcast to make in its first pass, the
    /// checkpoint written right before the PAT leaves (with or without a preflight of its own).
    Checkpoint,
}

impl Trigger {
    /// Wait (polling every 2 ms, at most 15 s) for it: the log at `log`, the state file at `state`
    /// (`before`: its bytes before the spawn); whether it came.
    fn wait(self, log: &Path, state: &Path, before: &Option<Vec<u8>>) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            let came = match self {
                Trigger::Spawn => true,
                Trigger::Line(needle) => std::fs::read_to_string(log).is_ok_and(|t| t.contains(needle)),
                Trigger::Checkpoint => std::fs::read(state).ok() != *before,
            };
            if came {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }

    fn describe(self) -> &'static str {
        match self {
            Trigger::Spawn => "the spawn",
            Trigger::Line(needle) => needle,
            Trigger::Checkpoint => "the first state write (the checkpoint)",
        }
    }
}

/// The newest `agent-<n>.log` in `dir` (the harness numbers them from a process-wide counter).
fn newest_agent_log(dir: &Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n: u32 = name.strip_prefix("agent-")?.strip_suffix(".log")?.parse().ok()?;
            Some((n, e.path()))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, p)| p)
        .expect("an agent log")
}

/// How many broadcasts a validator accepted since it started (its log).
fn accepted_by(n: &crate::support::subnet::Node) -> usize {
    n.log_text().matches("PAT broadcast accepted").count()
}

/// What the state dir holds after a kill.
struct Seen {
    state: Option<MinerState>,
    /// Temp files of an interrupted atomic write, with the pid in their name.
    temps: Vec<(String, i32)>,
}

/// Inspect the state dir strictly: every file free of the PAT, no `.corrupt-` file, temp files named
/// `.<state file>.tmp.<pid>.<n>`, the state file parsing as a [`MinerState`] of our miner.
fn inspect(dir: &Path, state_name: &str) -> Seen {
    let mut seen = Seen { state: None, temps: Vec::new() };
    let Ok(entries) = std::fs::read_dir(dir) else { return seen };
    let tmp_prefix = format!(".{state_name}.tmp.");
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let bytes = std::fs::read(e.path()).unwrap_or_else(|err| panic!("read {name}: {err}"));
        assert!(!String::from_utf8_lossy(&bytes).contains(PAT), "the PAT is in the state dir ({name})");
        assert!(!name.contains(".corrupt-"), "patrol found a corrupt state file and moved it aside: {name}");
        if let Some(rest) = name.strip_prefix(&tmp_prefix) {
            let pid = rest.split('.').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("temp file {name}"));
            seen.temps.push((name, pid));
        } else if name == state_name {
            let st: MinerState = serde_json::from_slice(&bytes).unwrap_or_else(|err| {
                panic!("the state file does not parse after a kill ({err}):\n{}", String::from_utf8_lossy(&bytes))
            });
            assert_eq!((st.version, st.hotkey.as_str(), st.netuid), (1, DENDRITE_HOTKEY, 74));
            seen.state = Some(st);
        } else {
            assert_eq!(name, format!("{state_name}.lock"), "an unexpected file in the state dir");
        }
    }
    seen
}

/// Two fake GitHubs: the agent's, and a slow one for some validators, every call delayed by
/// `delay_ms`.
fn fake_githubs(delay_ms: u64) -> (FakeGithubProcess, FakeGithubProcess) {
    let gh = FakeGithubProcess::new(&accounts());
    let slow = FakeGithubProcess::new(&accounts());
    slow.add_fault(json!({"scope": "both", "fault": {"kind": "delay", "ms": delay_ms}}));
    (gh, slow)
}

#[test]
fn sigkill_of_patrol_run_at_random_points_keeps_the_state_valid_and_the_next_start_resumes() {
    // every GitHub call of uids 12 and 14 takes 400 ms: their checks and broadcasts last ~1 s
    let (gh, slow) = fake_githubs(400);
    let mut net = Subnet::start(4, gh.addr);
    for i in [1, 3] {
        net.nodes[i].kill();
        net.nodes[i].github = slow.url();
        net.nodes[i].start();
    }
    net.scratch.pat("pat", PAT);
    let validators = net.validators_toml(&[0, 1, 2, 3]);
    net.scratch.write("agent.toml", &agent_config(&gh.url(), &validators, "off"), 0o600);
    let state_dir = net.scratch.path("state");
    let state_name = format!("state-{DENDRITE_HOTKEY}-74.json");

    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut last: Option<MinerState> = None;
    let mut killed_pids = Vec::new();
    let (mut after_first_save, mut wipes, mut in_first_pass) = (0, 0, 0);
    let mut accepted_when_recorded = BTreeMap::new();
    for k in 0..KILLS {
        let phase = Phase::ALL[k % Phase::ALL.len()];
        if matches!(phase, Phase::Broadcast) || rng.gen_bool(0.25) {
            // a validator loses its store (SIGKILLed, restarted empty): work for the next pass
            let i = WIPED[rng.gen_range(0..WIPED.len())];
            net.nodes[i].kill();
            let _ = std::fs::remove_file(&net.nodes[i].store);
            net.nodes[i].start();
            wipes += 1;
        }
        let (trigger, max_ms) = phase.aim();
        let delay = rng.gen_range(0..max_ms);
        let state_file = state_dir.join(&state_name);
        let before = std::fs::read(&state_file).ok();
        let mut agent = Agent::start(&net.scratch, &["--config", "agent.toml"], &[], None, &[PAT]);
        let log = newest_agent_log(net.scratch.dir.path());
        // what never comes (e.g. no broadcast was needed after all) just means "kill now"
        let seen_line = trigger.wait(&log, &state_file, &before);
        std::thread::sleep(Duration::from_millis(delay));
        let pid = agent.pid();
        agent.signal(libc::SIGKILL);
        let st = agent.wait_exit(Duration::from_secs(10));
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&st),
            Some(libc::SIGKILL),
            "kill {k}: patrol run had already exited ({st})\n{}",
            agent.log()
        );
        killed_pids.push(pid);
        let text = agent.log();
        let mid_first_pass = text.contains("patrol agent starting") && !text.contains("first pass done");
        in_first_pass += usize::from(mid_first_pass);

        let seen = inspect(&state_dir, &state_name);
        for (name, pid) in &seen.temps {
            assert!(killed_pids.contains(pid), "kill {k}: temp file {name} of a live or unknown writer");
        }
        if seen.state.is_some() {
            after_first_save += 1;
        }
        match (&last, &seen.state) {
            (Some(_), None) => panic!("kill {k} (after {delay} ms): the state file disappeared"),
            (Some(before), Some(now)) => {
                assert_eq!(
                    now.first_fingerprint, before.first_fingerprint,
                    "kill {k}: the adoption fingerprint changed"
                );
                assert!(now.updated_at >= before.updated_at, "kill {k}: the state went back in time");
                for (uid, h) in &before.validators {
                    let n = now.validators.get(uid).unwrap_or_else(|| panic!("kill {k}: uid {uid} forgotten"));
                    assert!(n.broadcasts >= h.broadcasts, "kill {k}: uid {uid}'s broadcast count went back");
                }
            }
            _ => {}
        }
        if let Some(st) = &seen.state {
            // the first time the state file records a never-wiped validator as holding our PAT
            // (accepted and confirmed by a check): how many broadcasts it had accepted by then
            for (i, n) in net.nodes.iter().enumerate().filter(|(i, _)| !WIPED.contains(i)) {
                let held = st.validators.get(&n.uid).is_some_and(|h| {
                    h.confirmed && h.accepted_fingerprint.is_some() && h.accepted_fingerprint == st.fingerprint
                });
                if held && !accepted_when_recorded.contains_key(&i) {
                    accepted_when_recorded.insert(i, accepted_by(n));
                }
            }
        }
        if seen.state.is_some() {
            last = seen.state;
        }
        eprintln!(
            "kill {k}: {phase:?}, {delay} ms after {}{}; state file {}, {} temp file(s)",
            trigger.describe(),
            if seen_line { "" } else { " (never seen)" },
            if last.is_some() { "present" } else { "not yet written" },
            seen.temps.len()
        );
    }
    assert!(after_first_save >= 3, "only {after_first_save} kills landed after a state write (seed {SEED:#x})");
    assert!(in_first_pass >= 1, "no kill landed inside a first pass (seed {SEED:#x})");

    // the last start, left running: full coverage from where the killed ones left off
    let port = free_port();
    net.scratch.write("agent.toml", &agent_config(&gh.url(), &validators, &format!("127.0.0.1:{port}")), 0o600);
    let mut agent = Agent::start(&net.scratch, &["--config", "agent.toml"], &[], Some(port), &[PAT]);
    let valid = [("hotkey", DENDRITE_HOTKEY), ("category", "valid")];
    agent.wait_metric("patrol_coverage_validators", &valid, Duration::from_secs(40), |v| v == 4.0);
    for n in &net.nodes {
        assert_eq!(our_pat_in(&n.store).as_deref(), Some(PAT), "uid {}", n.uid);
        let m = agent.metrics();
        let uid = n.uid.to_string();
        assert_eq!(value(&m, "patrol_validator_state", &[("uid", uid.as_str()), ("category", "valid")]), Some(1.0));
    }
    // once the state file recorded a validator (that never lost its store) as holding the PAT, no
    // restart sent it the PAT again: each start resumed from the file
    let mut accepted = BTreeMap::new();
    for (i, n) in net.nodes.iter().enumerate().filter(|(i, _)| !WIPED.contains(i)) {
        let recorded = accepted_when_recorded
            .get(&i)
            .copied()
            .unwrap_or_else(|| panic!("uid {} was never recorded as covered during the kills", n.uid));
        let now = accepted_by(n);
        accepted.insert(n.uid, now);
        assert_eq!(now, recorded, "uid {} was sent the PAT again after the state file recorded it", n.uid);
    }
    agent.signal(libc::SIGTERM);
    let st = agent.wait_exit(Duration::from_secs(20));
    assert_eq!(st.code(), Some(0), "{}", agent.log());
    let end = wait_for(Duration::from_secs(5), "the final state file", || inspect(&state_dir, &state_name).state);
    let fp = end.fingerprint.clone().expect("a fingerprint");
    for n in &net.nodes {
        let h = &end.validators[&n.uid];
        assert_eq!(h.category, Some(patrol::observe::Category::Valid), "uid {}: {h:?}", n.uid);
        assert_eq!(h.accepted_fingerprint.as_deref(), Some(fp.as_str()), "uid {}", n.uid);
    }
    let leftovers = inspect(&state_dir, &state_name).temps;
    for (name, pid) in &leftovers {
        assert!(killed_pids.contains(pid), "temp file {name} left by the clean run");
    }
    eprintln!(
        "seed {SEED:#x}: {KILLS} kills ({in_first_pass} inside a first pass, {after_first_save} after the first \
         state write), {wipes} store wipes, \
         broadcasts accepted by never-wiped validators {accepted:?}, orphan temp files {}",
        leftovers.len()
    );
    net.assert_no_leak(PAT);
}

#[test]
fn a_kill_with_a_broadcast_in_flight_keeps_the_spacing_after_restart() {
    // the validator's credential check hangs for 30 s: the broadcast is still being processed there
    // when the agent dies and when the next one starts (its check then says `no_pat`)
    let (gh, slow) = fake_githubs(30_000);
    let mut net = Subnet::start_with(1, gh.addr, &["--github-timeout", "60s"]);
    net.nodes[0].kill();
    net.nodes[0].github = slow.url();
    net.nodes[0].start();
    net.scratch.pat("pat", PAT);
    let validators = net.validators_toml(&[0]);
    let config =
        agent_config(&gh.url(), &validators, "off").replace("backoff_initial = \"1s\"", "backoff_initial = \"60s\"");
    let config = config.replace("backoff_max = \"3s\"", "backoff_max = \"120s\"");
    net.scratch.write("agent.toml", &config, 0o600);
    let state_path = net.scratch.path("state").join(format!("state-{DENDRITE_HOTKEY}-74.json"));
    let uid = net.nodes[0].uid;

    let mut agent = Agent::start(&net.scratch, &["--config", "agent.toml"], &[], None, &[PAT]);
    agent.wait_log("PAT preflight passed", Duration::from_secs(20));
    wait_for(Duration::from_secs(10), "the validator's credential check", || (slow.calls("user") >= 1).then_some(()));
    agent.signal(libc::SIGKILL);
    agent.wait_exit(Duration::from_secs(10));

    // the checkpoint: written before the broadcast left, with the broadcast recorded
    let bytes = std::fs::read(&state_path).expect("a state file written before the broadcast");
    let st: MinerState = serde_json::from_slice(&bytes).expect("the checkpoint parses");
    let h = &st.validators[&uid];
    assert_eq!(h.broadcasts, 1, "{h:?}");
    assert!(h.last_broadcast_at.is_some() && h.last_broadcast_fingerprint == st.fingerprint, "{h:?}");
    assert!(!h.confirmed, "{h:?}");

    // the next start sees `no_pat` (the first broadcast is still in the validator's hands) and
    // does not send again within backoff_initial: the validator gets no second broadcast
    let passes = |p: &Path| -> u64 { state::read(p)["totals"]["passes"].as_u64().unwrap_or(0) };
    let before = passes(&state_path);
    let mut agent = Agent::start(&net.scratch, &["--config", "agent.toml"], &[], None, &[PAT]);
    agent.wait_log("first pass done", Duration::from_secs(20));
    // its first pass and two more rounds (interval 2 s), as the state file counts them
    wait_for(Duration::from_secs(30), "two more rounds", || (passes(&state_path) >= before + 3).then_some(()));
    let log = agent.log();
    assert!(log.contains("too soon after the last broadcast"), "the restart did not hold back:\n{log}");
    assert_eq!(slow.calls("user"), 1, "the validator was sent the PAT again after the restart\n{log}");
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(20)).code(), Some(0), "{}", agent.log());
    let st: MinerState = serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    assert_eq!(st.validators[&uid].broadcasts, 1, "{:?}", st.validators[&uid]);
    net.assert_no_leak(PAT);
}
