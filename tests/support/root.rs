//! What some tests need from the machine, provided rather than skipped: root (CI runs the suite as
//! root, `scripts/test.sh`), and mounts private to one child process (`unshare -m`): a full disk, a
//! read-only directory. Nothing outside the child's mount namespace sees them.

#![allow(dead_code)]

use std::path::Path;

/// Fail the test, naming the fix, unless it runs as root.
pub fn require_root(what: &str) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "{what} needs root (uid 0): run the tests as root, as CI does (scripts/test.sh); they never \
         touch anything outside their temp dirs and the mount namespaces of their own children"
    );
}

/// A command prefix (see `process::wrapped`) that runs its command in a private mount namespace
/// after the shell `setup` (a `$D`-free snippet of `mount …` lines) succeeded; a failed setup is
/// exit 70 with the mount's own message.
fn in_mount_namespace(setup: String) -> Vec<String> {
    require_root("a private mount namespace (unshare -m)");
    let script = format!("set -e\n{setup}\nexec \"$@\"");
    ["unshare", "-m", "--propagation", "private", "--", "sh", "-c"]
        .iter()
        .map(|s| s.to_string())
        .chain([script, "sh".into()])
        .collect()
}

fn quoted(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// `dir` is a 16 KiB tmpfs, already full, for the wrapped command: every write there fails with
/// "No space left on device".
pub fn full_disk_at(dir: &Path) -> Vec<String> {
    let d = quoted(dir);
    in_mount_namespace(format!(
        "mount -t tmpfs -o size=16k tmpfs {d}\ndd if=/dev/zero of={d}/filler bs=4k count=4 2>/dev/null || true"
    ))
}

/// `dir` bind-mounted read-only onto itself for the wrapped command: it reads what is there, every
/// write fails with "Read-only file system" (also for root, whom permission bits do not stop).
pub fn read_only_at(dir: &Path) -> Vec<String> {
    let d = quoted(dir);
    in_mount_namespace(format!("mount --bind {d} {d}\nmount -o remount,bind,ro {d}"))
}
