//! `patrol validator serve`: one reference validator (gittensor's PAT handlers on a real axon) from
//! flags and/or a small TOML file of its own (`--validator-config`; unknown keys are errors that
//! name the key; flags win over the file, `--miner` flags add to its `[[miners]]`).
//!
//! After binding it prints exactly one JSON line on stdout and flushes it:
//! `{"ready":true,"listen":"127.0.0.1:PORT","hotkey":"<ss58>"}` (tests and benchmarks wait for it).
//! SIGTERM/SIGINT stop it gracefully (requests in flight get `shutdown_grace` to finish, idle and
//! half-sent connections close at once), exit 0. Logs go to stderr and never contain a PAT (`***` +
//! last 4 at most).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::cli::validator_args::ServeArgs;
use crate::cli::{Coded, Exit, common};
use crate::github::{self, GithubClient, GithubOptions, Mode};
use crate::lab::validator::{Axon, AxonConfig, Metagraph, PatStore, PatValidator, RegisteredMiner};
use crate::wallet::Hotkey;

/// The `--validator-config` TOML schema.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    hotkey_file: Option<PathBuf>,
    hotkey_seed: Option<String>,
    listen: Option<String>,
    store: Option<PathBuf>,
    github_api_url: Option<String>,
    mode: Option<String>,
    clock_offset: Option<String>,
    body_limit: Option<usize>,
    max_handlers: Option<usize>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_connections: Option<usize>,
    shutdown_grace: Option<String>,
    #[serde(default)]
    github: GithubSection,
    #[serde(default)]
    miners: Vec<RegisteredMiner>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GithubSection {
    timeout: Option<String>,
    identity_attempts: Option<u32>,
    identity_retry_sleep: Option<String>,
}

/// Everything `serve` needs, resolved and validated.
pub struct ServeSettings {
    pub hotkey: Hotkey,
    pub listen: SocketAddr,
    pub store: PathBuf,
    pub metagraph: Metagraph,
    pub github: GithubOptions,
    pub axon: AxonConfig,
}

fn config_error(message: String) -> anyhow::Error {
    Coded::new(Exit::Config, "config_error", message)
}

/// A signed duration: `"-60s"`, `"+2s"`, `"1500ms"` → nanoseconds.
pub fn parse_offset(s: &str) -> anyhow::Result<i64> {
    let t = s.trim();
    let (sign, rest) = match t.strip_prefix('-') {
        Some(r) => (-1, r),
        None => (1, t.strip_prefix('+').unwrap_or(t)),
    };
    let d = humantime::parse_duration(rest.trim()).with_context(|| format!("invalid duration {s:?}"))?;
    let ns = i64::try_from(d.as_nanos()).with_context(|| format!("duration {s:?} is too large"))?;
    Ok(sign * ns)
}

fn parse_duration(key: &str, s: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(s.trim()).map_err(|e| config_error(format!("{key}: invalid duration {s:?}: {e}")))
}

/// `UID:HOTKEY[:STAKE]`.
pub fn parse_miner(spec: &str) -> anyhow::Result<RegisteredMiner> {
    let mut parts = spec.split(':');
    let (Some(uid), Some(hotkey)) = (parts.next(), parts.next()) else {
        bail!("--miner {spec:?}: expected UID:HOTKEY[:STAKE]");
    };
    let uid = uid.trim().parse().with_context(|| format!("--miner {spec:?}: uid must be 0..=65535"))?;
    let stake = match parts.next() {
        Some(s) => s.trim().parse().with_context(|| format!("--miner {spec:?}: stake must be a number"))?,
        None => 0.0,
    };
    if parts.next().is_some() {
        bail!("--miner {spec:?}: expected UID:HOTKEY[:STAKE]");
    }
    Ok(RegisteredMiner { uid, hotkey: hotkey.trim().to_string(), stake })
}

fn load_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).map_err(|e| config_error(format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| config_error(format!("{}: {e}", path.display())))
}

/// `--hotkey-seed`: 32 bytes of (0x-)hex.
fn seed_hotkey(hex_seed: &str) -> anyhow::Result<Hotkey> {
    Hotkey::from_seed_hex(hex_seed).map_err(|e| config_error(format!("hotkey_seed: {e}")))
}

/// Merge flags over the file and validate.
pub fn resolve(args: &ServeArgs) -> anyhow::Result<ServeSettings> {
    let file = match &args.validator_config {
        Some(p) => load_file(p)?,
        None => FileConfig::default(),
    };
    let hotkey = match (&args.hotkey_seed, &args.hotkey_file, &file.hotkey_seed, &file.hotkey_file) {
        (Some(seed), _, _, _) => seed_hotkey(seed)?,
        (None, Some(path), _, _) => Hotkey::load(path)?,
        (None, None, Some(seed), _) => seed_hotkey(seed)?,
        (None, None, None, Some(path)) => Hotkey::load(path)?,
        (None, None, None, None) => {
            return Err(config_error("a validator hotkey is required: --hotkey-file or --hotkey-seed".into()));
        }
    };
    let listen_text = args.listen.clone().or(file.listen).unwrap_or_else(|| "127.0.0.1:8091".into());
    let listen: SocketAddr =
        listen_text.parse().map_err(|e| config_error(format!("listen: {listen_text:?} is not IP:PORT ({e})")))?;
    let store = args.store.clone().or(file.store).unwrap_or_else(|| {
        match std::env::var("GITTENSOR_MINER_PATS_FILE").ok().filter(|p| !p.trim().is_empty()) {
            Some(p) => PathBuf::from(p),
            None => PathBuf::from("data/miner_pats.json"),
        }
    });
    let mut miners = file.miners;
    for spec in &args.miners {
        miners.push(parse_miner(spec).map_err(|e| config_error(format!("{e:#}")))?);
    }
    let metagraph = Metagraph::new(miners).map_err(|e| config_error(format!("miners: {e}")))?;
    let mode_text = args.mode.clone().or(file.mode).unwrap_or_else(|| "fixed".into());
    let mode: Mode = mode_text.parse().map_err(|e: github::GithubError| config_error(format!("mode: {e}")))?;
    let mut gh = GithubOptions {
        api_url: args.github_api_url.clone().or(file.github_api_url).unwrap_or_else(|| github::DEFAULT_API_URL.into()),
        mode,
        ..GithubOptions::default()
    };
    if let Some(t) = args.github_timeout.as_deref().or(file.github.timeout.as_deref()) {
        gh.timeout = parse_duration("github.timeout", t)?;
    }
    if let Some(n) = args.identity_attempts.or(file.github.identity_attempts) {
        gh.identity_attempts = n.max(1);
    }
    if let Some(t) = args.identity_retry_sleep.as_deref().or(file.github.identity_retry_sleep.as_deref()) {
        gh.identity_retry_sleep = parse_duration("github.identity_retry_sleep", t)?;
    }
    let clock_offset_ns = match args.clock_offset.as_deref().or(file.clock_offset.as_deref()) {
        Some(s) => parse_offset(s).map_err(|e| config_error(format!("clock_offset: {e:#}")))?,
        None => 0,
    };
    let positive = |key: &str, flag: Option<&str>, file: Option<&str>, default: Duration| match flag.or(file) {
        None => Ok(default),
        Some(t) => match parse_duration(key, t)? {
            d if d.is_zero() => Err(config_error(format!("{key}: must be more than 0"))),
            d => Ok(d),
        },
    };
    let defaults = AxonConfig::default();
    let duration = |key, arg: &Option<String>, file: &Option<String>, default| {
        positive(key, arg.as_deref(), file.as_deref(), default)
    };
    let axon = AxonConfig {
        body_limit: args.body_limit.or(file.body_limit).unwrap_or(defaults.body_limit),
        clock_offset_ns,
        max_handlers: args.max_handlers.or(file.max_handlers).unwrap_or(defaults.max_handlers),
        header_read_timeout: duration(
            "header_read_timeout",
            &args.header_read_timeout,
            &file.header_read_timeout,
            defaults.header_read_timeout,
        )?,
        idle_timeout: duration("idle_timeout", &args.idle_timeout, &file.idle_timeout, defaults.idle_timeout)?,
        max_connections: match args.max_connections.or(file.max_connections) {
            Some(0) => return Err(config_error("max_connections: must be at least 1".into())),
            Some(n) => n,
            None => defaults.max_connections,
        },
        shutdown_grace: match args.shutdown_grace.as_deref().or(file.shutdown_grace.as_deref()) {
            Some(t) => parse_duration("shutdown_grace", t)?,
            None => defaults.shutdown_grace,
        },
        ..defaults
    };
    Ok(ServeSettings { hotkey, listen, store, metagraph, github: gh, axon })
}

/// Build the validator behind an axon (also used by `patrol demo`).
pub fn build_axon(s: ServeSettings) -> anyhow::Result<(Axon, SocketAddr)> {
    let store = Arc::new(PatStore::new(&s.store));
    match store.ensure_file() {
        Ok(true) => tracing::info!(store = %s.store.display(), "created an empty PAT store"),
        Ok(false) => {
            // a streamed pass: a large store is never built in memory at boot either
            if let Err(e) = store.validate() {
                tracing::error!(error = %crate::secret::error_chain(&e), "the PAT store is unreadable; it is left untouched and broadcasts are rejected until it is fixed");
            }
        }
        Err(e) => {
            tracing::error!(error = %crate::secret::error_chain(&e), "cannot create the PAT store; broadcasts are rejected until it is writable")
        }
    }
    let github = GithubClient::new(s.github.clone()).map_err(|e| config_error(format!("github: {e}")))?;
    let validator = Arc::new(PatValidator::new(s.metagraph, store, Arc::new(github), s.github.mode));
    Ok((Axon::new(validator, Arc::new(s.hotkey), s.axon), s.listen))
}

/// Run the command.
pub async fn run(args: &ServeArgs) -> anyhow::Result<Exit> {
    // Before the cap is computed from it (half the soft limit).
    crate::serve::raise_open_file_limit();
    let settings = resolve(args)?;
    let (mode, miners, store) = (settings.github.mode, settings.metagraph.len(), settings.store.clone());
    let limits = settings.axon.clone();
    let (axon, listen) = build_axon(settings)?;
    let listener = crate::lab::validator::axon::listen(listen)
        .map_err(|e| config_error(format!("cannot listen on {listen}: {e}")))?;
    let bound = listener.local_addr()?;
    let ready = serde_json::json!({"ready": true, "listen": bound.to_string(), "hotkey": axon.hotkey()});
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{ready}")?;
        out.flush()?;
    }
    tracing::info!(listen = %bound, hotkey = axon.hotkey(), %mode, miners, store = %store.display(), "validator serving");
    tracing::info!(
        header_read_timeout = %humantime::format_duration(limits.header_read_timeout),
        idle_timeout = %humantime::format_duration(limits.idle_timeout),
        max_connections = crate::lab::validator::axon::effective_max_connections(limits.max_connections),
        shutdown_grace = %humantime::format_duration(limits.shutdown_grace),
        max_handlers = limits.max_handlers,
        "connection limits"
    );
    axon.serve(listener, common::shutdown_signal()).await.context("axon server failed")?;
    tracing::info!("validator stopped");
    Ok(Exit::Covered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_miners() {
        assert_eq!(parse_offset("-60s").unwrap(), -60_000_000_000);
        assert_eq!(parse_offset("+1500ms").unwrap(), 1_500_000_000);
        assert_eq!(parse_offset("2s").unwrap(), 2_000_000_000);
        assert!(parse_offset("soon").is_err());
        let m = parse_miner("3:5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV:12.5").unwrap();
        assert_eq!((m.uid, m.stake), (3, 12.5));
        assert_eq!(parse_miner("3:5Dfh").unwrap().stake, 0.0);
        assert!(parse_miner("x:5Dfh").is_err());
        assert!(parse_miner("3").is_err());
    }

    #[test]
    fn connection_limits_from_flags_and_file() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let seed = "0x1111111111111111111111111111111111111111111111111111111111111111";
        let parse = |extra: &[&str]| {
            let args = [&["patrol", "--hotkey-seed", seed][..], extra].concat();
            resolve(&<Cli as clap::Parser>::try_parse_from(args).unwrap().serve)
        };
        let d = parse(&[]).unwrap().axon;
        assert_eq!(
            (d.header_read_timeout, d.idle_timeout, d.max_connections, d.shutdown_grace),
            (Duration::from_secs(10), Duration::from_secs(5), 1024, Duration::from_secs(10))
        );
        let c = parse(&[
            "--header-read-timeout",
            "2s",
            "--idle-timeout",
            "500ms",
            "--max-connections",
            "7",
            "--shutdown-grace",
            "0s",
        ])
        .unwrap()
        .axon;
        assert_eq!(
            (c.header_read_timeout, c.idle_timeout, c.max_connections, c.shutdown_grace),
            (Duration::from_secs(2), Duration::from_millis(500), 7, Duration::ZERO)
        );
        for (flag, value) in [("--max-connections", "0"), ("--idle-timeout", "0s"), ("--header-read-timeout", "soon")] {
            let e = parse(&[flag, value]).map(|_| ()).unwrap_err();
            assert!(format!("{e:#}").contains(&flag[2..].replace('-', "_")), "{flag}: {e:#}");
        }
        let f: FileConfig = toml::from_str(
            "header_read_timeout = \"3s\"\nidle_timeout = \"4s\"\nmax_connections = 9\nshutdown_grace = \"1s\"\n",
        )
        .unwrap();
        assert_eq!((f.max_connections, f.idle_timeout.as_deref()), (Some(9), Some("4s")));
    }

    #[test]
    fn file_schema_names_unknown_keys() {
        let e = toml::from_str::<FileConfig>("listen = \"127.0.0.1:1\"\nlisten_port = 3\n").unwrap_err();
        assert!(e.to_string().contains("listen_port"), "{e}");
        let e = toml::from_str::<FileConfig>("[github]\ntimout = \"1s\"\n").unwrap_err();
        assert!(e.to_string().contains("timout"), "{e}");
        let f: FileConfig = toml::from_str(
            "hotkey_seed = \"0x11\"\nmode = \"parity\"\n[[miners]]\nuid = 1\nhotkey = \"5X\"\nstake = 2.0\n",
        )
        .unwrap();
        assert_eq!(f.miners.len(), 1);
    }
}
