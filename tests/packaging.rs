//! Issue 6's packaging: the systemd units pass `systemd-analyze verify` and carry the promised
//! hardening, the `.deb` builds and contains the binary, the units and the config, and the alert
//! rules and dashboard only use metric names patrol really exports.
//!
//! These tests install nothing: `scripts/ci-deps.sh` (run by `scripts/test.sh`) provides
//! `systemd-analyze`, `dpkg-deb` and `cargo-deb`, and a test fails with a message naming that
//! script when one is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::cli::patrol_bin;

const UNITS: [&str; 4] = ["patrol.service", "patrol@.service", "patrol-reconcile.service", "patrol-reconcile.timer"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn packaging(name: &str) -> String {
    let p = repo().join("packaging").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| panic!("{name} is missing: run scripts/ci-deps.sh (CI does, via scripts/test.sh)"))
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let analyze = tool("systemd-analyze");
    // verify checks that ExecStart's binary exists: point the copies at the one just built
    let dir = tempfile::tempdir().unwrap();
    let bin = patrol_bin();
    let files: Vec<PathBuf> = UNITS
        .iter()
        .map(|u| {
            let p = dir.path().join(u);
            std::fs::write(&p, packaging(u).replace("/usr/bin/patrol", &bin.to_string_lossy())).unwrap();
            p
        })
        .collect();
    let out = Command::new(&analyze).args(["verify", "--man=no"]).args(&files).output().expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify failed ({}):\n{stderr}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn units_carry_the_promised_hardening() {
    for unit in ["patrol.service", "patrol@.service"] {
        let text = packaging(unit);
        for line in [
            "Type=notify",
            "NotifyAccess=main",
            "WatchdogSec=",
            "StateDirectory=patrol",
            "LoadCredential=hotkey:",
            "LoadCredential=github-pat:",
            "DynamicUser=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "NoNewPrivileges=yes",
            "CapabilityBoundingSet=\n",
            "RestartPreventExitStatus=78",
            "ExecReload=/bin/kill -HUP $MAINPID",
        ] {
            assert!(text.contains(line), "{unit} lacks {line:?}");
        }
    }
    assert!(packaging("patrol@.service").contains("--config /etc/patrol/%i.toml"));
    let timer = packaging("patrol-reconcile.timer");
    for line in ["RandomizedDelaySec=", "Persistent=true", "OnUnitActiveSec=15min"] {
        assert!(timer.contains(line), "the timer lacks {line}");
    }
    assert!(packaging("patrol-reconcile.service").contains("Type=oneshot"));
    let cron = packaging("patrol.cron");
    assert!(cron.lines().any(|l| l.starts_with("*/15 ") && l.contains("patrol reconcile --config")), "{cron}");
    // the packaged config points where the units put the credentials, and parses
    let cfg = packaging("config.toml");
    assert!(cfg.contains("/run/credentials/patrol.service/hotkey") && cfg.contains("credential = \"github-pat\""));
    patrol::config::Settings::build(
        Some(Path::new("/etc/patrol/config.toml")),
        Some(&cfg),
        &Default::default(),
        |_| None,
    )
    .expect("packaging/config.toml validates");
}

/// Metric families patrol exports, by their classic exposition names (counters with `_total`).
/// A family without series is not encoded, so every one gets a value first, the way the agent
/// fills them.
fn exported_families() -> Vec<String> {
    use patrol::github::{Preflight, PreflightOutcome, RateLimit, TokenExpiry};
    use patrol::observe::Category;
    use patrol::reconcile::core::Alert;
    use patrol::reconcile::pass::{PassOutcome, ValidatorOutcome};
    use patrol::reconcile::state::MinerState;
    use patrol::validators::Validator;

    let m = patrol::metrics::Metrics::new();
    let validator = Validator {
        uid: 1,
        hotkey: "5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi".into(),
        ip: "127.0.0.1".parse().unwrap(),
        port: 8091,
        vtrust: 0.9,
        stake: 20000.0,
    };
    let out = PassOutcome {
        started_at: 1_800_000_000,
        duration: std::time::Duration::from_millis(1200),
        validators: vec![ValidatorOutcome {
            validator,
            checked: None,
            action: patrol::reconcile::pass::ActionTaken::None,
            why: None,
            attempts: 1,
            final_category: Some(Category::Valid),
            next_check_at: 1_800_000_900,
            failures: 0,
            probe: Some(patrol::reconcile::core::ProbeVerdict::Restarted),
        }],
        alerts: vec![Alert { uid: Some(1), kind: patrol::reconcile::core::AlertKind::Terminal, message: "x".into() }],
        preflight: Some(Preflight {
            outcome: PreflightOutcome::Valid { login: "m".into(), id: "1".into() },
            identity_attempts: 1,
            token_expiry: Some(TokenExpiry {
                text: "2031-01-01 00:00:00 UTC".into(),
                unix_seconds: Some(1_924_992_000),
            }),
            rate_limit: Some(RateLimit { remaining: Some(4999), ..RateLimit::default() }),
            graphql_rate_limit: None,
        }),
        checks: vec![Category::Valid],
        broadcasts: vec![patrol::observe::BroadcastOutcome::Accepted],
        planned_broadcasts: vec![],
        probes: 1,
        github: patrol::reconcile::pass::Spend {
            pass_calls: 4,
            last_hour: 4,
            budget_per_hour: Some(150),
            configured_interval_s: 900,
            interval_s: 900,
            interval_lossy_s: 900,
            deferred: 0,
        },
    };
    let mut state = MinerState::new("5Hk", 74);
    state.last_full_coverage_at = Some(1_800_000_000);
    m.observe_pass("5Hk", &out, &state);
    m.observe_recheck("5Hk", &out, &state);
    m.set_metagraph_age(74, 3.0);
    m.inc_metagraph_reads(74, "chain");
    m.set_miner_problem("5Hk", None);
    m.inc_reloads("applied");
    m.set_ready(true);
    let text = m.encode_prometheus();
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(String::from)
        .collect()
}

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

#[test]
fn alert_rules_and_dashboard_use_exported_metric_names() {
    let families = exported_families();
    assert!(families.contains(&"patrol_broadcasts_total".to_string()), "{families:?}");
    let alerts = packaging("prometheus-alerts.yml");
    let dashboard = packaging("grafana-dashboard.json");
    let dash: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(dash["panels"].as_array().is_some_and(|p| p.len() >= 10));
    assert!(alerts.starts_with('#') && alerts.contains("\ngroups:\n"));
    assert_eq!(alerts.matches("- alert:").count(), alerts.matches("\n        expr:").count());
    for (what, text) in [("prometheus-alerts.yml", &alerts), ("grafana-dashboard.json", &dashboard)] {
        let used = metric_names(text);
        assert!(used.len() > 10, "{what} uses few metrics: {used:?}");
        for name in used {
            assert!(families.contains(&name), "{what} uses {name}, which patrol does not export ({families:?})");
        }
    }
    // what the issue asks the metrics to cover, each in an alert or a panel
    for needed in [
        "patrol_coverage_validators",
        "patrol_stake_weighted_coverage_ratio",
        "patrol_validator_state",
        "patrol_broadcasts_total",
        "patrol_checks_total",
        "patrol_pass_duration_seconds",
        "patrol_last_full_coverage_timestamp_seconds",
        "patrol_metagraph_age_seconds",
        "patrol_pat_preflight",
        "patrol_pat_expiry_timestamp_seconds",
    ] {
        assert!(dashboard.contains(needed), "the dashboard does not show {needed}");
        assert!(families.contains(&needed.to_string()), "{needed} is not exported");
    }
}

#[test]
fn the_deb_installs_binary_units_and_config() {
    let dpkg_deb = tool("dpkg-deb");
    let out_dir = tempfile::Builder::new().prefix("patrol-deb-").tempdir().unwrap();
    // package the debug binary `cargo test` has just built (no second build under cargo's lock)
    let out = Command::new("bash")
        .arg(repo().join("scripts/package-deb.sh"))
        .current_dir(repo())
        .env("PATROL_DEB_OUT", out_dir.path())
        .env("PATROL_DEB_PROFILE", "dev")
        .env("PATROL_DEB_NO_BUILD", "1")
        .output()
        .expect("run scripts/package-deb.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/package-deb.sh failed ({}); if cargo-deb is missing, run scripts/ci-deps.sh\n{stdout}\n{stderr}",
        out.status
    );
    let deb = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(deb.starts_with(out_dir.path()) && deb.is_file(), "no .deb at {}\n{stderr}", deb.display());
    let list = Command::new(&dpkg_deb).arg("-c").arg(&deb).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for path in [
        "./usr/bin/patrol",
        "./lib/systemd/system/patrol.service",
        "./lib/systemd/system/patrol@.service",
        "./lib/systemd/system/patrol-reconcile.service",
        "./lib/systemd/system/patrol-reconcile.timer",
        "./etc/patrol/config.toml",
        "./usr/share/doc/patrol/examples/config.example.toml",
        "./usr/share/doc/patrol/examples/prometheus-alerts.yml",
        "./usr/share/doc/patrol/examples/grafana-dashboard.json",
        "./usr/share/doc/patrol/examples/patrol.cron",
    ] {
        assert!(list.lines().any(|l| l.ends_with(&format!(" {path}"))), "{path} is not in the .deb:\n{list}");
    }
    assert!(list.lines().any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with(" ./usr/bin/patrol")), "{list}");
    // the config survives upgrades (a conffile) and is not world-readable
    assert!(list.lines().any(|l| l.starts_with("-rw-r-----") && l.ends_with(" ./etc/patrol/config.toml")), "{list}");
    let conffiles = Command::new(&dpkg_deb).arg("-I").arg(&deb).arg("conffiles").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&conffiles.stdout).trim(), "/etc/patrol/config.toml");
}
