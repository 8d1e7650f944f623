//! The consume loop every consumer service runs: at-least-once, offsets after durable work.
//!
//! A [`Handler`] processes one record to a durable end. The loop retries transient failures
//! with exponential backoff, dead-letters poison records (or records that keep failing) when a
//! DLQ is configured, stores the offset only after the handler succeeded or the record was
//! dead-lettered, and on shutdown abandons an unfinished record without storing its offset, so
//! the partition's next owner redoes it.
//!
//! Up to `max_in_flight` records are handled at once, across partitions, but never two with the
//! same key (the entity id): a key's records wait while one of them is handled, and the ones
//! waiting together collapse into one handling of the newest (`coalesce`; right for
//! level-triggered handlers, which read live state rather than the record). A partition's
//! offset advances only past records that are all finished, so a crash or a revocation makes
//! the next owner redo exactly the unfinished ones (and maybe some finished after them:
//! handlers are idempotent).
//!
//! A record whose dependency is limited until a known time (a provider's rate limit) is
//! *parked*: its slot goes to other keys, whose work may need other credentials, and the key
//! runs again at that time, coalesced with what arrived meanwhile. On a revocation the records
//! held for the revoked partitions are dropped, waits and backoffs on them end at once, the
//! handlings in flight get a grace period to finish before the partitions are given up (see
//! [`crate::PartitionGate`]), and no offset is stored for them afterwards.

use crate::{Consumer, Producer, Record};
use plumbline_domain::WaitCause;
use plumbline_telemetry::{Health, Metrics};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Why a record could not be processed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// A dependency is down or limiting us (Postgres, the broker, the provider's rate limit):
    /// nothing is wrong with the record. Waited out (until `until` when known), never counted
    /// towards `max_attempts` and never dead-lettered, so an outage does not empty the
    /// partition into the DLQ.
    #[error("unavailable: {reason}")]
    Unavailable {
        /// What it waits on, for people (`plumb status`) and for the handler's
        /// [`Handler::parked`].
        cause: WaitCause,
        reason: String,
        until: Option<std::time::SystemTime>,
    },
    /// This attempt failed, possibly through the record's fault (a query it makes fail, a
    /// panic): retried, counted towards `max_attempts`, then dead-lettered.
    #[error("attempt failed: {0}")]
    Attempt(String),
    /// Will never succeed (e.g. undecodable): dead-letter at once.
    #[error("poison: {0}")]
    Poison(String),
}

/// Handles records; shared by the concurrent tasks of one worker.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, record: &Record) -> impl Future<Output = Result<(), Failure>> + Send;

    /// The record was parked until `wait.until`: the handler says so where people look (the
    /// services record it in Postgres for `plumb status`). Runs before the record's slot is
    /// given up; failing to record is the handler's to log, never the record's fault.
    fn parked(&self, record: &Record, wait: &Parked) -> impl Future<Output = ()> + Send {
        let _ = (record, wait);
        std::future::ready(())
    }
}

/// A record parked until a known time, as [`Handler::parked`] is told.
#[derive(Debug, Clone)]
pub struct Parked {
    pub cause: WaitCause,
    pub reason: String,
    pub until: std::time::SystemTime,
}

pub struct Worker {
    pub name: &'static str,
    pub consumer: Consumer,
    /// Attempts before a transiently failing record is dead-lettered (or, without a DLQ,
    /// retried until shutdown: a record is never skipped silently).
    pub max_attempts: u32,
    /// Producer and topic of the dead-letter queue.
    pub dead_letter: Option<(Producer, String)>,
    pub health: Health,
    pub metrics: Metrics,
    /// First retry delay; doubles per attempt up to 64x.
    pub base_backoff: Duration,
    /// Records handled at once (distinct keys); 1 handles one record at a time.
    pub max_in_flight: usize,
    /// Whether records of one key waiting together are handled once, as the newest of them.
    pub coalesce: bool,
}

const STALL: Duration = Duration::from_secs(120);

/// The longest [`Handler::parked`] may take before the record is parked without it.
const PARKED_HOOK_LIMIT: Duration = Duration::from_secs(2);

/// A known limit at least this far away parks the record instead of holding its slot.
const PARK_AFTER: Duration = Duration::from_secs(1);

/// How long a handling in flight may still run once shutdown began (the second stage of a
/// graceful shutdown: then it is abandoned, its offset not stored, and the next owner redoes
/// it, since handlers are idempotent). A handling stuck on a dependency never holds a stopping
/// process past its termination grace period.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Records held in memory at most, parked ones included.
const MAX_HELD: usize = 10_000;

impl Worker {
    /// Runs the loop on a task of its own, keeping the service ready while `ready` answers
    /// true (re-checked every 5 s), until `shutdown`.
    pub fn spawn<H, R, Fut>(
        self,
        handler: H,
        shutdown: CancellationToken,
        ready: R,
    ) -> tokio::task::JoinHandle<()>
    where
        H: Handler,
        R: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = bool> + Send,
    {
        let health = self.health.clone();
        tokio::spawn(async move {
            let readiness = plumbline_telemetry::readiness_loop(
                health,
                Duration::from_secs(5),
                shutdown.clone(),
                ready,
            );
            Arc::new(self).run(Arc::new(handler), shutdown).await;
            readiness.abort();
        })
    }

    pub async fn run<H: Handler>(self: Arc<Self>, handler: Arc<H>, shutdown: CancellationToken) {
        tracing::info!(
            worker = self.name,
            max_in_flight = self.max_in_flight,
            "consuming"
        );
        self.health.beat(self.name, STALL);
        let max_in_flight = self.max_in_flight.max(1);
        // Records held (waiting or in flight, parked ones aside) before the loop stops fetching
        // more; parked records are bounded on their own.
        let max_held = max_in_flight * 8;
        let gate = self.consumer.gate().clone();
        let (finished_tx, mut finished_rx) = mpsc::unbounded_channel::<Finished>();
        let mut keys: HashMap<String, KeyState> = HashMap::new();
        let mut ready: VecDeque<String> = VecDeque::new();
        let mut parked: BinaryHeap<Reverse<(tokio::time::Instant, String)>> = BinaryHeap::new();
        let mut offsets: HashMap<(String, i32, u64), PartitionOffsets> = HashMap::new();
        let mut held = 0usize;
        let mut parked_records = 0usize;
        let mut in_flight = 0usize;
        let lag = self.clone().report_lag(shutdown.clone());
        loop {
            // Revoked partitions: what this member held of them is no longer its to do.
            let revoked = gate.take_revoked();
            if !revoked.is_empty() {
                let mut dropped = 0usize;
                keys.retain(|_, state| {
                    let before = state.waiting.len();
                    state
                        .waiting
                        .retain(|h| h.epoch == gate.epoch(&h.record.topic, h.record.partition));
                    let gone = before - state.waiting.len();
                    dropped += gone;
                    if state.waiting.is_empty() {
                        state.parked_until = None;
                    }
                    state.running || !state.waiting.is_empty()
                });
                held -= dropped;
                parked_records = keys
                    .values()
                    .filter(|k| k.parked_until.is_some())
                    .map(|k| k.waiting.len())
                    .sum();
                offsets.retain(|(t, p, e), _| gate.epoch(t, *p) == *e);
                if dropped > 0 {
                    tracing::info!(
                        worker = self.name,
                        partitions = revoked.len(),
                        dropped,
                        "revoked partitions: held records dropped for the next owner"
                    );
                }
                self.metrics.inc(
                    &plumbline_telemetry::catalog::WORKER_REVOCATIONS,
                    &[("worker", self.name)],
                    revoked.len() as u64,
                );
            }
            // Parked keys whose time came are ready again.
            let now = tokio::time::Instant::now();
            while let Some(Reverse((at, _))) = parked.peek() {
                if *at > now {
                    break;
                }
                let Some(Reverse((_, key))) = parked.pop() else {
                    break;
                };
                if let Some(state) = keys.get_mut(&key) {
                    if state.parked_until.is_some_and(|u| u <= now) {
                        state.parked_until = None;
                        parked_records -= state.waiting.len();
                        ready.push_back(key);
                    }
                }
            }
            // Start what can start: keys with waiting records, while there is room.
            while in_flight < max_in_flight && !shutdown.is_cancelled() {
                let Some(key) = ready.pop_front() else { break };
                let Some(state) = keys.get_mut(&key) else {
                    continue;
                };
                if state.running || state.waiting.is_empty() || state.parked_until.is_some() {
                    continue;
                }
                let batch: Vec<Held> = if self.coalesce {
                    std::mem::take(&mut state.waiting)
                } else {
                    vec![state.waiting.remove(0)]
                };
                if batch.len() > 1 {
                    self.metrics.inc(
                        &plumbline_telemetry::catalog::WORKER_COALESCED,
                        &[("worker", self.name)],
                        batch.len() as u64 - 1,
                    );
                }
                state.running = true;
                in_flight += 1;
                let (worker, handler, shutdown, tx, gate) = (
                    self.clone(),
                    handler.clone(),
                    shutdown.clone(),
                    finished_tx.clone(),
                    gate.clone(),
                );
                tokio::spawn(async move {
                    // The newest record stands for the batch.
                    let end = match batch.last() {
                        Some(newest) => {
                            let (topic, partition) =
                                (newest.record.topic.clone(), newest.record.partition);
                            gate.enter(&topic, partition);
                            let started = tokio::time::Instant::now();
                            // Waiting: behind the same key, or for a slot (max_in_flight).
                            let queued = batch
                                .first()
                                .map(|h| started.saturating_duration_since(h.received))
                                .unwrap_or_default();
                            worker.metrics.observe(
                                &plumbline_telemetry::catalog::WORKER_QUEUE_SECONDS,
                                &[("worker", worker.name)],
                                queued.as_secs_f64(),
                            );
                            let end = worker
                                .process(
                                    handler.as_ref(),
                                    &newest.record,
                                    &shutdown,
                                    &newest.revoked,
                                )
                                .await;
                            worker.metrics.observe(
                                &plumbline_telemetry::catalog::WORKER_HANDLE_SECONDS,
                                &[("worker", worker.name)],
                                started.elapsed().as_secs_f64(),
                            );
                            gate.leave(&topic, partition);
                            end
                        }
                        None => End::Durable,
                    };
                    let _ = tx.send(Finished { key, batch, end });
                });
            }
            self.metrics.set_gauge(
                &plumbline_telemetry::catalog::WORKER_IN_FLIGHT,
                &[("worker", self.name)],
                in_flight as u64,
            );
            self.metrics.set_gauge(
                &plumbline_telemetry::catalog::WORKER_PARKED,
                &[("worker", self.name)],
                parked_records as u64,
            );
            let fetch =
                held - parked_records < max_held && held < MAX_HELD && !shutdown.is_cancelled();
            if shutdown.is_cancelled() && in_flight == 0 {
                break;
            }
            let next_unpark = parked.peek().map(|Reverse((at, _))| *at);
            let next = tokio::select! {
                _ = shutdown.cancelled(), if fetch => continue,
                _ = tokio::time::sleep_until(next_unpark.unwrap_or(now)), if next_unpark.is_some() => continue,
                f = finished_rx.recv() => Event::Finished(f),
                r = tokio::time::timeout(Duration::from_secs(1), self.consumer.recv()), if fetch => Event::Received(r),
            };
            self.health.beat(self.name, STALL);
            match next {
                Event::Finished(None) => break,
                Event::Finished(Some(f)) => {
                    in_flight -= 1;
                    if let End::Park(until) = f.end {
                        // Put the batch back in front of what arrived meanwhile; it runs again
                        // (coalesced with the newer records) once the limit lifts.
                        let batch_len = f.batch.len();
                        let mut waiting: Vec<Held> = f
                            .batch
                            .into_iter()
                            .filter(|h| h.epoch == gate.epoch(&h.record.topic, h.record.partition))
                            .collect();
                        held -= batch_len - waiting.len();
                        if let Some(state) = keys.get_mut(&f.key) {
                            state.running = false;
                            waiting.append(&mut state.waiting);
                            state.waiting = waiting;
                            if state.waiting.is_empty() {
                                keys.remove(&f.key);
                            } else {
                                self.metrics.inc(
                                    &plumbline_telemetry::catalog::WORKER_PARKED_TOTAL,
                                    &[("worker", self.name)],
                                    1,
                                );
                                state.parked_until = Some(until);
                                parked_records += state.waiting.len();
                                parked.push(Reverse((until, f.key.clone())));
                            }
                        } else {
                            held -= waiting.len();
                        }
                        continue;
                    }
                    held -= f.batch.len();
                    if let Some(state) = keys.get_mut(&f.key) {
                        state.running = false;
                        if state.waiting.is_empty() {
                            keys.remove(&f.key);
                        } else {
                            ready.push_back(f.key.clone());
                        }
                    }
                    if f.end != End::Durable {
                        continue; // interrupted by shutdown or revocation: the next owner redoes it
                    }
                    for h in &f.batch {
                        let r = &h.record;
                        // Only for the partition epoch it was received in: after a revocation,
                        // the partition's offsets are its next owner's to store.
                        let Some(track) = offsets.get_mut(&(r.topic.clone(), r.partition, h.epoch))
                        else {
                            continue;
                        };
                        if let Some(through) = track.finish(r.offset) {
                            if let Err(e) =
                                self.consumer.done_through(&r.topic, r.partition, through)
                            {
                                tracing::warn!(worker = self.name, error = %e, partition = r.partition, offset = through, "storing offset failed");
                            }
                        }
                    }
                }
                Event::Received(Err(_)) => {} // idle
                Event::Received(Ok(Err(e))) => {
                    tracing::warn!(worker = self.name, error = %e, "consume failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Event::Received(Ok(Ok(record))) => {
                    let (epoch, revoked) = gate.current(&record.topic, record.partition);
                    offsets
                        .entry((record.topic.clone(), record.partition, epoch))
                        .or_default()
                        .start(record.offset);
                    held += 1;
                    let key = record.key.clone().unwrap_or_else(|| {
                        format!("{}/{}/{}", record.topic, record.partition, record.offset)
                    });
                    let state = keys.entry(key.clone()).or_default();
                    state.waiting.push(Held {
                        record,
                        epoch,
                        revoked,
                        received: tokio::time::Instant::now(),
                    });
                    if parked_key(state) {
                        parked_records += 1;
                    } else if !state.running && state.waiting.len() == 1 {
                        ready.push_back(key);
                    }
                }
            }
        }
        lag.abort();
        if let Err(e) = self.consumer.commit_stored() {
            tracing::warn!(worker = self.name, error = %e, "final offset commit failed");
        }
        tracing::info!(worker = self.name, "stopped");
    }

    /// Publishes `plumbline_consumer_lag` (records not yet consumed, per partition this member
    /// owns) every 10 s, from a blocking task (it asks the broker for watermarks). A partition given away loses its
    /// series, so a lag never freezes at its last value on a member that no longer owns it.
    fn report_lag(self: Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        use plumbline_telemetry::catalog::CONSUMER_LAG;
        tokio::spawn(async move {
            let mut reported: Vec<(String, String)> = Vec::new();
            loop {
                let worker = self.clone();
                let measured = tokio::task::spawn_blocking(move || {
                    worker.consumer.partition_lag(Duration::from_secs(5))
                })
                .await;
                let Ok(lags) = measured else { return };
                let group = self.consumer.group().to_string();
                // Until the group assigned partitions there is nothing to report: look again in a
                // second (a local question then, see `Consumer::partition_lag`).
                let next = match &lags {
                    Ok(l) if !l.is_empty() => Duration::from_secs(10),
                    _ => Duration::from_secs(1),
                };
                match lags {
                    Ok(lags) => {
                        let now: Vec<(String, String)> = lags
                            .iter()
                            .map(|l| (l.topic.clone(), l.partition.to_string()))
                            .collect();
                        for (topic, partition) in reported.iter().filter(|r| !now.contains(r)) {
                            self.metrics.remove_gauge(
                                &CONSUMER_LAG,
                                &[
                                    ("group", &group),
                                    ("topic", topic),
                                    ("partition", partition),
                                ],
                            );
                        }
                        for (l, (topic, partition)) in lags.iter().zip(&now) {
                            self.metrics.set_gauge(
                                &CONSUMER_LAG,
                                &[
                                    ("group", &group),
                                    ("topic", topic),
                                    ("partition", partition),
                                ],
                                l.lag.max(0) as u64,
                            );
                        }
                        reported = now;
                    }
                    Err(e) => {
                        tracing::debug!(worker = self.name, error = %e, "consumer lag unavailable")
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(next) => {}
                }
            }
        })
    }

    /// Handles one record to its end: durable, abandoned (shutdown or revocation), or parked
    /// until a dependency's limit lifts (a provider's "rate limited until T": the slot goes to
    /// other entities meanwhile, whose work may need other credentials).
    async fn process<H: Handler>(
        &self,
        handler: &H,
        record: &Record,
        shutdown: &CancellationToken,
        revoked: &CancellationToken,
    ) -> End {
        let mut attempt: u32 = 0;
        let mut waits: u32 = 0;
        // The producer's span, read once: every attempt is its child (none: a root per attempt,
        // never a parent that does not exist).
        let parent = crate::TraceContext::extract(&record.headers);
        loop {
            if revoked.is_cancelled() {
                return End::Abandoned;
            }
            // One consumer span per attempt, a child of the span that produced the record.
            let span = tracing::info_span!(
                "consume",
                otel.kind = "consumer",
                otel.name = %format!("{} process", record.topic),
                otel.status_code = tracing::field::Empty,
                messaging.system = "kafka",
                messaging.operation.type = "process",
                messaging.destination.name = %record.topic,
                messaging.kafka.partition = record.partition,
                messaging.kafka.offset = record.offset,
                worker = self.name,
                attempt,
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            );
            if let Some(parent) = &parent {
                parent.attach(&span);
            }
            plumbline_telemetry::record_trace_ids(&span);
            let handled = {
                use tracing::Instrument as _;
                let handling = handler.handle(record).instrument(span.clone());
                tokio::select! {
                    r = handling => r,
                    _ = async {
                        shutdown.cancelled().await;
                        tokio::time::sleep(SHUTDOWN_GRACE).await;
                    } => {
                        tracing::warn!(worker = self.name, partition = record.partition, offset = record.offset, "handling still running {SHUTDOWN_GRACE:?} after shutdown began: abandoned, the next owner redoes it");
                        return End::Abandoned;
                    }
                }
            };
            let err = match handled {
                Ok(()) => return End::Durable,
                Err(e) => {
                    span.record("otel.status_code", "ERROR");
                    e
                }
            };
            // The attempt ends here; a wait or backoff before the next is not part of it.
            drop(span);
            if let Failure::Unavailable {
                cause,
                reason,
                until,
            } = &err
            {
                let now = std::time::SystemTime::now();
                if let Some(wait) = until
                    .and_then(|u| u.duration_since(now).ok())
                    .filter(|w| *w >= PARK_AFTER)
                {
                    let wait = wait.min(Duration::from_secs(3600));
                    tracing::warn!(
                        worker = self.name,
                        %cause,
                        reason,
                        ?wait,
                        partition = record.partition,
                        offset = record.offset,
                        "limited until a known time, parking the record"
                    );
                    let at = tokio::time::Instant::now() + wait;
                    // Advisory only: it never holds the slot past PARKED_HOOK_LIMIT, nor a
                    // shutdown or a revocation (a quota storm parks every record at once,
                    // while the database may be what is slow).
                    let parked = Parked {
                        cause: *cause,
                        reason: reason.clone(),
                        until: now + wait,
                    };
                    let told = handler.parked(record, &parked);
                    tokio::select! {
                        _ = told => {}
                        _ = tokio::time::sleep(PARKED_HOOK_LIMIT) => {
                            tracing::debug!(worker = self.name, "recording a park took too long; parked without it");
                        }
                        _ = shutdown.cancelled() => {}
                        _ = revoked.cancelled() => {}
                    }
                    return End::Park(at);
                }
                // Wait for the dependency, in slices, beating health so a long outage is
                // "waiting", not "stalled".
                let backoff = self.base_backoff * 2u32.pow(waits.min(8));
                waits += 1;
                let wait = until
                    .and_then(|u| u.duration_since(now).ok())
                    .unwrap_or(backoff)
                    .min(Duration::from_secs(3600));
                tracing::warn!(
                    worker = self.name,
                    %cause,
                    reason,
                    ?wait,
                    "dependency unavailable, waiting"
                );
                self.metrics.inc(
                    &plumbline_telemetry::catalog::WORKER_WAITS,
                    &[("worker", self.name)],
                    1,
                );
                let deadline = tokio::time::Instant::now() + wait;
                while tokio::time::Instant::now() < deadline {
                    self.health.beat(self.name, STALL);
                    tokio::select! {
                        _ = shutdown.cancelled() => return End::Abandoned,
                        _ = revoked.cancelled() => return End::Abandoned,
                        _ = tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + Duration::from_secs(10))) => {}
                    }
                }
                continue;
            }
            attempt += 1;
            self.health.beat(self.name, STALL);
            let give_up = matches!(err, Failure::Poison(_)) || attempt >= self.max_attempts;
            if give_up && self.dead_letter.is_some() {
                tracing::error!(worker = self.name, error = %err, attempt, partition = record.partition, offset = record.offset, "dead-lettering record");
                return if self.dead_letter(record, &err.to_string(), shutdown).await {
                    End::Durable
                } else {
                    End::Abandoned
                };
            }
            if give_up && matches!(err, Failure::Poison(_)) {
                // No DLQ for this stream: a poison record cannot be processed, ever. Skip it
                // loudly rather than block the partition forever.
                tracing::error!(worker = self.name, error = %err, partition = record.partition, offset = record.offset, "skipping poison record");
                self.metrics.inc(
                    &plumbline_telemetry::catalog::POISON_RECORDS,
                    &[("worker", self.name)],
                    1,
                );
                return End::Durable;
            }
            let backoff = self.base_backoff * 2u32.pow(attempt.min(6));
            tracing::warn!(worker = self.name, error = %err, attempt, ?backoff, "record failed, retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return End::Abandoned,
                _ = revoked.cancelled() => return End::Abandoned,
                _ = tokio::time::sleep(backoff) => {}
            }
        }
    }

    async fn dead_letter(
        &self,
        record: &Record,
        reason: &str,
        shutdown: &CancellationToken,
    ) -> bool {
        let Some((producer, topic)) = &self.dead_letter else {
            return false;
        };
        let mut headers = BTreeMap::new();
        headers.insert("x-plumbline-error".to_string(), reason.to_string());
        headers.insert("x-plumbline-source-topic".to_string(), record.topic.clone());
        headers.insert(
            "x-plumbline-source-partition".to_string(),
            record.partition.to_string(),
        );
        headers.insert(
            "x-plumbline-source-offset".to_string(),
            record.offset.to_string(),
        );
        let key = record.key.clone().unwrap_or_default();
        let id = record.headers.get("ce_id").cloned().unwrap_or_default();
        loop {
            let sent = producer
                .publish(
                    topic,
                    &key,
                    &record.payload,
                    "dev.plumbline.dead_letter.v1",
                    &id,
                    &record.trace(),
                    &headers,
                )
                .await;
            match sent {
                Ok(_) => {
                    self.metrics.inc(
                        &plumbline_telemetry::catalog::DEAD_LETTERS,
                        &[("worker", self.name)],
                        1,
                    );
                    return true;
                }
                Err(e) => {
                    // The DLQ write is the record's durable end: until it succeeds, keep the offset.
                    tracing::error!(worker = self.name, error = %e, "dead-letter publish failed, retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }
}

enum Event {
    Finished(Option<Finished>),
    Received(Result<Result<Record, crate::BusError>, tokio::time::error::Elapsed>),
}

/// How a key's handling ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The record's work is durable (or it was dead-lettered): its offset may be stored.
    Durable,
    /// Interrupted by shutdown or a revocation: the offset stays, the next owner redoes it.
    Abandoned,
    /// Limited until this instant: handled again then.
    Park(tokio::time::Instant),
}

/// A key's handling ended: `batch` (the newest last).
struct Finished {
    key: String,
    batch: Vec<Held>,
    end: End,
}

/// A record held by the loop, with the partition epoch it was received in.
struct Held {
    record: Record,
    epoch: u64,
    /// Cancelled when the record's partition is revoked.
    revoked: CancellationToken,
    /// When the loop received it (for the queueing-time histogram).
    received: tokio::time::Instant,
}

#[derive(Default)]
struct KeyState {
    running: bool,
    waiting: Vec<Held>,
    /// Set while the key waits out a known limit.
    parked_until: Option<tokio::time::Instant>,
}

fn parked_key(state: &KeyState) -> bool {
    state.parked_until.is_some()
}

/// Which offsets of a partition are unfinished, so the stored offset never passes one.
#[derive(Default)]
struct PartitionOffsets {
    unfinished: BTreeSet<i64>,
    started_min: Option<i64>,
    finished_max: Option<i64>,
    stored: Option<i64>,
}

impl PartitionOffsets {
    fn start(&mut self, offset: i64) {
        self.unfinished.insert(offset);
        self.started_min = Some(self.started_min.map_or(offset, |m| m.min(offset)));
    }

    /// Marks `offset` finished; returns the offset everything up to which is now finished, when
    /// that moved forward.
    fn finish(&mut self, offset: i64) -> Option<i64> {
        self.unfinished.remove(&offset);
        self.finished_max = self.finished_max.max(Some(offset));
        let through = match self.unfinished.first() {
            // Only past a record this worker finished: before it lies what it never saw.
            Some(&first) => Some(first - 1).filter(|t| self.started_min.is_some_and(|m| *t >= m)),
            None => self.finished_max,
        }?;
        if self.stored.is_some_and(|s| s >= through) {
            return None;
        }
        self.stored = Some(through);
        Some(through)
    }
}

#[cfg(test)]
mod tests {
    use super::PartitionOffsets;

    #[test]
    fn offsets_advance_only_past_finished_records() {
        let mut p = PartitionOffsets::default();
        for o in [10, 11, 12, 13] {
            p.start(o);
        }
        assert_eq!(p.finish(12), None, "10 and 11 still unfinished");
        assert_eq!(p.finish(10), Some(10));
        assert_eq!(p.finish(11), Some(12), "11 done: through 12");
        p.start(14);
        assert_eq!(p.finish(14), None, "13 still unfinished");
        assert_eq!(p.finish(13), Some(14));
        assert_eq!(p.finish(13), None, "nothing new");
    }
}
