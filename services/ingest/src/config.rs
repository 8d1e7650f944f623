use std::net::SocketAddr;
use std::time::Duration;

/// Ingest service configuration (flags or environment).
#[derive(clap::Args, Debug, Clone)]
pub struct IngestConfig {
    /// Address for webhooks (`POST /webhooks/github`) and `/healthz`, `/readyz`, `/metrics`.
    #[arg(long = "listen", env = "PLUMB_INGEST_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Kafka bootstrap servers.
    #[arg(long, env = "PLUMB_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,

    /// Prefix for topic names (several installations or tests on one broker).
    #[arg(long, env = "PLUMB_TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,

    /// Webhook secrets, comma-separated: the current one first, then previous ones still
    /// accepted during a rotation.
    #[arg(long = "webhook-secret", env = "PLUMB_WEBHOOK_SECRETS", value_delimiter = ',', required = true)]
    pub webhook_secrets: Vec<String>,

    /// Provider name entity ids are minted under.
    #[arg(long, env = "PLUMB_PROVIDER", default_value = "github")]
    pub provider: String,

    /// How long to wait for the broker's acknowledgement before answering 503. GitHub gives up
    /// after 10 s, so this must stay well below.
    #[arg(long, env = "PLUMB_INGEST_ACK_TIMEOUT_MS", default_value_t = 5000)]
    pub ack_timeout_ms: u64,
}

impl IngestConfig {
    pub fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.ack_timeout_ms.clamp(100, 9000))
    }
}
