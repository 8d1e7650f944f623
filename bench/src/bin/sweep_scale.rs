//! sweep_scale: two sweeps of a large fleet through the evaluator as a process of its own.
//!
//! Starts what it needs: a private tansu broker, a fresh database on the local Postgres, the
//! GitHub simulator (in this process, no latency) holding the fleet, and one evaluator process
//! (this binary re-started with `--evaluator`, default settings, so its memory is its own).
//! The profile has five rule types from Minder's corpus (`../shared/minder-rules`): three rest
//! (`branch_protection_enabled`, `secret_scanning`, `automatic_branch_deletion`) and two git
//! (`actions_check_default_permissions`, `no_binaries_in_repo`).
//!
//! For each size in `BENCH_SCALES` (default `10000`; the second size, `100000`, takes
//! well over ten minutes on two cores: see the closing note), on a fresh database and topics:
//! one sweep event per repository, timed until the evaluator has handled every one (its
//! `plumbline_evaluator_entity_seconds_count`), then the same again with nothing changed. The
//! simulator's request log says what each sweep charged to the quota (304s are free).
//!
//! Prints, per size (suffix `_10k`, `_100k`, ...): `first_sweep_seconds`,
//! `second_sweep_seconds`, `quota_requests_per_repo_first`, `quota_requests_per_repo_second`,
//! `evaluator_rss_mb` (the evaluator process's peak resident memory, VmHWM),
//! `postgres_mb_per_1k_repos` (the database's size after both sweeps, per 1,000
//! repositories), `posture_query_ms_p99` (the posture counts of the project, 50 times).

use anyhow::{bail, Context as _};
use plumbline_bench::evaluator_process::{self, Evaluators};
use plumbline_bench::events::publish;
use plumbline_bus::testing::{free_port, topics_on, Tansu};
use plumbline_bus::{Producer, ProducerConfig};
use plumbline_domain::EventReason;
use plumbline_github_sim::{SimConfig, Simulator};
use plumbline_store::testing::TestDatabase;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const PROJECT: &str = "default";
/// Repositories per simulated organisation.
const PER_ORG: usize = 1000;

/// The evaluator process: default settings but for its health address, where the parent
/// reads its `/metrics`.
async fn evaluator() -> anyhow::Result<()> {
    let mut config = evaluator_process::config()?;
    config.service.health_listen = std::env::var("BENCH_HEALTH")
        .context("BENCH_HEALTH is not set")?
        .parse()?;
    evaluator_process::run(config).await
}

/// A process's peak resident memory so far (MiB), from `/proc/<pid>/status`.
fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Entities the evaluator has handled so far, from its `/metrics`.
async fn handled(health: SocketAddr) -> u64 {
    let Ok(r) = reqwest::get(format!("http://{health}/metrics")).await else {
        return 0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("plumbline_evaluator_entity_seconds_count"))
        .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

async fn wait_handled(health: SocketAddr, want: u64, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let n = handled(health).await;
        if n >= want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the evaluator handled {n} of {want} entities within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn profile_rules() -> Vec<(&'static str, Value)> {
    vec![
        (
            "rule-types/github/branch_protection_enabled.yaml",
            json!({}),
        ),
        (
            "rule-types/github/secret_scanning.yaml",
            json!({ "enabled": true }),
        ),
        (
            "rule-types/github/automatic_branch_deletion.yaml",
            json!({}),
        ),
        (
            "rule-types/github/actions_check_default_permissions.yaml",
            json!({}),
        ),
        ("rule-types/github/no_binaries_in_repo.yaml", json!({})),
    ]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One size: a fresh database, topics, simulator and evaluator; both sweeps; the figures.
async fn run(n: usize, brokers: &str) -> anyhow::Result<BTreeMap<&'static str, f64>> {
    let corpus = ["../shared/minder-rules", "../../shared/minder-rules"]
        .into_iter()
        .find(|c| Path::new(c).is_dir())
        .context("the minder corpus (../shared/minder-rules) is not beside this checkout; run from the repository root")?;
    let db = TestDatabase::new().await;
    let store = db.store();
    let (prefix, topics) = topics_on(brokers, 12).await;
    let stop = CancellationToken::new();
    let sim = Simulator::new(SimConfig::default());
    let sim_addr = sim
        .serve(SocketAddr::from(([127, 0, 0, 1], 0)), stop.clone())
        .await?;
    sim.set_rate_limit(1_000_000_000);
    sim.set_webhooks_enabled(false);

    let mut entries = Vec::new();
    for (path, def) in profile_rules() {
        let yaml = std::fs::read_to_string(Path::new(corpus).join(path)).context(path)?;
        let rule_type = plumbline_engine::RuleType::from_yaml(&yaml)?;
        store
            .upsert_rule_type(
                PROJECT,
                &rule_type.name,
                &plumbline_engine::digest(yaml.as_bytes()),
                &yaml,
            )
            .await?;
        entries.push(json!({"type": rule_type.name, "def": def}));
    }
    let profile = serde_yaml_ng::to_string(&json!({
        "version": "v1", "type": "profile", "name": "scale",
        "context": {"provider": "github"}, "alert": "off", "remediate": "off",
        "repository": entries,
    }))?;
    store
        .upsert_profile(
            PROJECT,
            "scale",
            &plumbline_engine::digest(profile.as_bytes()),
            &profile,
        )
        .await?;

    // The fleet (plus one repository to warm the evaluator up on), half of it protected.
    let seeding = Instant::now();
    let mut fleet = Vec::with_capacity(n + 1);
    let orgs = n.div_ceil(PER_ORG);
    for o in 0..orgs {
        let count = PER_ORG.min(n - o * PER_ORG);
        fleet.extend(sim.seed(&format!("org-{o:03}"), count, "svc", 0.5));
    }
    fleet.extend(sim.seed("warm", 1, "svc", 1.0));
    let entities = plumbline_bench::fleet::register(&store, PROJECT, &fleet).await?;
    let (measured, warm) = entities.split_at(n);
    eprintln!(
        "sweep_scale: {n} repositories in {orgs} organisations seeded and registered in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );

    let health = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let child = Evaluators(vec![evaluator_process::command(
        brokers,
        &db.url,
        &format!("http://{sim_addr}"),
        &prefix,
    )?
    .env("BENCH_HEALTH", health.to_string())
    .spawn()?]);
    let producer = Producer::new(&ProducerConfig::new(brokers, "bench-sweep-scale"))?;
    publish(&producer, &topics.entity_events, warm, EventReason::Sweep).await?;
    wait_handled(health, 1, Duration::from_secs(120)).await?;
    let timeout = Duration::from_secs(60 + n as u64 / 10);

    let mut out = BTreeMap::new();
    for (sweep, seconds_key, quota_key) in [
        (1u64, "first_sweep_seconds", "quota_requests_per_repo_first"),
        (2, "second_sweep_seconds", "quota_requests_per_repo_second"),
    ] {
        sim.reset_request_log();
        let started = Instant::now();
        publish(
            &producer,
            &topics.entity_events,
            measured,
            EventReason::Sweep,
        )
        .await?;
        wait_handled(health, 1 + sweep * n as u64, timeout).await?;
        let secs = started.elapsed().as_secs_f64();
        let quota = sim.quota().total;
        eprintln!(
            "sweep {sweep}: {secs:.1} s, {} requests ({} charged, {} not modified)",
            quota.requests, quota.charged, quota.not_modified
        );
        let report = sim.quota();
        let charged: Vec<String> = report
            .by_route
            .iter()
            .filter(|(_, u)| u.charged > 0)
            .map(|(route, u)| format!("{route}: {:.2}", u.charged as f64 / n as f64))
            .collect();
        eprintln!(
            "sweep {sweep}: charged per repository by route: {}",
            charged.join(", ")
        );
        out.insert(seconds_key, secs);
        out.insert(quota_key, quota.charged as f64 / n as f64);
    }
    out.insert("evaluator_rss_mb", peak_rss_mb(child.0[0].id()));
    drop(child);
    let bytes = store.database_size_bytes().await?;
    out.insert(
        "postgres_mb_per_1k_repos",
        bytes as f64 / (1 << 20) as f64 / (n as f64 / 1000.0),
    );
    let mut ms = Vec::with_capacity(50);
    for _ in 0..50 {
        let t = Instant::now();
        store.posture_counts(PROJECT).await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    out.insert("posture_query_ms_p99", percentile(&ms, 0.99));
    stop.cancel();
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if evaluator_process::is_child() {
        return evaluator().await;
    }
    let scales: Vec<usize> = std::env::var("BENCH_SCALES")
        .unwrap_or_else(|_| "10000".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()
        .context("BENCH_SCALES: sizes separated by commas")?;
    let broker_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _tansu =
        tokio::task::spawn_blocking(move || Tansu::start(broker_addr, broker_addr)).await??;
    let brokers = broker_addr.to_string();
    let mut lines = Vec::new();
    for n in scales {
        let suffix = if n % 1000 == 0 {
            format!("{}k", n / 1000)
        } else {
            n.to_string()
        };
        for (key, v) in run(n, &brokers).await? {
            lines.push(format!("{key}_{suffix} = {v:.2}"));
        }
    }
    for l in lines {
        println!("{l}");
    }
    Ok(())
}
