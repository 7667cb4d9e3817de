//! The families' exposition, pinned, and how the series follow the state.

use super::*;

#[test]
fn classic_text_renames_counters() {
    let m = Metrics::new();
    m.passes.get_or_create(&MinerL { hotkey: "5X".into() }).inc();
    m.set_metagraph_age(74, 12.5);
    let om = m.encode_openmetrics();
    assert!(om.contains("# TYPE patrol_passes counter") && om.ends_with("# EOF\n"));
    let p = m.encode_prometheus();
    assert!(p.contains("# TYPE patrol_passes_total counter"));
    assert!(p.contains("patrol_passes_total{hotkey=\"5X\"} 1"));
    assert!(p.contains("patrol_metagraph_age_seconds{netuid=\"74\"} 12.5"));
    assert!(!p.contains("# EOF"));
}

/// Every family with a series or two: what `/metrics` and the textfile say.
fn populated() -> Metrics {
    let m = Metrics::new();
    let hk = || "5Hk".to_string();
    let miner = || MinerL { hotkey: hk() };
    for c in Category::ALL {
        m.coverage.get_or_create(&CategoryL { hotkey: hk(), category: c.as_str().into() }).set(2);
        m.checks.get_or_create(&CategoryL { hotkey: hk(), category: c.as_str().into() }).inc_by(3);
    }
    m.eligible.get_or_create(&miner()).set(7);
    m.stake_coverage.get_or_create(&miner()).set(0.625);
    let v = ValidatorL { hotkey: hk(), uid: "3".into(), validator: "5Val".into(), category: "valid".into() };
    m.validator_state.get_or_create(&v).set(1);
    m.validator_failures.get_or_create(&ValidatorUidL { hotkey: hk(), uid: "3".into() }).set(2);
    for o in crate::observe::BroadcastOutcome::ALL {
        m.broadcasts.get_or_create(&OutcomeL { hotkey: hk(), outcome: o.as_str().into() }).inc();
    }
    m.pass_duration.get_or_create(&miner()).set(1.5);
    m.last_pass.get_or_create(&miner()).set(1_700_000_000.0);
    m.last_full.get_or_create(&miner()).set(1_700_000_001.0);
    m.set_metagraph_age(74, 12.5);
    for &v in PreflightVerdict::ALL {
        m.preflight.get_or_create(&OutcomeL { hotkey: hk(), outcome: v.as_str().into() }).set(1);
    }
    m.pat_expiry.get_or_create(&miner()).set(1_924_992_000.0);
    m.rate_remaining.get_or_create(&miner()).set(4999);
    for &k in AlertKind::ALL {
        m.alerts.get_or_create(&KindL { hotkey: hk(), kind: k.as_str().into() }).set(1);
    }
    m.passes.get_or_create(&miner()).inc();
    m.rechecks.get_or_create(&miner()).inc();
    m.inc_metagraph_reads(74, "chain");
    m.set_miner_problem("5Hk", Some(ProblemKind::PatUnavailable));
    m.init_reloads();
    m.inc_reloads("applied");
    m.github_calls.get_or_create(&miner()).inc_by(9);
    m.github_last_hour.get_or_create(&miner()).set(4);
    m.github_budget.get_or_create(&miner()).set(150);
    m.check_interval.get_or_create(&miner()).set(900);
    m.probes.get_or_create(&miner()).inc();
    m.restarts.get_or_create(&miner()).inc();
    m.set_state_save_failed("5Hk", true);
    m.set_ready(true);
    m.inc_notifications("phone", "sent");
    m
}

/// The exposition text with each family's series sorted (a family keeps them in a hash map)
/// and build_info's labels masked (they name this build).
fn normalised(text: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut series: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            series.sort();
            out.append(&mut series);
            out.push(line.to_string());
        } else if line.starts_with("patrol_build_info{") {
            series.push("patrol_build_info{…} 1".into());
        } else {
            series.push(line.to_string());
        }
    }
    series.sort();
    out.append(&mut series);
    out.join("\n") + "\n"
}

/// Family names, help, types, label names and their order, label values: pinned in
/// `exposition.txt` (`PATROL_BLESS=1` rewrites it, for a deliberate change).
#[test]
fn the_exposition_is_pinned() {
    let pin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/metrics/exposition.txt");
    let text = normalised(&populated().encode_prometheus());
    if std::env::var_os("PATROL_BLESS").is_some() {
        std::fs::write(&pin, &text).unwrap();
    }
    let want = std::fs::read_to_string(&pin).unwrap_or_default();
    assert!(text == want, "the exposition differs from {}:\n{text}", pin.display());
}

fn preflight(expiry: Option<i64>) -> crate::github::PreflightReport {
    let valid = crate::github::PreflightOutcome::Valid { login: "m".into(), id: "1".into() };
    crate::github::PreflightReport {
        token_expiry: expiry.map(|t| crate::github::TokenExpiry { text: String::new(), unix_seconds: Some(t) }),
        ..crate::github::PreflightReport::judged(valid)
    }
}

/// Issue 19: in agent mode a stale `pat_expiry` survived a rotation to a PAT without expiry.
#[test]
fn preflight_series_follow_the_pat_in_use() {
    let m = Metrics::new();
    let mut state = MinerState::new("5Hk", 74);
    state.fingerprint = Some("fp-a".into());
    state.remember_preflight("fp-a", &preflight(Some(1_924_992_000)), 100);
    m.observe_totals("5Hk", &state);
    let text = m.encode_prometheus();
    assert!(text.contains("patrol_pat_expiry_timestamp_seconds{hotkey=\"5Hk\"} 1924992000"), "{text}");
    assert!(text.contains("patrol_pat_preflight{hotkey=\"5Hk\",outcome=\"valid\"} 1"), "{text}");
    // rotated: until a preflight of the new PAT, nothing is known about it
    state.fingerprint = Some("fp-b".into());
    m.observe_totals("5Hk", &state);
    let text = m.encode_prometheus();
    assert!(!text.contains("patrol_pat_expiry_timestamp_seconds{"), "{text}");
    assert!(!text.contains("patrol_pat_preflight{"), "{text}");
    // the new PAT has no expiry
    state.remember_preflight("fp-b", &preflight(None), 200);
    m.observe_totals("5Hk", &state);
    let text = m.encode_prometheus();
    assert!(!text.contains("patrol_pat_expiry_timestamp_seconds{"), "{text}");
    assert!(text.contains("patrol_pat_preflight{hotkey=\"5Hk\",outcome=\"valid\"} 1"), "{text}");
}

/// Counters are the state's totals: they continue across processes and never go down.
#[test]
fn counters_follow_the_state_totals() {
    let mut state = MinerState::new("5Hk", 74);
    state.totals.passes = 41;
    state.totals.checks.insert(Category::Valid, 7);
    let m = Metrics::new();
    m.observe_totals("5Hk", &state);
    state.totals.passes = 42;
    m.observe_totals("5Hk", &state);
    state.totals.passes = 3; // an older state file: the counter does not go down
    m.observe_totals("5Hk", &state);
    let text = m.encode_prometheus();
    assert!(text.contains("patrol_passes_total{hotkey=\"5Hk\"} 42"), "{text}");
    assert!(text.contains("patrol_checks_total{hotkey=\"5Hk\",category=\"valid\"} 7"), "{text}");
}
