//! The agent's HTTP endpoint: `/healthz` (the main loop is alive), `/readyz` (a round finished
//! recently on a fresh validator set) and `/metrics` (Prometheus). Loopback by default
//! (`[agent] listen`), `off` disables it.
//!
//! Owns the health bookkeeping the endpoints answer from ([`Shared`]); the main loop writes it, the
//! handlers only read. Handlers never touch the network or the PAT, so a scrape can't stall the
//! agent or leak anything.
//!
//! `/metrics` speaks OpenMetrics when the scraper asks for it in `Accept` (Prometheus does), and the
//! classic text format 0.0.4 otherwise (curl, older scrapers, the textfile collector's format).
//!
//! Served by the accept loop the validator axon uses ([`crate::serve`]) with [`LIMITS`]: idle,
//! slow and silent connections are timed out, and at most [`MAX_CONNECTIONS`] are open, so no
//! number of them can take the descriptors the agent needs for its PAT file, state and validators.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::serve::Limits;

/// `/healthz` fails when the main loop has not beaten for this long (it beats every
/// [`super::HEARTBEAT`]; six missed beats is a stuck loop, not a slow one).
pub const LIVENESS_LIMIT: Duration = Duration::from_secs(30);

/// Connections the endpoint keeps open at once (and at most half the open-file limit): a scraper
/// or two and a health check need a handful.
pub const MAX_CONNECTIONS: usize = 32;

/// The endpoint's limits: the axon's header-read and idle timeouts, [`MAX_CONNECTIONS`], and the
/// grace [`Server::stop`] gives a scrape in flight.
pub const LIMITS: Limits = Limits {
    header_read_timeout: Duration::from_secs(10),
    idle_timeout: Duration::from_secs(5),
    max_connections: MAX_CONNECTIONS,
    shutdown_grace: Duration::from_secs(2),
    trim_after_bursts: false,
};

/// Where the validator set of the last good round came from, and when.
#[derive(Debug, Clone)]
pub struct MetagraphSeen {
    pub netuid: u16,
    /// When the agent got it.
    pub at: Instant,
    /// Its age at that moment (non-zero for the on-disk cache).
    pub age_at_read: Duration,
    /// `chain`, `cache` or `static`.
    pub source: &'static str,
}

impl MetagraphSeen {
    /// Age now.
    pub fn age(&self, now: Instant) -> Duration {
        self.age_at_read + now.saturating_duration_since(self.at)
    }
}

#[derive(Debug)]
struct Health {
    heartbeat: Instant,
    last_round: Option<Instant>,
    /// 2 × (interval + jitter): a round must have finished within this.
    ready_window: Duration,
    metagraph: Option<MetagraphSeen>,
    /// Miners whose state could not be saved after their last pass, and why.
    unsaved: std::collections::BTreeMap<String, String>,
}

/// State shared by the main loop and the HTTP handlers.
pub struct Shared {
    pub metrics: Metrics,
    pub board: super::board::Board,
    health: Mutex<Health>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("health", &*self.health()).finish_non_exhaustive()
    }
}

impl Shared {
    /// Fresh state: alive, not ready.
    pub fn new(ready_window: Duration) -> Arc<Shared> {
        let metrics = Metrics::new();
        metrics.init_reloads();
        Arc::new(Shared {
            metrics,
            board: Default::default(),
            health: Mutex::new(Health {
                heartbeat: Instant::now(),
                last_round: None,
                ready_window,
                metagraph: None,
                unsaved: Default::default(),
            }),
        })
    }

    fn health(&self) -> MutexGuard<'_, Health> {
        // A panicking handler must not take health reporting down with it.
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The main loop is alive.
    pub fn beat(&self) {
        self.health().heartbeat = Instant::now();
    }

    /// A round read the validator set and ran the passes.
    pub fn round_finished(&self, metagraph: MetagraphSeen) {
        let mut h = self.health();
        h.last_round = Some(Instant::now());
        h.metagraph = Some(metagraph);
    }

    /// Whether a miner's state was saved after its last pass (`error`: why not). A state that can
    /// not be saved makes the agent not ready: what it learns and sends would be forgotten by a
    /// restart (and a restart re-sends the PAT everywhere).
    pub fn state_saved(&self, hotkey: &str, error: Option<&str>) {
        let mut h = self.health();
        match error {
            Some(e) => h.unsaved.insert(hotkey.to_string(), e.to_string()),
            None => h.unsaved.remove(hotkey),
        };
        drop(h);
        self.metrics.set_state_save_failed(hotkey, error.is_some());
    }

    /// The interval changed on a reload.
    pub fn set_ready_window(&self, window: Duration) {
        self.health().ready_window = window;
    }

    /// `Ok` when alive, else why not.
    pub fn liveness(&self, now: Instant) -> Result<(), String> {
        let since = now.saturating_duration_since(self.health().heartbeat);
        if since > LIVENESS_LIMIT {
            return Err(format!("the main loop has not run for {}s", since.as_secs()));
        }
        Ok(())
    }

    /// `Ok` when ready: a round finished within the window, on a validator set read from the chain
    /// (or the static list) rather than the on-disk cache. Else why not.
    pub fn readiness(&self, now: Instant) -> Result<(), String> {
        let h = self.health();
        let Some(last) = h.last_round else {
            return Err("no pass has finished yet".into());
        };
        let since = now.saturating_duration_since(last);
        if since > h.ready_window {
            return Err(format!(
                "the last pass finished {}s ago, more than {}s (2 × interval)",
                since.as_secs(),
                h.ready_window.as_secs()
            ));
        }
        if let Some((hotkey, e)) = h.unsaved.iter().next() {
            return Err(format!("the state of miner {hotkey} cannot be saved: {e}"));
        }
        match &h.metagraph {
            Some(m) if m.source == "cache" => Err(format!(
                "the validator set is the cached metagraph, {}s old: the chain is unreachable",
                m.age(now).as_secs()
            )),
            Some(_) => Ok(()),
            None => Err("no validator set yet".into()),
        }
    }

    /// Gauges that depend on the time of the scrape: metagraph age and readiness.
    pub fn refresh_gauges(&self, now: Instant) {
        let metagraph = self.health().metagraph.clone();
        if let Some(m) = metagraph {
            self.metrics.set_metagraph_age(m.netuid, m.age(now).as_secs_f64());
        }
        self.metrics.set_ready(self.readiness(now).is_ok());
    }
}

/// A running endpoint.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    /// Bind `addr` (errors are the caller's: a taken port is a configuration problem).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
        TcpListener::bind(addr).await
    }

    /// Serve `shared` on an already-bound listener until [`Server::stop`].
    pub fn spawn(listener: TcpListener, shared: Arc<Shared>) -> std::io::Result<Server> {
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let app = axum::Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .route("/status", get(status))
            .with_state(shared);
        let token = stop.clone();
        let handler = move |req: hyper::Request<hyper::body::Incoming>, _peer| {
            let mut app = app.clone();
            async move {
                match tower_service::Service::call(&mut app, req.map(axum::body::Body::new)).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
        };
        let task = tokio::spawn(async move {
            let shutdown = async move { token.cancelled().await };
            if let Err(e) = crate::serve::serve(listener, LIMITS, handler, shutdown).await {
                tracing::error!(error = %e, "the health/metrics endpoint stopped");
            }
        });
        tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
        Ok(Server { addr, stop, task })
    }

    /// Stop accepting, let open requests finish (bounded: scrapes are cheap), and return.
    pub async fn stop(self) {
        self.stop.cancel();
        let mut task = self.task;
        if tokio::time::timeout(LIMITS.shutdown_grace + Duration::from_secs(1), &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// `GET /status`: the agent's view as JSON ([`super::board`]).
async fn status(State(shared): State<Arc<Shared>>) -> Response {
    match shared.board.view() {
        Some(view) => axum::Json(view).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response(),
    }
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    match shared.liveness(Instant::now()) {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    match shared.readiness(Instant::now()) {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
    }
}

/// The content type Prometheus negotiates for OpenMetrics.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    shared.refresh_gauges(Instant::now());
    let wants_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        ([(header::CONTENT_TYPE, OPENMETRICS)], shared.metrics.encode_openmetrics()).into_response()
    } else {
        ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], shared.metrics.encode_prometheus()).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_a_recent_round_on_a_live_validator_set() {
        let s = Shared::new(Duration::from_secs(60));
        let now = Instant::now();
        assert!(s.readiness(now).unwrap_err().contains("no pass"));
        s.round_finished(MetagraphSeen { netuid: 74, at: now, age_at_read: Duration::ZERO, source: "chain" });
        assert_eq!(s.readiness(Instant::now()), Ok(()));
        let later = Instant::now() + Duration::from_secs(61);
        assert!(s.readiness(later).unwrap_err().contains("2 × interval"));
        s.round_finished(MetagraphSeen {
            netuid: 74,
            at: Instant::now(),
            age_at_read: Duration::from_secs(600),
            source: "cache",
        });
        assert!(s.readiness(Instant::now()).unwrap_err().contains("cached metagraph"));
        assert_eq!(s.liveness(Instant::now()), Ok(()));
        assert!(s.liveness(Instant::now() + LIVENESS_LIMIT + Duration::from_secs(1)).is_err());
    }

    /// Issue 20 item 15: a state that cannot be saved is visible in /readyz and the metrics.
    #[test]
    fn a_state_that_cannot_be_saved_makes_the_agent_not_ready() {
        let s = Shared::new(Duration::from_secs(60));
        s.round_finished(MetagraphSeen {
            netuid: 74,
            at: Instant::now(),
            age_at_read: Duration::ZERO,
            source: "chain",
        });
        s.state_saved("5Hk", Some("No space left on device (os error 28)"));
        let why = s.readiness(Instant::now()).unwrap_err();
        assert!(why.contains("5Hk") && why.contains("No space left"), "{why}");
        assert!(s.metrics.encode_prometheus().contains("patrol_state_save_failed{hotkey=\"5Hk\"} 1"));
        s.state_saved("5Hk", None);
        assert_eq!(s.readiness(Instant::now()), Ok(()));
        assert!(s.metrics.encode_prometheus().contains("patrol_state_save_failed{hotkey=\"5Hk\"} 0"));
    }
}
