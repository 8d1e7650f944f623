//! Every Plumbline service in one process, wired together: what `plumb dev` runs and what the
//! end-to-end tests start (against a real broker and a real Postgres).
//!
//! Each service has its own shutdown token, so tests can stop and restart one (the evaluator
//! restart test) while the rest keep running.

use anyhow::Context as _;
use plumbline_github_sim::{SimConfig, Simulator};
use plumbline_runtime::ServiceArgs;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// (No `Debug`: it holds the webhook secret, the GitHub token and the database URL.)
#[derive(Clone)]
pub struct StackConfig {
    pub kafka_brokers: String,
    pub database_url: String,
    /// Prefix for topics and consumer groups, so several stacks can share a broker.
    pub topic_prefix: String,
    pub webhook_secret: String,
    pub reconcile_interval: Duration,
    pub session_timeout: Duration,
    pub sim_listen: SocketAddr,
    pub ingest_listen: SocketAddr,
    pub control_listen: SocketAddr,
    /// When set, the simulator accepts only this token and every service sends it: GitHub's
    /// per-credential limits (content creation) apply, as in production. None = open mode,
    /// anonymous requests, no content-creation limit in the simulator.
    pub github_token: Option<String>,
    /// The actuator's content-creation budget per credential (per minute, per hour).
    pub content_per_minute: u32,
    pub content_per_hour: u32,
    /// The windows those count over (GitHub's: a minute and an hour; shorter in tests, which
    /// the actuator allows only because the simulator is on loopback).
    pub content_windows: (Duration, Duration),
    /// The actuator's cool-off after a failed remediation.
    pub cool_off: Duration,
    /// The actuator's first wait after a fix that did not hold.
    pub fix_backoff: Duration,
    /// Run the actuator in process (false: tests run actuator processes of their own).
    pub run_actuator: bool,
    /// Whether the stack runs an evaluator in process (tests of evaluator replicas run theirs
    /// as processes and keep this one out of their group from the start).
    pub run_evaluator: bool,
    /// A GitHub App every service holds the key of (its id and the key's PEM file): projects'
    /// installation providers act with it.
    pub github_app: Option<(u64, std::path::PathBuf)>,
    /// Requests a credential must have left for an evaluation to start (the evaluator's
    /// `--quota-floor`).
    pub evaluator_quota_floor: u64,
    /// The evaluator's ETag cache (`--github-etag-cache-mib`); 0 keeps no answer in memory,
    /// as when a fleet is too large for the cache to hold until the next sweep.
    pub evaluator_etag_cache_mib: usize,
    /// Hosts data sources and vulnerability checks may reach over http and on loopback (the
    /// services' `--egress-http-allow-host` and `--egress-private-allow-host`): a test's OSV.
    pub egress_local_hosts: Vec<String>,
    /// The container registry artifact rules read (the evaluator's `--artifact-registry`);
    /// a loopback one is spoken to over plain HTTP. None: ghcr.io.
    pub artifact_registry: Option<String>,
    /// Private Sigstore roots by name (`--sigstore-trusted-root NAME=PATH`).
    pub sigstore_roots: Vec<(String, std::path::PathBuf)>,
}

impl StackConfig {
    /// Loopback addresses on ephemeral ports.
    pub fn local(kafka_brokers: &str, database_url: &str, topic_prefix: &str) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        StackConfig {
            kafka_brokers: kafka_brokers.to_string(),
            database_url: database_url.to_string(),
            topic_prefix: topic_prefix.to_string(),
            webhook_secret: format!("sim-{}", uuid::Uuid::new_v4()),
            reconcile_interval: Duration::from_secs(3600),
            session_timeout: Duration::from_secs(6),
            sim_listen: any,
            ingest_listen: any,
            control_listen: any,
            github_token: None,
            content_per_minute: 80,
            content_per_hour: 500,
            content_windows: (Duration::from_secs(60), Duration::from_secs(3600)),
            cool_off: Duration::from_secs(300),
            fix_backoff: Duration::from_secs(60),
            run_actuator: true,
            run_evaluator: true,
            github_app: None,
            evaluator_quota_floor: plumbline_evaluator::DEFAULT_QUOTA_FLOOR,
            evaluator_etag_cache_mib: plumbline_runtime::DEFAULT_GITHUB_ETAG_CACHE_MIB,
            egress_local_hosts: Vec::new(),
            artifact_registry: None,
            sigstore_roots: Vec::new(),
        }
    }
}

struct Service {
    token: CancellationToken,
    task: JoinHandle<()>,
}

impl Service {
    async fn stop(self) {
        self.token.cancel();
        let _ = self.task.await;
    }
}

pub struct Stack {
    pub config: StackConfig,
    pub sim: Simulator,
    pub sim_url: String,
    pub ingest_addr: SocketAddr,
    pub control_addr: SocketAddr,
    pub actuator_metrics: plumbline_telemetry::Metrics,
    /// The running evaluator's metrics (replaced when it restarts).
    pub evaluator_metrics: Option<plumbline_telemetry::Metrics>,
    pub outcomes: tokio::sync::broadcast::Sender<plumbline_proto::v1::ActionOutcome>,
    /// Each running service's `/healthz`, `/readyz` and `/metrics` address.
    pub health: std::collections::BTreeMap<&'static str, SocketAddr>,
    root: CancellationToken,
    ingest: Option<Service>,
    evaluator: Option<Service>,
    actuator: Option<Service>,
    reconciler: Option<Service>,
    control: Option<Service>,
}

impl Stack {
    fn service_args(&self) -> ServiceArgs {
        service_args(&self.config, &self.sim_url)
    }

    /// Starts the simulator and every service. The database must be migrated and the topics
    /// must exist.
    pub async fn start(config: StackConfig) -> anyhow::Result<Stack> {
        let root = CancellationToken::new();
        let sim = Simulator::new(SimConfig {
            webhook_url: None,
            webhook_secret: config.webhook_secret.clone(),
            tokens: config.github_token.iter().cloned().collect(),
            ..SimConfig::default()
        });
        let sim_addr = sim
            .serve(config.sim_listen, root.child_token())
            .await
            .context("starting the github simulator")?;
        let sim_url = format!("http://{sim_addr}");

        let ingest_token = root.child_token();
        let ingest = plumbline_ingest::start(
            plumbline_ingest::IngestConfig {
                listen: config.ingest_listen,
                ..plumbline_ingest::IngestConfig::local(
                    &config.kafka_brokers,
                    &config.database_url,
                    &config.topic_prefix,
                    &config.webhook_secret,
                )
            },
            ingest_token.clone(),
        )
        .await
        .context("starting ingest")?;
        sim.set_webhook_url(Some(format!("http://{}/webhooks/github", ingest.addr)));

        let args = service_args(&config, &sim_url);
        let control_token = root.child_token();
        let control = plumbline_control::start(
            plumbline_control::ControlConfig {
                listen: config.control_listen,
                ..plumbline_control::ControlConfig::local(args.clone())
            },
            control_token.clone(),
        )
        .await
        .context("starting control")?;

        let mut stack = Stack {
            sim,
            sim_url,
            ingest_addr: ingest.addr,
            control_addr: control.addr,
            actuator_metrics: plumbline_telemetry::Metrics::new(),
            outcomes: tokio::sync::broadcast::channel(1024).0,
            health: [
                ("ingest", ingest.health_addr),
                ("control", control.health_addr),
            ]
            .into(),
            root,
            ingest: Some(Service {
                token: ingest_token,
                task: ingest.task,
            }),
            evaluator: None,
            evaluator_metrics: None,
            actuator: None,
            reconciler: None,
            control: Some(Service {
                token: control_token,
                task: control.task,
            }),
            config,
        };
        if stack.config.run_actuator {
            stack.start_actuator().await?;
        }
        if stack.config.run_evaluator {
            stack.start_evaluator().await?;
        }
        stack.start_reconciler().await?;
        Ok(stack)
    }

    pub async fn start_evaluator(&mut self) -> anyhow::Result<()> {
        if self.evaluator.is_some() {
            return Ok(());
        }
        let token = self.root.child_token();
        let mut args = self.service_args();
        args.github_etag_cache_mib = self.config.evaluator_etag_cache_mib;
        let mut ec = plumbline_evaluator::EvaluatorConfig::new(args);
        ec.consumer.group_id = format!("{}plumbline-evaluator", self.config.topic_prefix);
        ec.consumer.session_timeout_ms = self.config.session_timeout.as_millis() as u64;
        ec.catalog_max_staleness_ms = 500;
        ec.quota_floor = self.config.evaluator_quota_floor;
        if let Some(registry) = &self.config.artifact_registry {
            ec.artifacts.artifact_registry = registry.clone();
            ec.artifacts.artifact_registry_plain_http = true;
        }
        ec.artifacts.sigstore_trusted_roots = self
            .config
            .sigstore_roots
            .iter()
            .map(|(name, path)| format!("{name}={}", path.display()))
            .collect();
        let r = plumbline_evaluator::start(ec, token.clone())
            .await
            .context("starting evaluator")?;
        self.evaluator_metrics = Some(r.metrics.clone());
        self.health.insert("evaluator", r.health_addr);
        self.evaluator = Some(Service {
            token,
            task: r.task,
        });
        Ok(())
    }

    /// Stops the evaluator gracefully (its in-flight record is finished or abandoned unstored).
    pub async fn stop_evaluator(&mut self) {
        if let Some(s) = self.evaluator.take() {
            s.stop().await;
        }
    }

    /// The actuator configuration the stack runs with (also what tests give an actuator process).
    pub fn actuator_config(&self) -> plumbline_actuator::ActuatorConfig {
        let mut ac = plumbline_actuator::ActuatorConfig::new(self.service_args());
        ac.consumer.group_id = format!("{}plumbline-actuator", self.config.topic_prefix);
        ac.consumer.session_timeout_ms = self.config.session_timeout.as_millis() as u64;
        ac.content_per_minute = self.config.content_per_minute;
        ac.content_per_hour = self.config.content_per_hour;
        ac.content_minute_ms = self
            .config
            .content_windows
            .0
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX);
        ac.content_hour_ms = self
            .config
            .content_windows
            .1
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX);
        ac.cool_off_secs = self.config.cool_off.as_secs();
        ac.fix_backoff_secs = self.config.fix_backoff.as_secs().max(1);
        ac
    }

    pub async fn start_actuator(&mut self) -> anyhow::Result<()> {
        if self.actuator.is_some() {
            return Ok(());
        }
        let token = self.root.child_token();
        let r = plumbline_actuator::start(self.actuator_config(), token.clone())
            .await
            .context("starting actuator")?;
        self.actuator_metrics = r.metrics.clone();
        self.health.insert("actuator", r.health_addr);
        // Observers subscribed to the stack's channel keep receiving across restarts.
        let relay = self.outcomes.clone();
        let mut rx = r.outcomes.subscribe();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(o) => {
                        let _ = relay.send(o);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        self.actuator = Some(Service {
            token,
            task: r.task,
        });
        Ok(())
    }

    /// Stops the in-process actuator gracefully (e.g. to run actuator processes instead).
    pub async fn stop_actuator(&mut self) {
        if let Some(s) = self.actuator.take() {
            s.stop().await;
        }
    }

    pub async fn start_reconciler(&mut self) -> anyhow::Result<()> {
        if self.reconciler.is_some() {
            return Ok(());
        }
        let token = self.root.child_token();
        let rc = plumbline_reconciler::ReconcilerConfig::new(
            self.service_args(),
            self.config.reconcile_interval,
        );
        let r = plumbline_reconciler::start(rc, token.clone())
            .await
            .context("starting reconciler")?;
        self.health.insert("reconciler", r.health_addr);
        self.reconciler = Some(Service {
            token,
            task: r.task,
        });
        Ok(())
    }

    pub fn control_url(&self) -> String {
        format!("http://{}", self.control_addr)
    }

    pub fn ingest_url(&self) -> String {
        format!("http://{}/webhooks/github", self.ingest_addr)
    }

    /// Stops everything: ingest first (no new work), then the consumers, then the rest.
    pub async fn stop(mut self) {
        for s in [
            self.ingest.take(),
            self.reconciler.take(),
            self.evaluator.take(),
            self.actuator.take(),
            self.control.take(),
        ]
        .into_iter()
        .flatten()
        {
            s.stop().await;
        }
        self.root.cancel();
    }
}

fn service_args(config: &StackConfig, sim_url: &str) -> ServiceArgs {
    let mut a = ServiceArgs::local(&config.kafka_brokers, &config.database_url, sim_url);
    a.topic_prefix = config.topic_prefix.clone();
    a.github_token = config.github_token.clone().map(Into::into);
    if let Some((app_id, key)) = &config.github_app {
        a.github_app_id = Some(*app_id);
        a.github_app_private_key_file = Some(key.clone());
    }
    a.egress_http_allow_hosts = config.egress_local_hosts.clone();
    a.egress_private_allow_hosts = config.egress_local_hosts.clone();
    a
}
