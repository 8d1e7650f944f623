//! Consumer-group member with offsets stored only after durable work.

use crate::trace::TraceContext;
use crate::BusError;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, ClientContext, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub brokers: String,
    pub group_id: String,
    pub client_id: String,
    pub topics: Vec<String>,
    /// How long the group waits for a silent member before giving its partitions away.
    pub session_timeout: Duration,
    /// How long a revocation waits for the handlings in flight on the revoked partitions.
    pub revoke_grace: Duration,
    /// Longest a fetch waits at the broker for new records (`fetch.wait.max.ms`). Brokers
    /// that do not answer a waiting fetch as soon as records arrive (tansu) hold each hop of
    /// the pipeline for up to this long, so it is short: a fetch every 50 ms per broker is
    /// cheap, half a second (librdkafka's default) per hop is not.
    pub fetch_wait: Duration,
    /// Security and passthrough properties (TLS, SASL, ...), applied after Plumbline's own.
    pub client_options: Vec<(String, secrecy::SecretString)>,
}

impl ConsumerConfig {
    pub fn new(
        brokers: impl Into<String>,
        group_id: impl Into<String>,
        topic: impl Into<String>,
    ) -> Self {
        let group_id = group_id.into();
        ConsumerConfig {
            brokers: brokers.into(),
            client_id: group_id.clone(),
            group_id,
            topics: vec![topic.into()],
            session_timeout: Duration::from_secs(10),
            revoke_grace: Duration::from_secs(10),
            fetch_wait: Duration::from_millis(50),
            client_options: Vec::new(),
        }
    }

    /// With security and passthrough properties (see [`crate::apply_client_options`]).
    pub fn with_client_options(mut self, options: Vec<(String, secrecy::SecretString)>) -> Self {
        self.client_options = options;
        self
    }
}

/// One consumed record, owned, with its headers decoded.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

impl Record {
    /// The record's trace, or a new root if the producer sent none.
    pub fn trace(&self) -> TraceContext {
        TraceContext::extract(&self.headers).unwrap_or_else(TraceContext::new_root)
    }
}

/// What the consume loop and librdkafka's rebalance callback share about each partition.
///
/// A revocation must not leave a partition's work half-owned: when librdkafka revokes
/// partitions, the callback bumps each one's *epoch* (records received before belong to the old
/// one, and their offsets are never stored after it), cancels the partition's token (records
/// waiting out a backoff or a rate limit are abandoned at once), then waits up to `grace` for
/// the handlings in flight on those partitions to end, so the next owner does not start on an
/// entity this member is still evaluating. The loop drops the records it held for the old epoch;
/// the next owner re-reads them from the committed offset (handlers are idempotent).
///
/// The wait blocks the thread that polls the consumer (librdkafka runs the callback there); the
/// handlings run on other runtime threads, so services run on a multi-threaded runtime.
pub struct PartitionGate {
    state: Mutex<GateState>,
    idle: Condvar,
    grace: Duration,
}

#[derive(Default)]
struct GateState {
    epochs: HashMap<(String, i32), u64>,
    tokens: HashMap<(String, i32), CancellationToken>,
    in_flight: HashMap<(String, i32), usize>,
    /// Revocations the loop has not seen yet.
    revoked: Vec<(String, i32)>,
}

impl PartitionGate {
    fn new(grace: Duration) -> Self {
        PartitionGate {
            state: Mutex::new(GateState::default()),
            idle: Condvar::new(),
            grace,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        // A panic while holding this lock leaves plain counters behind: still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The partition's current epoch and the token cancelled when it is revoked.
    pub fn current(&self, topic: &str, partition: i32) -> (u64, CancellationToken) {
        let mut s = self.lock();
        let tp = (topic.to_string(), partition);
        let epoch = s.epochs.get(&tp).copied().unwrap_or(0);
        let token = s.tokens.entry(tp).or_default().clone();
        (epoch, token)
    }

    pub fn epoch(&self, topic: &str, partition: i32) -> u64 {
        self.lock()
            .epochs
            .get(&(topic.to_string(), partition))
            .copied()
            .unwrap_or(0)
    }

    /// A handling of a record of this partition starts.
    pub fn enter(&self, topic: &str, partition: i32) {
        *self
            .lock()
            .in_flight
            .entry((topic.to_string(), partition))
            .or_default() += 1;
    }

    /// A handling of a record of this partition ended (durably or not).
    pub fn leave(&self, topic: &str, partition: i32) {
        let mut s = self.lock();
        if let Some(n) = s.in_flight.get_mut(&(topic.to_string(), partition)) {
            *n = n.saturating_sub(1);
        }
        drop(s);
        self.idle.notify_all();
    }

    /// Partitions revoked since the last call.
    pub fn take_revoked(&self) -> Vec<(String, i32)> {
        std::mem::take(&mut self.lock().revoked)
    }

    /// Handlings in flight on `partitions`, right now.
    fn busy(s: &GateState, partitions: &[(String, i32)]) -> usize {
        partitions
            .iter()
            .map(|tp| s.in_flight.get(tp).copied().unwrap_or(0))
            .sum()
    }

    fn revoke(&self, partitions: Vec<(String, i32)>) {
        let mut s = self.lock();
        for tp in &partitions {
            *s.epochs.entry(tp.clone()).or_default() += 1;
            if let Some(t) = s.tokens.remove(tp) {
                t.cancel();
            }
            s.revoked.push(tp.clone());
        }
        let deadline = std::time::Instant::now() + self.grace;
        loop {
            let busy = Self::busy(&s, &partitions);
            if busy == 0 {
                return;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                tracing::warn!(busy, grace = ?self.grace, "revoked partitions still have handlings in flight, giving them up");
                return;
            }
            s = match self.idle.wait_timeout(s, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

/// Observes rebalances and hands revocations to the [`PartitionGate`]. Offsets are stored only
/// after durable work and librdkafka commits stored offsets when partitions are revoked; the
/// counts are the health signal that a group is churning.
pub struct GroupContext {
    rebalances: AtomicU64,
    gate: Arc<PartitionGate>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions revoked");
                let parts = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                self.gate.revoke(parts);
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned")
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, _c: &BaseConsumer<Self>, _rebalance: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::Relaxed);
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(error = %e, "offset commit failed");
        }
    }
}

pub struct Consumer {
    /// `None` only while [`Drop`] hands it to the thread that closes it.
    inner: Option<Arc<StreamConsumer<GroupContext>>>,
    gate: Arc<PartitionGate>,
    group: String,
}

/// The longest dropping a [`Consumer`] waits for librdkafka to close it (leave the group,
/// serve the last revocation).
const CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// librdkafka closes a consumer when it is dropped, polling until the close completes; against
/// a broker that never completes it (seen with the embedded mock cluster at shutdown: a test
/// hung over 7 minutes in the drop), that is forever. The close runs on a thread of its own and
/// is waited for at most [`CLOSE_LIMIT`]; past that the process goes on without it (the group
/// gives the partitions away after the session timeout, as after a crash).
impl Drop for Consumer {
    fn drop(&mut self) {
        // Taken, so that the thread drops the last reference and the close runs there.
        let Some(inner) = self.inner.take() else {
            return;
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("consumer-close".into())
            .spawn(move || {
                drop(inner);
                let _ = done_tx.send(());
            });
        if spawned.is_ok() && done_rx.recv_timeout(CLOSE_LIMIT).is_err() {
            tracing::warn!(group = %self.group, "the consumer did not close within {CLOSE_LIMIT:?}: leaving it");
        }
    }
}

/// Records not yet consumed on one partition this member owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub lag: i64,
}

impl Consumer {
    /// The librdkafka consumer (present for the whole life of `self`; only `drop` takes it).
    fn stream(&self) -> &StreamConsumer<GroupContext> {
        match self.inner.as_deref() {
            Some(c) => c,
            None => unreachable!("the consumer is taken only when dropped"),
        }
    }

    pub fn new(config: &ConsumerConfig) -> Result<Self, BusError> {
        let gate = Arc::new(PartitionGate::new(config.revoke_grace));
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group_id)
            .set("client.id", &config.client_id)
            // Commit periodically, but only what `done` stored: at-least-once.
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "session.timeout.ms",
                config.session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (config.session_timeout.as_millis() / 3)
                    .max(100)
                    .to_string(),
            )
            // Cooperative rebalancing: a replica joining or leaving (an autoscaler at work)
            // moves only the partitions that change hands; the others keep being consumed
            // instead of the whole group stopping for every change. Revocations arrive per
            // partition, which the gate handles. A rolling upgrade from the eager assignors
            // ("range,roundrobin") cannot mix them in one group: pass
            // `partition.assignment.strategy` through `--kafka-option` to stay on them.
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set(
                "fetch.wait.max.ms",
                config.fetch_wait.as_millis().max(1).to_string(),
            )
            // A member waiting out an outage (rate limit, database failover) keeps polling no
            // records for a while; it keeps its partitions rather than handing them to a
            // replica that would hit the same outage. A dead process is still detected by
            // the session timeout (heartbeats come from librdkafka's own thread).
            .set("max.poll.interval.ms", "3600000")
            // Prefetch bounded in bytes rather than librdkafka's 100,000 messages per partition
            // (up to 64 MiB): a worker handles tens of records at once, and a backlog (a sweep
            // of 100,000 entities published at once) must stay in the broker, not in memory.
            .set("queued.min.messages", "1000")
            .set("queued.max.messages.kbytes", "4096");
        crate::apply_client_options(&mut cc, &config.client_options)?;
        let inner: StreamConsumer<GroupContext> = cc
            .create_with_context(GroupContext {
                rebalances: AtomicU64::new(0),
                gate: gate.clone(),
            })
            .map_err(|e| BusError::Config(e.to_string()))?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        inner
            .subscribe(&topics)
            .map_err(|e| BusError::Config(e.to_string()))?;
        Ok(Consumer {
            inner: Some(Arc::new(inner)),
            gate,
            group: config.group_id.clone(),
        })
    }

    /// What this member shares with its rebalance callback (see [`PartitionGate`]).
    pub fn gate(&self) -> &Arc<PartitionGate> {
        &self.gate
    }

    /// Rebalances this member went through.
    pub fn rebalances(&self) -> u64 {
        self.stream().context().rebalances.load(Ordering::Relaxed)
    }

    /// The next record. Errors are the broker's (transient ones included); callers log and retry.
    pub async fn recv(&self) -> Result<Record, BusError> {
        let m = self.stream().recv().await.map_err(BusError::Consume)?;
        let mut headers = BTreeMap::new();
        if let Some(h) = m.headers() {
            for hdr in h.iter() {
                if let Some(v) = hdr.value {
                    headers.insert(hdr.key.to_string(), String::from_utf8_lossy(v).into_owned());
                }
            }
        }
        Ok(Record {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers,
        })
    }

    /// Marks the record's work durable: its offset may now be committed.
    pub fn done(&self, record: &Record) -> Result<(), BusError> {
        self.stream()
            .store_offset(&record.topic, record.partition, record.offset)
            .map_err(BusError::StoreOffset)
    }

    /// Marks every record of `partition` up to and including `offset` durable.
    pub fn done_through(&self, topic: &str, partition: i32, offset: i64) -> Result<(), BusError> {
        self.stream()
            .store_offset(topic, partition, offset)
            .map_err(BusError::StoreOffset)
    }

    /// Commits stored offsets now (at shutdown, so a restart does not redo finished work).
    pub fn commit_stored(&self) -> Result<(), BusError> {
        match self.stream().commit_consumer_state(CommitMode::Sync) {
            Ok(()) => Ok(()),
            // Nothing stored since the last commit is not a failure.
            Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::NoOffset,
            )) => Ok(()),
            Err(e) => Err(BusError::StoreOffset(e)),
        }
    }

    /// Records not yet consumed on this member's partitions: the high watermark minus the
    /// position (or, before the first record, the committed offset, else the low watermark).
    /// Blocks on broker round trips: call it from a blocking task.
    pub fn lag(&self, timeout: std::time::Duration) -> Result<i64, BusError> {
        Ok(self.partition_lag(timeout)?.iter().map(|p| p.lag).sum())
    }

    /// The consumer group this member belongs to.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// [`Consumer::lag`] per partition this member owns (blocking: it asks the broker).
    pub fn partition_lag(
        &self,
        timeout: std::time::Duration,
    ) -> Result<Vec<PartitionLag>, BusError> {
        use rdkafka::Offset;
        let positions = self.stream().position().map_err(BusError::Consume)?;
        if positions.count() == 0 {
            // Nothing assigned yet (the group is still forming): ask the coordinator nothing.
            return Ok(Vec::new());
        }
        let committed = self
            .stream()
            .committed(timeout)
            .map_err(BusError::Consume)?;
        let mut lags = Vec::new();
        for p in positions.elements() {
            let (low, high) = self
                .stream()
                .fetch_watermarks(p.topic(), p.partition(), timeout)
                .map_err(BusError::Consume)?;
            let at = match p.offset() {
                Offset::Offset(o) => o,
                _ => match committed
                    .find_partition(p.topic(), p.partition())
                    .map(|c| c.offset())
                {
                    Some(Offset::Offset(o)) => o,
                    _ => low,
                },
            };
            lags.push(PartitionLag {
                topic: p.topic().to_string(),
                partition: p.partition(),
                lag: (high - at).max(0),
            });
        }
        Ok(lags)
    }

    /// Number of partitions currently assigned to this member.
    pub fn assigned_partitions(&self) -> usize {
        self.stream().assignment().map(|a| a.count()).unwrap_or(0)
    }

    /// Whether the group rebalances cooperatively (incrementally) rather than eagerly.
    pub fn rebalances_cooperatively(&self) -> bool {
        use rdkafka::consumer::{Consumer as _, RebalanceProtocol};
        matches!(
            self.stream().rebalance_protocol(),
            RebalanceProtocol::Cooperative
        )
    }
}
