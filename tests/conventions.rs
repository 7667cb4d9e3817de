//! What a Rust user expects of a well-kept tool, and a repository that tests itself.
//!
//! * `patrol --version`'s long form (version, git revision or "unknown", target, rustc) and the
//!   same facts in `patrol_build_info`;
//! * `patrol completions bash|zsh|fish` and the man page (`patrol man`) (the `.deb` shipping them:
//!   `packaging::deb`);
//! * the repository is self-contained: no source, test or script references the `shared` directory
//!   CI lays beside the clone (`scripts/without-shared.sh` hides it while the suite runs, so a
//!   test that still read it would fail), and `tests/data/README.md` accounts for every data file.
//!
//! Tools come from `scripts/ci-deps.sh` (dpkg-deb, lintian, man); a missing one fails the test
//! with a message naming that script.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::packaging::run_checker;
use crate::support::cli::patrol_bin;
use crate::support::{render_man, repo, tool};

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
            run_checker(Command::new(tool("bash")).arg("-n").arg(&file));
        }
    }
    let (code, _, err) = patrol(&["completions", "tcsh"]);
    assert_eq!(code, 64, "an unknown shell is a usage error: {err}");
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
