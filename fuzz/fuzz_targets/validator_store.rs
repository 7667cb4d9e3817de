//! The embedded validator's PAT store (`miner_pats.json`, gittensor's format) on arbitrary file
//! contents: reads never panic, the tolerant snapshot never fails, a save on a file the strict read
//! refuses fails without touching it (fail closed), and a save on a file it accepts replaces or
//! appends exactly one entry and carries every other value over unchanged. The streaming
//! `get_by_uid` agrees with the full read on every input. No error names a PAT.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use patrol::lab::validator::{PatEntry, PatStore, RawPat};
use serde_json::Value;

const UID: u16 = 1;
const HOTKEY: &str = "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV";
const PAT: &str = "ghp_fuzz_new_token_not_real";

fn values(bytes: &[u8]) -> Vec<Value> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Array(v)) => v,
        other => panic!("store file is not a JSON list: {other:?}"),
    }
}

/// Entries are equal; a text field read from a JSON number (`"github_id": 4.2e87`) may differ
/// within serde_json's float parsing imprecision (see `common::FLOATS_ROUND_TRIP`).
fn entry_eq(a: &PatEntry, b: &PatEntry) -> bool {
    let text = |x: &Option<String>, y: &Option<String>| match (x, y) {
        (Some(p), Some(q)) if p != q => match (p.parse::<f64>(), q.parse::<f64>()) {
            (Ok(m), Ok(n)) => common::f64_eq(m, n),
            _ => false,
        },
        _ => x == y,
    };
    a.uid == b.uid
        && a.pat == b.pat
        && text(&a.hotkey, &b.hotkey)
        && text(&a.github_id, &b.github_id)
        && text(&a.stored_at, &b.stored_at)
}

fn same(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| common::json_eq(x, y))
}

fuzz_target!(|data: &[u8]| {
    let dir = common::scratch();
    let path = dir.join("miner_pats.json");
    std::fs::write(&path, data).unwrap();
    let store = PatStore::new(&path);

    let strict = store.read_all();
    let snapshot = store.snapshot();
    assert_eq!(snapshot.problem.is_some(), strict.is_err(), "snapshot and strict read disagree");
    if let Err(e) = &strict {
        assert!(!e.to_string().contains("ghp_"), "a store error names a token: {e}");
    }
    // The streaming lookup answers exactly what the full read answers: the same entry, or the
    // same error text.
    match (store.get_by_uid(UID), &strict) {
        (Ok(got), Ok(all)) => assert_eq!(got.as_ref(), all.iter().find(|e| e.uid == UID), "lookup disagrees"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "lookup fails differently"),
        (got, _) => panic!("lookup {got:?} vs full read {strict:?}"),
    }

    let saved = store.save(UID, HOTKEY, &RawPat::new(PAT), "1");
    match strict {
        Err(_) => {
            assert!(saved.is_err(), "save succeeded over a store the strict read refuses");
            assert_eq!(std::fs::read(&path).unwrap(), data, "fail closed: a refused store was modified");
        }
        Ok(before) => {
            saved.expect("save over a readable store");
            let old = values(data);
            let new = values(&std::fs::read(&path).unwrap());
            let is_ours = |v: &Value| {
                v.get("uid").and_then(Value::as_u64) == Some(u64::from(UID))
                    && v.get("hotkey").and_then(Value::as_str) == Some(HOTKEY)
                    && v.get("pat").and_then(Value::as_str) == Some(PAT)
            };
            let replaced = if new.len() == old.len() + 1 {
                assert!(same(&new[..old.len()], &old), "append changed other entries");
                old.len()
            } else {
                assert_eq!(new.len(), old.len(), "save changed the number of entries by more than one");
                let diff: Vec<usize> = (0..old.len()).filter(|&i| !common::json_eq(&old[i], &new[i])).collect();
                assert!(diff.len() <= 1, "save changed more than one entry: {diff:?}");
                // An identical entry can only be ours if it was already identical (stored_at differs).
                diff.first().copied().expect("the saved entry is not in the file")
            };
            assert!(is_ours(&new[replaced]), "the saved entry is not ours: {:?}", new[replaced]);
            // The typed view agrees: our uid now maps to our PAT, others are unchanged.
            let after = store.read_all().expect("read after save");
            let others = |v: &[PatEntry]| v.iter().filter(|e| e.uid != UID).cloned().collect::<Vec<_>>();
            let e = after.iter().find(|e| e.uid == UID).expect("our uid after save");
            assert_eq!(e.pat.expose(), PAT);
            let (a, b) = (others(&after), others(&before));
            assert!(
                a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| entry_eq(x, y)),
                "entries of other uids changed:\n{a:?}\n{b:?}"
            );
        }
    }
});
