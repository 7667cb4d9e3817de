//! Store safety (issue 3 "Must show"):
//! - 500 concurrent broadcasts from distinct miners through the axon → 500 entries;
//! - a corrupt store is left byte-identical after a broadcast attempt (rejected as unavailable);
//! - SIGKILL in the middle of a write leaves a valid file (the old one or the new one);
//! - two processes writing at once lose nothing.
//!
//! The writer processes are this test binary re-executed into [`store_hammer_child`] (ignored, so
//! it never counts as a passing test; the spawner runs it with `--ignored --exact`), so the real
//! `PatStore` code runs in a separate process that can be killed at any instant, with no extra
//! command in the shipped binary.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use patrol::github::Mode;
use patrol::lab::fake_github::{FakeAccount, FakeGithubConfig, spawn_fake_github};
use patrol::lab::validator::{AxonConfig, PatStore, RawPat, RegisteredMiner};
use patrol::secret::Pat;
use patrol::wire::{CallOutcome, Dendrite};
use serde_json::Value;

use super::{github_options, miner_key, start_in_process};
use crate::support::process;

const HAMMER_ENV: &str = "PATROL_STORE_HAMMER";
const HAMMER_TEST: &str = "validator::store_safety::store_hammer_child";

/// Not a test: the writer process. When this binary is re-executed with `--ignored --exact` and
/// `PATROL_STORE_HAMMER=<path>`, it upserts uids `START..START+COUNT` (`PATROL_HAMMER_START`,
/// `PATROL_HAMMER_COUNT`; COUNT 0 = forever) and exits.
#[test]
#[ignore = "child-process entry point of the store-safety tests, which spawn it; not a test on its own"]
fn store_hammer_child() {
    let path = std::env::var(HAMMER_ENV).expect("spawned by a store-safety test with PATROL_STORE_HAMMER set");
    let start: u32 = std::env::var("PATROL_HAMMER_START").unwrap().parse().unwrap();
    let count: u32 = std::env::var("PATROL_HAMMER_COUNT").unwrap().parse().unwrap();
    let store = PatStore::new(&path);
    let mut i = 0u32;
    while count == 0 || i < count {
        let uid = u16::try_from(start + i % 60_000).unwrap();
        store
            .save(uid, &format!("hotkey-{uid}"), &RawPat::new(format!("ghp_hammer{uid:08}")), &uid.to_string())
            .unwrap();
        i += 1;
    }
}

fn spawn_hammer(path: &Path, start: u32, count: u32) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", HAMMER_TEST, "--test-threads=1", "--quiet"])
        .env(HAMMER_ENV, path)
        .env("PATROL_HAMMER_START", start.to_string())
        .env("PATROL_HAMMER_COUNT", count.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Kills and reaps on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        process::kill(&mut self.0);
    }
}

fn wait_bounded(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    process::wait_exit(child, timeout).unwrap_or_else(|| panic!("writer process did not finish within {timeout:?}"))
}

/// The file parses as a JSON list of objects; returns its uids.
fn valid_uids(path: &Path) -> Vec<u64> {
    let bytes = std::fs::read(path).unwrap();
    let v: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("store is not valid JSON after a kill ({e}); {} bytes", bytes.len()));
    v.as_array().expect("a list").iter().map(|e| e["uid"].as_u64().expect("an object with a uid")).collect()
}

#[test]
fn sigkill_mid_write_leaves_the_old_or_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("miner_pats.json");
    let store = PatStore::new(&path);
    // A big store (~600 KB) makes each write take a while, so kills land inside writes.
    let seed: Vec<Value> = (0..3000u16)
        .map(|uid| serde_json::json!({"uid": uid, "hotkey": format!("hotkey-{uid}"), "pat": format!("ghp_seed{uid:08}"), "github_id": "1", "stored_at": "2026-01-01T00:00:00+00:00", "pad": "x".repeat(100)}))
        .collect();
    std::fs::write(&path, serde_json::to_vec_pretty(&seed).unwrap()).unwrap();
    let mut last = valid_uids(&path);
    for round in 0..12u64 {
        let mut child = Reaped(spawn_hammer(&path, 10_000 + round as u32 * 1000, 0));
        // Kill only once the writer is writing (a loaded machine may take a while to start it),
        // then at a different point into its stream of writes each round.
        let begun = Instant::now();
        while valid_uids(&path).len() == last.len() {
            assert!(child.0.try_wait().unwrap().is_none(), "round {round}: the writer exited early");
            assert!(begun.elapsed() < Duration::from_secs(60), "round {round}: the writer never wrote");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(10 + (round * 37) % 120));
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        let now = valid_uids(&path);
        assert!(now.len() >= last.len(), "round {round}: entries went from {} to {}", last.len(), now.len());
        assert!(last.iter().all(|u| now.contains(u)), "round {round}: an entry was lost");
        last = now;
    }
    assert!(last.len() > 3000, "the writers wrote something");
    // Temp files of the killed writers are cleaned up at the next start.
    store.ensure_file().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn two_processes_writing_at_once_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("miner_pats.json");
    PatStore::new(&path).ensure_file().unwrap();
    let mut a = Reaped(spawn_hammer(&path, 1000, 150));
    let mut b = Reaped(spawn_hammer(&path, 2000, 150));
    for c in [&mut a, &mut b] {
        let st = wait_bounded(&mut c.0, Duration::from_secs(120));
        assert!(st.success(), "writer failed: {st}");
    }
    let mut uids = valid_uids(&path);
    uids.sort_unstable();
    let want: Vec<u64> = (1000..1150).chain(2000..2150).collect();
    assert_eq!(uids, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_broadcasts_make_five_hundred_entries() {
    const N: u32 = 500;
    let token = |i: u32| format!("ghp_concurrent{i:08}xxxxxxxxxxxxxxxxxxxx");
    let mut config = FakeGithubConfig::default();
    for i in 0..N {
        config = config.with_account(FakeAccount::new(&token(i), 100_000 + u64::from(i), &format!("user{i}")));
    }
    let (gh_addr, _gh) = spawn_fake_github(config).await;
    let keys: Vec<_> = (0..N).map(miner_key).collect();
    let miners = keys
        .iter()
        .enumerate()
        .map(|(i, k)| RegisteredMiner {
            uid: u16::try_from(i + 1).unwrap(),
            hotkey: k.ss58().to_string(),
            stake: i as f64,
        })
        .collect();
    let url = format!("http://{gh_addr}");
    let v = start_in_process(miners, github_options(&url, Mode::Fixed, Duration::from_secs(20)), AxonConfig::default())
        .await;
    let target = v.target();
    let started = Instant::now();
    let tasks: Vec<_> = keys
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            let (t, pat) = (target.clone(), Pat::new(&token(i as u32)).unwrap());
            tokio::spawn(async move {
                let d = Dendrite::new(Arc::new(k), Default::default()).unwrap();
                d.broadcast(&t, Duration::from_secs(120), &pat).await.outcome
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let out = t.await.unwrap();
        assert!(matches!(&out, CallOutcome::Answered(f) if f.accepted == Some(true)), "miner {i}: {out:?}");
    }
    let entries = PatStore::new(&v.store).read_all().unwrap();
    assert_eq!(entries.len(), N as usize);
    for e in &entries {
        let i = u32::from(e.uid) - 1;
        assert_eq!(e.hotkey.as_deref(), Some(miner_key(i).ss58()));
        assert_eq!(e.pat.expose(), token(i));
        assert_eq!(e.github_id.as_deref(), Some((100_000 + u64::from(i)).to_string().as_str()));
    }
    eprintln!("500 concurrent broadcasts stored in {:.2?}", started.elapsed());
}

#[tokio::test]
async fn corrupt_store_is_left_byte_identical_and_reported_unavailable() {
    let token = "ghp_corruptstoretest000000000000000001";
    let (gh_addr, _gh) =
        spawn_fake_github(FakeGithubConfig::default().with_account(FakeAccount::new(token, 9, "c"))).await;
    let key = miner_key(1);
    let miners = vec![RegisteredMiner { uid: 1, hotkey: key.ss58().to_string(), stake: 1.0 }];
    let url = format!("http://{gh_addr}");
    let v = start_in_process(miners, github_options(&url, Mode::Fixed, Duration::from_secs(5)), AxonConfig::default())
        .await;
    let d = super::dendrite(key);
    for corrupt in ["[{\"uid\": 3, \"pat\": \"ghp_someone_else\"}, {", "{\"uid\": 1}"] {
        std::fs::write(&v.store, corrupt).unwrap();
        let out = d.broadcast(&v.target(), Duration::from_secs(10), &Pat::new(token).unwrap()).await.outcome;
        let CallOutcome::Answered(f) = out else { panic!("{out:?}") };
        assert_eq!(f.accepted, Some(false));
        let reason = f.rejection_reason.unwrap();
        assert!(
            reason.starts_with("Validator PAT store temporarily unavailable; please retry. (miner_pats.json is not"),
            "{reason}"
        );
        assert_eq!(std::fs::read_to_string(&v.store).unwrap(), corrupt, "byte-identical");
        let out = d.check(&v.target(), Duration::from_secs(10)).await.outcome;
        assert_eq!(
            out,
            CallOutcome::Answered(patrol::wire::CheckFields {
                has_pat: Some(false),
                pat_valid: None,
                rejection_reason: Some("Validator PAT store temporarily unavailable; please retry.".into())
            })
        );
    }
}
