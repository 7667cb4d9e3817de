//! The status view: one JSON for both sources, the verdict (stale state is never a 0), and the
//! history bookkeeping it shows (category since, axon uuid age and restarts, backoff).

use super::*;
use crate::observe::CheckObs;
use crate::reconcile::core::{AlertKind, Desired, History, Policy, PreflightStatus, after_check};

const NOW: Secs = 1_800_000_000;

fn limits() -> Limits {
    Limits { netuid: 74, interval: 900, jitter: 90, budget_per_hour: Some(150) }
}

fn hist(category: Option<Category>) -> History {
    History { category, checked_at: category.map(|_| NOW - 60), next_check_at: NOW + 840, ..History::new("5Vk") }
}

/// A state whose last pass was `age` seconds ago, with these validators.
fn state(age: Secs, cats: &[Option<Category>]) -> MinerState {
    let mut s = MinerState::new("5Hk", 74);
    s.last_pass_at = Some(NOW - age);
    s.updated_at = NOW - age;
    for (i, c) in cats.iter().enumerate() {
        s.validators.insert(i as u16, hist(*c));
    }
    s
}

fn view_of(states: &[&MinerState], now: Secs) -> StatusView {
    let inputs: Vec<MinerInput<'_>> =
        states.iter().map(|s| MinerInput { name: "m", hotkey: &s.hotkey, state: s, problem: None }).collect();
    build(&Source::StateFiles { state_dir: "/s".into(), note: "n".into() }, &limits(), &inputs, now)
}

fn facts() -> AgentFacts {
    AgentFacts {
        version: "0.1.0 (rev x)".into(),
        pid: 7,
        started_at: NOW - 3600,
        next_round_at: Some(NOW + 600),
        dry_run: false,
    }
}

#[test]
fn the_agent_and_the_state_file_give_the_same_miners_and_the_json_round_trips() {
    use Category::*;
    let mut s = state(120, &[Some(Valid), Some(NoPat), None]);
    s.github.record(NOW - 100, 4);
    s.alerts = vec![Alert { uid: Some(1), kind: AlertKind::Uncovered, message: "uid 1: not covered".into() }];
    let input = [MinerInput { name: "m", hotkey: "5Hk", state: &s, problem: None }];
    let live = build(&Source::Agent(facts()), &limits(), &input, NOW);
    let file = build(
        &Source::StateFiles { state_dir: "/var/lib/patrol".into(), note: "no agent".into() },
        &limits(),
        &input,
        NOW,
    );
    assert_eq!(live.miners, file.miners);
    assert_eq!((live.verdict, live.exit_code), (file.verdict, file.exit_code));
    assert_eq!((live.source.as_str(), file.source.as_str()), ("agent", "state_file"));
    assert_eq!(live.agent.as_ref().map(|a| a.uptime_s), Some(3600));
    assert_eq!(file.note.as_deref(), Some("no agent"));
    let m = &live.miners[0];
    assert_eq!((m.total, m.covered, m.verdict), (3, 1, Verdict::Partial));
    assert_eq!(m.counts.get("pending"), Some(&1));
    assert_eq!((m.github.spent_last_hour, m.github.budget_per_hour), (4, Some(150)));
    assert_eq!(m.alerts.len(), 1);
    // what `patrol status` reads back from the agent is what the agent built
    let json = serde_json::to_string(&live).unwrap();
    assert_eq!(serde_json::from_str::<StatusView>(&json).unwrap(), live);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["generated_at"], "2027-01-15T08:00:00Z");
    assert_eq!(v["agent"]["pid"], 7);
    assert_eq!(v["miners"][0]["validators"][0]["next_check_at"], "2027-01-15T08:14:00Z");
    assert_eq!(v["miners"][0]["validators"][2]["category"], serde_json::Value::Null);
}

#[test]
fn the_verdict_is_checks_exit_code_and_stale_state_is_undetermined() {
    use Category::*;
    let stale_after = limits().stale_after();
    assert_eq!(stale_after, 1980);
    let code = |s: &MinerState, now: Secs| view_of(&[s], now).exit_code;
    assert_eq!(code(&state(60, &[Some(Valid), Some(Inconclusive)]), NOW), 0);
    assert_eq!(code(&state(60, &[Some(Valid), Some(NoPat)]), NOW), 1);
    assert_eq!(code(&state(60, &[Some(NoPat), Some(NoResponse)]), NOW), 2);
    assert_eq!(code(&state(60, &[Some(NoResponse), None]), NOW), 3, "nobody answered");
    assert_eq!(code(&state(60, &[]), NOW), 3, "no eligible validator");
    // all covered, but the last pass is older than 2 × (interval + jitter): never a stale 0
    let covered = state(0, &[Some(Valid)]);
    assert_eq!(code(&covered, NOW + stale_after), 0);
    assert_eq!(code(&covered, NOW + stale_after + 1), 3);
    assert!(view_of(&[&covered], NOW + stale_after + 1).miners[0].stale);
    let mut never = state(0, &[Some(Valid)]);
    never.last_pass_at = None;
    assert_eq!(code(&never, NOW), 3, "no pass yet");
    // a problem that stops passes (not registered, no PAT, no validator source)
    let input = [MinerInput {
        name: "m",
        hotkey: "5Hk",
        state: &covered,
        problem: Some(Problem { kind: "not_registered".into(), message: "x".into() }),
    }];
    assert_eq!(build(&Source::Agent(facts()), &limits(), &input, NOW).exit_code, 3);
    // several miners: the worst; none at all: undetermined
    let partial = state(60, &[Some(Valid), Some(NoPat)]);
    assert_eq!(view_of(&[&covered, &partial], NOW).exit_code, 1);
    assert_eq!(view_of(&[&covered, &partial, &never], NOW).exit_code, 3);
    assert_eq!(view_of(&[], NOW).exit_code, 3);
}

#[test]
fn validators_show_since_when_axon_age_and_restarts_and_backoff() {
    let p = Policy::default();
    let d =
        Desired { fingerprint: "fp".into(), adopt_fingerprint: Some("fp".into()), preflight: PreflightStatus::NotRun };
    let answer = |uuid: &str, c: Category| CheckObs {
        category: c,
        reason: None,
        status: Some(200),
        axon_uuid: Some(uuid.into()),
        silence: None,
    };
    let h = History::new("5Vk");
    let (_, h) = after_check(&p, &d, &h, &answer("u-1", Category::Valid), NOW - 7200, 0.5);
    let (_, h) = after_check(&p, &d, &h, &answer("u-1", Category::Valid), NOW - 3600, 0.5);
    assert_eq!((h.category_since, h.axon_uuid_since, h.restarts), (Some(NOW - 7200), Some(NOW - 7200), 0));
    // a new uuid in an answer is a restart; the category has not changed
    let (_, h) = after_check(&p, &d, &h, &answer("u-2", Category::Valid), NOW - 600, 0.5);
    assert_eq!((h.category_since, h.axon_uuid_since, h.restarts), (Some(NOW - 7200), Some(NOW - 600), 1));
    // silence (a refused connection: a check timeout leaves liveness to the probes): a new
    // category since now, and a backoff
    let silent = CheckObs {
        category: Category::NoResponse,
        reason: Some("connect: refused".into()),
        status: None,
        axon_uuid: None,
        silence: Some(Silence::Refused),
    };
    let (_, h) = after_check(&p, &d, &h, &silent, NOW - 10, 0.5);
    let mut s = state(10, &[]);
    s.validators.insert(5, h.clone());
    let mut gone = History::new("5Gone");
    gone.left_at = Some(NOW - 100);
    s.validators.insert(6, gone);
    let v = &view_of(&[&s], NOW).miners[0].validators;
    assert_eq!(v.len(), 1, "a validator that left the eligible set is not shown");
    let x = &v[0];
    assert_eq!((x.uid, x.category, x.since), (5, Some(Category::NoResponse), Some(NOW - 10)));
    assert_eq!((x.axon_uuid.as_deref(), x.axon_uuid_since, x.restarts), (Some("u-2"), Some(NOW - 600), 1));
    assert_eq!(x.silent.as_ref().map(|s| (s.since, s.kind)), Some((NOW - 10, Silence::Refused)));
    let b = x.backoff.as_ref().expect("in backoff");
    assert_eq!((b.failures, b.until), (1, h.not_before));
    assert_eq!(x.next_check_at, Some(h.not_before));
    // once the window has passed, no backoff is shown
    assert!(view_of(&[&s], h.not_before).miners[0].validators[0].backoff.is_none());
}
