//! The HTTP/1 server loop under the service: hyper with a header-read timeout and a cap on
//! concurrent connections, which `axum::serve` does not offer. A client that sends its request
//! headers slower than [`HEADER_READ_TIMEOUT`] is disconnected (slowloris); above
//! [`MAX_CONNECTIONS`] new connections wait in the listen backlog until one closes, so a crowd
//! of slow clients cannot take every file descriptor or starve the probes.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// How long a client may take to send a request's headers (each request of a connection).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; the probes, /metrics and /collect need a handful.
pub const MAX_CONNECTIONS: usize = 64;
/// How long connections may take to finish after the stop signal.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `cancel`, then lets open connections finish (up to
/// [`DRAIN`]). Never fails once listening: a failed accept is logged and retried.
pub async fn serve(listener: TcpListener, router: Router, cancel: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    loop {
        // A slot first, then accept: over the cap, connections wait in the backlog.
        let slot = tokio::select! {
            () = cancel.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed
            },
        };
        let (stream, peer) = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(%peer, error = %e, "connection closed with an error (a slow or broken client)");
            }
            drop(slot);
        });
    }
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("connections still open {DRAIN:?} after the stop signal were dropped");
    }
}
