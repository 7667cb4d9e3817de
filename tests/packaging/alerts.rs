//! `promtool test rules` on `packaging/prometheus-alerts.yml`, with input series made from real
//! scrapes ([`super::scrapes`]): every alert fires when it should (and not before its `for:`), and
//! none fires on a healthy agent or a healthy timer setup over four hours.
//!
//! How a scrape becomes promtool's `input_series` (one sample a minute): each sample keeps its name
//! and labels, plus the `job` and `instance` Prometheus would attach (`patrol` for the agent's
//! `/metrics`, `node` for the timer's textfile served by node_exporter). Unix timestamps (the
//! `*_timestamp_seconds` families) are rebased onto promtool's clock, which starts at 0: a value
//! taken `d` seconds before the scrape is `d` seconds before the segment starts. In a *running*
//! segment the agent or the timer passes every 15 minutes, so `patrol_last_pass_timestamp_seconds`
//! (and `patrol_last_full_coverage_timestamp_seconds` while the coverage is full) step by 900 s
//! every 15 minutes; in a *frozen* one (the timer stopped) nothing moves. `up` is Prometheus's own
//! series (1 for a successful scrape, 0 for a failed one), never in a scrape.
//!
//! promtool compares annotations too; the rules are tested from a copy without them (the
//! annotations are checked by `promtool check rules` on the shipped file, which parses their
//! templates). `expr`, `for` and `labels` are the shipped ones, byte for byte.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::process::Command;

use super::scrapes::{Scrape, scrapes};
use super::{packaging, run_checker, tool};
use crate::support::agent::{Sample, parse_prometheus};

const AGENT_JOB: (&str, &str) = ("patrol", "127.0.0.1:9184");
const NODE_JOB: (&str, &str) = ("node", "miner-host:9100");

/// Evaluation times at which a healthy setup must have no alert at all.
const QUIET_TIMES: [u32; 4] = [5, 60, 125, 235];

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Passes every 15 minutes.
    Running,
    /// Nothing changes (the timer stopped; its last file stays).
    Frozen,
}

/// `minutes` of one scrape (or, `scrape: None`, of nothing but `up`).
struct Segment<'a> {
    minutes: u32,
    scrape: Option<&'a Scrape>,
    mode: Mode,
    job: (&'static str, &'static str),
    /// `up{job,instance}` for this segment (the agent's scrape target); None for the textfile.
    up: Option<f64>,
    /// A series (name, or name with a label prefix) set to another value: the derived cases.
    edit: Option<(&'static str, f64)>,
}

/// Where an expected alert's labels come from.
enum From {
    /// The labels of the series `name` (with these labels) in the segment active at eval time.
    Series(&'static str, &'static [(&'static str, &'static str)]),
    /// `up`'s labels.
    Up,
    /// No labels (an `absent()` alert).
    Nothing,
}

struct Fire {
    alert: &'static str,
    at: u32,
    from: From,
    /// An eval time before `for:` has passed: not firing yet.
    quiet_before: Option<u32>,
}

struct Case<'a> {
    name: &'static str,
    segments: Vec<Segment<'a>>,
    fires: Vec<Fire>,
    /// Healthy: no alert at [`QUIET_TIMES`].
    healthy: bool,
}

fn seg<'a>(minutes: u32, scrape: &'a Scrape, mode: Mode, agent: bool) -> Segment<'a> {
    Segment {
        minutes,
        scrape: Some(scrape),
        mode,
        job: if agent { AGENT_JOB } else { NODE_JOB },
        up: agent.then_some(1.0),
        edit: None,
    }
}

/// A fault: no healthy check, these alerts fire.
fn fault<'a>(name: &'static str, segments: Vec<Segment<'a>>, fires: Vec<Fire>) -> Case<'a> {
    Case { name, segments, fires, healthy: false }
}

fn fire(alert: &'static str, at: u32, from: From, quiet_before: Option<u32>) -> Fire {
    Fire { alert, at, from, quiet_before }
}

/// The two healthy setups, then one case per fault.
fn cases() -> Vec<Case<'static>> {
    let s = scrapes();
    let healthy = |name, scrape, agent| Case {
        name,
        segments: vec![seg(240, scrape, Mode::Running, agent)],
        fires: vec![],
        healthy: true,
    };
    let mut cases =
        vec![healthy("agent, healthy", &s.agent_healthy, true), healthy("timer, healthy", &s.timer_healthy, false)];
    cases.extend(fault_cases());
    cases
}

fn fault_cases() -> Vec<Case<'static>> {
    use From::*;
    use Mode::*;
    let s = scrapes();
    // the timer setup, passing every 15 minutes
    let timer = |minutes, scrape| vec![seg(minutes, scrape, Running, false)];
    let derived = |edit: (&'static str, f64)| Segment { edit: Some(edit), ..seg(30, &s.agent_healthy, Running, true) };
    vec![
        fault(
            "the agent stops answering /metrics",
            vec![
                seg(10, &s.agent_healthy, Running, true),
                Segment { minutes: 50, scrape: None, mode: Running, job: AGENT_JOB, up: Some(0.0), edit: None },
            ],
            vec![fire("PatrolDown", 16, Up, Some(14)), fire("PatrolAbsent", 55, Nothing, Some(40))],
        ),
        fault(
            "the timer stops running (its last file stays)",
            vec![seg(60, &s.timer_healthy, Frozen, false)],
            vec![fire("PatrolPassesStopped", 50, Series("patrol_last_pass_timestamp_seconds", &[]), Some(40))],
        ),
        fault(
            "a validator down for a scoring round",
            vec![seg(10, &s.timer_healthy, Running, false), seg(130, &s.timer_partial, Running, false)],
            vec![
                fire("PatrolCoverageIncomplete", 135, Series("patrol_stake_weighted_coverage_ratio", &[]), Some(125)),
                fire(
                    "PatrolFullCoverageStale",
                    135,
                    Series("patrol_last_full_coverage_timestamp_seconds", &[]),
                    Some(125),
                ),
            ],
        ),
        fault(
            "no validator holds the PAT",
            timer(40, &s.timer_none),
            vec![fire("PatrolNoCoverage", 35, Series("patrol_eligible_validators", &[]), Some(25))],
        ),
        fault(
            "the PAT expires in 3 days",
            timer(10, &s.timer_expiring),
            vec![fire("PatrolPatExpiresSoon", 5, Series("patrol_pat_expiry_timestamp_seconds", &[]), None)],
        ),
        fault(
            "GitHub revoked the PAT",
            timer(30, &s.timer_pat_invalid),
            vec![
                fire("PatrolPatInvalid", 5, Series("patrol_pat_preflight", &[("outcome", "invalid")]), None),
                fire("PatrolValidatorAlert", 20, Series("patrol_alerts", &[("kind", "pat_invalid")]), Some(10)),
            ],
        ),
        fault(
            "no validator source (the chain unreachable)",
            timer(40, &s.timer_no_chain),
            vec![
                fire(
                    "PatrolMinerProblem",
                    20,
                    Series("patrol_miner_problem", &[("kind", "no_validator_source")]),
                    Some(10),
                ),
                fire("PatrolNotReady", 35, Series("patrol_ready", &[]), Some(25)),
            ],
        ),
        fault(
            "the agent rejects a new config",
            vec![seg(10, &s.agent_healthy, Running, true), seg(50, &s.agent_reload_rejected, Running, true)],
            vec![fire("PatrolReloadRejected", 15, Series("patrol_reloads_total", &[("result", "rejected")]), Some(5))],
        ),
        fault(
            "derived: the real rate-limit series at 50 calls left",
            vec![derived(("patrol_github_rate_limit_remaining", 50.0))],
            vec![fire("PatrolGithubRateLimitLow", 15, Series("patrol_github_rate_limit_remaining", &[]), Some(5))],
        ),
        fault(
            "derived: the real metagraph-age series at 4000 s (cached metagraph, chain down)",
            vec![derived(("patrol_metagraph_age_seconds", 4000.0))],
            vec![fire("PatrolMetagraphStale", 20, Series("patrol_metagraph_age_seconds", &[]), Some(10))],
        ),
    ]
}

/// `name{k="v",…}` with the labels sorted (the form promtool's series strings take).
fn series_key(name: &str, labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> =
        labels.iter().map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))).collect();
    format!("{name}{{{}}}", inner.join(","))
}

fn with_job(s: &Sample, job: (&str, &str)) -> BTreeMap<String, String> {
    let mut l = s.labels.clone();
    l.insert("job".into(), job.0.into());
    l.insert("instance".into(), job.1.into());
    l
}

fn parse(scrape: &Scrape) -> Vec<Sample> {
    parse_prometheus(&scrape.text)
        .unwrap_or_else(|e| panic!("a real scrape is not Prometheus text: {e}\n{}", scrape.text))
}

/// Does this timestamp series move with each pass (see the module doc)?
fn advances(s: &Sample, samples: &[Sample]) -> bool {
    match s.name.as_str() {
        "patrol_last_pass_timestamp_seconds" => true,
        "patrol_last_full_coverage_timestamp_seconds" => samples.iter().any(|r| {
            r.name == "patrol_stake_weighted_coverage_ratio"
                && r.labels.get("hotkey") == s.labels.get("hotkey")
                && r.value == 1.0
        }),
        _ => false,
    }
}

/// The input series of a case: series → one value (or none) per minute.
fn input_series(segments: &[Segment]) -> BTreeMap<String, Vec<Option<f64>>> {
    let total: u32 = segments.iter().map(|s| s.minutes).sum();
    let mut out: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
    let mut start = 0u32;
    for sg in segments {
        let mut set = |key: String, minute: u32, v: f64| {
            out.entry(key).or_insert_with(|| vec![None; total as usize])[minute as usize] = Some(v);
        };
        let samples = sg.scrape.map(parse).unwrap_or_default();
        for m in start..start + sg.minutes {
            if let Some(up) = sg.up {
                set(
                    series_key(
                        "up",
                        &BTreeMap::from([("job".into(), sg.job.0.into()), ("instance".into(), sg.job.1.into())]),
                    ),
                    m,
                    up,
                );
            }
            for s in &samples {
                let key = series_key(&s.name, &with_job(s, sg.job));
                let mut v = s.value;
                if s.name.ends_with("_timestamp_seconds") {
                    let at = sg.scrape.map(|x| x.at).unwrap_or(0.0);
                    v = f64::from(start * 60) + (s.value - at);
                    if sg.mode == Mode::Running && advances(s, &samples) {
                        v += f64::from((m - start) / 15 * 900);
                    }
                }
                if let Some((edited, value)) = sg.edit
                    && key.starts_with(edited)
                {
                    v = value;
                }
                set(key, m, v);
            }
        }
        start += sg.minutes;
    }
    out
}

/// The labels an alert fired from `from` carries at `minute`.
fn expected_labels(case: &Case, from: &From, minute: u32) -> Vec<BTreeMap<String, String>> {
    let mut start = 0;
    let sg = case
        .segments
        .iter()
        .find(|s| {
            start += s.minutes;
            minute < start
        })
        .unwrap_or_else(|| panic!("{}: no segment at minute {minute}", case.name));
    match from {
        From::Nothing => vec![BTreeMap::new()],
        From::Up => vec![BTreeMap::from([("job".into(), sg.job.0.into()), ("instance".into(), sg.job.1.into())])],
        From::Series(name, want) => {
            let samples = sg.scrape.map(parse).unwrap_or_default();
            let found: Vec<BTreeMap<String, String>> = samples
                .iter()
                .filter(|s| {
                    s.name == *name && want.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
                })
                .map(|s| with_job(s, sg.job))
                .collect();
            assert!(
                !found.is_empty(),
                "{}: the real scrape has no {name}{want:?}:\n{}",
                case.name,
                sg.scrape.map(|s| s.text.as_str()).unwrap_or("")
            );
            found
        }
    }
}

/// Alert name → its `severity` label, from the rules file.
fn alerts(rules: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in rules.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("- alert: ") {
            current = Some(name.trim().to_string());
        } else if let (Some(name), Some(sev)) = (current.as_ref(), t.strip_prefix("labels: {severity: ")) {
            out.insert(name.clone(), sev.trim_end_matches('}').trim().to_string());
        }
    }
    out
}

/// The rules without their `annotations:` blocks (see the module doc).
fn without_annotations(rules: &str) -> String {
    let mut out = String::new();
    let mut skip_deeper_than: Option<usize> = None;
    for line in rules.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(level) = skip_deeper_than {
            if line.trim().is_empty() || indent > level {
                continue;
            }
            skip_deeper_than = None;
        }
        if line.trim() == "annotations:" {
            skip_deeper_than = Some(indent);
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn yaml_labels(l: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}: {}", serde_json::Value::String(v.clone()))).collect();
    format!("{{{}}}", inner.join(", "))
}

fn test_file(cases: &[Case], severities: &BTreeMap<String, String>) -> String {
    let mut y = String::from("rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n");
    for case in cases {
        let _ = writeln!(y, "  # {}\n  - interval: 1m\n    input_series:", case.name);
        for (series, values) in input_series(&case.segments) {
            let vals: Vec<String> = values.iter().map(|v| v.map_or("_".to_string(), |v| format!("{v}"))).collect();
            let _ = writeln!(y, "      - series: '{series}'\n        values: '{}'", vals.join(" "));
        }
        y.push_str("    alert_rule_test:\n");
        if case.healthy {
            for at in QUIET_TIMES {
                for alert in severities.keys() {
                    let _ = writeln!(y, "      - eval_time: {at}m\n        alertname: {alert}\n        exp_alerts: []");
                }
            }
        }
        for f in &case.fires {
            if let Some(q) = f.quiet_before {
                let _ = writeln!(y, "      - eval_time: {q}m\n        alertname: {}\n        exp_alerts: []", f.alert);
            }
            let _ = writeln!(y, "      - eval_time: {}m\n        alertname: {}\n        exp_alerts:", f.at, f.alert);
            let severity = severities.get(f.alert).unwrap_or_else(|| panic!("no alert {} in the rules", f.alert));
            for mut labels in expected_labels(case, &f.from, f.at) {
                labels.insert("severity".into(), severity.clone());
                let _ = writeln!(y, "          - exp_labels: {}", yaml_labels(&labels));
            }
        }
    }
    y
}

#[test]
fn alert_rules_fire_when_they_should_and_stay_silent_when_healthy() {
    let promtool = tool("promtool");
    let rules = packaging("prometheus-alerts.yml");
    run_checker(
        Command::new(&promtool).args(["check", "rules"]).arg(super::repo().join("packaging/prometheus-alerts.yml")),
    );
    let severities = alerts(&rules);
    assert!(severities.len() >= 14 && severities.contains_key("PatrolAbsent"), "{severities:?}");
    let cases = cases();
    // every alert has a case where it fires
    let fired: BTreeSet<&str> = cases.iter().flat_map(|c| c.fires.iter().map(|f| f.alert)).collect();
    let all: BTreeSet<&str> = severities.keys().map(String::as_str).collect();
    assert_eq!(fired, all, "alerts without a case that fires them");

    let dir = tempfile::Builder::new().prefix("patrol-promtool-").tempdir().expect("temp dir");
    let stripped = without_annotations(&rules);
    assert_eq!(stripped.matches("- alert:").count(), severities.len());
    assert!(!stripped.contains("summary:"), "{stripped}");
    std::fs::write(dir.path().join("rules.yml"), stripped).expect("write rules.yml");
    let tests = test_file(&cases, &severities);
    std::fs::write(dir.path().join("tests.yml"), &tests).expect("write tests.yml");
    let out = Command::new(&promtool)
        .args(["test", "rules", "tests.yml"])
        .current_dir(dir.path())
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{}{}\n(tests in {}; kept)",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        dir.keep().display()
    );
}

#[test]
fn stripping_annotations_keeps_everything_else() {
    let rules = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: x > 1\n        for: 5m\n        labels: {severity: warning}\n        annotations:\n          summary: \"s\"\n          description: \"d\"\n\n      - alert: B\n        expr: y == 0\n        labels: {severity: critical}\n";
    assert_eq!(
        without_annotations(rules),
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: x > 1\n        for: 5m\n        labels: {severity: warning}\n      - alert: B\n        expr: y == 0\n        labels: {severity: critical}\n"
    );
    assert_eq!(alerts(rules), BTreeMap::from([("A".into(), "warning".into()), ("B".into(), "critical".into())]));
}
