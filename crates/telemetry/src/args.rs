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

    /// Postgres connection URL.
    #[arg(long, env = "PLUMB_DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/plumbline")]
    pub database_url: String,

    /// Maximum Postgres connections of this process.
    #[arg(long, env = "PLUMB_DATABASE_MAX_CONNECTIONS", default_value_t = 8)]
    pub database_max_connections: usize,

    /// GitHub REST API root (GitHub Enterprise: https://HOST/api/v3).
    #[arg(long, env = "PLUMB_GITHUB_API_URL", default_value = "https://api.github.com")]
    pub github_api_url: String,

    /// GitHub token used for reads and remediations.
    #[arg(long, env = "PLUMB_GITHUB_TOKEN", hide_env_values = true)]
    pub github_token: Option<String>,

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

    /// Provider name entity ids are minted under.
    #[arg(long, env = "PLUMB_PROVIDER", default_value = "github")]
    pub provider: String,

    /// Hosts that rule types' data sources may reach over plain http (comma-separated). Every
    /// other data-source request must be https; all of them are refused when a host resolves to
    /// a loopback, private, link-local or other special-purpose address.
    #[arg(long = "egress-http-allow-host", env = "PLUMB_EGRESS_HTTP_ALLOW_HOSTS", value_delimiter = ',')]
    pub egress_http_allow_hosts: Vec<String>,

    /// Largest data-source response read, in bytes (the rest is cut).
    #[arg(long, env = "PLUMB_EGRESS_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub egress_max_body_bytes: usize,

    /// Address of `/healthz`, `/readyz` and `/metrics`.
    #[arg(long, env = "PLUMB_HEALTH_LISTEN", default_value = "0.0.0.0:9090")]
    pub health_listen: SocketAddr,
}

impl ServiceArgs {
    /// Settings for tests and `plumb dev`: everything on loopback, health on an ephemeral port.
    pub fn local(kafka_brokers: &str, database_url: &str, github_api_url: &str) -> Self {
        ServiceArgs {
            kafka_brokers: kafka_brokers.to_string(),
            topic_prefix: String::new(),
            database_url: database_url.to_string(),
            database_max_connections: 4,
            github_api_url: github_api_url.to_string(),
            github_token: None,
            github_app_id: None,
            github_app_private_key_file: None,
            github_installation_id: None,
            provider: "github".to_string(),
            egress_http_allow_hosts: Vec::new(),
            egress_max_body_bytes: 1 << 20,
            health_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }

    /// The client for data-source requests outside the provider's API.
    pub fn egress(&self) -> Result<plumbline_github::egress::Egress, plumbline_github::egress::EgressError> {
        plumbline_github::egress::Egress::new(plumbline_github::egress::EgressPolicy {
            http_allowed_hosts: self.egress_http_allow_hosts.iter().map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect(),
            max_body_bytes: self.egress_max_body_bytes,
            ..Default::default()
        })
    }

    /// The GitHub client these flags describe: an App installation when an App id is given,
    /// else the token (or anonymous).
    pub fn github(&self) -> Result<plumbline_github::GitHub, plumbline_github::GitHubError> {
        let mut config = plumbline_github::GitHubConfig::new(&self.github_api_url, self.github_token.clone());
        if let Some(app_id) = self.github_app_id {
            let path = self
                .github_app_private_key_file
                .as_ref()
                .ok_or_else(|| plumbline_github::GitHubError::Config("github app needs a private key file".into()))?;
            let private_key_pem = std::fs::read_to_string(path).map_err(|e| {
                plumbline_github::GitHubError::Config(format!("reading github app key {}: {e}", path.display()))
            })?;
            config.app = Some(plumbline_github::AppCredentials {
                app_id,
                private_key_pem,
                installation_id: self.github_installation_id,
            });
        }
        plumbline_github::GitHub::new(&config)
    }
}
