//! The store against a real Postgres.

use plumbline_domain::{Entity, EntityRef};
use plumbline_store::testing::TestDatabase;
use plumbline_store::{migrations, EvaluationRecord, NewAction, StoreError, TakeOver};

fn repo(id: u64, name: &str) -> Entity {
    Entity {
        entity_ref: EntityRef::repository("github", id),
        project: "default".into(),
        credential: None,
        owner: "acme".into(),
        name: name.into(),
        properties: serde_json::json!({"default_branch": "main"}),
        labels: vec!["team:a".into()],
    }
}

fn eval(entity: &str, status: &str, at: chrono::DateTime<chrono::Utc>) -> EvaluationRecord {
    plumbline_store::testing::evaluation(entity, status.parse().expect("a status"), at)
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let db = TestDatabase::new().await;
    let s = db.owner_store();
    assert_eq!(s.migrate().await.expect("re-run"), 0, "already applied");
    assert_eq!(
        s.schema_version().await.expect("version"),
        migrations().len() as i64
    );
}

/// The services' role (`k8s/postgres-roles.sql`'s `plumbline_app`, which every test database
/// hands out as `db.url`) reads and writes rows and nothing else: it cannot run migrations or
/// change the schema, even where the schema owner could.
#[tokio::test]
async fn the_services_role_cannot_change_the_schema() {
    let db = TestDatabase::new().await;
    let e = db
        .store()
        .migrate()
        .await
        .expect_err("plumbline_app cannot migrate");
    let said = e.to_string();
    assert!(
        said.contains("permission denied for schema public") && said.contains("schema owner"),
        "{said}"
    );
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    for statement in [
        "CREATE TABLE planted (id int)",
        "DROP TABLE entities",
        "ALTER TABLE entities ADD COLUMN planted int",
        "TRUNCATE evaluation_history",
        "CREATE INDEX planted ON entities (owner)",
        "CREATE FUNCTION planted() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE TRIGGER planted BEFORE UPDATE ON actions FOR EACH ROW EXECUTE FUNCTION posture_count()",
        // Nor may it write the migration history: a service that could would make `plumb
        // migrate` skip a migration (a row from the future), re-run them all (rows deleted) or
        // refuse to run (a checksum changed).
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (9999, 'planted', '', '0')",
        "UPDATE refinery_schema_history SET checksum = '1' WHERE version = 1",
        "DELETE FROM refinery_schema_history",
    ] {
        let e = client.batch_execute(statement).await.expect_err(statement);
        assert_eq!(
            e.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{statement}: {e}"
        );
    }
    // Rows it may: the schema owner's later tables included (default privileges).
    let version: i64 = client
        .query_one("SELECT count(*) FROM refinery_schema_history", &[])
        .await
        .expect("read the schema version")
        .get(0);
    assert_eq!(version, migrations().len() as i64);
}

/// Services started beside the migration Job wait for the schema they were built for, and
/// stop with an error saying what to run when it does not come.
#[tokio::test]
async fn services_wait_for_the_schema_they_need() {
    use std::time::Duration;
    let db = TestDatabase::new().await;
    let s = db.store();
    // The history is the schema owner's to write (the migration Job); services only read it.
    let (client, conn) = tokio_postgres::connect(&db.owner_url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let newest = migrations().len() as i64;
    // The schema one migration behind this build (its history row held back, to be put back
    // as the migration Job would write it).
    let row = client
        .query_one(
            "DELETE FROM refinery_schema_history WHERE version = $1 RETURNING name, applied_on, checksum",
            &[&(newest as i32)],
        )
        .await
        .expect("roll the history back");
    let (name, applied_on, checksum): (String, String, String) =
        (row.get(0), row.get(1), row.get(2));
    let e = s
        .wait_for_schema(Duration::from_millis(300), Duration::from_millis(50))
        .await
        .expect_err("behind");
    assert!(
        matches!(&e, StoreError::Migration { reason, .. } if reason.contains("plumb migrate") && reason.contains(&format!("version {}", newest - 1))),
        "{e}"
    );
    // The migration lands while it waits: it goes on.
    let waiting = tokio::spawn({
        let s = s.clone();
        async move {
            s.wait_for_schema(Duration::from_secs(30), Duration::from_millis(50))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "still waiting for the migration");
    client
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES ($1, $2, $3, $4)",
            &[&(newest as i32), &name, &applied_on, &checksum],
        )
        .await
        .expect("the migration lands");
    assert_eq!(waiting.await.expect("task").expect("schema"), newest);
    // A newer schema than the build (a rollback of the release) is accepted.
    client
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES ($1, 'from_the_future', '', '0')",
            &[&(newest as i32 + 1)],
        )
        .await
        .expect("a newer migration");
    assert_eq!(
        s.wait_for_schema(Duration::ZERO, Duration::from_millis(50))
            .await
            .expect("newer is fine"),
        newest + 1
    );
}

/// An applied migration edited afterwards (its checksum no longer matches) stops migrating,
/// naming the migration, instead of going unnoticed.
#[tokio::test]
async fn an_edited_migration_is_refused() {
    let db = TestDatabase::new().await;
    let s = db.owner_store();
    let (client, conn) = tokio_postgres::connect(&db.owner_url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .execute(
            "UPDATE refinery_schema_history SET checksum = '1' WHERE version = 2",
            &[],
        )
        .await
        .expect("tamper");
    match s.migrate().await {
        Err(StoreError::Migration { version, reason }) => {
            assert_eq!(version, 2);
            assert!(reason.contains("edited after it was applied"), "{reason}");
        }
        other => panic!("an edited migration must stop migrating: {other:?}"),
    }
}

/// A database migrated before refinery (history in `schema_migrations`) is taken over where it
/// stopped: nothing runs twice, and what is missing runs.
#[tokio::test]
async fn a_database_migrated_before_refinery_is_taken_over() {
    let db = TestDatabase::new().await;
    let s = db.owner_store();
    let (client, conn) = tokio_postgres::connect(&db.owner_url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    // As the old migrator left it after five of its six migrations (what came later, V6 and
    // everything refinery added since, undone: a new migration adds its undoing here).
    client
        .batch_execute(
            "DROP TABLE refinery_schema_history;
             CREATE TABLE schema_migrations (version bigint PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO schema_migrations (version, name) SELECT v, 'm' || v FROM generate_series(1, 5) v;
             DROP TABLE content_writes;
             ALTER TABLE actions DROP COLUMN claimed_by, DROP COLUMN lease_until;
             DROP TABLE audit_log, role_bindings, service_accounts;
             ALTER TABLE projects DROP COLUMN created_by;
             DROP INDEX evaluation_history_by_project, actions_by_project;
             DROP INDEX entities_by_parent;
             ALTER TABLE entities DROP COLUMN parent;
             DROP INDEX entities_by_credential;
             ALTER TABLE entities DROP COLUMN credential;
             DROP TABLE providers;
             DROP TABLE waits, credential_quota, sweep_progress;
             DROP TABLE entity_inputs;
             DROP TRIGGER posture_count_insert ON evaluation_status;
             DROP TRIGGER posture_count_delete ON evaluation_status;
             DROP TRIGGER posture_count_update ON evaluation_status;
             DROP TRIGGER posture_count_truncate ON evaluation_status;
             DROP FUNCTION posture_count(), posture_count_truncate();
             DROP TABLE posture_counts;
             CREATE INDEX evaluation_status_posture ON evaluation_status (project, profile, rule_name, status);
             DROP TABLE evaluation_checks;",
        )
        .await
        .expect("legacy state");
    assert_eq!(s.schema_version().await.expect("version"), 5);
    assert_eq!(
        s.migrate().await.expect("migrate"),
        migrations().len() - 5,
        "only what comes after the fifth runs"
    );
    assert_eq!(
        s.schema_version().await.expect("version"),
        migrations().len() as i64
    );
    assert_eq!(s.migrate().await.expect("again"), 0);
    let adopted: i64 = client
        .query_one("SELECT count(*) FROM refinery_schema_history", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(adopted, migrations().len() as i64);
}

#[tokio::test]
async fn entities_upsert_page_and_retire() {
    let db = TestDatabase::new().await;
    let s = db.store();
    for i in 0..5 {
        assert!(s
            .upsert_entity(&repo(100 + i, &format!("r{i}")))
            .await
            .expect("insert"));
    }
    // A rename updates the row; it is not a second entity.
    assert!(!s
        .upsert_entity(&repo(100, "renamed"))
        .await
        .expect("update"));
    let got = s
        .get_entity("github/repository/100")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.name, "renamed");
    assert_eq!(got.labels, vec!["team:a".to_string()]);
    let p1 = s.list_entities("default", None, 2).await.expect("page 1");
    let p2 = s
        .list_entities("default", Some(&p1[1].id()), 2)
        .await
        .expect("page 2");
    let p3 = s
        .list_entities("default", Some(&p2[1].id()), 2)
        .await
        .expect("page 3");
    assert_eq!((p1.len(), p2.len(), p3.len()), (2, 2, 1));
    assert!(s
        .retire_entity("github/repository/101")
        .await
        .expect("retire"));
    assert!(s
        .get_entity("github/repository/101")
        .await
        .expect("get")
        .is_none());
    assert_eq!(s.count_active_entities().await.expect("count"), 4);
    // An entity in an unknown project violates a foreign key: NotFound, by SQLSTATE.
    let mut bad = repo(999, "x");
    bad.project = "nope".into();
    assert!(matches!(
        s.upsert_entity(&bad).await,
        Err(StoreError::NotFound(_))
    ));
    // Registering, from another project, an entity that belongs to this one changes nothing
    // (its labels steer this project's selectors) and says only that it is taken.
    s.create_project("beta", "test").await.expect("project");
    let before = s
        .get_entity("github/repository/100")
        .await
        .expect("get")
        .expect("registered");
    let mut hijack = repo(100, "renamed");
    hijack.project = "beta".into();
    hijack.labels = vec!["not-prod".into()];
    match s.upsert_entity(&hijack).await {
        Err(StoreError::Conflict(msg)) => {
            assert!(
                msg.contains("another project") && !msg.contains("default"),
                "{msg}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.get_entity("github/repository/100").await.expect("get"),
        Some(before)
    );
}

#[tokio::test]
async fn documents_version_only_on_change() {
    let db = TestDatabase::new().await;
    let s = db.store();
    assert_eq!(
        s.upsert_rule_type("default", "r", "d1", "a: 1")
            .await
            .expect("v1"),
        (1, true)
    );
    assert_eq!(
        s.upsert_rule_type("default", "r", "d1", "a: 1")
            .await
            .expect("same"),
        (1, false)
    );
    assert_eq!(
        s.upsert_rule_type("default", "r", "d2", "a: 2")
            .await
            .expect("v2"),
        (2, true)
    );
    assert_eq!(
        s.upsert_profile("default", "p", "x", "b: 1")
            .await
            .expect("profile"),
        (1, true)
    );
    let v = s.document_versions("default").await.expect("versions");
    assert_eq!(
        v,
        vec![
            ("profile".into(), "p".into(), 1),
            ("rule_type".into(), "r".into(), 2)
        ]
    );
    assert_eq!(
        s.get_rule_type("default", "r")
            .await
            .expect("get")
            .expect("exists")
            .source_yaml,
        "a: 2"
    );
}

#[tokio::test]
async fn evaluations_keep_latest_status_and_full_history() {
    let db = TestDatabase::new().await;
    let s = db.store();
    s.upsert_entity(&repo(1, "r")).await.expect("entity");
    let t0 = chrono::Utc::now();
    let t1 = t0 + chrono::Duration::seconds(1);
    s.record_evaluations(
        "github/repository/1",
        &[eval("github/repository/1", "fail", t1)],
    )
    .await
    .expect("fail");
    // An older evaluation arriving late does not overwrite the newer status.
    s.record_evaluations(
        "github/repository/1",
        &[eval("github/repository/1", "pass", t0)],
    )
    .await
    .expect("late pass");
    let rows = s.list_status("default", None, None).await.expect("status");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status.as_str(), "fail");
    assert_eq!(
        s.history_count("github/repository/1")
            .await
            .expect("history"),
        2
    );
    // A status for an unregistered entity is refused.
    assert!(s
        .record_evaluations(
            "github/repository/404",
            &[eval("github/repository/404", "pass", t0)]
        )
        .await
        .is_err());
    // A rule no longer evaluated (removed from its profile) leaves the latest status.
    let mut other = eval(
        "github/repository/1",
        "pass",
        t1 + chrono::Duration::seconds(1),
    );
    other.rule_name = "another".into();
    s.record_evaluations("github/repository/1", &[other])
        .await
        .expect("record");
    let rows = s.list_status("default", None, None).await.expect("status");
    assert_eq!(
        rows.iter()
            .map(|r| r.rule_name.as_str())
            .collect::<Vec<_>>(),
        vec!["another"]
    );
    s.record_evaluations("github/repository/1", &[])
        .await
        .expect("no rules apply any more");
    assert!(s
        .list_status("default", None, None)
        .await
        .expect("status")
        .is_empty());
}

#[tokio::test]
async fn actions_are_claimed_once() {
    let db = TestDatabase::new().await;
    let s = db.store();
    s.upsert_entity(&repo(1, "r")).await.expect("entity");
    let a = NewAction {
        idempotency_key: "k1".into(),
        entity_id: "github/repository/1".into(),
        project: "default".into(),
        profile: "p".into(),
        rule_type: "r".into(),
        rule_name: "r".into(),
        kind: plumbline_domain::ActionKind::Remediation,
        action_type: "gh_branch_protection".into(),
        operation: plumbline_domain::ActionOperation::Apply,
        evaluation_id: None,
    };
    let hour = std::time::Duration::from_secs(3600);
    let id = s
        .claim_action(&a, "replica-a", hour)
        .await
        .expect("claim")
        .expect("first claim wins");
    assert_eq!(
        s.claim_action(&a, "replica-b", hour).await.expect("claim"),
        None,
        "second claim of the same key loses"
    );
    // A live lease of another replica is not taken over (a rebalance); its owner may retry.
    match s
        .take_over_action("k1", "replica-b", hour)
        .await
        .expect("take over")
    {
        TakeOver::Held { owner, until } => {
            assert_eq!(owner, "replica-a");
            assert!(until > chrono::Utc::now() + chrono::Duration::minutes(59));
        }
        other => panic!("another replica's live claim was not held: {other:?}"),
    }
    assert_eq!(
        s.take_over_action("k1", "replica-a", hour)
            .await
            .expect("take over"),
        TakeOver::Taken(id)
    );
    // An expired lease (its owner died) is taken over.
    let expired = NewAction {
        idempotency_key: "k-expired".into(),
        ..a.clone()
    };
    let eid = s
        .claim_action(&expired, "replica-a", std::time::Duration::ZERO)
        .await
        .expect("claim")
        .expect("claimed");
    assert_eq!(
        s.take_over_action("k-expired", "replica-b", hour)
            .await
            .expect("take over"),
        TakeOver::Taken(eid)
    );
    assert!(
        matches!(
            s.take_over_action("k-expired", "replica-a", hour)
                .await
                .expect("take over"),
            TakeOver::Held { .. }
        ),
        "and is now b's"
    );
    assert_eq!(
        s.take_over_action("k-missing", "replica-a", hour)
            .await
            .expect("take over"),
        TakeOver::Gone
    );
    let result = plumbline_store::ActionResult {
        status: plumbline_domain::ActionStatus::Applied,
        message: "ok".into(),
        method: "PUT".into(),
        url: "http://x/p".into(),
        body: "{}".into(),
        requests: vec![plumbline_domain::PlannedRequest::new(
            "PUT",
            "http://x/p",
            "{}",
        )],
        provider_ref: String::new(),
    };
    s.finish_action(id, &result).await.expect("finish");
    // Ending an action writes its audit record in the same statement.
    let audit = s
        .list_audit(&plumbline_store::AuditFilter {
            project: Some("default".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("audit");
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert!(audit[0].principal.starts_with("actuator"), "{:?}", audit[0]);
    assert_eq!(
        audit[0].outcome,
        plumbline_store::AuditOutcome::Action(plumbline_domain::ActionStatus::Applied)
    );
    assert_eq!(audit[0].request_digest.len(), 64);
    assert!(
        s.finish_action(i64::MAX, &result).await.is_err(),
        "no such action: no audit record either"
    );
    assert!(
        matches!(s.take_over_action("k1", "replica-b", hour).await.expect("take over"), TakeOver::Done(r) if r.id == id),
        "a finished action is announced, not redone"
    );
    let got = s.get_action("k1").await.expect("get").expect("exists");
    assert_eq!(
        (
            got.status.as_str(),
            got.method.as_str(),
            got.operation.as_str()
        ),
        ("applied", "PUT", "apply")
    );
    assert_eq!(got.requests, result.requests);
    // The newest finished action of a rule answers "what happened last".
    let last = s
        .last_action(
            "github/repository/1",
            "p",
            "r",
            plumbline_domain::ActionKind::Remediation,
            &[
                plumbline_domain::ActionStatus::Applied,
                plumbline_domain::ActionStatus::Failed,
            ],
        )
        .await
        .expect("last")
        .expect("one");
    assert_eq!(last.id, id);
    assert!(s
        .last_action(
            "github/repository/1",
            "p",
            "r",
            plumbline_domain::ActionKind::Alert,
            &[plumbline_domain::ActionStatus::Applied],
        )
        .await
        .expect("last")
        .is_none());
    assert!(s
        .last_action(
            "github/repository/1",
            "p",
            "r",
            plumbline_domain::ActionKind::Remediation,
            &[plumbline_domain::ActionStatus::Failed],
        )
        .await
        .expect("last")
        .is_none());
    // A failed claim can be released for a retry; an applied one cannot.
    s.release_action(id).await.expect("release");
    assert!(
        s.get_action("k1").await.expect("get").is_some(),
        "applied actions are kept"
    );
}

#[tokio::test]
async fn advisory_lock_has_one_holder_until_released() {
    let db = TestDatabase::new().await;
    let s = db.store();
    let first = s.try_lock(42).await.expect("lock").expect("first holder");
    assert!(first.still_held().await);
    assert!(
        s.try_lock(42).await.expect("lock").is_none(),
        "standby cannot take it"
    );
    drop(first);
    // The holder's connection is discarded, so the lock is free again.
    let mut again = None;
    for _ in 0..50 {
        again = s.try_lock(42).await.expect("lock");
        if again.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "lock is free after the holder is gone");
}

#[tokio::test]
async fn a_delivery_is_claimed_once_published_once_and_released_on_failure() {
    use plumbline_store::Claim;
    use std::time::Duration;
    let db = TestDatabase::new().await;
    let s = db.store();
    let lease = Duration::from_secs(30);
    let window = Duration::from_secs(3600);
    assert_eq!(
        s.claim_delivery("d1", "push", lease).await.expect("claim"),
        Claim::Claimed
    );
    // A second attempt while the first holds the claim must not be told "done".
    assert_eq!(
        s.claim_delivery("d1", "push", lease).await.expect("again"),
        Claim::InFlight
    );
    assert_eq!(
        s.mark_deliveries_published(&["d1".into(), "unknown".into()], window)
            .await
            .expect("mark"),
        1
    );
    assert_eq!(
        s.claim_delivery("d1", "push", lease).await.expect("dup"),
        Claim::Duplicate
    );
    assert_eq!(
        s.delivery_state("d1").await.expect("state").as_deref(),
        Some("published")
    );
    // A published delivery cannot be released; a failed claim can, and is then claimable again.
    assert!(!s.release_delivery("d1").await.expect("release published"));
    assert_eq!(
        s.claim_delivery("d2", "member", lease)
            .await
            .expect("claim"),
        Claim::Claimed
    );
    assert!(s.release_delivery("d2").await.expect("release"));
    assert_eq!(
        s.claim_delivery("d2", "member", lease)
            .await
            .expect("reclaim"),
        Claim::Claimed
    );
}

#[tokio::test]
async fn a_relaxed_store_does_not_wait_for_the_wal_flush_and_keeps_url_options() {
    use plumbline_store::{Claim, Store};
    use std::time::Duration;
    let db = TestDatabase::new().await;
    let sep = if db.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}options=-c%20statement_timeout%3D4321", db.url);
    let relaxed = Store::connect_relaxed(&url, 2).expect("connect");
    assert_eq!(
        relaxed.setting("synchronous_commit").await.expect("show"),
        "off"
    );
    assert_eq!(
        relaxed.setting("statement_timeout").await.expect("show"),
        "4321ms"
    );
    let durable = Store::connect(&url, 2).expect("connect");
    assert_eq!(
        durable.setting("synchronous_commit").await.expect("show"),
        "on"
    );
    assert_eq!(
        durable.setting("statement_timeout").await.expect("show"),
        "4321ms"
    );
    // Dedupe through it behaves the same, and the other store sees its commits.
    assert_eq!(
        relaxed
            .claim_delivery("d1", "push", Duration::from_secs(30))
            .await
            .expect("claim"),
        Claim::Claimed
    );
    relaxed
        .mark_deliveries_published(&["d1".into()], Duration::from_secs(60))
        .await
        .expect("mark");
    assert_eq!(
        durable
            .delivery_state("d1")
            .await
            .expect("state")
            .as_deref(),
        Some("published")
    );
}

#[tokio::test]
async fn expired_claims_are_taken_over_and_expired_rows_purged() {
    use plumbline_store::Claim;
    use std::time::Duration;
    let db = TestDatabase::new().await;
    let s = db.store();
    // A zero lease: the claim of a replica that died mid-publish is expired at once.
    assert_eq!(
        s.claim_delivery("d1", "push", Duration::ZERO)
            .await
            .expect("claim"),
        Claim::Claimed
    );
    assert_eq!(
        s.claim_delivery("d1", "push", Duration::from_secs(30))
            .await
            .expect("take over"),
        Claim::Claimed
    );
    // A dedupe window that ended: the delivery counts as new again, and the purge removes it.
    s.mark_deliveries_published(&["d1".into()], Duration::ZERO)
        .await
        .expect("mark");
    // The purge looks only at rows received longer ago than the window it is given.
    assert_eq!(
        s.purge_expired_deliveries(Duration::from_secs(3600), 100)
            .await
            .expect("purge young"),
        0
    );
    assert_eq!(
        s.purge_expired_deliveries(Duration::ZERO, 100)
            .await
            .expect("purge"),
        1
    );
    assert_eq!(s.delivery_state("d1").await.expect("state"), None);
    s.claim_delivery("d2", "push", Duration::from_secs(30))
        .await
        .expect("claim");
    assert_eq!(
        s.purge_expired_deliveries(Duration::ZERO, 100)
            .await
            .expect("purge live"),
        0,
        "live claims stay"
    );
}

#[tokio::test]
async fn refresh_entity_follows_renames_of_registered_entities_only() {
    let db = TestDatabase::new().await;
    let s = db.store();
    s.upsert_entity(&repo(7, "old")).await.expect("upsert");
    assert!(s
        .refresh_entity("github/repository/7", "acme", "new", Some("trunk"))
        .await
        .expect("refresh"));
    let e = s
        .get_entity("github/repository/7")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        (e.name.as_str(), e.default_branch()),
        ("new", Some("trunk"))
    );
    assert_eq!(e.labels, vec!["team:a".to_string()], "labels kept");
    assert!(!s
        .refresh_entity("github/repository/7", "acme", "new", None)
        .await
        .expect("unchanged"));
    assert!(
        !s.refresh_entity("github/repository/8", "acme", "x", None)
            .await
            .expect("unknown"),
        "unknown left alone"
    );
    assert!(s
        .get_entity("github/repository/8")
        .await
        .expect("get")
        .is_none());
}

#[tokio::test]
async fn enrolment_keeps_what_operators_set_and_reactivates_retired_entities() {
    let db = TestDatabase::new().await;
    let s = db.store();
    let mut e = repo(9, "svc");
    assert!(s.enroll_entity(&e).await.expect("new"), "new entity");
    // A later installation event names it again with fewer properties and no labels.
    e.labels = vec![];
    e.properties = serde_json::json!({"private": true});
    assert!(!s.enroll_entity(&e).await.expect("again"), "already active");
    let got = s
        .get_entity("github/repository/9")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got.labels, vec!["team:a".to_string()]);
    assert_eq!(got.default_branch(), Some("main"));
    assert_eq!(got.properties["private"], serde_json::json!(true));
    assert!(s
        .retire_entity("github/repository/9")
        .await
        .expect("retire"));
    assert!(
        s.enroll_entity(&e).await.expect("back"),
        "a retired entity coming back counts"
    );
    assert!(s
        .get_entity("github/repository/9")
        .await
        .expect("get")
        .is_some());
    // A webhook naming a repository another project registered changes nothing of it, and
    // does not bring it back once that project deregistered it.
    let mut elsewhere = e.clone();
    elsewhere.project = "team-b".into();
    s.create_project("team-b", "test").await.expect("project");
    assert!(s
        .retire_entity("github/repository/9")
        .await
        .expect("retire"));
    assert!(!s.enroll_entity(&elsewhere).await.expect("other project"));
    assert!(
        s.get_entity("github/repository/9")
            .await
            .expect("get")
            .is_none(),
        "still retired"
    );
}

#[tokio::test]
async fn claims_in_a_batch_answer_each_delivery_in_order() {
    use plumbline_store::Claim;
    use std::time::Duration;
    let db = TestDatabase::new().await;
    let s = db.store();
    let lease = Duration::from_secs(30);
    s.claim_delivery("published", "push", lease)
        .await
        .expect("claim");
    s.mark_deliveries_published(&["published".into()], Duration::from_secs(60))
        .await
        .expect("mark");
    s.claim_delivery("busy", "push", lease)
        .await
        .expect("claim");
    let batch: Vec<(String, String)> = ["new", "published", "busy", "new", "other"]
        .iter()
        .map(|d| (d.to_string(), "member".to_string()))
        .collect();
    let claims = s.claim_deliveries(&batch, lease).await.expect("batch");
    assert_eq!(
        claims,
        vec![
            Claim::Claimed,
            Claim::Duplicate,
            Claim::InFlight,
            Claim::InFlight,
            Claim::Claimed
        ]
    );
    assert!(s
        .claim_deliveries(&[], lease)
        .await
        .expect("empty")
        .is_empty());
}

#[tokio::test]
async fn history_retention_drops_old_rows_and_keeps_the_newest_per_rule() {
    let db = TestDatabase::new().await;
    let s = db.store();
    s.upsert_entity(&repo(1, "a")).await.expect("entity");
    let now = chrono::Utc::now();
    // 5 recent evaluations and 3 from 100 days ago, of one rule.
    for i in 0..5 {
        s.record_evaluations(
            "github/repository/1",
            &[eval(
                "github/repository/1",
                "pass",
                now - chrono::Duration::minutes(i),
            )],
        )
        .await
        .expect("record");
    }
    for i in 0..3 {
        s.record_evaluations(
            "github/repository/1",
            &[eval(
                "github/repository/1",
                "fail",
                now - chrono::Duration::days(100 + i),
            )],
        )
        .await
        .expect("record");
    }
    assert_eq!(
        s.history_count("github/repository/1").await.expect("count"),
        8
    );
    let day = std::time::Duration::from_secs(86_400);
    // Older than 90 days: 3 go; then only the newest 2 per rule stay.
    assert_eq!(
        s.prune_history(day * 90, 2, 1000).await.expect("prune"),
        3 + 3
    );
    assert_eq!(
        s.history_count("github/repository/1").await.expect("count"),
        2
    );
    assert_eq!(s.prune_history(day * 90, 2, 1000).await.expect("again"), 0);
    // A verdict unchanged for longer than the age keeps its one row: it says since when the
    // verdict holds.
    s.upsert_entity(&repo(2, "b")).await.expect("entity");
    s.record_evaluations(
        "github/repository/2",
        &[eval(
            "github/repository/2",
            "pass",
            now - chrono::Duration::days(100),
        )],
    )
    .await
    .expect("record");
    assert_eq!(s.prune_history(day * 90, 2, 1000).await.expect("aged"), 0);
    assert_eq!(
        s.history_count("github/repository/2").await.expect("count"),
        1
    );
    // The latest status is untouched.
    assert_eq!(
        s.list_status("default", Some("github/repository/1"), None)
            .await
            .expect("status")
            .len(),
        1
    );
}

#[tokio::test]
async fn service_pools_carry_a_statement_timeout() {
    let db = TestDatabase::new().await;
    let s = plumbline_store::Store::connect_with_timeout(
        &db.url,
        1,
        std::time::Duration::from_millis(250),
    )
    .expect("store");
    assert_eq!(
        s.setting("statement_timeout").await.expect("setting"),
        "250ms"
    );
    assert_eq!(
        db.store()
            .setting("statement_timeout")
            .await
            .expect("setting"),
        "0",
        "plain pools (migrations) have none"
    );
}

/// A provider is not deleted from under a registration binding an entity to it while the
/// delete runs: the delete waits for the registration and then counts it.
#[tokio::test]
async fn a_provider_delete_racing_a_registration_counts_it() {
    use plumbline_store::{DeleteProvider, ProviderCredential};
    let db = TestDatabase::new().await;
    let s = db.store();
    s.create_project("team-a", "test").await.expect("project");
    s.create_provider(
        "team-a",
        "app",
        &ProviderCredential::Installation(5),
        "test",
    )
    .await
    .expect("provider");
    let (mut client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    // A registration in flight: the entity row is written, not yet committed.
    let tx = client.transaction().await.expect("tx");
    tx.execute(
        "INSERT INTO entities (id, project, provider, kind, upstream_id, owner, name, credential) \
         VALUES ('github/repository/77', 'team-a', 'github', 'repository', '77', 'acme', 'api', 'app')",
        &[],
    )
    .await
    .expect("insert");
    let deleting = tokio::spawn({
        let s = s.clone();
        async move { s.delete_provider("team-a", "app").await }
    });
    // The delete waits on the registration's foreign-key lock (seen in pg_stat_activity).
    let mut waited = false;
    for _ in 0..400 {
        let waiting: i64 = tx
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%'",
                &[],
            )
            .await
            .expect("activity")
            .get(0);
        if waiting == 1 {
            waited = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(waited, "the delete waits for the registration");
    assert!(!deleting.is_finished());
    tx.commit().await.expect("commit");
    let outcome = deleting.await.expect("task").expect("delete");
    assert_eq!(outcome, DeleteProvider::InUse(1));
    let e = s
        .get_entity("github/repository/77")
        .await
        .expect("get")
        .expect("registered");
    assert_eq!(e.credential.as_deref(), Some("app"), "still bound");
}

/// What waits, each credential's quota and the sweep's progress are recorded per project and
/// read back only for that project; a wait is read only while ahead, and pruned after.
#[tokio::test]
async fn waits_quotas_and_sweep_progress_are_read_per_project() {
    use chrono::{Duration as D, Utc};
    use plumbline_domain::{Stage, WaitCause};
    let db = TestDatabase::new().await;
    let s = db.store();
    s.create_project("team-b", "test").await.expect("project");
    let mut other = repo(9, "other");
    other.project = "team-b".into();
    for e in [repo(1, "one"), repo(2, "two"), repo(3, "three"), other] {
        s.upsert_entity(&e).await.expect("entity");
    }
    let now = Utc::now();
    let soon = now + D::minutes(10);
    let later = now + D::minutes(50);
    let id = |n: u64| EntityRef::repository("github", n).id();
    for (n, until) in [(1, soon), (2, now + D::minutes(40))] {
        s.record_wait(
            &id(n),
            Stage::Evaluation,
            WaitCause::ProviderQuota,
            "limited",
            until,
        )
        .await
        .expect("wait");
    }
    // Replaced, not added, when the same entity parks again in the same stage.
    s.record_wait(
        &id(1),
        Stage::Evaluation,
        WaitCause::ProviderQuota,
        "limited again",
        later,
    )
    .await
    .expect("wait");
    s.record_wait(
        &id(3),
        Stage::Remediation,
        WaitCause::ContentBudget,
        "budget",
        soon,
    )
    .await
    .expect("wait");
    // Ended: not shown.
    s.record_wait(
        &id(3),
        Stage::Evaluation,
        WaitCause::ProviderQuota,
        "x",
        now - D::hours(2),
    )
    .await
    .expect("wait");
    s.record_wait(
        &id(9),
        Stage::Evaluation,
        WaitCause::ProviderQuota,
        "b's",
        later,
    )
    .await
    .expect("wait");
    // An entity that is not registered records nothing (and is no error).
    s.record_wait(
        "github/repository/404",
        Stage::Evaluation,
        WaitCause::ProviderQuota,
        "x",
        later,
    )
    .await
    .expect("nothing to record");

    let w = s.waits("default").await.expect("waits");
    assert_eq!(w.len(), 2, "{w:?}");
    let eval = w
        .iter()
        .find(|w| w.stage == Stage::Evaluation)
        .expect("evaluations");
    assert_eq!((eval.entities, eval.cause), (2, WaitCause::ProviderQuota));
    assert_eq!(
        eval.reason, "limited again",
        "the reason of the wait that ends last"
    );
    assert!((eval.last_until - later).num_milliseconds().abs() < 5);
    let fix = w
        .iter()
        .find(|w| w.stage == Stage::Remediation)
        .expect("fixes");
    assert_eq!((fix.entities, fix.cause), (1, WaitCause::ContentBudget));
    let b = s.waits("team-b").await.expect("waits");
    assert_eq!(b.len(), 1);
    assert_eq!((b[0].entities, b[0].reason.as_str()), (1, "b's"));

    assert_eq!(
        s.prune_waits(std::time::Duration::from_secs(3600))
            .await
            .expect("prune"),
        1
    );

    s.record_quota("own", "default", 0, 5000, later, Some(later))
        .await
        .expect("quota");
    s.record_quota(
        &plumbline_store::quota_key("team-b", Some("gh")),
        "team-b",
        4000,
        5000,
        later,
        None,
    )
    .await
    .expect("quota");
    s.record_quota("own", "default", 10, 5000, later, None)
        .await
        .expect("replaced");
    let own = s.project_quotas("default").await.expect("quotas");
    assert_eq!(own.len(), 1, "a project sees only its own credentials");
    assert_eq!((own[0].remaining, own[0].limited_until), (10, None));
    let theirs = s.project_quotas("team-b").await.expect("quotas");
    assert_eq!(theirs[0].credential, "provider:team-b/gh");
    assert_eq!(s.quotas().await.expect("all").len(), 2);

    assert_eq!(s.sweep_progress("default").await.expect("none yet"), None);
    let mut p = plumbline_store::SweepProgress {
        project: "default".into(),
        started_at: now,
        entities: 3,
        done: 0,
        deferred: 0,
        deferred_until: None,
        expected_finish: later,
        updated_at: now,
    };
    s.record_sweep_progress(&p).await.expect("progress");
    p.done = 3;
    p.deferred = 2;
    p.deferred_until = Some(soon);
    s.record_sweep_progress(&p).await.expect("progress");
    let read = s
        .sweep_progress("default")
        .await
        .expect("read")
        .expect("some");
    assert_eq!((read.entities, read.done, read.deferred), (3, 3, 2));
    assert_eq!(s.sweep_progress("team-b").await.expect("read"), None);

    // Deleting a project takes its waits, quotas and progress with it.
    assert!(s.delete_project("team-b").await.expect("delete"));
    assert!(s.waits("team-b").await.expect("waits").is_empty());
    assert!(s.project_quotas("team-b").await.expect("quotas").is_empty());
}

/// The sweep's second pass reads up to where the first began: bounded by the database, in the
/// order it lists.
#[tokio::test]
async fn entities_are_listed_between_two_ids_in_the_database_order() {
    let db = TestDatabase::new().await;
    let s = db.store();
    for i in 1..=5 {
        s.upsert_entity(&repo(i, &format!("r{i}")))
            .await
            .expect("entity");
    }
    let all: Vec<String> = s
        .list_entities("default", None, 100)
        .await
        .expect("list")
        .iter()
        .map(|e| e.id())
        .collect();
    assert_eq!(all.len(), 5);
    let upto = all[2].clone();
    let first: Vec<String> = s
        .list_entities_between("default", None, Some(&upto), 100)
        .await
        .expect("list")
        .iter()
        .map(|e| e.id())
        .collect();
    assert_eq!(first, all[..3].to_vec(), "up to and including the bound");
    let rest: Vec<String> = s
        .list_entities_between("default", Some(&upto), None, 100)
        .await
        .expect("list")
        .iter()
        .map(|e| e.id())
        .collect();
    assert_eq!(
        rest,
        all[3..].to_vec(),
        "after it, to the end: each id once"
    );
    let paged = s
        .list_entities_between("default", Some(&all[0]), Some(&upto), 1)
        .await
        .expect("list");
    assert_eq!(paged.len(), 1);
    assert_eq!(paged[0].id(), all[1]);
}

/// The posture counts kept by triggers equal a count of the statuses after every kind of
/// write: first evaluations, statuses moving both ways from writers running at once (which
/// must not deadlock on the shared counters), a rule no longer evaluated, a retirement, and an
/// entity deleted outright.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn posture_counts_stay_exact_through_every_kind_of_write() {
    use std::collections::BTreeMap;
    let db = TestDatabase::new().await;
    let s = db.store();
    let ids: Vec<String> = (1..=40u64)
        .map(|i| format!("github/repository/{i}"))
        .collect();
    for i in 1..=40u64 {
        s.upsert_entity(&repo(i, &format!("r{i}")))
            .await
            .expect("entity");
    }
    const RULES: [&str; 3] = ["a", "b", "c"];
    let records =
        |id: &str, round: usize, at: chrono::DateTime<chrono::Utc>| -> Vec<EvaluationRecord> {
            RULES
                .iter()
                .enumerate()
                .map(|(k, rule)| {
                    let mut r = eval(
                        id,
                        if (round + k + id.len()).is_multiple_of(2) {
                            "pass"
                        } else {
                            "fail"
                        },
                        at,
                    );
                    r.rule_name = rule.to_string();
                    r
                })
                .collect()
        };
    let counted = |s: plumbline_store::Store| async move {
        let mut by: BTreeMap<(String, String), i64> = BTreeMap::new();
        for row in s.list_status("default", None, None).await.expect("status") {
            *by.entry((row.rule_name.clone(), row.status.as_str().to_string()))
                .or_default() += 1;
        }
        let kept: BTreeMap<(String, String), i64> = s
            .posture_counts("default")
            .await
            .expect("counts")
            .into_iter()
            .map(|c| ((c.rule_name, c.status), c.count))
            .collect();
        (by, kept)
    };
    // Eight writers at once, each flipping every status of its entities on every round.
    for round in 0..6 {
        let at = chrono::Utc::now();
        let writers = ids.chunks(5).map(|chunk| {
            let s = s.clone();
            let chunk = chunk.to_vec();
            tokio::spawn(async move {
                for id in &chunk {
                    s.record_evaluations(id, &records(id, round, at))
                        .await
                        .expect("record");
                }
            })
        });
        for w in futures::future::join_all(writers).await {
            w.expect("writer");
        }
        let (by, kept) = counted(s.clone()).await;
        assert_eq!(kept, by, "round {round}");
    }
    // A rule no longer evaluated for one entity, one retired, one deleted outright.
    s.record_evaluations(&ids[0], &records(&ids[0], 7, chrono::Utc::now())[..1])
        .await
        .expect("fewer rules");
    s.retire_entity(&ids[1]).await.expect("retire");
    db.batch("DELETE FROM entities WHERE id = 'github/repository/3'")
        .await;
    let (by, kept) = counted(s.clone()).await;
    assert_eq!(kept, by);
    assert_eq!(kept.values().sum::<i64>(), 37 * 3 + 1);
}

/// An evaluation is always recorded as a check of the entity; history gets a row only for a
/// verdict that changed, so sweeps that find nothing new do not grow it by a row per rule.
#[tokio::test]
async fn unchanged_verdicts_are_checks_not_history_rows() {
    let db = TestDatabase::new().await;
    let s = db.store();
    s.upsert_entity(&repo(1, "r")).await.expect("entity");
    let id = "github/repository/1";
    let t0 = chrono::Utc::now();
    s.record_evaluations(id, &[eval(id, "fail", t0)])
        .await
        .expect("first");
    let mut again = eval(id, "fail", t0 + chrono::Duration::seconds(1));
    again.unchanged = true;
    s.record_evaluations(id, &[again.clone()])
        .await
        .expect("unchanged");
    assert_eq!(s.history_count(id).await.expect("history"), 1);
    assert_eq!(s.checks_count(id).await.expect("checks"), 2);
    let rows = s
        .list_status("default", Some(id), None)
        .await
        .expect("status");
    assert!(
        (rows[0].evaluated_at - again.evaluated_at)
            .num_milliseconds()
            .abs()
            < 1,
        "the status says when it was checked"
    );
    s.record_evaluations(id, &[eval(id, "pass", t0 + chrono::Duration::seconds(2))])
        .await
        .expect("changed");
    assert_eq!(s.history_count(id).await.expect("history"), 2);
    assert_eq!(s.checks_count(id).await.expect("checks"), 3);
    // Checks have a retention of their own, by age.
    assert_eq!(
        s.prune_checks(std::time::Duration::from_secs(3600), 100)
            .await
            .expect("prune"),
        0
    );
    db.batch("UPDATE evaluation_checks SET checked_at = now() - interval '2 hours' WHERE id IN (SELECT min(id) FROM evaluation_checks)").await;
    assert_eq!(
        s.prune_checks(std::time::Duration::from_secs(3600), 100)
            .await
            .expect("prune"),
        1
    );
    assert_eq!(s.checks_count(id).await.expect("checks"), 2);
}

/// Several entities in one transaction are written as each would be alone: each entity's own
/// rules kept and the others removed, history only for changes, a check each, inputs set or
/// cleared per entity, an entity listed twice written in order. A batch holding a row that
/// cannot be written leaves nothing of the others.
#[tokio::test]
async fn a_batch_of_entities_is_written_as_each_alone() {
    use plumbline_store::{EntityWrite, InputsChange, StoredInputs};
    let db = TestDatabase::new().await;
    let s = db.store();
    for i in 1..=5u64 {
        s.upsert_entity(&repo(i, &format!("r{i}")))
            .await
            .expect("entity");
    }
    let id = |i: u64| format!("github/repository/{i}");
    let t0 = chrono::Utc::now();
    let rule = |i: u64, name: &str, status: &str, at| {
        let mut r = eval(&id(i), status, at);
        r.rule_name = name.into();
        r
    };
    // Entity 5 is a bystander: it has statuses and is not in the batch.
    for i in [1, 2, 3, 5] {
        s.record_evaluations(
            &id(i),
            &[rule(i, "a", "pass", t0), rule(i, "b", "fail", t0)],
        )
        .await
        .expect("before");
    }
    let t1 = t0 + chrono::Duration::seconds(1);
    let t2 = t0 + chrono::Duration::seconds(2);
    let inputs = StoredInputs {
        context: "ctx".into(),
        validators: serde_json::json!([{"path": "/repos/acme/r3"}]),
    };
    s.record_entities(&[EntityWrite {
        entity_id: &id(4),
        records: &[rule(4, "a", "pass", t0)],
        inputs: &InputsChange::Set(inputs.clone()),
    }])
    .await
    .expect("entity 4's inputs");
    let (e1_first, mut e2, e3, e1_again, e4) = (
        vec![rule(1, "a", "fail", t1)],
        vec![rule(2, "a", "pass", t1), rule(2, "b", "fail", t1)],
        vec![rule(3, "a", "pass", t1)],
        vec![rule(1, "c", "pass", t2)],
        vec![rule(4, "a", "pass", t1)],
    );
    for r in &mut e2 {
        r.unchanged = true;
    }
    let (i1, i2, i3, i4) = (id(1), id(2), id(3), id(4));
    s.record_entities(&[
        EntityWrite {
            entity_id: &i3,
            records: &e3,
            inputs: &InputsChange::Set(inputs.clone()),
        },
        EntityWrite {
            entity_id: &i1,
            records: &e1_first,
            inputs: &InputsChange::Keep,
        },
        EntityWrite {
            entity_id: &i2,
            records: &e2,
            inputs: &InputsChange::Keep,
        },
        EntityWrite {
            entity_id: &i1,
            records: &e1_again,
            inputs: &InputsChange::Keep,
        },
        EntityWrite {
            entity_id: &i4,
            records: &e4,
            inputs: &InputsChange::Clear,
        },
    ])
    .await
    .expect("batch");
    let rules_of = |i: u64| {
        let s = s.clone();
        async move {
            s.list_status("default", Some(&id(i)), None)
                .await
                .expect("status")
                .into_iter()
                .map(|r| (r.rule_name, r.status.as_str().to_string()))
                .collect::<Vec<_>>()
        }
    };
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    // Entity 3 lost rule b although entity 2 kept a rule b in the same statement; entity 1's
    // later write replaced its earlier one: only rule c is evaluated now.
    assert_eq!(rules_of(1).await, vec![pair("c", "pass")]);
    assert_eq!(
        rules_of(2).await,
        vec![pair("a", "pass"), pair("b", "fail")]
    );
    assert_eq!(rules_of(3).await, vec![pair("a", "pass")]);
    assert_eq!(
        rules_of(5).await,
        vec![pair("a", "pass"), pair("b", "fail")],
        "untouched"
    );
    // History: 2 before + a(fail) + c(pass) for entity 1; nothing new for entity 2.
    assert_eq!(s.history_count(&i1).await.expect("history"), 4);
    assert_eq!(s.history_count(&i2).await.expect("history"), 2);
    assert_eq!(s.checks_count(&i1).await.expect("checks"), 3);
    assert_eq!(s.checks_count(&i2).await.expect("checks"), 2);
    assert_eq!(s.checks_count(&i3).await.expect("checks"), 2);
    assert_eq!(
        s.entity_inputs(&i3).await.expect("inputs"),
        Some(inputs.clone())
    );
    assert_eq!(s.entity_inputs(&i4).await.expect("inputs"), None, "cleared");
    let posture: i64 = s
        .posture_counts("default")
        .await
        .expect("counts")
        .iter()
        .map(|c| c.count)
        .sum();
    assert_eq!(posture, 1 + 2 + 1 + 1 + 2);

    // A record of another entity is refused, not written into that entity's rows.
    let foreign = vec![rule(5, "a", "fail", t2)];
    assert!(matches!(
        s.record_entities(&[EntityWrite {
            entity_id: &i3,
            records: &foreign,
            inputs: &InputsChange::Keep
        }])
        .await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        rules_of(5).await,
        vec![pair("a", "pass"), pair("b", "fail")]
    );

    // An entity that is not registered: the batch is refused as a whole.
    let (ghost, ghost_rows) = (id(404), vec![rule(404, "a", "pass", t2)]);
    let e3_later = vec![rule(3, "a", "fail", t2)];
    assert!(s
        .record_entities(&[
            EntityWrite {
                entity_id: &i3,
                records: &e3_later,
                inputs: &InputsChange::Clear
            },
            EntityWrite {
                entity_id: &ghost,
                records: &ghost_rows,
                inputs: &InputsChange::Keep
            },
        ])
        .await
        .is_err());
    assert_eq!(
        rules_of(3).await,
        vec![pair("a", "pass")],
        "nothing of the batch was kept"
    );
    assert_eq!(s.entity_inputs(&i3).await.expect("inputs"), Some(inputs));
}

#[tokio::test]
async fn pull_requests_live_under_their_registered_repository() {
    use plumbline_domain::{EntityKind, EntityRef};
    use plumbline_store::ChildEnrolment;
    let db = TestDatabase::new().await;
    let s = db.store();
    let pr = |id: u64| EntityRef {
        provider: "github".into(),
        kind: EntityKind::PullRequest,
        upstream_id: id.to_string(),
    };
    // Under a repository nobody registered: nothing is stored.
    assert_eq!(
        s.enroll_pull_request("github/repository/9", &pr(500), 3)
            .await
            .expect("enroll"),
        ChildEnrolment::NoRepository
    );
    assert!(s
        .get_entity("github/pull_request/500")
        .await
        .expect("get")
        .is_none());
    s.upsert_entity(&repo(9, "svc")).await.expect("repo");
    assert_eq!(
        s.enroll_pull_request("github/repository/9", &pr(500), 3)
            .await
            .expect("enroll"),
        ChildEnrolment::Enrolled
    );
    assert_eq!(
        s.enroll_pull_request("github/repository/9", &pr(500), 3)
            .await
            .expect("again"),
        ChildEnrolment::Known
    );
    // A repository id cannot be enrolled as a pull request, nor a pull request under a
    // pull request.
    assert!(s
        .enroll_pull_request(
            "github/repository/9",
            &EntityRef::repository("github", 9),
            1
        )
        .await
        .is_err());
    assert_eq!(
        s.enroll_pull_request("github/pull_request/500", &pr(501), 1)
            .await
            .expect("under a pull request"),
        ChildEnrolment::NoRepository
    );
    let got = s
        .get_entity("github/pull_request/500")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got.project, "default");
    assert_eq!(got.full_name(), "acme/svc");
    assert_eq!(got.properties["number"], serde_json::json!(3));
    // What the evaluator reads from GitHub is merged in, and written only when it differs.
    let head = serde_json::json!({"head_sha": "abc", "labels": ["a", "b"]});
    assert!(s.merge_properties(&got.id(), &head).await.expect("merge"));
    assert!(!s.merge_properties(&got.id(), &head).await.expect("same"));
    let fewer = serde_json::json!({"labels": ["a"]});
    assert!(
        s.merge_properties(&got.id(), &fewer).await.expect("fewer"),
        "a removed label is a change"
    );
    // A renamed repository's pull requests are read under its new name at once.
    s.refresh_entity("github/repository/9", "acme", "svc2", None)
        .await
        .expect("rename");
    let got = s
        .get_entity("github/pull_request/500")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got.full_name(), "acme/svc2");
    assert_eq!(got.properties["labels"], serde_json::json!(["a"]));
    assert_eq!(got.properties["head_sha"], serde_json::json!("abc"));
    // Retiring the repository retires its pull requests; a replayed webhook does not bring a
    // pull request back under a retired repository.
    assert!(s
        .retire_entity("github/repository/9")
        .await
        .expect("retire"));
    assert!(s
        .get_entity("github/pull_request/500")
        .await
        .expect("get")
        .is_none());
    assert_eq!(
        s.enroll_pull_request("github/repository/9", &pr(500), 3)
            .await
            .expect("replay"),
        ChildEnrolment::NoRepository
    );
    // Once the repository is back, a reopened pull request is enrolled again.
    s.upsert_entity(&repo(9, "svc")).await.expect("back");
    assert_eq!(
        s.enroll_pull_request("github/repository/9", &pr(500), 3)
            .await
            .expect("reopened"),
        ChildEnrolment::Enrolled
    );
}
