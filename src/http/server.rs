//! The accept loop: hyper 1.x through hyper-util's auto builder (HTTP/1.1 keep-alive
//! and h2c), a header-read timeout so slow clients cannot hold connections, and a
//! bounded graceful drain at shutdown.

use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::routes::{handle, Surface};
use super::SharedApi;

/// Connection-level settings.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// A client must send its request headers within this time.
    pub header_read_timeout: Duration,
    /// At shutdown, in-flight requests get this long to finish.
    pub drain_timeout: Duration,
}

fn builder(limits: ServerLimits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .max_concurrent_streams(256);
    b
}

/// Serves `listener` until `shutdown`, then stops accepting and waits (at most the
/// drain timeout) for in-flight requests. Returns when drained.
pub async fn serve(
    listener: TcpListener,
    api: SharedApi,
    surface: Surface,
    limits: ServerLimits,
    shutdown: CancellationToken,
) {
    let builder = builder(limits);
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually EMFILE: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = stream;
        let _ = stream.set_nodelay(true);
        let api = api.clone();
        let service = service_fn(move |req| handle(api.clone(), surface, peer.ip(), req));
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            // A client that vanishes mid-request is not an error worth logging.
            let _ = conn.await;
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::debug!(?surface, "connections drained"),
        _ = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!(?surface, "drain timeout: closing remaining connections");
        }
    }
}
