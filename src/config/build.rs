//! From the raw TOML ([`super::raw`]) and the overrides to [`Settings`]: defaults, paths,
//! durations, each error naming its key.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{RawConfig, RawMiner, RawPat, RawWallet};
use super::*;
use crate::secret::SecretUrl;
use crate::validators::{Neuron, Thresholds};

impl Settings {
    /// Parse and validate from text; `file` is used for messages and relative paths.
    pub fn build(
        file: Option<&Path>,
        text: Option<&str>,
        ov: &Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let origin = file.map(|p| p.display().to_string()).unwrap_or_else(|| COMMAND_LINE.into());
        let raw: RawConfig = match text {
            // The message may quote the file (a PAT pasted under an unknown key): never the token.
            Some(t) => toml::from_str(t).map_err(|e| ConfigError::Parse {
                path: origin.clone(),
                message: crate::secret::redact_tokens(&one_line(&e.to_string())).into_owned(),
            })?,
            None => RawConfig::default(),
        };
        let v = Builder { origin: origin.clone(), env: &env, base: file.map(crate::fsutil::parent_dir) };
        v.settings(raw, ov, file)
    }
}

/// What building [`Settings`] from the file needs besides the file: where it came from (for
/// messages), the environment, and the directory relative paths are relative to.
pub(super) struct Builder<'a, E: Fn(&str) -> Option<String>> {
    pub(super) origin: String,
    pub(super) env: &'a E,
    /// Directory of the config file: relative paths in the file are relative to it.
    pub(super) base: Option<PathBuf>,
}

impl<E: Fn(&str) -> Option<String>> Builder<'_, E> {
    pub(super) fn err(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { origin: self.origin.clone(), key: key.into(), message: message.into() }
    }

    /// An invalid value named where it came from: `flag` when it was given on the command line
    /// (`Some`), else the file's `key` (the file's value or the default).
    pub(super) fn err_at(&self, flag: Option<&str>, key: &str, message: impl Into<String>) -> ConfigError {
        match flag {
            Some(f) => ConfigError::Invalid { origin: COMMAND_LINE.into(), key: f.into(), message: message.into() },
            None => self.err(key, message),
        }
    }

    pub(super) fn duration(&self, key: &str, v: Option<&str>, default: Duration) -> Result<Duration, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) => humantime::parse_duration(s.trim())
                .map_err(|e| self.err(key, format!("invalid duration {s:?} ({e}); use e.g. \"30s\", \"15m\", \"2h\""))),
        }
    }

    pub(super) fn positive(&self, key: &str, d: Duration) -> Result<Duration, ConfigError> {
        if d.is_zero() { Err(self.err(key, "must be greater than zero")) } else { Ok(d) }
    }

    /// Expand `~` and make relative paths relative to the config file's directory.
    pub(super) fn path(&self, s: &str) -> PathBuf {
        let expanded = expand_home(s, self.env);
        match &self.base {
            Some(b) if expanded.is_relative() => b.join(expanded),
            _ => expanded,
        }
    }

    pub(super) fn settings(
        &self,
        raw: RawConfig,
        ov: &Overrides,
        file: Option<&Path>,
    ) -> Result<Settings, ConfigError> {
        let miners = self.miners(&raw, ov)?;
        Ok(Settings {
            file: file.map(Path::to_path_buf),
            miners,
            chain: self.chain(raw.chain.unwrap_or_default(), ov)?,
            validators: self.validators(raw.validators.unwrap_or_default(), ov)?,
            github: self.github(raw.github.unwrap_or_default(), ov)?,
            reconcile: self.reconcile(raw.reconcile.unwrap_or_default())?,
            agent: self.agent(raw.agent.unwrap_or_default(), ov)?,
            notify: self.notify(raw.notify.unwrap_or_default())?,
        })
    }

    pub(super) fn miners(&self, raw: &RawConfig, ov: &Overrides) -> Result<Vec<MinerSettings>, ConfigError> {
        match &raw.miner {
            Some(list) => {
                if raw.wallet.is_some() || raw.pat.is_some() {
                    return Err(self.err("miner", "use either top-level [wallet]/[pat] or [[miner]] entries, not both"));
                }
                if list.is_empty() {
                    return Err(self.err("miner", "[[miner]] is empty"));
                }
                if ov.touches_miner() && list.len() > 1 {
                    return Err(self.err(
                        "miner",
                        "wallet/PAT flags apply to a single miner; with several [[miner]] entries set them in the file",
                    ));
                }
                let mut out = Vec::new();
                for (i, m) in list.iter().enumerate() {
                    let ms = self.miner(&format!("miner[{i}]"), m, ov, false)?;
                    if out.iter().any(|o: &MinerSettings| o.name == ms.name) {
                        return Err(
                            self.err(&format!("miner[{i}].name"), format!("duplicate miner name {:?}", ms.name))
                        );
                    }
                    out.push(ms);
                }
                Ok(out)
            }
            None => {
                let m = RawMiner { name: None, wallet: raw.wallet.clone(), pat: raw.pat.clone() };
                Ok(vec![self.miner("", &m, ov, true)?])
            }
        }
    }

    pub(super) fn miner(
        &self,
        prefix: &str,
        m: &RawMiner,
        ov: &Overrides,
        allow_env: bool,
    ) -> Result<MinerSettings, ConfigError> {
        let key = |k: &str| if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
        let w = m.wallet.clone().unwrap_or_default();
        let RawWallet { name, hotkey, path, hotkey_file } = w;
        let name_w = ov.wallet.clone().or(name).unwrap_or_else(|| "default".into());
        let hotkey_n = ov.hotkey.clone().or(hotkey).unwrap_or_else(|| "default".into());
        for (k, flag, v) in [
            ("wallet.name", ov.wallet.is_some().then_some("--wallet"), &name_w),
            ("wallet.hotkey", ov.hotkey.is_some().then_some("--hotkey"), &hotkey_n),
        ] {
            if v.is_empty() || v.contains('/') {
                return Err(self.err_at(flag, &key(k), format!("{v:?} must be a plain name (no '/')")));
            }
        }
        let hotkey_file =
            match ov.hotkey_file.as_deref().map(|s| expand_home(s, self.env)).or(hotkey_file.map(|s| self.path(&s))) {
                Some(p) => p,
                None => {
                    let root = ov
                        .wallet_path
                        .as_deref()
                        .map(|s| expand_home(s, self.env))
                        .or(path.map(|s| self.path(&s)))
                        .or_else(|| (self.env)("BT_WALLET_PATH").map(|s| expand_home(&s, self.env)))
                        .unwrap_or_else(|| expand_home("~/.bittensor/wallets", self.env));
                    root.join(&name_w).join("hotkeys").join(&hotkey_n)
                }
            };
        let RawPat { file, credential } = m.pat.clone().unwrap_or_default();
        let mut sources = Vec::new();
        if let Some(lit) = ov.pat.as_deref() {
            sources.push(PatSource::Literal(crate::secret::Pat::new(lit).ok_or_else(|| ConfigError::Invalid {
                origin: COMMAND_LINE.into(),
                key: "--pat".into(),
                message: "is empty".into(),
            })?));
        }
        if let Some(f) = ov.pat_file.as_deref() {
            sources.push(PatSource::File(expand_home(f, self.env)));
        }
        if let Some(c) = credential {
            if c.is_empty() || c.contains('/') {
                return Err(self.err(&key("pat.credential"), "must be a credential name (no '/')"));
            }
            sources.push(PatSource::Credential(c));
        }
        if allow_env {
            sources.push(PatSource::Env);
        }
        if let Some(f) = file {
            sources.push(PatSource::File(self.path(&f)));
        }
        let explicit_file = ov.hotkey_file.is_some() || m.wallet.as_ref().is_some_and(|w| w.hotkey_file.is_some());
        let name = m.name.clone().unwrap_or_else(|| {
            if explicit_file { hotkey_file.display().to_string() } else { format!("{name_w}/{hotkey_n}") }
        });
        Ok(MinerSettings { name, hotkey_file, pat_sources: sources })
    }

    pub(super) fn chain(&self, c: raw::RawChain, ov: &Overrides) -> Result<ChainSettings, ConfigError> {
        let flag = if ov.rpc_url.is_some() { Some("--rpc-url") } else { ov.network.is_some().then_some("--network") };
        let network = ov.rpc_url.clone().or(ov.network.clone()).or(c.network).unwrap_or_else(|| "finney".into());
        let url = SecretUrl::new(&resolve_network(&network).map_err(|m| self.err_at(flag, "chain.network", m))?);
        let netuid = ov.netuid.or(c.netuid).unwrap_or(74);
        // A URL may carry credentials (`wss://user:TOKEN@host/ws?apikey=KEY`): keep only its shown form.
        let network = if network.contains("://") { url.shown().to_string() } else { network };
        Ok(ChainSettings {
            network,
            url,
            netuid,
            metagraph_max_age: self.duration(
                "chain.metagraph_max_age",
                c.metagraph_max_age.as_deref(),
                Duration::from_secs(6 * 3600),
            )?,
            connect_timeout: self.positive(
                "chain.connect_timeout",
                self.duration("chain.connect_timeout", c.connect_timeout.as_deref(), Duration::from_secs(10))?,
            )?,
            call_timeout: self.positive(
                "chain.call_timeout",
                self.duration("chain.call_timeout", c.call_timeout.as_deref(), Duration::from_secs(30))?,
            )?,
        })
    }

    pub(super) fn validators(&self, v: raw::RawValidators, ov: &Overrides) -> Result<ValidatorSettings, ConfigError> {
        let min_vtrust = ov.min_vtrust.or(v.min_vtrust).unwrap_or(0.25);
        let min_stake = ov.min_stake.or(v.min_stake).unwrap_or(15_000.0);
        if !min_vtrust.is_finite() {
            let flag = ov.min_vtrust.is_some().then_some("--min-vtrust");
            return Err(self.err_at(flag, "validators.min_vtrust", "must be a finite number"));
        }
        if !min_stake.is_finite() || min_stake < 0.0 {
            let flag = ov.min_stake.is_some().then_some("--min-stake");
            return Err(self.err_at(flag, "validators.min_stake", "must be a non-negative number (α)"));
        }
        let static_list = match v.static_list {
            None => None,
            Some(list) => {
                let mut out: Vec<Neuron> = Vec::with_capacity(list.len());
                for (i, s) in list.into_iter().enumerate() {
                    let k = |f: &str| format!("validators.static[{i}].{f}");
                    crate::wallet::ss58_decode(&s.hotkey).map_err(|e| self.err(&k("hotkey"), e.to_string()))?;
                    let ip: IpAddr =
                        s.ip.parse().map_err(|_| self.err(&k("ip"), format!("{:?} is not an IP address", s.ip)))?;
                    if !s.stake.is_finite() || s.stake < 0.0 {
                        return Err(self.err(&k("stake"), "must be a non-negative number (α)"));
                    }
                    if !(0.0..=1.0).contains(&s.vtrust) {
                        return Err(self.err(&k("vtrust"), "must be between 0 and 1"));
                    }
                    if out.iter().any(|n| n.uid == s.uid) {
                        return Err(self.err(&k("uid"), format!("uid {} appears twice", s.uid)));
                    }
                    out.push(Neuron {
                        uid: s.uid,
                        hotkey: s.hotkey,
                        ip: Some(ip),
                        port: s.port,
                        vtrust: s.vtrust,
                        stake: s.stake,
                        validator_permit: true,
                    });
                }
                Some(out)
            }
        };
        Ok(ValidatorSettings { thresholds: Thresholds { min_vtrust, min_stake }, static_list })
    }

    pub(super) fn github(&self, g: raw::RawGithub, ov: &Overrides) -> Result<GithubSettings, ConfigError> {
        let api_url = ov.github_api_url.clone().or(g.api_url).unwrap_or_else(|| "https://api.github.com".into());
        let trimmed = api_url.trim_end_matches('/').to_string();
        if !(trimmed.starts_with("https://") || trimmed.starts_with("http://")) {
            return Err(self.err("github.api_url", format!("{api_url:?} must be an http(s) URL")));
        }
        Ok(GithubSettings {
            api_url: trimmed,
            timeout: self.positive(
                "github.timeout",
                self.duration("github.timeout", g.timeout.as_deref(), Duration::from_secs(15))?,
            )?,
        })
    }

    pub(super) fn reconcile(&self, r: raw::RawReconcile) -> Result<ReconcileSettings, ConfigError> {
        let d = ReconcileSettings::default();
        let pos = |k: &str, v: Option<&String>, def: Duration| -> Result<Duration, ConfigError> {
            self.positive(
                &format!("reconcile.{k}"),
                self.duration(&format!("reconcile.{k}"), v.map(String::as_str), def)?,
            )
        };
        let s = ReconcileSettings {
            interval: pos("interval", r.interval.as_ref(), d.interval)?,
            jitter: self.duration("reconcile.jitter", r.jitter.as_deref(), d.jitter)?,
            check_timeout: pos("check_timeout", r.check_timeout.as_ref(), d.check_timeout)?,
            broadcast_timeout: pos("broadcast_timeout", r.broadcast_timeout.as_ref(), d.broadcast_timeout)?,
            backoff_initial: pos("backoff_initial", r.backoff_initial.as_ref(), d.backoff_initial)?,
            backoff_max: pos("backoff_max", r.backoff_max.as_ref(), d.backoff_max)?,
            concurrency: r.concurrency.unwrap_or(d.concurrency),
            post_retries: r.post_retries.unwrap_or(d.post_retries),
            recheck_inconclusive: pos("recheck_inconclusive", r.recheck_inconclusive.as_ref(), d.recheck_inconclusive)?,
            alert_after: pos("alert_after", r.alert_after.as_ref(), d.alert_after)?,
            probe_interval: match r.probe_interval.as_deref().map(str::trim) {
                Some("off") => None,
                Some(v) => Some(pos("probe_interval", Some(&v.to_string()), Duration::ZERO)?),
                None => d.probe_interval,
            },
            probe_jitter: self.duration("reconcile.probe_jitter", r.probe_jitter.as_deref(), d.probe_jitter)?,
            probe_timeout: pos("probe_timeout", r.probe_timeout.as_ref(), d.probe_timeout)?,
            fast_probe_refused_for: self.duration(
                "reconcile.fast_probe_refused_for",
                r.fast_probe_refused_for.as_deref(),
                d.fast_probe_refused_for,
            )?,
            fast_probe_timeout_for: self.duration(
                "reconcile.fast_probe_timeout_for",
                r.fast_probe_timeout_for.as_deref(),
                d.fast_probe_timeout_for,
            )?,
            github_budget: match &r.github_budget {
                None => d.github_budget,
                Some(v) => github_budget(v).map_err(|m| self.err("reconcile.github_budget", m))?,
            },
        };
        if s.concurrency == 0 {
            return Err(self.err("reconcile.concurrency", "must be at least 1"));
        }
        if s.backoff_max < s.backoff_initial {
            return Err(self.err("reconcile.backoff_max", "must not be smaller than reconcile.backoff_initial"));
        }
        if s.jitter > s.interval {
            return Err(self.err("reconcile.jitter", "must not exceed reconcile.interval"));
        }
        if let Some(p) = s.probe_interval
            && s.probe_jitter > p
        {
            return Err(self.err("reconcile.probe_jitter", "must not exceed reconcile.probe_interval"));
        }
        Ok(s)
    }

    pub(super) fn agent(&self, a: raw::RawAgent, ov: &Overrides) -> Result<AgentSettings, ConfigError> {
        let state_dir = match ov.state_dir.as_deref() {
            Some(s) => expand_home(s, self.env),
            None => match a.state_dir {
                Some(s) => self.path(&s),
                None => default_state_dir(self.env),
            },
        };
        let listen_s = ov.listen.clone().or(a.listen).unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen = match listen_s.trim() {
            "off" | "" | "none" => None,
            s => Some(s.parse::<SocketAddr>().map_err(|_| {
                self.err_at(
                    ov.listen.is_some().then_some("--listen"),
                    "agent.listen",
                    format!("{s:?} is not an address like \"127.0.0.1:9184\" (or \"off\")"),
                )
            })?),
        };
        let fmt_s = ov.log_format.clone().or(a.log_format).unwrap_or_else(|| "auto".into());
        let log_format = match fmt_s.as_str() {
            "auto" => LogFormat::Auto,
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            "journald" => LogFormat::Journald,
            other => {
                return Err(self.err_at(
                    ov.log_format.is_some().then_some("--log-format"),
                    "agent.log_format",
                    format!("{other:?} is not one of auto, text, json, journald"),
                ));
            }
        };
        let external_ip = a.external_ip.unwrap_or_else(|| "0.0.0.0".into());
        if external_ip.parse::<IpAddr>().is_err() {
            return Err(self.err("agent.external_ip", format!("{external_ip:?} is not an IP address")));
        }
        Ok(AgentSettings { state_dir, listen, log_format, external_ip })
    }
}

/// A `github_budget` value: a positive number of calls per hour, or `"off"` (`None`).
pub fn github_budget(v: &toml::Value) -> Result<Option<u32>, String> {
    match v {
        toml::Value::String(s) if s.trim() == "off" => Ok(None),
        toml::Value::Integer(n) if (1..=i64::from(u32::MAX)).contains(n) => Ok(u32::try_from(*n).ok()),
        other => Err(format!("{other} is not a positive number of calls per hour (or \"off\")")),
    }
}

/// `$STATE_DIRECTORY` (systemd; first entry), else `$XDG_STATE_HOME/patrol`, else
/// `~/.local/state/patrol`.
pub fn default_state_dir(env: &impl Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(s) = env("STATE_DIRECTORY").filter(|s| !s.is_empty()) {
        return PathBuf::from(s.split(':').next().unwrap_or(&s));
    }
    if let Some(x) = env("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
        return Path::new(&x).join("patrol");
    }
    expand_home("~/.local/state/patrol", env)
}

/// Map `finney`/`test`/`local` (case-insensitive, like gitt) to their endpoints; pass ws/wss URLs.
pub fn resolve_network(network: &str) -> Result<String, String> {
    let n = network.trim();
    if let Some((_, url)) = NETWORKS.iter().find(|(name, _)| name.eq_ignore_ascii_case(n)) {
        return Ok((*url).to_string());
    }
    if n.starts_with("ws://") || n.starts_with("wss://") {
        return Ok(n.to_string());
    }
    // Shown without credentials: `https://user:TOKEN@host` is a mistake that must not print the token.
    Err(format!("{:?} is not finney, test, local or a ws:// / wss:// URL", SecretUrl::new(network).shown()))
}

fn expand_home(s: &str, env: &impl Fn(&str) -> Option<String>) -> PathBuf {
    match s.strip_prefix("~/") {
        Some(rest) => match env("HOME") {
            Some(h) => Path::new(&h).join(rest),
            None => PathBuf::from(s),
        },
        None if s == "~" => env("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(s)),
        None => PathBuf::from(s),
    }
}

/// toml errors span several lines (a source excerpt); keep them to one. The excerpt keeps the key
/// (`2 | netuid = …`: a type error names no key otherwise) but never the value, which may be a
/// secret (a PAT pasted under an unknown key); a line that is not `key = value` or a `[table]`
/// header is not quoted at all.
pub(crate) fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|') && !l.chars().all(|c| c == '^' || c == ' '))
        .map(|l| match l.split_once('|') {
            Some((n, src)) if !n.trim().is_empty() && n.trim().chars().all(|c| c.is_ascii_digit()) => {
                let src = src.trim();
                match src.split_once('=') {
                    _ if src.starts_with('[') => format!("{} | {src}", n.trim()),
                    Some((key, _)) => format!("{} | {} = …", n.trim(), key.trim()),
                    None => format!("{} | …", n.trim()),
                }
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}
