//! Evaluator: entity events in, verdicts out.
//!
//! For each entity event: load the entity and the profiles of its project, read the entity's
//! live state through the provider, evaluate every rule, write the latest status and history to
//! Postgres, publish one `Verdict` per rule, and only then store the record's offset
//! (at-least-once; evaluation is idempotent, so a redelivery is harmless).
//!
//! Records are processed one at a time per replica for now, which trivially keeps each entity's
//! events ordered (the key pins an entity to a partition, the partition to one group member).

mod artifact;
mod artifact_args;
mod catalog;
pub use artifact_args::{refresh_once, ArtifactArgs, ArtifactArgsError};
mod pull_request;
mod writes;

use catalog::Catalog;
use plumbline_bus::worker::{Failure, Handler, Worker};
use plumbline_bus::{Producer, Record, Topics};
use plumbline_domain::{Entity, EvalStatus, Stage, WaitCause};
use plumbline_engine::provider::{Memo, ProviderError};
use plumbline_engine::{CompiledRule, IngestError, Invocation, Outcome, ProfileRule};
use plumbline_github::{GitHub, NameCheck};
use plumbline_github_provider::{evaluate_on_blocking_pool, provider_error, GitHubProvider};
use plumbline_proto::v1::{EntityEvent, Verdict};
use plumbline_proto::Message as _;
use plumbline_runtime::credentials::Credentials;
use plumbline_runtime::{ConsumerArgs, ConsumerDefaults, ServiceArgs};
use plumbline_store::{EvaluationRecord, Store};
use plumbline_telemetry::Metrics;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

// Each flag's default, declared once: clap shows it in --help and `new` uses it.
const DEFAULT_CATALOG_MAX_STALENESS_MS: u64 = 2_000;
const DEFAULT_TREE_CACHE_MIB: u64 = 64;
const DEFAULT_TREE_DOWNLOAD_MIB: u64 = 256;
/// The default `--quota-floor`.
pub const DEFAULT_QUOTA_FLOOR: u64 = 128;

/// Evaluator configuration (flags or environment).
#[derive(clap::Args, Debug, Clone)]
pub struct EvaluatorConfig {
    #[command(flatten)]
    pub service: ServiceArgs,

    #[command(flatten)]
    pub consumer: ConsumerArgs<EvaluatorConsumer>,

    /// Longest time a changed rule type or profile may go unnoticed by this replica.
    #[arg(long, env = "PLUMB_CATALOG_MAX_STALENESS_MS", default_value_t = DEFAULT_CATALOG_MAX_STALENESS_MS)]
    pub catalog_max_staleness_ms: u64,

    /// Memory for branch trees read by git-ingest rules, kept by commit so an unchanged branch
    /// is not downloaded again while it is here (MiB). Sweeps of unchanged repositories need
    /// none of it (their reads are checked against what Postgres keeps), so this bounds memory
    /// rather than quota: at 100,000 repositories no size holds every tree until the next sweep.
    #[arg(long, env = "PLUMB_TREE_CACHE_MIB", default_value_t = DEFAULT_TREE_CACHE_MIB)]
    pub tree_cache_mib: u64,

    /// Memory for branch tarballs being downloaded at once (MiB); each download holds room for
    /// the largest tree a git ingest accepts (100 MiB) while it runs, so this bounds how many run
    /// together and what they can hold.
    #[arg(long, env = "PLUMB_TREE_DOWNLOAD_MIB", default_value_t = DEFAULT_TREE_DOWNLOAD_MIB)]
    pub tree_download_mib: u64,

    /// An entity's evaluation starts only while its credential has more than this many GitHub
    /// requests left in the current window (as GitHub's last answer said); below it, the
    /// entity waits for the window to renew. Evaluations started together each need several
    /// requests: started on the last few, most would spend some and stop half-done (measured:
    /// 5,000 repositories on a 5,000-request quota ended with every one started and none
    /// evaluated). 0 starts evaluations until GitHub refuses.
    #[arg(long, env = "PLUMB_EVALUATOR_QUOTA_FLOOR", default_value_t = DEFAULT_QUOTA_FLOOR)]
    pub quota_floor: u64,

    #[command(flatten)]
    pub artifacts: ArtifactArgs,
}

/// The evaluator's consumer: group `plumbline-evaluator`, 32 entities at once (most of an
/// evaluation is waiting on GitHub, so well above the core count).
#[derive(Debug, Clone)]
pub struct EvaluatorConsumer;

impl ConsumerDefaults for EvaluatorConsumer {
    const GROUP: &'static str = "plumbline-evaluator";
    const GROUP_ENV: &'static str = "PLUMB_EVALUATOR_GROUP";
    const MAX_IN_FLIGHT: usize = 32;
    const MAX_IN_FLIGHT_ENV: &'static str = "PLUMB_EVALUATOR_MAX_IN_FLIGHT";
    const MAX_ATTEMPTS_ENV: &'static str = "PLUMB_EVALUATOR_MAX_ATTEMPTS";
}

impl EvaluatorConfig {
    pub fn new(service: ServiceArgs) -> Self {
        EvaluatorConfig {
            service,
            consumer: ConsumerArgs::default(),
            catalog_max_staleness_ms: DEFAULT_CATALOG_MAX_STALENESS_MS,
            tree_cache_mib: DEFAULT_TREE_CACHE_MIB,
            tree_download_mib: DEFAULT_TREE_DOWNLOAD_MIB,
            quota_floor: DEFAULT_QUOTA_FLOOR,
            artifacts: ArtifactArgs::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EvaluatorError {
    #[error(transparent)]
    Open(#[from] plumbline_runtime::OpenError),
    #[error("artifact settings")]
    Artifacts(#[from] ArtifactArgsError),
}

/// The client and provider one entity is read with: its project's credential.
struct Acting {
    github: GitHub,
    provider: GitHubProvider,
}

pub struct Running {
    pub health_addr: SocketAddr,
    pub metrics: Metrics,
    pub task: JoinHandle<()>,
}

struct Evaluator {
    store: Store,
    /// Status writes, batched across the entities in flight.
    writer: writes::Writer,
    /// The credential each entity is read with (its project's provider).
    credentials: Credentials,
    /// Data-source requests to other hosts (no credentials, special-purpose addresses refused).
    egress: plumbline_github::egress::Egress,
    /// GitHub for rule ingestion, with the tree cache keyed by commit (and credential); each
    /// entity reads through [`GitHubProvider::for_credential`] of it.
    provider: GitHubProvider,
    producer: Producer,
    topics: Topics,
    catalog: Catalog,
    metrics: Metrics,
    /// Each credential's quota, written to Postgres for the reconciler and `plumb status`.
    quotas: plumbline_runtime::quota::QuotaReporter,
    /// Requests a credential must have left for an evaluation to start.
    quota_floor: u64,
}

pub async fn start(
    config: EvaluatorConfig,
    shutdown: CancellationToken,
) -> Result<Running, EvaluatorError> {
    // Checked before anything is opened: a bad root or registry stops start-up.
    let artifacts = Arc::new(config.artifacts.open()?);
    let tuf = config.artifacts.tuf_sources()?;
    tokio::spawn(artifact_args::refresh_roots(
        artifacts.clone(),
        tuf,
        Duration::from_secs(config.artifacts.sigstore_tuf_refresh_hours.max(1) * 3600),
        shutdown.clone(),
    ));
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
        .open_consuming(
            "evaluator",
            |t| &t.entity_events,
            &config.consumer,
            &shutdown,
        )
        .await?;
    let ev = Evaluator {
        catalog: Catalog::new(
            store.clone(),
            Duration::from_millis(config.catalog_max_staleness_ms),
        ),
        writer: writes::Writer::spawn(store.clone(), metrics.clone()),
        store,
        provider: GitHubProvider::new(
            credentials.own().clone(),
            config.tree_cache_mib.saturating_mul(1 << 20),
        )
        .with_download_budget(config.tree_download_mib.saturating_mul(1 << 20))
        .with_artifacts(artifacts),
        credentials,
        quotas: plumbline_runtime::quota::QuotaReporter::new(),
        quota_floor: config.quota_floor,
        egress,
        producer,
        topics,
        metrics: metrics.clone(),
    };
    let worker = Worker {
        name: "evaluator",
        consumer,
        max_attempts: config.consumer.max_attempts.max(1),
        dead_letter: Some((ev.producer.clone(), ev.topics.dlq.clone())),
        health: health.clone(),
        metrics: metrics.clone(),
        base_backoff: Duration::from_millis(200),
        max_in_flight: config.consumer.max_in_flight.max(1),
        // Level-triggered: several events for one entity waiting together need one evaluation.
        coalesce: true,
    };
    let store = ev.store.clone();
    let task = worker.spawn(ev, shutdown, move || {
        let store = store.clone();
        async move { store.ping().await.is_ok() }
    });
    Ok(Running {
        health_addr,
        metrics,
        task,
    })
}

pub async fn run(
    config: EvaluatorConfig,
    shutdown: CancellationToken,
) -> Result<(), EvaluatorError> {
    let r = start(config, shutdown).await?;
    let _ = r.task.await;
    Ok(())
}

impl Handler for Evaluator {
    async fn handle(&self, record: &Record) -> Result<(), Failure> {
        Evaluator::handle(self, record).await
    }

    /// Says in Postgres what waits and until when (records are keyed by entity id), so that
    /// `plumb status` can tell why a fleet's verdicts are not moving.
    async fn parked(&self, record: &Record, wait: &plumbline_bus::worker::Parked) {
        self.store
            .note_parked(
                record.key.as_deref(),
                Stage::Evaluation,
                wait.cause,
                &wait.reason,
                wait.until,
            )
            .await;
    }
}

/// One rule's result for one entity, to be written as a row and published as a verdict.
struct RuleResult<'a> {
    record: &'a Record,
    event: &'a EntityEvent,
    entity: &'a Entity,
    profile: &'a str,
    rule_type: &'a str,
    rule_name: &'a str,
    version: i64,
    remediate: &'a str,
    alert: &'a str,
    /// The rule's latest status, to tell whether this verdict changes it.
    previous: Option<&'a plumbline_store::LastVerdict>,
}

impl RuleResult<'_> {
    /// The row and the verdict, built together so both always say the same.
    fn into_parts(self, outcome: Outcome) -> (EvaluationRecord, Verdict) {
        // Derived from the record, so a retried record republishes the same ids and the
        // actuator's idempotency keys still match.
        let evaluation_id = uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            format!(
                "{}/{}/{}/{}/{}",
                self.record.topic,
                self.record.partition,
                self.record.offset,
                self.profile,
                self.rule_name
            )
            .as_bytes(),
        );
        let now = chrono::Utc::now();
        let details = serde_json::json!(outcome.details);
        let unchanged = self.previous.is_some_and(|p| {
            p.status == outcome.status
                && p.message == outcome.message
                && p.input_digest == outcome.input_digest
                && p.rule_type_version == self.version
                && p.details == details
        });
        let row = EvaluationRecord {
            evaluation_id,
            entity_id: self.entity.id(),
            project: self.entity.project.clone(),
            profile: self.profile.to_string(),
            rule_type: self.rule_type.to_string(),
            rule_name: self.rule_name.to_string(),
            status: outcome.status,
            message: outcome.message.clone(),
            details,
            input_digest: outcome.input_digest.clone(),
            rule_type_version: self.version,
            cause_event_id: self.event.event_id.clone(),
            evaluated_at: now,
            unchanged,
        };
        let verdict = Verdict {
            entity: self.event.entity.clone(),
            project: self.entity.project.clone(),
            profile: self.profile.to_string(),
            rule_type: self.rule_type.to_string(),
            rule_name: self.rule_name.to_string(),
            status: plumbline_proto::v1::EvalStatus::from(outcome.status) as i32,
            message: outcome.message,
            details: outcome.details,
            input_digest: outcome.input_digest,
            remediate: self.remediate.to_string(),
            alert: self.alert.to_string(),
            evaluated_at: Some(plumbline_proto::Timestamp {
                seconds: now.timestamp(),
                nanos: now.timestamp_subsec_nanos() as i32,
            }),
            cause_event_id: self.event.event_id.clone(),
            evaluation_id: evaluation_id.to_string(),
            owner: self.entity.owner.clone(),
            name: self.entity.name.clone(),
            rule_type_version: self.version,
            webhook_at: webhook_time(self.event),
        };
        (row, verdict)
    }
}

/// A Postgres error as the record's failure: the database unreachable or overloaded is
/// `Unavailable` (wait and retry, not the record's fault); any other error counts an attempt.
/// When ingest accepted the webhook behind `event`; `None` for every other cause.
fn webhook_time(event: &EntityEvent) -> Option<plumbline_proto::Timestamp> {
    (event.reason == plumbline_proto::v1::EventReason::Webhook as i32)
        .then_some(event.emitted_at)
        .flatten()
}

fn epoch_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// When the window renews (epoch seconds), if an evaluation must wait for it: the credential
/// has fewer than `floor` requests left (at most a tenth of its limit, so a small quota is not
/// all floor) and the window runs. Unknown quota (no answer yet) lets it start.
fn below_floor(quota: Option<plumbline_github::Quota>, floor: u64, now: u64) -> Option<u64> {
    let q = quota?;
    let floor = floor.min(q.limit / 10);
    (floor > 0 && q.remaining < floor && q.reset_epoch_secs > now).then_some(q.reset_epoch_secs)
}

fn credentials_unavailable(e: plumbline_runtime::credentials::CredentialError) -> Failure {
    Failure::Unavailable {
        cause: WaitCause::Dependency,
        reason: e.describe(),
        until: None,
    }
}

fn store_failure(e: plumbline_store::StoreError) -> Failure {
    if e.is_transient() {
        Failure::Unavailable {
            cause: WaitCause::Dependency,
            reason: format!("postgres: {e}"),
            until: None,
        }
    } else {
        Failure::Attempt(e.to_string())
    }
}

/// The provider is down or limiting us: retry the record (until the limit lifts, when known)
/// rather than publish a verdict that says nothing about the repository.
fn provider_unavailable(e: ProviderError) -> Failure {
    let until = e.limited_until();
    Failure::Unavailable {
        cause: WaitCause::of_provider(until.is_some()),
        reason: e.to_string(),
        until,
    }
}

/// What reading a repository back by name says about the entity.
enum Identity {
    /// Its name leads to it (the store now holds its current name and default branch).
    Confirmed,
    /// Its name does not lead to it: nothing is judged on whatever the name reaches now.
    Problem(String),
    /// It was announced gone (deleted, transferred away, access removed) and GitHub agrees.
    Gone(String),
}

impl Evaluator {
    /// Reads `owner/name` back: `Err(Failure)` to retry later (GitHub down or limiting),
    /// `Ok(Err(why))` when GitHub refused in a way a retry will not change.
    async fn check_name(
        github: &GitHub,
        owner: &str,
        name: &str,
        expected: u64,
    ) -> Result<Result<NameCheck, plumbline_github::GitHubError>, Failure> {
        match github.check_repository_name(owner, name, expected).await {
            Ok(c) => Ok(Ok(c)),
            Err(e) if e.is_retryable() => Err(provider_unavailable(provider_error(e))),
            Err(e) => Ok(Err(e)),
        }
    }

    /// Rules read the repository by name, and a name can move (a rename whose webhook was lost,
    /// then another repository under the old name). The name is read back first, a conditional
    /// GET that costs no quota while nothing changed, and must still lead to the repository this
    /// entity is; otherwise no rule is judged on another repository's state.
    ///
    /// Webhooks only hint at registry changes, since a signed body can be replayed: a rename
    /// is taken only when the new name leads to this repository's id, and a retirement (deleted,
    /// transferred, access removed, uninstalled) or an enrolment only when GitHub agrees that
    /// the name no longer leads anywhere this credential can see. A replayed "deleted" for a
    /// live repository is therefore one more evaluation, and an old "renamed" cannot move the
    /// entity back to a stale name. Repositories enrolled from App installation events also get
    /// their default branch here (those payloads do not carry it), and a changed default branch
    /// is followed.
    async fn confirm_identity(
        &self,
        github: &GitHub,
        event: &EntityEvent,
        entity: &mut Entity,
    ) -> Result<Identity, Failure> {
        use plumbline_proto::v1::EventReason;
        let expected = entity.entity_ref.upstream_id.parse::<u64>().unwrap_or(0);
        // The name the event brings (a rename, a transfer) is tried first; it becomes the
        // entity's name only if it leads to this id.
        // A hint whose names GitHub would not allow is ignored: names go into a request path.
        let hinted = !event.owner.is_empty()
            && !event.name.is_empty()
            && (event.owner != entity.owner || event.name != entity.name)
            && plumbline_domain::check_repository_full_name(&event.owner, &event.name).is_ok();
        let mut found = None;
        if hinted {
            if let Ok(NameCheck::Same(repo)) =
                Self::check_name(github, &event.owner, &event.name, expected).await?
            {
                tracing::info!(entity = %entity.id(), from = %entity.full_name(), to = %format!("{}/{}", event.owner, event.name), "repository rename confirmed");
                entity.owner = event.owner.clone();
                entity.name = event.name.clone();
                found = Some(NameCheck::Same(repo));
            }
        }
        // Only a confirmed rename writes the new names; a stale hint leaves the row alone.
        let renamed = found.is_some();
        let outcome = match found {
            Some(c) => c,
            None => match Self::check_name(github, &entity.owner, &entity.name, expected).await? {
                Ok(c) => c,
                Err(e) => {
                    return Ok(Identity::Problem(format!(
                        "the repository's identity could not be confirmed ({}: {e}): not evaluated",
                        entity.full_name()
                    )))
                }
            },
        };
        let reason = EventReason::try_from(event.reason).unwrap_or(EventReason::Unspecified);
        match outcome {
            NameCheck::Same(repo) => {
                let branch = repo.default_branch.filter(|b| Some(b.as_str()) != entity.default_branch());
                if renamed || branch.is_some() {
                    self.store.refresh_entity(&entity.id(), &entity.owner, &entity.name, branch.as_deref()).await.map_err(store_failure)?;
                    if let (Some(b), Some(props)) = (branch, entity.properties.as_object_mut()) {
                        props.insert("default_branch".into(), b.into());
                    }
                }
                if reason == EventReason::Retired {
                    tracing::warn!(entity = %entity.id(), repo = %entity.full_name(), "retirement not confirmed: the repository is still reachable, so it is evaluated instead (a replayed or stale webhook)");
                }
                Ok(Identity::Confirmed)
            }
            NameCheck::Missing if matches!(reason, EventReason::Retired | EventReason::Registered) => Ok(Identity::Gone(format!("{} is not found by its name", entity.full_name()))),
            NameCheck::Other(other) if reason == EventReason::Retired => Ok(Identity::Gone(format!("{} now names repository {other}", entity.full_name()))),
            check => Ok(check
                .problem(&entity.full_name(), expected)
                .map(|p| Identity::Problem(format!("{p}: not evaluated until the entity's name is current again (a rename webhook, or registering it anew)")))
                .unwrap_or(Identity::Confirmed)),
        }
    }

    /// A pull request as GitHub has it now (see [`pull_request`]): its properties refreshed
    /// when open, retired when closed or gone.
    async fn confirm_pull_request(
        &self,
        github: &GitHub,
        entity: &mut Entity,
    ) -> Result<Identity, Failure> {
        match pull_request::confirm(github, entity).await {
            Ok(pull_request::PullCheck::Open(properties)) => {
                self.keep_properties(entity, properties).await?;
                Ok(Identity::Confirmed)
            }
            Ok(pull_request::PullCheck::Gone(why)) => Ok(Identity::Gone(why)),
            Ok(pull_request::PullCheck::Problem(why)) => Ok(Identity::Problem(why)),
            Err(e) if e.is_retryable() => Err(provider_unavailable(provider_error(e))),
            Err(e) => Ok(Identity::Problem(format!(
                "the pull request could not be read ({}: {e}): not evaluated",
                entity.full_name()
            ))),
        }
    }

    /// A container image version as GitHub has it now (see [`artifact`]): its digest and tags
    /// refreshed, retired when deleted.
    async fn confirm_artifact(
        &self,
        github: &GitHub,
        entity: &mut Entity,
    ) -> Result<Identity, Failure> {
        match artifact::confirm(github, entity).await {
            Ok(artifact::ArtifactCheck::Present(properties)) => {
                self.keep_properties(entity, properties).await?;
                Ok(Identity::Confirmed)
            }
            Ok(artifact::ArtifactCheck::Gone(why)) => Ok(Identity::Gone(why)),
            Ok(artifact::ArtifactCheck::Problem(why)) => Ok(Identity::Problem(why)),
            Err(e) if e.is_retryable() => Err(provider_unavailable(provider_error(e))),
            Err(e) => Ok(Identity::Problem(format!(
                "the artifact could not be read ({}: {e}): not evaluated",
                entity.id()
            ))),
        }
    }

    /// Merges what GitHub says into the stored properties and the entity at hand.
    async fn keep_properties(
        &self,
        entity: &mut Entity,
        properties: serde_json::Value,
    ) -> Result<(), Failure> {
        self.store
            .merge_properties(&entity.id(), &properties)
            .await
            .map_err(store_failure)?;
        if let (Some(props), serde_json::Value::Object(new)) =
            (entity.properties.as_object_mut(), properties)
        {
            props.extend(new);
        }
        Ok(())
    }

    /// One entity event: the entity as GitHub confirms it, every rule of every profile that
    /// applies to its kind, the results written, then the verdicts published.
    async fn handle(&self, record: &Record) -> Result<(), Failure> {
        let event = EntityEvent::decode(record.payload.as_slice())
            .map_err(|e| Failure::Poison(format!("undecodable entity event: {e}")))?;
        let entity_ref = event
            .entity_ref()
            .map_err(|e| Failure::Poison(e.to_string()))?;
        let id = entity_ref.id();
        let Some((entity, acting)) = self.registered_entity(&id).await? else {
            return Ok(());
        };
        let evaluation_started = std::time::Instant::now();
        let snapshot = self
            .catalog
            .snapshot(&entity.project)
            .await
            .map_err(store_failure)?;
        let unchanged = match &acting {
            Ok(a) => self.unchanged(&event, &id, &entity, &snapshot, a).await,
            Err(_) => Ok(None),
        };
        if let (Err(_), Ok(a)) = (&unchanged, &acting) {
            // Most often a spent quota: say so for the reconciler and `plumb status`.
            self.quotas.report(&self.store, &entity, &a.github).await;
        }
        let kept = unchanged?;
        let unchanged = kept.is_some();
        // Every GitHub read from here on is recorded, so the next sweep can check them all
        // with conditional requests instead of reading again.
        let reporting = acting
            .as_ref()
            .ok()
            .map(|a| (entity.clone(), a.github.clone()));
        let (evaluated, reads) = plumbline_github::reads::recording(async {
            let Some((entity, acting)) = self
                .confirmed_entity(&event, entity, acting, unchanged)
                .await?
            else {
                return Ok(None);
            };
            let (records, verdicts) = self
                .evaluate_profiles(
                    record,
                    &event,
                    &entity,
                    acting.as_ref(),
                    &snapshot,
                    unchanged,
                )
                .await?;
            Ok::<_, Failure>(Some((entity, acting, records, verdicts)))
        })
        .await;
        if let Some((entity, github)) = &reporting {
            self.quotas.report(&self.store, entity, github).await;
        }
        let Some((entity, acting, records, verdicts)) = evaluated? else {
            return Ok(());
        };
        // What to keep of this evaluation's reads: nothing new when its verdicts were reused
        // from them; all of them when every read has a validator and the entity could be read.
        let stored =
            (!unchanged && acting.is_ok() && reads.complete && !reads.validators.is_empty())
                .then(|| {
                    serde_json::to_value(&reads.validators)
                        .ok()
                        .map(|validators| plumbline_store::StoredInputs {
                            context: context_digest(&entity, &snapshot),
                            validators,
                        })
                })
                .flatten();
        let inputs = match (stored, &kept) {
            // Verdicts reused: the stored reads still stand for them, as long as whatever was
            // read afresh (rules evaluated again) is among them with the same answer.
            (_, Some(kept))
                if reads.complete && reads.validators.iter().all(|v| kept.contains(v)) =>
            {
                plumbline_store::InputsChange::Keep
            }
            (_, Some(_)) => plumbline_store::InputsChange::Clear,
            (Some(s), None) => plumbline_store::InputsChange::Set(s),
            (None, None) => plumbline_store::InputsChange::Clear,
        };
        // Durable first, then announce: a consumer of the verdict finds the status written.
        self.writer.write(id.clone(), records, inputs).await?;
        self.publish_verdicts(&id, &verdicts).await?;
        if let Some(at) = webhook_time(&event) {
            self.metrics.observe(
                &plumbline_telemetry::catalog::WEBHOOK_TO_VERDICT,
                &[],
                plumbline_proto::seconds_since(&at),
            );
        }
        self.metrics.observe(
            &plumbline_telemetry::catalog::EVALUATOR_ENTITY_SECONDS,
            &[],
            evaluation_started.elapsed().as_secs_f64(),
        );
        self.record_cache_stats();
        tracing::debug!(entity = %id, verdicts = verdicts.len(), "entity evaluated");
        if let Ok(a) = &acting {
            self.discover_artifacts(&event, &entity, &a.github, &snapshot)
                .await;
        }
        Ok(())
    }

    /// On a sweep (or a registration) of a repository whose project has artifact rules: the
    /// container image versions its packages hold that are not enrolled yet (a lost `package`
    /// webhook) are enrolled and sent for evaluation. Outside the evaluation's recorded reads,
    /// so they never count among the repository's validators. A failure is logged and the next
    /// sweep tries again.
    async fn discover_artifacts(
        &self,
        event: &EntityEvent,
        entity: &Entity,
        github: &GitHub,
        snapshot: &catalog::Snapshot,
    ) {
        use plumbline_proto::v1::EventReason;
        let reason = EventReason::try_from(event.reason).unwrap_or(EventReason::Unspecified);
        if entity.entity_ref.kind != plumbline_domain::EntityKind::Repository
            || !matches!(
                reason,
                EventReason::Sweep | EventReason::Registered | EventReason::Manual
            )
            || !snapshot.profiles.iter().any(|p| {
                p.compiled
                    .as_ref()
                    .is_ok_and(|c| !c.profile.artifact.is_empty())
            })
        {
            return;
        }
        let found = match artifact::discover(github, entity).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(entity = %entity.id(), error = %e, "container packages could not be listed: the next sweep tries again");
                return;
            }
        };
        let parent = entity.entity_ref.clone();
        let mut enrolled = 0;
        for f in found {
            if enrolled >= artifact::MAX_DISCOVERED_PER_SWEEP {
                tracing::info!(repository = %parent.id(), "more container versions to enroll: the next sweep goes on");
                break;
            }
            let child = plumbline_domain::EntityRef {
                provider: parent.provider.clone(),
                kind: plumbline_domain::EntityKind::Artifact,
                upstream_id: f.version_id.to_string(),
            };
            match self
                .store
                .enroll_child(&parent.id(), &child, &f.properties)
                .await
            {
                Ok(plumbline_store::ChildEnrolment::Enrolled) => {
                    enrolled += 1;
                    let mut ev = EntityEvent::new(&child, plumbline_domain::EventReason::Sweep);
                    ev.owner = entity.owner.clone();
                    ev.name = entity.name.clone();
                    ev.parent = Some(plumbline_proto::v1::EntityRef::from(&parent));
                    let trace = plumbline_bus::TraceContext::current();
                    let sent = self
                        .producer
                        .publish(
                            &self.topics.entity_events,
                            &child.id(),
                            &ev.encode_to_vec(),
                            "dev.plumbline.entity_event.v1",
                            &ev.event_id,
                            &trace,
                            &BTreeMap::new(),
                        )
                        .await;
                    match sent {
                        Ok(_) => {
                            tracing::info!(entity = %child.id(), repository = %parent.id(), "artifact found by the sweep enrolled")
                        }
                        Err(e) => {
                            tracing::warn!(entity = %child.id(), error = %e, "artifact enrolled, its event not sent: the next sweep evaluates it")
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(entity = %child.id(), error = %e, "artifact could not be enrolled: the next sweep tries again");
                }
            }
        }
    }

    /// Whether a sweep finds the entity as its last evaluation left it: every GitHub read that
    /// evaluation made answers 304 to a conditional request (free of quota) and nothing else
    /// its verdicts were decided on changed ([`context_digest`]). Only sweeps ask: any other
    /// event (a webhook, a registration, a rename hint, a changed profile) may bring what the
    /// reads do not show, and is read afresh. A stored read outside the entity's own API root
    /// is not sent (nothing the evaluator writes, but the row is read back from the database).
    /// Returns the validators that held, or `None` when the entity must be read afresh.
    async fn unchanged(
        &self,
        event: &EntityEvent,
        id: &str,
        entity: &Entity,
        snapshot: &catalog::Snapshot,
        acting: &Acting,
    ) -> Result<Option<Vec<plumbline_github::Validator>>, Failure> {
        use plumbline_proto::v1::EventReason;
        let hinted = (!event.owner.is_empty() && event.owner != entity.owner)
            || (!event.name.is_empty() && event.name != entity.name);
        if event.reason != EventReason::Sweep as i32 || hinted {
            return Ok(None);
        }
        let checked = |outcome: &str| {
            self.metrics.inc(
                &plumbline_telemetry::catalog::EVALUATOR_SWEEP_CHECKS,
                &[("outcome", outcome)],
                1,
            )
        };
        let stored = self.store.entity_inputs(id).await.map_err(store_failure)?;
        let root = plumbline_engine::scope::repository_root(entity);
        let validators = stored
            .filter(|s| s.context == context_digest(entity, snapshot))
            .and_then(|s| {
                serde_json::from_value::<Vec<plumbline_github::Validator>>(s.validators).ok()
            })
            .filter(|vs| {
                // Never sent outside the entity's own API root; and for a repository, the read
                // that confirmed its identity (its name still leads to it) must be among them,
                // since that check is skipped when they all hold.
                vs.iter().all(|v| {
                    plumbline_engine::scope::confine(&v.path, std::slice::from_ref(&root)).is_ok()
                }) && match entity.entity_ref.kind {
                    plumbline_domain::EntityKind::Repository => {
                        vs.iter().any(|v| v.path == root && v.headers.is_empty())
                    }
                    // A closed pull request changes its own read, not its files'.
                    plumbline_domain::EntityKind::PullRequest => {
                        pull_request::confirming_path(entity)
                            .is_some_and(|p| vs.iter().any(|v| v.path == p && v.headers.is_empty()))
                    }
                    // Signatures live in the container registry, which no GitHub validator
                    // covers: an artifact is always evaluated again.
                    plumbline_domain::EntityKind::Artifact => false,
                    _ => true,
                }
            });
        let Some(validators) = validators else {
            checked("unknown");
            return Ok(None);
        };
        match acting.github.still_valid(&validators).await {
            Ok(true) => {
                checked("unchanged");
                Ok(Some(validators))
            }
            Ok(false) => {
                checked("changed");
                Ok(None)
            }
            Err(e) if e.is_retryable() => Err(provider_unavailable(provider_error(e))),
            // Anything else (a body grown past the limit, say) is read and evaluated afresh,
            // where it gets the verdict it deserves.
            Err(e) => {
                tracing::debug!(entity = %id, error = %e, "sweep check failed: evaluating afresh");
                checked("changed");
                Ok(None)
            }
        }
    }

    /// Counts how an entity event ended short of an evaluation.
    fn event_outcome(&self, outcome: &str) {
        self.metrics.inc(
            &plumbline_telemetry::catalog::EVALUATOR_EVENTS,
            &[("outcome", outcome)],
            1,
        );
    }

    /// The registered entity and the credential it is read with (its project's provider).
    /// `None` when it is not registered. An entity that cannot be acted on (no credential of
    /// its own project) comes back with the reason every rule errors.
    async fn registered_entity(
        &self,
        id: &str,
    ) -> Result<Option<(Entity, Result<Acting, String>)>, Failure> {
        let Some(entity) = self.store.get_entity(id).await.map_err(store_failure)? else {
            tracing::debug!(entity = %id, "entity not registered, event ignored");
            self.event_outcome("unregistered");
            return Ok(None);
        };
        let github = match self
            .credentials
            .for_entity(&entity)
            .await
            .map_err(credentials_unavailable)?
        {
            Ok(github) => github,
            Err(e) => {
                self.event_outcome("no_credential");
                let why = format!("{}: not evaluated", e.describe());
                tracing::warn!(entity = %id, project = %entity.project, reason = %why, "no credential to act for the entity with");
                return Ok(Some((entity, Err(why))));
            }
        };
        if let Some(reset) = below_floor(github.quota(), self.quota_floor, epoch_now()) {
            self.quotas.report(&self.store, &entity, &github).await;
            return Err(Failure::Unavailable {
                cause: WaitCause::ProviderQuota,
                reason: format!(
                    "its credential has fewer than {} GitHub requests left in this window: evaluations resume when it renews",
                    self.quota_floor
                ),
                until: Some(std::time::UNIX_EPOCH + Duration::from_secs(reset)),
            });
        }
        let acting = Acting {
            provider: self.provider.for_credential(github.clone()),
            github,
        };
        Ok(Some((entity, Ok(acting))))
    }

    /// The entity with its identity confirmed with GitHub (repositories; see
    /// [`confirm_identity`](Self::confirm_identity)), unless `unchanged` says the read that
    /// confirmed it last time answers the same now. `None` when it is retired now because
    /// GitHub confirms it is gone; an identity GitHub cannot confirm comes back with the reason
    /// every rule errors.
    async fn confirmed_entity(
        &self,
        event: &EntityEvent,
        mut entity: Entity,
        acting: Result<Acting, String>,
        unchanged: bool,
    ) -> Result<Option<(Entity, Result<Acting, String>)>, Failure> {
        let id = entity.id();
        let acting = match acting {
            Ok(a) => a,
            Err(why) => return Ok(Some((entity, Err(why)))),
        };
        if unchanged {
            return Ok(Some((entity, Ok(acting))));
        }
        let confirmed = match entity.entity_ref.kind {
            plumbline_domain::EntityKind::Repository => {
                self.confirm_identity(&acting.github, event, &mut entity)
                    .await?
            }
            plumbline_domain::EntityKind::PullRequest => {
                self.confirm_pull_request(&acting.github, &mut entity)
                    .await?
            }
            plumbline_domain::EntityKind::Artifact => {
                self.confirm_artifact(&acting.github, &mut entity).await?
            }
            _ => return Ok(Some((entity, Ok(acting)))),
        };
        match confirmed {
            Identity::Confirmed => Ok(Some((entity, Ok(acting)))),
            Identity::Problem(why) => {
                self.event_outcome("identity_mismatch");
                tracing::warn!(entity = %id, reason = %why, "repository identity not confirmed");
                Ok(Some((entity, Err(why))))
            }
            Identity::Gone(why) => {
                let retired = self.store.retire_entity(&id).await.map_err(store_failure)?;
                self.event_outcome("retired");
                tracing::info!(entity = %id, kind = %entity.entity_ref.kind, repo = %entity.full_name(), reason = %why, retired, "entity retired: GitHub confirms it is gone");
                Ok(None)
            }
        }
    }

    /// Every rule of every profile for the entity's kind, as rows and verdicts built together.
    async fn evaluate_profiles(
        &self,
        record: &Record,
        event: &EntityEvent,
        entity: &Entity,
        acting: Result<&Acting, &String>,
        snapshot: &catalog::Snapshot,
        unchanged: bool,
    ) -> Result<(Vec<EvaluationRecord>, Vec<Verdict>), Failure> {
        // What each rule found last time: reused when its input digest and version are unchanged.
        let last = self
            .store
            .last_verdicts(&entity.id())
            .await
            .map_err(store_failure)?;
        let mut verdicts = Vec::new();
        let mut records = Vec::new();
        // One read per endpoint and tree for all rules of this event, with the entity's
        // credential (nothing is read when there is none).
        let memo = acting.map(|a| (Memo::new(&a.provider), &a.github));
        for entry in &snapshot.profiles {
            let Ok(compiled_profile) = &entry.compiled else {
                continue; // logged when the catalog loaded
            };
            let profile = &compiled_profile.profile;
            // An entity the profile's selectors leave out gets `skipped` verdicts, so leaving a
            // profile (a label removed) replaces its old verdicts instead of freezing them.
            let selected = compiled_profile.selects(entity);
            let remediate = profile
                .remediate_mode()
                .map(|m| m.as_str())
                .unwrap_or("off");
            let alert = profile.alert_mode().map(|m| m.as_str()).unwrap_or("off");
            for rule in profile.rules_for(entity.entity_ref.kind) {
                // The rule's latest status: reused when nothing changed, compared when recorded.
                let latest = last.get(&(profile.name.clone(), rule.rule_name().to_string()));
                let (version, outcome) = match snapshot.rules.get(&rule.rule_type) {
                    None => (
                        0,
                        Outcome::error(format!("rule type {} not found", rule.rule_type)),
                    ),
                    Some((v, Err(e))) => (
                        *v,
                        Outcome::error(format!(
                            "rule type {} does not compile: {e}",
                            rule.rule_type
                        )),
                    ),
                    Some((v, Ok(compiled))) => {
                        let outcome = match (&selected, compiled.validate(&rule.def, &rule.params))
                        {
                            (Err(e), _) => Outcome::error(e),
                            (Ok(false), _) => Outcome::new(
                                EvalStatus::Skipped,
                                "entity not selected by the profile",
                            ),
                            (Ok(true), Err(e)) => Outcome::error(e),
                            (Ok(true), Ok(())) => match &memo {
                                Err(why) => Outcome::error(why.as_str()),
                                Ok((memo, github)) => {
                                    let previous = latest.filter(|l| l.rule_type_version == *v);
                                    // A span per rule evaluation: its reads are children.
                                    let span = tracing::info_span!(
                                        "evaluate_rule",
                                        profile = %profile.name,
                                        rule_type = %rule.rule_type,
                                        rule = %rule.rule_name(),
                                        status = tracing::field::Empty,
                                    );
                                    let outcome = tracing::Instrument::instrument(
                                        self.evaluate(
                                            compiled.clone(),
                                            entity,
                                            rule,
                                            (memo, *github),
                                            previous,
                                            unchanged,
                                        ),
                                        span.clone(),
                                    )
                                    .await?;
                                    span.record("status", outcome.status.as_str());
                                    outcome
                                }
                            },
                        };
                        (*v, outcome)
                    }
                };
                self.metrics.inc(
                    &plumbline_telemetry::catalog::EVALUATOR_EVALUATIONS,
                    &[
                        (
                            "rule_type",
                            plumbline_telemetry::catalog::RULE_TYPE_LABELS
                                .value(rule.rule_type.as_str()),
                        ),
                        ("status", outcome.status.as_str()),
                    ],
                    1,
                );
                let (row, verdict) = RuleResult {
                    record,
                    event,
                    entity,
                    profile: &profile.name,
                    rule_type: &rule.rule_type,
                    rule_name: rule.rule_name(),
                    version,
                    remediate,
                    alert,
                    previous: latest,
                }
                .into_parts(outcome);
                records.push(row);
                verdicts.push(verdict);
            }
        }
        Ok((records, verdicts))
    }

    /// Publishes the verdicts together, each acknowledged by the broker, keyed by the entity.
    async fn publish_verdicts(&self, id: &str, verdicts: &[Verdict]) -> Result<(), Failure> {
        // The verdicts are children of this consumer span: one trace from the webhook.
        let trace = plumbline_bus::TraceContext::current();
        let (producer, topic) = (&self.producer, &self.topics.verdicts);
        let sends = verdicts.iter().map(|v| {
            let payload = v.encode_to_vec();
            let trace = trace.clone();
            async move {
                producer
                    .publish(
                        topic,
                        id,
                        &payload,
                        "dev.plumbline.verdict.v1",
                        &v.evaluation_id,
                        &trace,
                        &BTreeMap::new(),
                    )
                    .await
            }
        });
        for r in futures::future::join_all(sends).await {
            r.map_err(|e| Failure::Unavailable {
                cause: WaitCause::Dependency,
                reason: format!("kafka: {e}"),
                until: None,
            })?;
        }
        Ok(())
    }

    fn record_cache_stats(&self) {
        // The cache is the services' own client's, shared by every credential's client.
        let cache = self.credentials.own().cache_stats();
        self.metrics.set_gauge(
            &plumbline_telemetry::catalog::GITHUB_ETAG_CACHE_HITS,
            &[],
            cache.hits,
        );
        self.metrics.set_gauge(
            &plumbline_telemetry::catalog::GITHUB_ETAG_CACHE_MISSES,
            &[],
            cache.misses,
        );
    }

    /// Ingests (async I/O) and evaluates (CPU, on the blocking pool) one rule.
    async fn evaluate(
        &self,
        rule: Arc<CompiledRule>,
        entity: &Entity,
        pr: &ProfileRule,
        (provider, github): (&Memo<'_>, &GitHub),
        previous: Option<&plumbline_store::LastVerdict>,
        unchanged: bool,
    ) -> Result<Outcome, Failure> {
        // Everything the entity's last evaluation read answers 304 and nothing else it was
        // decided on changed: the verdict stands without reading or evaluating again.
        if unchanged && rule.verdict_reusable() {
            if let Some(outcome) = previous.and_then(reused) {
                self.metrics
                    .inc(&plumbline_telemetry::catalog::EVALUATOR_REUSED, &[], 1);
                return Ok(outcome);
            }
        }
        let inv = Invocation {
            entity,
            params: &pr.params,
            def: &pr.def,
        };
        let ingested = match rule.ingest(&inv, provider).await {
            Ok(i) => i,
            Err(IngestError::Rule(e)) => return Ok(Outcome::error(e)),
            Err(IngestError::NotApplicable(why)) => {
                return Ok(Outcome::new(plumbline_domain::EvalStatus::Skipped, why))
            }
            // The provider is down or limiting us: retry the record rather than publish an
            // error verdict that says nothing about the repository.
            Err(IngestError::Transient(e)) => return Err(provider_unavailable(e)),
        };
        // Same input, same rule version and parameters (all in the digest): the last verdict
        // stands, without evaluating again. Errors are always re-evaluated.
        if let Some(outcome) = previous
            .filter(|p| p.input_digest == ingested.digest && rule.verdict_reusable())
            .and_then(reused)
        {
            self.metrics
                .inc(&plumbline_telemetry::catalog::EVALUATOR_REUSED, &[], 1);
            return Ok(outcome);
        }
        evaluate_on_blocking_pool(rule, ingested, entity, pr, github, &self.egress)
            .await
            .or_else(|e| {
                Ok(Outcome::new(
                    EvalStatus::Error,
                    format!("evaluation panicked: {e}"),
                ))
            })
    }
}

/// A previous verdict as this evaluation's outcome; never an error (errors are evaluated again).
fn reused(p: &plumbline_store::LastVerdict) -> Option<Outcome> {
    if p.status == EvalStatus::Error {
        return None;
    }
    let mut outcome = Outcome::new(p.status, p.message.clone());
    outcome.details = serde_json::from_value(p.details.clone()).unwrap_or_default();
    outcome.input_digest = p.input_digest.clone();
    Some(outcome)
}

/// A digest of everything an entity's verdicts are decided on besides what is read from
/// GitHub: the entity as registered (names, properties, labels, credential) and, for every rule
/// that applies to its kind, the profile, the rule type's version and content, and the rule's
/// parameters and definition. Equal digests and unchanged reads mean equal verdicts (for rules
/// that read nothing else: see `CompiledRule::verdict_reusable`).
fn context_digest(entity: &Entity, snapshot: &catalog::Snapshot) -> String {
    let mut rules = Vec::new();
    for entry in &snapshot.profiles {
        let Ok(profile) = &entry.compiled else {
            continue;
        };
        // Whether the profile selects the entity decides between a verdict and `skipped`.
        let selected = match profile.selects(entity) {
            Ok(selected) => serde_json::json!(selected),
            Err(e) => serde_json::json!(e.to_string()),
        };
        for rule in profile.profile.rules_for(entity.entity_ref.kind) {
            let (version, digest) = match snapshot.rules.get(&rule.rule_type) {
                Some((v, Ok(c))) => (*v, c.digest.as_str()),
                Some((v, Err(_))) => (*v, "error"),
                None => (0, "missing"),
            };
            rules.push(serde_json::json!([
                profile.profile.name,
                selected,
                rule.rule_name(),
                rule.rule_type,
                version,
                digest,
                rule.params,
                rule.def,
            ]));
        }
    }
    let doc = serde_json::json!({
        "entity": entity.id(),
        "project": entity.project,
        "credential": entity.credential,
        "owner": entity.owner,
        "name": entity.name,
        "properties": entity.properties,
        "labels": entity.labels,
        "rules": rules,
    });
    plumbline_engine::json_digest(&doc)
}

#[cfg(test)]
mod tests {
    use super::below_floor;
    use plumbline_github::Quota;

    fn q(remaining: u64, reset: u64) -> Option<Quota> {
        Some(Quota {
            remaining,
            limit: 5000,
            reset_epoch_secs: reset,
            limited_until_epoch_secs: None,
        })
    }

    #[test]
    fn an_evaluation_starts_only_above_the_floor_while_the_window_runs() {
        assert_eq!(below_floor(q(128, 2000), 128, 1000), None, "at the floor");
        assert_eq!(below_floor(q(127, 2000), 128, 1000), Some(2000));
        assert_eq!(below_floor(q(0, 900), 128, 1000), None, "renewed since");
        assert_eq!(below_floor(q(0, 2000), 0, 1000), None, "no floor");
        assert_eq!(below_floor(None, 128, 1000), None, "quota not known yet");
        let small = Some(Quota {
            remaining: 5,
            limit: 60,
            reset_epoch_secs: 2000,
            limited_until_epoch_secs: None,
        });
        assert_eq!(
            below_floor(small, 128, 1000),
            Some(2000),
            "a tenth of 60 is 6: 5 is below"
        );
        let small = small.map(|q| Quota { remaining: 6, ..q });
        assert_eq!(
            below_floor(small, 128, 1000),
            None,
            "at a tenth of the limit"
        );
    }
}
