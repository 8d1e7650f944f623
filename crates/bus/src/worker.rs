//! The consume loop every consumer service runs: at-least-once, offsets after durable work.
//!
//! A [`Handler`] processes one record to a durable end. The loop retries transient failures
//! with exponential backoff, dead-letters poison records (or records that keep failing) when a
//! DLQ is configured, stores the offset only after the handler succeeded or the record was
//! dead-lettered, and on shutdown abandons an unfinished record without storing its offset, so
//! the partition's next owner redoes it.

use crate::{Consumer, Producer, Record};
use plumbline_telemetry::{Health, Metrics};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Why a record could not be processed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A dependency is down or limiting us (Postgres, the broker, the provider's rate limit):
    /// nothing is wrong with the record. Waited out (until `until` when known), never counted
    /// towards `max_attempts` and never dead-lettered, so an outage does not empty the
    /// partition into the DLQ.
    #[error("unavailable: {reason}")]
    Unavailable { reason: String, until: Option<std::time::SystemTime> },
    /// Failed in a way that may be the record's fault: retried `max_attempts` times.
    #[error("transient: {0}")]
    Transient(String),
    /// Will never succeed (e.g. undecodable): dead-letter at once.
    #[error("poison: {0}")]
    Poison(String),
}

pub trait Handler: Send {
    fn handle(&mut self, record: &Record) -> impl Future<Output = Result<(), Failure>> + Send;
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
}

const STALL: Duration = Duration::from_secs(120);

impl Worker {
    /// Runs the loop on a task of its own, keeping the service ready while `ready` answers
    /// true (re-checked every 5 s), until `shutdown`.
    pub fn spawn<H, R, Fut>(self, mut handler: H, shutdown: CancellationToken, ready: R) -> tokio::task::JoinHandle<()>
    where
        H: Handler + 'static,
        R: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = bool> + Send,
    {
        let health = self.health.clone();
        tokio::spawn(async move {
            let readiness = plumbline_telemetry::readiness_loop(health, Duration::from_secs(5), shutdown.clone(), ready);
            self.run(&mut handler, shutdown).await;
            readiness.abort();
        })
    }

    pub async fn run<H: Handler>(self, handler: &mut H, shutdown: CancellationToken) {
        tracing::info!(worker = self.name, "consuming");
        self.health.beat(self.name, STALL);
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = tokio::time::timeout(Duration::from_secs(1), self.consumer.recv()) => r,
            };
            self.health.beat(self.name, STALL);
            let record = match next {
                Err(_) => continue, // idle
                Ok(Err(e)) => {
                    tracing::warn!(worker = self.name, error = %e, "consume failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Ok(Ok(r)) => r,
            };
            if !self.process(handler, &record, &shutdown).await {
                break;
            }
            if let Err(e) = self.consumer.done(&record) {
                tracing::warn!(worker = self.name, error = %e, partition = record.partition, offset = record.offset, "storing offset failed");
            }
        }
        if let Err(e) = self.consumer.commit_stored() {
            tracing::warn!(worker = self.name, error = %e, "final offset commit failed");
        }
        tracing::info!(worker = self.name, "stopped");
    }

    /// Returns false when shutdown interrupted the record before a durable end.
    async fn process<H: Handler>(&self, handler: &mut H, record: &Record, shutdown: &CancellationToken) -> bool {
        let mut attempt: u32 = 0;
        let mut waits: u32 = 0;
        loop {
            let err = match handler.handle(record).await {
                Ok(()) => return true,
                Err(e) => e,
            };
            if let Failure::Unavailable { reason, until } = &err {
                // Wait for the dependency, in slices, beating health so a long outage is
                // "waiting", not "stalled".
                let backoff = self.base_backoff * 2u32.pow(waits.min(8));
                waits += 1;
                let wait = until
                    .and_then(|u| u.duration_since(std::time::SystemTime::now()).ok())
                    .unwrap_or(backoff)
                    .min(Duration::from_secs(3600));
                tracing::warn!(worker = self.name, reason, ?wait, "dependency unavailable, waiting");
                self.metrics.inc("plumbline_worker_waits_total", "waits for an unavailable dependency", &[("worker", self.name)], 1);
                let deadline = tokio::time::Instant::now() + wait;
                while tokio::time::Instant::now() < deadline {
                    self.health.beat(self.name, STALL);
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
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
                return self.dead_letter(record, &err.to_string(), shutdown).await;
            }
            if give_up && matches!(err, Failure::Poison(_)) {
                // No DLQ for this stream: a poison record cannot be processed, ever. Skip it
                // loudly rather than block the partition forever.
                tracing::error!(worker = self.name, error = %err, partition = record.partition, offset = record.offset, "skipping poison record");
                self.metrics.inc("plumbline_poison_records_total", "undecodable records skipped", &[("worker", self.name)], 1);
                return true;
            }
            let backoff = self.base_backoff * 2u32.pow(attempt.min(6));
            tracing::warn!(worker = self.name, error = %err, attempt, ?backoff, "record failed, retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(backoff) => {}
            }
        }
    }

    async fn dead_letter(&self, record: &Record, reason: &str, shutdown: &CancellationToken) -> bool {
        let Some((producer, topic)) = &self.dead_letter else { return false };
        let mut headers = BTreeMap::new();
        headers.insert("x-plumbline-error".to_string(), reason.to_string());
        headers.insert("x-plumbline-source-topic".to_string(), record.topic.clone());
        headers.insert("x-plumbline-source-partition".to_string(), record.partition.to_string());
        headers.insert("x-plumbline-source-offset".to_string(), record.offset.to_string());
        let key = record.key.clone().unwrap_or_default();
        let id = record.headers.get("ce_id").cloned().unwrap_or_default();
        loop {
            let sent = producer
                .publish(topic, &key, &record.payload, "dev.plumbline.dead_letter.v1", &id, &record.trace().child(), &headers)
                .await;
            match sent {
                Ok(_) => {
                    self.metrics.inc("plumbline_dead_letters_total", "records sent to the dead-letter queue", &[("worker", self.name)], 1);
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
