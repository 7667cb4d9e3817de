//! The state file of one miner: where it is, its advisory lock, atomic saves, loading (moving a
//! corrupt file aside), and the short locked `.spent` log other patrol commands append to.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use super::{MinerState, VERSION};
use crate::fsutil;
use crate::reconcile::core::Secs;

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
        "cannot read state file {} (patrol does not replace a state file it cannot read: fix its permissions or move it away)", path.display()
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write state file {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock state file {}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
/// check `try_lock` and `patrol doctor` share ([`fsutil::probe_create`]).
pub fn check_dir(dir: &Path) -> Result<(), StateError> {
    ensure_dir(dir)?;
    fsutil::check_private_dir(dir).map_err(|reason| StateError::Unsafe {
        path: dir.to_path_buf(),
        reason: format!("state dir {}: {reason}", dir.display()),
    })?;
    fsutil::probe_create(dir).map_err(|e| StateError::Dir { path: dir.to_path_buf(), reason: e.to_string() })
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

    /// The state file of `hotkey` under the settings' state dir and netuid.
    pub fn of(settings: &crate::config::Settings, hotkey: &str) -> StateFile {
        StateFile::new(&settings.agent.state_dir, hotkey, settings.chain.netuid)
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

    fn spent_path(&self) -> PathBuf {
        let mut p = self.path.as_os_str().to_owned();
        p.push(".spent");
        PathBuf::from(p)
    }

    /// Note `calls` GitHub calls a patrol process that does not own the state (`check`, `post`
    /// beside a running agent, `reconcile --dry-run`) caused at `now`: one line appended to
    /// `<state>.spent` under its own short lock, so it works while the agent holds the state. The
    /// owner takes the lines into its ledger at its next pass ([`StateFile::take_spent`]).
    pub fn append_spent(&self, now: Secs, calls: u32) -> std::io::Result<()> {
        if calls == 0 {
            return Ok(());
        }
        let path = self.spent_path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&path)?;
        lock_briefly(&f)?;
        // Nobody took it for long (no agent, no reconcile): keep the file small, only the last hour.
        if f.metadata()?.len() > SPENT_CAP / 2 {
            let recent: String = parse_spent(&read_spent(&mut f)?)
                .into_iter()
                .filter(|(t, _)| t.saturating_add(crate::reconcile::budget::WINDOW) > now)
                .map(|(t, c)| format!("{t} {c}\n"))
                .collect();
            f.set_len(0)?;
            f.write_all(recent.as_bytes())?;
        }
        f.write_all(format!("{now} {calls}\n").as_bytes())
    }

    /// The spending other processes noted (see [`append_spent`](Self::append_spent)), emptied.
    /// Best effort: what cannot be read is logged and left.
    pub fn take_spent(&self) -> Vec<(Secs, u32)> {
        let path = self.spent_path();
        let taken = (|| -> std::io::Result<Vec<(Secs, u32)>> {
            let mut f = match OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOFOLLOW).open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            lock_briefly(&f)?;
            let lines = parse_spent(&read_spent(&mut f)?);
            f.set_len(0)?;
            Ok(lines)
        })();
        taken.unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the GitHub spending of other patrol commands");
            Vec::new()
        })
    }

    /// Read without changing anything (`patrol status`, while the agent may own the file): `None`
    /// when there is no file, else the state or what is wrong with the file (left where it is: the
    /// next writer moves a corrupt one aside). Another miner's or netuid's state reads as `None`.
    pub fn peek(&self, hotkey: &str, netuid: u16) -> Result<Option<MinerState>, String> {
        match fsutil::read_capped(&self.path, STATE_CAP) {
            Ok(raw) => match parse(&raw, hotkey, netuid) {
                Ok(s) if s.hotkey == hotkey && s.netuid == netuid => Ok(Some(s)),
                Ok(_) => Ok(None),
                Err(problem) => Err(format!("state file {} is {problem}", self.path.display())),
            },
            Err(fsutil::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read state file {}: {e}", self.path.display())),
        }
    }

    /// [`save`](Self::save) for [`super::pass::Io::checkpoint`]: the pass goes on (the PAT may still
    /// be sent) and saves again at its end, so a failure here is logged, not returned.
    pub fn checkpoint(&self, state: &MinerState) {
        if let Err(e) = self.save(state) {
            tracing::error!(error = %crate::secret::error_chain(&e), "cannot save the state before broadcasting");
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

/// Largest `.spent` file read (a line is ~16 bytes: thousands of `check` runs).
pub(super) const SPENT_CAP: u64 = 64 << 10;

/// Take the advisory lock of a `.spent` file, waiting at most a second (its holders only append
/// or read a few KiB).
fn lock_briefly(f: &File) -> std::io::Result<()> {
    for _ in 0..100 {
        match f.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::WouldBlock, "locked by another patrol process for over a second"))
}

fn read_spent(f: &mut File) -> std::io::Result<String> {
    use std::io::{Read, Seek};
    f.seek(std::io::SeekFrom::Start(0))?;
    let mut text = String::new();
    Read::by_ref(f).take(SPENT_CAP).read_to_string(&mut text)?;
    Ok(text)
}

/// `<unix> <calls>` lines; anything else is skipped.
fn parse_spent(text: &str) -> Vec<(Secs, u32)> {
    text.lines()
        .filter_map(|l| {
            let (t, c) = l.trim().split_once(' ')?;
            Some((t.parse().ok()?, c.parse().ok()?))
        })
        .collect()
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
