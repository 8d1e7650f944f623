//! Ingest: GitHub webhooks in, entity events out.
//!
//! The contract with GitHub is strict: GitHub does not redeliver on its own, so a 2xx followed
//! by a lost event is the one failure that must never happen. Hence: verify, map, publish with
//! acks=all, and only then answer 2xx; if the broker does not acknowledge within the deadline,
//! answer 503 so the delivery shows as failed and can be redelivered.

mod config;
mod mapping;

pub use config::IngestConfig;
pub use mapping::{map_event, Mapped};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use plumbline_bus::{Producer, ProducerConfig, Topics, TraceContext};
use plumbline_proto::Message as _;
use plumbline_telemetry::{Health, Metrics};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// GitHub caps webhook payloads at 25 MiB.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("kafka: {0}")]
    Bus(#[from] plumbline_bus::BusError),
    #[error("listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("configuration: {0}")]
    Config(String),
}

struct AppState {
    producer: Producer,
    topics: Topics,
    secrets: Vec<Vec<u8>>,
    provider: String,
    metrics: Metrics,
}

/// A started ingest service.
pub struct Running {
    pub addr: SocketAddr,
    pub metrics: Metrics,
    pub task: JoinHandle<()>,
}

/// Binds and starts serving; returns once listening. Stops when `shutdown` is cancelled.
pub async fn start(config: IngestConfig, shutdown: CancellationToken) -> Result<Running, IngestError> {
    if config.webhook_secrets.iter().all(|s| s.is_empty()) {
        return Err(IngestError::Config("at least one webhook secret is required".into()));
    }
    let mut pc = ProducerConfig::new(&config.kafka_brokers, "plumbline-ingest");
    pc.ack_timeout = config.ack_timeout();
    let producer = Producer::new(&pc)?;
    let metrics = Metrics::new();
    let health = Health::new("ingest");
    let state = Arc::new(AppState {
        producer: producer.clone(),
        topics: Topics::with_prefix(&config.topic_prefix),
        secrets: config.webhook_secrets.iter().filter(|s| !s.is_empty()).map(|s| s.as_bytes().to_vec()).collect(),
        provider: config.provider.clone(),
        metrics: metrics.clone(),
    });
    let app = Router::new()
        .route("/webhooks/github", post(webhook))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
        .merge(plumbline_telemetry::router(health.clone(), metrics.clone()));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| IngestError::Listen { addr: config.listen, source })?;
    let addr = listener.local_addr().map_err(|source| IngestError::Listen { addr: config.listen, source })?;
    health.set_ready(true);
    tracing::info!(%addr, "ingest listening");
    let task = tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "ingest server failed");
        }
        // In-flight requests have finished: their records were acknowledged or answered 503.
        if let Err(e) = producer.flush(std::time::Duration::from_secs(5)) {
            tracing::warn!(error = %e, "producer flush at shutdown");
        }
        tracing::info!("ingest stopped");
    });
    Ok(Running { addr, metrics, task })
}

/// Runs until `shutdown` is cancelled.
pub async fn run(config: IngestConfig, shutdown: CancellationToken) -> Result<(), IngestError> {
    let r = start(config, shutdown).await?;
    let _ = r.task.await;
    Ok(())
}

fn reject(status: StatusCode, msg: &str) -> Response {
    (status, Json(serde_json::json!({ "error": msg }))).into_response()
}

/// Events with a label of their own in metrics; everything else is "other" (bounded labels).
fn event_label(event: &str) -> &str {
    if mapping::is_known_event(event) {
        event
    } else {
        "other"
    }
}

async fn webhook(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let event = header("x-github-event").to_string();
    let delivery = header("x-github-delivery").to_string();
    let label = event_label(&event).to_string();
    let (status, outcome, response) = handle(&st, &headers, &event, &delivery, &body).await;
    st.metrics.inc(
        "plumbline_ingest_deliveries_total",
        "webhook deliveries by event and outcome",
        &[("event", &label), ("outcome", outcome)],
        1,
    );
    st.metrics.observe(
        "plumbline_ingest_latency_seconds",
        "time from request to answer",
        &[("outcome", outcome)],
        started.elapsed().as_secs_f64(),
    );
    if status.is_success() {
        tracing::debug!(delivery, event, outcome, "webhook accepted");
    } else {
        tracing::warn!(delivery, event, outcome, status = status.as_u16(), "webhook rejected");
    }
    response
}

async fn handle(st: &AppState, headers: &HeaderMap, event: &str, delivery: &str, body: &[u8]) -> (StatusCode, &'static str, Response) {
    let sig = headers.get("x-hub-signature-256").and_then(|v| v.to_str().ok());
    if let Err(e) = plumbline_github::webhook::verify(&st.secrets, body, sig) {
        st.metrics.inc("plumbline_ingest_signature_failures_total", "webhooks with a missing or wrong signature", &[], 1);
        return (StatusCode::UNAUTHORIZED, "bad_signature", reject(StatusCode::UNAUTHORIZED, &e.to_string()));
    }
    if event.is_empty() {
        return (StatusCode::BAD_REQUEST, "bad_request", reject(StatusCode::BAD_REQUEST, "missing X-GitHub-Event header"));
    }
    let payload: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        Ok(_) => return (StatusCode::BAD_REQUEST, "bad_request", reject(StatusCode::BAD_REQUEST, "payload is not a json object")),
        Err(e) => return (StatusCode::BAD_REQUEST, "bad_request", reject(StatusCode::BAD_REQUEST, &format!("payload is not json: {e}"))),
    };
    let mapped = match map_event(&st.provider, event, delivery, &payload) {
        Ok(m) => m,
        Err(e) => return (StatusCode::BAD_REQUEST, "bad_request", reject(StatusCode::BAD_REQUEST, &e.to_string())),
    };
    let events = match mapped {
        Mapped::Ignored(why) => {
            let r = (StatusCode::ACCEPTED, Json(serde_json::json!({"ignored": why}))).into_response();
            return (StatusCode::ACCEPTED, "ignored", r);
        }
        Mapped::Events(ev) => ev,
    };
    let trace = TraceContext::new_root();
    // Publish all records concurrently; answer 2xx only if every one was acknowledged.
    let sends = events.iter().map(|ev| {
        let key = ev.entity_ref().map(|r| r.id()).unwrap_or_default();
        let payload = ev.encode_to_vec();
        let trace = trace.child();
        async move {
            st.producer
                .publish(
                    &st.topics.entity_events,
                    &key,
                    &payload,
                    "dev.plumbline.entity_event.v1",
                    &ev.event_id,
                    &trace,
                    &BTreeMap::new(),
                )
                .await
        }
    });
    let results = futures::future::join_all(sends).await;
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        tracing::error!(delivery, error = %e, "broker did not acknowledge");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            reject(StatusCode::SERVICE_UNAVAILABLE, "event bus unavailable, redeliver later"),
        );
    }
    let r = (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"delivery": delivery, "entity_events": events.len()})),
    )
        .into_response();
    (StatusCode::ACCEPTED, "published", r)
}
