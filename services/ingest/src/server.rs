//! The webhook listener: HTTP/1.1 served by hyper directly, because the things that keep a
//! public port from being starved are connection-level settings that `axum::serve` does not
//! expose:
//!
//! - a header read timeout: a sender that trickles its request line and headers is cut off
//!   before it reaches the handler (and so before it takes any in-flight slot or byte budget);
//! - a cap on open connections: past it new connections are closed at once, so slow or idle
//!   senders cannot exhaust file descriptors and memory;
//! - graceful shutdown: in-flight requests finish (their records were acknowledged or they
//!   answer 503), bounded by a deadline.
//!
//! Body read time and size are bounded in the handler (see `lib.rs`), where the byte budget
//! lives. GitHub's webhooks are HTTP/1.1, so HTTP/2 is not offered on this port.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use plumbline_telemetry::Metrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Connection-level limits of the webhook listener.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// Time a client has to send its request line and headers.
    pub header_timeout: Duration,
    /// Open connections at most; more are closed on accept.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests.
    pub drain: Duration,
}

/// Serves `app` on `listener` until `shutdown`, then drains.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ListenerLimits,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, _peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accepting a webhook connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.inc(
                &plumbline_telemetry::catalog::INGEST_CONNECTIONS_REFUSED,
                &[],
                1,
            );
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "webhook connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(drain = ?limits.drain, "webhook connections still open after the drain deadline; closing them");
    }
}
