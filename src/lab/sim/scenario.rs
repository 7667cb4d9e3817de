//! Scenario files for `patrol simulate` (TOML, `deny_unknown_fields`; see `examples/*.toml`):
//! the subnet, the faults over time, and the strategies to compare. Parsing only validates;
//! [`super::faults`] turns the fault specs into a concrete, seeded timeline.

use std::time::Duration;

use serde::Deserialize;

/// Why a scenario file is unusable. Messages name the key.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("scenario {path}: {message}")]
    Parse { path: String, message: String },
    #[error("scenario {path}: {key}: {message}")]
    Invalid { path: String, key: String, message: String },
}

/// The longest time a scenario may name: `"100y"` (humantime's year is 365.25 days). The
/// simulation adds times and durations in whole seconds (`u64`), which must not overflow.
const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: Option<String>,
    seed: Option<u64>,
    duration: String,
    sample: Option<String>,
    subnet: RawSubnet,
    #[serde(default)]
    fault: Vec<RawFault>,
    #[serde(default)]
    strategy: Vec<RawStrategy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubnet {
    validators: u16,
    stake: Option<RawStake>,
    /// Other miners registered at every validator (they only matter for normalised weights).
    background_miners: Option<u16>,
    scoring_round: Option<String>,
    ema_alpha: Option<f64>,
    /// How long a validator restart takes (down, then up).
    restart_downtime: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
enum RawStake {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    kind: String,
    /// "all", a list of validator indices, or { random = N } / { fraction = F }.
    validators: Option<toml::Value>,
    at: Option<Vec<String>>,
    every: Option<String>,
    rate_per_day: Option<f64>,
    start: Option<String>,
    end: Option<String>,
    duration: Option<String>,
    /// crash_loop: time between crashes inside the window.
    period: Option<String>,
    /// github faults: who sees GitHub fail: "validators", "miner" or "both".
    scope: Option<String>,
    retry_after: Option<String>,
    /// restarts: each one's downtime drawn uniformly from [downtime_min, downtime_max] instead of
    /// the subnet's `restart_downtime`.
    downtime_min: Option<String>,
    downtime_max: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStrategy {
    name: Option<String>,
    kind: String,
    retries: Option<u32>,
    interval: Option<String>,
    jitter: Option<String>,
    backoff_initial: Option<String>,
    backoff_max: Option<String>,
    /// post strategies: the miner re-posts this long after rotating the PAT.
    repost_delay: Option<String>,
    /// post_every: the cron period (`gitt miner post` every N minutes).
    every: Option<String>,
    /// patrol: the liveness probe cadence, or "off" (the fixed-interval scheduler).
    probe_interval: Option<String>,
    /// patrol: GitHub calls an hour (integer), or "off".
    github_budget: Option<toml::Value>,
    /// patrol: `patrol run --dry-run`.
    dry_run: Option<bool>,
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub seed: u64,
    pub duration: Duration,
    pub sample: Duration,
    pub validators: u16,
    /// Stake per validator, α.
    pub stakes: Vec<f64>,
    pub background_miners: u16,
    pub scoring_round: Duration,
    pub ema_alpha: f64,
    pub restart_downtime: Duration,
    pub faults: Vec<FaultSpec>,
    pub strategies: Vec<Strategy>,
}

/// Which validators a fault hits.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    All,
    List(Vec<u16>),
    Random(u16),
    Fraction(f64),
}

/// When a fault happens.
#[derive(Debug, Clone, PartialEq)]
pub enum When {
    At(Vec<Duration>),
    Every(Duration),
    /// Poisson arrivals per validator.
    Rate(f64),
}

/// Who sees a GitHub fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GithubScope {
    Validators,
    Miner,
    Both,
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Restart without a persistent store (the watchtower case): down for `restart_downtime`, then
    /// an empty store.
    RestartEmptyStore,
    /// Restart keeping the store.
    Restart,
    /// Crash every `period` for `duration` (each crash: down for `restart_downtime`, store kept).
    CrashLoop { period: Duration },
    /// Unreachable for `duration` (network partition, firewall).
    Unreachable,
    /// The store file is unreadable (corrupt) for `duration`, then restored from backup.
    CorruptStore,
    /// GitHub answers 5xx for `duration`.
    GithubOutage { scope: GithubScope },
    /// GitHub rate-limits (429 + Retry-After) for `duration`.
    GithubRateLimit { scope: GithubScope, retry_after: Duration },
    /// Our PAT is revoked (no replacement).
    PatRevoked,
    /// The miner rotates to a new PAT (the old one is revoked at the same time).
    PatRotated,
    /// The store file is lost while the process keeps running (no restart, same axon uuid).
    StoreLoss,
}

/// One `[[fault]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    pub kind: FaultKind,
    pub targets: Targets,
    pub when: When,
    /// Window in which arrivals happen.
    pub start: Duration,
    pub end: Duration,
    pub duration: Duration,
    /// Restart downtime range for this fault (`None`: the subnet's `restart_downtime`).
    pub downtime: Option<(Duration, Duration)>,
}

/// A strategy to compare.
#[derive(Debug, Clone, PartialEq)]
pub enum StrategyKind {
    /// `gitt miner post` once at the start (and once after a PAT rotation).
    PostOnce,
    /// `post` with retries for validators that gave no response.
    PostRetries { retries: u32 },
    /// `gitt miner post` from cron every `every`: its preflight, then the PAT to every validator,
    /// each time (it reads the PAT file each run, so a rotation goes out at the next run).
    PostEvery { every: Duration },
    /// `patrol run`: the agent's scheduler and the reconcile pass.
    Patrol(PatrolKnobs),
}

/// The `[reconcile]` settings a patrol strategy runs with (the rest are patrol's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct PatrolKnobs {
    pub interval: Duration,
    pub jitter: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// `None`: no liveness probes.
    pub probe_interval: Option<Duration>,
    /// `None`: no GitHub budget.
    pub github_budget: Option<u32>,
    pub dry_run: bool,
}

impl PatrolKnobs {
    /// These knobs over patrol's `[reconcile]` defaults.
    pub fn settings(&self) -> crate::config::ReconcileSettings {
        crate::config::ReconcileSettings {
            interval: self.interval,
            jitter: self.jitter,
            backoff_initial: self.backoff_initial,
            backoff_max: self.backoff_max,
            probe_interval: self.probe_interval,
            github_budget: self.github_budget,
            ..crate::config::ReconcileSettings::default()
        }
    }
}

/// One `[[strategy]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Strategy {
    pub name: String,
    pub kind: StrategyKind,
    pub repost_delay: Duration,
}

impl Scenario {
    /// Read and validate a scenario file.
    pub fn load(path: &std::path::Path) -> Result<Scenario, ScenarioError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read { path: p.clone(), source })?;
        Scenario::parse(&p, &text)
    }

    /// Parse and validate TOML text; `path` is for messages.
    pub fn parse(path: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let raw: Raw = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: path.into(),
            message: e
                .to_string()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('|'))
                .collect::<Vec<_>>()
                .join("; "),
        })?;
        let err = |key: &str, message: String| ScenarioError::Invalid { path: path.into(), key: key.into(), message };
        let dur = |key: &str, v: &str| -> Result<Duration, ScenarioError> {
            let d =
                humantime::parse_duration(v.trim()).map_err(|e| err(key, format!("invalid duration {v:?} ({e})")))?;
            if d > MAX_DURATION {
                return Err(err(key, format!("duration {v:?} is longer than 100 years")));
            }
            Ok(d)
        };
        let opt = |key: &str, v: &Option<String>, default: Duration| -> Result<Duration, ScenarioError> {
            v.as_deref().map_or(Ok(default), |s| dur(key, s))
        };
        let duration = dur("duration", &raw.duration)?;
        if duration.is_zero() {
            return Err(err("duration", "must be greater than zero".into()));
        }
        let n = raw.subnet.validators;
        if n == 0 {
            return Err(err("subnet.validators", "must be at least 1".into()));
        }
        let stakes = match raw.subnet.stake.unwrap_or(RawStake::Equal { total: None }) {
            RawStake::Equal { total } => vec![total.unwrap_or(100_000.0 * f64::from(n)) / f64::from(n); n as usize],
            RawStake::Power { total, exponent } => {
                let e = exponent.unwrap_or(1.0);
                let w: Vec<f64> = (0..n).map(|i| 1.0 / f64::from(i + 1).powf(e)).collect();
                let sum: f64 = w.iter().sum();
                let total = total.unwrap_or(100_000.0 * f64::from(n));
                w.iter().map(|x| x / sum * total).collect()
            }
            RawStake::List { values } => {
                if values.len() != n as usize {
                    return Err(err("subnet.stake.values", format!("has {} values for {n} validators", values.len())));
                }
                values
            }
        };
        if stakes.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(err("subnet.stake", "stakes must be positive numbers".into()));
        }
        let ema_alpha = raw.subnet.ema_alpha.unwrap_or(0.7);
        if !(0.0..=1.0).contains(&ema_alpha) || ema_alpha == 0.0 {
            return Err(err("subnet.ema_alpha", "must be in (0, 1]".into()));
        }
        let mut faults = Vec::new();
        for (i, f) in raw.fault.iter().enumerate() {
            let k = |s: &str| format!("fault[{i}].{s}");
            let scope = match f.scope.as_deref().unwrap_or("validators") {
                "validators" => GithubScope::Validators,
                "miner" => GithubScope::Miner,
                "both" => GithubScope::Both,
                other => return Err(err(&k("scope"), format!("{other:?} is not validators, miner or both"))),
            };
            let kind = match f.kind.as_str() {
                "restart_empty_store" => FaultKind::RestartEmptyStore,
                "restart" => FaultKind::Restart,
                "crash_loop" => {
                    FaultKind::CrashLoop { period: opt(&k("period"), &f.period, Duration::from_secs(600))? }
                }
                "unreachable" => FaultKind::Unreachable,
                "corrupt_store" => FaultKind::CorruptStore,
                "github_outage" => FaultKind::GithubOutage { scope },
                "github_rate_limit" => FaultKind::GithubRateLimit {
                    scope,
                    retry_after: opt(&k("retry_after"), &f.retry_after, Duration::from_secs(600))?,
                },
                "pat_revoked" => FaultKind::PatRevoked,
                "pat_rotated" => FaultKind::PatRotated,
                "store_loss" => FaultKind::StoreLoss,
                other => {
                    return Err(err(
                        &k("kind"),
                        format!(
                            "{other:?} is not one of restart_empty_store, restart, crash_loop, unreachable, corrupt_store, \
                             store_loss, github_outage, github_rate_limit, pat_revoked, pat_rotated"
                        ),
                    ));
                }
            };
            let downtime = match (&f.downtime_min, &f.downtime_max) {
                (None, None) => None,
                (Some(a), Some(b)) => {
                    let (a, b) = (dur(&k("downtime_min"), a)?, dur(&k("downtime_max"), b)?);
                    if a > b {
                        return Err(err(&k("downtime_max"), "must not be smaller than downtime_min".into()));
                    }
                    Some((a, b))
                }
                _ => return Err(err(&k("downtime_min"), "give both downtime_min and downtime_max".into())),
            };
            let targets = match &f.validators {
                None => Targets::All,
                Some(toml::Value::String(s)) if s == "all" => Targets::All,
                Some(toml::Value::Array(a)) => {
                    let mut v = Vec::new();
                    for x in a {
                        match x.as_integer().and_then(|i| u16::try_from(i).ok()).filter(|i| *i < n) {
                            Some(i) => v.push(i),
                            None => {
                                return Err(err(&k("validators"), format!("{x} is not a validator index below {n}")));
                            }
                        }
                    }
                    Targets::List(v)
                }
                Some(toml::Value::Table(t)) => match (
                    t.get("random").and_then(toml::Value::as_integer),
                    t.get("fraction").and_then(toml::Value::as_float),
                ) {
                    (Some(r), None) if r > 0 && r <= i64::from(n) => Targets::Random(r as u16),
                    (None, Some(fr)) if (0.0..=1.0).contains(&fr) => Targets::Fraction(fr),
                    _ => {
                        return Err(err(
                            &k("validators"),
                            "use { random = N } with 1 <= N <= validators, or { fraction = F } with 0 <= F <= 1".into(),
                        ));
                    }
                },
                Some(other) => return Err(err(&k("validators"), format!("{other} is not \"all\", a list or a table"))),
            };
            let when = match (&f.at, &f.every, f.rate_per_day) {
                (Some(at), None, None) => Targets::at(at, |s| dur(&k("at"), s))?,
                (None, Some(e), None) => {
                    let d = dur(&k("every"), e)?;
                    if d.is_zero() {
                        return Err(err(&k("every"), "must be greater than zero".into()));
                    }
                    When::Every(d)
                }
                (None, None, Some(r)) if r.is_finite() && r >= 0.0 => When::Rate(r),
                (None, None, Some(_)) => return Err(err(&k("rate_per_day"), "must be a non-negative number".into())),
                _ => {
                    return Err(err(
                        &k("at"),
                        "give exactly one of at = [..], every = \"..\", rate_per_day = x".into(),
                    ));
                }
            };
            let needs_duration = !matches!(
                kind,
                FaultKind::RestartEmptyStore
                    | FaultKind::Restart
                    | FaultKind::PatRevoked
                    | FaultKind::PatRotated
                    | FaultKind::StoreLoss
            );
            let fduration = opt(&k("duration"), &f.duration, Duration::ZERO)?;
            if needs_duration && fduration.is_zero() {
                return Err(err(&k("duration"), format!("{} needs a duration", f.kind)));
            }
            faults.push(FaultSpec {
                kind,
                targets,
                when,
                start: opt(&k("start"), &f.start, Duration::ZERO)?,
                end: opt(&k("end"), &f.end, duration)?.min(duration),
                duration: fduration,
                downtime,
            });
        }
        let mut strategies = Vec::new();
        for (i, s) in raw.strategy.iter().enumerate() {
            let k = |x: &str| format!("strategy[{i}].{x}");
            let kind = match s.kind.as_str() {
                "post_once" => StrategyKind::PostOnce,
                "post_retries" => StrategyKind::PostRetries { retries: s.retries.unwrap_or(2) },
                "post_every" => {
                    let every = opt(&k("every"), &s.every, Duration::from_secs(900))?;
                    if every.is_zero() {
                        return Err(err(&k("every"), "must be greater than zero".into()));
                    }
                    StrategyKind::PostEvery { every }
                }
                "patrol" => {
                    let d = crate::config::ReconcileSettings::default();
                    let interval = opt(&k("interval"), &s.interval, d.interval)?;
                    if interval.is_zero() {
                        return Err(err(&k("interval"), "must be greater than zero".into()));
                    }
                    let probe_interval = match s.probe_interval.as_deref().map(str::trim) {
                        Some("off") => None,
                        Some(p) => {
                            let p = dur(&k("probe_interval"), p)?;
                            if p.is_zero() {
                                return Err(err(&k("probe_interval"), "must be greater than zero (or \"off\")".into()));
                            }
                            Some(p)
                        }
                        None => d.probe_interval,
                    };
                    let github_budget = match &s.github_budget {
                        None => d.github_budget,
                        Some(v) => crate::config::github_budget(v).map_err(|m| err(&k("github_budget"), m))?,
                    };
                    StrategyKind::Patrol(PatrolKnobs {
                        interval,
                        jitter: opt(&k("jitter"), &s.jitter, d.jitter)?,
                        backoff_initial: opt(&k("backoff_initial"), &s.backoff_initial, d.backoff_initial)?,
                        backoff_max: opt(&k("backoff_max"), &s.backoff_max, d.backoff_max)?,
                        probe_interval,
                        github_budget,
                        dry_run: s.dry_run.unwrap_or(false),
                    })
                }
                other => {
                    return Err(err(
                        &k("kind"),
                        format!("{other:?} is not post_once, post_retries, post_every or patrol"),
                    ));
                }
            };
            strategies.push(Strategy {
                name: s.name.clone().unwrap_or_else(|| s.kind.clone()),
                kind,
                repost_delay: opt(&k("repost_delay"), &s.repost_delay, Duration::from_secs(3600))?,
            });
        }
        if strategies.is_empty() {
            return Err(err("strategy", "name at least one [[strategy]]".into()));
        }
        Ok(Scenario {
            name: raw.name.unwrap_or_else(|| path.to_string()),
            seed: raw.seed.unwrap_or(1),
            duration,
            sample: opt("sample", &raw.sample, Duration::from_secs(300))?,
            validators: n,
            stakes,
            background_miners: raw.subnet.background_miners.unwrap_or(0),
            scoring_round: opt("subnet.scoring_round", &raw.subnet.scoring_round, Duration::from_secs(7200))?,
            ema_alpha,
            restart_downtime: opt("subnet.restart_downtime", &raw.subnet.restart_downtime, Duration::from_secs(180))?,
            faults,
            strategies,
        })
    }
}

impl Targets {
    fn at(list: &[String], parse: impl Fn(&str) -> Result<Duration, ScenarioError>) -> Result<When, ScenarioError> {
        Ok(When::At(list.iter().map(|s| parse(s)).collect::<Result<_, _>>()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
seed = 7
duration = "14d"
[subnet]
validators = 4
stake = { kind = "list", values = [1.0, 2.0, 3.0, 4.0] }
[[fault]]
kind = "restart_empty_store"
validators = [0, 2]
rate_per_day = 0.2
[[fault]]
kind = "github_outage"
scope = "both"
at = ["2d"]
duration = "1h"
[[strategy]]
kind = "post_once"
[[strategy]]
kind = "patrol"
interval = "15m"
"#;

    #[test]
    fn parses() {
        let s = Scenario::parse("x.toml", OK).unwrap();
        assert_eq!(s.validators, 4);
        assert_eq!(s.stakes, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.faults[0].targets, Targets::List(vec![0, 2]));
        assert_eq!(s.faults[1].kind, FaultKind::GithubOutage { scope: GithubScope::Both });
        assert_eq!(s.strategies.len(), 2);
        assert_eq!(s.duration, Duration::from_secs(14 * 86400));
    }

    #[test]
    fn errors_name_the_key() {
        for (bad, key) in [
            (OK.replace("validators = [0, 2]", "validators = [9]"), "fault[0].validators"),
            (OK.replace("kind = \"github_outage\"", "kind = \"meteor\""), "fault[1].kind"),
            (OK.replace("duration = \"1h\"", ""), "fault[1].duration"),
            (OK.replace("interval = \"15m\"", "interval = \"soon\""), "strategy[1].interval"),
            (OK.replace("values = [1.0, 2.0, 3.0, 4.0]", "values = [1.0]"), "subnet.stake.values"),
        ] {
            let e = Scenario::parse("x.toml", &bad).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
        assert!(Scenario::parse("x.toml", &format!("{OK}\nbogus = 1")).unwrap_err().to_string().contains("bogus"));
    }

    /// Fuzzing found `at + duration` overflowing in the fault timeline (a panic in debug builds,
    /// events wrapped to the start of the run in release): durations are capped at 100 years.
    #[test]
    fn durations_are_bounded_so_times_never_overflow() {
        let huge = "\"18446744073709551615s\"";
        for (bad, key) in [
            (OK.replace("duration = \"1h\"", &format!("duration = {huge}")), "fault[1].duration"),
            (
                OK.replace("validators = 4", &format!("validators = 4\nrestart_downtime = {huge}")),
                "subnet.restart_downtime",
            ),
            (OK.replace("at = [\"2d\"]", &format!("at = [{huge}]")), "fault[1].at"),
            (OK.replace("duration = \"14d\"", "duration = \"101y\""), "duration"),
        ] {
            let e = Scenario::parse("x.toml", &bad).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("100 years"), "{e}");
        }
        // The largest allowed values build a timeline without overflowing.
        let max = OK
            .replace("duration = \"14d\"", "duration = \"100y\"")
            .replace("validators = 4", "validators = 4\nrestart_downtime = \"100y\"")
            .replace("rate_per_day = 0.2", "at = [\"99y\"]")
            .replace("duration = \"1h\"", "duration = \"100y\"");
        let s = Scenario::parse("x.toml", &max).unwrap();
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        let t = crate::lab::sim::faults::timeline(&s, &mut rng);
        assert!(t.iter().all(|e| e.at <= 3 * MAX_DURATION.as_secs()), "{t:?}");
    }
}
