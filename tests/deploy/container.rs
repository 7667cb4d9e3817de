//! A Debian 12 root booted with `systemd-nspawn -b` (systemd 252 as PID 1), driven with `nsenter`.
//!
//! The cached root (`scripts/debian-root.sh`) is copied per run, so every run starts from a clean
//! system. The container shares the network namespace of the test (no `--private-network`), which
//! `scripts/test.sh` runs inside `unshare -n`: the validators the test starts on 127.0.0.1 are
//! reachable from the services in the container, and nothing reaches any other network.
//!
//! [`Container`]'s `Drop` powers the system off (`systemctl poweroff`, bounded), kills
//! `systemd-nspawn` if it does not exit in time, and removes the copied root: on success, on a
//! failed assertion, on every path.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::support::process;

/// Default bound for one command in the container.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the boot may take until `systemctl is-system-running` says running (or degraded).
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// How long `systemctl poweroff` may take before nspawn is killed.
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(30);

/// The environment commands run with (nothing of the test process leaks in).
const ENV: [&str; 4] =
    ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8", "TERM=dumb"];

/// A finished command.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}", self.code, self.stdout, self.stderr)
    }
}

/// A booted container.
pub struct Container {
    /// The copied root (removed on drop, after the container has stopped).
    root: TempDir,
    nspawn: Option<Child>,
    /// The container's PID 1, as seen from the host.
    leader: u32,
    console: PathBuf,
}

impl Container {
    /// Copy `image` and boot it. `scratch` holds the console log.
    pub fn boot(image: &Path, scratch: &Path) -> Container {
        assert!(
            image.join(".patrol-root-complete").is_file(),
            "{} is not a complete root from scripts/debian-root.sh",
            image.display()
        );
        let root = tempfile::Builder::new()
            .prefix("patrol-deploy-root-")
            .tempdir_in("/var/tmp")
            .expect("temp dir for the root");
        let cp = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", image.display()))
            .arg(root.path())
            .status()
            .expect("run cp");
        assert!(cp.success(), "cp -a {} {} failed: {cp}", image.display(), root.path().display());
        let console = scratch.join("console.log");
        let log = std::fs::File::create(&console).expect("console log");
        let name = format!("patrol-deploy-{}", std::process::id());
        let nspawn = Command::new("systemd-nspawn")
            .args(["-q", "-b", "--register=no", "--keep-unit", "--console=pipe", "-M", &name, "-D"])
            .arg(root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("console log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn systemd-nspawn (package systemd-container: scripts/ci-deps.sh)");
        let mut c = Container { root, nspawn: Some(nspawn), leader: 0, console };
        c.leader = c.find_leader();
        c.wait_booted();
        c
    }

    /// The nspawn process's first child is the container's PID 1.
    fn find_leader(&mut self) -> u32 {
        let pid = self.nspawn.as_ref().map(Child::id).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
            if let Some(leader) = children.split_whitespace().next().and_then(|p| p.parse().ok()) {
                return leader;
            }
            if let Some(Ok(Some(st))) = self.nspawn.as_mut().map(Child::try_wait) {
                panic!("systemd-nspawn exited with {st} before booting\n{}", self.console_log());
            }
            assert!(
                Instant::now() < deadline,
                "systemd-nspawn started no container within 20 s\n{}",
                self.console_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_booted(&self) {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            let out = self.sh_t("systemctl is-system-running", Duration::from_secs(10));
            last = out.stdout.trim().to_string();
            match last.as_str() {
                "running" => return,
                "degraded" => {
                    eprintln!(
                        "deploy: the container booted degraded:\n{}",
                        self.sh("systemctl --failed --no-pager").stdout
                    );
                    return;
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        panic!(
            "the container did not finish booting within {BOOT_TIMEOUT:?} (last state {last:?})\n{}",
            self.console_log()
        );
    }

    fn console_log(&self) -> String {
        format!("--- console ---\n{}", std::fs::read_to_string(&self.console).unwrap_or_default())
    }

    /// The host path of `path` inside the container (its root is a plain directory).
    pub fn host_path(&self, path: &str) -> PathBuf {
        self.root.path().join(path.trim_start_matches('/'))
    }

    /// Run `script` with `/bin/sh -c` as root in the container, at most [`COMMAND_TIMEOUT`].
    pub fn sh(&self, script: &str) -> Out {
        self.run(script, None, COMMAND_TIMEOUT)
    }

    /// [`sh`](Self::sh) with a bound of its own.
    pub fn sh_t(&self, script: &str, timeout: Duration) -> Out {
        self.run(script, None, timeout)
    }

    /// [`sh`](Self::sh) with `stdin` on its standard input (how the PAT goes in: never on a
    /// command line).
    pub fn sh_stdin(&self, script: &str, stdin: &[u8]) -> Out {
        self.run(script, Some(stdin), COMMAND_TIMEOUT)
    }

    fn run(&self, script: &str, stdin: Option<&[u8]>, timeout: Duration) -> Out {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.leader.to_string(), "-m", "-u", "-i", "-p", "--", "env", "-i"])
            .args(ENV)
            .args(["/bin/sh", "-c", script])
            .env_clear()
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn nsenter");
        if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(bytes).expect("write the command's stdin");
        }
        let out = process::drain(child.stdout.take());
        let err = process::drain(child.stderr.take());
        let Some(status) = process::wait_exit(&mut child, timeout) else {
            process::kill(&mut child);
            panic!("in the container, `{script}` did not finish within {timeout:?}");
        };
        Out {
            code: status.code().unwrap_or(-1),
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        }
    }

    /// `systemctl show UNIT -p PROP --value`.
    pub fn prop(&self, unit: &str, prop: &str) -> String {
        self.sh(&format!("systemctl show {unit} -p {prop} --value")).stdout.trim().to_string()
    }

    /// `systemctl status` and the journal of each unit: what a failure message shows.
    pub fn diagnose(&self, units: &[&str]) -> String {
        let mut s = String::new();
        for u in units {
            let status = self.sh(&format!("systemctl status {u} --no-pager -l -n 0"));
            let journal = self.sh(&format!("journalctl -u {u} --no-pager -o short-precise -n 150"));
            s.push_str(&format!(
                "\n===== systemctl status {u} =====\n{}{}\n===== journalctl -u {u} =====\n{}{}",
                status.stdout, status.stderr, journal.stdout, journal.stderr
            ));
        }
        s
    }

    /// Panic with what was expected, what came, and the units' status and journals.
    pub fn fail(&self, units: &[&str], expected: &str, got: &str) -> ! {
        panic!("EXPECTED: {expected}\nGOT: {got}\n{}", self.diagnose(units))
    }

    /// Run `script`; it must exit 0 (else [`fail`](Self::fail) with `units`' status). Its stdout.
    pub fn ok(&self, units: &[&str], script: &str) -> String {
        let out = self.sh(script);
        if !out.ok() {
            self.fail(units, &format!("`{script}` exits 0"), &out.to_string());
        }
        out.stdout
    }

    /// Poll `f` every 200 ms until it gives `Some`, at most `timeout`; else [`fail`](Self::fail)
    /// with `expected` and the last thing `f` saw (`Err`).
    pub fn wait<T>(
        &self,
        units: &[&str],
        expected: &str,
        timeout: Duration,
        mut f: impl FnMut() -> Result<T, String>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            match f() {
                Ok(v) => return v,
                Err(last) if Instant::now() >= deadline => {
                    self.fail(units, &format!("{expected} (within {timeout:?})"), &last)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Power off and wait; kill nspawn when that does not work in time.
    pub fn stop(&mut self) {
        let Some(mut nspawn) = self.nspawn.take() else { return };
        if matches!(nspawn.try_wait(), Ok(None)) {
            // Not `run`: it panics on timeout, and this runs in Drop.
            let poweroff = Command::new("nsenter")
                .args([
                    "-t",
                    &self.leader.to_string(),
                    "-m",
                    "-u",
                    "-i",
                    "-p",
                    "--",
                    "systemctl",
                    "poweroff",
                    "--no-block",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + POWEROFF_TIMEOUT;
            while poweroff.is_ok() && Instant::now() < deadline {
                if let Ok(Some(_)) = nspawn.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!("deploy: the container did not power off within {POWEROFF_TIMEOUT:?}: killing systemd-nspawn");
            let _ = nspawn.kill();
        }
        let _ = nspawn.wait();
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.stop();
        // `self.root` (TempDir) is removed after this, with the container gone.
    }
}
