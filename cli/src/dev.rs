//! `plumb dev`: the whole system in one process, on a simulated GitHub with a demo fleet.

use crate::pg::{PrivateCluster, LOCAL_ADMIN_URL};
use crate::stack::{Stack, StackConfig};
use crate::{client, commands, shipped};
use anyhow::Context as _;
use plumbline_bus::{EmbeddedBroker, Topics};
use plumbline_proto::v1::ActionStatus;
use plumbline_store::{admin, Store};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The database `plumb dev` owns on a shared server; recreated on every run.
const DEV_DATABASE: &str = "plumbline_dev";

#[derive(clap::Args, Debug, Clone)]
pub struct DevArgs {
    /// Kafka brokers to use; default: an embedded broker in this process.
    #[arg(long, env = "PLUMB_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,

    /// Postgres to use (its database is used as is); default: a database of its own on a local
    /// server at 127.0.0.1:5432, else a private cluster in a temporary folder.
    #[arg(long, env = "PLUMB_DATABASE_URL", hide_env_values = true, value_parser = |s: &str| Ok::<_, std::convert::Infallible>(secrecy::SecretString::from(s)))]
    pub database_url: Option<secrecy::SecretString>,

    /// Organisation of the simulated fleet.
    #[arg(long, default_value = "acme")]
    pub org: String,

    /// Repositories in the simulated fleet.
    #[arg(long, default_value_t = 24)]
    pub repos: usize,

    /// Fraction of the fleet that starts with its default branch protected.
    #[arg(long, default_value_t = 0.5)]
    pub protected_fraction: f64,

    /// Seconds between reconciler sweeps.
    #[arg(long, default_value_t = 60)]
    pub reconcile_interval_secs: u64,

    /// gRPC control API address (what `plumb status` talks to).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub control_listen: SocketAddr,

    /// Ingest (webhook receiver) address.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub ingest_listen: SocketAddr,

    /// GitHub simulator address (its admin API is under /_admin).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub sim_listen: SocketAddr,

    /// Stop by itself after this many seconds (demos and smoke tests).
    #[arg(long)]
    pub exit_after_secs: Option<u64>,

    /// Export every service's spans over OTLP/gRPC to this collector (e.g.
    /// http://127.0.0.1:4317); default: `OTEL_EXPORTER_OTLP_ENDPOINT`, else no export.
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
}

/// What a `plumb dev` run achieved.
#[derive(Debug, Clone, Default)]
pub struct DevSummary {
    pub repositories: usize,
    pub remediations: u64,
    pub passing: usize,
    pub rules: usize,
}

enum Broker {
    External(String),
    Embedded(EmbeddedBroker),
}

impl Broker {
    fn brokers(&self) -> String {
        match self {
            Broker::External(b) => b.clone(),
            Broker::Embedded(e) => e.bootstrap_servers().to_string(),
        }
    }
}

/// Finds or makes a database; returns its URL and the private cluster to keep alive, if any.
async fn database(args: &DevArgs) -> anyhow::Result<(String, Option<PrivateCluster>)> {
    // An empty value (an unset variable passed through) means "not given".
    use secrecy::ExposeSecret;
    if let Some(url) = args
        .database_url
        .as_ref()
        .map(|u| u.expose_secret())
        .filter(|u| !u.trim().is_empty())
    {
        return Ok((url.to_string(), None));
    }
    let (admin_url, cluster) = if admin::reachable(LOCAL_ADMIN_URL).await {
        println!("postgres: using the local server at 127.0.0.1:5432, database {DEV_DATABASE}");
        (LOCAL_ADMIN_URL.to_string(), None)
    } else {
        println!("postgres: no local server answers; starting a private cluster");
        let c = tokio::task::spawn_blocking(PrivateCluster::start).await??;
        println!("postgres: private cluster on 127.0.0.1:{}", c.port);
        (c.admin_url(), Some(c))
    };
    admin::drop_database(&admin_url, DEV_DATABASE)
        .await
        .context("resetting the dev database")?;
    admin::create_database(&admin_url, DEV_DATABASE)
        .await
        .context("creating the dev database")?;
    Ok((admin::with_database(&admin_url, DEV_DATABASE), cluster))
}

pub async fn run(args: DevArgs, shutdown: CancellationToken) -> anyhow::Result<DevSummary> {
    let topics = Topics::default();
    let broker = match args.kafka_brokers.as_ref().filter(|b| !b.trim().is_empty()) {
        Some(b) => {
            plumbline_bus::ensure_topics(b, &topics, plumbline_bus::DEFAULT_PARTITIONS)
                .await
                .context("creating topics")?;
            println!("kafka: {b}");
            Broker::External(b.clone())
        }
        None => {
            let e = EmbeddedBroker::start(&topics, plumbline_bus::DEFAULT_PARTITIONS)
                .context("starting the embedded kafka broker")?;
            println!("kafka: embedded broker at {}", e.bootstrap_servers());
            Broker::Embedded(e)
        }
    };
    let (database_url, cluster) = database(&args).await?;
    let store = Store::connect(&database_url, 2)?;
    let applied = store.migrate().await.context("migrating the database")?;
    println!("postgres: {applied} migration(s) applied");

    let mut cfg = StackConfig::local(&broker.brokers(), &database_url, "");
    cfg.reconcile_interval = Duration::from_secs(args.reconcile_interval_secs.max(1));
    cfg.control_listen = args.control_listen;
    cfg.ingest_listen = args.ingest_listen;
    cfg.sim_listen = args.sim_listen;
    let stack = Stack::start(cfg).await?;
    println!(
        "github simulator: {} (admin API under /_admin)",
        stack.sim_url
    );
    println!("ingest: {}", stack.ingest_url());
    println!("control api: {}", stack.control_url());

    let result = enroll_and_watch(&args, &stack, &shutdown).await;
    println!("stopping");
    stack.stop().await;
    // Last: the embedded broker (its drop waits a few seconds at most, see EmbeddedBroker).
    drop(broker);
    drop(cluster);
    result
}

async fn enroll_and_watch(
    args: &DevArgs,
    stack: &Stack,
    shutdown: &CancellationToken,
) -> anyhow::Result<DevSummary> {
    let mut outcomes = stack.outcomes.subscribe();
    // Created before the App's webhooks reach ingest, so the fleet is enrolled once, the way
    // an operator would (below), not also repository by repository from creation events whose
    // evaluations would race the enrolment for the quota.
    stack.sim.set_webhooks_enabled(false);
    let fleet = stack
        .sim
        .seed(&args.org, args.repos, "service", args.protected_fraction);
    stack.sim.set_webhooks_enabled(true);
    println!(
        "seeded {} repositories in {} ({}% protected)",
        fleet.len(),
        args.org,
        (args.protected_fraction * 100.0).round()
    );

    // Enroll the same way an operator would: through the control API.
    let mut c = client::connect(&stack.control_url(), None).await?;
    let project = plumbline_domain::DEFAULT_PROJECT;
    for (name, yaml) in shipped::RULE_TYPES {
        commands::apply_rule_type(&mut c, project, yaml)
            .await
            .with_context(|| format!("applying rule type {name}"))?;
    }
    // Profiles first, so that registering evaluates each repository once, with them.
    for (name, yaml) in shipped::PROFILES {
        let r = commands::apply_profile(&mut c, project, yaml)
            .await
            .with_context(|| format!("applying profile {name}"))?;
        println!("profile {} applied (remediation on)", r.name);
    }
    // From the organisation's listing: 50 requests for 5,000 repositories, not 5,000, so the
    // quota is left to evaluating them.
    let registered = commands::register_owner(&mut c, project, &args.org, vec![], "").await?;
    println!(
        "registered {} repositories of {} with {} GitHub request(s); each is evaluated now",
        registered.registered, args.org, registered.requests
    );
    if let Some((owner, name, _)) = fleet.first() {
        println!(
            "try: switch a protection off and watch it come back:\n  curl -X DELETE {}/_admin/repos/{owner}/{name}/branches/main/protection\n  plumb status --control-url {}",
            stack.sim_url,
            stack.control_url()
        );
    }

    let deadline = args
        .exit_after_secs
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut summary = DevSummary {
        repositories: fleet.len(),
        ..Default::default()
    };
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        let until_deadline = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = until_deadline => break,
            o = outcomes.recv() => match o {
                Ok(o) if o.status == ActionStatus::Applied as i32 => {
                    summary.remediations += 1;
                    let entity = o.entity.as_ref().map(|e| e.upstream_id.clone()).unwrap_or_default();
                    let repo = fleet.iter().find(|(_, _, id)| id.to_string() == entity).map(|(o, n, _)| format!("{o}/{n}")).unwrap_or(entity);
                    println!("remediated {repo}: {} via {} ({} so far)", o.rule_type, o.action_type, summary.remediations);
                }
                Ok(o) => println!("action {}: {} {}", o.action_type, plumbline_proto::action_status_word(o.status), o.message),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => println!("({n} action outcomes not shown)"),
                Err(_) => break,
            },
            _ = tick.tick() => {
                // Counts, not rows: the posture of 5,000 repositories is a few dozen numbers.
                let posture = commands::get_posture(&mut c, project).await?;
                let (passing, rules) = crate::activity::passing(&posture);
                println!(
                    "posture: {passing}/{rules} rules passing, {} remediations{}",
                    summary.remediations,
                    crate::activity::short(&posture, chrono::Utc::now())
                );
            }
        }
    }
    let (passing, rules) = crate::activity::passing(&commands::get_posture(&mut c, project).await?);
    (summary.passing, summary.rules) = (passing as usize, rules as usize);
    println!(
        "final posture: {}/{} rules passing, {} remediations",
        summary.passing, summary.rules, summary.remediations
    );
    Ok(summary)
}
