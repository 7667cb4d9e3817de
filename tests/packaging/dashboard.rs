//! The Grafana dashboard (its panels, the instance selector, and every expression on metric names a
//! real scrape has, valid PromQL) and the Alertmanager example (`amtool check-config`, and every
//! patrol alert routed to patrol's receiver).

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use super::scrapes::scrapes;
use super::{packaging, repo, tool};

/// Every `patrol_…` name in `text` (whole words).
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("patrol_") {
        let start = i + pos;
        let boundary = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map(|e| start + e)
            .unwrap_or(text.len());
        if boundary {
            names.push(text[start..end].to_string());
        }
        i = end;
    }
    names
}

/// The metric names in the real scrapes (agent and timer, healthy and not).
fn scraped_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (_, s) in scrapes().all() {
        for line in s.text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            if let Some(name) = line.split(['{', ' ']).next() {
                names.insert(name.to_string());
            }
        }
    }
    names
}

fn dashboard() -> Value {
    serde_json::from_str(&packaging("grafana-dashboard.json")).expect("the dashboard is JSON")
}

/// Every panel target's expression.
fn expressions(d: &Value) -> Vec<String> {
    d["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn the_dashboard_shows_budget_interval_probes_restarts_and_build_per_instance() {
    let d = dashboard();
    assert!(d.get("__inputs").is_none(), "the dashboard declares an __inputs data source nothing uses");
    let vars: Vec<&str> =
        d["templating"]["list"].as_array().expect("templating").iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(vars, ["datasource", "instance", "hotkey"]);
    let exprs = expressions(&d);
    for needed in [
        "patrol_github_calls_last_hour",
        "patrol_github_budget_per_hour",
        "patrol_check_interval_seconds",
        "patrol_probes_total",
        "patrol_restarts_detected_total",
        "patrol_build_info",
        "patrol_stake_weighted_coverage_ratio",
        "patrol_validator_state",
        "patrol_broadcasts_total",
        "patrol_checks_total",
        "patrol_pat_expiry_timestamp_seconds",
        "patrol_metagraph_age_seconds",
    ] {
        assert!(exprs.iter().any(|e| e.contains(needed)), "no panel shows {needed}");
    }
    // every selector of a patrol metric is narrowed to the chosen instance(s)
    for e in &exprs {
        for name in metric_names(e) {
            assert!(
                e.contains(&format!("{name}{{instance=~\"$instance\"")),
                "{name} in {e:?} ignores the instance selector"
            );
        }
    }
    assert!(d["panels"].as_array().is_some_and(|p| p.len() >= 24));
}

/// Names from real scrapes, not from the code that encodes them: a name the dashboard or the
/// rules use that no real patrol produced is a panel that stays empty.
#[test]
fn every_dashboard_and_alert_expression_names_a_scraped_metric_and_parses() {
    let scraped = scraped_names();
    assert!(scraped.len() >= 25, "{scraped:?}");
    let d = dashboard();
    let exprs = expressions(&d);
    let alerts = packaging("prometheus-alerts.yml");
    for (what, names) in [
        ("grafana-dashboard.json", exprs.iter().flat_map(|e| metric_names(e)).collect::<Vec<_>>()),
        ("prometheus-alerts.yml", metric_names(&alerts)),
    ] {
        assert!(names.len() > 10, "{what} uses few metrics: {names:?}");
        for name in names {
            assert!(scraped.contains(&name), "{what} uses {name}, which no real scrape has ({scraped:?})");
        }
    }
    // every expression is valid PromQL: as recording rules, with Grafana's variables filled in
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e.replace("$instance", ".*").replace("$hotkey", ".*");
        rules.push_str(&format!("      - record: dashboard_expr_{i}\n        expr: {}\n", Value::String(e)));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-rules.yml");
    std::fs::write(&file, &rules).unwrap();
    let out = Command::new(tool("promtool")).args(["check", "rules"]).arg(&file).output().expect("run promtool");
    assert!(
        out.status.success(),
        "a dashboard expression is not valid PromQL:\n{}{}\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_alertmanager_example_is_valid_and_routes_every_patrol_alert() {
    let amtool = tool("amtool");
    let config = repo().join("packaging/alertmanager.yml");
    let out = Command::new(&amtool).arg("check-config").arg(&config).output().expect("run amtool");
    assert!(
        out.status.success(),
        "amtool check-config:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let receiver = |labels: &[String]| {
        let out = Command::new(&amtool)
            .args(["config", "routes", "test", "--config.file"])
            .arg(&config)
            .args(labels)
            .output()
            .expect("run amtool config routes test");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let alerts = packaging("prometheus-alerts.yml");
    let mut n = 0;
    for line in alerts.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        for severity in ["warning", "critical"] {
            assert_eq!(
                receiver(&[format!("alertname={line}"), format!("severity={severity}")]),
                "patrol",
                "{line} ({severity})"
            );
        }
        n += 1;
    }
    assert!(n >= 14);
    assert_eq!(
        receiver(&["alertname=NodeDown".into(), "severity=critical".into()]),
        "default",
        "other alerts keep their routing"
    );
    let text = packaging("alertmanager.yml");
    assert!(
        text.contains("discord_configs:") && text.contains("telegram_configs:"),
        "a Discord receiver, a Telegram one described"
    );
}
