//! Serving HTTP/1.1 with limits: the accept loop of the validator axon (`patrol validator serve`)
//! and of the agent's `/healthz` `/readyz` `/metrics` endpoint, over hyper's connections.
//!
//! `axum::serve` has no header-read or idle timeout, no connection cap and a graceful shutdown that
//! waits for every connection however slow (issue 15 item 4: slowloris, zero-byte and idle
//! keep-alive connections stayed open 70–100 s; under `ulimit -n 256`, 300 half-sent connections
//! made every signed check time out; issue 20 item 7: 300 idle connections to the agent's endpoint
//! under `LimitNOFILE=256` took every descriptor, and the agent could no longer read its PAT file).
//! Here:
//!
//! - **Header read** ([`Limits::header_read_timeout`], hyper's timer): from the moment a
//!   connection can take a request — just accepted, or its last response sent — until the request
//!   head is complete. A slowloris, a silent connection and an idle keep-alive connection are all
//!   closed by it. (The axon gives the body as long again, in its handler: a 408.)
//! - **Idle** ([`Limits::idle_timeout`]): once a connection has served a request, no request in
//!   flight and no byte moving either way for that long closes it (an idle keep-alive connection, a
//!   client that stopped reading its answer). A fresh connection gets the header-read timeout
//!   instead, as uvicorn starts its keep-alive timer only after a response: a client whose first
//!   segment is being retransmitted is not cut off early.
//! - **Cap** ([`Limits::max_connections`], at most half the open-file limit): at the cap a new
//!   connection displaces, oldest first, a connection that has not sent a complete request head —
//!   whatever its age (issue 20 item 10: a rule that waited for a second of quiet let one client
//!   reconnecting faster than that keep the cap full); one whose socket was read already before one
//!   not read yet (under a flood the accept loop runs ahead of the connection tasks, and an unread
//!   socket may hold a whole request) — else one idle between requests. A real
//!   client sends its request the moment it connects, so what is displaced is a slowloris, silent
//!   or idle connection, and one client cannot hold the cap. A request in flight is never
//!   displaced: when every connection has one, the new connection gets an immediate `503` and is
//!   closed — a quick failure, never a hang. A displaced connection's descriptor is free only once
//!   its task has closed it: the accept loop waits for those once there are an eighth of the cap,
//!   so sockets hold at most 9/8 of the cap, and can never use up the file descriptors the rest of
//!   the process needs.
//! - **Shutdown**: the listener closes; connections without a request in flight close at once;
//!   requests in flight get [`Limits::shutdown_grace`] to finish (keep-alive off, so their
//!   connections close after the answer); then whatever is left is dropped.
//! - **Memory** ([`Limits::trim_after_bursts`]): once a burst of connections is over and no request
//!   is in flight, freed heap pages are returned to the kernel (`malloc_trim`, at most once a
//!   second), so an idle server does not keep the peak of its last burst as RSS.

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

use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::heap::release_freed_memory;

/// The limits of one server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// From the moment a connection can take a request until its head is complete.
    pub header_read_timeout: Duration,
    /// A served connection with no request in flight and no byte moving for this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once (and at most half the soft open-file limit).
    pub max_connections: usize,
    /// After shutdown is asked for, how long requests in flight get to finish.
    pub shutdown_grace: Duration,
    /// Return freed heap pages to the kernel after a burst of connections.
    pub trim_after_bursts: bool,
}

/// hyper's per-connection read buffer limit (its default is ~400 KB): real request heads are
/// ~1.5 KB, and a thousand slow clients must not hold 400 MB of buffers.
const MAX_BUF_SIZE: usize = 64 * 1024;

/// How often the idle check for `malloc_trim` runs.
const TRIM_CHECK: Duration = Duration::from_secs(1);

/// What a refused connection is told before it is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 41\r\nconnection: close\r\n\r\n{\"message\":\"Too many connections; retry\"}";

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
    /// A complete request head was already waiting in the socket when it was accepted: a request
    /// is on its way to the handler (under a flood the accept loop runs ahead of the connection
    /// tasks, and a request must not be displaced before its task has read it).
    head_waiting: bool,
    /// hyper has read from the socket (or found nothing to read) at least once: until then data
    /// that arrived after the accept may be a whole request.
    read_once: AtomicBool,
    /// Displaced at the cap: the task closes it.
    displaced: CancellationToken,
}

impl Conn {
    /// No request in flight, none ever complete and none waiting: a slowloris or silent connection.
    fn headless(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0 && !self.served.load(Ordering::Acquire) && !self.head_waiting
    }

    /// Between requests on a kept-alive connection.
    fn idle(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0 && self.served.load(Ordering::Acquire)
    }
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
    /// Displaced connections whose task has not closed the socket yet: each still holds a file
    /// descriptor. The accept loop waits for them once there are [`Table::slack`] of them, so
    /// sockets never hold more than the cap plus that many descriptors, however fast clients
    /// connect (the accept loop would otherwise run ahead of the tasks that close).
    closing: AtomicUsize,
    /// A connection task ended.
    freed: tokio::sync::Notify,
}

impl Table {
    fn new(cap: usize) -> Table {
        Table {
            started: Instant::now(),
            cap: cap.max(1),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(BTreeMap::new()),
            closed: AtomicU64::new(0),
            closing: AtomicUsize::new(0),
            freed: tokio::sync::Notify::new(),
        }
    }

    /// Displaced connections allowed to be still closing while new ones are accepted.
    fn slack(&self) -> usize {
        (self.cap / 8).max(1)
    }

    /// Whether the accept loop may take another connection now (see [`Table::closing`]).
    fn has_room(&self) -> bool {
        self.closing.load(Ordering::Acquire) < self.slack()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Room for a new connection: below the cap, or by displacing the oldest connection without a
    /// complete request head, else the one idle longest between requests. `None`: every connection
    /// has a request in flight.
    fn admit(&self, now_ms: u64, head_waiting: bool) -> Option<(u64, Arc<Conn>)> {
        let mut conns = self.lock();
        if conns.len() >= self.cap {
            let read_headless = conns.iter().find(|(_, c)| c.headless() && c.read_once.load(Ordering::Acquire));
            let headless = read_headless.or_else(|| conns.iter().find(|(_, c)| c.headless())).map(|(&id, _)| id);
            let victim = headless.or_else(|| {
                conns
                    .iter()
                    .filter(|(_, c)| c.idle())
                    .min_by_key(|(_, c)| c.idle_since.load(Ordering::Acquire))
                    .map(|(&id, _)| id)
            })?;
            if let Some(c) = conns.remove(&victim) {
                self.closing.fetch_add(1, Ordering::AcqRel);
                c.displaced.cancel();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(now_ms),
            last_activity: AtomicU64::new(now_ms),
            served: AtomicBool::new(false),
            head_waiting,
            read_once: AtomicBool::new(false),
            displaced: CancellationToken::new(),
        });
        conns.insert(id, Arc::clone(&conn));
        Some((id, conn))
    }

    /// A connection's task ended (its socket is closed).
    fn remove(&self, id: u64) {
        if self.lock().remove(&id).is_none() {
            // displaced earlier: its descriptor is free only now
            self.closing.fetch_sub(1, Ordering::AcqRel);
        }
        self.closed.fetch_add(1, Ordering::Relaxed);
        self.freed.notify_one();
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
        self.conn.read_once.store(true, Ordering::Release);
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

/// Bind `addr` (`SO_REUSEADDR`, as `TcpListener::bind` sets it, and a deep backlog).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The connection cap in force: the configured one, but at most half the soft open-file limit.
pub fn effective_max_connections(configured: usize) -> usize {
    let by_fds = match open_file_limit() {
        Some((soft, _)) => usize::try_from(soft / 2).unwrap_or(usize::MAX),
        None => usize::MAX,
    };
    configured.min(by_fds).max(1)
}

/// The soft and hard `RLIMIT_NOFILE`, `None` when unknown or unlimited.
fn open_file_limit() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct we pass and nothing else.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    (ok && lim.rlim_cur != libc::RLIM_INFINITY).then_some((lim.rlim_cur, lim.rlim_max))
}

/// Raise the soft open-file limit to the hard one (systemd's default soft limit is 1024 whatever
/// `LimitNOFILE=` allows as hard; a server's sockets must not starve its own files), and log what
/// was done. Called at the start of `patrol run` and `patrol validator serve`.
pub fn raise_open_file_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(error = %io::Error::last_os_error(), "cannot read the open-file limit");
        return;
    }
    let show = |v: libc::rlim_t| if v == libc::RLIM_INFINITY { "unlimited".to_string() } else { v.to_string() };
    if lim.rlim_cur >= lim.rlim_max {
        tracing::info!(soft = %show(lim.rlim_cur), hard = %show(lim.rlim_max), "open-file limit already at its hard limit");
        return;
    }
    let before = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: setrlimit reads the struct we pass; raising the soft limit up to the hard one needs no
    // privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
        tracing::info!(from = %show(before), to = %show(lim.rlim_max), "raised the soft open-file limit to the hard limit");
    } else {
        tracing::warn!(
            soft = %show(before),
            hard = %show(lim.rlim_max),
            error = %io::Error::last_os_error(),
            "cannot raise the soft open-file limit to the hard limit (a seccomp filter without setrlimit?)"
        );
    }
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

/// Serve `handler` (called with each request and the peer's address) on `listener` until
/// `shutdown` resolves, within `limits` (see the module doc).
pub async fn serve<H, F>(
    listener: TcpListener,
    limits: Limits,
    handler: H,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()>
where
    H: Fn(hyper::Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = hyper::Response<Body>> + Send + 'static,
{
    let cap = effective_max_connections(limits.max_connections);
    if cap < limits.max_connections {
        tracing::info!(configured = limits.max_connections, cap, "connection cap lowered to half the open-file limit");
    }
    let table = Arc::new(Table::new(cap));
    let stop = CancellationToken::new();
    let trimmer = limits.trim_after_bursts.then(|| tokio::spawn(trim_when_idle(Arc::clone(&table))));
    let mut tasks = JoinSet::new();
    let mut refused = Refusals::default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = table.freed.notified(), if !table.has_room() => {}
            accepted = listener.accept(), if table.has_room() => match accepted {
                Ok((stream, peer)) => match table.admit(table.now_ms(), head_waiting(&stream)) {
                    Some((id, conn)) => {
                        let _ = stream.set_nodelay(true);
                        let (handler, limits, table, stop) = (handler.clone(), limits.clone(), Arc::clone(&table), stop.clone());
                        tasks.spawn(connection(handler, limits, stream, peer, id, conn, table, stop));
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
    let drained =
        tokio::time::timeout(limits.shutdown_grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            open,
            left = tasks.len(),
            grace = %humantime::format_duration(limits.shutdown_grace),
            "shutdown grace over: closing connections whose requests are still in flight"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    if let Some(t) = trimmer {
        t.abort();
    }
    Ok(())
}

/// Whether a complete request head (up to 8 KiB; real ones are ~1.5 KB) is already in `stream`'s
/// receive buffer: peeked, not consumed, without waiting.
fn head_waiting(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 8192];
    // SAFETY: recv writes at most `buf.len()` bytes into our buffer; MSG_PEEK leaves them queued
    // for hyper and MSG_DONTWAIT never blocks.
    let n = unsafe {
        libc::recv(stream.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_PEEK | libc::MSG_DONTWAIT)
    };
    usize::try_from(n).is_ok_and(|n| buf[..n.min(buf.len())].windows(4).any(|w| w == b"\r\n\r\n"))
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
#[allow(clippy::too_many_arguments, reason = "one task's whole context, passed once")]
async fn connection<H, F>(
    handler: H,
    limits: Limits,
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    conn: Arc<Conn>,
    table: Arc<Table>,
    stop: CancellationToken,
) where
    H: Fn(hyper::Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = hyper::Response<Body>> + Send + 'static,
{
    let (header_timeout, idle) = (limits.header_read_timeout, limits.idle_timeout);
    let io = TokioIo::new(Tracked { inner: stream, conn: Arc::clone(&conn), table: Arc::clone(&table) });
    let service = {
        let (conn, table) = (Arc::clone(&conn), Arc::clone(&table));
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let busy = Busy::new(Arc::clone(&conn), Arc::clone(&table));
            let answer = handler(req, peer);
            async move {
                let response = answer.await;
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
mod tests;
