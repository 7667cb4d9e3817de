//! Validation: the raw file ([`super::raw`]) to a [`Scenario`]'s parts, each error naming its key.

use std::time::Duration;

use super::raw::{Raw, RawFault, RawStake, RawStrategy, RawTargets, RawWhen, Restarts};
use super::{
    FaultKind, FaultSpec, GithubScope, MAX_DURATION, PatrolKnobs, Scenario, ScenarioError, Strategy, StrategyKind,
    Targets, When,
};

/// The scenario `raw` describes; `path` is for messages.
pub(super) fn scenario(path: &str, raw: Raw) -> Result<Scenario, ScenarioError> {
    let cx = Cx { path, validators: raw.subnet.validators, duration: Duration::ZERO };
    let duration = cx.dur("duration", &raw.duration)?;
    if duration.is_zero() {
        return Err(cx.err("duration", "must be greater than zero"));
    }
    let cx = Cx { duration, ..cx };
    if cx.validators == 0 {
        return Err(cx.err("subnet.validators", "must be at least 1"));
    }
    let stakes = cx.stakes(raw.subnet.stake)?;
    let subnet = |key: &str, v: &Option<String>, default_s: u64| {
        cx.opt(&format!("subnet.{key}"), v.as_deref(), Duration::from_secs(default_s))
    };
    let ema_alpha = raw.subnet.ema_alpha.unwrap_or(0.7);
    if !(0.0..=1.0).contains(&ema_alpha) || ema_alpha == 0.0 {
        return Err(cx.err("subnet.ema_alpha", "must be in (0, 1]"));
    }
    let faults = raw.fault.into_iter().enumerate().map(|(i, f)| cx.fault(i, f)).collect::<Result<_, _>>()?;
    let strategies: Vec<Strategy> =
        raw.strategy.into_iter().enumerate().map(|(i, s)| cx.strategy(i, s)).collect::<Result<_, _>>()?;
    if strategies.is_empty() {
        return Err(cx.err("strategy", "name at least one [[strategy]]"));
    }
    Ok(Scenario {
        name: raw.name.unwrap_or_else(|| path.to_string()),
        seed: raw.seed.unwrap_or(1),
        duration,
        sample: cx.opt("sample", raw.sample.as_deref(), Duration::from_secs(300))?,
        validators: cx.validators,
        stakes,
        background_miners: raw.subnet.background_miners.unwrap_or(0),
        scoring_round: subnet("scoring_round", &raw.subnet.scoring_round, 7200)?,
        ema_alpha,
        restart_downtime: subnet("restart_downtime", &raw.subnet.restart_downtime, 180)?,
        faults,
        strategies,
    })
}

/// What validating a scenario needs to know: the file (for messages), the subnet's size and the
/// run's length.
#[derive(Clone, Copy)]
struct Cx<'a> {
    path: &'a str,
    validators: u16,
    duration: Duration,
}

impl Cx<'_> {
    fn err(&self, key: &str, message: impl Into<String>) -> ScenarioError {
        ScenarioError::Invalid { path: self.path.into(), key: key.into(), message: message.into() }
    }

    /// A duration of at most [`MAX_DURATION`].
    fn dur(&self, key: &str, v: &str) -> Result<Duration, ScenarioError> {
        let d =
            humantime::parse_duration(v.trim()).map_err(|e| self.err(key, format!("invalid duration {v:?} ({e})")))?;
        if d > MAX_DURATION {
            return Err(self.err(key, format!("duration {v:?} is longer than 100 years")));
        }
        Ok(d)
    }

    fn opt(&self, key: &str, v: Option<&str>, default: Duration) -> Result<Duration, ScenarioError> {
        v.map_or(Ok(default), |s| self.dur(key, s))
    }

    /// Like [`opt`](Self::opt), and not zero.
    fn positive(&self, key: &str, v: Option<&str>, default: Duration) -> Result<Duration, ScenarioError> {
        let d = self.opt(key, v, default)?;
        if d.is_zero() {
            return Err(self.err(key, "must be greater than zero"));
        }
        Ok(d)
    }

    fn stakes(&self, stake: Option<RawStake>) -> Result<Vec<f64>, ScenarioError> {
        let n = self.validators;
        let stakes = match stake.unwrap_or(RawStake::Equal { total: None }) {
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
                    let message = format!("has {} values for {n} validators", values.len());
                    return Err(self.err("subnet.stake.values", message));
                }
                values
            }
        };
        if stakes.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(self.err("subnet.stake", "stakes must be positive numbers"));
        }
        Ok(stakes)
    }

    /// `fault[i]`.
    fn fault(&self, i: usize, raw: RawFault) -> Result<FaultSpec, ScenarioError> {
        let k = |s: &str| format!("fault[{i}].{s}");
        let name: &'static str = (&raw).into();
        let opt = |key: &str, v: &Option<String>, default| self.opt(&k(key), v.as_deref(), default);
        let targets = |v: &RawTargets| self.targets(&k("validators"), v);
        let restarts = |r: &Restarts| -> Result<_, ScenarioError> {
            Ok((targets(&r.validators)?, self.downtime(&k, &r.downtime_min, &r.downtime_max)?))
        };
        // the kinds that last a while: their duration is required
        let lasting = |d: &Option<String>| match opt("duration", d, Duration::ZERO)? {
            Duration::ZERO => Err(self.err(&k("duration"), format!("{name} needs a duration"))),
            d => Ok(d),
        };
        let scope = |s: &Option<String>| self.scope(&k("scope"), s.as_deref());
        let all = Targets::All;
        // (kind, targets, duration, downtime range, the timing keys)
        let (kind, targets, duration, downtime, when) = match raw {
            RawFault::RestartEmptyStore(f) => {
                let (targets, downtime) = restarts(&f.own)?;
                (FaultKind::RestartEmptyStore, targets, Duration::ZERO, downtime, f.when)
            }
            RawFault::Restart(f) => {
                let (targets, downtime) = restarts(&f.own)?;
                (FaultKind::Restart, targets, Duration::ZERO, downtime, f.when)
            }
            RawFault::CrashLoop(f) => {
                let (targets, downtime) = restarts(&f.own)?;
                let period = opt("period", &f.more.period, Duration::from_secs(600))?;
                (FaultKind::CrashLoop { period }, targets, lasting(&f.more.duration)?, downtime, f.when)
            }
            RawFault::Unreachable(f) => {
                let targets = targets(&f.own.validators)?;
                (FaultKind::Unreachable, targets, lasting(&f.own.duration)?, None, f.when)
            }
            RawFault::CorruptStore(f) => {
                let targets = targets(&f.own.validators)?;
                (FaultKind::CorruptStore, targets, lasting(&f.own.duration)?, None, f.when)
            }
            RawFault::StoreLoss(f) => {
                let targets = targets(&f.own.validators)?;
                (FaultKind::StoreLoss, targets, Duration::ZERO, None, f.when)
            }
            RawFault::GithubOutage(f) => {
                let kind = FaultKind::GithubOutage { scope: scope(&f.own.scope)? };
                (kind, all, lasting(&f.own.duration)?, None, f.when)
            }
            RawFault::GithubRateLimit(f) => {
                let scope = scope(&f.own.scope)?;
                let retry_after = opt("retry_after", &f.more.retry_after, Duration::from_secs(600))?;
                (FaultKind::GithubRateLimit { scope, retry_after }, all, lasting(&f.own.duration)?, None, f.when)
            }
            RawFault::PatRevoked(f) => (FaultKind::PatRevoked, all, Duration::ZERO, None, f.when),
            RawFault::PatRotated(f) => (FaultKind::PatRotated, all, Duration::ZERO, None, f.when),
        };
        Ok(FaultSpec {
            when: self.when(&k, &when)?,
            kind,
            targets,
            start: opt("start", &when.start, Duration::ZERO)?,
            end: opt("end", &when.end, self.duration)?.min(self.duration),
            duration,
            downtime,
        })
    }

    fn scope(&self, key: &str, scope: Option<&str>) -> Result<GithubScope, ScenarioError> {
        match scope.unwrap_or("validators") {
            "validators" => Ok(GithubScope::Validators),
            "miner" => Ok(GithubScope::Miner),
            "both" => Ok(GithubScope::Both),
            other => Err(self.err(key, format!("{other:?} is not validators, miner or both"))),
        }
    }

    fn downtime(
        &self,
        k: &dyn Fn(&str) -> String,
        min: &Option<String>,
        max: &Option<String>,
    ) -> Result<Option<(Duration, Duration)>, ScenarioError> {
        match (min, max) {
            (None, None) => Ok(None),
            (Some(a), Some(b)) => {
                let (a, b) = (self.dur(&k("downtime_min"), a)?, self.dur(&k("downtime_max"), b)?);
                if a > b {
                    return Err(self.err(&k("downtime_max"), "must not be smaller than downtime_min"));
                }
                Ok(Some((a, b)))
            }
            _ => Err(self.err(&k("downtime_min"), "give both downtime_min and downtime_max")),
        }
    }

    fn targets(&self, key: &str, v: &RawTargets) -> Result<Targets, ScenarioError> {
        let n = self.validators;
        match v {
            None => Ok(Targets::All),
            Some(toml::Value::String(s)) if s == "all" => Ok(Targets::All),
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_integer()
                        .and_then(|i| u16::try_from(i).ok())
                        .filter(|i| *i < n)
                        .ok_or_else(|| self.err(key, format!("{x} is not a validator index below {n}")))
                })
                .collect::<Result<_, _>>()
                .map(Targets::List),
            Some(toml::Value::Table(t)) => match (
                t.get("random").and_then(toml::Value::as_integer),
                t.get("fraction").and_then(toml::Value::as_float),
            ) {
                (Some(r), None) if r > 0 && r <= i64::from(n) => Ok(Targets::Random(r as u16)),
                (None, Some(fr)) if (0.0..=1.0).contains(&fr) => Ok(Targets::Fraction(fr)),
                _ => {
                    Err(self
                        .err(key, "use { random = N } with 1 <= N <= validators, or { fraction = F } with 0 <= F <= 1"))
                }
            },
            Some(other) => Err(self.err(key, format!("{other} is not \"all\", a list or a table"))),
        }
    }

    fn when(&self, k: &dyn Fn(&str) -> String, w: &RawWhen) -> Result<When, ScenarioError> {
        match (&w.at, &w.every, w.rate_per_day) {
            (Some(at), None, None) => Ok(When::At(at.iter().map(|s| self.dur(&k("at"), s)).collect::<Result<_, _>>()?)),
            (None, Some(e), None) => Ok(When::Every(self.positive(&k("every"), Some(e), Duration::ZERO)?)),
            (None, None, Some(r)) if r.is_finite() && r >= 0.0 => Ok(When::Rate(r)),
            (None, None, Some(_)) => Err(self.err(&k("rate_per_day"), "must be a non-negative number")),
            _ => Err(self.err(&k("at"), "give exactly one of at = [..], every = \"..\", rate_per_day = x")),
        }
    }

    /// `strategy[i]`.
    fn strategy(&self, i: usize, raw: RawStrategy) -> Result<Strategy, ScenarioError> {
        let k = |x: &str| format!("strategy[{i}].{x}");
        let opt = |key: &str, v: &Option<String>, default| self.opt(&k(key), v.as_deref(), default);
        let hour = Duration::from_secs(3600);
        let kind_name: &'static str = (&raw).into();
        let (name, kind) = match raw {
            RawStrategy::PostOnce { name, repost_delay } => {
                (name, StrategyKind::PostOnce { repost_delay: opt("repost_delay", &repost_delay, hour)? })
            }
            RawStrategy::PostRetries { name, retries, repost_delay } => {
                let repost_delay = opt("repost_delay", &repost_delay, hour)?;
                (name, StrategyKind::PostRetries { retries: retries.unwrap_or(2), repost_delay })
            }
            RawStrategy::PostEvery { name, every } => {
                let every = self.positive(&k("every"), every.as_deref(), Duration::from_secs(900))?;
                (name, StrategyKind::PostEvery { every })
            }
            RawStrategy::Patrol {
                name,
                interval,
                jitter,
                backoff_initial,
                backoff_max,
                probe_interval,
                github_budget,
                dry_run,
            } => {
                let d = crate::config::ReconcileSettings::default();
                let probe_interval = match probe_interval.as_deref().map(str::trim) {
                    Some("off") => None,
                    Some(p) => {
                        let p = self.dur(&k("probe_interval"), p)?;
                        if p.is_zero() {
                            return Err(self.err(&k("probe_interval"), "must be greater than zero (or \"off\")"));
                        }
                        Some(p)
                    }
                    None => d.probe_interval,
                };
                let github_budget = match &github_budget {
                    None => d.github_budget,
                    Some(v) => crate::config::github_budget(v).map_err(|m| self.err(&k("github_budget"), m))?,
                };
                let knobs = PatrolKnobs {
                    interval: self.positive(&k("interval"), interval.as_deref(), d.interval)?,
                    jitter: opt("jitter", &jitter, d.jitter)?,
                    backoff_initial: opt("backoff_initial", &backoff_initial, d.backoff_initial)?,
                    backoff_max: opt("backoff_max", &backoff_max, d.backoff_max)?,
                    probe_interval,
                    github_budget,
                    dry_run: dry_run.unwrap_or(false),
                };
                (name, StrategyKind::Patrol(knobs))
            }
        };
        Ok(Strategy { name: name.unwrap_or_else(|| kind_name.to_string()), kind })
    }
}
