use std::io::Write as _;

use super::file::SPENT_CAP;
use super::*;

/// The metric label and the state file spell a verdict alike (strum and serde, both snake_case).
#[test]
fn verdict_names_are_the_serde_names() {
    for &v in PreflightVerdict::ALL {
        assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
    }
    assert_eq!(PreflightVerdict::Transient.as_str(), "transient");
}

#[test]
fn round_trip_and_fresh_on_mismatch() {
    let d = tempfile::tempdir().unwrap();
    let f = StateFile::new(d.path(), "5Hk", 74);
    assert_eq!(f.load("5Hk", 74), MinerState::new("5Hk", 74));
    let mut s = MinerState::new("5Hk", 74);
    s.first_fingerprint = Some("abc".into());
    s.validators.insert(3, History::new("vk"));
    f.save(&s).unwrap();
    assert_eq!(f.load("5Hk", 74), s);
    assert_eq!(f.load("5Other", 74), MinerState::new("5Other", 74));
}

#[test]
fn corrupt_and_unknown_version_are_moved_aside() {
    let d = tempfile::tempdir().unwrap();
    let f = StateFile::new(d.path(), "5Hk", 74);
    for bad in [&b"{not json"[..], br#"{"version": 99}"#, br#"{"version": 1, "hotkey": 3}"#, b"[]"] {
        std::fs::write(&f.path, bad).unwrap();
        assert_eq!(f.load("5Hk", 74), MinerState::new("5Hk", 74));
        assert!(!f.path.exists(), "bad file must be moved aside");
        let moved: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
            .collect();
        assert!(!moved.is_empty());
        for m in moved {
            assert_eq!(std::fs::read(m.path()).unwrap(), bad);
            std::fs::remove_file(m.path()).unwrap();
        }
    }
}

/// Issue 20 item 3: a state written with the clock a day ahead must not keep patrol quiet for a
/// day once the clock is right.
#[test]
fn a_state_from_the_future_is_settled_to_now() {
    let now: Secs = 1_800_000_000;
    let ahead = now + 86_400;
    let mut s = MinerState::new("5Hk", 74);
    s.updated_at = ahead;
    s.last_pass_at = Some(ahead);
    s.github.record(ahead, 40);
    let mut h = History::new("vk");
    h.checked_at = Some(ahead);
    h.next_check_at = ahead + 900; // the routine interval after that check
    h.not_before = ahead + 120; // a backoff window
    h.failures = 1;
    h.losses = vec![ahead];
    s.validators.insert(3, h);
    s.settle(now, 86_400);
    let h = &s.validators[&3];
    assert_eq!((h.checked_at, s.last_pass_at, s.updated_at), (Some(now), Some(now), now));
    assert_eq!((h.next_check_at, h.not_before), (now + 900, now + 120), "schedules keep their delays");
    assert_eq!(h.losses, vec![now]);
    assert_eq!(s.github.spent(now), 0, "spending from the future is dropped");
    // a schedule beyond the horizon (tampered) is pulled in
    let mut s2 = MinerState::new("5Hk", 74);
    let mut h = History::new("vk");
    h.next_check_at = now + 10 * 86_400;
    s2.validators.insert(3, h);
    s2.settle(now, 86_400);
    assert_eq!(s2.validators[&3].next_check_at, now + 86_400);
}

/// Issue 20 item 13: other commands' spending reaches the ledger through `<state>.spent`.
#[test]
fn spending_noted_beside_a_locked_state_is_taken_once() {
    let d = tempfile::tempdir().unwrap();
    let f = StateFile::new(d.path(), "5Hk", 74);
    let _held = f.try_lock().unwrap(); // the agent owns the state; `check` appends anyway
    f.append_spent(10_000, 8).unwrap();
    f.append_spent(10_010, 4).unwrap();
    f.append_spent(10_020, 0).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(d.path().join("state-5Hk-74.json.spent"))
        .unwrap()
        .write_all(b"garbage\n1 2 3\n")
        .unwrap();
    assert_eq!(f.take_spent(), vec![(10_000, 8), (10_010, 4)]);
    assert_eq!(f.take_spent(), vec![], "taken once");
    let mut s = MinerState::new("5Hk", 74);
    s.absorb_spent(&[(10_000, 8), (5_000, 100), (10_010, 4)], 10_020);
    assert_eq!(s.github.spent(10_020), 12, "an entry older than the hour is not counted");
    // nobody takes it for a long time: it stays small
    for i in 0..5000 {
        f.append_spent(20_000 + i, 2).unwrap();
    }
    let size = std::fs::metadata(d.path().join("state-5Hk-74.json.spent")).unwrap().len();
    assert!(size <= SPENT_CAP, "{size}");
    let kept = f.take_spent();
    assert!(kept.first().is_some_and(|(t, _)| *t > 20_000), "the oldest were dropped: {:?}", kept.first());
    assert_eq!(kept.last(), Some(&(24_999, 2)));
}

#[test]
fn lock_is_exclusive() {
    let d = tempfile::tempdir().unwrap();
    let f = StateFile::new(d.path(), "5Hk", 74);
    let l = f.try_lock().unwrap();
    assert!(matches!(f.try_lock(), Err(StateError::Busy { .. })));
    drop(l);
    f.try_lock().unwrap();
}
