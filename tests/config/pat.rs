//! PAT sources on the real binary (issue 15 items 2, 3, 6, 10): a named PAT source that is missing
//! is an error (78), never a fall-through to another PAT; a PAT typed in the wrong place (an
//! unknown config key, `--pat-file`, `--config`, `--network`, a stray argument, a reloaded config)
//! is never echoed in an error or the agent's log; config and PAT files are read only if they are
//! regular files under a cap (`/dev/zero`, a FIFO, 10 MB); a bad flag value names the flag, not a
//! config key.
//!
//! Every run goes through `Scratch::run_env`, which also fails the test when any PAT it knows of
//! appears in stdout or stderr.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use patrol::lab::fake_github::{FakeAccount, FakeGithubConfig, FakeGithubHandle, spawn_fake_github};

use crate::support::agent::{Agent, NotifySocket, RefValidator, replace_file};
use crate::support::cli::{Run, Scratch, dead_port, static_validator};
use crate::support::python::{DENDRITE_HOTKEY, DENDRITE_SEED, VALIDATOR_HOTKEY};

/// The PAT in the config's `[pat] file`.
const FILE_PAT: &str = "ghp_hardeningFileToken00000000000000001";
/// The PAT in `GITTENSOR_MINER_PAT`.
const ENV_PAT: &str = "ghp_hardeningEnvToken000000000000000002";
/// A PAT pasted where it does not belong (never a valid one: it must not matter).
const STRAY: &str = "ghp_hardeningStrayToken0000000000000x7Q9";
/// A fine-grained PAT pasted where it does not belong.
const STRAY_FINE: &str =
    "github_pat_11HARDENING0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789zK3w";

const T: Duration = Duration::from_secs(60);

/// A fake GitHub that knows both PATs (same account, so a validator would accept either).
async fn github() -> (SocketAddr, FakeGithubHandle) {
    spawn_fake_github(
        FakeGithubConfig::default()
            .with_account(FakeAccount::new(FILE_PAT, 4242, "hardening-miner"))
            .with_account(FakeAccount::new(ENV_PAT, 4242, "hardening-miner")),
    )
    .await
}

/// A config with the hotkey, `[pat] file = "pat"` (unless `pat` says otherwise), the GitHub at
/// `gh`, fast timeouts and `validators` as the static list.
fn config(gh: &str, pat: &str, validators: &str) -> String {
    format!(
        "[wallet]\nhotkey_file = \"hotkey\"\n{pat}\n[agent]\nstate_dir = \"state\"\nlisten = \"off\"\n\
         [github]\napi_url = \"http://{gh}\"\ntimeout = \"3s\"\n\
         [reconcile]\ncheck_timeout = \"3s\"\nbroadcast_timeout = \"3s\"\npost_retries = 0\n{validators}"
    )
}

/// A scratch dir with the hotkey and the config's PAT file; both PATs and the stray tokens are
/// leak-checked on every run.
fn scratch() -> Scratch {
    let mut s = Scratch::new();
    s.hotkey("hotkey", DENDRITE_SEED);
    s.pat("pat", FILE_PAT);
    s.secret(ENV_PAT);
    s.secret(STRAY);
    s.secret(STRAY_FINE);
    s
}

/// A fake GitHub (its handle: keep it alive), a reference validator for our miner as uid 1 and a
/// scratch dir with config `name` naming both, its PAT source being the `[pat]` table `pat`.
async fn ref_validator(name: &str, pat: &str) -> (FakeGithubHandle, RefValidator, Scratch) {
    let (gh, g) = github().await;
    let v = RefValidator::for_miner(gh);
    let s = scratch();
    s.write(name, &config(&gh.to_string(), pat, &v.entry(1, 20000.0)), 0o600);
    (g, v, s)
}

/// A scratch dir, a static list of one validator that never answers, and the good config (the
/// GitHub at `gh`, `[pat] file = "pat"`) with that list.
fn dead_validator(gh: &str) -> (Scratch, String, String) {
    let s = scratch();
    let validators = static_validator(1, VALIDATOR_HOTKEY, "127.0.0.1", dead_port(), 20000.0);
    let good = config(gh, "[pat]\nfile = \"pat\"", &validators);
    (s, validators, good)
}

/// The last `patrol: …` line of stderr, which must contain every needle.
fn error_line<'a>(run: &'a Run, needles: &[&str]) -> &'a str {
    let line = run
        .stderr
        .lines()
        .rfind(|l| l.starts_with("patrol: "))
        .unwrap_or_else(|| panic!("no `patrol:` error line\n{run}"));
    for n in needles {
        assert!(line.contains(n), "the error line lacks {n:?}\n{run}");
    }
    assert!(!run.stderr.contains("panicked"), "{run}");
    line
}

/// The `pat` check of `doctor --json`.
fn doctor_pat_check(run: &Run) -> serde_json::Value {
    let j = run.json();
    j["checks"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["check"] == "pat").cloned())
        .unwrap_or_else(|| panic!("no pat check\n{run}"))
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo(3) on a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", p.display());
}

/// Item 2: `--pat-file nope` with a working `[pat] file` and `GITTENSOR_MINER_PAT`: post, reconcile
/// and doctor all exit 78 naming the missing file, and the validator receives nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_pat_file_flag_is_exit_78_and_nothing_is_sent() {
    let (_g, v, s) = ref_validator("c.toml", "[pat]\nfile = \"pat\"").await;
    let env = [("GITTENSOR_MINER_PAT", ENV_PAT)];
    for cmd in ["post", "reconcile"] {
        for json in [false, true] {
            let mut args = vec![cmd, "--config", "c.toml", "--pat-file", "nope"];
            if json {
                args.push("--json");
            }
            let run = s.run_env(&args, &env, T);
            run.expect_code(78);
            error_line(&run, &["nope", "does not exist"]);
            if json {
                let j = run.json();
                assert_eq!(j["error"]["type"], "pat_error", "{run}");
                assert!(j["error"]["message"].as_str().is_some_and(|m| m.contains("nope")), "{run}");
            }
        }
    }
    let run = s.run_env(&["doctor", "--config", "c.toml", "--pat-file", "nope"], &env, T);
    run.expect_code(78);
    let line =
        run.stdout.lines().find(|l| l.starts_with("fail pat")).unwrap_or_else(|| panic!("no failed pat line\n{run}"));
    assert!(line.contains("nope") && line.contains("does not exist"), "{run}");
    let run = s.run_env(&["doctor", "--json", "--config", "c.toml", "--pat-file", "nope"], &env, T);
    run.expect_code(78);
    let c = doctor_pat_check(&run);
    assert_eq!(c["ok"], false, "{run}");
    assert!(c["detail"].as_str().is_some_and(|d| d.contains("nope")), "{run}");
    assert!(c["fix"].as_str().is_some_and(|f| f.contains("--pat-file")), "{run}");
    assert!(v.store().is_empty(), "the validator received a PAT: {:?}", v.store());
    // the same setup without the typo works (and sends the flag's file, not the env's PAT)
    s.write("flag-pat", &format!("{FILE_PAT}\n"), 0o600);
    s.run_env(&["post", "--config", "c.toml", "--pat-file", "flag-pat"], &env, T).expect_code(0);
    assert_eq!(v.pat_of(DENDRITE_HOTKEY).as_deref(), Some(FILE_PAT));
}

/// Item 2: the config's own `[pat] file` missing while `GITTENSOR_MINER_PAT` is set: the env has
/// precedence, so it is used (that is the documented order, not a fall-through); and a
/// `[pat] credential` is an error when `$CREDENTIALS_DIRECTORY` lacks it, but does not apply at all
/// when `$CREDENTIALS_DIRECTORY` is unset (the same config outside systemd).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_is_missing_under_systemd_and_not_applicable_outside_it() {
    let (_g, v, s) = ref_validator("cred.toml", "[pat]\ncredential = \"github-pat\"\nfile = \"pat\"").await;
    std::fs::create_dir_all(s.path("creds")).unwrap();
    let creds = s.path("creds").to_string_lossy().into_owned();
    let under_systemd = [("GITTENSOR_MINER_PAT", ENV_PAT), ("CREDENTIALS_DIRECTORY", creds.as_str())];
    for cmd in ["post", "reconcile", "doctor"] {
        let run = s.run_env(&[cmd, "--config", "cred.toml"], &under_systemd, T);
        run.expect_code(78);
        let text = if cmd == "doctor" { &run.stdout } else { &run.stderr };
        assert!(
            text.contains("systemd credential \"github-pat\"") && text.contains(&format!("{creds}/github-pat")),
            "{run}"
        );
    }
    assert!(v.store().is_empty(), "the validator received a PAT: {:?}", v.store());
    // not under systemd: the credential does not apply; the env (before [pat] file) is used
    let run = s.run_env(&["post", "--json", "--config", "cred.toml"], &[("GITTENSOR_MINER_PAT", ENV_PAT)], T);
    run.expect_code(0);
    assert_eq!(v.pat_of(DENDRITE_HOTKEY).as_deref(), Some(ENV_PAT));
}

/// Item 3: a PAT typed in the wrong place is never echoed: an unknown config key, `--pat-file`,
/// `--config`, `--network`, a stray argument, `doctor`. The errors still say what is wrong.
#[test]
fn a_pat_in_the_wrong_place_is_never_echoed() {
    let (s, validators, good) = dead_validator("127.0.0.1:9");
    s.write("c.toml", &good, 0o600);
    for token in [STRAY, STRAY_FINE] {
        let tail = &token[token.len() - 4..];
        // the unknown key a user will try: [pat] token = "ghp_…"
        s.write(
            "tok.toml",
            &config("127.0.0.1:9", &format!("[pat]\nfile = \"pat\"\ntoken = \"{token}\""), &validators),
            0o600,
        );
        for args in [&["check", "--config", "tok.toml"][..], &["post", "--json", "--config", "tok.toml"]] {
            let run = s.run(args);
            run.expect_code(78);
            error_line(&run, &["tok.toml", "unknown field `token`", "line 5", "5 | token = …"]);
        }
        let run = s.run(&["doctor", "--json", "--config", "tok.toml"]);
        run.expect_code(78);
        assert!(run.stdout.contains("unknown field `token`"), "{run}");
        // as --pat-file: named, redacted
        for cmd in ["post", "reconcile"] {
            let run = s.run(&[cmd, "--config", "c.toml", "--pat-file", token]);
            run.expect_code(78);
            error_line(&run, &["does not exist", &format!("***{tail}")]);
        }
        let run = s.run(&["doctor", "--config", "c.toml", "--pat-file", token]);
        run.expect_code(78);
        assert!(run.stdout.contains(&format!("***{tail}")), "{run}");
        // as --config
        let run = s.run(&["check", "--config", token]);
        run.expect_code(78);
        error_line(&run, &["cannot read config file", &format!("***{tail}")]);
        let run = s.run(&["check", "--json", "--config", token]);
        run.expect_code(78);
        assert_eq!(run.json()["error"]["type"], "config_error", "{run}");
        // as --network (and --rpc-url)
        for flag in ["--network", "--rpc-url"] {
            let run = s.run(&["check", "--config", "c.toml", flag, token]);
            run.expect_code(78);
            error_line(&run, &[&format!("command line: {flag}:"), &format!("***{tail}")]);
        }
        // as a stray argument or a flag's value that clap rejects: a usage error, redacted too
        let run = s.run(&["post", "--config", "c.toml", token]);
        run.expect_code(64);
        assert!(run.stderr.contains("unexpected argument"), "{run}");
        let run = s.run(&["post", "--json", "--config", "c.toml", "--min-vtrust", token]);
        run.expect_code(64);
        assert_eq!(run.json()["error"]["type"], "usage_error", "{run}");
    }
}

/// Item 3: a reload of a config with a PAT in it is rejected, and the agent's log says why without
/// the PAT: an unknown key (a parse error) and a hotkey file path (an error while applying).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_reload_never_logs_the_pat() {
    let (gh, _g) = github().await;
    let (s, _, good) = dead_validator(&gh.to_string());
    s.write("agent.toml", &good, 0o600);
    let notify = NotifySocket::bind(s.dir.path());
    let sock = notify.path.to_string_lossy().into_owned();
    let mut agent = Agent::start(
        &s,
        &["--config", "agent.toml"],
        &[("NOTIFY_SOCKET", &sock)],
        None,
        &[FILE_PAT, ENV_PAT, STRAY, STRAY_FINE],
    );
    notify.wait("READY=1", Duration::from_secs(30));
    let rejected = |needle: &str| {
        let needle = needle.to_string();
        let a = &agent;
        crate::support::wait_for(
            Duration::from_secs(15),
            &format!("a rejected reload mentioning {needle:?}"),
            move || {
                a.log()
                    .lines()
                    .any(|l| l.contains("configuration reload rejected") && l.contains(&needle))
                    .then_some(())
            },
        )
    };
    // a parse error: the unknown key is named, the value is not
    replace_file(
        &s.path("agent.toml"),
        &good.replace("file = \"pat\"", &format!("file = \"pat\"\ntoken = \"{STRAY}\"")),
        0o600,
    );
    agent.signal(libc::SIGHUP);
    rejected("unknown field `token`");
    // an error while applying: the hotkey file named by a (pasted) token does not exist
    replace_file(
        &s.path("agent.toml"),
        &good.replace("hotkey_file = \"hotkey\"", &format!("hotkey_file = \"{STRAY_FINE}\"")),
        0o600,
    );
    agent.signal(libc::SIGHUP);
    rejected(&format!("***{}", &STRAY_FINE[STRAY_FINE.len() - 4..]));
    // agent.log() checked every line for all four tokens; stop cleanly
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(10)).code(), Some(0), "{}", agent.log());
}

/// Item 6: `--config /dev/zero`, a FIFO config, a 10 MB config, a FIFO or oversized PAT file: exit
/// 78 with the file, what it is and the cap, without reading them.
#[test]
fn config_and_pat_reads_are_capped_and_regular_files_only() {
    let (s, _, good) = dead_validator("127.0.0.1:9");
    s.write("c.toml", &good, 0o600);
    let bound = Duration::from_secs(30);
    let run = s.run_env(&["check", "--config", "/dev/zero"], &[], bound);
    run.expect_code(78);
    error_line(&run, &["/dev/zero", "not a regular file (it is a character device)"]);
    mkfifo(&s.path("fifo"));
    let run = s.run_env(&["check", "--config", "fifo"], &[], bound);
    run.expect_code(78);
    error_line(&run, &["fifo", "not a regular file (it is a FIFO)"]);
    for cmd in ["post", "reconcile"] {
        let run = s.run_env(&[cmd, "--config", "c.toml", "--pat-file", "fifo"], &[], bound);
        run.expect_code(78);
        error_line(&run, &["fifo", "not a regular file (it is a FIFO)"]);
    }
    let run = s.run_env(&["doctor", "--config", "c.toml", "--pat-file", "fifo"], &[], bound);
    run.expect_code(78);
    assert!(run.stdout.contains("not a regular file (it is a FIFO)"), "{run}");
    // a valid config padded to 10 MB with comments: refused by size, before parsing
    let mut big = good.clone();
    let filler = format!("# {}\n", "x".repeat(1000));
    while big.len() < 10_000_000 {
        big.push_str(&filler);
    }
    s.write("big.toml", &big, 0o600);
    let run = s.run_env(&["check", "--config", "big.toml"], &[], bound);
    run.expect_code(78);
    error_line(&run, &["big.toml", "larger than 1048576 bytes"]);
    // a PAT file of 5 KB (the wrong file): refused with the cap
    s.write("big-pat", &format!("{FILE_PAT}\n{}", "x".repeat(5000)), 0o600);
    let run = s.run_env(&["post", "--config", "c.toml", "--pat-file", "big-pat"], &[], bound);
    run.expect_code(78);
    error_line(&run, &["big-pat", "larger than 4096 bytes"]);
}

/// Item 10: a bad flag value with a config file present names the flag and "command line", not
/// the file and its key; the same value in the file still names the file and the key.
#[test]
fn flag_errors_name_the_flag_not_the_config_key() {
    let (s, _, good) = dead_validator("127.0.0.1:9");
    s.write("base.toml", &format!("{good}\n[validators]\nmin_vtrust = 0.3\nmin_stake = 100.0\n"), 0o600);
    for (cmd, flag, value, says) in [
        ("check", "--min-vtrust", "NaN", "must be a finite number"),
        ("post", "--min-stake", "-1", "must be a non-negative number"),
        ("reconcile", "--network", "bogus", "\"bogus\" is not finney, test, local"),
        ("check", "--rpc-url", "http://node:9944", "is not finney, test, local"),
        ("check", "--wallet", "a/b", "\"a/b\" must be a plain name"),
        ("doctor", "--hotkey", "a/b", "\"a/b\" must be a plain name"),
        ("run", "--listen", "localhost", "is not an address"),
        ("check", "--log-format", "xml", "is not one of auto, text, json, journald"),
    ] {
        let run = s.run(&[cmd, "--config", "base.toml", flag, value]);
        run.expect_code(78);
        let text = if cmd == "doctor" { run.stdout.clone() } else { error_line(&run, &[]).to_string() };
        let want = format!("command line: {flag}: ");
        assert!(text.contains(&want) && text.contains(says), "{cmd} {flag} {value}: wanted {want:?} + {says:?}\n{run}");
        assert!(
            !text.contains("base.toml:") && !text.contains("validators.") && !text.contains("chain.network"),
            "{run}"
        );
    }
    let run = s.run(&["check", "--json", "--config", "base.toml", "--min-vtrust", "inf"]);
    run.expect_code(78);
    let j = run.json();
    assert_eq!(j["error"]["type"], "config_error", "{run}");
    assert!(j["error"]["message"].as_str().is_some_and(|m| m.starts_with("command line: --min-vtrust: ")), "{run}");
    // the file's own bad value keeps the file and the key
    s.write("bad.toml", &format!("{good}\n[validators]\nmin_stake = -1.0\n"), 0o600);
    let run = s.run(&["check", "--config", "bad.toml", "--min-vtrust", "0.5"]);
    run.expect_code(78);
    error_line(&run, &["bad.toml: validators.min_stake: must be a non-negative number"]);
}
