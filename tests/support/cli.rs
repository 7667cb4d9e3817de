//! Running the real `patrol` binary in tests: a temp dir with a hotkey file, a PAT file (0600) and a
//! config, bounded runs, and a PAT-leak check on every run's stdout and stderr.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use super::process;

/// The binary under test.
pub fn patrol_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_patrol"))
}

/// A finished `patrol` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub args: Vec<String>,
}

impl Run {
    /// stdout parsed as JSON (panics with the whole run on failure).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }

    /// Assert the exit code, printing everything on mismatch.
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "unexpected exit code\n{self}");
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ patrol {}\nexit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

/// A scratch directory for one test's patrol files. Every PAT written through it is remembered and
/// every run is checked for leaks of any of them.
pub struct Scratch {
    pub dir: TempDir,
    secrets: Vec<String>,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::Builder::new().prefix("patrol-test-").tempdir().expect("temp dir"),
            secrets: Vec::new(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Write a file with `mode`.
    pub fn write(&self, name: &str, body: &str, mode: u32) -> PathBuf {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    /// A hotkey keyfile (bittensor format, secretSeed only) for `seed_hex` (0x + 64 hex).
    pub fn hotkey(&self, name: &str, seed_hex: &str) -> PathBuf {
        self.write(name, &format!("{{\"secretSeed\":\"{seed_hex}\"}}"), 0o600)
    }

    /// A PAT file (0600, trailing newline like `echo` writes) — remembered for the leak check.
    pub fn pat(&mut self, name: &str, pat: &str) -> PathBuf {
        self.secrets.push(pat.to_string());
        self.write(name, &format!("{pat}\n"), 0o600)
    }

    /// Remember another secret for the leak check (e.g. one passed through the environment).
    pub fn secret(&mut self, s: &str) {
        self.secrets.push(s.to_string());
    }

    /// `patrol args...` (through `wrapper`, see [`process::wrapped`]) in this directory, with `env`
    /// over a clean environment: no config, PAT, credentials or systemd variables of the caller's,
    /// `HOME` and the XDG dirs in here, patrol's debug log.
    pub fn command(&self, wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = process::wrapped(wrapper, patrol_bin());
        cmd.args(args).current_dir(self.dir.path());
        for var in [
            "PATROL_CONFIG",
            "GITTENSOR_MINER_PAT",
            "CREDENTIALS_DIRECTORY",
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "JOURNAL_STREAM",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.path("xdg-config"))
            .env("XDG_STATE_HOME", self.path("xdg-state"))
            .env("RUST_LOG", "patrol=debug,info")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Run `patrol args...` with `env`, at most `timeout`; checks no remembered PAT appears in the
    /// output.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Run {
        let mut cmd = self.command(&[], args, env);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let run = run_bounded(cmd, timeout, args);
        self.assert_no_leak(&format!("{}{}", run.stdout, run.stderr), &run);
        run
    }

    /// No remembered secret in `text` (`context` is shown when one is).
    pub fn assert_no_leak(&self, text: &str, context: &dyn std::fmt::Display) {
        for s in &self.secrets {
            assert!(!text.contains(s.as_str()), "the PAT leaked into the output\n{context}");
        }
    }

    /// `run_env` with no extra environment and a 60 s bound.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[], Duration::from_secs(60))
    }
}

/// Run a command (stdout and stderr piped), killing it after `timeout`.
pub fn run_bounded(mut cmd: Command, timeout: Duration, args: &[&str]) -> Run {
    let mut child = cmd.spawn().expect("spawn patrol");
    let (out, err) = (process::drain(child.stdout.take()), process::drain(child.stderr.take()));
    let Some(status) = process::wait_exit(&mut child, timeout) else {
        process::kill(&mut child);
        panic!("patrol {} did not finish within {timeout:?}", args.join(" "));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        args: args.iter().map(|s| s.to_string()).collect(),
    }
}

/// The `results[]` row of `uid` in a `--json` document.
pub fn row_of(doc: &Value, uid: u64) -> Value {
    let rows = doc["results"].as_array().unwrap_or_else(|| panic!("no results[] in {doc}"));
    rows.iter().find(|r| r["uid"] == uid).cloned().unwrap_or_else(|| panic!("no row for uid {uid} in {doc}"))
}

/// The `results[]` row of `uid` in a `--json` run.
pub fn row(run: &Run, uid: u64) -> Value {
    let doc = run.json();
    assert!(doc["results"].is_array(), "no results[]\n{run}");
    row_of(&doc, uid)
}

/// One `[[validators.static]]` entry.
pub fn static_validator(uid: u16, hotkey: &str, ip: &str, port: u16, stake: f64) -> String {
    format!(
        "[[validators.static]]\nuid = {uid}\nhotkey = \"{hotkey}\"\nip = \"{ip}\"\nport = {port}\nstake = {stake}\nvtrust = 0.9\n"
    )
}

/// A free TCP port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Is `p` a path that exists?
pub fn exists(p: &Path) -> bool {
    p.exists()
}
