//! Where a miner's PAT comes from, in precedence order, and reading it safely.
//!
//! Order (first available wins): `--pat` (gitt compatibility; visible in `ps`, discouraged) →
//! `--pat-file` → `[pat] credential` (systemd `LoadCredential=`, read from `$CREDENTIALS_DIRECTORY`) →
//! env `GITTENSOR_MINER_PAT` → `[pat] file`. Whitespace is trimmed. A PAT *file* readable by group or
//! others is refused: the token grants access to the miner's GitHub account.
//!
//! A source the user *named* — `--pat-file`, `[pat] file`, `[pat] credential` — decides: when it is
//! missing or unreadable that is the error, and no later source is tried (a typo in `--pat-file`
//! must not quietly send the config's or the environment's PAT instead). The one exception is a
//! `[pat] credential` when `$CREDENTIALS_DIRECTORY` is not set at all: the process is not running
//! under a systemd unit with credentials (the same config used from a shell, e.g. `patrol doctor`),
//! so the credential does not apply and the next source is tried. `$CREDENTIALS_DIRECTORY` set but
//! without that credential is a broken unit, an error. `GITTENSOR_MINER_PAT` unset is simply the
//! next source.
//!
//! Files are read with a cap ([`MAX_PAT_FILE_BYTES`]) and only when they are regular files: a FIFO
//! would block the open forever, a device would be read forever.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::fsutil::{self, ReadError};
use crate::secret::Pat;

/// Env var holding the PAT, as `gitt` reads it.
pub const PAT_ENV: &str = "GITTENSOR_MINER_PAT";

/// The largest PAT file read (4 KiB). A GitHub token is 40 (classic) or 93 (fine-grained)
/// characters; anything near this size is the wrong file.
pub const MAX_PAT_FILE_BYTES: u64 = 4 * 1024;

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
    /// A named source (a PAT file, a systemd credential) is not there. No other source is tried.
    #[error(
        "PAT {source_desc} does not exist; patrol does not fall back to another PAT source when a named one is missing"
    )]
    Missing { source_desc: String },
    /// Unreadable, not a regular file, larger than [`MAX_PAT_FILE_BYTES`] (a GitHub PAT is under
    /// 100 characters: a bigger file is the wrong one), or not UTF-8.
    #[error("cannot read PAT {source_desc}")]
    Read {
        source_desc: String,
        #[source]
        source: ReadError,
    },
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

/// Resolve the first available source (see the module doc for what "available" means). `env` is
/// injected so tests don't touch the process env.
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
            PatSource::Credential(name) => match env("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) {
                // systemd owns these (0400, the unit's user): no mode check.
                Some(dir) => return read_file(&Path::new(&dir).join(name), s.to_string(), true),
                None => {
                    tried.push(format!("{s} (not applicable: $CREDENTIALS_DIRECTORY is unset, not a systemd service)"))
                }
            },
            PatSource::File(path) => return read_file(path, s.to_string(), false),
        }
    }
    Err(PatError::NotFound(tried))
}

/// Read a PAT file (`credential`: a systemd credential, whose mode systemd owns).
fn read_file(path: &Path, origin: String, credential: bool) -> Result<LoadedPat, PatError> {
    // A credential's origin names it, not the file: say where it was looked for.
    let missing = || PatError::Missing {
        source_desc: if credential { format!("{origin} ({})", path.display()) } else { origin.clone() },
    };
    let meta = std::fs::metadata(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => missing(),
        _ => PatError::Read { source_desc: origin.clone(), source: error.into() },
    })?;
    if !meta.is_file() {
        let source = ReadError::NotRegular(fsutil::file_kind(&meta));
        return Err(PatError::Read { source_desc: origin, source });
    }
    let mode = meta.permissions().mode() & 0o777;
    if !credential && mode & 0o077 != 0 {
        return Err(PatError::TooOpen { path: path.to_path_buf(), mode });
    }
    let raw = fsutil::read_capped_text(path, MAX_PAT_FILE_BYTES).map_err(|e| match e {
        ReadError::Io(error) if error.kind() == std::io::ErrorKind::NotFound => missing(),
        source => PatError::Read { source_desc: origin.clone(), source },
    })?;
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
        // nothing applicable: every source said why
        let e = resolve(&[PatSource::Credential("c".into()), PatSource::Env], |_| None).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, PatError::NotFound(_)), "{msg}");
        assert!(
            msg.contains("CREDENTIALS_DIRECTORY") && msg.contains(PAT_ENV) && msg.contains("not applicable"),
            "{msg}"
        );
        let empty = write(d.path(), "empty", "\n  \n", 0o600);
        assert!(matches!(resolve(&[PatSource::File(empty)], |_| None), Err(PatError::Empty(_))));
        assert!(matches!(resolve(&[], |_| None), Err(PatError::NotConfigured)));
    }

    /// Issue 15 item 2: a named source that is missing or unusable is the answer, never a reason to
    /// try the next one.
    #[test]
    fn a_named_source_that_is_missing_never_falls_through() {
        let d = tempfile::tempdir().unwrap();
        let good = write(d.path(), "good", "ghp_fromconfig000000\n", 0o600);
        let creds = d.path().join("creds");
        std::fs::create_dir(&creds).unwrap();
        let creds_s = creds.to_string_lossy().into_owned();
        let with = |creds: Option<&str>, pat_env: bool| {
            let creds = creds.map(str::to_owned);
            move |k: &str| match k {
                "CREDENTIALS_DIRECTORY" => creds.clone(),
                PAT_ENV if pat_env => Some("ghp_fromenv000000000".to_string()),
                _ => None,
            }
        };
        let nope = d.path().join("nope");
        // --pat-file nope, then a credential, the env and [pat] file that would all work
        write(&creds, "github-pat", "ghp_fromcred00000000", 0o400);
        let srcs = [
            PatSource::File(nope.clone()),
            PatSource::Credential("github-pat".into()),
            PatSource::Env,
            PatSource::File(good.clone()),
        ];
        let e = resolve(&srcs, with(Some(&creds_s), true)).unwrap_err();
        assert!(matches!(e, PatError::Missing { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&nope.display().to_string()) && msg.contains("does not fall back"), "{msg}");
        // a directory or a FIFO named as the PAT file: refused, not skipped
        let e = resolve(&[PatSource::File(d.path().to_path_buf()), PatSource::Env], with(None, true)).unwrap_err();
        let text = crate::secret::error_chain(&e);
        assert!(text.contains("not a regular file (it is a directory)"), "{text}");
        // a credential missing from a $CREDENTIALS_DIRECTORY that is set: a broken unit, an error
        let srcs = [PatSource::Credential("other".into()), PatSource::Env, PatSource::File(good.clone())];
        let e = resolve(&srcs, with(Some(&creds_s), true)).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, PatError::Missing { .. }), "{msg}");
        assert!(msg.contains("\"other\"") && msg.contains(&creds.join("other").display().to_string()), "{msg}");
        // no $CREDENTIALS_DIRECTORY at all (not under systemd): the credential does not apply
        assert_eq!(resolve(&srcs, with(None, true)).unwrap().pat.expose(), "ghp_fromenv000000000");
        assert_eq!(resolve(&srcs, with(Some(""), false)).unwrap().pat.expose(), "ghp_fromconfig000000");
        // [pat] file missing (the last source) names it too
        let e = resolve(&[PatSource::Env, PatSource::File(nope.clone())], with(None, false)).unwrap_err();
        assert!(matches!(e, PatError::Missing { .. }) && e.to_string().contains("nope"), "{e}");
    }

    /// Issue 15 item 6: PAT files are read with a cap, and a FIFO is refused without opening it.
    #[test]
    fn pat_files_are_capped_and_must_be_regular() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo(3) with a NUL-terminated path we own; no memory is shared.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // no writer: opening it would block forever
        let e = resolve(&[PatSource::File(fifo)], |_| None).unwrap_err();
        let text = crate::secret::error_chain(&e);
        assert!(text.contains("not a regular file (it is a FIFO)"), "{text}");
        let cap = usize::try_from(MAX_PAT_FILE_BYTES).unwrap();
        let at_cap = write(d.path(), "at-cap", &format!("ghp_fits000000000000{}", " ".repeat(cap - 20)), 0o600);
        assert_eq!(resolve(&[PatSource::File(at_cap)], |_| None).unwrap().pat.expose(), "ghp_fits000000000000");
        let big = write(d.path(), "big", &"x".repeat(cap + 1), 0o600);
        let e = resolve(&[PatSource::File(big)], |_| None).unwrap_err();
        assert!(matches!(e, PatError::Read { source: ReadError::TooLarge { cap: 4096 }, .. }), "{e}");
        let text = crate::secret::error_chain(&e);
        assert!(text.contains("larger than 4096 bytes") && text.contains("big"), "{text}");
        let binary = d.path().join("binary");
        std::fs::write(&binary, b"ghp_notText0000000000\xff\xfe\n").unwrap();
        std::fs::set_permissions(&binary, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let e = resolve(&[PatSource::File(binary)], |_| None).unwrap_err();
        assert!(matches!(e, PatError::Read { source: ReadError::NotUtf8, .. }), "{e}");
        let text = crate::secret::error_chain(&e);
        assert!(text.contains("binary") && text.ends_with("is not UTF-8 text") && !text.contains("notText"), "{text}");
    }
}
