//! The validated settings: what the rest of patrol reads (built in [`super::build`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{COMMAND_LINE, ConfigError, LoadedPat, NotifySettings, PatError, PatSource, pat};
use crate::secret::SecretUrl;
use crate::validators::{Neuron, Thresholds};

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file it came from, if any.
    pub file: Option<PathBuf>,
    pub miners: Vec<MinerSettings>,
    pub chain: ChainSettings,
    pub validators: ValidatorSettings,
    pub github: GithubSettings,
    pub reconcile: ReconcileSettings,
    pub agent: AgentSettings,
    /// `[notify]`: push notifications and the dead-man ping.
    pub notify: NotifySettings,
}

/// One miner: its hotkey and where its PAT comes from.
#[derive(Debug, Clone)]
pub struct MinerSettings {
    /// A label for logs/metrics (`[[miner]] name`, else `wallet/hotkey`).
    pub name: String,
    pub hotkey_file: PathBuf,
    /// PAT sources in precedence order (see [`pat`]).
    pub pat_sources: Vec<PatSource>,
}

impl MinerSettings {
    /// Read the PAT now (it may have rotated since the last call).
    pub fn load_pat(&self) -> Result<LoadedPat, PatError> {
        pat::resolve(&self.pat_sources, |k| std::env::var(k).ok())
    }

    /// Load the hotkey file.
    pub fn load_hotkey(&self) -> Result<crate::wallet::Hotkey, crate::wallet::WalletError> {
        crate::wallet::Hotkey::load(&self.hotkey_file)
    }
}

/// `[chain]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainSettings {
    /// As configured (`finney`, `test`, `local`), or the URL as shown: without its credentials.
    pub network: String,
    /// Resolved endpoint; it prints without userinfo, query or key-like path segments.
    pub url: SecretUrl,
    pub netuid: u16,
    /// Use a cached metagraph up to this age when the chain is unreachable.
    pub metagraph_max_age: Duration,
    pub connect_timeout: Duration,
    pub call_timeout: Duration,
}

/// `[validators]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatorSettings {
    pub thresholds: Thresholds,
    /// When set, replaces the chain as the validator source.
    pub static_list: Option<Vec<Neuron>>,
}

/// `[github]`.
#[derive(Debug, Clone, PartialEq)]
pub struct GithubSettings {
    pub api_url: String,
    pub timeout: Duration,
}

/// The miner's GitHub client from `[github]` (here, not in `github`: that module is below this one).
impl From<&GithubSettings> for crate::github::GithubOptions {
    fn from(g: &GithubSettings) -> crate::github::GithubOptions {
        crate::github::GithubOptions {
            api_url: g.api_url.clone(),
            timeout: g.timeout,
            ..crate::github::GithubOptions::default()
        }
    }
}

/// `[reconcile]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconcileSettings {
    pub interval: Duration,
    /// Up to this much random delay is added to each interval.
    pub jitter: Duration,
    pub check_timeout: Duration,
    pub broadcast_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Validators probed at once.
    pub concurrency: usize,
    /// `post`: extra attempts for validators that gave no response.
    pub post_retries: u32,
    /// Re-check sooner than `interval` after an inconclusive answer.
    pub recheck_inconclusive: Duration,
    /// Alert when a validator's store stays unavailable (or uncovered) this long: one scoring round.
    pub alert_after: Duration,
    /// How often every eligible validator gets the liveness probe (`None`: no probes, the fixed
    /// interval scheduler of patrol ≤ 0.1).
    pub probe_interval: Option<Duration>,
    /// Up to this much random delay is added to each probe sweep.
    pub probe_jitter: Duration,
    pub probe_timeout: Duration,
    /// A validator whose port refuses connections is probed at `probe_interval` for this long (a
    /// restart usually ends soon), then every `backoff_max`.
    pub fast_probe_refused_for: Duration,
    /// A validator whose probes time out (a black hole may be gone for good) is probed at
    /// `probe_interval` for this long, then every `backoff_max`.
    pub fast_probe_timeout_for: Duration,
    /// Estimated GitHub calls per hour patrol may cause on the PAT (`None`: unlimited).
    pub github_budget: Option<u32>,
}

/// `[reconcile] github_budget`'s default: 3 % of GitHub's 5,000 requests an hour per token, so the
/// validators' own scoring keeps the rest.
pub const DEFAULT_GITHUB_BUDGET: u32 = 150;

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Text with colours on a terminal, journald-style under systemd, plain text otherwise.
    Auto,
    Text,
    Json,
    Journald,
}

/// `[agent]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSettings {
    pub state_dir: PathBuf,
    /// Health/metrics endpoint; `None` = off.
    pub listen: Option<SocketAddr>,
    pub log_format: LogFormat,
    /// Sent as `bt_header_dendrite_ip` (validators ignore it).
    pub external_ip: String,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        ReconcileSettings {
            interval: Duration::from_secs(15 * 60),
            jitter: Duration::from_secs(90),
            check_timeout: Duration::from_secs(15),
            broadcast_timeout: Duration::from_secs(30),
            backoff_initial: Duration::from_secs(60),
            backoff_max: Duration::from_secs(30 * 60),
            // a whole subnet in one wave: waves of 32 made N=256 take 2.3x the limit (BENCHMARKS.md)
            concurrency: 256,
            post_retries: 2,
            recheck_inconclusive: Duration::from_secs(5 * 60),
            alert_after: Duration::from_secs(2 * 3600),
            probe_interval: Some(Duration::from_secs(25)),
            probe_jitter: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(5),
            fast_probe_refused_for: Duration::from_secs(3600),
            fast_probe_timeout_for: Duration::from_secs(10 * 60),
            github_budget: Some(DEFAULT_GITHUB_BUDGET),
        }
    }
}

impl Settings {
    /// The single miner for commands that act as one (`check`, `post`, `doctor`), or a usage error.
    pub fn single_miner(&self) -> Result<&MinerSettings, ConfigError> {
        match self.miners.as_slice() {
            [m] => Ok(m),
            [] => Err(ConfigError::Invalid {
                origin: self.origin(),
                key: "wallet".into(),
                message: "no miner configured".into(),
            }),
            _ => Err(ConfigError::Invalid {
                origin: self.origin(),
                key: "miner".into(),
                message: format!(
                    "{} miners are configured; pick one with --miner NAME (one of: {})",
                    self.miners.len(),
                    self.miners.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            }),
        }
    }

    /// Keep only the miner called `name`.
    pub fn select_miner(&mut self, name: &str) -> Result<(), ConfigError> {
        let known: Vec<String> = self.miners.iter().map(|m| m.name.clone()).collect();
        self.miners.retain(|m| m.name == name);
        if self.miners.is_empty() {
            return Err(ConfigError::Invalid {
                origin: self.origin(),
                key: "--miner".into(),
                message: format!("no miner named {name:?} (configured: {})", known.join(", ")),
            });
        }
        Ok(())
    }

    /// The file name or "command line", for messages.
    pub fn origin(&self) -> String {
        self.file.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| COMMAND_LINE.into())
    }
}
