//! The files patrol reads and writes, on the real binary (issue 15). Writes never replace a device
//! node, FIFO or directory (exit 78, the thing left as it was) and follow symbolic links (the link
//! stays, its target gets the bytes, a loop is a clear error); reads are capped and refuse what is
//! not a regular file; two files moved aside keep both; an unusable state dir is exit 78 naming the
//! fix in `reconcile` and `doctor` alike; `patrol run -vv 2> LOG` with LOG next to the config does
//! not feed on its own log.
//!
//! Everything in a temp dir; validators and GitHub are dead ports on 127.0.0.1 (a reconcile pass
//! then ends "nobody answered", exit 3, having written state and metrics). Device nodes (mknod),
//! links owned by another user (lchown) and a read-only directory for root (a bind mount in the
//! command's own mount namespace) need root, which CI has: without it those tests fail, naming it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::Duration;

use patrol::lab::validator::{PatStore, RawPat};
use patrol::reconcile::state::{MinerState, StateFile};

use crate::support::agent::Agent;
use crate::support::cli::{Run, Scratch, dead_port, static_validator};
use crate::support::mock_node::{Fixture, MockNode};
use crate::support::python::{DENDRITE_HOTKEY, DENDRITE_SEED, VALIDATOR_HOTKEY};
use crate::support::root::{self, require_root};

const PAT: &str = "ghp_hardeningFilesToken000000000000015";
/// Bound for one CLI run; a run that blocks on a FIFO (the bug) is killed and fails the test.
const RUN: Duration = Duration::from_secs(45);

/// A scratch dir with a hotkey, a PAT file and `c.toml` (state dir `state`, one dead validator, a
/// dead GitHub, `extra` in `[agent]`).
fn setup(agent_extra: &str) -> Scratch {
    let mut s = Scratch::new();
    s.hotkey("hotkey", DENDRITE_SEED);
    s.pat("pat", PAT);
    write_config(&s, agent_extra);
    s
}

fn write_config(s: &Scratch, agent_extra: &str) {
    s.write(
        "c.toml",
        &format!(
            "[wallet]\nhotkey_file = \"hotkey\"\n[pat]\nfile = \"pat\"\n[agent]\nlisten = \"off\"\n{agent_extra}\n\
             [github]\napi_url = \"http://127.0.0.1:{}\"\ntimeout = \"2s\"\n\
             [reconcile]\ninterval = \"60s\"\njitter = \"0s\"\ncheck_timeout = \"2s\"\n{}",
            dead_port(),
            static_validator(1, VALIDATOR_HOTKEY, "127.0.0.1", dead_port(), 1e5)
        ),
        0o600,
    );
}

fn run(s: &Scratch, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--config", "c.toml"]);
    s.run_env(&all, &[], RUN)
}

/// The last `patrol: ` line (the error), asserting there is one and nothing panicked.
fn error_line(run: &Run) -> String {
    assert!(!run.stderr.contains("panicked"), "{run}");
    run.stderr
        .lines()
        .rfind(|l| l.starts_with("patrol: "))
        .unwrap_or_else(|| panic!("no `patrol:` error line\n{run}"))
        .to_string()
}

fn state_name() -> String {
    format!("state-{DENDRITE_HOTKEY}-74.json")
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in a temp path")
}

fn mkfifo(p: &Path) {
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(cstr(p).as_ptr(), 0o644) }, 0, "mkfifo {}", p.display());
}

/// A character device node like `/dev/<major,minor>` at `p` (mknod(2): root).
fn mknod_char(p: &Path, major: u32, minor: u32) {
    require_root("a device node (mknod)");
    let dev = libc::makedev(major, minor);
    // SAFETY: a valid NUL-terminated path; mknod creates a node and touches no memory of ours.
    let rc = unsafe { libc::mknod(cstr(p).as_ptr(), libc::S_IFCHR | 0o666, dev) };
    assert_eq!(rc, 0, "mknod {}: {}", p.display(), std::io::Error::last_os_error());
}

fn is_fifo(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_fifo())
}

fn is_symlink(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

/// Files in `dir` whose name contains `needle`.
fn named(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().contains(needle)).collect())
        .unwrap_or_default();
    v.sort();
    v
}

// ---- item 1: writes never replace devices and FIFOs ----

#[test]
fn a_metrics_file_that_is_a_fifo_or_a_device_is_refused_and_left_alone() {
    let s = setup("state_dir = \"state\"");
    let fifo = s.path("metrics.fifo");
    mkfifo(&fifo);
    let r = run(&s, &["reconcile", "--metrics-file", "metrics.fifo"]);
    r.expect_code(78);
    let line = error_line(&r);
    assert!(
        line.contains("cannot write metrics file metrics.fifo") && line.contains("is a FIFO, not a regular file"),
        "{r}"
    );
    assert!(is_fifo(&fifo), "the FIFO must still be a FIFO\n{r}");
    // refused before the pass (issue 20 item 15): nothing was checked, sent or saved
    assert!(!s.path("state").join(state_name()).exists(), "{r}");

    // copies of /dev/full and /dev/null (the originals are never touched by a test)
    for (name, minor) in [("full", 7), ("null", 3)] {
        let dev = s.path(name);
        mknod_char(&dev, 1, minor);
        let rdev = std::fs::symlink_metadata(&dev).unwrap().rdev();
        let r = run(&s, &["reconcile", "--metrics-file", name]);
        r.expect_code(78);
        assert!(error_line(&r).contains("is a character device, not a regular file"), "{r}");
        let m = std::fs::symlink_metadata(&dev).unwrap();
        assert!(m.file_type().is_char_device() && m.rdev() == rdev, "{name} must still be the same device\n{r}");
    }
}

#[test]
fn a_state_file_that_is_a_fifo_is_an_error_and_never_replaced() {
    let s = setup("state_dir = \"state\"");
    std::fs::create_dir_all(s.path("state")).unwrap();
    let fifo = s.path("state").join(state_name());
    mkfifo(&fifo);
    let r = run(&s, &["reconcile"]);
    r.expect_code(78);
    let line = error_line(&r);
    assert!(
        line.contains("state file ") && line.contains(&format!("{} is a FIFO, not a regular file", state_name())),
        "{r}"
    );
    assert!(line.contains("state_dir"), "the message names the fix\n{r}");
    assert!(is_fifo(&fifo), "{r}");
    // a dry run only reads: it starts fresh without blocking on the FIFO and leaves it alone
    let r = run(&s, &["reconcile", "--dry-run"]);
    r.expect_code(3);
    assert!(r.stderr.contains("is not a regular file (it is a FIFO)"), "{r}");
    assert!(is_fifo(&fifo), "{r}");
    assert!(named(&s.path("state"), ".corrupt-").is_empty(), "nothing moved aside\n{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metagraph_cache_is_never_a_fifo_replaced_and_follows_a_symlink() {
    let node = MockNode::start(Fixture::finney_netuid1()).await;
    let url = node.url();
    let s = Scratch::new();
    let cfg = format!(
        "[chain]\nnetwork = \"{url}\"\nnetuid = 1\nconnect_timeout = \"5s\"\ncall_timeout = \"5s\"\n\
         metagraph_max_age = \"30m\"\n[agent]\nstate_dir = \"state\"\nlisten = \"off\"\n"
    );
    s.write("c.toml", &cfg, 0o600);
    std::fs::create_dir_all(s.path("state")).unwrap();
    let cache = patrol::chain::cache::path(&s.path("state"), &url, 1);
    mkfifo(&cache);
    let s = std::sync::Arc::new(s);
    let validators = |s: &std::sync::Arc<Scratch>| {
        let s = s.clone();
        tokio::task::spawn_blocking(move || run(&s, &["validators", "--json"]))
    };
    // the live read works; saving the cache is refused and logged, naming the file
    let r = validators(&s).await.unwrap();
    r.expect_code(0);
    assert!(
        r.stderr.contains("cannot save the metagraph cache") && r.stderr.contains("is a FIFO, not a regular file"),
        "{r}"
    );
    assert!(r.stderr.contains(&cache.file_name().unwrap().to_string_lossy().into_owned()), "{r}");
    assert!(is_fifo(&cache), "{r}");
    // a symlink to a file elsewhere: followed, the link stays
    std::fs::remove_file(&cache).unwrap();
    std::fs::create_dir_all(s.path("elsewhere")).unwrap();
    let target = s.path("elsewhere").join("metagraph.json");
    symlink(&target, &cache).unwrap();
    validators(&s).await.unwrap().expect_code(0);
    assert!(is_symlink(&cache));
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&target).unwrap()).unwrap();
    assert_eq!(saved["block"], 6_852_690);
    // the chain gone: the cache is read through the link
    drop(node);
    let r = validators(&s).await.unwrap();
    r.expect_code(0);
    assert_eq!(r.json()["source"], "cache", "{r}");
}

// ---- item 5: no log feedback loop ----

#[test]
fn agent_logging_at_trace_into_the_config_dir_stays_small_and_still_reloads() {
    let s = setup("state_dir = \"state\"");
    // The harness logs to a file in the scratch dir, which is also the config's dir. `-vv` is
    // "trace" for every crate; RUST_LOG (which the harness sets) would override it, so it says
    // the same.
    let mut agent = Agent::start(&s, &["--config", "c.toml", "-vv"], &[("RUST_LOG", "trace")], None, &[PAT]);
    agent.wait_log("patrol agent starting", Duration::from_secs(30));
    agent.wait_log("validator set", Duration::from_secs(30));
    let log_path = named(s.dir.path(), "agent-").pop().expect("agent log file");
    // every line the agent writes lands in the directory it watches: fed back, the log would grow
    // without end; here it grows only with what the agent does (a pass, two reloads)
    let size = std::fs::metadata(&log_path).unwrap().len();
    assert!(size < 1 << 20, "the log grew to {size} bytes by its first pass: it is feeding on itself");
    // a real change of the config file is still seen (in place, then an editor-style rename)
    let body = std::fs::read_to_string(s.path("c.toml")).unwrap();
    std::fs::write(s.path("c.toml"), format!("{body}\n# edited\n")).unwrap();
    agent.wait_log("changed on disk: reloading", Duration::from_secs(30));
    agent.wait_log("configuration reloaded", Duration::from_secs(30));
    let before = agent.log_count("configuration reloaded");
    let tmp = s.path(".c.toml.swp");
    std::fs::write(&tmp, format!("{body}\n# edited again\n")).unwrap();
    std::fs::rename(&tmp, s.path("c.toml")).unwrap();
    agent.wait_log_count("configuration reloaded", before + 1, Duration::from_secs(30));
    let size = std::fs::metadata(&log_path).unwrap().len();
    assert!(size < 1 << 20, "the log grew to {size} bytes");
    assert!(!agent.log().contains("inotify event"), "per-event logging of the watched directory");
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(20)).code(), Some(0), "{}", agent.log());
}

// ---- item 6: capped reads, regular files only ----

#[test]
fn a_hotkey_file_that_is_huge_or_a_fifo_is_refused_quickly() {
    let s = setup("state_dir = \"state\"");
    // 1 MiB (sparse): far beyond any keyfile
    let big = std::fs::File::create(s.path("big-hotkey")).unwrap();
    big.set_len(1 << 20).unwrap();
    drop(big);
    let r = run(&s, &["check", "--hotkey-file", "big-hotkey"]);
    r.expect_code(78);
    let line = error_line(&r);
    assert!(line.contains("hotkey file big-hotkey is larger than 65536 bytes"), "{r}");
    // a FIFO would block the read forever
    mkfifo(&s.path("fifo-hotkey"));
    let r = run(&s, &["check", "--hotkey-file", "fifo-hotkey"]);
    r.expect_code(78);
    assert!(error_line(&r).contains("hotkey file fifo-hotkey is a FIFO, not a regular file"), "{r}");
    // and a device
    let r = run(&s, &["check", "--hotkey-file", "/dev/zero"]);
    r.expect_code(78);
    assert!(error_line(&r).contains("is a character device, not a regular file"), "{r}");
}

#[test]
fn a_state_file_larger_than_the_cap_is_moved_aside_not_read() {
    let s = setup("state_dir = \"state\"");
    std::fs::create_dir_all(s.path("state")).unwrap();
    let state = s.path("state").join(state_name());
    let f = std::fs::File::create(&state).unwrap();
    f.set_len(17 << 20).unwrap();
    drop(f);
    let r = run(&s, &["reconcile"]);
    r.expect_code(3);
    assert!(r.stderr.contains("state file is larger than 16777216 bytes"), "{r}");
    let moved = named(&s.path("state"), ".corrupt-");
    assert_eq!(moved.len(), 1, "{r}");
    assert_eq!(std::fs::metadata(&moved[0]).unwrap().len(), 17 << 20, "moved aside intact");
    // and a fresh state was written in its place
    assert!(std::fs::metadata(&state).unwrap().len() < 1 << 20, "{r}");
}

// ---- item 7: symbolic links are followed ----

#[test]
fn state_metrics_and_store_symlinks_stay_links_and_their_targets_get_the_bytes() {
    let s = setup("state_dir = \"state\"");
    let elsewhere = s.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::create_dir_all(s.path("state")).unwrap();
    // state: a link to a valid, never-used state in another directory
    let state_target = elsewhere.join("state.json");
    let fresh = serde_json::to_string(&MinerState::new(DENDRITE_HOTKEY, 74)).unwrap();
    std::fs::write(&state_target, &fresh).unwrap();
    let state_link = s.path("state").join(state_name());
    symlink(&state_target, &state_link).unwrap();
    // metrics: a relative link to an old metrics file, and a dangling link
    std::fs::write(elsewhere.join("patrol.prom"), "# old\n").unwrap();
    symlink("elsewhere/patrol.prom", s.path("metrics.prom")).unwrap();
    let r = run(&s, &["reconcile", "--metrics-file", "metrics.prom"]);
    r.expect_code(3);
    assert!(is_symlink(&state_link) && is_symlink(&s.path("metrics.prom")), "links replaced by files\n{r}");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state_target).unwrap()).unwrap();
    assert!(saved["last_pass_at"].is_u64(), "the target holds the new state: {saved}");
    let prom = std::fs::read_to_string(elsewhere.join("patrol.prom")).unwrap();
    assert!(prom.contains("patrol_eligible_validators") && !prom.contains("# old"), "{prom}");
    // no stray files where the links are
    assert_eq!(named(&s.path("state"), ".tmp."), Vec::<PathBuf>::new());

    // a dangling link: its target is created, the link stays
    symlink("elsewhere/new.prom", s.path("dangling.prom")).unwrap();
    run(&s, &["reconcile", "--metrics-file", "dangling.prom"]).expect_code(3);
    assert!(is_symlink(&s.path("dangling.prom")));
    assert!(std::fs::read_to_string(elsewhere.join("new.prom")).unwrap().contains("patrol_eligible_validators"));

    // the validator store: the target gets the new PAT and keeps no copy of the old one
    let old = "ghp_storeOldToken0000000000000000000001";
    let new = "ghp_storeNewToken0000000000000000000002";
    let store_target = elsewhere.join("miner_pats.json");
    PatStore::new(&store_target).save(3, "5Hk", &RawPat::new(old), "42").unwrap();
    let store_link = s.path("miner_pats.json");
    symlink(&store_target, &store_link).unwrap();
    PatStore::new(&store_link).save(3, "5Hk", &RawPat::new(new), "42").unwrap();
    assert!(is_symlink(&store_link));
    let stored = std::fs::read_to_string(&store_target).unwrap();
    assert!(stored.contains(new) && !stored.contains(old), "{stored}");
    let entries = PatStore::new(&store_link).read_all().unwrap();
    assert_eq!(entries.len(), 1);
}

#[test]
fn symlink_loops_are_clear_errors() {
    let s = setup("state_dir = \"state\"");
    symlink("loop-b", s.path("loop-a")).unwrap();
    symlink("loop-a", s.path("loop-b")).unwrap();
    let r = run(&s, &["reconcile", "--metrics-file", "loop-a"]);
    r.expect_code(78);
    assert!(error_line(&r).contains("cannot write metrics file loop-a: loop-a is a loop of symbolic links"), "{r}");
    assert!(is_symlink(&s.path("loop-a")) && is_symlink(&s.path("loop-b")));

    // (refused before the pass, so no state was saved; make the state path a link to itself)
    let state = s.path("state").join(state_name());
    std::fs::create_dir_all(s.path("state")).unwrap();
    symlink(&state, &state).unwrap();
    let r = run(&s, &["reconcile"]);
    r.expect_code(78);
    let line = error_line(&r);
    assert!(line.contains("cannot read state file") && line.contains("symbolic links"), "{r}");
    assert!(is_symlink(&state), "{r}");
}

// ---- item 9: two files moved aside keep both ----

#[test]
fn corrupt_state_files_moved_aside_in_the_same_second_are_all_kept() {
    let d = tempfile::tempdir().unwrap();
    let f = StateFile::new(d.path(), DENDRITE_HOTKEY, 74);
    for body in ["{broken 1", "{broken 2", "{broken 3"] {
        std::fs::write(&f.path, body).unwrap();
        assert_eq!(f.load(DENDRITE_HOTKEY, 74), MinerState::new(DENDRITE_HOTKEY, 74));
    }
    let mut kept: Vec<String> =
        named(d.path(), ".corrupt-").iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    kept.sort();
    assert_eq!(kept, ["{broken 1", "{broken 2", "{broken 3"]);
}

// ---- item 11: an unusable state dir is one exit code and one message ----

/// `reconcile` and `doctor` with `state_dir = dir` (run through `wrapper`): both exit 78, naming the
/// dir and the fix.
fn both_commands_refuse(s: &Scratch, dir: &str, why: &str, wrapper: &[String]) {
    write_config(s, &format!("state_dir = \"{dir}\""));
    let run = |args: &[&str]| {
        let all = [args, &["--config", "c.toml"]].concat();
        let mut cmd = s.command(&crate::support::process::strs(wrapper), &all, &[]);
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        crate::support::cli::run_bounded(cmd, RUN, &all)
    };
    let r = run(&["reconcile"]);
    r.expect_code(78);
    let line = error_line(&r);
    assert!(line.contains("is not a writable directory") && line.contains(why), "{r}");
    assert!(line.contains("set [agent] state_dir / --state-dir"), "{r}");
    assert!(!line.contains("os error 17"), "{r}");
    let r = run(&["doctor", "--json"]);
    r.expect_code(78);
    let j = r.json();
    let c = j["checks"].as_array().unwrap().iter().find(|c| c["check"] == "state dir").expect("a state dir check");
    assert_eq!(c["ok"], false, "{r}");
    let detail = c["detail"].as_str().unwrap();
    assert!(detail.contains("is not a writable directory") && detail.contains(why), "{r}");
    assert!(c["fix"].as_str().unwrap().contains("[agent] state_dir / --state-dir"), "{r}");
}

#[test]
fn a_state_dir_that_is_a_file_or_read_only_is_exit_78_in_reconcile_and_doctor() {
    let s = setup("state_dir = \"state\"");
    s.write("plain-file", "", 0o600);
    both_commands_refuse(&s, "plain-file", "it is a regular file", &[]);
    both_commands_refuse(&s, "plain-file/sub", "plain-file is a regular file", &[]);
    // read-only: a 0500 dir stops an ordinary user; root, whom permission bits do not stop, gets
    // the dir bind-mounted read-only in the commands' own mount namespace
    let ro = s.path("ro");
    std::fs::create_dir_all(&ro).unwrap();
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        both_commands_refuse(&s, &ro.to_string_lossy(), "Read-only file system", &root::read_only_at(&ro));
    } else {
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).unwrap();
        both_commands_refuse(&s, &ro.to_string_lossy(), "denied", &[]);
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
}

// ---- issue 20 item 4: links planted in a shared directory, shared state dirs ----

/// Another user's uid, for links "planted" by someone else.
const OTHER_UID: u32 = 12345;

/// `dir` made a sticky, world-writable directory (like `/tmp`), owned by us.
fn shared_dir(s: &Scratch, name: &str) -> PathBuf {
    let dir = s.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    dir
}

/// A symbolic link `link -> target` owned by `uid` (lchown: needs root).
fn planted_link(target: &Path, link: &Path, uid: u32) {
    symlink(target, link).unwrap();
    std::os::unix::fs::lchown(link, Some(uid), Some(uid)).unwrap();
}

#[test]
fn a_link_planted_by_another_user_in_a_sticky_world_writable_dir_is_never_followed() {
    require_root("a link owned by another user (lchown)");
    let s = setup("state_dir = \"state\"");
    let victim = s.write("victim", "precious\n", 0o600);
    let protected = "the kernel's protected_symlinks rule";

    // the metrics file
    let shared = shared_dir(&s, "shared");
    planted_link(&victim, &shared.join("metrics.prom"), OTHER_UID);
    let r = run(&s, &["reconcile", "--metrics-file", "shared/metrics.prom"]);
    r.expect_code(78);
    let line = error_line(&r);
    assert!(line.contains("cannot write metrics file shared/metrics.prom") && line.contains(protected), "{r}");
    assert!(line.contains(&format!("owned by uid {OTHER_UID}")), "{r}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n", "{r}");
    // a link of our own there is followed, as before
    let ours = s.write("ours.prom", "", 0o644);
    symlink(&ours, shared.join("ours.prom")).unwrap();
    run(&s, &["reconcile", "--metrics-file", "shared/ours.prom"]).expect_code(3);
    assert!(std::fs::read_to_string(&ours).unwrap().contains("patrol_eligible_validators"));

    // the state file, in a shared state dir
    write_config(&s, "state_dir = \"shared-state\"");
    let dir = shared_dir(&s, "shared-state");
    planted_link(&victim, &dir.join(state_name()), OTHER_UID);
    for args in [&["reconcile"][..], &["reconcile", "--dry-run"]] {
        let r = run(&s, args);
        if args.len() == 1 {
            r.expect_code(78);
            let line = error_line(&r);
            assert!(line.contains(&format!("shared-state/{}", state_name())) && line.contains(protected), "{r}");
        } else {
            // a dry run only reads: it does not read through the link either
            r.expect_code(3);
            assert!(r.stderr.contains(protected), "{r}");
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n", "{r}");
        assert!(is_symlink(&dir.join(state_name())), "{r}");
        assert!(named(&s.path(""), "victim.corrupt").is_empty(), "the victim was moved aside\n{r}");
    }

    // the lock file: never opened through a link, so it cannot create a file elsewhere
    write_config(&s, "state_dir = \"shared-lock\"");
    let dir = shared_dir(&s, "shared-lock");
    let created = s.path("elsewhere-created");
    planted_link(&created, &dir.join(format!("{}.lock", state_name())), OTHER_UID);
    let r = run(&s, &["reconcile"]);
    r.expect_code(78);
    let line = error_line(&r);
    assert!(line.contains(&format!("{}.lock is a symbolic link", state_name())) && line.contains("O_NOFOLLOW"), "{r}");
    assert!(!created.exists(), "the lock created a file through the link\n{r}");
}

#[test]
fn a_state_dir_others_can_write_is_refused_unless_sticky_and_ours() {
    require_root("a link owned by another user (lchown)");
    let s = setup("state_dir = \"open\"");
    let open = s.path("open");
    std::fs::create_dir_all(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let r = run(&s, &["reconcile"]);
    r.expect_code(78);
    let line = error_line(&r);
    assert!(line.contains("open: it is writable by group or others (mode 0777) and not sticky"), "{r}");
    assert!(!open.join(state_name()).exists(), "{r}");
    // sticky, but owned by another user (who may remove our files)
    write_config(&s, "state_dir = \"theirs\"");
    let theirs = shared_dir(&s, "theirs");
    std::os::unix::fs::chown(&theirs, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    let r = run(&s, &["reconcile"]);
    r.expect_code(78);
    assert!(error_line(&r).contains(&format!("(mode 1777) and owned by uid {OTHER_UID}")), "{r}");
    let r = run(&s, &["doctor", "--json"]);
    r.expect_code(78);
    let c = r.json()["checks"].as_array().unwrap().iter().find(|c| c["check"] == "state dir").cloned().unwrap();
    assert!(c["detail"].as_str().unwrap().contains("writable by group or others"), "{r}");
    // group-writable (0775) is the same case
    write_config(&s, "state_dir = \"group\"");
    let group = s.path("group");
    std::fs::create_dir_all(&group).unwrap();
    std::fs::set_permissions(&group, std::fs::Permissions::from_mode(0o775)).unwrap();
    run(&s, &["reconcile"]).expect_code(78);
    // sticky and ours (like /tmp for root): used
    write_config(&s, "state_dir = \"sticky\"");
    shared_dir(&s, "sticky");
    run(&s, &["reconcile"]).expect_code(3);
    assert!(s.path("sticky").join(state_name()).is_file());
}
