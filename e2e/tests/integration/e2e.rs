//! End to end on a real Kafka-protocol broker and a real Postgres: the walking skeleton.

use crate::common;

use common::*;
use plumb::stack::{Stack, StackConfig};
use plumb::{client, commands};
use plumbline_github_sim::RepoOptions;
use plumbline_proto::v1::{ActionOutcome, ActionStatus, EvalStatus, Verdict};
use plumbline_proto::Message as _;
use std::time::Duration;

const PROJECT: &str = "default";
const RULE: &str = "branch_protection_enabled";
const PROTECTION_ROUTE: &str = "/repos/{owner}/{repo}/branches/{branch}/protection";

async fn start_stack(db: &TestDb, prefix: &str, interval: Duration) -> Stack {
    let mut cfg = StackConfig::local(&kafka(), &db.url, prefix);
    cfg.reconcile_interval = interval;
    Stack::start(cfg).await.expect("stack starts")
}

/// Posts `body` to ingest as GitHub would (signed with the stack's secret), under a new delivery
/// id; returns the status.
async fn deliver(stack: &Stack, event: &str, body: &[u8]) -> u16 {
    reqwest::Client::new()
        .post(stack.ingest_url())
        .header("x-github-event", event)
        .header("x-github-delivery", uuid::Uuid::new_v4().to_string())
        .header(
            "x-hub-signature-256",
            plumbline_github::webhook::sign(stack.config.webhook_secret.as_bytes(), body),
        )
        .body(body.to_vec())
        .send()
        .await
        .expect("ingest answers")
        .status()
        .as_u16()
}

async fn status_of(store: &plumbline_store::Store, entity: &str) -> Option<String> {
    let rows = store
        .list_status(PROJECT, Some(entity), None)
        .await
        .expect("status");
    rows.into_iter()
        .find(|r| r.rule_name == RULE)
        .map(|r| r.status.as_str().to_string())
}

async fn wait_status(store: &plumbline_store::Store, entity: &str, want: &str, timeout: Duration) {
    eventually(timeout, &format!("{entity} {RULE} = {want}"), || async {
        (status_of(store, entity).await.as_deref() == Some(want)).then_some(())
    })
    .await;
}

/// Waits until `entity` has been evaluated since it had been `before` times (its checks).
async fn wait_evaluated_since(
    store: &plumbline_store::Store,
    entity: &str,
    before: i64,
    what: &str,
) {
    eventually(Duration::from_secs(60), what, || async {
        (store.checks_count(entity).await.ok()? > before).then_some(())
    })
    .await;
}

fn verdicts(records: &[plumbline_bus::Record], entity: &str) -> Vec<Verdict> {
    records
        .iter()
        .filter(|r| r.key.as_deref() == Some(entity))
        .filter_map(|r| Verdict::decode(r.payload.as_slice()).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switched_off_protection_is_restored_end_to_end() {
    let db = TestDb::new().await;
    let (prefix, topics) = topics(3).await;
    let stack = start_stack(&db, &prefix, Duration::from_secs(3600)).await;
    let store = db.store();
    let id = stack.sim.create_repo(
        "acme",
        "payments",
        RepoOptions {
            protected: true,
            ..Default::default()
        },
    );
    let entity = format!("github/repository/{id}");
    let mut verdict_reader = Reader::new(&topics.verdicts);
    let mut action_reader = Reader::new(&topics.actions);
    enroll(&stack, &[("acme", "payments")]).await;
    wait_status(&store, &entity, "pass", Duration::from_secs(60)).await;

    // A human switches protection off in the UI; GitHub sends branch_protection_rule/deleted.
    let puts_before = stack
        .sim
        .request_counts()
        .get(&format!("PUT {PROTECTION_ROUTE}"))
        .copied()
        .unwrap_or(0);
    stack
        .sim
        .remove_protection("acme", "payments", "main")
        .expect("remove protection");

    // The failing verdict is published, the actuator restores protection, the next evaluation passes.
    let seen = verdict_reader
        .read_until(Duration::from_secs(90), |rs| {
            let vs = verdicts(rs, &entity);
            let fail_at = vs.iter().position(|v| v.status == EvalStatus::Fail as i32);
            fail_at.is_some_and(|i| vs[i..].iter().any(|v| v.status == EvalStatus::Pass as i32))
        })
        .await;
    assert!(
        seen,
        "expected a failing then a passing verdict for {entity}"
    );
    let vs = verdicts(&verdict_reader.records, &entity);
    let fail = vs
        .iter()
        .find(|v| v.status == EvalStatus::Fail as i32)
        .expect("failing verdict");
    assert_eq!(
        (
            fail.rule_type.as_str(),
            fail.profile.as_str(),
            fail.remediate.as_str()
        ),
        (RULE, "branch-protection", "on")
    );
    assert_eq!(fail.message, "The branch has no protection rule");
    assert!(!fail.input_digest.is_empty());
    // Records carry W3C trace context and CloudEvents headers.
    let rec = verdict_reader
        .records
        .iter()
        .find(|r| r.key.as_deref() == Some(entity.as_str()))
        .expect("a verdict record");
    assert!(
        rec.headers
            .get("traceparent")
            .is_some_and(|t| t.starts_with("00-")),
        "{:?}",
        rec.headers
    );
    assert_eq!(
        rec.headers.get("ce_specversion").map(String::as_str),
        Some("1.0")
    );
    assert_eq!(
        rec.headers.get("ce_type").map(String::as_str),
        Some("dev.plumbline.verdict.v1")
    );

    wait_status(&store, &entity, "pass", Duration::from_secs(30)).await;
    let protection = stack
        .sim
        .protection("acme", "payments", "main")
        .expect("protection restored");
    assert_eq!(
        protection["required_pull_request_reviews"]["required_approving_review_count"],
        1
    );
    assert_eq!(protection["allow_force_pushes"]["enabled"], false);
    let puts_after = stack
        .sim
        .request_counts()
        .get(&format!("PUT {PROTECTION_ROUTE}"))
        .copied()
        .unwrap_or(0);
    assert_eq!(
        puts_after - puts_before,
        1,
        "exactly one remediation request"
    );

    // The action is recorded and published.
    // One action applied the fix; a later failing verdict (the deletion's webhook and the
    // evaluation after it can both fail) found live state passing and was recorded skipped.
    let actions = store.list_actions(&entity).await.expect("actions");
    let applied: Vec<_> = actions
        .iter()
        .filter(|a| a.status.as_str() == "applied")
        .collect();
    assert_eq!(applied.len(), 1, "{actions:?}");
    assert!(
        actions
            .iter()
            .all(|a| a.status.as_str() == "applied" || a.status.as_str() == "skipped"),
        "{actions:?}"
    );
    assert_eq!(
        (applied[0].method.as_str(), applied[0].action_type.as_str()),
        ("PUT", "gh_branch_protection")
    );
    assert!(applied[0]
        .url
        .ends_with("/repos/acme/payments/branches/main/protection"));
    let got = action_reader
        .read_until(Duration::from_secs(20), |rs| !rs.is_empty())
        .await;
    assert!(got, "an action outcome on the actions topic");
    let outcome =
        ActionOutcome::decode(action_reader.records[0].payload.as_slice()).expect("decodes");
    assert_eq!(outcome.status, ActionStatus::Applied as i32);
    assert_eq!(outcome.rule_type, RULE);
    assert!(
        store.history_count(&entity).await.expect("history") >= 3,
        "pass, fail and pass are in history"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_webhook_is_corrected_by_the_reconciler_sweep() {
    let db = TestDb::new().await;
    let (prefix, _topics) = topics(3).await;
    let stack = start_stack(&db, &prefix, Duration::from_secs(4)).await;
    let store = db.store();
    let id = stack.sim.create_repo(
        "acme",
        "ledger",
        RepoOptions {
            protected: true,
            ..Default::default()
        },
    );
    let entity = format!("github/repository/{id}");
    enroll(&stack, &[("acme", "ledger")]).await;
    wait_status(&store, &entity, "pass", Duration::from_secs(60)).await;

    // The webhook for this change is lost.
    stack.sim.set_webhooks_enabled(false);
    let sent = stack.sim.webhooks_sent();
    stack
        .sim
        .remove_protection("acme", "ledger", "main")
        .expect("remove protection");
    assert!(stack.sim.protection("acme", "ledger", "main").is_none());

    eventually(
        Duration::from_secs(60),
        "the sweep restores protection",
        || async { stack.sim.protection("acme", "ledger", "main").map(|_| ()) },
    )
    .await;
    wait_status(&store, &entity, "pass", Duration::from_secs(30)).await;
    assert_eq!(
        stack.sim.webhooks_sent(),
        sent,
        "no webhook was delivered: the sweep alone found the drift"
    );
    // The sweep's progress is on the reconciler's /metrics.
    let addr = stack.health.get("reconciler").expect("reconciler runs");
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    let gauge = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} missing: {metrics}"))
    };
    assert_eq!(gauge("plumbline_reconciler_sweep_entities"), 1.0);
    assert!(gauge("plumbline_reconciler_sweep_entities_done") <= 1.0);
    let finish = gauge("plumbline_reconciler_sweep_expected_finish_timestamp_seconds");
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(
        finish > now - 10.0 && finish < now + 10.0,
        "{finish} vs {now}"
    );
    let actions = store.list_actions(&entity).await.expect("actions");
    assert_eq!(
        actions
            .iter()
            .filter(|a| a.status.as_str() == "applied")
            .count(),
        1,
        "{actions:?}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evaluator_restart_mid_stream_leaves_no_entity_without_a_verdict() {
    let db = TestDb::new().await;
    let (prefix, _topics) = topics(3).await;
    let mut stack = start_stack(&db, &prefix, Duration::from_secs(3600)).await;
    let store = db.store();
    let fleet = stack.sim.seed("acme", 40, "svc", 0.5);
    let names: Vec<(String, String)> = fleet
        .iter()
        .map(|(o, n, _)| (o.clone(), n.clone()))
        .collect();
    let refs: Vec<(&str, &str)> = names
        .iter()
        .map(|(o, n)| (o.as_str(), n.as_str()))
        .collect();
    enroll(&stack, &refs).await;

    // Stop the evaluator as soon as it has made some progress, then start it again.
    eventually(Duration::from_secs(60), "first verdicts", || async {
        let n = store
            .list_status(PROJECT, None, None)
            .await
            .expect("status")
            .len();
        (n > 0).then_some(())
    })
    .await;
    stack.stop_evaluator().await;
    let done_before = store
        .list_status(PROJECT, None, None)
        .await
        .expect("status")
        .len();
    stack.start_evaluator().await.expect("evaluator restarts");

    eventually(
        Duration::from_secs(120),
        "every entity has a verdict",
        || async {
            let rows = store
                .list_status(PROJECT, None, None)
                .await
                .expect("status");
            (rows.len() == fleet.len()).then_some(())
        },
    )
    .await;
    eprintln!("statuses before restart: {done_before} of {}", fleet.len());
    // Every repository ends up protected and passing.
    for (o, n, id) in &fleet {
        wait_status(
            &store,
            &format!("github/repository/{id}"),
            "pass",
            Duration::from_secs(60),
        )
        .await;
        assert!(
            stack.sim.protection(o, n, "main").is_some(),
            "{o}/{n} protected"
        );
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sweep_of_unchanged_repositories_costs_no_quota() {
    let db = TestDb::new().await;
    let (prefix, _topics) = topics(3).await;
    let stack = start_stack(&db, &prefix, Duration::from_secs(3600)).await;
    let store = db.store();
    let fleet = stack.sim.seed("acme", 6, "steady", 1.0);
    let names: Vec<(String, String)> = fleet
        .iter()
        .map(|(o, n, _)| (o.clone(), n.clone()))
        .collect();
    let refs: Vec<(&str, &str)> = names
        .iter()
        .map(|(o, n)| (o.as_str(), n.as_str()))
        .collect();
    enroll(&stack, &refs).await;
    for (_, _, id) in &fleet {
        wait_status(
            &store,
            &format!("github/repository/{id}"),
            "pass",
            Duration::from_secs(60),
        )
        .await;
    }
    // Let events still in flight (webhooks from seeding) settle, then sweep everything.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack.sim.reset_request_log();
    let mut c = client::connect(&stack.control_url(), None)
        .await
        .expect("control");
    let queued = c
        .reconcile(plumbline_proto::v1::ReconcileRequest {
            project: PROJECT.into(),
            entity_id: String::new(),
        })
        .await
        .expect("reconcile")
        .into_inner()
        .entities_queued;
    assert_eq!(queued as usize, fleet.len());
    let route = format!("GET {PROTECTION_ROUTE}");
    eventually(
        Duration::from_secs(60),
        "every repository re-read",
        || async {
            (stack.sim.request_counts().get(&route).copied().unwrap_or(0) >= fleet.len() as u64)
                .then_some(())
        },
    )
    .await;
    let reads: Vec<u16> = stack
        .sim
        .request_log()
        .iter()
        .filter(|r| r.route == PROTECTION_ROUTE)
        .map(|r| r.status)
        .collect();
    assert!(
        reads.iter().all(|s| *s == 304),
        "every re-read was a free 304: {reads:?}"
    );
    stack.stop().await;
}

/// An App installation event enrolls a repository through ingest alone (no operator call); the
/// evaluator learns its default branch (not in such payloads) and judges the right branch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repository_added_to_the_installation_is_enrolled_and_evaluated() {
    let db = TestDb::new().await;
    let (prefix, _topics) = topics(3).await;
    let stack = start_stack(&db, &prefix, Duration::from_secs(3600)).await;
    let store = db.store();
    let id = stack.sim.create_repo(
        "acme",
        "vault",
        RepoOptions {
            default_branch: "trunk".into(),
            protected: true,
            ..Default::default()
        },
    );
    enroll(&stack, &[]).await; // rule types and profile only
    let body = serde_json::to_vec(&serde_json::json!({
        "action": "added",
        "installation": {"id": 1, "account": {"login": "acme"}},
        "repository_selection": "selected",
        "repositories_added": [{"id": id, "name": "vault", "full_name": "acme/vault", "private": false}],
        "repositories_removed": [],
    }))
    .expect("json");
    assert_eq!(
        deliver(&stack, "installation_repositories", &body).await,
        202
    );
    let entity = format!("github/repository/{id}");
    // Protected on trunk, not on main: a pass means the evaluator read the right branch.
    wait_status(&store, &entity, "pass", Duration::from_secs(60)).await;
    let e = store
        .get_entity(&entity)
        .await
        .expect("store")
        .expect("enrolled");
    assert_eq!(e.default_branch(), Some("trunk"));
    stack.stop().await;
}

/// Re-evaluating an unchanged repository reuses each rule's verdict (same input digest, rule
/// version and parameters) instead of evaluating again, and still records the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unchanged_repository_reuses_its_verdicts_and_the_check_is_recorded() {
    let db = TestDb::new().await;
    let (prefix, _topics) = topics(3).await;
    let stack = start_stack(&db, &prefix, Duration::from_secs(3600)).await;
    let store = db.store();
    let id = stack.sim.create_repo(
        "acme",
        "steady",
        RepoOptions {
            protected: true,
            ..Default::default()
        },
    );
    let entity = format!("github/repository/{id}");
    enroll(&stack, &[("acme", "steady")]).await;
    wait_status(&store, &entity, "pass", Duration::from_secs(60)).await;
    // The repository was announced twice (the simulator's "created" webhook, enrolled by
    // ingest, and the registration), with different properties; measure only once both
    // evaluations are done, so the one below is the only one that can count.
    let mut settled = store.checks_count(&entity).await.expect("history");
    loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = store.checks_count(&entity).await.expect("history");
        if now == settled {
            break;
        }
        settled = now;
    }
    let metrics = stack.evaluator_metrics.clone().expect("evaluator running");
    let reused = || metrics.counter_value("plumbline_evaluator_reused_total", &[]);
    let history = store.checks_count(&entity).await.expect("history");
    let before = reused();
    // Registering again queues another evaluation; nothing about the repository changed.
    let mut c = client::connect(&stack.control_url(), None)
        .await
        .expect("control api");
    commands::register_repository(&mut c, PROJECT, "acme/steady", vec![], "")
        .await
        .expect("register");
    wait_evaluated_since(
        &store,
        &entity,
        history,
        "the second evaluation is recorded",
    )
    .await;
    assert!(reused() > before, "the unchanged rule's verdict was reused");
    assert_eq!(status_of(&store, &entity).await.as_deref(), Some("pass"));
    stack.stop().await;
}

/// At 100,000 repositories the evaluator's ETag cache cannot hold every answer until the next
/// sweep; here it holds none at all. A sweep of an unchanged repository still costs no quota:
/// the reads of its last evaluation, kept in Postgres as validators, all answer 304 to
/// conditional requests, and every verdict stands without reading or evaluating again (the
/// check is still recorded). A change whose webhook was lost is still found by the next sweep,
/// read afresh and fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unchanged_repository_is_swept_for_free_with_no_etag_cache() {
    let db = TestDb::new().await;
    let (prefix, _topics) = topics(3).await;
    let mut cfg = StackConfig::local(&kafka(), &db.url, &prefix);
    cfg.reconcile_interval = Duration::from_secs(3);
    cfg.evaluator_etag_cache_mib = 0;
    let stack = Stack::start(cfg).await.expect("stack starts");
    let store = db.store();
    let id = stack.sim.create_repo(
        "acme",
        "vault",
        RepoOptions {
            protected: true,
            ..Default::default()
        },
    );
    let entity = format!("github/repository/{id}");
    enroll(&stack, &[("acme", "vault")]).await;
    wait_status(&store, &entity, "pass", Duration::from_secs(60)).await;
    let metrics = stack.evaluator_metrics.clone().expect("evaluator running");
    let checks = |outcome: &str| {
        metrics.counter_value(
            "plumbline_evaluator_sweep_checks_total",
            &[("outcome", outcome)],
        )
    };
    let reused = || metrics.counter_value("plumbline_evaluator_reused_total", &[]);
    let charged = || {
        stack
            .sim
            .request_log()
            .iter()
            .filter(|r| r.charged && r.path.starts_with("/repos/acme/vault"))
            .count()
    };
    eventually(
        Duration::from_secs(60),
        "a sweep finds the repository unchanged",
        || async { (checks("unchanged") >= 1).then_some(()) },
    )
    .await;
    let (unchanged_before, reused_before, charged_before) =
        (checks("unchanged"), reused(), charged());
    let history = store.checks_count(&entity).await.expect("checks");
    let history_rows = store.history_count(&entity).await.expect("history");
    eventually(
        Duration::from_secs(60),
        "two more sweeps find it unchanged",
        || async { (checks("unchanged") >= unchanged_before + 2).then_some(()) },
    )
    .await;
    assert_eq!(
        charged(),
        charged_before,
        "unchanged sweeps cost no quota, with no answer kept in memory"
    );
    assert!(
        reused() >= reused_before + 2,
        "the verdicts stood: {} reused before, {} after",
        reused_before,
        reused()
    );
    assert!(
        store.checks_count(&entity).await.expect("checks") >= history + 2,
        "each check is recorded"
    );
    assert_eq!(
        store.history_count(&entity).await.expect("history"),
        history_rows,
        "an unchanged verdict writes no history row"
    );
    assert_eq!(status_of(&store, &entity).await.as_deref(), Some("pass"));

    // The webhook of this change is lost: only a sweep can find it.
    stack.sim.set_webhooks_enabled(false);
    let changed_before = checks("changed");
    stack
        .sim
        .remove_protection("acme", "vault", "main")
        .expect("remove protection");
    eventually(
        Duration::from_secs(60),
        "the next sweep finds the change and protection is restored",
        || async { stack.sim.protection("acme", "vault", "main").map(|_| ()) },
    )
    .await;
    assert!(
        checks("changed") > changed_before,
        "the sweep saw the change"
    );
    wait_status(&store, &entity, "pass", Duration::from_secs(30)).await;
    stack.stop().await;
}

/// A webhook replayed with a new delivery id (an attacker who captured a signed delivery, or a
/// redelivery after the dedupe window) passes the signature check, since the body is GitHub's;
/// all it can cause is a re-evaluation of live state. Here the protection was switched off and
/// restored once; the same signed "deleted" body sent again, under new delivery ids, changes
/// nothing on GitHub and records no new action: the repository is evaluated again and passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_webhook_only_causes_a_re_evaluation() {
    let db = TestDb::new().await;
    let (prefix, _topics) = topics(3).await;
    let stack = start_stack(&db, &prefix, Duration::from_secs(3600)).await;
    let store = db.store();
    let id = stack.sim.create_repo(
        "acme",
        "ledger",
        RepoOptions {
            protected: true,
            ..Default::default()
        },
    );
    let entity = format!("github/repository/{id}");
    enroll(&stack, &[("acme", "ledger")]).await;
    wait_status(&store, &entity, "pass", Duration::from_secs(60)).await;
    // The original: protection off, fixed once.
    stack
        .sim
        .remove_protection("acme", "ledger", "main")
        .expect("remove protection");
    eventually(Duration::from_secs(60), "protection restored", || async {
        stack.sim.protection("acme", "ledger", "main").map(|_| ())
    })
    .await;
    wait_status(&store, &entity, "pass", Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let puts = || {
        stack
            .sim
            .request_counts()
            .get(&format!("PUT {PROTECTION_ROUTE}"))
            .copied()
            .unwrap_or(0)
    };
    let (puts_before, actions_before, history_before) = (
        puts(),
        store.list_actions(&entity).await.expect("actions").len(),
        store.checks_count(&entity).await.expect("history"),
    );
    assert_eq!(puts_before, 1);

    // GitHub's "deleted" payload for this repository, signed with the real secret, replayed
    // three times under new delivery ids.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../../shared/github-webhooks/api.github.com/branch_protection_rule/deleted.payload.json",
    );
    let mut payload: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .expect("json");
    payload["repository"]["id"] = id.into();
    payload["repository"]["name"] = "ledger".into();
    payload["repository"]["full_name"] = "acme/ledger".into();
    payload["repository"]["owner"]["login"] = "acme".into();
    let body = serde_json::to_vec(&payload).expect("json");
    for _ in 0..3 {
        assert_eq!(
            deliver(&stack, "branch_protection_rule", &body).await,
            202,
            "a replay is accepted as a delivery"
        );
    }
    // It was evaluated again (events of one entity waiting together are coalesced into one
    // evaluation) ...
    wait_evaluated_since(&store, &entity, history_before, "the replays evaluated").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // ... and nothing else happened.
    assert_eq!(status_of(&store, &entity).await.as_deref(), Some("pass"));
    assert_eq!(puts(), puts_before, "no request to GitHub changed anything");
    assert_eq!(
        store.list_actions(&entity).await.expect("actions").len(),
        actions_before,
        "no action recorded"
    );
    assert!(stack.sim.protection("acme", "ledger", "main").is_some());
    stack.stop().await;
}

/// Webhooks that change the registry are hints, since a signed body can be replayed: a
/// "deleted" for a live repository and an old "renamed" only cause an evaluation; a real
/// deletion retires the entity and a real rename moves it, each once GitHub confirms it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registry_webhooks_take_effect_only_when_github_confirms_them() {
    let db = TestDb::new().await;
    let (prefix, _topics) = topics(3).await;
    let stack = start_stack(&db, &prefix, Duration::from_secs(3600)).await;
    let store = db.store();
    let keeper = stack.sim.create_repo(
        "acme",
        "keeper",
        RepoOptions {
            protected: true,
            ..Default::default()
        },
    );
    let doomed = stack.sim.create_repo(
        "acme",
        "doomed",
        RepoOptions {
            protected: true,
            ..Default::default()
        },
    );
    let (keeper_id, doomed_id) = (
        format!("github/repository/{keeper}"),
        format!("github/repository/{doomed}"),
    );
    enroll(&stack, &[("acme", "keeper"), ("acme", "doomed")]).await;
    wait_status(&store, &keeper_id, "pass", Duration::from_secs(60)).await;
    wait_status(&store, &doomed_id, "pass", Duration::from_secs(60)).await;
    let repository = |id: u64, name: &str| serde_json::json!({"id": id, "name": name, "full_name": format!("acme/{name}"), "owner": {"login": "acme"}, "default_branch": "main", "private": true});

    // A "deleted" for the live repository (replayed, or sent in error): evaluated, not retired.
    let history = store.checks_count(&keeper_id).await.expect("history");
    let body = serde_json::to_vec(
        &serde_json::json!({"action": "deleted", "repository": repository(keeper, "keeper")}),
    )
    .expect("json");
    assert_eq!(deliver(&stack, "repository", &body).await, 202);
    wait_evaluated_since(
        &store,
        &keeper_id,
        history,
        "the replayed deletion evaluated",
    )
    .await;
    assert!(
        store.get_entity(&keeper_id).await.expect("store").is_some(),
        "a live repository is not retired by a webhook"
    );
    assert_eq!(status_of(&store, &keeper_id).await.as_deref(), Some("pass"));

    // Really deleted: GitHub sends "deleted", the name answers 404, the entity is retired.
    stack.sim.delete_repo("acme", "doomed").expect("delete");
    eventually(
        Duration::from_secs(60),
        "the deleted repository retired",
        || async {
            store
                .get_entity(&doomed_id)
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;

    // Really renamed: the new name leads to the same id, so the entity follows it.
    stack
        .sim
        .rename_repo("acme", "keeper", "keeper-2")
        .expect("rename");
    eventually(Duration::from_secs(60), "the rename followed", || async {
        (store.get_entity(&keeper_id).await.ok()??.name == "keeper-2").then_some(())
    })
    .await;
    // An old "renamed" (back to "keeper") replayed: that name leads nowhere, the entity stays.
    let history = store.checks_count(&keeper_id).await.expect("history");
    let body = serde_json::to_vec(&serde_json::json!({"action": "renamed", "repository": repository(keeper, "keeper"), "changes": {"repository": {"name": {"from": "keeper-0"}}}})).expect("json");
    assert_eq!(deliver(&stack, "repository", &body).await, 202);
    wait_evaluated_since(&store, &keeper_id, history, "the stale rename evaluated").await;
    let e = store
        .get_entity(&keeper_id)
        .await
        .expect("store")
        .expect("still enrolled");
    assert_eq!(
        e.full_name(),
        "acme/keeper-2",
        "a stale rename does not move the entity"
    );
    assert_eq!(status_of(&store, &keeper_id).await.as_deref(), Some("pass"));
    // A new repository taking the old name is not mistaken for it.
    stack
        .sim
        .create_repo("acme", "keeper", RepoOptions::default());
    let history = store.checks_count(&keeper_id).await.expect("history");
    assert_eq!(deliver(&stack, "repository", &body).await, 202);
    wait_evaluated_since(&store, &keeper_id, history, "evaluated again").await;
    let e = store
        .get_entity(&keeper_id)
        .await
        .expect("store")
        .expect("still enrolled");
    assert_eq!(e.full_name(), "acme/keeper-2");
    assert_eq!(
        status_of(&store, &keeper_id).await.as_deref(),
        Some("pass"),
        "judged on its own state, not the unprotected namesake's"
    );
    stack.stop().await;
}

/// A spent GitHub quota is said where people look: the evaluations parked on it, until when,
/// the credential's quota, and the sweep deferring the credential's entities to leave its
/// reserve (rather than re-emitting work that could only park).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn work_waiting_on_a_spent_quota_shows_in_status_and_the_sweep_defers_it() {
    let db = TestDb::new().await;
    let (prefix, _topics) = topics(3).await;
    let mut cfg = StackConfig::local(&kafka(), &db.url, &prefix);
    cfg.reconcile_interval = Duration::from_secs(4);
    // Evaluations start until GitHub refuses, so the quota is spent to its last request.
    cfg.evaluator_quota_floor = 0;
    let stack = Stack::start(cfg).await.expect("stack starts");
    let fleet = stack.sim.seed("acme", 3, "thrifty", 0.0);
    // Enough to register the three, not to evaluate them (each needs several reads).
    stack.sim.set_rate_limit(10);
    let names: Vec<(String, String)> = fleet
        .iter()
        .map(|(o, n, _)| (o.clone(), n.clone()))
        .collect();
    let refs: Vec<(&str, &str)> = names
        .iter()
        .map(|(o, n)| (o.as_str(), n.as_str()))
        .collect();
    enroll(&stack, &refs).await;
    let mut c = client::connect(&stack.control_url(), None)
        .await
        .expect("control");
    let posture = |mut c: client::Client| async move {
        let p = c
            .get_posture(plumbline_proto::v1::GetPostureRequest {
                project: PROJECT.into(),
            })
            .await
            .expect("posture")
            .into_inner();
        (c, p)
    };
    let mut p;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        (c, p) = posture(c).await;
        let parked = p.waits.iter().any(|w| {
            w.stage == plumbline_proto::v1::WaitStage::Evaluation as i32
                && w.cause == plumbline_proto::v1::WaitCause::ProviderQuota as i32
        });
        let swept = p
            .sweep
            .as_ref()
            .is_some_and(|s| s.deferred == fleet.len() as u64 && s.done == s.entities);
        if parked && swept {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no parked evaluations and deferring sweep shown: {p:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let now = chrono::Utc::now().timestamp();
    let wait = p
        .waits
        .iter()
        .find(|w| w.cause == plumbline_proto::v1::WaitCause::ProviderQuota as i32)
        .expect("quota wait");
    let until = wait.last_until.as_ref().expect("until").seconds;
    assert!(
        until > now + 1800,
        "parked until the window renews (the simulator's is an hour): {until} vs {now}"
    );
    let own = p
        .quotas
        .iter()
        .find(|q| q.credential == "own")
        .expect("the services' own credential's quota");
    assert_eq!((own.remaining, own.limit), (0, 10), "{own:?}");
    let sweep = p.sweep.as_ref().expect("sweep");
    assert!(sweep.deferred_until.as_ref().expect("until").seconds > now + 1800);
    // And in words, below `plumb status --summary`.
    let text = commands::posture(&mut c, PROJECT).await.expect("summary");
    assert!(
        text.contains("evaluations until") || text.contains("evaluation until"),
        "{text}"
    );
    assert!(
        text.contains("the GitHub quota of its credential is spent"),
        "{text}"
    );
    assert!(
        text.contains("quota: own has 0/10 GitHub requests left"),
        "{text}"
    );
    assert!(text.contains("deferred to the next sweep"), "{text}");
    stack.stop().await;
}

/// A fleet is enrolled from its organisation's listing: one GitHub request per 100
/// repositories (not one per repository), so enrolling leaves the quota to evaluating them;
/// names that could steer a request path are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_organisation_is_registered_with_one_request_per_hundred_repositories() {
    let db = TestDb::new().await;
    let (prefix, _topics) = topics(3).await;
    let stack = start_stack(&db, &prefix, Duration::from_secs(3600)).await;
    let store = db.store();
    // Created before the App's webhooks reach ingest: only the listing enrolls them.
    stack.sim.set_webhooks_enabled(false);
    let fleet = stack.sim.seed("acme", 250, "svc", 1.0);
    stack.sim.set_webhooks_enabled(true);
    enroll(&stack, &[]).await; // rule types and profiles only
    stack.sim.reset_request_log();
    let mut c = client::connect(&stack.control_url(), None)
        .await
        .expect("control");
    let r = commands::register_owner(&mut c, PROJECT, "acme", vec!["team:core".into()], "")
        .await
        .expect("register the organisation");
    assert_eq!((r.registered, r.created, r.other_project), (250, 250, 0));
    assert_eq!(r.requests, 3, "250 repositories, 100 per page");
    assert_eq!(
        stack
            .sim
            .request_counts()
            .get("GET /orgs/{org}/repos")
            .copied(),
        Some(3)
    );
    let (_, _, first) = &fleet[0];
    let (_, _, last) = &fleet[249];
    for id in [first, last] {
        let e = store
            .get_entity(&format!("github/repository/{id}"))
            .await
            .expect("store")
            .expect("registered");
        assert_eq!(e.labels, vec!["team:core".to_string()]);
        assert_eq!(e.default_branch(), Some("main"));
        // And evaluated, as a repository registered alone is.
        wait_status(
            &store,
            &format!("github/repository/{id}"),
            "pass",
            Duration::from_secs(120),
        )
        .await;
    }
    let again = commands::register_owner(&mut c, PROJECT, "acme", vec![], "")
        .await
        .expect("again");
    assert_eq!(
        (again.registered, again.created),
        (250, 0),
        "refreshed, not duplicated"
    );
    let kept = store
        .get_entity(&format!("github/repository/{first}"))
        .await
        .expect("store")
        .expect("registered");
    assert_eq!(
        kept.labels,
        vec!["team:core".to_string()],
        "registered again without labels: its own are kept"
    );
    // Names are GitHub's, never a path that leads elsewhere with the project's credential.
    for owner in ["acme/../orgs", "acme?per_page=1", "", "-x"] {
        let err = commands::register_owner(&mut c, PROJECT, owner, vec![], "")
            .await
            .expect_err("refused");
        let status = err.downcast_ref::<tonic::Status>().expect("a status");
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{owner}: {status:?}"
        );
    }
    for name in ["acme/..", "acme/a%2Fb", "acme/.."] {
        let (o, n) = name.split_once('/').expect("owner/name");
        let err = c
            .register_repository(plumbline_proto::v1::RegisterRepositoryRequest {
                project: PROJECT.into(),
                owner: o.into(),
                name: n.into(),
                labels: vec![],
                provider: String::new(),
            })
            .await
            .expect_err("refused");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{name}: {err:?}");
    }
    let err = commands::register_owner(&mut c, PROJECT, "nobody", vec![], "")
        .await
        .expect_err("no such organisation");
    let status = err.downcast_ref::<tonic::Status>().expect("a status");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    stack.stop().await;
}
