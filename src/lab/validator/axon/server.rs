//! Serving the axon: our own accept loop over hyper's HTTP/1.1 connections.
//!
//! `axum::serve` has no header-read or idle timeout, no connection cap and a graceful shutdown that
//! waits for every connection however slow (issue 15 item 4: slowloris, zero-byte and idle
//! keep-alive connections stayed open 70–100 s; under `ulimit -n 256`, 300 half-sent connections
//! made every signed check time out; SIGTERM took 43 s with 5 slow clients). Here:
//!
//! - **Header read** ([`AxonConfig::header_read_timeout`], hyper's timer): from the moment a
//!   connection can take a request — just accepted, or its last response sent — until the request
//!   head is complete. A slowloris, a silent connection and an idle keep-alive connection are all
//!   closed by it. The body then gets as long again (in the handler, a 408).
//! - **Idle** ([`AxonConfig::idle_timeout`]): once a connection has served a request, no request
//!   in flight and no byte moving either way for that long closes it (an idle keep-alive
//!   connection, a client that stopped reading its answer). A fresh connection gets the
//!   header-read timeout instead, as uvicorn starts its keep-alive timer only after a response:
//!   a client whose first segment is being retransmitted is not cut off early.
//! - **Cap** ([`AxonConfig::max_connections`], at most half the open-file limit): at the cap a new
//!   connection displaces the oldest one that has had no request in flight for a second, which is
//!   a slowloris, silent or idle connection — a real dendrite sends its request the moment it
//!   connects. When every connection is busy, the new one gets an immediate `503` and is closed:
//!   a quick failure, never a hang. Sockets can thus never use up the file descriptors the store,
//!   the GitHub client and the listener need.
//! - **Shutdown**: the listener closes; connections without a request in flight close at once;
//!   requests in flight get [`AxonConfig::shutdown_grace`] to finish (keep-alive off, so their
//!   connections close after the answer); then whatever is left is dropped.
//! - **Memory**: once a burst of connections is over and no request is in flight, freed heap pages
//!   are returned to the kernel (`malloc_trim`, at most once a second), so an idle validator does
//!   not keep the peak of its last burst as RSS.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Axon;
use crate::heap::release_freed_memory;

/// A connection with no request in flight for this long may be displaced by a new one at the cap.
const DISPLACEABLE_AFTER: Duration = Duration::from_secs(1);

/// hyper's per-connection read buffer limit (its default is ~400 KB): real request heads are
/// ~1.5 KB, and a thousand slow clients must not hold 400 MB of buffers.
const MAX_BUF_SIZE: usize = 64 * 1024;

/// How often the idle check for `malloc_trim` runs.
const TRIM_CHECK: Duration = Duration::from_secs(1);

/// What a refused connection is told before it is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 59\r\nconnection: close\r\n\r\n{\"message\":\"Too many connections to this validator; retry\"}";

/// One open connection, as the accept loop and its own task see it.
#[derive(Debug)]
struct Conn {
    /// Requests on it whose answer is not built yet.
    busy: AtomicUsize,
    /// When it last had no request in flight (accepted, or its last request ended), in ms.
    idle_since: AtomicU64,
    /// When a byte last moved either way or a request ended, in ms.
    last_activity: AtomicU64,
    /// A request has been answered on it (the idle timeout applies from then on).
    served: AtomicBool,
    /// Displaced at the cap: the task closes it.
    displaced: CancellationToken,
}

/// The open connections, oldest first, and the server's clock.
#[derive(Debug)]
struct Table {
    started: Instant,
    cap: usize,
    next_id: AtomicU64,
    conns: Mutex<BTreeMap<u64, Arc<Conn>>>,
    /// Connections closed so far (the trimmer's "a burst happened" signal).
    closed: AtomicU64,
}

impl Table {
    fn new(cap: usize) -> Table {
        Table {
            started: Instant::now(),
            cap: cap.max(1),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(BTreeMap::new()),
            closed: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Room for a new connection: below the cap, or by displacing the oldest connection that
    /// has had no request in flight for [`DISPLACEABLE_AFTER`]. `None`: every connection is busy.
    fn admit(&self, now_ms: u64) -> Option<(u64, Arc<Conn>)> {
        let mut conns = self.lock();
        if conns.len() >= self.cap {
            let after = u64::try_from(DISPLACEABLE_AFTER.as_millis()).unwrap_or(u64::MAX);
            let victim = conns
                .iter()
                .find(|(_, c)| {
                    c.busy.load(Ordering::Acquire) == 0
                        && now_ms.saturating_sub(c.idle_since.load(Ordering::Acquire)) >= after
                })
                .map(|(&id, _)| id)?;
            if let Some(c) = conns.remove(&victim) {
                c.displaced.cancel();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(now_ms),
            last_activity: AtomicU64::new(now_ms),
            served: AtomicBool::new(false),
            displaced: CancellationToken::new(),
        });
        conns.insert(id, Arc::clone(&conn));
        Some((id, conn))
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
        self.closed.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests in flight on all connections.
    fn busy(&self) -> usize {
        self.lock().values().map(|c| c.busy.load(Ordering::Acquire)).sum()
    }
}

/// Marks a request in flight on its connection for as long as it lives.
struct Busy {
    conn: Arc<Conn>,
    table: Arc<Table>,
}

impl Busy {
    fn new(conn: Arc<Conn>, table: Arc<Table>) -> Busy {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        Busy { conn, table }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let now = self.table.now_ms();
        self.conn.last_activity.store(now, Ordering::Release);
        self.conn.idle_since.store(now, Ordering::Release);
        self.conn.served.store(true, Ordering::Release);
        self.conn.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The socket, noting when bytes move (for the idle timeout).
struct Tracked {
    inner: TcpStream,
    conn: Arc<Conn>,
    table: Arc<Table>,
}

impl Tracked {
    fn touch(&self) {
        self.conn.last_activity.store(self.table.now_ms(), Ordering::Release);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The listen backlog asked for (the kernel caps it at `net.core.somaxconn`): a burst of a few
/// thousand connections must not overflow the accept queue, whose dropped handshakes and first
/// segments clients only retransmit after seconds.
const LISTEN_BACKLOG: u32 = 4096;

/// Bind `addr` for an axon (`SO_REUSEADDR`, as `TcpListener::bind` sets it, and a deep backlog).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The connection cap in force: the configured one, but at most half the soft open-file limit.
pub fn effective_max_connections(configured: usize) -> usize {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct we pass and nothing else.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    let by_fds = if ok && lim.rlim_cur != libc::RLIM_INFINITY {
        usize::try_from(lim.rlim_cur / 2).unwrap_or(usize::MAX)
    } else {
        usize::MAX
    };
    configured.min(by_fds).max(1)
}

/// Once connections have closed and a check finds no request in flight and none closed since the
/// previous check (the burst is over), trim the heap; then wait for the next burst.
async fn trim_when_idle(table: Arc<Table>) {
    let mut trimmed_at = 0;
    let mut seen = 0;
    let mut tick = tokio::time::interval(TRIM_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let closed = table.closed.load(Ordering::Relaxed);
        if closed != trimmed_at && closed == seen && table.busy() == 0 {
            // It takes the allocator's locks, briefly: off the async workers.
            let _ = tokio::task::spawn_blocking(release_freed_memory).await;
            trimmed_at = closed;
        }
        seen = closed;
    }
}

/// Serve until `shutdown` resolves (see the module doc for the limits).
pub(super) async fn serve(
    axon: Axon,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let cfg = axon.inner.cfg.clone();
    let cap = effective_max_connections(cfg.max_connections);
    if cap < cfg.max_connections {
        tracing::info!(configured = cfg.max_connections, cap, "connection cap lowered to half the open-file limit");
    }
    let table = Arc::new(Table::new(cap));
    let stop = CancellationToken::new();
    let trimmer = tokio::spawn(trim_when_idle(Arc::clone(&table)));
    let mut tasks = JoinSet::new();
    let mut refused = Refusals::default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match table.admit(table.now_ms()) {
                    Some((id, conn)) => {
                        let _ = stream.set_nodelay(true);
                        let (axon, table, stop) = (axon.clone(), Arc::clone(&table), stop.clone());
                        tasks.spawn(connection(axon, stream, peer, id, conn, table, stop));
                    }
                    None => {
                        refuse(&stream);
                        refused.note(cap);
                    }
                },
                Err(e) => {
                    // Out of file descriptors or the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = joined && e.is_panic() {
                    tracing::error!(error = %e, "a connection task panicked");
                }
            }
        }
    }
    drop(listener);
    stop.cancel();
    let open = tasks.len();
    let drained = tokio::time::timeout(cfg.shutdown_grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            open,
            left = tasks.len(),
            grace = %humantime::format_duration(cfg.shutdown_grace),
            "shutdown grace over: closing connections whose requests are still in flight"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    trimmer.abort();
    Ok(())
}

/// Tell a connection beyond the cap why it is closed. Never waits: what the client already sent is
/// read first (closing with unread data would be a reset, which may discard the answer), then
/// the 503 goes out if the socket takes it; the caller drops the stream.
fn refuse(stream: &TcpStream) {
    let mut buf = [0u8; 4096];
    for _ in 0..16 {
        match stream.try_read(&mut buf) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    let _ = stream.try_write(REFUSED);
}

/// Refused connections, logged at most once a minute.
#[derive(Default)]
struct Refusals {
    count: u64,
    logged: Option<Instant>,
}

impl Refusals {
    fn note(&mut self, cap: usize) {
        self.count += 1;
        if self.logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            tracing::warn!(
                cap,
                refused = self.count,
                "connection cap reached with every connection busy; refusing new ones"
            );
            self.logged = Some(Instant::now());
            self.count = 0;
        }
    }
}

/// One connection: hyper's HTTP/1.1 state machine plus the idle timeout, displacement and
/// shutdown.
async fn connection(
    axon: Axon,
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    conn: Arc<Conn>,
    table: Arc<Table>,
    stop: CancellationToken,
) {
    let cfg = &axon.inner.cfg;
    let (header_timeout, idle) = (cfg.header_read_timeout, cfg.idle_timeout);
    let io = TokioIo::new(Tracked { inner: stream, conn: Arc::clone(&conn), table: Arc::clone(&table) });
    let service = {
        let (axon, conn, table) = (axon.clone(), Arc::clone(&conn), Arc::clone(&table));
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let busy = Busy::new(Arc::clone(&conn), Arc::clone(&table));
            let axon = axon.clone();
            async move {
                let response = super::handle(axon, Some(peer), req.map(axum::body::Body::new)).await;
                drop(busy);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(true).max_buf_size(MAX_BUF_SIZE);
    let http = builder.serve_connection(io, service);
    tokio::pin!(http);
    let mut draining = false;
    let at = |ms: u64| table.started + Duration::from_millis(ms);
    let mut next_idle_check = at(conn.last_activity.load(Ordering::Acquire)) + idle;
    loop {
        tokio::select! {
            // hyper first: bytes waiting in the socket are read (and count as activity) before the
            // idle check can look, so a busy server never takes an unread request for idleness
            biased;
            done = http.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
                break;
            }
            () = conn.displaced.cancelled() => {
                tracing::debug!(%peer, "connection displaced at the connection cap");
                break;
            }
            () = stop.cancelled(), if !draining => {
                if conn.busy.load(Ordering::Acquire) == 0 {
                    break;
                }
                http.as_mut().graceful_shutdown();
                draining = true;
            }
            () = tokio::time::sleep_until(next_idle_check.into()) => {
                let last = conn.last_activity.load(Ordering::Acquire);
                if conn.busy.load(Ordering::Acquire) > 0 || !conn.served.load(Ordering::Acquire) {
                    // a handler's own time is not idleness, and before its first request a
                    // connection has the header-read timeout; look again later
                    next_idle_check = Instant::now() + idle;
                } else if table.now_ms().saturating_sub(last) >= u64::try_from(idle.as_millis()).unwrap_or(u64::MAX) {
                    tracing::debug!(%peer, "idle connection closed");
                    break;
                } else {
                    next_idle_check = at(last) + idle;
                }
            }
        }
    }
    table.remove(id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_displaces_the_oldest_quiet_connection_never_a_busy_one() {
        let t = Table::new(2);
        let (a, ca) = t.admit(0).unwrap();
        let (_b, cb) = t.admit(100).unwrap();
        // full, and nobody has been quiet for a second yet: refused
        assert!(t.admit(500).is_none());
        // a busy connection is never displaced, however old
        ca.busy.store(1, Ordering::Release);
        assert!(t.admit(1050).is_none());
        let (_c, _) = t.admit(1100).expect("b has been quiet for a second");
        assert!(cb.displaced.is_cancelled() && !ca.displaced.is_cancelled());
        ca.busy.store(0, Ordering::Release);
        ca.idle_since.store(1100, Ordering::Release);
        assert!(t.admit(1200).is_none(), "a just went quiet, c is new");
        assert!(t.admit(2150).is_some(), "now a has been quiet for a second");
        assert!(ca.displaced.is_cancelled());
        t.remove(a);
        assert_eq!(t.closed.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_cap_is_at_most_half_the_open_file_limit() {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes the struct we pass.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        let half = usize::try_from(lim.rlim_cur / 2).unwrap_or(usize::MAX);
        assert_eq!(effective_max_connections(usize::MAX), half.max(1));
        assert_eq!(effective_max_connections(3), 3.min(half).max(1));
        assert_eq!(effective_max_connections(0), 1);
    }
}
