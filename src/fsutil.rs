//! Crash-safe file replacement shared by every state file patrol writes (agent state, metagraph cache,
//! Prometheus textfile, the reference validator's PAT store).
//!
//! Guarantee: after [`atomic_write`] returns, the target holds the new bytes durably; if the process
//! dies at any point before that, the target holds the old bytes (or does not exist). Readers never
//! see a partial file, because the bytes go to a temp file in the same directory that is fsynced and
//! then renamed over the target, and the directory is fsynced so the rename itself survives a crash.
//!
//! Only regular files are ever replaced: a device node, FIFO, socket or directory at the path is
//! refused ([`Refused`]), so `--metrics-file /dev/null` can not turn `/dev/null` into a file. A
//! symbolic link is followed, as `open(2)` would (and as gittensor, which writes through it, does):
//! the link's final target is replaced, with the temp file in the target's directory, and the link
//! stays a link. A dangling link creates its target; a loop is refused.
//!
//! Links are resolved here, in user space, so the kernel's `fs.protected_symlinks` never sees
//! them; its rule is applied here instead, at every link on the way ([`Refused::UntrustedLink`]):
//! a link in a sticky, world-writable directory (`/tmp`) is followed only if it belongs to the
//! user patrol runs as or to the directory's owner. Otherwise anyone could plant
//! `/tmp/patrol.prom -> /etc/shadow` and have a root-run patrol overwrite it. [`open_capped`]
//! applies the same rule before it lets the kernel follow a link for a read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// How many symbolic links [`resolve_target`] follows before calling it a loop (Linux's own limit).
pub const MAX_SYMLINKS: usize = 40;

/// Why [`atomic_write`] refused to replace a path (carried inside the `io::Error` it returns, see
/// [`refused`]). These are configuration mistakes, not I/O failures: nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// `target` is `path` itself, or where its symbolic links lead.
    #[error("{}{kind}, not a regular file; patrol only replaces regular files and left it alone", via(path, target))]
    NotRegular { path: PathBuf, target: PathBuf, kind: &'static str },
    #[error("{} is a loop of symbolic links (or more than {MAX_SYMLINKS} deep)", path.display())]
    SymlinkLoop { path: PathBuf },
    /// The kernel's `fs.protected_symlinks` rule, applied in user space (see the module doc).
    #[error(
        "{} is a symbolic link owned by uid {link_uid} in {}, a sticky world-writable directory owned by uid {dir_uid}; \
         patrol follows a link there only if it belongs to the user patrol runs as (uid {euid}) or to the directory's owner \
         (the kernel's protected_symlinks rule): remove the link, or use a path in a directory only you can write",
        link.display(), dir.display()
    )]
    UntrustedLink { link: PathBuf, dir: PathBuf, link_uid: u32, dir_uid: u32, euid: u32 },
    /// A lock file is never opened through a link ([`open_lock`]).
    #[error(
        "{} is a symbolic link; patrol never opens its lock file through a link (O_NOFOLLOW): remove it",
        path.display()
    )]
    LinkedLock { path: PathBuf },
}

fn via(path: &Path, target: &Path) -> String {
    if path == target {
        "it is ".to_string()
    } else {
        format!("it is a symbolic link to {}, which is ", target.display())
    }
}

/// The [`Refused`] inside an error returned by [`atomic_write`], if that is why it failed.
pub fn refused(e: &io::Error) -> Option<&Refused> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<Refused>())
}

fn refuse(r: Refused) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, r)
}

/// The file a write to `path` lands in: `path` itself, or the end of its chain of symbolic links
/// (relative links resolve against the directory of the link). It may not exist yet (a dangling
/// link's target). Refuses what is not a regular file, loops, and links the kernel's
/// protected_symlinks rule would not follow ([`Refused::UntrustedLink`]).
pub fn resolve_target(path: &Path) -> io::Result<PathBuf> {
    let (target, meta) = follow_links(path)?;
    match meta {
        Some(meta) if !meta.is_file() => {
            Err(refuse(Refused::NotRegular { path: path.to_path_buf(), target, kind: file_kind(&meta) }))
        }
        _ => Ok(target),
    }
}

/// The end of `path`'s chain of symbolic links and what is there (`None`: nothing yet), checking
/// every link against the protected_symlinks rule.
fn follow_links(path: &Path) -> io::Result<(PathBuf, Option<fs::Metadata>)> {
    let mut current = path.to_path_buf();
    for _ in 0..=MAX_SYMLINKS {
        let meta = match fs::symlink_metadata(&current) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((current, None)),
            Err(e) => return Err(e),
        };
        if !meta.file_type().is_symlink() {
            return Ok((current, Some(meta)));
        }
        check_link_owner(&current, &meta)?;
        let link = fs::read_link(&current)?;
        current = if link.is_absolute() { link } else { parent_dir(&current).join(link) };
    }
    Err(refuse(Refused::SymlinkLoop { path: path.to_path_buf() }))
}

/// Whether this process can create a file in `dir`: creates (and removes) an empty one. As root a
/// mode without `w` does not stop writes, so looking at permissions would not tell.
pub fn probe_create(dir: &Path) -> io::Result<()> {
    let probe = dir.join(format!(".patrol-probe-{}-{}", std::process::id(), rand::random::<u32>()));
    OpenOptions::new().write(true).create_new(true).open(&probe)?;
    let _ = fs::remove_file(&probe);
    Ok(())
}

/// The kernel's protected_symlinks rule for the link `link` (whose own metadata is `meta`): in a
/// sticky, world-writable directory only a link of ours or of the directory's owner is followed.
fn check_link_owner(link: &Path, meta: &fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dir = parent_dir(link);
    let dir_meta = fs::metadata(&dir)?;
    let shared = dir_meta.mode() & (libc::S_ISVTX | 0o002) == (libc::S_ISVTX | 0o002);
    let euid = euid();
    if shared && meta.uid() != euid && meta.uid() != dir_meta.uid() {
        return Err(refuse(Refused::UntrustedLink {
            link: link.to_path_buf(),
            dir,
            link_uid: meta.uid(),
            dir_uid: dir_meta.uid(),
            euid,
        }));
    }
    Ok(())
}

/// The effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Whether `dir` is safe to keep patrol's own files in (the state dir), or why not. A directory
/// other users can write (group- or world-writable) is used only when it is sticky and owned by
/// us or root, like `/tmp`: there nobody else can remove or rename our files, and links they plant
/// are not followed ([`Refused::UntrustedLink`]). Otherwise anyone with write access could swap
/// the state file for a link to any file (a non-sticky directory) or, as its owner, remove it.
pub fn check_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(dir).map_err(|e| e.to_string())?;
    let (mode, owner, euid) = (meta.mode(), meta.uid(), euid());
    if mode & 0o022 == 0 || (mode & libc::S_ISVTX != 0 && (owner == euid || owner == 0)) {
        return Ok(());
    }
    let why = if mode & libc::S_ISVTX == 0 { "not sticky".to_string() } else { format!("owned by uid {owner}") };
    let owners = if euid == 0 { "root".to_string() } else { format!("root or uid {euid} (the user patrol runs as)") };
    Err(format!(
        "it is writable by group or others (mode {:04o}) and {why}: other users could replace patrol's files in it; \
         patrol keeps its state only in a directory others cannot write, or in a sticky one owned by {owners}: \
         chmod go-w it, or set [agent] state_dir / --state-dir",
        mode & 0o7777
    ))
}

/// Open (creating) the lock file `path` for writing, never through a symbolic link (`O_NOFOLLOW`):
/// the lock file is created, and a link planted at its name would create or open any file. A
/// link there is refused ([`Refused::LinkedLock`]).
pub fn open_lock(path: &Path) -> io::Result<File> {
    let linked = || refuse(Refused::LinkedLock { path: path.to_path_buf() });
    // Said clearly up front; O_NOFOLLOW below closes the race (its error for a link varies: ELOOP,
    // or EACCES for another user's link in a sticky directory).
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(linked());
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| if e.raw_os_error() == Some(libc::ELOOP) { linked() } else { e })
}

/// Atomically replace `path` with `bytes`, creating the file with `mode` (e.g. 0o600). `path` must
/// be missing, a regular file, or a symbolic link to one (whose target is then replaced).
pub fn atomic_write(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let target = resolve_target(path)?;
    let dir = parent_dir(&target);
    let name = target
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{name}.tmp.{}.{}", std::process::id(), rand::random::<u32>()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &target)?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Why [`read_capped`] did not return a file's bytes: the one cause every "cannot read" error of
/// a file patrol reads carries as its `source` (config, PAT, the notify URL, validator stores).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A device, FIFO, socket or directory where a regular file is expected (`/dev/zero` as a
    /// config file would be read forever).
    #[error("is not a regular file (it is {0})")]
    NotRegular(&'static str),
    #[error("is larger than {cap} bytes; this is not a file patrol wrote or expects")]
    TooLarge { cap: u64 },
    /// A text file ([`read_capped_text`]) whose bytes are not UTF-8.
    #[error("is not UTF-8 text")]
    NotUtf8,
}

/// What kind of file `meta` describes, for messages.
pub fn file_kind(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "a regular file"
    }
}

/// Read a regular file of at most `cap` bytes (symlinks are followed). Anything else is refused
/// before a byte is read, and a file that grows past `cap` while being read is refused too, so no
/// local file can make patrol allocate without bound.
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    let file = open_capped(path, cap)?;
    let mut buf = Vec::with_capacity(usize::try_from(file.metadata()?.len()).unwrap_or(0));
    CappedReader::new(file, cap).read_to_end(&mut buf).map_err(|e| match e.kind() {
        io::ErrorKind::FileTooLarge => ReadError::TooLarge { cap },
        _ => ReadError::Io(e),
    })?;
    Ok(buf)
}

/// [`read_capped`] of a text file: the bytes must be UTF-8 ([`ReadError::NotUtf8`]).
pub fn read_capped_text(path: &Path, cap: u64) -> Result<String, ReadError> {
    String::from_utf8(read_capped(path, cap)?).map_err(|_| ReadError::NotUtf8)
}

/// Open a regular file of at most `cap` bytes for reading (symlinks are followed), to be read
/// through a [`CappedReader`]. A device, FIFO or directory is refused by its metadata before it is
/// opened; the open is `O_NONBLOCK` (a FIFO swapped in meanwhile cannot block it) and the type and
/// size are checked again on the open file, so they cannot change before the read.
pub fn open_capped(path: &Path, cap: u64) -> Result<File, ReadError> {
    let check = |meta: &fs::Metadata| {
        if !meta.is_file() {
            return Err(ReadError::NotRegular(file_kind(meta)));
        }
        if meta.len() > cap {
            return Err(ReadError::TooLarge { cap });
        }
        Ok(())
    };
    // The kernel follows the links of this open: check them against protected_symlinks first.
    if let Err(e) = follow_links(path)
        && matches!(refused(&e), Some(Refused::UntrustedLink { .. }))
    {
        return Err(ReadError::Io(e));
    }
    check(&fs::metadata(path)?)?;
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    check(&file.metadata()?)?;
    Ok(file)
}

/// A reader that fails once more than `cap` bytes came through (a file growing while it is read),
/// with [`io::ErrorKind::FileTooLarge`] and the text of [`ReadError::TooLarge`].
pub struct CappedReader<R> {
    inner: R,
    cap: u64,
    left: u64,
}

impl<R> CappedReader<R> {
    pub fn new(inner: R, cap: u64) -> CappedReader<R> {
        CappedReader { inner, cap, left: cap }
    }
}

impl<R: io::Read> io::Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // one byte more than allowed is enough to know the cap was passed
        let want = buf.len().min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            let e = ReadError::TooLarge { cap: self.cap };
            return Err(io::Error::new(io::ErrorKind::FileTooLarge, e.to_string()));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// fsync a directory so that a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory that holds `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Move a file that could not be parsed aside (`<name>.<tag>-<unix secs>`, or `…-<secs>-1`, `-2`, …
/// when that name is taken: two files moved aside in the same second keep both) so that a fresh one
/// can be written without losing the evidence. A symbolic link is followed: its target is moved
/// (within the target's directory) and the link is left in place, so the next write through it
/// creates a fresh target. Never renames over an existing file. Returns the new path.
pub fn move_aside(path: &Path, tag: &str) -> io::Result<PathBuf> {
    let source = resolve_target(path)?;
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    // 1000 files moved aside within one second: something is looping; stop rather than spin.
    for n in 0..1000u32 {
        let mut target = source.as_os_str().to_owned();
        target.push(format!(".{tag}-{secs}"));
        if n > 0 {
            target.push(format!("-{n}"));
        }
        let target = PathBuf::from(target);
        match rename_noreplace(&source, &target) {
            Ok(()) => return Ok(target),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("too many {tag} files next to {}", source.display())))
}

/// `rename(from, to)` that fails with `AlreadyExists` instead of replacing an existing `to`.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::ffi::OsStrExt;
        let cstr = |p: &Path| {
            std::ffi::CString::new(p.as_os_str().as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
        };
        let (f, t) = (cstr(from)?, cstr(to)?);
        // SAFETY: both pointers are valid NUL-terminated strings that outlive the call.
        let rc =
            unsafe { libc::renameat2(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, t.as_ptr(), libc::RENAME_NOREPLACE) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        // EINVAL/ENOSYS: the filesystem or kernel has no RENAME_NOREPLACE; check, then rename.
        if !matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) {
            return Err(e);
        }
    }
    match fs::symlink_metadata(to) {
        Ok(_) => Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", to.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::rename(from, to),
        Err(e) => Err(e),
    }
}

/// Remove the temp files `.<name>.tmp.<pid>.<n>` that [`atomic_write`] of `path` left behind in
/// processes that no longer exist (killed mid-write); returns what it removed. A live writer's
/// file is left alone.
pub fn remove_orphaned_temp_files(path: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    // The temp files sit next to the file actually written (a symbolic link's target).
    let path = resolve_target(path).unwrap_or_else(|_| path.to_path_buf());
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return removed };
    let prefix = format!(".{name}.tmp.");
    let Ok(dir) = std::fs::read_dir(parent_dir(&path)) else { return removed };
    for entry in dir.flatten() {
        let file = entry.file_name();
        let Some(pid) = file.to_str().and_then(|f| f.strip_prefix(&prefix)).and_then(|r| r.split('.').next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<i32>() else { continue };
        // SAFETY: kill with signal 0 only checks whether the pid exists; it sends nothing.
        let gone = unsafe { libc::kill(pid, 0) } != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone && std::fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_and_sets_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.json");
        atomic_write(&p, b"one", 0o600).unwrap();
        atomic_write(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        // no temp files left behind
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn capped_reads_refuse_devices_and_big_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        fs::write(&p, b"12345").unwrap();
        assert_eq!(read_capped(&p, 5).unwrap(), b"12345");
        assert!(matches!(read_capped(&p, 4), Err(ReadError::TooLarge { cap: 4 })));
        assert!(matches!(
            read_capped(Path::new("/dev/zero"), 1 << 20),
            Err(ReadError::NotRegular("a character device"))
        ));
        assert!(matches!(read_capped(d.path(), 1 << 20), Err(ReadError::NotRegular("a directory"))));
        assert!(
            matches!(read_capped(&d.path().join("missing"), 1), Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::NotFound)
        );
        assert_eq!(read_capped_text(&p, 5).unwrap(), "12345");
        fs::write(&p, b"ghp_\xff\xfe").unwrap();
        assert!(matches!(read_capped_text(&p, 64), Err(ReadError::NotUtf8)));
    }

    fn mkfifo(p: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", p.display());
    }

    #[test]
    fn refuses_to_replace_what_is_not_a_regular_file() {
        use std::os::unix::fs::FileTypeExt;
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        mkfifo(&fifo);
        let e = atomic_write(&fifo, b"x", 0o600).unwrap_err();
        assert!(matches!(refused(&e), Some(Refused::NotRegular { kind: "a FIFO", .. })), "{e}");
        assert_eq!(
            e.to_string(),
            "it is a FIFO, not a regular file; patrol only replaces regular files and left it alone"
        );
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        let e = atomic_write(d.path(), b"x", 0o600).unwrap_err();
        assert!(matches!(refused(&e), Some(Refused::NotRegular { kind: "a directory", .. })), "{e}");
        // through a link: the message names where it leads
        let link = d.path().join("link");
        std::os::unix::fs::symlink("fifo", &link).unwrap();
        let e = atomic_write(&link, b"x", 0o600).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!("it is a symbolic link to {}, which is a FIFO", fifo.display())),
            "{e}"
        );
        // nothing was left behind
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 2);
    }

    #[test]
    fn writes_through_symbolic_links() {
        let d = tempfile::tempdir().unwrap();
        let other = d.path().join("other");
        fs::create_dir(&other).unwrap();
        fs::write(other.join("real.json"), b"old").unwrap();
        let link = d.path().join("f.json");
        std::os::unix::fs::symlink("other/real.json", &link).unwrap();
        atomic_write(&link, b"new", 0o600).unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(other.join("real.json")).unwrap(), b"new");
        // a dangling link creates its target
        let dangling = d.path().join("d.json");
        std::os::unix::fs::symlink(other.join("later.json"), &dangling).unwrap();
        atomic_write(&dangling, b"created", 0o600).unwrap();
        assert!(fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(other.join("later.json")).unwrap(), b"created");
        // a loop is refused
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        let e = atomic_write(&a, b"x", 0o600).unwrap_err();
        assert!(matches!(refused(&e), Some(Refused::SymlinkLoop { .. })), "{e}");
        // temp files go next to the target, and the orphan sweep finds them there
        let orphan = other.join(".real.json.tmp.999999999.1");
        fs::write(&orphan, b"").unwrap();
        assert_eq!(remove_orphaned_temp_files(&link), vec![orphan]);
    }

    #[test]
    fn a_private_dir_is_one_others_cannot_write_or_a_sticky_one_of_ours() {
        let d = tempfile::tempdir().unwrap();
        for (mode, ok) in [(0o700, true), (0o755, true), (0o1777, true), (0o775, false), (0o777, false), (0o1770, true)]
        {
            fs::set_permissions(d.path(), fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(check_private_dir(d.path()).is_ok(), ok, "{mode:o}: {:?}", check_private_dir(d.path()));
        }
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_private_dir(d.path()).unwrap_err();
        assert!(e.starts_with("it is writable by group or others (mode 0777) and not sticky"), "{e}");
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o700)).unwrap();
    }

    #[test]
    fn a_lock_file_is_never_opened_through_a_link() {
        let d = tempfile::tempdir().unwrap();
        let lock = d.path().join("s.json.lock");
        std::os::unix::fs::symlink(d.path().join("elsewhere"), &lock).unwrap();
        let e = open_lock(&lock).unwrap_err();
        assert!(matches!(refused(&e), Some(Refused::LinkedLock { .. })), "{e}");
        assert!(!d.path().join("elsewhere").exists());
        fs::remove_file(&lock).unwrap();
        open_lock(&lock).unwrap();
        open_lock(&lock).unwrap();
        assert_eq!(fs::metadata(&lock).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn two_files_moved_aside_in_the_same_second_keep_both() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        let mut moved = Vec::new();
        for body in ["first", "second", "third"] {
            fs::write(&p, body).unwrap();
            moved.push(move_aside(&p, "corrupt").unwrap());
        }
        let bodies: Vec<String> = moved.iter().map(|m| fs::read_to_string(m).unwrap()).collect();
        assert_eq!(bodies, ["first", "second", "third"]);
    }

    #[test]
    fn move_aside_keeps_bytes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        fs::write(&p, b"garbage").unwrap();
        let moved = move_aside(&p, "corrupt").unwrap();
        assert!(!p.exists());
        assert_eq!(fs::read(moved).unwrap(), b"garbage");
    }
}
