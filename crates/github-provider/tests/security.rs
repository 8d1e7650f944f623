//! Rule authors cannot reach beyond the entity: against the GitHub simulator over HTTP, what a
//! hostile rule type receives, and proof from the simulator's request log that nothing left.

use plumbline_domain::{Entity, EntityRef, EvalStatus};
use plumbline_engine::datasource::DataSources;
use plumbline_engine::{CompiledRule, Invocation, Outcome, Remediation, RuleType};
use plumbline_github::egress::{Egress, EgressPolicy};
use plumbline_github::{GitHub, GitHubConfig};
use plumbline_github_provider::{BlockingGitHubFetcher, GitHubProvider};
use plumbline_github_sim::{RepoOptions, SimConfig, Simulator};
use serde_json::{json, Value};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

struct Fixture {
    sim: Simulator,
    github: GitHub,
    entity: Entity,
    _stop: tokio_util::sync::DropGuard,
}

async fn fixture() -> Fixture {
    let sim = Simulator::new(SimConfig::default());
    let stop = CancellationToken::new();
    let addr = sim
        .serve("127.0.0.1:0".parse().expect("addr"), stop.clone())
        .await
        .expect("simulator");
    let id = sim.create_repo("acme", "widget", RepoOptions::default());
    sim.create_repo(
        "acme",
        "secret",
        RepoOptions {
            private: true,
            ..RepoOptions::default()
        },
    );
    let github = GitHub::new(&GitHubConfig::new(format!("http://{addr}"), None)).expect("client");
    let entity = Entity {
        entity_ref: EntityRef::repository("github", id),
        project: "default".into(),
        credential: None,
        owner: "acme".into(),
        name: "widget".into(),
        properties: json!({"repo_id": id, "default_branch": "main"}),
        labels: vec![],
    };
    sim.reset_request_log();
    Fixture {
        sim,
        github,
        entity,
        _stop: stop.drop_guard(),
    }
}

impl Fixture {
    /// Every request the simulator saw, as "METHOD path".
    fn seen(&self) -> Vec<String> {
        self.sim
            .request_log()
            .into_iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    fn assert_nothing_outside_the_entity(&self) {
        for r in self.seen() {
            let path = r.split_once(' ').map(|(_, p)| p).unwrap_or_default();
            assert!(
                path == "/repos/acme/widget" || path.starts_with("/repos/acme/widget/"),
                "request left the entity: {r}"
            );
        }
    }
}

fn rule(yaml: &str, sources: &DataSources) -> Arc<CompiledRule> {
    Arc::new(
        CompiledRule::compile_with(RuleType::from_yaml(yaml).expect("rule type"), sources)
            .expect("compiles"),
    )
}

async fn run(f: &Fixture, rule: &CompiledRule, params: Value) -> Outcome {
    let provider = GitHubProvider::new(f.github.clone(), 1 << 20);
    let inv = Invocation {
        entity: &f.entity,
        params: &params,
        def: &Value::Null,
    };
    rule.run(&inv, &provider).await.expect("no transient error")
}

fn rest_rule(method: &str, endpoint: &str) -> String {
    format!(
        r#"
version: v1
type: rule-type
name: hostile_rest
def:
  in_entity: repository
  rule_schema: {{}}
  ingest:
    type: rest
    rest:
      method: {method}
      endpoint: '{endpoint}'
      parse: json
  eval:
    type: rego
    rego:
      type: deny-by-default
      def: |
        package minder
        default allow := true
  remediate:
    type: rest
    rest:
      method: PATCH
      endpoint: '{endpoint}'
      body: '{{"private": false}}'
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_ingest_may_only_read_during_evaluation() {
    let f = fixture().await;
    for method in ["PUT", "PATCH", "POST", "DELETE"] {
        let r = rule(
            &rest_rule(method, "/repos/{{.Entity.Owner}}/{{.Entity.Name}}"),
            &DataSources::new(),
        );
        let out = run(&f, &r, json!({})).await;
        assert_eq!(out.status, EvalStatus::Error, "{method}: {out:?}");
        assert!(
            out.message.contains("may only read"),
            "{method}: {}",
            out.message
        );
    }
    assert_eq!(f.seen(), Vec::<String>::new(), "no write reached GitHub");
    // The same rule reading is fine (positive control: the checks do not refuse everything).
    let r = rule(
        &rest_rule("GET", "/repos/{{.Entity.Owner}}/{{.Entity.Name}}"),
        &DataSources::new(),
    );
    assert_eq!(run(&f, &r, json!({})).await.status, EvalStatus::Pass);
    assert_eq!(f.seen(), vec!["GET /repos/acme/widget".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_values_and_templates_cannot_leave_the_entity() {
    let f = fixture().await;
    let templated = rule(
        &rest_rule(
            "GET",
            "/repos/{{.Entity.Owner}}/{{.Entity.Name}}/branches/{{.Params.branch}}/protection",
        ),
        &DataSources::new(),
    );
    for branch in [
        "..",
        ".",
        "../../secret",
        "..%2F..%2Fsecret",
        "%2e%2e/%2e%2e/secret",
        "../../../../repos/acme/secret#",
        "main?x=/../../secret",
    ] {
        let out = run(&f, &templated, json!({"branch": branch})).await;
        // Either refused outright, or escaped into one harmless segment GitHub answers 404 for.
        assert_eq!(out.status, EvalStatus::Error, "{branch}: {out:?}");
        let provider = GitHubProvider::new(f.github.clone(), 1 << 20);
        let inv = Invocation {
            entity: &f.entity,
            params: &json!({"branch": branch}),
            def: &Value::Null,
        };
        match templated.plan_remediation(&inv, &provider).await {
            Ok(Some(Remediation::Request(req))) => {
                assert!(
                    req.path.starts_with("/repos/acme/widget/branches/"),
                    "{branch}: planned {}",
                    req.path
                );
                assert!(
                    !req.path["/repos/acme/widget/branches/".len()..]
                        .trim_end_matches("/protection")
                        .contains('/'),
                    "{branch}: {}",
                    req.path
                );
            }
            Ok(other) => panic!("{branch}: unexpected plan {other:?}"),
            Err(e) => assert!(
                e.to_string().contains("URL path") || e.to_string().contains("leaves the entity"),
                "{branch}: {e}"
            ),
        }
    }
    // The template's own text may not leave either, however it is spelled.
    for endpoint in [
        "/repos/{{.Entity.Owner}}/{{.Entity.Name}}/../secret",
        "/repos/{{.Entity.Owner}}/{{.Entity.Name}}/%2e%2e/secret",
        "/repos/{{.Entity.Owner}}/{{.Entity.Name}}/.%2E/secret",
        "/repos/{{.Entity.Owner}}/secret",
        "/orgs/{{.Entity.Owner}}/members",
        "/user",
    ] {
        let r = rule(&rest_rule("GET", endpoint), &DataSources::new());
        let out = run(&f, &r, json!({})).await;
        assert_eq!(out.status, EvalStatus::Error, "{endpoint}: {out:?}");
        assert!(
            out.message.contains("leaves the entity"),
            "{endpoint}: {}",
            out.message
        );
        let provider = GitHubProvider::new(f.github.clone(), 1 << 20);
        let inv = Invocation {
            entity: &f.entity,
            params: &json!({}),
            def: &Value::Null,
        };
        let e = r
            .plan_remediation(&inv, &provider)
            .await
            .expect_err("remediation endpoint refused");
        assert!(
            e.to_string().contains("leaves the entity"),
            "{endpoint}: {e}"
        );
    }
    f.assert_nothing_outside_the_entity();
    assert!(
        !f.seen().is_empty(),
        "the escaped requests did reach the simulator (inside the entity)"
    );
}

const DATA_SOURCES: &str = r#"
version: v1
type: data-source
name: gh
rest:
  providerAuth: true
  def:
    read:
      endpoint: https://api.github.com/repos/{owner}/{repo}
      parse: json
      input_schema: {}
    write:
      endpoint: https://api.github.com/repos/{owner}/{repo}
      method: PATCH
      bodyobj: {"private": false}
      parse: json
      input_schema: {}
    elsewhere:
      endpoint: https://collector.example/{owner}
      parse: json
      input_schema: {}
"#;

fn ds_rule(call: &str) -> String {
    format!(
        r#"
version: v1
type: rule-type
name: hostile_data_source
def:
  in_entity: repository
  rule_schema: {{}}
  ingest:
    type: rest
    rest:
      endpoint: /repos/{{{{.Entity.Owner}}}}/{{{{.Entity.Name}}}}
      parse: json
  eval:
    type: rego
    data_sources:
      - name: gh
    rego:
      type: deny-by-default
      def: |
        package minder
        import rego.v1
        default allow := false
        allow if {{
          out := {call}
          out.status_code == 200
        }}
"#
    )
}

async fn evaluate(f: &Fixture, r: Arc<CompiledRule>) -> Outcome {
    let provider = GitHubProvider::new(f.github.clone(), 1 << 20);
    let (entity, params, def) = (f.entity.clone(), json!({}), Value::Null);
    let ingested = {
        let inv = Invocation {
            entity: &entity,
            params: &params,
            def: &def,
        };
        r.ingest(&inv, &provider).await.expect("ingest")
    };
    let fetcher = Arc::new(BlockingGitHubFetcher::for_entity(
        f.github.clone(),
        Egress::new(EgressPolicy::default()).expect("egress"),
        &entity,
    ));
    tokio::task::spawn_blocking(move || {
        let inv = Invocation {
            entity: &entity,
            params: &params,
            def: &def,
        };
        r.evaluate_with(&ingested, &inv, Some(fetcher))
    })
    .await
    .expect("evaluation thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_sources_may_only_read_the_entity_with_the_providers_credentials() {
    let f = fixture().await;
    let mut sources = DataSources::new();
    sources.add_yaml(DATA_SOURCES).expect("data source");

    // Positive control: reading the entity itself works.
    let own = evaluate(
        &f,
        rule(
            &ds_rule(r#"minder.datasource.gh.read({"owner": "acme", "repo": "widget"})"#),
            &sources,
        ),
    )
    .await;
    assert_eq!(own.status, EvalStatus::Pass, "{own:?}");

    f.sim.reset_request_log();
    for (call, why) in [
        (
            r#"minder.datasource.gh.write({"owner": "acme", "repo": "widget"})"#,
            "may only read",
        ),
        (
            r#"minder.datasource.gh.read({"owner": "acme", "repo": "secret"})"#,
            "leaves the entity",
        ),
        (
            r#"minder.datasource.gh.read({"owner": "acme", "repo": ".."})"#,
            "leaves the entity",
        ),
        (
            r#"minder.datasource.gh.elsewhere({"owner": "acme"})"#,
            "credentials are sent only to its own API",
        ),
    ] {
        let out = evaluate(&f, rule(&ds_rule(call), &sources)).await;
        assert_ne!(out.status, EvalStatus::Pass, "{call}: {out:?}");
        assert!(
            out.message.contains(why) || out.details.iter().any(|d| d.contains(why)),
            "{call}: {out:?}"
        );
    }
    // Only the rules' own ingest reads reached GitHub: no PATCH, nothing of acme/secret.
    let seen = f.seen();
    assert!(
        seen.iter().all(|r| r == "GET /repos/acme/widget"),
        "{seen:?}"
    );
}
