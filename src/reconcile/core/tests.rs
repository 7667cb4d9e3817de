//! Table tests from the observed-state → action table, then property tests over random validator
//! behaviour (never broadcast to a non-eligible or already-covered validator, one broadcast per
//! window, convergence).

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const FP: &str = "fp-current";
const NOW: Secs = 1_800_000_000;

fn policy() -> Policy {
    Policy {
        interval: 900,
        interval_lossy: 900,
        recheck_inconclusive: 300,
        backoff_initial: 60,
        backoff_max: 1800,
        alert_after: 7200,
        max_rejections: 5,
    }
}

fn desired(pre: PreflightStatus) -> Desired {
    Desired { fingerprint: FP.into(), adopt_fingerprint: Some(FP.into()), preflight: pre }
}

fn obs(c: Category, reason: Option<&str>) -> CheckObs {
    CheckObs { category: c, reason: reason.map(str::to_string), status: Some(200), axon_uuid: None, silence: None }
}

fn holding() -> History {
    History { hotkey: "hk".into(), accepted_fingerprint: Some(FP.into()), ..History::default() }
}

#[test]
fn decision_table() {
    let p = policy();
    let valid = desired(PreflightStatus::Valid);
    let cases: Vec<(&str, Desired, History, CheckObs, &str)> = vec![
        ("valid, current fp", valid.clone(), holding(), obs(Category::Valid, None), "none"),
        ("valid, first sight, adopt", valid.clone(), History::new("hk"), obs(Category::Valid, None), "none"),
        (
            "valid, rotated PAT",
            valid.clone(),
            History { accepted_fingerprint: Some("old".into()), ..holding() },
            obs(Category::Valid, None),
            "broadcast",
        ),
        ("inconclusive", valid.clone(), holding(), obs(Category::Inconclusive, None), "recheck"),
        // after a rotation an inconclusive validator holds the old PAT, but its GitHub is failing: a
        // broadcast would be refused and back off; re-check soon and send once it can say which
        (
            "inconclusive, rotated PAT",
            valid.clone(),
            History { accepted_fingerprint: Some("old".into()), ..holding() },
            obs(Category::Inconclusive, None),
            "recheck",
        ),
        (
            "invalid_pat transient (upstream bug)",
            valid.clone(),
            holding(),
            CheckObs::answer(crate::wire::CheckFields {
                has_pat: Some(true),
                pat_valid: Some(false),
                rejection_reason: Some("PAT test query failed: GitHub GraphQL API returned 502".into()),
            }),
            "recheck",
        ),
        (
            "invalid_pat permanent, preflight ok",
            valid.clone(),
            holding(),
            obs(Category::InvalidPat, Some("No Github id found for miner 1's PAT")),
            "broadcast",
        ),
        (
            "invalid_pat permanent, preflight invalid",
            desired(PreflightStatus::Invalid("401".into())),
            holding(),
            obs(Category::InvalidPat, Some("No Github id found")),
            "give_up",
        ),
        ("store unavailable", valid.clone(), holding(), obs(Category::StoreUnavailable, None), "recheck"),
        ("no_pat", valid.clone(), holding(), obs(Category::NoPat, None), "broadcast"),
        (
            "no_pat, preflight transient",
            desired(PreflightStatus::Transient("github 503".into())),
            holding(),
            obs(Category::NoPat, None),
            "recheck",
        ),
        ("no_response", valid.clone(), holding(), obs(Category::NoResponse, None), "recheck"),
        (
            "rejected 500",
            valid.clone(),
            holding(),
            CheckObs { category: Category::Rejected, reason: None, status: Some(500), axon_uuid: None, silence: None },
            "recheck",
        ),
        (
            "no_pat in backoff",
            valid.clone(),
            History { not_before: NOW + 10, failures: 1, ..holding() },
            obs(Category::NoPat, None),
            "recheck",
        ),
        (
            "terminal, same PAT",
            valid.clone(),
            History {
                terminal: Some(Terminal {
                    reason: "identity is locked".into(),
                    fingerprint: FP.into(),
                    since: NOW - 5,
                }),
                ..holding()
            },
            obs(Category::NoPat, None),
            "give_up",
        ),
        (
            "terminal for an old PAT is cleared",
            valid.clone(),
            History {
                terminal: Some(Terminal {
                    reason: "identity is locked".into(),
                    fingerprint: "old".into(),
                    since: NOW - 5,
                }),
                ..holding()
            },
            obs(Category::NoPat, None),
            "broadcast",
        ),
    ];
    for (name, d, h, o, want) in cases {
        let (a, _) = after_check(&p, &d, &h, &o, NOW, 0.5);
        assert_eq!(a.label(), want, "{name}: got {a:?}");
        assert_eq!(
            wants_broadcast(&d, &h, &o) && d.preflight == PreflightStatus::Valid && h.not_before <= NOW,
            want == "broadcast",
            "{name}: wants_broadcast"
        );
    }
}

#[test]
fn inconclusive_rechecks_sooner_than_the_interval() {
    let p = policy();
    let (a, h) =
        after_check(&p, &desired(PreflightStatus::Valid), &holding(), &obs(Category::Inconclusive, None), NOW, 0.0);
    assert_eq!(a, Action::Recheck { at: NOW + 300, why: "inconclusive: GitHub blip at the validator".into() });
    assert_eq!(h.failures, 0);
}

#[test]
fn broadcast_outcomes() {
    let p = policy();
    let d = desired(PreflightStatus::Valid);
    let h = broadcast_sent(&History::new("hk"), NOW, FP);
    let (a, h2) = after_broadcast(&p, &d, &h, &BroadcastObs::Accepted, NOW, 0.0);
    assert_eq!(a.label(), "recheck");
    assert_eq!(h2.accepted_fingerprint.as_deref(), Some(FP));
    let locked = BroadcastObs::refused(Some("GitHub identity is locked for this hotkey.".into()));
    let (a, h3) = after_broadcast(&p, &d, &h, &locked, NOW, 0.0);
    assert_eq!(a.label(), "give_up");
    assert!(h3.terminal.is_some());
    // terminal: even a no_pat check doesn't broadcast while the PAT is the same
    let (a, _) = after_check(&p, &d, &h3, &obs(Category::NoPat, None), NOW + 10_000, 0.0);
    assert_eq!(a.label(), "give_up");
    // a new PAT clears it
    let d2 = Desired { fingerprint: "fp-new".into(), ..d.clone() };
    let (a, _) = after_check(&p, &d2, &h3, &obs(Category::NoPat, None), NOW + 10_000, 0.0);
    assert_eq!(a, Action::Broadcast);
    let transient = BroadcastObs::refused(Some("Validator PAT store temporarily unavailable; please retry.".into()));
    let (a, h4) = after_broadcast(&p, &d, &h, &transient, NOW, 0.0);
    assert_eq!(a.label(), "recheck");
    assert_eq!(h4.failures, 1);
    assert!(h4.not_before >= NOW + 30);
    // a known-transient rejection backs off for as long as it lasts, never terminal
    let mut hh = h.clone();
    for _ in 0..3 * p.max_rejections {
        hh = after_broadcast(&p, &d, &hh, &transient, NOW, 0.999).1;
    }
    assert!(hh.terminal.is_none());
    assert_eq!(hh.not_before, NOW + p.backoff_max, "capped backoff");
    // a repeated unrecognised rejection becomes terminal after max_rejections
    let odd = BroadcastObs::refused(Some("computer says no".into()));
    let mut hh = h.clone();
    for i in 1..=p.max_rejections {
        hh = after_broadcast(&p, &d, &hh, &odd, NOW, 0.0).1;
        assert_eq!(hh.terminal.is_some(), i == p.max_rejections, "after {i} rejections");
    }
}

#[test]
fn store_unavailable_alerts_after_a_round() {
    let p = policy();
    let d = desired(PreflightStatus::Valid);
    let (_, h) = after_check(&p, &d, &holding(), &obs(Category::StoreUnavailable, None), NOW, 0.0);
    assert!(alerts(&p, &d, [(1, &h)], NOW + 3600).is_empty());
    let (_, h) = after_check(&p, &d, &h, &obs(Category::StoreUnavailable, None), NOW + 7300, 0.0);
    let a = alerts(&p, &d, [(1, &h)], NOW + 7300);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].kind, AlertKind::StoreUnavailable);
}

#[test]
fn backoff_grows_is_capped_and_jittered() {
    let p = policy();
    assert_eq!(p.backoff(1, 0.0), 30);
    assert_eq!(p.backoff(1, 0.999_999), 60);
    assert_eq!(p.backoff(2, 0.999_999), 120);
    assert_eq!(p.backoff(30, 0.999_999), 1800);
    assert_eq!(p.backoff(u32::MAX, 0.0), 900);
}

#[test]
fn sync_tracks_the_eligible_set() {
    let mut hs = BTreeMap::new();
    hs.insert(1, History { failures: 3, ..History::new("a") });
    hs.insert(2, History::new("b"));
    hs.insert(3, History::new("c"));
    hs.insert(
        5,
        History { last_broadcast_at: Some(NOW - 10), failures: 2, not_before: NOW + 100, ..History::new("e") },
    );
    sync(&mut hs, &[(1, "a"), (2, "b2"), (4, "d")], NOW, 7200);
    assert_eq!(hs.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    assert_eq!(active(&hs).map(|(u, _)| u).collect::<Vec<_>>(), vec![1, 2, 4]);
    assert_eq!(hs[&1].failures, 3);
    assert_eq!(hs[&2], History::new("b2"));
    assert_eq!(hs[&3].left_at, Some(NOW));
    // 5 comes back within the grace period: backoff forgotten, broadcast spacing kept
    sync(&mut hs, &[(1, "a"), (5, "e")], NOW + 60, 7200);
    assert_eq!((hs[&5].failures, hs[&5].not_before, hs[&5].left_at), (0, 0, None));
    assert_eq!(hs[&5].last_broadcast_at, Some(NOW - 10));
    // after the grace period the departed are forgotten
    sync(&mut hs, &[(1, "a")], NOW + 60 + 7201, 7200);
    assert_eq!(hs.keys().copied().collect::<Vec<_>>(), vec![1, 5]);
    assert_eq!(hs[&5].left_at, Some(NOW + 60 + 7201));
}

// ---- property tests ---------------------------------------------------------------------------

/// What a simulated validator does when asked.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    Good,
    Down,
    StoreBroken,
    GithubBlip,
    LosesStore,
}

fn behaviour() -> impl Strategy<Value = Behaviour> {
    prop_oneof![
        4 => Just(Behaviour::Good),
        1 => Just(Behaviour::Down),
        1 => Just(Behaviour::StoreBroken),
        1 => Just(Behaviour::GithubBlip),
        1 => Just(Behaviour::LosesStore),
    ]
}

struct Model {
    /// fingerprint stored per uid
    stored: BTreeMap<u16, Option<String>>,
}

impl Model {
    fn check(&mut self, uid: u16, b: Behaviour, fp_valid: &str) -> CheckObs {
        if matches!(b, Behaviour::LosesStore) {
            self.stored.insert(uid, None);
        }
        let stored = self.stored.get(&uid).cloned().flatten();
        let c = match b {
            Behaviour::Down => Category::NoResponse,
            Behaviour::StoreBroken => Category::StoreUnavailable,
            Behaviour::GithubBlip if stored.is_some() => Category::Inconclusive,
            _ => match stored {
                None => Category::NoPat,
                Some(f) if f == fp_valid => Category::Valid,
                Some(_) => Category::InvalidPat,
            },
        };
        obs(c, None)
    }

    fn broadcast(&mut self, uid: u16, b: Behaviour, fp: &str) -> BroadcastObs {
        match b {
            Behaviour::Down => BroadcastObs::Failed { status: None, detail: "timeout".into() },
            Behaviour::StoreBroken => {
                BroadcastObs::refused(Some("Validator PAT store temporarily unavailable; please retry.".into()))
            }
            _ => {
                self.stored.insert(uid, Some(fp.to_string()));
                BroadcastObs::Accepted
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Random eligible sets and behaviours over many passes: broadcasts only to eligible validators
    /// that are not valid-with-current-fingerprint, at most one per validator per backoff window.
    #[test]
    fn safety(
        passes in prop::collection::vec(
            (prop::collection::btree_map(0u16..12, behaviour(), 1..10), any::<u64>(), 1u64..2000),
            1..40,
        ),
        rotate_at in 0usize..60,
    ) {
        let p = policy();
        let mut model = Model { stored: BTreeMap::new() };
        let mut hs: BTreeMap<u16, History> = BTreeMap::new();
        let mut now = NOW;
        let mut fp = FP.to_string();
        let mut last_broadcast: BTreeMap<u16, (Secs, String)> = BTreeMap::new();
        let mut rng_state = 1u64;
        for (i, (set, seed, dt)) in passes.iter().enumerate() {
            now += dt;
            if i == rotate_at { fp = "fp-rotated".into(); }
            rng_state ^= seed;
            let eligible: Vec<(u16, String)> = set.keys().map(|u| (*u, format!("hk{u}"))).collect();
            let el: Vec<(u16, &str)> = eligible.iter().map(|(u, h)| (*u, h.as_str())).collect();
            sync(&mut hs, &el, now, p.alert_after);
            let d = Desired { fingerprint: fp.clone(), adopt_fingerprint: Some(FP.into()), preflight: PreflightStatus::Valid };
            let mut observations = BTreeMap::new();
            for (uid, b) in set {
                if due(&hs[uid], now, Due::OneShot) {
                    observations.insert(*uid, model.check(*uid, *b, &fp));
                }
            }
            // a non-eligible validator's observation must be ignored
            observations.insert(99, obs(Category::NoPat, None));
            let decisions = plan(&p, &d, &hs, &el, &observations, now, || { rng_state = rng_state.wrapping_mul(6364136223846793005).wrapping_add(1); (rng_state >> 11) as f64 / (1u64 << 53) as f64 });
            for dec in decisions {
                let obs = &observations[&dec.uid];
                if dec.action == Action::Broadcast {
                    prop_assert!(set.contains_key(&dec.uid), "broadcast to non-eligible uid {}", dec.uid);
                    let prev = &hs[&dec.uid];
                    prop_assert!(!(obs.category == Category::Valid && prev.accepted_fingerprint.as_deref() == Some(fp.as_str())),
                        "broadcast to uid {} already valid with the current fingerprint", dec.uid);
                    prop_assert!(now >= prev.not_before, "broadcast inside the backoff window");
                    if let Some((t, f)) = last_broadcast.get(&dec.uid) {
                        prop_assert!(prev.confirmed || *f != fp || now >= t + p.backoff_initial,
                            "two broadcasts of one PAT to uid {} within {}s without a confirmation between", dec.uid, now - t);
                    }
                    last_broadcast.insert(dec.uid, (now, fp.clone()));
                    let h = broadcast_sent(&dec.history, now, &d.fingerprint);
                    let res = model.broadcast(dec.uid, set[&dec.uid], &fp);
                    let (_, h) = after_broadcast(&p, &d, &h, &res, now, 0.5);
                    hs.insert(dec.uid, h);
                } else {
                    hs.insert(dec.uid, dec.history);
                }
            }
        }
    }

    /// When every validator behaves (after arbitrary history), coverage converges to "every
    /// eligible validator valid with the current fingerprint" within a bounded number of passes.
    #[test]
    fn converges_when_validators_behave(
        start in prop::collection::btree_map(0u16..16, prop::option::of(prop_oneof![Just("fp-old".to_string()), Just(FP.to_string())]), 1..16),
        failures in prop::collection::btree_map(0u16..16, 0u32..8, 0..16),
    ) {
        let p = policy();
        let mut model = Model { stored: start.clone() };
        let eligible: Vec<(u16, String)> = start.keys().map(|u| (*u, format!("hk{u}"))).collect();
        let el: Vec<(u16, &str)> = eligible.iter().map(|(u, h)| (*u, h.as_str())).collect();
        let mut hs = BTreeMap::new();
        sync(&mut hs, &el, NOW, p.alert_after);
        for (uid, f) in &failures {
            if let Some(h) = hs.get_mut(uid) { h.failures = *f; h.not_before = NOW + p.backoff(*f.max(&1), 0.9); }
        }
        let d = Desired { fingerprint: FP.into(), adopt_fingerprint: None, preflight: PreflightStatus::Valid };
        let mut now = NOW;
        for _ in 0..10 {
            let mut observations = BTreeMap::new();
            for (uid, _) in &el {
                if due(&hs[uid], now, Due::OneShot) { observations.insert(*uid, model.check(*uid, Behaviour::Good, FP)); }
            }
            for dec in plan(&p, &d, &hs, &el, &observations, now, || 0.5) {
                let h = if dec.action == Action::Broadcast {
                    let h = broadcast_sent(&dec.history, now, &d.fingerprint);
                    let res = model.broadcast(dec.uid, Behaviour::Good, FP);
                    let (_, h) = after_broadcast(&p, &d, &h, &res, now, 0.5);
                    // confirm
                    let (_, h) = after_check(&p, &d, &h, &model.check(dec.uid, Behaviour::Good, FP), now, 0.5);
                    h
                } else { dec.history };
                hs.insert(dec.uid, h);
            }
            now += p.backoff_max; // one capped backoff window per pass
        }
        for (uid, _) in &el {
            prop_assert_eq!(model.stored[uid].as_deref(), Some(FP), "uid {} not converged", uid);
            prop_assert_eq!(hs[uid].category, Some(Category::Valid));
            prop_assert_eq!(hs[uid].accepted_fingerprint.as_deref(), Some(FP));
        }
    }
}

/// The metric label and the JSON spell an alert kind alike (strum and serde, both snake_case).
#[test]
fn alert_kind_names_are_the_serde_names() {
    for &k in AlertKind::ALL {
        assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
    }
    assert_eq!(AlertKind::StoreUnavailable.as_str(), "store_unavailable");
}
