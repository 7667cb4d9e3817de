//! The targets in force: each `[[notify.target]]` (validated by `config::notify`) with its URL
//! read — inline, from a file (mode 0600, like the PAT file) or from a systemd credential — its
//! kind (explicit, or inferred from the URL) and what it wants (event kinds, a minimum severity).
//!
//! A URL is a secret ([`HookUrl`]): a target prints as `name (kind, scheme://host/***)`, and errors
//! name where the URL comes from, never the URL. A file or credential holding just
//! [`PLACEHOLDER`] means "no target": the packaged units hand `/etc/patrol/notify-url` over as a
//! credential when it exists and `none` when it does not (systemd's `SetCredential=` fallback).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use super::event::{Event, EventKind};
use crate::config::{NotifySettings, Severity, TargetKind, TargetSettings, UrlSource};
use crate::fsutil::{self, ReadError};
use crate::secret::HookUrl;

/// The content of a URL file or credential that means "no target configured".
pub const PLACEHOLDER: &str = "none";

/// The largest URL file read: a webhook URL is under 300 characters.
pub const MAX_URL_FILE_BYTES: u64 = 4 * 1024;

/// A target ready to send to.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub kind: TargetKind,
    pub url: HookUrl,
    pub events: Option<Vec<String>>,
    pub min_severity: Severity,
}

impl Target {
    /// Does it want this event? (`test` goes everywhere.)
    pub fn wants(&self, e: &Event) -> bool {
        e.kind == EventKind::Test
            || (e.severity >= self.min_severity
                && self.events.as_ref().is_none_or(|l| l.iter().any(|k| k == e.kind.as_str())))
    }

    /// `name (kind, scheme://host/***)`: how it is shown everywhere.
    pub fn shown(&self) -> String {
        format!("{} ({}, {})", self.name, self.kind.as_str(), self.url.shown())
    }
}

/// A URL could not be read. Configuration errors (exit 78); none quotes the URL.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{key}: {source_desc} does not exist")]
    Missing { key: String, source_desc: String },
    #[error("{key}: cannot read {source_desc}")]
    Read {
        key: String,
        source_desc: String,
        #[source]
        source: ReadError,
    },
    #[error("{key}: {source_desc} is readable by group or others (mode {mode:04o}); run: chmod 600 {path}")]
    TooOpen { key: String, source_desc: String, mode: u32, path: String },
    #[error("{key}: {source_desc} does not hold an http:// or https:// URL")]
    NotUrl { key: String, source_desc: String },
}

/// What a URL source gave.
#[derive(Debug)]
pub enum Url {
    Url(HookUrl),
    /// The placeholder, or a credential while not under systemd: no URL, on purpose.
    Off(String),
}

/// Read the URL of `source` (`key` names it in errors). `env` is injected for tests.
pub fn read_url(source: &UrlSource, key: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Url, TargetError> {
    let (path, credential) = match source {
        UrlSource::Inline(u) => return Ok(Url::Url(u.clone())),
        UrlSource::File(p) => (p.clone(), false),
        UrlSource::Credential(name) => match env("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) {
            Some(dir) => (Path::new(&dir).join(name), true),
            None => {
                return Ok(Url::Off(format!(
                    "{source} not applicable: $CREDENTIALS_DIRECTORY is unset (not a systemd service)"
                )));
            }
        },
    };
    let desc = if credential { format!("{source} ({})", path.display()) } else { source.to_string() };
    let unreadable = |source: ReadError| TargetError::Read { key: key.into(), source_desc: desc.clone(), source };
    let meta = std::fs::metadata(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TargetError::Missing { key: key.into(), source_desc: desc.clone() },
        _ => unreadable(e.into()),
    })?;
    let mode = meta.permissions().mode() & 0o777;
    // systemd owns a credential's mode (0400, the unit's user)
    if !credential && meta.is_file() && mode & 0o077 != 0 {
        return Err(TargetError::TooOpen {
            key: key.into(),
            source_desc: desc,
            mode,
            path: path.display().to_string(),
        });
    }
    let text = fsutil::read_capped_text(&path, MAX_URL_FILE_BYTES).map_err(|e| match e {
        ReadError::Io(e) if e.kind() == std::io::ErrorKind::NotFound => {
            TargetError::Missing { key: key.into(), source_desc: desc.clone() }
        }
        e => unreadable(e),
    })?;
    let text = text.trim();
    if text == PLACEHOLDER {
        return Ok(Url::Off(format!("{desc} says {PLACEHOLDER:?}")));
    }
    match HookUrl::new(text) {
        Some(u) if u.expose().starts_with("https://") || u.expose().starts_with("http://") => Ok(Url::Url(u)),
        _ => Err(TargetError::NotUrl { key: key.into(), source_desc: desc }),
    }
}

/// One target's settings with its URL read: `Ok(None)` when it is off on purpose (with why).
pub fn load(t: &TargetSettings, env: &dyn Fn(&str) -> Option<String>) -> Result<Result<Target, String>, TargetError> {
    Ok(match read_url(&t.url, &format!("{}.url", t.key), env)? {
        Url::Off(why) => Err(why),
        Url::Url(url) => Ok(Target {
            name: t.name.clone(),
            kind: t.kind.unwrap_or_else(|| TargetKind::infer(url.expose())),
            url,
            events: t.events.clone(),
            min_severity: t.min_severity,
        }),
    })
}

/// Every target and the ping URL, read now.
#[derive(Debug, Default)]
pub struct Resolved {
    pub targets: Vec<Target>,
    pub ping: Option<HookUrl>,
    /// Targets (or the ping) off on purpose, and why (for `doctor` and `notify test`).
    pub off: Vec<(String, String)>,
}

/// Read every URL of `[notify]`.
pub fn resolve(n: &NotifySettings, env: &dyn Fn(&str) -> Option<String>) -> Result<Resolved, TargetError> {
    let mut r = Resolved::default();
    for t in &n.targets {
        match load(t, env)? {
            Ok(target) => r.targets.push(target),
            Err(why) => r.off.push((t.name.clone(), why)),
        }
    }
    if let Some(p) = &n.ping {
        match read_url(p, "notify.ping", env)? {
            Url::Url(u) => r.ping = Some(u),
            Url::Off(why) => r.off.push(("ping".into(), why)),
        }
    }
    Ok(r)
}

/// [`resolve`] with the process environment.
pub fn resolve_env(n: &NotifySettings) -> Result<Resolved, TargetError> {
    resolve(n, &|k| std::env::var(k).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str, mode: u32) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn settings(url: UrlSource) -> TargetSettings {
        TargetSettings {
            name: "t".into(),
            key: "notify.target[0]".into(),
            url,
            kind: None,
            events: None,
            min_severity: Severity::Warning,
        }
    }

    #[test]
    fn urls_from_files_and_credentials_and_the_placeholder() {
        let d = tempfile::tempdir().unwrap();
        let secret = "https://discord.com/api/webhooks/42/tokenTOKENtoken";
        let f = write(d.path(), "url", &format!("{secret}\n"), 0o600);
        let none = |_: &str| None;
        let t = load(&settings(UrlSource::File(f.clone())), &none).unwrap().unwrap();
        assert_eq!((t.kind, t.url.expose()), (TargetKind::Discord, secret));
        assert_eq!(t.shown(), "t (discord, https://discord.com/***)");
        // too open: refused naming the file, never the URL
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load(&settings(UrlSource::File(f.clone())), &none).unwrap_err().to_string();
        assert!(e.contains("chmod 600") && e.contains("notify.target[0].url") && !e.contains("tokenTOKEN"), "{e}");
        // a credential: read from $CREDENTIALS_DIRECTORY; the placeholder means off
        write(d.path(), "notify-url", "none\n", 0o400);
        let dir = d.path().display().to_string();
        let env = |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| dir.clone());
        let off = load(&settings(UrlSource::Credential("notify-url".into())), &env).unwrap().unwrap_err();
        assert!(off.contains("none"), "{off}");
        write(d.path(), "notify-url", "https://ntfy.sh/private-topic\n", 0o400);
        let t = load(&settings(UrlSource::Credential("notify-url".into())), &env).unwrap().unwrap();
        assert_eq!(t.kind, TargetKind::Ntfy);
        // not under systemd: the credential does not apply
        assert!(load(&settings(UrlSource::Credential("notify-url".into())), &none).unwrap().is_err());
        // missing, or not a URL: errors naming the source, not the content
        let e = load(&settings(UrlSource::Credential("other".into())), &env).unwrap_err().to_string();
        assert!(e.contains("\"other\"") && e.contains("does not exist"), "{e}");
        let junk = write(d.path(), "junk", "ftp://secret-thing", 0o600);
        let e = load(&settings(UrlSource::File(junk)), &none).unwrap_err().to_string();
        assert!(e.contains("http:// or https://") && !e.contains("secret-thing"), "{e}");
    }

    #[test]
    fn a_target_gets_the_kinds_and_severities_it_asked_for() {
        let mut t = Target {
            name: "t".into(),
            kind: TargetKind::Webhook,
            url: HookUrl::new("http://127.0.0.1:1/x").unwrap(),
            events: None,
            min_severity: Severity::Warning,
        };
        let ev = |kind, severity| Event { kind, severity, ..super::super::event::test(0) };
        assert!(t.wants(&ev(EventKind::Coverage, Severity::Warning)));
        assert!(!t.wants(&ev(EventKind::Repaired, Severity::Info)), "info is opt-in");
        assert!(t.wants(&ev(EventKind::Test, Severity::Info)), "a test goes everywhere");
        t.events = Some(vec!["pat_invalid".into()]);
        assert!(!t.wants(&ev(EventKind::Coverage, Severity::Critical)));
        assert!(t.wants(&ev(EventKind::PatInvalid, Severity::Critical)));
    }
}
