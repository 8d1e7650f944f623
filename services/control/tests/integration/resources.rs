//! Every resource can be listed, read back and deleted through the control API: documents
//! (applied YAML reads back byte for byte and applies unchanged), in-use refusals naming the
//! user, repositories deregistered with their history kept, and history and actions filtered
//! and paged. Against the real service and Postgres.

use crate::common;

use plumbline_proto::v1::control_service_client::ControlServiceClient;
use plumbline_proto::v1::*;
use plumbline_store::testing::TestDatabase;
use tonic::Code;

const DATA_SOURCE: &str = r#"version: v1
type: data-source
name: ghrepo
rest:
  providerAuth: true
  def:
    repo:
      endpoint: https://api.github.com/repos/{owner}/{repo}
      parse: json
      input_schema: {}
"#;

const USES_DATA_SOURCE: &str = r#"version: v1
type: rule-type
name: calls_ghrepo
def:
  in_entity: repository
  rule_schema: {}
  ingest:
    type: rest
    rest:
      endpoint: /repos/{{ .Entity.Owner }}/{{ .Entity.Name }}
      parse: json
  eval:
    type: rego
    data_sources:
      - name: ghrepo
    rego:
      type: deny-by-default
      def: |
        package minder
        default allow := false
"#;

fn rule_type(root: &std::path::Path, name: &str) -> String {
    std::fs::read_to_string(root.join(format!("rules/rule-types/github/{name}.yaml")))
        .expect("shipped rule type")
}

#[tokio::test]
async fn documents_repositories_history_and_actions_are_listed_read_and_deleted() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let db = TestDatabase::new().await;
    let _kafka =
        std::env::var("PLUMB_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let served = common::Served::start(common::local(&db.url)).await;
    let channel = served.channel.clone();
    let mut c = ControlServiceClient::new(channel);
    let rt = |k: DocumentKind| k as i32;

    // Three rule types, a data source, a rule type calling it, a profile.
    let names = [
        "branch_protection_enabled",
        "secret_scanning_enabled",
        "security_policy_present",
    ];
    for n in names {
        c.apply_rule_type(ApplyRuleTypeRequest {
            project: String::new(),
            yaml: rule_type(&root, n),
        })
        .await
        .expect("rule type");
    }
    c.apply_data_source(ApplyDataSourceRequest {
        project: String::new(),
        yaml: DATA_SOURCE.into(),
    })
    .await
    .expect("data source");
    c.apply_rule_type(ApplyRuleTypeRequest {
        project: String::new(),
        yaml: USES_DATA_SOURCE.into(),
    })
    .await
    .expect("rule type calling the data source");
    let profile =
        std::fs::read_to_string(root.join("rules/profiles/github/branch-protection.yaml"))
            .expect("profile");
    c.apply_profile(ApplyProfileRequest {
        project: String::new(),
        yaml: profile.clone(),
    })
    .await
    .expect("profile");

    // Paged, in name order.
    let page = |token: &str| ListDocumentsRequest {
        project: String::new(),
        kind: rt(DocumentKind::RuleType),
        page_size: 3,
        page_token: token.into(),
        with_yaml: false,
    };
    let first = c
        .list_documents(page(""))
        .await
        .expect("page 1")
        .into_inner();
    let second = c
        .list_documents(page(&first.next_page_token))
        .await
        .expect("page 2")
        .into_inner();
    let listed: Vec<String> = first
        .documents
        .iter()
        .chain(&second.documents)
        .map(|d| d.name.clone())
        .collect();
    assert_eq!(
        listed,
        [
            "branch_protection_enabled",
            "calls_ghrepo",
            "secret_scanning_enabled",
            "security_policy_present"
        ]
    );
    assert!(second.next_page_token.is_empty());
    assert!(
        first.documents.iter().all(|d| d.yaml.is_empty()),
        "no YAML unless asked"
    );

    // Read back byte for byte, and applied back unchanged.
    let got = c
        .get_document(GetDocumentRequest {
            project: String::new(),
            kind: rt(DocumentKind::Profile),
            name: "branch-protection".into(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!((got.yaml.as_str(), got.version), (profile.as_str(), 1));
    let again = c
        .apply_profile(ApplyProfileRequest {
            project: String::new(),
            yaml: got.yaml,
        })
        .await
        .expect("apply back")
        .into_inner();
    assert_eq!((again.version, again.changed), (1, false));

    // In use: refused, naming the user.
    let used = c
        .delete_document(DeleteDocumentRequest {
            project: String::new(),
            kind: rt(DocumentKind::RuleType),
            name: "branch_protection_enabled".into(),
        })
        .await
        .expect_err("used by the profile");
    assert_eq!(used.code(), Code::FailedPrecondition);
    assert_eq!(
        used.message(),
        "rule type branch_protection_enabled is used by profile branch-protection: remove it from there first"
    );
    let used = c
        .delete_document(DeleteDocumentRequest {
            project: String::new(),
            kind: rt(DocumentKind::DataSource),
            name: "ghrepo".into(),
        })
        .await
        .expect_err("called by a rule type");
    assert!(
        used.message().contains("rule type calls_ghrepo"),
        "{}",
        used.message()
    );
    // Deleted in dependency order.
    for (kind, name) in [
        (DocumentKind::Profile, "branch-protection"),
        (DocumentKind::RuleType, "branch_protection_enabled"),
        (DocumentKind::RuleType, "calls_ghrepo"),
        (DocumentKind::DataSource, "ghrepo"),
    ] {
        c.delete_document(DeleteDocumentRequest {
            project: String::new(),
            kind: rt(kind),
            name: name.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("delete {name}: {e}"));
    }
    let gone = c
        .get_document(GetDocumentRequest {
            project: String::new(),
            kind: rt(DocumentKind::RuleType),
            name: "branch_protection_enabled".into(),
        })
        .await
        .expect_err("deleted");
    assert_eq!(gone.code(), Code::NotFound);
    assert_eq!(
        gone.message(),
        "not found: rule type branch_protection_enabled does not exist in project default"
    );

    // History and actions: rows the evaluator and actuator would have written.
    db.batch(
        "INSERT INTO projects (name) VALUES ('other');
         INSERT INTO entities (id, project, provider, kind, upstream_id, owner, name) VALUES
           ('github/repository/1', 'default', 'github', 'repository', '1', 'acme', 'one'),
           ('github/repository/2', 'other', 'github', 'repository', '2', 'acme', 'two');
         INSERT INTO evaluation_history (evaluation_id, entity_id, project, profile, rule_type, rule_name, status, message, evaluated_at)
           SELECT gen_random_uuid(), 'github/repository/1', 'default', 'p', 'r', 'r',
                  CASE WHEN n % 2 = 0 THEN 'pass' ELSE 'fail' END, 'm' || n, now() - (n || ' minutes')::interval
           FROM generate_series(1, 5) n;
         INSERT INTO evaluation_history (evaluation_id, entity_id, project, profile, rule_type, rule_name, status, evaluated_at)
           VALUES (gen_random_uuid(), 'github/repository/2', 'other', 'p', 'r', 'r', 'fail', now());
         INSERT INTO actions (idempotency_key, entity_id, project, profile, rule_type, rule_name, kind, action_type, operation, status, provider_ref)
           VALUES ('k1', 'github/repository/1', 'default', 'p', 'r', 'r', 'remediation', 'pull_request', 'apply', 'applied', '17'),
                  ('k2', 'github/repository/2', 'other', 'p', 'r', 'r', 'remediation', 'rest', 'apply', 'failed', '');",
    )
    .await;
    let fails = c
        .list_history(ListHistoryRequest {
            project: String::new(),
            status: EvalStatus::Fail as i32,
            page_size: 2,
            ..Default::default()
        })
        .await
        .expect("history")
        .into_inner();
    assert_eq!(fails.entries.len(), 2);
    assert!(fails
        .entries
        .iter()
        .all(|e| e.status == EvalStatus::Fail as i32 && e.entity_id == "github/repository/1"));
    let rest = c
        .list_history(ListHistoryRequest {
            project: String::new(),
            status: EvalStatus::Fail as i32,
            page_size: 2,
            page_token: fails.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .expect("history page 2")
        .into_inner();
    assert_eq!((rest.entries.len(), rest.next_page_token.as_str()), (1, ""));
    let actions = c
        .list_actions(ListActionsRequest {
            project: String::new(),
            ..Default::default()
        })
        .await
        .expect("actions")
        .into_inner()
        .actions;
    assert_eq!(actions.len(), 1, "only this project's");
    assert_eq!(
        (
            actions[0].action_type.as_str(),
            actions[0].provider_ref.as_str(),
            actions[0].status
        ),
        ("pull_request", "17", ActionStatus::Applied as i32)
    );

    // Repositories page server-side.
    db.batch(
        "INSERT INTO entities (id, project, provider, kind, upstream_id, owner, name) VALUES
           ('github/repository/3', 'default', 'github', 'repository', '3', 'acme', 'three'),
           ('github/repository/4', 'default', 'github', 'repository', '4', 'acme', 'four');",
    )
    .await;
    let page = c
        .list_repositories(ListRepositoriesRequest {
            project: String::new(),
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .expect("page 1")
        .into_inner();
    let last = c
        .list_repositories(ListRepositoriesRequest {
            project: String::new(),
            page_size: 2,
            page_token: page.next_page_token.clone(),
        })
        .await
        .expect("page 2")
        .into_inner();
    assert_eq!((page.repositories.len(), last.repositories.len()), (2, 1));
    assert!(last.next_page_token.is_empty());
    db.batch("DELETE FROM entities WHERE id IN ('github/repository/3', 'github/repository/4')")
        .await;

    // Deregistered: no longer listed, history kept; another project's entity is not found.
    c.deregister_repository(DeregisterRepositoryRequest {
        project: String::new(),
        entity_id: "github/repository/1".into(),
    })
    .await
    .expect("deregister");
    let repos = c
        .list_repositories(ListRepositoriesRequest {
            project: String::new(),
            ..Default::default()
        })
        .await
        .expect("repos")
        .into_inner()
        .repositories;
    assert!(repos.is_empty());
    let kept = c
        .list_history(ListHistoryRequest {
            project: String::new(),
            entity_id: "github/repository/1".into(),
            ..Default::default()
        })
        .await
        .expect("history")
        .into_inner();
    assert_eq!(kept.entries.len(), 5);
    let foreign = c
        .deregister_repository(DeregisterRepositoryRequest {
            project: String::new(),
            entity_id: "github/repository/2".into(),
        })
        .await
        .expect_err("another project's");
    assert_eq!(foreign.code(), Code::NotFound);

    served.stop().await;
}
