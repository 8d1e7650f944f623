//! The control plane's checks and the evaluator's handling of selectors and data sources,
//! end to end on the real broker and Postgres.

use crate::common;

use common::*;
use plumb::client;
use plumb::stack::{Stack, StackConfig};
use plumbline_github_sim::RepoOptions;
use plumbline_proto::v1::*;
use std::time::Duration;

const DATA_SOURCE: &str = r#"
version: v1
type: data-source
name: ghrepo
rest:
  providerAuth: true
  def:
    repo:
      endpoint: https://api.github.com/repos/{owner}/{repo}
      parse: json
      input_schema:
        type: object
        properties: {owner: {type: string}, repo: {type: string}}
        required: [owner, repo]
"#;

/// Passes when the repository (read through the data source) has issues enabled.
const RULE: &str = r#"
version: v1
type: rule-type
name: issues_via_data_source
def:
  in_entity: repository
  rule_schema:
    type: object
    properties:
      minimum_reviewers: {type: integer, minimum: 1}
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
        import rego.v1
        default allow := false
        allow if {
          out := minder.datasource.ghrepo.repo({"owner": input.properties["github/repo_owner"], "repo": input.properties["github/repo_name"]})
          out.status_code == 200
          out.body.id > 0
        }
"#;

fn profile(def: &str, selector: &str) -> String {
    format!(
        r#"
version: v1
type: profile
name: via-data-source
selection:
  - entity: repository
    selector: "{selector}"
repository:
  - type: issues_via_data_source
    def: {def}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_checks_and_selectors_and_data_sources_end_to_end() {
    let db = TestDb::new().await;
    let (prefix, _topics) = topics(3).await;
    let stack = Stack::start(StackConfig::local(&kafka(), &db.url, &prefix))
        .await
        .expect("stack");
    let store = db.store();
    let mut c = client::connect(&stack.control_url(), None)
        .await
        .expect("control");
    let chosen = stack
        .sim
        .create_repo("acme", "chosen", RepoOptions::default());
    let other = stack
        .sim
        .create_repo("acme", "other", RepoOptions::default());

    // A rule type whose data source does not exist yet is refused.
    let err = c
        .apply_rule_type(ApplyRuleTypeRequest {
            project: String::new(),
            yaml: RULE.into(),
        })
        .await
        .expect_err("missing data source");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("ghrepo"), "{}", err.message());
    // Malformed documents are invalid arguments.
    let err = c
        .apply_data_source(ApplyDataSourceRequest {
            project: String::new(),
            yaml: "type: data-source\nname: x".into(),
        })
        .await
        .expect_err("malformed");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    c.apply_data_source(ApplyDataSourceRequest {
        project: String::new(),
        yaml: DATA_SOURCE.into(),
    })
    .await
    .expect("data source");
    c.apply_rule_type(ApplyRuleTypeRequest {
        project: String::new(),
        yaml: RULE.into(),
    })
    .await
    .expect("rule type");

    // A profile whose def breaks the rule schema is refused, naming the field.
    let err = c
        .apply_profile(ApplyProfileRequest {
            project: String::new(),
            yaml: profile("{minimum_reviewers: 0}", "repository.name == 'acme/chosen'"),
        })
        .await
        .expect_err("schema violation");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("def.minimum_reviewers")
            || err.message().contains("def/minimum_reviewers"),
        "{}",
        err.message()
    );

    // A selector that does not compile is refused when applied, with where and why, not
    // skipped by every evaluator later.
    for (selector, why) in [
        ("repository.name ==", "line 1, column"),
        ("repository.name.lower() == 'x'", "unknown function lower()"),
        ("repository.name.matches('(')", "matches() pattern"),
    ] {
        let err = c
            .apply_profile(ApplyProfileRequest {
                project: String::new(),
                yaml: profile("{minimum_reviewers: 2}", selector),
            })
            .await
            .expect_err("bad selector");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{selector}");
        assert!(
            err.message().contains("selector parse error"),
            "{}",
            err.message()
        );
        assert!(err.message().contains(why), "{selector}: {}", err.message());
    }

    for n in ["chosen", "other"] {
        client_register(&mut c, n).await;
    }
    c.apply_profile(ApplyProfileRequest {
        project: String::new(),
        yaml: profile("{minimum_reviewers: 2}", "repository.name == 'acme/chosen'"),
    })
    .await
    .expect("profile");

    // The selected repository is evaluated through the data source; the other is skipped.
    let status = |id: u64| first_status(store.clone(), id);
    let (s, msg) = eventually(Duration::from_secs(60), "chosen evaluated", || async {
        status(chosen).await.filter(|(s, _)| s != "skipped")
    })
    .await;
    assert_eq!(s, "pass", "{msg}");
    let (s, msg) = eventually(Duration::from_secs(60), "other evaluated", || async {
        status(other).await
    })
    .await;
    assert_eq!(
        (s.as_str(), msg.as_str()),
        ("skipped", "entity not selected by the profile")
    );
    // The data-source call reached the simulator (provider auth routes api.github.com there).
    let gets = stack
        .sim
        .request_counts()
        .get("GET /repos/{owner}/{repo}")
        .copied()
        .unwrap_or(0);
    assert!(
        gets >= 2,
        "ingest and data source both read the repository: {gets}"
    );
    stack.stop().await;
}

/// The first status row (status, message) of a repository entity, if it was evaluated.
async fn first_status(store: plumbline_store::Store, id: u64) -> Option<(String, String)> {
    store
        .list_status("default", Some(&format!("github/repository/{id}")), None)
        .await
        .expect("status")
        .into_iter()
        .next()
        .map(|r| (r.status.as_str().to_string(), r.message))
}

async fn client_register(c: &mut client::Client, name: &str) {
    c.register_repository(RegisterRepositoryRequest {
        project: String::new(),
        owner: "acme".into(),
        name: name.into(),
        labels: vec![],
        provider: String::new(),
    })
    .await
    .expect("register");
}

/// Git ingest through the real provider path: GitHub's tarball endpoint (a redirect to the
/// download), bounded untar, and Rego's file functions over the tree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn git_ingest_reads_the_branch_through_the_tarball() {
    let db = TestDb::new().await;
    let (prefix, _topics) = topics(3).await;
    let stack = Stack::start(StackConfig::local(&kafka(), &db.url, &prefix))
        .await
        .expect("stack");
    let store = db.store();
    let mut c = client::connect(&stack.control_url(), None)
        .await
        .expect("control");
    let dependabot = b"version: 2\nupdates:\n  - package-ecosystem: github-actions\n    directory: /\n    schedule:\n      interval: weekly\n".to_vec();
    let configured = stack.sim.create_repo(
        "acme",
        "configured",
        RepoOptions {
            files: vec![(".github/dependabot.yml".into(), dependabot)],
            ..Default::default()
        },
    );
    let bare = stack
        .sim
        .create_repo("acme", "bare", RepoOptions::default());
    let rule = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../rules/rule-types/github/dependabot_configured.yaml"
    ))
    .expect("rule");
    c.apply_rule_type(ApplyRuleTypeRequest {
        project: String::new(),
        yaml: rule,
    })
    .await
    .expect("rule type");
    for n in ["configured", "bare"] {
        client_register(&mut c, n).await;
    }
    let profile = r#"
version: v1
type: profile
name: dependabot
remediate: "off"
alert: "off"
repository:
  - type: dependabot_configured
    def:
      package_ecosystem: github-actions
"#;
    c.apply_profile(ApplyProfileRequest {
        project: String::new(),
        yaml: profile.into(),
    })
    .await
    .expect("profile");
    let status = |id: u64| first_status(store.clone(), id);
    let (s, msg) = eventually(Duration::from_secs(60), "configured evaluated", || async {
        status(configured).await
    })
    .await;
    assert_eq!(s, "pass", "{msg}");
    let (s, _) = eventually(Duration::from_secs(60), "bare evaluated", || async {
        status(bare).await
    })
    .await;
    assert_eq!(s, "fail");
    let counts = stack.sim.request_counts();
    assert!(
        counts
            .get("GET /repos/{owner}/{repo}/tarball/{ref}")
            .copied()
            .unwrap_or(0)
            >= 2,
        "{counts:?}"
    );

    // The posture through the API: counts, pages one row at a time, a status filter, and
    // what bad requests receive.
    let posture = c
        .get_posture(GetPostureRequest {
            project: String::new(),
        })
        .await
        .expect("posture")
        .into_inner();
    let count = |st: EvalStatus| {
        posture
            .counts
            .iter()
            .filter(|p| p.status == st as i32)
            .map(|p| p.count)
            .sum::<u64>()
    };
    assert_eq!(
        (count(EvalStatus::Pass), count(EvalStatus::Fail)),
        (1, 1),
        "{posture:?}"
    );
    let page = |status: &str, token: String| ListStatusRequest {
        project: String::new(),
        entity_id: String::new(),
        profile: String::new(),
        status: status.into(),
        page_size: 1,
        page_token: token,
    };
    let first = c
        .list_status(page("", String::new()))
        .await
        .expect("page 1")
        .into_inner();
    assert_eq!(first.statuses.len(), 1);
    assert!(
        !first.next_page_token.is_empty(),
        "a full page has a next page"
    );
    let second = c
        .list_status(page("", first.next_page_token.clone()))
        .await
        .expect("page 2")
        .into_inner();
    assert_eq!(second.statuses.len(), 1);
    assert_ne!(first.statuses[0].entity_id, second.statuses[0].entity_id);
    let failing = c
        .list_status(ListStatusRequest {
            page_size: 0,
            ..page("fail", String::new())
        })
        .await
        .expect("failing")
        .into_inner();
    assert_eq!(failing.statuses.len(), 1);
    assert_eq!(
        failing.statuses[0].entity_id,
        format!("github/repository/{bare}")
    );
    assert!(
        failing.next_page_token.is_empty(),
        "a short page is the last"
    );
    let err = c
        .list_status(page("broken", String::new()))
        .await
        .expect_err("unknown status");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let err = c
        .list_status(page("", "zz".into()))
        .await
        .expect_err("bad token");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    stack.stop().await;
}

const APP_PUBLIC_KEY: &str = include_str!("../../../crates/github-sim/testdata/app-public-key.pem");

/// Passes when the repository can be read (the rule reads it with the entity's credential).
const READABLE_RULE: &str = r#"
version: v1
type: rule-type
name: readable
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
    rego:
      type: deny-by-default
      def: |
        package minder
        import rego.v1
        default allow := false
        allow if input.ingested.id > 0
"#;

const READABLE_PROFILE: &str = r#"
version: v1
type: profile
name: readable
repository:
  - type: readable
    def: {}
"#;

/// Each project acts with its own App installation: a repository is registered, read and
/// evaluated with its project's provider, never with another project's or the services' own;
/// what a project's installation cannot see, the project cannot register; a project without a
/// provider registers nothing; a provider in use is not deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_project_acts_with_its_own_installation() {
    use plumbline_github_sim::{AppConfig, InstallationConfig, RepositorySelection};
    let db = TestDb::new().await;
    let (prefix, _topics) = topics(3).await;
    let dir = tempfile::tempdir().expect("tmp");
    let key = dir.path().join("app.pem");
    std::fs::write(
        &key,
        include_str!("../../../crates/github-sim/testdata/app-private-key.pem"),
    )
    .expect("key");
    let mut config = StackConfig::local(&kafka(), &db.url, &prefix);
    // Only credentials the simulator issued get in; the services hold the App's key and no
    // token of their own.
    config.github_token = Some(format!("unused-{}", uuid::Uuid::new_v4()));
    config.github_app = Some((77, key));
    let stack = Stack::start(config).await.expect("stack");
    let sim = &stack.sim;
    // The repositories exist before the App is installed (no organisation webhook tells ingest
    // about them; the installation will).
    sim.set_webhooks_enabled(false);
    let api = sim.create_repo("acme", "api", RepoOptions::default());
    sim.create_repo("acme", "web", RepoOptions::default());
    let lib = sim.create_repo("other", "lib", RepoOptions::default());
    sim.set_webhooks_enabled(true);
    let mut c = client::connect(&stack.control_url(), None)
        .await
        .expect("control");
    for (project, provider, installation) in [("team-a", "acme", 1001), ("team-b", "other", 1002)] {
        c.create_project(CreateProjectRequest {
            project: project.into(),
        })
        .await
        .expect("project");
        c.create_provider(CreateProviderRequest {
            project: project.into(),
            name: provider.into(),
            installation_id: installation,
            token: String::new(),
        })
        .await
        .expect("provider");
        c.apply_rule_type(ApplyRuleTypeRequest {
            project: project.into(),
            yaml: READABLE_RULE.into(),
        })
        .await
        .expect("rule type");
        c.apply_profile(ApplyProfileRequest {
            project: project.into(),
            yaml: READABLE_PROFILE.into(),
        })
        .await
        .expect("profile");
    }
    c.create_project(CreateProjectRequest {
        project: "team-c".into(),
    })
    .await
    .expect("project");
    // The App is installed once each project has enrolled its installation: the installation
    // webhooks enroll the repositories into those projects.
    sim.add_app(AppConfig::new(77, "plumbline", APP_PUBLIC_KEY))
        .expect("app");
    sim.add_installation(InstallationConfig {
        id: 1001,
        app_id: 77,
        account: "acme".into(),
        repository_selection: RepositorySelection::All,
    })
    .expect("installation acme");
    sim.add_installation(InstallationConfig {
        id: 1002,
        app_id: 77,
        account: "other".into(),
        repository_selection: RepositorySelection::Selected(vec!["lib".into()]),
    })
    .expect("installation other");

    let register =
        |project: &str, owner: &str, name: &str, provider: &str| RegisterRepositoryRequest {
            project: project.into(),
            owner: owner.into(),
            name: name.into(),
            labels: vec![],
            provider: provider.into(),
        };

    // Each project registers what its own installation sees.
    c.register_repository(register("team-a", "acme", "api", ""))
        .await
        .expect("team-a registers acme/api with its only provider");
    // What the installation enrolled is in the installation's project, bound to it.
    let web = eventually(Duration::from_secs(30), "acme/web enrolled", || {
        let store = db.store();
        async move {
            store
                .list_entities("team-a", None, 10)
                .await
                .expect("entities")
                .into_iter()
                .find(|e| e.name == "web")
        }
    })
    .await;
    assert_eq!(web.credential.as_deref(), Some("acme"));
    c.register_repository(register("team-b", "other", "lib", "other"))
        .await
        .expect("team-b registers other/lib");
    // Not what only another project's installation sees.
    let err = c
        .register_repository(register("team-b", "acme", "web", ""))
        .await
        .expect_err("team-b's installation cannot see acme/web");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    // Nor with another project's provider.
    let err = c
        .register_repository(register("team-b", "acme", "web", "acme"))
        .await
        .expect_err("team-a's provider is not team-b's");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert!(
        err.message()
            .contains("provider acme does not exist in project team-b"),
        "{}",
        err.message()
    );
    // A project without a provider does not borrow the services' own credential.
    let err = c
        .register_repository(register("team-c", "acme", "web", ""))
        .await
        .expect_err("team-c has no provider");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("project team-c has no provider"),
        "{}",
        err.message()
    );

    // Both are evaluated, each read with its own installation's token (the simulator shows
    // other/lib only to installation 1002, and acme/api only to 1001).
    let store = db.store();
    for (project, id) in [("team-a", api), ("team-b", lib)] {
        let row = eventually(Duration::from_secs(60), "evaluated", || {
            let store = store.clone();
            async move {
                store
                    .list_status(project, Some(&format!("github/repository/{id}")), None)
                    .await
                    .expect("status")
                    .into_iter()
                    .next()
            }
        })
        .await;
        assert_eq!(row.status.as_str(), "pass", "{project}: {}", row.message);
    }
    let listed = c
        .list_repositories(ListRepositoriesRequest {
            project: "team-b".into(),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.repositories.len(), 1);
    assert_eq!(listed.repositories[0].provider, "other");

    // A provider repositories are acted on with is not deleted from under them.
    let err = c
        .delete_provider(DeleteProviderRequest {
            project: "team-a".into(),
            name: "acme".into(),
        })
        .await
        .expect_err("in use");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message()
            .contains("registered repositories of project team-a"),
        "{}",
        err.message()
    );
    stack.stop().await;
}
