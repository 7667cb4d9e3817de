use super::*;
use crate::lab::validator::store::PatEntry;
use crate::lab::validator::{Metagraph, RegisteredMiner};

fn hk(i: u8) -> String {
    crate::wallet::Hotkey::from_seed(&[i; 32]).ss58().to_string()
}

fn metagraph(n: u8) -> Metagraph {
    Metagraph::new((1..=n).map(|i| RegisteredMiner { uid: u16::from(i), hotkey: hk(i), stake: 1.0 })).unwrap()
}

fn entry(uid: u16, hotkey: &str, pat: &str, github_id: &str) -> PatEntry {
    PatEntry {
        uid,
        hotkey: Some(hotkey.into()),
        pat: RawPat::new(pat),
        github_id: Some(github_id.into()),
        stored_at: None,
    }
}

fn snapshot(entries: Vec<PatEntry>) -> StoreSnapshot {
    StoreSnapshot { entries: entries.into_iter().map(|e| (e.uid, e)).collect(), problem: None }
}

/// A store where each `(uid, id)` holds, under the uid's own hotkey, a PAT of GitHub id `id`
/// ("ok:<id>", see [`identity_of`]) stored with that id.
fn valid_store(pats: &[(u8, &str)]) -> StoreSnapshot {
    snapshot(pats.iter().map(|&(uid, id)| entry(u16::from(uid), &hk(uid), &format!("ok:{id}"), id)).collect())
}

fn valid(id: &str) -> IdentityResult {
    IdentityResult::Valid { id: id.into(), login: String::new() }
}

fn transient() -> IdentityResult {
    IdentityResult::Transient { detail: "503".into(), retry_after: None }
}

/// Identity by token: "ok:<id>", "transient", anything else invalid.
fn identity_of(p: &RawPat) -> IdentityResult {
    match p.expose() {
        "transient" => transient(),
        t if t.starts_with("ok:") => valid(&t[3..]),
        _ => IdentityResult::InvalidAuth { status: Some(401), message: "Bad credentials".into() },
    }
}

#[test]
fn per_uid_outcomes_with_upstream_texts() {
    let g = metagraph(6);
    let snap = snapshot(vec![
        entry(2, &hk(99), "ok:1", "1"),    // stale: a previous miner's entry
        entry(3, &hk(3), "bad", "3"),      // invalid
        entry(4, &hk(4), "transient", ""), // transient, no stored id
        entry(5, &hk(5), "transient", "5"),
        entry(6, &hk(6), "ok:6", "6"),
    ]);
    let mut gate = ScoringGate::default();
    let r =
        gate.run_round(&g, 0..=7, &snap, |_, p| identity_of(p), |_, _| PrFetch::Loaded { score: 2.0, total_prs: 1 });
    let reason = |u: u16| r.evaluations[&u].failed_reason.clone().unwrap_or_default();
    assert_eq!(reason(0), "SPECIAL CASE UID 0 - RECYCLE UID");
    assert_eq!(reason(1), "No stored PAT for miner 1 — miner must run `gitt miner post`");
    assert_eq!(
        reason(2),
        format!(
            "New miner registered on UID 2: hotkey changed {}... → {}... — miner must run `gitt miner post`",
            &hk(99)[..16],
            &hk(2)[..16]
        )
    );
    assert_eq!(reason(3), "No Github id found for miner 3's PAT");
    assert_eq!(reason(4), "Could not validate Github id for miner 4: GitHub /user lookup failed transiently");
    assert_eq!(reason(5), "", "transient with a stored id is not a failure");
    assert!(r.evaluations[&5].fetch_failed);
    assert_eq!(r.evaluations[&5].github_id.as_deref(), Some("5"));
    assert_eq!(reason(7), "No hotkey for miner 7");
    assert_eq!(r.rewards[&6], 1.0, "only uid 6 scored");
    assert!((gate.scores()[&6] - 0.7).abs() < 1e-12);
    assert_eq!(gate.weights()[&6], 1.0);
}

#[test]
fn cache_fallback_rules() {
    let g = metagraph(3);
    let snap = valid_store(&[(1, "11"), (2, "22"), (3, "33")]);
    let mut gate = ScoringGate::default();
    // round 1: uid 1 has PRs, uid 2 none, uid 3 PRs
    gate.run_round(
        &g,
        1..=3,
        &snap,
        |_, p| identity_of(p),
        |u, _| match u {
            2 => PrFetch::Loaded { score: 0.0, total_prs: 0 },
            _ => PrFetch::Loaded { score: 1.0, total_prs: 3 },
        },
    );
    // round 2: every fetch fails; GitHub identity transient for uid 3 (stored id used)
    let r = gate.run_round(
        &g,
        1..=3,
        &snap,
        |u, p| if u == 3 { transient() } else { identity_of(p) },
        |_, _| PrFetch::Failed,
    );
    assert_eq!(r.cached, [1, 3].into_iter().collect(), "restored only where the cache had PRs");
    assert!(r.evaluations[&1].from_cache);
    assert_eq!(r.evaluations[&2].score, 0.0);
    assert_eq!(r.rewards[&1], 0.5);
    // a changed github id does not match the cache
    let snap2 = valid_store(&[(1, "77")]);
    let r = gate.run_round(&g, [1], &snap2, |_, p| identity_of(p), |_, _| PrFetch::Failed);
    assert!(r.cached.is_empty());
    // a restart loses the cache
    gate.restart();
    let r = gate.run_round(&g, [3], &snap, |_, _| transient(), |_, _| PrFetch::Failed);
    assert!(r.cached.is_empty());
}

#[test]
fn duplicate_github_accounts_are_penalized_and_evicted() {
    let g = metagraph(4);
    let snap = valid_store(&[(1, "42"), (2, "42"), (3, "42"), (4, "0")]);
    let mut gate = ScoringGate::default();
    let r =
        gate.run_round(&g, 1..=4, &snap, |_, p| identity_of(p), |_, _| PrFetch::Loaded { score: 1.0, total_prs: 1 });
    assert_eq!(r.penalized, [1, 2, 3].into_iter().collect());
    assert_eq!(
        r.evaluations[&2].failed_reason.as_deref(),
        Some("Penalized: GitHub account 42 shared with UID(s) [1, 3]")
    );
    assert_eq!(r.rewards[&4], 1.0, "'0' is never grouped");
    assert_eq!(gate.scores()[&1], 0.0);
    assert_eq!(gate.cached_uids(), [4].into_iter().collect());
}

#[test]
fn a_lost_pat_costs_the_ema() {
    let g = metagraph(2);
    let both = valid_store(&[(1, "1"), (2, "2")]);
    let only2 = valid_store(&[(2, "2")]);
    let mut gate = ScoringGate::default();
    let pr = |_: u16, _: &str| PrFetch::Loaded { score: 1.0, total_prs: 1 };
    for _ in 0..50 {
        gate.run_round(&g, 1..=2, &both, |_, p| identity_of(p), pr);
    }
    assert!((gate.scores()[&1] - 0.5).abs() < 1e-9);
    gate.run_round(&g, 1..=2, &only2, |_, p| identity_of(p), pr);
    assert!((gate.scores()[&1] - 0.15).abs() < 1e-9, "one round at 0 leaves 30%");
    gate.run_round(&g, 1..=2, &only2, |_, p| identity_of(p), pr);
    assert!((gate.scores()[&1] - 0.045).abs() < 1e-9, "two leave 9%");
    let w = gate.weights();
    assert!((w.values().sum::<f64>() - 1.0).abs() < 1e-9);
    // an unreadable store this round: everyone scores zero, and the report says why
    let bad = StoreSnapshot { entries: Default::default(), problem: Some("corrupt".into()) };
    let r = gate.run_round(&g, 1..=2, &bad, |_, p| identity_of(p), pr);
    assert_eq!(r.snapshot_problem.as_deref(), Some("corrupt"));
    assert!(r.rewards.values().all(|&x| x == 0.0));
}

#[test]
fn hotkey_change_resets_the_score() {
    let g1 = metagraph(1);
    let snap = valid_store(&[(1, "1")]);
    let mut gate = ScoringGate::default();
    gate.run_round(&g1, [1], &snap, |_, p| identity_of(p), |_, _| PrFetch::Loaded { score: 1.0, total_prs: 1 });
    let g2 = Metagraph::new([RegisteredMiner { uid: 1, hotkey: hk(50), stake: 1.0 }]).unwrap();
    gate.run_round(&g2, [1], &snap, |_, p| identity_of(p), |_, _| PrFetch::Loaded { score: 1.0, total_prs: 1 });
    assert_eq!(gate.scores()[&1], 0.0, "new miner, stale entry: starts from zero and scores nothing");
}

#[test]
fn thousands_of_rounds_are_cheap() {
    let g = metagraph(100);
    let snap = snapshot((1..=100u8).map(|i| entry(u16::from(i), &hk(i), &format!("ok:{i}"), &i.to_string())).collect());
    let mut gate = ScoringGate::default();
    let started = std::time::Instant::now();
    for round in 0..2000u32 {
        gate.run_round(
            &g,
            0..=100,
            &snap,
            |_, p| identity_of(p),
            |u, _| {
                if (u32::from(u) + round) % 7 == 0 {
                    PrFetch::Failed
                } else {
                    PrFetch::Loaded { score: f64::from(u), total_prs: 1 }
                }
            },
        );
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
    assert!((gate.weights().values().sum::<f64>() - 1.0).abs() < 1e-9);
}
