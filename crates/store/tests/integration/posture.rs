//! Posture queries at fleet scale: 100,000 entities, their plans checked with EXPLAIN.

use plumbline_store::testing::TestDatabase;
use plumbline_store::{StatusCursor, StatusFilter};
use serde_json::Value;

/// Every (node type, relation, index) of a plan, depth first.
fn nodes(plan: &Value, out: &mut Vec<(String, String, String)>) {
    let s = |k: &str| {
        plan.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    if plan.get("Node Type").is_some() {
        out.push((s("Node Type"), s("Relation Name"), s("Index Name")));
    }
    if let Some(children) = plan.get("Plans").and_then(Value::as_array) {
        for c in children {
            nodes(c, out);
        }
    }
}

fn plan_nodes(doc: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    if let Some(plan) = doc.get(0).and_then(|d| d.get("Plan")) {
        nodes(plan, &mut out);
    }
    out
}

/// 100,000 repositories in one project (3 rules each: 300,000 statuses, a tenth failing), a
/// second project beside it, and history: every posture query reads through an index, never
/// a sequential scan of statuses, entities or history.
#[tokio::test(flavor = "multi_thread")]
async fn posture_queries_use_indexes_with_100k_entities() {
    let db = TestDatabase::new().await;
    db.batch(
        "INSERT INTO projects (name) VALUES ('big'), ('small');
         INSERT INTO entities (id, project, provider, kind, upstream_id, owner, name, properties)
           SELECT 'github/repository/' || g, CASE WHEN g <= 100000 THEN 'big' ELSE 'small' END, 'github', 'repository',
                  g::text, 'org' || (g % 100), 'repo-' || g, '{\"default_branch\": \"main\"}'
           FROM generate_series(1, 110000) g;
         INSERT INTO evaluation_status (entity_id, project, profile, rule_type, rule_name, status, message, evaluation_id, evaluated_at)
           SELECT e.id, e.project, 'baseline', r, r,
                  CASE WHEN (e.upstream_id::int + length(r)) % 10 = 0 THEN 'fail' ELSE 'pass' END,
                  'message', gen_random_uuid(), now()
           FROM entities e, unnest(ARRAY['branch_protection_enabled', 'secret_scanning', 'dependabot_configured']) r;
         INSERT INTO evaluation_history (evaluation_id, entity_id, project, profile, rule_type, rule_name, status, evaluated_at)
           SELECT evaluation_id, entity_id, project, profile, rule_type, rule_name, status, now() - (n || ' minutes')::interval
           FROM evaluation_status, generate_series(1, 2) n;
         -- Every entity waited once; 5,000 of the big project's still wait (a quota spent).
         INSERT INTO waits (entity_id, stage, project, cause, reason, until)
           SELECT id, 'evaluation', project, 'provider_quota', 'rate limited',
                  CASE WHEN upstream_id::int % 20 = 0
                       THEN now() + make_interval(secs => 3600 + upstream_id::int % 3600)
                       ELSE now() - make_interval(secs => 3600 + upstream_id::int % 86400) END
           FROM entities;",
    )
    .await;
    // One statement each: VACUUM cannot run inside the implicit transaction of a batch.
    for table in [
        "entities",
        "evaluation_status",
        "evaluation_history",
        "waits",
    ] {
        db.batch(&format!("VACUUM ANALYZE {table}")).await;
    }
    let store = db.store();

    // The queries answer correctly at this size.
    let counts = store.posture_counts("big").await.expect("counts");
    let total: i64 = counts.iter().map(|c| c.count).sum();
    assert_eq!(total, 300_000);
    let failing: i64 = counts
        .iter()
        .filter(|c| c.status == "fail")
        .map(|c| c.count)
        .sum();
    assert_eq!(failing, 30_000);
    let filter = StatusFilter {
        status: Some("fail".into()),
        ..Default::default()
    };
    let first = store
        .status_page("big", &filter, None, 500)
        .await
        .expect("page");
    assert_eq!(first.rows.len(), 500);
    assert!(first.rows.iter().all(|r| r.status.as_str() == "fail"));
    let cursor = first.next.clone().expect("more pages");
    let token = cursor.token();
    assert_eq!(
        StatusCursor::from_token(&token).expect("token round trip"),
        cursor
    );
    let second = store
        .status_page("big", &filter, Some(&cursor), 500)
        .await
        .expect("page");
    let last_of_first = first.rows.last().expect("rows");
    let first_of_second = second.rows.first().expect("rows");
    assert!(
        (
            &first_of_second.entity_id,
            &first_of_second.profile,
            &first_of_second.rule_name
        ) > (
            &last_of_first.entity_id,
            &last_of_first.profile,
            &last_of_first.rule_name
        ),
        "pages follow each other"
    );
    let one = store
        .status_page(
            "big",
            &StatusFilter {
                entity_id: Some("github/repository/42".into()),
                ..Default::default()
            },
            None,
            100,
        )
        .await
        .expect("entity");
    assert_eq!(one.rows.len(), 3);
    assert_eq!(one.next, None, "a short page is the last");
    let history = store
        .rule_history("github/repository/42", "baseline", "secret_scanning", 10)
        .await
        .expect("history");
    assert_eq!(history.len(), 2);
    assert!(
        history[0].evaluated_at > history[1].evaluated_at,
        "newest first"
    );
    assert!(
        StatusCursor::from_token("not hex").is_err(),
        "a bad page token is refused"
    );
    let waits = store.waits("big").await.expect("waits");
    assert_eq!(waits.len(), 1, "{waits:?}");
    assert_eq!(waits[0].entities, 5_000, "only the waits still ahead");
    assert_eq!(waits[0].cause, plumbline_domain::WaitCause::ProviderQuota);

    // And through indexes.
    let plans = store
        .explain_posture_queries("big", "github/repository/50000")
        .await
        .expect("explain");
    let expect_index = |name: &str, indexes: &[&str]| {
        let (_, doc) = plans
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no plan for {name}"));
        let ns = plan_nodes(doc);
        for (node, relation, _) in &ns {
            assert!(
                !(node == "Seq Scan"
                    && [
                        "evaluation_status",
                        "entities",
                        "evaluation_history",
                        "waits"
                    ]
                    .contains(&relation.as_str())),
                "{name}: sequential scan of {relation}: {ns:?}"
            );
        }
        assert!(
            ns.iter()
                .any(|(node, _, idx)| node.contains("Index") && indexes.contains(&idx.as_str())),
            "{name} does not use {indexes:?}: {ns:?}"
        );
    };
    // The counts read only the kept counters (a few rows per rule; a scan of them is fine).
    let (_, doc) = plans
        .iter()
        .find(|(n, _)| n == "posture_counts")
        .expect("plan");
    let relations: Vec<String> = plan_nodes(doc)
        .into_iter()
        .map(|(_, relation, _)| relation)
        .filter(|r| !r.is_empty())
        .collect();
    assert_eq!(relations, vec!["posture_counts"], "{doc}");
    expect_index(
        "status_page",
        &["evaluation_status_by_project", "evaluation_status_pkey"],
    );
    expect_index(
        "status_page_after",
        &["evaluation_status_by_project", "evaluation_status_pkey"],
    );
    expect_index("failing_page", &["evaluation_status_by_status"]);
    expect_index(
        "entity_status",
        &["evaluation_status_by_project", "evaluation_status_pkey"],
    );
    expect_index("rule_history", &["evaluation_history_by_rule"]);
    expect_index("waits", &["waits_by_project"]);
    // The page joins entities by primary key, never by scanning them.
    let (_, doc) = plans
        .iter()
        .find(|(n, _)| n == "failing_page")
        .expect("plan");
    assert!(plan_nodes(doc)
        .iter()
        .any(|(node, rel, idx)| node.starts_with("Index")
            && rel == "entities"
            && idx == "entities_pkey"));
}
