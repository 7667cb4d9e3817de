use proptest::strategy::Strategy;
use std::os::unix::fs::PermissionsExt;

use super::pyformat::python_isoformat;
use super::*;

fn store() -> (tempfile::TempDir, PatStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = PatStore::new(dir.path().join("miner_pats.json"));
    (dir, s)
}

fn pat(s: &str) -> RawPat {
    RawPat::new(s)
}

#[test]
fn writes_python_indent_2_format() {
    let (_d, s) = store();
    assert!(s.ensure_file().unwrap());
    assert_eq!(fs::read_to_string(s.path()).unwrap(), "[]");
    assert!(!s.ensure_file().unwrap(), "an existing file is left alone");
    s.save(3, "5Hot", &pat("ghp_é"), "42").unwrap();
    let text = fs::read_to_string(s.path()).unwrap();
    let stored_at = s.get_by_uid(3).unwrap().unwrap().stored_at.unwrap();
    let want = format!(
        "[\n  {{\n    \"uid\": 3,\n    \"hotkey\": \"5Hot\",\n    \"pat\": \"ghp_\\u00e9\",\n    \"github_id\": \"42\",\n    \"stored_at\": \"{stored_at}\"\n  }}\n]"
    );
    assert_eq!(text, want);
    assert_eq!(fs::metadata(s.path()).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn upsert_by_uid_and_new_hotkey_replaces_stale_entry() {
    let (_d, s) = store();
    s.save(1, "old", &pat("ghp_a"), "7").unwrap();
    s.save(2, "other", &pat("ghp_b"), "8").unwrap();
    s.save(1, "new", &pat("ghp_c"), "9").unwrap();
    let all = s.read_all().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].uid, 1, "replaced in place");
    assert_eq!(all[0].hotkey.as_deref(), Some("new"));
    assert_eq!(all[0].pat.expose(), "ghp_c");
    assert_eq!(all[0].github_id.as_deref(), Some("9"));
    assert_eq!(s.get_by_uid(2).unwrap().unwrap().pat.expose(), "ghp_b");
    assert_eq!(s.get_by_uid(3).unwrap(), None);
}

#[test]
fn corrupt_and_structurally_wrong_files_fail_closed() {
    for (content, kind) in [
        ("not json{{{", "corrupt"),
        ("", "corrupt"),
        ("{}", "format"),
        ("[1, 2]", "format"),
        ("[{\"uid\": 1}, \"x\"]", "format"),
        ("null", "format"),
    ] {
        let (_d, s) = store();
        fs::write(s.path(), content).unwrap();
        let e = s.save(1, "hk", &pat("ghp_secretvalue"), "1").unwrap_err();
        assert_eq!(e.kind(), kind, "{content:?}: {e}");
        assert_eq!(fs::read_to_string(s.path()).unwrap(), content, "left byte-identical");
        assert_eq!(s.get_by_uid(1).unwrap_err().kind(), kind);
        let snap = s.snapshot();
        assert!(snap.entries.is_empty());
        assert!(snap.problem.is_some());
        assert!(!s.ensure_file().unwrap(), "ensure_file leaves a bad file alone");
        assert_eq!(fs::read_to_string(s.path()).unwrap(), content);
    }
}

#[test]
fn unknown_entries_and_keys_survive_an_upsert() {
    let (_d, s) = store();
    fs::write(
        s.path(),
        r#"[{"uid": "x", "note": 1}, {"uid": 5, "hotkey": "h", "pat": "p", "github_id": 12, "extra": [1]}]"#,
    )
    .unwrap();
    let e = s.get_by_uid(5).unwrap().unwrap();
    assert_eq!(e.github_id.as_deref(), Some("12"));
    s.save(6, "h6", &pat("p6"), "6").unwrap();
    let v: Value = serde_json::from_str(&fs::read_to_string(s.path()).unwrap()).unwrap();
    assert_eq!(v[0], serde_json::json!({"uid": "x", "note": 1}));
    assert_eq!(v[1]["extra"], serde_json::json!([1]));
    assert_eq!(v[2]["uid"], 6);
}

#[test]
fn snapshot_last_entry_of_a_uid_wins_and_missing_file_is_empty() {
    let (_d, s) = store();
    assert!(s.snapshot().entries.is_empty());
    assert!(s.snapshot().problem.is_none());
    fs::write(s.path(), r#"[{"uid": 1, "hotkey": "a", "pat": "p1"}, {"uid": 1.0, "hotkey": "b", "pat": "p2"}]"#)
        .unwrap();
    let snap = s.snapshot();
    assert_eq!(snap.entries[&1].hotkey.as_deref(), Some("b"));
    // the point read returns the first, as upstream's loop does
    assert_eq!(s.get_by_uid(1).unwrap().unwrap().hotkey.as_deref(), Some("a"));
}

#[test]
fn save_if_refuses_without_writing() {
    let (_d, s) = store();
    s.save(1, "hk", &pat("ghp_a"), "7").unwrap();
    let before = fs::read(s.path()).unwrap();
    let out = s.save_if(1, "hk", &pat("ghp_b"), "8", |e| e.and_then(|e| e.github_id.as_deref()) != Some("7")).unwrap();
    assert_eq!(out, SaveOutcome::Refused);
    assert_eq!(fs::read(s.path()).unwrap(), before);
}

#[test]
fn orphaned_temp_files_of_dead_writers_are_removed() {
    let (d, s) = store();
    // pid 0x7fffffff does not exist; our own pid does.
    let dead = d.path().join(".miner_pats.json.tmp.2147483647.1");
    let alive = d.path().join(format!(".miner_pats.json.tmp.{}.1", std::process::id()));
    fs::write(&dead, "x").unwrap();
    fs::write(&alive, "x").unwrap();
    s.ensure_file().unwrap();
    assert!(!dead.exists());
    assert!(alive.exists());
}

#[test]
fn secrets_stay_out_of_debug_and_errors() {
    let p = pat("ghp_abcdefghijklmnop1234");
    assert_eq!(format!("{p:?}"), "RawPat(***1234)");
    let e = PatEntry { uid: 1, hotkey: None, pat: p, github_id: None, stored_at: None };
    assert!(!format!("{e:?}").contains("abcdefgh"));
    let (_d, s) = store();
    fs::write(s.path(), "[{\"uid\": 1, \"pat\": \"ghp_abcdefghijklmnop1234\"} garbage").unwrap();
    let err = s.get_by_uid(1).unwrap_err();
    assert!(!err.to_string().contains("abcdefgh"), "{err}");
    assert!(err.brief().starts_with("miner_pats.json is not valid JSON"), "{}", err.brief());
}

#[test]
fn isoformat_matches_python() {
    let t = time::macros::datetime!(2026-11-22 01:41:35.123456 UTC);
    assert_eq!(python_isoformat(t), "2026-11-22T01:41:35.123456+00:00");
    let t = time::macros::datetime!(2026-01-02 03:04:05 UTC);
    assert_eq!(python_isoformat(t), "2026-01-02T03:04:05+00:00");
}

#[test]
fn unreadable_file_is_a_read_error() {
    let (d, s) = store();
    fs::create_dir(d.path().join("miner_pats.json")).unwrap();
    assert_eq!(s.get_by_uid(1).unwrap_err().kind(), "read");
    assert_eq!(s.save(1, "h", &pat("p"), "1").unwrap_err().kind(), "read");
}

#[test]
fn concurrent_saves_in_one_process_are_all_kept_and_guards_see_earlier_ones() {
    let (_d, s) = store();
    let s = Arc::new(s);
    let threads: Vec<_> = (0..64u16)
        .map(|uid| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || s.save(uid, &format!("hk{uid}"), &pat(&format!("ghp_{uid}")), "1").unwrap())
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(s.read_all().unwrap().len(), 64);
    // Two racing pinned saves for one uid: whichever commits second sees the first and is refused.
    let racers: Vec<_> = ["10", "20"]
        .into_iter()
        .map(|id| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                s.save_if(100, "hk100", &pat("p"), id, move |e| e.is_none_or(|e| e.github_id.as_deref() == Some(id)))
                    .unwrap()
            })
        })
        .collect();
    let outcomes: Vec<SaveOutcome> = racers.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == SaveOutcome::Saved).count(), 1, "{outcomes:?}");
}

/// `get_by_uid` (a streaming scan) and `read_all` + find (a full parse) must agree on every file:
/// the same entry, or the same error text.
fn assert_lookup_matches_full_read(content: &str) {
    let (_d, s) = store();
    fs::write(s.path(), content).unwrap();
    for uid in [0u16, 1, 2, 7, 65535] {
        let full = s.read_all().map(|all| all.into_iter().find(|e| e.uid == uid));
        for fast in [s.get_by_uid(uid), s.get_by_uid_streamed(uid)] {
            match (&full, &fast) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "uid {uid} in {content:?}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "uid {uid} in {content:?}"),
                _ => panic!("uid {uid} in {content:?}: full read {full:?}, lookup {fast:?}"),
            }
        }
        assert_eq!(s.validate().map_err(|e| e.to_string()), full.map(drop).map_err(|e| e.to_string()));
    }
}

#[test]
fn lookup_by_uid_agrees_with_the_full_read_on_tricky_files() {
    for content in [
        "[]",
        "[{\"uid\": 1, \"hotkey\": \"a\", \"pat\": \"ghp_x\", \"github_id\": \"9\", \"stored_at\": \"t\"}]",
        // first match wins; later duplicates ignored
        "[{\"uid\": 1, \"pat\": \"first\"}, {\"uid\": 1, \"pat\": \"second\"}]",
        // a repeated key inside one object: the last value, as a full parse
        "[{\"uid\": 1, \"pat\": \"a\", \"pat\": \"b\"}]",
        // a repeated uid: the last one decides, and fields seen while it did not match still count
        "[{\"uid\": 2, \"pat\": \"a\", \"uid\": 1}]",
        "[{\"uid\": 1, \"pat\": \"a\", \"uid\": 2, \"hotkey\": \"h\", \"uid\": 1}, {\"uid\": 1, \"pat\": \"z\"}]",
        "[{\"uid\": 1, \"pat\": \"a\", \"uid\": 2}, {\"uid\": 1, \"pat\": \"z\"}]",
        "[{\"uid\": 1.0, \"github_id\": 12345}, {\"uid\": 2.5}, {\"uid\": -1}, {\"uid\": 70000}, {\"uid\": \"1\"}]",
        "[{\"uid\": 7, \"extra\": {\"nested\": [1, {\"a\": null}]}, \"hotkey\": null}]",
        // a bad item after the match: the whole file is unreadable
        "[{\"uid\": 1}, 3]",
        "[{\"uid\": 1}, [1]]",
        "[{\"uid\": 1}, null, \"s\"]",
        "[{\"uid\": 1}] trailing",
        "[{\"uid\": 1},]",
        "{\"uid\": 1}",
        "\"text\"",
        "true",
        "12",
        "null",
        "",
        "[{\"uid\": 1, \"pat\": \"\\u00e9\\ud83d\\ude00\"}]",
        "  [ {\"uid\":2} ]  \n",
    ] {
        assert_lookup_matches_full_read(content);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    #[test]
    fn lookup_by_uid_agrees_with_the_full_read_on_generated_files(
        items in proptest::collection::vec(
            proptest::prop_oneof![
                // entries with uids around the probed ones and some other keys
                (0u16..4, proptest::option::of("[a-z]{0,6}"), proptest::bool::ANY).prop_map(|(u, p, x)| {
                    let mut o = serde_json::json!({"uid": u, "hotkey": "hk", "github_id": u64::from(u) * 10});
                    if let Some(p) = p { o["pat"] = serde_json::Value::String(p); }
                    if x { o["extra"] = serde_json::json!([1, {"k": null}]); }
                    o
                }),
                proptest::strategy::Just(serde_json::json!({"uid": 1.0})),
                proptest::strategy::Just(serde_json::json!(5)),
                proptest::strategy::Just(serde_json::json!("x")),
                proptest::strategy::Just(serde_json::json!(null)),
            ],
            0..8,
        ),
        cut in proptest::option::of(0usize..200),
    ) {
        let mut text = serde_json::to_string(&items).unwrap();
        // sometimes truncate: syntax errors must read the same too
        if let Some(c) = cut {
            let c = c.min(text.len());
            text.truncate(c);
        }
        assert_lookup_matches_full_read(&text);
    }
}

/// Issue 15 item 6 (store part): a device, a FIFO, a directory or a file beyond the cap is never
/// read into memory, is "store unavailable" to every reader, and is never overwritten.
#[test]
fn non_regular_and_oversized_stores_are_read_errors_and_never_overwritten() {
    use std::os::unix::fs::FileTypeExt;
    let (d, s) = store();
    let check = |s: &PatStore, want: &str| {
        for e in [s.get_by_uid(1).unwrap_err(), s.read_all().unwrap_err(), s.validate().unwrap_err()] {
            assert_eq!(e.kind(), "read", "{e}");
            assert!(e.brief().contains(want), "{e:?}");
        }
        let e = s.save(1, "5Hot", &pat("ghp_new"), "1").unwrap_err();
        assert!(e.brief().contains(want), "{e:?}");
        assert!(s.snapshot().problem.is_some_and(|p| p.contains(want)));
    };
    // a symlink to /dev/zero: followed, and refused as a device before a byte is read
    std::os::unix::fs::symlink("/dev/zero", s.path()).unwrap();
    check(&s, "is not a regular file (it is a character device)");
    assert!(fs::symlink_metadata(s.path()).unwrap().file_type().is_symlink(), "the link is left alone");
    fs::remove_file(s.path()).unwrap();
    // a FIFO nobody writes to: opening it must not block
    let c = std::ffi::CString::new(s.path().as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo on a path in our temp dir.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    check(&s, "is not a regular file (it is a FIFO)");
    assert!(fs::metadata(s.path()).unwrap().file_type().is_fifo());
    fs::remove_file(s.path()).unwrap();
    fs::create_dir(s.path()).unwrap();
    check(&s, "is not a regular file (it is a directory)");
    fs::remove_dir(s.path()).unwrap();
    // a (sparse) file one byte over the cap
    let f = fs::File::create(s.path()).unwrap();
    f.set_len(STORE_READ_CAP + 1).unwrap();
    check(&s, &format!("is larger than {STORE_READ_CAP} bytes"));
    assert_eq!(fs::metadata(s.path()).unwrap().len(), STORE_READ_CAP + 1, "not rewritten");
    drop(d);
}

#[test]
fn concurrent_lookups_all_get_their_own_entry() {
    let (_d, s) = store();
    for uid in 0..50u16 {
        s.save(uid, &format!("hk{uid}"), &pat(&format!("ghp_{uid}")), "1").unwrap();
    }
    let s = Arc::new(s);
    let threads: Vec<_> = (0..200u16)
        .map(|i| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || (i % 60, s.get_by_uid(i % 60).unwrap()))
        })
        .collect();
    for t in threads {
        let (uid, got) = t.join().unwrap();
        match got {
            Some(e) => assert_eq!((e.uid, e.pat.expose().to_string()), (uid, format!("ghp_{uid}"))),
            None => assert!(uid >= 50, "uid {uid} has an entry"),
        }
    }
}
