//! Where a miner's PAT comes from, in precedence order, and reading it safely.
//!
//! Order (first available wins): `--pat` (gitt compatibility; visible in `ps`, discouraged) →
//! `--pat-file` → `[pat] credential` (systemd `LoadCredential=`, read from `$CREDENTIALS_DIRECTORY`) →
//! env `GITTENSOR_MINER_PAT` → `[pat] file`. Whitespace is trimmed. A PAT *file* readable by group or
//! others is refused: the token grants access to the miner's GitHub account.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::secret::Pat;

/// Env var holding the PAT, as `gitt` reads it.
pub const PAT_ENV: &str = "GITTENSOR_MINER_PAT";

/// One place a PAT may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatSource {
    /// `--pat VALUE`. The value is held redacted-only in Debug via [`Pat`].
    Literal(Pat),
    /// A file (from `--pat-file` or `[pat] file`).
    File(PathBuf),
    /// A systemd credential name.
    Credential(String),
    /// The `GITTENSOR_MINER_PAT` environment variable.
    Env,
}

impl std::fmt::Display for PatSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PatSource::Literal(_) => write!(f, "--pat"),
            PatSource::File(p) => write!(f, "file {}", p.display()),
            PatSource::Credential(n) => write!(f, "systemd credential {n:?}"),
            PatSource::Env => write!(f, "env {PAT_ENV}"),
        }
    }
}

/// A PAT could not be obtained. All of these are configuration errors (exit 78).
#[derive(Debug, thiserror::Error)]
pub enum PatError {
    #[error(
        "no GitHub PAT configured: set [pat] file or [pat] credential in the config, or {PAT_ENV}, or pass --pat-file"
    )]
    NotConfigured,
    #[error("no GitHub PAT found; tried: {}", .0.join(", "))]
    NotFound(Vec<String>),
    #[error("cannot read PAT {source_desc}: {error}")]
    Unreadable { source_desc: String, error: std::io::Error },
    #[error("PAT file {path} is readable by group or others (mode {mode:04o}); run: chmod 600 {path}")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("PAT from {0} is empty")]
    Empty(String),
}

/// The PAT and where it came from (for messages; never the value).
#[derive(Debug, Clone)]
pub struct LoadedPat {
    pub pat: Pat,
    pub origin: String,
    /// The file it was read from, if any: the agent watches it for rotation.
    pub path: Option<PathBuf>,
}

/// Resolve the first available source. `env` is injected so tests don't touch the process env.
pub fn resolve(sources: &[PatSource], env: impl Fn(&str) -> Option<String>) -> Result<LoadedPat, PatError> {
    if sources.is_empty() {
        return Err(PatError::NotConfigured);
    }
    let mut tried = Vec::new();
    for s in sources {
        match s {
            PatSource::Literal(p) => return Ok(LoadedPat { pat: p.clone(), origin: s.to_string(), path: None }),
            PatSource::Env => match env(PAT_ENV) {
                Some(v) => {
                    let pat = Pat::new(&v).ok_or_else(|| PatError::Empty(s.to_string()))?;
                    return Ok(LoadedPat { pat, origin: s.to_string(), path: None });
                }
                None => tried.push(format!("{s} (unset)")),
            },
            PatSource::Credential(name) => match env("CREDENTIALS_DIRECTORY") {
                Some(dir) => {
                    let path = Path::new(&dir).join(name);
                    if path.exists() {
                        // systemd owns these (0400, the unit's user): no mode check.
                        return read_file(&path, s.to_string(), false);
                    }
                    tried.push(format!("{s} (no {} )", path.display()));
                }
                None => tried.push(format!("{s} ($CREDENTIALS_DIRECTORY unset)")),
            },
            PatSource::File(path) => {
                if path.exists() {
                    return read_file(path, s.to_string(), true);
                }
                tried.push(format!("{s} (does not exist)"));
            }
        }
    }
    Err(PatError::NotFound(tried))
}

fn read_file(path: &Path, origin: String, check_mode: bool) -> Result<LoadedPat, PatError> {
    let meta = std::fs::metadata(path).map_err(|error| PatError::Unreadable { source_desc: origin.clone(), error })?;
    let mode = meta.permissions().mode() & 0o777;
    if check_mode && mode & 0o077 != 0 {
        return Err(PatError::TooOpen { path: path.to_path_buf(), mode });
    }
    let raw =
        std::fs::read_to_string(path).map_err(|error| PatError::Unreadable { source_desc: origin.clone(), error })?;
    let pat = Pat::new(&raw).ok_or_else(|| PatError::Empty(origin.clone()))?;
    Ok(LoadedPat { pat, origin, path: Some(path.to_path_buf()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, name: &str, body: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn precedence_and_trimming() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "pat", "ghp_fromfile00000000\n", 0o600);
        let cred = write(d.path(), "github-pat", " ghp_fromcred00000000 \n", 0o400);
        let dir = d.path().to_string_lossy().into_owned();
        let env = |k: &str| match k {
            "CREDENTIALS_DIRECTORY" => Some(dir.clone()),
            PAT_ENV => Some("ghp_fromenv000000000".into()),
            _ => None,
        };
        let srcs = vec![PatSource::Credential("github-pat".into()), PatSource::Env, PatSource::File(f.clone())];
        let got = resolve(&srcs, env).unwrap();
        assert_eq!(got.pat.expose(), "ghp_fromcred00000000");
        assert_eq!(got.path.as_deref(), Some(cred.as_path()));
        let got = resolve(&srcs[1..], env).unwrap();
        assert_eq!(got.pat.expose(), "ghp_fromenv000000000");
        let got = resolve(&srcs[2..], env).unwrap();
        assert_eq!(got.pat.expose(), "ghp_fromfile00000000");
    }

    #[test]
    fn refuses_open_files_and_explains_missing() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "pat", "ghp_x000000000000000", 0o644);
        let e = resolve(&[PatSource::File(f.clone())], |_| None).unwrap_err();
        assert!(matches!(e, PatError::TooOpen { mode: 0o644, .. }));
        assert!(e.to_string().contains("chmod 600"));
        assert!(!e.to_string().contains("ghp_x"));
        let e = resolve(
            &[PatSource::Credential("c".into()), PatSource::Env, PatSource::File(d.path().join("nope"))],
            |_| None,
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("CREDENTIALS_DIRECTORY") && msg.contains(PAT_ENV) && msg.contains("does not exist"),
            "{msg}"
        );
        let empty = write(d.path(), "empty", "\n  \n", 0o600);
        assert!(matches!(resolve(&[PatSource::File(empty)], |_| None), Err(PatError::Empty(_))));
        assert!(matches!(resolve(&[], |_| None), Err(PatError::NotConfigured)));
    }
}
