//! Notifications on the real binary (issue 22): `patrol notify test` against every kind of
//! receiver, `reconcile` from a timer sending on transitions only (and the dead-man ping every
//! run), a PAT revoked at the fake GitHub said once, and the agent against `patrol validator serve`
//! processes: a validator down past the hold said once and its recovery once, through a 429 storm
//! that delays the message but not the passes, and a hung target that does not hold up SIGTERM.
//! `reconcile` beside a real Python `bt.Axon`: its wiped store repaired within the hold says nothing,
//! its silence past the hold is said once and its return once.
//! Every receiver checks every body against its service's schema; no output, log or message
//! contains the PAT or a URL's secret.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use patrol::lab::fake_github::{FakeAccount, FakeGithubConfig, FakeGithubHandle, spawn_fake_github};

use crate::support::agent::{Agent, free_port};
use crate::support::cli::{Run, Scratch, static_validator};
use crate::support::python::PyAxon;
use crate::support::receivers::{Behave, Receiver, Service};
use crate::support::state;
use crate::support::subnet::Subnet;

const PAT: &str = "ghp_notifyE2eToken0000000000000000000001";

fn accounts() -> FakeGithubConfig {
    FakeGithubConfig::default().with_account(FakeAccount::new(PAT, 4242, "miner"))
}

/// Secrets must be in none of these texts.
fn assert_clean(texts: &[&str], secrets: &[&str]) {
    for t in texts {
        for s in secrets {
            assert!(!t.contains(s), "a secret ({s}) leaked:\n{t}");
        }
    }
}

/// The fake GitHub knowing [`PAT`] (its address and handle), and two validators using it with the
/// miner's PAT file (`pat`) in their scratch dir: what the process-level tests start from.
async fn two_validators() -> (SocketAddr, FakeGithubHandle, Subnet) {
    let (gh, github) = spawn_fake_github(accounts()).await;
    (gh, github, Subnet::with_pat(2, gh, PAT))
}

fn target(kind: &str, url: &str, extra: &str) -> String {
    format!("[[notify.target]]\nkind = \"{kind}\"\nurl = \"{url}\"\n{extra}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_test_reaches_every_kind_in_its_own_format() {
    let mut rs = Vec::new();
    for s in [Service::Discord, Service::Slack, Service::Telegram, Service::Ntfy, Service::Webhook] {
        rs.push((s, Receiver::start(s).await));
    }
    let hc = Receiver::start(Service::Healthchecks).await;
    let mut s = Scratch::new();
    let mut toml = format!("[notify]\nping = \"{}\"\n", hc.url());
    for (svc, r) in &rs {
        toml.push_str(&target(&format!("{svc:?}").to_lowercase(), &r.url(), ""));
        s.secret(r.secret());
    }
    s.secret(hc.secret());
    s.write("c.toml", &toml, 0o600);
    let run = s.run(&["notify", "test", "--config", "c.toml"]);
    run.expect_code(0);
    for (svc, r) in &rs {
        let got = r.wait(1, Duration::from_secs(5)).await;
        assert_eq!(got.len(), 1, "{svc:?}: {run}");
        assert!(r.violations().is_empty(), "{:?}", r.violations());
        assert!(got[0].all().contains("patrol test message"), "{svc:?}: {}", got[0].all());
        assert!(run.stdout.contains(&format!("ok   {}-", format!("{svc:?}").to_lowercase())), "{run}");
    }
    assert_eq!(hc.wait(1, Duration::from_secs(5)).await.len(), 1);
    assert!(run.stdout.contains("/***"), "targets are shown redacted: {run}");

    // a deleted webhook: exit 1, said why; the others still get theirs
    rs[0].1.set(Behave::Gone);
    let run = s.run(&["notify", "test", "--json", "--config", "c.toml"]);
    run.expect_code(1);
    let j = run.json();
    assert_eq!(j["success"], false);
    let d = &j["results"][0];
    assert_eq!((d["target"].as_str(), d["ok"].as_bool()), (Some("discord-1"), Some(false)), "{run}");
    assert!(d["detail"].as_str().unwrap().contains("HTTP 404"), "{run}");

    // the URL in a config file others can read: refused like a PAT file, naming the key, not the URL
    s.write("open.toml", &toml, 0o644);
    let run = s.run(&["notify", "test", "--config", "open.toml"]);
    run.expect_code(78);
    assert!(run.stderr.contains("notify.target[0].url") && run.stderr.contains("chmod 600"), "{run}");

    // doctor: each target redacted and reachable, nothing sent
    let before: usize = rs.iter().map(|(_, r)| r.got().len()).sum();
    let doctor = format!(
        "{toml}[github]\napi_url = \"http://127.0.0.1:{}\"\n{}",
        crate::support::cli::dead_port(),
        crate::support::cli::static_validator(1, crate::support::python::VALIDATOR_HOTKEY, "127.0.0.1", 9, 20000.0)
    );
    s.write("doctor.toml", &doctor, 0o600);
    let run = s.run(&["doctor", "--config", "doctor.toml", "--pat", PAT, "--hotkey-file", "none"]);
    let lines: Vec<&str> = run.stdout.lines().filter(|l| l.contains("notify")).collect();
    assert!(lines.iter().any(|l| l.contains("telegram") && l.contains("getMe: @patrol_test_bot")), "{run}");
    assert!(lines.iter().any(|l| l.starts_with("ok") && l.contains("webhook") && l.contains("TCP connect")), "{run}");
    assert!(lines.iter().any(|l| l.starts_with("fail") && l.contains("discord")), "{run}");
    assert_eq!(rs.iter().map(|(_, r)| r.got().len()).sum::<usize>(), before, "doctor sends no message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_sends_on_transitions_only_and_pings_every_run() {
    let (gh, github, mut net) = two_validators().await;
    let hook = Receiver::start(Service::Webhook).await;
    let kuma = Receiver::start(Service::Kuma).await;
    net.scratch.secret(hook.secret());
    net.scratch.secret(kuma.secret());
    let notify = format!("[notify]\nhold = 0\nping = \"{}\"\n{}", kuma.url(), target("webhook", &hook.url(), ""));
    let validators = net.validators_toml(&[0, 1]);
    let cfg = format!(
        "[wallet]\nhotkey_file = \"hotkey\"\n[pat]\nfile = \"pat\"\n[github]\napi_url = \"http://{gh}\"\n[agent]\nstate_dir = \"state\"\n\
         [reconcile]\ncheck_timeout = \"3s\"\nbroadcast_timeout = \"5s\"\nbackoff_initial = \"1s\"\nbackoff_max = \"2s\"\n{notify}\n{validators}"
    );
    net.scratch.write("c.toml", &cfg, 0o600);
    let reconcile = |net: &Subnet| {
        net.scratch.run_env(&["reconcile", "--json", "--config", "c.toml"], &[], Duration::from_secs(60))
    };
    let mut outputs: Vec<Run> = Vec::new();
    outputs.push(reconcile(&net));
    outputs.last().unwrap().expect_code(0);
    assert!(hook.got().is_empty(), "all covered: nothing to say");

    // uid 12 goes down: the first run after says so, four more say nothing (each run out of its
    // backoff of 1-2 s: the state's times moved back 3 s, as if a timer ran it 3 s later)
    let state_file = state::path(&net.scratch, "state");
    net.nodes[1].stop();
    for _ in 0..5 {
        state::pass_time(&state_file, 3);
        outputs.push(reconcile(&net));
    }
    let got = hook.got();
    assert_eq!(got.len(), 1, "{:#?}", got.iter().map(|g| g.text()).collect::<Vec<_>>());
    let ev = &got[0].json()["events"];
    assert_eq!(
        (ev[0]["kind"].as_str(), ev[0]["resolved"].as_bool(), ev[0]["validator"]["uid"].as_u64()),
        (Some("coverage"), Some(false), Some(12))
    );

    // it comes back: one recovery, then silence
    net.nodes[1].start();
    state::pass_time(&state_file, 3);
    for _ in 0..3 {
        outputs.push(reconcile(&net));
    }
    let got = hook.got();
    assert_eq!(got.len(), 2, "{:#?}", got.iter().map(|g| g.text()).collect::<Vec<_>>());
    assert_eq!(got[1].json()["events"][0]["resolved"], true);

    // the PAT is revoked at GitHub; a fresh state (no recent preflight to reuse) meets it: one
    // PAT message, not one per run, and nothing is sent to any validator
    github.revoke_token(PAT);
    let fresh = cfg.replace("state_dir = \"state\"", "state_dir = \"state2\"");
    net.scratch.write("fresh.toml", &fresh, 0o600);
    let written: Vec<_> = net.nodes.iter().map(|n| n.written_at()).collect();
    for _ in 0..3 {
        outputs.push(net.scratch.run_env(
            &["reconcile", "--json", "--config", "fresh.toml"],
            &[],
            Duration::from_secs(60),
        ));
    }
    assert_eq!(net.nodes.iter().map(|n| n.written_at()).collect::<Vec<_>>(), written, "no PAT sent");
    let got = hook.got();
    let pat: Vec<_> = got
        .iter()
        .flat_map(|g| g.json()["events"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["kind"] == "pat_invalid")
        .collect();
    assert_eq!(pat.len(), 1, "{:#?}", got.iter().map(|g| g.text()).collect::<Vec<_>>());
    assert_eq!(pat[0]["severity"], "critical");
    assert!(pat[0]["title"].as_str().unwrap().contains("nothing is being sent anywhere"), "{}", pat[0]);

    // the dead-man ping: one success per run (every run completed a pass)
    let pings = kuma.wait(outputs.len(), Duration::from_secs(5)).await;
    assert_eq!(pings.len(), outputs.len());
    assert!(
        pings.iter().all(|p| p.query.contains("status=up")),
        "{:?}",
        pings.iter().map(|p| &p.query).collect::<Vec<_>>()
    );
    assert!(hook.violations().is_empty() && kuma.violations().is_empty(), "{:?}", hook.violations());
    let texts: Vec<String> =
        outputs.iter().map(|r| format!("{}{}", r.stdout, r.stderr)).chain(got.iter().map(|g| g.text())).collect();
    assert_clean(&texts.iter().map(String::as_str).collect::<Vec<_>>(), &[PAT, hook.secret(), kuma.secret()]);
}

/// The process-level smoke test of the agent's notifications (the hold, the storm's cadence and a
/// restart repaired within the hold are timed in paused time below): an outage past a short hold
/// is said once in Discord's format through real 429 answers, its recovery once, nothing more; a
/// webhook that never answers does not hold up SIGTERM past the flush grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_holds_a_loss_delivers_through_a_429_storm_and_stops_past_a_hung_target() {
    let (gh, _github, mut net) = two_validators().await;
    let discord = Receiver::start(Service::Discord).await;
    let hung = Receiver::start(Service::Webhook).await;
    hung.set(Behave::Hang);
    let port = free_port();
    let notify = format!(
        "[notify]\nhold = \"{HOLD_S}s\"\nflush = \"2s\"\n{}{}",
        target("discord", &discord.url(), ""),
        target("webhook", &hung.url(), "min_severity = \"info\"")
    );
    let validators = net.validators_toml(&[0, 1]);
    let cfg = format!(
        "[wallet]\nhotkey_file = \"hotkey\"\n[pat]\nfile = \"pat\"\n[github]\napi_url = \"http://{gh}\"\n\
         [agent]\nstate_dir = \"state\"\nlisten = \"127.0.0.1:{port}\"\n\
         [reconcile]\ninterval = \"60s\"\njitter = \"0s\"\ncheck_timeout = \"2s\"\nbroadcast_timeout = \"3s\"\nbackoff_initial = \"1s\"\nbackoff_max = \"4s\"\n\
         probe_interval = \"1s\"\nprobe_jitter = \"0s\"\nprobe_timeout = \"1s\"\ngithub_budget = \"off\"\n{notify}\n{validators}"
    );
    net.scratch.write("agent.toml", &cfg, 0o600);
    let mut agent = Agent::start(&net.scratch, &["--config", "agent.toml"], &[], Some(port), &[PAT]);
    agent.wait_metric("patrol_passes_total", &[], Duration::from_secs(30), |v| v >= 1.0);

    // down past the hold while Discord answers the first requests with 429: the loss arrives late
    // (after the hold and the storm's Retry-After), then its recovery
    discord.set(Behave::RateLimit { times: 2, retry_after: 0.5 });
    let t0 = Instant::now();
    net.nodes[1].stop();
    let got = discord.wait(1, Duration::from_secs(40)).await;
    assert_eq!(got.len(), 1, "the loss: {}", agent.log());
    net.nodes[1].start();
    let got = discord.wait(2, Duration::from_secs(40)).await;
    assert_eq!(got.len(), 2, "one loss, one recovery: {:?}", got.iter().map(|g| g.text()).collect::<Vec<_>>());
    let (loss, back) = (
        got[0].json()["content"].as_str().unwrap().to_string(),
        got[1].json()["content"].as_str().unwrap().to_string(),
    );
    assert!(
        loss.contains("WARNING: validator 12 lost coverage")
            && back.contains("RESOLVED: validator 12 is covered again"),
        "{loss}\n{back}"
    );
    assert!(discord.seen().len() >= 4, "the storm's 429s were retried, not dropped");
    assert!(got[0].at - t0 >= Duration::from_secs(HOLD_S), "not before the hold");
    assert!(discord.violations().is_empty(), "{:?}", discord.violations());
    // nothing more: two probe sweeps after the recovery was delivered, still two messages
    let sweeps = |a: &Agent| crate::support::agent::value(&a.metrics(), "patrol_rechecks_total", &[]).unwrap_or(0.0);
    let after = sweeps(&agent);
    crate::support::wait_for(Duration::from_secs(20), "two more probe sweeps", || {
        (sweeps(&agent) >= after + 2.0).then_some(())
    });
    assert_eq!(discord.got().len(), 2, "nothing more");

    // SIGTERM with a target that never answers: gone within the flush grace
    let t = Instant::now();
    agent.signal(libc::SIGTERM);
    let st = agent.wait_exit(Duration::from_secs(20));
    assert_eq!(st.code(), Some(0), "{}", agent.log());
    assert!(t.elapsed() < Duration::from_secs(8), "stopped in {:?} (calls in flight ≤ 3 s, flush 2 s)", t.elapsed());
    let log = agent.log();
    assert!(log.contains("kept for the next run"), "{log}");
    assert_clean(&[&log], &[PAT, discord.secret(), hung.secret()]);
    assert_clean(
        &discord.got().iter().map(|g| g.text()).collect::<Vec<_>>().iter().map(String::as_str).collect::<Vec<_>>(),
        &[PAT],
    );
}

/// The hold of the smoke test above.
const HOLD_S: u64 = 3;

/// What the smoke test above cannot afford to wait for, with its original timings, in paused time
/// over the scripted transport and a recording target: a restart (down 4 s, store wiped) repaired
/// within the hold (12 s) says nothing once the hold is over; an outage of 25 s while the target
/// answers six 429s (Retry-After 2 s) keeps the probe sweeps at their 3 s cadence, and is said once
/// after the hold, its recovery once, and nothing more.
#[tokio::test(start_paused = true)]
async fn the_agent_keeps_its_sweeps_through_a_429_storm_and_says_a_loss_past_the_hold_once() {
    use patrol::notify::Answer;
    use patrol::reconcile::transport::Clock as _;
    use patrol::reconcile::transport::script::{Call, Script};

    use crate::support::paused::{self, T0, back_empty, down, healthy, pass};

    let dir = tempfile::tempdir().unwrap();
    let script = Script::on_tokio_time(T0);
    let discord = paused::Recorder::new(&script);
    healthy(&script, 1, "uuid-1");
    healthy(&script, 2, "uuid-2");
    let extra = "[notify]\nhold = \"12s\"\nflush = \"2s\"\n[[notify.target]]\nkind = \"discord\"\n\
                 url = \"http://127.0.0.1:9/api/webhooks/1/secret\"\n\
                 [reconcile]\ninterval = \"60s\"\njitter = \"0s\"\nbackoff_initial = \"1s\"\nbackoff_max = \"4s\"\n\
                 probe_interval = \"3s\"\nprobe_jitter = \"0s\"\nprobe_timeout = \"1s\"\ngithub_budget = \"off\"\n";
    let agent = paused::start(paused::settings(dir.path(), &[1, 2], extra), &script, Some(discord.clone()));
    pass(30).await;

    // a restart with the store wiped, down 4 s: repaired within the hold, nobody is told
    down(&script, 2);
    pass(4).await;
    back_empty(&script, 2, "uuid-2b");
    let back = script.now();
    pass(5).await;
    let repaired = paused::times(&script, &Call::Broadcast(2));
    assert!(repaired.len() == 1 && repaired[0] <= back + 3, "repaired at the next sweep: {repaired:?}");
    pass(14).await;
    assert!(discord.posted().is_empty(), "{:?}", discord.posted());

    // down 25 s, while the target answers six requests with 429 (Retry-After 2 s): the passes
    // keep their cadence, the loss arrives late
    discord.answer((0..6).map(|_| Answer::Retry { after: Some(Duration::from_secs(2)), why: "HTTP 429".into() }));
    let went = script.now();
    down(&script, 2);
    pass(25).await;
    let sweeps = paused::times(&script, &Call::Probe(1)).into_iter().filter(|t| *t > went).count();
    assert!(sweeps >= 6, "{sweeps} probe sweeps in 25 s at a 3 s cadence during the storm");
    healthy(&script, 2, "uuid-2b");
    pass(60).await;
    let got = discord.delivered();
    let content: Vec<String> = got.iter().map(|p| p.body["content"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(got.len(), 2, "one loss, one recovery: {content:#?}");
    assert!(
        content[0].contains("WARNING: validator 2 lost coverage")
            && content[1].contains("RESOLVED: validator 2 is covered again"),
        "{content:#?}"
    );
    assert_eq!(discord.posted().len(), 8, "the storm's six 429s were retried, not dropped");
    assert!(got[0].at >= went + 12, "said {} s after it went down: not before the hold", got[0].at - went);
    pass(120).await;
    assert_eq!(discord.posted().len(), 8, "nothing more");
    agent.stop().await;
}

/// The real `bt.Axon` (bittensor 10.3.1) as one of the validators, `reconcile` at the default hold
/// (10 min; the state's times are moved on instead of waiting): its store wiped by a restart is
/// repaired in the run that finds it and nobody is told; silent past the hold, one loss naming it;
/// answering again, one recovery a hold after the loss was said; nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_beside_a_real_bt_axon_says_only_what_outlasts_the_hold() {
    let (gh, _github) = spawn_fake_github(accounts()).await;
    let mut net = Subnet::start(1, gh);
    let mut axon = tokio::task::spawn_blocking(PyAxon::start).await.unwrap();
    let hook = Receiver::start(Service::Webhook).await;
    net.scratch.pat("pat", PAT);
    net.scratch.secret(hook.secret());
    let validators = format!(
        "{}{}",
        net.validators_toml(&[0]),
        static_validator(7, axon.hotkey(), "127.0.0.1", axon.port(), 30_000.0)
    );
    let cfg = format!(
        "[wallet]\nhotkey_file = \"hotkey\"\n[pat]\nfile = \"pat\"\n[github]\napi_url = \"http://{gh}\"\n[agent]\nstate_dir = \"state\"\n\
         [reconcile]\ncheck_timeout = \"3s\"\nbroadcast_timeout = \"5s\"\nbackoff_initial = \"1s\"\nbackoff_max = \"2s\"\n{}\n{validators}",
        target("webhook", &hook.url(), "")
    );
    net.scratch.write("c.toml", &cfg, 0o600);
    let state_file = state::path(&net.scratch, "state");
    let mut outputs: Vec<Run> = Vec::new();
    let mut reconcile = |later: i64, code: i32| {
        if later > 0 {
            state::pass_time(&state_file, later);
        }
        let run = net.scratch.run_env(&["reconcile", "--json", "--config", "c.toml"], &[], Duration::from_secs(60));
        run.expect_code(code);
        outputs.push(run);
    };
    let texts = |got: &[crate::support::receivers::Got]| got.iter().map(|g| g.text()).collect::<Vec<_>>();

    reconcile(0, 0);
    assert_eq!(axon.store().len(), 1, "the bt.Axon holds the PAT");

    // a restart that lost the store: found and repaired by the next run, within the hold
    std::fs::remove_file(axon.dir().join("miner_pats.json")).unwrap();
    tokio::task::block_in_place(|| axon.restart());
    reconcile(3, 0);
    assert_eq!(axon.store().len(), 1, "repaired by the run that found it");
    assert!(hook.got().is_empty(), "a repair within the hold pages nobody: {:#?}", texts(&hook.got()));

    // silent (its checks outlast the 3 s timeout): nothing within the hold, one loss past it
    axon.set_check_mode("sleep:6:store");
    reconcile(3, 1);
    assert!(hook.got().is_empty(), "{:#?}", texts(&hook.got()));
    reconcile(601, 1);
    reconcile(3, 1);
    // (kind, resolved, uid) of the first event of each message so far
    let said = || {
        let got = hook.got();
        let first = |g: &crate::support::receivers::Got| {
            let ev = &g.json()["events"][0];
            (ev["kind"].as_str().map(str::to_string), ev["resolved"].as_bool(), ev["validator"]["uid"].as_u64())
        };
        (got.iter().map(first).collect::<Vec<_>>(), texts(&got))
    };
    let (events, all) = said();
    assert_eq!(events, [(Some("coverage".into()), Some(false), Some(7))], "{all:#?}");

    // answering again: the recovery, no sooner than a hold after the loss was said (at most one
    // message per validator per hold), then silence
    axon.set_check_mode("store");
    reconcile(3, 0);
    assert_eq!(hook.got().len(), 1, "{:#?}", texts(&hook.got()));
    reconcile(601, 0);
    reconcile(3, 0);
    let (events, all) = said();
    assert_eq!(events[1..], [(Some("coverage".into()), Some(true), Some(7))], "{all:#?}");
    assert_eq!(events.len(), 2, "{all:#?}");
    let got = hook.got();
    assert!(hook.violations().is_empty(), "{:?}", hook.violations());
    let all: Vec<String> = outputs.iter().map(|r| format!("{}{}", r.stdout, r.stderr)).chain(texts(&got)).collect();
    assert_clean(&all.iter().map(String::as_str).collect::<Vec<_>>(), &[PAT, hook.secret()]);
}
