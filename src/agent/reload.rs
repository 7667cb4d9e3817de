//! What makes the agent stop or re-read its configuration: Unix signals (SIGTERM/SIGINT stop,
//! SIGHUP reloads) and changes of the config file or a PAT file.
//!
//! Files are watched through their **directories** (inotify via `notify`, or polling where inotify
//! is unavailable), because editors and `install`/`mv`-style rotations replace a file by renaming a
//! new one over it, which a watch on the old inode would never see. Only events naming one of the
//! watched files pass; the main loop debounces them ([`DEBOUNCE`]) so one save, which is often
//! several events, is one reload. The watcher only says *that* something changed: validating and
//! applying the new configuration is the main loop's job.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// Kept alive: dropping it stops watching.
    _watcher: Option<Box<dyn notify::Watcher + Send>>,
    rx: mpsc::UnboundedReceiver<PathBuf>,
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
        let watcher: Option<Box<dyn notify::Watcher + Send>> = match notify::recommended_watcher(handler.clone()) {
            Ok(w) => Some(Box::new(w)),
            Err(e) => {
                tracing::warn!(error = %e, "inotify unavailable; polling the config and PAT files every 2s");
                match notify::PollWatcher::new(handler, notify::Config::default().with_poll_interval(POLL_INTERVAL)) {
                    Ok(w) => Some(Box::new(w)),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot watch files; reload with SIGHUP (systemctl reload)");
                        None
                    }
                }
            }
        };
        let mut watch = FileWatch { files, _watcher: watcher, rx };
        watch.watch_dirs();
        watch
    }

    fn watch_dirs(&mut self) {
        let dirs: BTreeSet<PathBuf> = self.files.iter().filter_map(|f| f.parent().map(Path::to_path_buf)).collect();
        let Some(w) = self._watcher.as_mut() else { return };
        for d in dirs {
            match w.watch(&d, notify::RecursiveMode::NonRecursive) {
                Ok(()) => tracing::debug!(dir = %d.display(), "watching for config/PAT changes"),
                Err(e) => tracing::warn!(dir = %d.display(), error = %e, "cannot watch directory; reload with SIGHUP"),
            }
        }
    }

    /// The files being watched.
    pub fn files(&self) -> &BTreeSet<PathBuf> {
        &self.files
    }

    /// The next changed file. Pends forever when nothing can be watched.
    pub async fn changed(&mut self) -> PathBuf {
        match self.rx.recv().await {
            Some(p) => p,
            None => std::future::pending().await,
        }
    }
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
