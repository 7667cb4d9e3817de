//! Arguments of the embedded-validator and development commands.

use std::path::PathBuf;

use clap::Args;

/// `patrol validator serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen address (IPv4 loopback by default).
    #[arg(long, default_value = "127.0.0.1:8091")]
    pub listen: String,
}

/// `patrol dev fake-github`.
#[derive(Debug, Args)]
pub struct FakeGithubArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// JSON file describing tokens and behaviour.
    #[arg(long)]
    pub config: Option<PathBuf>,
}
