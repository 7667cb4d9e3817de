//! `reconcile --metrics-file`, the timer's metrics for node_exporter's textfile collector (issue 19;
//! issue 20 items 5, 8, 15): `patrol_ready` says whether the pass ran on a live validator set,
//! counters continue from run to run, the PAT preflight series are there on every run and follow a
//! rotation, a run that could not pass still says why, a path that is one of patrol's own files is
//! refused before anything is sent, and a result whose state could not be saved is kept.

use std::time::Duration;

use crate::support::cli::{Run, dead_port};
use crate::support::subnet::Subnet;
use patrol::lab::fake_github::{FakeAccount, FakeGithubConfig, spawn_fake_github};

const PAT_A: &str = "ghp_metricsFileAccount4242tokenA00001";
const PAT_B: &str = "ghp_metricsFileAccount4242tokenB00002";
/// 2031-01-01T00:00:00Z.
const EXPIRY: &str = "2031-01-01 00:00:00 UTC";
const EXPIRY_UNIX: f64 = 1_924_992_000.0;

fn accounts() -> FakeGithubConfig {
    FakeGithubConfig::default()
        .with_account(FakeAccount::new(PAT_A, 4242, "miner").expiring(EXPIRY))
        .with_account(FakeAccount::new(PAT_B, 4242, "miner"))
}

/// The value of the series `name{labels}` (labels as written, e.g. `outcome="valid"`), if present.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, ""));
        (n == name && labels.iter().all(|want| rest.contains(want))).then(|| value.parse().ok())?
    })
}

fn reconcile(net: &Subnet, extra: &[&str]) -> Run {
    let mut args = vec!["reconcile", "--json", "--config", "c.toml", "--metrics-file", "m.prom"];
    args.extend_from_slice(extra);
    net.scratch.run_env(&args, &[], Duration::from_secs(60))
}

fn read(net: &Subnet, name: &str) -> String {
    std::fs::read_to_string(net.scratch.path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_runs_are_ready_count_on_and_carry_the_pat_preflight() {
    let (gh, _github) = spawn_fake_github(accounts()).await;
    let mut net = Subnet::with_pat(2, gh, PAT_A);
    net.config("c.toml", &[0, 1], gh, "");

    reconcile(&net, &[]).expect_code(0);
    let first = read(&net, "m.prom");
    assert_eq!(sample(&first, "patrol_ready", &[]), Some(1.0), "a pass on a live set is ready:\n{first}");
    assert_eq!(sample(&first, "patrol_passes_total", &[]), Some(1.0), "{first}");
    let checks = sample(&first, "patrol_checks_total", &["category=\"no_pat\""]).expect("no_pat checks");
    // nothing needed a preflight of the PAT before the broadcasts? the broadcasts did; either way the
    // series are there, from the state's record
    assert_eq!(sample(&first, "patrol_pat_preflight", &["outcome=\"valid\""]), Some(1.0), "{first}");
    assert_eq!(sample(&first, "patrol_pat_expiry_timestamp_seconds", &[]), Some(EXPIRY_UNIX), "{first}");
    assert!(sample(&first, "patrol_github_rate_limit_remaining", &[]).is_some(), "{first}");

    // the next run needs no preflight (every validator holds the PAT), yet the series stay, and the
    // counters continue instead of restarting at 1
    reconcile(&net, &[]).expect_code(0);
    let second = read(&net, "m.prom");
    assert_eq!(sample(&second, "patrol_passes_total", &[]), Some(2.0), "{second}");
    assert_eq!(sample(&second, "patrol_checks_total", &["category=\"no_pat\""]), Some(checks), "{second}");
    assert_eq!(sample(&second, "patrol_checks_total", &["category=\"valid\""]).map(|v| v >= 4.0), Some(true));
    assert_eq!(sample(&second, "patrol_pat_expiry_timestamp_seconds", &[]), Some(EXPIRY_UNIX), "{second}");
    assert_eq!(sample(&second, "patrol_pat_preflight", &["outcome=\"valid\""]), Some(1.0), "{second}");
    let calls_1 = sample(&first, "patrol_github_calls_estimated_total", &[]).unwrap_or(0.0);
    let calls_2 = sample(&second, "patrol_github_calls_estimated_total", &[]).unwrap_or(0.0);
    assert!(calls_2 > calls_1, "the estimated calls continue: {calls_1} then {calls_2}");

    // a rotation to a PAT without an expiry: the old PAT's expiry must not linger
    net.scratch.pat("pat", PAT_B);
    reconcile(&net, &[]).expect_code(0);
    let third = read(&net, "m.prom");
    assert_eq!(sample(&third, "patrol_pat_expiry_timestamp_seconds", &[]), None, "{third}");
    assert_eq!(sample(&third, "patrol_pat_preflight", &["outcome=\"valid\""]), Some(1.0), "{third}");
    assert_eq!(sample(&third, "patrol_passes_total", &[]), Some(3.0), "{third}");
    net.assert_no_leak(PAT_A);
    net.assert_no_leak(PAT_B);
}

#[test]
fn a_run_that_cannot_pass_still_says_why() {
    let mut scratch = crate::support::cli::Scratch::new();
    scratch.hotkey("hotkey", crate::support::python::DENDRITE_SEED);
    scratch.pat("pat", PAT_A);
    let port = dead_port();
    scratch.write(
        "c.toml",
        &format!(
            "[wallet]\nhotkey_file = \"hotkey\"\n[pat]\nfile = \"pat\"\n[agent]\nstate_dir = \"state\"\n\
             [chain]\nnetwork = \"ws://127.0.0.1:{port}\"\nconnect_timeout = \"2s\"\n"
        ),
        0o600,
    );
    let run = scratch.run(&["reconcile", "--config", "c.toml", "--metrics-file", "m.prom"]);
    run.expect_code(3);
    let text = std::fs::read_to_string(scratch.path("m.prom")).unwrap_or_else(|e| panic!("m.prom: {e}\n{run}"));
    assert_eq!(sample(&text, "patrol_miner_problem", &["kind=\"no_validator_source\""]), Some(1.0), "{text}");
    assert_eq!(sample(&text, "patrol_ready", &[]), Some(0.0), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_file_never_replaces_what_patrol_reads_or_owns() {
    let (gh, _github) = spawn_fake_github(accounts()).await;
    let net = Subnet::with_pat(1, gh, PAT_A);
    net.config("c.toml", &[0], gh, "");
    net.scratch.run(&["reconcile", "--config", "c.toml"]).expect_code(0);
    let state = std::fs::read_dir(net.scratch.path("state"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "json") && p.to_string_lossy().contains("state-"))
        .expect("a state file");
    let lock = std::path::PathBuf::from(format!("{}.lock", state.display()));
    std::os::unix::fs::symlink(net.scratch.path("hotkey"), net.scratch.path("link-to-hotkey")).unwrap();
    std::fs::hard_link(net.scratch.path("pat"), net.scratch.path("pat-again")).unwrap();
    let written = net.nodes[0].written_at();
    for (target, names) in [
        (net.scratch.path("hotkey"), "hotkey file"),
        (net.scratch.path("link-to-hotkey"), "hotkey file"),
        (net.scratch.path("pat"), "PAT file"),
        (net.scratch.path("pat-again"), "PAT file"),
        (net.scratch.path("c.toml"), "config file"),
        (state.clone(), "a state file"),
        (lock.clone(), "state file's lock"),
    ] {
        let before = std::fs::read(&target).unwrap();
        let t = target.to_string_lossy().into_owned();
        let run = net.scratch.run(&["reconcile", "--config", "c.toml", "--metrics-file", &t]);
        run.expect_code(78);
        assert!(run.stderr.contains(names) && run.stderr.contains("will not overwrite"), "{run}");
        assert_eq!(std::fs::read(&target).unwrap(), before, "{t} was changed\n{run}");
    }
    // a directory that does not take files: found before the pass, not after it
    let run = net.scratch.run(&["reconcile", "--config", "c.toml", "--metrics-file", "/nonexistent-patrol-dir/m.prom"]);
    run.expect_code(78);
    assert!(run.stderr.contains("cannot create files in /nonexistent-patrol-dir"), "{run}");
    assert!(!run.stderr.contains("covered"), "the pass ran:\n{run}");
    assert_eq!(net.nodes[0].written_at(), written);
    // simulate --plot is held to the same rule
    let run = net.scratch.run(&["simulate", "c.toml", "--plot", "c.toml"]);
    assert_ne!(run.code, 0, "{run}");
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/pat-rotation.toml");
    let run = net.scratch.run(&["--config", "c.toml", "simulate", scenario, "--plot", "pat"]);
    run.expect_code(78);
    assert!(run.stderr.contains("PAT file"), "{run}");
    assert_eq!(std::fs::read_to_string(net.scratch.path("pat")).unwrap(), format!("{PAT_A}\n"));
    // the metrics file itself is rewritten, of course
    net.scratch.run(&["reconcile", "--config", "c.toml", "--metrics-file", "m.prom"]).expect_code(0);
    net.scratch.run(&["reconcile", "--config", "c.toml", "--metrics-file", "m.prom"]).expect_code(0);
    assert!(read(&net, "m.prom").contains("patrol_ready 1"));
}

/// A state dir on a full tmpfs (a private mount namespace: nothing outside sees it): the lock and the
/// probe file (empty) fit, the state does not. The pass broadcasts, then cannot save: the result
/// must still be printed, with the error beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_that_cannot_save_keeps_its_result() {
    let (gh, _github) = spawn_fake_github(accounts()).await;
    let net = Subnet::with_pat(2, gh, PAT_A);
    let full = net.scratch.path("full");
    std::fs::create_dir_all(&full).unwrap();
    net.config("c.toml", &[0, 1], gh, "");
    let wrapper = crate::support::root::full_disk_at(&full);
    let full_arg = full.to_string_lossy();
    let args = ["reconcile", "--json", "--config", "c.toml", "--state-dir", &full_arg];
    let mut cmd = net.scratch.command(&crate::support::process::strs(&wrapper), &args, &[]);
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let run = crate::support::cli::run_bounded(cmd, Duration::from_secs(60), &args);
    assert_eq!(run.code, 70, "a failed save is exit 70\n{run}");
    let j = run.json();
    assert_eq!(j["broadcasts_sent"], 2, "{run}");
    assert_eq!(j["coverage_complete"], true, "the result is kept: {run}");
    assert_eq!(j["success"], false, "{run}");
    assert!(j["error"]["message"].as_str().is_some_and(|m| m.contains("No space left")), "{run}");
    assert!(net.nodes.iter().all(|n| n.stored_pat().as_deref() == Some(PAT_A)));
    assert!(!run.stdout.contains(PAT_A) && !run.stderr.contains(PAT_A));
}
