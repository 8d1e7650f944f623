//! Actuator: verdicts in; remediations and alerts applied (or planned), recorded, announced.
//!
//! For a failing verdict of a profile whose remediation is `on` or `dry_run`, and whose rule type
//! has a remediation (`rest`, `gh_branch_protection`, `pull_request`):
//!
//! 1. the action is claimed under an idempotency key, (entity, profile, rule, remediation,
//!    evaluation): a redelivered verdict finds it taken and only announces it again; a claim
//!    left pending by a crash is taken over, and every step below is safe to redo;
//! 2. a rule whose last remediation failed less than the cool-off ago is left alone;
//! 3. the rule is evaluated again against *live* state: if it passes now (a human fixed it, an
//!    earlier attempt did), the action is recorded `skipped` and nothing is sent;
//! 4. the remediation is planned against live state into the exact requests it will send;
//!    `dry_run` records and publishes them and stops there;
//! 5. the content-creation budget is reserved for every write of the plan (when it is spent the
//!    verdict is parked until it refills: queued, never dropped), the requests are sent, the
//!    outcome is recorded in Postgres and published as an `ActionOutcome`, and an entity event
//!    asks for a fresh evaluation so an applied fix is verified at once.
//!
//! Alerts (`security_advisory`, or an issue where advisories are unavailable) open when a rule
//! fails and nothing fixed it, and close when it passes, under keys of their own; see
//! [`alerts`].

mod alerting;
mod alerts;
pub mod budget;
mod ledger;
mod pr_answer;
mod pull_request;
mod remediation;

use ledger::status_i32;

use budget::ContentBudget;
use plumbline_bus::worker::{Failure, Handler, Worker};
use plumbline_bus::{Producer, Record, Topics, TraceContext};
use plumbline_domain::{
    ActionMode, ActionOperation, ActionStatus, Entity, EntityRef, EvalStatus, EventReason,
    PlannedRequest, Stage, WaitCause,
};
use plumbline_engine::datasource::DataSources;
use plumbline_engine::{
    AlertKind, CompiledRule, IngestError, Invocation, Profile, ProfileRule, ProviderError,
    Remediation, RuleType,
};
use plumbline_github::{GitHub, GitHubError, Method};
use plumbline_github_provider::{evaluate_on_blocking_pool, GitHubProvider};
use plumbline_proto::v1::{ActionKind, ActionOutcome, EntityEvent, ProviderRequest, Verdict};
use plumbline_proto::Message as _;
use plumbline_runtime::credentials::Credentials;
use plumbline_runtime::{ConsumerArgs, ConsumerDefaults, ServiceArgs};
use plumbline_store::{ActionRecord, ActionResult, ActionState, NewAction, Store};
use plumbline_telemetry::Metrics;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

// Each flag's default, declared once: clap shows it in --help and `new` uses it.
const DEFAULT_COOL_OFF_SECS: u64 = 300;
const DEFAULT_CONTENT_PER_MINUTE: u32 = 80;
const DEFAULT_CONTENT_PER_HOUR: u32 = 500;
const DEFAULT_CONTENT_MINUTE_MS: u64 = 60_000;
const DEFAULT_CONTENT_HOUR_MS: u64 = 3_600_000;
const DEFAULT_ALERT_ISSUE_FALLBACK: bool = true;
const DEFAULT_ALERT_ISSUE_FALLBACK_PUBLIC: bool = false;
const DEFAULT_CLAIM_LEASE_SECS: u64 = 300;
const DEFAULT_FIX_BACKOFF_SECS: u64 = 60;
const DEFAULT_FIX_BACKOFF_MAX_SECS: u64 = 6 * 3600;
const DEFAULT_PR_BRANCH_PREFIX: &str = "plumbline/";

/// Actuator configuration (flags or environment).
#[derive(clap::Args, Debug, Clone)]
pub struct ActuatorConfig {
    #[command(flatten)]
    pub service: ServiceArgs,

    #[command(flatten)]
    pub consumer: ConsumerArgs<ActuatorConsumer>,

    /// After a remediation of a rule failed, how long before it is tried again (seconds).
    #[arg(long, env = "PLUMB_ACTUATOR_COOL_OFF_SECS", default_value_t = DEFAULT_COOL_OFF_SECS)]
    pub cool_off_secs: u64,

    /// Content-creating requests per credential per minute (GitHub's limit is 80).
    #[arg(long, env = "PLUMB_CONTENT_PER_MINUTE", default_value_t = DEFAULT_CONTENT_PER_MINUTE)]
    pub content_per_minute: u32,

    /// Content-creating requests per credential per hour (GitHub's limit is 500).
    #[arg(long, env = "PLUMB_CONTENT_PER_HOUR", default_value_t = DEFAULT_CONTENT_PER_HOUR)]
    pub content_per_hour: u32,

    /// The length of the window `--content-per-minute` counts over (ms; GitHub's: 60,000).
    /// Shorter only against a simulator on loopback, so tests prove the budget in seconds;
    /// with any other GitHub API URL a window shorter than GitHub's is refused at start.
    #[arg(long, env = "PLUMB_CONTENT_MINUTE_MS", default_value_t = DEFAULT_CONTENT_MINUTE_MS)]
    pub content_minute_ms: u64,

    /// The length of the window `--content-per-hour` counts over (ms; GitHub's: 3,600,000).
    /// Shorter only against a simulator on loopback, as above.
    #[arg(long, env = "PLUMB_CONTENT_HOUR_MS", default_value_t = DEFAULT_CONTENT_HOUR_MS)]
    pub content_hour_ms: u64,

    /// Open an issue instead when GitHub refuses a security advisory (403, 404 or 422: the
    /// feature is unavailable for the repository or the credential).
    #[arg(long, env = "PLUMB_ALERT_ISSUE_FALLBACK", default_value_t = DEFAULT_ALERT_ISSUE_FALLBACK, action = clap::ArgAction::Set)]
    pub alert_issue_fallback: bool,

    /// Also fall back to an issue on public repositories, where everyone can read it (by default
    /// only private repositories fall back: an advisory is private, a public issue is not).
    #[arg(long, env = "PLUMB_ALERT_ISSUE_FALLBACK_PUBLIC", default_value_t = DEFAULT_ALERT_ISSUE_FALLBACK_PUBLIC, action = clap::ArgAction::Set)]
    pub alert_issue_fallback_public: bool,

    /// How long a replica's claim on an action holds before another replica may take it over
    /// (seconds). Longer than any one action takes; a crashed replica's actions wait this long.
    #[arg(long, env = "PLUMB_ACTUATOR_CLAIM_LEASE_SECS", default_value_t = DEFAULT_CLAIM_LEASE_SECS)]
    pub claim_lease_secs: u64,

    /// After a fix was applied and the rule failed again without passing in between, wait this
    /// long before applying it again (seconds); doubled for each such fix in a row.
    #[arg(long, env = "PLUMB_ACTUATOR_FIX_BACKOFF_SECS", default_value_t = DEFAULT_FIX_BACKOFF_SECS)]
    pub fix_backoff_secs: u64,

    /// The longest wait between fixes that do not hold (seconds).
    #[arg(long, env = "PLUMB_ACTUATOR_FIX_BACKOFF_MAX_SECS", default_value_t = DEFAULT_FIX_BACKOFF_MAX_SECS)]
    pub fix_backoff_max_secs: u64,

    /// Prefix of the branches pull-request remediations push (one branch per rule).
    #[arg(long, env = "PLUMB_PR_BRANCH_PREFIX", default_value = DEFAULT_PR_BRANCH_PREFIX)]
    pub pr_branch_prefix: String,
}

/// The actuator's consumer: group `plumbline-actuator`, verdicts of 16 entities at once; its
/// dead-letter topic is `plumbline.verdicts.v1.dlq`.
#[derive(Debug, Clone)]
pub struct ActuatorConsumer;

impl ConsumerDefaults for ActuatorConsumer {
    const GROUP: &'static str = "plumbline-actuator";
    const GROUP_ENV: &'static str = "PLUMB_ACTUATOR_GROUP";
    const MAX_IN_FLIGHT: usize = 16;
    const MAX_IN_FLIGHT_ENV: &'static str = "PLUMB_ACTUATOR_MAX_IN_FLIGHT";
    const MAX_ATTEMPTS_ENV: &'static str = "PLUMB_ACTUATOR_MAX_ATTEMPTS";
}

impl ActuatorConfig {
    pub fn new(service: ServiceArgs) -> Self {
        ActuatorConfig {
            service,
            consumer: ConsumerArgs::default(),
            cool_off_secs: DEFAULT_COOL_OFF_SECS,
            content_per_minute: DEFAULT_CONTENT_PER_MINUTE,
            content_per_hour: DEFAULT_CONTENT_PER_HOUR,
            content_minute_ms: DEFAULT_CONTENT_MINUTE_MS,
            content_hour_ms: DEFAULT_CONTENT_HOUR_MS,
            alert_issue_fallback: DEFAULT_ALERT_ISSUE_FALLBACK,
            alert_issue_fallback_public: DEFAULT_ALERT_ISSUE_FALLBACK_PUBLIC,
            claim_lease_secs: DEFAULT_CLAIM_LEASE_SECS,
            fix_backoff_secs: DEFAULT_FIX_BACKOFF_SECS,
            fix_backoff_max_secs: DEFAULT_FIX_BACKOFF_MAX_SECS,
            pr_branch_prefix: DEFAULT_PR_BRANCH_PREFIX.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ActuatorError {
    #[error(transparent)]
    Open(#[from] plumbline_runtime::OpenError),
    #[error("content windows of {minute_ms} ms and {hour_ms} ms are shorter than GitHub's (60,000 and 3,600,000 ms): GitHub would refuse writes the budget lets through; shorter windows are for a simulator on loopback, and {api_url} is not one")]
    ShortContentWindow {
        minute_ms: u64,
        hour_ms: u64,
        api_url: String,
    },
}

/// The content budget's windows: GitHub's, or shorter ones when the API is a simulator on
/// loopback (tests).
fn content_windows(config: &ActuatorConfig) -> Result<(Duration, Duration), ActuatorError> {
    let (minute_ms, hour_ms) = (
        config.content_minute_ms.max(1),
        config.content_hour_ms.max(1),
    );
    if minute_ms < 60_000 || hour_ms < 3_600_000 {
        let api_url = config.service.github_api_url.clone();
        let loopback = url::Url::parse(&api_url).ok().and_then(|u| match u.host() {
            Some(url::Host::Ipv4(ip)) => Some(ip.is_loopback()),
            Some(url::Host::Ipv6(ip)) => Some(ip.is_loopback()),
            Some(url::Host::Domain(d)) => Some(d.eq_ignore_ascii_case("localhost")),
            None => None,
        });
        if loopback != Some(true) {
            return Err(ActuatorError::ShortContentWindow {
                minute_ms,
                hour_ms,
                api_url,
            });
        }
    }
    Ok((
        Duration::from_millis(minute_ms),
        Duration::from_millis(hour_ms),
    ))
}

pub struct Running {
    pub health_addr: SocketAddr,
    pub metrics: Metrics,
    /// Every published outcome, for observers in the same process (`plumb dev`'s live view).
    pub outcomes: broadcast::Sender<ActionOutcome>,
    pub task: JoinHandle<()>,
}

struct Actuator {
    store: Store,
    /// The credential each entity is acted on with (its project's provider).
    credentials: Credentials,
    /// Data-source requests to other hosts (no credentials, special-purpose addresses refused).
    egress: plumbline_github::egress::Egress,
    /// For re-checking rules against live state (git ingest needs trees); each entity acts
    /// through [`GitHubProvider::for_credential`] of it.
    provider: GitHubProvider,
    producer: Producer,
    topics: Topics,
    metrics: Metrics,
    outcomes: broadcast::Sender<ActionOutcome>,
    budget: ContentBudget,
    cool_off: chrono::Duration,
    alert_issue_fallback: bool,
    alert_issue_fallback_public: bool,
    branch_prefix: String,
    /// Compiled rule types by (project, name), with the version they were compiled at.
    rules: Mutex<HashMap<(String, String), VersionedRule>>,
    /// This replica's name on the claims it holds.
    replica: String,
    /// First wait after a fix that did not hold, and the longest.
    fix_backoff: chrono::Duration,
    fix_backoff_max: chrono::Duration,
    /// How long a claim holds before another replica may take it over.
    lease: Duration,
}

pub async fn start(
    config: ActuatorConfig,
    shutdown: CancellationToken,
) -> Result<Running, ActuatorError> {
    let windows = content_windows(&config)?;
    let plumbline_runtime::Consuming {
        topics,
        store,
        metrics,
        credentials,
        egress,
        producer,
        consumer,
        health,
        health_addr,
    } = config
        .service
        .open_consuming("actuator", |t| &t.verdicts, &config.consumer, &shutdown)
        .await?;
    let (outcomes, _) = broadcast::channel(1024);
    let act = Actuator {
        store: store.clone(),
        provider: GitHubProvider::new(credentials.own().clone(), 64 << 20),
        credentials,
        egress,
        producer,
        topics,
        metrics: metrics.clone(),
        outcomes: outcomes.clone(),
        budget: ContentBudget::with_windows(
            store.clone(),
            config.content_per_minute,
            config.content_per_hour,
            windows.0,
            windows.1,
        ),
        cool_off: chrono::Duration::seconds(config.cool_off_secs.min(i64::MAX as u64) as i64),
        alert_issue_fallback: config.alert_issue_fallback,
        alert_issue_fallback_public: config.alert_issue_fallback_public,
        branch_prefix: config.pr_branch_prefix.clone(),
        rules: Mutex::new(HashMap::new()),
        replica: format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "actuator".into()),
            uuid::Uuid::new_v4().simple()
        ),
        lease: Duration::from_secs(config.claim_lease_secs.max(1)),
        fix_backoff: chrono::Duration::seconds(config.fix_backoff_secs.clamp(1, 86_400 * 7) as i64),
        fix_backoff_max: chrono::Duration::seconds(
            config.fix_backoff_max_secs.clamp(1, 86_400 * 7) as i64,
        ),
    };
    let worker = Worker {
        name: "actuator",
        consumer,
        // Bounded attempts, then the verdict goes to its dead-letter topic with the reason, so
        // an action that keeps failing is visible and replayable instead of lost or looped.
        // (Parking on rate limits, the budget or another replica's claim is not an attempt.)
        max_attempts: config.consumer.max_attempts.max(1),
        dead_letter: Some((act.producer.clone(), act.topics.verdicts_dlq.clone())),
        health: health.clone(),
        metrics: metrics.clone(),
        base_backoff: Duration::from_millis(200),
        // Entities in parallel; one entity's verdicts in order (the key), never coalesced:
        // each verdict names its own rule.
        max_in_flight: config.consumer.max_in_flight.max(1),
        coalesce: false,
    };
    let task = worker.spawn(act, shutdown, move || {
        let store = store.clone();
        async move { store.ping().await.is_ok() }
    });
    Ok(Running {
        health_addr,
        metrics,
        outcomes,
        task,
    })
}

pub async fn run(config: ActuatorConfig, shutdown: CancellationToken) -> Result<(), ActuatorError> {
    let r = start(config, shutdown).await?;
    let _ = r.task.await;
    Ok(())
}

impl Handler for Actuator {
    async fn handle(&self, record: &Record) -> Result<(), Failure> {
        Actuator::handle(self, record).await
    }

    /// Says in Postgres what waits and until when (records are keyed by entity id), so that
    /// `plumb status` can tell why a fleet's verdicts are not moving.
    async fn parked(&self, record: &Record, wait: &plumbline_bus::worker::Parked) {
        self.store
            .note_parked(
                record.key.as_deref(),
                Stage::Remediation,
                wait.cause,
                &wait.reason,
                wait.until,
            )
            .await;
    }
}

/// A dependency (Postgres, the broker) failed: wait for it, do not give up.
fn unavailable(e: impl std::fmt::Display) -> Failure {
    Failure::Unavailable {
        cause: WaitCause::Dependency,
        reason: e.to_string(),
        until: None,
    }
}

fn epoch(secs: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_secs(secs)
}

/// A provider error that says nothing of the action: wait (until the limit lifts, when known).
fn provider_unavailable(e: ProviderError) -> Failure {
    let until = e.limited_until();
    Failure::Unavailable {
        cause: WaitCause::of_provider(until.is_some()),
        reason: e.to_string(),
        until,
    }
}

fn github_unavailable(e: GitHubError) -> Failure {
    let until = match &e {
        GitHubError::RateLimited { until_epoch_secs } => Some(epoch(*until_epoch_secs)),
        _ => None,
    };
    Failure::Unavailable {
        cause: WaitCause::of_provider(until.is_some()),
        reason: format!("github: {e}"),
        until,
    }
}

/// The budget is spent until `at`: park the verdict until then.
fn budget_spent(at: std::time::SystemTime) -> Failure {
    Failure::Unavailable {
        cause: WaitCause::ContentBudget,
        reason: "content-creation budget spent".into(),
        until: Some(at),
    }
}

/// `[{method, url, body}]` for the store, and the same for the outcome.
fn proto_requests(requests: &[PlannedRequest]) -> Vec<ProviderRequest> {
    requests
        .iter()
        .map(|r| ProviderRequest {
            method: r.method.clone(),
            url: r.url.clone(),
            body: r.body.clone(),
        })
        .collect()
}

/// Everything one verdict's actions need.
struct Job<'a> {
    verdict: &'a Verdict,
    entity: &'a Entity,
    entity_id: &'a str,
    rule: &'a Arc<CompiledRule>,
    profile_rule: &'a ProfileRule,
    /// The entity's project's credential: every read and write for it goes out with this.
    github: &'a GitHub,
    provider: &'a GitHubProvider,
}

/// A compiled rule type and the version it was compiled at.
type VersionedRule = (i64, Arc<CompiledRule>);

impl Actuator {
    async fn handle(&self, record: &Record) -> Result<(), Failure> {
        let v = Verdict::decode(record.payload.as_slice())
            .map_err(|e| Failure::Poison(format!("undecodable verdict: {e}")))?;
        let status = plumbline_proto::v1::EvalStatus::try_from(v.status)
            .ok()
            .and_then(|s| s.to_domain());
        let remediate: ActionMode = v.remediate.parse().unwrap_or(ActionMode::Off);
        let alert: ActionMode = v.alert.parse().unwrap_or(ActionMode::Off);
        let wanted = match status {
            Some(EvalStatus::Fail) => remediate != ActionMode::Off || alert != ActionMode::Off,
            Some(EvalStatus::Pass) => alert != ActionMode::Off,
            // Only answers on a pull request say anything of an error (see pr_answer).
            Some(EvalStatus::Error) => {
                alert != ActionMode::Off
                    && v.entity.as_ref().is_some_and(|e| {
                        e.kind == plumbline_proto::v1::EntityKind::PullRequest as i32
                    })
            }
            _ => false,
        };
        if !wanted {
            return Ok(());
        }
        let entity_ref = v
            .entity
            .as_ref()
            .ok_or_else(|| Failure::Poison("verdict without entity".into()))
            .and_then(|r| EntityRef::try_from(r).map_err(|e| Failure::Poison(e.to_string())))?;
        let entity_id = entity_ref.id();
        let Some(entity) = self
            .store
            .get_entity(&entity_id)
            .await
            .map_err(unavailable)?
        else {
            return Ok(()); // retired since the evaluation
        };
        // A verdict acts only within its own project: the rule types and profile it names are
        // looked up there, and must not reach an entity another project owns.
        if entity.project != v.project {
            self.metrics.inc(
                &plumbline_telemetry::catalog::ACTUATOR_VERDICTS_REFUSED,
                &[("reason", "project")],
                1,
            );
            tracing::warn!(entity = %entity_id, entity_project = %entity.project, verdict_project = %v.project, "verdict's project is not the entity's; ignored");
            return Ok(());
        }
        let Some(rule) = self.rule(&v.project, &v.rule_type).await? else {
            return Ok(()); // deleted since the evaluation, or does not compile (logged)
        };
        let Some(profile_doc) = self
            .store
            .get_profile(&v.project, &v.profile)
            .await
            .map_err(unavailable)?
        else {
            return Ok(());
        };
        // The profile may have changed since the verdict: act on what it says now.
        let Ok(profile) = Profile::from_yaml(&profile_doc.source_yaml) else {
            return Ok(());
        };
        let Some(profile_rule) = profile
            .rules_for(entity.entity_ref.kind)
            .iter()
            .find(|r| r.rule_name() == v.rule_name)
            .cloned()
        else {
            return Ok(());
        };
        let github = match self
            .credentials
            .for_entity(&entity)
            .await
            .map_err(|e| unavailable(e.describe()))?
        {
            Ok(github) => github,
            Err(e) => {
                // The evaluator reports the same reason on every rule of the entity.
                self.metrics.inc(
                    &plumbline_telemetry::catalog::ACTUATOR_VERDICTS_REFUSED,
                    &[("reason", "credential")],
                    1,
                );
                tracing::warn!(entity = %entity_id, project = %entity.project, reason = %e.describe(), "no credential to act for the entity with; verdict not acted on");
                return Ok(());
            }
        };
        let provider = self.provider.for_credential(github.clone());
        let job = Job {
            verdict: &v,
            entity: &entity,
            entity_id: &entity_id,
            rule: &rule,
            profile_rule: &profile_rule,
            github: &github,
            provider: &provider,
        };
        let remediate = profile.remediate_mode().unwrap_or(ActionMode::Off);
        let alert = profile.alert_mode().unwrap_or(ActionMode::Off);
        let mut fixed = false;
        if status == Some(EvalStatus::Fail)
            && remediate != ActionMode::Off
            && rule.remediation_type().is_some()
        {
            fixed = self.remediate(&job, remediate).await?;
        }
        // A rule that judges a pull request's change answers on the pull request itself
        // (review, comment, commit status) instead of opening an advisory.
        if entity.entity_ref.kind == plumbline_domain::EntityKind::PullRequest {
            if let Some(answer) = pr_answer::answer_for(&rule, &profile_rule) {
                match answer {
                    Err(why) => {
                        tracing::warn!(entity = %entity_id, rule = %v.rule_name, reason = %why, "pull request not answered");
                    }
                    Ok(answer) if alert != ActionMode::Off => {
                        if let Some(status) = status {
                            self.answer_pull_request(&job, answer, alert, status)
                                .await?
                        }
                    }
                    Ok(_) => {}
                }
                return Ok(());
            }
        }
        if alert != ActionMode::Off && rule.alert_kind().is_some() {
            match status {
                // A fix just applied (or found in place) is verified by the next evaluation;
                // an alert for it would only open to close again.
                Some(EvalStatus::Fail) if !fixed => self.open_alert(&job, alert).await?,
                Some(EvalStatus::Pass) => self.close_alert(&job, alert).await?,
                _ => {}
            }
        }
        Ok(())
    }

    /// The project's rule type, compiled once per version.
    async fn rule(&self, project: &str, name: &str) -> Result<Option<Arc<CompiledRule>>, Failure> {
        let Some(doc) = self
            .store
            .get_rule_type(project, name)
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let key = (project.to_string(), name.to_string());
        if let Some((version, rule)) = self
            .rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            if *version == doc.version {
                return Ok(Some(rule.clone()));
            }
        }
        let rule_type = match RuleType::from_yaml(&doc.source_yaml) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(rule_type = %name, error = %e, "rule type does not parse, no action");
                return Ok(None);
            }
        };
        let mut sources = DataSources::new();
        if !rule_type.data_source_names().is_empty() {
            for d in self
                .store
                .list_data_sources(project)
                .await
                .map_err(unavailable)?
            {
                if let Err(e) = sources.add_yaml(&d.source_yaml) {
                    tracing::warn!(data_source = %d.name, error = %e, "stored data source does not load");
                }
            }
        }
        match CompiledRule::compile_with(rule_type, &sources) {
            Ok(r) => {
                let r = Arc::new(r);
                self.rules
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, (doc.version, r.clone()));
                Ok(Some(r))
            }
            Err(e) => {
                tracing::warn!(rule_type = %name, error = %e, "rule type does not compile, no action");
                Ok(None)
            }
        }
    }

    async fn publish(&self, job: &Job<'_>, mut outcome: ActionOutcome) -> Result<(), Failure> {
        let entity_id = job.entity_id;
        outcome.acted_at = Some(plumbline_proto::now());
        let status = plumbline_proto::v1::ActionStatus::try_from(outcome.status)
            .map(|s| {
                s.as_str_name()
                    .trim_start_matches("ACTION_STATUS_")
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        let kind = if outcome.kind == ActionKind::Alert as i32 {
            "alert"
        } else {
            "remediation"
        };
        self.metrics.inc(
            &plumbline_telemetry::catalog::ACTUATOR_ACTIONS,
            &[
                ("kind", kind),
                ("type", &outcome.action_type),
                ("status", &status),
            ],
            1,
        );
        if outcome.status == status_i32(ActionStatus::Applied) {
            if let Some(at) = &job.verdict.webhook_at {
                self.metrics.observe(
                    &plumbline_telemetry::catalog::WEBHOOK_TO_ACTION,
                    &[],
                    plumbline_proto::seconds_since(at),
                );
            }
            if let Ok(u) = self.budget.usage(job.github.credential_id()).await {
                self.metrics.set_gauge(
                    &plumbline_telemetry::catalog::ACTUATOR_CONTENT_LAST_MINUTE,
                    &[],
                    u64::from(u.minute),
                );
                self.metrics.set_gauge(
                    &plumbline_telemetry::catalog::ACTUATOR_CONTENT_LAST_HOUR,
                    &[],
                    u64::from(u.hour),
                );
                self.metrics.set_gauge(
                    &plumbline_telemetry::catalog::ACTUATOR_CONTENT_RESERVED,
                    &[],
                    u64::from(u.held),
                );
            }
        }
        let id = uuid::Uuid::new_v4().to_string();
        // A child of this consumer span: the outcome is in the webhook's trace.
        let trace = TraceContext::current();
        self.producer
            .publish(
                &self.topics.actions,
                entity_id,
                &outcome.encode_to_vec(),
                "dev.plumbline.action_outcome.v1",
                &id,
                &trace,
                &BTreeMap::new(),
            )
            .await
            .map_err(unavailable)?;
        let _ = self.outcomes.send(outcome);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(api: &str, minute_ms: u64, hour_ms: u64) -> ActuatorConfig {
        let mut c = ActuatorConfig::new(ServiceArgs::local(
            "127.0.0.1:9092",
            "postgres://localhost/x",
            api,
        ));
        c.content_minute_ms = minute_ms;
        c.content_hour_ms = hour_ms;
        c
    }

    #[test]
    fn content_windows_shorter_than_githubs_only_against_a_loopback_simulator() {
        let github = "https://api.github.com";
        assert_eq!(
            content_windows(&config(github, 60_000, 3_600_000)).expect("GitHub's windows"),
            (Duration::from_secs(60), Duration::from_secs(3600))
        );
        assert!(
            content_windows(&config(github, 120_000, 7_200_000)).is_ok(),
            "longer is only slower"
        );
        for (minute, hour) in [(3_000, 3_600_000), (60_000, 60_000), (0, 0)] {
            assert!(
                matches!(
                    content_windows(&config(github, minute, hour)),
                    Err(ActuatorError::ShortContentWindow { .. })
                ),
                "{minute}/{hour}"
            );
        }
        for api in [
            "https://ghe.example.com/api/v3",
            "http://10.0.0.1:8080",
            "http://localhost.evil.com",
        ] {
            assert!(
                content_windows(&config(api, 3_000, 60_000)).is_err(),
                "{api}"
            );
        }
        for api in [
            "http://127.0.0.1:4000",
            "http://[::1]:4000",
            "http://localhost:4000",
        ] {
            assert_eq!(
                content_windows(&config(api, 3_000, 60_000)).expect(api),
                (Duration::from_secs(3), Duration::from_secs(60))
            );
        }
    }
}
