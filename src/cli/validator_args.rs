//! Arguments of the embedded-validator and development commands (`validator serve`, `demo`'s
//! helpers, `dev fake-github`). Parsing only; the commands live in `validator_serve.rs`,
//! `dev_fake_github.rs` and `demo.rs`.

use std::path::PathBuf;

use clap::Args;

/// `patrol validator serve`: one reference validator. Flags override the `--validator-config` file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The validator's own TOML file (keys: hotkey_file, hotkey_seed, listen, store, github_api_url,
    /// mode, clock_offset, body_limit, max_handlers, header_read_timeout, idle_timeout,
    /// max_connections, shutdown_grace; a `github` table with timeout,
    /// identity_attempts, identity_retry_sleep; a `miners` array of {uid, hotkey, stake}).
    #[arg(long, value_name = "FILE")]
    pub validator_config: Option<PathBuf>,
    /// Validator hotkey file (bittensor JSON, unencrypted).
    #[arg(long, value_name = "FILE", conflicts_with = "hotkey_seed")]
    pub hotkey_file: Option<PathBuf>,
    /// Validator hotkey as a 32-byte hex seed (tests and local setups only).
    #[arg(long, value_name = "HEX")]
    pub hotkey_seed: Option<String>,
    /// Listen address [default: 127.0.0.1:8091]; port 0 picks a free one (see the ready line).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// PAT store (gittensor's miner_pats.json) [default: $GITTENSOR_MINER_PATS_FILE, else data/miner_pats.json].
    #[arg(long, value_name = "PATH")]
    pub store: Option<PathBuf>,
    /// A registered miner, UID:HOTKEY or UID:HOTKEY:STAKE (repeatable): the validator's metagraph.
    #[arg(long = "miner", value_name = "UID:HOTKEY[:STAKE]")]
    pub miners: Vec<String>,
    /// GitHub API root [default: `https://api.github.com`].
    #[arg(long, value_name = "URL")]
    pub github_api_url: Option<String>,
    /// parity (upstream HEAD: every test-query failure is permanent) or fixed [default: fixed].
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// Skew the axon's clock for the nonce window, e.g. "-60s" (60 s behind) or "2s".
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub clock_offset: Option<String>,
    /// Request bodies larger than this get 413 [default: 65536].
    #[arg(long, value_name = "BYTES")]
    pub body_limit: Option<usize>,
    /// Requests handled at once; the rest queue by stake [default: 256].
    #[arg(long, value_name = "N")]
    pub max_handlers: Option<usize>,
    /// A request's head must arrive within this once the connection can take one (and its body
    /// within as long again); slow, silent and idle connections are closed [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub header_read_timeout: Option<String>,
    /// Close a connection with no request in flight and no traffic for this long [default: 5s].
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Connections at once, at most half the open-file limit; at the cap a new one displaces the
    /// oldest quiet one, or gets an immediate 503 when all are busy [default: 1024].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// On SIGTERM/SIGINT, how long requests in flight may still take before every connection is
    /// dropped [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub shutdown_grace: Option<String>,
    /// Deadline of one GitHub request [default: 15s, upstream's].
    #[arg(long, value_name = "DURATION")]
    pub github_timeout: Option<String>,
    /// `/user` attempts before a transient verdict [default: 6, upstream's].
    #[arg(long, value_name = "N")]
    pub identity_attempts: Option<u32>,
    /// Sleep between `/user` attempts [default: 2s, upstream's].
    #[arg(long, value_name = "DURATION")]
    pub identity_retry_sleep: Option<String>,
}

/// `patrol dev fake-github`.
#[derive(Debug, Args)]
pub struct FakeGithubArgs {
    /// Listen address (loopback only).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// JSON file: {"accounts": [{"token", "id", "login", "expiry"?}], "faults": [rule, ...]}.
    #[arg(long)]
    pub config: Option<PathBuf>,
}
