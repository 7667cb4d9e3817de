//! `patrol run`: the long-running agent that keeps every configured miner's PAT stored and valid at
//! every eligible validator, as a well-behaved systemd service.
//!
//! # Architecture
//! One **main loop** (this file) owns all mutable state and never waits on the network. It
//! `select!`s over:
//! - **signals** ([`reload::Signals`]): SIGTERM/SIGINT stop, SIGHUP reloads;
//! - **the job in flight** (at most one, a spawned task, [`job`]): a *round* reads the validator set
//!   once per netuid (shared by every miner) and runs one pass per miner; a *re-check* runs passes
//!   limited to validators whose own timer fired. The job gets clones and owned values and hands
//!   back new state, so nothing is shared with it;
//! - **timers** ([`schedule::Scheduler`], pure, shared with the simulation): the next round
//!   (interval + jitter, or a capped backoff after a round that could not read the validator set),
//!   the next probe sweep, and each validator's re-check time (its backoff, inconclusive re-check or
//!   budget-stretched interval, from the persisted history);
//! - **file changes** ([`reload::FileWatch`], debounced) of the config and PAT files;
//! - **the heartbeat** (every [`HEARTBEAT`], feeding `/healthz`) and **the watchdog** (`WATCHDOG=1`
//!   at half `WATCHDOG_USEC`, sent from this loop, so a wedged loop gets the service restarted).
//!
//! The HTTP endpoint ([`http`]) runs as its own task and only reads [`http::Shared`]; `/status`
//! ([`board`]) answers from the copy of each miner's state the loop publishes after every job.
//!
//! Files: this one has the loop itself; `cycle.rs` starts what the scheduler says is due and takes
//! a job's results in; `world.rs` holds the configuration in force and swaps in a reloaded one;
//! [`miner`] is one miner's runtime (state, lock, what was logged); [`notify`] speaks `sd_notify`;
//! `tell.rs` feeds each job's results to the miner's notifications ([`crate::notify`]: one message
//! per target per job, the dead-man ping after each round, queued off this loop).
//!
//! The network is behind a [`Connector`], which hands each miner its
//! [`Transport`](crate::reconcile::transport::Transport), and time behind a
//! [`Clock`](crate::reconcile::transport::Clock): production uses the dendrite, the GitHub client
//! and the system clock; the agent tests use a scripted transport and tokio's paused clock.
//!
//! # Lifecycle
//! Start: install signal handlers, open every miner (hotkey, state lock, state), bind the endpoint,
//! run the first round (checking every validator not in backoff), then `READY=1` with a `STATUS=`
//! line ([`status`]). A reload (SIGHUP or a file change) sends `RELOADING=1`, waits for the job in
//! flight, validates the new configuration completely before swapping it in (a bad one is logged and
//! the old one keeps running), then `READY=1`, and starts a round at once; a rotated PAT makes that
//! round re-check every validator. Stop: `STOPPING=1`, no new work, the job in flight gets up to the
//! longer of the check and broadcast timeouts to finish (its calls are bounded by those timeouts),
//! state is saved, exit 0. A second SIGTERM/SIGINT exits at once.
//!
//! # Guarantees
//! - `--dry-run` never sends the PAT (the pass config says so) and never writes state.
//! - The PAT is never logged: only its redacted tail and fingerprint appear.
//! - State changes are logged once ([`miner`]), not on every pass.

pub mod board;
mod cycle;
pub mod http;
pub mod job;
pub mod miner;
pub mod notify;
pub mod reload;
pub mod schedule;
pub mod status;
mod tell;
mod world;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{MissedTickBehavior, interval, sleep_until};

use self::http::{Server, Shared};
use self::job::{Done, Kind};
use self::miner::{Miner, MinerError};
use self::notify::Notifier;
use self::reload::{DEBOUNCE, FileWatch, Signal, Signals};
use self::schedule::{ScheduleConfig, Scheduler};
use self::world::{World, ready_window, stop_grace};
use crate::chain::ChainClient;
use crate::config::{ConfigError, Settings};
use crate::github::{GithubClient, GithubError, GithubOptions};
use crate::reconcile::core::Secs;
use crate::reconcile::transport::{Clock, NetLimits, NetTransport, SystemClock, Transport};
use crate::validators::Selection;

/// How often the main loop proves it is alive to `/healthz`.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// Exit status after a second stop signal: 128 + the signal number, as a shell reports it.
fn forced_exit_code(signal: &str) -> i32 {
    if signal == "SIGINT" { 130 } else { 143 }
}

/// Options from the command line that are not in the config file.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Probe and plan, never send the PAT, never write state.
    pub dry_run: bool,
}

/// Re-reads and validates the configuration for a reload (the CLI's own settings loader, so flags
/// given at start keep applying).
pub type Loader<'a> = &'a (dyn Fn() -> Result<Settings, ConfigError> + Sync);

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
        let github = GithubClient::new(GithubOptions {
            api_url: settings.github.api_url.clone(),
            timeout: settings.github.timeout,
            ..GithubOptions::default()
        })?;
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

/// Where stop and reload requests come from.
pub enum SignalSource {
    /// SIGTERM/SIGINT/SIGHUP.
    Unix(Signals),
    /// Sent by a test.
    Channel(mpsc::Receiver<Signal>),
}

impl SignalSource {
    async fn recv(&mut self) -> Signal {
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
    pub notify_poster: Option<Arc<dyn crate::notify::Poster>>,
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
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("miner {name}")]
    Miner {
        name: String,
        #[source]
        source: MinerError,
    },
    #[error("hotkey {hotkey} is configured for more than one miner ({names})")]
    DuplicateHotkey { hotkey: String, names: String },
    #[error(
        "cannot listen on {addr} for /healthz, /readyz, /metrics and /status (set [agent] listen or --listen; \"off\" disables it)"
    )]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the GitHub client")]
    Github(#[from] GithubError),
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    #[error("notifications")]
    Notify(#[from] crate::notify::NotifyError),
}

impl AgentError {
    /// Bounded label (metrics, JSON error type).
    pub fn kind(&self) -> &'static str {
        match self {
            AgentError::Miner { source: MinerError::Wallet(_), .. } => "wallet_error",
            AgentError::Miner { source: MinerError::State(_), .. } => "state_error",
            AgentError::Miner { .. } => "miner_error",
            AgentError::DuplicateHotkey { .. } => "config_error",
            AgentError::Listen { .. } => "listen_error",
            AgentError::Github(_) => "config_error",
            AgentError::Signals(_) => "signal_error",
            AgentError::Notify(_) => "config_error",
        }
    }
}

/// Run the agent until SIGTERM/SIGINT. Errors only at start-up (bad hotkey, state locked by another
/// patrol, listen address taken); afterwards every failure is logged, shown in STATUS and metrics,
/// and retried.
pub async fn run(settings: Settings, load: Loader<'_>, opts: Options) -> Result<(), AgentError> {
    let deps = Deps::production().map_err(AgentError::Signals)?;
    run_with(settings, load, opts, deps).await
}

/// [`run`] on the given dependencies.
pub async fn run_with(settings: Settings, load: Loader<'_>, opts: Options, deps: Deps) -> Result<(), AgentError> {
    let Deps { connector, clock, mut signals, watch_files, notify_poster } = deps;
    let notifier = Notifier::new();
    notifier.status("starting: first pass running");
    let mut miners: Vec<Miner> = Vec::new();
    for m in &settings.miners {
        let hotkey = m.load_hotkey().map_err(|e| AgentError::Miner { name: m.name.clone(), source: e.into() })?;
        if let Some(other) = miners.iter().find(|o| o.ss58() == hotkey.ss58()) {
            return Err(AgentError::DuplicateHotkey {
                hotkey: hotkey.ss58().to_string(),
                names: format!("{}, {}", other.name(), m.name),
            });
        }
        let miner = Miner::open(&settings, m, hotkey, opts.dry_run)
            .map_err(|source| AgentError::Miner { name: m.name.clone(), source })?;
        miners.push(miner);
    }
    let fixed_connector = connector.is_some();
    let connector: Arc<dyn Connector> = match connector {
        Some(c) => c,
        None => Arc::new(NetConnector::new(&settings)?),
    };
    let shared = Shared::new(ready_window(&settings));
    let server = match settings.agent.listen {
        Some(addr) => {
            let listener = Server::bind(addr).await.map_err(|source| AgentError::Listen { addr, source })?;
            Some(Server::spawn(listener, shared.clone()).map_err(|source| AgentError::Listen { addr, source })?)
        }
        None => None,
    };
    let notes = tell::start(&settings, notify_poster.clone(), clock.clone(), &shared)?;
    if let Some(n) = &notes {
        for m in &mut miners {
            n.resume(&mut m.state.notify);
        }
    }
    let watch = FileWatch::new(if watch_files { reload::watched_files(&settings) } else { Default::default() });
    tracing::info!(
        miners = miners.len(),
        netuid = settings.chain.netuid,
        interval = %humantime::format_duration(settings.reconcile.interval),
        dry_run = opts.dry_run,
        "patrol agent starting"
    );
    let started_at = clock.now();
    let scheduler = Scheduler::new(ScheduleConfig::from(&settings.reconcile), started_at);
    let world = World::new(settings, connector, miners, opts.dry_run);
    let mut agent = Agent {
        world,
        load,
        opts,
        shared,
        server,
        notifier,
        clock,
        fixed_connector,
        watch_files,
        scheduler,
        started_at,
        chain: None,
        selection: None,
        view_error: None,
        job: None,
        note: None,
        watch,
        notes,
        notify_poster,
        told_start: false,
    };
    agent.publish_board();
    agent.main_loop(&mut signals).await;
    agent.shutdown().await;
    Ok(())
}

/// A job in flight.
struct InFlight {
    handle: JoinHandle<Done>,
    kind: Kind,
}

struct Agent<'a> {
    world: World,
    load: Loader<'a>,
    opts: Options,
    shared: Arc<Shared>,
    server: Option<Server>,
    notifier: Notifier,
    clock: Arc<dyn Clock>,
    /// The connector came with the dependencies (tests): keep it across reloads.
    fixed_connector: bool,
    watch_files: bool,
    scheduler: Scheduler,
    /// When the agent started (`/status` uptime).
    started_at: Secs,
    /// Kept across rounds (one connection); lent to the round in flight.
    chain: Option<ChainClient>,
    /// The last round's eligible validators (re-checks run on it).
    selection: Option<Arc<Selection>>,
    /// Why the last round could not read the validator set (logged once).
    view_error: Option<String>,
    job: Option<InFlight>,
    /// Appended to STATUS (a rejected reload).
    note: Option<String>,
    watch: FileWatch,
    /// Notifications in force (`None`: none configured).
    notes: Option<crate::notify::Notifications>,
    notify_poster: Option<Arc<dyn crate::notify::Poster>>,
    /// `started` was announced (after the first round).
    told_start: bool,
}

/// What woke the main loop.
enum Event {
    Signal(Signal),
    JobDone(Result<Done, tokio::task::JoinError>),
    GraceOver,
    Heartbeat,
    Watchdog,
    FileChanged(std::path::PathBuf),
    Debounced,
    Timer,
}

impl Agent<'_> {
    /// Unix second `at` as a tokio deadline. Firing at the start of the second (not a fraction
    /// before it) matters: histories compare whole seconds, and a timer that fired early would find
    /// nothing due and spin.
    fn deadline(&self, at: Secs) -> tokio::time::Instant {
        let wait = (at as f64 - self.clock.now_f64()).clamp(0.0, 1e9);
        tokio::time::Instant::now() + Duration::from_secs_f64(wait)
    }

    async fn main_loop(&mut self, signals: &mut SignalSource) {
        let mut heartbeat = interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut watchdog = notify::watchdog_interval().map(|d| {
            let mut i = interval(d);
            i.set_missed_tick_behavior(MissedTickBehavior::Delay);
            i
        });
        let mut debounce: Option<tokio::time::Instant> = None;
        let mut changed_file: Option<std::path::PathBuf> = None;
        let mut reload_reason: Option<String> = None;
        // Set once stopping: how long the job in flight may still take.
        let mut stopping: Option<tokio::time::Instant> = None;
        loop {
            if self.job.is_none() {
                if stopping.is_some() {
                    break;
                }
                if let Some(why) = reload_reason.take() {
                    self.reload(&why).await;
                }
                self.start_due_work();
            }
            let wake =
                if self.job.is_none() && stopping.is_none() { Some(self.deadline(self.next_wake())) } else { None };
            let job = &mut self.job;
            let watch = &mut self.watch;
            let event = tokio::select! {
                s = signals.recv() => Event::Signal(s),
                r = async { match job.as_mut() { Some(j) => (&mut j.handle).await, None => std::future::pending().await } } => Event::JobDone(r),
                () = async { match stopping { Some(t) => sleep_until(t).await, None => std::future::pending().await } }, if job.is_some() => Event::GraceOver,
                _ = heartbeat.tick() => Event::Heartbeat,
                _ = async { match watchdog.as_mut() { Some(i) => i.tick().await, None => std::future::pending().await } } => Event::Watchdog,
                p = watch.changed() => Event::FileChanged(p),
                () = async { match debounce { Some(t) => sleep_until(t).await, None => std::future::pending().await } } => Event::Debounced,
                () = async { match wake { Some(t) => sleep_until(t).await, None => std::future::pending().await } } => Event::Timer,
            };
            match event {
                Event::Signal(Signal::Stop(name)) => {
                    if stopping.is_some() {
                        tracing::warn!("second {name}: exiting now without waiting for calls in flight");
                        std::process::exit(forced_exit_code(name));
                    }
                    let grace = stop_grace(&self.world.settings);
                    tracing::info!(grace = %humantime::format_duration(grace), "{name}: stopping");
                    let status = if self.job.is_some() {
                        format!("stopping: waiting up to {} for calls in flight", status::human(grace))
                    } else {
                        "stopping".to_string()
                    };
                    self.notifier.stopping(&status);
                    self.tell_stopping(name);
                    stopping = Some(tokio::time::Instant::now() + grace);
                }
                Event::Signal(Signal::Reload) => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    self.begin_reload(&mut reload_reason, "SIGHUP".into());
                }
                Event::JobDone(r) => self.finish(r),
                Event::GraceOver => {
                    if let Some(j) = self.job.take() {
                        tracing::warn!(
                            "calls in flight did not finish in time; abandoning them (the last saved state stays)"
                        );
                        j.handle.abort();
                        // The aborted pass may have checkpointed before broadcasting; that file is
                        // newer than the in-memory state, which shutdown would otherwise save over it.
                        for m in &mut self.world.miners {
                            m.reload_state();
                        }
                    }
                }
                Event::Heartbeat => self.shared.beat(),
                Event::Watchdog => self.notifier.watchdog(),
                Event::FileChanged(p) => {
                    tracing::debug!(file = %p.display(), "file changed");
                    debounce = Some(tokio::time::Instant::now() + DEBOUNCE);
                    changed_file = Some(p);
                }
                Event::Debounced => {
                    debounce = None;
                    let file = changed_file.take().map(|p| p.display().to_string()).unwrap_or_default();
                    tracing::info!(%file, "changed on disk: reloading");
                    self.begin_reload(&mut reload_reason, format!("{file} changed"));
                }
                Event::Timer => {}
            }
        }
    }
}

impl Agent<'_> {
    fn status_line(&self) -> String {
        let views: Vec<(String, status::MinerView)> =
            self.world.miners.iter().map(|m| (m.name().to_string(), m.status_view())).collect();
        let refs: Vec<(&str, &status::MinerView)> = views.iter().map(|(n, v)| (n.as_str(), v)).collect();
        let now = self.clock.now();
        let next = if self.job.is_some() {
            None
        } else {
            Some(Duration::from_secs(self.scheduler.next_round().saturating_sub(now)))
        };
        status::line(&refs, next, self.opts.dry_run, self.note.as_deref())
    }

    /// STATUS after a job; the first one also says READY.
    fn publish_status(&mut self) {
        let line = self.status_line();
        if self.notifier.is_ready() {
            self.notifier.status(&line);
        } else {
            tracing::info!(status = %line, "first pass done; ready");
            self.notifier.ready(&line);
        }
        self.shared.metrics.set_ready(self.shared.readiness(std::time::Instant::now()).is_ok());
        self.publish_board();
    }

    /// Flush the notifications (within `[notify] flush`), save every miner's state (with what
    /// could not be delivered) and stop the endpoint.
    async fn shutdown(mut self) {
        if let Some(n) = self.notes.take() {
            let left = n.close().await;
            for m in &mut self.world.miners {
                let hotkey = m.ss58().to_string();
                crate::notify::keep(&mut m.state.notify, &hotkey, &left);
            }
        }
        for m in &mut self.world.miners {
            m.save();
        }
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
        tracing::info!("stopped");
    }
}

#[cfg(test)]
mod tell_tests;
#[cfg(test)]
mod tests;
