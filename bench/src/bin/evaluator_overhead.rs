//! evaluator_overhead: rule evaluations per second through the whole evaluator, beside raw
//! regorus evaluating the same policies over the same inputs, in the same run.
//!
//! Starts what it needs: a private tansu broker, a fresh database on the local Postgres, and the
//! GitHub simulator (zero latency, in this process) with `BENCH_ENTITIES` (default 2,000)
//! repositories. The profile holds every rest-ingest, deny-by-default Rego rule type among the
//! twelve rest rules `sweep_cost` uses from Minder's corpus (`../shared/minder-rules`, read in
//! place). One evaluator runs in this process (`plumbline_evaluator::start`, default settings).
//!
//! Whole evaluator: after a warm-up on the first 50 repositories (the consumer group has formed,
//! the catalog is loaded), one entity event per remaining repository is published and timed
//! until every repository has a verdict for every rule (first evaluations: nothing to reuse). Each
//! rule evaluation includes consuming the event, loading the entity and catalog, reading GitHub
//! (one request per endpoint per entity, shared between rules), Rego, writing status and
//! history, and publishing the verdict with acks=all. `evaluator_rule_evals_per_s` = entities ×
//! rules / seconds.
//!
//! Raw regorus: for each rule, one engine with the policy compiled and the input the evaluator
//! builds (`ingested`, `profile`, `properties`) for a sample repository, converted once; timed
//! `set_input` + `eval_rule` of `data.minder.skip` (where the policy defines it) and
//! `data.minder.allow` (what deny-by-default needs), rules taken in turn. `raw_regorus_evals_per_s`, and `ratio` = whole / raw.
//!
//! CPU: the evaluator runs on a runtime of its own whose threads are named `plumb-eval`; the CPU
//! time the kernel counted for those threads and for librdkafka's (`rdk:*`: the evaluator's
//! consumer and producer, and this benchmark's producer, which publishes the events once)
//! during the timed part, per timed entity, is `evaluator_cpu_us_per_entity` (an upper bound:
//! the simulator, Postgres and the broker run elsewhere and are not counted). The raw loop's
//! thread CPU per evaluation times the rules of the profile is `raw_cpu_us_per_entity`; the
//! issue's goal is the first at most 10 times the second (`cpu_ratio`). Between the two,
//! `engine_cpu_us_per_entity`: the same rules through Plumbline's engine
//! (`CompiledRule::evaluate`, a fresh `Ingested` each time, as every evaluation gets), on one
//! thread: what the engine adds to regorus, apart from the pipeline around it.

use anyhow::{bail, Context as _};
use plumbline_bench::events::publish;
use plumbline_bus::testing::{free_port, topics_on, Tansu};
use plumbline_bus::{Producer, ProducerConfig};
use plumbline_domain::EventReason;
use plumbline_engine::{CompiledRule, Invocation, RuleType};
use plumbline_github::{GitHub, GitHubConfig};
use plumbline_github_provider::GitHubProvider;
use plumbline_github_sim::{RepoOptions, SimConfig, Simulator};
use plumbline_store::testing::TestDatabase;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const PROJECT: &str = "default";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The rest rules of `sweep_cost` with their defs; the Rego ones are used.
fn candidates() -> Vec<(&'static str, Value)> {
    vec![
        (
            "rule-types/github/secret_scanning.yaml",
            json!({ "enabled": true }),
        ),
        (
            "rule-types/github/secret_push_protection.yaml",
            json!({ "enabled": true }),
        ),
        (
            "rule-types/github/automatic_branch_deletion.yaml",
            json!({}),
        ),
        (
            "rule-types/github/default_workflow_permissions.yaml",
            json!({ "default_workflow_permissions": "read", "can_approve_pull_request_reviews": false }),
        ),
        (
            "rule-types/github/github_actions_allowed.yaml",
            json!({ "allowed_actions": "selected" }),
        ),
        (
            "rule-types/github/repo_workflow_access_level.yaml",
            json!({ "access_level": "none" }),
        ),
        (
            "rule-types/github/no_open_security_advisories.yaml",
            json!({ "severity": "low" }),
        ),
        (
            "rule-types/github/branch_protection_enabled.yaml",
            json!({}),
        ),
        (
            "rule-types/github/branch_protection_enforce_admins.yaml",
            json!({ "enforce_admins": true }),
        ),
        (
            "rule-types/github/branch_protection_allow_force_pushes.yaml",
            json!({ "allow_force_pushes": false }),
        ),
        (
            "rule-types/github/branch_protection_allow_deletions.yaml",
            json!({ "allow_deletions": false }),
        ),
        (
            "rule-types/github/branch_protection_require_pull_request_approving_review_count.yaml",
            json!({ "required_approving_review_count": 1 }),
        ),
    ]
}

struct Rule {
    yaml: String,
    rule_type: RuleType,
    def: Value,
}

fn rules() -> anyhow::Result<Vec<Rule>> {
    let corpus = ["../shared/minder-rules", "../../shared/minder-rules"]
        .into_iter()
        .find(|c| Path::new(c).is_dir())
        .context("the minder corpus (../shared/minder-rules) is not beside this checkout; run from the repository root")?;
    let mut out = vec![];
    for (path, def) in candidates() {
        let yaml = std::fs::read_to_string(Path::new(corpus).join(path))
            .with_context(|| path.to_string())?;
        let rule_type = RuleType::from_yaml(&yaml)?;
        let rego_deny_by_default = rule_type
            .def
            .eval
            .rego
            .as_ref()
            .is_some_and(|r| r.kind == "deny-by-default");
        if rule_type.def.ingest.kind == "rest"
            && rego_deny_by_default
            && rule_type.data_source_names().is_empty()
        {
            out.push(Rule {
                yaml,
                rule_type,
                def,
            });
        }
    }
    if out.is_empty() {
        bail!("no rest + deny-by-default Rego rule types among the candidates");
    }
    Ok(out)
}

fn profile_yaml(rules: &[Rule]) -> anyhow::Result<String> {
    let entries: Vec<Value> = rules
        .iter()
        .map(|r| json!({"type": r.rule_type.name, "def": r.def}))
        .collect();
    let doc = json!({
        "version": "v1",
        "type": "profile",
        "name": "overhead",
        "context": {"provider": "github"},
        "alert": "off",
        "remediate": "off",
        "repository": entries,
    });
    Ok(serde_yaml_ng::to_string(&doc)?)
}

/// Runs `f` repeatedly for `secs`; returns iterations per second and this thread's CPU time per
/// iteration (ns).
fn rate(secs: Duration, mut f: impl FnMut()) -> (f64, f64) {
    let cpu = thread_cpu_ns("/proc/thread-self");
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < secs {
        f();
        n += 1;
    }
    let cpu = thread_cpu_ns("/proc/thread-self").saturating_sub(cpu);
    (
        n as f64 / started.elapsed().as_secs_f64(),
        cpu as f64 / n.max(1) as f64,
    )
}

/// CPU time the kernel counted for one thread (`/proc/.../schedstat`, ns on CPU).
fn thread_cpu_ns(dir: &str) -> u64 {
    std::fs::read_to_string(format!("{dir}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time of this process's threads whose name starts with one of `prefixes` (ns).
fn threads_cpu_ns(prefixes: &[&str]) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| prefixes.iter().any(|p| c.trim().starts_with(p)))
        })
        .map(|t| thread_cpu_ns(&t.path().to_string_lossy()))
        .sum()
}

/// The evaluator's threads (its runtime's, librdkafka's).
const EVALUATOR_THREADS: &[&str] = &["plumb-eval", "rdk:"];

/// Waits until the project holds `want` verdicts (one per repository and rule).
async fn wait_verdicts(store: &plumbline_store::Store, want: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        // Counted from the posture index: reading every row 20 times a second would load the
        // Postgres the evaluator writes to.
        let rows = store
            .posture_counts(PROJECT)
            .await?
            .iter()
            .map(|c| c.count.max(0) as usize)
            .sum::<usize>();
        if rows >= want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {rows} of {want} verdicts after 600 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = env_u64("BENCH_ENTITIES", 2000) as usize;
    let rules = rules()?;
    let k = rules.len();

    let broker_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _tansu =
        tokio::task::spawn_blocking(move || Tansu::start(broker_addr, broker_addr)).await??;
    let brokers = broker_addr.to_string();
    let (prefix, topics) = topics_on(&brokers, 12).await;
    let db = TestDatabase::new().await;
    let store = db.store();
    let stop = CancellationToken::new();
    let sim = Simulator::new(SimConfig::default());
    let sim_addr = sim
        .serve(SocketAddr::from(([127, 0, 0, 1], 0)), stop.clone())
        .await?;
    sim.set_rate_limit(100_000_000);
    let mut entities = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("svc-{i:04}");
        let id = sim.create_repo(
            "acme",
            &name,
            RepoOptions {
                protected: i % 2 == 0,
                private: true,
                ..RepoOptions::default()
            },
        );
        entities.push(plumbline_bench::fleet::repository(
            PROJECT, "acme", &name, id,
        ));
    }
    for r in &rules {
        store
            .upsert_rule_type(
                PROJECT,
                &r.rule_type.name,
                &plumbline_engine::digest(r.yaml.as_bytes()),
                &r.yaml,
            )
            .await?;
    }
    let profile = profile_yaml(&rules)?;
    store
        .upsert_profile(
            PROJECT,
            "overhead",
            &plumbline_engine::digest(profile.as_bytes()),
            &profile,
        )
        .await?;
    for e in &entities {
        store.upsert_entity(e).await?;
    }
    let sim_url = format!("http://{sim_addr}");
    let mut args = plumbline_runtime::ServiceArgs::local(&brokers, &db.url, &sim_url);
    args.topic_prefix = prefix.clone();
    args.database_max_connections = 16;
    let mut config = plumbline_evaluator::EvaluatorConfig::new(args);
    config.consumer.group_id = format!("{prefix}plumbline-evaluator");
    let stop_evaluator = CancellationToken::new();
    // A runtime of its own, so its threads' CPU is the evaluator's (blocking threads kept alive:
    // one that exits takes its CPU count with it).
    let evaluator_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("plumb-eval")
        .thread_keep_alive(Duration::from_secs(3600))
        .enable_all()
        .build()?;
    let evaluator_stop = stop_evaluator.clone();
    let evaluator = evaluator_rt
        .spawn(async move { plumbline_evaluator::start(config, evaluator_stop).await })
        .await?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!(
        "evaluator_overhead: {n} repositories x {k} Rego rules: {}",
        rules
            .iter()
            .map(|r| r.rule_type.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );

    // Whole evaluator. A warm-up on the first repositories first: the group has formed and the
    // catalog is loaded once they are evaluated; the rest are timed.
    let producer = Producer::new(&ProducerConfig::new(&brokers, "bench-overhead"))?;
    let (warm, timed) = entities.split_at(50.min(n / 10));
    publish(&producer, &topics.entity_events, warm, EventReason::Manual).await?;
    wait_verdicts(&store, warm.len() * k).await?;
    let cpu_before = threads_cpu_ns(EVALUATOR_THREADS);
    let started = Instant::now();
    publish(&producer, &topics.entity_events, timed, EventReason::Manual).await?;
    wait_verdicts(&store, n * k).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let evaluator_cpu_us = threads_cpu_ns(EVALUATOR_THREADS).saturating_sub(cpu_before) as f64
        / 1e3
        / timed.len() as f64;
    let want = timed.len() * k;
    let whole = want as f64 / elapsed;
    let errors = store
        .list_status(PROJECT, None, None)
        .await?
        .iter()
        .filter(|r| r.status == plumbline_domain::EvalStatus::Error)
        .count();
    eprintln!(
        "whole evaluator: {want} rule evaluations in {elapsed:.1} s ({errors} error verdicts)"
    );
    stop_evaluator.cancel();
    let _ = evaluator.task.await;
    tokio::task::spawn_blocking(move || evaluator_rt.shutdown_timeout(Duration::from_secs(5)))
        .await?;

    // Raw regorus over the same policies and inputs (a sample repository's, ingested once).
    let github = GitHub::new(&GitHubConfig::new(&sim_url, None))?;
    let provider = GitHubProvider::new(github, 64 << 20);
    let params = json!({});
    let sample = &entities[0];
    let mut engines = Vec::with_capacity(k);
    // The same rules through Plumbline's engine (what the evaluator calls on its blocking
    // pool), each with a fresh `Ingested` as every evaluation gets: to tell the engine's share
    // of the gap from the pipeline's.
    let mut through_engine = Vec::with_capacity(k);
    for r in &rules {
        let compiled = CompiledRule::compile(r.rule_type.clone())?;
        let inv = Invocation {
            entity: sample,
            params: &params,
            def: &r.def,
        };
        let ingested = compiled
            .ingest(&inv, &provider)
            .await
            .map_err(|e| anyhow::anyhow!("ingest {}: {e:?}", r.rule_type.name))?;
        let policy = r
            .rule_type
            .def
            .eval
            .rego
            .as_ref()
            .context("rego")?
            .def
            .clone();
        let mut engine = regorus::Engine::new();
        engine.set_rego_v0(true);
        engine.add_policy("policy.rego".into(), policy)?;
        let input = regorus::Value::from(
            json!({"ingested": ingested.value, "profile": r.def, "properties": sample.properties}),
        );
        // Asking for a rule the policy does not define is an error, and building it (with
        // RUST_BACKTRACE set, a backtrace) would be counted as regorus's work: only the rules
        // the policy defines are asked for, as the engine does.
        engine.set_input(input.clone());
        let skip = engine.eval_rule("data.minder.skip".into()).is_ok();
        engines.push((engine, input, skip));
        through_engine.push((
            compiled,
            ingested.value.clone(),
            ingested.digest.clone(),
            r.def.clone(),
        ));
    }
    let secs = Duration::from_secs(env_u64("BENCH_SECONDS", 5));
    let mut i = 0usize;
    let (raw, raw_cpu_ns_per_eval) = rate(secs, || {
        let (engine, input, skip) = &mut engines[i % k];
        engine.set_input(input.clone());
        if *skip {
            std::hint::black_box(engine.eval_rule("data.minder.skip".into()).ok());
        }
        std::hint::black_box(engine.eval_rule("data.minder.allow".into()).ok());
        i += 1;
    });

    stop.cancel();
    println!("evaluator_rule_evals_per_s = {whole:.0}");
    println!("raw_regorus_evals_per_s = {raw:.0}");
    println!("ratio = {:.3}", if raw > 0.0 { whole / raw } else { 0.0 });
    let mut j = 0usize;
    let (_, engine_cpu_ns_per_eval) = rate(secs, || {
        let (compiled, value, digest, def) = &through_engine[j % k];
        let ingested = plumbline_engine::Ingested::new(value.clone(), None, digest.clone());
        let inv = Invocation {
            entity: sample,
            params: &params,
            def,
        };
        std::hint::black_box(compiled.evaluate(&ingested, &inv));
        j += 1;
    });
    let engine_cpu_us = engine_cpu_ns_per_eval * k as f64 / 1e3;
    let raw_cpu_us = raw_cpu_ns_per_eval * k as f64 / 1e3;
    println!("engine_cpu_us_per_entity = {engine_cpu_us:.1}");
    println!("evaluator_cpu_us_per_entity = {evaluator_cpu_us:.0}");
    println!("raw_cpu_us_per_entity = {raw_cpu_us:.1}");
    println!(
        "cpu_ratio = {:.1}",
        if raw_cpu_us > 0.0 {
            evaluator_cpu_us / raw_cpu_us
        } else {
            0.0
        }
    );
    println!("rules = {k}");
    println!("error_verdicts = {errors}");
    Ok(())
}
