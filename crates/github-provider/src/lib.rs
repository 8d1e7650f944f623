//! The engine's [`Provider`] and data-source [`Fetcher`] implemented on the GitHub client.
//!
//! The engine defines what it needs from a provider and knows nothing of GitHub or of the
//! runtime; the evaluator and the actuator both read through GitHub, so the implementation
//! lives here, between the engine and the GitHub client, rather than in either service.

use async_trait::async_trait;
use plumbline_engine::datasource::{FetchRequest, Fetcher};
use plumbline_engine::files::{FileTree, Limits};
use plumbline_engine::provider::{HttpResponse, Provider, ProviderError};
use plumbline_engine::scope;
use plumbline_github::egress::{Egress, EgressError};
use plumbline_github::{GitHub, GitHubError, Method};
use std::sync::Arc;

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

/// What artifact rules read with: one container registry (the one the provider's packages are
/// published to) and the Sigstore trust roots the operator configured, by name. A root read
/// from a TUF repository is replaced when it is refreshed; evaluations in flight keep the one
/// they started with.
pub struct Artifacts {
    pub registry: plumbline_sigstore::Registry,
    pub auth: plumbline_sigstore::RegistryAuth,
    roots: std::sync::RwLock<std::collections::HashMap<String, Arc<plumbline_sigstore::TrustRoot>>>,
}

impl Artifacts {
    pub fn new(
        registry: plumbline_sigstore::Registry,
        auth: plumbline_sigstore::RegistryAuth,
        roots: std::collections::HashMap<String, Arc<plumbline_sigstore::TrustRoot>>,
    ) -> Self {
        Artifacts {
            registry,
            auth,
            roots: std::sync::RwLock::new(roots),
        }
    }

    /// The root named `name`, if one is configured (and loaded).
    pub fn root(&self, name: &str) -> Option<Arc<plumbline_sigstore::TrustRoot>> {
        match self.roots.read() {
            Ok(r) => r.get(name).cloned(),
            Err(poisoned) => poisoned.into_inner().get(name).cloned(),
        }
    }

    /// Sets (or replaces) the root named `name`.
    pub fn set_root(&self, name: &str, root: plumbline_sigstore::TrustRoot) {
        let mut roots = match self.roots.write() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        roots.insert(name.to_string(), Arc::new(root));
    }

    /// The names of the roots loaded now.
    pub fn root_names(&self) -> Vec<String> {
        let roots = match self.roots.read() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut names: Vec<String> = roots.keys().cloned().collect();
        names.sort();
        names
    }
}

/// A registry that cannot be reached or answers 5xx/429 is worth trying again; any other
/// failure is the rule's `error`.
fn registry_error(e: plumbline_sigstore::Error) -> ProviderError {
    use plumbline_sigstore::Error as E;
    let transient = match &e {
        E::Request { .. } => true,
        E::Status { status, .. } => *status == 429 || *status >= 500,
        _ => false,
    };
    let message = format!(
        "container registry: {}",
        plumbline_domain::describe_error(&e)
    );
    if transient {
        ProviderError::Transient {
            message,
            until: None,
        }
    } else {
        ProviderError::Failed(message)
    }
}

fn method(m: &str) -> Result<Method, ProviderError> {
    Method::from_bytes(m.to_ascii_uppercase().as_bytes())
        .map_err(|_| ProviderError::Failed(format!("bad method {m:?}")))
}

/// GitHub's answer as the engine sees it.
fn response(r: plumbline_github::ApiResponse) -> HttpResponse {
    HttpResponse {
        status: r.status,
        body: r.body.to_vec(),
    }
}

/// Serves data-source calls from inside a synchronous Rego evaluation by blocking on the async
/// clients. Use it only where blocking is allowed (tokio's blocking pool): the evaluator and the
/// actuator's live re-check run policies there.
///
/// A call to the provider's API (its configured root, or `https://api.github.com`) from a data
/// source with `providerAuth` is sent with the provider's credentials, but only to read
/// (GET/HEAD) and only under the entity's own API root ([`crate::scope`]). Every other call goes
/// through [`Egress`] with no credentials at all; a `providerAuth` data source pointing
/// anywhere else is refused rather than sent without the credentials it asked for.
pub struct BlockingGitHubFetcher {
    pub github: GitHub,
    pub egress: Egress,
    pub runtime: tokio::runtime::Handle,
    /// The entity's API roots (see [`Provider::entity_scope`]).
    pub scope: Vec<String>,
}

impl BlockingGitHubFetcher {
    /// The fetcher for one evaluation of `entity`.
    pub fn for_entity(github: GitHub, egress: Egress, entity: &plumbline_domain::Entity) -> Self {
        BlockingGitHubFetcher {
            github,
            egress,
            runtime: tokio::runtime::Handle::current(),
            scope: vec![scope::repository_root(entity)],
        }
    }
}

/// Evaluates `rule` on what it ingested for `entity`, on tokio's blocking pool: Rego and jq are
/// CPU work, and a data-source call from Rego blocks on [`BlockingGitHubFetcher`], which needs
/// a thread that is not a runtime worker. The evaluator and the actuator's re-check both
/// evaluate this way. `Err` is the evaluation's panic, as tokio reports it.
pub async fn evaluate_on_blocking_pool(
    rule: Arc<plumbline_engine::CompiledRule>,
    ingested: plumbline_engine::Ingested,
    entity: &plumbline_domain::Entity,
    profile_rule: &plumbline_engine::ProfileRule,
    github: &GitHub,
    egress: &Egress,
) -> Result<plumbline_engine::Outcome, tokio::task::JoinError> {
    let fetcher: Arc<dyn Fetcher> = Arc::new(BlockingGitHubFetcher::for_entity(
        github.clone(),
        egress.clone(),
        entity,
    ));
    let (entity, params, def) = (
        entity.clone(),
        profile_rule.params.clone(),
        profile_rule.def.clone(),
    );
    tokio::task::spawn_blocking(move || {
        let inv = plumbline_engine::Invocation {
            entity: &entity,
            params: &params,
            def: &def,
        };
        rule.evaluate_with(&ingested, &inv, Some(fetcher))
    })
    .await
}

impl Fetcher for BlockingGitHubFetcher {
    fn fetch(&self, req: &FetchRequest) -> Result<HttpResponse, ProviderError> {
        let method = Method::from_bytes(req.method.as_bytes())
            .map_err(|_| ProviderError::Failed(format!("bad method {:?}", req.method)))?;
        let headers: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match (self.github.api_path(&req.url), req.provider_auth) {
            (Some(path), true) => {
                if method != Method::GET && method != Method::HEAD {
                    return Err(ProviderError::Failed(format!(
                        "{method} {}: a data source may only read (GET or HEAD) with the provider's credentials",
                        req.url
                    )));
                }
                scope::confine(&path, &self.scope).map_err(|e| ProviderError::Failed(format!("data source url {e}")))?;
                if let Some(k) = req.headers.keys().find(|k| k.eq_ignore_ascii_case("authorization") || k.eq_ignore_ascii_case("cookie")) {
                    return Err(ProviderError::Failed(format!("{}: a data source may not set the {k} header", req.url)));
                }
                self.runtime
                    .block_on(self.github.request_with_headers(method, &path, None, &headers))
                    .map(|r| HttpResponse {
                        status: r.status,
                        body: r.body.to_vec(),
                    })
                    .map_err(provider_error)
            }
            (None, true) => Err(ProviderError::Failed(format!(
                "{}: the provider's credentials are sent only to its own API; this data source asks for them elsewhere",
                req.url
            ))),
            (_, false) => self
                .runtime
                .block_on(self.egress.send(method, &req.url, &headers, req.body.clone()))
                .map(|r| HttpResponse {
                    status: r.status,
                    body: r.body.to_vec(),
                })
                .map_err(|e| match e {
                    EgressError::Transport { .. } => ProviderError::Transient {
                        message: e.to_string(),
                        until: None,
                    },
                    e => ProviderError::Failed(e.to_string()),
                }),
        }
    }
}

/// The provider the services use: a GitHub client plus a cache of branch trees keyed by the
/// commit they were read at.
///
/// Git ingest costs one conditional read of the branch head
/// (`GET /repos/{owner}/{repo}/commits/{branch}` as `application/vnd.github.sha`), which is a
/// free 304 while the branch has not moved; the tree is downloaded (a tarball of that exact
/// commit) only for a commit not seen before. An unchanged repository therefore costs no quota.
#[derive(Clone)]
pub struct GitHubProvider {
    github: GitHub,
    /// The container registry and Sigstore roots artifact rules read (none: they are errors).
    artifacts: Option<Arc<Artifacts>>,
    trees: Arc<TreeCache>,
    /// Room for tarballs being downloaded, in MiB (see [`GitHubProvider::with_download_budget`]).
    downloads: Arc<tokio::sync::Semaphore>,
    download_mib: u32,
}

/// Default room for tarballs being downloaded at once.
const DEFAULT_DOWNLOAD_BUDGET: u64 = 256 << 20;

impl GitHubProvider {
    /// `tree_cache_bytes` bounds the cached trees' total size (file bytes).
    pub fn new(github: GitHub, tree_cache_bytes: u64) -> Self {
        GitHubProvider {
            github,
            artifacts: None,
            trees: Arc::new(TreeCache::new(tree_cache_bytes)),
            downloads: Arc::new(tokio::sync::Semaphore::new(
                (DEFAULT_DOWNLOAD_BUDGET >> 20) as usize,
            )),
            download_mib: (DEFAULT_DOWNLOAD_BUDGET >> 20) as u32,
        }
    }

    /// Bounds the bytes of tarballs downloaded at once: each download holds room for the
    /// largest tree git ingest accepts until it is parsed, so downloads beyond the budget wait.
    pub fn with_download_budget(mut self, bytes: u64) -> Self {
        let mib = u32::try_from((bytes >> 20).max(1)).unwrap_or(u32::MAX >> 4);
        self.downloads = Arc::new(tokio::sync::Semaphore::new(mib as usize));
        self.download_mib = mib;
        self
    }

    pub fn github(&self) -> &GitHub {
        &self.github
    }

    /// Reads container images' signatures from `artifacts`' registry and verifies them against
    /// its roots (artifact rules).
    pub fn with_artifacts(mut self, artifacts: Arc<Artifacts>) -> Self {
        self.artifacts = Some(artifacts);
        self
    }

    /// The same provider acting with another credential (an entity's own provider), sharing
    /// the tree cache (keyed by credential) and the download budget.
    pub fn for_credential(&self, github: GitHub) -> GitHubProvider {
        GitHubProvider {
            github,
            ..self.clone()
        }
    }

    /// Tree cache hits and misses.
    pub fn tree_cache_stats(&self) -> (u64, u64) {
        self.trees.stats()
    }

    /// A commit's files from GitHub's tarball endpoint: one request, no git binary, and the
    /// same bounds as Minder's clone (10,000 files, 100 MB).
    async fn download_tree(
        &self,
        owner: &str,
        repo: &str,
        sha: &str,
    ) -> Result<Arc<FileTree>, ProviderError> {
        let limits = Limits::default();
        let bytes = self
            .github
            .tarball(owner, repo, sha, limits.max_bytes)
            .await
            .map_err(provider_error)?;
        FileTree::from_tar_gz(&bytes, &limits)
            .map(Arc::new)
            .map_err(|e| ProviderError::Failed(format!("{owner}/{repo}@{sha}: {e}")))
    }

    /// The commit SHA a branch points at, read conditionally.
    async fn head_sha(
        &self,
        owner: &str,
        repo: &str,
        branch: &str,
    ) -> Result<String, ProviderError> {
        self.github
            .branch_head(owner, repo, branch)
            .await
            .map_err(provider_error)?
            .ok_or_else(|| {
                ProviderError::Failed(format!("{owner}/{repo}@{branch}: branch not found"))
            })
    }
}

#[async_trait]
impl Provider for GitHubProvider {
    async fn request(
        &self,
        m: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<HttpResponse, ProviderError> {
        self.github
            .request(method(m)?, path, body)
            .await
            .map(response)
            .map_err(provider_error)
    }

    async fn request_with_headers(
        &self,
        m: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        headers: &[(String, String)],
    ) -> Result<HttpResponse, ProviderError> {
        self.github
            .request_with_headers(method(m)?, path, body, headers)
            .await
            .map(response)
            .map_err(provider_error)
    }

    async fn image_signatures(
        &self,
        image: &plumbline_sigstore::ImageRef,
    ) -> Result<Vec<plumbline_sigstore::Evidence>, ProviderError> {
        let Some(a) = &self.artifacts else {
            return Err(ProviderError::Failed(format!(
                "no container registry is configured to read {}@{} from",
                image.repository, image.digest
            )));
        };
        a.registry
            .signatures(image, &a.auth)
            .await
            .map_err(registry_error)
    }

    fn sigstore_root(&self, name: &str) -> Option<Arc<plumbline_sigstore::TrustRoot>> {
        self.artifacts.as_ref()?.root(name)
    }

    async fn fetch_tree(
        &self,
        owner: &str,
        repo: &str,
        branch: &str,
    ) -> Result<Arc<FileTree>, ProviderError> {
        let sha = self.head_sha(owner, repo, branch).await?;
        // Commits are immutable: a tree read at a SHA never needs revalidation.
        let key = format!(
            "{}\u{0}{}/{}\u{0}{sha}",
            self.github.credential_id(),
            owner.to_ascii_lowercase(),
            repo.to_ascii_lowercase()
        );
        if let Some(tree) = self.trees.get(&key) {
            return Ok(tree);
        }
        // Room for the largest accepted tree (or the whole budget, if smaller) while it downloads.
        let need = u32::try_from(Limits::default().max_bytes.div_ceil(1 << 20))
            .unwrap_or(u32::MAX)
            .min(self.download_mib);
        let _room =
            self.downloads
                .acquire_many(need)
                .await
                .map_err(|_| ProviderError::Transient {
                    message: "tree downloads are shutting down".into(),
                    until: None,
                })?;
        let tree = self.download_tree(owner, repo, &sha).await?;
        self.trees.put(key, tree.clone());
        Ok(tree)
    }
}

/// Trees by (credential, repository, commit), kept within a byte budget (their files' bytes)
/// by quick_cache's scan-resistant policy.
struct TreeCache {
    trees: quick_cache::sync::Cache<String, Arc<FileTree>, TreeBytes>,
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
}

#[derive(Clone)]
struct TreeBytes;

impl quick_cache::Weighter<String, Arc<FileTree>> for TreeBytes {
    fn weight(&self, key: &String, tree: &Arc<FileTree>) -> u64 {
        // What it holds, paths and overheads included (see `FileTree::footprint`).
        key.len() as u64 + tree.footprint()
    }
}

impl TreeCache {
    fn new(max_bytes: u64) -> Self {
        // One shard: trees are read once per evaluation (no contention worth splitting for),
        // and a shard holds at most its share of the budget, which must fit a 100 MB tree.
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(256)
            .weight_capacity(max_bytes.max(1))
            .shards(1)
            .build();
        let trees = match options {
            Ok(o) => quick_cache::sync::Cache::with_options(
                o,
                TreeBytes,
                quick_cache::DefaultHashBuilder::default(),
                quick_cache::sync::DefaultLifecycle::default(),
            ),
            // Only an invalid allocation makes the builder fail, and none is set here.
            Err(_) => quick_cache::sync::Cache::with_weighter(256, max_bytes.max(1), TreeBytes),
        };
        TreeCache {
            trees,
            hits: Default::default(),
            misses: Default::default(),
        }
    }

    fn get(&self, key: &str) -> Option<Arc<FileTree>> {
        use std::sync::atomic::Ordering::Relaxed;
        let hit = self.trees.get(key);
        match hit {
            Some(_) => self.hits.fetch_add(1, Relaxed),
            None => self.misses.fetch_add(1, Relaxed),
        };
        hit
    }

    fn put(&self, key: String, tree: Arc<FileTree>) {
        self.trees.insert(key, tree);
    }

    #[cfg(test)]
    fn bytes(&self) -> u64 {
        self.trees.weight()
    }

    fn stats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_cache_is_bounded_by_bytes() {
        let limits = Limits::default();
        let tree = |n: usize| {
            let mut t = FileTree::new();
            t.insert("f", vec![0u8; n], &limits).expect("insert");
            Arc::new(t)
        };
        let c = TreeCache::new(1_000);
        for i in 0..100 {
            c.put(format!("t{i}"), tree(40));
            assert!(c.bytes() <= 1_000, "{} bytes held", c.bytes());
        }
        assert!(c.get("t99").is_some(), "the newest tree is kept");
        c.put("huge".into(), tree(1_001));
        assert!(
            c.get("huge").is_none(),
            "a tree larger than the budget is not kept"
        );
        assert!(c.bytes() <= 1_000);
        assert_eq!(c.stats(), (1, 1));
    }
}
