//! The configuration in force and everything built from it ([`World`]: settings, pass config,
//! the connector to the network, miners), and replacing it on a reload: the new configuration is
//! read and **everything** it needs is built ([`World::prepare`]: hotkeys loaded, PATs read, new
//! state locks taken; the agent binds a new listener and starts the new notifications) before
//! anything is swapped ([`World::commit`]), so a configuration that fails anywhere leaves the
//! running one untouched.

use std::sync::Arc;
use std::time::Duration;

use super::deps::{Connector, NetConnector};
use super::http::Shared;
use super::miner::Miner;
use crate::config::Settings;
use crate::reconcile::pass::PassConfig;
use crate::reconcile::state::StateFile;
use crate::reconcile::transport::Transport;
use crate::status_view::{Limits, MinerRecord, Problem};

/// The configuration in force and everything built from it.
pub(super) struct World {
    pub settings: Settings,
    pub cfg: PassConfig,
    pub connector: Arc<dyn Connector>,
    pub miners: Vec<Miner>,
}

impl World {
    pub fn new(settings: Settings, connector: Arc<dyn Connector>, miners: Vec<Miner>, dry_run: bool) -> World {
        World { cfg: PassConfig::from_settings(&settings, dry_run), settings, connector, miners }
    }

    /// What `/status` needs of this world: the limits of the settings in force and a copy of each
    /// miner's state and problem.
    pub fn board_copy(&self) -> (Limits, Vec<MinerRecord>) {
        let miners = self
            .miners
            .iter()
            .map(|m| {
                let problem = m
                    .problem
                    .as_ref()
                    .map(|p| Problem { kind: p.kind.as_str().to_string(), message: p.message.clone() });
                (m.name().to_string(), m.ss58().to_string(), m.state.clone(), problem)
            })
            .collect();
        (Limits::of(&self.settings), miners)
    }

    /// Miner `index`'s transport under the settings in force.
    pub fn transport(&self, index: usize) -> Option<Arc<dyn Transport>> {
        self.miners.get(index).map(|m| self.connector.connect(&self.settings, m))
    }

    /// Build the miners and the connector `settings` needs; nothing running is touched. Miners with
    /// the same hotkey, state dir and netuid are kept (their lock and state carry over); the others
    /// are opened (taking their locks) now.
    pub fn prepare(&self, settings: Settings, dry_run: bool, fixed_connector: bool) -> Result<Next, String> {
        let mut miners: Vec<Result<usize, Miner>> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for m in &settings.miners {
            let hotkey =
                m.load_hotkey().map_err(|e| format!("miner {}: {}", m.name, crate::secret::error_chain(&e)))?;
            // The PAT too: a typo in its path must be rejected, not applied to leave the miner
            // unreconciled while /readyz says ready.
            m.load_pat().map_err(|e| format!("miner {}: {}", m.name, crate::secret::error_chain(&e)))?;
            if seen.iter().any(|h| h == hotkey.ss58()) {
                return Err(format!("hotkey {} is configured for more than one miner", hotkey.ss58()));
            }
            seen.push(hotkey.ss58().to_string());
            // Same state file = same hotkey, state dir and netuid.
            let file = StateFile::of(&settings, hotkey.ss58());
            let reuse = self.miners.iter().position(|o| o.file.path == file.path);
            match reuse {
                Some(i) => miners.push(Ok(i)),
                None => miners.push(Err(Miner::open(&settings, m, hotkey, dry_run)
                    .map_err(|e| format!("miner {}: {}", m.name, crate::secret::error_chain(&e)))?)),
            }
        }
        let connector: Arc<dyn Connector> = if fixed_connector {
            self.connector.clone()
        } else {
            Arc::new(NetConnector::new(&settings).map_err(|e| crate::secret::error_chain(&e))?)
        };
        Ok(Next { settings, miners, connector })
    }

    /// Swap in `next`: kept miners take their new settings, removed ones are saved and forgotten.
    /// Returns the settings that were in force.
    pub fn commit(&mut self, next: Next, shared: &Shared, dry_run: bool) -> Settings {
        let Next { settings, miners: plan, connector } = next;
        let mut old: Vec<Option<Miner>> = std::mem::take(&mut self.miners).into_iter().map(Some).collect();
        let mut miners = Vec::new();
        for (slot, ms) in plan.into_iter().zip(&settings.miners) {
            let mut m = match slot {
                Ok(i) => match old.get_mut(i).and_then(Option::take) {
                    Some(m) => m,
                    None => continue,
                },
                Err(m) => m,
            };
            if let Err(e) = m.update(&settings, ms) {
                tracing::error!(miner = %ms.name, error = %crate::secret::error_chain(&e), "cannot rebuild the miner's HTTP client; keeping the old one");
            }
            miners.push(m);
        }
        for mut m in old.into_iter().flatten() {
            tracing::info!(miner = %m.name(), "miner removed from the configuration");
            m.save();
            shared.state_saved(m.ss58(), None);
            shared.metrics.forget_miner(m.ss58());
        }
        std::mem::replace(self, World::new(settings, connector, miners, dry_run)).settings
    }
}

/// A configuration read for a reload, with what [`World::prepare`] built for it.
pub(super) struct Next {
    pub settings: Settings,
    /// Per configured miner: the running one to keep (its index), or one opened for it.
    miners: Vec<Result<usize, Miner>>,
    connector: Arc<dyn Connector>,
}

/// `/readyz` wants a round within 2 × the longest gap between rounds.
pub(super) fn ready_window(settings: &Settings) -> Duration {
    2 * (settings.reconcile.interval + settings.reconcile.jitter)
}

/// How long a stopping agent waits for the job in flight: the longest single call.
pub(super) fn stop_grace(settings: &Settings) -> Duration {
    settings.reconcile.check_timeout.max(settings.reconcile.broadcast_timeout)
}
