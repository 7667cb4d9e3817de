//! Configuration: a TOML file (schema in [`raw`], documented in `config.example.toml`), then
//! command-line and environment overrides, validated into [`Settings`].
//!
//! Two phases, as ripgrep and zincati do it: serde parses (`deny_unknown_fields`, so a typo is an
//! error, not a silently ignored key), then [`Settings::build`] ([`build`]) resolves defaults,
//! paths and durations into the types of [`settings`]. Every error names the file, the key and
//! what is wrong. Nothing downstream sees raw types. Reading secrets (the PAT) and the hotkey
//! happens later, on demand ([`pat`], `wallet`). This file: reading the file, the errors, the
//! overrides.

mod build;
pub mod notify;
pub mod pat;
pub mod raw;
mod settings;

use std::path::{Path, PathBuf};

use build::Builder;
pub(crate) use build::one_line as toml_one_line;
pub use build::{default_state_dir, github_budget, resolve_network};
pub use notify::{NotifySettings, Severity, TargetKind, TargetSettings, UrlSource};
pub use pat::{LoadedPat, PatError, PatSource};
pub use settings::{
    AgentSettings, ChainSettings, DEFAULT_GITHUB_BUDGET, GithubSettings, LogFormat, MinerSettings, ReconcileSettings,
    Settings, ValidatorSettings,
};

/// gitt's network names (gittensor/constants.py `NETWORK_MAP`).
pub const NETWORKS: [(&str, &str); 3] = [
    ("finney", "wss://entrypoint-finney.opentensor.ai:443"),
    ("test", "wss://test.finney.opentensor.ai:443"),
    ("local", "ws://127.0.0.1:9944"),
];

/// Default health/metrics listen address (loopback only).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9184";

/// The largest config file read (1 MiB). A config with every key and 256 static validators is
/// about 40 KiB; anything bigger is the wrong file (`--config /dev/zero` would otherwise be read
/// until memory runs out).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The origin of a value given as a flag, in messages ("command line: --min-vtrust: …").
const COMMAND_LINE: &str = "command line";

/// A configuration problem. Always exit code 78 at the CLI edge.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Missing, unreadable, not a regular file, or larger than [`MAX_CONFIG_BYTES`] (a patrol
    /// config is a few KiB: a bigger file is the wrong one).
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: crate::fsutil::ReadError,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{origin}: {key}: {message}")]
    Invalid { origin: String, key: String, message: String },
}

/// Command-line (and env) values that override the file. `None` = not given.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub wallet: Option<String>,
    pub hotkey: Option<String>,
    pub wallet_path: Option<String>,
    pub hotkey_file: Option<String>,
    pub pat: Option<String>,
    pub pat_file: Option<String>,
    /// `--network`.
    pub network: Option<String>,
    /// `--rpc-url` (gitt compatibility): wins over `--network`.
    pub rpc_url: Option<String>,
    pub netuid: Option<u16>,
    pub min_vtrust: Option<f64>,
    pub min_stake: Option<f64>,
    pub github_api_url: Option<String>,
    pub state_dir: Option<String>,
    pub listen: Option<String>,
    pub log_format: Option<String>,
}

impl Overrides {
    fn touches_miner(&self) -> bool {
        self.wallet.is_some()
            || self.hotkey.is_some()
            || self.wallet_path.is_some()
            || self.hotkey_file.is_some()
            || self.pat.is_some()
            || self.pat_file.is_some()
    }
}

/// Where the config file is, if any: `--config`, else `$PATROL_CONFIG`, else
/// `$XDG_CONFIG_HOME/patrol/config.toml` or `~/.config/patrol/config.toml` if it exists, else
/// `/etc/patrol/config.toml` if it exists, else none (defaults + flags, like `gitt`).
pub fn locate(explicit: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = env("PATROL_CONFIG").filter(|s| !s.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let xdg = env("XDG_CONFIG_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".config")));
    [xdg.map(|d| d.join("patrol/config.toml")), Some(PathBuf::from("/etc/patrol/config.toml"))]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
}

impl Settings {
    /// Read `file` (if any), apply overrides, validate. Environment is read from the process.
    pub fn load(file: Option<&Path>, ov: &Overrides) -> Result<Settings, ConfigError> {
        let env = |k: &str| std::env::var(k).ok();
        let text = match file {
            Some(p) => Some(read_config(p)?),
            None => None,
        };
        let settings = Settings::build(file, text.as_deref(), ov, env)?;
        if let Some(p) = file {
            check_inline_secrets(p, &settings)?;
        }
        Ok(settings)
    }
}

/// A notification URL written in the config file is a secret like the PAT: the file must then be
/// readable by its owner only (the PAT file rule), or the URL moves to `url_file` /
/// `url_credential`.
fn check_inline_secrets(p: &Path, settings: &Settings) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt as _;
    let keys = settings.notify.inline_keys();
    let Some(key) = keys.first() else { return Ok(()) };
    let mode = std::fs::metadata(p)
        .map_err(|e| ConfigError::Read { path: p.to_path_buf(), source: e.into() })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        origin: p.display().to_string(),
        key: key.clone(),
        message: format!(
            "a notification URL is a secret, and this file is readable by group or others (mode {mode:04o}); run: chmod 600 {}, or move the URL to a file (url_file / ping_file, mode 0600) or a systemd credential (url_credential / ping_credential)",
            p.display()
        ),
    })
}

/// Read the config file: a regular file of at most [`MAX_CONFIG_BYTES`], UTF-8.
fn read_config(p: &Path) -> Result<String, ConfigError> {
    crate::fsutil::read_capped_text(p, MAX_CONFIG_BYTES).map_err(|e| match e {
        // what the file says, as a TOML error would
        crate::fsutil::ReadError::NotUtf8 => {
            ConfigError::Parse { path: p.display().to_string(), message: e.to_string() }
        }
        source => ConfigError::Read { path: p.to_path_buf(), source },
    })
}

#[cfg(test)]
mod tests;
