//! The configuration in force and everything built from it ([`World`]: settings, pass config,
//! the connector to the network, miners), and replacing it on a reload: the new configuration is read and
//! **everything** it needs is built (hotkeys loaded, new state locks taken, a new listener bound)
//! before anything is swapped, so a configuration that fails anywhere leaves the running one
//! untouched.

use std::sync::Arc;
use std::time::Duration;

use super::http::Server;
use super::miner::Miner;
use super::reload::{self, FileWatch};
use super::schedule::ScheduleConfig;
use super::{Agent, Connector, NetConnector};
use crate::config::Settings;
use crate::reconcile::pass::PassConfig;
use crate::reconcile::transport::Transport;

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

    /// Miner `index`'s transport under the settings in force.
    pub fn transport(&self, index: usize) -> Option<Arc<dyn Transport>> {
        self.miners.get(index).map(|m| self.connector.connect(&self.settings, m))
    }
}

/// `/readyz` wants a round within 2 × the longest gap between rounds.
pub(super) fn ready_window(settings: &Settings) -> Duration {
    2 * (settings.reconcile.interval + settings.reconcile.jitter)
}

/// How long a stopping agent waits for the job in flight: the longest single call.
pub(super) fn stop_grace(settings: &Settings) -> Duration {
    settings.reconcile.check_timeout.max(settings.reconcile.broadcast_timeout)
}

impl Agent<'_> {
    /// A reload was asked for: say so to systemd at once (`Type=notify-reload` expects
    /// `RELOADING=1` promptly after its SIGHUP), then apply it when no job is in flight.
    pub(super) fn begin_reload(&mut self, pending: &mut Option<String>, why: String) {
        if pending.is_none() {
            let wait = if self.job.is_some() { "; waiting for the pass in flight" } else { "" };
            self.notifier.reloading(&format!("reloading ({why}){wait}"));
        }
        *pending = Some(why);
    }

    /// Re-read the configuration; apply it only if all of it is usable. `RELOADING=1` was sent by
    /// [`Agent::begin_reload`].
    pub(super) async fn reload(&mut self, why: &str) {
        let result = match (self.load)() {
            Ok(s) => self.apply(s).await,
            Err(e) => Err(crate::secret::error_chain(&e)),
        };
        match result {
            Ok(()) => {
                tracing::info!(reason = %why, "configuration reloaded");
                self.shared.metrics.inc_reloads("applied");
                self.note = None;
                // A reload (and a rotated PAT) gets a pass at once.
                self.scheduler.round_now(self.clock.now());
            }
            Err(msg) => {
                tracing::error!(reason = %why, "configuration reload rejected, the running configuration stays: {}", crate::secret::redact_tokens(&msg));
                self.shared.metrics.inc_reloads("rejected");
                self.note = Some("reload rejected, see the log".into());
            }
        }
        // READY=1 ends a reload for Type=notify-reload, accepted or not.
        let line = self.status_line();
        self.notifier.ready(&line);
    }

    /// Build everything the new settings need, then swap. Any failure leaves the old world intact.
    async fn apply(&mut self, settings: Settings) -> Result<(), String> {
        // Miners: reuse the ones with the same hotkey, state dir and netuid (their lock and state
        // carry over); open the others (taking their locks) before touching anything.
        let mut plan: Vec<Result<usize, Miner>> = Vec::new();
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
            let reuse = self.world.miners.iter().position(|o| {
                o.ss58() == hotkey.ss58()
                    && o.state_dir == settings.agent.state_dir
                    && o.netuid == settings.chain.netuid
            });
            match reuse {
                Some(i) => plan.push(Ok(i)),
                None => plan.push(Err(Miner::open(&settings, m, hotkey, self.opts.dry_run)
                    .map_err(|e| format!("miner {}: {}", m.name, crate::secret::error_chain(&e)))?)),
            }
        }
        let connector: Arc<dyn Connector> = if self.fixed_connector {
            self.world.connector.clone()
        } else {
            Arc::new(NetConnector::new(&settings).map_err(|e| crate::secret::error_chain(&e))?)
        };
        let new_server = if settings.agent.listen != self.world.settings.agent.listen {
            match settings.agent.listen {
                Some(addr) => {
                    let l = Server::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
                    Some(Some(l))
                }
                None => Some(None),
            }
        } else {
            None
        };
        let notes = super::tell::start(&settings, self.notify_poster.clone(), self.clock.clone(), &self.shared)
            .map_err(|e| crate::secret::error_chain(&e))?;
        // Commit.
        let mut old: Vec<Option<Miner>> = std::mem::take(&mut self.world.miners).into_iter().map(Some).collect();
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
            self.shared.state_saved(m.ss58(), None);
            self.shared.metrics.forget_miner(m.ss58());
        }
        if settings.chain != self.world.settings.chain {
            self.chain = None;
        }
        if settings.agent.log_format != self.world.settings.agent.log_format {
            tracing::warn!("a new [agent] log_format takes effect after a restart");
        }
        if let Some(listener) = new_server {
            if let Some(s) = self.server.take() {
                s.stop().await;
            }
            if let Some(l) = listener {
                match Server::spawn(l, self.shared.clone()) {
                    Ok(s) => self.server = Some(s),
                    Err(e) => tracing::error!(error = %e, "cannot serve the health/metrics endpoint"),
                }
            }
        }
        let files = if self.watch_files { reload::watched_files(&settings) } else { Default::default() };
        if &files != self.watch.files() {
            self.watch = FileWatch::new(files);
        }
        self.shared.set_ready_window(ready_window(&settings));
        self.scheduler.reconfigure(ScheduleConfig::from(&settings.reconcile), self.clock.now());
        self.world = World::new(settings, connector, miners, self.opts.dry_run);
        self.swap_notes(notes).await;
        Ok(())
    }
}
