//! The embedded validator (issue 3), end to end: interop with the real Python `bittensor==10.3.1`,
//! store safety under concurrency and SIGKILL, parity/fixed answers against the fake GitHub over
//! HTTP, and the `validator serve` / `demo` / `dev fake-github` commands as real processes.
//!
//! Everything listens on 127.0.0.1; every child process is killed on drop; every wait is bounded.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use patrol::github::{GithubClient, GithubOptions, Mode};
use patrol::lab::validator::{Axon, AxonConfig, Metagraph, PatStore, PatValidator, RegisteredMiner};
use patrol::wallet::Hotkey;
use patrol::wire::Target;
use tokio_util::sync::CancellationToken;

/// The axon's limits (slowloris, idle, connection cap, busy, SIGTERM), parity with `bt.Axon`,
/// memory under bursts and a 100 MB store, the liveness probe.
mod axon;
/// `validator serve`, `dev fake-github` and `demo` as processes.
mod commands;
/// `patrol validator serve` as a process talking to real Python dendrites (and Rust ones).
mod interop;
/// Parity/fixed: the documented check and broadcast answers for each GitHub failure, per mode.
mod modes;
/// 500 concurrent broadcasts, a corrupt store, SIGKILL mid-write, two writer processes.
mod store_safety;

/// The validator seed of the vectors (`0x11` × 32).
pub const VALIDATOR_SEED_HEX: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";

/// A deterministic test miner hotkey.
pub fn miner_key(i: u32) -> Hotkey {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&i.to_le_bytes());
    seed[31] = 0xA5;
    Hotkey::from_seed(&seed)
}

/// A validator axon served in this process on 127.0.0.1:0, stopped on drop.
pub struct InProcess {
    pub axon: Axon,
    pub addr: SocketAddr,
    pub store: PathBuf,
    _dir: tempfile::TempDir,
    stop: CancellationToken,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl InProcess {
    /// The axon as a dendrite target.
    pub fn target(&self) -> Target {
        Target { ip: self.addr.ip(), port: self.addr.port(), hotkey: self.axon.hotkey().to_string() }
    }
}

/// GitHub settings for tests: short deadline, 2 identity attempts, 10 ms between them.
pub fn github_options(api_url: &str, mode: Mode, timeout: Duration) -> GithubOptions {
    GithubOptions {
        api_url: api_url.to_string(),
        mode,
        timeout,
        identity_attempts: 2,
        identity_retry_sleep: Duration::from_millis(10),
        ..GithubOptions::default()
    }
}

/// Start a validator with `miners` registered, asking the GitHub at `github`.
pub async fn start_in_process(miners: Vec<RegisteredMiner>, github: GithubOptions, cfg: AxonConfig) -> InProcess {
    let dir = tempfile::Builder::new().prefix("patrol-validator-").tempdir().unwrap();
    let store_path = dir.path().join("miner_pats.json");
    let store = Arc::new(PatStore::new(&store_path));
    store.ensure_file().unwrap();
    let mode = github.mode;
    let client = GithubClient::new(github).unwrap();
    let v = Arc::new(PatValidator::new(Metagraph::new(miners).unwrap(), store, Arc::new(client), mode));
    let axon = Axon::new(v, Arc::new(Hotkey::from_seed(&[0x11; 32])), cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(axon.clone().serve(listener, async move { s.cancelled().await }));
    InProcess { axon, addr, store: store_path, _dir: dir, stop }
}

/// A Rust dendrite for `key`.
pub fn dendrite(key: Hotkey) -> patrol::wire::Dendrite {
    patrol::wire::Dendrite::new(Arc::new(key), Default::default()).unwrap()
}
