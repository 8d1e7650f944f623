//! Reconciler: re-emits every registered entity once per interval.
//!
//! Webhooks get lost; a level-triggered system tolerates that by looking again. Each interval
//! the active reconciler pages through every active entity and emits `EntityEvent{SWEEP}`,
//! spread evenly over the interval (with jitter) so evaluators' provider calls stay under the
//! rate budget instead of arriving as one burst. One instance is active at a time (a Postgres
//! session advisory lock); the others stand by and take over if its connection dies.

use plumbline_bus::{Producer, ProducerConfig, Topics, TraceContext};
use plumbline_domain::EventReason;
use plumbline_proto::v1::EntityEvent;
use plumbline_proto::Message as _;
use plumbline_runtime::ServiceArgs;
use plumbline_store::Store;
use plumbline_telemetry::{Health, Metrics};
use rand::Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod quota;

/// Advisory lock id of the active reconciler ("PLUMREC").
const RECONCILER_LOCK: i64 = 0x0050_4c55_4d52_4543;
/// The default `--checks-max-age-days`.
const DEFAULT_CHECKS_MAX_AGE_DAYS: u64 = 7;

/// Reconciler configuration (flags or environment).
#[derive(clap::Args, Debug, Clone)]
pub struct ReconcilerConfig {
    #[command(flatten)]
    pub service: ServiceArgs,

    /// Every entity is re-evaluated at least once per interval.
    #[arg(long, env = "PLUMB_RECONCILE_INTERVAL_SECS", default_value_t = 3600)]
    pub interval_secs: u64,

    /// Entities read per page while sweeping.
    #[arg(long, env = "PLUMB_RECONCILE_PAGE_SIZE", default_value_t = 500)]
    pub page_size: i64,

    /// Evaluation history older than this many days is deleted (before each sweep, by the
    /// active instance). The latest status is kept regardless.
    #[arg(long, env = "PLUMB_HISTORY_MAX_AGE_DAYS", default_value_t = 90)]
    pub history_max_age_days: u64,

    /// At most this many history rows are kept per entity x profile x rule (the newest).
    #[arg(long, env = "PLUMB_HISTORY_KEEP_PER_RULE", default_value_t = 1000)]
    pub history_keep_per_rule: i64,

    /// Checks (one row per evaluation of an entity, whatever changed) older than this many
    /// days are deleted. Each rule's history keeps its changes for `--history-max-age-days`
    /// regardless; at 100,000 repositories swept hourly, a week of checks is 16.8 million rows.
    #[arg(long, env = "PLUMB_CHECKS_MAX_AGE_DAYS", default_value_t = DEFAULT_CHECKS_MAX_AGE_DAYS)]
    pub checks_max_age_days: u64,

    /// Percent of each credential's hourly GitHub quota that sweeps leave to webhooks and
    /// fixes: an entity whose credential has no more than this left (as the evaluators last
    /// read it) is deferred to the next sweep, and `plumb status` says until when. 0: sweeps
    /// stop only when GitHub says the credential is limited.
    /// At most 90: a larger reserve would stop every sweep for good.
    #[arg(long, env = "PLUMB_SWEEP_QUOTA_RESERVE_PERCENT", default_value_t = 10,
          value_parser = clap::value_parser!(u8).range(0..=90))]
    pub sweep_quota_reserve_percent: u8,
}

impl ReconcilerConfig {
    pub fn new(service: ServiceArgs, interval: Duration) -> Self {
        ReconcilerConfig {
            service,
            interval_secs: interval.as_secs().max(1),
            page_size: 500,
            history_max_age_days: 90,
            history_keep_per_rule: 1000,
            checks_max_age_days: DEFAULT_CHECKS_MAX_AGE_DAYS,
            sweep_quota_reserve_percent: 10,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcilerError {
    #[error("kafka settings: {0}")]
    KafkaSettings(#[from] plumbline_runtime::KafkaSettingsError),
    #[error("kafka: {0}")]
    Bus(#[from] plumbline_bus::BusError),
    #[error("postgres: {0}")]
    Store(#[from] plumbline_store::StoreError),
    #[error("health endpoint: {0}")]
    Health(std::io::Error),
}

pub struct Running {
    pub health_addr: SocketAddr,
    pub metrics: Metrics,
    pub task: JoinHandle<()>,
}

pub async fn start(
    config: ReconcilerConfig,
    shutdown: CancellationToken,
) -> Result<Running, ReconcilerError> {
    let s = &config.service;
    let store = Store::connect_with_timeout(
        secrecy::ExposeSecret::expose_secret(&s.database_url),
        s.database_max_connections.max(2),
        Duration::from_millis(s.database_statement_timeout_ms),
    )?;
    s.wait_for_schema(&store).await?;
    let producer = Producer::new(
        &ProducerConfig::new(&s.kafka_brokers, "plumbline-reconciler")
            .with_client_options(s.kafka.client_options()?),
    )?;
    let metrics = Metrics::new();
    let health = Health::new("reconciler");
    let health_addr = plumbline_telemetry::serve(
        s.health_listen,
        health.clone(),
        metrics.clone(),
        shutdown.clone(),
    )
    .await
    .map_err(ReconcilerError::Health)?;
    let r = Reconciler {
        store,
        producer,
        topics: Topics::with_prefix(&s.topic_prefix),
        interval: Duration::from_secs(config.interval_secs.max(1)),
        page_size: config.page_size.max(1),
        history_max_age: Duration::from_secs(config.history_max_age_days.max(1) * 86_400),
        history_keep_per_rule: config.history_keep_per_rule.max(1),
        checks_max_age: Duration::from_secs(config.checks_max_age_days.max(1) * 86_400),
        quota_reserve_percent: config.sweep_quota_reserve_percent.min(90),
        own_project: Some(s.own_credential_project.clone()).filter(|p| !p.is_empty()),
        resume_after: std::sync::Mutex::new(std::collections::HashMap::new()),
        metrics: metrics.clone(),
        health,
    };
    let depth = dlq_depth_loop(
        r.producer.clone(),
        vec![r.topics.dlq.clone(), r.topics.verdicts_dlq.clone()],
        metrics.clone(),
        shutdown.clone(),
    );
    let task = tokio::spawn(async move {
        r.run(shutdown).await;
        let _ = depth.await;
    });
    Ok(Running {
        health_addr,
        metrics,
        task,
    })
}

pub async fn run(
    config: ReconcilerConfig,
    shutdown: CancellationToken,
) -> Result<(), ReconcilerError> {
    let r = start(config, shutdown).await?;
    let _ = r.task.await;
    Ok(())
}

/// How often the dead-letter topics are measured (and how long after start the first time).
const DLQ_EVERY: Duration = Duration::from_secs(60);

/// Publishes `plumbline_dlq_depth` (records held in each dead-letter topic) every
/// [`DLQ_EVERY`]. The reconciler measures for the whole deployment, once a minute and not at
/// start: a metadata request per topic from every consumer, as often as lag is measured, made
/// a Kafka-protocol broker (tansu) stall the consumer group forming beside it (measured: three
/// failures in five runs of the evaluator-kill test, none in five without).
fn dlq_depth_loop(
    producer: Producer,
    topics: Vec<String>,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(DLQ_EVERY) => {}
            }
            for topic in &topics {
                let (p, t) = (producer.clone(), topic.clone());
                let depth =
                    tokio::task::spawn_blocking(move || p.topic_depth(&t, Duration::from_secs(5)))
                        .await;
                match depth {
                    Ok(Ok(n)) => metrics.set_gauge(
                        &plumbline_telemetry::catalog::DLQ_DEPTH,
                        &[("topic", topic)],
                        n.max(0) as u64,
                    ),
                    Ok(Err(e)) => {
                        tracing::debug!(%topic, error = %e, "dead-letter depth unavailable")
                    }
                    Err(_) => return,
                }
            }
        }
    })
}

struct Reconciler {
    store: Store,
    producer: Producer,
    topics: Topics,
    interval: Duration,
    page_size: i64,
    history_max_age: Duration,
    history_keep_per_rule: i64,
    checks_max_age: Duration,
    quota_reserve_percent: u8,
    /// The project whose unbound entities the services' own credential acts for.
    own_project: Option<String>,
    /// Per project, the entity after which the next sweep starts: just before the first one
    /// the last sweep deferred, so a fleet larger than its quota does not defer the same tail
    /// every sweep.
    resume_after: std::sync::Mutex<std::collections::HashMap<String, String>>,
    metrics: Metrics,
    health: Health,
}

const LOOP: &str = "reconcile";

impl Reconciler {
    fn stall(&self) -> Duration {
        self.interval * 2 + Duration::from_secs(60)
    }

    async fn run(self, shutdown: CancellationToken) {
        loop {
            self.health.beat(LOOP, self.stall());
            let lock = match self.store.try_lock(RECONCILER_LOCK).await {
                Ok(l) => l,
                Err(e) => {
                    self.health.set_ready(false);
                    tracing::warn!(error = %e, "cannot reach postgres for the reconciler lock");
                    None
                }
            };
            let Some(lock) = lock else {
                // Standby (or database unreachable): look again shortly.
                self.metrics
                    .set_gauge(&plumbline_telemetry::catalog::RECONCILER_ACTIVE, &[], 0);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                }
            };
            self.health.set_ready(true);
            self.metrics
                .set_gauge(&plumbline_telemetry::catalog::RECONCILER_ACTIVE, &[], 1);
            tracing::info!(interval_secs = self.interval.as_secs(), "reconciler active");
            // Sweep every interval for as long as the lock holds.
            loop {
                let started = Instant::now();
                self.prune_history().await;
                match self.sweep(&shutdown, &lock).await {
                    Ok(n) => {
                        self.metrics
                            .inc(&plumbline_telemetry::catalog::RECONCILER_SWEEPS, &[], 1);
                        tracing::info!(
                            entities = n,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "sweep complete"
                        );
                    }
                    Err(e) => tracing::warn!(error = %e, "sweep failed, next interval retries"),
                }
                self.health.beat(LOOP, self.stall());
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep_until(started + self.interval) => {}
                }
                if !lock.still_held().await {
                    tracing::warn!("reconciler lock lost, standing by");
                    break;
                }
            }
            drop(lock);
        }
    }

    /// History and checks retention, in bounded chunks; a failure is logged and retried next
    /// interval.
    async fn prune_history(&self) {
        let pruned = self
            .in_chunks("history", |chunk| {
                self.store
                    .prune_history(self.history_max_age, self.history_keep_per_rule, chunk)
            })
            .await;
        if pruned > 0 {
            self.metrics
                .inc(&plumbline_telemetry::catalog::HISTORY_PRUNED, &[], pruned);
            tracing::info!(rows = pruned, "evaluation history pruned");
        }
        // Checks (one per evaluation of an entity), by age.
        self.in_chunks("check", |chunk| {
            self.store.prune_checks(self.checks_max_age, chunk)
        })
        .await;
        // Waits are read only while ahead; a day after they ended they go.
        if let Err(e) = self.store.prune_waits(Duration::from_secs(86_400)).await {
            tracing::warn!(error = %e, "pruning ended waits failed, next interval retries");
        }
    }

    /// Runs a retention pass of at most `CHUNK` rows until one deletes fewer, beating the
    /// health loop between passes so a long prune is not taken for a stall. Returns the rows
    /// deleted; a failure is logged and ends the loop (the next interval retries).
    async fn in_chunks<F, Fut>(&self, what: &str, pass: F) -> u64
    where
        F: Fn(i64) -> Fut,
        Fut: std::future::Future<Output = Result<u64, plumbline_store::StoreError>>,
    {
        const CHUNK: i64 = 10_000;
        let mut total = 0;
        loop {
            match pass(CHUNK).await {
                Ok(n) => {
                    total += n;
                    if n < CHUNK as u64 {
                        return total;
                    }
                    self.health.beat(LOOP, self.stall());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "{what} retention failed, next interval retries");
                    return total;
                }
            }
        }
    }

    /// Emits one sweep event per active entity, spread over the interval, except for entities
    /// whose credential's quota is at its reserve (deferred to the next sweep, see
    /// [`quota`]). Each project's progress is written for `plumb status` as the sweep goes.
    /// Returns the entities gone through.
    async fn sweep(
        &self,
        shutdown: &CancellationToken,
        lock: &plumbline_store::LockGuard,
    ) -> Result<u64, ReconcilerError> {
        let mut total = 0u64;
        let projects = self.store.count_active_entities_by_project().await?;
        let count: u64 = projects.iter().map(|(_, n)| (*n).max(0) as u64).sum();
        if count == 0 {
            return Ok(0);
        }
        // Pace the whole fleet over ~90% of the interval.
        let step = self.interval.mul_f64(0.9) / (count.min(u32::MAX as u64) as u32);
        // One moment on both clocks: pacing (monotonic) and what people read (wall).
        let started_at = chrono::Utc::now();
        let start = Instant::now();
        let at_slot = |slot: u64| {
            started_at
                + chrono::Duration::from_std(step * (slot.min(u32::MAX as u64) as u32))
                    .unwrap_or_default()
        };
        // Progress, for dashboards and `plumb status`: how many, how far, when done.
        {
            use plumbline_telemetry::catalog::{
                RECONCILER_SWEEP_DONE, RECONCILER_SWEEP_ENTITIES, RECONCILER_SWEEP_FINISH,
            };
            self.metrics
                .set_gauge(&RECONCILER_SWEEP_ENTITIES, &[], count);
            self.metrics.set_gauge(&RECONCILER_SWEEP_DONE, &[], 0);
            self.metrics.set_gauge(
                &RECONCILER_SWEEP_FINISH,
                &[],
                at_slot(count).timestamp().max(0) as u64,
            );
        }
        // Each project's share, written before the first event so `plumb status` shows the
        // whole sweep at once.
        let mut progress = Vec::with_capacity(projects.len());
        let mut offset = 0u64;
        for (project, n) in &projects {
            let n = (*n).max(0) as u64;
            let p = plumbline_store::SweepProgress {
                project: project.clone(),
                started_at,
                entities: n as i64,
                done: 0,
                deferred: 0,
                deferred_until: None,
                expected_finish: at_slot(offset + n),
                updated_at: started_at,
            };
            self.write_progress(&p).await;
            progress.push(p);
            offset += n;
        }
        let covered: Vec<String> = projects.iter().map(|(p, _)| p.clone()).collect();
        if let Err(e) = self.store.retain_sweep_progress(&covered).await {
            tracing::debug!(error = %e, "forgetting old sweep progress failed");
        }
        let mut gate = quota::QuotaGate::new(self.quota_reserve_percent);
        // The sweep is one span; each entity's event starts a trace of its own (a sweep's one
        // trace of 100,000 entities would be unreadable), linked to the sweep.
        let sweep = tracing::info_span!("reconcile.sweep", entities = count);
        let sweep_cx = TraceContext::of(&sweep);
        for p in &mut progress {
            // Read, not taken: a sweep that ends early (lock lost, shutdown) leaves it for the
            // next one.
            let resume = self
                .resume_after
                .lock()
                .ok()
                .and_then(|r| r.get(&p.project).cloned());
            // Two passes when resuming: from the resume point to the end, then from the start
            // up to it; one pass otherwise.
            let mut previous: Option<String> = resume.clone();
            let passes: Vec<(Option<String>, Option<String>)> = match resume {
                Some(r) => vec![(Some(r.clone()), None), (None, Some(r))],
                None => vec![(None, None)],
            };
            let mut first_deferred_after: Option<Option<String>> = None;
            for (from, upto) in passes {
                let mut after = from;
                loop {
                    // Another instance may have taken over if our lock's connection died.
                    if !lock.still_held().await {
                        tracing::warn!("reconciler lock lost mid-sweep, stopping the sweep");
                        return Ok(total);
                    }
                    // The upper bound is the database's comparison, as the order is.
                    let page = self
                        .store
                        .list_entities_between(
                            &p.project,
                            after.as_deref(),
                            upto.as_deref(),
                            self.page_size,
                        )
                        .await?;
                    for e in &page {
                        let id = e.id();
                        let slot = total;
                        total += 1;
                        p.done += 1;
                        // Jitter within the entity's slot, so replicas' sweeps never align.
                        let jitter = step.mul_f64(rand::rng().random_range(0.0..0.5));
                        let due = start + step * (slot.min(u32::MAX as u64) as u32) + jitter;
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(total),
                            _ = tokio::time::sleep_until(due) => {}
                        }
                        self.metrics.set_gauge(
                            &plumbline_telemetry::catalog::RECONCILER_SWEEP_DONE,
                            &[],
                            total,
                        );
                        // Asked at the entity's own slot: a quota that renews mid-sweep lets
                        // the rest of the sweep go on.
                        let deferred = match self.quota_key(e) {
                            Some(key) => gate.deferred_until(&self.store, &key).await,
                            None => None,
                        };
                        if let Some(until) = deferred {
                            p.deferred += 1;
                            p.deferred_until =
                                Some(p.deferred_until.map_or(until, |u| u.min(until)));
                            first_deferred_after.get_or_insert_with(|| previous.clone());
                            self.metrics.inc(
                                &plumbline_telemetry::catalog::RECONCILER_SWEEP_DEFERRED,
                                &[],
                                1,
                            );
                            tracing::debug!(entity = %id, %until, "sweep deferred: the credential's quota is at its reserve");
                        } else {
                            self.emit(e, &sweep_cx).await;
                        }
                        previous = Some(id);
                    }
                    self.write_progress(p).await;
                    match page.last() {
                        Some(e) if page.len() as i64 == self.page_size => after = Some(e.id()),
                        _ => break,
                    }
                }
            }
            // What this sweep went through (entities registered or retired meanwhile make the
            // count taken at the start approximate).
            p.entities = p.done;
            self.write_progress(p).await;
            if let Ok(mut r) = self.resume_after.lock() {
                match &first_deferred_after {
                    Some(Some(id)) => r.insert(p.project.clone(), id.clone()),
                    // Nothing deferred, or from its first entity: start from the start.
                    _ => r.remove(&p.project),
                };
            }
            if first_deferred_after.is_some() {
                tracing::info!(project = %p.project, deferred = p.deferred, until = ?p.deferred_until, "sweep deferred entities whose credential's quota is at its reserve");
            }
        }
        Ok(total)
    }

    /// The quota an entity's evaluation spends, `None` when it spends none: an unbound entity
    /// outside the own credential's project is not read at all (its rules say why).
    fn quota_key(&self, e: &plumbline_domain::Entity) -> Option<String> {
        let read = e.credential.is_some() || self.own_project.as_deref() == Some(&e.project);
        read.then(|| plumbline_store::quota_key(&e.project, e.credential.as_deref()))
    }

    /// Writes a project's sweep progress; a failure is logged (progress is for people).
    async fn write_progress(&self, p: &plumbline_store::SweepProgress) {
        if let Err(e) = self.store.record_sweep_progress(p).await {
            tracing::debug!(project = %p.project, error = %e, "recording sweep progress failed");
        }
    }

    /// Publishes one entity's sweep event, as a trace of its own linked to the sweep's.
    async fn emit(&self, e: &plumbline_domain::Entity, sweep_cx: &TraceContext) {
        let mut ev = EntityEvent::new(&e.entity_ref, EventReason::Sweep);
        ev.owner = e.owner.clone();
        ev.name = e.name.clone();
        let entity_span = tracing::info_span!(
            parent: None,
            "reconcile.entity",
            otel.kind = "producer",
            entity = %e.id(),
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        sweep_cx.link_from(&entity_span);
        plumbline_telemetry::record_trace_ids(&entity_span);
        let sent = self
            .producer
            .publish(
                &self.topics.entity_events,
                &e.id(),
                &ev.encode_to_vec(),
                "dev.plumbline.entity_event.v1",
                &ev.event_id,
                &TraceContext::of(&entity_span),
                &BTreeMap::new(),
            )
            .await;
        match sent {
            Ok(_) => self
                .metrics
                .inc(&plumbline_telemetry::catalog::RECONCILER_EVENTS, &[], 1),
            // One failed publish must not drop the rest of the fleet from the sweep.
            Err(err) => {
                tracing::warn!(entity = %e.id(), error = %err, "sweep event not published");
                self.metrics.inc(
                    &plumbline_telemetry::catalog::RECONCILER_PUBLISH_FAILURES,
                    &[],
                    1,
                );
            }
        }
    }
}
