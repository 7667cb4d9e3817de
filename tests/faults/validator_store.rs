//! Reference validators (`patrol validator serve`) SIGKILLed and restarted with an empty, a
//! corrupt and a read-only PAT store, other miners' entries in every store. `patrol reconcile` must
//! re-send the PAT where it was lost, never write (or broadcast into) a store it cannot read, back
//! off from a store it cannot write, and restore coverage once the store is fixed — and no other
//! miner's entry may change.

use std::path::{Path, PathBuf};

use super::{PAT, accounts, config, make_due, others_in, our_pat_in, patrol, row, write_store};
use crate::support::fake_github::FakeGithubProcess;
use crate::support::subnet::Subnet;

/// Three validators (uids 11–13) sharing one fake GitHub process, our PAT posted to all of them,
/// and two other miners' entries added to uid 12's store (written while it was down).
fn covered_subnet() -> (FakeGithubProcess, Subnet) {
    let gh = FakeGithubProcess::new(&accounts());
    let mut net = Subnet::with_pat(3, gh.addr, PAT);
    let validators = net.validators_toml(&[0, 1, 2]);
    net.scratch.write("c.toml", &config(&gh.url(), &validators, ""), 0o600);
    patrol(&net.scratch, "c.toml", &["post", "--json"]).expect_code(0);
    // uid 12 also holds two other miners' PATs
    let node = &mut net.nodes[1];
    node.kill();
    let mut entries = super::other_miners();
    entries.insert(
        1,
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(&node.store).unwrap()).unwrap()[0].clone(),
    );
    write_store(&node.store, &entries);
    node.start();
    let run = patrol(&net.scratch, "c.toml", &["reconcile", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json()["broadcasts_sent"], 0, "{run}");
    assert!(net.nodes.iter().all(|n| our_pat_in(&n.store).as_deref() == Some(PAT)));
    assert_eq!(others_in(&net.nodes[1].store), super::other_miners());
    (gh, net)
}

/// The file names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn validator_killed_and_restarted_without_its_store_gets_the_pat_again_and_others_keep_theirs() {
    let (_gh, mut net) = covered_subnet();

    // 1. the container is recreated without its volume: no store at all
    net.nodes[1].kill();
    std::fs::remove_file(&net.nodes[1].store).unwrap();
    net.nodes[1].start();
    assert_eq!(our_pat_in(&net.nodes[1].store), None, "a new validator starts with an empty store");
    let written: Vec<_> = net.nodes.iter().map(|n| n.written_at()).collect();
    let run = patrol(&net.scratch, "c.toml", &["reconcile", "--json"]);
    run.expect_code(0);
    let r = row(&run, 12);
    assert_eq!(
        (r["category"].as_str(), r["action"].as_str(), r["final_category"].as_str(), r["attempts"].as_u64()),
        (Some("no_pat"), Some("broadcast"), Some("valid"), Some(1)),
        "{run}"
    );
    assert_eq!(run.json()["broadcasts_sent"], 1, "only the validator that lost it: {run}");
    assert_eq!(our_pat_in(&net.nodes[1].store).as_deref(), Some(PAT));
    for i in [0, 2] {
        assert_eq!(net.nodes[i].written_at(), written[i], "uid {} was written again", net.nodes[i].uid);
    }

    // 2. restored from an old backup: the other miners are back, ours is missing
    net.nodes[1].kill();
    write_store(&net.nodes[1].store, &super::other_miners());
    net.nodes[1].start();
    let run = patrol(&net.scratch, "c.toml", &["reconcile", "--json"]);
    run.expect_code(0);
    assert_eq!(
        (row(&run, 12)["action"].as_str(), row(&run, 12)["final_category"].as_str()),
        (Some("broadcast"), Some("valid")),
        "{run}"
    );
    assert_eq!(our_pat_in(&net.nodes[1].store).as_deref(), Some(PAT));
    assert_eq!(others_in(&net.nodes[1].store), super::other_miners(), "other miners' entries changed");

    // 3. quiet again
    let run = patrol(&net.scratch, "c.toml", &["reconcile", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json()["broadcasts_sent"], 0, "{run}");
    net.assert_no_leak(PAT);
}

#[test]
fn corrupt_store_is_store_unavailable_never_overwritten_nor_broadcast_to_and_repaired_once_fixed() {
    let (_gh, mut net) = covered_subnet();
    let store = net.nodes[1].store.clone();
    // a writer died mid-file (not gittensor's atomic writer): the JSON stops in the middle of an entry
    net.nodes[1].kill();
    let whole = std::fs::read(&store).unwrap();
    let corrupt = whole[..whole.len() * 2 / 3].to_vec();
    std::fs::write(&store, &corrupt).unwrap();
    net.nodes[1].start();
    let dir = store.parent().unwrap().to_path_buf();
    let files = listing(&dir);
    assert!(
        net.nodes[1].log_text().contains("the PAT store is unreadable; it is left untouched"),
        "{}",
        net.nodes[1].log_text()
    );

    let run = patrol(&net.scratch, "c.toml", &["reconcile", "--json"]);
    run.expect_code(1);
    let j = run.json();
    assert_eq!((j["store_unavailable"].as_u64(), j["valid"].as_u64()), (Some(1), Some(2)), "{run}");
    assert_eq!(j["broadcasts_sent"], 0, "a broadcast into an unreadable store would be rejected: {run}");
    assert_eq!(j["preflight"], serde_json::Value::Null, "nobody needs the PAT: no preflight");
    let r = row(&run, 12);
    assert_eq!(
        (r["category"].as_str(), r["gitt_category"].as_str(), r["has_pat"].as_bool(), r["pat_valid"].clone()),
        (Some("store_unavailable"), Some("no_pat"), Some(false), serde_json::Value::Null),
        "{run}"
    );
    assert_eq!(r["rejection_reason"], "Validator PAT store temporarily unavailable; please retry.");
    assert_eq!((r["action"].as_str(), r["attempts"].as_u64()), (Some("recheck"), Some(0)), "{run}");
    assert!(r["why"].as_str().unwrap().contains("store unavailable"), "{run}");

    // at once again: inside the backoff, not contacted, nothing sent
    let run = patrol(&net.scratch, "c.toml", &["reconcile", "--json"]);
    run.expect_code(1);
    assert_eq!(run.json()["broadcasts_sent"], 0, "{run}");
    let r = row(&run, 12);
    assert_eq!((r["action"].as_str(), r["final_category"].as_str()), (Some("not_due"), Some("store_unavailable")));
    // `check` says the same (and never sends anything)
    let check = patrol(&net.scratch, "c.toml", &["check", "--json"]);
    check.expect_code(1);
    assert_eq!(row(&check, 12)["category"], "store_unavailable", "{check}");
    // the validator left the corrupt bytes exactly as they were, and wrote nothing beside them
    assert_eq!(std::fs::read(&store).unwrap(), corrupt, "the corrupt store was rewritten");
    assert_eq!(listing(&dir), files, "files appeared next to the store");

    // the operator repairs the file (the other miners' entries; ours was in the lost part)
    write_store(&store, &super::other_miners());
    make_due(&net.scratch, 12);
    let run = patrol(&net.scratch, "c.toml", &["reconcile", "--json"]);
    run.expect_code(0);
    let r = row(&run, 12);
    assert_eq!(
        (r["category"].as_str(), r["action"].as_str(), r["final_category"].as_str()),
        (Some("no_pat"), Some("broadcast"), Some("valid")),
        "{run}"
    );
    assert_eq!(our_pat_in(&store).as_deref(), Some(PAT));
    assert_eq!(others_in(&store), super::other_miners(), "other miners' entries changed");
    net.assert_no_leak(PAT);
}

/// The store's directory made read-only for the validator process: for root (whom permission
/// bits do not stop; CI) a read-only bind mount in the validator's own mount namespace, for
/// another user the directory's write bit. Undone by [`ReadOnlyStore::undo`] or drop.
struct ReadOnlyStore {
    dir: PathBuf,
    /// The command prefix the validator runs under (the mount namespace), if any.
    wrapper: Vec<String>,
    active: bool,
}

impl ReadOnlyStore {
    fn apply(dir: &Path) -> ReadOnlyStore {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let wrapper = if unsafe { libc::geteuid() } == 0 {
            crate::support::root::read_only_at(dir)
        } else {
            set_mode(dir, 0o555);
            Vec::new()
        };
        ReadOnlyStore { dir: dir.to_path_buf(), wrapper, active: true }
    }

    /// The command prefix the validator runs under.
    fn wrapper(&self) -> Vec<String> {
        self.wrapper.clone()
    }

    fn undo(&mut self) {
        if std::mem::replace(&mut self.active, false) && self.wrapper.is_empty() {
            set_mode(&self.dir, 0o755);
        }
    }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Drop for ReadOnlyStore {
    fn drop(&mut self) {
        self.undo();
    }
}

#[test]
fn read_only_store_rejects_transiently_is_not_spammed_and_recovers_when_writable() {
    let (_gh, mut net) = covered_subnet();
    let store = net.nodes[1].store.clone();
    let dir = store.parent().unwrap().to_path_buf();
    // restored from a backup without our entry, onto a volume the validator cannot write
    net.nodes[1].kill();
    write_store(&store, &super::other_miners());
    let mut ro = ReadOnlyStore::apply(&dir);
    net.nodes[1].wrapper = ro.wrapper();
    net.nodes[1].start();
    let before = std::fs::read(&store).unwrap();

    let run = patrol(&net.scratch, "c.toml", &["reconcile", "--json"]);
    run.expect_code(1);
    let j = run.json();
    // valid: asked now, or the setup's, minutes old, reused
    assert!(j["preflight"].is_null() || j["preflight"].as_str().is_some_and(|p| p.starts_with("valid")), "{run}");
    let r = row(&run, 12);
    assert_eq!(
        (r["category"].as_str(), r["action"].as_str(), r["attempts"].as_u64(), r["final_category"].as_str()),
        (Some("no_pat"), Some("recheck"), Some(1), Some("no_pat")),
        "{run}"
    );
    let why = r["why"].as_str().unwrap();
    assert!(
        why.starts_with("broadcast rejected (transient): Validator PAT store temporarily unavailable; please retry."),
        "{run}"
    );
    assert!(j["alerts"].as_array().unwrap().iter().all(|a| a["kind"] != "terminal"), "not a terminal verdict: {run}");

    // at once again: inside the backoff, nothing sent
    let run = patrol(&net.scratch, "c.toml", &["reconcile", "--json"]);
    run.expect_code(1);
    assert_eq!(run.json()["broadcasts_sent"], 0, "{run}");
    let r = row(&run, 12);
    assert_eq!((r["action"].as_str(), r["attempts"].as_u64()), (Some("not_due"), Some(0)), "{run}");
    assert_eq!(std::fs::read(&store).unwrap(), before, "a read-only store changed");

    // writable again (the validator restarted with its normal user / volume)
    net.nodes[1].kill();
    ro.undo();
    net.nodes[1].wrapper = Vec::new();
    net.nodes[1].start();
    make_due(&net.scratch, 12);
    let run = patrol(&net.scratch, "c.toml", &["reconcile", "--json"]);
    run.expect_code(0);
    let r = row(&run, 12);
    assert_eq!((r["action"].as_str(), r["final_category"].as_str()), (Some("broadcast"), Some("valid")), "{run}");
    assert_eq!(our_pat_in(&store).as_deref(), Some(PAT));
    assert_eq!(others_in(&store), super::other_miners(), "other miners' entries changed");
    net.assert_no_leak(PAT);
}
