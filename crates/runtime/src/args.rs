//! Flags shared by the services that consume from Kafka and use Postgres and GitHub.

use std::net::SocketAddr;

/// Connection settings common to evaluator, actuator, reconciler and control.
#[derive(clap::Args, Debug, Clone)]
pub struct ServiceArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "PLUMB_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,

    /// Prefix for topic names (several installations or tests on one broker).
    #[arg(long, env = "PLUMB_TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,

    /// Postgres connection URL (libpq's `sslmode` and `sslrootcert` are honoured; a host on the
    /// network must name an sslmode).
    #[arg(long, env = "PLUMB_DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/plumbline", hide_env_values = true, value_parser = secret)]
    pub database_url: secrecy::SecretString,

    /// Longest one SQL statement may run before Postgres cancels it (ms).
    #[arg(
        long,
        env = "PLUMB_DATABASE_STATEMENT_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub database_statement_timeout_ms: u64,

    /// At start, how long to wait for the schema to reach the version this build needs (the
    /// migrate Job runs beside the services), in seconds; then the process stops with an error
    /// saying to run `plumb migrate`.
    #[arg(long, env = "PLUMB_SCHEMA_WAIT_SECS", default_value_t = 300)]
    pub schema_wait_secs: u64,

    /// Maximum Postgres connections of this process.
    #[arg(long, env = "PLUMB_DATABASE_MAX_CONNECTIONS", default_value_t = 8)]
    pub database_max_connections: usize,

    /// GitHub REST API root (GitHub Enterprise: https://HOST/api/v3).
    #[arg(
        long,
        env = "PLUMB_GITHUB_API_URL",
        default_value = "https://api.github.com"
    )]
    pub github_api_url: String,

    /// GitHub token used for reads and remediations.
    #[arg(long, env = "PLUMB_GITHUB_TOKEN", hide_env_values = true, value_parser = secret)]
    pub github_token: Option<secrecy::SecretString>,

    /// Memory for the GitHub conditional-request (ETag) cache, in MiB (0 turns it off). Unchanged
    /// reads answered from it cost no rate-limit quota.
    #[arg(long, env = "PLUMB_GITHUB_ETAG_CACHE_MIB", default_value_t = DEFAULT_GITHUB_ETAG_CACHE_MIB)]
    pub github_etag_cache_mib: usize,

    /// Largest GitHub API response read, in MiB (a larger one is an error).
    #[arg(long, env = "PLUMB_GITHUB_MAX_RESPONSE_MIB", default_value_t = 16)]
    pub github_max_response_mib: usize,

    /// GitHub App id. With an installation id and a private key, the service authenticates as
    /// that App installation (tokens minted and refreshed automatically) instead of the token.
    #[arg(long, env = "PLUMB_GITHUB_APP_ID", requires_all = ["github_app_private_key_file", "github_installation_id"])]
    pub github_app_id: Option<u64>,

    /// File holding the GitHub App's RSA private key (PEM), as downloaded from GitHub.
    #[arg(long, env = "PLUMB_GITHUB_APP_PRIVATE_KEY_FILE")]
    pub github_app_private_key_file: Option<std::path::PathBuf>,

    /// GitHub App installation to act as (the organisation's installation of the App).
    #[arg(long, env = "PLUMB_GITHUB_INSTALLATION_ID")]
    pub github_installation_id: Option<u64>,

    /// The one project whose repositories may be acted on with the credential above when they
    /// were registered through none of their project's providers (empty: no project). Every
    /// other project acts only with its own providers (`plumb provider create`).
    #[arg(long, env = "PLUMB_OWN_CREDENTIAL_PROJECT", default_value = "default")]
    pub own_credential_project: String,

    /// File of keys that seal the tokens given to the API (`plumb provider create --token-stdin`):
    /// one `KEY-ID HEX` per line (32 bytes as 64 hex digits), the first sealing, all opening;
    /// re-read when it changes. The control service seals with it (without it, tokens are
    /// refused rather than stored unsealed); evaluator and actuator open with it.
    #[arg(long, env = "PLUMB_CREDENTIALS_KEY_FILE")]
    pub credentials_key_file: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Provider name entity ids are minted under.
    #[arg(long, env = "PLUMB_PROVIDER", default_value = "github")]
    pub provider: String,

    /// Hosts that rule types' data sources may reach over plain http (comma-separated). Every
    /// other data-source request must be https; all of them are refused when a host resolves to
    /// a loopback, private, link-local or other special-purpose address.
    #[arg(
        long = "egress-http-allow-host",
        env = "PLUMB_EGRESS_HTTP_ALLOW_HOSTS",
        value_delimiter = ','
    )]
    pub egress_http_allow_hosts: Vec<String>,

    /// Hosts that rule types' data sources and vulnerability checks may reach although they
    /// are, or resolve to, loopback or private addresses (an internal OSV mirror): `host` or
    /// `host:port` (names or IP literals, comma-separated; with a port, only that port). It
    /// applies to every project's data sources. Empty: none; every other such request is refused.
    #[arg(
        long = "egress-private-allow-host",
        env = "PLUMB_EGRESS_PRIVATE_ALLOW_HOSTS",
        value_delimiter = ','
    )]
    pub egress_private_allow_hosts: Vec<String>,

    /// Largest data-source response read, in bytes (the rest is cut).
    #[arg(long, env = "PLUMB_EGRESS_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub egress_max_body_bytes: usize,

    /// Address of `/healthz`, `/readyz` and `/metrics`.
    #[arg(long, env = "PLUMB_HEALTH_LISTEN", default_value = "0.0.0.0:9090")]
    pub health_listen: SocketAddr,
}

/// The default `--github-etag-cache-mib`.
pub const DEFAULT_GITHUB_ETAG_CACHE_MIB: usize = 64;

impl ServiceArgs {
    /// Settings for tests and `plumb dev`: everything on loopback, health on an ephemeral port.
    pub fn local(kafka_brokers: &str, database_url: &str, github_api_url: &str) -> Self {
        ServiceArgs {
            kafka_brokers: kafka_brokers.to_string(),
            topic_prefix: String::new(),
            database_url: database_url.into(),
            database_max_connections: 4,
            database_statement_timeout_ms: 30_000,
            schema_wait_secs: 300,
            github_api_url: github_api_url.to_string(),
            github_token: None,
            github_etag_cache_mib: DEFAULT_GITHUB_ETAG_CACHE_MIB,
            github_max_response_mib: 16,
            github_app_id: None,
            github_app_private_key_file: None,
            github_installation_id: None,
            own_credential_project: "default".to_string(),
            credentials_key_file: None,
            kafka: KafkaArgs::default(),
            provider: "github".to_string(),
            egress_http_allow_hosts: Vec::new(),
            egress_private_allow_hosts: Vec::new(),
            egress_max_body_bytes: 1 << 20,
            health_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }

    /// The client for data-source requests outside the provider's API.
    /// Waits, at start, for the schema this build needs (see `--schema-wait-secs`).
    pub async fn wait_for_schema(
        &self,
        store: &plumbline_store::Store,
    ) -> Result<i64, plumbline_store::StoreError> {
        store
            .wait_for_schema(
                std::time::Duration::from_secs(self.schema_wait_secs),
                std::time::Duration::from_secs(2),
            )
            .await
    }

    pub fn egress(
        &self,
    ) -> Result<plumbline_github::egress::Egress, plumbline_github::egress::EgressError> {
        plumbline_github::egress::Egress::new(plumbline_github::egress::EgressPolicy {
            http_allowed_hosts: self
                .egress_http_allow_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            private_allowed_hosts: self
                .egress_private_allow_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            max_body_bytes: self.egress_max_body_bytes,
            ..Default::default()
        })
    }

    /// The keys of `--credentials-key-file`, when given.
    pub fn sealer(&self) -> Result<Option<crate::sealed::Sealer>, crate::sealed::SealError> {
        self.credentials_key_file
            .as_deref()
            .map(crate::sealed::Sealer::open_file)
            .transpose()
    }

    /// Who entities are acted on as: their project's providers, the flags' credential for the
    /// operator's project (see [`crate::credentials`]).
    pub fn credentials(
        &self,
        store: plumbline_store::Store,
        metrics: &plumbline_telemetry::Metrics,
    ) -> Result<crate::credentials::Credentials, crate::credentials::SetupError> {
        Ok(crate::credentials::Credentials::new(
            store,
            self.github()?.with_metrics(metrics.clone()),
            Some(self.own_credential_project.clone()),
            self.sealer()?,
        ))
    }

    /// The GitHub client these flags describe: an App installation when an App id is given,
    /// else the token (or anonymous).
    pub fn github(&self) -> Result<plumbline_github::GitHub, plumbline_github::GitHubError> {
        use secrecy::ExposeSecret;
        let mut config = plumbline_github::GitHubConfig::new(
            &self.github_api_url,
            self.github_token
                .as_ref()
                .map(|t| t.expose_secret().to_string()),
        );
        config.etag_cache_bytes = self.github_etag_cache_mib.saturating_mul(1 << 20);
        config.max_response_bytes = self.github_max_response_mib.max(1).saturating_mul(1 << 20);
        if let Some(app_id) = self.github_app_id {
            let path = self.github_app_private_key_file.as_ref().ok_or_else(|| {
                plumbline_github::GitHubError::Config("github app needs a private key file".into())
            })?;
            let private_key_pem = std::fs::read_to_string(path).map_err(|e| {
                plumbline_github::GitHubError::Config(format!(
                    "reading github app key {}: {e}",
                    path.display()
                ))
            })?;
            config.app = Some(plumbline_github::AppCredentials {
                app_id,
                private_key_pem,
                // Re-read when it changes: a rotated key is used without a restart.
                private_key_file: Some(path.clone()),
                installation_id: self.github_installation_id,
            });
        }
        plumbline_github::GitHub::new(&config)
    }
}

/// How the services reach Kafka beyond the bootstrap servers: TLS, SASL and any librdkafka
/// property (<https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md>).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KafkaArgs {
    /// plaintext, ssl (TLS), sasl_plaintext or sasl_ssl (SASL over TLS).
    #[arg(long, env = "PLUMB_KAFKA_SECURITY_PROTOCOL", value_enum, default_value_t = KafkaProtocol::Plaintext)]
    pub kafka_security_protocol: KafkaProtocol,

    /// PEM file of the CA(s) that signed the brokers' certificates (default: the system's).
    #[arg(long, env = "PLUMB_KAFKA_SSL_CA_FILE")]
    pub kafka_ssl_ca_file: Option<std::path::PathBuf>,

    /// SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, env = "PLUMB_KAFKA_SASL_MECHANISM", value_enum)]
    pub kafka_sasl_mechanism: Option<SaslMechanism>,

    #[arg(long, env = "PLUMB_KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,

    /// SASL password (prefer --kafka-sasl-password-file).
    #[arg(long, env = "PLUMB_KAFKA_SASL_PASSWORD", hide_env_values = true, value_parser = secret)]
    pub kafka_sasl_password: Option<secrecy::SecretString>,

    /// File holding the SASL password (read at start-up).
    #[arg(long, env = "PLUMB_KAFKA_SASL_PASSWORD_FILE")]
    pub kafka_sasl_password_file: Option<std::path::PathBuf>,

    /// Any other librdkafka property, KEY=VALUE; repeatable (environment: `;`-separated).
    /// Properties Plumbline sets for its delivery guarantees (idempotence, acks, offset
    /// handling) and switches that turn certificate checks off are refused.
    #[arg(long = "kafka-option", env = "PLUMB_KAFKA_OPTIONS", value_delimiter = ';', value_parser = key_value)]
    pub kafka_options: Vec<(String, String)>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KafkaProtocol {
    #[default]
    #[value(name = "plaintext")]
    Plaintext,
    #[value(name = "ssl")]
    Ssl,
    #[value(name = "sasl_plaintext", alias = "sasl-plaintext")]
    SaslPlaintext,
    #[value(name = "sasl_ssl", alias = "sasl-ssl")]
    SaslSsl,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    #[value(name = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

fn secret(s: &str) -> Result<secrecy::SecretString, std::convert::Infallible> {
    Ok(secrecy::SecretString::from(s))
}

/// A `--kafka-option` that is not `KEY=VALUE`.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not KEY=VALUE")]
pub struct NotKeyValue(String);

fn key_value(s: &str) -> Result<(String, String), NotKeyValue> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(NotKeyValue(s.to_string())),
    }
}

/// Properties the typed `--kafka-*` flags set: one way to say each. (The bus itself refuses
/// the properties its delivery guarantees rest on; see `plumbline_bus::apply_client_options`.)
const TYPED: &[&str] = &[
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",
];

/// Kafka settings that do not make a safe, complete configuration (refused at start).
#[derive(Debug, thiserror::Error)]
pub enum KafkaSettingsError {
    #[error("--kafka-ssl-ca-file needs --kafka-security-protocol ssl or sasl_ssl")]
    CaWithoutTls,
    #[error("give --kafka-sasl-password or --kafka-sasl-password-file, not both")]
    TwoPasswords,
    #[error("reading the Kafka SASL password from {path}: {source}")]
    PasswordFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("SASL needs --kafka-sasl-mechanism")]
    NoMechanism,
    #[error("SASL PLAIN over sasl_plaintext would send the password in cleartext: use sasl_ssl (or a SCRAM mechanism)")]
    PlainInCleartext,
    #[error("SASL needs --kafka-sasl-username and a password (--kafka-sasl-password-file)")]
    NoCredentials,
    #[error("SASL settings given but --kafka-security-protocol is not sasl_ssl or sasl_plaintext")]
    SaslWithoutProtocol,
    #[error("kafka option {0} is set by a --kafka-* flag; use that flag")]
    TypedOption(String),
}

impl KafkaArgs {
    /// librdkafka properties for every client: the typed settings, then the passthrough.
    /// Secrets stay [`secrecy::SecretString`]s until librdkafka takes them.
    pub fn client_options(
        &self,
    ) -> Result<Vec<(String, secrecy::SecretString)>, KafkaSettingsError> {
        use secrecy::SecretString;
        let mut out: Vec<(String, SecretString)> = Vec::new();
        let protocol = match self.kafka_security_protocol {
            KafkaProtocol::Plaintext => "plaintext",
            KafkaProtocol::Ssl => "ssl",
            KafkaProtocol::SaslPlaintext => "sasl_plaintext",
            KafkaProtocol::SaslSsl => "sasl_ssl",
        };
        let sasl = matches!(
            self.kafka_security_protocol,
            KafkaProtocol::SaslPlaintext | KafkaProtocol::SaslSsl
        );
        let tls = matches!(
            self.kafka_security_protocol,
            KafkaProtocol::Ssl | KafkaProtocol::SaslSsl
        );
        out.push(("security.protocol".into(), protocol.into()));
        if let Some(ca) = &self.kafka_ssl_ca_file {
            if !tls {
                return Err(KafkaSettingsError::CaWithoutTls);
            }
            out.push(("ssl.ca.location".into(), ca.display().to_string().into()));
        }
        let password = match (&self.kafka_sasl_password, &self.kafka_sasl_password_file) {
            (Some(_), Some(_)) => return Err(KafkaSettingsError::TwoPasswords),
            (Some(p), None) => Some(p.clone()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|source| {
                    KafkaSettingsError::PasswordFile {
                        path: path.clone(),
                        source,
                    }
                })?;
                Some(SecretString::from(
                    text.trim_end_matches(['\r', '\n']).to_string(),
                ))
            }
            (None, None) => None,
        };
        if sasl {
            let mechanism = self
                .kafka_sasl_mechanism
                .ok_or(KafkaSettingsError::NoMechanism)?;
            if mechanism == SaslMechanism::Plain && !tls {
                return Err(KafkaSettingsError::PlainInCleartext);
            }
            let (Some(user), Some(password)) = (&self.kafka_sasl_username, password) else {
                return Err(KafkaSettingsError::NoCredentials);
            };
            let mechanism = match mechanism {
                SaslMechanism::Plain => "PLAIN",
                SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
                SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            };
            out.push(("sasl.mechanism".into(), mechanism.into()));
            out.push(("sasl.username".into(), user.clone().into()));
            out.push(("sasl.password".into(), password));
        } else if self.kafka_sasl_mechanism.is_some()
            || self.kafka_sasl_username.is_some()
            || password.is_some()
        {
            return Err(KafkaSettingsError::SaslWithoutProtocol);
        }
        for (k, v) in &self.kafka_options {
            if TYPED.contains(&k.to_ascii_lowercase().as_str()) {
                return Err(KafkaSettingsError::TypedOption(k.clone()));
            }
            out.push((k.clone(), v.clone().into()));
        }
        Ok(out)
    }
}

/// A consuming service's defaults for [`ConsumerArgs`]: its group, its environment variables
/// (kept per service, so one environment can configure several) and how much it runs at once.
pub trait ConsumerDefaults: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// The consumer group every replica of one installation shares.
    const GROUP: &'static str;
    const GROUP_ENV: &'static str;
    const MAX_IN_FLIGHT: usize;
    const MAX_IN_FLIGHT_ENV: &'static str;
    const MAX_ATTEMPTS_ENV: &'static str;
}

/// How a service consumes its topic: the same flags, with the same meaning, in the evaluator
/// and the actuator.
#[derive(clap::Args, Debug, Clone)]
pub struct ConsumerArgs<D: ConsumerDefaults> {
    /// Consumer group; every replica of one installation uses the same.
    #[arg(long, env = D::GROUP_ENV, default_value = D::GROUP)]
    pub group_id: String,

    /// How long the group waits for a silent replica before reassigning its partitions (ms).
    #[arg(long, env = "PLUMB_KAFKA_SESSION_TIMEOUT_MS", default_value_t = DEFAULT_SESSION_TIMEOUT_MS)]
    pub session_timeout_ms: u64,

    /// Records handled at once by this replica, for different entities (one entity's records
    /// are always handled one at a time, in order).
    #[arg(long, env = D::MAX_IN_FLIGHT_ENV, default_value_t = D::MAX_IN_FLIGHT)]
    pub max_in_flight: usize,

    /// Attempts at a record whose handling fails before it goes to the service's dead-letter
    /// topic with the reason (waiting on a rate limit or a budget is not an attempt).
    #[arg(long, env = D::MAX_ATTEMPTS_ENV, default_value_t = DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: u32,

    #[arg(skip)]
    defaults: std::marker::PhantomData<D>,
}

const DEFAULT_SESSION_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_MAX_ATTEMPTS: u32 = 5;

impl<D: ConsumerDefaults> Default for ConsumerArgs<D> {
    fn default() -> Self {
        ConsumerArgs {
            group_id: D::GROUP.to_string(),
            session_timeout_ms: DEFAULT_SESSION_TIMEOUT_MS,
            max_in_flight: D::MAX_IN_FLIGHT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            defaults: std::marker::PhantomData,
        }
    }
}

impl<D: ConsumerDefaults> ConsumerArgs<D> {
    pub fn session_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.session_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use secrecy::ExposeSecret;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: KafkaArgs,
    }

    #[derive(Debug, Clone)]
    struct Probe;

    impl ConsumerDefaults for Probe {
        const GROUP: &'static str = "plumbline-probe";
        const GROUP_ENV: &'static str = "PLUMB_PROBE_GROUP_UNSET_IN_TESTS";
        const MAX_IN_FLIGHT: usize = 7;
        const MAX_IN_FLIGHT_ENV: &'static str = "PLUMB_PROBE_MAX_IN_FLIGHT_UNSET_IN_TESTS";
        const MAX_ATTEMPTS_ENV: &'static str = "PLUMB_PROBE_MAX_ATTEMPTS_UNSET_IN_TESTS";
    }

    #[derive(Parser)]
    struct ConsumerCli {
        #[command(flatten)]
        consumer: ConsumerArgs<Probe>,
    }

    #[test]
    fn consumer_flags_default_to_the_services_values_declared_once() {
        let parsed = ConsumerCli::parse_from(["t"]).consumer;
        let built = ConsumerArgs::<Probe>::default();
        assert_eq!(
            (
                parsed.group_id.as_str(),
                parsed.max_in_flight,
                parsed.max_attempts
            ),
            (
                built.group_id.as_str(),
                built.max_in_flight,
                built.max_attempts
            )
        );
        assert_eq!(parsed.session_timeout_ms, built.session_timeout_ms);
        assert_eq!(
            (built.group_id.as_str(), built.max_in_flight),
            ("plumbline-probe", 7)
        );
        let set = ConsumerCli::parse_from([
            "t",
            "--group-id",
            "g",
            "--max-in-flight",
            "3",
            "--max-attempts",
            "2",
            "--session-timeout-ms",
            "6000",
        ])
        .consumer;
        assert_eq!(
            (set.group_id.as_str(), set.max_in_flight, set.max_attempts),
            ("g", 3, 2)
        );
        assert_eq!(set.session_timeout(), std::time::Duration::from_secs(6));
        let help = <ConsumerCli as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        assert!(help.contains("PLUMB_PROBE_GROUP_UNSET_IN_TESTS"), "{help}");
        assert!(help.contains("[default: 7]"), "{help}");
    }

    fn options(args: &[&str]) -> Result<Vec<(String, String)>, String> {
        let cli = Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Ok(cli
            .kafka
            .client_options()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(k, v)| (k, v.expose_secret().to_string()))
            .collect())
    }

    #[test]
    fn security_settings_become_librdkafka_properties() {
        assert_eq!(
            options(&[]).expect("default"),
            vec![("security.protocol".into(), "plaintext".into())]
        );
        let dir = tempfile::tempdir().expect("tmp");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").expect("write");
        let got = options(&[
            "--kafka-security-protocol",
            "sasl_ssl",
            "--kafka-ssl-ca-file",
            "/etc/kafka/ca.pem",
            "--kafka-sasl-mechanism",
            "SCRAM-SHA-512",
            "--kafka-sasl-username",
            "plumbline",
            "--kafka-sasl-password-file",
            pw.to_str().expect("utf-8"),
            "--kafka-option",
            "client.rack=eu-1a",
        ])
        .expect("sasl_ssl");
        assert_eq!(
            got,
            vec![
                ("security.protocol".to_string(), "sasl_ssl".to_string()),
                ("ssl.ca.location".into(), "/etc/kafka/ca.pem".into()),
                ("sasl.mechanism".into(), "SCRAM-SHA-512".into()),
                ("sasl.username".into(), "plumbline".into()),
                ("sasl.password".into(), "s3cret".into()),
                ("client.rack".into(), "eu-1a".into()),
            ]
        );
        let cli = Cli::try_parse_from([
            "t",
            "--kafka-security-protocol",
            "sasl_ssl",
            "--kafka-sasl-mechanism",
            "PLAIN",
            "--kafka-sasl-username",
            "u",
            "--kafka-sasl-password",
            "hunter2-secret",
        ])
        .expect("parse");
        assert!(
            !format!("{:?}", cli.kafka).contains("hunter2"),
            "Debug shows no password"
        );
        assert!(
            !format!("{:?}", cli.kafka.client_options()).contains("hunter2"),
            "nor do the options"
        );
    }

    #[test]
    fn unsafe_or_incomplete_settings_are_refused() {
        for (args, why) in [
            (vec!["--kafka-option", "sasl.password=x"], "flag"),
            (vec!["--kafka-option", "security.protocol=ssl"], "flag"),
            (
                vec![
                    "--kafka-security-protocol",
                    "sasl_plaintext",
                    "--kafka-sasl-mechanism",
                    "PLAIN",
                    "--kafka-sasl-username",
                    "u",
                    "--kafka-sasl-password",
                    "p",
                ],
                "cleartext",
            ),
            (
                vec![
                    "--kafka-security-protocol",
                    "sasl_ssl",
                    "--kafka-sasl-mechanism",
                    "SCRAM-SHA-256",
                ],
                "username",
            ),
            (vec!["--kafka-sasl-username", "u"], "not sasl"),
            (
                vec!["--kafka-ssl-ca-file", "/ca.pem"],
                "needs --kafka-security-protocol",
            ),
            (vec!["--kafka-option", "novalue"], "KEY=VALUE"),
        ] {
            let e = options(&args).expect_err(&format!("{args:?} must be refused"));
            assert!(e.contains(why), "{args:?}: {e}");
        }
    }
}
