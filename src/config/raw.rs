//! The TOML schema exactly as written by users: plain serde, `deny_unknown_fields`, every field
//! optional. Nothing outside `config` sees these types; [`super::Settings`] is the validated form.

use serde::Deserialize;

/// The whole file. See `config.example.toml` for every key with its default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub wallet: Option<RawWallet>,
    pub pat: Option<RawPat>,
    pub chain: Option<RawChain>,
    pub validators: Option<RawValidators>,
    pub github: Option<RawGithub>,
    pub reconcile: Option<RawReconcile>,
    pub agent: Option<RawAgent>,
    /// Several miners in one agent; exclusive with top-level `[wallet]`/`[pat]`.
    pub miner: Option<Vec<RawMiner>>,
    pub notify: Option<RawNotify>,
}

/// `[notify]` and its `[[notify.target]]` list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    /// A duration ("10m") or whole seconds.
    pub hold: Option<toml::Value>,
    pub ping: Option<String>,
    pub ping_file: Option<String>,
    pub ping_credential: Option<String>,
    /// "HH:MM" (UTC) or "off".
    pub digest: Option<String>,
    pub give_up: Option<String>,
    pub timeout: Option<String>,
    pub flush: Option<String>,
    pub target: Option<Vec<RawTarget>>,
}

/// One `[[notify.target]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub name: Option<String>,
    pub url: Option<String>,
    pub url_file: Option<String>,
    pub url_credential: Option<String>,
    pub kind: Option<String>,
    pub events: Option<Vec<String>>,
    pub min_severity: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWallet {
    pub name: Option<String>,
    pub hotkey: Option<String>,
    pub path: Option<String>,
    pub hotkey_file: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPat {
    pub file: Option<String>,
    pub credential: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChain {
    pub network: Option<String>,
    pub netuid: Option<u16>,
    pub metagraph_max_age: Option<String>,
    pub connect_timeout: Option<String>,
    pub call_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawValidators {
    pub min_vtrust: Option<f64>,
    pub min_stake: Option<f64>,
    #[serde(rename = "static")]
    pub static_list: Option<Vec<RawStaticValidator>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStaticValidator {
    pub uid: u16,
    pub hotkey: String,
    pub ip: String,
    pub port: u16,
    pub stake: f64,
    pub vtrust: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGithub {
    pub api_url: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReconcile {
    pub interval: Option<String>,
    pub jitter: Option<String>,
    pub check_timeout: Option<String>,
    pub broadcast_timeout: Option<String>,
    pub backoff_initial: Option<String>,
    pub backoff_max: Option<String>,
    pub concurrency: Option<usize>,
    pub post_retries: Option<u32>,
    pub recheck_inconclusive: Option<String>,
    pub alert_after: Option<String>,
    /// A duration, or "off".
    pub probe_interval: Option<String>,
    pub probe_jitter: Option<String>,
    pub probe_timeout: Option<String>,
    pub fast_probe_refused_for: Option<String>,
    pub fast_probe_timeout_for: Option<String>,
    /// Calls per hour (integer), or "off".
    pub github_budget: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub state_dir: Option<String>,
    pub listen: Option<String>,
    pub log_format: Option<String>,
    pub external_ip: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMiner {
    pub name: Option<String>,
    pub wallet: Option<RawWallet>,
    pub pat: Option<RawPat>,
}
