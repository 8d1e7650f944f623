//! Control plane: the gRPC API behind the `plumb` CLI.
//!
//! Every change that can alter a verdict emits the entity events that re-evaluate what it
//! touches (registering a repository, changing a profile or a rule type a profile uses), so the
//! control plane never evaluates anything itself: it feeds the same loop as webhooks and sweeps.

mod access;
mod auth;
mod error;
pub mod oidc;
pub mod tls;

pub use access::{Caller, Need, Rpc, TOKEN_PREFIX};
pub use auth::{AuthConfigError, Authenticator};
pub use error::ControlError;

use plumbline_bus::{Producer, ProducerConfig, Topics, TraceContext};
use plumbline_domain::{Entity, EntityKind, EntityRef, EvalStatus, EventReason};
use plumbline_engine::datasource::DataSources;
use plumbline_engine::{digest, CompiledProfile, CompiledRule, Profile, RuleType};
use plumbline_proto::v1::control_service_server::{ControlService, ControlServiceServer};
use plumbline_proto::v1::*;
use plumbline_proto::Message as _;
use plumbline_runtime::credentials::Credentials;
use plumbline_runtime::ServiceArgs;
use plumbline_store::Store;
use plumbline_telemetry::{Health, Metrics};
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// Control-plane configuration (flags or environment).
///
/// The API fails closed: on any address other than loopback it refuses to start unless callers
/// must authenticate (`--auth-token` or `--auth-token-file`) and the connection is encrypted
/// (`--tls-cert-file` and `--tls-key-file`, or `--insecure-plaintext` where a service mesh
/// terminates TLS in front of it). On loopback (`plumb dev`) it may run open, and says so.
#[derive(clap::Args, Debug, Clone)]
pub struct ControlConfig {
    #[command(flatten)]
    pub service: ServiceArgs,

    /// gRPC listen address.
    #[arg(
        long = "listen",
        env = "PLUMB_CONTROL_LISTEN",
        default_value = "0.0.0.0:50051"
    )]
    pub listen: SocketAddr,

    /// Bearer tokens accepted by the API (comma-separated; at least 16 characters each). Kept
    /// only as SHA-256 digests. Prefer --auth-token-file, which can be rotated without a restart.
    #[arg(long = "auth-token", env = "PLUMB_CONTROL_TOKENS", value_delimiter = ',', hide_env_values = true, value_parser = parse_secret)]
    pub auth_tokens: Vec<SecretString>,

    /// File of bearer tokens, one per line (`#` comments allowed), re-read when it changes.
    #[arg(long = "auth-token-file", env = "PLUMB_CONTROL_TOKENS_FILE")]
    pub auth_token_file: Option<PathBuf>,

    /// PEM certificate chain for TLS (re-read when it changes). With --tls-key-file.
    #[arg(
        long = "tls-cert-file",
        env = "PLUMB_CONTROL_TLS_CERT_FILE",
        requires = "tls_key_file"
    )]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key for TLS (re-read when it changes). With --tls-cert-file.
    #[arg(
        long = "tls-key-file",
        env = "PLUMB_CONTROL_TLS_KEY_FILE",
        requires = "tls_cert_file"
    )]
    pub tls_key_file: Option<PathBuf>,

    /// Serve cleartext gRPC on a non-loopback address. Only for a service mesh or proxy that
    /// terminates TLS in front of the pod; bearer tokens otherwise cross the network readable.
    #[arg(long = "insecure-plaintext", env = "PLUMB_CONTROL_INSECURE_PLAINTEXT")]
    pub insecure_plaintext: bool,

    /// OIDC issuer whose ID tokens are accepted as bearer tokens (identity `user:<sub>`); its
    /// `iss` claim must equal this exactly. https (plain http only on loopback).
    #[arg(long, env = "PLUMB_OIDC_ISSUER", requires = "oidc_audience")]
    pub oidc_issuer: Option<String>,

    /// The audience (`aud`) OIDC tokens must be issued for: Plumbline's client id at the issuer.
    #[arg(long, env = "PLUMB_OIDC_AUDIENCE", requires = "oidc_issuer")]
    pub oidc_audience: Option<String>,

    /// The issuer's key set (JWKS) URL; by default the `jwks_uri` of its discovery document.
    #[arg(long, env = "PLUMB_OIDC_JWKS_URL", requires = "oidc_issuer")]
    pub oidc_jwks_url: Option<String>,

    /// Shortest time between key-set fetches caused by a token naming a key not held (seconds):
    /// made-up key ids must not make this service hammer the issuer.
    #[arg(long, env = "PLUMB_OIDC_JWKS_MIN_REFRESH_SECS", default_value_t = 30)]
    pub oidc_jwks_min_refresh_secs: u64,
}

fn parse_secret(s: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(s))
}

impl ControlConfig {
    /// Loopback, open, cleartext: what `plumb dev` and tests run.
    pub fn local(service: ServiceArgs) -> Self {
        ControlConfig {
            service,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            auth_tokens: Vec::new(),
            auth_token_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            insecure_plaintext: false,
            oidc_issuer: None,
            oidc_audience: None,
            oidc_jwks_url: None,
            oidc_jwks_min_refresh_secs: 30,
        }
    }

    /// The OIDC verifier, when an issuer is configured (its URLs checked).
    fn oidc(&self) -> Result<Option<oidc::OidcVerifier>, oidc::OidcError> {
        let (Some(issuer), Some(audience)) = (&self.oidc_issuer, &self.oidc_audience) else {
            return Ok(None);
        };
        oidc::check_url(issuer)?;
        if let Some(jwks) = &self.oidc_jwks_url {
            oidc::check_url(jwks)?;
        }
        oidc::OidcVerifier::new(oidc::OidcSettings {
            issuer: issuer.clone(),
            audience: audience.clone(),
            jwks_url: self.oidc_jwks_url.clone(),
            min_refresh: Duration::from_secs(self.oidc_jwks_min_refresh_secs),
        })
        .map(Some)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("kafka settings: {0}")]
    KafkaSettings(#[from] plumbline_runtime::KafkaSettingsError),
    #[error("kafka: {0}")]
    Bus(#[from] plumbline_bus::BusError),
    #[error("postgres: {0}")]
    Store(#[from] plumbline_store::StoreError),
    #[error("github: {0}")]
    GitHub(#[from] plumbline_github::GitHubError),
    #[error("listen: {0}")]
    Listen(std::io::Error),
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    #[error(transparent)]
    Tls(#[from] tls::TlsConfigError),
    #[error("oidc: {0}")]
    Oidc(#[from] oidc::OidcError),
    #[error(transparent)]
    Credentials(#[from] plumbline_runtime::credentials::SetupError),
    #[error("refusing to serve the control API on {0} without authentication: give --auth-token-file (or --auth-token), or listen on a loopback address")]
    OpenOnNetwork(SocketAddr),
    #[error("refusing to serve the control API on {0} in cleartext: give --tls-cert-file and --tls-key-file, or --insecure-plaintext when a proxy terminates TLS")]
    CleartextOnNetwork(SocketAddr),
}

/// Checks the listener's safety before anything is bound. The API is open (everyone the
/// operator) only on loopback with neither operator tokens nor an OIDC issuer.
fn authenticator_for(
    config: &ControlConfig,
    oidc: Option<&oidc::OidcVerifier>,
) -> Result<Option<Authenticator>, StartError> {
    let auth = Authenticator::new(&config.auth_tokens, config.auth_token_file.as_deref())?;
    let loopback = config.listen.ip().is_loopback();
    if !loopback && auth.is_none() && oidc.is_none() {
        return Err(StartError::OpenOnNetwork(config.listen));
    }
    if !loopback && config.tls_cert_file.is_none() && !config.insecure_plaintext {
        return Err(StartError::CleartextOnNetwork(config.listen));
    }
    if auth.is_none() && oidc.is_none() {
        tracing::warn!(addr = %config.listen, "control API is unauthenticated: anyone on this machine can change the posture (loopback only)");
    }
    Ok(auth)
}

pub struct Running {
    pub addr: SocketAddr,
    pub health_addr: SocketAddr,
    pub task: JoinHandle<()>,
}

pub struct Control {
    store: Store,
    /// The operator's tokens.
    auth: Option<Authenticator>,
    /// OIDC users' tokens.
    oidc: Option<oidc::OidcVerifier>,
    /// Seals the tokens given to the API.
    sealer: Option<plumbline_runtime::sealed::Sealer>,
    /// The credential a registration reads the repository with: the project's provider.
    credentials: Credentials,
    producer: Producer,
    topics: Topics,
    provider: String,
}

pub async fn start(
    config: ControlConfig,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let oidc = config.oidc()?;
    let auth = authenticator_for(&config, oidc.as_ref())?;
    let authenticated = auth.is_some() || oidc.is_some();
    let acceptor = match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    let s = &config.service;
    let store = Store::connect_with_timeout(
        secrecy::ExposeSecret::expose_secret(&s.database_url),
        s.database_max_connections,
        Duration::from_millis(s.database_statement_timeout_ms),
    )?;
    s.wait_for_schema(&store).await?;
    let metrics = Metrics::new();
    let credentials = s.credentials(store.clone(), &metrics)?;
    let sealer = credentials.sealer().cloned();
    let control = Control {
        store: store.clone(),
        auth,
        oidc,
        credentials,
        sealer,
        producer: Producer::new(
            &ProducerConfig::new(&s.kafka_brokers, "plumbline-control")
                .with_client_options(s.kafka.client_options()?),
        )?,
        topics: Topics::with_prefix(&s.topic_prefix),
        provider: s.provider.clone(),
    };
    let health = Health::new("control");
    let health_addr =
        plumbline_telemetry::serve(s.health_listen, health.clone(), metrics, shutdown.clone())
            .await
            .map_err(StartError::Listen)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(StartError::Listen)?;
    let addr = listener.local_addr().map_err(StartError::Listen)?;
    // Authentication and authorization happen in each handler (`Control::authorize`): the
    // project a call is about is in its message, which an interceptor does not see.
    let svc = ControlServiceServer::new(control);
    tracing::info!(%addr, tls = acceptor.is_some(), "control api listening");
    let task = tokio::spawn(async move {
        let readiness = plumbline_telemetry::readiness_loop(
            health,
            Duration::from_secs(5),
            shutdown.clone(),
            move || {
                let store = store.clone();
                async move { store.ping().await.is_ok() }
            },
        );
        // The same service over grpc-web too (HTTP/1.1 or 2, `application/grpc-web[-text]`),
        // for scripts and dashboards without a gRPC client; authenticated and authorized the
        // same way, since the translation sits in front of the same handlers. No CORS layer:
        // browsers on other origins are refused until an operator puts one in front. Not on an
        // open API (`plumb dev`): a web page that rebinds a name to 127.0.0.1 would be
        // same-origin there and act as the operator; plain gRPC needs HTTP/2, which browsers
        // cannot send in cleartext.
        let server = tonic::transport::Server::builder()
            .accept_http1(authenticated)
            .layer(tower::util::option_layer(
                authenticated.then(tonic_web::GrpcWebLayer::new),
            ))
            .add_service(svc);
        let stop = shutdown.clone();
        let r = match acceptor {
            Some(acceptor) => {
                server
                    .serve_with_incoming_shutdown(
                        tls::incoming(listener, acceptor, shutdown.clone()),
                        async move { stop.cancelled().await },
                    )
                    .await
            }
            None => {
                let incoming = tonic::transport::server::TcpIncoming::from(listener);
                server
                    .serve_with_incoming_shutdown(incoming, async move { stop.cancelled().await })
                    .await
            }
        };
        if let Err(e) = r {
            tracing::error!(error = %e, "control api failed");
        }
        readiness.abort();
    });
    Ok(Running {
        addr,
        health_addr,
        task,
    })
}

pub async fn run(config: ControlConfig, shutdown: CancellationToken) -> Result<(), StartError> {
    let r = start(config, shutdown).await?;
    let _ = r.task.await;
    Ok(())
}

fn project_or_default(p: &str) -> &str {
    if p.is_empty() {
        plumbline_domain::DEFAULT_PROJECT
    } else {
        p
    }
}

impl Control {
    /// Queues a re-evaluation for each given entity. Returns how many were queued.
    /// Many records are in flight at once, so a fleet-wide fan-out takes seconds, not minutes.
    /// The provider a registration in `project` uses: the one named, else the project's only
    /// one, else none (the services' own credential, which only the operator's project may
    /// use; [`Credentials::client`] refuses it elsewhere).
    /// `RegisterOwner`'s listing: every page read and registered, what an event needs of each
    /// registered repository kept in `registered`.
    async fn register_pages(
        &self,
        req: &RegisterOwnerRequest,
        project: &str,
        provider: Option<String>,
        github: &plumbline_github::GitHub,
        answer: &mut RegisterOwnerResponse,
        registered: &mut Vec<Entity>,
    ) -> Result<(), ControlError> {
        let mut next = Some(format!("/orgs/{}/repos?per_page=100", req.owner));
        while let Some(path) = next.take() {
            if answer.requests >= MAX_OWNER_PAGES {
                return Err(ControlError::Precondition(format!(
                    "{} has more than {} repositories: stopped after registering {} (they are evaluated)",
                    req.owner,
                    MAX_OWNER_PAGES * 100,
                    answer.registered
                )));
            }
            let (page, after) = github.page::<plumbline_github::Repository>(&path).await?;
            answer.requests += 1;
            next = after;
            for repo in page {
                // Names GitHub lists go into request paths later: held to the same rules.
                if plumbline_domain::check_repository_full_name(&repo.owner.login, &repo.name)
                    .is_err()
                {
                    tracing::warn!(owner = %repo.owner.login, name = %repo.name, "listed repository with a name GitHub does not allow: skipped");
                    continue;
                }
                let entity = repository_entity(
                    &self.provider,
                    project,
                    &repo,
                    req.labels.clone(),
                    provider.clone(),
                );
                // No labels given: a repository already registered keeps its own.
                let upserted = if req.labels.is_empty() {
                    self.store.upsert_entity_keeping_labels(&entity).await
                } else {
                    self.store.upsert_entity(&entity).await
                };
                match upserted {
                    Ok(created) => {
                        answer.registered += 1;
                        answer.created += u32::from(created);
                        registered.push(Entity {
                            properties: serde_json::Value::Null,
                            labels: vec![],
                            ..entity
                        });
                    }
                    // Another project's: left exactly as it is, and not named.
                    Err(plumbline_store::StoreError::Conflict(_)) => answer.other_project += 1,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    async fn registration_provider(
        &self,
        project: &str,
        named: &str,
    ) -> Result<Option<String>, ControlError> {
        if !named.is_empty() {
            if self
                .store
                .provider_credential(project, named)
                .await?
                .is_none()
            {
                return Err(ControlError::NotFound(format!(
                    "provider {named} does not exist in project {project}"
                )));
            }
            return Ok(Some(named.to_string()));
        }
        let mut names = self.store.provider_names(project, 2).await?;
        match names.len() {
            0 | 1 => Ok(names.pop()),
            _ => Err(ControlError::InvalidArgument(format!(
                "project {project} has several providers: name the one to register the repository with (--provider)"
            ))),
        }
    }

    #[tracing::instrument(
        name = "control.emit",
        skip_all,
        fields(otel.kind = "producer", reason = ?reason, entities = entities.len())
    )]
    async fn emit(&self, entities: &[Entity], reason: EventReason) -> Result<u32, ControlError> {
        use futures::StreamExt as _;
        let trace = TraceContext::current();
        let records: Vec<(String, EntityEvent)> = entities
            .iter()
            .map(|e| {
                let mut ev = EntityEvent::new(&e.entity_ref, reason);
                ev.owner = e.owner.clone();
                ev.name = e.name.clone();
                (e.id(), ev)
            })
            .collect();
        let sends = records.into_iter().map(|(key, ev)| {
            let (producer, topic, trace) = (
                self.producer.clone(),
                self.topics.entity_events.clone(),
                trace.clone(),
            );
            async move {
                producer
                    .publish(
                        &topic,
                        &key,
                        &ev.encode_to_vec(),
                        "dev.plumbline.entity_event.v1",
                        &ev.event_id,
                        &trace,
                        &BTreeMap::new(),
                    )
                    .await
            }
        });
        let results: Vec<_> = futures::stream::iter(sends)
            .buffer_unordered(256)
            .collect()
            .await;
        let mut n = 0;
        for r in results {
            r?;
            n += 1;
        }
        Ok(n)
    }

    async fn data_sources(&self, project: &str) -> Result<DataSources, ControlError> {
        let mut ds = DataSources::new();
        for doc in self.store.list_data_sources(project).await? {
            ds.add_yaml(&doc.source_yaml)?;
        }
        Ok(ds)
    }

    /// Every active entity of `project` of the given kinds.
    async fn entities_of(
        &self,
        project: &str,
        kinds: &[EntityKind],
    ) -> Result<Vec<Entity>, ControlError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .list_entities(project, after.as_deref(), 1000)
                .await?;
            let full = page.len() == 1000;
            after = page.last().map(|e| e.id());
            out.extend(
                page.into_iter()
                    .filter(|e| kinds.contains(&e.entity_ref.kind)),
            );
            if !full {
                return Ok(out);
            }
        }
    }

    /// What in `project` uses the document `name` of `kind`, if anything: a profile naming a
    /// rule type, a rule type calling a data source. Documents that no longer parse are
    /// skipped (they use nothing the evaluators could run).
    async fn user_of(
        &self,
        kind: plumbline_store::DocumentKind,
        project: &str,
        name: &str,
    ) -> Result<Option<String>, ControlError> {
        use plumbline_store::DocumentKind as K;
        match kind {
            K::RuleType => {
                for doc in self.store.list_profiles(project).await? {
                    if let Ok(p) = Profile::from_yaml(&doc.source_yaml) {
                        if p.rule_type_names().contains(&name) {
                            return Ok(Some(format!("profile {}", doc.name)));
                        }
                    }
                }
                Ok(None)
            }
            K::DataSource => {
                for doc in self.store.list_rule_types(project).await? {
                    if let Ok(rt) = RuleType::from_yaml(&doc.source_yaml) {
                        if rt.data_source_names().iter().any(|d| d == name) {
                            return Ok(Some(format!("rule type {}", doc.name)));
                        }
                    }
                }
                Ok(None)
            }
            K::Profile => Ok(None),
        }
    }

    fn profile_kinds(p: &Profile) -> Vec<EntityKind> {
        [
            EntityKind::Repository,
            EntityKind::PullRequest,
            EntityKind::Artifact,
            EntityKind::Release,
        ]
        .into_iter()
        .filter(|k| !p.rules_for(*k).is_empty())
        .collect()
    }
}

#[tonic::async_trait]
impl ControlService for Control {
    async fn apply_rule_type(
        &self,
        req: Request<ApplyRuleTypeRequest>,
    ) -> Result<Response<ApplyRuleTypeResponse>, Status> {
        self.authorize(&req, Rpc::ApplyRuleType, &req.get_ref().project)
            .await?;
        let req = req.into_inner();
        let project = project_or_default(&req.project);
        let rt = RuleType::from_yaml(&req.yaml).map_err(ControlError::Invalid)?;
        let name = rt.name.clone();
        // Reject what would not run: template and Rego syntax, and data sources the rule calls,
        // are checked here, not at 3 a.m.
        let sources = self.data_sources(project).await?;
        for ds in rt.data_source_names() {
            if sources.get(&ds).is_none() {
                return Err(ControlError::Precondition(format!("rule type {name} uses data source {ds}, which does not exist in project {project}: apply it first")).into());
            }
        }
        CompiledRule::compile_with(rt, &sources).map_err(ControlError::Invalid)?;
        let (version, changed) = self
            .store
            .upsert_rule_type(project, &name, &digest(req.yaml.as_bytes()), &req.yaml)
            .await
            .map_err(ControlError::from)?;
        // Re-evaluate entities of every profile that uses this rule type. Also when unchanged:
        // an apply retried after a failed fan-out must not silently skip it (level-triggered,
        // so extra evaluations are harmless).
        {
            let mut kinds = Vec::new();
            for doc in self
                .store
                .list_profiles(project)
                .await
                .map_err(ControlError::from)?
            {
                if let Ok(p) = Profile::from_yaml(&doc.source_yaml) {
                    if p.rule_type_names().contains(&name.as_str()) {
                        kinds.extend(Control::profile_kinds(&p));
                    }
                }
            }
            kinds.sort_by_key(|k| k.as_str());
            kinds.dedup();
            if !kinds.is_empty() {
                let entities = self.entities_of(project, &kinds).await?;
                self.emit(&entities, EventReason::ProfileChanged).await?;
            }
        }
        tracing::info!(project, rule_type = %name, version, changed, "rule type applied");
        Ok(Response::new(ApplyRuleTypeResponse {
            name,
            version,
            changed,
        }))
    }

    async fn apply_data_source(
        &self,
        req: Request<ApplyDataSourceRequest>,
    ) -> Result<Response<ApplyDataSourceResponse>, Status> {
        self.authorize(&req, Rpc::ApplyDataSource, &req.get_ref().project)
            .await?;
        let req = req.into_inner();
        let project = project_or_default(&req.project);
        let name = DataSources::new()
            .add_yaml(&req.yaml)
            .map_err(ControlError::Invalid)?;
        let (version, changed) = self
            .store
            .upsert_data_source(project, &name, &digest(req.yaml.as_bytes()), &req.yaml)
            .await
            .map_err(ControlError::from)?;
        tracing::info!(project, data_source = %name, version, changed, "data source applied");
        Ok(Response::new(ApplyDataSourceResponse {
            name,
            version,
            changed,
        }))
    }

    async fn apply_profile(
        &self,
        req: Request<ApplyProfileRequest>,
    ) -> Result<Response<ApplyProfileResponse>, Status> {
        self.authorize(&req, Rpc::ApplyProfile, &req.get_ref().project)
            .await?;
        let req = req.into_inner();
        let project = project_or_default(&req.project);
        let profile = Profile::from_yaml(&req.yaml).map_err(ControlError::Invalid)?;
        // Selectors compile here as every evaluator will compile them: a bad one is refused
        // with its line and column instead of every evaluator skipping the whole profile.
        CompiledProfile::compile(profile.clone()).map_err(ControlError::Invalid)?;
        // Every rule must name an existing rule type and match its schemas, so a typo is
        // refused here with the field named, not discovered as error verdicts fleet-wide.
        let mut compiled = std::collections::HashMap::new();
        let sources = self.data_sources(project).await?;
        for rt in profile.rule_type_names() {
            let Some(doc) = self
                .store
                .get_rule_type(project, rt)
                .await
                .map_err(ControlError::from)?
            else {
                return Err(ControlError::Precondition(format!(
                    "rule type {rt} does not exist in project {project}: apply it first"
                ))
                .into());
            };
            let rule = RuleType::from_yaml(&doc.source_yaml)
                .and_then(|rt| CompiledRule::compile_with(rt, &sources))
                .map_err(ControlError::Invalid)?;
            compiled.insert(rt.to_string(), rule);
        }
        for kind in Control::profile_kinds(&profile) {
            for r in profile.rules_for(kind) {
                if let Some(rule) = compiled.get(&r.rule_type) {
                    rule.validate(&r.def, &r.params).map_err(|e| {
                        ControlError::InvalidArgument(format!(
                            "profile {} rule {}: {e}",
                            profile.name,
                            r.rule_name()
                        ))
                    })?;
                }
            }
        }
        let (version, changed) = self
            .store
            .upsert_profile(
                project,
                &profile.name,
                &digest(req.yaml.as_bytes()),
                &req.yaml,
            )
            .await
            .map_err(ControlError::from)?;
        // Queue the entities also when unchanged, for the same reason as for rule types; and
        // every kind a profile could have applied to, so a kind it dropped is re-evaluated too
        // (its old verdicts are then removed).
        let all_kinds = [
            EntityKind::Repository,
            EntityKind::PullRequest,
            EntityKind::Artifact,
            EntityKind::Release,
        ];
        let entities = self.entities_of(project, &all_kinds).await?;
        let queued = self.emit(&entities, EventReason::ProfileChanged).await?;
        tracing::info!(project, profile = %profile.name, version, changed, queued, "profile applied");
        Ok(Response::new(ApplyProfileResponse {
            name: profile.name,
            version,
            changed,
            entities_queued: queued,
        }))
    }

    async fn register_repository(
        &self,
        req: Request<RegisterRepositoryRequest>,
    ) -> Result<Response<RegisterRepositoryResponse>, Status> {
        self.authorize(&req, Rpc::RegisterRepository, &req.get_ref().project)
            .await?;
        let req = req.into_inner();
        let project = project_or_default(&req.project).to_string();
        if req.owner.is_empty() || req.name.is_empty() {
            return Err(ControlError::InvalidArgument("owner and name are required".into()).into());
        }
        // The names go into a request path made with the project's credential.
        plumbline_domain::check_repository_full_name(&req.owner, &req.name)
            .map_err(|e| ControlError::InvalidArgument(e.to_string()))?;
        // Read with the credential the repository will be acted on with: what that credential
        // cannot see, this project cannot register.
        let provider = self.registration_provider(&project, &req.provider).await?;
        let github = self
            .credentials
            .client(&project, provider.as_deref())
            .await
            .map_err(ControlError::from)?;
        let repo = github
            .get_repository(&req.owner, &req.name)
            .await
            .map_err(ControlError::from)?;
        let default_branch = repo.default_branch.clone().unwrap_or_default();
        let entity = repository_entity(&self.provider, &project, &repo, req.labels, provider);
        let created = self
            .store
            .upsert_entity(&entity)
            .await
            .map_err(ControlError::from)?;
        self.emit(std::slice::from_ref(&entity), EventReason::Registered)
            .await?;
        tracing::info!(entity = %entity.id(), repo = %entity.full_name(), created, "repository registered");
        Ok(Response::new(RegisterRepositoryResponse {
            entity_id: entity.id(),
            default_branch,
            created,
        }))
    }

    async fn register_owner(
        &self,
        req: Request<RegisterOwnerRequest>,
    ) -> Result<Response<RegisterOwnerResponse>, Status> {
        self.authorize(&req, Rpc::RegisterOwner, &req.get_ref().project)
            .await?;
        let req = req.into_inner();
        let project = project_or_default(&req.project).to_string();
        plumbline_domain::check_owner_name(&req.owner)
            .map_err(|e| ControlError::InvalidArgument(e.to_string()))?;
        let provider = self.registration_provider(&project, &req.provider).await?;
        let github = self
            .credentials
            .client(&project, provider.as_deref())
            .await
            .map_err(ControlError::from)?;
        let mut answer = RegisterOwnerResponse::default();
        // Every page is read and registered before the first entity event goes out: the
        // evaluations those start spend the same credential's quota, and must not leave the
        // listing without the requests it still needs. Only what an event needs is kept (about
        // 100 bytes a repository), and whatever was registered is announced even when a later
        // page fails, so nothing registered waits for the next sweep.
        let mut registered: Vec<Entity> = Vec::new();
        let listed = self
            .register_pages(
                &req,
                &project,
                provider,
                &github,
                &mut answer,
                &mut registered,
            )
            .await;
        self.emit(&registered, EventReason::Registered).await?;
        listed?;
        tracing::info!(owner = %req.owner, project = %project, registered = answer.registered, created = answer.created, other_project = answer.other_project, requests = answer.requests, "organisation registered");
        Ok(Response::new(answer))
    }

    async fn list_repositories(
        &self,
        req: Request<ListRepositoriesRequest>,
    ) -> Result<Response<ListRepositoriesResponse>, Status> {
        self.authorize(&req, Rpc::ListRepositories, &req.get_ref().project)
            .await?;
        let req = req.into_inner();
        let limit = match req.page_size {
            0 => 1000,
            n => i64::from(n.min(1000)),
        };
        let page = self
            .store
            .list_entities(
                project_or_default(&req.project),
                name_token(&req.page_token),
                limit,
            )
            .await
            .map_err(ControlError::from)?;
        let last = page.last().map(|e| e.id());
        let next_page_token = next_name_token(last.as_deref(), page.len(), limit);
        Ok(Response::new(ListRepositoriesResponse {
            next_page_token,
            repositories: page
                .into_iter()
                .filter(|e| e.entity_ref.kind == EntityKind::Repository)
                .map(|e| Repository {
                    entity_id: e.id(),
                    default_branch: e.default_branch().unwrap_or("").to_string(),
                    owner: e.owner,
                    name: e.name,
                    labels: e.labels,
                    provider: e.credential.unwrap_or_default(),
                })
                .collect(),
        }))
    }

    async fn list_status(
        &self,
        req: Request<ListStatusRequest>,
    ) -> Result<Response<ListStatusResponse>, Status> {
        self.authorize(&req, Rpc::ListStatus, &req.get_ref().project)
            .await?;
        let req = req.into_inner();
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        if let Some(s) = opt(&req.status) {
            if s.parse::<EvalStatus>().is_err() {
                return Err(Status::invalid_argument(format!(
                    "unknown status {s:?}: want pass, fail, error or skipped"
                )));
            }
        }
        let filter = plumbline_store::StatusFilter {
            status: opt(&req.status),
            profile: opt(&req.profile),
            entity_id: opt(&req.entity_id),
        };
        let after = match opt(&req.page_token) {
            None => None,
            Some(t) => Some(
                plumbline_store::StatusCursor::from_token(&t)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?,
            ),
        };
        let size = if req.page_size == 0 {
            500
        } else {
            i64::from(req.page_size)
        };
        let page = self
            .store
            .status_page(
                project_or_default(&req.project),
                &filter,
                after.as_ref(),
                size,
            )
            .await
            .map_err(ControlError::from)?;
        Ok(Response::new(ListStatusResponse {
            next_page_token: page.next.map(|c| c.token()).unwrap_or_default(),
            statuses: page
                .rows
                .into_iter()
                .map(|r| RuleStatus {
                    status: plumbline_proto::v1::EvalStatus::from(r.status) as i32,
                    entity_id: r.entity_id,
                    owner: r.owner,
                    name: r.name,
                    profile: r.profile,
                    rule_type: r.rule_type,
                    rule_name: r.rule_name,
                    message: r.message,
                    evaluated_at: Some(plumbline_proto::Timestamp {
                        seconds: r.evaluated_at.timestamp(),
                        nanos: r.evaluated_at.timestamp_subsec_nanos() as i32,
                    }),
                })
                .collect(),
        }))
    }

    async fn get_posture(
        &self,
        req: Request<GetPostureRequest>,
    ) -> Result<Response<GetPostureResponse>, Status> {
        self.authorize(&req, Rpc::GetPosture, &req.get_ref().project)
            .await?;
        let req = req.into_inner();
        let project = project_or_default(&req.project);
        // Four independent reads, sent together.
        let (counts, waits, quotas, sweep) = tokio::try_join!(
            self.store.posture_counts(project),
            self.store.waits(project),
            self.store.project_quotas(project),
            self.store.sweep_progress(project),
        )
        .map_err(ControlError::from)?;
        Ok(Response::new(GetPostureResponse {
            waits: waits
                .into_iter()
                .map(|w| plumbline_proto::v1::Wait {
                    stage: plumbline_proto::v1::WaitStage::from(w.stage) as i32,
                    cause: plumbline_proto::v1::WaitCause::from(w.cause) as i32,
                    entities: w.entities.max(0) as u64,
                    first_until: Some(timestamp(w.first_until)),
                    last_until: Some(timestamp(w.last_until)),
                    reason: w.reason,
                })
                .collect(),
            quotas: quotas
                .into_iter()
                .map(|q| plumbline_proto::v1::CredentialQuota {
                    credential: q.credential,
                    remaining: q.remaining.max(0) as u64,
                    limit: q.limit.max(0) as u64,
                    resets_at: Some(timestamp(q.resets_at)),
                    limited_until: q.limited_until.map(timestamp),
                    observed_at: Some(timestamp(q.observed_at)),
                })
                .collect(),
            sweep: sweep.map(|p| plumbline_proto::v1::SweepProgress {
                started_at: Some(timestamp(p.started_at)),
                entities: p.entities.max(0) as u64,
                done: p.done.max(0) as u64,
                deferred: p.deferred.max(0) as u64,
                deferred_until: p.deferred_until.map(timestamp),
                expected_finish: Some(timestamp(p.expected_finish)),
                updated_at: Some(timestamp(p.updated_at)),
            }),
            counts: counts
                .into_iter()
                .map(|c| PostureCount {
                    status: c
                        .status
                        .parse::<EvalStatus>()
                        .map(|s| plumbline_proto::v1::EvalStatus::from(s) as i32)
                        .unwrap_or(0),
                    profile: c.profile,
                    rule_name: c.rule_name,
                    count: c.count.max(0) as u64,
                })
                .collect(),
        }))
    }

    async fn reconcile(
        &self,
        req: Request<ReconcileRequest>,
    ) -> Result<Response<ReconcileResponse>, Status> {
        self.authorize(&req, Rpc::Reconcile, &req.get_ref().project)
            .await?;
        let req = req.into_inner();
        let project = project_or_default(&req.project);
        let entities = if req.entity_id.is_empty() {
            self.entities_of(
                project,
                &[
                    EntityKind::Repository,
                    EntityKind::PullRequest,
                    EntityKind::Artifact,
                    EntityKind::Release,
                ],
            )
            .await?
        } else {
            // An entity of another project is answered exactly as one that does not exist.
            match self
                .store
                .get_entity(&req.entity_id)
                .await
                .map_err(ControlError::from)?
            {
                Some(e) if e.project == project => vec![e],
                _ => {
                    return Err(ControlError::NotFound(format!(
                        "entity {} in project {project}",
                        req.entity_id
                    ))
                    .into())
                }
            }
        };
        let n = self.emit(&entities, EventReason::Manual).await?;
        Ok(Response::new(ReconcileResponse { entities_queued: n }))
    }

    async fn create_project(
        &self,
        req: Request<CreateProjectRequest>,
    ) -> Result<Response<CreateProjectResponse>, Status> {
        let caller = self
            .authorize(&req, Rpc::CreateProject, &req.get_ref().project)
            .await?;
        let name = req.into_inner().project;
        plumbline_domain::check_project_name(&name)
            .map_err(|e| ControlError::InvalidArgument(e.to_string()))?;
        self.store
            .create_project(&name, &caller.to_string())
            .await
            .map_err(ControlError::from)?;
        tracing::info!(project = %name, %caller, "project created");
        Ok(Response::new(CreateProjectResponse {}))
    }

    async fn list_projects(
        &self,
        req: Request<ListProjectsRequest>,
    ) -> Result<Response<ListProjectsResponse>, Status> {
        let caller = self.authorize(&req, Rpc::ListProjects, "").await?;
        let req = req.into_inner();
        let (after, limit) = (name_token(&req.page_token), page_size(req.page_size));
        let projects = match &caller {
            Caller::Operator { .. } => self.store.list_projects(after, limit).await,
            Caller::Principal(p) => self.store.projects_of(p, after, limit).await,
        }
        .map_err(ControlError::from)?;
        let next_page_token = next_name_token(
            projects.last().map(|p| p.name.as_str()),
            projects.len(),
            limit,
        );
        Ok(Response::new(ListProjectsResponse {
            next_page_token,
            projects: projects
                .into_iter()
                .map(|p| Project {
                    name: p.name,
                    created_at: Some(timestamp(p.created_at)),
                    created_by: p.created_by,
                })
                .collect(),
        }))
    }

    async fn delete_project(
        &self,
        req: Request<DeleteProjectRequest>,
    ) -> Result<Response<DeleteProjectResponse>, Status> {
        let caller = self
            .authorize(&req, Rpc::DeleteProject, &req.get_ref().project)
            .await?;
        let name = project_or_default(&req.get_ref().project).to_string();
        if name == plumbline_domain::DEFAULT_PROJECT {
            return Err(ControlError::Precondition(format!(
                "project {name} receives the repositories the GitHub installation reports; it cannot be deleted"
            ))
            .into());
        }
        if !self
            .store
            .delete_project(&name)
            .await
            .map_err(ControlError::from)?
        {
            return Err(ControlError::NotFound(format!("project {name} does not exist")).into());
        }
        tracing::info!(project = %name, %caller, "project deleted with everything it owned");
        Ok(Response::new(DeleteProjectResponse {}))
    }

    async fn create_service_account(
        &self,
        req: Request<CreateServiceAccountRequest>,
    ) -> Result<Response<CreateServiceAccountResponse>, Status> {
        let caller = self.authorize(&req, Rpc::CreateServiceAccount, "").await?;
        let req = req.into_inner();
        check_account_name(&req.name)?;
        let expires_at = match req.ttl_seconds {
            0 => None,
            s => Some(
                i64::try_from(s)
                    .ok()
                    .and_then(chrono::Duration::try_seconds)
                    .and_then(|d| chrono::Utc::now().checked_add_signed(d))
                    .ok_or_else(|| {
                        ControlError::InvalidArgument(format!("ttl of {s} seconds is too long"))
                    })?,
            ),
        };
        let token = access::new_token();
        self.store
            .create_service_account(
                &req.name,
                &access::token_digest(&token),
                &caller.to_string(),
                expires_at,
            )
            .await
            .map_err(ControlError::from)?;
        tracing::info!(service_account = %req.name, %caller, "service account created");
        Ok(Response::new(CreateServiceAccountResponse {
            name: req.name,
            token,
            expires_at: expires_at.map(timestamp),
        }))
    }

    async fn revoke_service_account(
        &self,
        req: Request<RevokeServiceAccountRequest>,
    ) -> Result<Response<RevokeServiceAccountResponse>, Status> {
        let caller = self.authorize(&req, Rpc::RevokeServiceAccount, "").await?;
        let name = req.into_inner().name;
        if !self
            .store
            .revoke_service_account(&name)
            .await
            .map_err(ControlError::from)?
        {
            return Err(ControlError::NotFound(format!("no active service account {name}")).into());
        }
        tracing::info!(service_account = %name, %caller, "service account revoked");
        Ok(Response::new(RevokeServiceAccountResponse {}))
    }

    async fn list_service_accounts(
        &self,
        req: Request<ListServiceAccountsRequest>,
    ) -> Result<Response<ListServiceAccountsResponse>, Status> {
        self.authorize(&req, Rpc::ListServiceAccounts, "").await?;
        let req = req.into_inner();
        let limit = page_size(req.page_size);
        let accounts = self
            .store
            .list_service_accounts(name_token(&req.page_token), limit)
            .await
            .map_err(ControlError::from)?;
        let next_page_token = next_name_token(
            accounts.last().map(|a| a.name.as_str()),
            accounts.len(),
            limit,
        );
        Ok(Response::new(ListServiceAccountsResponse {
            next_page_token,
            service_accounts: accounts
                .into_iter()
                .map(|a| ServiceAccount {
                    name: a.name,
                    created_at: Some(timestamp(a.created_at)),
                    created_by: a.created_by,
                    expires_at: a.expires_at.map(timestamp),
                    revoked_at: a.revoked_at.map(timestamp),
                })
                .collect(),
        }))
    }

    async fn grant_role(
        &self,
        req: Request<GrantRoleRequest>,
    ) -> Result<Response<GrantRoleResponse>, Status> {
        let caller = self
            .authorize(&req, Rpc::GrantRole, &req.get_ref().project)
            .await?;
        let req = req.into_inner();
        let project = project_or_default(&req.project);
        let principal = parse_principal(&req.principal)?;
        let role = plumbline_proto::v1::Role::try_from(req.role)
            .ok()
            .and_then(plumbline_proto::v1::Role::to_domain)
            .ok_or_else(|| {
                ControlError::InvalidArgument("role must be viewer, editor or admin".into())
            })?;
        self.store
            .grant_role(project, &principal, role, &caller.to_string())
            .await
            .map_err(ControlError::from)?;
        tracing::info!(project, %principal, %role, %caller, "role granted");
        Ok(Response::new(GrantRoleResponse {}))
    }

    async fn revoke_role(
        &self,
        req: Request<RevokeRoleRequest>,
    ) -> Result<Response<RevokeRoleResponse>, Status> {
        let caller = self
            .authorize(&req, Rpc::RevokeRole, &req.get_ref().project)
            .await?;
        let req = req.into_inner();
        let project = project_or_default(&req.project);
        let principal = parse_principal(&req.principal)?;
        if !self
            .store
            .revoke_role(project, &principal)
            .await
            .map_err(ControlError::from)?
        {
            return Err(ControlError::NotFound(format!(
                "{principal} is not a member of project {project}"
            ))
            .into());
        }
        tracing::info!(project, %principal, %caller, "role revoked");
        Ok(Response::new(RevokeRoleResponse {}))
    }

    async fn list_roles(
        &self,
        req: Request<ListRolesRequest>,
    ) -> Result<Response<ListRolesResponse>, Status> {
        self.authorize(&req, Rpc::ListRoles, &req.get_ref().project)
            .await?;
        let req = req.into_inner();
        let limit = page_size(req.page_size);
        let bindings = self
            .store
            .list_roles(
                project_or_default(&req.project),
                name_token(&req.page_token),
                limit,
            )
            .await
            .map_err(ControlError::from)?;
        let last = bindings.last().map(|b| b.principal.to_string());
        let next_page_token = next_name_token(last.as_deref(), bindings.len(), limit);
        Ok(Response::new(ListRolesResponse {
            next_page_token,
            bindings: bindings
                .into_iter()
                .map(|b| RoleBinding {
                    principal: b.principal.to_string(),
                    role: plumbline_proto::v1::Role::from(b.role) as i32,
                    granted_at: Some(timestamp(b.granted_at)),
                    granted_by: b.granted_by,
                })
                .collect(),
        }))
    }

    async fn list_audit(
        &self,
        req: Request<ListAuditRequest>,
    ) -> Result<Response<ListAuditResponse>, Status> {
        self.authorize(&req, Rpc::ListAudit, &req.get_ref().project)
            .await?;
        let req = req.into_inner();
        let limit = page_size(req.page_size);
        let before = id_token(&req.page_token)?;
        let filter = plumbline_store::AuditFilter {
            project: Some(project_or_default(&req.project).to_string()),
            principal: non_empty(req.principal),
            rpc: non_empty(req.rpc),
            since: req.since.map(from_timestamp).transpose()?,
            until: req.until.map(from_timestamp).transpose()?,
            before,
            limit,
        };
        let entries = self
            .store
            .list_audit(&filter)
            .await
            .map_err(ControlError::from)?;
        let next_page_token = next_id_token(entries.last().map(|e| e.id), entries.len(), limit);
        Ok(Response::new(ListAuditResponse {
            entries: entries
                .into_iter()
                .map(|e| AuditEntry {
                    id: e.id,
                    at: Some(timestamp(e.at)),
                    principal: e.principal,
                    project: e.project,
                    rpc: e.rpc,
                    request_digest: e.request_digest,
                    outcome: e.outcome.as_str().to_string(),
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn list_documents(
        &self,
        req: Request<ListDocumentsRequest>,
    ) -> Result<Response<ListDocumentsResponse>, Status> {
        self.authorize(&req, Rpc::ListDocuments, &req.get_ref().project)
            .await?;
        let req = req.into_inner();
        let kind = document_kind(req.kind)?;
        // Whole documents can be tens of kilobytes: fewer per page keeps a page far from the
        // clients' 4 MiB message limit.
        let limit = match req.with_yaml {
            true => page_size(req.page_size).min(20),
            false => page_size(req.page_size),
        };
        let after = name_token(&req.page_token);
        let docs = self
            .store
            .documents_page(kind, project_or_default(&req.project), after, limit)
            .await
            .map_err(ControlError::from)?;
        let next_page_token =
            next_name_token(docs.last().map(|d| d.name.as_str()), docs.len(), limit);
        Ok(Response::new(ListDocumentsResponse {
            documents: docs
                .into_iter()
                .map(|d| {
                    let mut d = to_document(req.kind, d);
                    if !req.with_yaml {
                        d.yaml.clear();
                    }
                    d
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn get_document(
        &self,
        req: Request<GetDocumentRequest>,
    ) -> Result<Response<Document>, Status> {
        self.authorize(&req, Rpc::GetDocument, &req.get_ref().project)
            .await?;
        let req = req.into_inner();
        let kind = document_kind(req.kind)?;
        let project = project_or_default(&req.project);
        match self
            .store
            .document(kind, project, &req.name)
            .await
            .map_err(ControlError::from)?
        {
            Some(d) => Ok(Response::new(to_document(req.kind, d))),
            None => Err(ControlError::NotFound(format!(
                "{} {} does not exist in project {project}",
                kind_word(kind),
                req.name
            ))
            .into()),
        }
    }

    async fn delete_document(
        &self,
        req: Request<DeleteDocumentRequest>,
    ) -> Result<Response<DeleteDocumentResponse>, Status> {
        let caller = self
            .authorize(&req, Rpc::DeleteDocument, &req.get_ref().project)
            .await?;
        let req = req.into_inner();
        let kind = document_kind(req.kind)?;
        let project = project_or_default(&req.project);
        if let Some(user) = self.user_of(kind, project, &req.name).await? {
            return Err(ControlError::Precondition(format!(
                "{} {} is used by {user}: remove it from there first",
                kind_word(kind),
                req.name
            ))
            .into());
        }
        if !self
            .store
            .delete_document(kind, project, &req.name)
            .await
            .map_err(ControlError::from)?
        {
            return Err(ControlError::NotFound(format!(
                "{} {} does not exist in project {project}",
                kind_word(kind),
                req.name
            ))
            .into());
        }
        tracing::info!(project, kind = kind_word(kind), name = %req.name, %caller, "document deleted");
        Ok(Response::new(DeleteDocumentResponse {}))
    }

    async fn deregister_repository(
        &self,
        req: Request<DeregisterRepositoryRequest>,
    ) -> Result<Response<DeregisterRepositoryResponse>, Status> {
        let caller = self
            .authorize(&req, Rpc::DeregisterRepository, &req.get_ref().project)
            .await?;
        let req = req.into_inner();
        let project = project_or_default(&req.project);
        // An entity of another project is answered exactly as one that does not exist.
        let entity = self
            .store
            .get_entity(&req.entity_id)
            .await
            .map_err(ControlError::from)?
            .filter(|e| e.project == project && e.entity_ref.kind == EntityKind::Repository)
            .ok_or_else(|| {
                ControlError::NotFound(format!("repository {} in project {project}", req.entity_id))
            })?;
        self.store
            .retire_entity(&entity.id())
            .await
            .map_err(ControlError::from)?;
        tracing::info!(project, entity = %entity.id(), repo = %entity.full_name(), %caller, "repository deregistered; its history stays");
        Ok(Response::new(DeregisterRepositoryResponse {}))
    }

    async fn list_history(
        &self,
        req: Request<ListHistoryRequest>,
    ) -> Result<Response<ListHistoryResponse>, Status> {
        self.authorize(&req, Rpc::ListHistory, &req.get_ref().project)
            .await?;
        let req = req.into_inner();
        let status = match req.status {
            0 => None,
            s => Some(
                plumbline_proto::v1::EvalStatus::try_from(s)
                    .ok()
                    .and_then(plumbline_proto::v1::EvalStatus::to_domain)
                    .ok_or_else(|| ControlError::InvalidArgument(format!("status {s}")))?,
            ),
        };
        let limit = page_size(req.page_size);
        let filter = plumbline_store::HistoryFilter {
            project: project_or_default(&req.project).to_string(),
            entity_id: non_empty(req.entity_id),
            profile: non_empty(req.profile),
            rule_name: non_empty(req.rule_name),
            status,
            since: req.since.map(from_timestamp).transpose()?,
            until: req.until.map(from_timestamp).transpose()?,
            before: id_token(&req.page_token)?,
            limit,
        };
        let rows = self
            .store
            .history_page(&filter)
            .await
            .map_err(ControlError::from)?;
        let next_page_token = next_id_token(rows.last().map(|r| r.id), rows.len(), limit);
        Ok(Response::new(ListHistoryResponse {
            entries: rows
                .into_iter()
                .map(|r| HistoryEntry {
                    evaluation_id: r.evaluation_id.to_string(),
                    entity_id: r.entity_id,
                    profile: r.profile,
                    rule_type: r.rule_type,
                    rule_name: r.rule_name,
                    status: plumbline_proto::v1::EvalStatus::from(r.status) as i32,
                    message: r.message,
                    evaluated_at: Some(timestamp(r.evaluated_at)),
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn list_actions(
        &self,
        req: Request<ListActionsRequest>,
    ) -> Result<Response<ListActionsResponse>, Status> {
        self.authorize(&req, Rpc::ListActions, &req.get_ref().project)
            .await?;
        let req = req.into_inner();
        let status = match req.status {
            0 => None,
            s => Some(
                plumbline_proto::v1::ActionStatus::try_from(s)
                    .ok()
                    .and_then(plumbline_proto::v1::ActionStatus::to_domain)
                    .ok_or_else(|| ControlError::InvalidArgument(format!("status {s}")))?,
            ),
        };
        let limit = page_size(req.page_size);
        let filter = plumbline_store::ActionFilter {
            project: project_or_default(&req.project).to_string(),
            entity_id: non_empty(req.entity_id),
            profile: non_empty(req.profile),
            status,
            before: id_token(&req.page_token)?,
            limit,
        };
        let rows = self
            .store
            .actions_page(&filter)
            .await
            .map_err(ControlError::from)?;
        let next_page_token = next_id_token(rows.last().map(|r| r.id), rows.len(), limit);
        Ok(Response::new(ListActionsResponse {
            actions: rows
                .into_iter()
                .map(|a| Action {
                    id: a.id,
                    entity_id: a.entity_id,
                    profile: a.profile,
                    rule_type: a.rule_type,
                    kind: plumbline_proto::v1::ActionKind::from(a.kind) as i32,
                    action_type: a.action_type,
                    status: match a.status {
                        plumbline_store::ActionState::Pending => 0,
                        plumbline_store::ActionState::Ended(s) => {
                            plumbline_proto::v1::ActionStatus::from(s) as i32
                        }
                    },
                    message: a.message,
                    requests: a
                        .requests
                        .into_iter()
                        .map(|r| ProviderRequest {
                            method: r.method,
                            url: r.url,
                            body: r.body,
                        })
                        .collect(),
                    provider_ref: a.provider_ref,
                    evaluation_id: a.evaluation_id.map(|u| u.to_string()).unwrap_or_default(),
                    created_at: Some(timestamp(a.created_at)),
                    updated_at: Some(timestamp(a.updated_at)),
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn create_provider(
        &self,
        req: Request<CreateProviderRequest>,
    ) -> Result<Response<CreateProviderResponse>, Status> {
        // A GitHub App installation acts with the App key the services hold, for whatever
        // repositories of whichever organisation it was installed on: which project it serves
        // is the operator's to decide, never a project admin's claim. A token is the
        // project's own credential, which its admins bring.
        let need = match req.get_ref().installation_id {
            0 => Rpc::CreateProvider.need(),
            _ => access::Need::Operator,
        };
        let caller = self
            .authorize_for(&req, Rpc::CreateProvider, need, &req.get_ref().project)
            .await?;
        let req = req.into_inner();
        let project = project_or_default(&req.project);
        plumbline_domain::check_project_name(&req.name).map_err(|_| {
            ControlError::InvalidArgument(format!(
                "provider name {:?}: 1-63 lowercase letters, digits and '-', starting with a letter",
                req.name.chars().take(80).collect::<String>()
            ))
        })?;
        let credential = match (req.installation_id, req.token.is_empty()) {
            (id, true) if id > 0 => plumbline_store::ProviderCredential::Installation(id),
            (0, false) => {
                let sealer = self.sealer.as_ref().ok_or_else(|| {
                    ControlError::Precondition(
                        "this control service has no --credentials-key-file: tokens are refused rather than stored unsealed".into(),
                    )
                })?;
                let sealed = sealer
                    .seal(
                        &SecretString::from(req.token),
                        plumbline_runtime::credentials::provider_aad(project, &req.name).as_bytes(),
                    )
                    .map_err(|e| ControlError::Precondition(e.to_string()))?;
                plumbline_store::ProviderCredential::Pat(plumbline_store::SealedValue {
                    key_id: sealed.key_id,
                    nonce: sealed.nonce,
                    ciphertext: sealed.ciphertext,
                })
            }
            _ => {
                return Err(ControlError::InvalidArgument(
                    "give exactly one of an installation id and a token".into(),
                )
                .into())
            }
        };
        self.store
            .create_provider(project, &req.name, &credential, &caller.to_string())
            .await
            .map_err(ControlError::from)?;
        tracing::info!(project, provider = %req.name, %caller, "provider created");
        Ok(Response::new(CreateProviderResponse {}))
    }

    async fn list_providers(
        &self,
        req: Request<ListProvidersRequest>,
    ) -> Result<Response<ListProvidersResponse>, Status> {
        self.authorize(&req, Rpc::ListProviders, &req.get_ref().project)
            .await?;
        let req = req.into_inner();
        let limit = page_size(req.page_size);
        let rows = self
            .store
            .list_providers(
                project_or_default(&req.project),
                name_token(&req.page_token),
                limit,
            )
            .await
            .map_err(ControlError::from)?;
        let next_page_token =
            next_name_token(rows.last().map(|p| p.name.as_str()), rows.len(), limit);
        Ok(Response::new(ListProvidersResponse {
            next_page_token,
            providers: rows
                .into_iter()
                .map(|p| Provider {
                    kind: match p.installation_id {
                        Some(_) => "github-app-installation".into(),
                        None => "github-pat".into(),
                    },
                    name: p.name,
                    installation_id: p.installation_id.unwrap_or_default(),
                    key_id: p.key_id.unwrap_or_default(),
                    created_at: Some(timestamp(p.created_at)),
                    created_by: p.created_by,
                })
                .collect(),
        }))
    }

    async fn delete_provider(
        &self,
        req: Request<DeleteProviderRequest>,
    ) -> Result<Response<DeleteProviderResponse>, Status> {
        let caller = self
            .authorize(&req, Rpc::DeleteProvider, &req.get_ref().project)
            .await?;
        let req = req.into_inner();
        let project = project_or_default(&req.project);
        use plumbline_store::DeleteProvider;
        match self
            .store
            .delete_provider(project, &req.name)
            .await
            .map_err(ControlError::from)?
        {
            DeleteProvider::Deleted => {}
            DeleteProvider::InUse(n) => {
                return Err(ControlError::Precondition(format!(
                    "provider {} acts for {n} registered repositories of project {project}: deregister them (or register them with another provider) first",
                    req.name
                ))
                .into())
            }
            DeleteProvider::Missing => {
                return Err(ControlError::NotFound(format!(
                    "provider {} does not exist in project {project}",
                    req.name
                ))
                .into())
            }
        }
        tracing::info!(project, provider = %req.name, %caller, "provider deleted");
        Ok(Response::new(DeleteProviderResponse {}))
    }

    async fn rotate_credentials_key(
        &self,
        req: Request<RotateCredentialsKeyRequest>,
    ) -> Result<Response<RotateCredentialsKeyResponse>, Status> {
        let caller = self.authorize(&req, Rpc::RotateCredentialsKey, "").await?;
        let sealer = self.sealer.as_ref().ok_or_else(|| {
            ControlError::Precondition("this control service has no --credentials-key-file".into())
        })?;
        let key_id = sealer.current_key_id().map_err(ControlError::from)?;
        let mut resealed = 0u32;
        for pat in self
            .store
            .pats_sealed_with_other_keys(&key_id)
            .await
            .map_err(ControlError::from)?
        {
            let aad = plumbline_runtime::credentials::provider_aad(&pat.project, &pat.name);
            let was = plumbline_runtime::sealed::Sealed {
                key_id: pat.sealed.key_id.clone(),
                nonce: pat.sealed.nonce.clone(),
                ciphertext: pat.sealed.ciphertext.clone(),
            };
            let token = sealer
                .open(&was, aad.as_bytes())
                .map_err(ControlError::from)?;
            let now = sealer
                .seal(&token, aad.as_bytes())
                .map_err(ControlError::from)?;
            let now = plumbline_store::SealedValue {
                key_id: now.key_id,
                nonce: now.nonce,
                ciphertext: now.ciphertext,
            };
            if self
                .store
                .reseal_pat(&pat.project, &pat.name, &pat.sealed, &now)
                .await
                .map_err(ControlError::from)?
            {
                resealed += 1;
            }
        }
        tracing::info!(%caller, key_id, resealed, "stored tokens re-sealed");
        Ok(Response::new(RotateCredentialsKeyResponse {
            resealed,
            key_id,
        }))
    }
}

fn document_kind(k: i32) -> Result<plumbline_store::DocumentKind, ControlError> {
    use plumbline_proto::v1::DocumentKind as K;
    match K::try_from(k) {
        Ok(K::RuleType) => Ok(plumbline_store::DocumentKind::RuleType),
        Ok(K::DataSource) => Ok(plumbline_store::DocumentKind::DataSource),
        Ok(K::Profile) => Ok(plumbline_store::DocumentKind::Profile),
        _ => Err(ControlError::InvalidArgument(
            "kind must be a rule type, a data source or a profile".into(),
        )),
    }
}

fn kind_word(k: plumbline_store::DocumentKind) -> &'static str {
    match k {
        plumbline_store::DocumentKind::RuleType => "rule type",
        plumbline_store::DocumentKind::DataSource => "data source",
        plumbline_store::DocumentKind::Profile => "profile",
    }
}

fn to_document(kind: i32, d: plumbline_store::StoredDocument) -> Document {
    Document {
        kind,
        name: d.name,
        version: d.version,
        digest: d.digest,
        yaml: d.source_yaml,
    }
}

/// Rows per page: 0 means 100; at most 1000.
fn page_size(requested: u32) -> i64 {
    match requested {
        0 => 100,
        n => i64::from(n.min(1000)),
    }
}

fn non_empty(s: String) -> Option<String> {
    Some(s).filter(|s| !s.is_empty())
}

/// Pages of rows newest first continue below the last id seen.
fn id_token(token: &str) -> Result<Option<i64>, ControlError> {
    match token {
        "" => Ok(None),
        t => t.parse().map(Some).map_err(|_| {
            ControlError::InvalidArgument(format!("page token {t:?} is not one this API gave"))
        }),
    }
}

/// Pages in name order continue after the last name seen.
fn name_token(token: &str) -> Option<&str> {
    Some(token).filter(|t| !t.is_empty())
}

fn next_name_token(last: Option<&str>, rows: usize, limit: i64) -> String {
    match last {
        Some(name) if rows as i64 == limit => name.to_string(),
        _ => String::new(),
    }
}

fn next_id_token(last: Option<i64>, rows: usize, limit: i64) -> String {
    match last {
        Some(id) if rows as i64 == limit => id.to_string(),
        _ => String::new(),
    }
}

/// A service account's name: what audit records and role bindings show.
fn check_account_name(name: &str) -> Result<(), ControlError> {
    plumbline_domain::check_project_name(name).map_err(|_| {
        ControlError::InvalidArgument(format!(
            "service account name {name:?}: 1-63 lowercase letters, digits and '-', starting with a letter"
        ))
    })
}

fn parse_principal(p: &str) -> Result<plumbline_domain::Principal, ControlError> {
    p.parse()
        .map_err(|e: plumbline_domain::DomainError| ControlError::InvalidArgument(e.to_string()))
}

/// Pages of an organisation's repository listing `RegisterOwner` reads at most (100 each).
const MAX_OWNER_PAGES: u32 = 2_000;

/// A repository as GitHub describes it, as the entity registered in `project`.
fn repository_entity(
    provider_name: &str,
    project: &str,
    repo: &plumbline_github::Repository,
    labels: Vec<String>,
    credential: Option<String>,
) -> Entity {
    Entity {
        entity_ref: EntityRef::repository(provider_name, repo.id),
        project: project.to_string(),
        owner: repo.owner.login.clone(),
        name: repo.name.clone(),
        properties: serde_json::json!({
            "repo_id": repo.id,
            "default_branch": repo.default_branch.clone().unwrap_or_default(),
            "private": repo.private,
            "archived": repo.archived,
            "fork": repo.fork,
            "full_name": repo.full_name,
        }),
        labels,
        credential,
    }
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> plumbline_proto::Timestamp {
    plumbline_proto::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn from_timestamp(
    t: plumbline_proto::Timestamp,
) -> Result<chrono::DateTime<chrono::Utc>, ControlError> {
    u32::try_from(t.nanos)
        .ok()
        .and_then(|n| chrono::DateTime::from_timestamp(t.seconds, n))
        .ok_or_else(|| ControlError::InvalidArgument("timestamp out of range".into()))
}
