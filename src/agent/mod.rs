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
//!   budget-stretched interval, from the persisted history). When one fires, the scheduler's
//!   wake-up plan ([`schedule::Scheduler::plan`], which the simulation executes too) says which job
//!   to start, for which miners, with what work;
//! - **file changes** ([`reload::FileWatch`], debounced) of the config and PAT files;
//! - **the heartbeat** (every [`HEARTBEAT`], feeding `/healthz`) and **the watchdog** (`WATCHDOG=1`
//!   at half `WATCHDOG_USEC`, sent from this loop, so a wedged loop gets the service restarted).
//!
//! The HTTP endpoint ([`http`]) runs as its own task and only reads [`http::Shared`]; `/status`
//! ([`board`]) answers from the copy of each miner's state the loop publishes after every job.
//!
//! Files: this one has the loop itself and the one `impl Agent`, which wires the pieces with a
//! life of their own to it — each its own type: `cycle.rs` (what runs when: the scheduler, the
//! validator set re-checks run on; it starts the plan's job and takes a job's results in),
//! `world.rs` (the configuration in force, and building a reloaded one before the swap), `tell.rs`
//! (the miner's notifications, [`crate::notify`]: one message per target per job, the dead-man
//! ping after each round, queued off this loop), [`board`] (`/status`). [`miner`] is one miner's
//! runtime (state, lock, what was logged); [`notify`] speaks `sd_notify`; `deps.rs` is what the
//! agent runs on ([`Deps`]).
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
mod deps;
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

use tokio::time::{MissedTickBehavior, interval, sleep_until};

use self::cycle::Cycle;
pub use self::deps::{Connector, Deps, NetConnector, SignalSource};
use self::http::{Server, Shared};
use self::job::{Done, InFlight};
use self::miner::{Miner, MinerError};
use self::notify::Notifier;
use self::reload::{DEBOUNCE, FileWatch, Signal};
use self::tell::Teller;
use self::world::{World, ready_window, stop_grace};
use crate::config::{ConfigError, Settings};
use crate::github::GithubError;
use crate::heap::release_freed_memory;
use crate::reconcile::core::Secs;
use crate::reconcile::transport::Clock;
use crate::status_view::AgentFacts;

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
    let mut miners = open_miners(&settings, opts.dry_run)?;
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
    let teller = Teller::start(&settings, notify_poster, clock.clone(), &shared, &mut miners)?;
    let watch = FileWatch::new(if watch_files { reload::watched_files(&settings) } else { Default::default() });
    tracing::info!(
        miners = miners.len(),
        netuid = settings.chain.netuid,
        interval = %humantime::format_duration(settings.reconcile.interval),
        dry_run = opts.dry_run,
        "patrol agent starting"
    );
    let started_at = clock.now();
    let mut agent = Agent {
        cycle: Cycle::new(&settings, started_at),
        world: World::new(settings, connector, miners, opts.dry_run),
        load,
        opts,
        shared,
        server,
        notifier,
        clock,
        fixed_connector,
        watch_files,
        started_at,
        job: None,
        note: None,
        watch,
        teller,
    };
    agent.publish_board();
    agent.main_loop(&mut signals).await;
    agent.shutdown().await;
    Ok(())
}

/// Open every configured miner (hotkey, state lock, state); one hotkey may serve one miner only.
fn open_miners(settings: &Settings, dry_run: bool) -> Result<Vec<Miner>, AgentError> {
    let mut miners: Vec<Miner> = Vec::new();
    for m in &settings.miners {
        let hotkey = m.load_hotkey().map_err(|e| AgentError::Miner { name: m.name.clone(), source: e.into() })?;
        if let Some(other) = miners.iter().find(|o| o.ss58() == hotkey.ss58()) {
            return Err(AgentError::DuplicateHotkey {
                hotkey: hotkey.ss58().to_string(),
                names: format!("{}, {}", other.name(), m.name),
            });
        }
        let miner = Miner::open(settings, m, hotkey, dry_run)
            .map_err(|source| AgentError::Miner { name: m.name.clone(), source })?;
        miners.push(miner);
    }
    Ok(miners)
}

/// The agent: the main loop's state. The pieces with a life of their own have their own types —
/// [`World`] (the configuration in force), [`Cycle`] (what runs when), [`Teller`] (the
/// notifications) — and this one `impl` wires them to the loop.
struct Agent<'a> {
    world: World,
    cycle: Cycle,
    load: Loader<'a>,
    opts: Options,
    shared: Arc<Shared>,
    server: Option<Server>,
    notifier: Notifier,
    clock: Arc<dyn Clock>,
    /// The connector came with the dependencies (tests): keep it across reloads.
    fixed_connector: bool,
    watch_files: bool,
    /// When the agent started (`/status` uptime).
    started_at: Secs,
    job: Option<InFlight>,
    /// Appended to STATUS (a rejected reload).
    note: Option<String>,
    watch: FileWatch,
    teller: Teller,
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
                self.job = self.cycle.start(self.clock.now(), &mut self.world, &self.shared.metrics);
            }
            let wake = if self.job.is_none() && stopping.is_none() {
                Some(self.deadline(self.cycle.next_wake(&self.world)))
            } else {
                None
            };
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
                    self.teller.stopping(name);
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

    /// Take a finished job's results, then say so: STATUS, `/status`, the notifications.
    fn finish(&mut self, r: Result<Done, tokio::task::JoinError>) {
        let kind = self.job.take().map(|j| j.kind);
        let now = self.clock.now();
        let news = self.cycle.finish(r, kind, now, &mut self.world, &self.shared, &self.teller);
        let line = self.publish_status();
        self.teller.after_job(news, &self.world.miners, &line);
        // Once per job: an idle agent must not keep its last fan-out's peak as RSS.
        release_freed_memory();
    }

    fn status_line(&self) -> String {
        let views: Vec<(String, status::MinerView)> =
            self.world.miners.iter().map(|m| (m.name().to_string(), m.status_view())).collect();
        let refs: Vec<(&str, &status::MinerView)> = views.iter().map(|(n, v)| (n.as_str(), v)).collect();
        let now = self.clock.now();
        let next = if self.job.is_some() {
            None
        } else {
            Some(Duration::from_secs(self.cycle.next_round().saturating_sub(now)))
        };
        status::line(&refs, next, self.opts.dry_run, self.note.as_deref())
    }

    /// STATUS after a job (the first one also says READY), `/readyz`, `/status`; returns the line.
    fn publish_status(&mut self) -> String {
        let line = self.status_line();
        if self.notifier.is_ready() {
            self.notifier.status(&line);
        } else {
            tracing::info!(status = %line, "first pass done; ready");
            self.notifier.ready(&line);
        }
        self.shared.metrics.set_ready(self.shared.readiness(std::time::Instant::now()).is_ok());
        self.publish_board();
        line
    }

    /// `/status`: what the miners' states say, and the agent's facts.
    fn publish_board(&self) {
        let facts = AgentFacts {
            version: crate::version::LONG.to_string(),
            pid: std::process::id(),
            started_at: self.started_at,
            next_round_at: Some(self.cycle.next_round()),
            dry_run: self.opts.dry_run,
        };
        let (limits, miners) = self.world.board_copy();
        self.shared.board.publish(limits, miners, self.clock.clone(), facts);
    }

    /// A reload was asked for: say so to systemd at once (`Type=notify-reload` expects
    /// `RELOADING=1` promptly after its SIGHUP), then apply it when no job is in flight.
    fn begin_reload(&mut self, pending: &mut Option<String>, why: String) {
        if pending.is_none() {
            let wait = if self.job.is_some() { "; waiting for the pass in flight" } else { "" };
            self.notifier.reloading(&format!("reloading ({why}){wait}"));
        }
        *pending = Some(why);
    }

    /// Re-read the configuration; apply it only if all of it is usable. `RELOADING=1` was sent by
    /// [`Agent::begin_reload`].
    async fn reload(&mut self, why: &str) {
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
                self.cycle.round_now(self.clock.now());
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
        let next = self.world.prepare(settings, self.opts.dry_run, self.fixed_connector)?;
        let listen = next.settings.agent.listen;
        let new_listener = if listen != self.world.settings.agent.listen {
            match listen {
                Some(addr) => {
                    Some(Some(Server::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?))
                }
                None => Some(None),
            }
        } else {
            None
        };
        let notes = self.teller.prepare(&next.settings, &self.shared).map_err(|e| crate::secret::error_chain(&e))?;
        // Commit.
        let old = self.world.commit(next, &self.shared, self.opts.dry_run);
        let settings = &self.world.settings;
        self.cycle.reconfigure(settings, settings.chain != old.chain, self.clock.now());
        if settings.agent.log_format != old.agent.log_format {
            tracing::warn!("a new [agent] log_format takes effect after a restart");
        }
        if let Some(listener) = new_listener {
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
        let files = if self.watch_files { reload::watched_files(&self.world.settings) } else { Default::default() };
        if &files != self.watch.files() {
            self.watch = FileWatch::new(files);
        }
        self.shared.set_ready_window(ready_window(&self.world.settings));
        self.teller.swap(notes).await;
        Ok(())
    }

    /// Flush the notifications (within `[notify] flush`), save every miner's state (with what
    /// could not be delivered) and stop the endpoint.
    async fn shutdown(mut self) {
        self.teller.close(&mut self.world.miners).await;
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
mod tests;
