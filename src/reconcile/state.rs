//! Per-miner reconciler state on disk: per-validator history, backoff, accepted fingerprints,
//! first-uncovered times. JSON, written atomically (temp + fsync + rename), mode 0600, no secrets
//! (only PAT fingerprints).
//!
//! A corrupt file, or one with an unknown `version`, is moved aside (`<name>.corrupt-<unix>`) with a
//! warning and patrol starts fresh: losing history costs at most one extra check round, crashing
//! would cost coverage. An exclusive advisory lock on `<name>.lock` keeps two patrol processes (a
//! cron `reconcile` while `patrol run` is up) from interleaving their writes.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::budget::Ledger;
use super::core::{History, Secs};
use crate::fsutil;

/// Current state-file format.
pub const VERSION: u32 = 1;

/// Everything patrol remembers about one miner on one netuid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinerState {
    pub version: u32,
    pub hotkey: String,
    pub netuid: u16,
    /// Fingerprint of the first PAT patrol saw for this miner (adoption, see `core::Desired`).
    pub first_fingerprint: Option<String>,
    /// Fingerprint of the PAT used in the last pass.
    pub fingerprint: Option<String>,
    pub validators: BTreeMap<u16, History>,
    pub last_pass_at: Option<Secs>,
    pub last_full_coverage_at: Option<Secs>,
    pub updated_at: Secs,
    /// Estimated GitHub calls on the PAT, last hour (shared by `reconcile` and `run`).
    #[serde(default)]
    pub github: Ledger,
}

impl MinerState {
    /// Empty state.
    pub fn new(hotkey: &str, netuid: u16) -> MinerState {
        MinerState {
            version: VERSION,
            hotkey: hotkey.to_string(),
            netuid,
            first_fingerprint: None,
            fingerprint: None,
            validators: BTreeMap::new(),
            last_pass_at: None,
            last_full_coverage_at: None,
            updated_at: 0,
            github: Ledger::default(),
        }
    }
}

/// State I/O failures (reading problems are handled by starting fresh; these are write-side).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create state directory {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot write state file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot lock state file {path}: {source}")]
    Lock { path: PathBuf, source: std::io::Error },
    #[error("state file {path} is locked by another patrol process (is `patrol run` using the same state dir?)")]
    Busy { path: PathBuf },
}

/// The state file of one miner in a state directory.
#[derive(Debug, Clone)]
pub struct StateFile {
    pub path: PathBuf,
}

/// Holds the advisory lock until dropped.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateFile {
    /// `<dir>/state-<hotkey>-<netuid>.json`.
    pub fn new(dir: &Path, hotkey: &str, netuid: u16) -> StateFile {
        StateFile { path: dir.join(format!("state-{hotkey}-{netuid}.json")) }
    }

    fn lock_path(&self) -> PathBuf {
        let mut p = self.path.as_os_str().to_owned();
        p.push(".lock");
        PathBuf::from(p)
    }

    /// Take the exclusive lock without waiting; `Busy` if another process holds it.
    pub fn try_lock(&self) -> Result<StateLock, StateError> {
        let dir = fsutil::parent_dir(&self.path);
        std::fs::create_dir_all(&dir).map_err(|source| StateError::CreateDir { path: dir, source })?;
        let lp = self.lock_path();
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lp)
            .map_err(|source| StateError::Lock { path: lp.clone(), source })?;
        match f.try_lock() {
            Ok(()) => {
                // Only the lock holder writes, so leftovers are from writers that died.
                for p in fsutil::remove_orphaned_temp_files(&self.path) {
                    tracing::info!(file = %p.display(), "removed a temp file left by a writer that died");
                }
                Ok(StateLock { _file: f })
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(StateError::Busy { path: self.path.clone() }),
            Err(std::fs::TryLockError::Error(source)) => Err(StateError::Lock { path: lp, source }),
        }
    }

    /// Load, or start fresh (missing, corrupt, unknown version, other hotkey/netuid). Never fails:
    /// problems are logged and the bad file is moved aside.
    pub fn load(&self, hotkey: &str, netuid: u16) -> MinerState {
        let raw = match std::fs::read(&self.path) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return MinerState::new(hotkey, netuid),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read state file; starting fresh");
                return MinerState::new(hotkey, netuid);
            }
        };
        let problem = match serde_json::from_slice::<serde_json::Value>(&raw) {
            Err(e) => format!("not JSON ({e})"),
            Ok(v) => match v.get("version").and_then(serde_json::Value::as_u64) {
                Some(x) if x == u64::from(VERSION) => match serde_json::from_value::<MinerState>(v) {
                    Ok(s) if s.hotkey == hotkey && s.netuid == netuid => return s,
                    Ok(_) => return MinerState::new(hotkey, netuid),
                    Err(e) => format!("unexpected structure ({e})"),
                },
                Some(x) => format!("unknown version {x} (this patrol writes {VERSION})"),
                None => "no version field".to_string(),
            },
        };
        match fsutil::move_aside(&self.path, "corrupt") {
            Ok(to) => {
                tracing::warn!(path = %self.path.display(), moved_to = %to.display(), "state file {problem}; moved aside, starting fresh")
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "state file {problem}; could not move it aside, starting fresh")
            }
        }
        MinerState::new(hotkey, netuid)
    }

    /// [`save`](Self::save) for [`super::pass::Io::checkpoint`]: the pass goes on (the PAT may still
    /// be sent) and saves again at its end, so a failure here is logged, not returned.
    pub fn checkpoint(&self, state: &MinerState) {
        if let Err(e) = self.save(state) {
            tracing::error!(error = %e, "cannot save the state before broadcasting");
        }
    }

    /// Write atomically (0600).
    pub fn save(&self, state: &MinerState) -> Result<(), StateError> {
        let dir = fsutil::parent_dir(&self.path);
        std::fs::create_dir_all(&dir).map_err(|source| StateError::CreateDir { path: dir, source })?;
        let mut bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| StateError::Write { path: self.path.clone(), source: e.into() })?;
        bytes.push(b'\n');
        fsutil::atomic_write(&self.path, &bytes, 0o600)
            .map_err(|source| StateError::Write { path: self.path.clone(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_fresh_on_mismatch() {
        let d = tempfile::tempdir().unwrap();
        let f = StateFile::new(d.path(), "5Hk", 74);
        assert_eq!(f.load("5Hk", 74), MinerState::new("5Hk", 74));
        let mut s = MinerState::new("5Hk", 74);
        s.first_fingerprint = Some("abc".into());
        s.validators.insert(3, History::new("vk"));
        f.save(&s).unwrap();
        assert_eq!(f.load("5Hk", 74), s);
        assert_eq!(f.load("5Other", 74), MinerState::new("5Other", 74));
    }

    #[test]
    fn corrupt_and_unknown_version_are_moved_aside() {
        let d = tempfile::tempdir().unwrap();
        let f = StateFile::new(d.path(), "5Hk", 74);
        for bad in [&b"{not json"[..], br#"{"version": 99}"#, br#"{"version": 1, "hotkey": 3}"#, b"[]"] {
            std::fs::write(&f.path, bad).unwrap();
            assert_eq!(f.load("5Hk", 74), MinerState::new("5Hk", 74));
            assert!(!f.path.exists(), "bad file must be moved aside");
            let moved: Vec<_> = std::fs::read_dir(d.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
                .collect();
            assert!(!moved.is_empty());
            for m in moved {
                assert_eq!(std::fs::read(m.path()).unwrap(), bad);
                std::fs::remove_file(m.path()).unwrap();
            }
        }
    }

    #[test]
    fn lock_is_exclusive() {
        let d = tempfile::tempdir().unwrap();
        let f = StateFile::new(d.path(), "5Hk", 74);
        let l = f.try_lock().unwrap();
        assert!(matches!(f.try_lock(), Err(StateError::Busy { .. })));
        drop(l);
        f.try_lock().unwrap();
    }
}
