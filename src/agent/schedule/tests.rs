//! The scheduler's arithmetic, then its rules driven in virtual time with the real pass and the
//! scripted transport: silence → fast probing → the first answer → repair in that same pass.

use super::*;
use crate::observe::Silence;
use crate::reconcile::budget::Budget;
use crate::reconcile::core::{MAX_TRIGGERS, Policy, ProbeVerdict, Silent};
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
    assert_eq!(sched.next_wake(&[input(&s)], &eligible), 0, "uid 4 is due at once");
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

fn selection_of(uids: &[u16]) -> Selection {
    Selection {
        eligible: uids
            .iter()
            .map(|u| Validator {
                uid: *u,
                hotkey: format!("vk{u}"),
                ip: "127.0.0.1".parse().unwrap(),
                port: 9000 + u,
                vtrust: 0.9,
                stake: 1000.0,
            })
            .collect(),
        skipped: Vec::new(),
    }
}

const T0: Secs = 1_800_000_000;

/// One miner at `T0` on the scripted validators, with the agent's scheduler (probes every 25 s),
/// the default policy and a 150 calls/h budget.
struct Miner {
    t: std::sync::Arc<Script>,
    state: MinerState,
    sched: Scheduler,
    pat: Pat,
    budget: Budget,
}

impl Miner {
    fn new(pat: &str) -> Miner {
        Miner {
            t: Script::new(T0),
            state: MinerState::new("5Hk", 74),
            sched: Scheduler::new(config(), T0),
            pat: Pat::new(pat).unwrap(),
            budget: Budget(Some(150)),
        }
    }

    /// The agent's loop until `until`: wake at the scheduler's time, run the passes its plan says
    /// are due, over `sel`. Returns every pass's outcome.
    async fn run(&mut self, sel: &Selection, until: Secs) -> Vec<pass::PassOutcome> {
        let Miner { t, state, sched, pat, budget } = self;
        let eligible: BTreeSet<u16> = sel.eligible.iter().map(|v| v.uid).collect();
        let cfg = PassConfig { policy: Policy::default(), budget: *budget, dry_run: false };
        let mut outcomes = Vec::new();
        let mut guard = 0;
        loop {
            let now = sched.next_wake(&[input(state)], &eligible).max(t.clock().now());
            if now > until {
                return outcomes;
            }
            t.set_now(now);
            let plan = sched.plan(now, &[input(state)], Some(&eligible), |_| Some(pat.fingerprint()));
            sched.started(&plan, now, || 0.5);
            if plan.job == Some(Kind::Round) {
                sched.round_succeeded();
            }
            for p in &plan.passes {
                outcomes.push(pass::run(&**t, &cfg, sel, state, pat, &p.work, None).await);
            }
            guard += 1;
            assert!(guard < 10_000, "the scheduler spins at {now}");
        }
    }

    /// Validator `uid` restarts (a new axon `uuid`) with its store wiped: its first check finds no
    /// PAT, broadcasts are accepted. The log starts afresh; returns when the restart is.
    fn restarts_wiped(&self, uid: u16, uuid: &str) -> Secs {
        let restart = self.t.clock().now() + 1;
        self.t.forget(uid);
        self.t
            .probes_answer(uid, script::alive(uuid))
            .checks_answer_with(uid, |n| if n == 0 { script::no_pat() } else { script::valid() })
            .broadcasts_answer_with(uid, |_| script::broadcast(true, None));
        self.t.clear_log();
        restart
    }

    /// When `call` was first made (since the log was last cleared).
    fn first(&self, call: Call) -> Option<Secs> {
        self.t.log().iter().find(|(_, c)| *c == call).map(|(at, _)| *at)
    }

    /// [`Miner::run`] with the one validator, uid 7.
    async fn run_until(&mut self, until: Secs) {
        self.run(&selection_of(&[7]), until).await;
    }
}

/// A miner nothing blocks, past its start-up round.
fn input(state: &MinerState) -> PlanInput<'_> {
    PlanInput { state, blocked: false, force_full: false }
}

#[tokio::test]
async fn silence_then_fast_probing_then_the_first_answer_is_repaired_in_that_pass() {
    let mut m = Miner::new("ghp_scheduleTest000000001");
    // start: the round finds it holding the PAT (adopted: the first PAT patrol sees)
    m.t.on_check(7, script::valid()).probes_answer(7, script::alive("uuid-a"));
    m.run_until(T0 + 100).await;
    assert_eq!(m.state.validators[&7].axon_uuid.as_deref(), Some("uuid-a"));
    let probes =
        |log: &[(Secs, Call)]| log.iter().filter(|(_, c)| *c == Call::Probe(7)).map(|(t, _)| *t).collect::<Vec<_>>();
    let before = probes(&m.t.log());
    assert!(before.len() >= 2 && before.windows(2).all(|w| (25..=30).contains(&(w[1] - w[0]))), "{before:?}");

    // it goes down at T0+100 (refused) for 4 minutes, then comes back with an empty store
    m.t.probes_answer(7, script::refused());
    m.t.clear_log();
    m.run_until(T0 + 340).await;
    let down = probes(&m.t.log());
    assert!(down.len() >= 8, "probed on the short cadence, not backed off: {down:?}");
    assert!(down.windows(2).all(|w| w[1] - w[0] <= 30), "{down:?}");
    assert!(m.t.calls().iter().all(|c| matches!(c, Call::Probe(7))), "silence costs no check: {:?}", m.t.calls());
    assert_eq!(m.state.validators[&7].silent.map(|s| s.kind), Some(Silence::Refused));

    let back = T0 + 340;
    m.t.probes_answer(7, script::alive("uuid-b"));
    m.t.on_check(7, script::no_pat()).on_broadcast(7, script::broadcast(true, None)).on_check(7, script::valid());
    m.t.clear_log();
    m.run_until(back + 60).await;
    let log = m.t.log();
    let first_answer = log.iter().find(|(_, c)| *c == Call::Probe(7)).map(|(t, _)| *t).unwrap();
    assert!(first_answer <= back + 30, "the first probe after it came back: {log:?}");
    let pass: Vec<&Call> = log.iter().filter(|(at, _)| *at == first_answer).map(|(_, c)| c).collect();
    assert_eq!(
        pass,
        vec![&Call::Probe(7), &Call::Check(7), &Call::Broadcast(7), &Call::Check(7)],
        "repaired in the pass that saw it answer (with the start round's telemetry preflight, 340 s old, reused)"
    );
    let h = &m.state.validators[&7];
    assert_eq!(
        (h.category, h.silent, h.axon_uuid.as_deref()),
        (Some(crate::observe::Category::Valid), None, Some("uuid-b"))
    );
    assert_eq!(m.t.unused(), 0);
}

/// Issue 20 item 1: one validator answering every probe with a fresh axon uuid (hostile, or several
/// axons behind one address) and alternating no_pat/valid on its checks must not buy a check and a
/// broadcast every sweep, nor starve the repair of an honest validator restarted with a wiped store.
#[tokio::test]
async fn a_churning_validator_is_capped_and_cannot_starve_an_honest_repair() {
    let mut m = Miner::new("ghp_scheduleChurn0000000001");
    let sel = selection_of(&[1, 2, 3, 4]);
    m.t.probes_answer_with(1, |n| script::alive(&format!("churn-{n}")))
        .checks_answer_with(1, |n| if n % 2 == 0 { script::valid() } else { script::no_pat() })
        .broadcasts_answer_with(1, |_| script::broadcast(true, None));
    for u in [2, 3, 4] {
        m.t.probes_answer(u, script::alive(&format!("steady-{u}"))).checks_answer_with(u, |_| script::valid());
    }
    let first_half_hour = m.run(&sel, T0 + 1800).await;
    let verdicts = |outs: &[pass::PassOutcome], uid: u16| -> Vec<(Secs, ProbeVerdict)> {
        outs.iter()
            .filter_map(|o| {
                let v = o.validators.iter().find(|v| v.validator.uid == uid)?;
                Some((o.started_at, v.probe?))
            })
            .collect()
    };
    let churn = verdicts(&first_half_hour, 1);
    let acted = churn.iter().filter(|(_, v)| v.wants_check()).count();
    assert_eq!(acted, MAX_TRIGGERS, "at most 3 restart-triggered checks an hour: {churn:?}");
    let churning: Vec<Secs> = churn
        .iter()
        .filter_map(|(_, v)| if let ProbeVerdict::Churning { since } = v { Some(*since) } else { None })
        .collect();
    assert!(churning.len() > 20, "every later restart is seen as churn: {churn:?}");
    let starts = first_half_hour
        .iter()
        .filter(|o| {
            o.validators
                .iter()
                .any(|v| v.validator.uid == 1 && v.probe == Some(ProbeVerdict::Churning { since: o.started_at }))
        })
        .count();
    assert_eq!(starts, 1, "the churn starts once (and is logged once)");
    assert!(churning.iter().all(|s| *s == churning[0]));

    // half an hour in, uid 2 restarts with its store wiped
    let restart = m.restarts_wiped(2, "steady-2-restarted");
    m.run(&sel, T0 + 3600).await;
    let log = m.t.log();
    let repaired = m.first(Call::Broadcast(2));
    assert!(
        repaired.is_some_and(|at| at <= restart + 60),
        "the honest validator is repaired within two probe sweeps of its restart (at {restart}): {repaired:?}"
    );
    assert_eq!(m.state.validators[&2].category, Some(crate::observe::Category::Valid));
    let broadcasts_1 = log.iter().filter(|(_, c)| *c == Call::Broadcast(1)).count();
    assert!(broadcasts_1 <= 6, "the churner is not sent the PAT every sweep: {broadcasts_1} in half an hour");
}

/// Issue 20 item 12: a validator whose axon answers probes but whose checks hang is not "revived"
/// on every sweep: its checks keep their backoff.
#[tokio::test]
async fn a_validator_whose_checks_hang_keeps_its_backoff() {
    let mut m = Miner::new("ghp_scheduleHang00000000001");
    m.t.probes_answer(7, script::alive("uuid-a")).checks_answer_with(7, |_| script::timeout());
    let outs = m.run(&selection_of(&[7]), T0 + 1200).await;
    let revived = outs
        .iter()
        .flat_map(|o| o.validators.iter())
        .filter(|v| matches!(v.probe, Some(ProbeVerdict::Revived { .. })))
        .count();
    assert_eq!(revived, 0, "a hanging check is not the silence a probe answer ends");
    let checks = m.t.calls().iter().filter(|c| **c == Call::Check(7)).count();
    // backoff 60 s, 120 s, 240 s, 480 s … (equal jitter at 0.5): a handful in 20 minutes, not one per
    // 25–30 s sweep (~45)
    assert!(checks <= 6, "checked {checks} times in 20 minutes");
    assert!(m.state.validators[&7].failures >= 3, "{:?}", m.state.validators[&7]);
}

/// Issue 20 item 1: every eligible validator keeps its share of the repair allowance. Five churning
/// validators, each within its three triggered checks an hour, together spend more than a small
/// budget's whole repair allowance; the sixth, restarted with a wiped store, is still repaired at
/// once from its own share.
#[tokio::test]
async fn each_validator_keeps_its_share_of_the_repair_allowance() {
    let mut m = Miner::new("ghp_scheduleShare0000000001");
    let sel = selection_of(&[1, 2, 3, 4, 5, 6]);
    for u in 1..=5 {
        m.t.probes_answer_with(u, move |n| script::alive(&format!("churn-{u}-{n}")))
            .checks_answer_with(u, |n| if n % 2 == 0 { script::valid() } else { script::no_pat() })
            .broadcasts_answer_with(u, |_| script::broadcast(true, None));
    }
    m.t.probes_answer(6, script::alive("steady-6")).checks_answer_with(6, |_| script::valid());
    // 30 calls an hour: the allowance is 30 + 6 × 6 = 66; the churners would spend ~90
    m.budget = Budget(Some(30));
    m.run(&sel, T0 + 200).await;
    let restart = m.restarts_wiped(6, "steady-6-restarted");
    m.run(&sel, T0 + 1200).await;
    let repaired = m.first(Call::Broadcast(6));
    assert!(
        repaired.is_some_and(|at| at <= restart + 60),
        "repaired within two sweeps of its restart at {restart}: {repaired:?}\n{:?}",
        m.state.github
    );
    // the allowance, give or take one share: a check estimated free (a validator last seen without
    // our PAT) that finds one costs two calls nobody planned
    assert!(m.state.github.spent(m.t.clock().now()) <= 66 + 6, "the allowance holds: {:?}", m.state.github);
}

/// `plan` over `miners` at `now` on `eligible`, every PAT reading as `fps[i]`; also returns which
/// miners' PATs it asked for (in order).
fn plan_with(
    sched: &Scheduler,
    now: Secs,
    miners: &[PlanInput<'_>],
    eligible: Option<&BTreeSet<u16>>,
    fps: &[Option<&str>],
) -> (Plan, Vec<usize>) {
    let mut asked = Vec::new();
    let plan = sched.plan(now, miners, eligible, |i| {
        asked.push(i);
        fps[i].map(str::to_string)
    });
    (plan, asked)
}

/// A miner whose last pass used the PAT with fingerprint `fp`, validator uid 1 as `h` says.
fn using(fp: &str, h: History) -> MinerState {
    let mut s = MinerState::new("5Hk", 74);
    s.fingerprint = Some(fp.into());
    s.validators.insert(1, h);
    s
}

/// No probes; a round ran at 3000 (the next at 3900).
fn after_a_round() -> Scheduler {
    let mut sched = Scheduler::new(ScheduleConfig { probe: None, ..config() }, 3000);
    sched.round_started(3000, 0.0);
    sched
}

#[test]
fn a_wake_up_plans_a_re_check_of_the_due_miners_and_reads_only_their_pats() {
    let due = using("fp-a", h(3400, Some(3000)));
    let idle = using("fp-b", h(9000, Some(3400)));
    let blocked = MinerState::new("5Blocked", 74); // uid 1 never met: due, but the miner has a problem
    let miners = [input(&due), input(&idle), PlanInput { state: &blocked, blocked: true, force_full: false }];
    let eligible: BTreeSet<u16> = [1].into();
    let sched = after_a_round();
    let (plan, asked) = plan_with(&sched, 3500, &miners, Some(&eligible), &[Some("fp-a"), Some("x"), Some("y")]);
    assert_eq!((plan.job, plan.sweep), (Some(Kind::Recheck), false));
    let passes: Vec<(usize, Option<BTreeSet<u16>>)> =
        plan.passes.iter().map(|p| (p.index, p.work.only.clone())).collect();
    assert_eq!(passes, [(0, Some(eligible.clone()))]);
    assert_eq!(asked, [0], "only the PAT a pass uses is read");
    // no validator set read yet: only a round could start
    let (plan, asked) = plan_with(&sched, 3500, &miners, None, &[Some("fp-a"), None, None]);
    assert_eq!((plan, asked), (Plan::default(), vec![]));
    // an unreadable PAT: no pass (the caller records the problem), the others go on
    let (plan, _) = plan_with(&sched, 3500, &miners, Some(&[1].into()), &[None, None, None]);
    assert_eq!((plan.job, plan.passes.len()), (None, 0));
}

#[test]
fn a_rotated_pat_found_at_a_wake_up_makes_it_a_round_that_re_asserts_everywhere() {
    let a = using("fp-old", h(3400, Some(3000)));
    let b = using("fp-b", h(9000, Some(3400)));
    let mut sched = after_a_round();
    let eligible: BTreeSet<u16> = [1].into();
    let miners = [input(&a), input(&b)];
    let (plan, asked) = plan_with(&sched, 3500, &miners, Some(&eligible), &[Some("fp-new"), Some("fp-b")]);
    assert_eq!(plan.job, Some(Kind::Round));
    assert_eq!(asked, [0, 1], "each PAT read once, the round's too");
    let shape: Vec<(usize, bool, bool, bool)> =
        plan.passes.iter().map(|p| (p.index, p.rotated, p.work.one_shot, p.work.only.is_none())).collect();
    assert_eq!(shape, [(0, true, true, true), (1, false, false, true)]);
    assert!(plan.passes.iter().all(|p| p.work.telemetry_preflight), "a round keeps the preflight fresh");
    // a round that is due anyway: the same, and a blocked miner takes part (the round may end its problem)
    sched.round_now(3500);
    let blocked = [PlanInput { blocked: true, ..input(&b) }];
    let (plan, _) = plan_with(&sched, 3500, &blocked, Some(&eligible), &[Some("fp-b")]);
    assert_eq!((plan.job, plan.passes.len()), (Some(Kind::Round), 1));
    // start-up: a first PAT is no rotation, but the round re-asserts
    let fresh = MinerState::new("5C", 74);
    let (plan, _) = plan_with(&sched, 3500, &[PlanInput { force_full: true, ..input(&fresh) }], None, &[Some("x")]);
    assert_eq!((plan.passes[0].rotated, plan.passes[0].work.one_shot), (false, true));
}

#[test]
fn what_a_plan_starts_is_recorded_round_first() {
    let mut sched = Scheduler::new(config(), 1000);
    let s = MinerState::new("5A", 74);
    // the first round at 1000; the first sweep one probe interval later
    let (plan, _) = plan_with(&sched, 1000, &[input(&s)], None, &[Some("fp")]);
    assert_eq!((plan.job, plan.sweep), (Some(Kind::Round), false));
    let mut draws = vec![0.0, 1.0].into_iter();
    sched.started(&plan, 1000, || draws.next().unwrap());
    assert_eq!((sched.next_round(), draws.len()), (1900, 1), "one draw: the round's");
    sched.round_now(1025);
    let (plan, _) = plan_with(&sched, 1025, &[input(&s)], Some(&BTreeSet::new()), &[Some("fp")]);
    assert_eq!((plan.job, plan.sweep), (Some(Kind::Round), true));
    let mut draws = vec![1.0, 0.0].into_iter();
    sched.started(&plan, 1025, || draws.next().unwrap());
    assert_eq!(sched.next_round(), 1025 + 990, "the round's jitter drawn first");
    assert!(sched.sweep_due(1050) && !sched.sweep_due(1049));
    // a sweep with nobody to probe still moves the next sweep on
    let (plan, _) = plan_with(&sched, 1050, &[input(&s)], Some(&BTreeSet::new()), &[Some("fp")]);
    assert_eq!((plan.job, plan.sweep, plan.passes.len()), (None, true, 0));
}
