//! What a consuming service (the evaluator, the actuator) opens before it handles its first
//! record, in one place: the store, its metrics, the credentials entities are acted on with, the
//! data-source egress client, a producer, a consumer of its topic and its health endpoint.
//!
//! Both services opened these the same way, line for line; what differs between them (the
//! topic, the client id, the group) is a parameter here, and what they then build on it
//! (handler, worker policy) stays in each service.

use crate::credentials::{Credentials, SetupError};
use crate::{ConsumerArgs, ConsumerDefaults, KafkaSettingsError, ServiceArgs};
use plumbline_bus::{BusError, Consumer, ConsumerConfig, Producer, ProducerConfig, Topics};
use plumbline_github::egress::{Egress, EgressError};
use plumbline_store::{Store, StoreError};
use plumbline_telemetry::{Health, Metrics};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The parts a consuming service works with, opened from its [`ServiceArgs`].
pub struct Consuming {
    pub topics: Topics,
    pub store: Store,
    pub metrics: Metrics,
    pub credentials: Credentials,
    pub egress: Egress,
    pub producer: Producer,
    pub consumer: Consumer,
    pub health: Health,
    /// Where `/healthz`, `/readyz` and `/metrics` answer (the bound address, for an ephemeral
    /// port).
    pub health_addr: SocketAddr,
}

/// Why a consuming service could not open its parts; each keeps the error that caused it.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("kafka settings: {0}")]
    KafkaSettings(#[from] KafkaSettingsError),
    #[error("kafka: {0}")]
    Bus(#[from] BusError),
    #[error("postgres: {0}")]
    Store(#[from] StoreError),
    #[error("data-source client: {0}")]
    Egress(#[from] EgressError),
    #[error("{0}")]
    Credentials(#[from] SetupError),
    #[error("health endpoint: {0}")]
    Health(#[source] std::io::Error),
}

impl ServiceArgs {
    /// Opens what a service consuming `topic` (picked from the installation's [`Topics`]) needs.
    /// `name` is its client id suffix and health name (`evaluator` → `plumbline-evaluator`).
    /// The health endpoint serves until `shutdown`.
    pub async fn open_consuming<D: ConsumerDefaults>(
        &self,
        name: &'static str,
        topic: fn(&Topics) -> &String,
        consumer: &ConsumerArgs<D>,
        shutdown: &CancellationToken,
    ) -> Result<Consuming, OpenError> {
        let topics = Topics::with_prefix(&self.topic_prefix);
        let store = Store::connect_with_timeout(
            secrecy::ExposeSecret::expose_secret(&self.database_url),
            self.database_max_connections,
            Duration::from_millis(self.database_statement_timeout_ms),
        )?;
        self.wait_for_schema(&store).await?;
        let metrics = Metrics::new();
        let credentials = self.credentials(store.clone(), &metrics)?;
        let egress = self.egress()?;
        let kafka = self.kafka.client_options()?;
        let client_id = format!("plumbline-{name}");
        let producer = Producer::new(
            &ProducerConfig::new(&self.kafka_brokers, &client_id)
                .with_client_options(kafka.clone()),
        )?;
        let mut cc = ConsumerConfig::new(&self.kafka_brokers, &consumer.group_id, topic(&topics))
            .with_client_options(kafka);
        cc.session_timeout = consumer.session_timeout();
        cc.client_id = client_id;
        let consumer = Consumer::new(&cc)?;
        let health = Health::new(name);
        let health_addr = plumbline_telemetry::serve(
            self.health_listen,
            health.clone(),
            metrics.clone(),
            shutdown.clone(),
        )
        .await
        .map_err(OpenError::Health)?;
        Ok(Consuming {
            topics,
            store,
            metrics,
            credentials,
            egress,
            producer,
            consumer,
            health,
            health_addr,
        })
    }
}
