//! The Subtensor node dropping every connection (the loopback mock node of `support::mock_node`,
//! `[chain] network = "ws://127.0.0.1:PORT"`). "Cannot read the chain" must never read as "no
//! validators": without a cache `reconcile` and `check` exit 3 naming the endpoint and sending
//! nothing; with a warm metagraph cache (younger than `metagraph_max_age`) they use it, say so
//! (`source: cache`, its age) and keep coverage; an old cache is exit 3 again. `patrol run` keeps its
//! last validator set while the source is gone and says why (`patrol_miner_problem`).
//!
//! The recorded fixtures put the validators on non-loopback addresses, so the live chain is only used
//! failing here; the reachable validators come from a cache file written with the library's own
//! [`patrol::chain::cache::save`] (what a previous good read leaves behind), pointing at local
//! `validator serve` processes. The live path (chain read, then cache) is covered in `chain::*`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use patrol::validators::Neuron;
use serde_json::Value;

use super::{PAT, accounts, config, our_pat_in, patrol, row};
use crate::support::agent::{Agent, free_port, value};
use crate::support::fake_github::FakeGithubProcess;
use crate::support::mock_node::{FaultKind, Fixture, MockNode};
use crate::support::python::DENDRITE_HOTKEY;
use crate::support::subnet::Subnet;

/// Block number the cache claims.
const BLOCK: u64 = 5_000_000;

/// The mock node, on a runtime of its own (the test thread blocks on patrol runs), dropping every
/// request's connection; and its `ws://` URL.
fn dropping_node() -> (tokio::runtime::Runtime, MockNode, String) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let node = rt.block_on(MockNode::start(Fixture::synthetic_netuid74()));
    node.fault("*", FaultKind::Drop, None);
    let url = node.url();
    (rt, node, url)
}

/// The last good metagraph as a previous read would have cached it: our miner (uid 7) and the
/// subnet's validators (uids 11, 12 …) at their 127.0.0.1 ports.
fn warm_cache(state_dir: &Path, url: &str, net: &Subnet) {
    let mut neurons = vec![Neuron {
        uid: 7,
        hotkey: DENDRITE_HOTKEY.into(),
        ip: None,
        port: 0,
        vtrust: 0.0,
        stake: 10.0,
        validator_permit: false,
    }];
    neurons.extend(net.nodes.iter().map(|n| Neuron {
        uid: n.uid,
        hotkey: n.hotkey.clone(),
        ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        port: n.port,
        vtrust: 0.9,
        stake: 20_000.0,
        validator_permit: true,
    }));
    patrol::chain::cache::save(state_dir, url, 74, BLOCK, &neurons).expect("write the metagraph cache");
}

/// Move the cache's fetch time `secs` into the past.
fn backdate_cache(state_dir: &Path, url: &str, secs: u64) {
    let p = patrol::chain::cache::path(state_dir, url, 74);
    let mut v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    v["fetched_at"] = Value::from(v["fetched_at"].as_u64().unwrap() - secs);
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

fn chain_toml(url: &str) -> String {
    format!(
        "[chain]\nnetwork = \"{url}\"\nnetuid = 74\nmetagraph_max_age = \"1h\"\nconnect_timeout = \"2s\"\ncall_timeout = \"3s\"\n"
    )
}

#[test]
fn chain_dropping_connections_is_undetermined_without_a_cache_and_a_warm_cache_keeps_coverage() {
    let (_rt, node, url) = dropping_node();
    let gh = FakeGithubProcess::new(&accounts());
    let mut net = Subnet::with_pat(2, gh.addr, PAT);
    let state = net.scratch.path("state");
    net.scratch.write("c.toml", &config(&gh.url(), &chain_toml(&url), ""), 0o600);

    // no cache: exit 3, the endpoint and the missing cache named, no validator contacted
    for cmd in ["reconcile", "check"] {
        let run = patrol(&net.scratch, "c.toml", &[cmd, "--json"]);
        run.expect_code(3);
        let j = run.json();
        assert_eq!((j["success"].as_bool(), j["error"]["type"].as_str()), (Some(false), Some("undetermined")), "{run}");
        let msg = j["error"]["message"].as_str().unwrap();
        assert!(msg.contains(&url) && msg.contains("no metagraph cache"), "{cmd}: {msg}");
        assert!(j.get("results").is_none() && j.get("total_validators").is_none(), "not a coverage report: {run}");
    }
    assert!(node.connections() >= 2, "patrol did try the chain: {:?}", node.log());
    for n in &net.nodes {
        assert!(!n.log_text().contains("PAT check"), "uid {} was contacted without a validator source", n.uid);
        assert_eq!(our_pat_in(&n.store), None);
    }
    assert!(!state.join(format!("state-{DENDRITE_HOTKEY}-74.json")).exists(), "a failed read wrote state");

    // a warm cache: used, said so, and the validators get the PAT
    warm_cache(&state, &url, &net);
    let run = patrol(&net.scratch, "c.toml", &["reconcile", "--json"]);
    run.expect_code(0);
    let j = run.json();
    assert_eq!((j["source"].as_str(), j["block"].as_u64()), (Some("cache"), Some(BLOCK)), "{run}");
    assert!(j["metagraph_age_s"].as_u64().is_some_and(|a| a < 600), "{run}");
    assert_eq!((j["valid"].as_u64(), j["broadcasts_sent"].as_u64()), (Some(2), Some(2)), "{run}");
    assert!(run.stderr.contains("using the cached metagraph"), "{run}");
    assert!(net.nodes.iter().all(|n| our_pat_in(&n.store).as_deref() == Some(PAT)));
    let check = patrol(&net.scratch, "c.toml", &["check", "--json"]);
    check.expect_code(0);
    assert_eq!(check.json()["source"], "cache");

    // a validator loses its store while the cache is too old: exit 3 and nothing sent
    net.nodes[1].kill();
    std::fs::remove_file(&net.nodes[1].store).unwrap();
    net.nodes[1].start();
    backdate_cache(&state, &url, 2 * 3600);
    let run = patrol(&net.scratch, "c.toml", &["reconcile", "--json"]);
    run.expect_code(3);
    let msg = run.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("older than metagraph_max_age 1h"), "{msg}");
    assert_eq!(our_pat_in(&net.nodes[1].store), None, "sent with no validator source");

    // a fresh snapshot again (the chain came back once): coverage restored
    warm_cache(&state, &url, &net);
    let run = patrol(&net.scratch, "c.toml", &["reconcile", "--json"]);
    run.expect_code(0);
    assert_eq!(row(&run, 12)["action"], "broadcast", "{run}");
    assert_eq!(our_pat_in(&net.nodes[1].store).as_deref(), Some(PAT));
    net.assert_no_leak(PAT);
}

#[test]
fn patrol_run_on_a_dropping_chain_uses_the_cache_then_keeps_its_validator_set_when_the_cache_expires() {
    let (_rt, _node, url) = dropping_node();
    let gh = FakeGithubProcess::new(&accounts());
    let net = Subnet::with_pat(2, gh.addr, PAT);
    let state = net.scratch.path("state");
    warm_cache(&state, &url, &net);
    let port = free_port();
    let cfg = config(&gh.url(), &chain_toml(&url), "interval = \"2s\"\njitter = \"0s\"\n")
        .replace("[agent]\n", &format!("[agent]\nlisten = \"127.0.0.1:{port}\"\n"));
    net.scratch.write("agent.toml", &cfg, 0o600);
    let mut agent = Agent::start(&net.scratch, &["--config", "agent.toml"], &[], Some(port), &[PAT]);
    let hk = [("hotkey", DENDRITE_HOTKEY)];
    let valid = [("hotkey", DENDRITE_HOTKEY), ("category", "valid")];
    let no_source = [("hotkey", DENDRITE_HOTKEY), ("kind", "no_validator_source")];
    let start = Duration::from_secs(30);
    agent.wait_metric("patrol_coverage_validators", &valid, start, |v| v == 2.0);
    agent.wait_metric("patrol_metagraph_reads_total", &[("netuid", "74"), ("source", "cache")], start, |v| v >= 1.0);
    assert!(net.nodes.iter().all(|n| our_pat_in(&n.store).as_deref() == Some(PAT)));

    // the cache expires while the chain stays down: a source problem, not an empty subnet
    backdate_cache(&state, &url, 2 * 3600);
    agent.wait_metric("patrol_miner_problem", &no_source, start, |v| v == 1.0);
    let m = agent.metrics();
    assert_eq!(value(&m, "patrol_eligible_validators", &hk), Some(2.0), "the validator set was dropped");
    assert_eq!(value(&m, "patrol_coverage_validators", &valid), Some(2.0), "coverage was forgotten");
    assert!(agent.log().contains("cannot read the validator set"), "{}", agent.log());
    assert_eq!(agent.get("/healthz").0, 200, "the agent itself is healthy");

    // a good snapshot again: the problem clears
    warm_cache(&state, &url, &net);
    agent.wait_metric("patrol_miner_problem", &no_source, start, |v| v == 0.0);
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(15)).code(), Some(0), "{}", agent.log());
    net.assert_no_leak(PAT);
}
