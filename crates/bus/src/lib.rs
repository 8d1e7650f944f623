//! Plumbline's Kafka bus: the only crate that links rdkafka.
//!
//! - [`Producer`]: idempotent (acks=all) and awaited: `publish` returns only once the broker
//!   acknowledged, which is what lets ingest answer 2xx honestly.
//! - [`Consumer`]: a consumer-group member whose offsets are *stored* only when the caller says
//!   the record's work is durable ([`Consumer::done`]); librdkafka's auto-commit then commits only
//!   stored offsets, so a crash redelivers unfinished work instead of losing it.
//! - [`trace`]: W3C trace context and CloudEvents binary-mode headers on every record.
//! - [`EmbeddedBroker`]: librdkafka's in-process mock cluster, for `plumb dev` and fast tests.

mod consumer;
mod embedded;
mod producer;
pub mod testing;
pub mod trace;
pub mod worker;

pub use consumer::{Consumer, ConsumerConfig, PartitionGate, Record};
pub use embedded::EmbeddedBroker;
pub use producer::{Delivery, Producer, ProducerConfig};
pub use trace::TraceContext;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use std::time::Duration;

/// Default partition count: bounds evaluator parallelism (see DESIGN.md).
pub const DEFAULT_PARTITIONS: i32 = 12;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("kafka client configuration: {0}")]
    Config(String),
    #[error("broker did not acknowledge within {0:?}")]
    Timeout(Duration),
    #[error("publish to {topic}: {source}")]
    Publish { topic: String, source: KafkaError },
    #[error("consume: {0}")]
    Consume(KafkaError),
    #[error("store offset: {0}")]
    StoreOffset(KafkaError),
    #[error("create topic {topic}: {reason}")]
    CreateTopic { topic: String, reason: String },
    #[error("embedded broker: {0}")]
    Embedded(String),
}

/// Names of Plumbline's topics. A prefix lets tests and side-by-side installs share a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub entity_events: String,
    pub verdicts: String,
    pub actions: String,
    /// Entity events the evaluator gave up on.
    pub dlq: String,
    /// Verdicts the actuator gave up on (after its bounded attempts).
    pub verdicts_dlq: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics::with_prefix("")
    }
}

impl Topics {
    /// `prefix` is prepended verbatim: `Topics::with_prefix("t1.")` gives `t1.plumbline.verdicts.v1`.
    pub fn with_prefix(prefix: &str) -> Self {
        Topics {
            entity_events: format!("{prefix}plumbline.entity-events.v1"),
            verdicts: format!("{prefix}plumbline.verdicts.v1"),
            actions: format!("{prefix}plumbline.actions.v1"),
            dlq: format!("{prefix}plumbline.entity-events.v1.dlq"),
            verdicts_dlq: format!("{prefix}plumbline.verdicts.v1.dlq"),
        }
    }

    pub fn all(&self) -> [&str; 5] {
        [&self.entity_events, &self.verdicts, &self.actions, &self.dlq, &self.verdicts_dlq]
    }
}

/// Creates Plumbline's topics if they do not exist (CreateTopics; an existing topic is fine).
///
/// Not for the embedded broker, which has no CreateTopics: [`EmbeddedBroker`] creates its own.
pub async fn ensure_topics(brokers: &str, topics: &Topics, partitions: i32) -> Result<(), BusError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| BusError::Config(e.to_string()))?;
    let names = topics.all();
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(new.iter(), &opts)
        .await
        .map_err(|e| BusError::CreateTopic {
            topic: names.join(","),
            reason: e.to_string(),
        })?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(BusError::CreateTopic {
                    topic,
                    reason: code.to_string(),
                })
            }
        }
    }
    Ok(())
}
