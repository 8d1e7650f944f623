//! Evaluators as SREs run them: separate processes in one consumer group on a real broker.

use plumb::stack::{Stack, StackConfig};
use plumb::{client, commands, shipped};
use plumbline_bus::testing::{
    eventually, free_port, kafka, topics, topics_on, Reader, ServiceProcess, Tansu,
};
use plumbline_bus::{Producer, ProducerConfig, TraceContext};
use plumbline_domain::{Entity, EntityRef, EventReason};
use plumbline_proto::v1::EntityEvent;
use plumbline_proto::Message as _;
use plumbline_store::testing::TestDatabase as TestDb;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

const PROJECT: &str = "default";
const PUT_PROTECTION: &str = "PUT /repos/{owner}/{repo}/branches/{branch}/protection";

/// The evaluator binary (`e2e-evaluator`: the service's `main`, built for these tests).
fn evaluator_binary() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_e2e-evaluator"))
}

/// An evaluator replica as SREs run it: its own process, killable with SIGKILL.
fn replica(stack: &Stack, prefix: &str) -> ServiceProcess {
    ServiceProcess::spawn(
        Command::new(evaluator_binary())
            .env("PLUMB_KAFKA_BROKERS", &stack.config.kafka_brokers)
            .env("PLUMB_TOPIC_PREFIX", prefix)
            .env("PLUMB_DATABASE_URL", &stack.config.database_url)
            .env("PLUMB_GITHUB_API_URL", &stack.sim_url)
            .env(
                "PLUMB_EVALUATOR_GROUP",
                format!("{prefix}plumbline-evaluator"),
            )
            .env("PLUMB_KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("PLUMB_CATALOG_MAX_STALENESS_MS", "500")
            .env("PLUMB_HEALTH_LISTEN", "127.0.0.1:0")
            // What the group coordinator and librdkafka's group state machine did, printed if
            // the test fails.
            .env("RUST_LOG", "info")
            .env("PLUMB_KAFKA_OPTIONS", "debug=cgrp"),
    )
}

/// Three evaluator processes share 10,000 events over 1,000 entities; one is killed with
/// SIGKILL mid-run. Afterwards every entity has a verdict newer than its last event, the DLQ is
/// empty, and the actuator protected each unprotected repository exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_an_evaluator_mid_run_leaves_every_entity_with_a_fresh_verdict() {
    let db = TestDb::new().await;
    // A broker of its own: three replicas and the stack form their groups without other
    // tests' groups churning on the same coordinator.
    let port = free_port();
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let _broker = tokio::task::spawn_blocking(move || Tansu::start(listen, listen))
        .await
        .expect("starting tansu")
        .expect("tansu starts");
    let brokers = listen.to_string();
    let (prefix, topics) = topics_on(&brokers, 12).await;
    let mut cfg = StackConfig::local(&brokers, &db.url, &prefix);
    cfg.reconcile_interval = Duration::from_secs(24 * 3600);
    // 500 protections in a few seconds: this test is about evaluators, not GitHub's
    // content-creation limit (which the actuator's own tests cover).
    cfg.content_per_minute = 1_000_000;
    cfg.content_per_hour = 1_000_000;
    // No evaluator in process: the replicas are processes of their own, alone in their group.
    cfg.run_evaluator = false;
    let stack = Stack::start(cfg).await.expect("stack starts");
    stack.sim.set_rate_limit(1_000_000);
    let store = db.store();
    let fleet = stack.sim.seed("acme", 1000, "svc", 0.5);
    let unprotected = fleet.len() / 2;

    let mut c = client::connect(&stack.control_url(), None)
        .await
        .expect("control api");
    for (_, yaml) in shipped::RULE_TYPES {
        commands::apply_rule_type(&mut c, PROJECT, yaml)
            .await
            .expect("apply rule type");
    }
    for (_, yaml) in shipped::PROFILES {
        commands::apply_profile(&mut c, PROJECT, yaml)
            .await
            .expect("apply profile");
    }
    let entities: Vec<Entity> = fleet
        .iter()
        .map(|(owner, name, id)| Entity {
            entity_ref: EntityRef::repository("github", *id),
            project: PROJECT.into(),
            credential: None,
            owner: owner.clone(),
            name: name.clone(),
            properties: serde_json::json!({"repo_id": id, "default_branch": "main"}),
            labels: vec![],
        })
        .collect();
    for e in &entities {
        store.upsert_entity(e).await.expect("register");
    }

    // 10 events per entity, interleaved across entities, all published before any replica runs.
    let producer = Producer::new(&ProducerConfig::new(&brokers, "scale-test")).expect("producer");
    for round in 0..10 {
        let sends = entities.iter().map(|e| {
            let producer = producer.clone();
            let topic = topics.entity_events.clone();
            async move {
                let mut ev = EntityEvent::new(&e.entity_ref, EventReason::Manual);
                ev.owner = e.owner.clone();
                ev.name = e.name.clone();
                let key = e.id();
                producer
                    .publish(
                        &topic,
                        &key,
                        &ev.encode_to_vec(),
                        "dev.plumbline.entity_event.v1",
                        &ev.event_id,
                        &TraceContext::new_root(),
                        &BTreeMap::new(),
                    )
                    .await
                    .map(|_| ())
            }
        });
        for r in futures::future::join_all(sends).await {
            r.unwrap_or_else(|e| panic!("publishing round {round}: {e}"));
        }
    }
    let last_event_at = chrono::Utc::now();

    let replicas: Vec<ServiceProcess> = (0..3).map(|_| replica(&stack, &prefix)).collect();
    let replicas = std::sync::Mutex::new(replicas);
    // Kill one once the run is well under way (some entities done, most not).
    eventually(
        Duration::from_secs(120),
        "the replicas make progress",
        || async {
            if let Ok(mut r) = replicas.lock() {
                r.iter_mut().for_each(ServiceProcess::assert_running);
            }
            let done = store
                .list_status(PROJECT, None, None)
                .await
                .expect("status")
                .len();
            (done >= 150).then_some(())
        },
    )
    .await;
    let done_at_kill = store
        .list_status(PROJECT, None, None)
        .await
        .expect("status")
        .len();
    let mut replicas = replicas.into_inner().unwrap_or_else(|p| p.into_inner());
    replicas[0].kill_9();

    // Every entity ends with a verdict newer than its last event, and passing: the unprotected
    // half was fixed by the actuator and re-checked.
    let polls = std::sync::atomic::AtomicU32::new(0);
    eventually(
        Duration::from_secs(240),
        "every entity has a fresh passing verdict",
        || async {
            let rows = store
                .list_status(PROJECT, None, None)
                .await
                .expect("status");
            let fresh = rows
                .iter()
                .filter(|r| {
                    r.rule_name == "branch_protection_enabled"
                        && r.evaluated_at > last_event_at
                        && r.status.as_str() == "pass"
                })
                .count();
            // Progress, every 10 s, so a run that stalls says where.
            if polls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 50 == 49 {
                let failing = rows
                    .iter()
                    .filter(|r| r.rule_name == "branch_protection_enabled" && r.status.as_str() != "pass")
                    .count();
                eprintln!(
                    "scale: {fresh} of {} fresh and passing, {failing} not passing, {} protections so far",
                    entities.len(),
                    stack.sim.request_counts().get(PUT_PROTECTION).copied().unwrap_or(0)
                );
            }
            (fresh == entities.len()).then_some(())
        },
    )
    .await;
    let puts = stack
        .sim
        .request_counts()
        .get(PUT_PROTECTION)
        .copied()
        .unwrap_or(0);
    assert_eq!(
        puts as usize, unprotected,
        "each unprotected repository protected exactly once, crash or not"
    );
    let mut dlq = Reader::on(&brokers, &topics.dlq);
    assert!(
        dlq.drain(Duration::from_secs(3)).await.is_empty(),
        "nothing was dead-lettered"
    );
    eprintln!("scale: killed one of 3 replicas with {done_at_kill} of {} entities evaluated; {puts} remediations", entities.len());
    drop(replicas);
    stack.stop().await;
}

/// Interleaved events for the same entity are never evaluated concurrently, while different
/// entities are. GitHub answers protection reads after 200 ms; the simulator's log shows when
/// each read arrived: one repository's reads are always a full answer apart (its evaluations
/// ran one after the other), different repositories' reads overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_entity_is_never_evaluated_twice_at_once() {
    let db = TestDb::new().await;
    let (prefix, topics) = topics(3).await;
    let stack = Stack::start(StackConfig::local(&kafka(), &db.url, &prefix))
        .await
        .expect("stack starts");
    let store = db.store();
    let latency = Duration::from_millis(200);
    let fleet = stack.sim.seed("acme", 6, "ord", 1.0);
    let mut c = client::connect(&stack.control_url(), None)
        .await
        .expect("control api");
    for (_, yaml) in shipped::RULE_TYPES {
        commands::apply_rule_type(&mut c, PROJECT, yaml)
            .await
            .expect("apply rule type");
    }
    for (_, yaml) in shipped::PROFILES {
        commands::apply_profile(&mut c, PROJECT, yaml)
            .await
            .expect("apply profile");
    }
    let mut entities = vec![];
    for (owner, name, id) in &fleet {
        let e = Entity {
            entity_ref: EntityRef::repository("github", *id),
            project: PROJECT.into(),
            credential: None,
            owner: owner.clone(),
            name: name.clone(),
            properties: serde_json::json!({"repo_id": id, "default_branch": "main"}),
            labels: vec![],
        };
        store.upsert_entity(&e).await.expect("register");
        entities.push(e);
    }
    stack
        .sim
        .add_fault(
            plumbline_github_sim::Fault::latency(latency)
                .on_route("/repos/{owner}/{repo}/branches/{branch}/protection"),
        )
        .expect("latency fault");
    let producer = Producer::new(&ProducerConfig::new(kafka(), "ordering-test")).expect("producer");
    // Eight rounds, 60 ms apart: each entity gets events while its previous one is evaluated.
    for _ in 0..8 {
        for e in &entities {
            let ev = EntityEvent::new(&e.entity_ref, EventReason::Manual);
            producer
                .publish(
                    &topics.entity_events,
                    &e.id(),
                    &ev.encode_to_vec(),
                    "dev.plumbline.entity_event.v1",
                    &ev.event_id,
                    &TraceContext::new_root(),
                    &BTreeMap::new(),
                )
                .await
                .expect("published");
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    for e in &entities {
        eventually(
            Duration::from_secs(60),
            "several evaluations per entity",
            || async { (store.checks_count(&e.id()).await.expect("history") >= 2).then_some(()) },
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log: Vec<_> = stack
        .sim
        .request_log()
        .into_iter()
        .filter(|r| {
            r.method == "GET" && r.route == "/repos/{owner}/{repo}/branches/{branch}/protection"
        })
        .collect();
    let mut by_repo: BTreeMap<String, Vec<chrono::DateTime<chrono::Utc>>> = BTreeMap::new();
    for r in &log {
        by_repo.entry(r.path.clone()).or_default().push(r.at);
    }
    let gap =
        chrono::Duration::from_std(latency).expect("duration") - chrono::Duration::milliseconds(20);
    for (path, mut times) in by_repo.clone() {
        times.sort();
        assert!(times.len() >= 2, "{path}: evaluated more than once");
        for w in times.windows(2) {
            assert!(
                w[1] - w[0] >= gap,
                "{path}: two reads {} ms apart: evaluations overlapped",
                (w[1] - w[0]).num_milliseconds()
            );
        }
    }
    // Different entities did run at once: some reads of different repositories overlap.
    let mut all: Vec<_> = log.iter().map(|r| (r.at, r.path.clone())).collect();
    all.sort();
    let overlapping = all
        .windows(2)
        .filter(|w| w[0].1 != w[1].1 && w[1].0 - w[0].0 < chrono::Duration::milliseconds(100))
        .count();
    assert!(overlapping > 0, "entities were evaluated concurrently");
    stack.stop().await;
}
