//! evaluator_scale: entity evaluations per second with 1, 2 and 4 evaluator replicas, each a
//! process of its own in one consumer group, against GitHub answering every request after
//! 100 ms.
//!
//! Starts what it needs: a private tansu broker, a fresh database on the local Postgres, and the
//! GitHub simulator (in this process) seeded with `BENCH_ENTITIES` (default 2,400) protected
//! repositories under the shipped `branch-protection` profile, with a 100 ms latency fault on
//! every route (`BENCH_LATENCY_MS`). The replicas are this same binary started with `--evaluator`
//! (they run `plumbline_evaluator::run`), each with `BENCH_IN_FLIGHT` (default 8) entities in
//! flight, so a replica's own rate is bound by GitHub's latency, as in production, and what is
//! measured is how that scales out.
//!
//! For each replica count: a topic namespace and consumer group of its own, the replicas
//! started, a warm-up of 100 events evaluated (the group has settled), then one event per
//! entity published and timed until every entity has a verdict newer than the start.
//! Prints `replicas_1_per_s`, `replicas_2_per_s`, `replicas_4_per_s` and `scale_4_over_1`.

use anyhow::{bail, Context as _};
use plumbline_bench::evaluator_process::{self, Evaluators};
use plumbline_bench::events::publish;
use plumbline_bus::testing::{free_port, topics_on, Tansu};
use plumbline_bus::{Producer, ProducerConfig};
use plumbline_domain::EventReason;
use plumbline_github_sim::{Fault, SimConfig, Simulator};
use plumbline_store::testing::TestDatabase;
use plumbline_store::Store;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const PROJECT: &str = "default";
const RULE: &str = "branch_protection_enabled";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A replica: the evaluator service, configured by the parent through the environment.
async fn replica() -> anyhow::Result<()> {
    let mut config = evaluator_process::config()?;
    config.service.database_max_connections = 16;
    config.consumer.session_timeout_ms = 6000;
    config.consumer.max_in_flight = env_u64("BENCH_IN_FLIGHT", 8) as usize;
    evaluator_process::run(config).await
}

/// Waits until `want` entities have a verdict newer than `since`.
async fn wait_evaluated(
    store: &Store,
    since: chrono::DateTime<chrono::Utc>,
    want: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let rows = store.list_status(PROJECT, None, None).await?;
        let fresh = rows
            .iter()
            .filter(|r| r.rule_name == RULE && r.evaluated_at > since)
            .count();
        if fresh >= want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {fresh} of {want} entities evaluated within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if evaluator_process::is_child() {
        return replica().await;
    }
    let n = env_u64("BENCH_ENTITIES", 2400) as usize;
    let latency = Duration::from_millis(env_u64("BENCH_LATENCY_MS", 100));
    let in_flight = env_u64("BENCH_IN_FLIGHT", 8);

    let broker_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _tansu =
        tokio::task::spawn_blocking(move || Tansu::start(broker_addr, broker_addr)).await??;
    let brokers = broker_addr.to_string();
    let db = TestDatabase::new().await;
    let store = db.store();
    let stop = CancellationToken::new();
    let sim = Simulator::new(SimConfig::default());
    let sim_addr = sim
        .serve(SocketAddr::from(([127, 0, 0, 1], 0)), stop.clone())
        .await?;
    sim.set_rate_limit(100_000_000);
    let fleet = sim.seed("acme", n, "svc", 1.0);
    sim.add_fault(Fault::latency(latency))
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let rule = std::fs::read_to_string("rules/rule-types/github/branch_protection_enabled.yaml")
        .context("run from the repository root")?;
    let profile = std::fs::read_to_string("rules/profiles/github/branch-protection.yaml")?;
    let rule_name = plumbline_engine::RuleType::from_yaml(&rule)?.name;
    let profile_name = plumbline_engine::Profile::from_yaml(&profile)?.name;
    store
        .upsert_rule_type(
            PROJECT,
            &rule_name,
            &plumbline_engine::digest(rule.as_bytes()),
            &rule,
        )
        .await?;
    store
        .upsert_profile(
            PROJECT,
            &profile_name,
            &plumbline_engine::digest(profile.as_bytes()),
            &profile,
        )
        .await?;
    let entities = plumbline_bench::fleet::register(&store, PROJECT, &fleet).await?;
    let producer = Producer::new(&ProducerConfig::new(&brokers, "bench-scale"))?;
    eprintln!("evaluator_scale: {n} entities, {latency:?} GitHub latency, {in_flight} in flight per replica");

    let mut rates = BTreeMap::new();
    for replicas in [1usize, 2, 4] {
        let (prefix, topics) = topics_on(&brokers, 12).await;
        let children = (0..replicas)
            .map(|_| {
                Ok(evaluator_process::command(
                    &brokers,
                    &db.url,
                    &format!("http://{sim_addr}"),
                    &prefix,
                )?
                .env("BENCH_IN_FLIGHT", in_flight.to_string())
                .spawn()?)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let guard = Evaluators(children);
        // Warm-up: the group has formed and settled once these are evaluated.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let warm_at = chrono::Utc::now();
        publish(
            &producer,
            &topics.entity_events,
            &entities[..100.min(n)],
            EventReason::Manual,
        )
        .await?;
        wait_evaluated(&store, warm_at, 100.min(n), Duration::from_secs(120)).await?;

        let since = chrono::Utc::now();
        let started = Instant::now();
        publish(
            &producer,
            &topics.entity_events,
            &entities,
            EventReason::Manual,
        )
        .await?;
        wait_evaluated(&store, since, n, Duration::from_secs(600)).await?;
        let rate = n as f64 / started.elapsed().as_secs_f64();
        eprintln!("{replicas} replica(s): {rate:.1} entity evaluations/s");
        rates.insert(replicas, rate);
        drop(guard);
    }
    stop.cancel();
    let r1 = rates.get(&1).copied().unwrap_or(0.0);
    let r4 = rates.get(&4).copied().unwrap_or(0.0);
    println!("replicas_1_per_s = {r1:.1}");
    println!(
        "replicas_2_per_s = {:.1}",
        rates.get(&2).copied().unwrap_or(0.0)
    );
    println!("replicas_4_per_s = {r4:.1}");
    println!(
        "scale_4_over_1 = {:.2}",
        if r1 > 0.0 { r4 / r1 } else { 0.0 }
    );
    Ok(())
}
