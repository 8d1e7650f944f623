//! Rego policies calling Minder data sources through a fetcher.

use plumbline_domain::{Entity, EntityRef, EvalStatus};
use plumbline_engine::datasource::{DataSources, FetchRequest, Fetcher};
use plumbline_engine::provider::{HttpResponse, ProviderError};
use plumbline_engine::{CompiledRule, Ingested, Invocation, RuleType};
use std::sync::{Arc, Mutex};

const DATA_SOURCE: &str = r#"
version: v1
type: data-source
name: ghapi
rest:
  providerAuth: true
  def:
    pvr:
      endpoint: https://api.github.com/repos/{owner}/{repo}/private-vulnerability-reporting
      parse: json
      input_schema:
        type: object
        properties: {owner: {type: string}, repo: {type: string}}
        required: [owner, repo]
"#;

const RULE: &str = r#"
version: v1
type: rule-type
name: pvr_enabled
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
      - name: ghapi
    rego:
      type: deny-by-default
      def: |
        package minder
        import rego.v1
        default allow := false
        allow if {
          out := minder.datasource.ghapi.pvr({"owner": input.properties["github/repo_owner"], "repo": input.properties["github/repo_name"]})
          out.status_code == 200
          out.body.enabled == true
        }
"#;

struct Canned(Mutex<Vec<FetchRequest>>, bool);
impl Fetcher for Canned {
    fn fetch(&self, req: &FetchRequest) -> Result<HttpResponse, ProviderError> {
        if let Ok(mut v) = self.0.lock() {
            v.push(req.clone());
        }
        Ok(HttpResponse {
            status: 200,
            body: format!(r#"{{"enabled": {}}}"#, self.1).into_bytes(),
        })
    }
}

fn entity() -> Entity {
    Entity {
        entity_ref: EntityRef::repository("github", 7),
        project: "default".into(),
        credential: None,
        owner: "acme".into(),
        name: "api".into(),
        properties: serde_json::json!({"default_branch": "main", "github/repo_owner": "acme", "github/repo_name": "api"}),
        labels: vec![],
    }
}

#[test]
fn policies_call_data_sources_through_the_fetcher() {
    let mut sources = DataSources::new();
    sources.add_yaml(DATA_SOURCE).expect("data source");
    let rule = CompiledRule::compile_with(RuleType::from_yaml(RULE).expect("rule"), &sources)
        .expect("compiles");
    let e = entity();
    let (params, def) = (serde_json::json!({}), serde_json::json!({}));
    let inv = Invocation {
        entity: &e,
        params: &params,
        def: &def,
    };
    let ingested = Ingested::new(serde_json::json!({}), None, "");

    let on = Arc::new(Canned(Mutex::new(vec![]), true));
    assert_eq!(
        rule.evaluate_with(&ingested, &inv, Some(on.clone())).status,
        EvalStatus::Pass
    );
    let sent = on.0.lock().expect("lock").clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].url,
        "https://api.github.com/repos/acme/api/private-vulnerability-reporting"
    );
    assert!(sent[0].provider_auth);
    let off = Arc::new(Canned(Mutex::new(vec![]), false));
    assert_eq!(
        rule.evaluate_with(&ingested, &inv, Some(off)).status,
        EvalStatus::Fail
    );
    // Without a fetcher the call fails, and the rule does not pass.
    assert_ne!(rule.evaluate(&ingested, &inv).status, EvalStatus::Pass);
}

#[test]
fn a_rule_whose_data_source_is_missing_is_an_error_not_a_pass() {
    let rule =
        CompiledRule::compile(RuleType::from_yaml(RULE).expect("rule")).expect("still loads");
    let e = entity();
    let (params, def) = (serde_json::json!({}), serde_json::json!({}));
    let inv = Invocation {
        entity: &e,
        params: &params,
        def: &def,
    };
    let ingested = Ingested::new(serde_json::json!({}), None, "");
    let o = rule.evaluate(&ingested, &inv);
    assert_eq!(o.status, EvalStatus::Error);
    assert!(o.message.contains("ghapi"), "{}", o.message);
}
