//! `patrol simulate` end to end (issue 7): the #1481 scenario's acceptance numbers, determinism,
//! the plot, and bad scenario files.

use serde_json::Value;

use crate::support::cli::Scratch;

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn strategy<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["strategies"].as_array().unwrap().iter().find(|s| s["name"].as_str().unwrap().contains(name)).unwrap()
}

#[test]
fn issue_1481_one_shot_erodes_patrol_keeps_coverage() {
    let s = Scratch::new();
    let plot = s.path("1481.svg");
    let run = s.run(&["simulate", &example("issue-1481.toml"), "--json", "--plot", plot.to_str().unwrap()]);
    run.expect_code(0);
    let r = run.json();
    let n = r["validators"].as_u64().unwrap();
    assert_eq!(n, 7);
    let days = r["days"].as_f64().unwrap();

    let once = strategy(&r, "one-shot");
    assert!(once["final_covered"].as_u64().unwrap() <= 4, "one-shot post ends at 4/7 or worse: {once}");
    assert!(once["score_share_lost"].as_f64().unwrap() > 0.05, "{once}");
    assert_eq!(once["checks"], 0);

    let patrol = strategy(&r, "patrol");
    assert_eq!(patrol["final_covered"].as_u64(), Some(n));
    assert!(patrol["mean_stake_coverage"].as_f64().unwrap() >= 0.99, "{patrol}");
    let full_share = 1.0 - patrol["time_below_full_s"].as_f64().unwrap() / (days * 86_400.0);
    assert!(full_share >= 0.99, "100% coverage only {full_share} of the time");
    // every loss repaired within one interval (15m) + jitter (90s) + the first backoff (60s)
    assert!(patrol["repairs"].as_u64().unwrap() > 0);
    assert!(patrol["repair_max_s"].as_u64().unwrap() <= 15 * 60 + 90 + 60, "{patrol}");
    assert_eq!(patrol["unrepaired"], 0);
    // re-broadcasts only where coverage was lost: far fewer PATs than checks
    assert!(patrol["pats_sent"].as_u64().unwrap() < 3 * n, "{patrol}");
    assert!(patrol["score_share_lost"].as_f64().unwrap() < once["score_share_lost"].as_f64().unwrap() / 10.0);

    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), 3);

    // deterministic: the same seed gives the same numbers
    let again = s.run(&["simulate", &example("issue-1481.toml"), "--json"]).json();
    let strip = |v: &Value| {
        let mut v = v.clone();
        v["wall_ms"] = Value::Null;
        for st in v["strategies"].as_array_mut().unwrap() {
            st["wall_ms"] = Value::Null;
        }
        v
    };
    assert_eq!(strip(&r), strip(&again));
}

#[test]
fn every_example_scenario_parses() {
    let s = Scratch::new();
    // a shortened copy of each example: the table renders, exit 0
    for name in ["issue-1481.toml", "subnet-64-2w.toml", "heavy-256-30d.toml", "pat-rotation.toml"] {
        let text = std::fs::read_to_string(example(name)).unwrap();
        let short = text
            .lines()
            .map(|l| if l.starts_with("duration = ") { "duration = \"2d\"" } else { l })
            .collect::<Vec<_>>()
            .join("\n")
            .replace("validators = 256", "validators = 16")
            .replace("validators = 64", "validators = 16");
        s.write(name, &short, 0o644);
        let run = s.run(&["simulate", name]);
        run.expect_code(0);
        assert!(run.stdout.contains("STRATEGY") && run.stdout.contains("patrol"), "{run}");
    }
}

#[test]
fn bad_scenarios_name_the_key() {
    let s = Scratch::new();
    s.write("bad.toml", "duration = \"3d\"\n[subnet]\nvalidators = 3\n[[fault]]\nkind = \"meteor\"\nat = [\"1d\"]\n[[strategy]]\nkind = \"patrol\"\n", 0o644);
    let run = s.run(&["simulate", "bad.toml"]);
    run.expect_code(78);
    assert!(run.stderr.contains("fault[0].kind") && run.stderr.contains("meteor"), "{run}");
    let run = s.run(&["simulate", "missing.toml"]);
    run.expect_code(78);
    s.write(
        "typo.toml",
        "duration = \"3d\"\nseeed = 4\n[subnet]\nvalidators = 3\n[[strategy]]\nkind = \"post_once\"\n",
        0o644,
    );
    let run = s.run(&["simulate", "typo.toml", "--json"]);
    run.expect_code(78);
    assert!(run.stdout.contains("seeed") || run.stderr.contains("seeed"), "{run}");
}
