//! Each phase of the pass against the scripted transport: what it contacts, in what order, and what
//! it leaves in the state.

use std::collections::BTreeSet;

use super::*;
use crate::reconcile::budget::Budget;
use crate::reconcile::core::History;
use crate::reconcile::transport::script::{self, Call, Script};

const NOW: Secs = 1_800_000_000;
const PAT: &str = "ghp_passTestToken00000001";

fn validator(uid: u16) -> Validator {
    Validator {
        uid,
        hotkey: format!("vk{uid}"),
        ip: "127.0.0.1".parse().unwrap(),
        port: 9000 + uid,
        vtrust: 0.9,
        stake: 1000.0 * f64::from(uid),
    }
}

fn selection(uids: &[u16]) -> Selection {
    Selection { eligible: uids.iter().map(|u| validator(*u)).collect(), skipped: Vec::new() }
}

fn cfg() -> PassConfig {
    PassConfig { policy: Policy::default(), budget: Budget(None), dry_run: false }
}

fn pat() -> Pat {
    Pat::new(PAT).unwrap()
}

/// A state in which every uid holds our PAT, was checked an interval ago and is due now.
fn holding(uids: &[u16]) -> MinerState {
    let mut s = MinerState::new("5Hk", 74);
    let fp = pat().fingerprint();
    s.first_fingerprint = Some(fp.clone());
    s.fingerprint = Some(fp.clone());
    for u in uids {
        s.validators.insert(
            *u,
            History {
                category: Some(Category::Valid),
                accepted_fingerprint: Some(fp.clone()),
                confirmed: true,
                checked_at: Some(NOW - 900),
                next_check_at: NOW,
                axon_uuid: Some(format!("uuid-{u}")),
                ..History::new(&format!("vk{u}"))
            },
        );
    }
    s
}

async fn run_pass(t: &Script, cfg: &PassConfig, sel: &Selection, state: &mut MinerState, work: &Work) -> PassOutcome {
    let save = |_: &MinerState| t.checkpoint();
    let checkpoint: Option<Checkpoint<'_>> = if cfg.dry_run { None } else { Some(&save) };
    run(t, cfg, sel, state, &pat(), work, checkpoint).await
}

fn outcome(out: &PassOutcome, uid: u16) -> &ValidatorOutcome {
    out.validators.iter().find(|v| v.validator.uid == uid).unwrap()
}

#[tokio::test]
async fn a_lost_store_is_rebroadcast_and_confirmed_in_the_same_pass() {
    let t = Script::new(NOW);
    t.on_check(1, script::valid()).on_check(2, script::no_pat()).on_broadcast(2, script::broadcast(true, None));
    t.on_check(2, script::valid());
    let mut state = holding(&[1, 2]);
    let out = run_pass(&t, &cfg(), &selection(&[1, 2]), &mut state, &Work::one_shot()).await;
    assert_eq!(
        t.calls(),
        vec![Call::Check(1), Call::Check(2), Call::Preflight, Call::Checkpoint, Call::Broadcast(2), Call::Check(2)]
    );
    assert_eq!(outcome(&out, 1).action, ActionTaken::None);
    let v2 = outcome(&out, 2);
    assert_eq!((v2.action, v2.attempts, v2.final_category), (ActionTaken::Broadcast, 1, Some(Category::Valid)));
    assert_eq!(out.broadcasts, vec![BroadcastOutcome::Accepted]);
    let h = &state.validators[&2];
    assert_eq!(h.losses, vec![NOW], "the loss is remembered (it is checked more often for a while)");
    assert!(h.confirmed && h.accepted_fingerprint.is_some());
    // 2 (check of 1) + 0 (no_pat) + 2 (preflight) + 2 (broadcast) + 2 (confirm)
    assert_eq!((out.github.pass_calls, state.github.spent(NOW)), (8, 8));
}

#[tokio::test]
async fn the_checkpoint_is_written_before_the_pat_leaves_and_records_the_broadcast() {
    let t = Script::new(NOW);
    t.on_check(3, script::no_pat()).on_broadcast(3, script::broadcast(true, None)).on_check(3, script::valid());
    let mut state = holding(&[3]);
    let saved = std::sync::Mutex::new(None);
    let save = |s: &MinerState| {
        t.checkpoint();
        *saved.lock().unwrap() = Some(s.clone());
    };
    run(&*t, &cfg(), &selection(&[3]), &mut state, &pat(), &Work::one_shot(), Some(&save)).await;
    let calls = t.calls();
    let at = |c: Call| calls.iter().position(|x| *x == c).unwrap();
    assert!(at(Call::Checkpoint) < at(Call::Broadcast(3)), "{calls:?}");
    let saved = saved.lock().unwrap().clone().expect("a checkpoint");
    let h = &saved.validators[&3];
    assert_eq!((h.last_broadcast_at, h.broadcasts), (Some(NOW), 1), "the checkpoint knows the PAT is being sent");
}

#[tokio::test]
async fn a_refused_broadcast_backs_off_without_a_confirm_check() {
    let t = Script::new(NOW);
    t.on_check(1, script::no_pat());
    t.on_broadcast(1, script::broadcast(false, Some("Validator PAT store temporarily unavailable; please retry. (x)")));
    let mut state = holding(&[1]);
    let out = run_pass(&t, &cfg(), &selection(&[1]), &mut state, &Work::one_shot()).await;
    assert_eq!(t.calls(), vec![Call::Check(1), Call::Preflight, Call::Checkpoint, Call::Broadcast(1)]);
    let v = outcome(&out, 1);
    assert_eq!(v.action, ActionTaken::Recheck);
    assert!(v.why.as_deref().unwrap().contains("temporarily unavailable"), "{v:?}");
    let h = &state.validators[&1];
    let p = Policy::default();
    assert_eq!(h.failures, 1);
    assert!(h.next_check_at >= NOW + p.backoff_initial, "waits for the backoff and the spacing: {h:?}");
    assert_eq!(out.broadcasts, vec![BroadcastOutcome::Rejected]);
    // the next pass at the same time contacts nobody: it is in backoff
    t.clear_log();
    let again = run_pass(&t, &cfg(), &selection(&[1]), &mut state, &Work::one_shot()).await;
    assert_eq!(t.calls(), vec![]);
    assert_eq!(outcome(&again, 1).action, ActionTaken::NotDue);
}

#[tokio::test]
async fn a_dry_run_plans_but_sends_nothing_and_checkpoints_nothing() {
    let t = Script::new(NOW);
    t.on_check(1, script::no_pat());
    let mut state = holding(&[1]);
    let dry = PassConfig { dry_run: true, ..cfg() };
    let out = run_pass(&t, &dry, &selection(&[1]), &mut state, &Work::one_shot()).await;
    assert_eq!(t.calls(), vec![Call::Check(1), Call::Preflight], "no checkpoint, no broadcast");
    assert_eq!(out.planned_broadcasts, vec![1]);
    assert!(out.broadcasts.is_empty());
    assert_eq!(outcome(&out, 1).action, ActionTaken::WouldBroadcast);
    assert_eq!(state.validators[&1].broadcasts, 0, "nothing recorded as sent");
    assert!(state.validators[&1].next_check_at > NOW, "and not re-checked on every tick");
}

#[tokio::test]
async fn a_validator_answering_again_after_silence_is_checked_and_repaired_in_the_same_pass() {
    let t = Script::new(NOW);
    let mut state = holding(&[1, 2]);
    for u in [1, 2] {
        let h = state.validators.get_mut(&u).unwrap();
        h.next_check_at = NOW + 600;
    }
    // uid 1 went silent (refused) two minutes ago and had backed off
    let h = state.validators.get_mut(&1).unwrap();
    h.silent = Some(crate::reconcile::core::Silent { since: NOW - 120, kind: crate::observe::Silence::Refused });
    h.failures = 3;
    h.not_before = NOW + 240;
    t.on_probe(1, script::alive("uuid-1-new")).on_probe(2, script::alive("uuid-2"));
    t.on_check(1, script::no_pat()).on_broadcast(1, script::broadcast(true, None)).on_check(1, script::valid());
    let work = Work {
        only: Some(BTreeSet::new()),
        one_shot: false,
        probe: [1, 2].into(),
        reassert: false,
        learn_uuids: false,
        telemetry_preflight: false,
    };
    let out = run_pass(&t, &cfg(), &selection(&[1, 2]), &mut state, &work).await;
    assert_eq!(
        t.calls(),
        vec![
            Call::Probe(1),
            Call::Probe(2),
            Call::Check(1),
            Call::Preflight,
            Call::Checkpoint,
            Call::Broadcast(1),
            Call::Check(1)
        ]
    );
    let v1 = outcome(&out, 1);
    assert_eq!(v1.probe, Some(ProbeVerdict::Revived { silent_for: 120 }));
    assert_eq!((v1.action, v1.final_category), (ActionTaken::Broadcast, Some(Category::Valid)));
    assert_eq!(outcome(&out, 2).probe, None, "same uuid, still answering: nothing to say");
    assert_eq!(outcome(&out, 2).action, ActionTaken::NotDue);
    let h = &state.validators[&1];
    assert_eq!((h.silent, h.failures, h.axon_uuid.as_deref()), (None, 0, Some("uuid-1-new")));
    assert_eq!(out.probes, 2);
}

#[tokio::test]
async fn a_new_axon_uuid_is_a_restart_checked_at_once_and_a_silent_probe_is_remembered() {
    let t = Script::new(NOW);
    let mut state = holding(&[1, 2, 3]);
    for u in [1, 2, 3] {
        state.validators.get_mut(&u).unwrap().next_check_at = NOW + 600;
    }
    t.on_probe(1, script::alive("uuid-1-restarted")).on_probe(2, script::refused()).on_probe(3, script::timeout());
    // restarted but kept its store: one check, nothing to send
    t.on_check(1, script::valid());
    let work = Work {
        only: Some(BTreeSet::new()),
        one_shot: false,
        probe: [1, 2, 3].into(),
        reassert: false,
        learn_uuids: false,
        telemetry_preflight: false,
    };
    let out = run_pass(&t, &cfg(), &selection(&[1, 2, 3]), &mut state, &work).await;
    assert_eq!(t.calls(), vec![Call::Probe(1), Call::Probe(2), Call::Probe(3), Call::Check(1)]);
    assert_eq!(outcome(&out, 1).probe, Some(ProbeVerdict::Restarted));
    assert_eq!(outcome(&out, 1).action, ActionTaken::None);
    use crate::observe::Silence;
    assert_eq!(outcome(&out, 2).probe, Some(ProbeVerdict::WentSilent(Silence::Refused)));
    assert_eq!(outcome(&out, 3).probe, Some(ProbeVerdict::WentSilent(Silence::Timeout)));
    assert_eq!(state.validators[&2].silent.map(|s| (s.since, s.kind)), Some((NOW, Silence::Refused)));
    assert_eq!(state.validators[&3].silent.map(|s| s.kind), Some(Silence::Timeout));
}

#[tokio::test]
async fn routine_checks_wait_for_the_budget_but_triggered_ones_and_free_ones_do_not() {
    let t = Script::new(NOW);
    let mut state = holding(&[1, 2, 3, 4]);
    // uid 4 is known to hold nothing: checking it is free
    state.validators.get_mut(&4).unwrap().category = Some(Category::NoPat);
    // uid 2 lost our PAT yesterday: checked before the steady ones
    state.validators.get_mut(&2).unwrap().losses = vec![NOW - 86_400];
    // uid 3 is probed and found restarted
    state.validators.get_mut(&3).unwrap().next_check_at = NOW + 600;
    t.on_probe(3, script::alive("uuid-3-new"));
    // 150 a hour: routine checks may fill it to 127; 122 spent leaves room for two more calls
    state.github.record(NOW - 60, 122);
    t.on_check(3, script::valid()).on_check(2, script::valid()).on_check(4, script::no_pat());
    t.on_broadcast(4, script::broadcast(true, None)).on_check(4, script::valid());
    let budget = PassConfig { budget: Budget(Some(150)), ..cfg() };
    let work = Work { probe: [3].into(), ..Work::default() };
    let out = run_pass(&t, &budget, &selection(&[1, 2, 3, 4]), &mut state, &work).await;
    let calls = t.calls();
    assert_eq!(&calls[..4], &[Call::Probe(3), Call::Check(3), Call::Check(2), Call::Check(4)], "{calls:?}");
    assert!(!calls.contains(&Call::Check(1)), "the steady validator waits: {calls:?}");
    let v1 = outcome(&out, 1);
    assert_eq!(v1.action, ActionTaken::NotDue);
    assert!(v1.why.as_deref().unwrap().contains("GitHub budget"), "{v1:?}");
    assert!(state.validators[&1].next_check_at > NOW, "deferred until the budget frees up");
    assert_eq!(out.github.deferred, 1);
    // the repair of uid 4 still happened: repairs may use the whole budget
    assert_eq!(outcome(&out, 4).action, ActionTaken::Broadcast);
    assert!(state.github.spent(NOW) <= 150, "{}", state.github.spent(NOW));
}

#[tokio::test]
async fn a_repair_beyond_the_budget_and_its_allowance_waits() {
    let t = Script::new(NOW);
    let mut state = holding(&[1, 2]);
    // known to have lost it: the checks are free
    for u in [1, 2] {
        state.validators.get_mut(&u).unwrap().category = Some(Category::NoPat);
    }
    // 150 an hour, plus 6 for the re-assertion of each validator: repairs may fill it to 162. 158
    // are spent already (by `check` runs, say), 4 of them uid 2's repair earlier this hour.
    state.github.record(NOW - 60, 158);
    state.github.record_share(2, NOW - 60, 4);
    t.on_check(1, script::no_pat()).on_check(2, script::no_pat());
    t.on_broadcast(1, script::broadcast(true, None)).on_check(1, script::valid());
    let budget = PassConfig { budget: Budget(Some(150)), ..cfg() };
    let out = run_pass(&t, &budget, &selection(&[1, 2]), &mut state, &Work::one_shot()).await;
    // uid 1's share (6: the preflight and its repair) is there whatever else was spent; uid 2's is
    // 2 short of a repair, and the allowance has no room beyond what is held back for uid 1
    assert_eq!(
        t.calls(),
        vec![Call::Check(1), Call::Check(2), Call::Preflight, Call::Checkpoint, Call::Broadcast(1), Call::Check(1)]
    );
    assert_eq!(outcome(&out, 1).action, ActionTaken::Broadcast);
    let v = outcome(&out, 2);
    assert_eq!(v.action, ActionTaken::Recheck);
    assert!(v.why.as_deref().unwrap().contains("repair deferred"), "{v:?}");
    assert_eq!(state.validators[&2].next_check_at, NOW - 60 + 3600, "when the old spending leaves the window");
    assert_eq!(state.github.spent(NOW), 158 + 6);
    assert_eq!(state.github.share_spent(1, NOW), 6);
}

#[tokio::test]
async fn the_budget_stretches_the_routine_interval() {
    let t = Script::new(NOW);
    let uids: Vec<u16> = (1..=16).collect();
    let mut state = holding(&uids);
    for u in &uids {
        t.on_check(*u, script::valid());
    }
    let budget = PassConfig { budget: Budget(Some(150)), ..cfg() };
    let out = run_pass(&t, &budget, &selection(&uids), &mut state, &Work::one_shot()).await;
    assert_eq!(out.github.interval_s, 1043, "16 validators at 15 m would cost 130 calls/h, more than 75 % of 150");
    assert!(uids.iter().all(|u| state.validators[u].next_check_at == NOW + 1043));
    let unlimited = budget::intervals(900, Budget(None), 16, 0);
    assert_eq!(unlimited.steady, 900);
}

#[tokio::test]
async fn a_valid_preflight_is_reused_for_ten_minutes_not_run_per_repair() {
    let t = Script::new(NOW);
    let mut state = holding(&[1, 2]);
    // uid 1 lost its store: one preflight, then the repair
    t.on_check(1, script::no_pat()).on_broadcast(1, script::broadcast(true, None)).on_check(1, script::valid());
    let only = |u: u16| Work { only: Some([u].into()), ..Work::default() };
    run_pass(&t, &cfg(), &selection(&[1, 2]), &mut state, &only(1)).await;
    assert_eq!(t.calls().iter().filter(|c| **c == Call::Preflight).count(), 1);
    // five minutes later uid 2 lost it: no second preflight
    t.set_now(NOW + 300);
    state.validators.get_mut(&2).unwrap().next_check_at = NOW + 300;
    t.on_check(2, script::no_pat()).on_broadcast(2, script::broadcast(true, None)).on_check(2, script::valid());
    t.clear_log();
    run_pass(&t, &cfg(), &selection(&[1, 2]), &mut state, &only(2)).await;
    assert_eq!(t.calls(), vec![Call::Check(2), Call::Checkpoint, Call::Broadcast(2), Call::Check(2)]);
    // eleven minutes after the first: asked again
    t.set_now(NOW + 660);
    state.validators.get_mut(&1).unwrap().next_check_at = NOW + 660;
    t.on_check(1, script::no_pat()).on_broadcast(1, script::broadcast(true, None)).on_check(1, script::valid());
    t.clear_log();
    run_pass(&t, &cfg(), &selection(&[1, 2]), &mut state, &only(1)).await;
    assert_eq!(t.calls().iter().filter(|c| **c == Call::Preflight).count(), 1, "{:?}", t.calls());
    // a failed preflight is never reused
    t.preflight_says(crate::github::PreflightOutcome::Transient { reason: "503".into(), retry_after: None });
    t.set_now(NOW + 1400);
    state.validators.get_mut(&2).unwrap().next_check_at = NOW + 1400;
    state.validators.get_mut(&2).unwrap().last_broadcast_at = None;
    t.on_check(2, script::no_pat());
    t.clear_log();
    run_pass(&t, &cfg(), &selection(&[1, 2]), &mut state, &only(2)).await;
    assert_eq!(t.calls(), vec![Call::Check(2), Call::Preflight]);
    assert!(!state.preflight_still_valid(&pat().fingerprint(), NOW + 1400));
    assert_eq!(state.preflight.as_ref().map(|r| r.verdict), Some(crate::reconcile::state::PreflightVerdict::Transient));
}

#[tokio::test]
async fn a_first_meeting_learns_the_axon_uuid_so_a_restart_before_the_first_sweep_is_seen() {
    // start-up: nothing known; uid 1 holds our PAT, uid 2 does not answer
    let t = Script::new(NOW);
    t.on_check(1, script::valid()).on_check(2, script::refused());
    t.on_probe(1, script::alive("uuid-1-first"));
    let mut state = MinerState::new("5Hk", 74);
    let first = Work { learn_uuids: true, ..Work::one_shot() };
    let out = run_pass(&t, &cfg(), &selection(&[1, 2]), &mut state, &first).await;
    assert_eq!(t.calls(), vec![Call::Check(1), Call::Check(2), Call::Probe(1)], "only the answering one is probed");
    assert_eq!(out.probes, 1);
    assert_eq!(state.validators[&1].axon_uuid.as_deref(), Some("uuid-1-first"));
    assert_eq!(state.validators[&2].axon_uuid, None);

    // it restarts with an empty store before the first sweep: the sweep sees a new uuid and repairs
    let t = Script::new(NOW + 20);
    t.on_probe(1, script::alive("uuid-1-second"));
    t.on_check(1, script::no_pat()).on_broadcast(1, script::broadcast(true, None)).on_check(1, script::valid());
    let sweep = Work { only: Some(BTreeSet::new()), probe: [1].into(), learn_uuids: true, ..Work::default() };
    let out = run_pass(&t, &cfg(), &selection(&[1, 2]), &mut state, &sweep).await;
    assert_eq!(outcome(&out, 1).probe, Some(ProbeVerdict::Restarted));
    assert_eq!(outcome(&out, 1).action, ActionTaken::Broadcast);
    assert!(t.calls().contains(&Call::Broadcast(1)), "{:?}", t.calls());
    // the uuid is known now: no learning probe after the confirm
    assert_eq!(t.calls().iter().filter(|c| **c == Call::Probe(1)).count(), 1, "{:?}", t.calls());
}

#[tokio::test]
async fn a_first_reconcile_of_a_large_subnet_checks_every_validator_within_the_repair_limit() {
    // 100 validators never checked, all holding our PAT: 200 calls, past the routine guard (127 of
    // 150) but within the repair limit (150 + 6 × 100); a second, routine pass an hour later waits
    let uids: Vec<u16> = (1..=100).collect();
    let t = Script::new(NOW);
    for u in &uids {
        t.on_check(*u, script::valid());
    }
    let mut state = MinerState::new("5Hk", 74);
    let budget = PassConfig { budget: Budget(Some(150)), ..cfg() };
    let out = run_pass(&t, &budget, &selection(&uids), &mut state, &Work::one_shot()).await;
    assert_eq!(t.calls().len(), 100, "every validator is checked once: {:?}", t.calls());
    assert_eq!(out.github.deferred, 0);
    assert!(out.validators.iter().all(|v| v.final_category == Some(Category::Valid)));

    // once met, they are routine: a pass with all of them due again admits only up to the guard
    for h in state.validators.values_mut() {
        h.next_check_at = NOW + 60;
    }
    let t = Script::new(NOW + 60);
    for u in &uids {
        t.on_check(*u, script::valid());
    }
    let out = run_pass(&t, &budget, &selection(&uids), &mut state, &Work::one_shot()).await;
    assert!(out.github.deferred > 0, "routine checks wait for the budget");
}

/// Issue 20 item 3: `reconcile` run with the clock a day ahead, then with the clock corrected, must
/// contact the validators (not report them "in backoff" from day-old data for a day), and the
/// reasons it gives for not checking are the real ones.
#[tokio::test]
async fn a_clock_that_was_a_day_ahead_does_not_keep_the_next_pass_quiet() {
    let t = Script::new(NOW + 86_400);
    let mut state = MinerState::new("5Hk", 74);
    t.on_check(1, script::valid()).on_check(2, script::timeout());
    run_pass(&t, &cfg(), &selection(&[1, 2]), &mut state, &Work::one_shot()).await;
    assert!(state.validators[&2].not_before > NOW + 86_400, "uid 2 backed off in the future");
    // the clock is corrected
    t.set_now(NOW);
    t.clear_log();
    t.on_check(1, script::valid()).on_check(2, script::valid());
    let out = run_pass(&t, &cfg(), &selection(&[1, 2]), &mut state, &Work::one_shot()).await;
    assert_eq!(t.calls(), vec![Call::Check(1)], "uid 1 is checked at once; uid 2 waits out its backoff, not a day");
    let v2 = outcome(&out, 2);
    assert_eq!(v2.action, ActionTaken::NotDue);
    assert!(v2.next_check_at <= NOW + 120, "{v2:?}");
    assert!(v2.why.as_deref().is_some_and(|w| w.starts_with("in backoff after 1 failures")), "{v2:?}");
    assert_eq!(state.github.spent(NOW), 2, "this pass's check only: the day-ahead spending is not this hour's");
}

/// Log lines written while `f` runs, as the agent's text format writes them (no ANSI, no time).
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let out = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_ansi(false)
        .without_time()
        .with_writer(move || out.clone())
        .finish();
    // tracing caches whether a callsite is enabled process-wide, fixed by the first thread that
    // reaches it: a test running a pass with no subscriber can leave a span disabled for every
    // later test (a known tracing race under parallel tests). Re-ask every callsite registered so
    // far under this subscriber; callers run the code once before so that its callsites are.
    let r = tracing::subscriber::with_default(sub, || {
        tracing::callsite::rebuild_interest_cache();
        f()
    });
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    (r, text)
}

#[test]
fn a_pass_and_the_validator_it_acts_on_are_spans_around_what_it_logs() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let pass = || {
        let t = Script::new(NOW);
        t.on_check(1, script::valid()).on_check(2, script::no_pat()).on_broadcast(2, script::broadcast(true, None));
        t.on_check(2, script::valid());
        let mut state = holding(&[1, 2]);
        rt.block_on(run_pass(&t, &cfg(), &selection(&[1, 2]), &mut state, &Work::one_shot()));
    };
    // once to register the pass's callsites, once to read (see `logged`)
    logged(pass);
    let (_, log) = logged(pass);
    let line = log.lines().find(|l| l.contains(" broadcast ")).unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("pass{miner=5Hk netuid=74 kind=one_shot}:validator{uid=2 hotkey=vk2 addr=127.0.0.1:9002}:"),
        "{line}"
    );
}
