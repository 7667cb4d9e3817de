//! A Subtensor node for tests: JSON-RPC over WebSocket on 127.0.0.1, answering exactly what subxt's
//! legacy backend asks (docs `subtensor-chain-access.md` §3.2) from recorded fixtures
//! (`tests/data/chain/`), with fault switches.
//!
//! * [`fixtures_dir`]: `$PATROL_FIXTURES`, else the crate's `tests/data`. Missing
//!   fixtures **fail** the test (panic with the path), never skip it.
//! * [`Fixture`]: one metadata blob + the recorded answers that belong to it (`finney_netuid1`,
//!   `synthetic_netuid74`).
//! * [`MockNode::start`] binds `127.0.0.1:0` and serves until dropped (the listener and every
//!   connection are aborted on drop, so a dropped node is an unreachable node).
//!
//! Answers: `chain_getBlockHash` (`[0]` → genesis, the fixture's block number → its hash),
//! `chain_getFinalizedHead`, `chain_getHeader`, `state_call` for `Core_version` (built from the spec
//! number), `Metadata_metadata_versions`, `Metadata_metadata_at_version` (the blob wrapped as
//! `Option<OpaqueMetadata>`) and the recorded runtime-API answers, `state_getStorage` from the
//! recording (`null` when absent, as a node does). A runtime-API call with unrecorded arguments
//! answers like the chain does for an unknown netuid: `get_neurons_lite` → empty `Vec` (`0x00`),
//! `get_subnet_state` → `None` (`0x00`). Anything else → JSON-RPC error -32601. Every request is
//! logged ([`MockNode::log`], and to stderr).
//!
//! Faults ([`MockNode::fault`]) apply to requests whose description ([`describe`]: the method, or
//! `state_call <RuntimeApi_method>`) equals the target, or to all with `"*"`: answer a JSON-RPC error,
//! drop the socket without answering, or answer after a delay; for a number of times or forever.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parity_scale_codec::{Compact, Encode};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use tokio_tungstenite::tungstenite::Message;

/// Where the fixtures are: `$PATROL_FIXTURES`, else `<crate>/tests/data` (in the repository). Panics
/// (fails the test) when `chain/` is not there.
pub fn fixtures_dir() -> PathBuf {
    fixtures_dir_from(std::env::var_os("PATROL_FIXTURES")).unwrap_or_else(|e| panic!("{e}"))
}

/// [`fixtures_dir`] for a given value of `$PATROL_FIXTURES`.
pub fn fixtures_dir_from(env: Option<std::ffi::OsString>) -> Result<PathBuf, String> {
    let dir = match env {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data"),
    };
    let probe = dir.join("chain/finney-spec343-block6852690-fixtures.json");
    if probe.is_file() {
        Ok(dir)
    } else {
        Err(format!(
            "chain fixtures missing: {} does not exist. They are part of the repository \
             (tests/data/chain/); PATROL_FIXTURES overrides the directory holding chain/ (these tests fail \
             rather than skip without them)",
            probe.display()
        ))
    }
}

/// A fixture file of `tests/data/chain/`.
pub fn chain_file(name: &str) -> PathBuf {
    fixtures_dir().join("chain").join(name)
}

/// Parsed JSON of a fixture file.
pub fn chain_json(name: &str) -> Value {
    let p = chain_file(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()))
}

/// Hex (with or without 0x) → bytes.
pub fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.trim_start_matches("0x")).unwrap_or_else(|e| panic!("bad hex in fixture: {e}"))
}

/// The recorded answers of one runtime, and the chain position the mock claims.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Raw runtime metadata (`RuntimeMetadataPrefixed`).
    pub metadata: Vec<u8>,
    pub spec_version: u32,
    pub block: u64,
    /// runtime-API name → hex args (no 0x) → `0x…` answer.
    pub state_call: HashMap<String, HashMap<String, String>>,
    /// `0x…` key → `0x…` value.
    pub storage: HashMap<String, String>,
}

impl Fixture {
    /// Load `fixtures_json` (the README's format) with its metadata blob.
    pub fn load(fixtures_json: &str, metadata: &str, spec_version: u32, block: u64) -> Fixture {
        let v = chain_json(fixtures_json);
        let mut state_call = HashMap::new();
        if let Some(m) = v["state_call"].as_object() {
            for (name, by_args) in m {
                let mut answers = HashMap::new();
                for (args, answer) in by_args.as_object().into_iter().flatten() {
                    answers.insert(
                        args.trim_start_matches("0x").to_lowercase(),
                        answer.as_str().unwrap_or_default().to_string(),
                    );
                }
                state_call.insert(name.clone(), answers);
            }
        }
        let storage = v["state_getStorage"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, val)| (k.to_lowercase(), val.as_str().unwrap_or_default().to_string()))
            .collect();
        let mp = chain_file(metadata);
        let metadata = std::fs::read(&mp).unwrap_or_else(|e| panic!("cannot read {}: {e}", mp.display()));
        Fixture { metadata, spec_version, block, state_call, storage }
    }

    /// Finney block 6,852,690 (spec 343): netuid 1's neurons and subnet state, one `Uids` entry (netuid 23).
    pub fn finney_netuid1() -> Fixture {
        Fixture::load("finney-spec343-block6852690-fixtures.json", "finney-spec343-metadata-v15.scale", 343, 6_852_690)
    }

    /// Four hand-encoded netuid-74 neurons for the spec-393 metadata (no subnet state recorded).
    pub fn synthetic_netuid74() -> Fixture {
        Fixture::load("synthetic-netuid74-fixtures.json", "finney-spec393-metadata-v16.scale", 393, 5_000_000)
    }

    /// Metadata format version of the blob (byte after the `meta` magic).
    fn metadata_version(&self) -> u32 {
        u32::from(self.metadata.get(4).copied().unwrap_or(14))
    }

    fn block_hash(&self) -> String {
        format!("0x{:064x}", 0xb10c_0000_0000u64 + self.block)
    }
}

const GENESIS: &str = "0x2f0555cc76fc2840a25a6ea3b9637146806f1f44b090c175ffde2a7e5ab36c03";
const ZERO_HASH: &str = "0x0000000000000000000000000000000000000000000000000000000000000000";

/// What a faulty request gets.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// A JSON-RPC error answer (code -32000).
    RpcError,
    /// Close the TCP connection without answering.
    Drop,
    /// Answer normally after this long.
    Delay(Duration),
}

#[derive(Debug, Clone)]
struct Fault {
    target: String,
    kind: FaultKind,
    /// `None`: forever.
    remaining: Option<u32>,
}

struct Shared {
    fixture: Fixture,
    faults: Mutex<Vec<Fault>>,
    log: Mutex<Vec<String>>,
    connections: AtomicUsize,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// A running mock node. Dropping it closes the port and every connection.
pub struct MockNode {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl MockNode {
    /// Serve `fixture` on a fresh 127.0.0.1 port.
    pub async fn start(fixture: Fixture) -> MockNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            fixture,
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            tasks: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                s.connections.fetch_add(1, Ordering::SeqCst);
                let conn = tokio::spawn(serve(stream, s.clone()));
                s.tasks.lock().unwrap().push(conn.abort_handle());
            }
        });
        shared.tasks.lock().unwrap().push(accept.abort_handle());
        MockNode { addr, shared }
    }

    /// `ws://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Make requests matching `target` (a [`describe`] string, or `"*"`) fail with `kind`, `times`
    /// times (`None`: forever). Faults are checked in the order added.
    pub fn fault(&self, target: &str, kind: FaultKind, times: Option<u32>) {
        self.shared.faults.lock().unwrap().push(Fault { target: target.to_string(), kind, remaining: times });
    }

    pub fn clear_faults(&self) {
        self.shared.faults.lock().unwrap().clear();
    }

    /// Every request so far, as `describe` strings.
    pub fn log(&self) -> Vec<String> {
        self.shared.log.lock().unwrap().clone()
    }

    /// How many requests matched `target`.
    pub fn calls(&self, target: &str) -> usize {
        self.log().iter().filter(|l| *l == target).count()
    }

    /// WebSocket connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for MockNode {
    fn drop(&mut self) {
        for t in self.shared.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

/// `method`, or `state_call <name>` for runtime-API calls.
pub fn describe(method: &str, params: &Value) -> String {
    match (method, params.get(0).and_then(Value::as_str)) {
        ("state_call", Some(name)) => format!("state_call {name}"),
        _ => method.to_string(),
    }
}

enum Outcome {
    Answer(Value),
    Drop,
}

async fn serve(stream: TcpStream, s: Arc<Shared>) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    while let Some(msg) = ws.next().await {
        let text = match msg {
            Ok(Message::Text(t)) => t.as_str().to_string(),
            Ok(Message::Binary(b)) => String::from_utf8_lossy(&b).into_owned(),
            Ok(Message::Close(_)) | Err(_) => return,
            Ok(_) => continue,
        };
        let Ok(req) = serde_json::from_str::<Value>(&text) else {
            let _ = ws
                .send(Message::text(
                    json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "parse error"}})
                        .to_string(),
                ))
                .await;
            continue;
        };
        let reply = match req {
            Value::Array(batch) => {
                let mut out = Vec::new();
                for r in batch {
                    match handle(&r, &s).await {
                        Outcome::Answer(a) => out.push(a),
                        Outcome::Drop => return,
                    }
                }
                Value::Array(out)
            }
            single => match handle(&single, &s).await {
                Outcome::Answer(a) => a,
                // Returning drops the socket: the client sees the connection die mid-call.
                Outcome::Drop => return,
            },
        };
        if ws.send(Message::text(reply.to_string())).await.is_err() {
            return;
        }
    }
}

fn take_fault(s: &Shared, what: &str) -> Option<FaultKind> {
    let mut faults = s.faults.lock().unwrap();
    let f = faults.iter_mut().find(|f| (f.target == what || f.target == "*") && f.remaining != Some(0))?;
    if let Some(n) = f.remaining.as_mut() {
        *n -= 1;
    }
    Some(f.kind.clone())
}

async fn handle(req: &Value, s: &Shared) -> Outcome {
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let method = req.get("method").and_then(Value::as_str).unwrap_or("");
    let params = req.get("params").cloned().unwrap_or(Value::Null);
    let what = describe(method, &params);
    eprintln!("mock-node: {what}");
    s.log.lock().unwrap().push(what.clone());
    match take_fault(s, &what) {
        Some(FaultKind::Drop) => return Outcome::Drop,
        Some(FaultKind::RpcError) => {
            return Outcome::Answer(
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32000, "message": format!("mock: injected error for {what}")}}),
            );
        }
        Some(FaultKind::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    Outcome::Answer(match answer(method, &params, &s.fixture) {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err((code, message)) => {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        }
    })
}

fn answer(method: &str, params: &Value, f: &Fixture) -> Result<Value, (i64, String)> {
    let p = |i: usize| params.get(i);
    match method {
        "chain_getBlockHash" => Ok(match p(0) {
            None | Some(Value::Null) => json!(f.block_hash()),
            Some(n) => match n
                .as_u64()
                .or_else(|| n.as_str().and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()))
            {
                Some(0) => json!(GENESIS),
                Some(b) if b == f.block => json!(f.block_hash()),
                _ => Value::Null,
            },
        }),
        "chain_getFinalizedHead" => Ok(json!(f.block_hash())),
        "chain_getHeader" => Ok(json!({
            "parentHash": ZERO_HASH,
            "number": format!("0x{:x}", f.block),
            "stateRoot": ZERO_HASH,
            "extrinsicsRoot": ZERO_HASH,
            "digest": {"logs": []},
        })),
        "state_call" => {
            let name = p(0).and_then(Value::as_str).unwrap_or("");
            let args = p(1).and_then(Value::as_str).unwrap_or("0x").trim_start_matches("0x").to_lowercase();
            state_call(name, &args, f).map(|bytes| json!(bytes))
        }
        "state_getStorage" => {
            let key = p(0).and_then(Value::as_str).unwrap_or("").to_lowercase();
            Ok(f.storage.get(&key).map(|v| json!(v)).unwrap_or(Value::Null))
        }
        other => Err((-32601, format!("Method not found: {other}"))),
    }
}

/// `state_call` answers as `0x…` hex.
fn state_call(name: &str, args: &str, f: &Fixture) -> Result<String, (i64, String)> {
    let hexed = |b: Vec<u8>| format!("0x{}", hex::encode(b));
    match name {
        "Core_version" => {
            // sp_version::RuntimeVersion: spec_name, impl_name, authoring_version, spec_version,
            // impl_version, apis, transaction_version, system_version.
            let v = (
                "node-subtensor".to_string(),
                "node-subtensor".to_string(),
                1u32,
                f.spec_version,
                1u32,
                Vec::<([u8; 8], u32)>::new(),
                1u32,
                1u8,
            );
            Ok(hexed(v.encode()))
        }
        "Metadata_metadata_versions" => {
            let v = f.metadata_version();
            let versions: Vec<u32> = (14..=v).collect();
            Ok(hexed(versions.encode()))
        }
        "Metadata_metadata_at_version" => {
            let asked =
                hex::decode(args).ok().and_then(|b| b.get(..4).map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]])));
            if asked == Some(f.metadata_version()) {
                // Option<OpaqueMetadata>: Some, then the blob as a length-prefixed Vec<u8>.
                let mut out = vec![1u8];
                Compact(f.metadata.len() as u32).encode_to(&mut out);
                out.extend_from_slice(&f.metadata);
                Ok(hexed(out))
            } else {
                Ok("0x00".into())
            }
        }
        _ => match f.state_call.get(name) {
            Some(by_args) => match by_args.get(args) {
                Some(answer) => Ok(answer.clone()),
                // What the chain answers for a netuid that does not exist: an empty Vec / None.
                None if name == "NeuronInfoRuntimeApi_get_neurons_lite"
                    || name == "SubnetInfoRuntimeApi_get_subnet_state" =>
                {
                    Ok("0x00".into())
                }
                None => Err((-32000, format!("mock: no recorded answer for {name}(0x{args})"))),
            },
            None if name == "SubnetInfoRuntimeApi_get_subnet_state"
                || name == "NeuronInfoRuntimeApi_get_neurons_lite" =>
            {
                Ok("0x00".into())
            }
            None => Err((-32000, format!("mock: no recorded answer for {name}"))),
        },
    }
}
