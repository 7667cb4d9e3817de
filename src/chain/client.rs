//! The connection to a Subtensor node: subxt's dynamic API over the legacy JSON-RPC backend.
//!
//! Why the legacy backend, chosen explicitly: subxt's default `CombinedBackend` asks `rpc_methods`
//! and switches to the `chainHead_v1_*` subscription API when the node offers it (finney does). The
//! legacy methods (`chain_getFinalizedHead`, `chain_getHeader`, `state_call`, `state_getStorage`) are
//! plain request/answer, work on every node, and are what the loopback mock in the tests serves, so
//! production and tests take the same path.
//!
//! Every JSON-RPC request goes through [`GuardedRpc`], which bounds it by `call_timeout` and
//! remembers whether the *transport* failed (socket closed, timeout) as opposed to the node
//! answering with a JSON-RPC error. [`ChainClient::snapshot`] reconnects once and retries the whole
//! read after a transport failure; a JSON-RPC error answer or a decode failure is not retried (the
//! node would say the same again).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use subxt::backend::LegacyBackend;
use subxt::rpcs::client::{RawRpcFuture, RawRpcSubscription, RawValue, RpcClient, RpcClientT};
use subxt::utils::AccountId32;
use subxt::{OnlineClient, SubstrateConfig};
use tracing::{debug, warn};

use super::ChainError;
use super::decode::{self, NeuronInfoLite, SubnetState};
use crate::config::ChainSettings;
use crate::secret::SecretUrl;
use crate::validators::Neuron;

/// Where the stakes in a [`SubnetSnapshot`] come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StakeSource {
    /// `SubnetState.total_stake`: gittensor's `metagraph.S`.
    SubnetState,
    /// `NeuronInfoLite.stake` (the hotkey's own alpha), because the node had no subnet state.
    OwnAlpha,
}

/// One consistent read of a subnet: everything at one pinned (finalized) block.
#[derive(Debug, Clone)]
pub struct SubnetSnapshot {
    pub netuid: u16,
    pub block: u64,
    /// `0x…` hash of the pinned block.
    pub block_hash: String,
    pub spec_version: u32,
    /// Sorted by uid.
    pub neurons: Vec<Neuron>,
    /// UID of the hotkey asked for, `None` if not registered (or none was asked).
    pub own_uid: Option<u16>,
    pub stake_source: StakeSource,
}

/// A lazily connected client for one endpoint.
pub struct ChainClient {
    /// Connected to with [`SecretUrl::expose`]; shown everywhere else (errors, logs).
    url: SecretUrl,
    connect_timeout: Duration,
    call_timeout: Duration,
    /// Shared across reconnects so the downloaded metadata (≈300 kB per runtime version) is kept.
    config: SubstrateConfig,
    conn: Option<Conn>,
}

struct Conn {
    client: OnlineClient<SubstrateConfig>,
    /// Set by [`GuardedRpc`] when a request failed below the JSON-RPC layer.
    transport_failed: Arc<AtomicBool>,
}

impl ChainClient {
    /// A client for `url` (not connected yet).
    pub fn new(url: impl Into<String>, connect_timeout: Duration, call_timeout: Duration) -> ChainClient {
        ChainClient::with_url(SecretUrl::new(&url.into()), connect_timeout, call_timeout)
    }

    fn with_url(url: SecretUrl, connect_timeout: Duration, call_timeout: Duration) -> ChainClient {
        ChainClient { url, connect_timeout, call_timeout, config: SubstrateConfig::new(), conn: None }
    }

    /// A client for `[chain]`.
    pub fn from_settings(chain: &ChainSettings) -> ChainClient {
        ChainClient::with_url(chain.url.clone(), chain.connect_timeout, chain.call_timeout)
    }

    /// The endpoint.
    pub fn url(&self) -> &SecretUrl {
        &self.url
    }

    /// Read the subnet at the current finalized block: neurons (`get_neurons_lite`), stake weights
    /// (`get_subnet_state`) and, when `own_hotkey` is given, its UID (`SubtensorModule::Uids`), all
    /// at the same block hash. Reconnects once after a transport failure.
    pub async fn snapshot(&mut self, netuid: u16, own_hotkey: Option<&[u8; 32]>) -> Result<SubnetSnapshot, ChainError> {
        let mut retried = false;
        loop {
            let conn = self.connection().await?;
            let failed = conn.transport_failed.clone();
            let client = conn.client.clone();
            match read_snapshot(&client, self.url.shown(), netuid, own_hotkey).await {
                Ok(s) => return Ok(s),
                Err(e) if !retried && failed.load(Ordering::SeqCst) => {
                    warn!(url = %self.url, netuid, error = %e, "chain connection failed; reconnecting once");
                    self.conn = None;
                    retried = true;
                }
                Err(e) => {
                    if failed.load(Ordering::SeqCst) {
                        // Don't keep a broken connection for the next caller.
                        self.conn = None;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// `SubtensorModule::Uids(netuid, hotkey)` at the current finalized block (`None`: not
    /// registered). Reconnects once after a transport failure.
    pub async fn uid_of(&mut self, netuid: u16, hotkey: &[u8; 32]) -> Result<Option<u16>, ChainError> {
        let mut retried = false;
        loop {
            let conn = self.connection().await?;
            let failed = conn.transport_failed.clone();
            let client = conn.client.clone();
            let result = async {
                let at = client
                    .at_current_block()
                    .await
                    .map_err(|e| call_error(self.url.shown(), netuid, None, "reading the finalized block", e))?;
                read_uid(&at, self.url.shown(), netuid, at.block_number(), hotkey).await
            }
            .await;
            match result {
                Ok(uid) => return Ok(uid),
                Err(e) if !retried && failed.load(Ordering::SeqCst) => {
                    warn!(url = %self.url, netuid, error = %e, "chain connection failed; reconnecting once");
                    self.conn = None;
                    retried = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn connection(&mut self) -> Result<&Conn, ChainError> {
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        // Just set above when it was None.
        self.conn.as_ref().ok_or_else(|| ChainError::Connect {
            url: self.url.to_string(),
            timeout: self.connect_timeout,
            reason: "no connection".into(),
        })
    }

    async fn connect(&self) -> Result<Conn, ChainError> {
        if self.url.expose().starts_with("wss://") {
            crate::tls::install_default_provider();
        }
        // The RPC library's texts may quote the URL: scrubbed of its credentials.
        let err = |reason: String| ChainError::Connect {
            url: self.url.to_string(),
            timeout: self.connect_timeout,
            reason: self.url.scrub(&reason),
        };
        let transport_failed = Arc::new(AtomicBool::new(false));
        let attempt = async {
            debug!(url = %self.url, "connecting to the chain");
            // from_insecure_url: ws:// is legitimate for `local` and for a node on the same host.
            let rpc = RpcClient::from_insecure_url(self.url.expose()).await.map_err(|e| err(e.to_string()))?;
            let guarded =
                GuardedRpc { inner: rpc, call_timeout: self.call_timeout, transport_failed: transport_failed.clone() };
            let backend = LegacyBackend::<SubstrateConfig>::builder().build(RpcClient::new(guarded));
            // Asks the genesis hash (`chain_getBlockHash [0]`): proves the node answers.
            OnlineClient::from_backend_with_config(self.config.clone(), Arc::new(backend))
                .await
                .map_err(|e| err(e.to_string()))
        };
        let client =
            tokio::time::timeout(self.connect_timeout, attempt).await.map_err(|_| err("timed out".into()))??;
        Ok(Conn { client, transport_failed })
    }
}

type AtBlock = subxt::client::OnlineClientAtBlock<SubstrateConfig>;

async fn read_snapshot(
    client: &OnlineClient<SubstrateConfig>,
    url: &str,
    netuid: u16,
    own_hotkey: Option<&[u8; 32]>,
) -> Result<SubnetSnapshot, ChainError> {
    // Pin one block; every read below is at this hash, so the columns agree with each other.
    let at =
        client.at_current_block().await.map_err(|e| call_error(url, netuid, None, "reading the finalized block", e))?;
    let block = at.block_number();
    let block_hash = format!("{:#x}", at.block_hash());
    debug!(url, netuid, block, %block_hash, spec = at.spec_version(), "pinned block");

    let lite: Vec<NeuronInfoLite> = at
        .runtime_apis()
        .call(subxt::dynamic::runtime_api_call::<_, Vec<NeuronInfoLite>>(
            "NeuronInfoRuntimeApi",
            "get_neurons_lite",
            (netuid,),
        ))
        .await
        .map_err(|e| api_error(url, netuid, block, "NeuronInfoRuntimeApi_get_neurons_lite", e))?;
    if lite.is_empty() {
        return Err(ChainError::UnknownNetuid { url: url.to_string(), netuid, block });
    }

    let (state, stake_source) = match read_subnet_state(&at, url, netuid, block).await? {
        Some(s) => (Some(s), StakeSource::SubnetState),
        None => {
            warn!(
                url,
                netuid,
                block,
                "the node gave no SubnetInfoRuntimeApi_get_subnet_state for this netuid; using each hotkey's own alpha \
                 (NeuronInfoLite.stake) as stake, so min_stake may select differently from gitt"
            );
            (None, StakeSource::OwnAlpha)
        }
    };
    let neurons = decode::to_neurons(&lite, state.as_ref()).map_err(|e| ChainError::Decode {
        url: url.to_string(),
        netuid,
        block,
        what: "the subnet's neurons".into(),
        reason: e.0,
    })?;

    let own_uid = match own_hotkey {
        Some(hk) => read_uid(&at, url, netuid, block, hk).await?,
        None => None,
    };
    Ok(SubnetSnapshot { netuid, block, block_hash, spec_version: at.spec_version(), neurons, own_uid, stake_source })
}

/// `get_subnet_state`, or `None` when the node has none for the netuid (answer `None`, or a runtime
/// without the API; see the module doc of [`crate::chain`]).
async fn read_subnet_state(
    at: &AtBlock,
    url: &str,
    netuid: u16,
    block: u64,
) -> Result<Option<SubnetState>, ChainError> {
    let has_api = at
        .metadata_ref()
        .runtime_api_trait_by_name("SubnetInfoRuntimeApi")
        .is_some_and(|t| t.method_by_name("get_subnet_state").is_some());
    if !has_api {
        return Ok(None);
    }
    at.runtime_apis()
        .call(subxt::dynamic::runtime_api_call::<_, Option<SubnetState>>(
            "SubnetInfoRuntimeApi",
            "get_subnet_state",
            (netuid,),
        ))
        .await
        .map_err(|e| api_error(url, netuid, block, "SubnetInfoRuntimeApi_get_subnet_state", e))
}

async fn read_uid(
    at: &AtBlock,
    url: &str,
    netuid: u16,
    block: u64,
    hotkey: &[u8; 32],
) -> Result<Option<u16>, ChainError> {
    let addr = subxt::dynamic::storage::<(u16, AccountId32), u16>("SubtensorModule", "Uids");
    let value = at
        .storage()
        .try_fetch(addr, (netuid, AccountId32(*hotkey)))
        .await
        .map_err(|e| call_error(url, netuid, Some(block), "reading SubtensorModule::Uids", e))?;
    match value {
        None => Ok(None),
        Some(v) => v.decode_as::<u16>().map(Some).map_err(|e| ChainError::Decode {
            url: url.to_string(),
            netuid,
            block,
            what: "SubtensorModule::Uids".into(),
            reason: e.to_string(),
        }),
    }
}

fn call_error(url: &str, netuid: u16, block: Option<u64>, what: &str, e: impl std::fmt::Display) -> ChainError {
    ChainError::Call { url: url.to_string(), netuid, block, what: what.to_string(), reason: e.to_string() }
}

/// A runtime-API failure: a decode failure is reported as such (the runtime changed shape), anything
/// else as a failed call.
fn api_error(url: &str, netuid: u16, block: u64, what: &str, e: subxt::error::RuntimeApiError) -> ChainError {
    use subxt::error::RuntimeApiError as E;
    match e {
        E::CouldNotDecodeResponse(_) => ChainError::Decode {
            url: url.to_string(),
            netuid,
            block,
            what: format!("the {what} answer"),
            reason: e.to_string(),
        },
        other => call_error(url, netuid, Some(block), &format!("calling {what}"), other),
    }
}

/// The RPC client subxt talks through: bounds each request by `call_timeout` and records transport
/// failures, so [`ChainClient`] can tell "the socket died" (reconnect) from "the node said no".
struct GuardedRpc {
    inner: RpcClient,
    call_timeout: Duration,
    transport_failed: Arc<AtomicBool>,
}

impl GuardedRpc {
    fn failed(&self) {
        self.transport_failed.store(true, Ordering::SeqCst);
    }
}

/// Method name, plus the runtime API for `state_call` (the only interesting part of its params).
fn describe(method: &str, params: Option<&RawValue>) -> String {
    if method == "state_call"
        && let Some(p) = params
        && let Ok(serde_json::Value::Array(a)) = serde_json::from_str::<serde_json::Value>(p.get())
        && let Some(serde_json::Value::String(name)) = a.first()
    {
        return format!("state_call {name}");
    }
    method.to_string()
}

fn is_transport(e: &subxt::rpcs::Error) -> bool {
    matches!(e, subxt::rpcs::Error::Client(_) | subxt::rpcs::Error::DisconnectedWillReconnect(_))
}

impl RpcClientT for GuardedRpc {
    fn request_raw<'a>(&'a self, method: &'a str, params: Option<Box<RawValue>>) -> RawRpcFuture<'a, Box<RawValue>> {
        Box::pin(async move {
            let what = describe(method, params.as_deref());
            debug!(rpc = %what, "chain request");
            match tokio::time::timeout(self.call_timeout, self.inner.request_raw(method, params)).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => {
                    if is_transport(&e) {
                        self.failed();
                    }
                    debug!(rpc = %what, error = %e, "chain request failed");
                    Err(e)
                }
                Err(_) => {
                    self.failed();
                    let msg = format!("no answer to {what} within {}", humantime::format_duration(self.call_timeout));
                    Err(subxt::rpcs::Error::Client(Box::new(std::io::Error::new(std::io::ErrorKind::TimedOut, msg))))
                }
            }
        })
    }

    fn subscribe_raw<'a>(
        &'a self,
        sub: &'a str,
        params: Option<Box<RawValue>>,
        unsub: &'a str,
    ) -> RawRpcFuture<'a, RawRpcSubscription> {
        // patrol reads no subscriptions on the legacy backend; passed through, bounded like a request.
        Box::pin(async move {
            match tokio::time::timeout(self.call_timeout, self.inner.subscribe_raw(sub, params, unsub)).await {
                Ok(r) => r.inspect_err(|e| {
                    if is_transport(e) {
                        self.failed();
                    }
                }),
                Err(_) => {
                    self.failed();
                    Err(subxt::rpcs::Error::Client(Box::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer to {sub}"),
                    ))))
                }
            }
        })
    }
}
