//! What the engine needs from a provider: HTTP calls relative to the provider's API root.
//!
//! A trait, so the rule-type test runner can answer from fixtures and the services from GitHub
//! (`plumbline-github-provider` implements it on the GitHub client; the engine knows no
//! provider and no runtime).

use crate::files::FileTree;
use async_trait::async_trait;
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

impl ProviderError {
    /// When the provider said to come back (it limits us: a spent quota, a secondary limit);
    /// `None` for every other failure.
    pub fn limited_until(&self) -> Option<std::time::SystemTime> {
        match self {
            ProviderError::Transient {
                until: Some(secs), ..
            } => Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(*secs)),
            _ => None,
        }
    }
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
            Err(ProviderError::Failed(
                "this provider cannot send request headers".into(),
            ))
        }
    }

    /// The files of one branch (git ingest), bounded by [`Limits`].
    async fn fetch_tree(
        &self,
        owner: &str,
        repo: &str,
        branch: &str,
    ) -> Result<Arc<FileTree>, ProviderError>;

    /// The signatures stored beside a container image in the registry this provider's images
    /// are published to (cosign's `.sig` tag, OCI referrers). A provider with no registry
    /// configured refuses, so an artifact rule is an `error`, never a pass.
    async fn image_signatures(
        &self,
        image: &plumbline_sigstore::ImageRef,
    ) -> Result<Vec<plumbline_sigstore::Evidence>, ProviderError> {
        Err(ProviderError::Failed(format!(
            "no container registry is configured to read {}@{} from",
            image.repository, image.digest
        )))
    }

    /// The Sigstore trust root the operator configured under `name` (an artifact rule's
    /// `sigstore` param); `None` when there is none by that name.
    fn sigstore_root(&self, name: &str) -> Option<Arc<plumbline_sigstore::TrustRoot>> {
        let _ = name;
        None
    }

    /// The API roots an entity's rules may address (rest ingest and remediation endpoints,
    /// data-source calls sent with the provider's credentials); see [`crate::scope`]. `None`
    /// means unconfined, which only a provider that reaches no real API may answer (the
    /// rule-type test runner's fixtures).
    fn entity_scope(&self, entity: &plumbline_domain::Entity) -> Option<Vec<String>> {
        Some(vec![crate::scope::repository_root(entity)])
    }
}

/// Answers by key, each computed once even when asked for concurrently.
type OnceMap<T> =
    std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::OnceCell<T>>>>;

/// A provider that reads each GET (and each branch tree) at most once: one per entity
/// evaluation, so that rules reading the same endpoint or the same files share one request and
/// see one consistent snapshot. Concurrent identical reads wait for the first.
pub struct Memo<'a> {
    inner: &'a dyn Provider,
    gets: OnceMap<Result<HttpResponse, ProviderError>>,
    trees: OnceMap<Result<Arc<FileTree>, ProviderError>>,
    signatures: OnceMap<Result<Vec<plumbline_sigstore::Evidence>, ProviderError>>,
}

impl<'a> Memo<'a> {
    pub fn new(inner: &'a dyn Provider) -> Self {
        Memo {
            inner,
            gets: Default::default(),
            trees: Default::default(),
            signatures: Default::default(),
        }
    }

    fn cell<T>(map: &OnceMap<T>, key: String) -> Arc<tokio::sync::OnceCell<T>> {
        match map.lock() {
            Ok(mut m) => m.entry(key).or_default().clone(),
            // A poisoned map only loses sharing, never correctness.
            Err(_) => Arc::new(tokio::sync::OnceCell::new()),
        }
    }
}

#[async_trait]
impl Provider for Memo<'_> {
    async fn request(
        &self,
        m: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<HttpResponse, ProviderError> {
        self.request_with_headers(m, path, body, &[]).await
    }

    async fn request_with_headers(
        &self,
        m: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        headers: &[(String, String)],
    ) -> Result<HttpResponse, ProviderError> {
        if !m.eq_ignore_ascii_case("GET") || body.is_some() {
            return self
                .inner
                .request_with_headers(m, path, body, headers)
                .await;
        }
        let mut h: Vec<String> = headers
            .iter()
            .map(|(k, v)| format!("{}={v}", k.to_ascii_lowercase()))
            .collect();
        h.sort();
        let cell = Self::cell(&self.gets, format!("{path}\u{0}{}", h.join("\u{0}")));
        cell.get_or_init(|| self.inner.request_with_headers(m, path, None, headers))
            .await
            .clone()
    }

    async fn image_signatures(
        &self,
        image: &plumbline_sigstore::ImageRef,
    ) -> Result<Vec<plumbline_sigstore::Evidence>, ProviderError> {
        // Every artifact rule of the entity reads the same registry: once per evaluation.
        let cell = Self::cell(
            &self.signatures,
            format!("{}@{}", image.repository, image.digest),
        );
        cell.get_or_init(|| self.inner.image_signatures(image))
            .await
            .clone()
    }

    fn sigstore_root(&self, name: &str) -> Option<Arc<plumbline_sigstore::TrustRoot>> {
        self.inner.sigstore_root(name)
    }

    async fn fetch_tree(
        &self,
        owner: &str,
        repo: &str,
        branch: &str,
    ) -> Result<Arc<FileTree>, ProviderError> {
        let cell = Self::cell(&self.trees, format!("{owner}/{repo}\u{0}{branch}"));
        cell.get_or_init(|| self.inner.fetch_tree(owner, repo, branch))
            .await
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Counts calls; answers every GET with its path.
    #[derive(Default)]
    struct Counting {
        requests: AtomicU32,
        trees: AtomicU32,
    }

    #[async_trait]
    impl Provider for Counting {
        async fn request(
            &self,
            _m: &str,
            path: &str,
            _b: Option<&serde_json::Value>,
        ) -> Result<HttpResponse, ProviderError> {
            self.requests.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok(HttpResponse {
                status: 200,
                body: path.as_bytes().to_vec(),
            })
        }

        async fn request_with_headers(
            &self,
            m: &str,
            path: &str,
            b: Option<&serde_json::Value>,
            _h: &[(String, String)],
        ) -> Result<HttpResponse, ProviderError> {
            self.request(m, path, b).await
        }

        async fn fetch_tree(
            &self,
            _o: &str,
            _r: &str,
            _b: &str,
        ) -> Result<Arc<FileTree>, ProviderError> {
            self.trees.fetch_add(1, Ordering::SeqCst);
            Ok(Arc::new(FileTree::new()))
        }
    }

    #[tokio::test]
    async fn memo_reads_each_get_and_tree_once_even_concurrently() {
        let inner = Counting::default();
        let memo = Memo::new(&inner);
        let reads = (0..8).map(|_| memo.request("GET", "/repos/a/b", None));
        for r in futures::future::join_all(reads).await {
            assert_eq!(r.expect("read").body, b"/repos/a/b");
        }
        let accept = [(
            "Accept".to_string(),
            "application/vnd.github.raw".to_string(),
        )];
        memo.request_with_headers("GET", "/repos/a/b", None, &accept)
            .await
            .expect("read");
        memo.fetch_tree("a", "b", "main").await.expect("tree");
        memo.fetch_tree("a", "b", "main").await.expect("tree");
        memo.fetch_tree("a", "b", "dev").await.expect("tree");
        assert_eq!(
            inner.requests.load(Ordering::SeqCst),
            2,
            "one per (path, headers)"
        );
        assert_eq!(inner.trees.load(Ordering::SeqCst), 2, "one per branch");
        // Writes are never memoised.
        memo.request("PUT", "/repos/a/b", Some(&serde_json::json!({})))
            .await
            .expect("put");
        memo.request("PUT", "/repos/a/b", Some(&serde_json::json!({})))
            .await
            .expect("put");
        assert_eq!(inner.requests.load(Ordering::SeqCst), 4);
    }
}
