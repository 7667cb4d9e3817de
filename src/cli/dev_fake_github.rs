//! `patrol dev fake-github` (hidden): [`crate::lab::fake_github`] as a process, for real-process tests
//! and benchmarks. Loopback only. Prints one JSON line when bound:
//! `{"ready":true,"listen":"127.0.0.1:PORT"}`; it is then driven over its `/_fake/...` control API.
//! SIGTERM/SIGINT stop it, exit 0.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use crate::cli::validator_args::FakeGithubArgs;
use crate::cli::{Coded, Exit, common};
use crate::lab::fake_github::{self, FakeAccount, FakeGithubConfig, FakeGithubHandle, FaultRule};

/// The `--config` JSON schema.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    accounts: Vec<FakeAccount>,
    #[serde(default)]
    faults: Vec<FaultRule>,
}

fn load(path: &Path) -> anyhow::Result<FakeGithubConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Coded::new(Exit::Config, "config_error", format!("cannot read {}: {e}", path.display())))?;
    let f: FileConfig = serde_json::from_str(&text)
        .map_err(|e| Coded::new(Exit::Config, "config_error", format!("{}: {e}", path.display())))?;
    Ok(FakeGithubConfig { accounts: f.accounts, faults: f.faults })
}

/// Run the command. `global_config` is the top-level `--config`, which clap hands over when the
/// flag is given before the subcommand.
pub async fn run(args: &FakeGithubArgs, global_config: Option<&Path>) -> anyhow::Result<Exit> {
    let listen: SocketAddr = args
        .listen
        .parse()
        .map_err(|e| Coded::new(Exit::Usage, "usage_error", format!("--listen {:?}: {e}", args.listen)))?;
    if !listen.ip().is_loopback() {
        return Err(Coded::new(Exit::Usage, "usage_error", "the fake GitHub listens on loopback only"));
    }
    let config = match args.config.as_deref().or(global_config) {
        Some(p) => load(p)?,
        None => FakeGithubConfig::default(),
    };
    let accounts = config.accounts.len();
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let bound = listener.local_addr()?;
    let handle = FakeGithubHandle::new(config);
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::json!({"ready": true, "listen": bound.to_string()}))?;
        out.flush()?;
    }
    tracing::info!(listen = %bound, accounts, "fake GitHub serving");
    fake_github::serve(listener, handle, common::shutdown_signal()).await.context("fake GitHub failed")?;
    Ok(Exit::Covered)
}
