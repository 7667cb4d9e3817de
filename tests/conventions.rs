//! Issue 21: what a Rust user expects of a well-kept tool, and a repository that tests itself.
//!
//! * `patrol --version`'s long form (version, git revision or "unknown", target, rustc) and the
//!   same facts in `patrol_build_info`;
//! * `patrol completions bash|zsh|fish` and the man page (`patrol man`), and the `.deb` shipping
//!   them where Debian's shells and man look, with lintian finding no manual-page problem;
//! * the repository is self-contained: no source, test or script references the `shared` directory
//!   CI lays beside the clone (`scripts/without-shared.sh` hides it while the suite runs, so a
//!   test that still read it would fail), and `tests/data/README.md` accounts for every data file.
//!
//! Tools come from `scripts/ci-deps.sh` (dpkg-deb, lintian, man); a missing one fails the test
//! with a message naming that script.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::cli::patrol_bin;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| panic!("{name} is missing: run scripts/ci-deps.sh (CI does, via scripts/test.sh)"))
}

/// `patrol ARGS` → (exit code, stdout, stderr).
fn patrol(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(patrol_bin()).args(args).env_remove("PATROL_CONFIG").output().expect("run patrol");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The first line of `cmd args` starting with `prefix`, without it.
fn line_of(cmd: &str, args: &[&str], prefix: &str) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.lines().find_map(|l| l.strip_prefix(prefix)).map(|s| s.trim().to_string())
}

/// What the build should have recorded: the checkout's revision (or "unknown" outside a git work
/// tree of this crate, as in a tarball), the host triple and the rustc release.
fn expected_build() -> (String, String, String) {
    let repo_s = repo().to_string_lossy().into_owned();
    let top = line_of("git", &["-C", &repo_s, "rev-parse", "--show-toplevel"], "");
    let revision = match top {
        Some(t) if Path::new(&t).canonicalize().ok() == repo().canonicalize().ok() => {
            line_of("git", &["-C", &repo_s, "rev-parse", "--short=12", "HEAD"], "").expect("git rev-parse HEAD")
        }
        _ => "unknown".to_string(),
    };
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let target = line_of(&rustc, &["-vV"], "host: ").expect("rustc -vV host");
    let release = line_of(&rustc, &["-vV"], "release: ").expect("rustc -vV release");
    (revision, target, release)
}

#[test]
fn version_long_form_names_revision_target_and_rustc_and_build_info_says_the_same() {
    let (revision, target, rustc) = expected_build();
    let (code, out, _) = patrol(&["--version"]);
    assert_eq!(code, 0);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(out.trim(), format!("patrol {version} (rev {revision}, {target}, rustc {rustc})"));
    // -V stays short, as clap (and ripgrep) print it
    assert_eq!(patrol(&["-V"]).1.trim(), format!("patrol {version}"));
    let metrics = patrol::metrics::Metrics::new().encode_prometheus();
    let line = format!(
        "patrol_build_info{{version=\"{version}\",revision=\"{revision}\",target=\"{target}\",rustc=\"{rustc}\"}} 1"
    );
    assert!(metrics.lines().any(|l| l == line), "no {line} in\n{metrics}");
}

/// Every visible command, as `patrol --help` lists them.
fn commands() -> Vec<String> {
    use clap::CommandFactory;
    patrol::cli::Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_string())
        .collect()
}

#[test]
fn completions_are_valid_scripts_naming_every_command() {
    let bash = tool("bash");
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [("bash", "complete -F _patrol"), ("zsh", "#compdef patrol"), ("fish", "complete -c patrol")]
    {
        let (code, script, err) = patrol(&["completions", shell]);
        assert_eq!(code, 0, "{err}");
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        for c in commands() {
            assert!(script.contains(&c), "the {shell} completion does not offer {c}");
        }
        let file = dir.path().join(shell);
        std::fs::write(&file, &script).unwrap();
        if shell == "bash" {
            let out = Command::new(&bash).arg("-n").arg(&file).output().unwrap();
            assert!(out.status.success(), "bash -n: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let (code, _, err) = patrol(&["completions", "tcsh"]);
    assert_eq!(code, 64, "an unknown shell is a usage error: {err}");
}

/// `man -l FILE` as plain text, failing on any warning groff or man print.
fn render_man(page: &Path) -> String {
    let man = tool("man");
    let out = Command::new(man)
        .args(["--warnings", "-l"])
        .arg(page)
        .env("MANWIDTH", "100")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("run man");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "man -l {}: {}\n{err}", page.display(), out.status);
    // grotty's overstrikes for bold and underline ("N\x08N"): keep the character
    let mut text = String::new();
    for c in String::from_utf8_lossy(&out.stdout).chars() {
        if c == '\x08' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    text
}

#[test]
fn the_man_page_renders_and_documents_every_command_and_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (code, roff, err) = patrol(&["man"]);
    assert_eq!(code, 0, "{err}");
    let page = dir.path().join("patrol.1");
    std::fs::write(&page, roff).unwrap();
    let text = render_man(&page);
    for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "EXIT STATUS", "FILES", "VERSION"] {
        assert!(text.lines().any(|l| l == section), "no {section} section:\n{text}");
    }
    for c in commands() {
        assert!(text.contains(&format!("patrol {c}")), "the man page does not document {c}");
    }
    assert!(text.contains("patrol status [--json]"), "{text}");
    for code in ["0", "1", "2", "3", "64", "70", "78"] {
        assert!(text.lines().any(|l| l.trim_start().starts_with(&format!("{code} "))), "exit code {code} missing");
    }
    // a command's global options are listed once, under OPTIONS
    assert_eq!(text.matches("--log-format <FORMAT>").count(), 1, "{text}");
}

#[test]
fn the_deb_ships_completions_and_the_man_page_and_lintian_finds_no_manual_page_problem() {
    let dpkg_deb = tool("dpkg-deb");
    let lintian = tool("lintian");
    let out_dir = tempfile::Builder::new().prefix("patrol-deb-conv-").tempdir().unwrap();
    // the debug binary `cargo test` has just built (no second build under cargo's lock)
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
    assert!(out.status.success(), "scripts/package-deb.sh failed ({}):\n{stdout}\n{stderr}", out.status);
    let deb = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(deb.is_file(), "no .deb at {}\n{stderr}", deb.display());

    let list = Command::new(&dpkg_deb).arg("-c").arg(&deb).output().unwrap();
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
    let x = Command::new(&dpkg_deb).arg("-x").arg(&deb).arg(root.path()).output().unwrap();
    assert!(x.status.success(), "dpkg-deb -x: {}", String::from_utf8_lossy(&x.stderr));
    let bash_completion = root.path().join("usr/share/bash-completion/completions/patrol");
    let n = Command::new(tool("bash")).arg("-n").arg(&bash_completion).output().unwrap();
    assert!(n.status.success(), "bash -n: {}", String::from_utf8_lossy(&n.stderr));
    let page = render_man(&root.path().join("usr/share/man/man1/patrol.1.gz"));
    assert!(page.contains("EXIT STATUS") && page.contains("patrol status"), "{page}");

    // lintian (which warned no-manual-page before): no tag about manual pages or completions
    let l = Command::new(lintian)
        .args(["--no-cfg", "--display-info", "--fail-on", "none"])
        .arg(&deb)
        .output()
        .expect("run lintian");
    let report = String::from_utf8_lossy(&l.stdout);
    assert!(l.status.success(), "lintian could not check the .deb: {report}\n{}", String::from_utf8_lossy(&l.stderr));
    let tags: Vec<&str> = report
        .lines()
        .filter(|l| {
            l.contains("manual-page") || l.contains("manpage") || l.contains("groff") || l.contains("completion")
        })
        .collect();
    assert!(tags.is_empty(), "lintian: {tags:?}\n{report}");
}

/// Text that must not appear in the repository's code, tests or scripts: the data CI lays beside
/// the clone is not the suite's (built from pieces, so this file does not match itself).
fn shared_needles() -> Vec<String> {
    vec![
        [".", "./shared"].concat(),
        ["/work", "/shared"].concat(),
        ["shared", "/vectors"].concat(),
        ["shared", "/fixtures"].concat(),
    ]
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        if p.is_dir() {
            if name != "target" && name != ".git" {
                walk(&p, out);
            }
        } else {
            out.push(p);
        }
    }
}

#[test]
fn no_source_test_or_script_reads_the_shared_directory_beside_the_clone() {
    let root = repo();
    let mut files = Vec::new();
    for d in ["src", "tests", "scripts", "benches", "fuzz", "examples", ".ci"] {
        walk(&root.join(d), &mut files);
    }
    for f in ["build.rs", "Cargo.toml"] {
        files.push(root.join(f));
    }
    // the one script whose job is to hide that directory names it
    let guard = root.join("scripts/without-shared.sh");
    let mut offenders = Vec::new();
    for f in files.iter().filter(|f| **f != guard) {
        let Ok(bytes) = std::fs::read(f) else { continue };
        let text = String::from_utf8_lossy(&bytes);
        for needle in shared_needles() {
            if let Some(line) = text.lines().position(|l| l.contains(&needle)) {
                offenders.push(format!("{}:{}: {needle}", f.strip_prefix(&root).unwrap_or(f).display(), line + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "the suite must read its data from tests/data/, not beside the clone: {offenders:#?}"
    );
    let test_sh = std::fs::read_to_string(root.join("scripts/test.sh")).unwrap();
    assert!(
        test_sh.lines().any(|l| l.starts_with("scripts/without-shared.sh cargo test")),
        "scripts/test.sh must run the tests through scripts/without-shared.sh"
    );
}

#[test]
fn every_data_file_is_in_the_repository_and_accounted_for_in_its_readme() {
    let data = repo().join("tests/data");
    let readme = std::fs::read_to_string(data.join("README.md")).expect("tests/data/README.md");
    let mut files = Vec::new();
    walk(&data, &mut files);
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| n != "README.md")
        .collect();
    for n in &names {
        assert!(readme.contains(&format!("`{n}`")), "tests/data/README.md does not say where {n} came from");
    }
    // what the tests read by default
    for f in [
        "vectors/keys.json",
        "vectors/keyfiles.json",
        "vectors/rust_signed.json",
        "vectors/axon_responses.json",
        "vectors/dendrite_request_capture.json",
        "chain/finney-spec343-metadata-v15.scale",
        "chain/finney-spec393-metadata-v16.scale",
        "chain/finney-spec343-block6852690-fixtures.json",
        "chain/finney-spec343-block6852690-expected.json",
        "chain/synthetic-netuid74-fixtures.json",
        "chain/synthetic-netuid74-expected.json",
    ] {
        assert!(data.join(f).is_file(), "tests/data/{f} is missing");
    }
    assert_eq!(
        crate::support::mock_node::fixtures_dir_from(None).expect("the default fixtures dir").canonicalize().unwrap(),
        data.canonicalize().unwrap()
    );
}
