//! What makes the agent stop or re-read its configuration: Unix signals (SIGTERM/SIGINT stop,
//! SIGHUP reloads) and changes of the config file or a PAT file.
//!
//! Files are watched through their **directories** (inotify, or `notify`'s polling where inotify is
//! unavailable), because editors and `install`/`mv`-style rotations replace a file by renaming a
//! new one over it, which a watch on the old inode would never see. Only events naming one of the
//! watched files pass; the main loop debounces them ([`DEBOUNCE`]) so one save, which is often
//! several events, is one reload. The watcher only says *that* something changed: validating and
//! applying the new configuration is the main loop's job.
//!
//! The directory may hold other busy files — the agent's own log (`patrol run -vv 2> LOG` next to
//! the config), the state files. Their events must cost nothing and, above all, never be logged: a
//! log line about a write to the log is another write, a feedback loop that once filled 163 MB in
//! 4 s. So the inotify watch is ours (not `notify`'s, which logs every event at trace level before
//! any filter can drop it), asks the kernel only for completed changes (`IN_CLOSE_WRITE`, renames,
//! creation, deletion, attributes — not `IN_MODIFY`, so an open file being appended to, like a log,
//! raises no event at all), and drops events for other names silently.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use tokio::signal::unix::{Signal as UnixSignal, SignalKind, signal};
use tokio::sync::mpsc;

use crate::config::{PatSource, Settings};

/// Quiet time after the last file event before reloading (an editor's save is a burst of events).
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// Poll period when inotify cannot be used.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// A signal the agent acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT (the name, for logs).
    Stop(&'static str),
    /// SIGHUP.
    Reload,
}

/// The three signal streams, installed once at start (before the first pass, so a SIGHUP then does
/// not kill the process with the default action).
#[derive(Debug)]
pub struct Signals {
    term: UnixSignal,
    int: UnixSignal,
    hup: UnixSignal,
}

impl Signals {
    /// Install the handlers.
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal.
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop("SIGTERM"),
            _ = self.int.recv() => Signal::Stop("SIGINT"),
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}

/// The files whose change means "reload": the config file and every PAT file a miner may read
/// (including a systemd credential, which only changes across restarts but costs nothing to watch).
pub fn watched_files(settings: &Settings) -> BTreeSet<PathBuf> {
    let mut files = BTreeSet::new();
    if let Some(f) = &settings.file {
        files.insert(absolute(f));
    }
    let creds = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    for m in &settings.miners {
        for s in &m.pat_sources {
            match s {
                PatSource::File(p) => {
                    files.insert(absolute(p));
                }
                PatSource::Credential(name) => {
                    if let Some(dir) = &creds {
                        files.insert(dir.join(name));
                    }
                }
                PatSource::Literal(_) | PatSource::Env => {}
            }
        }
    }
    files
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Watches the directories of a set of files and reports changes of those files.
pub struct FileWatch {
    files: BTreeSet<PathBuf>,
    backend: Backend,
    /// Changes read but not returned yet (one read of the inotify queue can bring several).
    pending: VecDeque<PathBuf>,
}

enum Backend {
    Inotify(Inotify),
    /// `notify`'s poller (no per-event logging), filtered to the watched files.
    Poll {
        /// Kept alive: dropping it stops watching.
        _watcher: notify::PollWatcher,
        rx: mpsc::UnboundedReceiver<PathBuf>,
    },
    /// Nothing can be watched: reload with SIGHUP only.
    Off,
}

impl std::fmt::Debug for FileWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWatch").field("files", &self.files).finish_non_exhaustive()
    }
}

impl FileWatch {
    /// Watch the directories of `files`. Never fails: problems are logged and reloading then
    /// depends on SIGHUP alone.
    pub fn new(files: BTreeSet<PathBuf>) -> FileWatch {
        let backend = match Inotify::new(&files) {
            Ok(i) => Backend::Inotify(i),
            Err(e) => {
                tracing::warn!(error = %e, "inotify unavailable; polling the config and PAT files every 2s");
                poll_backend(&files)
            }
        };
        FileWatch { files, backend, pending: VecDeque::new() }
    }

    /// The files being watched.
    pub fn files(&self) -> &BTreeSet<PathBuf> {
        &self.files
    }

    /// The next changed file. Pends forever when nothing can be watched. Cancel-safe (the main loop
    /// selects on it): events already read wait in `pending`.
    pub async fn changed(&mut self) -> PathBuf {
        loop {
            if let Some(p) = self.pending.pop_front() {
                return p;
            }
            let failed = match &mut self.backend {
                Backend::Inotify(i) => match i.read(&self.files, &mut self.pending).await {
                    Ok(()) => continue,
                    Err(e) => e,
                },
                Backend::Poll { rx, .. } => match rx.recv().await {
                    Some(p) => return p,
                    None => std::future::pending().await,
                },
                Backend::Off => std::future::pending().await,
            };
            tracing::warn!(error = %failed, "cannot read file change events; reload with SIGHUP (systemctl reload)");
            self.backend = Backend::Off;
        }
    }
}

fn dirs_of(files: &BTreeSet<PathBuf>) -> BTreeMap<PathBuf, BTreeSet<OsString>> {
    let mut dirs: BTreeMap<PathBuf, BTreeSet<OsString>> = BTreeMap::new();
    for f in files {
        if let (Some(dir), Some(name)) = (f.parent(), f.file_name()) {
            dirs.entry(dir.to_path_buf()).or_default().insert(name.to_os_string());
        }
    }
    dirs
}

/// What the directory watch asks the kernel for: a file written and closed, renamed in or out,
/// created, deleted, or its mode/owner changed (a PAT file's permissions are checked). Not
/// `IN_MODIFY`: every `write(2)` to any file in the directory (a log) would be an event.
const MASK: u32 = libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_ATTRIB
    | libc::IN_ONLYDIR;

/// `struct inotify_event` without its name: wd, mask, cookie, len.
const EVENT_HEADER: usize = 16;

/// An inotify instance watching directories, read through tokio.
struct Inotify {
    fd: AsyncFd<OwnedFd>,
    /// Watch descriptor → (directory, names of the watched files in it). Two paths of the same
    /// directory (through a symlink) share a descriptor.
    watches: BTreeMap<i32, Vec<(PathBuf, BTreeSet<OsString>)>>,
}

impl Inotify {
    fn new(files: &BTreeSet<PathBuf>) -> std::io::Result<Inotify> {
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: inotify_init1 takes flags only and returns a new descriptor or -1.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor we just opened and own exclusively.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut watches: BTreeMap<i32, Vec<(PathBuf, BTreeSet<OsString>)>> = BTreeMap::new();
        for (dir, names) in dirs_of(files) {
            let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
                tracing::warn!(dir = %dir.display(), "cannot watch a directory whose name has a NUL byte; reload with SIGHUP");
                continue;
            };
            // SAFETY: a valid descriptor and a NUL-terminated path that outlives the call.
            let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), MASK) };
            if wd < 0 {
                let e = std::io::Error::last_os_error();
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch directory; reload with SIGHUP");
                continue;
            }
            tracing::debug!(dir = %dir.display(), "watching for config/PAT changes");
            watches.entry(wd).or_default().push((dir, names));
        }
        // SAFETY: the OwnedFd is moved into the AsyncFd, which closes it only when dropped, so the
        // descriptor stays open and the same for the AsyncFd's whole life.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }?;
        Ok(Inotify { fd, watches })
    }

    /// Wait for the next batch of events and queue the watched files they name (possibly none).
    async fn read(&mut self, files: &BTreeSet<PathBuf>, out: &mut VecDeque<PathBuf>) -> std::io::Result<()> {
        // Room for many events; one needs at most EVENT_HEADER + NAME_MAX + 1 bytes.
        let mut buf = [0u8; 8192];
        let n = loop {
            let mut guard = self.fd.readable().await?;
            let res = guard.try_io(|fd| {
                // SAFETY: reading into a buffer we own, at most its length.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
            });
            match res {
                Ok(Ok(n)) => break n,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(e),
                // Readiness was stale: wait again.
                Err(_would_block) => continue,
            }
        };
        self.dispatch(buf.get(..n).unwrap_or_default(), files, out);
        Ok(())
    }

    /// Turn raw events into watched-file paths; everything else is dropped without a word.
    fn dispatch(&mut self, mut buf: &[u8], files: &BTreeSet<PathBuf>, out: &mut VecDeque<PathBuf>) {
        let push = |p: PathBuf, out: &mut VecDeque<PathBuf>| {
            if !out.contains(&p) {
                out.push_back(p);
            }
        };
        while let Some(header) = buf.get(..EVENT_HEADER) {
            let word = |at: usize| {
                header.get(at..at + 4).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(u32::from_ne_bytes).unwrap_or(0)
            };
            let (wd, mask, len) = (word(0) as i32, word(4), word(12) as usize);
            let name_bytes = buf.get(EVENT_HEADER..EVENT_HEADER + len).unwrap_or_default();
            buf = buf.get(EVENT_HEADER + len..).unwrap_or_default();
            if mask & libc::IN_Q_OVERFLOW != 0 {
                // Events were lost: one of ours may be among them; a reload costs little.
                if let Some(f) = files.first() {
                    push(f.clone(), out);
                }
                continue;
            }
            if mask & libc::IN_IGNORED != 0 {
                if let Some(gone) = self.watches.remove(&wd) {
                    for (dir, _) in gone {
                        tracing::warn!(dir = %dir.display(), "stopped watching a removed directory; reload with SIGHUP");
                    }
                }
                continue;
            }
            let name = name_bytes.split(|b| *b == 0).next().unwrap_or_default();
            let name = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name);
            for (dir, names) in self.watches.get(&wd).into_iter().flatten() {
                if names.contains(name) {
                    push(dir.join(name), out);
                }
            }
        }
    }
}

/// The fallback: `notify`'s poller on the directories, filtered to the watched files.
fn poll_backend(files: &BTreeSet<PathBuf>) -> Backend {
    use notify::Watcher as _;
    let (tx, rx) = mpsc::unbounded_channel();
    let wanted = files.clone();
    let handler = move |res: notify::Result<notify::Event>| match res {
        Ok(ev) => {
            if matches!(ev.kind, notify::EventKind::Access(_)) {
                return;
            }
            for p in ev.paths {
                if wanted.contains(&p) {
                    // The receiver is gone only while the agent shuts down.
                    let _ = tx.send(p);
                }
            }
        }
        Err(e) => tracing::debug!(error = %e, "file watcher error"),
    };
    let mut watcher =
        match notify::PollWatcher::new(handler, notify::Config::default().with_poll_interval(POLL_INTERVAL)) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch files; reload with SIGHUP (systemctl reload)");
                return Backend::Off;
            }
        };
    for d in dirs_of(files).into_keys() {
        match watcher.watch(&d, notify::RecursiveMode::NonRecursive) {
            Ok(()) => tracing::debug!(dir = %d.display(), "watching for config/PAT changes"),
            Err(e) => tracing::warn!(dir = %d.display(), error = %e, "cannot watch directory; reload with SIGHUP"),
        }
    }
    Backend::Poll { _watcher: watcher, rx }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_rename_over_a_watched_file_is_seen_and_neighbours_are_not() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("config.toml");
        std::fs::write(&target, "a").unwrap();
        let mut w = FileWatch::new([target.clone()].into());
        // a neighbour (the state file, say) changing is not a reload
        std::fs::write(d.path().join("state.json"), "x").unwrap();
        // an editor's save: write a temp file, rename it over the target
        let tmp = d.path().join(".config.toml.swp");
        std::fs::write(&tmp, "b").unwrap();
        std::fs::rename(&tmp, &target).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), w.changed()).await.expect("no event for the rename");
        assert_eq!(got, target);
    }
}
