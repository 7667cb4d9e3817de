//! Issue 19: the Debian package under a real systemd. One Debian 12 system booted with
//! `systemd-nspawn -b` (systemd 252 as PID 1); the project's `.deb` installed with `dpkg -i`; the
//! package driven exactly as `packaging/README.md` tells a miner — the test reads the command
//! blocks marked `deploy-test` from that file and runs them, in order — against validators on
//! loopback (a real Python `bt.Axon`, `patrol validator serve` processes, the fake GitHub). The only
//! additions are the test-only config keys pointing patrol at that local subnet.
//!
//! Root only, inside a private network namespace with loopback up: `scripts/test.sh` runs it as
//! its own step, after `cargo test`:
//!   unshare -n -- sh -c 'ip link set lo up && exec cargo test --locked --test deploy -- --ignored …'
//! The Debian root comes from `scripts/debian-root.sh` (cached; `$PATROL_DEBIAN_ROOT` names it).

#[allow(dead_code, unused_imports)]
#[path = "../support/mod.rs"]
mod support;

mod agent;
mod container;
mod net;
mod package;
mod readme;
mod timer;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use container::Container;
use net::LocalNet;
use readme::Readme;
use support::{package_deb, repo, tool};

/// The container, the local subnet and the README's command blocks, for the steps.
pub struct Deploy {
    // Declared first, so dropped first: the container stops before the validators do.
    pub c: Container,
    pub net: LocalNet,
    pub readme: Readme,
}

/// The two packages: the one installed first and the upgrade.
pub struct Debs {
    pub first: PathBuf,
    pub upgrade: PathBuf,
}

/// A step after install: most only read the deployment; three need it mutable (a validator
/// restarted, the cron run, the power off).
enum Step {
    Look(fn(&Deploy)),
    Change(fn(&mut Deploy)),
}
use Step::{Change, Look};

/// The version the upgrade package gets (cargo-deb `--deb-version`); the first one is Cargo.toml's.
const UPGRADE_VERSION: &str = "0.1.0-2";

#[test]
#[ignore = "boots Debian 12 under systemd-nspawn: scripts/test.sh runs it as its own step"]
fn the_debian_package_works_under_a_real_systemd() {
    preflight();
    let started = Instant::now();
    let mut t = Timings::default();
    let image = t.step("the cached Debian 12 root (scripts/debian-root.sh)", debian_root);
    let readme = Readme::load();
    let net = t.step("local subnet: 2 × validator serve, a Python bt.Axon, the fake GitHub", LocalNet::start);
    let debs = t.step("two .debs (scripts/package-deb.sh)", || build_debs(net.scratch.path()));
    let c = t.step("copy the root and boot it (systemd-nspawn -b)", || Container::boot(&image, net.scratch.path()));
    let mut d = Deploy { c, net, readme };

    t.step("install: dpkg -i; user patrol, config 0644, Depends cover the units' commands", || {
        agent::install(&d, &debs)
    });
    // the steps after install, in order, each timed under its name
    let steps: &[(&str, Step)] = &[
        ("setup: hotkey, PAT, doctor, enable --now; READY, StatusText, /readyz, every validator", Look(agent::setup)),
        ("patrol status --config /etc/patrol/config.toml (admin): the agent's view, exit 0", Look(agent::status)),
        ("a validator restarted with an empty store is repaired", Change(agent::repair)),
        ("systemctl reload: still active, same process, the edited interval applies", Look(agent::reload)),
        ("a rotated PAT (new credential file + restart) reaches every validator", Look(agent::rotate)),
        ("notify-url: the service with and without it; patrol notify test delivers", Look(agent::notify)),
        ("patrol-reconcile.service beside the agent: skipped; the agent still saves", Look(agent::beside)),
        ("timer mode: clean stop of the agent, timer scheduled, a pass by hand", Look(timer::timer)),
        ("node_exporter's textfile collector serves the timer's metrics", Look(timer::node_exporter)),
        ("patrol@alice: a second miner's agent", Look(timer::instance)),
        ("the cron line, run as cron runs it", Change(timer::cron)),
        ("back to the agent: state from the timer's runs, saved by the agent", Look(package::back_to_agent)),
        ("the PAT is nowhere in the journal; no Permission denied", Look(package::journal)),
        ("upgrade (dpkg -i 0.1.0-2): the running agents restart on the new binary", Look(package::upgrade)),
        ("dpkg -r stops every unit", Look(package::remove)),
        ("dpkg --purge removes the state, never the hotkey or the PAT", Look(package::purge)),
        ("power off", Change(|d| d.c.stop())),
    ];
    for (name, step) in steps {
        t.step(name, || match step {
            Look(f) => f(&d),
            Change(f) => f(&mut d),
        });
    }
    drop(d);
    t.report(started.elapsed());
}

/// Root, a private network namespace with only loopback, and the tools.
fn preflight() {
    // SAFETY: geteuid(2) has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the deployment test boots a container: run it as root (scripts/test.sh)"
    );
    let dev = std::fs::read_to_string("/proc/self/net/dev").expect("read /proc/self/net/dev");
    let interfaces: Vec<&str> = dev.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
    assert_eq!(
        interfaces,
        ["lo"],
        "the deployment test must run in a private network namespace with only loopback \
         (scripts/test.sh: unshare -n -- sh -c 'ip link set lo up && exec cargo test --test deploy …')"
    );
    for name in ["systemd-nspawn", "nsenter", "cp"] {
        tool(name);
    }
}

/// `$PATROL_DEBIAN_ROOT`, else what `scripts/debian-root.sh` prints (it returns the cached root at
/// once; building one needs Debian's registry, which this network namespace cannot reach).
fn debian_root() -> PathBuf {
    if let Some(p) = std::env::var_os("PATROL_DEBIAN_ROOT").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("scripts/debian-root.sh"));
    last_line_path(cmd, "scripts/debian-root.sh", ": build the root before this step (scripts/test.sh does)")
}

/// Run `script` (by `cmd`), which must succeed, and take the path its last line of stdout names;
/// `hint` follows the exit status when it fails.
fn last_line_path(mut cmd: Command, script: &str, hint: &str) -> PathBuf {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {script}: {e:?}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed ({}){hint}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(stdout.lines().last().unwrap_or_default().trim())
}

/// The package of the binary `cargo test` built, twice: Cargo.toml's version and [`UPGRADE_VERSION`].
fn build_debs(scratch: &Path) -> Debs {
    Debs {
        first: package_deb(&scratch.join("deb-first"), None),
        upgrade: package_deb(&scratch.join("deb-upgrade"), Some(UPGRADE_VERSION)),
    }
}

/// How long each step took (printed at the end: `--nocapture` shows it).
#[derive(Default)]
struct Timings(Vec<(String, Duration)>);

impl Timings {
    fn step<T>(&mut self, name: &str, f: impl FnOnce() -> T) -> T {
        eprintln!("deploy: {name} …");
        let t = Instant::now();
        let v = f();
        let took = t.elapsed();
        eprintln!("deploy: {name}: ok in {took:.1?}");
        self.0.push((name.to_string(), took));
        v
    }

    fn report(&self, total: Duration) {
        eprintln!("\ndeploy: step timings");
        for (name, d) in &self.0 {
            eprintln!("  {:>7.1} s  {name}", d.as_secs_f64());
        }
        eprintln!("  {:>7.1} s  total (wall)", total.as_secs_f64());
    }
}
