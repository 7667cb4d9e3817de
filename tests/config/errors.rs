//! Bad input never panics, never loses data, never leaks the PAT: each case gets a clear one-line
//! error naming the thing to fix (exit 78, or 64 for usage errors). (A misbehaving validator's
//! answers: `wire::validator_answers`.)

use std::time::Duration;

use crate::support::cli::{Scratch, static_validator};
use crate::support::python::DENDRITE_SEED;

const PAT: &str = "ghp_badInputTestToken0000000000000042";
const VALIDATOR: &str = "5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi";

fn base(extra: &str) -> String {
    format!(
        "[wallet]\nhotkey_file = \"hotkey\"\n[agent]\nstate_dir = \"state\"\n[github]\napi_url = \"http://127.0.0.1:9\"\n{extra}\n{}",
        static_validator(1, VALIDATOR, "127.0.0.1", 9, 1e5)
    )
}

fn one_line_error(run: &crate::support::cli::Run, needle: &str) {
    let last = run
        .stderr
        .lines()
        .rfind(|l| l.starts_with("patrol: "))
        .unwrap_or_else(|| panic!("no `patrol:` error line\n{run}"));
    assert!(last.contains(needle), "error line lacks {needle:?}\n{run}");
    assert!(!run.stderr.contains("panicked"), "{run}");
}

#[test]
fn pat_problems_are_configuration_errors() {
    let mut s = Scratch::new();
    s.hotkey("hotkey", DENDRITE_SEED);
    s.secret(PAT);
    // missing file
    s.write("c.toml", &base("[pat]\nfile = \"missing-pat\""), 0o600);
    let run = s.run(&["post", "--config", "c.toml"]);
    run.expect_code(78);
    one_line_error(&run, "missing-pat");
    // world-readable file
    s.write("open-pat", PAT, 0o644);
    s.write("c.toml", &base("[pat]\nfile = \"open-pat\""), 0o600);
    let run = s.run(&["post", "--config", "c.toml"]);
    run.expect_code(78);
    one_line_error(&run, "chmod 600");
    // unreadable (a directory where the file should be)
    std::fs::create_dir_all(s.path("dir-pat")).unwrap();
    s.write("c.toml", &base("[pat]\nfile = \"dir-pat\""), 0o600);
    let run = s.run(&["post", "--config", "c.toml"]);
    run.expect_code(78);
    one_line_error(&run, "dir-pat");
    // empty file
    s.write("empty-pat", "\n", 0o600);
    s.write("c.toml", &base("[pat]\nfile = \"empty-pat\""), 0o600);
    s.run(&["post", "--config", "c.toml"]).expect_code(78);
    // the env var works and is trimmed; the bad GitHub URL then makes the preflight transient (3)
    s.write("c.toml", &base(""), 0o600);
    let run = s.run_env(
        &["post", "--json", "--config", "c.toml"],
        &[("GITTENSOR_MINER_PAT", &format!("  {PAT}\n"))],
        Duration::from_secs(60),
    );
    run.expect_code(3);
    assert!(run.stdout.contains("github_unavailable"), "{run}");
}

#[test]
fn hotkey_and_config_problems_are_named() {
    let s = Scratch::new();
    // malformed hotkey file
    s.write("hotkey", "{\"secretSeed\": 12", 0o600);
    s.write("c.toml", &base(""), 0o600);
    let run = s.run(&["check", "--config", "c.toml"]);
    run.expect_code(78);
    one_line_error(&run, "hotkey");
    // encrypted hotkey
    s.write("hotkey", "$NACL\u{1}\u{2}garbage", 0o600);
    let run = s.run(&["check", "--config", "c.toml"]);
    run.expect_code(78);
    one_line_error(&run, "encrypted");
    // missing hotkey
    std::fs::remove_file(s.path("hotkey")).unwrap();
    s.run(&["check", "--config", "c.toml"]).expect_code(78);
    // unknown key, bad value
    s.hotkey("hotkey", DENDRITE_SEED);
    s.write("bad.toml", &base("[reconcile]\nintreval = \"5m\""), 0o600);
    let run = s.run(&["check", "--config", "bad.toml"]);
    run.expect_code(78);
    one_line_error(&run, "intreval");
    one_line_error(&run, "bad.toml");
    s.write("bad.toml", &base("[reconcile]\ncheck_timeout = \"soon\""), 0o600);
    let run = s.run(&["check", "--json", "--config", "bad.toml"]);
    run.expect_code(78);
    one_line_error(&run, "reconcile.check_timeout");
    assert!(run.json()["error"]["type"] == "config_error", "{run}");
    // missing config file named on the command line
    let run = s.run(&["check", "--config", "nope.toml"]);
    run.expect_code(78);
    one_line_error(&run, "nope.toml");
    // ... and the OS's reason is said once, not once per layer of the error chain
    assert_eq!(run.stderr.matches("os error 2").count(), 1, "{run}");
    // a missing hotkey file likewise
    std::fs::remove_file(s.path("hotkey")).unwrap();
    let run = s.run(&["check", "--config", "c.toml"]);
    assert_eq!(run.stderr.matches("os error 2").count(), 1, "{run}");
    s.hotkey("hotkey", DENDRITE_SEED);
    // usage errors are 64, in JSON too
    let run = s.run(&["check", "--no-such-flag"]);
    run.expect_code(64);
    let run = s.run(&["check", "--json", "--netuid", "many"]);
    run.expect_code(64);
    assert_eq!(run.json()["error"]["type"], "usage_error");
}
