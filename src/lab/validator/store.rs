//! The PAT store: gittensor's `miner_pats.json`, read and written in its exact format so a real
//! validator's file can be used as is (docs §2.4).
//!
//! Format: a JSON list of `{uid, hotkey, pat, github_id, stored_at}` objects, written like Python's
//! `json.dump(entries, f, indent=2)` (ASCII-escaped, `": "` separators, no trailing newline).
//!
//! # Guarantees
//! - **Fail closed.** [`PatStore::save`] reads the whole file first; an unreadable, corrupt or
//!   structurally wrong file (valid JSON that is not a list of objects) raises before any write, so
//!   one bad read can never wipe every other miner's entry. Entries this module does not understand
//!   (extra keys, odd types) are carried over unchanged.
//! - **Atomic and durable.** A write goes to a temp file in the same directory (mode 0600), which is
//!   fsynced, renamed over the store, and the directory fsynced ([`fsutil::atomic_write`]). A crash
//!   at any point leaves the old file or the new one, never a mix.
//! - **One writer.** A process-wide mutex and a cross-process `flock` on `<store>.lock` cover each
//!   read-modify-write, so two processes writing at once lose nothing. (gittensor's own Python
//!   process does not take that lock; sharing a file with it live is not supported.) Concurrent
//!   saves in one process are group-committed: one read, every queued upsert in arrival order, one
//!   atomic write.
//! - **Loud tolerant snapshot.** [`PatStore::snapshot`] never fails: on any problem it logs an
//!   error saying why and returns no entries, as upstream's `load_all_pats` does.
//! - **Bounded reads.** Only a regular file of at most [`STORE_READ_CAP`] bytes is read; anything
//!   else (`/dev/zero`, a FIFO, a directory, a runaway file) is a read error — so the store is
//!   unavailable, and never overwritten. A lookup ([`PatStore::get_by_uid`]) never holds the file:
//!   a large one is streamed through a small buffer, and concurrent lookups share one pass over it
//!   (one scan at a time, each answering every lookup queued when it started), so a check costs a
//!   bounded amount of memory whatever the file's size and however many checks run at once.
//! - The PATs in the file are never logged, and never appear in an error or a `Debug` output.
//!
//! Everything here is blocking file I/O: async callers use the `*_async` wrappers, which run it on
//! tokio's blocking pool.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use serde_json::{Map, Value};

pub use self::pyformat::python_isoformat_now;
use crate::fsutil;
use crate::secret::redact;

mod error;
mod pyformat;

pub use error::StoreError;

/// File mode of the store, its temp files and its lock file: it holds secrets.
const STORE_MODE: u32 = 0o600;

/// The largest store read: a real one (256 miners) is about 100 KB, so this leaves room for any
/// legitimate file while refusing a device or a runaway file.
pub const STORE_READ_CAP: u64 = 256 * 1024 * 1024;

/// Files up to this size are read whole for a lookup (parsing a slice is faster); larger ones are
/// streamed through a buffer of [`STREAM_BUFFER`] bytes.
const READ_WHOLE_UP_TO: u64 = 1024 * 1024;

/// The read buffer of a streamed lookup.
const STREAM_BUFFER: usize = 64 * 1024;

/// A token exactly as a miner sent it and the store holds it: untrimmed, possibly empty (upstream
/// strips nothing, PR #1393). `Debug` shows `***` + last 4 only.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RawPat(String);

impl RawPat {
    /// Wrap a token as received.
    pub fn new(token: impl Into<String>) -> RawPat {
        RawPat(token.into())
    }

    /// The token itself: only for the GitHub calls and the store file.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `***` + last 4 characters.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }

    /// Python's `not pat`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for RawPat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawPat({})", self.redacted())
    }
}

/// A typed view of one store entry. Keys upstream reads with `.get()` are optional here too.
#[derive(Debug, Clone, PartialEq)]
pub struct PatEntry {
    pub uid: u16,
    pub hotkey: Option<String>,
    pub pat: RawPat,
    pub github_id: Option<String>,
    pub stored_at: Option<String>,
}

impl PatEntry {
    /// Read an entry; `None` when it has no integer `uid` in range (upstream never matches those).
    fn from_object(o: &Map<String, Value>) -> Option<PatEntry> {
        let uid = uid_of(o)?;
        let text = |k: &str| match o.get(k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        Some(PatEntry {
            uid,
            hotkey: text("hotkey"),
            pat: RawPat(o.get("pat").and_then(Value::as_str).unwrap_or_default().to_string()),
            github_id: text("github_id"),
            stored_at: text("stored_at"),
        })
    }
}

/// Python's `entry.get('uid') == uid` for a u16 uid: an integer, or a float with that value.
fn uid_of(o: &Map<String, Value>) -> Option<u16> {
    uid_value(o.get("uid")?)
}

/// [`uid_of`] on the value of a `uid` key.
fn uid_value(v: &Value) -> Option<u16> {
    let n = v.as_number()?;
    if let Some(u) = n.as_u64() {
        return u16::try_from(u).ok();
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0 && (0.0..=f64::from(u16::MAX)).contains(&f)).then_some(f as u16)
}

/// What a conditional save decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveOutcome {
    /// The entry was written.
    Saved,
    /// The guard refused; nothing was written.
    Refused,
}

/// A round's snapshot: entries by uid (the last entry of a uid wins, as upstream's dict does), and
/// why it is empty when the file could not be read.
#[derive(Debug, Clone, Default)]
pub struct StoreSnapshot {
    pub entries: BTreeMap<u16, PatEntry>,
    /// Set when the read failed and `entries` is empty for that reason.
    pub problem: Option<String>,
}

/// A guard deciding, under the write lock, whether an upsert may happen.
pub type SaveGuard = Box<dyn FnOnce(Option<&PatEntry>) -> bool + Send>;

/// One queued upsert.
struct Upsert {
    uid: u16,
    hotkey: String,
    pat: RawPat,
    github_id: String,
    guard: SaveGuard,
}

/// A queued upsert and where its outcome goes.
type SaveJob = (Upsert, mpsc::Sender<Result<SaveOutcome, StoreError>>);

/// A queued lookup and where its answer goes.
type ReadJob = (u16, mpsc::Sender<Result<Option<PatEntry>, StoreError>>);

/// The store file and its locks. Share it as `Arc<PatStore>`.
///
/// Concurrent saves are group-committed: whoever holds the writer mutex applies every queued
/// upsert, in arrival order, to one read of the file and writes it once (one fsync pair for the
/// batch), then hands each caller its own outcome. Each guard sees the entries as the upserts
/// before it in the batch left them, exactly as if the saves had run one after another.
pub struct PatStore {
    path: PathBuf,
    lock_path: PathBuf,
    writer: Mutex<()>,
    queue: Mutex<Vec<SaveJob>>,
    /// One lookup scan at a time; the lookups queued meanwhile share the next one.
    reader: Mutex<()>,
    read_queue: Mutex<Vec<ReadJob>>,
    /// The async wrappers run on the caller's thread instead of the blocking pool.
    inline: bool,
}

impl fmt::Debug for PatStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatStore").field("path", &self.path).finish()
    }
}

impl PatStore {
    /// A store at `path`. Touches nothing on disk until used.
    pub fn new(path: impl Into<PathBuf>) -> PatStore {
        let path = path.into();
        let mut lock = path.as_os_str().to_owned();
        lock.push(".lock");
        PatStore {
            path,
            lock_path: PathBuf::from(lock),
            writer: Mutex::new(()),
            queue: Mutex::new(Vec::new()),
            reader: Mutex::new(()),
            read_queue: Mutex::new(Vec::new()),
            inline: false,
        }
    }

    /// Make the `*_async` wrappers do their file I/O on the calling thread. For a single-threaded
    /// driver (the simulation, on a current-thread runtime) there is nothing else to keep
    /// responsive, and each hop to the blocking pool costs two thread wake-ups: on a VM that was
    /// two thirds of a 256-validator simulation's time. Never for a server.
    pub fn run_inline(mut self) -> PatStore {
        self.inline = true;
        self
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Upstream's `ensure_pats_file`: create `[]` when the file is missing; leave any existing file
    /// alone (even a corrupt one: fail closed). Also removes temp files left by writers that died
    /// mid-write. Returns whether the file was created.
    pub fn ensure_file(&self) -> Result<bool, StoreError> {
        self.locked(|| {
            self.remove_orphaned_temp_files();
            match fs::symlink_metadata(&self.path) {
                Ok(_) => Ok(false),
                Err(e) if e.kind() == io::ErrorKind::NotFound => self.write_values(&[]).map(|()| true),
                Err(source) => Err(StoreError::Read { path: self.path.clone(), source: source.into() }),
            }
        })
    }

    /// Every entry, strictly: a missing file is empty; anything unreadable is an error.
    pub fn read_all(&self) -> Result<Vec<PatEntry>, StoreError> {
        Ok(self.read_values()?.iter().filter_map(Value::as_object).filter_map(PatEntry::from_object).collect())
    }

    /// Upstream's `get_pat_by_uid`: the first entry with this uid. Read errors propagate, so callers
    /// never mistake an outage for "no PAT".
    ///
    /// Concurrent calls are batched: whoever holds the reader lock scans the file once for every
    /// lookup queued so far (each scan starts after its lookups were queued, so a save that
    /// returned before the call is seen), and a large file is streamed, never held.
    pub fn get_by_uid(&self, uid: u16) -> Result<Option<PatEntry>, StoreError> {
        let (done, answer) = mpsc::channel();
        self.read_queue.lock().unwrap_or_else(|p| p.into_inner()).push((uid, done));
        let _reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        // The previous scan may have answered us with its batch.
        if let Ok(result) = answer.try_recv() {
            return result;
        }
        let batch = std::mem::take(&mut *self.read_queue.lock().unwrap_or_else(|p| p.into_inner()));
        self.lookup_batch(batch, READ_WHOLE_UP_TO);
        answer.recv().unwrap_or_else(|_| Err(StoreError::Task("the store reader dropped a lookup".into())))
    }

    /// [`get_by_uid`](Self::get_by_uid) through the streaming path whatever the file's size.
    #[cfg(test)]
    fn get_by_uid_streamed(&self, uid: u16) -> Result<Option<PatEntry>, StoreError> {
        let (done, answer) = mpsc::channel();
        self.lookup_batch(vec![(uid, done)], 0);
        answer.recv().unwrap_or_else(|_| Err(StoreError::Task("the store reader dropped a lookup".into())))
    }

    /// Check that the file is a readable store (a list of objects) without building it in memory.
    pub fn validate(&self) -> Result<(), StoreError> {
        self.scan(&[], READ_WHOLE_UP_TO).map(drop)
    }

    /// Answer every lookup of `batch` from one scan of the file.
    fn lookup_batch(&self, batch: Vec<ReadJob>, read_whole_up_to: u64) {
        let mut uids: Vec<u16> = batch.iter().map(|(uid, _)| *uid).collect();
        uids.sort_unstable();
        uids.dedup();
        let result = self.scan(&uids, read_whole_up_to).and_then(|found| {
            // an odd object (its uid repeated, matching only at the end): the full read decides
            if found.iter().any(|f| matches!(f, lookup::Found::Unsure)) {
                let all = self.read_all()?;
                return Ok(uids.iter().map(|u| all.iter().find(|e| e.uid == *u).cloned()).collect());
            }
            Ok(found
                .into_iter()
                .map(|f| match f {
                    lookup::Found::Entry(e) => e,
                    lookup::Found::Unsure => None,
                })
                .collect::<Vec<_>>())
        });
        for (uid, done) in batch {
            let answer = match &result {
                Ok(entries) => Ok(uids.binary_search(&uid).ok().and_then(|i| entries[i].clone())),
                Err(e) => Err(e.duplicate()),
            };
            let _ = done.send(answer);
        }
    }

    /// One pass over the file for `uids` (sorted, unique): what [`lookup::find_many`] found, with
    /// the full read's errors. A missing file has no entries.
    fn scan(&self, uids: &[u16], read_whole_up_to: u64) -> Result<Vec<lookup::Found>, StoreError> {
        let none = || Ok(vec![lookup::Found::Entry(None); uids.len()]);
        let file = match fsutil::open_capped(&self.path, STORE_READ_CAP) {
            Ok(f) => f,
            Err(fsutil::ReadError::Io(e)) if e.kind() == io::ErrorKind::NotFound => return none(),
            Err(source) => return Err(StoreError::Read { path: self.path.clone(), source }),
        };
        let read_err = |e: io::Error| StoreError::Read { path: self.path.clone(), source: e.into() };
        let len = file.metadata().map_err(read_err)?.len();
        let found = if len <= read_whole_up_to {
            let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            let mut capped = fsutil::CappedReader::new(file, STORE_READ_CAP);
            io::Read::read_to_end(&mut capped, &mut bytes).map_err(read_err)?;
            lookup::find_many(serde_json::Deserializer::from_slice(&bytes), uids)
        } else {
            let reader = io::BufReader::with_capacity(STREAM_BUFFER, fsutil::CappedReader::new(file, STORE_READ_CAP));
            lookup::find_many(serde_json::Deserializer::from_reader(reader), uids)
        };
        match found {
            Err(e) if e.is_io() => Err(read_err(io::Error::from(e))),
            Err(e) => Err(StoreError::Corrupt { path: self.path.clone(), detail: e.to_string() }),
            Ok(Err(shape)) => Err(self.shape_error(shape)),
            Ok(Ok(found)) => Ok(found),
        }
    }

    /// Upstream's `load_all_pats`: tolerant. Logs loudly and returns nothing when the file cannot
    /// be read, so a bad file costs one round instead of crashing it.
    pub fn snapshot(&self) -> StoreSnapshot {
        match self.read_all() {
            Ok(entries) => StoreSnapshot { entries: entries.into_iter().map(|e| (e.uid, e)).collect(), problem: None },
            Err(e) => {
                let why = crate::secret::error_chain(&e);
                tracing::error!(
                    store = %self.path.display(),
                    error = %why,
                    "miner_pats.json unreadable this round; scoring with no stored PATs until it recovers"
                );
                StoreSnapshot { entries: BTreeMap::new(), problem: Some(why) }
            }
        }
    }

    /// Upstream's `save_pat`: fail-closed upsert by uid (a new hotkey on a uid replaces the stale
    /// entry). `stored_at` is now, in Python's `isoformat()`.
    pub fn save(&self, uid: u16, hotkey: &str, pat: &RawPat, github_id: &str) -> Result<(), StoreError> {
        self.save_if(uid, hotkey, pat, github_id, |_| true).map(|_| ())
    }

    /// [`save`](Self::save), but only if `guard(existing entry for uid)` allows it, decided under
    /// the write lock: the identity-pin recheck and the save are one critical section.
    pub fn save_if(
        &self,
        uid: u16,
        hotkey: &str,
        pat: &RawPat,
        github_id: &str,
        guard: impl FnOnce(Option<&PatEntry>) -> bool + Send + 'static,
    ) -> Result<SaveOutcome, StoreError> {
        let (done, outcome) = mpsc::channel();
        let upsert = Upsert {
            uid,
            hotkey: hotkey.to_string(),
            pat: pat.clone(),
            github_id: github_id.to_string(),
            guard: Box::new(guard),
        };
        let job: SaveJob = (upsert, done);
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).push(job);
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        // The previous writer may have committed our job with its batch.
        if let Ok(result) = outcome.try_recv() {
            return result;
        }
        let batch = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
        self.commit(batch);
        outcome.recv().unwrap_or_else(|_| Err(StoreError::Task("the store writer dropped a save".into())))
    }

    /// Apply `batch` to one read of the file and write it once; tell every job its outcome.
    fn commit(&self, batch: Vec<SaveJob>) {
        let (upserts, senders): (Vec<Upsert>, Vec<_>) = batch.into_iter().unzip();
        let result = self.with_flock(move || {
            let mut values = self.read_values()?;
            let outcomes: Vec<SaveOutcome> = upserts.into_iter().map(|u| apply(&mut values, u)).collect();
            self.write_values(&values)?;
            Ok(outcomes)
        });
        match result {
            Ok(outcomes) => {
                for (done, outcome) in senders.into_iter().zip(outcomes) {
                    let _ = done.send(Ok(outcome));
                }
            }
            Err(e) => {
                for done in senders {
                    let _ = done.send(Err(e.duplicate()));
                }
            }
        }
    }

    /// Run `f` holding the in-process writer mutex and the cross-process `flock`.
    fn locked<T>(&self, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        let _inproc = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.with_flock(f)
    }

    /// Run `f` holding the cross-process `flock` (the caller holds the writer mutex).
    fn with_flock<T>(&self, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        let dir = fsutil::parent_dir(&self.path);
        fs::create_dir_all(&dir).map_err(|source| StoreError::Write { path: self.path.clone(), source })?;
        let lock_err = |source| StoreError::Lock { path: self.lock_path.clone(), source };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(STORE_MODE)
            .open(&self.lock_path)
            .map_err(lock_err)?;
        // Blocking flock(LOCK_EX); released when `file` is dropped (also if this process dies).
        file.lock().map_err(lock_err)?;
        f()
    }

    fn read_values(&self) -> Result<Vec<Value>, StoreError> {
        let bytes = match fsutil::read_capped(&self.path, STORE_READ_CAP) {
            Ok(b) => b,
            Err(fsutil::ReadError::Io(e)) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StoreError::Read { path: self.path.clone(), source }),
        };
        // serde_json's messages give a position, never the offending bytes (which may be a PAT).
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Corrupt { path: self.path.clone(), detail: e.to_string() })?;
        let Value::Array(items) = value else {
            return Err(self.shape_error(lookup::Shape::Top(json_type(&value))));
        };
        if let Some((i, bad)) = items.iter().enumerate().find(|(_, v)| !v.is_object()) {
            return Err(self.shape_error(lookup::Shape::Item(i, json_type(bad))));
        }
        Ok(items)
    }

    /// The one wording of "not a list of objects", for the full read and the lookup alike.
    fn shape_error(&self, shape: lookup::Shape) -> StoreError {
        let detail = match shape {
            lookup::Shape::Top(kind) => format!("the top level is {kind}"),
            lookup::Shape::Item(i, kind) => format!("item {i} is {kind}"),
        };
        StoreError::Format { path: self.path.clone(), detail }
    }

    fn write_values(&self, values: &[Value]) -> Result<(), StoreError> {
        // upstream: json.dump(entries, f, indent=2)
        let text = crate::wire::pyjson::dumps_indented(&Value::Array(values.to_vec()), 2);
        fsutil::atomic_write(&self.path, text.as_bytes(), STORE_MODE)
            .map_err(|source| StoreError::Write { path: self.path.clone(), source })
    }

    /// Temp files `.<name>.tmp.<pid>.<n>` of processes that no longer exist (killed mid-write).
    fn remove_orphaned_temp_files(&self) {
        for p in fsutil::remove_orphaned_temp_files(&self.path) {
            tracing::info!(file = %p.display(), "removed a temp file left by a writer that died");
        }
    }
}

/// Async wrappers: the same operations on tokio's blocking pool (or inline, see [`PatStore::run_inline`]).
impl PatStore {
    /// [`get_by_uid`](Self::get_by_uid) off the executor.
    pub async fn get_by_uid_async(self: &Arc<Self>, uid: u16) -> Result<Option<PatEntry>, StoreError> {
        if self.inline {
            return self.get_by_uid(uid);
        }
        let me = Arc::clone(self);
        blocking(move || me.get_by_uid(uid)).await
    }

    /// [`save_if`](Self::save_if) off the executor.
    pub async fn save_if_async(
        self: &Arc<Self>,
        uid: u16,
        hotkey: String,
        pat: RawPat,
        github_id: String,
        guard: impl FnOnce(Option<&PatEntry>) -> bool + Send + 'static,
    ) -> Result<SaveOutcome, StoreError> {
        if self.inline {
            return self.save_if(uid, &hotkey, &pat, &github_id, guard);
        }
        let me = Arc::clone(self);
        blocking(move || me.save_if(uid, &hotkey, &pat, &github_id, guard)).await
    }

    /// [`snapshot`](Self::snapshot) off the executor.
    pub async fn snapshot_async(self: &Arc<Self>) -> StoreSnapshot {
        if self.inline {
            return self.snapshot();
        }
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || me.snapshot()).await.unwrap_or_else(|e| StoreSnapshot {
            entries: BTreeMap::new(),
            problem: Some(format!("store task failed: {e}")),
        })
    }
}

/// One upsert by uid on the in-memory entries, if its guard allows.
fn apply(values: &mut Vec<Value>, u: Upsert) -> SaveOutcome {
    let position = values.iter().position(|v| v.as_object().and_then(uid_of) == Some(u.uid));
    let existing = position.and_then(|i| values[i].as_object()).and_then(PatEntry::from_object);
    if !(u.guard)(existing.as_ref()) {
        return SaveOutcome::Refused;
    }
    let mut entry = Map::new();
    entry.insert("uid".into(), Value::from(u.uid));
    entry.insert("hotkey".into(), Value::from(u.hotkey));
    entry.insert("pat".into(), Value::from(u.pat.expose()));
    entry.insert("github_id".into(), Value::from(u.github_id));
    entry.insert("stored_at".into(), Value::from(python_isoformat_now()));
    match position {
        Some(i) => values[i] = Value::Object(entry),
        None => values.push(Value::Object(entry)),
    }
    SaveOutcome::Saved
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Task(e.to_string()))?
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

mod lookup;

#[cfg(test)]
mod tests;
