//! Chain access (`patrol::chain`): decoding the recorded mainnet bytes offline, the client against
//! the loopback mock node (faults, reconnect, cache), and the real `patrol validators` binary end to
//! end. Fixtures come from `tests/data/chain/` (or `$PATROL_FIXTURES/chain/`); without them these
//! tests fail. Every test is bounded in time; spawned processes are killed on drop.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use patrol::chain::decode::{self, NeuronInfoLite};
use patrol::chain::{ChainError, Origin, SubnetView, subnet_view};
use patrol::config::{Overrides, Settings};
use patrol::validators::{Thresholds, select};

use crate::support::mock_node::{FaultKind, Fixture, MockNode, chain_file, chain_json, unhex};

const FINNEY_EXPECTED: &str = "finney-spec343-block6852690-expected.json";
const FINNEY_FIXTURES: &str = "finney-spec343-block6852690-fixtures.json";
const SYNTH_EXPECTED: &str = "synthetic-netuid74-expected.json";
const SYNTH_FIXTURES: &str = "synthetic-netuid74-fixtures.json";

/// Bound for every async test body.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

fn metadata(name: &str) -> subxt::Metadata {
    let bytes = std::fs::read(chain_file(name)).expect("metadata blob");
    decode::metadata_from_scale(&bytes).expect("metadata decodes")
}

fn recorded_call(fixtures: &str, method: &str, args: &str) -> Vec<u8> {
    let v = chain_json(fixtures);
    let hexed = v["state_call"][method][args].as_str().unwrap_or_else(|| panic!("{fixtures} has no {method}({args})"));
    unhex(hexed)
}

fn finney_lite() -> Vec<NeuronInfoLite> {
    let md = metadata("finney-spec343-metadata-v15.scale");
    decode::neurons_lite_from_answer(
        &md,
        &recorded_call(FINNEY_FIXTURES, "NeuronInfoRuntimeApi_get_neurons_lite", "0100"),
    )
    .expect("netuid 1 neurons decode")
}

fn ss58(a: &subxt::utils::AccountId32) -> String {
    patrol::wallet::ss58_encode(&a.0)
}

// ---------------------------------------------------------------- offline: recorded bytes

#[test]
fn missing_fixtures_fail_instead_of_skipping() {
    use crate::support::mock_node::fixtures_dir_from;
    let err = fixtures_dir_from(Some("/nonexistent/patrol-fixtures".into())).unwrap_err();
    assert!(err.contains("PATROL_FIXTURES") && err.contains("/nonexistent/patrol-fixtures/chain/"), "{err}");
    // the default (or $PATROL_FIXTURES when set) must resolve in CI
    fixtures_dir_from(std::env::var_os("PATROL_FIXTURES")).expect("fixtures present");
}

#[test]
fn finney_netuid1_neurons_decode_to_expected_permit_holders() {
    let lite = finney_lite();
    let exp = chain_json(FINNEY_EXPECTED);
    assert_eq!(lite.len() as u64, exp["neurons"].as_u64().unwrap());
    assert_eq!(lite.len(), 1024);
    // uids are 0..1024, each once
    let uids: BTreeSet<u16> = lite.iter().map(|n| n.uid).collect();
    assert_eq!(uids, (0..1024).collect());

    let permits: Vec<&NeuronInfoLite> = lite.iter().filter(|n| n.validator_permit).collect();
    let expected = exp["validators_with_permit"].as_array().unwrap();
    assert_eq!(permits.len(), expected.len());
    for (n, e) in permits.iter().zip(expected) {
        assert_eq!(u64::from(n.uid), e["uid"].as_u64().unwrap());
        assert_eq!(ss58(&n.hotkey), e["hotkey"].as_str().unwrap(), "uid {}", n.uid);
        assert_eq!(u64::from(n.validator_trust), e["validator_trust_u16"].as_u64().unwrap(), "uid {}", n.uid);
        assert_eq!(n.own_stake_rao(), e["stake_rao"].as_u64().unwrap(), "uid {}", n.uid);
        assert_eq!(u64::from(n.axon_info.ip_type), e["ip_type"].as_u64().unwrap(), "uid {}", n.uid);
        let axon = decode::axon_ip(n.axon_info.ip, n.axon_info.ip_type).map(|ip| format!("{ip}:{}", n.axon_info.port));
        assert_eq!(axon.as_deref(), e["axon"].as_str(), "uid {}", n.uid);
    }
}

#[test]
fn finney_netuid1_subnet_state_gives_metagraph_s_and_gitt_selection() {
    let md = metadata("finney-spec343-metadata-v15.scale");
    let lite = finney_lite();
    let state = decode::subnet_state_from_answer(
        &md,
        &recorded_call(FINNEY_FIXTURES, "SubnetInfoRuntimeApi_get_subnet_state", "0100"),
    )
    .expect("subnet state decodes")
    .expect("netuid 1 has a subnet state");
    assert_eq!(state.total_stake.len(), 1024);
    let neurons = decode::to_neurons(&lite, Some(&state)).expect("columns line up");

    let exp = &chain_json(FINNEY_EXPECTED)["metagraph_S"];
    for v in exp["validators"].as_array().unwrap() {
        let uid = v["uid"].as_u64().unwrap() as usize;
        assert_eq!(state.total_stake[uid], v["total_stake_rao"].as_u64().unwrap(), "uid {uid}");
        let n = &neurons[uid];
        assert_eq!(n.hotkey, v["hotkey"].as_str().unwrap());
        // the SDK's S is float32: compare at float32 precision
        let s = v["total_stake_S"].as_f64().unwrap();
        assert!((n.stake - s).abs() <= s * 1e-6, "uid {uid}: stake {} vs S {s}", n.stake);
        assert_eq!(n.vtrust, v["validator_trust"].as_f64().unwrap(), "uid {uid}");
        assert_eq!(n.is_serving(), v["is_serving"].as_bool().unwrap(), "uid {uid}");
    }

    // gittensor's rule over all 1024 uids, with its defaults
    let sel = select(&neurons, Thresholds::default());
    let got: Vec<u64> = sel.eligible.iter().map(|v| u64::from(v.uid)).collect();
    let want: Vec<u64> =
        exp["gittensor_selected_uids"].as_array().unwrap().iter().map(|u| u.as_u64().unwrap()).collect();
    assert_eq!(got, want);
    assert_eq!(sel.eligible.len(), 6);
    // the other high-vtrust permit holders are skipped, not silently dropped
    let skipped: Vec<u16> = sel.skipped.iter().map(|s| s.uid).collect();
    assert_eq!(skipped, vec![24, 276, 630, 966]);
    assert!(sel.skipped.iter().all(|s| s.reasons == vec!["not serving an axon".to_string()]));
    // no uid without a permit has vtrust > 0.25 (so the rule's vtrust filter does the work)
    assert!(neurons.iter().all(|n| n.validator_permit || n.vtrust <= 0.25));

    // with the hotkey's own alpha instead of S, the selection would differ: the reason for the second call
    let own = decode::to_neurons(&lite, None).unwrap();
    assert_ne!(select(&own, Thresholds::default()).eligible.len(), 6);
}

#[test]
fn finney_uids_storage_key_and_value_match_the_recording() {
    let md = metadata("finney-spec343-metadata-v15.scale");
    let lookup = &chain_json(FINNEY_EXPECTED)["uid_lookup"];
    let hotkey = patrol::wallet::ss58_decode(lookup["hotkey"].as_str().unwrap()).unwrap();
    let netuid = lookup["netuid"].as_u64().unwrap() as u16;
    let key = decode::uids_key(&md, netuid, &hotkey).unwrap();
    assert_eq!(format!("0x{}", hex::encode(&key)), lookup["storage_key"].as_str().unwrap());
    let recorded = chain_json(FINNEY_FIXTURES);
    let value = recorded["state_getStorage"][lookup["storage_key"].as_str().unwrap()].as_str().unwrap();
    assert_eq!(decode::uid_from_storage(&unhex(value)), Ok(lookup["uid"].as_u64().unwrap() as u16));
}

#[test]
fn synthetic_netuid74_neurons_decode_as_expected() {
    let md = metadata("finney-spec393-metadata-v16.scale");
    let lite = decode::neurons_lite_from_answer(
        &md,
        &recorded_call(SYNTH_FIXTURES, "NeuronInfoRuntimeApi_get_neurons_lite", "4a00"),
    )
    .expect("synthetic neurons decode");
    let exp = chain_json(SYNTH_EXPECTED);
    let want = exp["neurons"].as_array().unwrap();
    assert_eq!(lite.len(), want.len());
    let neurons = decode::to_neurons(&lite, None).unwrap();
    for (n, e) in neurons.iter().zip(want) {
        assert_eq!(u64::from(n.uid), e["uid"].as_u64().unwrap());
        assert_eq!(n.hotkey, e["hotkey"].as_str().unwrap());
        assert_eq!(n.validator_permit, e["validator_permit"].as_bool().unwrap());
        assert!((n.vtrust - e["validator_trust"].as_f64().unwrap()).abs() < 1e-4, "uid {}", n.uid);
        assert!((n.stake - e["stake_alpha"].as_f64().unwrap()).abs() < 1e-9, "uid {}", n.uid);
    }
    // IPv4, IPv6 and not-serving axons
    let axons: Vec<(Option<String>, u16, bool)> =
        neurons.iter().map(|n| (n.ip.map(|i| i.to_string()), n.port, n.is_serving())).collect();
    assert_eq!(
        axons,
        vec![
            (Some("192.168.10.1".into()), 8091, true),
            (Some("127.0.0.1".into()), 8092, true),
            (Some("2001:db8::1".into()), 9000, true),
            (None, 0, false),
        ]
    );

    // Uids(74, hotkey) key is the recorded one, value 2
    let lookup = &exp["uid_lookup"];
    let hk = patrol::wallet::ss58_decode(lookup["hotkey"].as_str().unwrap()).unwrap();
    let key = format!("0x{}", hex::encode(decode::uids_key(&md, 74, &hk).unwrap()));
    let recorded = chain_json(SYNTH_FIXTURES);
    let value = recorded["state_getStorage"][key.as_str()].as_str().expect("computed key is the recorded key");
    assert_eq!(decode::uid_from_storage(&unhex(value)), Ok(lookup["uid"].as_u64().unwrap() as u16));
}

// ---------------------------------------------------------------- helpers for the mock node

/// Run an async test body with a hard bound.
async fn bounded<F: std::future::Future<Output = T>, T>(f: F) -> T {
    tokio::time::timeout(TEST_TIMEOUT, f).await.expect("test exceeded its time bound")
}

/// `[chain]` + `[agent]` TOML for `url`/`netuid`; `chain_extra` lines go into `[chain]`, `rest` after.
fn config_text(url: &str, netuid: u16, state_dir: &Path, chain_extra: &str, rest: &str) -> String {
    // short timeouts unless the test sets its own
    let mut chain = String::new();
    for (k, v) in [("connect_timeout", "5s"), ("call_timeout", "5s")] {
        if !chain_extra.contains(k) {
            chain.push_str(&format!("{k} = \"{v}\"\n"));
        }
    }
    format!(
        "[chain]\nnetwork = \"{url}\"\nnetuid = {netuid}\n{chain}{chain_extra}\n\
         [agent]\nstate_dir = \"{}\"\nlisten = \"off\"\n{rest}\n",
        state_dir.display()
    )
}

fn settings(url: &str, netuid: u16, state_dir: &Path, chain_extra: &str) -> Settings {
    let text = config_text(url, netuid, state_dir, chain_extra, "");
    Settings::build(None, Some(&text), &Overrides::default(), |_| None).expect("test config is valid")
}

/// A mock node serving `fixture`, with `faults` (target, kind, times) armed, and an empty
/// state dir: the set-up of every mock test.
async fn mock(fixture: Fixture, faults: &[(&str, FaultKind, Option<u32>)]) -> (MockNode, tempfile::TempDir) {
    let node = MockNode::start(fixture).await;
    for (target, kind, times) in faults {
        node.fault(target, kind.clone(), *times);
    }
    (node, tempfile::tempdir().unwrap())
}

/// One library read of `netuid` from `node` (no own hotkey), `chain_extra` in `[chain]`, state in `dir`.
async fn read(
    node: &MockNode,
    netuid: u16,
    dir: &tempfile::TempDir,
    chain_extra: &str,
) -> Result<SubnetView, ChainError> {
    subnet_view(&settings(&node.url(), netuid, dir.path(), chain_extra), None).await
}

/// [`mock`] then one [`read`] of `netuid`: the node and the dir stay for the checks (a test that has
/// none for the dir lets it go with `_`).
async fn mock_read(
    fixture: Fixture,
    netuid: u16,
    faults: &[(&str, FaultKind, Option<u32>)],
) -> (MockNode, tempfile::TempDir, Result<SubnetView, ChainError>) {
    let (node, dir) = mock(fixture, faults).await;
    let read = read(&node, netuid, &dir, "").await;
    (node, dir, read)
}

/// A ws:// URL nobody listens on, and an empty state dir: the set-up of the tests without a node.
async fn dead_url() -> (String, tempfile::TempDir) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    (format!("ws://{addr}"), tempfile::tempdir().unwrap())
}

fn exit_of(e: ChainError) -> u8 {
    patrol::cli::exit::classify(&anyhow::Error::new(e)).0.code()
}

/// Rewrite the cache file's fetch time `secs` into the past (instead of sleeping).
fn backdate_cache(state_dir: &Path, url: &str, netuid: u16, secs: u64) {
    let p = patrol::chain::cache::path(state_dir, url, netuid);
    let mut v: Value = serde_json::from_slice(&std::fs::read(&p).expect("cache file exists")).unwrap();
    let t = v["fetched_at"].as_u64().unwrap();
    v["fetched_at"] = Value::from(t - secs);
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

fn synth_hotkey(uid: usize) -> String {
    chain_json(SYNTH_EXPECTED)["neurons"][uid]["hotkey"].as_str().unwrap().to_string()
}

/// Fault targets: the two runtime calls of a read.
const NEURONS_LITE: &str = "state_call NeuronInfoRuntimeApi_get_neurons_lite";
const SUBNET_STATE: &str = "state_call SubnetInfoRuntimeApi_get_subnet_state";

const GITT_SELECTED: [u16; 6] = [245, 447, 502, 518, 697, 993];

// ---------------------------------------------------------------- library against the mock node

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_synthetic_netuid74_over_legacy_rpc_with_uid_lookup() {
    bounded(async {
        let (node, dir) = mock(Fixture::synthetic_netuid74(), &[]).await;
        let st = settings(&node.url(), 74, dir.path(), "");
        let me = chain_json(SYNTH_EXPECTED)["uid_lookup"]["hotkey"].as_str().unwrap().to_string();
        let view = subnet_view(&st, Some(&me)).await.expect("chain read");
        assert_eq!(view.origin, Origin::Chain { url: node.url() });
        assert_eq!(view.block, Some(5_000_000));
        assert_eq!(view.netuid, 74);
        assert_eq!(view.neurons.len(), 4);
        assert_eq!(view.own_uid, Some(2), "SubtensorModule::Uids(74, hotkey) = 2");
        assert_eq!(view.require_registered(&me).unwrap(), Some(2));
        // no get_subnet_state recorded (answer None): stakes fall back to each hotkey's own alpha
        assert_eq!(view.neurons[0].stake, 1234.5);
        assert_eq!(view.neurons[2].ip, Some("2001:db8::1".parse().unwrap()));

        // the legacy backend's calls, in order, at one pinned block; no rpc_methods / chainHead_*
        let log = node.log();
        assert_eq!(
            log,
            vec![
                "chain_getBlockHash",
                "chain_getFinalizedHead",
                "chain_getHeader",
                "state_call Core_version",
                "state_call Metadata_metadata_versions",
                "state_call Metadata_metadata_at_version",
                "state_call NeuronInfoRuntimeApi_get_neurons_lite",
                "state_call SubnetInfoRuntimeApi_get_subnet_state",
                "state_getStorage",
            ]
        );
        assert!(patrol::chain::cache::path(dir.path(), &node.url(), 74).is_file(), "cache written");

        // a hotkey without a Uids entry: not registered → exit 78
        let stranger = crate::support::python::DENDRITE_HOTKEY;
        let view = subnet_view(&st, Some(stranger)).await.unwrap();
        assert_eq!(view.own_uid, None);
        let err = view.require_registered(stranger).unwrap_err();
        assert!(matches!(err, ChainError::NotRegistered { netuid: 74, .. }), "{err}");
        assert!(err.to_string().contains("not registered on netuid 74"), "{err}");
        assert_eq!(exit_of(err), 78);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_finney_netuid1_selects_what_gitt_selects() {
    bounded(async {
        let (node, dir) = mock(Fixture::finney_netuid1(), &[]).await;
        let st = settings(&node.url(), 1, dir.path(), "");
        // spawned: the future must be Send for the agent's tasks
        let view = tokio::spawn(async move { subnet_view(&st, None).await }).await.unwrap().expect("chain read");
        assert_eq!(view.block, Some(6_852_690));
        assert_eq!(view.neurons.len(), 1024);
        let sel = view.select(Thresholds::default());
        assert_eq!(sel.eligible.iter().map(|v| v.uid).collect::<Vec<_>>(), GITT_SELECTED);
        assert_eq!(node.calls("state_call SubnetInfoRuntimeApi_get_subnet_state"), 1);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_rpc_error_answer_is_not_retried_and_without_cache_is_exit_3() {
    bounded(async {
        let (node, _, r) =
            mock_read(Fixture::synthetic_netuid74(), 74, &[(NEURONS_LITE, FaultKind::RpcError, None)]).await;
        let err = r.unwrap_err();
        let ChainError::Unavailable { error, cache, .. } = &err else { panic!("{err:?}") };
        assert!(matches!(**error, ChainError::Call { netuid: 74, .. }), "{error:?}");
        let msg = error.to_string();
        assert!(msg.contains("NeuronInfoRuntimeApi_get_neurons_lite") && msg.contains(&node.url()), "{msg}");
        assert!(msg.contains("injected error"), "{msg}");
        assert!(cache.contains("no metagraph cache"), "{cache}");
        assert_eq!(node.connections(), 1, "a JSON-RPC error answer is not a transport failure: no reconnect");
        assert_eq!(exit_of(err), 3);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_socket_dropped_mid_call_reconnects_once_and_succeeds() {
    bounded(async {
        let (node, _, r) = mock_read(Fixture::finney_netuid1(), 1, &[(NEURONS_LITE, FaultKind::Drop, Some(1))]).await;
        let view = r.expect("second attempt succeeds");
        assert_eq!(view.origin, Origin::Chain { url: node.url() });
        assert_eq!(
            view.select(Thresholds::default()).eligible.iter().map(|v| v.uid).collect::<Vec<_>>(),
            GITT_SELECTED
        );
        assert_eq!(node.connections(), 2);
        assert_eq!(node.calls("state_call NeuronInfoRuntimeApi_get_neurons_lite"), 2);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_socket_dropped_every_time_gives_up_after_one_reconnect() {
    bounded(async {
        let (node, _, r) = mock_read(Fixture::synthetic_netuid74(), 74, &[(SUBNET_STATE, FaultKind::Drop, None)]).await;
        let err = r.unwrap_err();
        assert!(matches!(err, ChainError::Unavailable { .. }), "{err:?}");
        assert_eq!(exit_of(err), 3);
        assert_eq!(node.connections(), 2, "exactly one reconnect");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_slow_node_hits_the_call_timeout() {
    bounded(async {
        let stall = FaultKind::Delay(Duration::from_secs(20));
        let (node, dir) = mock(Fixture::synthetic_netuid74(), &[(NEURONS_LITE, stall, None)]).await;
        let started = std::time::Instant::now();
        let err = read(&node, 74, &dir, "call_timeout = \"1s\"\n").await.unwrap_err();
        let took = started.elapsed();
        let ChainError::Unavailable { error, .. } = &err else { panic!("{err:?}") };
        assert!(
            error.to_string().contains("no answer to state_call NeuronInfoRuntimeApi_get_neurons_lite within 1s"),
            "{error}"
        );
        // one timeout, one reconnect, one more timeout
        assert!(took < Duration::from_secs(10), "took {took:?}");
        assert_eq!(node.connections(), 2);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_unknown_netuid_is_a_clear_error_exit_3() {
    bounded(async {
        let (node, dir, r) = mock_read(Fixture::synthetic_netuid74(), 9, &[]).await;
        let err = r.unwrap_err();
        assert!(matches!(err, ChainError::UnknownNetuid { netuid: 9, block: 5_000_000, .. }), "{err:?}");
        assert!(err.to_string().contains("netuid 9 does not exist"), "{err}");
        assert_eq!(exit_of(err), 3);
        assert!(!patrol::chain::cache::path(dir.path(), &node.url(), 9).exists(), "nothing cached");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_node_uses_the_cache_until_it_is_too_old() {
    bounded(async {
        let (node, dir) = mock(Fixture::synthetic_netuid74(), &[]).await;
        let url = node.url();
        let st = settings(&url, 74, dir.path(), "metagraph_max_age = \"1h\"\nconnect_timeout = \"2s\"\n");
        let fresh = subnet_view(&st, None).await.expect("chain read");
        drop(node); // the port closes: connection refused from now on

        let me = synth_hotkey(2);
        let view = subnet_view(&st, Some(&me)).await.expect("cache used");
        let Origin::Cache { url: cached_url, age, error } = &view.origin else { panic!("{:?}", view.origin) };
        assert_eq!(cached_url, &url);
        assert!(*age < Duration::from_secs(60));
        assert!(error.contains("cannot connect"), "{error}");
        assert_eq!(view.neurons, fresh.neurons);
        assert_eq!(view.block, fresh.block);
        assert_eq!(view.own_uid, Some(2), "own uid found in the cached neurons");

        // 2 h old with a 1 h maximum: no source, exit 3
        backdate_cache(dir.path(), &url, 74, 2 * 3600);
        let err = subnet_view(&st, None).await.unwrap_err();
        let ChainError::Unavailable { cache, .. } = &err else { panic!("{err:?}") };
        assert!(cache.contains("older than metagraph_max_age 1h"), "{cache}");
        assert_eq!(exit_of(err), 3);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_cache_is_moved_aside_not_fatal() {
    bounded(async {
        let (url, dir) = dead_url().await;
        let p = patrol::chain::cache::path(dir.path(), &url, 74);
        std::fs::write(&p, b"{\"version\": 1, \"neurons\": [tru").unwrap();
        let err = subnet_view(&settings(&url, 74, dir.path(), ""), None).await.unwrap_err();
        let ChainError::Unavailable { cache, .. } = &err else { panic!("{err:?}") };
        assert!(cache.contains("unreadable"), "{cache}");
        assert!(!p.exists());
        let moved: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(moved.iter().any(|n| n.contains(".corrupt-")), "{moved:?}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_list_needs_no_chain() {
    bounded(async {
        let (url, dir) = dead_url().await;
        let extra = "[validators]\nmin_stake = 0.0\n[[validators.static]]\nuid = 3\nhotkey = \"5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi\"\nip = \"127.0.0.1\"\nport = 8091\nstake = 20000.0\nvtrust = 0.9\n";
        let text = config_text(&url, 74, dir.path(), "", extra);
        let st = Settings::build(None, Some(&text), &Overrides::default(), |_| None).unwrap();
        let view = subnet_view(&st, Some(crate::support::python::DENDRITE_HOTKEY)).await.unwrap();
        assert_eq!(view.origin, Origin::Static);
        assert_eq!((view.block, view.own_uid), (None, None));
        assert_eq!(view.require_registered(crate::support::python::DENDRITE_HOTKEY).unwrap(), None, "unknown with a static list");
        assert_eq!(view.select(st.validators.thresholds).eligible.len(), 1);
    })
    .await
}

// ---------------------------------------------------------------- the real binary against the mock node

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }
}

/// Run `patrol` with a config file, bounded (killed on timeout via kill_on_drop).
async fn patrol(dir: &Path, config: &str, args: &[&str]) -> Run {
    let cfg = dir.join("patrol.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_patrol"));
    cmd.args(args)
        .arg("--config")
        .arg(&cfg)
        .env_remove("PATROL_CONFIG")
        .env_remove("RUST_LOG")
        .env("HOME", dir)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("patrol did not finish within 30 s")
        .expect("spawn patrol");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!("patrol {args:?} → {}\n--- stdout\n{}--- stderr\n{}", run.code, run.stdout, run.stderr);
    run
}

/// [`mock`] without faults, and the config text of `netuid` on it with `chain_extra` in `[chain]`.
async fn mock_config(fixture: Fixture, netuid: u16, chain_extra: &str) -> (MockNode, tempfile::TempDir, String) {
    let (node, dir) = mock(fixture, &[]).await;
    let cfg = config_text(&node.url(), netuid, dir.path(), chain_extra, "");
    (node, dir, cfg)
}

fn eligible_uids(doc: &Value) -> Vec<u64> {
    doc["eligible"].as_array().unwrap().iter().map(|v| v["uid"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_validators_json_prints_gitts_selection_for_finney_netuid1() {
    bounded(async {
        let (node, dir) = mock(Fixture::finney_netuid1(), &[]).await;
        let run = patrol(dir.path(), &config_text(&node.url(), 1, dir.path(), "", ""), &["validators", "--json"]).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        let doc = run.json();
        assert_eq!(doc["success"], true);
        assert_eq!(doc["netuid"], 1);
        assert_eq!(doc["block"], 6_852_690);
        assert_eq!(doc["source"], "chain");
        assert!(doc.get("metagraph_age_s").is_none());
        assert_eq!(doc["total_validators"], 6);
        assert_eq!(eligible_uids(&doc), GITT_SELECTED.map(u64::from));
        // full hotkeys, axons and S as the SDK's metagraph gives them
        let exp = &chain_json(FINNEY_EXPECTED)["metagraph_S"]["validators"];
        for e in doc["eligible"].as_array().unwrap() {
            let want = exp.as_array().unwrap().iter().find(|v| v["uid"] == e["uid"]).unwrap();
            assert_eq!(e["hotkey"], want["hotkey"]);
            let s = want["total_stake_S"].as_f64().unwrap();
            assert!((e["stake"].as_f64().unwrap() - s).abs() <= s * 1e-6);
            assert_eq!(e["vtrust"], 1.0);
        }
        let first = &doc["eligible"][0];
        assert_eq!((first["ip"].as_str(), first["port"].as_u64()), (Some("192.150.253.122"), Some(8001)));
        let skipped: Vec<u64> = doc["skipped"].as_array().unwrap().iter().map(|s| s["uid"].as_u64().unwrap()).collect();
        assert_eq!(skipped, vec![24, 276, 630, 966]);
        assert_eq!(doc["skipped"][0]["reasons"][0], "not serving an axon");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_validators_table_synthetic_netuid74_zero_eligible_is_exit_0_with_warning() {
    bounded(async {
        let (_node, dir, cfg) = mock_config(Fixture::synthetic_netuid74(), 74, "").await;
        let run = patrol(dir.path(), &cfg, &["validators"]).await;
        assert_eq!(run.code, 0);
        assert!(run.stdout.contains("0 eligible validator(s)"), "{}", run.stdout);
        assert!(run.stdout.contains("block 5000000"), "{}", run.stdout);
        assert!(run.stdout.contains("stake 1234.50 α below 15000.00 α threshold"), "{}", run.stdout);
        assert!(run.stderr.contains("warning: no validator of netuid 74 is eligible"), "{}", run.stderr);

        // gitt's flags: with no stake floor, uid 0 (IPv4) and uid 2 (IPv6) are eligible; uid 3 has vtrust 0.2
        let run = patrol(dir.path(), &cfg, &["validators", "--min-stake", "0"]).await;
        assert_eq!(run.code, 0);
        assert!(run.stdout.contains("2 eligible validator(s)"), "{}", run.stdout);
        assert!(
            run.stdout.contains("192.168.10.1:8091") && run.stdout.contains("[2001:db8::1]:9000"),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains(&synth_hotkey(2)), "full hotkeys: {}", run.stdout);
        let doc = patrol(dir.path(), &cfg, &["validators", "--json", "--min-stake", "0"]).await.json();
        assert_eq!(eligible_uids(&doc), vec![0, 2]);
        assert_eq!(doc["eligible"][1]["ip"], "2001:db8::1");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_unreachable_node_shows_the_cache_with_its_age_then_exit_3_when_too_old() {
    bounded(async {
        let (node, dir, cfg) = mock_config(Fixture::finney_netuid1(), 1, "metagraph_max_age = \"30m\"\n").await;
        let url = node.url();
        let live = patrol(dir.path(), &cfg, &["validators", "--json"]).await;
        assert_eq!(live.code, 0);
        drop(node);

        let cached = patrol(dir.path(), &cfg, &["validators", "--json"]).await;
        assert_eq!(cached.code, 0, "{}", cached.stderr);
        let doc = cached.json();
        assert_eq!(doc["source"], "cache");
        assert!(doc["metagraph_age_s"].as_u64().unwrap() < 60);
        assert_eq!(doc["block"], 6_852_690);
        assert_eq!(doc["eligible"], live.json()["eligible"]);
        assert!(cached.stderr.contains("showing the cached metagraph from block 6852690"), "{}", cached.stderr);

        let table = patrol(dir.path(), &cfg, &["validators"]).await;
        assert_eq!(table.code, 0);
        assert!(table.stdout.contains("source: CACHE of"), "{}", table.stdout);

        backdate_cache(dir.path(), &url, 1, 3600);
        let old = patrol(dir.path(), &cfg, &["validators", "--json"]).await;
        assert_eq!(old.code, 3, "{}", old.stderr);
        let doc = old.json();
        assert_eq!(doc["success"], false);
        assert_eq!(doc["error"]["type"], "undetermined");
        let msg = doc["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("no validator source for netuid 1") && msg.contains("older than metagraph_max_age 30m"),
            "{msg}"
        );
        assert!(msg.contains("cannot connect to"), "{msg}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_unknown_netuid_and_rpc_errors_are_exit_3_and_a_dropped_socket_recovers() {
    bounded(async {
        let (node, dir) = mock(Fixture::finney_netuid1(), &[]).await;

        let run = patrol(dir.path(), &config_text(&node.url(), 9, dir.path(), "", ""), &["validators", "--json"]).await;
        assert_eq!(run.code, 3);
        let msg = run.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains("netuid 9 does not exist") && msg.contains("block 6852690"), "{msg}");

        let cfg = config_text(&node.url(), 1, dir.path(), "", "");
        node.fault("state_call SubnetInfoRuntimeApi_get_subnet_state", FaultKind::RpcError, None);
        let run = patrol(dir.path(), &cfg, &["validators", "--json"]).await;
        assert_eq!(run.code, 3);
        let msg = run.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains("SubnetInfoRuntimeApi_get_subnet_state") && msg.contains("injected error"), "{msg}");

        node.clear_faults();
        node.fault("state_call NeuronInfoRuntimeApi_get_neurons_lite", FaultKind::Drop, Some(1));
        let run = patrol(dir.path(), &cfg, &["validators", "--json"]).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(eligible_uids(&run.json()), GITT_SELECTED.map(u64::from));
        assert!(run.stderr.contains("reconnecting once"), "{}", run.stderr);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_finney_uids_lookup_over_the_wire() {
    bounded(async {
        let node = MockNode::start(Fixture::finney_netuid1()).await;
        let lookup = &chain_json(FINNEY_EXPECTED)["uid_lookup"];
        let hk = patrol::wallet::ss58_decode(lookup["hotkey"].as_str().unwrap()).unwrap();
        let mut client = patrol::chain::ChainClient::new(node.url(), Duration::from_secs(5), Duration::from_secs(5));
        // subxt computes the key from the spec-343 metadata; the mock only knows the recorded key
        assert_eq!(client.uid_of(23, &hk).await.unwrap(), Some(5));
        assert_eq!(client.uid_of(1, &hk).await.unwrap(), None, "no Uids entry on netuid 1");
        assert_eq!(node.connections(), 1, "one connection for both reads");
        assert_eq!(node.calls("state_getStorage"), 2);
    })
    .await
}

/// Issue 20 item 14: `--rpc-url wss://user:TOKEN@host/ws?apikey=KEY`. The token and the key appear
/// in no output, log line, file name or cache file of `validators`, `check` and `doctor`, with the
/// node up and down; the endpoint is shown as `ws://host:port/ws`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_rpc_url_credentials_appear_in_no_output_log_or_file_name() {
    use crate::support::cli::Scratch;
    use crate::support::python::DENDRITE_SEED;
    const TOKEN: &str = "rpcTOKEN4242secret";
    const KEY: &str = "rpcKEY9999apikey";
    bounded(async {
        let node = MockNode::start(Fixture::finney_netuid1()).await;
        let host = node.url().trim_start_matches("ws://").to_string();
        let url = format!("ws://miner:{TOKEN}@{host}/ws?apikey={KEY}");
        let shown = format!("ws://{host}/ws");
        let mut s = Scratch::new();
        s.secret(TOKEN);
        s.secret(KEY);
        s.hotkey("hotkey", DENDRITE_SEED);
        s.pat("pat", "ghp_rpcUrlCredentialsToken000000000000014");
        s.write(
            "c.toml",
            "[wallet]\nhotkey_file = \"hotkey\"\n[pat]\nfile = \"pat\"\n[chain]\nnetuid = 1\nconnect_timeout = \"5s\"\n\
             call_timeout = \"5s\"\nmetagraph_max_age = \"30m\"\n[agent]\nstate_dir = \"state\"\nlisten = \"off\"\n",
            0o600,
        );
        let s = std::sync::Arc::new(s);
        let run = |args: &'static [&'static str]| {
            let (s, url) = (s.clone(), url.clone());
            tokio::task::spawn_blocking(move || {
                let mut all = args.to_vec();
                all.extend_from_slice(&["--config", "c.toml", "--rpc-url", &url]);
                // Scratch checks every run's output for the token and the key
                s.run_env(&all, &[], Duration::from_secs(45))
            })
        };
        let live = run(&["validators", "--json"]).await.unwrap();
        assert_eq!(live.code, 0, "{live}");
        assert_eq!(live.json()["source"], "chain");
        run(&["validators"]).await.unwrap();
        let check = run(&["check"]).await.unwrap();
        assert!(check.stderr.contains(&format!("Network: {shown} |")), "{check}");
        run(&["check", "--json"]).await.unwrap();
        let doctor = run(&["doctor"]).await.unwrap();
        assert!(doctor.stdout.contains(&shown) || doctor.stderr.contains(&shown), "{doctor}");
        run(&["doctor", "--json"]).await.unwrap();
        // every crate at trace: the RPC library's own connection log must not show them either
        // (it prints the query, and the userinfo as a Basic header)
        let trace = {
            let (s, url) = (s.clone(), url.clone());
            tokio::task::spawn_blocking(move || {
                let args = ["validators", "-vv", "--config", "c.toml", "--rpc-url", &url];
                s.run_env(&args, &[("RUST_LOG", "trace")], Duration::from_secs(45))
            })
        }
        .await
        .unwrap();
        assert_eq!(trace.code, 0, "{trace}");
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("miner:{TOKEN}"));
        assert!(!trace.stderr.contains(&basic), "the userinfo as a Basic header\n{trace}");
        // the node down: the cache, and errors naming the endpoint
        drop(node);
        let cached = run(&["validators", "--json"]).await.unwrap();
        assert_eq!(cached.json()["source"], "cache", "{cached}");
        assert!(cached.stderr.contains(&shown), "{cached}");
        run(&["validators"]).await.unwrap();
        run(&["check", "--json"]).await.unwrap();
        let doctor = run(&["doctor", "--json"]).await.unwrap();
        assert!(doctor.stdout.contains(&format!("cannot connect to {shown}")), "{doctor}");
        // file names and contents
        let mut files = Vec::new();
        let mut dirs = vec![s.dir.path().to_path_buf()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() { dirs.push(p) } else { files.push(p) }
            }
        }
        let caches: Vec<_> = files.iter().filter(|p| p.to_string_lossy().contains("metagraph-")).collect();
        assert_eq!(caches.len(), 1, "{files:?}");
        for f in &files {
            let name = f.to_string_lossy();
            assert!(!name.contains(TOKEN) && !name.contains(KEY), "a file is named after the credentials: {name}");
            let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
            assert!(!text.contains(TOKEN) && !text.contains(KEY), "{name} holds the credentials");
        }
    })
    .await
}
