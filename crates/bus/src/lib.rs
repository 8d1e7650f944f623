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
/// Test helpers; only with the `testing` feature, never in a service binary.
#[cfg(feature = "testing")]
pub mod testing;
pub mod trace;
pub mod worker;

pub use consumer::{Consumer, ConsumerConfig, PartitionGate, Record};
pub use embedded::{EmbeddedBroker, EmbeddedError};
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
    Consume(#[source] KafkaError),
    #[error("store offset: {0}")]
    StoreOffset(#[source] KafkaError),
    #[error("create topic {topic}: {reason}")]
    CreateTopic { topic: String, reason: String },
    #[error("embedded broker: {0}")]
    Embedded(#[source] embedded::EmbeddedError),
    #[error("topic {topic} unavailable: {reason}")]
    Unavailable { topic: String, reason: String },
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
        [
            &self.entity_events,
            &self.verdicts,
            &self.actions,
            &self.dlq,
            &self.verdicts_dlq,
        ]
    }
}

/// Properties no caller may set through the passthrough: the delivery guarantees the bus is
/// built on, and switches that turn broker certificate checks off.
const RESERVED: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "message.timeout.ms",
    "isolation.level",
];

/// Applies security and passthrough properties to a librdkafka configuration (after the bus's
/// own). Refuses the properties the bus's guarantees rest on, and turning certificate checks
/// off, whatever the caller was given.
pub fn apply_client_options(
    cc: &mut rdkafka::ClientConfig,
    options: &[(String, secrecy::SecretString)],
) -> Result<(), BusError> {
    use secrecy::ExposeSecret;
    for (k, v) in options {
        let key = k.to_ascii_lowercase();
        if RESERVED.contains(&key.as_str()) {
            return Err(BusError::Config(format!(
                "kafka property {k} is Plumbline's own and cannot be overridden"
            )));
        }
        let off = matches!(
            v.expose_secret().trim().to_ascii_lowercase().as_str(),
            "false" | "none" | "0" | ""
        );
        if (key == "enable.ssl.certificate.verification"
            || key == "ssl.endpoint.identification.algorithm")
            && off
        {
            return Err(BusError::Config(format!(
                "kafka property {k} would turn broker certificate checks off"
            )));
        }
        cc.set(k, v.expose_secret());
    }
    Ok(())
}

/// Creates Plumbline's topics if they do not exist (CreateTopics; an existing topic is fine).
///
/// Not for the embedded broker, which has no CreateTopics: [`EmbeddedBroker`] creates its own.
pub async fn ensure_topics(
    brokers: &str,
    topics: &Topics,
    partitions: i32,
) -> Result<(), BusError> {
    ensure_topics_with(brokers, topics, partitions, &[]).await
}

/// [`ensure_topics`] with security and passthrough properties (TLS, SASL: see
/// [`apply_client_options`]).
pub async fn ensure_topics_with(
    brokers: &str,
    topics: &Topics,
    partitions: i32,
    options: &[(String, secrecy::SecretString)],
) -> Result<(), BusError> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", brokers);
    apply_client_options(&mut cc, options)?;
    let admin: AdminClient<DefaultClientContext> =
        cc.create().map_err(|e| BusError::Config(e.to_string()))?;
    let names = topics.all();
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results =
        admin
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

#[cfg(test)]
mod client_option_tests {
    use super::*;
    use secrecy::SecretString;

    fn opts(pairs: &[(&str, &str)]) -> Vec<(String, SecretString)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), SecretString::from(v.to_string())))
            .collect()
    }

    #[test]
    fn the_guarantees_cannot_be_overridden_nor_certificate_checks_turned_off() {
        for (k, v) in [
            ("enable.idempotence", "false"),
            ("acks", "1"),
            ("enable.auto.commit", "true"),
            ("enable.auto.offset.store", "true"),
            ("bootstrap.servers", "evil:9092"),
            ("enable.ssl.certificate.verification", "false"),
            ("ssl.endpoint.identification.algorithm", "none"),
        ] {
            let p = Producer::new(
                &ProducerConfig::new("127.0.0.1:9", "t").with_client_options(opts(&[(k, v)])),
            );
            assert!(
                matches!(p, Err(BusError::Config(_))),
                "{k}={v} accepted by a producer"
            );
            let c = Consumer::new(
                &ConsumerConfig::new("127.0.0.1:9", "g", "t").with_client_options(opts(&[(k, v)])),
            );
            assert!(
                matches!(c, Err(BusError::Config(_))),
                "{k}={v} accepted by a consumer"
            );
        }
    }

    #[test]
    fn tls_and_sasl_properties_reach_librdkafka() {
        // Built with TLS: a CA file that does not exist is librdkafka's own error at creation.
        let e = Producer::new(
            &ProducerConfig::new("127.0.0.1:9", "t").with_client_options(opts(&[
                ("security.protocol", "ssl"),
                ("ssl.ca.location", "/nonexistent/ca.pem"),
            ])),
        )
        .err()
        .expect("missing CA refused");
        assert!(
            e.to_string().contains("ssl.ca.location")
                || e.to_string().contains("/nonexistent/ca.pem"),
            "{e}"
        );
        // SCRAM over TLS with the system's roots is a valid configuration.
        let ok = Producer::new(
            &ProducerConfig::new("127.0.0.1:9", "t").with_client_options(opts(&[
                ("security.protocol", "sasl_ssl"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.username", "u"),
                ("sasl.password", "p"),
                ("client.rack", "eu-1a"),
            ])),
        );
        assert!(ok.is_ok(), "{:?}", ok.err());
        let unknown = Producer::new(
            &ProducerConfig::new("127.0.0.1:9", "t")
                .with_client_options(opts(&[("no.such.property", "1")])),
        );
        assert!(unknown.is_err(), "librdkafka refuses unknown properties");
    }
}
