//! Serving the axon: the shared accept loop ([`crate::serve`]: header-read and idle timeouts, a
//! connection cap at which connections without a complete request head are displaced first, a
//! bounded graceful shutdown, heap trimming after bursts) around [`super::handle`].

use std::future::Future;
use std::io;

use tokio::net::TcpListener;

use super::Axon;
use crate::serve::Limits;

/// Serve until `shutdown` resolves (see [`crate::serve`] for the limits).
pub(super) async fn serve(
    axon: Axon,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let cfg = &axon.inner.cfg;
    let limits = Limits {
        header_read_timeout: cfg.header_read_timeout,
        idle_timeout: cfg.idle_timeout,
        max_connections: cfg.max_connections,
        shutdown_grace: cfg.shutdown_grace,
        trim_after_bursts: true,
    };
    let handler = move |req: hyper::Request<hyper::body::Incoming>, peer| {
        let axon = axon.clone();
        async move { super::handle(axon, Some(peer), req.map(axum::body::Body::new)).await }
    };
    crate::serve::serve(listener, limits, handler, shutdown).await
}
