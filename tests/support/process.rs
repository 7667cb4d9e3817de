//! Child-process plumbing shared by every launcher (patrol one-shot runs, `patrol run`,
//! `validator serve`, the Python axon and dendrite): a command through an optional wrapper, a
//! bounded wait, pipes drained on threads, the JSON ready line a server prints on stdout, signals.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, ExitStatus};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// `&str`s of owned arguments or a wrapper (what the spawn helpers take).
pub fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// `program` run through `wrapper`, a command prefix that execs its arguments (e.g. `sh -c
/// 'ulimit -n 64 && exec "$0" "$@"'`, `setpriv …`, `unshare -m …`), so the pid and the signals are
/// the program's; an empty wrapper: the program itself.
pub fn wrapped(wrapper: &[&str], program: impl AsRef<std::ffi::OsStr>) -> Command {
    match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Wait for `child` to exit, at most `timeout`; `None` if it is still running then (not killed).
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().expect("wait for a child") {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kill and reap `child` (already gone: nothing happens).
pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Send `signal` to `pid` (a child of ours).
pub fn signal(pid: u32, signal: i32) {
    let pid = i32::try_from(pid).expect("a pid fits i32");
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}) failed: {}", std::io::Error::last_os_error());
}

/// Read `pipe` to its end on a thread (lossy UTF-8), so a child never blocks on a full pipe.
pub fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// The JSON line `{"ready": true, …}` a server prints on `stdout` once it listens, and the lines
/// it printed before it; panics (with `stderr()`) when the child exits, closes stdout or stays
/// silent for `timeout`. The rest of stdout is drained in the background.
pub fn ready_line(
    child: &mut Child,
    stdout: ChildStdout,
    timeout: Duration,
    what: &str,
    stderr: impl Fn() -> String,
) -> (Value, Vec<String>) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut before = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => match serde_json::from_str::<Value>(&line) {
                Ok(v) if v["ready"] == Value::Bool(true) => return (v, before),
                _ => before.push(line),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(st)) = child.try_wait() {
                    panic!("{what} exited with {st} before it was ready\nstdout: {before:?}\n{}", stderr());
                }
                assert!(
                    Instant::now() < deadline,
                    "{what}: no ready line within {timeout:?}\nstdout: {before:?}\n{}",
                    stderr()
                );
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let st = child.wait().map(|s| s.to_string()).unwrap_or_default();
                panic!("{what} closed stdout before it was ready ({st})\nstdout: {before:?}\n{}", stderr());
            }
        }
    }
}
