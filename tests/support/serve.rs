//! Long-running `patrol` processes in tests (`validator serve`, `dev fake-github`): spawned with
//! piped stdout, ready once their one JSON ready line arrives, stderr captured to a file for leak
//! checks, and killed and reaped on drop (also when the test panics).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::cli::patrol_bin;
use super::process;

/// How long a patrol process may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The arguments of `patrol validator serve` with key `seed` on `listen`, its PAT store at `store`,
/// asking the GitHub at `github`, each of `miners` (`uid:hotkey:stake`) registered, then `extra`.
pub fn validator_args(
    seed: &str,
    listen: &str,
    store: &Path,
    github: &str,
    miners: &[String],
    extra: &[&str],
) -> Vec<String> {
    let store = store.to_string_lossy();
    let mut args: Vec<String> = ["validator", "serve", "--hotkey-seed", seed, "--listen", listen, "--store", &store]
        .into_iter()
        .chain(["--github-api-url", github])
        .map(str::to_string)
        .collect();
    for m in miners {
        args.extend(["--miner".to_string(), m.clone()]);
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// A running patrol process.
pub struct PatrolProcess {
    child: Child,
    stderr_path: PathBuf,
    /// The parsed ready line.
    pub ready: Value,
    args: Vec<String>,
}

impl PatrolProcess {
    /// Spawn `patrol args…` with `envs`, stderr into `stderr_path`; wait for the ready line.
    pub fn spawn(args: &[&str], envs: &[(&str, &str)], stderr_path: &Path) -> PatrolProcess {
        PatrolProcess::spawn_wrapped(&[], args, envs, stderr_path)
    }

    /// [`spawn`](Self::spawn) through a command prefix, e.g. `["setpriv", "--reuid=65534", …]`: the
    /// prefix must `exec` patrol (so the pid and the signals are patrol's). Empty: patrol itself.
    pub fn spawn_wrapped(wrapper: &[&str], args: &[&str], envs: &[(&str, &str)], stderr_path: &Path) -> PatrolProcess {
        let stderr = std::fs::File::create(stderr_path).expect("stderr log file");
        let mut cmd = process::wrapped(wrapper, patrol_bin());
        cmd.args(args)
            .env_remove("PATROL_CONFIG")
            .env_remove("GITTENSOR_MINER_PATS_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn patrol");
        let stdout = child.stdout.take().expect("stdout");
        let mut p = PatrolProcess {
            child,
            stderr_path: stderr_path.to_path_buf(),
            ready: Value::Null,
            args: args.iter().map(|s| s.to_string()).collect(),
        };
        let what = format!("patrol {:?}", p.args);
        let log = stderr_path.to_path_buf();
        let (ready, before) = process::ready_line(&mut p.child, stdout, READY_TIMEOUT, &what, || {
            std::fs::read_to_string(&log).unwrap_or_default()
        });
        // the ready line is the first thing a patrol server prints
        assert!(before.is_empty(), "{what}: unexpected stdout lines {before:?}\n{}", p.stderr());
        p.ready = ready;
        p
    }

    /// The `listen` address of the ready line.
    pub fn listen(&self) -> SocketAddr {
        self.ready["listen"].as_str().expect("ready.listen").parse().expect("ready.listen is an address")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Wait (at most `timeout`) until its stderr has a line containing `needle`; that line.
    pub fn wait_stderr(&self, needle: &str, timeout: Duration) -> String {
        let found = super::wait_until(timeout, || self.stderr().contains(needle));
        assert!(found, "patrol {:?}: no {needle:?} within {timeout:?}\n{}", self.args, self.stderr());
        self.stderr().lines().find(|l| l.contains(needle)).unwrap_or_default().to_string()
    }

    /// Send `signal` and wait (at most `timeout`) for it to exit.
    pub fn signal_and_wait(&mut self, signal: i32, timeout: Duration) -> ExitStatus {
        process::signal(self.child.id(), signal);
        process::wait_exit(&mut self.child, timeout).unwrap_or_else(|| {
            panic!("patrol {:?} did not exit within {timeout:?} after signal {signal}\n{}", self.args, self.stderr())
        })
    }
}

impl Drop for PatrolProcess {
    fn drop(&mut self) {
        process::kill(&mut self.child);
    }
}
