//! What the engine needs from a provider: HTTP calls relative to the provider's API root.
//!
//! A trait, so the rule-type test runner can answer from fixtures and the services from GitHub.

use async_trait::async_trait;
use crate::files::{FileTree, Limits};
use plumbline_github::{GitHub, GitHubError, Method};
use std::sync::Arc;

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

    /// Like [`request`](Provider::request), with extra headers. Providers that cannot send
    /// headers say so rather than drop them.
    async fn request_with_headers(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        headers: &[(String, String)],
    ) -> Result<HttpResponse, ProviderError> {
        if headers.is_empty() {
            self.request(method, path, body).await
        } else {
            Err(ProviderError::Failed("this provider cannot send request headers".into()))
        }
    }

    /// The files of one branch (git ingest), bounded by [`Limits`].
    async fn fetch_tree(&self, owner: &str, repo: &str, branch: &str) -> Result<Arc<FileTree>, ProviderError>;
}

/// Maps GitHub client errors to provider errors (rate limits and 5xx are transient).
pub fn provider_error(e: GitHubError) -> ProviderError {
    match e {
        GitHubError::RateLimited { until_epoch_secs } => ProviderError::Transient {
            message: format!("rate limited until {until_epoch_secs}"),
            until: Some(until_epoch_secs),
        },
        e @ GitHubError::Transient(_) => ProviderError::Transient {
            message: e.to_string(),
            until: None,
        },
        e => ProviderError::Failed(e.to_string()),
    }
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
        GitHub::request(self, method(m)?, path, body)
            .await
            .map(|r| HttpResponse {
                status: r.status,
                body: r.body.to_vec(),
            })
            .map_err(provider_error)
    }

    async fn request_with_headers(
        &self,
        m: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        headers: &[(String, String)],
    ) -> Result<HttpResponse, ProviderError> {
        GitHub::request_with_headers(self, method(m)?, path, body, headers)
            .await
            .map(|r| HttpResponse {
                status: r.status,
                body: r.body.to_vec(),
            })
            .map_err(provider_error)
    }

    /// A branch's files from GitHub's tarball endpoint: one request, no git binary, and the
    /// same bounds as Minder's clone (10,000 files, 100 MB).
    async fn fetch_tree(&self, owner: &str, repo: &str, branch: &str) -> Result<Arc<FileTree>, ProviderError> {
        let limits = Limits::default();
        let bytes = self.tarball(owner, repo, branch, limits.max_bytes).await.map_err(provider_error)?;
        FileTree::from_tar_gz(&bytes, &limits)
            .map(Arc::new)
            .map_err(|e| ProviderError::Failed(format!("{owner}/{repo}@{branch}: {e}")))
    }
}
