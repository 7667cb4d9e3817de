//! The scheduler's arithmetic, then its rules driven in virtual time with the real pass and the
//! scripted transport: silence → fast probing → the first answer → repair in that same pass.

use super::*;
use crate::observe::Silence;
use crate::reconcile::budget::Budget;
use crate::reconcile::core::{Policy, Silent};
use crate::reconcile::pass::{self, PassConfig};
use crate::reconcile::transport::Transport;
use crate::reconcile::transport::script::{self, Call, Script};
use crate::secret::Pat;
use crate::validators::{Selection, Validator};

fn h(next: Secs, checked: Option<Secs>) -> History {
    History { next_check_at: next, checked_at: checked, ..History::new("vk") }
}

const CADENCE: ProbeCadence =
    ProbeCadence { interval: 25, jitter: 5, fast_refused_for: 3600, fast_timeout_for: 600, slow_every: 1800 };

fn config() -> ScheduleConfig {
    ScheduleConfig { interval: 900, jitter: 90, backoff_initial: 60, probe: Some(CADENCE) }
}

#[test]
fn timers_follow_the_core_but_never_spin() {
    // (next_check_at, checked_at, min_gap) -> due
    let cases = [
        (0, None, 60, 0),             // never seen: at once
        (1900, Some(1000), 60, 1900), // covered: next interval
        (1030, Some(1000), 60, 1030), // backoff shorter than min_gap: the core wins
        (1000, Some(1000), 60, 1060), // stale (dry-run broadcast): wait min_gap
        (0, Some(1000), 60, 1060),
        (0, Some(1000), 0, 1001), // a zero gap still moves forward
    ];
    for (next, checked, gap, want) in cases {
        assert_eq!(due_at(&h(next, checked), gap), want, "{next} {checked:?} {gap}");
    }
}

#[test]
fn due_and_earliest_over_the_eligible_set() {
    let mut s = MinerState::new("5Hk", 74);
    s.validators.insert(1, h(100, Some(50)));
    s.validators.insert(2, h(300, Some(50)));
    let mut gone = h(10, Some(5));
    gone.left_at = Some(7);
    s.validators.insert(3, gone);
    let eligible: BTreeSet<u16> = [1, 2, 3].into();
    assert_eq!(due_uids(&s, &eligible, 60, 150), [1].into());
    assert_eq!(due_uids(&s, &eligible, 60, 300), [1, 2].into());
    assert_eq!(earliest(&s, &eligible, 60), Some(100));
    let with_new: BTreeSet<u16> = [2, 4].into();
    assert_eq!(earliest(&s, &with_new, 60), Some(0));
    assert_eq!(due_uids(&s, &with_new, 60, 1), [4].into());
    assert_eq!(earliest(&s, &[3].into(), 60), None);
}

#[test]
fn round_delays_and_retries() {
    assert_eq!(round_delay(900, 90, 0.0), 900);
    assert_eq!(round_delay(900, 120, 0.5), 960);
    assert_eq!(round_retry(30, 900, 1), 30);
    assert_eq!(round_retry(30, 900, 3), 120);
    assert_eq!(round_retry(30, 900, 30), 900);
    let mut s = Scheduler::new(config(), 1000);
    assert!(s.round_due(1000));
    s.round_started(1000, 0.0);
    assert_eq!(s.next_round(), 1900);
    assert_eq!(s.round_failed(1000), 60);
    assert_eq!(s.round_failed(1060), 120, "doubling");
    s.round_succeeded();
    assert_eq!(s.round_failed(2000), 60, "reset after a good round");
    s.round_now(1500);
    assert!(s.round_due(1500));
}

#[test]
fn silent_validators_are_probed_fast_for_a_while_then_slowly() {
    let silent = |since: Secs, kind: Silence, last: Secs| History {
        silent: Some(Silent { since, kind }),
        last_probe_at: Some(last),
        ..History::new("vk")
    };
    let now = 10_000;
    assert!(probe_wanted(&History::new("vk"), &CADENCE, now), "an answering validator: every sweep");
    // refused: fast for an hour
    assert!(probe_wanted(&silent(now - 3000, Silence::Refused, now - 25), &CADENCE, now));
    assert!(!probe_wanted(&silent(now - 4000, Silence::Refused, now - 25), &CADENCE, now));
    assert!(probe_wanted(&silent(now - 4000, Silence::Refused, now - 1800), &CADENCE, now), "then every 30 m");
    // a black hole: fast for ten minutes only
    assert!(probe_wanted(&silent(now - 500, Silence::Timeout, now - 25), &CADENCE, now));
    assert!(!probe_wanted(&silent(now - 700, Silence::Timeout, now - 25), &CADENCE, now));
}

#[test]
fn sweeps_probe_met_validators_whose_check_is_not_due() {
    let mut s = MinerState::new("5Hk", 74);
    s.validators.insert(1, h(5000, Some(4000))); // covered, next check later: probed
    s.validators.insert(2, h(4000, Some(3000))); // check due now: checked instead
    let mut gone = h(5000, Some(4000));
    gone.left_at = Some(4000);
    s.validators.insert(3, gone); // left the set
    let eligible: BTreeSet<u16> = [1, 2, 3, 4].into(); // 4: never met, the round checks it
    let mut sched = Scheduler::new(config(), 4000);
    assert_eq!(sched.next_wake([&s], &eligible), 0, "uid 4 is due at once");
    let w = sched.work(&s, &eligible, 4000, None);
    assert_eq!(w.probe, BTreeSet::new(), "no sweep due yet");
    assert_eq!(w.only, Some([2, 4].into()));
    assert!(sched.sweep_due(4025));
    let w = sched.work(&s, &eligible, 4025, None);
    assert_eq!(w.probe, [1].into());
    sched.sweep_started(4025, 0.5);
    assert!(!sched.sweep_due(4050) && sched.sweep_due(4052), "25 s + half the 5 s jitter");
    let w = sched.work(&s, &eligible, 4025, Some(true));
    assert_eq!((w.only, w.one_shot), (None, true), "a round checks everything due");
    // probes off: the fixed-interval scheduler
    let fixed = Scheduler::new(ScheduleConfig { probe: None, ..config() }, 4000);
    assert!(!fixed.sweep_due(1 << 40));
    assert!(fixed.work(&s, &eligible, 1 << 40, None).probe.is_empty());
}

fn selection() -> Selection {
    Selection {
        eligible: vec![Validator {
            uid: 7,
            hotkey: "vk7".into(),
            ip: "127.0.0.1".parse().unwrap(),
            port: 9007,
            vtrust: 0.9,
            stake: 1000.0,
        }],
        skipped: Vec::new(),
    }
}

/// The loop the agent runs (`agent::cycle`): wake at the scheduler's time, run what it says is due.
async fn run_until(sched: &mut Scheduler, t: &Script, state: &mut MinerState, pat: &Pat, until: Secs) {
    let sel = selection();
    let eligible: BTreeSet<u16> = [7].into();
    let cfg = PassConfig { policy: Policy::default(), budget: Budget(Some(150)), dry_run: false };
    let mut guard = 0;
    loop {
        let now = sched.next_wake([&*state], &eligible).max(t.clock().now());
        if now > until {
            return;
        }
        t.set_now(now);
        let round = sched.round_due(now);
        let work = sched.work(state, &eligible, now, round.then_some(false));
        if round {
            sched.round_started(now, 0.5);
            sched.round_succeeded();
        }
        if sched.sweep_due(now) {
            sched.sweep_started(now, 0.5);
        }
        pass::run(t, &cfg, &sel, state, pat, &work, None).await;
        guard += 1;
        assert!(guard < 10_000, "the scheduler spins at {now}");
    }
}

#[tokio::test]
async fn silence_then_fast_probing_then_the_first_answer_is_repaired_in_that_pass() {
    const T0: Secs = 1_800_000_000;
    let pat = Pat::new("ghp_scheduleTest000000001").unwrap();
    let t = Script::new(T0);
    let mut state = MinerState::new("5Hk", 74);
    let mut sched = Scheduler::new(config(), T0);
    // start: the round finds it holding the PAT (adopted: the first PAT patrol sees)
    t.on_check(7, script::valid()).probes_answer(7, script::alive("uuid-a"));
    run_until(&mut sched, &t, &mut state, &pat, T0 + 100).await;
    assert_eq!(state.validators[&7].axon_uuid.as_deref(), Some("uuid-a"));
    let probes =
        |log: &[(Secs, Call)]| log.iter().filter(|(_, c)| *c == Call::Probe(7)).map(|(t, _)| *t).collect::<Vec<_>>();
    let before = probes(&t.log());
    assert!(before.len() >= 2 && before.windows(2).all(|w| (25..=30).contains(&(w[1] - w[0]))), "{before:?}");

    // it goes down at T0+100 (refused) for 4 minutes, then comes back with an empty store
    t.probes_answer(7, script::refused());
    t.clear_log();
    run_until(&mut sched, &t, &mut state, &pat, T0 + 340).await;
    let down = probes(&t.log());
    assert!(down.len() >= 8, "probed on the short cadence, not backed off: {down:?}");
    assert!(down.windows(2).all(|w| w[1] - w[0] <= 30), "{down:?}");
    assert!(t.calls().iter().all(|c| matches!(c, Call::Probe(7))), "silence costs no check: {:?}", t.calls());
    assert_eq!(state.validators[&7].silent.map(|s| s.kind), Some(Silence::Refused));

    let back = T0 + 340;
    t.probes_answer(7, script::alive("uuid-b"));
    t.on_check(7, script::no_pat()).on_broadcast(7, script::broadcast(true, None)).on_check(7, script::valid());
    t.clear_log();
    run_until(&mut sched, &t, &mut state, &pat, back + 60).await;
    let log = t.log();
    let first_answer = log.iter().find(|(_, c)| *c == Call::Probe(7)).map(|(t, _)| *t).unwrap();
    assert!(first_answer <= back + 30, "the first probe after it came back: {log:?}");
    let pass: Vec<&Call> = log.iter().filter(|(at, _)| *at == first_answer).map(|(_, c)| c).collect();
    assert_eq!(
        pass,
        vec![&Call::Probe(7), &Call::Check(7), &Call::Broadcast(7), &Call::Check(7)],
        "repaired in the pass that saw it answer (with the start round's telemetry preflight, 340 s old, reused)"
    );
    let h = &state.validators[&7];
    assert_eq!(
        (h.category, h.silent, h.axon_uuid.as_deref()),
        (Some(crate::observe::Category::Valid), None, Some("uuid-b"))
    );
    assert_eq!(t.unused(), 0);
}
