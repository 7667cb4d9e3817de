//! Issue 7: real-process fault tests. Each fault hits real `patrol` processes (`patrol run`,
//! `reconcile`, `check`, `post`), real reference validators (`patrol validator serve`), a real fake
//! GitHub process (`patrol dev fake-github`, faults injected over `/_fake/faults`), the loopback
//! mock Subtensor node, and the real Python `bt.Axon`. Every test asserts what a user sees — exit
//! codes, `--json` fields, the state file, each validator's store file, `/metrics` — and that
//! coverage comes back once the fault is gone without anything stored being lost.
//!
//! | fault | module | what is asserted |
//! |---|---|---|
//! | SIGKILL of `patrol run` at seeded random points, validators slow and fast, stores wiped between kills | [`agent_kill`] | the state file always parses (strictly) and never goes backwards, no `.corrupt-` file, temp files only of killed writers, the next start resumes (never re-sends to a validator the file records as holding the PAT) and reaches full coverage, the PAT never in the state dir |
//! | validators SIGKILLed and restarted with an empty, a corrupt, a read-only store | [`validator_store`] | PAT re-sent where it was lost; a corrupt store is `store_unavailable`, never written (bytes identical), never broadcast to, repaired once fixed; a read-only store rejects transiently, is not spammed, recovers; other miners' entries survive every case |
//! | fake GitHub: 5xx, 429 + Retry-After, slow (trickled) bodies, connection resets | [`github`] | validators answer `inconclusive` (covered), our preflight is `transient` (never an invalid-PAT verdict or alert), `post` exits 3 sending nothing, no stored PAT is touched, coverage restored when GitHub recovers |
//! | the chain node dropping every connection | [`chain`] | `reconcile`/`check` exit 3 with the endpoint and "no metagraph cache" (never "0 validators"), nothing sent; a warm cache keeps `reconcile` and `patrol run` covering (`source: cache`); a too-old cache is exit 3 again; `run` keeps its validator set and reports `no_validator_source` |
//! | a validator clock beyond the nonce window | [`clock`] | 401 rows carry a `hint` naming the clock / NTP in `check`, `post`, `reconcile` JSON and tables, no blind re-broadcast, coverage once the clock is fixed; the same against the real Python `bt.Axon` with a skewed clock |
//!
//! Already covered elsewhere, exactly, and not repeated here:
//! - the store library under SIGKILL mid-write and two writer processes
//!   (`validator::store_safety::sigkill_mid_write_leaves_the_old_or_the_new_file`,
//!   `two_processes_writing_at_once_lose_nothing`), and a corrupt store at the handler level
//!   (`corrupt_store_is_left_byte_identical_and_reported_unavailable`);
//! - SIGTERM of `patrol run` mid-broadcast (`agent::sigterm_mid_pass_exits_0_within_the_broadcast_timeout_and_leaves_a_valid_state_file`);
//! - GitHub fault classification per request, per mode (`github::*`), and a GraphQL 503 at one
//!   validator in parity and fixed mode (`reconcile::e2e::github_503_at_one_validator_is_inconclusive_not_rebroadcast`);
//! - the chain client against dropped sockets, RPC errors, slow nodes and the cache at the library
//!   level and for `patrol validators` (`chain::mock_*`, `chain::e2e_*`);
//! - a down validator and its backoff (`reconcile::e2e::a_down_validator_is_partial_and_retried_only_after_its_backoff`).
//!
//! Bounds: every process is killed on drop, every wait and loop is bounded, everything listens on
//! 127.0.0.1, and no assertion depends on wall-clock speed. Where a story needs a backoff to be
//! over, the times in the state file are moved back ([`make_due`]) instead of waiting it out.

/// SIGKILL of `patrol run` at random points during passes.
mod agent_kill;
/// The chain node dropping connections: `reconcile`, `check` and `run`, with and without a cache.
mod chain;
/// Validator clocks beyond the nonce window: the hint, against `validator serve` and `bt.Axon`.
mod clock;
/// GitHub faults through `patrol dev fake-github`.
mod github;
/// Validators killed and restarted with empty, corrupt and read-only stores.
mod validator_store;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::cli::{Run, Scratch};
use crate::support::python::DENDRITE_HOTKEY;
use crate::support::state;

/// The miner's PAT (GitHub account [`GITHUB_ID`]).
pub const PAT: &str = "ghp_faultsTestAccount4242token00000001";
/// The GitHub account the fake GitHubs know [`PAT`] as.
pub const GITHUB_ID: u64 = 4242;

/// Fake-GitHub accounts: our PAT.
pub fn accounts() -> [(&'static str, u64, &'static str); 1] {
    [(PAT, GITHUB_ID, "faults-miner")]
}

/// A patrol config for our miner (`hotkey`, `pat` in the scratch dir) against `validators`
/// (`[[validators.static]]` or `[chain]` TOML): fast timeouts, a 6 s backoff (long enough that a
/// second run right after a failure is certainly inside it), `extra` appended to `[reconcile]`.
pub fn config(github: &str, validators: &str, extra: &str) -> String {
    format!(
        "[wallet]\nhotkey_file = \"hotkey\"\n[pat]\nfile = \"pat\"\n\
         [github]\napi_url = \"{github}\"\ntimeout = \"2s\"\n\
         [agent]\nstate_dir = \"state\"\n\
         [reconcile]\ncheck_timeout = \"5s\"\nbroadcast_timeout = \"5s\"\nbackoff_initial = \"{BACKOFF_INITIAL_S}s\"\nbackoff_max = \"{BACKOFF_INITIAL_S}s\"\n\
         {extra}\n{validators}"
    )
}

/// `patrol ARGS --config CFG` in `s`, bounded by 60 s (checks the output for PAT leaks).
pub fn patrol(s: &Scratch, cfg: &str, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--config", cfg]);
    s.run_env(&all, &[], Duration::from_secs(60))
}

pub use crate::support::cli::row;

/// The backoff of [`config`].
const BACKOFF_INITIAL_S: u64 = 6;

/// Move the state file on (instead of sleeping) until a one-shot `reconcile` may contact *and*
/// broadcast to `uid` again: past its backoff and past the spacing rule (`backoff_initial` after
/// the last broadcast of the same PAT), at most 20 s.
pub fn make_due(s: &Scratch, uid: u16) {
    state::make_due(&state::path(s, "state"), uid, BACKOFF_INITIAL_S as i64, 20);
}

/// Make the last preflight in the state older than the ten minutes a valid one is reused for (but
/// not an hour, when the telemetry preflight is due): the next pass that needs the PAT asks GitHub.
pub fn age_preflight(s: &Scratch) {
    let path = state::path(s, "state");
    let mut st: patrol::reconcile::state::MinerState =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).expect("the state file parses");
    let record = st.preflight.as_mut().expect("a preflight in the state");
    record.at = record.at.saturating_sub(patrol::reconcile::state::PREFLIGHT_REUSE + 1);
    std::fs::write(&path, serde_json::to_vec(&st).unwrap()).unwrap();
}

/// Two other miners' entries in gittensor's store format (uids 2 and 3, other hotkeys, other PATs).
pub fn other_miners() -> Vec<Value> {
    [(2u16, 0x52u8, "ghp_otherMinerTwoToken0000000000000002"), (3, 0x53, "ghp_otherMinerThreeToken00000000000003")]
        .iter()
        .map(|(uid, seed, pat)| {
            json!({
                "uid": uid,
                "hotkey": patrol::wallet::Hotkey::from_seed(&[*seed; 32]).ss58(),
                "pat": pat,
                "github_id": format!("77{uid}"),
                "stored_at": "2026-01-02T03:04:05.678901+00:00",
            })
        })
        .collect()
}

/// Write `entries` as a store file (JSON list, mode 0600, as the validator writes it).
pub fn write_store(path: &Path, entries: &[Value]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, serde_json::to_vec_pretty(&Value::Array(entries.to_vec())).unwrap()).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The entries of a store file that are not our miner's (uid 1), in file order.
pub fn others_in(path: &Path) -> Vec<Value> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    v.as_array().expect("a JSON list").iter().filter(|e| e["uid"] != 1).cloned().collect()
}

/// Our miner's entry in a store file, checked to be ours (hotkey, GitHub id).
pub fn our_pat_in(path: &Path) -> Option<String> {
    let v: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let e = v.as_array()?.iter().find(|e| e["uid"] == 1)?.clone();
    assert_eq!(e["hotkey"], DENDRITE_HOTKEY, "uid 1 holds another hotkey: {e}");
    assert_eq!(e["github_id"], GITHUB_ID.to_string(), "{e}");
    e["pat"].as_str().map(str::to_string)
}
