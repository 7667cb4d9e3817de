//! What the commands share: loading the miner's hotkey, building the dendrite and the GitHub
//! client, reading the eligible validators (with the registration check and gitt's "no validators
//! eligible" error), the coverage verdict's exit code, waiting for a stop signal.

use std::sync::Arc;

use anyhow::Context as _;

use crate::chain::{self, Origin, SubnetView};
use crate::cli::{Coded, Exit};
use crate::config::{MinerSettings, Settings};
use crate::github::{GithubClient, GithubOptions};
use crate::reconcile::state::StateFile;
use crate::reconcile::transport::{Clock, SystemClock};
use crate::report::SourceInfo;
use crate::validators::Selection;
use crate::wallet::Hotkey;
use crate::wire::Dendrite;
use crate::wire::dendrite::DendriteOptions;

/// The miner's hotkey and a dendrite signing with it.
pub struct Caller {
    pub hotkey: Arc<Hotkey>,
    pub dendrite: Arc<Dendrite>,
}

/// Load the hotkey file and build the dendrite.
pub fn caller(settings: &Settings, miner: &MinerSettings) -> anyhow::Result<Caller> {
    let hotkey = Arc::new(miner.load_hotkey()?);
    let dendrite = Dendrite::new(
        hotkey.clone(),
        DendriteOptions { external_ip: settings.agent.external_ip.clone(), ..DendriteOptions::default() },
    )
    .context("failed to build the HTTP client")?;
    Ok(Caller { hotkey, dendrite: Arc::new(dendrite) })
}

/// GitHub client for the miner-side preflight, from `[github]`.
pub fn github_client(settings: &Settings) -> anyhow::Result<GithubClient> {
    Ok(GithubClient::new(GithubOptions::from(&settings.github))?)
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
}

/// The eligible validators, where they came from, and the subnet view itself.
pub struct Eligible {
    pub view: SubnetView,
    pub selection: Selection,
    pub source: SourceInfo,
}

/// Read the validator source, refuse an unregistered hotkey (78) and an empty eligible set (3,
/// gitt's `no_validators_eligible` with the skipped list).
pub async fn eligible(settings: &Settings, own_hotkey: &str, json: bool) -> anyhow::Result<Eligible> {
    let view = chain::subnet_view(settings, Some(own_hotkey)).await?;
    view.require_registered(own_hotkey)?;
    let selection = view.select(settings.validators.thresholds);
    let source = source_info(&view);
    if let Origin::Cache { age, error, .. } = &view.origin {
        tracing::warn!(age_s = age.as_secs(), error = %error, "chain unreachable; using the cached metagraph");
    }
    if selection.eligible.is_empty() {
        let t = settings.validators.thresholds;
        let message = format!(
            "no validators eligible on netuid {} (vtrust > {}, serving, stake >= {} α); {} high-vtrust validators skipped",
            view.netuid,
            t.min_vtrust,
            t.min_stake,
            selection.skipped.len()
        );
        if json {
            let v = serde_json::json!({
                "success": false,
                "error": {"type": "no_validators_eligible", "message": message},
                "skipped": selection.skipped,
            });
            println!("{v}");
        }
        return Err(Coded::new(Exit::Undetermined, "no_validators_eligible", message));
    }
    Ok(Eligible { view, selection, source })
}

/// JSON metadata for a view.
pub fn source_info(view: &SubnetView) -> SourceInfo {
    SourceInfo {
        netuid: view.netuid,
        block: view.block,
        source: view.origin.label().into(),
        metagraph_age_s: view.origin.cache_age().map(|a| a.as_secs()),
    }
}

/// gitt prints this line to stderr before contacting validators.
pub fn banner(settings: &Settings, miner: &MinerSettings, hotkey: &str) {
    eprintln!(
        "Miner: {} ({}) | Network: {} | Netuid: {}",
        miner.name, hotkey, settings.chain.network, settings.chain.netuid
    );
}

/// Note GitHub calls this process caused in the state's ledger without owning the state
/// ([`StateFile::append_spent`]); a failure costs a warning only.
pub fn note_spent(file: &StateFile, calls: u32) {
    if let Err(e) = file.append_spent(SystemClock.now(), calls) {
        tracing::warn!(path = %file.path.display(), error = %e, "cannot note the GitHub calls of this run in the budget ledger");
    }
}
