//! Scenario files for `patrol simulate` (TOML; see `examples/*.toml`): the subnet, the faults over
//! time, and the strategies to compare. Each fault and strategy `kind` takes only its own keys
//! ([`raw`], serde-tagged); parsing only validates ([`check`]); [`super::faults`] turns the fault
//! specs into a concrete, seeded timeline.

use std::time::Duration;

/// Why a scenario file is unusable. Messages name the key.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("scenario {path}: {message}")]
    Parse { path: String, message: String },
    #[error("scenario {path}: {key}: {message}")]
    Invalid { path: String, key: String, message: String },
}

mod check;
mod raw;

/// The longest time a scenario may name: `"100y"` (humantime's year is 365.25 days). The
/// simulation adds times and durations in whole seconds (`u64`), which must not overflow.
const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

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
    /// `gitt miner post` once at the start, and once `repost_delay` after a PAT rotation (a
    /// person re-running it).
    PostOnce { repost_delay: Duration },
    /// `post` with retries for validators that gave no response (re-run as `PostOnce` is).
    PostRetries { retries: u32, repost_delay: Duration },
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
        check::scenario(path, raw::deserialize(path, text)?)
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
            // a key the kind does not take (a restart does not last), a missing kind, serde's own
            // type errors: the key still named
            (OK.replace("rate_per_day = 0.2", "rate_per_day = 0.2\nduration = \"1h\""), "fault[0].duration"),
            (OK.replace("scope = \"both\"", "scope = \"both\"\nvalidators = [1]"), "fault[1].validators"),
            (OK.replace("kind = \"github_outage\"", ""), "fault[1].kind"),
            (OK.replace("interval = \"15m\"", "retries = 3"), "strategy[1].retries"),
            (OK.replace("kind = \"list\"", "kind = \"lumpy\""), "subnet.stake.kind"),
            (OK.replace("rate_per_day = 0.2", "rate_per_day = \"often\""), "fault[0]"),
        ] {
            let e = Scenario::parse("x.toml", &bad).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
        let top = Scenario::parse("x.toml", &format!("bogus = 1\n{OK}")).unwrap_err().to_string();
        assert!(top.contains(": bogus: ") && !top.contains("bogus.bogus"), "{top}");
    }

    /// Every scenario in `scenario/golden/` (copies of `examples/*.toml` as of the serde-tagged
    /// rewrite, and `all-kinds.toml`, which names every kind and optional key) parses to the value
    /// pinned next to it (`{:#?}`). `PATROL_BLESS=1` rewrites the pins, for a deliberate change.
    #[test]
    fn parses_as_pinned() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lab/sim/scenario/golden");
        let bless = std::env::var_os("PATROL_BLESS").is_some();
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        assert!(files.len() >= 7, "{files:?}");
        for toml in files {
            let name = toml.file_name().unwrap().to_string_lossy().into_owned();
            let parsed = format!("{:#?}\n", Scenario::parse(&name, &std::fs::read_to_string(&toml).unwrap()).unwrap());
            let pin = toml.with_extension("debug");
            if bless {
                std::fs::write(&pin, &parsed).unwrap();
            }
            let want = std::fs::read_to_string(&pin).unwrap_or_default();
            assert!(parsed == want, "{name} no longer parses as {} pins it:\n{parsed}", pin.display());
        }
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
