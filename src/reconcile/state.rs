//! Per-miner reconciler state on disk: per-validator history, backoff, accepted fingerprints,
//! first-uncovered times. JSON, written atomically (temp + fsync + rename), mode 0600, no secrets
//! (only PAT fingerprints).
//!
//! A corrupt file, one with an unknown `version`, or one larger than [`STATE_CAP`], is moved aside
//! (`<name>.corrupt-<unix>`) with a warning and patrol starts fresh: losing history costs at most one
//! extra check round, crashing would cost coverage. What patrol cannot read at all — a FIFO, device
//! or directory at the state path, a file it has no permission to read, a symlink loop — is never
//! moved, replaced or deleted: taking the lock ([`StateFile::try_lock`], which every writer does
//! first) fails with an error naming it (exit 78), and a dry run (which only reads) starts from an
//! empty state with a warning. An exclusive advisory lock on `<name>.lock` keeps two patrol
//! processes (a cron `reconcile` while `patrol run` is up) from interleaving their writes.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::budget::Ledger;
use super::core::{History, Secs};
use crate::fsutil;
use crate::github::PreflightOutcome;

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
    /// `(fingerprint, when)` of the last preflight that said the PAT is valid: reused for
    /// [`PREFLIGHT_REUSE`] instead of two more GitHub calls per repair.
    #[serde(default)]
    pub preflight_valid: Option<(String, Secs)>,
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
            preflight_valid: None,
        }
    }

    /// Remember what a preflight of the PAT with `fingerprint` said at `now`: only a valid verdict
    /// is reused.
    pub fn remember_preflight(&mut self, fingerprint: &str, outcome: &PreflightOutcome, now: Secs) {
        self.preflight_valid =
            matches!(outcome, PreflightOutcome::Valid { .. }).then(|| (fingerprint.to_string(), now));
    }

    /// A preflight found the PAT with `fingerprint` valid less than [`PREFLIGHT_REUSE`] ago.
    pub fn preflight_still_valid(&self, fingerprint: &str, now: Secs) -> bool {
        self.preflight_valid
            .as_ref()
            .is_some_and(|(fp, at)| fp == fingerprint && now.saturating_sub(*at) < PREFLIGHT_REUSE)
    }
}

/// A preflight that found the PAT valid is trusted this long: a wave of restarts is repaired with
/// one preflight, not two GitHub calls per validator. A PAT revoked meanwhile is refused by the
/// validators' own check (terminal until the PAT changes); nothing else can go wrong.
pub const PREFLIGHT_REUSE: Secs = 600;

/// Largest state file patrol reads. One validator's history is well under 1 KiB of JSON, so a
/// subnet's 256 validators make ~100 KiB; 16 MiB is two orders of magnitude of headroom, and bounds
/// what a wrong file (`/dev/zero`, a disk image) can make patrol allocate.
pub const STATE_CAP: u64 = 16 << 20;

/// What to do about a state directory patrol can't use (in messages and `patrol doctor`).
pub const DIR_FIX: &str = "create it and make it writable by the user patrol runs as (systemd: StateDirectory=patrol), or set [agent] state_dir / --state-dir";

/// State I/O failures. Reading problems of a file patrol can still replace (corrupt, too large) are
/// handled by moving it aside and starting fresh; these are the ones it can't work around.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state dir {} is not a writable directory: {reason}; {DIR_FIX}", path.display())]
    Dir { path: PathBuf, reason: String },
    #[error(
        "state file {} is {kind}, not a regular file; patrol neither reads nor replaces it: move it away, or set [agent] state_dir / --state-dir", path.display()
    )]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error(
        "cannot read state file {}: {source}; patrol does not replace a state file it cannot read: fix its permissions or move it away", path.display()
    )]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write state file {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot lock state file {}: {source}", path.display())]
    Lock { path: PathBuf, source: std::io::Error },
    #[error("state file {} is locked by another patrol process (is `patrol run` using the same state dir?)", path.display())]
    Busy { path: PathBuf },
    /// Other users could swap the files at `path` (a state dir they can write, a link they planted):
    /// see [`fsutil::check_private_dir`], [`fsutil::Refused`].
    #[error("{reason}")]
    Unsafe { path: PathBuf, reason: String },
}

impl StateError {
    /// A problem of the operator's setup (the dir, the file at the state path) rather than of this
    /// run: exit 78, which a supervisor should not retry.
    pub fn is_config(&self) -> bool {
        match self {
            StateError::Dir { .. }
            | StateError::NotRegular { .. }
            | StateError::Read { .. }
            | StateError::Unsafe { .. } => true,
            StateError::Write { source, .. } => fsutil::refused(source).is_some(),
            StateError::Lock { .. } | StateError::Busy { .. } => false,
        }
    }
}

/// Make sure `dir` is a directory this process can create files in (creating it if missing): the
/// check `try_lock` and `patrol doctor` share. As root a mode without `w` does not stop writes, so
/// this probes by creating (and removing) a file rather than by looking at permissions.
pub fn check_dir(dir: &Path) -> Result<(), StateError> {
    ensure_dir(dir)?;
    fsutil::check_private_dir(dir).map_err(|reason| StateError::Unsafe {
        path: dir.to_path_buf(),
        reason: format!("state dir {}: {reason}", dir.display()),
    })?;
    let probe = dir.join(format!(".patrol-probe-{}-{}", std::process::id(), rand::random::<u32>()));
    let created = OpenOptions::new().write(true).create_new(true).open(&probe);
    match created {
        Ok(f) => {
            drop(f);
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(StateError::Dir { path: dir.to_path_buf(), reason: e.to_string() }),
    }
}

/// `create_dir_all(dir)`, with an error that says what is in the way.
fn ensure_dir(dir: &Path) -> Result<(), StateError> {
    let bad = |reason: String| StateError::Dir { path: dir.to_path_buf(), reason };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(m) => return Err(bad(format!("it is {}", fsutil::file_kind(&m)))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(bad(blocker(dir).unwrap_or_else(|| e.to_string()))),
    }
    std::fs::create_dir_all(dir).map_err(|e| bad(blocker(dir).unwrap_or_else(|| e.to_string())))
}

/// "X is a regular file" for the first ancestor of `dir` that exists and is not a directory
/// (`create_dir_all` only says "File exists" or "Not a directory").
fn blocker(dir: &Path) -> Option<String> {
    dir.ancestors().skip(1).find_map(|a| match std::fs::metadata(a) {
        Ok(m) if !m.is_dir() => Some(format!("{} is {}", a.display(), fsutil::file_kind(&m))),
        _ => None,
    })
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

    /// Take the exclusive lock without waiting; `Busy` if another process holds it. Also makes sure,
    /// before anything is sent, that this process will be able to save: the dir is writable
    /// ([`check_dir`]) and the state path is missing or a regular file it can read (else
    /// `NotRegular`/`Read`, and the file is left as it is).
    pub fn try_lock(&self) -> Result<StateLock, StateError> {
        let dir = fsutil::parent_dir(&self.path);
        check_dir(&dir)?;
        let lp = self.lock_path();
        let f = fsutil::open_lock(&lp).map_err(|source| match fsutil::refused(&source) {
            Some(r) => StateError::Unsafe { path: lp.clone(), reason: r.to_string() },
            None => StateError::Lock { path: lp.clone(), source },
        })?;
        match f.try_lock() {
            Ok(()) => {
                // Only the lock holder writes, so leftovers are from writers that died.
                for p in fsutil::remove_orphaned_temp_files(&self.path) {
                    tracing::info!(file = %p.display(), "removed a temp file left by a writer that died");
                }
                self.check_replaceable()?;
                Ok(StateLock { _file: f })
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(StateError::Busy { path: self.path.clone() }),
            Err(std::fs::TryLockError::Error(source)) => Err(StateError::Lock { path: lp, source }),
        }
    }

    /// Is the state path something a later save may replace? Missing (or a dangling link), or a
    /// regular file this process can open; anything else is an error naming it.
    fn check_replaceable(&self) -> Result<(), StateError> {
        if let Err(e) = fsutil::resolve_target(&self.path)
            && let Some(r @ fsutil::Refused::UntrustedLink { .. }) = fsutil::refused(&e)
        {
            return Err(StateError::Unsafe { path: self.path.clone(), reason: format!("state file: {r}") });
        }
        match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Read { path: self.path.clone(), source }),
            Ok(m) if !m.is_file() => {
                Err(StateError::NotRegular { path: self.path.clone(), kind: fsutil::file_kind(&m) })
            }
            Ok(_) => {
                File::open(&self.path).map(drop).map_err(|source| StateError::Read { path: self.path.clone(), source })
            }
        }
    }

    /// Load, or start fresh (missing, corrupt, too large, unknown version, other hotkey/netuid).
    /// Never fails: problems are logged and a bad file is moved aside. A file that cannot be read at
    /// all (not a regular file, no permission) is left where it is: writers have already refused it
    /// in [`try_lock`](Self::try_lock), so only a read-only (dry) run gets here with one.
    pub fn load(&self, hotkey: &str, netuid: u16) -> MinerState {
        let problem = match fsutil::read_capped(&self.path, STATE_CAP) {
            Ok(raw) => match parse(&raw, hotkey, netuid) {
                Ok(s) => return s,
                Err(problem) => problem,
            },
            Err(fsutil::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return MinerState::new(hotkey, netuid);
            }
            // A regular file patrol can rename: moved aside like a corrupt one.
            Err(e @ fsutil::ReadError::TooLarge { .. }) => e.to_string(),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read state file; starting fresh, leaving it as it is");
                return MinerState::new(hotkey, netuid);
            }
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
        ensure_dir(&fsutil::parent_dir(&self.path))?;
        let mut bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| StateError::Write { path: self.path.clone(), source: e.into() })?;
        bytes.push(b'\n');
        fsutil::atomic_write(&self.path, &bytes, 0o600)
            .map_err(|source| StateError::Write { path: self.path.clone(), source })
    }
}

/// Validators' reasons as patrol keeps them ([`crate::secret::foreign_text`]): a state written
/// before they were cleaned where they enter patrol may hold a quoted PAT or terminal escapes,
/// and the agent logs a stored reason.
fn clean_validator_texts(mut s: MinerState) -> MinerState {
    for h in s.validators.values_mut() {
        h.reason = h.reason.take().map(|r| crate::secret::foreign_text(&r));
        if let Some(t) = h.terminal.as_mut() {
            t.reason = crate::secret::foreign_text(&t.reason);
        }
    }
    s
}

/// The state in `raw`, or what is wrong with it. Another miner's (or netuid's) state is not wrong,
/// just not ours: a fresh state.
fn parse(raw: &[u8], hotkey: &str, netuid: u16) -> Result<MinerState, String> {
    match serde_json::from_slice::<serde_json::Value>(raw) {
        Err(e) => Err(format!("not JSON ({e})")),
        Ok(v) => match v.get("version").and_then(serde_json::Value::as_u64) {
            Some(x) if x == u64::from(VERSION) => match serde_json::from_value::<MinerState>(v) {
                Ok(s) if s.hotkey == hotkey && s.netuid == netuid => Ok(clean_validator_texts(s)),
                Ok(_) => Ok(MinerState::new(hotkey, netuid)),
                Err(e) => Err(format!("unexpected structure ({e})")),
            },
            Some(x) => Err(format!("unknown version {x} (this patrol writes {VERSION})")),
            None => Err("no version field".to_string()),
        },
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
