//! What the agent runs on: the network behind a [`Connector`] (each miner's
//! [`Transport`](crate::reconcile::transport::Transport)), the clock, where stop and reload
//! requests come from, file watching and the notifications' poster ([`Deps`]). Production uses the
//! dendrite, the GitHub client, the system clock and Unix signals; the agent tests a scripted
//! transport, tokio's paused clock and a channel.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::miner::Miner;
use super::reload::{Signal, Signals};
use crate::config::Settings;
use crate::github::{GithubClient, GithubError, GithubOptions};
use crate::notify::Poster;
use crate::reconcile::transport::script::Script;
use crate::reconcile::transport::{Clock, NetLimits, NetTransport, SystemClock, Transport};

/// Hands each miner the transport its passes run on.
pub trait Connector: Send + Sync {
    /// The transport for `miner` under `settings`.
    fn connect(&self, settings: &Settings, miner: &Miner) -> Arc<dyn Transport>;
}

/// The real network: the miner's dendrite and one GitHub client, with `[reconcile]`'s limits.
#[derive(Debug)]
pub struct NetConnector {
    github: Arc<GithubClient>,
}

impl NetConnector {
    /// A connector with a GitHub client for `[github]`.
    pub fn new(settings: &Settings) -> Result<NetConnector, GithubError> {
        let github = GithubClient::new(GithubOptions::from(&settings.github))?;
        Ok(NetConnector { github: Arc::new(github) })
    }
}

impl Connector for NetConnector {
    fn connect(&self, settings: &Settings, miner: &Miner) -> Arc<dyn Transport> {
        Arc::new(NetTransport::new(
            miner.dendrite.clone(),
            self.github.clone(),
            NetLimits::from_settings(&settings.reconcile),
        ))
    }
}

/// Every miner on one scripted transport ([`Deps::scripted`]).
struct ScriptConnector(Arc<Script>);

impl Connector for ScriptConnector {
    fn connect(&self, _: &Settings, _: &Miner) -> Arc<dyn Transport> {
        self.0.clone()
    }
}

/// Where stop and reload requests come from.
pub enum SignalSource {
    /// SIGTERM/SIGINT/SIGHUP.
    Unix(Signals),
    /// Sent by a test.
    Channel(mpsc::Receiver<Signal>),
}

impl SignalSource {
    pub(super) async fn recv(&mut self) -> Signal {
        match self {
            SignalSource::Unix(s) => s.recv().await,
            SignalSource::Channel(rx) => match rx.recv().await {
                Some(s) => s,
                // The sender is gone: nobody can stop us any more, so stop.
                None => Signal::Stop("channel closed"),
            },
        }
    }
}

/// What the agent runs on. [`Deps::production`] for `patrol run`.
pub struct Deps {
    /// `None`: a [`NetConnector`] built from (and rebuilt on reload of) the settings.
    pub connector: Option<Arc<dyn Connector>>,
    pub clock: Arc<dyn Clock>,
    pub signals: SignalSource,
    /// Watch the config and PAT files for changes.
    pub watch_files: bool,
    /// Where notifications go (`None`: the network; tests hand in a recorder).
    pub notify_poster: Option<Arc<dyn Poster>>,
}

impl Deps {
    /// The network, the system clock, Unix signals, file watching.
    pub fn production() -> std::io::Result<Deps> {
        Ok(Deps {
            connector: None,
            clock: Arc::new(SystemClock),
            signals: SignalSource::Unix(Signals::install()?),
            watch_files: true,
            notify_poster: None,
        })
    }

    /// Every miner on `script` (its clock too), signals from the returned sender, no file
    /// watching, notifications to `poster`: the agent in virtual time, for tests.
    pub fn scripted(script: &Arc<Script>, poster: Option<Arc<dyn Poster>>) -> (Deps, mpsc::Sender<Signal>) {
        let (tx, rx) = mpsc::channel(4);
        let deps = Deps {
            connector: Some(Arc::new(ScriptConnector(script.clone()))),
            clock: script.clone(),
            signals: SignalSource::Channel(rx),
            watch_files: false,
            notify_poster: poster,
        };
        (deps, tx)
    }
}
