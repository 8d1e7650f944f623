//! GitHub App authentication: apps (id, slug, RSA public key), their installations on
//! organizations, the RS256 JWTs an app authenticates with, and the installation access tokens
//! it mints with them.
//!
//! A production deployment of Plumbline runs as a GitHub App: it signs a JWT with the app's
//! private key, exchanges it for an installation token (`POST
//! /app/installations/{installation_id}/access_tokens`) and uses that token, which expires after
//! an hour, for everything else. The simulator verifies all of it the way GitHub does (signature,
//! `iss`, `iat`/`exp` rules, GitHub's 401 messages), so a client's token refresh, expiry handling
//! and per-installation budgets are exercised for real. Installation tokens are accepted by every
//! REST route until they expire and only see their installation's repositories.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put, MethodRouter};
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::api::{self, ApiError};
use crate::quota::{app_label, token_label, ANONYMOUS_LABEL};
use crate::render;
use crate::state::{Actor, Org, Repo, State as SimState};
use crate::webhooks::Event;
use crate::{SimError, Simulator};

pub(crate) const ROUTE_APP: &str = "/app";
pub(crate) const ROUTE_APP_INSTALLATIONS: &str = "/app/installations";
pub(crate) const ROUTE_ACCESS_TOKENS: &str = "/app/installations/{installation_id}/access_tokens";

/// Routes that only accept a GitHub App JWT.
const JWT_ROUTES: [&str; 3] = [ROUTE_APP, ROUTE_APP_INSTALLATIONS, ROUTE_ACCESS_TOKENS];

const DOCS_GET_APP: &str = "https://docs.github.com/rest/apps/apps#get-the-authenticated-app";
const DOCS_CREATE_TOKEN: &str =
    "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app";
const DOCS_REST: &str = "https://docs.github.com/rest";

/// GitHub's lifetime of installation access tokens.
pub const DEFAULT_INSTALLATION_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// GitHub rejects app JWTs whose `exp` lies more than ten minutes ahead.
const MAX_JWT_LIFETIME_SECS: i64 = 600;

/// Most repositories one installation token can be limited to.
const MAX_TOKEN_REPOSITORIES: usize = 500;

// GitHub's messages for rejected app credentials.
const JWT_UNDECODABLE: &str = "A JSON web token could not be decoded";
const JWT_BAD_ISS: &str = "'Issuer' claim ('iss') must be an Integer";
const JWT_BAD_IAT: &str =
    "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued";
const JWT_BAD_EXP: &str = "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
const JWT_EXP_TOO_FAR: &str = "'Expiration time' claim ('exp') is too far in the future";
const NO_SUCH_APP: &str = "Integration not found";
const REPOSITORY_NOT_ACCESSIBLE: &str = "There is at least one repository that does not exist or is not accessible to the parent installation.";
const PERMISSIONS_NOT_GRANTED: &str =
    "The permissions requested are not granted to this installation.";

/// A GitHub App known to the simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    /// The app id (the JWT's `iss`).
    pub id: u64,
    /// The app's URL-friendly name.
    pub slug: String,
    /// PEM of the app's RSA public key ("BEGIN PUBLIC KEY" or "BEGIN RSA PUBLIC KEY"); JWTs must
    /// be signed (RS256) with the matching private key.
    pub public_key_pem: String,
    /// Permissions granted to the app (name to "read"/"write"); installation tokens get these
    /// unless they ask for less.
    pub permissions: BTreeMap<String, String>,
    /// Webhook events the app subscribes to (reported only).
    pub events: Vec<String>,
}

impl AppConfig {
    /// An app with the permissions Plumbline needs: administration, contents, pull requests,
    /// issues, actions and workflows (write), security events, artifact attestations and
    /// metadata (read).
    pub fn new(id: u64, slug: impl Into<String>, public_key_pem: impl Into<String>) -> AppConfig {
        let permissions = [
            ("actions", "write"),
            ("administration", "write"),
            ("attestations", "read"),
            ("contents", "write"),
            ("issues", "write"),
            ("metadata", "read"),
            ("pull_requests", "write"),
            ("repository_advisories", "write"),
            ("secret_scanning_alerts", "read"),
            ("security_events", "read"),
            ("workflows", "write"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        AppConfig {
            id,
            slug: slug.into(),
            public_key_pem: public_key_pem.into(),
            permissions,
            events: vec![
                "branch_protection_rule".to_owned(),
                "push".to_owned(),
                "repository".to_owned(),
                "security_and_analysis".to_owned(),
            ],
        }
    }
}

/// Which repositories of its account an installation can access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositorySelection {
    /// Every repository of the account, including ones created later.
    All,
    /// Only the named repositories (names, case-insensitive).
    Selected(Vec<String>),
}

impl RepositorySelection {
    fn as_str(&self) -> &'static str {
        match self {
            RepositorySelection::All => "all",
            RepositorySelection::Selected(_) => "selected",
        }
    }
}

/// An installation of an app on an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationConfig {
    /// The installation id (the path parameter of the access token route).
    pub id: u64,
    /// The installed app.
    pub app_id: u64,
    /// Login of the organization the app is installed on (created if missing).
    pub account: String,
    /// The repositories the installation can access.
    pub repository_selection: RepositorySelection,
}

/// A registered app.
struct App {
    config: AppConfig,
    /// None when the configured PEM did not parse; every JWT of the app then fails, as it would
    /// on GitHub with a key that does not match.
    key: Option<DecodingKey>,
    created_at: DateTime<Utc>,
}

/// An installation.
#[derive(Debug, Clone)]
struct Installation {
    id: u64,
    app_id: u64,
    /// Lower-cased login, the key into `State::orgs`.
    account_key: String,
    selection: RepositorySelection,
    created_at: DateTime<Utc>,
}

/// A minted installation access token.
#[derive(Debug, Clone)]
struct InstallationToken {
    installation_id: u64,
    expires_at: DateTime<Utc>,
    /// Repository ids the token is limited to; None = everything the installation can access.
    repository_ids: Option<BTreeSet<u64>>,
    /// The permissions the token was minted with (name to "read"/"write").
    permissions: BTreeMap<String, String>,
}

/// App state inside [`SimState`].
pub(crate) struct Apps {
    apps: BTreeMap<u64, App>,
    installations: BTreeMap<u64, Installation>,
    tokens: HashMap<String, InstallationToken>,
    token_ttl: Duration,
    minted: u64,
}

impl Default for Apps {
    fn default() -> Self {
        Apps {
            apps: BTreeMap::new(),
            installations: BTreeMap::new(),
            tokens: HashMap::new(),
            token_ttl: DEFAULT_INSTALLATION_TOKEN_TTL,
            minted: 0,
        }
    }
}

/// What a request authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credential {
    /// No credentials (allowed when the simulator accepts any token).
    Anonymous,
    /// A personal access token, or any opaque token in open mode.
    Token,
    /// An installation access token minted by the simulator.
    Installation {
        installation_id: u64,
        repository_ids: Option<BTreeSet<u64>>,
        /// The token's permissions (name to "read"/"write"), checked by the endpoints that
        /// need one (see [`Identity::permits`]).
        permissions: BTreeMap<String, String>,
    },
    /// A GitHub App JWT (only on the app routes).
    App { app_id: u64 },
}

/// The identity of a request, put into the request extensions by the GitHub middleware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// Label of the presented credentials (see [`token_label`]), also when they were rejected.
    pub label: String,
    /// What they authenticated as; `Anonymous` when rejected.
    pub credential: Credential,
}

impl Identity {
    /// The key of the rate-limit budget: the label, or "anonymous" when nothing authenticated
    /// (GitHub answers a 401 out of the unauthenticated budget).
    pub(crate) fn budget_key(&self) -> &str {
        match self.credential {
            Credential::Anonymous => ANONYMOUS_LABEL,
            _ => &self.label,
        }
    }

    /// Whether the credential may use an endpoint that needs permission `name` at `level`
    /// ("read" or "write"; write includes read). Only installation tokens carry permissions;
    /// other credentials stand for a user with full access, as everywhere in the simulator.
    pub(crate) fn permits(&self, name: &str, level: &str) -> bool {
        match &self.credential {
            Credential::Installation { permissions, .. } => permissions
                .get(name)
                .is_some_and(|granted| granted == level || granted == "write"),
            _ => true,
        }
    }

    /// The installation behind an installation token.
    pub(crate) fn installation_id(&self) -> Option<u64> {
        match self.credential {
            Credential::Installation {
                installation_id, ..
            } => Some(installation_id),
            _ => None,
        }
    }
}

/// Whether `token` looks like a JWT: three dot-separated segments, the first a JSON header.
fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && jsonwebtoken::decode_header(token).is_ok()
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, message, DOCS_REST)
}

/// A GitHub timestamp in the JWT claims: an integer (floats are rejected like GitHub does).
fn integer_claim(claims: &Value, name: &str) -> Option<i64> {
    claims.get(name).and_then(Value::as_i64)
}

impl SimState {
    /// Registers configured apps and installations (no webhooks: they exist from the start).
    pub(crate) fn configure_apps(
        &mut self,
        apps: &[AppConfig],
        installations: &[InstallationConfig],
        token_ttl: Duration,
    ) {
        self.apps.token_ttl = token_ttl;
        for app in apps {
            let key = DecodingKey::from_rsa_pem(app.public_key_pem.as_bytes())
                .map_err(|error| {
                    tracing::warn!(app_id = app.id, %error, "app public key does not parse, its jwts will be rejected");
                })
                .ok();
            self.insert_app(app.clone(), key);
        }
        for installation in installations {
            if let Err(error) = self.insert_installation(installation) {
                tracing::warn!(installation_id = installation.id, %error, "skipping installation");
            }
        }
    }

    fn insert_app(&mut self, config: AppConfig, key: Option<DecodingKey>) {
        self.apps.apps.insert(
            config.id,
            App {
                config,
                key,
                created_at: Utc::now(),
            },
        );
    }

    fn insert_installation(&mut self, config: &InstallationConfig) -> Result<(), SimError> {
        if !self.apps.apps.contains_key(&config.app_id) {
            return Err(SimError::NotFound(format!(
                "app {} not found",
                config.app_id
            )));
        }
        if self.apps.installations.contains_key(&config.id) {
            return Err(SimError::Invalid(format!(
                "installation {} already exists",
                config.id
            )));
        }
        let account_key = self.ensure_org(&config.account).login.to_lowercase();
        self.apps.installations.insert(
            config.id,
            Installation {
                id: config.id,
                app_id: config.app_id,
                account_key,
                selection: config.repository_selection.clone(),
                created_at: Utc::now(),
            },
        );
        Ok(())
    }

    /// Authenticates a request to `route` carrying `token`. `static_tokens` are the configured
    /// accepted tokens (empty = any token). Returns the identity and, when the credentials are
    /// rejected, GitHub's error answer.
    pub(crate) fn identify(
        &self,
        route: &str,
        token: Option<&str>,
        static_tokens: &[String],
        now: DateTime<Utc>,
    ) -> (Identity, Option<ApiError>) {
        let label = token_label(token);
        let rejected = |label: String, error: ApiError| {
            (
                Identity {
                    label,
                    credential: Credential::Anonymous,
                },
                Some(error),
            )
        };
        let accepted =
            |label: String, credential: Credential| (Identity { label, credential }, None);
        let Some(token) = token else {
            // Open mode answers the app routes without credentials too, but they need to know
            // which app is asking, so there they require a JWT like GitHub.
            if static_tokens.is_empty() && !JWT_ROUTES.contains(&route) {
                return accepted(label, Credential::Anonymous);
            }
            return rejected(label, unauthorized("Requires authentication"));
        };
        if JWT_ROUTES.contains(&route) {
            return match self.verify_jwt(token, now) {
                Ok(app_id) => accepted(app_label(app_id), Credential::App { app_id }),
                Err(error) => rejected(label, error),
            };
        }
        if let Some(minted) = self.apps.tokens.get(token) {
            if now >= minted.expires_at {
                return rejected(label, unauthorized("Bad credentials"));
            }
            return accepted(
                label,
                Credential::Installation {
                    installation_id: minted.installation_id,
                    repository_ids: minted.repository_ids.clone(),
                    permissions: minted.permissions.clone(),
                },
            );
        }
        if !static_tokens.is_empty() && !static_tokens.iter().any(|t| t == token) {
            return rejected(label, unauthorized("Bad credentials"));
        }
        accepted(label, Credential::Token)
    }

    /// Verifies an app JWT the way GitHub does and returns the app id: RS256 signature by the
    /// app's key, `iss` the app id (number or numeric string), `iat` not in the future, `exp` in
    /// the future and at most ten minutes after `iat` (and after now).
    fn verify_jwt(&self, token: &str, now: DateTime<Utc>) -> Result<u64, ApiError> {
        if !looks_like_jwt(token) {
            return Err(unauthorized(JWT_UNDECODABLE));
        }
        let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(token)
            .map_err(|_| unauthorized(JWT_UNDECODABLE))?
            .claims;
        let app_id = match claims.get("iss") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            _ => None,
        }
        .ok_or_else(|| unauthorized(JWT_BAD_ISS))?;
        let app = self
            .apps
            .apps
            .get(&app_id)
            .ok_or_else(|| ApiError::not_found(NO_SUCH_APP, DOCS_REST))?;
        let key = app
            .key
            .as_ref()
            .ok_or_else(|| unauthorized(JWT_UNDECODABLE))?;
        let mut validation = Validation::new(Algorithm::RS256);
        // The time claims are checked below with GitHub's own rules and messages.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::new();
        jsonwebtoken::decode::<Value>(token, key, &validation)
            .map_err(|_| unauthorized(JWT_UNDECODABLE))?;
        let now = now.timestamp();
        let iat = integer_claim(&claims, "iat")
            .filter(|iat| *iat <= now)
            .ok_or_else(|| unauthorized(JWT_BAD_IAT))?;
        let exp = integer_claim(&claims, "exp")
            .filter(|exp| *exp > now)
            .ok_or_else(|| unauthorized(JWT_BAD_EXP))?;
        if exp - iat > MAX_JWT_LIFETIME_SECS || exp - now > MAX_JWT_LIFETIME_SECS {
            return Err(unauthorized(JWT_EXP_TOO_FAR));
        }
        Ok(app_id)
    }

    /// Repositories an installation can access, in creation order.
    fn installation_repos(&self, installation: &Installation) -> Vec<&Repo> {
        self.repos
            .values()
            .filter(|repo| repo.owner_key == installation.account_key)
            .filter(|repo| match &installation.selection {
                RepositorySelection::All => true,
                RepositorySelection::Selected(names) => {
                    names.iter().any(|n| n.eq_ignore_ascii_case(&repo.name))
                }
            })
            .collect()
    }

    /// Whether a request with `identity` may see `repo`: always, except for installation tokens,
    /// which see their installation's repositories (narrowed to the token's own scope).
    pub(crate) fn can_see(&self, identity: &Identity, repo: &Repo) -> bool {
        let Credential::Installation {
            installation_id,
            repository_ids,
            ..
        } = &identity.credential
        else {
            return true;
        };
        let Some(installation) = self.apps.installations.get(installation_id) else {
            return false;
        };
        let in_installation = repo.owner_key == installation.account_key
            && match &installation.selection {
                RepositorySelection::All => true,
                RepositorySelection::Selected(names) => {
                    names.iter().any(|n| n.eq_ignore_ascii_case(&repo.name))
                }
            };
        in_installation
            && repository_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&repo.id))
    }

    /// Whether a request path under `/repos/{owner}/{repo}` names a repository the identity may
    /// not see; GitHub answers those 404 as if the repository did not exist.
    pub(crate) fn hides_repo_path(&self, identity: &Identity, path: &str) -> bool {
        if identity.installation_id().is_none() {
            return false;
        }
        let mut segments = path.trim_start_matches('/').split('/');
        let (Some("repos"), Some(owner), Some(name)) =
            (segments.next(), segments.next(), segments.next())
        else {
            return false;
        };
        match self.repo(owner, name) {
            Some((_, repo)) => !self.can_see(identity, repo),
            None => false,
        }
    }

    /// The repositories `GET /installation/repositories` lists for `identity` and the
    /// `repository_selection` it reports: an installation token's own repositories, everything
    /// for other credentials (the simulator then acts as one installation on every org).
    pub(crate) fn installation_listing<'a>(
        &'a self,
        identity: Option<&Identity>,
    ) -> (Vec<(&'a Org, &'a Repo)>, &'static str) {
        let with_org = |repo: &'a Repo| self.orgs.get(&repo.owner_key).map(|org| (org, repo));
        let Some(identity) = identity.filter(|i| i.installation_id().is_some()) else {
            return (self.repos.values().filter_map(with_org).collect(), "all");
        };
        let selection = match &identity.credential {
            Credential::Installation {
                repository_ids: Some(_),
                ..
            } => "selected",
            Credential::Installation {
                installation_id, ..
            } => self
                .apps
                .installations
                .get(installation_id)
                .map_or("selected", |i| i.selection.as_str()),
            _ => "all",
        };
        let repos = self
            .repos
            .values()
            .filter(|repo| self.can_see(identity, repo))
            .filter_map(with_org)
            .collect();
        (repos, selection)
    }

    /// Mints an installation token for `installation_id` on behalf of `app_id`.
    fn mint_token(
        &mut self,
        base: &str,
        app_id: u64,
        installation_id: u64,
        request: TokenRequest,
    ) -> Result<Value, ApiError> {
        let not_found = || ApiError::not_found("Not Found", DOCS_CREATE_TOKEN);
        let installation = self
            .apps
            .installations
            .get(&installation_id)
            .filter(|i| i.app_id == app_id)
            .ok_or_else(not_found)?;
        let app = self.apps.apps.get(&app_id).ok_or_else(not_found)?;
        let invalid = |message: &str| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message, DOCS_CREATE_TOKEN)
        };
        let accessible = self.installation_repos(installation);
        let scoped = request.repositories.is_some() || request.repository_ids.is_some();
        let mut ids = BTreeSet::new();
        for name in request.repositories.iter().flatten() {
            let repo = accessible
                .iter()
                .find(|r| r.name.eq_ignore_ascii_case(name))
                .ok_or_else(|| invalid(REPOSITORY_NOT_ACCESSIBLE))?;
            ids.insert(repo.id);
        }
        for id in request.repository_ids.iter().flatten() {
            if !accessible.iter().any(|r| r.id == *id) {
                return Err(invalid(REPOSITORY_NOT_ACCESSIBLE));
            }
            ids.insert(*id);
        }
        if ids.len() > MAX_TOKEN_REPOSITORIES {
            return Err(invalid(&format!(
                "Too many repositories specified; a token can be limited to at most {MAX_TOKEN_REPOSITORIES}."
            )));
        }
        let granted = &app.config.permissions;
        let permissions = match request.permissions {
            None => granted.clone(),
            Some(asked) => {
                let allowed = |name: &String, level: &String| {
                    granted
                        .get(name)
                        .is_some_and(|g| g == level || (g == "write" && level == "read"))
                };
                if !asked.iter().all(|(name, level)| allowed(name, level)) {
                    return Err(invalid(PERMISSIONS_NOT_GRANTED));
                }
                asked
            }
        };
        let repositories: Option<Vec<Value>> = scoped.then(|| {
            accessible
                .iter()
                .filter(|r| ids.contains(&r.id))
                .filter_map(|repo| {
                    let org = self.orgs.get(&repo.owner_key)?;
                    Some(render::repo_json(base, org, repo))
                })
                .collect()
        });
        let selection = if scoped {
            "selected"
        } else {
            installation.selection.as_str()
        };
        let ttl = chrono::Duration::from_std(self.apps.token_ttl)
            .unwrap_or_else(|_| chrono::Duration::hours(1));
        let expires_at = Utc::now() + ttl;
        let token = new_installation_token();
        self.apps.tokens.insert(
            token.clone(),
            InstallationToken {
                installation_id,
                expires_at,
                repository_ids: scoped.then_some(ids),
                permissions: permissions.clone(),
            },
        );
        self.apps.minted += 1;
        tracing::debug!(installation_id, app_id, "installation token minted");
        let mut body = json!({
            "token": token,
            "expires_at": render::time(&expires_at),
            "permissions": permissions,
            "repository_selection": selection,
        });
        if let Some(repositories) = repositories {
            body["repositories"] = Value::Array(repositories);
        }
        Ok(body)
    }

    /// The installation object; `webhook` renders GitHub's webhook variant (Unix timestamps,
    /// plain account), else the REST variant.
    fn installation_json(&self, base: &str, installation: &Installation, webhook: bool) -> Value {
        let Some(org) = self.orgs.get(&installation.account_key) else {
            return Value::Null;
        };
        let app = self.apps.apps.get(&installation.app_id);
        let mut account = render::owner_json(base, org);
        if let (false, Value::Object(fields)) = (webhook, &mut account) {
            // The description declares the account as simple user *and* enterprise (allOf), so
            // the enterprise's required fields are added; clients ignore them.
            fields.insert("name".into(), json!(org.login));
            fields.insert("slug".into(), json!(org.login.to_lowercase()));
            fields.insert("created_at".into(), Value::Null);
            fields.insert("updated_at".into(), Value::Null);
        }
        let time = |t: &DateTime<Utc>| {
            if webhook {
                json!(t.timestamp())
            } else {
                json!(render::time(t))
            }
        };
        let mut m = Map::new();
        m.insert("id".into(), json!(installation.id));
        m.insert("account".into(), account);
        m.insert(
            "repository_selection".into(),
            json!(installation.selection.as_str()),
        );
        m.insert(
            "access_tokens_url".into(),
            json!(format!(
                "{base}/app/installations/{}/access_tokens",
                installation.id
            )),
        );
        m.insert(
            "repositories_url".into(),
            json!(format!("{base}/installation/repositories")),
        );
        m.insert(
            "html_url".into(),
            json!(format!(
                "{base}/organizations/{}/settings/installations/{}",
                org.login, installation.id
            )),
        );
        m.insert("app_id".into(), json!(installation.app_id));
        if !webhook {
            m.insert(
                "app_slug".into(),
                json!(app.map(|a| a.config.slug.clone()).unwrap_or_default()),
            );
        }
        m.insert("target_id".into(), json!(org.id));
        m.insert("target_type".into(), json!("Organization"));
        m.insert(
            "permissions".into(),
            json!(app
                .map(|a| a.config.permissions.clone())
                .unwrap_or_default()),
        );
        m.insert(
            "events".into(),
            json!(app.map(|a| a.config.events.clone()).unwrap_or_default()),
        );
        m.insert("created_at".into(), time(&installation.created_at));
        m.insert("updated_at".into(), time(&installation.created_at));
        m.insert("single_file_name".into(), Value::Null);
        if !webhook {
            m.insert("has_multiple_single_files".into(), json!(false));
            m.insert("single_file_paths".into(), json!([]));
        }
        m.insert("suspended_at".into(), Value::Null);
        m.insert("suspended_by".into(), Value::Null);
        Value::Object(m)
    }

    /// The `installation` "created" webhook GitHub sends when an app is installed.
    fn installation_created_event(&self, installation_id: u64) -> Option<Event> {
        let installation = self.apps.installations.get(&installation_id)?;
        let base = self.base_url(None);
        let repositories: Vec<Value> = self
            .installation_repos(installation)
            .into_iter()
            .filter_map(|repo| {
                let org = self.orgs.get(&repo.owner_key)?;
                Some(json!({
                    "id": repo.id,
                    "node_id": render::node_id("Repository", repo.id),
                    "name": repo.name,
                    "full_name": format!("{}/{}", org.login, repo.name),
                    "private": repo.private,
                }))
            })
            .collect();
        Some(Event {
            name: "installation",
            payload: json!({
                "action": "created",
                "installation": self.installation_json(&base, installation, true),
                "repositories": repositories,
                "sender": render::sender_json(&base, Actor::Admin),
            }),
        })
    }
}

/// A fresh token in GitHub's installation token shape: `ghs_` and 36 alphanumerics.
fn new_installation_token() -> String {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut random = Vec::with_capacity(48);
    for _ in 0..3 {
        random.extend_from_slice(Uuid::new_v4().as_bytes());
    }
    let body: String = random
        .iter()
        .take(36)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    format!("ghs_{body}")
}

/// The body of the access token request.
#[derive(Debug, Default)]
struct TokenRequest {
    repositories: Option<Vec<String>>,
    repository_ids: Option<Vec<u64>>,
    permissions: Option<BTreeMap<String, String>>,
}

/// GitHub's 422 message for a field of the wrong type.
fn invalid_field(field: &str, value: &Value, expected: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("Invalid request.\n\nFor 'properties/{field}', {value} is not {expected}."),
        DOCS_CREATE_TOKEN,
    )
}

/// Parses the (optional) body of the access token request.
fn parse_token_request(body: &Bytes) -> Result<TokenRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(TokenRequest::default());
    }
    let value = api::parse_json(body, DOCS_CREATE_TOKEN)?;
    let Value::Object(fields) = &value else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Invalid request.\n\n{value} is not an object."),
            DOCS_CREATE_TOKEN,
        ));
    };
    let mut request = TokenRequest::default();
    if let Some(names) = fields.get("repositories") {
        let list = names
            .as_array()
            .ok_or_else(|| invalid_field("repositories", names, "an array"))?;
        let mut out = Vec::with_capacity(list.len());
        for name in list {
            let name = name
                .as_str()
                .ok_or_else(|| invalid_field("repositories/items", name, "a string"))?;
            out.push(name.to_owned());
        }
        request.repositories = Some(out);
    }
    if let Some(ids) = fields.get("repository_ids") {
        let list = ids
            .as_array()
            .ok_or_else(|| invalid_field("repository_ids", ids, "an array"))?;
        let mut out = Vec::with_capacity(list.len());
        for id in list {
            let id = id
                .as_u64()
                .ok_or_else(|| invalid_field("repository_ids/items", id, "an integer"))?;
            out.push(id);
        }
        request.repository_ids = Some(out);
    }
    if let Some(permissions) = fields.get("permissions") {
        let map = permissions
            .as_object()
            .ok_or_else(|| invalid_field("permissions", permissions, "an object"))?;
        let mut out = BTreeMap::new();
        for (name, level) in map {
            match level.as_str() {
                Some(l @ ("read" | "write")) => {
                    out.insert(name.clone(), l.to_owned());
                }
                _ => {
                    return Err(invalid_field(
                        &format!("permissions/{name}"),
                        level,
                        "one of [\"read\", \"write\"]",
                    ))
                }
            }
        }
        request.permissions = Some(out);
    }
    Ok(request)
}

/// The app of a JWT-authenticated request; the middleware guarantees one on the app routes.
fn app_of(identity: Option<Extension<Identity>>) -> Result<u64, ApiError> {
    match identity.map(|Extension(i)| i.credential) {
        Some(Credential::App { app_id }) => Ok(app_id),
        _ => Err(unauthorized(JWT_UNDECODABLE)),
    }
}

/// Registers the app routes on the REST router, each wrapped by `tag` in the GitHub middleware.
pub(crate) fn register(
    router: Router<Simulator>,
    tag: &dyn Fn(&'static str, MethodRouter<Simulator>) -> MethodRouter<Simulator>,
) -> Router<Simulator> {
    router
        .route(ROUTE_APP, tag(ROUTE_APP, get(get_app)))
        .route(
            ROUTE_APP_INSTALLATIONS,
            tag(ROUTE_APP_INSTALLATIONS, get(list_installations)),
        )
        .route(
            ROUTE_ACCESS_TOKENS,
            tag(ROUTE_ACCESS_TOKENS, post(create_access_token)),
        )
}

/// `GET /app`: the app the JWT belongs to.
async fn get_app(
    State(sim): State<Simulator>,
    identity: Option<Extension<Identity>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let app_id = app_of(identity)?;
    let st = sim.lock();
    let base = api::base_of(&st, &headers);
    let app = st
        .apps
        .apps
        .get(&app_id)
        .ok_or_else(|| ApiError::not_found(NO_SUCH_APP, DOCS_GET_APP))?;
    let config = &app.config;
    let owner = Org {
        id: 3,
        login: "sim-apps".to_owned(),
    };
    let installations = st
        .apps
        .installations
        .values()
        .filter(|i| i.app_id == app_id)
        .count();
    let body = json!({
        "id": config.id,
        "slug": config.slug,
        "node_id": render::node_id("Integration", config.id),
        "client_id": format!("Iv1.{:016x}", render::stable_id("app-client", &config.slug)),
        "owner": render::owner_json(&base, &owner),
        "name": config.slug,
        "description": "",
        "external_url": format!("{base}/apps/{}", config.slug),
        "html_url": format!("{base}/apps/{}", config.slug),
        "created_at": render::time(&app.created_at),
        "updated_at": render::time(&app.created_at),
        "permissions": config.permissions,
        "events": config.events,
        "installations_count": installations,
    });
    Ok(api::json_response(StatusCode::OK, &body))
}

/// `GET /app/installations`: the app's installations, paginated.
async fn list_installations(
    State(sim): State<Simulator>,
    identity: Option<Extension<Identity>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let app_id = app_of(identity)?;
    let st = sim.lock();
    let base = api::base_of(&st, &headers);
    let all: Vec<Value> = st
        .apps
        .installations
        .values()
        .filter(|i| i.app_id == app_id)
        .map(|i| st.installation_json(&base, i, false))
        .collect();
    let params = api::PageParams::from_query(&query);
    let url = format!("{base}{ROUTE_APP_INSTALLATIONS}");
    let (page, link) = api::paginate(&all, params, &url, &query);
    Ok(api::with_link(
        api::json_response(StatusCode::OK, &Value::Array(page)),
        link,
    ))
}

/// `POST /app/installations/{installation_id}/access_tokens`: mints an installation token.
async fn create_access_token(
    State(sim): State<Simulator>,
    Path(installation_id): Path<String>,
    identity: Option<Extension<Identity>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let app_id = app_of(identity)?;
    let installation_id = installation_id
        .parse::<u64>()
        .map_err(|_| ApiError::not_found("Not Found", DOCS_CREATE_TOKEN))?;
    let mut st = sim.lock();
    let base = api::base_of(&st, &headers);
    // Like GitHub, an unknown installation wins over a bad body.
    if st
        .apps
        .installations
        .get(&installation_id)
        .is_none_or(|i| i.app_id != app_id)
    {
        return Err(ApiError::not_found("Not Found", DOCS_CREATE_TOKEN));
    }
    let request = parse_token_request(&body)?;
    let body = st.mint_token(&base, app_id, installation_id, request)?;
    Ok(api::json_response(StatusCode::CREATED, &body))
}

impl Simulator {
    /// Registers a GitHub App (as if created in the GitHub UI; GitHub sends no webhook for it).
    /// A PEM that does not parse as an RSA public key is `SimError::Invalid`.
    pub fn add_app(&self, app: AppConfig) -> Result<(), SimError> {
        let key = DecodingKey::from_rsa_pem(app.public_key_pem.as_bytes())
            .map_err(|e| SimError::Invalid(format!("public key does not parse: {e}")))?;
        self.lock().insert_app(app, Some(key));
        Ok(())
    }

    /// Installs an app on an organization (created if missing) and sends the `installation`
    /// "created" webhook. The app must exist and the id must be new.
    pub fn add_installation(&self, installation: InstallationConfig) -> Result<(), SimError> {
        let mut st = self.lock();
        st.insert_installation(&installation)?;
        let events = st
            .installation_created_event(installation.id)
            .into_iter()
            .collect();
        self.emit(&st, events);
        Ok(())
    }

    /// Sets the lifetime of installation tokens minted from now on (GitHub: one hour), so a test
    /// can watch tokens expire.
    pub fn set_installation_token_ttl(&self, ttl: Duration) {
        self.lock().apps.token_ttl = ttl;
    }

    /// Number of installation access tokens minted so far.
    pub fn installation_tokens_minted(&self) -> u64 {
        self.lock().apps.minted
    }
}

// ---------------------------------------------------------------------------------------------
// Admin API
// ---------------------------------------------------------------------------------------------

/// Admin routes of this module, merged under `/_admin`.
pub(crate) fn admin_routes() -> Router<Simulator> {
    Router::new()
        .route("/apps", post(admin_add_app).get(admin_get_apps))
        .route("/apps/token_ttl", put(admin_token_ttl))
        .route("/installations", post(admin_add_installation))
}

#[derive(Deserialize)]
struct AddApp {
    id: u64,
    slug: String,
    public_key_pem: String,
    #[serde(default)]
    permissions: Option<BTreeMap<String, String>>,
    #[serde(default)]
    events: Option<Vec<String>>,
}

/// `POST /_admin/apps` with `{"id", "slug", "public_key_pem", "permissions"?, "events"?}`: 201.
async fn admin_add_app(State(sim): State<Simulator>, body: Bytes) -> Response {
    let request: AddApp = match crate::admin::parse(&body) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    let mut app = AppConfig::new(request.id, request.slug, request.public_key_pem);
    if let Some(permissions) = request.permissions {
        app.permissions = permissions;
    }
    if let Some(events) = request.events {
        app.events = events;
    }
    match sim.add_app(app) {
        Ok(()) => StatusCode::CREATED.into_response(),
        Err(e) => crate::admin::sim_error(e),
    }
}

#[derive(Deserialize)]
struct AddInstallation {
    id: u64,
    app_id: u64,
    account: String,
    #[serde(default)]
    repository_selection: Option<String>,
    #[serde(default)]
    repositories: Vec<String>,
}

/// `POST /_admin/installations` with `{"id", "app_id", "account", "repository_selection":
/// "all"|"selected", "repositories": [names]}`: 201, sends the `installation` webhook.
async fn admin_add_installation(State(sim): State<Simulator>, body: Bytes) -> Response {
    let request: AddInstallation = match crate::admin::parse(&body) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    let selection = match (
        request.repository_selection.as_deref(),
        request.repositories.is_empty(),
    ) {
        (None | Some("all"), true) => RepositorySelection::All,
        (None | Some("selected"), _) => RepositorySelection::Selected(request.repositories),
        (Some("all"), false) => {
            return crate::admin::error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "repositories only go with repository_selection \"selected\"",
            )
        }
        (Some(other), _) => {
            return crate::admin::error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("repository_selection must be \"all\" or \"selected\", not {other:?}"),
            )
        }
    };
    if request.account.is_empty() || request.account.contains('/') {
        return crate::admin::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "account must be a non-empty login",
        );
    }
    let installation = InstallationConfig {
        id: request.id,
        app_id: request.app_id,
        account: request.account,
        repository_selection: selection,
    };
    match sim.add_installation(installation) {
        Ok(()) => StatusCode::CREATED.into_response(),
        Err(e) => crate::admin::sim_error(e),
    }
}

/// `GET /_admin/apps`: apps, installations, minted token count and token lifetime.
async fn admin_get_apps(State(sim): State<Simulator>) -> Response {
    let st = sim.lock();
    let apps: Vec<Value> = st
        .apps
        .apps
        .values()
        .map(|a| json!({ "id": a.config.id, "slug": a.config.slug }))
        .collect();
    let installations: Vec<Value> = st
        .apps
        .installations
        .values()
        .map(|i| {
            let repositories = match &i.selection {
                RepositorySelection::All => Value::Null,
                RepositorySelection::Selected(names) => json!(names),
            };
            json!({
                "id": i.id,
                "app_id": i.app_id,
                "account": st.orgs.get(&i.account_key).map(|o| o.login.clone()),
                "repository_selection": i.selection.as_str(),
                "repositories": repositories,
            })
        })
        .collect();
    api::json_response(
        StatusCode::OK,
        &json!({
            "apps": apps,
            "installations": installations,
            "tokens_minted": st.apps.minted,
            "token_ttl_seconds": st.apps.token_ttl.as_secs_f64(),
        }),
    )
}

/// `PUT /_admin/apps/token_ttl` with `{"seconds": n}` (fractions allowed): 204.
async fn admin_token_ttl(State(sim): State<Simulator>, body: Bytes) -> Response {
    #[derive(Deserialize)]
    struct Ttl {
        seconds: f64,
    }
    let request: Ttl = match crate::admin::parse(&body) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    match Duration::try_from_secs_f64(request.seconds) {
        Ok(ttl) => {
            sim.set_installation_token_ttl(ttl);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(_) => crate::admin::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "seconds must be a non-negative number",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installation_tokens_have_githubs_shape() {
        let token = new_installation_token();
        assert!(token.starts_with("ghs_"));
        assert_eq!(token.len(), 40);
        assert!(token[4..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(token, new_installation_token());
    }

    #[test]
    fn jwt_shape_is_recognised() {
        assert!(!looks_like_jwt("ghp_abc"));
        assert!(!looks_like_jwt("a.b.c"));
        // {"alg":"RS256","typ":"JWT"} . {} . signature
        assert!(looks_like_jwt(
            "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.e30.c2ln"
        ));
    }

    #[test]
    fn token_request_bodies_are_type_checked() {
        let parse = |s: &'static str| parse_token_request(&Bytes::from_static(s.as_bytes()));
        assert!(parse("").unwrap().repositories.is_none());
        let request = parse(
            r#"{"repositories":["api"],"repository_ids":[7],"permissions":{"contents":"read"}}"#,
        )
        .unwrap();
        assert_eq!(request.repositories.unwrap(), ["api"]);
        assert_eq!(request.repository_ids.unwrap(), [7]);
        assert_eq!(request.permissions.unwrap()["contents"], "read");
        assert!(parse(r#"{"repositories":"api"}"#).is_err());
        assert!(parse(r#"{"repository_ids":["x"]}"#).is_err());
        assert!(parse(r#"{"permissions":{"contents":"admin"}}"#).is_err());
        assert!(parse("{nope").is_err());
    }
}
