//! The scenario file as serde reads it: `kind` picks a fault's or strategy's variant, and each kind
//! takes only its own keys. [`deserialize`] names the key of serde's own errors.

use serde::Deserialize;

use super::ScenarioError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub(super) name: Option<String>,
    pub(super) seed: Option<u64>,
    pub(super) duration: String,
    pub(super) sample: Option<String>,
    pub(super) subnet: RawSubnet,
    #[serde(default)]
    pub(super) fault: Vec<RawFault>,
    #[serde(default)]
    pub(super) strategy: Vec<RawStrategy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSubnet {
    pub(super) validators: u16,
    pub(super) stake: Option<RawStake>,
    /// Other miners registered at every validator (they only matter for normalised weights).
    pub(super) background_miners: Option<u16>,
    pub(super) scoring_round: Option<String>,
    pub(super) ema_alpha: Option<f64>,
    /// How long a validator restart takes (down, then up).
    pub(super) restart_downtime: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub(super) enum RawStake {
    Equal {
        total: Option<f64>,
    },
    /// Pareto-like: stake_i ∝ 1/(i+1)^exponent (a few whales, a long tail).
    Power {
        total: Option<f64>,
        exponent: Option<f64>,
    },
    List {
        values: Vec<f64>,
    },
}

/// One `[[fault]]`: `kind` picks the variant, and each kind takes only its own keys besides the
/// timing ones ([`RawWhen`]); serde refuses an unknown kind or a key the kind does not take.
#[derive(Debug, Deserialize, strum::IntoStaticStr)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub(super) enum RawFault {
    RestartEmptyStore(Keys<Restarts>),
    Restart(Keys<Restarts>),
    CrashLoop(Keys<Restarts, Period>),
    Unreachable(Keys<Lasting>),
    CorruptStore(Keys<Lasting>),
    StoreLoss(Keys<Targeted>),
    GithubOutage(Keys<Github>),
    GithubRateLimit(Keys<Github, RetryAfter>),
    PatRevoked(Keys<Nothing>),
    PatRotated(Keys<Nothing>),
}

/// A fault kind's keys: the timing every kind takes, and its own (`own`, and `more` for a kind
/// that adds to another's; serde's flatten inside a flattened struct would hand its keys to
/// `Keys` as unknown, so the parts sit side by side).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Keys<K, M = Nothing> {
    #[serde(flatten)]
    pub(super) when: RawWhen,
    #[serde(flatten)]
    pub(super) own: K,
    #[serde(flatten)]
    pub(super) more: M,
}

/// When a fault strikes: exactly one of `at`, `every`, `rate_per_day`, inside `[start, end]`.
#[derive(Debug, Deserialize)]
pub(super) struct RawWhen {
    pub(super) at: Option<Vec<String>>,
    pub(super) every: Option<String>,
    pub(super) rate_per_day: Option<f64>,
    pub(super) start: Option<String>,
    pub(super) end: Option<String>,
}

/// Which validators: "all", a list of validator indices, or { random = N } / { fraction = F }.
pub(super) type RawTargets = Option<toml::Value>;

#[derive(Debug, Deserialize)]
pub(super) struct Restarts {
    pub(super) validators: RawTargets,
    /// Each restart's downtime drawn uniformly from [downtime_min, downtime_max] instead of the
    /// subnet's `restart_downtime`.
    pub(super) downtime_min: Option<String>,
    pub(super) downtime_max: Option<String>,
}

/// A crash loop's restarts: every `period` for `duration`.
#[derive(Debug, Deserialize)]
pub(super) struct Period {
    pub(super) duration: Option<String>,
    pub(super) period: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Lasting {
    pub(super) validators: RawTargets,
    pub(super) duration: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Targeted {
    pub(super) validators: RawTargets,
}

#[derive(Debug, Deserialize)]
pub(super) struct Github {
    pub(super) duration: Option<String>,
    /// Who sees GitHub fail: "validators", "miner" or "both".
    pub(super) scope: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RetryAfter {
    pub(super) retry_after: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Nothing {}

/// One `[[strategy]]`, by `kind`; `name` defaults to the kind.
#[derive(Debug, Deserialize, strum::IntoStaticStr)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[strum(serialize_all = "snake_case")]
pub(super) enum RawStrategy {
    PostOnce {
        name: Option<String>,
        /// The miner re-posts this long after rotating the PAT.
        repost_delay: Option<String>,
    },
    PostRetries {
        name: Option<String>,
        retries: Option<u32>,
        repost_delay: Option<String>,
    },
    PostEvery {
        name: Option<String>,
        /// The cron period (`gitt miner post` every N minutes).
        every: Option<String>,
    },
    Patrol {
        name: Option<String>,
        interval: Option<String>,
        jitter: Option<String>,
        backoff_initial: Option<String>,
        backoff_max: Option<String>,
        /// The liveness probe cadence, or "off" (the fixed-interval scheduler).
        probe_interval: Option<String>,
        /// GitHub calls an hour (integer), or "off".
        github_budget: Option<toml::Value>,
        /// `patrol run --dry-run`.
        dry_run: Option<bool>,
    },
}

/// The TOML as [`Raw`]. serde's own errors (an unknown kind or key, a wrong type) name the key
/// as `fault[1].kind`: the path to the table (serde_path_to_error) and the key serde names.
pub(super) fn deserialize(path: &str, text: &str) -> Result<Raw, ScenarioError> {
    // toml's text is several lines with a source excerpt: one line, as the config's errors are
    let one_line = |e: &toml::de::Error| crate::config::toml_one_line(&e.to_string());
    let parse = |e: &toml::de::Error| ScenarioError::Parse { path: path.into(), message: one_line(e) };
    let de = toml::Deserializer::parse(text).map_err(|e| parse(&e))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let named = ["unknown field `", "missing field `"]
            .iter()
            .find_map(|p| e.inner().message().strip_prefix(p)?.split('`').next())
            .or_else(|| e.inner().message().starts_with("unknown variant `").then_some("kind"));
        let key = match (e.path().to_string(), named) {
            (top, None) if top == "." => return parse(e.inner()),
            (top, Some(k)) if top == "." => k.to_string(),
            // the path ends at the table, or (a top-level key) is the key itself
            (path, Some(k)) if path != k && !path.ends_with(&format!(".{k}")) => format!("{path}.{k}"),
            (path, _) => path,
        };
        ScenarioError::Invalid { path: path.into(), key, message: one_line(e.inner()) }
    })
}
