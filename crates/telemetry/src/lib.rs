//! What operators see of every Plumbline process: logs, health endpoints and metrics.
//!
//! - [`traces::init`]: structured logs (`tracing`), JSON or text, filtered by `RUST_LOG`, and
//!   OpenTelemetry spans exported over OTLP when the `OTEL_*` environment asks for it;
//!   [`init_logging`] for the CLI (logs, no export).
//! - [`catalog`]: every metric, declared once; [`Metrics`]: one service's registry.
//! - [`Health`]: liveness (every long-running loop beats) and readiness (dependencies reachable),
//!   served with [`Metrics`] by [`serve`] on `/healthz`, `/readyz` and `/metrics`.
//!
//! Telemetry only: how a service is configured and started (flags, secrets files, signals, its
//! `main`) is `plumbline-runtime`'s.

pub mod catalog;
mod metrics;
pub mod traces;

pub use metrics::Metrics;
pub use traces::{record_trace_ids, Tracing, TracingConfig};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Initialises logging once per process; later calls are no-ops (tests start many services).
pub fn init_logging(json: bool) {
    init_logging_with(json, "info,rdkafka=warn,hyper=warn,h2=warn,tower=warn");
}

/// Like [`init_logging`], with the filter used when `RUST_LOG` is not set. Spans get trace
/// ids but are not exported (services export with [`traces::init`]).
pub fn init_logging_with(json: bool, default_filter: &str) {
    let config = TracingConfig {
        default_filter: default_filter.to_string(),
        from_env: false,
        ..TracingConfig::new("plumb", json)
    };
    if let Err(e) = traces::init(&config) {
        eprintln!("logging: {e}");
    }
}

/// Liveness and readiness of one service.
///
/// Each long-running loop registers a name and calls [`Health::beat`] every iteration; the
/// service is live while every loop beat within its stall bound. Readiness is set by the
/// service when its dependencies are reachable.
#[derive(Clone)]
pub struct Health {
    inner: Arc<HealthInner>,
}

struct HealthInner {
    service: String,
    ready: AtomicBool,
    loops: Mutex<BTreeMap<String, (Instant, Duration)>>,
}

impl Health {
    pub fn new(service: impl Into<String>) -> Self {
        Health {
            inner: Arc::new(HealthInner {
                service: service.into(),
                ready: AtomicBool::new(false),
                loops: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Relaxed)
    }

    /// Records that loop `name` is making progress; it counts as stalled after `stall`.
    pub fn beat(&self, name: &str, stall: Duration) {
        if let Ok(mut l) = self.inner.loops.lock() {
            l.insert(name.to_string(), (Instant::now(), stall));
        }
    }

    /// Loops that have not beaten within their bound.
    pub fn stalled(&self) -> Vec<String> {
        match self.inner.loops.lock() {
            Ok(l) => l
                .iter()
                .filter(|(_, (at, stall))| at.elapsed() > *stall)
                .map(|(n, _)| n.clone())
                .collect(),
            Err(_) => vec!["health-lock-poisoned".into()],
        }
    }
}

#[derive(Clone)]
struct AppState {
    health: Health,
    metrics: Metrics,
}

/// The health and metrics routes, for services that merge them into their own router.
pub fn router(health: Health, metrics: Metrics) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { health, metrics })
}

async fn healthz(State(s): State<AppState>) -> (StatusCode, String) {
    let stalled = s.health.stalled();
    if stalled.is_empty() {
        (StatusCode::OK, "ok\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("stalled: {}\n", stalled.join(",")),
        )
    }
}

async fn readyz(State(s): State<AppState>) -> (StatusCode, String) {
    if s.health.is_ready() {
        (
            StatusCode::OK,
            format!("{} ready\n", s.health.inner.service),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} not ready\n", s.health.inner.service),
        )
    }
}

async fn metrics_text(State(s): State<AppState>) -> String {
    s.metrics.render()
}

/// Serves `/healthz`, `/readyz` and `/metrics` on `addr` until `shutdown`; returns the bound
/// address (port 0 picks one).
pub async fn serve(
    addr: SocketAddr,
    health: Health,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    serve_router(addr, router(health, metrics), shutdown).await
}

/// Serves any router until `shutdown`; returns the bound address.
pub async fn serve_router(
    addr: SocketAddr,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "http server failed");
        }
    });
    Ok(local)
}

/// Keeps `health` ready while `check` succeeds, re-checking every `every` until `shutdown`.
pub fn readiness_loop<F, Fut>(
    health: Health,
    every: Duration,
    shutdown: CancellationToken,
    check: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    tokio::spawn(async move {
        while !shutdown.is_cancelled() {
            health.set_ready(check().await);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
    })
}
