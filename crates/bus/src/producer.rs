//! The idempotent, acknowledged producer.

use crate::trace::{CloudEvent, TraceContext};
use crate::BusError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub brokers: String,
    pub client_id: String,
    /// How long `publish` waits for the broker's acknowledgement before giving up.
    pub ack_timeout: Duration,
    /// librdkafka batching delay; small, because ingest waits for acks before answering.
    pub linger: Duration,
}

impl ProducerConfig {
    pub fn new(brokers: impl Into<String>, client_id: impl Into<String>) -> Self {
        ProducerConfig {
            brokers: brokers.into(),
            client_id: client_id.into(),
            ack_timeout: Duration::from_secs(5),
            linger: Duration::from_millis(2),
        }
    }
}

/// Where the broker put a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub partition: i32,
    pub offset: i64,
}

/// A cheap-to-clone handle on one idempotent librdkafka producer.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
    ack_timeout: Duration,
    source: String,
}

impl Producer {
    pub fn new(config: &ProducerConfig) -> Result<Self, BusError> {
        let inner: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("client.id", &config.client_id)
            // Idempotence implies acks=all and in-order, exactly-once-per-session writes per partition.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", config.linger.as_millis().to_string())
            // The whole delivery (retries included) must fit in the ack timeout, so a record we
            // reported as failed is not delivered later behind the caller's back.
            .set("message.timeout.ms", config.ack_timeout.as_millis().to_string())
            .set("socket.keepalive.enable", "true")
            .create()
            .map_err(|e| BusError::Config(e.to_string()))?;
        Ok(Producer {
            inner,
            ack_timeout: config.ack_timeout,
            source: format!("/plumbline/{}", config.client_id),
        })
    }

    /// Publishes one record and waits for the broker's acknowledgement (acks=all).
    ///
    /// `ce_type` names the CloudEvents type; `event_id` becomes `ce_id`; `trace` becomes
    /// `traceparent`. Extra `headers` are added verbatim (e.g. error headers on DLQ records).
    pub async fn publish(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        ce_type: &str,
        event_id: &str,
        trace: &TraceContext,
        extra: &BTreeMap<String, String>,
    ) -> Result<Delivery, BusError> {
        let mut headers = BTreeMap::new();
        trace.inject(&mut headers);
        CloudEvent {
            ce_type,
            source: &self.source,
            id: event_id,
        }
        .write(&mut headers);
        for (k, v) in extra {
            headers.insert(k.clone(), v.clone());
        }
        let mut owned = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in &headers {
            owned = owned.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(owned);
        let send = self.inner.send(record, self.ack_timeout);
        // message.timeout.ms bounds the delivery inside librdkafka; this outer bound is a guard
        // against a stuck client so that callers with a deadline (ingest) are never held longer.
        match tokio::time::timeout(self.ack_timeout + Duration::from_secs(1), send).await {
            Err(_) => Err(BusError::Timeout(self.ack_timeout)),
            Ok(Ok(d)) => Ok(Delivery {
                partition: d.partition,
                offset: d.offset,
            }),
            Ok(Err((e, _))) => Err(BusError::Publish {
                topic: topic.to_string(),
                source: e,
            }),
        }
    }

    /// Waits up to `timeout` for queued records to be delivered (used at shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), BusError> {
        self.inner.flush(timeout).map_err(|e| BusError::Publish {
            topic: String::new(),
            source: e,
        })
    }
}
