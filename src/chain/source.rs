//! Where the validator list comes from, decided in one place for every command: the static list
//! when `[validators] static` is configured, else the chain (saving the cache), else — loudly, with
//! its age — the cached snapshot if it is younger than `[chain] metagraph_max_age`, else an error
//! (exit 3: no validator source).

use std::path::Path;
use std::time::Duration;

use tracing::{debug, warn};

use super::cache::{self, Loaded};
use super::{ChainClient, ChainError};
use crate::config::Settings;
use crate::secret::SecretUrl;
use crate::validators::{Neuron, Selection, Thresholds};

/// The subnet as one command sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SubnetView {
    pub netuid: u16,
    /// Sorted by uid.
    pub neurons: Vec<Neuron>,
    /// Block the neurons were read at (`None` for a static list).
    pub block: Option<u64>,
    pub origin: Origin,
    /// Our hotkey's UID when one was asked for and is registered; `None` when not registered, not
    /// asked, or unknown (static list).
    pub own_uid: Option<u16>,
}

/// Where a [`SubnetView`] came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// `[validators] static` in the config.
    Static,
    /// Read from the chain just now (`url` as shown: without credentials).
    Chain { url: String },
    /// The chain failed (`error`); this is the cached snapshot of `url` (as shown), `age` old.
    Cache { url: String, age: Duration, error: String },
}

impl Origin {
    /// `static`, `chain` or `cache` (the `source` field of JSON output).
    pub fn label(&self) -> &'static str {
        match self {
            Origin::Static => "static",
            Origin::Chain { .. } => "chain",
            Origin::Cache { .. } => "cache",
        }
    }

    /// Age of the data when it came from the cache.
    pub fn cache_age(&self) -> Option<Duration> {
        match self {
            Origin::Cache { age, .. } => Some(*age),
            _ => None,
        }
    }
}

impl SubnetView {
    /// gittensor's selection rule over these neurons.
    pub fn select(&self, thresholds: Thresholds) -> Selection {
        crate::validators::select(&self.neurons, thresholds)
    }

    /// Enforce registration before anything is sent: our `hotkey`'s UID on this netuid, or
    /// [`ChainError::NotRegistered`]. A static list cannot tell (it lists validators, not miners), so
    /// that gives `Ok(None)`. From the chain, the `Uids` answer read with the view counts; a cached
    /// view (or a view read without asking for our hotkey) is searched by hotkey.
    pub fn require_registered(&self, hotkey: &str) -> Result<Option<u16>, ChainError> {
        if self.origin == Origin::Static {
            return Ok(None);
        }
        if let Some(uid) = self.own_uid {
            return Ok(Some(uid));
        }
        match self.neurons.iter().find(|n| n.hotkey == hotkey) {
            Some(n) => Ok(Some(n.uid)),
            None => Err(ChainError::NotRegistered { hotkey: hotkey.to_string(), netuid: self.netuid }),
        }
    }
}

/// The validator source for `settings`, with our hotkey's UID when `own_hotkey` (SS58) is given.
/// Static list if configured (`own_uid` = `None`: unknown), else the chain at one pinned block
/// (`get_neurons_lite` + `get_subnet_state` at the same block hash; our UID via
/// `SubtensorModule::Uids`), saving the cache; on a chain failure, the cache if it is younger than
/// `metagraph_max_age` (with a warning naming its age), else [`ChainError::Unavailable`]. An unknown
/// netuid is an error straight away: the chain answered, the subnet is not there.
pub async fn subnet_view(settings: &Settings, own_hotkey: Option<&str>) -> Result<SubnetView, ChainError> {
    let mut client = ChainClient::from_settings(&settings.chain);
    subnet_view_using(&mut client, settings, own_hotkey).await
}

/// [`subnet_view`] over an existing client (the agent keeps one connection across passes).
pub async fn subnet_view_using(
    client: &mut ChainClient,
    settings: &Settings,
    own_hotkey: Option<&str>,
) -> Result<SubnetView, ChainError> {
    let netuid = settings.chain.netuid;
    if let Some(list) = &settings.validators.static_list {
        let mut neurons = list.clone();
        neurons.sort_by_key(|n| n.uid);
        return Ok(SubnetView { netuid, neurons, block: None, origin: Origin::Static, own_uid: None });
    }
    let hotkey_bytes = match own_hotkey {
        Some(h) => Some(
            crate::wallet::ss58_decode(h)
                .map_err(|e| ChainError::BadHotkey { hotkey: h.to_string(), reason: e.to_string() })?,
        ),
        None => None,
    };
    let secret = client.url().clone();
    let url = secret.to_string();
    let state_dir = &settings.agent.state_dir;
    match client.snapshot(netuid, hotkey_bytes.as_ref()).await {
        Ok(snap) => {
            match cache::save(state_dir, secret.expose(), netuid, snap.block, &snap.neurons) {
                Ok(p) => tracing::debug!(path = %p.display(), "metagraph cache saved"),
                Err(e) => {
                    warn!(state_dir = %state_dir.display(), error = %e, "cannot save the metagraph cache")
                }
            }
            debug!(url = %url, netuid, block = snap.block, neurons = snap.neurons.len(), "read the subnet from the chain");
            Ok(SubnetView {
                netuid,
                neurons: snap.neurons,
                block: Some(snap.block),
                origin: Origin::Chain { url },
                own_uid: snap.own_uid,
            })
        }
        Err(
            e @ (ChainError::UnknownNetuid { .. } | ChainError::NotRegistered { .. } | ChainError::BadHotkey { .. }),
        ) => Err(e),
        Err(e) => from_cache(state_dir, &secret, netuid, settings.chain.metagraph_max_age, own_hotkey, e),
    }
}

fn from_cache(
    state_dir: &Path,
    secret: &SecretUrl,
    netuid: u16,
    max_age: Duration,
    own_hotkey: Option<&str>,
    error: ChainError,
) -> Result<SubnetView, ChainError> {
    let url = secret.shown();
    let file = cache::path(state_dir, secret.expose(), netuid);
    let unavailable = |cache: String, error: ChainError| ChainError::Unavailable {
        url: url.to_string(),
        netuid,
        cache,
        error: Box::new(error),
    };
    let c = match cache::load(state_dir, secret.expose(), netuid) {
        Loaded::Found(c) => c,
        Loaded::Missing => {
            return Err(unavailable(format!("no metagraph cache at {}", file.display()), error));
        }
        Loaded::Corrupt { reason, .. } => {
            return Err(unavailable(
                format!("the metagraph cache at {} is unreadable: {reason}", file.display()),
                error,
            ));
        }
    };
    let age = c.age();
    if age > max_age {
        return Err(unavailable(
            format!(
                "the cached metagraph from block {} is {} old, older than metagraph_max_age {}",
                c.block,
                humantime::format_duration(age),
                humantime::format_duration(max_age)
            ),
            error,
        ));
    }
    warn!(
        url,
        netuid,
        block = c.block,
        age = %humantime::format_duration(age),
        error = %error,
        "the chain cannot be read; using the cached metagraph"
    );
    let own_uid = own_hotkey.and_then(|h| c.neurons.iter().find(|n| n.hotkey == h).map(|n| n.uid));
    Ok(SubnetView {
        netuid,
        neurons: c.neurons,
        block: Some(c.block),
        origin: Origin::Cache { url: url.to_string(), age, error: error.to_string() },
        own_uid,
    })
}
