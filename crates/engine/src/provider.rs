//! What the engine needs from a provider: HTTP calls relative to the provider's API root.
//!
//! A trait, so the rule-type test runner can answer from fixtures and the services from GitHub.

use async_trait::async_trait;
use plumbline_github::{GitHub, GitHubError, Method};

#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ProviderError {
    /// Try again later (5xx, network); `until` set when rate limited (epoch seconds).
    #[error("provider unavailable: {message}")]
    Transient { message: String, until: Option<u64> },
    #[error("provider request failed: {0}")]
    Failed(String),
}

#[async_trait]
pub trait Provider: Send + Sync {
    async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<HttpResponse, ProviderError>;
}

fn method(m: &str) -> Result<Method, ProviderError> {
    Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| ProviderError::Failed(format!("bad method {m:?}")))
}

#[async_trait]
impl Provider for GitHub {
    async fn request(
        &self,
        m: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<HttpResponse, ProviderError> {
        match GitHub::request(self, method(m)?, path, body).await {
            Ok(r) => Ok(HttpResponse {
                status: r.status,
                body: r.body.to_vec(),
            }),
            Err(GitHubError::RateLimited { until_epoch_secs }) => Err(ProviderError::Transient {
                message: format!("rate limited until {until_epoch_secs}"),
                until: Some(until_epoch_secs),
            }),
            Err(e @ GitHubError::Transient(_)) => Err(ProviderError::Transient {
                message: e.to_string(),
                until: None,
            }),
            Err(e) => Err(ProviderError::Failed(e.to_string())),
        }
    }
}
