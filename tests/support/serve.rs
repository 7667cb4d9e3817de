//! Long-running `patrol` processes in tests (`validator serve`, `dev fake-github`): spawned with
//! piped stdout, ready once their one JSON ready line arrives, stderr captured to a file for leak
//! checks, and killed and reaped on drop (also when the test panics).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cli::patrol_bin;

/// How long a patrol process may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

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
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(patrol_bin());
                c
            }
            None => Command::new(patrol_bin()),
        };
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
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut p = PatrolProcess {
            child,
            stderr_path: stderr_path.to_path_buf(),
            ready: Value::Null,
            args: args.iter().map(|s| s.to_string()).collect(),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => match serde_json::from_str::<Value>(&line) {
                    Ok(v) if v["ready"] == Value::Bool(true) => {
                        p.ready = v;
                        return p;
                    }
                    _ => panic!("patrol {:?}: unexpected stdout line {line:?}\n{}", p.args, p.stderr()),
                },
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(st)) = p.child.try_wait() {
                        panic!("patrol {:?} exited with {st} before it was ready\n{}", p.args, p.stderr());
                    }
                    assert!(
                        Instant::now() < deadline,
                        "patrol {:?}: no ready line within {READY_TIMEOUT:?}\n{}",
                        p.args,
                        p.stderr()
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let st = p.child.wait().map(|s| s.to_string()).unwrap_or_default();
                    panic!("patrol {:?} closed stdout before it was ready ({st})\n{}", p.args, p.stderr());
                }
            }
        }
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

    /// Send `signal` and wait (at most `timeout`) for it to exit.
    pub fn signal_and_wait(&mut self, signal: i32, timeout: Duration) -> ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "patrol {:?} did not exit within {timeout:?} after signal {signal}\n{}",
                self.args,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PatrolProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
