//! The `.deb` as scripts/package-deb.sh builds it: what it installs and with which modes, its
//! control fields, its maintainer scripts, and lintian.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::{package_deb, render_man, repo, tool};

/// The package of the debug binary `cargo test` has just built (no second build under cargo's
/// lock), built once per test process into `target/packaging-test/` (replaced by the next run).
fn deb() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let out_dir = repo().join("target/packaging-test");
        let _ = std::fs::remove_dir_all(&out_dir);
        package_deb(&out_dir, None)
    })
}

/// `dpkg-deb ARGS DEB MORE`.
fn dpkg_deb(args: &[&str], more: &[&str]) -> String {
    let out = Command::new(tool("dpkg-deb")).args(args).arg(deb()).args(more).output().expect("run dpkg-deb");
    assert!(out.status.success(), "dpkg-deb {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_deb_installs_binary_units_config_and_examples_with_their_modes() {
    let list = dpkg_deb(&["-c"], &[]);
    let mode_of = |path: &str| list.lines().find(|l| l.ends_with(&format!(" {path}"))).map(|l| l[..10].to_string());
    for (path, mode) in [
        ("./usr/bin/patrol", "-rwxr-xr-x"),
        ("./usr/lib/systemd/system/patrol.service", "-rw-r--r--"),
        ("./usr/lib/systemd/system/patrol@.service", "-rw-r--r--"),
        ("./usr/lib/systemd/system/patrol-reconcile.service", "-rw-r--r--"),
        ("./usr/lib/systemd/system/patrol-reconcile.timer", "-rw-r--r--"),
        ("./usr/lib/sysusers.d/patrol.conf", "-rw-r--r--"),
        // no secret in it, and the service's user must read it (issue 19: 0640 root was unreadable)
        ("./etc/patrol/config.toml", "-rw-r--r--"),
        ("./usr/share/doc/patrol/README.md", "-rw-r--r--"),
        ("./usr/share/doc/patrol/changelog.Debian.gz", "-rw-r--r--"),
        ("./usr/share/doc/patrol/copyright", "-rw-r--r--"),
        ("./usr/share/doc/patrol/examples/config.example.toml", "-rw-r--r--"),
        ("./usr/share/doc/patrol/examples/prometheus-alerts.yml", "-rw-r--r--"),
        ("./usr/share/doc/patrol/examples/alertmanager.yml", "-rw-r--r--"),
        ("./usr/share/doc/patrol/examples/grafana-dashboard.json", "-rw-r--r--"),
        ("./usr/share/doc/patrol/examples/patrol.cron", "-rw-r--r--"),
        ("./usr/share/lintian/overrides/patrol", "-rw-r--r--"),
    ] {
        assert_eq!(mode_of(path).as_deref(), Some(mode), "{path} in the .deb:\n{list}");
    }
    // the config survives upgrades (a conffile)
    assert_eq!(dpkg_deb(&["-I"], &["conffiles"]).trim(), "/etc/patrol/config.toml");
}

#[test]
fn the_control_fields_name_a_maintainer_and_every_dependency() {
    let field = |name: &str| {
        dpkg_deb(&["-f"], &[]).lines().find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_string))
    };
    let depends = field("Depends").unwrap_or_default();
    // /bin/kill (ExecReload) is procps'; systemd-sysusers (postinst) is systemd's
    for dep in ["procps", "ca-certificates", "libc6", "systemd | systemd-standalone-sysusers"] {
        assert!(depends.contains(dep), "Depends: {depends} lacks {dep}");
    }
    let maintainer = field("Maintainer").unwrap_or_default();
    assert!(!maintainer.contains("localhost") && maintainer.contains('@') && maintainer.ends_with('>'), "{maintainer}");
}

/// Modelled on dh_installsysusers + dh_installsystemd: the user, daemon-reload, try-restart on
/// upgrade (templates too), stop on remove (templates too), purge of the state and never of the
/// miner's files.
#[test]
fn the_maintainer_scripts_manage_user_units_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(tool("dpkg-deb")).arg("-e").arg(deb()).arg(dir.path().join("c")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let script =
        |name: &str| std::fs::read_to_string(dir.path().join("c").join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let code =
        |name: &str| script(name).lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    let postinst = code("postinst");
    for needle in [
        "systemd-sysusers ${DPKG_ROOT:+--root=\"$DPKG_ROOT\"} patrol.conf",
        "systemctl --system daemon-reload",
        "deb-systemd-invoke try-restart patrol-reconcile.service patrol-reconcile.timer patrol.service",
        "systemctl try-restart 'patrol@*.service'",
    ] {
        assert!(postinst.contains(needle), "postinst lacks {needle:?}:\n{postinst}");
    }
    // nothing is enabled or started on a fresh install (dh's --no-enable --no-start snippets: enable
    // only what was enabled before, start nothing)
    assert!(postinst.contains("if deb-systemd-helper debian-installed patrol.service; then"), "{postinst}");
    assert!(!postinst.contains("deb-systemd-invoke start") && !postinst.contains("_dh_action=start"), "{postinst}");
    let prerm = code("prerm");
    for needle in [
        "deb-systemd-invoke stop patrol-reconcile.service patrol-reconcile.timer patrol.service",
        "systemctl stop 'patrol@*.service'",
    ] {
        assert!(prerm.contains(needle), "prerm lacks {needle:?}:\n{prerm}");
    }
    let postrm = code("postrm");
    for needle in
        ["rm -rf /var/lib/patrol ", "deb-systemd-helper purge", "rm -f /var/lib/prometheus/node-exporter/patrol.prom"]
    {
        assert!(postrm.contains(needle), "postrm lacks {needle:?}:\n{postrm}");
    }
    assert!(!postrm.contains("/etc/patrol"), "postrm touches /etc/patrol (the miner's hotkey and PAT):\n{postrm}");
    for name in ["postinst", "prerm", "postrm"] {
        let out = Command::new("sh").arg("-n").arg(dir.path().join("c").join(name)).output().unwrap();
        assert!(out.status.success(), "{name} is not valid sh: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// lintian: no error; the warnings left are the ones packaging/README.md explains.
/// lintian's report on the .deb (every tag, `I:` too), run once per test process.
fn lintian() -> &'static str {
    static REPORT: OnceLock<String> = OnceLock::new();
    REPORT.get_or_init(|| {
        let out = Command::new(tool("lintian"))
            .args(["--no-cfg", "--display-info", "--fail-on", "none"])
            .arg(deb())
            .output()
            .expect("run lintian");
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "lintian could not check the .deb: {report}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        report
    })
}

#[test]
fn lintian_finds_no_error() {
    let text = lintian();
    let tags: Vec<&str> = text.lines().filter(|l| l.starts_with("E: ") || l.starts_with("W: ")).collect();
    let errors: Vec<&&str> = tags.iter().filter(|l| l.starts_with("E: ")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{text}");
    // no-manual-page: `patrol completions` and its man page are another issue's; the README says so
    let unexplained: Vec<&&str> = tags.iter().filter(|l| !l.contains("no-manual-page")).collect();
    assert!(unexplained.is_empty(), "lintian warnings packaging/README.md does not explain:\n{text}");
}

#[test]
fn the_deb_ships_completions_and_the_man_page_and_lintian_finds_no_manual_page_problem() {
    let dpkg_deb = tool("dpkg-deb");
    let deb = deb();

    let list = Command::new(&dpkg_deb).arg("-c").arg(deb).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    let shipped = [
        "./usr/share/bash-completion/completions/patrol",
        "./usr/share/zsh/vendor-completions/_patrol",
        "./usr/share/fish/vendor_completions.d/patrol.fish",
        "./usr/share/man/man1/patrol.1.gz",
    ];
    for path in shipped {
        assert!(
            list.lines().any(|l| l.starts_with("-rw-r--r--") && l.ends_with(&format!(" {path}"))),
            "{path} is not in the .deb (mode 644):\n{list}"
        );
    }

    // what is installed works: the bash completion parses, the page renders
    let root = tempfile::tempdir().unwrap();
    let x = Command::new(&dpkg_deb).arg("-x").arg(deb).arg(root.path()).output().unwrap();
    assert!(x.status.success(), "dpkg-deb -x: {}", String::from_utf8_lossy(&x.stderr));
    let bash_completion = root.path().join("usr/share/bash-completion/completions/patrol");
    let n = Command::new(tool("bash")).arg("-n").arg(&bash_completion).output().unwrap();
    assert!(n.status.success(), "bash -n: {}", String::from_utf8_lossy(&n.stderr));
    let page = render_man(&root.path().join("usr/share/man/man1/patrol.1.gz"));
    assert!(page.contains("EXIT STATUS") && page.contains("patrol status"), "{page}");

    // lintian (which warned no-manual-page before): no tag about manual pages or completions
    let report = lintian();
    let tags: Vec<&str> = report
        .lines()
        .filter(|l| {
            l.contains("manual-page") || l.contains("manpage") || l.contains("groff") || l.contains("completion")
        })
        .collect();
    assert!(tags.is_empty(), "lintian: {tags:?}\n{report}");
}
