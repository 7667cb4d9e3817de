//! Files patrol writes because the operator named them (`reconcile --metrics-file`, `simulate
//! --plot`): checked before anything runs, so a slip of tab completion can not replace the miner's
//! hotkey, PAT, config or patrol's own state with Prometheus text, and a directory patrol can not
//! write is found before a pass broadcasts rather than after it.
//!
//! Rewriting the metrics file itself is the normal case; what is refused (exit 78) is a path that
//! resolves — through symbolic links, or as another name of the same file — to the config file, a
//! PAT file or credential, a hotkey file, or a state file, its lock, or a metagraph cache in the
//! state dir.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::cli::{Coded, Exit};
use crate::config::{PatSource, Settings};
use crate::fsutil;

/// What a protected file is, for the error message.
struct Protected {
    path: PathBuf,
    what: String,
}

/// Refuse `path` (the `what`, e.g. "metrics file", given with `flag`) if it is one of the files
/// patrol reads or owns (exit 78, naming both), or if its directory does not take a new file (exit
/// 78). `also` are more files the command reads (e.g. the scenario). Devices, FIFOs and symlink
/// loops are refused as [`fsutil::atomic_write`] would.
pub fn check(
    what: &str,
    flag: &str,
    path: &Path,
    settings: Option<&Settings>,
    also: &[(&Path, &str)],
) -> anyhow::Result<()> {
    let target = fsutil::resolve_target(path)
        .map_err(|e| anyhow::Error::new(e).context(format!("cannot write {what} {}", path.display())))?;
    let mut protected: Vec<Protected> =
        also.iter().map(|(p, what)| Protected { path: p.to_path_buf(), what: what.to_string() }).collect();
    if let Some(s) = settings {
        protected.extend(settings_files(s));
    }
    for p in &protected {
        if same_file(&target, &p.path) {
            return Err(refuse(flag, path, &format!("it is {} ({})", p.what, p.path.display())));
        }
    }
    if let Some(s) = settings
        && let Some(what) = state_dir_file(&target, &s.agent.state_dir)
    {
        return Err(refuse(flag, path, &format!("it is {what} in the state dir {}", s.agent.state_dir.display())));
    }
    let dir = fsutil::parent_dir(&target);
    if let Err(e) = fsutil::probe_create(&dir) {
        return Err(Coded::new(
            Exit::Config,
            "config_error",
            format!("cannot write {what} {}: cannot create files in {}: {e}", path.display(), dir.display()),
        ));
    }
    Ok(())
}

fn refuse(flag: &str, path: &Path, why: &str) -> anyhow::Error {
    Coded::new(
        Exit::Config,
        "config_error",
        format!("{flag} {}: {why}; patrol will not overwrite it: choose another path", path.display()),
    )
}

/// The config file, and every miner's hotkey file and PAT files (a credential: its file under
/// `$CREDENTIALS_DIRECTORY`).
fn settings_files(s: &Settings) -> Vec<Protected> {
    let mut out = Vec::new();
    if let Some(f) = &s.file {
        out.push(Protected { path: f.clone(), what: "the config file".into() });
    }
    let creds = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    for m in &s.miners {
        out.push(Protected { path: m.hotkey_file.clone(), what: format!("miner {}'s hotkey file", m.name) });
        for src in &m.pat_sources {
            let path = match src {
                PatSource::File(p) => Some(p.clone()),
                PatSource::Credential(name) => creds.as_ref().map(|d| d.join(name)),
                PatSource::Literal(_) | PatSource::Env => None,
            };
            if let Some(path) = path {
                out.push(Protected { path, what: format!("miner {}'s PAT file", m.name) });
            }
        }
    }
    out
}

/// Is `target` one of patrol's own files in `state_dir` (a state file, its lock, a metagraph
/// cache)? The names are patrol's (`state-<hotkey>-<netuid>.json[.lock]`, `metagraph-*.json`), so
/// a metrics file kept in the state dir is fine.
fn state_dir_file(target: &Path, state_dir: &Path) -> Option<&'static str> {
    let name = target.file_name().and_then(OsStr::to_str)?;
    if !same_file(&fsutil::parent_dir(target), state_dir) {
        return None;
    }
    if name.starts_with("state-") && name.ends_with(".json") {
        Some("a state file")
    } else if name.starts_with("state-") && name.ends_with(".json.lock") {
        Some("a state file's lock")
    } else if name.starts_with("metagraph-") && name.ends_with(".json") {
        Some("the metagraph cache")
    } else {
        None
    }
}

/// Whether `a` and `b` name the same file: the same inode when both exist (hard links, bind
/// mounts, symbolic links), else the same canonical directory and name.
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        (Err(_), Err(_)) => canonical(a).is_some_and(|ca| canonical(b).is_some_and(|cb| ca == cb)),
        _ => false,
    }
}

/// `path` with its directory canonicalized (the file itself may not exist).
fn canonical(path: &Path) -> Option<PathBuf> {
    let dir = fsutil::parent_dir(path).canonicalize().ok()?;
    Some(dir.join(path.file_name()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_dir_names() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        assert_eq!(state_dir_file(&dir.join("state-5Hk-74.json"), dir), Some("a state file"));
        assert_eq!(state_dir_file(&dir.join("state-5Hk-74.json.lock"), dir), Some("a state file's lock"));
        assert_eq!(state_dir_file(&dir.join("metagraph-74-abc.json"), dir), Some("the metagraph cache"));
        assert_eq!(state_dir_file(&dir.join("patrol.prom"), dir), None, "a metrics file beside the state is fine");
        let other = tempfile::tempdir().unwrap();
        assert_eq!(state_dir_file(&other.path().join("state-5Hk-74.json"), dir), None);
    }

    #[test]
    fn same_file_sees_links_and_missing_files() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        std::fs::write(&a, "x").unwrap();
        let hard = d.path().join("hard");
        std::fs::hard_link(&a, &hard).unwrap();
        assert!(same_file(&a, &hard));
        let missing = d.path().join("m");
        assert!(same_file(&missing, &missing));
        assert!(!same_file(&a, &missing));
    }
}
