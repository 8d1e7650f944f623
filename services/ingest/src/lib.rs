//! Ingest: GitHub webhooks in, entity events out.
//!
//! The contract with GitHub is strict: GitHub does not redeliver on its own, so a 2xx followed
//! by a lost event is the one failure that must never happen. Hence, per delivery:
//!
//! 1. before anything costs ingest more than the sender: require a declared length (411) of at
//!    most 25 MiB (413) and a signature header (401), reserve the body's bytes from a budget
//!    shared by all requests (503 past it) and read the body within a deadline (408); the
//!    listener itself cuts off senders that trickle their headers (see `server.rs`);
//! 2. verify the signature against every configured secret (401), take an in-flight permit or
//!    answer 503 at once (bounded work under overload), parse and map (400);
//! 3. claim the delivery id in Postgres (a redelivery of a published delivery gets 2xx and
//!    publishes nothing; one still in flight elsewhere gets 503);
//! 4. enrol repositories (retirements and renames are announced, and applied by the evaluator
//!    once GitHub confirms them), publish every record with acks=all and
//!    answer 2xx only once all were acknowledged; otherwise give the claim back and answer 503
//!    so the delivery shows as failed and can be redelivered.
//!
//! Dedupe fails open: if Postgres cannot answer the claim quickly the delivery is published
//! anyway. A duplicate record is harmless (the evaluator is level-triggered and idempotent); a
//! 503 for every webhook while the database is down would not be.

mod config;
mod mapping;
mod prune;
mod server;

pub use config::IngestConfig;
pub use mapping::{
    is_known_event, map_event, parse_and_map, Mapped, MappingError, Plan, RepoRef,
    OTHER_KNOWN_EVENTS, REPOSITORY_EVENTS,
};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use plumbline_bus::{Producer, ProducerConfig, Topics, TraceContext};
use plumbline_domain::Entity;
use plumbline_proto::Message as _;
use plumbline_runtime::secrets::{secret_lines, SecretFile};
use plumbline_store::{Claim, Store};
use plumbline_telemetry::{Health, Metrics};
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// GitHub caps webhook payloads at 25 MiB.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// Connections of the delivery-dedupe pool (out of `--database-max-connections`).
const DEDUPE_CONNECTIONS: usize = 4;

/// How long the marker gathers published deliveries before one statement marks them.
const MARK_GATHER: Duration = Duration::from_millis(20);

/// How long a Postgres step may take before ingest stops waiting for it.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("kafka settings: {0}")]
    KafkaSettings(#[from] plumbline_runtime::KafkaSettingsError),
    #[error("kafka: {0}")]
    Bus(#[from] plumbline_bus::BusError),
    #[error("postgres: {0}")]
    Store(#[from] plumbline_store::StoreError),
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("configuration: {0}")]
    Config(String),
}

struct AppState {
    producer: Producer,
    topics: Topics,
    secrets: WebhookSecrets,
    provider: String,
    metrics: Metrics,
    /// Enrolments: durable commits.
    store: Store,
    /// Delivery dedupe: relaxed commits (see `Store::connect_relaxed`).
    dedupe: Store,
    enroll: bool,
    project: String,
    permits: Semaphore,
    /// Bytes of webhook bodies being read or handled, at most `--max-body-bytes-in-flight`.
    body_bytes: Semaphore,
    /// How long a body may take to arrive.
    body_timeout: Duration,
    /// A claim outlives the longest publish, so a live attempt is never taken over.
    lease: Duration,
    /// Published delivery ids, marked in Postgres in batches by [`mark_published`].
    published: mpsc::Sender<String>,
    /// Claims, made in batches by [`claim_batches`].
    claims: mpsc::Sender<ClaimRequest>,
}

/// The webhook secrets: fixed ones from flags, and a file re-read when it changes (rotation
/// without a restart: add the new secret, change it on GitHub, remove the old one).
struct WebhookSecrets {
    fixed: Vec<Vec<u8>>,
    file: Option<SecretFile<Vec<Vec<u8>>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("holds no webhook secret")]
struct NoWebhookSecret;

fn parse_secrets(text: &SecretString) -> Result<Vec<Vec<u8>>, NoWebhookSecret> {
    let lines: Vec<Vec<u8>> = secret_lines(text)
        .iter()
        .map(|s| s.expose_secret().as_bytes().to_vec())
        .collect();
    if lines.is_empty() {
        return Err(NoWebhookSecret);
    }
    Ok(lines)
}

impl WebhookSecrets {
    fn new(config: &IngestConfig) -> Result<Self, IngestError> {
        let fixed: Vec<Vec<u8>> = config
            .webhook_secrets
            .iter()
            .map(|s| s.expose_secret().as_bytes().to_vec())
            .filter(|s| !s.is_empty())
            .collect();
        if fixed.len() < config.webhook_secrets.len() {
            return Err(IngestError::Config("an empty webhook secret was given (an empty secret would accept forged signatures)".into()));
        }
        let file = match &config.webhook_secrets_file {
            Some(p) => Some(
                SecretFile::open(p, "webhook secrets", parse_secrets)
                    .map_err(|e| IngestError::Config(e.to_string()))?,
            ),
            None => None,
        };
        if fixed.is_empty() && file.is_none() {
            return Err(IngestError::Config(
                "at least one webhook secret is required".into(),
            ));
        }
        Ok(WebhookSecrets { fixed, file })
    }

    /// Checks a signature against every secret accepted now: the file's (current first), then
    /// the fixed ones. Borrows them; no secret is copied per delivery.
    fn verify(
        &self,
        body: &[u8],
        signature: &str,
    ) -> Result<(), plumbline_github::webhook::SignatureError> {
        match &self.file {
            None => plumbline_github::webhook::verify(&self.fixed, body, Some(signature)),
            Some(f) => {
                let from_file = f.get();
                let all: Vec<&[u8]> = from_file
                    .iter()
                    .chain(self.fixed.iter())
                    .map(Vec::as_slice)
                    .collect();
                plumbline_github::webhook::verify(&all, body, Some(signature))
            }
        }
    }
}

struct ClaimRequest {
    delivery: String,
    event: String,
    reply: oneshot::Sender<Result<Claim, StoreUnavailable>>,
}

/// Postgres could not answer in time (dedupe fails open; a registry change gets a 503 and is
/// redelivered). Clone, because one failed batch answers every delivery in it.
#[derive(Debug, Clone, thiserror::Error)]
enum StoreUnavailable {
    #[error("{what}: {source}")]
    Store {
        what: &'static str,
        #[source]
        source: Arc<plumbline_store::StoreError>,
    },
    #[error("{what}: timed out")]
    TimedOut { what: &'static str },
    #[error("claim queue full")]
    QueueFull,
    #[error("claim batcher stopped")]
    BatcherStopped,
}

/// A started ingest service.
pub struct Running {
    /// The webhook listener.
    pub addr: SocketAddr,
    /// `/healthz`, `/readyz` and `/metrics`.
    pub health_addr: SocketAddr,
    pub metrics: Metrics,
    pub health: Health,
    pub task: JoinHandle<()>,
}

/// Binds and starts serving; returns once listening. Stops when `shutdown` is cancelled.
pub async fn start(
    config: IngestConfig,
    shutdown: CancellationToken,
) -> Result<Running, IngestError> {
    let secrets = WebhookSecrets::new(&config)?;
    if config.max_in_flight == 0 {
        return Err(IngestError::Config(
            "--max-in-flight must be at least 1".into(),
        ));
    }
    if config.max_body_bytes_in_flight < MAX_BODY_BYTES
        || config.max_body_bytes_in_flight > Semaphore::MAX_PERMITS
    {
        return Err(IngestError::Config(format!(
            "--max-body-bytes-in-flight must be at least {MAX_BODY_BYTES} (one payload of GitHub's largest size)"
        )));
    }
    let mut pc = ProducerConfig::new(&config.kafka_brokers, "plumbline-ingest")
        .with_client_options(config.kafka.client_options()?);
    pc.ack_timeout = config.ack_timeout();
    let producer = Producer::new(&pc)?;
    // Dedupe has a pool of its own: two claim batches, the marker and the purge or a release.
    // Its commits do not wait for the WAL flush (a claim lost in a database crash costs at most
    // a duplicate record); registry changes keep durable commits.
    let dedupe = Store::connect_relaxed(config.database_url.expose_secret(), DEDUPE_CONNECTIONS)?;
    let store = Store::connect(
        config.database_url.expose_secret(),
        config
            .database_max_connections
            .saturating_sub(DEDUPE_CONNECTIONS)
            .max(1),
    )?;
    // Ingest does not wait for the schema: it accepts webhooks even while Postgres is away
    // (dedupe fails open), so that none is lost; registry writes against an older schema fail
    // with the database's error until the migrate Job has run.
    let metrics = Metrics::new();
    let health = Health::new("ingest");
    let (published_tx, published_rx) = mpsc::channel(100_000);
    // More room than requests in flight, so a send never waits.
    let (claims_tx, claims_rx) = mpsc::channel(config.max_in_flight.saturating_mul(2).max(16));
    let state = Arc::new(AppState {
        producer: producer.clone(),
        topics: Topics::with_prefix(&config.topic_prefix),
        secrets,
        provider: config.provider.clone(),
        metrics: metrics.clone(),
        store,
        dedupe: dedupe.clone(),
        enroll: config.enroll,
        project: config.project.clone(),
        permits: Semaphore::new(config.max_in_flight),
        body_bytes: Semaphore::new(config.max_body_bytes_in_flight),
        body_timeout: config.body_timeout(),
        lease: config.ack_timeout() + Duration::from_secs(10),
        published: published_tx,
        claims: claims_tx,
    });
    let app = Router::new()
        .route(
            "/webhooks/github",
            post(webhook).fallback(method_not_allowed),
        )
        .with_state(state.clone())
        .fallback(not_found);
    // Health and metrics on a listener of their own, never on the public webhook port.
    let health_addr = plumbline_telemetry::serve(
        config.health_listen,
        health.clone(),
        metrics.clone(),
        shutdown.clone(),
    )
    .await
    .map_err(|source| IngestError::Listen {
        addr: config.health_listen,
        source,
    })?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| IngestError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| IngestError::Listen {
            addr: config.listen,
            source,
        })?;
    let claimer = tokio::spawn(claim_batches(dedupe.clone(), claims_rx, state.lease));
    let marker = tokio::spawn(mark_published(
        dedupe.clone(),
        published_rx,
        config.dedupe_window(),
        metrics.clone(),
        health.clone(),
    ));
    let purger = tokio::spawn(purge_expired(
        dedupe,
        config.dedupe_window(),
        shutdown.clone(),
        health.clone(),
    ));
    // Ready while the broker answers for the entity-events topic: a replica cut off from Kafka
    // can only answer 503, so the load balancer should send GitHub's deliveries elsewhere.
    // Postgres is not part of it: dedupe fails open, so webhooks are still taken while it is
    // away.
    let readiness = plumbline_telemetry::readiness_loop(
        health.clone(),
        READINESS_EVERY,
        shutdown.clone(),
        broker_check(producer.clone(), state.topics.entity_events.clone()),
    );
    tracing::info!(%addr, %health_addr, enroll = config.enroll, "ingest listening");
    let limits = server::ListenerLimits {
        header_timeout: config.header_timeout(),
        max_connections: config.max_connections,
        drain: Duration::from_secs(15),
    };
    let server_metrics = metrics.clone();
    let task = tokio::spawn(async move {
        server::serve(listener, app, limits, server_metrics, shutdown).await;
        // In-flight requests have finished: their records were acknowledged or answered 503.
        if let Err(e) = producer.flush(Duration::from_secs(5)) {
            tracing::warn!(error = %e, "producer flush at shutdown");
        }
        // The last state reference goes with the router; the marker then drains and stops.
        drop(state);
        let _ = claimer.await;
        let _ = marker.await;
        let _ = purger.await;
        let _ = readiness.await;
        tracing::info!("ingest stopped");
    });
    Ok(Running {
        addr,
        health_addr,
        metrics,
        health,
        task,
    })
}

/// Runs until `shutdown` is cancelled.
pub async fn run(config: IngestConfig, shutdown: CancellationToken) -> Result<(), IngestError> {
    let r = start(config, shutdown).await?;
    let _ = r.task.await;
    Ok(())
}

/// Claims deliveries in Postgres in batches: whatever requests are waiting when a batch slot is
/// free go in one statement (group commit), so the database does one round trip and one commit
/// per batch instead of per webhook. Two batches run at once, so one in flight does not stall
/// the next. Stops when every sender is gone.
async fn claim_batches(store: Store, mut rx: mpsc::Receiver<ClaimRequest>, lease: Duration) {
    let slots = Arc::new(Semaphore::new(2));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::with_capacity(256);
        if rx.recv_many(&mut batch, 256).await == 0 {
            return;
        }
        let store = store.clone();
        tokio::spawn(async move {
            let items: Vec<(String, String)> = batch
                .iter()
                .map(|r| (r.delivery.clone(), r.event.clone()))
                .collect();
            let answers: Vec<Result<Claim, StoreUnavailable>> =
                match tokio::time::timeout(STORE_TIMEOUT, store.claim_deliveries(&items, lease))
                    .await
                {
                    Ok(Ok(claims)) => claims.into_iter().map(Ok).collect(),
                    Ok(Err(e)) => {
                        let e = StoreUnavailable::Store {
                            what: "claim",
                            source: Arc::new(e),
                        };
                        vec![Err(e); items.len()]
                    }
                    Err(_) => vec![Err(StoreUnavailable::TimedOut { what: "claim" }); items.len()],
                };
            for (r, a) in batch.into_iter().zip(answers) {
                let _ = r.reply.send(a);
            }
            drop(slot);
        });
    }
}

/// Claims through the batcher, within a bound (a wait for a batch slot included).
async fn claim(st: &AppState, delivery: &str, event: &str) -> Result<Claim, StoreUnavailable> {
    let (reply, answer) = oneshot::channel();
    let request = ClaimRequest {
        delivery: delivery.to_string(),
        event: event.to_string(),
        reply,
    };
    st.claims
        .try_send(request)
        .map_err(|_| StoreUnavailable::QueueFull)?;
    match tokio::time::timeout(STORE_TIMEOUT + Duration::from_secs(1), answer).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(StoreUnavailable::BatcherStopped),
        Err(_) => Err(StoreUnavailable::TimedOut { what: "claim" }),
    }
}

/// How often readiness re-checks the broker, how long one check may take, and how many checks
/// in a row must fail before ingest says it is not ready: a partition leader election of a few
/// seconds (which the producer rides out within its ack timeout) must not take every replica
/// out of the Service at once.
const READINESS_EVERY: Duration = Duration::from_secs(5);
const READINESS_TIMEOUT: Duration = Duration::from_secs(3);
const READINESS_FAILURES: u32 = 3;

/// The readiness check: the broker answers for `topic` with a leader for every partition, or
/// did within the last [`READINESS_FAILURES`] checks. Logs when the answer changes.
fn broker_check(
    producer: Producer,
    topic: String,
) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> + Send + 'static
{
    use std::sync::atomic::{AtomicU32, Ordering};
    // Failures in a row; ready again on the first success.
    let failures = Arc::new(AtomicU32::new(0));
    move || {
        let producer = producer.clone();
        let topic = topic.clone();
        let failures = failures.clone();
        Box::pin(async move {
            let checked = tokio::task::spawn_blocking(move || {
                producer.topic_available(&topic, READINESS_TIMEOUT)
            })
            .await;
            let error = match checked {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(format!("the check did not finish: {e}")),
            };
            match error {
                None => {
                    if failures.swap(0, Ordering::Relaxed) >= READINESS_FAILURES {
                        tracing::info!("ready: the broker answers again");
                    }
                    true
                }
                Some(error) => {
                    let n = failures.fetch_add(1, Ordering::Relaxed).saturating_add(1);
                    if n == READINESS_FAILURES {
                        tracing::warn!(%error, checks = n, "not ready: the broker does not answer");
                    } else if n < READINESS_FAILURES {
                        tracing::debug!(%error, checks = n, "the broker did not answer");
                    }
                    n < READINESS_FAILURES
                }
            }
        })
    }
}

/// Marks published deliveries in Postgres, in batches (one statement per batch instead of one
/// per webhook). A mark that fails leaves the claim to expire after its lease; a redelivery after
/// that publishes again, which is harmless.
async fn mark_published(
    store: Store,
    mut rx: mpsc::Receiver<String>,
    window: Duration,
    metrics: Metrics,
    health: Health,
) {
    let mut batch = Vec::with_capacity(1000);
    loop {
        health.beat("dedupe-marker", Duration::from_secs(60));
        let n = tokio::select! {
            n = rx.recv_many(&mut batch, 1000) => n,
            _ = tokio::time::sleep(Duration::from_secs(10)) => continue,
        };
        if n == 0 {
            return; // every sender is gone: shut down
        }
        // Marks are off the answer's path, so gather for a moment: at 5,000 webhooks/s this
        // makes one statement of about a hundred marks instead of several of a few each (the
        // statements, not the rows, were most of Postgres's work). Until its mark, a redelivery
        // of the delivery gets 503 "in flight" rather than 2xx "duplicate"; both publish nothing.
        if batch.len() < 1000 {
            tokio::time::sleep(MARK_GATHER).await;
            while batch.len() < 1000 {
                match rx.try_recv() {
                    Ok(d) => batch.push(d),
                    Err(_) => break, // empty, or closed: mark these, then the next recv ends
                }
            }
        }
        match tokio::time::timeout(
            STORE_TIMEOUT * 5,
            store.mark_deliveries_published(&batch, window),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                metrics.inc(
                    &plumbline_telemetry::catalog::INGEST_DEDUPE_ERRORS,
                    &[("step", "mark")],
                    1,
                );
                tracing::warn!(error = %e, deliveries = batch.len(), "marking deliveries published failed");
            }
            Err(_) => {
                metrics.inc(
                    &plumbline_telemetry::catalog::INGEST_DEDUPE_ERRORS,
                    &[("step", "mark")],
                    1,
                );
                tracing::warn!(
                    deliveries = batch.len(),
                    "marking deliveries published timed out"
                );
            }
        }
        batch.clear();
    }
}

/// Deletes expired delivery rows every few minutes, in bounded chunks.
async fn purge_expired(
    store: Store,
    window: Duration,
    shutdown: CancellationToken,
    health: Health,
) {
    let every = Duration::from_secs(300);
    loop {
        health.beat("dedupe-purge", every * 3);
        loop {
            match store.purge_expired_deliveries(window, 10_000).await {
                Ok(10_000) => continue,
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(purged = n, "expired delivery ids purged");
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "purging expired delivery ids failed");
                    break;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// One answer: status, metrics outcome, body and (for rejections) the reason logged.
struct Answer {
    status: StatusCode,
    outcome: &'static str,
    body: serde_json::Value,
    reason: Option<String>,
}

impl Answer {
    fn ok(status: StatusCode, outcome: &'static str, body: serde_json::Value) -> Self {
        Answer {
            status,
            outcome,
            body,
            reason: None,
        }
    }

    fn reject(status: StatusCode, outcome: &'static str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Answer {
            status,
            outcome,
            body: serde_json::json!({ "error": reason }),
            reason: Some(reason),
        }
    }

    fn unavailable(outcome: &'static str, reason: impl Into<String>) -> Self {
        Self::reject(StatusCode::SERVICE_UNAVAILABLE, outcome, reason)
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Events with a label of their own in metrics; everything else is "other" (bounded labels).
fn event_label(event: &str) -> &str {
    if is_known_event(event) {
        event
    } else {
        "other"
    }
}

async fn webhook(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let started = Instant::now();
    let event = header_str(req.headers(), "x-github-event").to_string();
    let delivery = header_str(req.headers(), "x-github-delivery").to_string();
    let answer = handle(&st, req, &event, &delivery).await;
    st.metrics.inc(
        &plumbline_telemetry::catalog::INGEST_DELIVERIES,
        &[("event", event_label(&event)), ("outcome", answer.outcome)],
        1,
    );
    st.metrics.observe(
        &plumbline_telemetry::catalog::INGEST_LATENCY,
        &[("outcome", answer.outcome)],
        started.elapsed().as_secs_f64(),
    );
    match &answer.reason {
        None => tracing::debug!(
            delivery,
            event,
            outcome = answer.outcome,
            "webhook accepted"
        ),
        // The reason names what was wrong, never the body or a secret.
        Some(reason) => tracing::warn!(
            delivery,
            event,
            outcome = answer.outcome,
            status = answer.status.as_u16(),
            reason,
            "webhook rejected"
        ),
    }
    let mut response = (answer.status, Json(answer.body)).into_response();
    if answer.status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    response
}

/// 401 for a missing or wrong signature, counted.
fn bad_signature(st: &AppState, reason: String) -> Answer {
    st.metrics.inc(
        &plumbline_telemetry::catalog::INGEST_SIGNATURE_FAILURES,
        &[],
        1,
    );
    Answer::reject(StatusCode::UNAUTHORIZED, "bad_signature", reason)
}

async fn handle(st: &AppState, req: Request, event: &str, delivery: &str) -> Answer {
    // Everything up to the signature check costs the sender's effort, not ours: the length is
    // declared and bounded, the signature header present, the bytes reserved from a budget
    // shared by all requests, and the body read within a deadline, all before an in-flight
    // slot is taken. A few unsigned or slow senders can therefore neither exhaust memory nor
    // hold the slots signed deliveries need.
    let declared = match header_str(req.headers(), "content-length").parse::<u64>() {
        Ok(n) => n,
        // Neither a length nor a transfer coding: a request without a body (RFC 9112 6.3).
        Err(_) if !req.headers().contains_key(header::TRANSFER_ENCODING) => 0,
        // GitHub always sends Content-Length; a body of unknown length (chunked) could only be
        // bounded by reading it.
        Err(_) => {
            return Answer::reject(
                StatusCode::LENGTH_REQUIRED,
                "length_required",
                "a Content-Length header is required",
            )
        }
    };
    if declared > MAX_BODY_BYTES as u64 {
        return Answer::reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "body exceeds 25 MiB",
        );
    }
    // The signature is read before the body consumes the request (no copy of every header).
    let Some(sig) = req
        .headers()
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        return bad_signature(st, "missing X-Hub-Signature-256 header".into());
    };
    // `declared` is at most 25 MiB, so it fits a u32.
    let Ok(_bytes) = st.body_bytes.try_acquire_many(declared as u32) else {
        return Answer::unavailable(
            "shed_bytes",
            "too many webhook bytes in flight, redeliver later",
        );
    };
    // Read into one buffer of the declared size: no growth by doubling, no second copy.
    let read = async {
        use futures::StreamExt as _;
        let mut stream = req.into_body().into_data_stream();
        let mut buf = bytes::BytesMut::with_capacity(declared as usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            if buf.len() + chunk.len() > declared as usize {
                return Err("the body is longer than its Content-Length".to_string());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    };
    let body = match tokio::time::timeout(st.body_timeout, read).await {
        Err(_) => {
            return Answer::reject(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("the body did not arrive within {:?}", st.body_timeout),
            )
        }
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            return Answer::reject(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("reading the body: {e}"),
            )
        }
    };
    if let Err(e) = st.secrets.verify(&body, &sig) {
        return bad_signature(st, e.to_string());
    }
    // Every signed webhook starts a trace; unsigned requests make none, so they cannot fill the
    // exporter's queue, and a sender's `traceparent` is never trusted. Its records are this
    // span's children, and so is everything the evaluator and actuator do for it.
    let span = tracing::info_span!(
        parent: None,
        "webhook",
        otel.kind = "server",
        otel.name = "POST /webhooks/github",
        github.event = %event_label(event),
        github.delivery = %delivery.chars().take(64).collect::<String>(),
        http.response.status_code = tracing::field::Empty,
        outcome = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    plumbline_telemetry::record_trace_ids(&span);
    let answer = {
        use tracing::Instrument as _;
        handle_signed(st, &body, event, delivery)
            .instrument(span.clone())
            .await
    };
    span.record("http.response.status_code", answer.status.as_u16());
    span.record("outcome", answer.outcome);
    answer
}

/// A webhook whose signature holds: bounded, mapped, deduped, applied.
async fn handle_signed(st: &AppState, body: &[u8], event: &str, delivery: &str) -> Answer {
    // Bounded work: beyond the permits, shed at once instead of queueing.
    let Ok(_permit) = st.permits.try_acquire() else {
        return Answer::unavailable("shed", "ingest is overloaded, redeliver later");
    };
    if event.is_empty() {
        return Answer::reject(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "missing X-GitHub-Event header",
        );
    }
    if delivery.is_empty() || delivery.len() > 200 {
        return Answer::reject(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "missing or oversized X-GitHub-Delivery header",
        );
    }
    let plan = match parse_and_map(&st.provider, event, delivery, body) {
        Err(e) => return Answer::reject(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
        Ok(Mapped::Unknown) => {
            return Answer::ok(
                StatusCode::OK,
                "unknown",
                serde_json::json!({"ignored": "event not used by plumbline"}),
            )
        }
        Ok(Mapped::Ignored(why)) => {
            return Answer::ok(
                StatusCode::OK,
                "ignored",
                serde_json::json!({ "ignored": why }),
            )
        }
        Ok(Mapped::Plan(p)) => p,
    };
    let claimed = match claim(st, delivery, event).await {
        Ok(Claim::Claimed) => true,
        Ok(Claim::Duplicate) => {
            return Answer::ok(
                StatusCode::OK,
                "duplicate",
                serde_json::json!({"delivery": delivery, "duplicate": true}),
            );
        }
        Ok(Claim::InFlight) => {
            return Answer::unavailable(
                "in_flight",
                "this delivery is being processed, redeliver later",
            );
        }
        Err(e) => {
            dedupe_error(st, delivery, &e);
            false
        }
    };
    let answer = apply(st, &plan, delivery).await;
    if claimed {
        if answer.status.is_success() {
            // Full channel: the claim expires after its lease instead (see mark_published).
            let _ = st.published.try_send(delivery.to_string());
        } else if let Ok(Err(e)) =
            tokio::time::timeout(STORE_TIMEOUT, st.dedupe.release_delivery(delivery)).await
        {
            // The claim expires after its lease; a redelivery before that gets 503 again.
            tracing::warn!(delivery, error = %e, "releasing the delivery claim failed");
        }
    }
    answer
}

fn dedupe_error(st: &AppState, delivery: &str, error: &StoreUnavailable) {
    st.metrics.inc(
        &plumbline_telemetry::catalog::INGEST_DEDUPE_ERRORS,
        &[("step", "claim")],
        1,
    );
    tracing::warn!(
        delivery,
        error = %error,
        "delivery dedupe unavailable, publishing without it"
    );
}

/// Registry changes, then the records; 2xx only when all of it is durable.
async fn apply(st: &AppState, plan: &Plan, delivery: &str) -> Answer {
    if let Err(e) = registry(st, plan).await {
        tracing::error!(delivery, error = %e, "registry change failed");
        return Answer::unavailable("unavailable", "registry unavailable, redeliver later");
    }
    // The records are children of the webhook's span.
    let trace = TraceContext::current();
    // Publish all records concurrently; answer 2xx only if every one was acknowledged.
    let sends = plan.events.iter().map(|ev| {
        let key = ev.entity_ref().map(|r| r.id()).unwrap_or_default();
        let payload = ev.encode_to_vec();
        let trace = trace.clone();
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
        return Answer::unavailable("unavailable", "event bus unavailable, redeliver later");
    }
    Answer::ok(
        StatusCode::ACCEPTED,
        "published",
        serde_json::json!({"delivery": delivery, "entity_events": plan.events.len()}),
    )
}

async fn registry(st: &AppState, plan: &Plan) -> Result<(), StoreUnavailable> {
    fn bounded<T>(
        what: &'static str,
        r: Result<Result<T, plumbline_store::StoreError>, tokio::time::error::Elapsed>,
    ) -> Result<T, StoreUnavailable> {
        match r {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(StoreUnavailable::Store {
                what,
                source: Arc::new(e),
            }),
            Err(_) => Err(StoreUnavailable::TimedOut { what }),
        }
    }
    if st.enroll && !plan.enroll.is_empty() {
        // An installation enrolled as a project's provider enrolls its repositories there,
        // acted on with it; any other lands in --project, acted on with the services' own
        // credential (which only the operator's project may use).
        let (project, credential) = match plan.installation {
            Some(id) => {
                let found =
                    tokio::time::timeout(STORE_TIMEOUT, st.store.provider_for_installation(id))
                        .await;
                match bounded("provider lookup", found)? {
                    Some((project, name)) => (project, Some(name)),
                    None => (st.project.clone(), None),
                }
            }
            None => (st.project.clone(), None),
        };
        for repo in &plan.enroll {
            let mut properties = serde_json::json!({
                "repo_id": repo.id,
                "full_name": format!("{}/{}", repo.owner, repo.name),
            });
            if let Some(b) = &repo.default_branch {
                properties["default_branch"] = b.clone().into();
            }
            if let Some(p) = repo.private {
                properties["private"] = p.into();
            }
            let entity = Entity {
                entity_ref: repo.entity_ref(&st.provider),
                project: project.clone(),
                credential: credential.clone(),
                owner: repo.owner.clone(),
                name: repo.name.clone(),
                properties,
                labels: vec![],
            };
            let enrolled =
                tokio::time::timeout(STORE_TIMEOUT, st.store.enroll_entity(&entity)).await;
            if bounded("enroll", enrolled)? {
                st.metrics.inc(
                    &plumbline_telemetry::catalog::INGEST_REGISTRY_CHANGES,
                    &[("change", "enrolled")],
                    1,
                );
                tracing::info!(entity = %entity.id(), repo = %entity.full_name(), project = %entity.project, provider = ?entity.credential, "repository enrolled");
            }
        }
    }
    // Pull requests and artifacts join their repository's project, whatever the enrolment
    // setting: they exist only under a registered repository.
    for c in &plan.children {
        let enrolled = tokio::time::timeout(
            STORE_TIMEOUT,
            st.store
                .enroll_child(&c.repository.id(), &c.child, &c.properties),
        )
        .await;
        let kind = c.child.kind;
        match bounded("enroll child entity", enrolled)? {
            plumbline_store::ChildEnrolment::Enrolled => {
                let change = match kind {
                    plumbline_domain::EntityKind::Artifact => "artifact_enrolled",
                    _ => "pull_request_enrolled",
                };
                st.metrics.inc(
                    &plumbline_telemetry::catalog::INGEST_REGISTRY_CHANGES,
                    &[("change", change)],
                    1,
                );
                tracing::info!(entity = %c.child.id(), %kind, repository = %c.repository.id(), "entity enrolled under its repository");
            }
            plumbline_store::ChildEnrolment::Known => {}
            plumbline_store::ChildEnrolment::NoRepository => {
                tracing::debug!(entity = %c.child.id(), %kind, repository = %c.repository.id(), "entity of a repository that is not registered: not enrolled");
            }
        }
    }
    Ok(())
}

async fn method_not_allowed(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let delivery = header_str(&headers, "x-github-delivery");
    st.metrics.inc(
        &plumbline_telemetry::catalog::INGEST_DELIVERIES,
        &[
            ("event", event_label(header_str(&headers, "x-github-event"))),
            ("outcome", "method_not_allowed"),
        ],
        1,
    );
    tracing::warn!(
        delivery,
        status = 405,
        "webhook rejected: method not allowed"
    );
    let mut r = (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(serde_json::json!({"error": "use POST"})),
    )
        .into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    r
}

async fn not_found(headers: HeaderMap, uri: axum::http::Uri) -> Response {
    let delivery = header_str(&headers, "x-github-delivery");
    tracing::warn!(delivery, path = %uri.path(), status = 404, "request rejected: no such path");
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({"error": "not found; webhooks go to POST /webhooks/github"})),
    )
        .into_response()
}
