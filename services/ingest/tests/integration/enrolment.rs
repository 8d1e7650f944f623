//! App installation events enroll repositories; removals, deletions and renames are only
//! announced (the evaluator applies them once GitHub confirms them, see `e2e/tests/integration/e2e.rs`);
//! `--enroll false` leaves enrolment to operators.

use crate::support;

use plumbline_proto::v1::EventReason;
use std::time::Duration;
use support::*;

fn json(v: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&v).expect("json")
}

fn installation(action: &str, key: &str, repos: &[(u64, &str)]) -> Vec<u8> {
    let repos: Vec<_> = repos
        .iter()
        .map(|(id, name)| serde_json::json!({"id": id, "name": name, "full_name": format!("acme/{name}"), "private": true}))
        .collect();
    json(serde_json::json!({
        "action": action,
        "installation": {"id": 42, "account": {"login": "acme"}},
        key: repos,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn installations_enroll_and_removals_are_only_announced() {
    let h = Harness::start_with(&plumbline_bus::testing::kafka(), |c| {
        c.project = "default".into()
    })
    .await;
    let store = h.db.store();
    let a = h
        .post(
            "installation",
            &delivery(),
            &installation("created", "repositories", &[(1, "api"), (2, "web")]),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    let api = store
        .get_entity("github/repository/1")
        .await
        .expect("store")
        .expect("api enrolled");
    assert_eq!(
        (api.project.as_str(), api.owner.as_str(), api.name.as_str()),
        ("default", "acme", "api")
    );
    assert_eq!(api.properties["private"], true);
    assert!(store
        .get_entity("github/repository/2")
        .await
        .expect("store")
        .is_some());

    let a = h
        .post(
            "installation_repositories",
            &delivery(),
            &installation("added", "repositories_added", &[(3, "docs")]),
        )
        .await;
    assert_eq!(a.status, 202);
    let a = h
        .post(
            "installation_repositories",
            &delivery(),
            &installation("removed", "repositories_removed", &[(2, "web")]),
        )
        .await;
    assert_eq!(a.status, 202);
    assert!(
        store
            .get_entity("github/repository/3")
            .await
            .expect("store")
            .is_some(),
        "docs enrolled"
    );
    assert!(
        store
            .get_entity("github/repository/2")
            .await
            .expect("store")
            .is_some(),
        "web not retired by a webhook alone"
    );

    // A rename is announced with the new names; the store keeps the old ones until the
    // evaluator has read the new name back.
    let renamed = json(serde_json::json!({
        "action": "renamed",
        "repository": {"id": 1, "name": "api-v2", "owner": {"login": "acme"}, "default_branch": "trunk"},
    }));
    assert_eq!(
        h.post("repository", &delivery(), &renamed).await.status,
        202
    );
    let api = store
        .get_entity("github/repository/1")
        .await
        .expect("store")
        .expect("api");
    assert_eq!(api.name.as_str(), "api");

    // Deleted on GitHub: announced, not applied.
    let deleted = json(
        serde_json::json!({"action": "deleted", "repository": {"id": 3, "name": "docs", "owner": {"login": "acme"}}}),
    );
    assert_eq!(
        h.post("repository", &delivery(), &deleted).await.status,
        202
    );
    assert_eq!(store.count_active_entities().await.expect("count"), 3);

    // The uninstall announces what it lists.
    let a = h
        .post(
            "installation",
            &delivery(),
            &installation("deleted", "repositories", &[(1, "api-v2")]),
        )
        .await;
    assert_eq!(a.status, 202);
    assert_eq!(store.count_active_entities().await.expect("count"), 3);

    let records = h.records(7, Duration::from_secs(30)).await;
    let rename = records
        .iter()
        .find(|(_, e)| e.reason == EventReason::Webhook as i32)
        .expect("the rename's record");
    assert_eq!(
        (rename.1.owner.as_str(), rename.1.name.as_str()),
        ("acme", "api-v2"),
        "the record carries the new names"
    );
    let mut reasons: Vec<(String, i32)> = records
        .iter()
        .map(|(_, e)| {
            (
                e.entity.as_ref().expect("entity").upstream_id.clone(),
                e.reason,
            )
        })
        .collect();
    let registered = EventReason::Registered as i32;
    let retired = EventReason::Retired as i32;
    let webhook = EventReason::Webhook as i32;
    reasons.sort();
    let mut expected: Vec<(String, i32)> = vec![
        ("1".into(), registered),
        ("2".into(), registered),
        ("3".into(), registered),
        ("2".into(), retired),
        ("1".into(), webhook),
        ("3".into(), retired),
        ("1".into(), retired),
    ];
    expected.sort();
    assert_eq!(
        reasons, expected,
        "one record per repository named, with the reason of its change"
    );
    assert_eq!(
        h.ingest.metrics.counter_value(
            "plumbline_ingest_registry_changes_total",
            &[("change", "enrolled")]
        ),
        3
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enrolment_off_leaves_registration_to_operators() {
    let h = Harness::start_with(&plumbline_bus::testing::kafka(), |c| c.enroll = false).await;
    let store = h.db.store();
    let a = h
        .post(
            "installation",
            &delivery(),
            &installation("created", "repositories", &[(1, "api")]),
        )
        .await;
    assert_eq!(
        a.status, 202,
        "still published: the evaluator ignores unregistered entities"
    );
    assert!(
        store
            .get_entity("github/repository/1")
            .await
            .expect("store")
            .is_none(),
        "not enrolled"
    );
    h.stop().await;
}

/// An installation enrolled as a project's provider enrolls its repositories into that
/// project, bound to it; an installation no project enrolled lands in `--project`, unbound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_installations_repositories_join_its_project() {
    let h = Harness::start_with(&plumbline_bus::testing::kafka(), |c| {
        c.project = "default".into()
    })
    .await;
    let store = h.db.store();
    store
        .create_project("team-a", "test")
        .await
        .expect("project");
    store
        .create_provider(
            "team-a",
            "acme-app",
            &plumbline_store::ProviderCredential::Installation(42),
            "test",
        )
        .await
        .expect("provider");
    let a = h
        .post(
            "installation",
            &delivery(),
            &installation("created", "repositories", &[(1, "api")]),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    let api = store
        .get_entity("github/repository/1")
        .await
        .expect("store")
        .expect("api enrolled");
    assert_eq!(
        (api.project.as_str(), api.credential.as_deref()),
        ("team-a", Some("acme-app"))
    );

    // Another installation, enrolled by no project.
    let body = json(serde_json::json!({
        "action": "created",
        "installation": {"id": 43, "account": {"login": "acme"}},
        "repositories": [{"id": 2, "name": "web", "full_name": "acme/web"}],
    }));
    let a = h.post("installation", &delivery(), &body).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let web = store
        .get_entity("github/repository/2")
        .await
        .expect("store")
        .expect("web enrolled");
    assert_eq!(
        (web.project.as_str(), web.credential.as_deref()),
        ("default", None)
    );

    // The provider acts for an enrolled repository: it is not deleted from under it.
    assert_eq!(
        store
            .delete_provider("team-a", "acme-app")
            .await
            .expect("store"),
        plumbline_store::DeleteProvider::InUse(1)
    );
    assert!(store
        .retire_entity("github/repository/1")
        .await
        .expect("store"));
    assert_eq!(
        store
            .delete_provider("team-a", "acme-app")
            .await
            .expect("store"),
        plumbline_store::DeleteProvider::Deleted
    );
    let retired_binding: Option<String> = store
        .get_entity("github/repository/1")
        .await
        .expect("store")
        .and_then(|e| e.credential);
    assert_eq!(retired_binding, None, "retired, and its binding cleared");
    h.stop().await;
}
