//! Minder's `osv_vulnerabilities` rule type (`deps` ingest, Rego calling the `osv` data source)
//! evaluated against the simulator, unmodified but for the data source's endpoint.

use crate::support::{jinja2, HttpFetcher};
use plumbline_domain::{Entity, EntityRef, EvalStatus};
use plumbline_engine::datasource::DataSources;
use plumbline_engine::files::{FileTree, Limits};
use plumbline_engine::provider::{HttpResponse, Provider, ProviderError};
use plumbline_engine::{CompiledRule, Invocation, RuleType};
use plumbline_osv_sim::OsvSim;
use std::sync::Arc;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/minder-rules");

/// Serves one repository tree (git and deps ingest read nothing else).
struct Tree(Arc<FileTree>);

#[async_trait::async_trait]
impl Provider for Tree {
    async fn request(
        &self,
        _: &str,
        path: &str,
        _: Option<&serde_json::Value>,
    ) -> Result<HttpResponse, ProviderError> {
        Err(ProviderError::Failed(format!("{path}: not served here")))
    }

    async fn fetch_tree(&self, _: &str, _: &str, _: &str) -> Result<Arc<FileTree>, ProviderError> {
        Ok(self.0.clone())
    }
}

async fn evaluate(base: &str, files: &[(&str, &str)]) -> plumbline_engine::Outcome {
    let source = std::fs::read_to_string(format!("{CORPUS}/data-sources/osv.yaml"))
        .expect("corpus")
        .replace("https://api.osv.dev", base);
    let mut sources = DataSources::new();
    sources.add_yaml(&source).expect("data source");
    let yaml = std::fs::read_to_string(format!(
        "{CORPUS}/rule-types/common/osv_vulnerabilities.yaml"
    ))
    .expect("corpus");
    let rule_type = RuleType::from_yaml(&yaml).expect("rule type");
    let rule = Arc::new(CompiledRule::compile_with(rule_type, &sources).expect("compiles"));
    let mut tree = FileTree::new();
    for (p, c) in files {
        tree.insert(p, c.as_bytes().to_vec(), &Limits::default())
            .expect("file");
    }
    let entity = Entity {
        entity_ref: EntityRef::repository("github", 1),
        project: "default".into(),
        owner: "acme".into(),
        name: "svc".into(),
        properties: serde_json::json!({"default_branch": "main"}),
        labels: vec![],
        credential: None,
    };
    let (params, def) = (serde_json::json!({}), serde_json::json!({}));
    let inv = Invocation {
        entity: &entity,
        params: &params,
        def: &def,
    };
    let ingested = match rule.ingest(&inv, &Tree(Arc::new(tree))).await {
        Ok(i) => i,
        Err(e) => return plumbline_engine::Outcome::error(e),
    };
    let fetcher: Arc<dyn plumbline_engine::datasource::Fetcher> = Arc::new(HttpFetcher {
        client: reqwest::Client::new(),
        runtime: tokio::runtime::Handle::current(),
    });
    tokio::task::spawn_blocking(move || {
        let inv = Invocation {
            entity: &entity,
            params: &params,
            def: &def,
        };
        rule.evaluate_with(&ingested, &inv, Some(fetcher))
    })
    .await
    .expect("no panic")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_rule_finds_a_vulnerable_pin_in_requirements() {
    let (osv, base) = OsvSim::start().await.expect("starts");
    osv.add(jinja2()).expect("valid");
    let o = evaluate(
        &base,
        &[("requirements.txt", "Jinja2==2.10\nrequests==2.31.0\n")],
    )
    .await;
    assert_eq!(o.status, EvalStatus::Fail, "{o:?}");
    assert!(
        o.details
            .iter()
            .any(|d| d.contains("jinja2") && d.contains("2.10") && d.contains("PYSEC-2019-217")),
        "{o:?}"
    );
    // Both pins were asked about; the safe one found nothing.
    assert_eq!(
        osv.requests()
            .iter()
            .filter(|r| r.path == "/v1/query")
            .count(),
        2
    );
    let o = evaluate(&base, &[("requirements.txt", "Jinja2==2.10.1\n")]).await;
    assert_eq!(o.status, EvalStatus::Pass, "{o:?}");
    // A dependency file that does not parse is an error, not a pass.
    let o = evaluate(&base, &[("requirements.txt", "Jinja2==2.10\n==\n")]).await;
    assert_eq!(o.status, EvalStatus::Error, "{o:?}");
}
