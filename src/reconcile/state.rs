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
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::budget::Ledger;
use super::core::{Alert, History, Secs};
use crate::fsutil;
use crate::github::{PreflightOutcome, PreflightReport};
use crate::observe::{BroadcastOutcome, Category};

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
    /// What the last preflight said, and of which PAT: a valid verdict is reused for
    /// [`PREFLIGHT_REUSE`] instead of two more GitHub calls per repair, and every run exports it
    /// (the PAT's validity and expiry must reach the metrics of a timer's `reconcile` too).
    #[serde(default)]
    pub preflight: Option<PreflightRecord>,
    /// Lifetime counts behind the `*_total` metrics: kept here so that the counters of one-shot
    /// runs (`reconcile --metrics-file` from a timer) continue from run to run instead of
    /// restarting at 1, and an agent restart does not reset them either.
    #[serde(default)]
    pub totals: Totals,
    /// What the notifications have told the miner (and what is still to be delivered), so a
    /// `reconcile` from cron sends on transitions only and an agent restart does not announce
    /// everything again. Its schema is the `notify` module's (above this one in the layering),
    /// kept here as JSON; absent in state files written before notifications.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub notify: serde_json::Value,
    /// The alerts the last pass raised (`patrol status` shows them).
    #[serde(default)]
    pub alerts: Vec<Alert>,
}

/// The verdict of a preflight, without its reason text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum PreflightVerdict {
    Valid,
    Transient,
    Invalid,
}

impl PreflightVerdict {
    /// All verdicts (metric label values).
    pub const ALL: [PreflightVerdict; 3] =
        [PreflightVerdict::Valid, PreflightVerdict::Transient, PreflightVerdict::Invalid];

    /// The verdict of an outcome.
    pub fn of(outcome: &PreflightOutcome) -> PreflightVerdict {
        match outcome {
            PreflightOutcome::Valid { .. } => PreflightVerdict::Valid,
            PreflightOutcome::Transient { .. } => PreflightVerdict::Transient,
            PreflightOutcome::Invalid { .. } => PreflightVerdict::Invalid,
        }
    }

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The last preflight of a PAT (no secret: a fingerprint, a verdict and what GitHub's headers said).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreflightRecord {
    /// Fingerprint of the PAT it was about.
    pub fingerprint: String,
    pub at: Secs,
    pub verdict: PreflightVerdict,
    /// When GitHub says the PAT expires (unix seconds); kept from an earlier answer about the same
    /// PAT when a transient failure did not say.
    pub expiry: Option<i64>,
    /// GitHub's core rate limit left for the PAT.
    pub rate_remaining: Option<u64>,
}

/// Lifetime counts (see [`MinerState::totals`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Full passes (a `reconcile`, an agent round).
    pub passes: u64,
    /// Agent passes limited to validators whose own timer fired.
    pub rechecks: u64,
    pub checks: BTreeMap<Category, u64>,
    pub broadcasts: BTreeMap<BroadcastOutcome, u64>,
    pub probes: u64,
    /// Restarts and revivals the probes found.
    pub restarts: u64,
}

/// Which kind of pass is being counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassKind {
    /// Every due validator: `reconcile`, an agent round.
    Full,
    /// Only validators whose own timer fired (the agent's re-checks and probe sweeps).
    Recheck,
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
            preflight: None,
            totals: Totals::default(),
            notify: serde_json::Value::Null,
            alerts: Vec::new(),
        }
    }

    /// Is the PAT with `fingerprint` a rotation: another PAT than the last pass used? (A first PAT
    /// is not.) The one place a rotation is told: the agent's wake-up plan asks it before a pass
    /// (a rotated PAT gets a round that re-asserts it everywhere), the pass when it takes the PAT in.
    pub fn rotated(&self, fingerprint: &str) -> bool {
        self.fingerprint.as_deref().is_some_and(|last| last != fingerprint)
    }

    /// A pass uses the PAT with `fingerprint`: remember it (and the first PAT seen, for adoption).
    /// Returns whether it is a rotation ([`MinerState::rotated`]).
    pub fn use_pat(&mut self, fingerprint: &str) -> bool {
        if self.first_fingerprint.is_none() {
            self.first_fingerprint = Some(fingerprint.to_string());
        }
        let rotated = self.rotated(fingerprint);
        if self.fingerprint.as_deref() != Some(fingerprint) {
            self.fingerprint = Some(fingerprint.to_string());
        }
        rotated
    }

    /// Make the state agree with `now` (issue 20 item 3). A state written while the clock was
    /// ahead must not keep patrol quiet, nor the budget spent, until the clock catches up: times of
    /// past events later than `now` become `now`, schedules (next check, backoff window) move back
    /// by how far ahead the writer was and never lie more than `horizon` ahead (the longest delay
    /// patrol schedules), and the ledger drops entries from the future.
    pub fn settle(&mut self, now: Secs, horizon: Secs) {
        let ahead = self.updated_at.saturating_sub(now);
        let limit = now.saturating_add(horizon);
        let past = |t: &mut Secs| *t = (*t).min(now);
        let past_opt = |t: &mut Option<Secs>| {
            if let Some(t) = t {
                *t = (*t).min(now);
            }
        };
        let schedule = |t: &mut Secs| *t = t.saturating_sub(ahead).min(limit);
        past(&mut self.updated_at);
        past_opt(&mut self.last_pass_at);
        past_opt(&mut self.last_full_coverage_at);
        if let Some(r) = &mut self.preflight {
            past(&mut r.at);
        }
        self.github.settle(now);
        for h in self.validators.values_mut() {
            for t in [
                &mut h.checked_at,
                &mut h.last_broadcast_at,
                &mut h.uncovered_since,
                &mut h.unavailable_since,
                &mut h.left_at,
                &mut h.last_probe_at,
                &mut h.churning_since,
            ] {
                past_opt(t);
            }
            if let Some(s) = &mut h.silent {
                past(&mut s.since);
            }
            if let Some(t) = &mut h.terminal {
                past(&mut t.since);
            }
            h.losses.iter_mut().for_each(past);
            h.triggers.retain(|t| *t <= now);
            schedule(&mut h.next_check_at);
            schedule(&mut h.not_before);
        }
    }

    /// Take into the ledger what other patrol commands spent (read with
    /// [`StateFile::take_spent`]): counted now, so an entry is never trusted into the future.
    pub fn absorb_spent(&mut self, spent: &[(Secs, u32)], now: Secs) {
        let calls = spent
            .iter()
            .filter(|(t, _)| t.saturating_add(super::budget::WINDOW) > now)
            .fold(0u32, |a, (_, c)| a.saturating_add(*c));
        self.github.record(now, calls);
    }

    /// Remember what a preflight of the PAT with `fingerprint` said at `now`.
    pub fn remember_preflight(&mut self, fingerprint: &str, pf: &PreflightReport, now: Secs) {
        let verdict = PreflightVerdict::of(&pf.outcome);
        let said = pf.token_expiry.as_ref().and_then(|e| e.unix_seconds);
        // GitHub sends the expiry header with every answer about the token; a transient failure
        // (no answer) says nothing about it, so the last known expiry of the same PAT stays.
        let known = self.preflight.as_ref().filter(|r| r.fingerprint == fingerprint).and_then(|r| r.expiry);
        let expiry = if verdict == PreflightVerdict::Transient { said.or(known) } else { said };
        self.preflight = Some(PreflightRecord {
            fingerprint: fingerprint.to_string(),
            at: now,
            verdict,
            expiry,
            rate_remaining: pf.rate_limit.as_ref().and_then(|r| r.remaining),
        });
    }

    /// The last preflight, if it was about the PAT with `fingerprint`.
    pub fn preflight_of(&self, fingerprint: &str) -> Option<&PreflightRecord> {
        self.preflight.as_ref().filter(|r| r.fingerprint == fingerprint)
    }

    /// A preflight found the PAT with `fingerprint` valid less than [`PREFLIGHT_REUSE`] ago.
    pub fn preflight_still_valid(&self, fingerprint: &str, now: Secs) -> bool {
        self.preflight_of(fingerprint)
            .is_some_and(|r| r.verdict == PreflightVerdict::Valid && now.saturating_sub(r.at) < PREFLIGHT_REUSE)
    }

    /// Whether a telemetry preflight is due: none of this PAT yet, or the last one is
    /// [`PREFLIGHT_REFRESH`] old.
    pub fn preflight_due(&self, fingerprint: &str, now: Secs) -> bool {
        self.preflight_of(fingerprint).is_none_or(|r| now.saturating_sub(r.at) >= PREFLIGHT_REFRESH)
    }
}

/// Run a preflight of our own at most this often when no pass needed one, so the PAT's expiry and
/// validity stay visible in the metrics while every validator is covered (two GitHub calls an hour
/// on the miner's own quota, planned for in the budget).
pub const PREFLIGHT_REFRESH: Secs = 3600;

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
                .filter(|(t, _)| t.saturating_add(super::budget::WINDOW) > now)
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
const SPENT_CAP: u64 = 64 << 10;

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The metric label and the state file spell a verdict alike (strum and serde, both snake_case).
    #[test]
    fn verdict_names_are_the_serde_names() {
        for v in PreflightVerdict::ALL {
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
        }
        assert_eq!(PreflightVerdict::Transient.as_str(), "transient");
    }

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

    /// Issue 20 item 3: a state written with the clock a day ahead must not keep patrol quiet for a
    /// day once the clock is right.
    #[test]
    fn a_state_from_the_future_is_settled_to_now() {
        let now: Secs = 1_800_000_000;
        let ahead = now + 86_400;
        let mut s = MinerState::new("5Hk", 74);
        s.updated_at = ahead;
        s.last_pass_at = Some(ahead);
        s.github.record(ahead, 40);
        let mut h = History::new("vk");
        h.checked_at = Some(ahead);
        h.next_check_at = ahead + 900; // the routine interval after that check
        h.not_before = ahead + 120; // a backoff window
        h.failures = 1;
        h.losses = vec![ahead];
        s.validators.insert(3, h);
        s.settle(now, 86_400);
        let h = &s.validators[&3];
        assert_eq!((h.checked_at, s.last_pass_at, s.updated_at), (Some(now), Some(now), now));
        assert_eq!((h.next_check_at, h.not_before), (now + 900, now + 120), "schedules keep their delays");
        assert_eq!(h.losses, vec![now]);
        assert_eq!(s.github.spent(now), 0, "spending from the future is dropped");
        // a schedule beyond the horizon (tampered) is pulled in
        let mut s2 = MinerState::new("5Hk", 74);
        let mut h = History::new("vk");
        h.next_check_at = now + 10 * 86_400;
        s2.validators.insert(3, h);
        s2.settle(now, 86_400);
        assert_eq!(s2.validators[&3].next_check_at, now + 86_400);
    }

    /// Issue 20 item 13: other commands' spending reaches the ledger through `<state>.spent`.
    #[test]
    fn spending_noted_beside_a_locked_state_is_taken_once() {
        let d = tempfile::tempdir().unwrap();
        let f = StateFile::new(d.path(), "5Hk", 74);
        let _held = f.try_lock().unwrap(); // the agent owns the state; `check` appends anyway
        f.append_spent(10_000, 8).unwrap();
        f.append_spent(10_010, 4).unwrap();
        f.append_spent(10_020, 0).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(d.path().join("state-5Hk-74.json.spent"))
            .unwrap()
            .write_all(b"garbage\n1 2 3\n")
            .unwrap();
        assert_eq!(f.take_spent(), vec![(10_000, 8), (10_010, 4)]);
        assert_eq!(f.take_spent(), vec![], "taken once");
        let mut s = MinerState::new("5Hk", 74);
        s.absorb_spent(&[(10_000, 8), (5_000, 100), (10_010, 4)], 10_020);
        assert_eq!(s.github.spent(10_020), 12, "an entry older than the hour is not counted");
        // nobody takes it for a long time: it stays small
        for i in 0..5000 {
            f.append_spent(20_000 + i, 2).unwrap();
        }
        let size = std::fs::metadata(d.path().join("state-5Hk-74.json.spent")).unwrap().len();
        assert!(size <= SPENT_CAP, "{size}");
        let kept = f.take_spent();
        assert!(kept.first().is_some_and(|(t, _)| *t > 20_000), "the oldest were dropped: {:?}", kept.first());
        assert_eq!(kept.last(), Some(&(24_999, 2)));
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
