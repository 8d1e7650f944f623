use crate::cache::{CacheStats, CachedResponse, EtagCache};
use crate::limits::{epoch_of, RateState};
use crate::GitHubError;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use octocrab::Octocrab;
use serde::Deserialize;
use std::time::Duration;

/// Where GitHub is and how to authenticate.
#[derive(Clone)]
pub struct GitHubConfig {
    /// REST base URL: `https://api.github.com`, a GitHub Enterprise `/api/v3` URL, or the simulator.
    pub api_url: String,
    /// A personal access token (or installation token). None: anonymous (or `app`).
    pub token: Option<String>,
    /// GitHub App credentials; when set they are used instead of `token`.
    pub app: Option<AppCredentials>,
    /// Per-request timeout (connect, read and write). None: no timeout (tests with paused
    /// time, where any pending timer would fire as soon as the runtime waits on the network).
    pub timeout: Option<Duration>,
    /// Conditional-GET cache size in bytes (0 disables it).
    pub etag_cache_bytes: usize,
    /// Largest response body read from the API (tarballs have their own limit); a larger one
    /// is an error rather than memory a hostile or broken server can fill.
    pub max_response_bytes: usize,
    /// Requests in flight at once with this credential (GitHub allows 100).
    pub max_concurrency: usize,
    /// Retries of an idempotent request after a 5xx, timeout or connection failure.
    pub max_retries: u32,
    /// First retry delay; doubles per retry, with jitter.
    pub retry_base: Duration,
}

impl std::fmt::Debug for GitHubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: say only whether there is one.
        f.debug_struct("GitHubConfig")
            .field("api_url", &self.api_url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("app", &self.app)
            .field("timeout", &self.timeout)
            .field("etag_cache_bytes", &self.etag_cache_bytes)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_concurrency", &self.max_concurrency)
            .field("max_retries", &self.max_retries)
            .field("retry_base", &self.retry_base)
            .finish()
    }
}

impl GitHubConfig {
    pub fn new(api_url: impl Into<String>, token: Option<String>) -> Self {
        GitHubConfig {
            api_url: api_url.into(),
            token,
            app: None,
            timeout: Some(Duration::from_secs(10)),
            etag_cache_bytes: 64 << 20,
            max_response_bytes: 16 << 20,
            max_concurrency: 50,
            max_retries: 3,
            retry_base: Duration::from_millis(250),
        }
    }
}

/// A GitHub App: its id and private key, and the installation to act as.
///
/// With `installation_id` the client authenticates as that installation: octocrab signs a JWT
/// with the key, exchanges it for an installation token at
/// `POST /app/installations/{id}/access_tokens`, caches the token and mints a new one 30 s
/// before it expires (and once more after a 401). Without it the client authenticates as the
/// App itself (JWT), which only the `/app` endpoints accept; [`GitHub::installation`] then
/// derives one client per installation.
#[derive(Clone)]
pub struct AppCredentials {
    pub app_id: u64,
    /// The App's RSA private key, PEM.
    pub private_key_pem: String,
    pub installation_id: Option<u64>,
    /// The file the key was read from, if any: re-read when it changes, so a rotated key is
    /// used without a restart (see [`GitHub`]).
    pub private_key_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("AppCredentials")
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .finish_non_exhaustive()
    }
}

/// A raw answer: status, headers and body. Non-2xx statuses are data here, not errors, because
/// rule types decide what a 404 means (Minder's `fallback`).
/// A credential's primary quota, as GitHub's answers last stated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub remaining: u64,
    pub limit: u64,
    /// When the window renews (epoch seconds).
    pub reset_epoch_secs: u64,
    /// Set while no request may be sent (GitHub said "limited").
    pub limited_until_epoch_secs: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ApiResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        if self.body.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&self.body)
    }

    /// GitHub's `message` field, for error reporting.
    pub fn message(&self) -> String {
        self.json()
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&self.body)
                    .chars()
                    .take(200)
                    .collect()
            })
    }
}

/// The repository fields Plumbline records at registration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Repository {
    pub id: u64,
    pub name: String,
    pub full_name: String,
    pub owner: Owner,
    #[serde(default)]
    pub default_branch: Option<String>,
    #[serde(default)]
    pub private: bool,
    #[serde(default)]
    pub archived: bool,
    #[serde(default)]
    pub fork: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Owner {
    pub login: String,
}

/// What a repository name leads to, against the id it should lead to.
#[derive(Debug, Clone)]
pub enum NameCheck {
    /// The repository it should (as it is now).
    Same(Repository),
    /// Another repository, with this id.
    Other(u64),
    /// Nothing this credential can see.
    Missing,
}

impl NameCheck {
    /// Why `full_name` cannot be taken for repository `id`, or `None` when it can.
    pub fn problem(&self, full_name: &str, id: u64) -> Option<String> {
        match self {
            NameCheck::Same(_) => None,
            NameCheck::Other(other) => Some(format!(
                "{full_name} now names repository {other}, not {id} (renamed or replaced)"
            )),
            NameCheck::Missing => Some(format!("{full_name} is not found by its name")),
        }
    }
}

/// A GitHub API client for one credential.
#[derive(Clone)]
pub struct GitHub {
    /// Replaced when the App's key file changes (see [`GitHub::octo`]).
    /// Shared, not cloned per request: octocrab keeps the installation token in the instance.
    octo: Octo,
    api_url: String,
    /// Who the credential is, for cache keys (a digest, never the token itself).
    credential: String,
    cache: Option<std::sync::Arc<EtagCache>>,
    rate: std::sync::Arc<std::sync::Mutex<RateState>>,
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    max_retries: u32,
    retry_base: Duration,
    max_response_bytes: usize,
    /// What this client was built from, to derive installation clients.
    config: GitHubConfig,
    /// Where requests are counted (by route template, status and credential), when set.
    metrics: Option<plumbline_telemetry::Metrics>,
}

/// The octocrab client: fixed, or rebuilt when the App key's file changes (a rotation).
#[derive(Clone)]
enum Octo {
    Fixed(std::sync::Arc<Octocrab>),
    /// Built from the key file; a new key that does not parse keeps the client built before.
    KeyFile(std::sync::Arc<plumbline_reload::Reloading<Octocrab, GitHubError>>),
}

/// The client for `config` with the App key read from the file in `paths`.
fn rebuilt(config: &GitHubConfig, paths: &[std::path::PathBuf]) -> Result<Octocrab, GitHubError> {
    let path = paths
        .first()
        .map(std::path::PathBuf::as_path)
        .unwrap_or(std::path::Path::new(""));
    let pem = std::fs::read_to_string(path).map_err(|e| {
        GitHubError::Config(format!("reading github app key {}: {e}", path.display()))
    })?;
    let mut config = config.clone();
    if let Some(app) = config.app.as_mut() {
        app.private_key_pem = pem;
    }
    build_octo(&config).map(|(octo, _)| octo)
}

fn build_octo(config: &GitHubConfig) -> Result<(Octocrab, String), GitHubError> {
    let api_url = config.api_url.trim_end_matches('/').to_string();
    let mut b = Octocrab::builder()
        .base_uri(api_url.as_str())
        .map_err(|e| GitHubError::Config(format!("api url {:?}: {e}", config.api_url)))?
        .set_connect_timeout(config.timeout)
        .set_read_timeout(config.timeout)
        .set_write_timeout(config.timeout);
    // An empty token (an unset variable passed through by compose) means anonymous.
    let token = config
        .token
        .as_ref()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty());
    Ok(match (&config.app, token) {
        (Some(app), _) => {
            let key = jsonwebtoken::EncodingKey::from_rsa_pem(app.private_key_pem.as_bytes())
                .map_err(|e| {
                    GitHubError::Config(format!("github app {} private key: {e}", app.app_id))
                })?;
            let octo = b
                .app(octocrab::models::AppId(app.app_id), key)
                .build()
                .map_err(|e| GitHubError::Config(e.to_string()))?;
            match app.installation_id {
                Some(id) => (
                    octo.installation(octocrab::models::InstallationId(id))
                        .map_err(|e| {
                            GitHubError::Config(format!(
                                "github app {} installation {id}: {e}",
                                app.app_id
                            ))
                        })?,
                    format!("app:{}:installation:{id}", app.app_id),
                ),
                None => (octo, format!("app:{}", app.app_id)),
            }
        }
        (None, Some(t)) => {
            b = b.personal_token(t.to_string());
            (
                b.build().map_err(|e| GitHubError::Config(e.to_string()))?,
                format!("token:{t}"),
            )
        }
        (None, None) => (
            b.build().map_err(|e| GitHubError::Config(e.to_string()))?,
            "anonymous".to_string(),
        ),
    })
}

/// The credential's identity as a digest: distinct per API root and secret, never reversible.
fn credential_digest(api_url: &str, identity: &str) -> String {
    use sha2::Digest as _;
    let kind = identity.split(':').next().unwrap_or("anonymous");
    let d = sha2::Sha256::digest(format!("{api_url}\u{0}{identity}").as_bytes());
    format!("{kind}:{}", hex::encode(&d[..12]))
}

impl GitHub {
    pub fn new(config: &GitHubConfig) -> Result<Self, GitHubError> {
        let api_url = config.api_url.trim_end_matches('/').to_string();
        let (octo, identity) = build_octo(config)?;
        let octo = match config.app.as_ref().and_then(|a| a.private_key_file.clone()) {
            None => Octo::Fixed(std::sync::Arc::new(octo)),
            Some(path) => {
                let base = config.clone();
                Octo::KeyFile(std::sync::Arc::new(plumbline_reload::Reloading::open(
                    vec![path],
                    "github app key",
                    move |paths: &[std::path::PathBuf]| rebuilt(&base, paths),
                )?))
            }
        };
        let mut client = GitHub {
            octo,
            api_url,
            credential: String::new(),
            cache: None,
            rate: Default::default(),
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(
                config.max_concurrency.clamp(1, 99),
            )),
            max_retries: config.max_retries,
            retry_base: config.retry_base,
            max_response_bytes: config.max_response_bytes.max(1),
            config: config.clone(),
            metrics: None,
        };
        client.credential = credential_digest(&client.api_url, &identity);
        client.cache = (config.etag_cache_bytes > 0)
            .then(|| std::sync::Arc::new(EtagCache::new(config.etag_cache_bytes, 1 << 20)));
        Ok(client)
    }

    /// The octocrab client to send with. When the App key came from a file that changed since
    /// it was read (a rotation), the client is rebuilt with the new key first: the next token
    /// is minted with it, and no restart is needed. A new key that does not parse keeps the
    /// old client, and says why.
    fn octo(&self) -> std::sync::Arc<Octocrab> {
        match &self.octo {
            Octo::Fixed(o) => o.clone(),
            Octo::KeyFile(r) => r.get(),
        }
    }

    /// A client acting as one installation of the App this client authenticates as: its own
    /// token (minted and refreshed by octocrab), its own rate-limit state, concurrency bound
    /// and cache partition, since GitHub budgets each installation separately.
    ///
    /// The conditional-GET cache is this client's, shared: its keys carry the credential, so
    /// one credential's entries never answer another's requests, and a process acting for many
    /// installations keeps one memory budget.
    pub fn installation(&self, installation_id: u64) -> Result<GitHub, GitHubError> {
        let Some(app) = &self.config.app else {
            return Err(GitHubError::Config(
                "installation clients need github app credentials".into(),
            ));
        };
        let mut config = self.config.clone();
        config.app = Some(AppCredentials {
            installation_id: Some(installation_id),
            ..app.clone()
        });
        config.etag_cache_bytes = 0; // shared below instead
        Ok(self.sharing_cache(GitHub::new(&config)?))
    }

    /// A client for the same API with another token (a project's personal access token), with
    /// its own rate-limit state and concurrency bound, sharing this client's cache as
    /// [`GitHub::installation`] does.
    pub fn with_token(&self, token: String) -> Result<GitHub, GitHubError> {
        let mut config = self.config.clone();
        config.app = None;
        config.token = Some(token);
        config.etag_cache_bytes = 0; // shared below instead
        Ok(self.sharing_cache(GitHub::new(&config)?))
    }

    fn sharing_cache(&self, mut client: GitHub) -> GitHub {
        client.cache = self.cache.clone();
        client.metrics = self.metrics.clone();
        client
    }

    /// Counts this client's requests (and those of the clients derived from it) in `metrics`:
    /// `plumbline_github_requests_total` by route template, status and credential digest, and
    /// `plumbline_github_rate_remaining` per credential.
    pub fn with_metrics(mut self, metrics: plumbline_telemetry::Metrics) -> GitHub {
        self.metrics = Some(metrics);
        self
    }

    /// Counts one answer (or transport failure) of `route`.
    fn count(&self, route: &str, status: &str) {
        use plumbline_telemetry::catalog::{CREDENTIAL_LABELS, GITHUB_REQUESTS};
        let Some(m) = &self.metrics else { return };
        let credential = CREDENTIAL_LABELS.value(&self.credential);
        m.inc(
            &GITHUB_REQUESTS,
            &[
                ("route", route),
                ("status", status),
                ("credential", credential),
            ],
            1,
        );
    }

    /// The quota left and when it renews, as the answer just read says.
    fn report_quota(&self) {
        use plumbline_telemetry::catalog::{
            CREDENTIAL_LABELS, GITHUB_RATE_REMAINING, GITHUB_RATE_RESET,
        };
        let Some(m) = &self.metrics else { return };
        let credential = [("credential", CREDENTIAL_LABELS.value(&self.credential))];
        let Some((left, reset)) = self
            .rate
            .lock()
            .ok()
            .map(|r| (r.remaining, r.reset_epoch()))
        else {
            return;
        };
        if let Some(left) = left {
            m.set_gauge(&GITHUB_RATE_REMAINING, &credential, left);
        }
        if let Some(reset) = reset {
            m.set_gauge(&GITHUB_RATE_RESET, &credential, reset);
        }
    }

    /// Whether this client holds GitHub App credentials (so [`GitHub::installation`] works).
    pub fn has_app(&self) -> bool {
        self.config.app.is_some()
    }

    /// Whether this client acts as an App installation (installation tokens cannot read some
    /// APIs at all, GitHub Packages among them).
    pub fn is_installation(&self) -> bool {
        self.config
            .app
            .as_ref()
            .is_some_and(|a| a.installation_id.is_some())
    }

    /// A short, stable identity of the credential (never the secret itself): cache keys, logs
    /// and metrics use it to tell credentials apart.
    pub fn credential_id(&self) -> &str {
        &self.credential
    }

    /// A URL GitHub gave (a `Link`), as a path under this client's API root; None for any
    /// other host, so pagination never carries credentials elsewhere.
    pub(crate) fn relative(&self, url: &str) -> Option<String> {
        let rest = url.strip_prefix(self.api_url.as_str())?;
        rest.starts_with('/').then(|| rest.to_string())
    }

    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// Conditional-GET cache hits and misses (all zero when the cache is disabled).
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.as_ref().map(|c| c.stats()).unwrap_or_default()
    }

    /// Sends one request. `path` is relative to the API root (`/repos/o/r`). Returns any HTTP
    /// status as data, except rate limits ([`GitHubError::RateLimited`]) and 5xx or transport
    /// failures ([`GitHubError::Transient`]), which callers handle by pausing or retrying.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<ApiResponse, GitHubError> {
        self.request_with_headers(method, path, body, &[]).await
    }

    /// Like [`request`](Self::request), with extra request headers (e.g. an `Accept` media
    /// type a rule type asks for).
    pub async fn request_with_headers(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        headers: &[(String, String)],
    ) -> Result<ApiResponse, GitHubError> {
        if !path.starts_with('/') {
            return Err(GitHubError::Config(format!(
                "path {path:?} must start with /"
            )));
        }
        if !matches!(
            method,
            Method::GET | Method::PUT | Method::PATCH | Method::POST | Method::DELETE
        ) {
            return Err(GitHubError::Config(format!("unsupported method {method}")));
        }
        self.send(method, path, body, headers, true, self.max_response_bytes)
            .await
    }

    /// Requests left in the credential's current window, as GitHub last reported.
    pub fn rate_remaining(&self) -> Option<u64> {
        self.rate.lock().ok().and_then(|r| r.remaining)
    }

    /// The credential's quota as GitHub's answers last stated it; `None` until an answer
    /// carried the rate-limit headers.
    pub fn quota(&self) -> Option<Quota> {
        let r = self.rate.lock().ok()?;
        Some(Quota {
            remaining: r.remaining?,
            limit: r.limit?,
            reset_epoch_secs: r.reset_epoch()?,
            limited_until_epoch_secs: r.blocked_until().map(crate::limits::epoch_of),
        })
    }

    /// The one path every request to the provider takes: [`send_once`](Self::send_once), plus
    /// free re-reads of cached "not there" answers.
    ///
    /// GitHub sends no ETag with a 404 (or a 409), so re-reading, say, the protection of an
    /// unprotected branch would cost quota on every sweep. Such answers are kept with a
    /// *validator*: a resource whose ETag covers the same fact (the branch's `protected` flag,
    /// the repository's `license`, the Actions policy). While a conditional read of the
    /// validator is a 304, the kept answer still holds, and the re-read costs nothing.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        headers: &[(String, String)],
        use_cache: bool,
        limit: usize,
    ) -> Result<ApiResponse, GitHubError> {
        let plain_get = method == Method::GET && use_cache && headers.is_empty();
        let negative = plain_get.then(|| validator_for(path)).flatten();
        let kept_in = match (&self.cache, &negative) {
            (Some(cache), Some(_)) => {
                Some((cache, EtagCache::key(&self.credential, path, headers)))
            }
            _ => None,
        };
        if let (Some((cache, key)), Some((validator, _))) = (&kept_in, &negative) {
            if let Some(kept) = cache.get(key).filter(|c| c.etag.is_empty()) {
                let (v, unchanged) = noted(
                    self.send_once(Method::GET, validator, None, &[], true, limit)
                        .await,
                )?;
                if unchanged {
                    cache.record_hit();
                    // The kept answer holds as long as its validating resource is unchanged.
                    crate::reads::note(|| validator_of(validator, &[], &v));
                    return Ok(ApiResponse {
                        status: kept.status,
                        headers: HeaderMap::new(),
                        body: kept.body,
                    });
                }
                cache.remove(key);
            }
        }
        let (r, _) = noted(
            self.send_once(method.clone(), path, body, headers, use_cache, limit)
                .await,
        )?;
        match (negative, r.status) {
            (Some((validator, fact)), 404 | 409) if kept_in.is_some() || crate::reads::active() => {
                // Read the validator (a 304 while it is cached, so free) and keep the answer
                // under it only if what the validator says agrees with the answer: read after
                // it, the validator may already show a change the answer does not.
                let agreed = match self
                    .send_once(Method::GET, &validator, None, &[], true, limit)
                    .await
                {
                    Ok((v, _)) if v.is_success() && fact.stated_by(&v.body) => Some(v),
                    _ => None,
                };
                crate::reads::note(|| {
                    agreed
                        .as_ref()
                        .and_then(|v| validator_of(&validator, &[], v))
                });
                if let (Some((cache, key)), Some(_)) = (kept_in, &agreed) {
                    cache.put(
                        key,
                        CachedResponse {
                            etag: String::new(),
                            status: r.status,
                            body: r.body.clone(),
                        },
                    );
                }
            }
            _ => crate::reads::note(|| {
                (method == Method::GET && use_cache)
                    .then(|| validator_of(path, headers, &r))
                    .flatten()
            }),
        }
        Ok(r)
    }

    /// Whether everything `validators` stand for is unchanged: a conditional GET each, in
    /// order, until one is not a 304. GitHub charges no quota for a 304, so an unchanged
    /// repository is checked for free however long ago its answers left the ETag cache. The
    /// first changed answer is put in the cache, so reading it again right after costs nothing.
    pub async fn still_valid(&self, validators: &[crate::Validator]) -> Result<bool, GitHubError> {
        for v in validators {
            if !v.path.starts_with('/') || v.etag.is_empty() {
                return Ok(false);
            }
            let mut headers = v.headers.clone();
            headers.push((
                http::header::IF_NONE_MATCH.as_str().to_string(),
                v.etag.clone(),
            ));
            let (r, _) = self
                .send_once(
                    Method::GET,
                    &v.path,
                    None,
                    &headers,
                    false,
                    self.max_response_bytes,
                )
                .await?;
            if r.status == 304 {
                continue;
            }
            if let Some(cache) = &self.cache {
                keep_answer(
                    cache,
                    EtagCache::key(&self.credential, &v.path, &v.headers),
                    &r,
                );
            }
            return Ok(false);
        }
        Ok(true)
    }

    /// One request: refuse while rate limited, bound concurrency, offer the cached ETag, retry
    /// transient failures of idempotent requests with jittered backoff, record the rate-limit
    /// state, update the cache. Also says whether the answer was a 304 served from the cache.
    /// A client span per request (method, route template, status, rate limit left, cache).
    #[tracing::instrument(
        name = "github.request",
        skip_all,
        fields(
            otel.kind = "client",
            http.request.method = %method,
            url.template = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
            github.rate_remaining = tracing::field::Empty,
            github.cache = tracing::field::Empty,
        )
    )]
    async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        headers: &[(String, String)],
        use_cache: bool,
        limit: usize,
    ) -> Result<(ApiResponse, bool), GitHubError> {
        let route = crate::route::template(path);
        tracing::Span::current().record("url.template", route);
        if let Some(until) = self.rate.lock().ok().and_then(|r| r.blocked_until()) {
            return Err(GitHubError::RateLimited {
                until_epoch_secs: epoch_of(until),
            });
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| GitHubError::Config("client is shutting down".into()))?;
        // Conditional GET: offer the cached ETag; a 304 is answered from the cache.
        let cache_key = match (&self.cache, &method, use_cache) {
            (Some(_), &Method::GET, true) => Some(EtagCache::key(&self.credential, path, headers)),
            _ => None,
        };
        let cached = match (&self.cache, &cache_key) {
            (Some(c), Some(k)) => c.get(k),
            _ => None,
        };
        let idempotent = matches!(method, Method::GET | Method::PUT | Method::DELETE);
        let mut attempt = 0u32;
        let mut r = loop {
            let mut builder = http::Request::builder().method(method.clone()).uri(path);
            for (k, v) in headers {
                builder = builder.header(k.as_str(), v.as_str());
            }
            if let Some(c) = &cached {
                builder = builder.header(http::header::IF_NONE_MATCH, c.etag.as_str());
            }
            let octo = self.octo();
            let sent = match octo.build_request(builder, body) {
                Ok(req) => octo.execute(req).await,
                Err(e) => return Err(GitHubError::Config(format!("{method} {path}: {e}"))),
            };
            let outcome = match sent {
                Ok(resp) => read_response(resp, &method, path, limit).await,
                Err(e) => Err(GitHubError::Transient(format!("{method} {path}: {e}"))),
            };
            match &outcome {
                Ok(r) => self.count(route, &r.status.to_string()),
                Err(_) => self.count(route, "error"),
            }
            let retryable = match &outcome {
                Ok(r) => r.status >= 500,
                Err(GitHubError::Transient(_)) => true,
                Err(_) => false,
            };
            if !(retryable && idempotent && attempt < self.max_retries) {
                break outcome?;
            }
            attempt += 1;
            let jitter = rand::random::<f64>() * 0.5 + 0.75;
            let delay = self
                .retry_base
                .mul_f64(f64::from(1u32 << attempt.min(8)) / 2.0 * jitter);
            tracing::debug!(%method, path, attempt, ?delay, "transient github failure, retrying");
            tokio::time::sleep(delay).await;
        };
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let limited = self
            .rate
            .lock()
            .ok()
            .and_then(|mut s| s.observe(status, &r.headers, &r.body));
        self.report_quota();
        if let Some(until) = limited {
            tracing::warn!(%method, path, until = epoch_of(until), "github rate limit hit");
            return Err(GitHubError::RateLimited {
                until_epoch_secs: epoch_of(until),
            });
        }
        let span = tracing::Span::current();
        span.record("http.response.status_code", r.status);
        if let Some(left) = self.rate_remaining() {
            span.record("github.rate_remaining", left);
        }
        span.record(
            "github.cache",
            match (&cached, r.status) {
                (Some(_), 304) => "hit",
                (Some(_), _) => "stale",
                (None, _) if cache_key.is_some() => "miss",
                _ => "none",
            },
        );
        let mut revalidated = false;
        if let (Some(cache), Some(key)) = (&self.cache, cache_key) {
            match (&cached, r.status) {
                (Some(c), 304) => {
                    revalidated = true;
                    cache.record_hit();
                    // Fresh headers (rate-limit figures), the body we already had, and the
                    // ETag it was validated with when the 304 did not repeat it.
                    r.status = c.status;
                    r.body = c.body.clone();
                    if !r.headers.contains_key(http::header::ETAG) {
                        if let Ok(v) = http::HeaderValue::from_str(&c.etag) {
                            r.headers.insert(http::header::ETAG, v);
                        }
                    }
                }
                (_, 200..=299) => {
                    cache.record_miss();
                    keep_answer(cache, key, &r);
                }
                _ => cache.record_miss(),
            }
        }
        if status.is_server_error() {
            return Err(GitHubError::Transient(format!(
                "{method} {path}: {} {}",
                status.as_u16(),
                r.message()
            )));
        }
        Ok((r, revalidated))
    }

    /// Where an absolute URL addresses this client's API (its configured root, or
    /// `https://api.github.com`, the name rule authors write for it), the path and query under
    /// that root; `None` for every other URL, which must never see this client's credentials.
    pub fn api_path(&self, url: &str) -> Option<String> {
        [self.api_url.as_str(), PUBLIC_API]
            .into_iter()
            .find_map(|root| {
                let rest = url.strip_prefix(root)?;
                match rest.as_bytes().first() {
                    None => Some("/".to_string()),
                    Some(b'/') => Some(rest.to_string()),
                    Some(b'?') => Some(format!("/{rest}")),
                    _ => None,
                }
            })
    }

    /// Like [`request`](Self::request), but a non-2xx status is an error.
    pub async fn request_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<ApiResponse, GitHubError> {
        let r = self.request(method.clone(), path, body).await?;
        if !r.is_success() {
            return Err(GitHubError::Status {
                status: r.status,
                method: method.to_string(),
                path: path.to_string(),
                message: r.message(),
            });
        }
        Ok(r)
    }

    /// A branch's tarball (`GET /repos/{owner}/{repo}/tarball/{ref}`), following GitHub's
    /// redirect to its download host. Refuses bodies over `max_bytes`.
    pub async fn tarball(
        &self,
        owner: &str,
        repo: &str,
        git_ref: &str,
        max_bytes: u64,
    ) -> Result<Bytes, GitHubError> {
        let path = format!("/repos/{owner}/{repo}/tarball/{git_ref}");
        let limit = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        let (mut r, _) = self
            .send_once(Method::GET, &path, None, &[], false, limit)
            .await?;
        if matches!(r.status, 301 | 302 | 307 | 308) {
            let location = r
                .headers
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| GitHubError::Decode {
                    path: path.clone(),
                    reason: "redirect without a location".into(),
                })?
                .to_string();
            // An absolute URL on another host: octocrab sends no credentials there, which is
            // right, since the redirect URL carries a short-lived token of its own.
            let resp = self
                .octo()
                ._get(location.as_str())
                .await
                .map_err(|e| GitHubError::Transient(format!("GET {location}: {e}")))?;
            r = read_response(resp, &Method::GET, &path, limit).await?;
        }
        if r.status >= 500 {
            return Err(GitHubError::Transient(format!("GET {path}: {}", r.status)));
        }
        if !r.is_success() {
            return Err(GitHubError::Status {
                status: r.status,
                method: "GET".into(),
                path,
                message: r.message(),
            });
        }
        Ok(r.body)
    }

    pub async fn get_repository(&self, owner: &str, name: &str) -> Result<Repository, GitHubError> {
        let path = format!("/repos/{owner}/{name}");
        let r = self.request_ok(Method::GET, &path, None).await?;
        serde_json::from_slice(&r.body).map_err(|e| GitHubError::Decode {
            path,
            reason: e.to_string(),
        })
    }

    /// What the name `owner/name` leads to now, against the repository `id` it should name
    /// (a conditional GET, free while unchanged). Names move (renames, transfers, a new
    /// repository under an old name); ids do not.
    pub async fn check_repository_name(
        &self,
        owner: &str,
        name: &str,
        id: u64,
    ) -> Result<NameCheck, GitHubError> {
        match self.get_repository(owner, name).await {
            Ok(repo) if repo.id == id => Ok(NameCheck::Same(repo)),
            Ok(repo) => Ok(NameCheck::Other(repo.id)),
            Err(GitHubError::Status { status: 404, .. }) => Ok(NameCheck::Missing),
            Err(e) => Err(e),
        }
    }

    /// Every repository of an organisation, following `Link: rel="next"` pages.
    pub async fn list_org_repositories(&self, org: &str) -> Result<Vec<Repository>, GitHubError> {
        self.list_all(&format!("/orgs/{org}/repos?per_page=100"), None, 10_000)
            .await
    }
}

/// What a kept 404/409 answer stands for, as its validator states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fact {
    /// No protection (404): the branch's `protected` flag.
    Unprotected,
    /// No license file (404): the repository's `license` field.
    NoLicense,
    /// Actions not limited to selected actions (409): the policy's `allowed_actions`.
    ActionsNotSelected,
}

impl Fact {
    /// Whether the validator's body states the fact. Anything else (a change between the
    /// answer and the validator's read, a body not understood) disagrees.
    fn stated_by(self, validator_body: &[u8]) -> bool {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(validator_body) else {
            return false;
        };
        match self {
            Fact::Unprotected => {
                v.get("protected").and_then(serde_json::Value::as_bool) == Some(false)
            }
            Fact::NoLicense => v.get("license").is_none_or(serde_json::Value::is_null),
            Fact::ActionsNotSelected => {
                v.get("allowed_actions").and_then(serde_json::Value::as_str) != Some("selected")
            }
        }
    }
}

/// The resource whose ETag tells whether a kept 404/409 answer of `path` still holds (see
/// [`GitHub::send`]), and what the answer stands for.
fn validator_for(path: &str) -> Option<(String, Fact)> {
    if path.contains('?') {
        return None;
    }
    let rest = path.strip_prefix("/repos/")?;
    let mut parts = rest.splitn(3, '/');
    let (owner, repo, tail) = (parts.next()?, parts.next()?, parts.next()?);
    let repo_path = format!("/repos/{owner}/{repo}");
    match tail {
        // An unprotected branch: the branch's `protected` flag changes when protection is added.
        t if t.starts_with("branches/")
            && t.ends_with("/protection")
            && t.len() > "branches//protection".len() =>
        {
            Some((
                format!("{repo_path}/{}", &t[..t.len() - "/protection".len()]),
                Fact::Unprotected,
            ))
        }
        // No license file: the repository's `license` field changes when one is added.
        "license" => Some((repo_path, Fact::NoLicense)),
        // Actions not limited to selected actions (409): the policy says when that changes.
        "actions/permissions/selected-actions" => Some((
            format!("{repo_path}/actions/permissions"),
            Fact::ActionsNotSelected,
        )),
        _ => None,
    }
}

/// Keeps a successful answer that carries an ETag, for the conditional reads that follow.
fn keep_answer(cache: &EtagCache, key: String, r: &ApiResponse) {
    let etag = r
        .headers
        .get(http::header::ETAG)
        .and_then(|v| v.to_str().ok());
    if let (true, Some(etag)) = (r.is_success(), etag) {
        cache.put(
            key,
            CachedResponse {
                etag: etag.to_string(),
                status: r.status,
                body: r.body.clone(),
            },
        );
    }
}

/// A failed read cannot be validated later: the recording scope (if any) is told so.
fn noted<T>(r: Result<T, GitHubError>) -> Result<T, GitHubError> {
    if r.is_err() {
        crate::reads::note(|| None);
    }
    r
}

/// Request headers a validator may carry: the ones that select a representation. A read with
/// any other header is not recorded (it could carry something that must not be stored).
const VALIDATOR_HEADERS: [&str; 2] = ["accept", "x-github-api-version"];

/// The validator of a successful GET: its ETag (none for other answers, or without one).
fn validator_of(
    path: &str,
    headers: &[(String, String)],
    r: &ApiResponse,
) -> Option<crate::Validator> {
    let etag = r.headers.get(http::header::ETAG)?.to_str().ok()?;
    let representation = headers
        .iter()
        .all(|(k, _)| VALIDATOR_HEADERS.contains(&k.to_ascii_lowercase().as_str()));
    (r.is_success() && !etag.is_empty() && representation).then(|| crate::Validator {
        path: path.to_string(),
        headers: headers.to_vec(),
        etag: etag.to_string(),
    })
}

/// Reads a whole response, refusing bodies over `limit` bytes.
async fn read_response(
    resp: http::Response<http_body_util::combinators::BoxBody<Bytes, octocrab::Error>>,
    method: &Method,
    path: &str,
    limit: usize,
) -> Result<ApiResponse, GitHubError> {
    use http_body_util::BodyExt as _;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut body = resp.into_body();
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| GitHubError::Transient(format!("{method} {path}: reading body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(GitHubError::Decode {
                    path: path.to_string(),
                    reason: format!("body larger than {limit} bytes"),
                });
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(ApiResponse {
        status,
        headers,
        body: buf.freeze(),
    })
}

const PUBLIC_API: &str = "https://api.github.com";

/// The `rel="next"` URL of a `Link` header.
pub(crate) fn has_next_page_url(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find(|part| part.contains("rel=\"next\""))
        .and_then(|part| {
            let start = part.find('<')? + 1;
            let end = part.find('>')?;
            (start <= end).then(|| part[start..end].to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().expect("header value"));
        }
        m
    }

    #[test]
    fn validators_of_not_found_answers() {
        assert_eq!(
            validator_for("/repos/o/r/branches/main/protection")
                .map(|(v, _)| v)
                .as_deref(),
            Some("/repos/o/r/branches/main")
        );
        assert_eq!(
            validator_for("/repos/o/r/branches/feature/x/protection")
                .map(|(v, _)| v)
                .as_deref(),
            Some("/repos/o/r/branches/feature/x")
        );
        assert_eq!(
            validator_for("/repos/o/r/license")
                .map(|(v, _)| v)
                .as_deref(),
            Some("/repos/o/r")
        );
        assert_eq!(
            validator_for("/repos/o/r/actions/permissions/selected-actions")
                .map(|(v, _)| v)
                .as_deref(),
            Some("/repos/o/r/actions/permissions")
        );
        for none in [
            "/repos/o/r",
            "/repos/o/r/branches//protection",
            "/repos/o/r/license?ref=x",
            "/orgs/o/repos",
            "/repos/o/r/contents/README.md",
        ] {
            assert_eq!(validator_for(none), None, "{none}");
        }
    }

    #[tokio::test]
    async fn only_urls_under_the_api_root_are_api_paths() {
        let gh = GitHub::new(&GitHubConfig::new("http://127.0.0.1:8080", None)).expect("client");
        assert_eq!(
            gh.api_path("http://127.0.0.1:8080/repos/o/r").as_deref(),
            Some("/repos/o/r")
        );
        assert_eq!(
            gh.api_path("https://api.github.com/repos/o/r?x=1")
                .as_deref(),
            Some("/repos/o/r?x=1")
        );
        assert_eq!(gh.api_path("https://api.github.com").as_deref(), Some("/"));
        for other in [
            "https://api.github.com.evil.example/repos",
            "https://api.github.com@evil.example/",
            "http://127.0.0.1:80801/",
            "https://uploads.github.com/x",
        ] {
            assert_eq!(gh.api_path(other), None, "{other}");
        }
    }

    #[test]
    fn link_header_next() {
        assert_eq!(
            has_next_page_url(&h(&[("link", "<https://x/?page=1>; rel=\"prev\", <https://x/?page=3>; rel=\"next\", <https://x/?page=9>; rel=\"last\"")])),
            Some("https://x/?page=3".to_string())
        );
        assert_eq!(
            has_next_page_url(&h(&[("link", "<https://x/?page=1>; rel=\"prev\"")])),
            None
        );
        assert_eq!(has_next_page_url(&HeaderMap::new()), None);
    }
}
