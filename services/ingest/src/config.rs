use secrecy::SecretString;
use std::net::SocketAddr;
use std::time::Duration;

/// Ingest service configuration (flags or environment).
#[derive(clap::Args, Debug, Clone)]
pub struct IngestConfig {
    /// Address for webhooks (`POST /webhooks/github`), the public port: nothing else is served
    /// there.
    #[arg(
        long = "listen",
        env = "PLUMB_INGEST_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub listen: SocketAddr,

    /// Kafka bootstrap servers.
    #[arg(long, env = "PLUMB_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,

    #[command(flatten)]
    pub kafka: plumbline_runtime::KafkaArgs,

    /// Prefix for topic names (several installations or tests on one broker).
    #[arg(long, env = "PLUMB_TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,

    /// Webhook secrets, comma-separated: the current one first, then previous ones still
    /// accepted during a rotation. Prefer --webhook-secrets-file, which rotates without a restart.
    #[arg(
        long = "webhook-secret",
        env = "PLUMB_WEBHOOK_SECRETS",
        value_delimiter = ',',
        required_unless_present = "webhook_secrets_file",
        hide_env_values = true,
        value_parser = secret
    )]
    pub webhook_secrets: Vec<SecretString>,

    /// File of webhook secrets, one per line (current first; `#` comments), re-read when it
    /// changes. Used together with --webhook-secret if both are given.
    #[arg(long, env = "PLUMB_WEBHOOK_SECRETS_FILE")]
    pub webhook_secrets_file: Option<std::path::PathBuf>,

    /// Provider name entity ids are minted under.
    #[arg(long, env = "PLUMB_PROVIDER", default_value = "github")]
    pub provider: String,

    /// How long to wait for the broker's acknowledgement before answering 503. GitHub gives up
    /// after 10 s, so this is clamped to 100..=8000 ms.
    #[arg(long, env = "PLUMB_INGEST_ACK_TIMEOUT_MS", default_value_t = 5000)]
    pub ack_timeout_ms: u64,

    /// Postgres connection URL: delivery dedupe (shared by all replicas) and enrolment.
    #[arg(
        long,
        env = "PLUMB_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/plumbline",
        hide_env_values = true,
        value_parser = secret
    )]
    pub database_url: SecretString,

    /// Maximum Postgres connections of this process: 4 for delivery dedupe, the rest (at least
    /// one) for registry changes.
    #[arg(long, env = "PLUMB_DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: usize,

    /// How long a delivery id is remembered, in hours. GitHub lets users redeliver deliveries of
    /// the past 3 days, so the default covers that with room to spare.
    #[arg(long, env = "PLUMB_INGEST_DEDUPE_HOURS", default_value_t = 168)]
    pub dedupe_hours: u64,

    /// Register repositories automatically from `installation`, `installation_repositories`
    /// and `repository` created events (into `--project`). Either way, deleted, transferred and
    /// removed repositories are announced, and retired by the evaluator once GitHub confirms
    /// they are gone.
    #[arg(long, env = "PLUMB_INGEST_ENROLL", default_value_t = true, action = clap::ArgAction::Set)]
    pub enroll: bool,

    /// Project automatically enrolled repositories join.
    #[arg(long, env = "PLUMB_INGEST_PROJECT", default_value = "default")]
    pub project: String,

    /// Webhooks handled at once; beyond this ingest sheds load with 503 instead of queueing
    /// without bound (GitHub marks the delivery failed and it can be redelivered).
    #[arg(long, env = "PLUMB_INGEST_MAX_IN_FLIGHT", default_value_t = 4096)]
    pub max_in_flight: usize,

    /// Address of `/healthz`, `/readyz` and `/metrics` (keep it off the public network).
    #[arg(long, env = "PLUMB_HEALTH_LISTEN", default_value = "0.0.0.0:9090")]
    pub health_listen: SocketAddr,

    /// Time a client has to send its request line and headers before the connection is closed.
    #[arg(long, env = "PLUMB_INGEST_HEADER_TIMEOUT_MS", default_value_t = 5000)]
    pub header_timeout_ms: u64,

    /// Time a webhook body has to arrive once the headers are in (408 after it). GitHub sends
    /// its payloads at once; only a slow or hostile sender needs long.
    #[arg(long, env = "PLUMB_INGEST_BODY_TIMEOUT_MS", default_value_t = 10000)]
    pub body_timeout_ms: u64,

    /// Bytes of webhook bodies read or handled at once, summed over all requests (each body
    /// counts its declared length); past it ingest answers 503 before reading. At least 25 MiB.
    #[arg(long, env = "PLUMB_INGEST_MAX_BODY_BYTES_IN_FLIGHT", default_value_t = 100 * 1024 * 1024)]
    pub max_body_bytes_in_flight: usize,

    /// Open connections at most on the webhook port; more are closed on accept.
    #[arg(long, env = "PLUMB_INGEST_MAX_CONNECTIONS", default_value_t = 8192)]
    pub max_connections: usize,
}

impl IngestConfig {
    /// Defaults for tests and `plumb dev`: loopback on an ephemeral port.
    pub fn local(
        kafka_brokers: &str,
        database_url: &str,
        topic_prefix: &str,
        secret: &str,
    ) -> Self {
        IngestConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            kafka_brokers: kafka_brokers.to_string(),
            kafka: plumbline_runtime::KafkaArgs::default(),
            topic_prefix: topic_prefix.to_string(),
            webhook_secrets: vec![SecretString::from(secret)],
            webhook_secrets_file: None,
            provider: "github".into(),
            ack_timeout_ms: 5000,
            database_url: SecretString::from(database_url),
            database_max_connections: 16,
            dedupe_hours: 168,
            enroll: true,
            project: "default".into(),
            max_in_flight: 4096,
            health_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            header_timeout_ms: 5000,
            body_timeout_ms: 10000,
            max_body_bytes_in_flight: 100 * 1024 * 1024,
            max_connections: 8192,
        }
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms.max(1))
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms.max(1))
    }

    pub fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.ack_timeout_ms.clamp(100, 8000))
    }

    pub fn dedupe_window(&self) -> Duration {
        Duration::from_secs(self.dedupe_hours.max(1) * 3600)
    }
}

fn secret(s: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(s))
}
