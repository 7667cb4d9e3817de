//! Back to the agent, the journal, and the package's lifecycle: upgrade, remove, purge.

use std::time::Duration;

use serde_json::Value;

use crate::Deploy;
use crate::agent::{assert_running, main_pid, mtime, state_file};
use crate::container::Container;
use crate::net::{ALICE_HOTKEY, MINER_HOTKEY, PAT_A, PAT_ALICE, PAT_B};

const AGENTS: &[&str] = &["patrol.service", "patrol@alice.service"];

/// Covered per the unit's StatusText (after its first pass).
fn wait_covered(c: &Container, unit: &str, n: usize) {
    c.wait(&[unit], &format!("{unit}'s StatusText shows {n}/{n} covered"), Duration::from_secs(60), || {
        let s = c.prop(unit, "StatusText");
        s.starts_with(&format!("{n}/{n} covered")).then_some(()).ok_or(s)
    });
}

/// The README's switch back: the timer off, the agent on the state the timer's passes left.
pub fn back_to_agent(d: &Deploy) {
    let c = &d.c;
    let units = &["patrol.service", "patrol-reconcile.timer"];
    let before = mtime(c, &state_file());
    d.readme.run(c, "back-to-agent", "/root", "", units);
    assert_running(c, "patrol.service");
    let timer = c.sh("systemctl is-enabled patrol-reconcile.timer; systemctl is-active patrol-reconcile.timer").stdout;
    if timer.split_whitespace().collect::<Vec<_>>() != ["disabled", "inactive"] {
        c.fail(units, "the timer disabled and stopped", &timer);
    }
    wait_covered(c, "patrol.service", d.net.validator_count());
    c.wait(units, "the agent saved its state over the timer's", Duration::from_secs(30), || {
        let now = mtime(c, &state_file());
        (now != before).then_some(()).ok_or(format!("state file mtime still {now}"))
    });
    let denied = c.sh("journalctl -u patrol.service --no-pager -o cat | grep -i 'permission denied'").stdout;
    if !denied.is_empty() {
        c.fail(units, "nothing in the agent's journal says Permission denied", &denied);
    }
}

/// Every PAT used is absent from the whole journal (every field of every entry), and no patrol
/// unit logged Permission denied.
pub fn journal(d: &Deploy) {
    let c = &d.c;
    for pat in [PAT_A, PAT_B, PAT_ALICE] {
        let out = c.sh(&format!("journalctl --no-pager -o export | grep -acF '{pat}'"));
        if out.stdout.trim() != "0" {
            c.fail(
                AGENTS,
                &format!("the PAT …{} nowhere in the journal", &pat[pat.len() - 4..]),
                &format!("{} entries carry it", out.stdout.trim()),
            );
        }
    }
    let lines = c.sh("journalctl --no-pager -o export | wc -l").stdout;
    if lines.trim().parse::<u64>().unwrap_or(0) < 100 {
        c.fail(AGENTS, "a journal to search", &format!("{} lines of export", lines.trim()));
    }
    let denied = c.sh("journalctl --no-pager -o cat -u 'patrol*' | grep -i 'permission denied'").stdout;
    if !denied.is_empty() {
        c.fail(AGENTS, "no patrol unit logged Permission denied", &denied);
    }
}

/// A validator's persisted history (kept state: the same values after the upgrade).
fn history(c: &Container, file: &str) -> Vec<(String, Value, Value)> {
    let text = c.ok(AGENTS, &format!("cat {file}"));
    let state: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| c.fail(AGENTS, &format!("{file} is JSON"), &e.to_string()));
    let mut out: Vec<(String, Value, Value)> = state["validators"]
        .as_object()
        .map(|m| {
            m.iter().map(|(uid, v)| (uid.clone(), v["broadcasts"].clone(), v["last_broadcast_at"].clone())).collect()
        })
        .unwrap_or_default();
    out.push(("first_fingerprint".into(), state["first_fingerprint"].clone(), Value::Null));
    out
}

/// `dpkg -i` of the higher version restarts both running agents on the new binary, state kept.
pub fn upgrade(d: &Deploy) {
    let c = &d.c;
    let n = d.net.validator_count();
    wait_covered(c, "patrol@alice.service", n);
    let files = [state_file(), format!("/var/lib/patrol-alice/state-{ALICE_HOTKEY}-74.json")];
    let before: Vec<_> = files.iter().map(|f| history(c, f)).collect();
    let pids: Vec<u32> = AGENTS.iter().map(|u| main_pid(c, u)).collect();
    let out = d.readme.run(c, "upgrade", "/root/upgrade", "", AGENTS);
    let version = c.ok(AGENTS, "dpkg-query -W -f '${Version}' patrol");
    if version != crate::UPGRADE_VERSION {
        c.fail(AGENTS, &format!("patrol {} installed", crate::UPGRADE_VERSION), &format!("{version}\n{out}"));
    }
    let inode = c.ok(AGENTS, "stat -c %i /usr/bin/patrol");
    for (unit, old) in AGENTS.iter().zip(&pids) {
        assert_running(c, unit);
        let pid = main_pid(c, unit);
        if pid == *old || pid == 0 {
            c.fail(
                AGENTS,
                &format!("{unit} restarted by the upgrade (a new main PID)"),
                &format!("MainPID {old} -> {pid}"),
            );
        }
        let exe = c.ok(AGENTS, &format!("readlink /proc/{pid}/exe; stat -L -c %i /proc/{pid}/exe"));
        if exe != format!("/usr/bin/patrol\n{inode}") {
            c.fail(AGENTS, &format!("{unit} runs the new /usr/bin/patrol (inode {})", inode.trim()), &exe);
        }
        wait_covered(c, unit, n);
    }
    let after: Vec<_> = files.iter().map(|f| history(c, f)).collect();
    if before != after || before.iter().any(|h| h.len() != n + 1) {
        c.fail(
            AGENTS,
            "the state kept across the upgrade (each validator's broadcast history unchanged)",
            &format!("before {before:?}\nafter {after:?}"),
        );
    }
    for (hotkey, pat) in [(MINER_HOTKEY, PAT_B), (ALICE_HOTKEY, PAT_ALICE)] {
        if let Err(e) = d.net.all_hold(hotkey, pat) {
            c.fail(AGENTS, "every validator still holds both PATs", &e);
        }
    }
}

/// `dpkg -r`: every unit stopped, no patrol process left; the config and the state stay.
pub fn remove(d: &Deploy) {
    let c = &d.c;
    d.readme.run(c, "remove", "/root", "", AGENTS);
    let state = c.sh("systemctl is-active patrol.service patrol@alice.service patrol-reconcile.timer; pgrep -x patrol || echo 'no patrol process'").stdout;
    if state.split_whitespace().collect::<Vec<_>>() != ["inactive", "inactive", "inactive", "no", "patrol", "process"] {
        c.fail(AGENTS, "every patrol unit inactive and no patrol process after dpkg -r", &state);
    }
    let files = c.sh("for f in /usr/bin/patrol /etc/patrol/config.toml /var/lib/patrol /var/lib/patrol-alice /var/lib/prometheus/node-exporter/patrol.prom; do test -e $f && echo \"$f present\" || echo \"$f absent\"; done").stdout;
    let want = "/usr/bin/patrol absent\n/etc/patrol/config.toml present\n/var/lib/patrol present\n/var/lib/patrol-alice present\n/var/lib/prometheus/node-exporter/patrol.prom absent\n";
    if files != want {
        c.fail(AGENTS, want, &files);
    }
}

/// `dpkg --purge`: the state and the config gone, the miner's hotkey and PAT files untouched.
pub fn purge(d: &Deploy) {
    let c = &d.c;
    d.readme.run(c, "purge", "/root", "", AGENTS);
    let files = c.sh("for f in /etc/patrol/config.toml /var/lib/patrol /var/lib/patrol-alice /etc/systemd/system/multi-user.target.wants/patrol.service /etc/systemd/system/multi-user.target.wants/patrol@alice.service /etc/systemd/system/timers.target.wants/patrol-reconcile.timer; do test -e $f -o -L $f && echo \"$f present\"; done; dpkg-query -W -f '${db:Status-Status}' patrol 2>/dev/null || echo not-installed").stdout;
    if files.trim() != "not-installed" {
        c.fail(AGENTS, "no config, state or enablement symlink left, the package not installed", &files);
    }
    let kept = c.ok(AGENTS, "cat /etc/patrol/github-pat /etc/patrol/alice/github-pat; stat -c '%n %a' /etc/patrol/hotkey /etc/patrol/alice/hotkey; cmp /etc/patrol/hotkey /root/.bittensor/wallets/miner/hotkeys/default && echo hotkey kept; getent passwd patrol >/dev/null && echo user kept");
    let want =
        format!("{PAT_B}\n{PAT_ALICE}\n/etc/patrol/hotkey 600\n/etc/patrol/alice/hotkey 600\nhotkey kept\nuser kept\n");
    if kept != want {
        c.fail(
            AGENTS,
            "the miner's hotkey and PAT files kept as they were, the user patrol kept",
            &kept.replace(PAT_B, "PAT_B").replace(PAT_ALICE, "PAT_ALICE"),
        );
    }
}
