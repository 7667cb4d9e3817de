//! Timer mode (with and without node_exporter), `patrol@NAME`, and the cron line.

use std::time::Duration;

use crate::Deploy;
use crate::agent::{assert_running, mtime, sample, state_file};
use crate::container::Container;
use crate::net::{ALICE_HOTKEY, MINER_HOTKEY, PAT_A, PAT_ALICE};

const TIMER: &[&str] = &["patrol-reconcile.timer", "patrol-reconcile.service"];

/// The last run of patrol-reconcile.service: ran, exited 0, not a failure.
fn assert_pass_succeeded(c: &Container, expected: &str) {
    let got: Vec<String> = ["ConditionResult", "Result", "ExecMainCode", "ExecMainStatus"]
        .iter()
        .map(|p| c.prop("patrol-reconcile.service", p))
        .collect();
    // ExecMainCode 1 = CLD_EXITED
    if got != ["yes", "success", "1", "0"] {
        c.fail(TIMER, expected, &format!("ConditionResult, Result, ExecMainCode, ExecMainStatus = {got:?}"));
    }
}

/// The README's switch to the timer: the agent stops cleanly, the timer is scheduled within its
/// next quarter hour (+ 90 s), and a pass started by hand reconciles, with no node_exporter.
pub fn timer(d: &Deploy) {
    let c = &d.c;
    let units = &["patrol.service", "patrol-reconcile.timer", "patrol-reconcile.service"];
    let before = mtime(c, &state_file());
    let since = c.ok(units, "date +%s").trim().to_string();
    let out = d.readme.run(c, "timer", "/root", "", units);
    // The agent's stop: SIGTERM, a clean exit 0. Disabled and stopped, the unit is unloaded at
    // once (its properties reset), so systemd's own words in the journal say how it ended:
    // "Deactivated successfully" is Result=success; a non-zero exit logs "Main process exited,
    // code=…, status=…" and "Failed with result".
    let stop = c
        .sh(&format!(
            "systemctl is-active patrol.service; journalctl -u patrol.service --since @{since} --no-pager -o cat"
        ))
        .stdout;
    if !stop.starts_with("inactive\n")
        || !stop.contains("patrol.service: Deactivated successfully.")
        || stop.contains("Failed with result")
        || stop.contains("Main process exited")
    {
        c.fail(units, "systemctl stop patrol: inactive, \"Deactivated successfully\" (Result=success, exit 0)", &stop);
    }
    // scheduled: a calendar timer, persistent, next run within the quarter hour + its random delay
    let timer: Vec<String> =
        ["ActiveState", "Persistent", "TimersCalendar"].iter().map(|p| c.prop("patrol-reconcile.timer", p)).collect();
    if timer[0] != "active" || timer[1] != "yes" || !timer[2].contains("OnCalendar=*-*-* *:00/15:00") {
        c.fail(TIMER, "the timer active, Persistent=yes, OnCalendar every 15 min", &format!("{timer:?}"));
    }
    let next = c.ok(TIMER, "echo $(( $(date -d \"$(systemctl show patrol-reconcile.timer -p NextElapseUSecRealtime --value)\" +%s) - $(date +%s) ))");
    let next: i64 = next.trim().parse().unwrap_or(-1);
    if !(0..=15 * 60 + 90 + 30).contains(&next) {
        c.fail(TIMER, "the next run within 15 min + 90 s", &format!("in {next} s"));
    }
    assert_pass_succeeded(c, "the pass started by hand ran and exited 0 (all covered)");
    let n = d.net.validator_count();
    if !out.stdout.contains(&format!("{n}/{n} covered")) {
        c.fail(TIMER, "its journal (the README's journalctl) shows the coverage", &out.to_string());
    }
    if mtime(c, &state_file()) == before {
        c.fail(TIMER, "the pass saved the shared state", "the state file did not change");
    }
    let prom = c.ok(TIMER, "cat /var/lib/patrol/patrol.prom; stat -c '%U %a' /var/lib/patrol; test ! -e /var/lib/prometheus && echo 'no node exporter'");
    let ratio = sample(&prom, &format!("patrol_stake_weighted_coverage_ratio{{hotkey=\"{MINER_HOTKEY}\""));
    if ratio != Some(1.0) || !prom.contains("patrol 700") || !prom.contains("no node exporter") {
        c.fail(
            TIMER,
            "metrics in /var/lib/patrol/patrol.prom (ratio 1), /var/lib/patrol patrol's 0700, no node exporter",
            &prom,
        );
    }
}

/// With Debian's node_exporter installed (offline, from the root's apt cache, as the README says),
/// a timer pass's metrics are served by its textfile collector; no unit was edited.
pub fn node_exporter(d: &Deploy) {
    let c = &d.c;
    let units = &["patrol-reconcile.service", "prometheus-node-exporter.service"];
    let out = d.readme.run(c, "node-exporter", "/root", "", units);
    assert_pass_succeeded(c, "the pass with node_exporter installed exited 0");
    let ratio = format!("patrol_stake_weighted_coverage_ratio{{hotkey=\"{MINER_HOTKEY}\"");
    if sample(&out.stdout, &ratio) != Some(1.0) {
        c.fail(units, "node_exporter's /metrics serves the pass's patrol_ series", &out.to_string());
    }
    // every series the pass wrote, with its value, in node_exporter's page (which re-orders labels
    // and re-formats numbers: compared parsed)
    let exported = series(&c.sh("curl -sf http://127.0.0.1:9100/metrics").stdout);
    let written = series(&c.ok(units, "cat /var/lib/patrol/patrol.prom"));
    let missing: Vec<&String> = written.iter().filter(|(k, v)| exported.get(*k) != Some(v)).map(|(k, _)| k).collect();
    if written.len() < 10 || !missing.is_empty() {
        c.fail(
            units,
            "node_exporter serves every series of /var/lib/patrol/patrol.prom with its value",
            &format!("missing or different: {missing:?}"),
        );
    }
    let copy = c.ok(units, "stat -c '%U:%G %a' /var/lib/prometheus/node-exporter/patrol.prom; systemctl show patrol-reconcile.service -p DropInPaths --value; ls /etc/systemd/system");
    if !copy.starts_with("root:root 644\n") || copy.lines().nth(1) != Some("") || copy.contains("patrol") {
        c.fail(
            units,
            "the copy root:root 0644, and no patrol unit edited (no drop-in, nothing in /etc/systemd/system)",
            &copy,
        );
    }
}

/// `patrol@alice`: the README's steps for a second miner; its own credentials, port and state.
pub fn instance(d: &Deploy) {
    let c = &d.c;
    let units = &["patrol@alice.service"];
    let wallet = c.host_path("/root/.bittensor/wallets/alice/hotkeys/default");
    std::fs::create_dir_all(wallet.parent().expect("a parent")).expect("mkdir alice's wallet");
    std::fs::copy(d.net.alice_hotkey_file(), &wallet).expect("copy alice's hotkey into the container");
    let out = d.readme.run(c, "instance", "/root", &format!("{PAT_ALICE}\n"), units);
    if out.stdout.trim_end().lines().last() != Some("ready") {
        c.fail(units, "patrol@alice's /readyz on 127.0.0.1:9185 answers ready", &out.to_string());
    }
    assert_running(c, "patrol@alice.service");
    let n = d.net.validator_count();
    let status = c.prop("patrol@alice.service", "StatusText");
    if !status.starts_with(&format!("{n}/{n} covered")) {
        c.fail(units, "patrol@alice's StatusText shows full coverage", &status);
    }
    c.wait(units, "every validator holds alice's PAT", Duration::from_secs(30), || {
        d.net.all_hold(ALICE_HOTKEY, PAT_ALICE)
    });
    let state = c.ok(units, &format!("stat -c %U /var/lib/patrol-alice; ls /var/lib/patrol-alice; test -e /var/lib/patrol/state-{ALICE_HOTKEY}-74.json || echo separate"));
    if !state.starts_with("patrol\n")
        || !state.contains(&format!("state-{ALICE_HOTKEY}-74.json"))
        || !state.contains("separate")
    {
        c.fail(units, "alice's state in /var/lib/patrol-alice (the patrol user's), not in /var/lib/patrol", &state);
    }
}

/// The cron line, run as cron runs it: its environment lines, `/bin/sh -c`, as the user it
/// names. A shim `sleep` (first on the line's PATH) returns at once and records the jitter.
pub fn cron(d: &mut Deploy) {
    let units: &[&str] = &[];
    {
        let c = &d.c;
        // the miner's own account and wallet (on a miner's machine they exist already)
        c.ok(units, "useradd --create-home --shell /bin/sh miner && install -d -m 700 -o miner -g miner /home/miner/.bittensor /home/miner/.bittensor/wallets /home/miner/.bittensor/wallets/miner /home/miner/.bittensor/wallets/miner/hotkeys");
        std::fs::copy(d.net.miner_hotkey_file(), c.host_path("/home/miner/.bittensor/wallets/miner/hotkeys/default"))
            .expect("copy the hotkey");
        c.ok(units, "chown miner:miner /home/miner/.bittensor/wallets/miner/hotkeys/default && chmod 600 /home/miner/.bittensor/wallets/miner/hotkeys/default");
        d.readme.run(c, "cron", "/root", &format!("{PAT_A}\n"), units);
        let out = c.sh_stdin("cat >> /home/miner/.config/patrol/config.toml", d.net.test_keys().as_bytes());
        assert!(out.ok(), "append the test keys: {out}");
        c.ok(units, "printf '#!/bin/sh\\necho \"$@\" >> /tmp/patrol-test-sleep\\n' > /usr/local/bin/sleep && chmod 755 /usr/local/bin/sleep");
    }
    let n = d.net.validator_count();
    let run = run_cron_line(&d.c);
    // logger's line reaches the journal asynchronously
    let journal = d.c.wait(units, "the cron run's line in the journal", Duration::from_secs(10), || {
        let j = d.c.sh("journalctl -t patrol-reconcile --no-pager -o cat").stdout;
        j.contains("exit ").then_some(j.clone()).ok_or(j)
    });
    let jitter: Option<u32> = d.c.sh("cat /tmp/patrol-test-sleep").stdout.trim().parse().ok();
    if !run.is_empty()
        || !journal.contains("exit 0:")
        || !journal.contains(&format!("{n}/{n} covered"))
        || jitter.is_none_or(|s| s > 90)
    {
        d.c.fail(
            units,
            "a covered run: nothing for cron to mail, \"exit 0: … covered\" in the journal, a 0-90 s sleep",
            &format!("mail: {run:?}\njournal: {journal}\nsleep: {jitter:?}"),
        );
    }
    // a validator down: partial coverage, exit 1, which reaches the mail and the journal (warning)
    d.net.subnet.nodes[0].stop();
    let run = run_cron_line(&d.c);
    let warned = d.c.wait(units, "the partial run's warning in the journal", Duration::from_secs(10), || {
        let j = d.c.sh("journalctl -t patrol-reconcile -p warning --no-pager -o cat").stdout;
        j.contains("exit 1:").then_some(j.clone()).ok_or(j)
    });
    d.net.subnet.nodes[0].start();
    let c = &d.c;
    let partial = format!("{}/{n} covered", n - 1);
    if !run.starts_with("patrol reconcile exited 1:") || !run.contains(&partial) || !warned.contains("exit 1:") {
        c.fail(
            units,
            "a partial run: \"patrol reconcile exited 1: … covered\" for cron to mail, a warning in the journal",
            &format!("mail: {run:?}\njournal (warning): {warned}"),
        );
    }
    c.ok(units, "rm -f /etc/cron.d/patrol /usr/local/bin/sleep /tmp/patrol-test-sleep");
}

/// What cron would mail (the job's stdout and stderr) after running the job line of
/// /etc/cron.d/patrol.
fn run_cron_line(c: &Container) -> String {
    let table = c.ok(&[], "cat /etc/cron.d/patrol");
    let mut env = vec!["HOME=/home/miner".to_string(), "LOGNAME=miner".to_string(), "SHELL=/bin/sh".to_string()];
    let mut job = None;
    for line in table.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let fields: Vec<&str> = line.splitn(7, ' ').collect();
        if fields.len() == 7
            && fields[..5].iter().all(|f| f.chars().all(|ch| ch.is_ascii_digit() || "*/,-".contains(ch)))
        {
            assert!(job.is_none(), "/etc/cron.d/patrol has one job line\n{table}");
            job = Some((fields[..5].join(" "), fields[5].to_string(), fields[6].to_string()));
        } else if let Some((k, _)) = line.split_once('=') {
            env.retain(|e| !e.starts_with(&format!("{}=", k.trim())));
            env.push(line.to_string());
        }
    }
    let (schedule, user, command) = job.unwrap_or_else(|| panic!("no job line in /etc/cron.d/patrol\n{table}"));
    assert_eq!((schedule.as_str(), user.as_str()), ("*/15 * * * *", "miner"), "{table}");
    // cron turns an unescaped % into a newline (stdin): the line must have none
    assert!(!command.contains('%'), "the cron command contains %: {command}");
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let env: Vec<String> = env.iter().map(|e| quote(e)).collect();
    let out = c.sh(&format!("runuser -u {user} -- env -i {} /bin/sh -c {} 2>&1", env.join(" "), quote(&command)));
    assert!(out.ok(), "the cron job's shell: {out}");
    out.stdout
}

/// Exposition text as `name{labels sorted}` → value.
fn series(text: &str) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (head, value) = match line.rsplit_once(' ') {
            Some((h, v)) => (h, v.parse::<f64>().unwrap_or(f64::NAN)),
            None => continue,
        };
        let (name, labels) = match head.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (head, ""),
        };
        let mut pairs: Vec<String> = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        for ch in labels.chars() {
            match ch {
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    pairs.push(std::mem::take(&mut cur));
                    continue;
                }
                _ => {}
            }
            cur.push(ch);
        }
        if !cur.is_empty() {
            pairs.push(cur);
        }
        pairs.sort();
        out.insert(format!("{name}{{{}}}", pairs.join(",")), value);
    }
    out
}
