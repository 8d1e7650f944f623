//! Actuator: failing verdicts in, remediations applied (or planned) and recorded.
//!
//! For a failing verdict of a profile whose remediation is `on` or `dry_run`: plan the rule's
//! remediation against the entity's *live* state (so a repository a human already fixed gets
//! no change), claim the action under an idempotency key in Postgres (so a redelivered verdict
//! is a no-op), apply it (or only record the plan in dry-run), record the outcome, publish an
//! `ActionOutcome`, and emit an entity event so the fix is verified by a fresh evaluation.

use plumbline_bus::worker::{Failure, Handler, Worker};
use plumbline_bus::{Consumer, ConsumerConfig, Producer, ProducerConfig, Record, Topics, TraceContext};
use plumbline_domain::{ActionMode, ActionStatus, EntityRef, EvalStatus, EventReason};
use plumbline_engine::{CompiledRule, IngestError, Invocation, PlannedRequest, Profile, Provider, RuleType};
use plumbline_github::GitHub;
use plumbline_proto::v1::{ActionKind, ActionOutcome, EntityEvent, Verdict};
use plumbline_proto::Message as _;
use plumbline_store::{NewAction, Store};
use plumbline_telemetry::{Health, Metrics, ServiceArgs};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Actuator configuration (flags or environment).
#[derive(clap::Args, Debug, Clone)]
pub struct ActuatorConfig {
    #[command(flatten)]
    pub service: ServiceArgs,

    /// Consumer group of the actuator replicas.
    #[arg(long, env = "PLUMB_ACTUATOR_GROUP", default_value = "plumbline-actuator")]
    pub group_id: String,

    #[arg(long, env = "PLUMB_KAFKA_SESSION_TIMEOUT_MS", default_value_t = 10_000)]
    pub session_timeout_ms: u64,
}

impl ActuatorConfig {
    pub fn new(service: ServiceArgs) -> Self {
        ActuatorConfig {
            service,
            group_id: "plumbline-actuator".into(),
            session_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ActuatorError {
    #[error("kafka: {0}")]
    Bus(#[from] plumbline_bus::BusError),
    #[error("postgres: {0}")]
    Store(#[from] plumbline_store::StoreError),
    #[error("github: {0}")]
    GitHub(#[from] plumbline_github::GitHubError),
    #[error("health endpoint: {0}")]
    Health(std::io::Error),
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
    github: GitHub,
    producer: Producer,
    topics: Topics,
    metrics: Metrics,
    outcomes: broadcast::Sender<ActionOutcome>,
}

pub async fn start(config: ActuatorConfig, shutdown: CancellationToken) -> Result<Running, ActuatorError> {
    let s = &config.service;
    let topics = Topics::with_prefix(&s.topic_prefix);
    let store = Store::connect(&s.database_url, s.database_max_connections)?;
    let github = s.github()?;
    let producer = Producer::new(&ProducerConfig::new(&s.kafka_brokers, "plumbline-actuator"))?;
    let mut cc = ConsumerConfig::new(&s.kafka_brokers, &config.group_id, &topics.verdicts);
    cc.session_timeout = Duration::from_millis(config.session_timeout_ms);
    cc.client_id = "plumbline-actuator".into();
    let consumer = Consumer::new(&cc)?;
    let metrics = Metrics::new();
    let health = Health::new("actuator");
    let health_addr = plumbline_telemetry::serve(s.health_listen, health.clone(), metrics.clone(), shutdown.clone())
        .await
        .map_err(ActuatorError::Health)?;
    let (outcomes, _) = broadcast::channel(1024);
    let act = Actuator {
        store: store.clone(),
        github,
        producer,
        topics,
        metrics: metrics.clone(),
        outcomes: outcomes.clone(),
    };
    let worker = Worker {
        name: "actuator",
        consumer,
        // Verdicts have no DLQ: a verdict that cannot be acted on now is retried, and the next
        // evaluation of the entity produces a fresh one anyway.
        max_attempts: 5,
        dead_letter: None,
        health: health.clone(),
        metrics: metrics.clone(),
        base_backoff: Duration::from_millis(200),
        // One verdict at a time: remediations of one entity must not interleave, and the
        // content-creation budget is the real limit here.
        max_in_flight: 1,
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
}

/// A dependency (Postgres, the broker, the provider) failed: wait for it, do not give up.
fn transient(e: impl std::fmt::Display) -> Failure {
    Failure::Unavailable {
        reason: e.to_string(),
        until: None,
    }
}

/// Like [`transient`], keeping a provider's "rate limited until" so the wait ends on time.
fn provider_unavailable(e: plumbline_engine::ProviderError) -> Failure {
    let until = match &e {
        plumbline_engine::ProviderError::Transient { until: Some(secs), .. } => {
            Some(std::time::UNIX_EPOCH + Duration::from_secs(*secs))
        }
        _ => None,
    };
    Failure::Unavailable {
        reason: e.to_string(),
        until,
    }
}

/// The idempotency key: one action per (entity, profile, rule, evaluation, intended change).
///
/// The evaluation id makes a redelivered verdict map to the same key; the planned request
/// makes a different intended change a different action. A later failing evaluation gets a new
/// key, but its plan is computed against live state, so an applied fix plans nothing.
fn idempotency_key(v: &Verdict, entity_id: &str, plan: &PlannedRequest) -> String {
    let mut h = Sha256::new();
    for part in [entity_id, &v.profile, &v.rule_name, &v.evaluation_id, &plan.method, &plan.path] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.update(plan.body.as_ref().map(|b| b.to_string()).unwrap_or_default().as_bytes());
    hex::encode(h.finalize())
}

impl Actuator {
    async fn handle(&self, record: &Record) -> Result<(), Failure> {
        let v = Verdict::decode(record.payload.as_slice()).map_err(|e| Failure::Poison(format!("undecodable verdict: {e}")))?;
        let status = plumbline_proto::v1::EvalStatus::try_from(v.status).ok().and_then(|s| s.to_domain());
        let mode: ActionMode = v.remediate.parse().unwrap_or(ActionMode::Off);
        if status != Some(EvalStatus::Fail) || mode == ActionMode::Off {
            return Ok(());
        }
        let entity_ref = v
            .entity
            .as_ref()
            .ok_or_else(|| Failure::Poison("verdict without entity".into()))
            .and_then(|r| EntityRef::try_from(r).map_err(|e| Failure::Poison(e.to_string())))?;
        let entity_id = entity_ref.id();
        let Some(entity) = self.store.get_entity(&entity_id).await.map_err(transient)? else {
            return Ok(()); // retired since the evaluation
        };
        let (Some(rt_doc), Some(profile_doc)) = (
            self.store.get_rule_type(&v.project, &v.rule_type).await.map_err(transient)?,
            self.store.get_profile(&v.project, &v.profile).await.map_err(transient)?,
        ) else {
            return Ok(()); // deleted since the evaluation
        };
        let rule = match RuleType::from_yaml(&rt_doc.source_yaml).and_then(CompiledRule::compile) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(rule_type = %v.rule_type, error = %e, "rule type does not compile, no remediation");
                return Ok(());
            }
        };
        let Some(action_type) = rule.remediation_type().map(str::to_string) else {
            return Ok(()); // nothing to remediate with
        };
        // The profile may have changed since the verdict: act on what it says now.
        let profile = match Profile::from_yaml(&profile_doc.source_yaml) {
            Ok(p) => p,
            Err(_) => return Ok(()),
        };
        let mode = profile.remediate_mode().unwrap_or(ActionMode::Off);
        let Some(pr) = profile.rules_for(entity.entity_ref.kind).iter().find(|r| r.rule_name() == v.rule_name) else {
            return Ok(());
        };
        if mode == ActionMode::Off {
            return Ok(());
        }
        let inv = Invocation {
            entity: &entity,
            params: &pr.params,
            def: &pr.def,
        };
        let mut outcome = ActionOutcome {
            entity: v.entity.clone(),
            project: v.project.clone(),
            profile: v.profile.clone(),
            rule_type: v.rule_type.clone(),
            kind: ActionKind::Remediation as i32,
            action_type: action_type.clone(),
            evaluation_id: v.evaluation_id.clone(),
            ..Default::default()
        };
        let plan = match rule.plan_remediation(&inv, &self.github).await {
            Err(IngestError::Transient(e)) => return Err(provider_unavailable(e)),
            Err(IngestError::Rule(e)) => {
                tracing::warn!(entity = %entity_id, rule = %v.rule_name, error = %e, "remediation cannot be planned");
                outcome.status = plumbline_proto::v1::ActionStatus::from(ActionStatus::Failed) as i32;
                outcome.message = e.to_string();
                return self.publish(record, &entity_id, outcome).await;
            }
            Ok(None) => {
                // Live state already complies (a human fixed it, or an earlier attempt did).
                self.metrics.inc("plumbline_actuator_actions_total", "actions by type and status", &[("type", &action_type), ("status", "skipped")], 1);
                return Ok(());
            }
            Ok(Some(p)) => p,
        };
        let key = idempotency_key(&v, &entity_id, &plan);
        let evaluation_id = uuid::Uuid::parse_str(&v.evaluation_id).ok();
        let claim = NewAction {
            idempotency_key: key.clone(),
            entity_id: entity_id.clone(),
            project: v.project.clone(),
            profile: v.profile.clone(),
            rule_type: v.rule_type.clone(),
            kind: "remediation".into(),
            action_type: action_type.clone(),
            evaluation_id,
        };
        let action_id = match self.store.claim_action(&claim).await.map_err(transient)? {
            Some(id) => id,
            None => {
                let Some(existing) = self.store.get_action(&key).await.map_err(transient)? else {
                    return Ok(()); // released between the two calls: the next delivery retries
                };
                if existing.status == "pending" {
                    // A claim left in doubt (a crash or a failure between claiming and
                    // recording). The plan was just recomputed against live state, so applying
                    // it is still right, and the PUT is idempotent.
                    tracing::info!(entity = %entity_id, key, "taking over a pending action");
                    existing.id
                } else {
                    // Already finished. Announce it again, in case the announcement is what
                    // failed last time; consumers dedupe on the idempotency key.
                    tracing::debug!(entity = %entity_id, key, status = %existing.status, "action already taken for this verdict");
                    outcome.status = existing
                        .status
                        .parse::<ActionStatus>()
                        .map(|a| plumbline_proto::v1::ActionStatus::from(a) as i32)
                        .unwrap_or(0);
                    outcome.message = existing.message;
                    outcome.method = existing.method;
                    outcome.url = existing.url;
                    outcome.body = existing.body;
                    outcome.idempotency_key = key;
                    let applied = existing.status == ActionStatus::Applied.as_str();
                    self.publish(record, &entity_id, outcome).await?;
                    if applied {
                        self.verify(record, &entity).await?;
                    }
                    return Ok(());
                }
            }
        };
        let body = plan.body.as_ref().map(|b| b.to_string()).unwrap_or_default();
        outcome.method = plan.method.clone();
        outcome.url = format!("{}{}", self.github.api_url(), plan.path);
        outcome.body = body.clone();
        outcome.idempotency_key = key;
        let (status, message) = if mode == ActionMode::DryRun {
            (ActionStatus::Planned, "dry run: request not sent".to_string())
        } else {
            match Provider::request(&self.github, &plan.method, &plan.path, plan.body.as_ref()).await {
                Ok(r) if (200..300).contains(&r.status) => (ActionStatus::Applied, format!("{} {} answered {}", plan.method, plan.path, r.status)),
                Ok(r) => (
                    ActionStatus::Failed,
                    format!("{} {} answered {}: {}", plan.method, plan.path, r.status, String::from_utf8_lossy(&r.body).chars().take(300).collect::<String>()),
                ),
                Err(plumbline_engine::ProviderError::Failed(m)) => (ActionStatus::Failed, m),
                Err(e) => {
                    // Not applied: release the claim so the retry can take it.
                    self.store.release_action(action_id).await.map_err(transient)?;
                    return Err(transient(e));
                }
            }
        };
        self.store
            .finish_action(action_id, status.as_str(), &message, &plan.method, &outcome.url, &body, "")
            .await
            .map_err(transient)?;
        outcome.status = plumbline_proto::v1::ActionStatus::from(status) as i32;
        outcome.message = message;
        tracing::info!(entity = %entity_id, repo = %entity.full_name(), rule = %v.rule_name, status = status.as_str(), "remediation");
        self.publish(record, &entity_id, outcome).await?;
        if status == ActionStatus::Applied {
            self.verify(record, &entity).await?;
        }
        Ok(())
    }

    /// Asks for a fresh evaluation of `entity`, so an applied fix is verified now rather than
    /// at the next webhook or sweep.
    async fn verify(&self, record: &Record, entity: &plumbline_domain::Entity) -> Result<(), Failure> {
        let ev = EntityEvent::new(&entity.entity_ref, EventReason::Remediated);
        self.producer
            .publish(&self.topics.entity_events, &entity.id(), &ev.encode_to_vec(), "dev.plumbline.entity_event.v1", &ev.event_id, &record.trace().child(), &BTreeMap::new())
            .await
            .map_err(transient)?;
        Ok(())
    }

    async fn publish(&self, record: &Record, entity_id: &str, mut outcome: ActionOutcome) -> Result<(), Failure> {
        outcome.acted_at = Some(plumbline_proto::now());
        let status = plumbline_proto::v1::ActionStatus::try_from(outcome.status)
            .map(|s| s.as_str_name().trim_start_matches("ACTION_STATUS_").to_ascii_lowercase())
            .unwrap_or_default();
        self.metrics.inc("plumbline_actuator_actions_total", "actions by type and status", &[("type", &outcome.action_type), ("status", &status)], 1);
        let id = uuid::Uuid::new_v4().to_string();
        let trace: TraceContext = record.trace().child();
        self.producer
            .publish(&self.topics.actions, entity_id, &outcome.encode_to_vec(), "dev.plumbline.action_outcome.v1", &id, &trace, &BTreeMap::new())
            .await
            .map_err(transient)?;
        let _ = self.outcomes.send(outcome);
        Ok(())
    }
}
