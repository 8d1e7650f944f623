//! Consumer-group member with offsets stored only after durable work.

use crate::trace::TraceContext;
use crate::BusError;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, ClientContext, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub brokers: String,
    pub group_id: String,
    pub client_id: String,
    pub topics: Vec<String>,
    /// How long the group waits for a silent member before giving its partitions away.
    pub session_timeout: Duration,
}

impl ConsumerConfig {
    pub fn new(brokers: impl Into<String>, group_id: impl Into<String>, topic: impl Into<String>) -> Self {
        let group_id = group_id.into();
        ConsumerConfig {
            brokers: brokers.into(),
            client_id: group_id.clone(),
            group_id,
            topics: vec![topic.into()],
            session_timeout: Duration::from_secs(10),
        }
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

/// Observes rebalances. Offsets are stored only after durable work and librdkafka commits stored
/// offsets when partitions are revoked, so nothing has to be done here for correctness; the
/// counts are the health signal that a group is churning.
#[derive(Default)]
pub struct GroupContext {
    rebalances: AtomicU64,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => tracing::info!(partitions = tpl.count(), "partitions revoked"),
            Rebalance::Assign(tpl) => tracing::info!(partitions = tpl.count(), "partitions assigned"),
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
    inner: Arc<StreamConsumer<GroupContext>>,
}

impl Consumer {
    pub fn new(config: &ConsumerConfig) -> Result<Self, BusError> {
        let inner: StreamConsumer<GroupContext> = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group_id)
            .set("client.id", &config.client_id)
            // Commit periodically, but only what `done` stored: at-least-once.
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", config.session_timeout.as_millis().to_string())
            .set(
                "heartbeat.interval.ms",
                (config.session_timeout.as_millis() / 3).max(100).to_string(),
            )
            .set("partition.assignment.strategy", "range,roundrobin")
            // A member waiting out an outage (rate limit, database failover) keeps polling no
            // records for a while; it keeps its partitions rather than handing them to a
            // replica that would hit the same outage. A dead process is still detected by
            // the session timeout (heartbeats come from librdkafka's own thread).
            .set("max.poll.interval.ms", "3600000")
            .create_with_context(GroupContext::default())
            .map_err(|e| BusError::Config(e.to_string()))?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        inner
            .subscribe(&topics)
            .map_err(|e| BusError::Config(e.to_string()))?;
        Ok(Consumer {
            inner: Arc::new(inner),
        })
    }

    /// The next record. Errors are the broker's (transient ones included); callers log and retry.
    pub async fn recv(&self) -> Result<Record, BusError> {
        let m = self.inner.recv().await.map_err(BusError::Consume)?;
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
        self.inner
            .store_offset(&record.topic, record.partition, record.offset)
            .map_err(BusError::StoreOffset)
    }

    /// Marks every record of `partition` up to and including `offset` durable.
    pub fn done_through(&self, topic: &str, partition: i32, offset: i64) -> Result<(), BusError> {
        self.inner
            .store_offset(topic, partition, offset)
            .map_err(BusError::StoreOffset)
    }

    /// Commits stored offsets now (at shutdown, so a restart does not redo finished work).
    pub fn commit_stored(&self) -> Result<(), BusError> {
        match self.inner.commit_consumer_state(CommitMode::Sync) {
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
        use rdkafka::Offset;
        let positions = self.inner.position().map_err(BusError::Consume)?;
        let committed = self.inner.committed(timeout).map_err(BusError::Consume)?;
        let mut lag = 0;
        for p in positions.elements() {
            let (low, high) = self
                .inner
                .fetch_watermarks(p.topic(), p.partition(), timeout)
                .map_err(BusError::Consume)?;
            let at = match p.offset() {
                Offset::Offset(o) => o,
                _ => match committed.find_partition(p.topic(), p.partition()).map(|c| c.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => low,
                },
            };
            lag += (high - at).max(0);
        }
        Ok(lag)
    }

    /// Number of partitions currently assigned to this member.
    pub fn assigned_partitions(&self) -> usize {
        self.inner.assignment().map(|a| a.count()).unwrap_or(0)
    }
}
