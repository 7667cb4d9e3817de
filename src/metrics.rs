//! Prometheus metrics: one registry, filled from pass outcomes. `patrol run` serves it on
//! `/metrics` (OpenMetrics text when the scraper asks for it, else the classic text format);
//! `patrol reconcile --metrics-file` writes the classic Prometheus text format for node_exporter's
//! textfile collector. Labels are bounded: miner hotkey, category/outcome names, validator uid/hotkey
//! of the eligible set. Never the PAT.
//!
//! Families (prefix `patrol_`): `coverage_validators{hotkey,category}`, `eligible_validators`,
//! `stake_weighted_coverage_ratio`, `validator_state{hotkey,uid,validator,category}`,
//! `validator_failures`, `checks_total{category}`, `broadcasts_total{outcome}`,
//! `pass_duration_seconds`, `last_pass_timestamp_seconds`, `last_full_coverage_timestamp_seconds`,
//! `metagraph_age_seconds{netuid}`, `pat_preflight{outcome}`, `pat_expiry_timestamp_seconds`,
//! `github_rate_limit_remaining`, `alerts{kind}`, `passes_total`; and, set by the agent only:
//! `github_calls_estimated_total`, `github_calls_last_hour`, `github_budget_per_hour`,
//! `check_interval_seconds`, `probes_total`, `restarts_detected_total`, `rechecks_total`,
//! `metagraph_reads_total{netuid,source}`, `miner_problem{hotkey,kind}`, `reloads_total{result}`,
//! `ready`, `build_info{version,revision,target,rustc}`, `notifications_total{target,result}`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Metric;
use prometheus_client::registry::Registry;

use crate::coverage::Summary;
use crate::observe::Category;
use crate::reconcile::core::AlertKind;
use crate::reconcile::pass::PassOutcome;
use crate::reconcile::state::{MinerState, PreflightVerdict};

type FGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MinerL {
    hotkey: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryL {
    hotkey: String,
    category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeL {
    hotkey: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ValidatorL {
    hotkey: String,
    uid: String,
    validator: String,
    category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ValidatorUidL {
    hotkey: String,
    uid: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindL {
    hotkey: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NetuidL {
    netuid: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadL {
    netuid: String,
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultL {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotifyL {
    target: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildL {
    version: String,
    revision: String,
    target: String,
    rustc: String,
}

/// Why a miner cannot be reconciled right now (`patrol_miner_problem{kind}`, the agent's STATUS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum ProblemKind {
    /// Its hotkey is not registered on the netuid: nothing is sent.
    NotRegistered,
    /// Its PAT cannot be read.
    PatUnavailable,
    /// Neither the chain nor a young enough metagraph cache can be read: nothing is sent.
    NoValidatorSource,
}

impl ProblemKind {
    /// All kinds (metric label values).
    pub const ALL: &[ProblemKind] = <ProblemKind as strum::VariantArray>::VARIANTS;

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The metric families patrol exports.
pub struct Metrics {
    registry: Registry,
    coverage: Family<CategoryL, Gauge>,
    eligible: Family<MinerL, Gauge>,
    stake_coverage: Family<MinerL, FGauge>,
    validator_state: Family<ValidatorL, Gauge>,
    validator_failures: Family<ValidatorUidL, Gauge>,
    checks: Family<CategoryL, Counter>,
    broadcasts: Family<OutcomeL, Counter>,
    pass_duration: Family<MinerL, FGauge>,
    last_pass: Family<MinerL, FGauge>,
    last_full: Family<MinerL, FGauge>,
    metagraph_age: Family<NetuidL, FGauge>,
    preflight: Family<OutcomeL, Gauge>,
    pat_expiry: Family<MinerL, FGauge>,
    rate_remaining: Family<MinerL, Gauge>,
    alerts: Family<KindL, Gauge>,
    passes: Family<MinerL, Counter>,
    rechecks: Family<MinerL, Counter>,
    metagraph_reads: Family<ReadL, Counter>,
    miner_problem: Family<KindL, Gauge>,
    reloads: Family<ResultL, Counter>,
    github_calls: Family<MinerL, Counter>,
    github_last_hour: Family<MinerL, Gauge>,
    github_budget: Family<MinerL, Gauge>,
    check_interval: Family<MinerL, Gauge>,
    probes: Family<MinerL, Counter>,
    restarts: Family<MinerL, Counter>,
    state_save_failed: Family<MinerL, Gauge>,
    ready: Gauge,
    build_info: Family<BuildL, Gauge>,
    notifications: Family<NotifyL, Counter>,
    /// Per-validator series set by the last pass of each miner.
    validator_series: std::sync::Mutex<std::collections::HashMap<String, Vec<(ValidatorL, ValidatorUidL)>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A new metric registered as `patrol_<name>` (counters get `_total` in the exposition).
fn family<M: Metric + Clone + Default>(registry: &mut Registry, name: &str, help: &str) -> M {
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// A registry with every family registered (prefix `patrol_`), in exposition order.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("patrol");
        let r = &mut registry;
        let m = Metrics {
            coverage: family(r, "coverage_validators", "Eligible validators by coverage category after the last pass"),
            eligible: family(r, "eligible_validators", "Validators eligible to hold the PAT (gitt's rule)"),
            stake_coverage: family(
                r,
                "stake_weighted_coverage_ratio",
                "Share of eligible stake at covered validators (valid or inconclusive)",
            ),
            validator_state: family(r, "validator_state", "1 for each eligible validator's current category"),
            validator_failures: family(r, "validator_failures", "Consecutive failures (backoff level) per validator"),
            checks: family(r, "checks", "PatCheckSynapse calls by resulting category"),
            broadcasts: family(r, "broadcasts", "PatBroadcastSynapse calls by outcome"),
            pass_duration: family(r, "pass_duration_seconds", "Duration of the last reconcile pass"),
            last_pass: family(r, "last_pass_timestamp_seconds", "Unix time of the last reconcile pass"),
            last_full: family(
                r,
                "last_full_coverage_timestamp_seconds",
                "Unix time every eligible validator was last covered",
            ),
            metagraph_age: family(r, "metagraph_age_seconds", "Age of the metagraph in use (0 when read just now)"),
            preflight: family(
                r,
                "pat_preflight",
                "1 for the last local PAT preflight result (valid, transient, invalid)",
            ),
            pat_expiry: family(r, "pat_expiry_timestamp_seconds", "When GitHub says the PAT expires (unix time)"),
            rate_remaining: family(
                r,
                "github_rate_limit_remaining",
                "GitHub core rate limit left for the PAT, from the last preflight",
            ),
            alerts: family(r, "alerts", "Active alerts by kind"),
            passes: family(r, "passes", "Reconcile passes run"),
            rechecks: family(r, "rechecks", "Agent passes limited to validators whose own re-check timer fired"),
            metagraph_reads: family(
                r,
                "metagraph_reads",
                "Validator-set reads (one per netuid per agent round, shared by every miner)",
            ),
            miner_problem: family(
                r,
                "miner_problem",
                "1 while a miner cannot be reconciled (not_registered, pat_unavailable, no_validator_source)",
            ),
            reloads: family(r, "reloads", "Configuration reloads by result (applied, rejected)"),
            github_calls: family(
                r,
                "github_calls_estimated",
                "Estimated GitHub calls patrol caused on the PAT (checks of a held PAT, broadcasts, preflights)",
            ),
            github_last_hour: family(
                r,
                "github_calls_last_hour",
                "Estimated GitHub calls patrol caused on the PAT in the last hour",
            ),
            github_budget: family(
                r,
                "github_budget_per_hour",
                "[reconcile] github_budget: GitHub calls an hour patrol may cause on the PAT (absent: unlimited)",
            ),
            check_interval: family(
                r,
                "check_interval_seconds",
                "Routine check interval in force (the configured one, stretched by the GitHub budget)",
            ),
            probes: family(r, "probes", "Liveness probes sent (no PAT, no GitHub call)"),
            restarts: family(
                r,
                "restarts_detected",
                "Validators found restarted (new axon uuid) or answering again after silence",
            ),
            state_save_failed: family(
                r,
                "state_save_failed",
                "1 while the miner's state file cannot be saved (the last save failed: disk full, permissions)",
            ),
            ready: family(r, "ready", "1 when /readyz would answer 200"),
            build_info: family(r, "build_info", "Always 1; the labels say which patrol runs, built from what"),
            notifications: family(
                r,
                "notifications",
                "Notification messages (and dead-man pings, target=\"ping\") by target and result: sent, retried, failed (refused), gave_up, dropped (queue full)",
            ),
            validator_series: Default::default(),
            registry,
        };
        use crate::version::{REVISION, RUSTC, TARGET, VERSION};
        let build =
            BuildL { version: VERSION.into(), revision: REVISION.into(), target: TARGET.into(), rustc: RUSTC.into() };
        m.build_info.get_or_create(&build).set(1);
        m
    }

    /// Update everything a full pass tells us. Counters are the state's lifetime totals
    /// ([`MinerState::totals`]), so one-shot runs writing a textfile continue them.
    pub fn observe_pass(&self, hotkey: &str, out: &PassOutcome, state: &MinerState) {
        self.observe_coverage(hotkey, out, state);
        let hk = || hotkey.to_string();
        self.pass_duration.get_or_create(&MinerL { hotkey: hk() }).set(out.duration.as_secs_f64());
        self.last_pass.get_or_create(&MinerL { hotkey: hk() }).set(out.started_at as f64);
    }

    /// Update from a pass limited to validators whose re-check timer fired (the agent's per-validator
    /// timers): coverage, per-validator state and call counters, but not the pass counters, duration
    /// or timestamp, which describe full passes.
    pub fn observe_recheck(&self, hotkey: &str, out: &PassOutcome, state: &MinerState) {
        self.observe_coverage(hotkey, out, state);
    }

    /// Everything but the pass-level counters.
    fn observe_coverage(&self, hotkey: &str, out: &PassOutcome, state: &MinerState) {
        let hk = || hotkey.to_string();
        let summary = Summary::of(out.final_rows());
        for c in Category::ALL {
            self.coverage
                .get_or_create(&CategoryL { hotkey: hk(), category: c.as_str().into() })
                .set(summary.count(c) as i64);
        }
        self.eligible.get_or_create(&MinerL { hotkey: hk() }).set(summary.total as i64);
        self.stake_coverage.get_or_create(&MinerL { hotkey: hk() }).set(summary.stake_weighted_coverage);
        // Per-validator gauges describe the current set: drop this miner's previous series first, so
        // a validator that changed category or left the set doesn't linger.
        let mut set = self.validator_series.lock().unwrap_or_else(|p| p.into_inner());
        for l in set.remove(hotkey).unwrap_or_default() {
            self.validator_state.remove(&l.0);
            self.validator_failures.remove(&l.1);
        }
        let mut now_set = Vec::new();
        for v in &out.validators {
            let uid = v.validator.uid.to_string();
            let category = v.final_category.map(|c| c.as_str()).unwrap_or("unknown").to_string();
            let state_l =
                ValidatorL { hotkey: hk(), uid: uid.clone(), validator: v.validator.hotkey.clone(), category };
            let fail_l = ValidatorUidL { hotkey: hk(), uid };
            self.validator_state.get_or_create(&state_l).set(1);
            self.validator_failures.get_or_create(&fail_l).set(i64::from(v.failures));
            now_set.push((state_l, fail_l));
        }
        set.insert(hotkey.to_string(), now_set);
        drop(set);
        let g = &out.github;
        self.github_last_hour.get_or_create(&MinerL { hotkey: hk() }).set(i64::from(g.last_hour));
        match g.budget_per_hour {
            Some(b) => {
                self.github_budget.get_or_create(&MinerL { hotkey: hk() }).set(i64::from(b));
            }
            None => {
                self.github_budget.remove(&MinerL { hotkey: hk() });
            }
        }
        self.check_interval.get_or_create(&MinerL { hotkey: hk() }).set(g.interval_s as i64);
        for &kind in AlertKind::ALL {
            let n = out.alerts.iter().filter(|a| a.kind == kind).count();
            self.alerts.get_or_create(&KindL { hotkey: hk(), kind: kind.as_str().into() }).set(n as i64);
        }
        self.observe_totals(hotkey, state);
    }

    /// What the state says whatever the last pass did: the lifetime counters
    /// ([`MinerState::totals`], the GitHub ledger's total), the last full coverage, and the last
    /// preflight of the PAT in use.
    pub fn observe_totals(&self, hotkey: &str, state: &MinerState) {
        let hk = || hotkey.to_string();
        let totals = &state.totals;
        set_total(&self.passes.get_or_create(&MinerL { hotkey: hk() }), totals.passes);
        set_total(&self.rechecks.get_or_create(&MinerL { hotkey: hk() }), totals.rechecks);
        for (c, n) in &totals.checks {
            set_total(&self.checks.get_or_create(&CategoryL { hotkey: hk(), category: c.as_str().into() }), *n);
        }
        for (b, n) in &totals.broadcasts {
            set_total(&self.broadcasts.get_or_create(&OutcomeL { hotkey: hk(), outcome: b.as_str().into() }), *n);
        }
        set_total(&self.github_calls.get_or_create(&MinerL { hotkey: hk() }), state.github.total);
        set_total(&self.probes.get_or_create(&MinerL { hotkey: hk() }), totals.probes);
        set_total(&self.restarts.get_or_create(&MinerL { hotkey: hk() }), totals.restarts);
        if let Some(t) = state.last_full_coverage_at {
            self.last_full.get_or_create(&MinerL { hotkey: hk() }).set(t as f64);
        }
        self.observe_preflight(hotkey, state);
    }

    /// The last PAT preflight the state remembers — its verdict, the PAT's expiry and the rate
    /// limit left — if it was about the PAT in use; none of it otherwise (after a rotation the old
    /// PAT's expiry must not linger).
    fn observe_preflight(&self, hotkey: &str, state: &MinerState) {
        let hk = || hotkey.to_string();
        let record = state.fingerprint.as_deref().and_then(|fp| state.preflight_of(fp));
        for &v in PreflightVerdict::ALL {
            let l = OutcomeL { hotkey: hk(), outcome: v.as_str().into() };
            match record {
                Some(r) => {
                    self.preflight.get_or_create(&l).set(i64::from(r.verdict == v));
                }
                None => {
                    self.preflight.remove(&l);
                }
            }
        }
        match record.and_then(|r| r.expiry) {
            Some(exp) => {
                self.pat_expiry.get_or_create(&MinerL { hotkey: hk() }).set(exp as f64);
            }
            None => {
                self.pat_expiry.remove(&MinerL { hotkey: hk() });
            }
        }
        match record.and_then(|r| r.rate_remaining) {
            Some(rem) => {
                self.rate_remaining.get_or_create(&MinerL { hotkey: hk() }).set(rem as i64);
            }
            None => {
                self.rate_remaining.remove(&MinerL { hotkey: hk() });
            }
        }
    }

    /// One validator-set read for `netuid`; `source` is `chain`, `cache` or `static`.
    pub fn inc_metagraph_reads(&self, netuid: u16, source: &str) {
        self.metagraph_reads.get_or_create(&ReadL { netuid: netuid.to_string(), source: source.into() }).inc();
    }

    /// Set which problem (if any) keeps a miner from being reconciled; every other kind goes to 0.
    pub fn set_miner_problem(&self, hotkey: &str, problem: Option<ProblemKind>) {
        for &kind in ProblemKind::ALL {
            self.miner_problem
                .get_or_create(&KindL { hotkey: hotkey.to_string(), kind: kind.as_str().into() })
                .set(i64::from(problem == Some(kind)));
        }
    }

    /// Start both reload counters at 0 (the agent does, at start): a counter that first appears
    /// at 1 has no increase for Prometheus, so the first rejected reload would go unseen.
    pub fn init_reloads(&self) {
        for result in ["applied", "rejected"] {
            self.reloads.get_or_create(&ResultL { result: result.into() }).inc_by(0);
        }
    }

    /// Count a configuration reload (`applied` or `rejected`).
    pub fn inc_reloads(&self, result: &str) {
        self.reloads.get_or_create(&ResultL { result: result.into() }).inc();
    }

    /// A notification outcome for `target` (a target's name, never its URL).
    pub fn inc_notifications(&self, target: &str, result: &str) {
        self.notifications.get_or_create(&NotifyL { target: target.into(), result: result.into() }).inc();
    }

    /// Whether the miner's last state save failed.
    pub fn set_state_save_failed(&self, hotkey: &str, failed: bool) {
        self.state_save_failed.get_or_create(&MinerL { hotkey: hotkey.to_string() }).set(i64::from(failed));
    }

    /// Whether the agent is ready (mirrors `/readyz`).
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Drop every series labelled with this miner's hotkey (it left the configuration on a reload).
    pub fn forget_miner(&self, hotkey: &str) {
        let hk = || hotkey.to_string();
        let mut set = self.validator_series.lock().unwrap_or_else(|p| p.into_inner());
        for l in set.remove(hotkey).unwrap_or_default() {
            self.validator_state.remove(&l.0);
            self.validator_failures.remove(&l.1);
        }
        drop(set);
        for c in Category::ALL {
            let l = CategoryL { hotkey: hk(), category: c.as_str().into() };
            self.coverage.remove(&l);
            self.checks.remove(&l);
        }
        let miner = MinerL { hotkey: hk() };
        for f in [&self.stake_coverage, &self.pass_duration, &self.last_pass, &self.last_full, &self.pat_expiry] {
            f.remove(&miner);
        }
        for f in [&self.passes, &self.rechecks, &self.github_calls, &self.probes, &self.restarts] {
            f.remove(&miner);
        }
        for f in [
            &self.eligible,
            &self.rate_remaining,
            &self.github_last_hour,
            &self.github_budget,
            &self.check_interval,
            &self.state_save_failed,
        ] {
            f.remove(&miner);
        }
        for o in crate::observe::BroadcastOutcome::ALL {
            self.broadcasts.remove(&OutcomeL { hotkey: hk(), outcome: o.as_str().into() });
        }
        for &v in PreflightVerdict::ALL {
            self.preflight.remove(&OutcomeL { hotkey: hk(), outcome: v.as_str().into() });
        }
        for &k in AlertKind::ALL {
            self.alerts.remove(&KindL { hotkey: hk(), kind: k.as_str().into() });
        }
        for k in ProblemKind::ALL {
            self.miner_problem.remove(&KindL { hotkey: hk(), kind: k.as_str().into() });
        }
    }

    /// Age of the metagraph in use for `netuid`.
    pub fn set_metagraph_age(&self, netuid: u16, age_secs: f64) {
        self.metagraph_age.get_or_create(&NetuidL { netuid: netuid.to_string() }).set(age_secs);
    }

    /// OpenMetrics text (what `/metrics` serves).
    pub fn encode_openmetrics(&self) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }

    /// Classic Prometheus text format 0.0.4 (node_exporter's textfile collector does not take
    /// OpenMetrics): counters are declared under their `_total` name, `# UNIT`/`# EOF` dropped.
    pub fn encode_prometheus(&self) -> String {
        to_prometheus_text(&self.encode_openmetrics())
    }
}

/// Move a counter up to `total` (a lifetime count kept in the state). Never down: a total read
/// from an older state file than the counter has seen leaves it as it is.
fn set_total(counter: &Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

/// Convert OpenMetrics text to the classic format (see [`Metrics::encode_prometheus`]).
pub fn to_prometheus_text(om: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for l in om.lines() {
        if let Some(name) = l.strip_prefix("# TYPE ").and_then(|rest| rest.strip_suffix(" counter")) {
            counters.insert(name.to_string());
        }
    }
    let mut out = String::new();
    for l in om.lines() {
        if l == "# EOF" || l.starts_with("# UNIT ") {
            continue;
        }
        let line = match l.strip_prefix("# HELP ").or_else(|| l.strip_prefix("# TYPE ")) {
            Some(rest) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let kind = &l[..7];
                if counters.contains(name) { format!("{kind}{name}_total {tail}") } else { l.to_string() }
            }
            None => l.to_string(),
        };
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
