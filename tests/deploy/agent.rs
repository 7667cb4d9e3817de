//! The package and the agent: install, the README's setup, repair, reload, PAT rotation, and the
//! timer's unit started beside the running agent.

use std::time::Duration;

use crate::container::Container;
use crate::net::{MINER_HOTKEY, PAT_A, PAT_B};
use crate::{Debs, Deploy};

const AGENT: &[&str] = &["patrol.service"];
/// The agent's state file for the main miner (`state-<hotkey>-<netuid>.json` in the state dir).
pub fn state_file() -> String {
    format!("/var/lib/patrol/state-{MINER_HOTKEY}-74.json")
}

/// The value of the first sample of `series` (a metric name, or a name with a label prefix such
/// as `patrol_x{hotkey="…"`) in Prometheus exposition `text`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with([' ', '{', ',', '}']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The agent's `/metrics` (from inside the container, as the README's `curl`).
pub fn metrics(c: &Container, port: u16) -> String {
    c.sh(&format!("curl -sf http://127.0.0.1:{port}/metrics")).stdout
}

/// A unit's main process id (0: none).
pub fn main_pid(c: &Container, unit: &str) -> u32 {
    c.prop(unit, "MainPID").parse().unwrap_or(0)
}

/// The modification time of `path` in the container, in nanoseconds (empty if missing).
pub fn mtime(c: &Container, path: &str) -> String {
    c.sh(&format!("date -r {path} +%s%N")).stdout.trim().to_string()
}

/// Active and running, else fail with the unit's status.
pub fn assert_running(c: &Container, unit: &str) {
    let state = format!("{}/{}", c.prop(unit, "ActiveState"), c.prop(unit, "SubState"));
    if state != "active/running" {
        c.fail(&[unit], &format!("{unit} active/running"), &state);
    }
}

/// `dpkg -i` as the README says; the system user, the config's mode, nothing started, and every
/// program the units run comes from the package itself, an essential package or a dependency.
pub fn install(d: &Deploy, debs: &Debs) {
    let c = &d.c;
    for (deb, dir) in [(&debs.first, "/root"), (&debs.upgrade, "/root/upgrade")] {
        let name = deb.file_name().expect("a .deb file name").to_string_lossy().into_owned();
        std::fs::create_dir_all(c.host_path(dir)).expect("mkdir in the container");
        std::fs::copy(deb, c.host_path(&format!("{dir}/{name}"))).expect("copy the .deb into the container");
    }
    d.readme.run(c, "install", "/root", "", AGENT);
    let user = c.ok(&[], "getent passwd patrol");
    let uid: u32 = user.split(':').nth(2).and_then(|u| u.parse().ok()).unwrap_or(u32::MAX);
    if uid >= 1000 || !user.trim_end().ends_with("nologin") {
        c.fail(&[], "a system user patrol (uid < 1000, no login shell)", &user);
    }
    let mode = c.ok(&[], "stat -c '%a %U:%G' /etc/patrol/config.toml");
    if mode.trim() != "644 root:root" {
        c.fail(&[], "/etc/patrol/config.toml 644 root:root (readable by the service's user)", &mode);
    }
    let started =
        c.sh("systemctl is-enabled patrol.service patrol-reconcile.timer; systemctl is-active patrol.service").stdout;
    if started.split_whitespace().collect::<Vec<_>>() != ["disabled", "disabled", "inactive"] {
        c.fail(AGENT, "nothing enabled or started by the install", &started);
    }
    // Every Exec*= program: the package's own, an essential package's, or a dependency's.
    let check = r#"
        depends=$(dpkg-query -W -f '${Depends}' patrol)
        for prog in $(sed -n -E 's/^Exec[A-Za-z]*=[-+@!:]*([^ ]+).*/\1/p' /usr/lib/systemd/system/patrol*.service | sort -u); do
            pkg=$(dpkg -S "$prog" 2>/dev/null | grep -v '^diversion' | head -n1 | cut -d: -f1)
            [ -n "$pkg" ] || pkg=$(dpkg -S "$(readlink -f "$prog")" | grep -v '^diversion' | head -n1 | cut -d: -f1)
            essential=$(dpkg-query -W -f '${Essential}' "$pkg")
            case "$pkg" in patrol) ;; *) [ "$essential" = yes ] || echo "$depends" | grep -qE "(^|[ ,|])$pkg([ ,(|]|$)" || echo "MISSING $prog from $pkg";; esac
            echo "$prog: $pkg (essential: ${essential:-no})"
        done
        echo "Depends: $depends""#;
    let out = c.ok(&[], check);
    if out.contains("MISSING") || !out.contains("/bin/kill: procps") {
        c.fail(&[], "every program the units run is the package's, essential, or in Depends (/bin/kill: procps)", &out);
    }
}

/// The README's setup, with the test-only keys appended to the packaged config first.
pub fn setup(d: &Deploy) {
    let c = &d.c;
    let wallet = c.host_path("/root/.bittensor/wallets/miner/hotkeys/default");
    std::fs::create_dir_all(wallet.parent().expect("a parent")).expect("mkdir the wallet");
    std::fs::copy(d.net.miner_hotkey_file(), &wallet).expect("copy the miner's hotkey into the container");
    let out = c.sh_stdin(
        "chmod 600 /root/.bittensor/wallets/miner/hotkeys/default && cat >> /etc/patrol/config.toml",
        d.net.test_keys().as_bytes(),
    );
    assert!(out.ok(), "append the test keys: {out}");

    let out = d.readme.run(c, "setup", "/root", &format!("{PAT_A}\n"), AGENT);
    let n = d.net.validator_count();
    let covered = format!("{n}/{n} covered (100.0% stake)");
    for (what, want) in [("patrol doctor", "all checks passed"), ("systemctl status", covered.as_str())] {
        if !out.stdout.contains(want) {
            c.fail(AGENT, &format!("{what} prints {want:?}"), &out.to_string());
        }
    }
    if out.stdout.trim_end().lines().last() != Some("ready") {
        c.fail(AGENT, "/readyz answers ready", &out.to_string());
    }
    // `enable --now` of a Type=notify unit returns once READY=1 came: active, no restart.
    assert_running(c, "patrol.service");
    let status = c.prop("patrol.service", "StatusText");
    if !status.starts_with(&covered) || c.prop("patrol.service", "NRestarts") != "0" {
        c.fail(AGENT, &format!("StatusText starting {covered:?}, no restart"), &status);
    }
    c.wait(AGENT, "every validator holds the PAT", Duration::from_secs(30), || d.net.all_hold(MINER_HOTKEY, PAT_A));
}

/// `patrol status` as the admin runs it: the running agent's view (every validator valid), exit 0,
/// and no GitHub call made for it (a check of a validator holding the PAT would make two).
pub fn status(d: &Deploy) {
    let c = &d.c;
    let before = d.net.request_counts();
    let out = d.readme.run(c, "status", "/root", "", AGENT);
    let n = d.net.validator_count();
    let first = out.stdout.lines().next().unwrap_or_default();
    if !first.starts_with("agent: patrol") || !out.stdout.contains(&format!("{n}/{n} covered")) {
        c.fail(AGENT, &format!("the agent's view: \"agent: patrol …\" and {n}/{n} covered"), &out.to_string());
    }
    if out.stdout.matches(" valid ").count() < n {
        c.fail(AGENT, "every validator's row says valid", &out.to_string());
    }
    let after = d.net.request_counts();
    if after != before {
        c.fail(AGENT, "status makes no GitHub call (and so checks no validator)", &format!("{before:?} -> {after:?}"));
    }
}

/// A validator restarts without its store: the service finds it (new axon uuid) and repairs it.
pub fn repair(d: &mut Deploy) {
    let restarts = |c: &Container| {
        sample(&metrics(c, 9184), &format!("patrol_restarts_detected_total{{hotkey=\"{MINER_HOTKEY}\""))
    };
    let before = restarts(&d.c).unwrap_or(0.0);
    d.net.subnet.nodes[1].restart_empty();
    let d = &*d;
    if d.net.all_hold(MINER_HOTKEY, PAT_A).is_ok() {
        d.c.fail(AGENT, "the restarted validator's store is empty", "it still holds the PAT");
    }
    // probes every 25-30 s: the restart is seen at the next sweep and repaired in that pass
    d.c.wait(AGENT, "the restarted validator holds the PAT again", Duration::from_secs(90), || {
        d.net.all_hold(MINER_HOTKEY, PAT_A)
    });
    // the metrics follow when the pass is done
    d.c.wait(AGENT, "patrol_restarts_detected_total grows", Duration::from_secs(10), || {
        let after = restarts(&d.c).unwrap_or(0.0);
        (after > before).then_some(()).ok_or(format!("{before} -> {after}"))
    });
    assert_running(&d.c, "patrol.service");
}

/// `systemctl reload` after an edit: same process, still active, the SIGHUP arrived (procps'
/// /bin/kill), and the new interval is in force.
pub fn reload(d: &Deploy) {
    let c = &d.c;
    let pid = main_pid(c, "patrol.service");
    let interval = format!("patrol_check_interval_seconds{{hotkey=\"{MINER_HOTKEY}\"");
    if sample(&metrics(c, 9184), &interval) != Some(900.0) {
        c.fail(AGENT, "the check interval is 900 s before the edit", &metrics(c, 9184));
    }
    d.readme.run(c, "reload", "/root", "", AGENT);
    c.wait(AGENT, "patrol_check_interval_seconds 1200 after the reload", Duration::from_secs(30), || {
        let m = metrics(c, 9184);
        (sample(&m, &interval) == Some(1200.0)).then_some(()).ok_or(m)
    });
    let journal = c.sh("journalctl -u patrol.service --no-pager -o cat").stdout;
    if !journal.contains("SIGHUP: reloading the configuration") {
        c.fail(
            AGENT,
            "the agent got systemctl reload's SIGHUP",
            "no \"SIGHUP: reloading the configuration\" in its journal",
        );
    }
    assert_running(c, "patrol.service");
    if main_pid(c, "patrol.service") != pid {
        c.fail(
            AGENT,
            "the same process after the reload",
            &format!("MainPID {pid} -> {}", main_pid(c, "patrol.service")),
        );
    }
}

/// A new PAT file and a restart: every validator gets the new PAT.
pub fn rotate(d: &Deploy) {
    let c = &d.c;
    let pid = main_pid(c, "patrol.service");
    d.readme.run(c, "rotate", "/root", &format!("{PAT_B}\n"), AGENT);
    assert_running(c, "patrol.service");
    if main_pid(c, "patrol.service") == pid {
        c.fail(AGENT, "a new process after systemctl restart", &format!("MainPID still {pid}"));
    }
    c.wait(AGENT, "every validator holds the rotated PAT", Duration::from_secs(60), || {
        d.net.all_hold(MINER_HOTKEY, PAT_B)
    });
}

/// The optional notification URL (issue 22): the service ran without `/etc/patrol/notify-url` so
/// far; with it (pasted as the README says) the service restarts, `patrol notify test` in the
/// service's setting delivers one message to a receiver on the host's loopback, and the URL's
/// secret is nowhere in the journal; removed again, the service still starts.
pub fn notify(d: &Deploy) {
    use crate::support::receivers::{Receiver, Service};
    let c = &d.c;
    assert_running(c, "patrol.service");
    let absent = c.sh("test -e /etc/patrol/notify-url && echo present").stdout;
    if !absent.is_empty() {
        c.fail(AGENT, "no /etc/patrol/notify-url before this step", &absent);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime");
    let receiver = rt.block_on(Receiver::start(Service::Webhook));
    let out = d.readme.run(c, "notify", "/root", &format!("{}\n", receiver.url()), AGENT);
    assert_running(c, "patrol.service");
    let got = receiver.got();
    if got.len() != 1 || !receiver.violations().is_empty() {
        c.fail(
            AGENT,
            "patrol notify test: one message at the webhook, in the documented payload",
            &format!("{} message(s), violations {:?}\n{out}", got.len(), receiver.violations()),
        );
    }
    let journal = c.sh("journalctl --no-pager -o cat").stdout;
    if journal.contains(receiver.secret())
        || out.stdout.contains(receiver.secret())
        || out.stderr.contains(receiver.secret())
    {
        c.fail(AGENT, "the webhook URL's secret is nowhere in the journal or the output", "it is");
    }
    // without the file again: the service starts as usual
    c.ok(AGENT, "rm /etc/patrol/notify-url && systemctl restart patrol");
    assert_running(c, "patrol.service");
}

/// `systemctl start patrol-reconcile.service` beside the running agent ends as the README says:
/// skipped by its condition, the agent untouched, and the agent still saves its state.
pub fn beside(d: &Deploy) {
    let c = &d.c;
    let units = &["patrol.service", "patrol-reconcile.service"];
    let pid = main_pid(c, "patrol.service");
    c.ok(units, "systemctl start patrol-reconcile.service");
    let got: Vec<String> = ["ConditionResult", "Result", "ActiveState", "ExecMainStartTimestampMonotonic"]
        .iter()
        .map(|p| c.prop("patrol-reconcile.service", p))
        .collect();
    if got != ["no", "success", "inactive", "0"] {
        c.fail(units, "skipped: ConditionResult=no, Result=success, inactive, never executed", &format!("{got:?}"));
    }
    assert_running(c, "patrol.service");
    if main_pid(c, "patrol.service") != pid {
        c.fail(units, "the agent untouched", "its MainPID changed");
    }
    let owner = c.ok(units, "stat -c %U /var/lib/patrol");
    if owner.trim() != "patrol" {
        c.fail(units, "/var/lib/patrol still the patrol user's", &owner);
    }
    // the agent saves after every pass; a reload starts one at once
    let before = mtime(c, &state_file());
    c.ok(units, "systemctl reload patrol");
    c.wait(units, "the agent saved its state after a pass", Duration::from_secs(30), || {
        let now = mtime(c, &state_file());
        (now != before && !now.is_empty()).then_some(()).ok_or(format!("state file mtime {before} -> {now}"))
    });
    let denied = c.sh("journalctl -u patrol.service --no-pager -o cat | grep -i 'permission denied'").stdout;
    if !denied.is_empty() {
        c.fail(units, "nothing in the agent's journal says Permission denied", &denied);
    }
}
