use std::time::Duration;

use super::*;
use crate::fsutil::ReadError;
use crate::validators::Thresholds;

fn env_none(_: &str) -> Option<String> {
    None
}

fn home(k: &str) -> Option<String> {
    (k == "HOME").then(|| "/home/m".to_string())
}

fn build(text: &str) -> Result<Settings, ConfigError> {
    Settings::build(Some(Path::new("/etc/patrol/patrol.toml")), Some(text), &Overrides::default(), home)
}

#[test]
fn defaults_match_gitt() {
    let s = Settings::build(None, None, &Overrides::default(), home).unwrap();
    assert_eq!(s.chain.netuid, 74);
    assert_eq!(s.chain.url.expose(), "wss://entrypoint-finney.opentensor.ai:443");
    assert_eq!(s.validators.thresholds, Thresholds { min_vtrust: 0.25, min_stake: 15000.0 });
    assert_eq!(s.reconcile.check_timeout, Duration::from_secs(15));
    assert_eq!(s.reconcile.broadcast_timeout, Duration::from_secs(30));
    assert_eq!(s.miners.len(), 1);
    assert_eq!(s.miners[0].hotkey_file, PathBuf::from("/home/m/.bittensor/wallets/default/hotkeys/default"));
    assert_eq!(s.miners[0].pat_sources, vec![PatSource::Env]);
    assert_eq!(s.agent.state_dir, PathBuf::from("/home/m/.local/state/patrol"));
    assert_eq!(s.agent.listen, Some("127.0.0.1:9184".parse().unwrap()));
}

#[test]
fn example_file_is_valid_and_states_the_defaults() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml")).unwrap();
    let from_example = build(&text).unwrap();
    let defaults =
        Settings::build(Some(Path::new("/etc/patrol/patrol.toml")), Some(""), &Overrides::default(), home).unwrap();
    assert_eq!(from_example.chain, defaults.chain);
    assert_eq!(from_example.validators, defaults.validators);
    assert_eq!(from_example.github, defaults.github);
    assert_eq!(from_example.reconcile, defaults.reconcile);
    assert_eq!(from_example.agent, defaults.agent);
    assert_eq!(from_example.miners[0].hotkey_file, defaults.miners[0].hotkey_file);
    // every commented-out key parses too: first the single-miner form, then [[miner]] without the
    // top-level [wallet]/[pat] (together they are rejected, by design)
    let uncommented: Vec<&str> = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.contains(" = ") || rest.starts_with('[') => rest,
            _ => l,
        })
        .collect();
    let split = uncommented.iter().position(|l| l.starts_with("[[miner]]")).unwrap();
    let single = uncommented[..split].join("\n");
    let s = build(&single).unwrap();
    assert_eq!(s.validators.static_list.as_ref().map(Vec::len), Some(1));
    assert_eq!(s.miners[0].hotkey_file, PathBuf::from("/var/lib/patrol/hotkey"));
    assert_eq!(s.miners[0].pat_sources.len(), 3);
    let both = uncommented.join("\n");
    assert!(build(&both).unwrap_err().to_string().contains("not both"));
    let mut section = String::new();
    let multi: Vec<&str> = uncommented
        .iter()
        .copied()
        .filter(|l| {
            if l.starts_with('[') {
                section = l.to_string();
            }
            section != "[wallet]" && section != "[pat]"
        })
        .collect();
    let s = build(&multi.join("\n")).unwrap();
    assert_eq!(s.miners.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), vec!["miner-a", "miner-b"]);
}

#[test]
fn unknown_key_names_file_and_key() {
    let e = build("[reconcile]\nintervall = \"5m\"\n").unwrap_err().to_string();
    assert!(e.contains("/etc/patrol/patrol.toml") && e.contains("intervall"), "{e}");
    assert!(!e.contains('\n'));
    let e = build("[chian]\nnetuid = 1\n").unwrap_err().to_string();
    assert!(e.contains("chian"), "{e}");
}

#[test]
fn bad_values_name_the_key() {
    for (text, key) in [
        ("[reconcile]\ninterval = \"15 parsecs\"", "reconcile.interval"),
        ("[reconcile]\ninterval = \"0s\"", "reconcile.interval"),
        ("[reconcile]\nconcurrency = 0", "reconcile.concurrency"),
        ("[reconcile]\nbackoff_initial = \"10m\"\nbackoff_max = \"1m\"", "reconcile.backoff_max"),
        ("[chain]\nnetwork = \"mainnet\"", "chain.network"),
        ("[agent]\nlisten = \"localhost\"", "agent.listen"),
        ("[agent]\nlog_format = \"xml\"", "agent.log_format"),
        ("[github]\napi_url = \"ftp://x\"", "github.api_url"),
        ("[pat]\ncredential = \"a/b\"", "pat.credential"),
        (
            "[[validators.static]]\nuid = 1\nhotkey = \"nope\"\nip = \"1.2.3.4\"\nport = 1\nstake = 1.0\nvtrust = 0.5",
            "validators.static[0].hotkey",
        ),
        (
            "[[validators.static]]\nuid = 1\nhotkey = \"5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi\"\nip = \"host\"\nport = 1\nstake = 1.0\nvtrust = 0.5",
            "validators.static[0].ip",
        ),
    ] {
        let e = build(text).unwrap_err().to_string();
        assert!(e.contains(key), "{text:?} gave {e}");
        assert!(e.starts_with("/etc/patrol/patrol.toml"), "{e}");
    }
    let e = build("[chain]\nnetuid = \"x\"").unwrap_err().to_string();
    assert!(e.contains("netuid"), "{e}");
}

#[test]
fn overrides_and_relative_paths() {
    let ov = Overrides {
        network: Some("LOCAL".into()),
        netuid: Some(422),
        min_vtrust: Some(-1.0),
        pat_file: Some("/run/pat".into()),
        wallet: Some("w".into()),
        ..Overrides::default()
    };
    let s = Settings::build(
        Some(Path::new("/cfg/p.toml")),
        Some("[pat]\nfile = \"pat.txt\"\n[wallet]\npath = \"wallets\""),
        &ov,
        env_none,
    )
    .unwrap();
    assert_eq!(s.chain.url.expose(), "ws://127.0.0.1:9944");
    assert_eq!(s.chain.netuid, 422);
    assert_eq!(s.validators.thresholds.min_vtrust, -1.0);
    assert_eq!(s.miners[0].hotkey_file, PathBuf::from("/cfg/wallets/w/hotkeys/default"));
    assert_eq!(
        s.miners[0].pat_sources,
        vec![PatSource::File("/run/pat".into()), PatSource::Env, PatSource::File("/cfg/pat.txt".into())]
    );
    let s = Settings::build(
        None,
        Some(""),
        &Overrides { network: Some("wss://node.example:443".into()), ..Overrides::default() },
        env_none,
    )
    .unwrap();
    assert_eq!(s.chain.url.expose(), "wss://node.example:443");
}

#[test]
fn several_miners() {
    let text = r#"
[[miner]]
name = "a"
wallet = { hotkey_file = "/k/a" }
pat = { file = "/p/a" }
[[miner]]
wallet = { name = "wb", hotkey = "hb" }
pat = { credential = "pat-b" }
"#;
    let mut s = build(text).unwrap();
    assert_eq!(s.miners.len(), 2);
    assert_eq!(s.miners[1].name, "wb/hb");
    assert_eq!(s.miners[1].pat_sources, vec![PatSource::Credential("pat-b".into())]);
    assert!(s.single_miner().unwrap_err().to_string().contains("--miner"));
    s.select_miner("a").unwrap();
    assert_eq!(s.single_miner().unwrap().hotkey_file, PathBuf::from("/k/a"));
    let dup = "[[miner]]\nname = \"x\"\n[[miner]]\nname = \"x\"\n";
    assert!(build(dup).unwrap_err().to_string().contains("duplicate"));
}

#[test]
fn state_dir_sources() {
    let e = |k: &str| match k {
        "STATE_DIRECTORY" => Some("/var/lib/patrol:/var/lib/other".to_string()),
        _ => None,
    };
    assert_eq!(default_state_dir(&e), PathBuf::from("/var/lib/patrol"));
    let e = |k: &str| (k == "XDG_STATE_HOME").then(|| "/x".to_string());
    assert_eq!(default_state_dir(&e), PathBuf::from("/x/patrol"));
}

#[test]
fn locate_order() {
    let e = |k: &str| (k == "PATROL_CONFIG").then(|| "/from/env.toml".to_string());
    assert_eq!(locate(Some(Path::new("/x.toml")), e), Some(PathBuf::from("/x.toml")));
    assert_eq!(locate(None, e), Some(PathBuf::from("/from/env.toml")));
}

/// Issue 15 item 10: a bad value given as a flag names the flag and "command line", not the file's
/// key; the same value from the file keeps the file and the key.
#[test]
fn flag_errors_name_the_flag() {
    let file = Some(Path::new("/etc/patrol/base.toml"));
    let text = "[validators]\nmin_vtrust = 0.3\n[chain]\nnetwork = \"local\"\n";
    for (ov, want) in [
        (
            Overrides { min_vtrust: Some(f64::NAN), ..Overrides::default() },
            "command line: --min-vtrust: must be a finite number",
        ),
        (
            Overrides { min_stake: Some(-1.0), ..Overrides::default() },
            "command line: --min-stake: must be a non-negative",
        ),
        (
            Overrides { network: Some("bogus".into()), ..Overrides::default() },
            "command line: --network: \"bogus\" is not",
        ),
        (
            Overrides { rpc_url: Some("http://x".into()), network: Some("local".into()), ..Overrides::default() },
            "command line: --rpc-url: \"http://x\"",
        ),
        (
            Overrides { wallet: Some("a/b".into()), ..Overrides::default() },
            "command line: --wallet: \"a/b\" must be a plain name",
        ),
        (
            Overrides { hotkey: Some("".into()), ..Overrides::default() },
            "command line: --hotkey: \"\" must be a plain name",
        ),
        (
            Overrides { listen: Some("localhost".into()), ..Overrides::default() },
            "command line: --listen: \"localhost\"",
        ),
        (Overrides { log_format: Some("xml".into()), ..Overrides::default() }, "command line: --log-format: \"xml\""),
    ] {
        let e = Settings::build(file, Some(text), &ov, env_none).unwrap_err().to_string();
        assert!(e.starts_with(want), "{ov:?} gave {e}");
        assert!(
            !e.contains("base.toml") && !e.contains("validators.") && !e.contains("chain.") && !e.contains("wallet."),
            "{e}"
        );
    }
    // --rpc-url wins over --network, as before
    let ov =
        Overrides { rpc_url: Some("ws://10.0.0.1:9944".into()), network: Some("test".into()), ..Overrides::default() };
    assert_eq!(Settings::build(file, Some(text), &ov, env_none).unwrap().chain.url.expose(), "ws://10.0.0.1:9944");
    // from the file: the file and the key
    for (text, want) in [
        ("[validators]\nmin_stake = -1.0", "/etc/patrol/base.toml: validators.min_stake:"),
        ("[chain]\nnetwork = \"bogus\"", "/etc/patrol/base.toml: chain.network:"),
        ("[wallet]\nname = \"a/b\"", "/etc/patrol/base.toml: wallet.name:"),
        ("[[miner]]\nwallet = { hotkey = \"a/b\" }", "/etc/patrol/base.toml: miner[0].wallet.hotkey:"),
    ] {
        let e = Settings::build(file, Some(text), &Overrides::default(), env_none).unwrap_err().to_string();
        assert!(e.starts_with(want), "{text:?} gave {e}");
    }
    // a flag that is fine does not take the blame for a bad file value
    let ov = Overrides { min_vtrust: Some(0.5), ..Overrides::default() };
    let e = Settings::build(file, Some("[validators]\nmin_stake = -1.0"), &ov, env_none).unwrap_err().to_string();
    assert!(e.starts_with("/etc/patrol/base.toml: validators.min_stake:"), "{e}");
}

/// Issue 15 item 3: a parse error never quotes a token from the file (nor the source line).
#[test]
fn parse_errors_do_not_quote_the_pat() {
    let token = "ghp_configParseToken0000000000000000042";
    let e = build(&format!("[pat]\nfile = \"pat\"\ntoken = \"{token}\"\n")).unwrap_err().to_string();
    assert!(
        e.contains("/etc/patrol/patrol.toml") && e.contains("unknown field `token`") && e.contains("line 3"),
        "{e}"
    );
    assert!(!e.contains(token) && !e.contains("configParse") && !e.contains('\n'), "{e}");
    // a token as a value of the wrong type is quoted by serde: redacted
    let e = build(&format!("[chain]\nnetuid = \"{token}\"\n")).unwrap_err().to_string();
    assert!(e.contains("netuid") && !e.contains("configParse"), "{e}");
}

/// Issue 15 item 6: the config file is read only if it is a regular file, and at most 1 MiB.
#[test]
fn config_reads_are_capped_and_regular_files_only() {
    let e = Settings::load(Some(Path::new("/dev/zero")), &Overrides::default()).unwrap_err();
    assert!(matches!(e, ConfigError::Read { source: ReadError::NotRegular("a character device"), .. }), "{e}");
    let text = crate::secret::error_chain(&e);
    assert!(text.contains("/dev/zero: is not a regular file (it is a character device)"), "{text}");
    let d = tempfile::tempdir().unwrap();
    let e = Settings::load(Some(d.path()), &Overrides::default()).unwrap_err();
    assert!(matches!(e, ConfigError::Read { source: ReadError::NotRegular("a directory"), .. }), "{e}");
    let big = d.path().join("big.toml");
    let cap = usize::try_from(MAX_CONFIG_BYTES).unwrap();
    std::fs::write(&big, format!("# {}\n", "x".repeat(cap))).unwrap();
    let e = Settings::load(Some(&big), &Overrides::default()).unwrap_err();
    assert!(matches!(e, ConfigError::Read { source: ReadError::TooLarge { cap: 1_048_576 }, .. }), "{e}");
    let text = crate::secret::error_chain(&e);
    assert!(text.contains("big.toml: is larger than 1048576 bytes"), "{text}");
    std::fs::write(&big, [0xff, 0xfe, b'\n']).unwrap();
    let e = Settings::load(Some(&big), &Overrides::default()).unwrap_err();
    assert!(e.to_string().contains("not UTF-8"), "{e}");
}
