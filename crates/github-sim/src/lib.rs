//! A GitHub REST API simulator for tests and demos.
//!
//! Plumbline talks to GitHub through a small set of REST operations (repository metadata and
//! settings, branch protection, repository listings, Actions workflow permissions, tarball
//! archives of a branch, repository contents and the git database, pull requests with their
//! files, reviews and review comments, comparisons, commit statuses, license, container packages
//! and artifact attestations) and
//! learns about changes from signed webhooks. Repository contents are a real git object model
//! (blobs, trees, commits with the shas git computes, branches as refs). This crate
//! serves that subset over real HTTP with GitHub's status codes, headers (ETag, rate limit,
//! pagination `Link`) and JSON shapes, so the production client code can run unchanged against
//! it. An admin API (`/_admin/...`, and the matching methods on [`Simulator`]) stands in for a
//! human clicking in the GitHub UI: every state change made there sends the same signed webhook
//! GitHub would send.
//!
//! For testing a client under GitHub's rules it also speaks GitHub App authentication (RS256
//! JWTs, installations, expiring installation tokens; see [`AppConfig`]), accounts quota per
//! route and credential ([`Simulator::quota`]), injects faults and secondary rate limits
//! ([`Fault`]) and seeds whole fleets in a chosen posture ([`PostureSeed`]).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use plumbline_github_sim::{RepoOptions, SimConfig, Simulator};
//! let sim = Simulator::new(SimConfig::default());
//! sim.create_repo("acme", "api", RepoOptions::default());
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let addr = sim.serve("127.0.0.1:0".parse().unwrap(), shutdown.clone()).await?;
//! println!("github simulator on http://{addr}");
//! # Ok(()) }
//! ```

mod admin;
mod api;
mod apps;
mod content;
mod contents_api;
mod faults;
mod git;
mod gitdata;
mod license;
mod posture;
mod protection;
mod pulls;
mod quota;
mod render;
mod settings;
mod state;
mod webhooks;

pub use apps::{
    AppConfig, InstallationConfig, RepositorySelection, DEFAULT_INSTALLATION_TOKEN_TTL,
};
pub use faults::{ContentLimits, Fault, FaultKind, DEFAULT_TIMEOUT_HANG};
pub use posture::{PostureSeed, SeededRepo};
pub use quota::{token_label, QuotaReport, QuotaUsage, ANONYMOUS_LABEL};
// Endpoint families, one module each (handlers, state, rendering, admin methods).
mod actions_policy;
mod advisories;
mod attestations;
mod collaborators;
mod dependabot;
mod diffs;
mod issues;
mod objects;
mod packages;
mod pull_files;
mod releases;
mod reviews;
mod rulesets;
mod statuses;
mod vulnerability_reporting;

pub use crate::actions_policy::{AccessLevel, AllowedActions};
pub use crate::collaborators::{Affiliation, Permission};
pub use crate::diffs::{MAX_COMPARE_FILES, MAX_PATCH_BYTES, MAX_PATCH_LINES, MAX_PULL_FILES};
pub use crate::git::{CommitFile, FileMode};
pub use crate::pulls::NewPullRequest;
pub use crate::statuses::MAX_STATUSES_PER_CONTEXT;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::settings::RepoPatch;
use crate::state::{Actions, Actor, State};
use crate::webhooks::{Dispatcher, Event};

/// Static configuration of a [`Simulator`].
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// URL to POST webhooks to (e.g. "http://127.0.0.1:8080/webhooks/github"); None = no delivery.
    pub webhook_url: Option<String>,
    /// HMAC secret for `X-Hub-Signature-256`.
    pub webhook_secret: String,
    /// Accepted bearer tokens for the REST API; empty = any token (and no token) accepted.
    /// Installation tokens minted by the simulator are accepted either way until they expire.
    pub tokens: Vec<String>,
    /// GitHub Apps whose JWTs the app routes (`/app...`) accept.
    pub apps: Vec<AppConfig>,
    /// Installations of those apps on organizations.
    pub installations: Vec<InstallationConfig>,
    /// Lifetime of minted installation tokens (GitHub: one hour).
    pub installation_token_ttl: std::time::Duration,
    /// GitHub's secondary limit on content-creating requests per credential; None disables it.
    pub content_limits: Option<ContentLimits>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            webhook_url: None,
            webhook_secret: "sim-secret".to_owned(),
            tokens: Vec::new(),
            apps: Vec::new(),
            installations: Vec::new(),
            installation_token_ttl: DEFAULT_INSTALLATION_TOKEN_TTL,
            content_limits: Some(ContentLimits::default()),
        }
    }
}

/// How a repository is created by [`Simulator::create_repo`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoOptions {
    /// Name of the default branch, which is created with the repository.
    pub default_branch: String,
    /// Private (true) or public (false) visibility.
    pub private: bool,
    /// If true the default branch gets a typical protection: one approving review required,
    /// `enforce_admins` on, force pushes and deletions blocked.
    pub protected: bool,
    /// Files (path, contents) of the default branch's initial commit; no `push` webhook is sent
    /// for them, they are part of the repository's creation.
    pub files: Vec<(String, Vec<u8>)>,
}

impl Default for RepoOptions {
    fn default() -> Self {
        RepoOptions {
            default_branch: "main".to_owned(),
            private: false,
            protected: false,
            files: Vec::new(),
        }
    }
}

/// The default permissions of the `GITHUB_TOKEN` in a repository's workflows
/// (`default_workflow_permissions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkflowPermissions {
    /// Read access to the repository contents and packages only.
    Read,
    /// Read and write access (GitHub's legacy default).
    Write,
}

impl WorkflowPermissions {
    /// GitHub's wire value, "read" or "write".
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowPermissions::Read => "read",
            WorkflowPermissions::Write => "write",
        }
    }

    /// Parses GitHub's wire value.
    pub fn parse(value: &str) -> Option<WorkflowPermissions> {
        match value {
            "read" => Some(WorkflowPermissions::Read),
            "write" => Some(WorkflowPermissions::Write),
            _ => None,
        }
    }
}

/// Errors of the admin operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// The repository, branch or protection does not exist. The payload is GitHub's message for
    /// the case ("Not Found", "Branch not found", "Branch not protected") so the REST layer can
    /// answer exactly what GitHub answers.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request body was rejected; the payload is GitHub's 422 message.
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// One REST API request as seen by the simulator (admin requests are not logged). Tokens are
/// recorded by label only (see [`token_label`]), never themselves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedRequest {
    /// HTTP method, e.g. "GET".
    pub method: String,
    /// Concrete request path, e.g. "/repos/acme/api/branches/main/protection".
    pub path: String,
    /// Route template, e.g. "/repos/{owner}/{repo}/branches/{branch}/protection";
    /// "(unmatched)" for requests no route (or no method of the route) answers.
    pub route: String,
    /// Status code of the answer; 0 when a timeout fault left the request unanswered.
    pub status: u16,
    /// Label of the credentials the request carried (see [`token_label`]), also when they were
    /// rejected.
    pub token_label: String,
    /// The answer was a 304 to a conditional request.
    pub not_modified: bool,
    /// The request consumed primary rate limit.
    pub charged: bool,
    /// Why the request was not served normally: the injected fault ("latency", "server_error",
    /// "timeout", "secondary_rate_limit") or GitHub's "content_creation_limit".
    pub fault: Option<String>,
    /// When the request arrived.
    pub at: DateTime<Utc>,
}

/// The simulator: shared state plus webhook dispatcher. Cloning is cheap and every clone sees
/// the same state, so tests can keep one handle while the server runs with another.
#[derive(Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
}

struct Shared {
    /// Accepted tokens; fixed at construction because rotating them is not something Plumbline
    /// needs to exercise.
    tokens: Vec<String>,
    /// All mutable state behind one std mutex. It is never held across an `.await`, which keeps
    /// every operation atomic and the ordering of webhooks identical to the ordering of changes.
    state: Mutex<State>,
    webhooks: Dispatcher,
}

impl Simulator {
    /// Creates a simulator with no organizations or repositories.
    pub fn new(config: SimConfig) -> Simulator {
        let mut state = State::new();
        state.webhook_url = config.webhook_url;
        state.configure_apps(
            &config.apps,
            &config.installations,
            config.installation_token_ttl,
        );
        state.faults.set_content_limits(config.content_limits);
        Simulator {
            shared: Arc::new(Shared {
                tokens: config.tokens,
                state: Mutex::new(state),
                webhooks: Dispatcher::new(config.webhook_secret),
            }),
        }
    }

    /// Binds to `addr` (port 0 allowed) and serves until `shutdown` is cancelled. Returns the
    /// bound address right after binding; serving happens in a spawned task.
    pub async fn serve(
        &self,
        addr: SocketAddr,
        shutdown: CancellationToken,
    ) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        // Webhook payloads have no Host header to derive URLs from, so they use the address the
        // server listens on; a wildcard bind is reachable through loopback.
        let public_ip = if local.ip().is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            local.ip()
        };
        self.lock().public_base = Some(format!(
            "http://{}",
            SocketAddr::new(public_ip, local.port())
        ));
        // Requests hanging in a timeout fault must not hold up the graceful shutdown.
        self.lock().faults.release_on(shutdown.clone());
        let app = self.router();
        tokio::spawn(async move {
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            match result {
                Ok(()) => tracing::debug!(%local, "github simulator stopped"),
                Err(error) => tracing::warn!(%local, %error, "github simulator stopped with error"),
            }
        });
        tracing::info!(%local, "github simulator listening");
        Ok(local)
    }

    /// The complete axum router (REST API at the root, admin API under `/_admin`), for
    /// embedding into another server.
    pub fn router(&self) -> axum::Router {
        api::routes(self)
            .nest("/_admin", admin::routes())
            .with_state(self.clone())
    }

    /// Creates an organization (no-op if it exists). Repositories create their owner implicitly.
    pub fn create_org(&self, org: &str) {
        self.lock().ensure_org(org);
    }

    /// Creates a repository (its organization implicitly) and returns its id. The default branch
    /// exists from the start. Sends a `repository` "created" webhook, and a
    /// `branch_protection_rule` "created" webhook when `opts.protected` is set. If the repository
    /// already exists its id is returned and nothing changes.
    pub fn create_repo(&self, owner: &str, name: &str, opts: RepoOptions) -> u64 {
        let mut st = self.lock();
        let (id, _created, events) = st.create_repo(owner, name, &opts, Actor::Admin);
        self.emit(&st, events);
        id
    }

    /// Seeds `count` repositories named "{prefix}-{i:03}" (i from 1) in `org`. A
    /// `protected_fraction` (0.0..=1.0) of them, spread evenly, get the typical protection of
    /// [`RepoOptions::protected`]. Returns the created (owner, name, id) triples.
    pub fn seed(
        &self,
        org: &str,
        count: usize,
        prefix: &str,
        protected_fraction: f64,
    ) -> Vec<(String, String, u64)> {
        let fraction = if protected_fraction.is_finite() {
            protected_fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let mut out = Vec::with_capacity(count);
        for i in 1..=count {
            // Repository i is protected when the running total floor(i * f) steps up, which
            // spreads exactly floor(count * f) protected repositories evenly over the range.
            let protected = (i as f64 * fraction).floor() > ((i - 1) as f64 * fraction).floor();
            let name = format!("{prefix}-{i:03}");
            let opts = RepoOptions {
                protected,
                ..RepoOptions::default()
            };
            let id = self.create_repo(org, &name, opts);
            out.push((org.to_owned(), name, id));
        }
        out
    }

    /// Sets the protection of a branch from a body in the shape of GitHub's "update branch
    /// protection" request. Sends `branch_protection_rule` "created" or "edited". Unlike the REST
    /// endpoint this also accepts `required_signatures: bool`, which the UI can set.
    pub fn set_protection(
        &self,
        owner: &str,
        repo: &str,
        branch: &str,
        protection: serde_json::Value,
    ) -> Result<(), SimError> {
        let parsed = protection::parse_put(&protection, true).map_err(SimError::Invalid)?;
        let mut st = self.lock();
        let events = st.put_protection(owner, repo, branch, parsed, Actor::Admin)?;
        self.emit(&st, events);
        Ok(())
    }

    /// Renames a repository (its id stays, as on GitHub). Sends `repository` "renamed".
    pub fn rename_repo(&self, owner: &str, repo: &str, new_name: &str) -> Result<(), SimError> {
        let mut st = self.lock();
        let events = st.rename_repo(owner, repo, new_name, Actor::Admin)?;
        self.emit(&st, events);
        Ok(())
    }

    /// Deletes a repository (GitHub's `DELETE /repos/{owner}/{repo}`). Sends `repository`
    /// "deleted".
    pub fn delete_repo(&self, owner: &str, repo: &str) -> Result<(), SimError> {
        let mut st = self.lock();
        let events = st.delete_repo(owner, repo, Actor::Admin)?;
        self.emit(&st, events);
        Ok(())
    }

    /// Removes the protection of a branch. Sends `branch_protection_rule` "deleted".
    pub fn remove_protection(&self, owner: &str, repo: &str, branch: &str) -> Result<(), SimError> {
        let mut st = self.lock();
        let events = st.delete_protection(owner, repo, branch, Actor::Admin)?;
        self.emit(&st, events);
        Ok(())
    }

    /// The protection of a branch in the shape of GitHub's GET response; None if the branch is
    /// unprotected or does not exist.
    pub fn protection(&self, owner: &str, repo: &str, branch: &str) -> Option<serde_json::Value> {
        let st = self.lock();
        let base = st.base_url(None);
        st.protection_view(&base, owner, repo, branch).ok()
    }

    /// Creates or overwrites a regular file on a branch as one commit by the admin user (an
    /// existing file keeps its mode). Sends a `push` webhook for the branch (`ref`
    /// "refs/heads/{branch}", new `after` sha, the path under `added` or `modified`), and
    /// `pull_request` "synchronize" for open pull requests from the branch. Paths are relative
    /// and `/`-separated.
    pub fn put_file(
        &self,
        owner: &str,
        repo: &str,
        branch: &str,
        path: &str,
        contents: impl Into<Vec<u8>>,
    ) -> Result<(), SimError> {
        let mode = self
            .file_entry(owner, repo, branch, path)
            .map(|(mode, _)| mode)
            .unwrap_or_default();
        let file = CommitFile {
            path: path.to_owned(),
            contents: Some(contents.into()),
            mode,
        };
        self.commit_files(owner, repo, branch, None, vec![file])
            .map(|_| ())
    }

    /// Deletes a file from a branch as one commit by the admin user and sends a `push` webhook
    /// with the path under `removed`. A missing file is `SimError::NotFound("Not Found")`.
    pub fn remove_file(
        &self,
        owner: &str,
        repo: &str,
        branch: &str,
        path: &str,
    ) -> Result<(), SimError> {
        self.commit_files(owner, repo, branch, None, vec![CommitFile::delete(path)])
            .map(|_| ())
    }

    /// Commits several files (with their modes) and deletions onto a branch as ONE commit by the
    /// admin user, like a push from a human's clone: one `push` webhook (and `pull_request`
    /// "synchronize" for open pull requests from the branch). `message` defaults to a
    /// description of the change. Returns the new commit sha.
    pub fn commit_files(
        &self,
        owner: &str,
        repo: &str,
        branch: &str,
        message: Option<&str>,
        files: Vec<CommitFile>,
    ) -> Result<String, SimError> {
        let meta = content::CommitMeta {
            message: message.map(str::to_owned),
            ..content::CommitMeta::default()
        };
        let mut st = self.lock();
        let (sha, events) = st.commit_files(owner, repo, branch, files, meta, Actor::Admin)?;
        self.emit(&st, events);
        Ok(sha)
    }

    /// The contents of a file on a branch (for a symlink: its target); None if the repository,
    /// branch or file does not exist.
    pub fn file(&self, owner: &str, repo: &str, branch: &str, path: &str) -> Option<Vec<u8>> {
        let st = self.lock();
        let (_, repo) = st.repo(owner, repo)?;
        let head = &repo.branches.get(branch)?.sha;
        let tree = &repo.git.commit(head)?.tree;
        match repo.git.lookup(tree, path)? {
            (git::EntryMode::File(_), sha) => repo.git.blob(&sha).map(<[u8]>::to_vec),
            _ => None,
        }
    }

    /// The mode and blob sha of a file on a branch; None if the repository, branch or file does
    /// not exist.
    pub fn file_entry(
        &self,
        owner: &str,
        repo: &str,
        branch: &str,
        path: &str,
    ) -> Option<(FileMode, String)> {
        let st = self.lock();
        let (_, repo) = st.repo(owner, repo)?;
        let head = &repo.branches.get(branch)?.sha;
        let tree = &repo.git.commit(head)?.tree;
        match repo.git.lookup(tree, path)? {
            (git::EntryMode::File(mode), sha) => Some((mode, sha)),
            _ => None,
        }
    }

    /// The head commit sha of a branch; None if the repository or branch does not exist.
    pub fn branch_sha(&self, owner: &str, repo: &str, branch: &str) -> Option<String> {
        let st = self.lock();
        let (_, repo) = st.repo(owner, repo)?;
        repo.branches.get(branch).map(|b| b.sha.clone())
    }

    /// Sets the Actions workflow permissions of a repository, as in the repository's
    /// "Actions > General" settings page. GitHub sends no webhook for this setting.
    pub fn set_workflow_permissions(
        &self,
        owner: &str,
        repo: &str,
        permissions: WorkflowPermissions,
        can_approve_pull_request_reviews: bool,
    ) -> Result<(), SimError> {
        let actions = Actions {
            default_workflow_permissions: permissions,
            can_approve_pull_request_reviews,
        };
        self.lock().set_actions(owner, repo, actions)
    }

    /// The Actions workflow permissions of a repository (permissions, can approve pull request
    /// reviews); None if the repository does not exist.
    pub fn workflow_permissions(
        &self,
        owner: &str,
        repo: &str,
    ) -> Option<(WorkflowPermissions, bool)> {
        let st = self.lock();
        let (_, repo) = st.repo(owner, repo)?;
        Some((
            repo.actions.default_workflow_permissions,
            repo.actions.can_approve_pull_request_reviews,
        ))
    }

    /// Turns secret scanning of a repository on or off, as in the repository's "Code security"
    /// settings page. Turning it off also turns off push protection, which depends on it.
    /// Sends a `security_and_analysis` webhook if anything changed.
    pub fn set_secret_scanning(
        &self,
        owner: &str,
        repo: &str,
        enabled: bool,
    ) -> Result<(), SimError> {
        let patch = RepoPatch {
            secret_scanning: Some(enabled),
            secret_scanning_push_protection: (!enabled).then_some(false),
            ..RepoPatch::default()
        };
        let mut st = self.lock();
        let events = st.update_repo(owner, repo, patch, Actor::Admin)?;
        self.emit(&st, events);
        Ok(())
    }

    /// Turns webhook delivery on or off. Changes made while off are never delivered.
    pub fn set_webhooks_enabled(&self, enabled: bool) {
        self.lock().webhooks_enabled = enabled;
    }

    /// Changes (or clears) the webhook receiver URL.
    pub fn set_webhook_url(&self, url: Option<String>) {
        self.lock().webhook_url = url;
    }

    /// Sets the per-token hourly request budget (5000 by default), e.g. to exercise a client's
    /// handling of exhausted rate limits without making thousands of requests.
    pub fn set_rate_limit(&self, limit: u64) {
        self.lock().rate_limit = limit;
    }

    /// Number of REST API requests per "METHOD route-template" (admin requests excluded).
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.lock().counts.clone()
    }

    /// The most recent REST API requests, oldest first (bounded; see `state::LOG_CAPACITY`).
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.lock().log.iter().cloned().collect()
    }

    /// Forgets the request log and counters, e.g. between phases of a test.
    pub fn reset_request_log(&self) {
        self.lock().reset_requests();
    }

    /// Number of webhooks delivered successfully (2xx from the receiver).
    pub fn webhooks_sent(&self) -> u64 {
        self.shared.webhooks.sent()
    }

    /// Number of webhooks given up on after all retries failed.
    pub fn webhooks_failed(&self) -> u64 {
        self.shared.webhooks.failed()
    }

    /// Locks the state. A panic while holding the lock cannot leave the state half-updated in a
    /// way that matters for a simulator, so poisoning is ignored rather than propagated.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn tokens(&self) -> &[String] {
        &self.shared.tokens
    }

    /// Queues webhooks for delivery. Called with the state lock held so the queue order is the
    /// order in which the changes happened; queueing itself never blocks.
    pub(crate) fn emit(&self, st: &State, events: Vec<Event>) {
        if !st.webhooks_enabled || events.is_empty() {
            return;
        }
        let Some(url) = st.webhook_url.as_deref() else {
            return;
        };
        for event in events {
            self.shared.webhooks.enqueue(url, event);
        }
    }
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator").finish_non_exhaustive()
    }
}
