//! The packaging (issues 6 and 19), statically: the systemd units pass `systemd-analyze verify`,
//! carry the hardening and run as one static user, the timer is a calendar timer, the cron line
//! hands its exit code on, the `.deb` (contents, control fields, maintainer scripts, lintian), and
//! the alert rules, the Alertmanager example and the dashboard, tested with promtool and amtool on
//! real scrapes. What only a real systemd shows is in `tests/deploy/` (its own step of
//! `scripts/test.sh`).
//!
//! These tests install nothing: `scripts/ci-deps.sh` (run by `scripts/test.sh`) provides
//! `systemd-analyze`, `dpkg-deb`, `lintian`, `promtool`, `amtool` and `cargo-deb`, and a test fails
//! with a message naming that script when one is missing.

/// promtool test rules on real scrapes.
mod alerts;
/// The Grafana dashboard and the Alertmanager example.
mod dashboard;
/// The .deb: contents, control fields, maintainer scripts, completions and man page, lintian.
mod deb;
/// Real `/metrics` and `--metrics-file` texts, taken once.
mod scrapes;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::cli::patrol_bin;
use crate::support::{repo, tool};

const UNITS: [&str; 4] = ["patrol.service", "patrol@.service", "patrol-reconcile.service", "patrol-reconcile.timer"];
const SERVICES: [&str; 3] = ["patrol.service", "patrol@.service", "patrol-reconcile.service"];

fn packaging(name: &str) -> String {
    let p = repo().join("packaging").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The values of `key=` in a unit file, in order (comments skipped).
fn directives(unit: &str, key: &str) -> Vec<String> {
    packaging(unit)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(|v| v.trim().to_string())
        .collect()
}

/// `cmd`, a checker (`bash -n`, `systemd-analyze verify`, `promtool check rules`), run to its end:
/// the test fails with its command line and all it printed unless it exits 0. Its output is
/// returned for the checks a caller adds (a warning on an exit 0, say).
#[track_caller]
pub(crate) fn run_checker(cmd: &mut Command) -> Output {
    let mut line = Path::new(cmd.get_program()).file_name().unwrap_or(cmd.get_program()).to_string_lossy().into_owned();
    for a in cmd.get_args() {
        line.push(' ');
        line.push_str(&a.to_string_lossy());
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("run {line}: {e}"));
    assert!(
        out.status.success(),
        "{line} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
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
    let out = run_checker(Command::new(tool("systemd-analyze")).args(["verify", "--man=no"]).args(&files));
    // a warning fails too, though verify exits 0 on it
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warned:\n{stderr}{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn units_carry_the_promised_hardening() {
    for unit in SERVICES {
        let text = packaging(unit);
        for line in [
            "LoadCredential=hotkey:",
            "LoadCredential=github-pat:",
            "--hotkey-file %d/hotkey",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
            "CapabilityBoundingSet=\n",
            "RemoveIPC=yes",
            "SystemCallArchitectures=native",
        ] {
            assert!(text.contains(line), "{unit} lacks {line:?}");
        }
    }
    for unit in ["patrol.service", "patrol@.service"] {
        let text = packaging(unit);
        for line in [
            "Type=notify",
            "NotifyAccess=main",
            "WatchdogSec=",
            "RestartPreventExitStatus=78",
            "ExecReload=/bin/kill -HUP $MAINPID",
        ] {
            assert!(text.contains(line), "{unit} lacks {line:?}");
        }
    }
    assert!(packaging("patrol@.service").contains("--config /etc/patrol/%i.toml"));
    assert!(packaging("patrol-reconcile.service").contains("Type=oneshot"));
    // the packaged config names the PAT's credential; the units pass the hotkey (%d is each unit's
    // own credentials directory, so one config serves the agent and the timer), and it parses
    let cfg = packaging("config.toml");
    assert!(cfg.contains("credential = \"github-pat\"") && !cfg.contains("/run/credentials/patrol.service"), "{cfg}");
    patrol::config::Settings::build(
        Some(Path::new("/etc/patrol/config.toml")),
        Some(&cfg),
        &Default::default(),
        |_| None,
    )
    .expect("packaging/config.toml validates");
}

/// Issue 19: two dynamic users on one `StateDirectory=` re-owned it under the running agent. Every
/// unit runs as the one static user the package creates.
#[test]
fn every_unit_runs_as_the_static_user_the_package_creates() {
    for unit in SERVICES {
        assert_eq!(directives(unit, "User"), ["patrol"], "{unit}");
        assert_eq!(directives(unit, "Group"), ["patrol"], "{unit}");
        assert!(directives(unit, "DynamicUser").iter().all(|v| v == "no"), "{unit} uses DynamicUser=");
    }
    for unit in ["patrol.service", "patrol-reconcile.service"] {
        assert_eq!(directives(unit, "StateDirectory"), ["patrol"], "{unit} shares /var/lib/patrol");
    }
    let sysusers = packaging("debian/patrol.sysusers");
    assert!(sysusers.lines().any(|l| l.starts_with("u patrol ")), "{sysusers}");
    // beside the agent, the timer's unit does not run (its condition is the agent's runtime dir)
    assert_eq!(directives("patrol.service", "RuntimeDirectory"), ["patrol"]);
    assert_eq!(directives("patrol-reconcile.service", "ConditionPathExists"), ["!/run/patrol"]);
}

/// The agent raises its soft RLIMIT_NOFILE: setrlimit and prlimit64 are allowed, the rest of
/// `@resources` and `@privileged` stays denied. The filter is computed as systemd does: the first
/// line (an allow list) sets the default, later lines remove (`~`) or add back, in order.
#[test]
fn the_syscall_filter_allows_setrlimit_and_nothing_else_of_resources() {
    let analyze = tool("systemd-analyze");
    let expand = |item: &str| if item.starts_with('@') { expand_group(&analyze, item) } else { vec![item.to_string()] };
    for unit in SERVICES {
        let mut allowed = std::collections::BTreeSet::new();
        for line in directives(unit, "SystemCallFilter") {
            let (deny, list) = match line.strip_prefix('~') {
                Some(rest) => (true, rest.to_string()),
                None => (false, line.clone()),
            };
            for item in list.split_whitespace() {
                for call in expand(item) {
                    if deny {
                        allowed.remove(&call);
                    } else {
                        allowed.insert(call);
                    }
                }
            }
        }
        for call in ["setrlimit", "prlimit64", "getrlimit", "read", "connect"] {
            assert!(allowed.contains(call), "{unit} denies {call}");
        }
        for call in ["setpriority", "sched_setscheduler", "mbind", "ioprio_set", "mount", "reboot", "setuid"] {
            assert!(!allowed.contains(call), "{unit} allows {call}");
        }
    }
}

/// The system calls of a `@group`, nested groups expanded (`systemd-analyze syscall-filter`).
fn expand_group(analyze: &Path, group: &str) -> Vec<String> {
    let out = Command::new(analyze).args(["syscall-filter", group]).output().expect("run systemd-analyze");
    assert!(out.status.success(), "systemd-analyze syscall-filter {group}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .flat_map(|l| if l.starts_with('@') { expand_group(analyze, l) } else { vec![l.to_string()] })
        .collect()
}

/// `Persistent=true` only means something for `OnCalendar=` timers.
#[test]
fn the_timer_is_a_persistent_calendar_timer_every_15_minutes() {
    let unit = "patrol-reconcile.timer";
    assert_eq!(directives(unit, "Persistent"), ["true"]);
    assert_eq!(directives(unit, "RandomizedDelaySec"), ["90"]);
    let calendar = directives(unit, "OnCalendar");
    assert_eq!(calendar.len(), 1, "one OnCalendar= in {unit}");
    assert!(directives(unit, "OnUnitActiveSec").is_empty() && directives(unit, "OnBootSec").is_empty());
    let out = Command::new(tool("systemd-analyze"))
        .args(["calendar", "--iterations=4", &calendar[0]])
        .env("TZ", "UTC")
        .output()
        .expect("run systemd-analyze calendar");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Normalized form: *-*-* *:00/15:00"), "{text}");
}

#[test]
fn every_unit_documents_the_man_page_and_the_installed_readme() {
    for unit in UNITS {
        let docs = directives(unit, "Documentation").join(" ");
        assert!(
            docs.contains("man:patrol(1)") && docs.contains("file:/usr/share/doc/patrol/README.md"),
            "{unit}: {docs}"
        );
        assert!(!docs.contains("gittensor"), "{unit} documents someone else's project: {docs}");
    }
}

/// The cron line, run by `/bin/sh` as cron would, with a stand-in `patrol` (exit code and stderr
/// chosen) and `logger` (records its arguments): a run that does not exit 0 prints (cron mails
/// it); every run logs its exit code, as a warning when it is not 0.
#[test]
fn the_cron_line_hands_the_exit_code_to_mail_and_syslog() {
    let cron = packaging("patrol.cron");
    let line = cron.lines().find(|l| l.starts_with("*/15 ")).expect("a */15 job line");
    let fields: Vec<&str> = line.splitn(7, ' ').collect();
    assert_eq!(fields[5], "miner", "{line}");
    let command = fields[6];
    assert!(!command.contains('%'), "cron turns % into a newline: {command}");
    assert!(command.contains("patrol reconcile --config "), "{command}");
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let write_exe = |name: &str, body: &str| {
        use std::os::unix::fs::PermissionsExt;
        let p = bin.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let log = dir.path().join("logger.args");
    write_exe("sleep", "#!/bin/sh\nexit 0\n");
    write_exe("logger", &format!("#!/bin/sh\nprintf '%s|' \"$@\" >> {}\necho >> {}\n", log.display(), log.display()));
    for (code, summary) in
        [(0, "3/3 covered (100.0% of stake)"), (1, "2/3 covered (66.7% of stake)"), (78, "patrol: cannot read config")]
    {
        write_exe("patrol", &format!("#!/bin/sh\necho 'table on stdout'\necho '{summary}' >&2\nexit {code}\n"));
        let _ = std::fs::remove_file(&log);
        let out = Command::new("/bin/sh")
            .args(["-c", command])
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("HOME", dir.path())
            .output()
            .expect("run the cron command");
        let mail = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        let priority = if code == 0 { "user.info" } else { "user.warning" };
        assert!(
            logged.contains(&format!("-p|{priority}|exit {code}: {summary}|")),
            "exit {code}: logger got {logged:?}"
        );
        if code == 0 {
            assert_eq!(mail, "", "a covered run mails nothing");
        } else {
            assert_eq!(mail.trim(), format!("patrol reconcile exited {code}: {summary}"), "exit {code}");
        }
        assert!(!mail.contains("table on stdout") && !logged.contains("table on stdout"));
    }
}
