//! The local subnet the packaged patrol talks to, on the host's 127.0.0.1 (inside the test's
//! private network namespace, shared with the container): two `patrol validator serve`
//! processes, one real Python `bt.Axon` (bittensor 10.3.1, gittensor's PAT handlers), and the fake
//! GitHub (`patrol dev fake-github`) both validators and patrol ask. Two miners are registered
//! everywhere: the main one and `alice` (for `patrol@alice`).

use std::path::PathBuf;

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::cli::static_validator;
use crate::support::fake_github::FakeGithubProcess;
use crate::support::python::{BLACKLISTED_HOTKEY, BLACKLISTED_SEED, DENDRITE_HOTKEY, PyAxon, default_axon_config};
use crate::support::subnet::Subnet;

/// The miner's PAT, the one it rotates to (same GitHub account), and alice's.
pub const PAT_A: &str = "ghp_deployTestMiner4242tokenA00000001";
pub const PAT_B: &str = "ghp_deployTestMiner4242tokenB00000002";
pub const PAT_ALICE: &str = "ghp_deployTestAlice5151tokenC00000003";
/// The main miner's hotkey (the harness's dendrite key) and alice's (a key the default axon
/// config does not register; registered here).
pub const MINER_HOTKEY: &str = DENDRITE_HOTKEY;
pub const ALICE_HOTKEY: &str = BLACKLISTED_HOTKEY;
/// Alice's uid at the `validator serve` processes (the main miner is uid 1 there).
const ALICE_UID: u16 = 2;
/// The Python axon's uid in patrol's static validator list.
const AXON_UID: u16 = 20;

/// Every validator, the fake GitHub, and a scratch directory for the test's host-side files.
pub struct LocalNet {
    pub github: FakeGithubProcess,
    pub subnet: Subnet,
    pub axon: PyAxon,
    pub scratch: TempDir,
}

impl LocalNet {
    pub fn start() -> LocalNet {
        let scratch = tempfile::Builder::new().prefix("patrol-deploy-").tempdir().expect("scratch dir");
        let github = FakeGithubProcess::start(
            scratch.path(),
            &[(PAT_A, 4242, "miner"), (PAT_B, 4242, "miner"), (PAT_ALICE, 5151, "alice")],
        );
        let alice = format!("{ALICE_UID}:{ALICE_HOTKEY}:100");
        let subnet = Subnet::start_with(2, github.addr, &["--miner", &alice]);
        // uid = position: the main miner 0, alice 1
        let mut cfg = default_axon_config();
        cfg["registered"] = json!([{"hotkey": MINER_HOTKEY, "stake": 100.0}, {"hotkey": ALICE_HOTKEY, "stake": 100.0}]);
        let axon = PyAxon::with_config(cfg);
        LocalNet { github, subnet, axon, scratch }
    }

    /// A bittensor hotkey file for the main miner (from the subnet's scratch dir).
    pub fn miner_hotkey_file(&self) -> PathBuf {
        self.subnet.scratch.path("hotkey")
    }

    /// A bittensor hotkey file for alice.
    pub fn alice_hotkey_file(&self) -> PathBuf {
        self.subnet.scratch.hotkey("alice-hotkey", BLACKLISTED_SEED)
    }

    /// What the test appends to a packaged config, and nothing else: the local subnet as the
    /// static validator list, and the fake GitHub.
    pub fn test_keys(&self) -> String {
        format!(
            "\n# test-only: the local subnet and the fake GitHub\n[github]\napi_url = \"{}\"\n\n{}{}",
            self.github.url(),
            self.subnet.validators_toml(&[0, 1]),
            static_validator(AXON_UID, self.axon.hotkey(), "127.0.0.1", self.axon.port(), 20_000.0)
        )
    }

    /// Every validator's stored PAT for `hotkey`, by name (`None`: nothing stored).
    pub fn stored(&self, hotkey: &str) -> Vec<(String, Option<String>)> {
        let pat_of = |entries: Vec<Value>| {
            entries.iter().find(|e| e["hotkey"] == hotkey).and_then(|e| e["pat"].as_str().map(str::to_string))
        };
        let mut out: Vec<(String, Option<String>)> = self
            .subnet
            .nodes
            .iter()
            .map(|n| (format!("validator serve uid {} (:{})", n.uid, n.port), pat_of(n.entries())))
            .collect();
        out.push((format!("Python bt.Axon uid {AXON_UID} (:{})", self.axon.port()), pat_of(self.axon.store())));
        out
    }

    /// `Ok` when every validator holds `pat` for `hotkey`; else what they hold (redacted).
    pub fn all_hold(&self, hotkey: &str, pat: &str) -> Result<(), String> {
        let stored = self.stored(hotkey);
        if stored.iter().all(|(_, p)| p.as_deref() == Some(pat)) {
            return Ok(());
        }
        let shown: Vec<String> = stored
            .iter()
            .map(|(name, p)| format!("{name}: {}", p.as_deref().map_or("nothing".to_string(), redact)))
            .collect();
        Err(format!("wanted {} at every validator for {hotkey}; they hold: {}", redact(pat), shown.join("; ")))
    }

    /// The number of validators patrol is configured with.
    pub fn validator_count(&self) -> usize {
        self.subnet.nodes.len() + 1
    }
}

/// `***` + the last 4 characters: how a PAT may appear in a failure message.
pub fn redact(pat: &str) -> String {
    format!("***{}", &pat[pat.len().saturating_sub(4)..])
}
