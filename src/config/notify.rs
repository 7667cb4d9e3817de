//! `[notify]` and `[[notify.target]]`: where patrol tells the miner what it cannot fix itself
//! (docs/notifications.md). Validated here like every other key (errors name the key); the URLs
//! themselves are read later, on demand, by `notify::target` (a file or a systemd credential may
//! change, like the PAT's). The vocabulary a config names — target kinds, severities, event kinds
//! — lives here, at the bottom of the layering, so both `config` and `notify` can use it.

use std::path::PathBuf;
use std::time::Duration;

use super::raw::{RawNotify, RawTarget};
use super::{Builder, ConfigError};
use crate::secret::HookUrl;

/// How loud an event is; a target gets the events at or above its `min_severity`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize, strum::IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The service a target URL belongs to: decides the message format, its size limit and how a
/// rate-limit answer says when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum TargetKind {
    Discord,
    Slack,
    Telegram,
    Ntfy,
    /// A generic JSON webhook (the versioned payload of docs/notifications.md).
    Webhook,
}

impl TargetKind {
    pub const ALL: [TargetKind; 5] =
        [TargetKind::Discord, TargetKind::Slack, TargetKind::Telegram, TargetKind::Ntfy, TargetKind::Webhook];

    /// snake_case name (the `kind` key's values).
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    fn parse(s: &str) -> Option<TargetKind> {
        TargetKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The kind a URL's host and path say: Discord and Slack webhooks, the Telegram Bot API,
    /// ntfy.sh (a self-hosted ntfy or anything else needs `kind`); else a generic webhook.
    pub fn infer(url: &str) -> TargetKind {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let host = rest[..end].rsplit_once('@').map_or(&rest[..end], |(_, h)| h);
        let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
        let path = &rest[end..];
        let is = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
        if (is("discord.com") || is("discordapp.com")) && path.starts_with("/api/webhooks/") {
            TargetKind::Discord
        } else if host == "hooks.slack.com" {
            TargetKind::Slack
        } else if host == "api.telegram.org" {
            TargetKind::Telegram
        } else if host == "ntfy.sh" {
            TargetKind::Ntfy
        } else {
            TargetKind::Webhook
        }
    }
}

/// Every event kind a target's `events` may name (docs/notifications.md has the table; the
/// `notify` module's event kinds are exactly these, which its tests hold).
pub const EVENT_NAMES: [&str; 16] = [
    "coverage",
    "pat_invalid",
    "pat_expiry",
    "pat_rotated",
    "pat_unavailable",
    "terminal",
    "store_unavailable",
    "not_registered",
    "no_validator_source",
    "budget",
    "churning",
    "state_not_saved",
    "repaired",
    "started",
    "stopping",
    "digest",
];

/// Where a notification URL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlSource {
    /// Written in the config file (which must then be readable by its owner only).
    Inline(HookUrl),
    /// A file holding the URL (mode 0600 like a PAT file).
    File(PathBuf),
    /// A systemd credential (`LoadCredential=`) of that name.
    Credential(String),
}

impl std::fmt::Display for UrlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UrlSource::Inline(u) => write!(f, "{}", u.shown()),
            UrlSource::File(p) => write!(f, "file {}", p.display()),
            UrlSource::Credential(n) => write!(f, "systemd credential {n:?}"),
        }
    }
}

/// One `[[notify.target]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSettings {
    /// Its label in logs, metrics and `notify test` (`name`, else `<kind>-<n>` or `target-<n>`).
    pub name: String,
    /// `notify.target[<i>]`, for messages about it.
    pub key: String,
    pub url: UrlSource,
    /// Explicit `kind`; `None`: inferred from the URL once it is read.
    pub kind: Option<TargetKind>,
    /// The event kinds it wants (`None`: all).
    pub events: Option<Vec<String>>,
    pub min_severity: Severity,
}

/// `[notify]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySettings {
    pub targets: Vec<TargetSettings>,
    /// A coverage loss repaired within this time is never announced.
    pub hold: Duration,
    /// The dead-man ping URL (healthchecks.io style, or Uptime Kuma's push URL).
    pub ping: Option<UrlSource>,
    /// A daily digest at this UTC time of day (hour, minute); `None`: off.
    pub digest: Option<(u8, u8)>,
    /// A message no retry could deliver within this time is given up (logged, counted).
    pub give_up: Duration,
    /// One request's timeout.
    pub timeout: Duration,
    /// How long a stopping agent, or a finished `reconcile`, waits for queued messages.
    pub flush: Duration,
}

impl Default for NotifySettings {
    fn default() -> NotifySettings {
        NotifySettings {
            targets: Vec::new(),
            hold: Duration::from_secs(10 * 60),
            ping: None,
            digest: None,
            give_up: Duration::from_secs(3600),
            timeout: Duration::from_secs(10),
            flush: Duration::from_secs(5),
        }
    }
}

impl NotifySettings {
    /// Anything to do at all.
    pub fn is_enabled(&self) -> bool {
        !self.targets.is_empty() || self.ping.is_some()
    }

    /// The keys holding a URL written in the config file itself.
    pub fn inline_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .targets
            .iter()
            .filter(|t| matches!(t.url, UrlSource::Inline(_)))
            .map(|t| format!("{}.url", t.key))
            .collect();
        if matches!(self.ping, Some(UrlSource::Inline(_))) {
            keys.push("notify.ping".into());
        }
        keys
    }
}

impl<E: Fn(&str) -> Option<String>> Builder<'_, E> {
    pub(super) fn notify(&self, raw: RawNotify) -> Result<NotifySettings, ConfigError> {
        let d = NotifySettings::default();
        let hold = match &raw.hold {
            None => d.hold,
            Some(toml::Value::Integer(n)) if *n >= 0 => Duration::from_secs(n.unsigned_abs()),
            Some(toml::Value::String(s)) => self.duration("notify.hold", Some(s), d.hold)?,
            Some(other) => {
                return Err(self.err("notify.hold", format!("{other} is not a duration (\"10m\") or whole seconds")));
            }
        };
        let pos = |k: &str, v: Option<&str>, def: Duration| {
            self.positive(&format!("notify.{k}"), self.duration(&format!("notify.{k}"), v, def)?)
        };
        let ping = self.url_source(
            "notify.",
            "ping",
            raw.ping.as_deref(),
            raw.ping_file.as_deref(),
            raw.ping_credential.as_deref(),
        )?;
        let digest = match raw.digest.as_deref().map(str::trim) {
            None | Some("off") => None,
            Some(s) => Some(parse_time_of_day(s).ok_or_else(|| {
                self.err("notify.digest", format!("{s:?} is not a UTC time of day like \"09:00\" (or \"off\")"))
            })?),
        };
        let mut targets: Vec<TargetSettings> = Vec::new();
        for (i, t) in raw.target.unwrap_or_default().into_iter().enumerate() {
            let t = self.target(i, t)?;
            if targets.iter().any(|o| o.name == t.name) {
                return Err(self.err(&format!("{}.name", t.key), format!("two targets are named {:?}", t.name)));
            }
            targets.push(t);
        }
        Ok(NotifySettings {
            targets,
            hold,
            ping,
            digest,
            give_up: pos("give_up", raw.give_up.as_deref(), d.give_up)?,
            timeout: pos("timeout", raw.timeout.as_deref(), d.timeout)?,
            flush: self.duration("notify.flush", raw.flush.as_deref(), d.flush)?,
        })
    }

    fn target(&self, i: usize, t: RawTarget) -> Result<TargetSettings, ConfigError> {
        let key = format!("notify.target[{i}]");
        let url = self
            .url_source(
                &format!("{key}."),
                "url",
                t.url.as_deref(),
                t.url_file.as_deref(),
                t.url_credential.as_deref(),
            )?
            .ok_or_else(|| self.err(&key, "needs one of url, url_file, url_credential"))?;
        let kind = match t.kind.as_deref().map(str::trim) {
            None => None,
            Some(k) => Some(TargetKind::parse(k).ok_or_else(|| {
                let all: Vec<&str> = TargetKind::ALL.iter().map(|k| k.as_str()).collect();
                self.err(&format!("{key}.kind"), format!("{k:?} is not one of {}", all.join(", ")))
            })?),
        };
        let events = match t.events {
            None => None,
            Some(list) => {
                for e in &list {
                    if !EVENT_NAMES.contains(&e.as_str()) {
                        return Err(self.err(
                            &format!("{key}.events"),
                            format!("{e:?} is not an event kind (one of: {})", EVENT_NAMES.join(", ")),
                        ));
                    }
                }
                Some(list)
            }
        };
        let min_severity = match t.min_severity.as_deref().map(str::trim) {
            None => Severity::Warning,
            Some(s) => Severity::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| {
                self.err(&format!("{key}.min_severity"), format!("{s:?} is not one of info, warning, critical"))
            })?,
        };
        let inferred = kind.or(match &url {
            UrlSource::Inline(u) => Some(TargetKind::infer(u.expose())),
            _ => None,
        });
        let name = match t.name.map(|n| n.trim().to_string()) {
            Some(n) if n.is_empty() || n.len() > 64 || n.chars().any(|c| c.is_control()) => {
                return Err(self.err(&format!("{key}.name"), "must be 1 to 64 printable characters"));
            }
            Some(n) => n,
            None => match inferred {
                Some(k) => format!("{}-{}", k.as_str(), i + 1),
                None => format!("target-{}", i + 1),
            },
        };
        Ok(TargetSettings { name, key, url, kind, events, min_severity })
    }

    /// Exactly one of `<prefix><field>`, `…_file`, `…_credential` (or none).
    fn url_source(
        &self,
        prefix: &str,
        field: &str,
        inline: Option<&str>,
        file: Option<&str>,
        credential: Option<&str>,
    ) -> Result<Option<UrlSource>, ConfigError> {
        let k = |suffix: &str| format!("{prefix}{field}{suffix}");
        let given = [inline.is_some(), file.is_some(), credential.is_some()].iter().filter(|b| **b).count();
        if given > 1 {
            return Err(self.err(&k(""), format!("set only one of {field}, {field}_file, {field}_credential")));
        }
        if let Some(u) = inline {
            let url = HookUrl::new(u).ok_or_else(|| self.err(&k(""), "is empty"))?;
            if !(url.expose().starts_with("https://") || url.expose().starts_with("http://")) {
                // Never quote the value: it is a secret.
                return Err(self.err(&k(""), "must be an http:// or https:// URL"));
            }
            return Ok(Some(UrlSource::Inline(url)));
        }
        if let Some(f) = file {
            return Ok(Some(UrlSource::File(self.path(f))));
        }
        if let Some(c) = credential {
            if c.is_empty() || c.contains('/') {
                return Err(self.err(&k("_credential"), "must be a credential name (no '/')"));
            }
            return Ok(Some(UrlSource::Credential(c.to_string())));
        }
        Ok(None)
    }
}

/// "HH:MM" → (hour, minute).
fn parse_time_of_day(s: &str) -> Option<(u8, u8)> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u8, u8) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && s.len() == 5).then_some((h, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names a config writes (strum, snake_case), as documented.
    #[test]
    fn kind_and_severity_names() {
        let kinds: Vec<&str> = TargetKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(kinds, ["discord", "slack", "telegram", "ntfy", "webhook"]);
        for s in Severity::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
    use crate::config::{Overrides, Settings};

    fn build(text: &str) -> Result<Settings, ConfigError> {
        Settings::build(Some(std::path::Path::new("/etc/patrol/c.toml")), Some(text), &Overrides::default(), |_| None)
    }

    #[test]
    fn kinds_are_inferred_from_the_url() {
        for (url, kind) in [
            ("https://discord.com/api/webhooks/1/abc", TargetKind::Discord),
            ("https://canary.discordapp.com/api/webhooks/1/abc", TargetKind::Discord),
            ("https://hooks.slack.com/services/T/B/x", TargetKind::Slack),
            ("https://api.telegram.org/bot1:x/sendMessage?chat_id=5", TargetKind::Telegram),
            ("https://ntfy.sh/topic", TargetKind::Ntfy),
            ("https://user:pw@ntfy.sh:443/topic", TargetKind::Ntfy),
            ("http://127.0.0.1:8080/hook", TargetKind::Webhook),
            ("https://discord.com.evil.example/api/webhooks/1/x", TargetKind::Webhook),
        ] {
            assert_eq!(TargetKind::infer(url), kind, "{url}");
        }
    }

    #[test]
    fn targets_defaults_and_errors_name_the_key() {
        let s = build(
            "[notify]\nhold = 30\nping_file = \"ping\"\ndigest = \"09:30\"\n\
             [[notify.target]]\nurl = \"https://discord.com/api/webhooks/1/secret0000\"\n\
             [[notify.target]]\nurl_credential = \"notify-url\"\nevents = [\"coverage\", \"pat_invalid\"]\nmin_severity = \"critical\"\n",
        )
        .unwrap();
        let n = &s.notify;
        assert_eq!((n.hold, n.digest, n.give_up), (Duration::from_secs(30), Some((9, 30)), Duration::from_secs(3600)));
        assert_eq!(n.ping, Some(UrlSource::File("/etc/patrol/ping".into())));
        assert_eq!(n.targets[0].name, "discord-1");
        assert_eq!(n.targets[0].min_severity, Severity::Warning);
        assert_eq!(n.targets[1].name, "target-2");
        assert_eq!(n.targets[1].url, UrlSource::Credential("notify-url".into()));
        assert_eq!(n.inline_keys(), vec!["notify.target[0].url".to_string()]);
        assert_eq!(build("").unwrap().notify, NotifySettings::default());
        assert_eq!(NotifySettings::default().hold, Duration::from_secs(600), "the default hold is 10 minutes");
        for (text, key) in [
            ("[notify]\nhold = \"soon\"", "notify.hold"),
            ("[notify]\ndigest = \"25:00\"", "notify.digest"),
            ("[[notify.target]]\nkind = \"discord\"", "notify.target[0]"),
            ("[[notify.target]]\nurl = \"x\"\nurl_file = \"f\"", "notify.target[0].url"),
            ("[[notify.target]]\nurl = \"ftp://secret-host/x\"", "notify.target[0].url"),
            ("[[notify.target]]\nurl_file = \"f\"\nkind = \"pager\"", "notify.target[0].kind"),
            ("[[notify.target]]\nurl_file = \"f\"\nevents = [\"everything\"]", "notify.target[0].events"),
            ("[[notify.target]]\nurl_file = \"f\"\nmin_severity = \"loud\"", "notify.target[0].min_severity"),
            (
                "[[notify.target]]\nurl_file = \"f\"\nname = \"a\"\n[[notify.target]]\nurl_file = \"g\"\nname = \"a\"",
                "notify.target[1].name",
            ),
        ] {
            let e = build(text).unwrap_err().to_string();
            assert!(e.contains(&format!(": {key}: ")), "{text:?}: {e}");
            assert!(!e.contains("secret-host"), "the URL is never quoted: {e}");
        }
    }
}
