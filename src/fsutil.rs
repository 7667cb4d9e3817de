//! Crash-safe file replacement shared by every state file patrol writes (agent state, metagraph cache,
//! Prometheus textfile, the reference validator's PAT store).
//!
//! Guarantee: after [`atomic_write`] returns, the target holds the new bytes durably; if the process
//! dies at any point before that, the target holds the old bytes (or does not exist). Readers never
//! see a partial file, because the bytes go to a temp file in the same directory that is fsynced and
//! then renamed over the target, and the directory is fsynced so the rename itself survives a crash.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Atomically replace `path` with `bytes`, creating the file with `mode` (e.g. 0o600).
pub fn atomic_write(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent_dir(path);
    let name = path
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
        fs::rename(&tmp, path)?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Why [`read_capped`] did not return a file's bytes.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A device, FIFO, socket or directory where a regular file is expected (`/dev/zero` as a
    /// config file would be read forever).
    #[error("is not a regular file (it is {0})")]
    NotRegular(&'static str),
    #[error("is larger than {cap} bytes; this is not a file patrol wrote or expects")]
    TooLarge { cap: u64 },
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
    // Opening a FIFO for reading blocks until a writer appears: refuse by metadata first.
    let meta = fs::metadata(path)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(file_kind(&meta)));
    }
    if meta.len() > cap {
        return Err(ReadError::TooLarge { cap });
    }
    let mut f = File::open(path)?;
    let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    (&mut f).take(cap.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > cap {
        return Err(ReadError::TooLarge { cap });
    }
    Ok(buf)
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

/// Move a file that could not be parsed aside (`<name>.corrupt-<unix secs>`) so that a fresh one can
/// be written without losing the evidence. Returns the new path.
pub fn move_aside(path: &Path, tag: &str) -> io::Result<PathBuf> {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut target = path.as_os_str().to_owned();
    target.push(format!(".{tag}-{secs}"));
    let target = PathBuf::from(target);
    fs::rename(path, &target)?;
    Ok(target)
}

/// Remove the temp files `.<name>.tmp.<pid>.<n>` that [`atomic_write`] of `path` left behind in
/// processes that no longer exist (killed mid-write); returns what it removed. A live writer's
/// file is left alone.
pub fn remove_orphaned_temp_files(path: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return removed };
    let prefix = format!(".{name}.tmp.");
    let Ok(dir) = std::fs::read_dir(parent_dir(path)) else { return removed };
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
