//! Connection-level faults for the fake GitHub. An axum handler cannot touch its socket, so the
//! listener hands every connection a shared [`Conn`] control (as axum `ConnectInfo`) and wraps the
//! stream so that a handler can *kill* it (the response is never written; the client sees the
//! connection close without an answer) or *trickle* it (the response is written a few bytes at a
//! time).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

/// Write `bytes` at a time, pausing `every` between writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Trickle {
    pub bytes: usize,
    pub every: Duration,
}

#[derive(Debug, Default)]
struct Control {
    killed: AtomicBool,
    // A std Mutex: held for a copy, never across an await.
    trickle: Mutex<Option<Trickle>>,
}

/// The handler's grip on its connection.
#[derive(Debug, Clone)]
pub(super) struct Conn {
    control: Arc<Control>,
}

impl Conn {
    /// Fail every further read and write, so hyper drops the connection without writing the response.
    pub fn kill(&self) {
        self.control.killed.store(true, Ordering::SeqCst);
    }

    /// Throttle (Some) or unthrottle (None) writes from now on.
    pub fn set_trickle(&self, trickle: Option<Trickle>) {
        if let Ok(mut t) = self.control.trickle.lock() {
            *t = trickle;
        }
    }

    fn trickle(&self) -> Option<Trickle> {
        self.control.trickle.lock().map(|t| *t).unwrap_or(None)
    }

    fn killed(&self) -> bool {
        self.control.killed.load(Ordering::SeqCst)
    }
}

impl Connected<IncomingStream<'_, FakeListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, FakeListener>) -> Conn {
        stream.remote_addr().clone()
    }
}

/// A TCP listener whose streams carry a [`Conn`].
pub(super) struct FakeListener {
    inner: TcpListener,
    shutdown: CancellationToken,
}

impl FakeListener {
    pub fn new(inner: TcpListener, shutdown: CancellationToken) -> FakeListener {
        FakeListener { inner, shutdown }
    }
}

impl Listener for FakeListener {
    type Io = FakeStream;
    type Addr = Conn;

    async fn accept(&mut self) -> (FakeStream, Conn) {
        loop {
            match self.inner.accept().await {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let conn = Conn { control: Arc::default() };
                    let io =
                        FakeStream { inner: stream, conn: conn.clone(), shutdown: self.shutdown.clone(), pause: None };
                    return (io, conn);
                }
                // Out of file descriptors and the like: wait instead of spinning.
                Err(e) => {
                    tracing::debug!(error = %e, "fake github accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Conn> {
        self.inner.local_addr().map(|_: SocketAddr| Conn { control: Arc::default() })
    }
}

/// A TCP stream that obeys its [`Conn`].
pub(super) struct FakeStream {
    inner: TcpStream,
    conn: Conn,
    shutdown: CancellationToken,
    /// The pause before the next trickled write.
    pause: Option<Pin<Box<Sleep>>>,
}

fn killed_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "killed by the fake github")
}

impl AsyncRead for FakeStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.conn.killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for FakeStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.conn.killed() {
            return Poll::Ready(Err(killed_error()));
        }
        let Some(trickle) = this.conn.trickle() else {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        };
        // A trickle must not hold up the server's graceful shutdown.
        if this.shutdown.is_cancelled() {
            return Poll::Ready(Err(killed_error()));
        }
        if let Some(pause) = this.pause.as_mut() {
            ready!(pause.as_mut().poll(cx));
            this.pause = None;
        }
        let n = buf.len().min(trickle.bytes.max(1));
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, &buf[..n]));
        if written.is_ok() {
            this.pause = Some(Box::pin(tokio::time::sleep(trickle.every)));
        }
        Poll::Ready(written)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
