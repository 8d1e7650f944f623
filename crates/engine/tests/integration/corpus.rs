//! Conformance with Minder's public rule types, profiles and test suites
//! (`../shared/minder-rules`, beside the checkout).

use plumbline_engine::testsuite::{discover, run_suite};
use plumbline_engine::{CompiledRule, Profile, RuleType};
use std::collections::HashMap;
use std::path::PathBuf;

fn corpus() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/minder-rules");
    assert!(
        p.is_dir(),
        "the minder corpus is expected at {}",
        p.display()
    );
    p
}

/// The 95 rule types, as listed in the corpus's INVENTORY.tsv.
fn rule_type_paths() -> Vec<PathBuf> {
    let inv = std::fs::read_to_string(corpus().join("INVENTORY.tsv")).expect("inventory");
    inv.lines()
        .skip(1)
        .filter_map(|l| l.split('\t').next())
        .map(|p| corpus().join(p))
        .collect()
}

fn profile_paths() -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![corpus()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if p.is_dir() {
                if !name.ends_with(".testdata") {
                    stack.push(p);
                }
            } else if name.ends_with(".yaml") && !name.contains(".test") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                if text.lines().any(|l| l.trim_end() == "type: profile") {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_rule_type_loads_and_compiles() {
    let paths = rule_type_paths();
    assert_eq!(paths.len(), 95);
    let mut failures = vec![];
    for p in &paths {
        let yaml = std::fs::read_to_string(p).expect("read");
        if let Err(e) = RuleType::from_yaml(&yaml).and_then(CompiledRule::compile) {
            failures.push(format!("{}: {e}", p.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 95 rule types failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_profile_loads_and_validates_against_its_rule_types() {
    let mut rules: HashMap<String, CompiledRule> = HashMap::new();
    for p in rule_type_paths() {
        let rt =
            RuleType::from_yaml(&std::fs::read_to_string(&p).expect("read")).expect("rule type");
        rules.insert(
            rt.name.clone(),
            CompiledRule::compile(rt).expect("compiles"),
        );
    }
    let paths = profile_paths();
    assert_eq!(paths.len(), 26, "{paths:?}");
    let mut failures = vec![];
    for p in &paths {
        let profile = match Profile::from_yaml(&std::fs::read_to_string(p).expect("read")) {
            Ok(pr) => pr,
            Err(e) => {
                failures.push(format!("{}: {e}", p.display()));
                continue;
            }
        };
        for kind in [
            plumbline_domain::EntityKind::Repository,
            plumbline_domain::EntityKind::PullRequest,
            plumbline_domain::EntityKind::Artifact,
            plumbline_domain::EntityKind::Release,
        ] {
            for r in profile.rules_for(kind) {
                // Profiles may name rule types from outside the corpus; those are checked when applied.
                if let Some(rule) = rules.get(&r.rule_type) {
                    if let Err(e) = rule.validate(&r.def, &r.params) {
                        failures.push(format!("{} rule {}: {e}", p.display(), r.rule_name()));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn every_upstream_test_case_passes() {
    let suites = discover(&[corpus()]).expect("discover");
    assert_eq!(suites.len(), 24, "test suites found");
    let mut results = vec![];
    for s in &suites {
        results.extend(run_suite(s).await);
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| r.line())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} cases failed:\n{}",
        failed.len(),
        results.len(),
        failed.join("\n")
    );
    assert_eq!(results.len(), 96);
}

/// Rule types whose ingest or eval the engine does not implement still load, and evaluating
/// them is an `error` verdict that says what is unsupported: never a pass, never a panic.
#[tokio::test]
async fn unsupported_rule_types_are_clear_errors() {
    use plumbline_domain::{Entity, EntityRef, EvalStatus};
    use plumbline_engine::files::FileTree;
    use plumbline_engine::provider::{HttpResponse, Provider, ProviderError};
    struct Empty;
    #[async_trait::async_trait]
    impl Provider for Empty {
        async fn request(
            &self,
            _: &str,
            _: &str,
            _: Option<&serde_json::Value>,
        ) -> Result<HttpResponse, ProviderError> {
            Ok(HttpResponse {
                status: 200,
                body: b"{}".to_vec(),
            })
        }
        async fn fetch_tree(
            &self,
            _: &str,
            _: &str,
            _: &str,
        ) -> Result<std::sync::Arc<FileTree>, ProviderError> {
            Ok(std::sync::Arc::new(FileTree::new()))
        }
    }
    let entity = Entity {
        entity_ref: EntityRef::repository("github", 1),
        project: "default".into(),
        credential: None,
        owner: "o".into(),
        name: "r".into(),
        properties: serde_json::json!({"default_branch": "main"}),
        labels: vec![],
    };
    let (params, def) = (serde_json::json!({}), serde_json::json!({}));
    let mut seen = std::collections::BTreeSet::new();
    for p in rule_type_paths() {
        let rt = RuleType::from_yaml(&std::fs::read_to_string(&p).expect("read")).expect("parse");
        const UNSUPPORTED: [&str; 6] = [
            "deps",
            "diff",
            "artifact",
            "homoglyphs",
            "vulncheck",
            "trusty",
        ];
        let kinds: Vec<String> = [rt.def.ingest.kind.clone(), rt.def.eval.kind.clone()]
            .into_iter()
            .filter(|k| UNSUPPORTED.contains(&k.as_str()))
            .collect();
        if kinds.is_empty() {
            continue;
        }
        // Implemented since: diff (pull requests only, so an error on this repository), deps
        // (its eval's data source is not registered here), artifact (artifacts only), and
        // trusty, whose service is gone.
        let diff = rt.def.ingest.kind == "diff";
        let deps = rt.def.ingest.kind == "deps";
        let artifact = rt.def.ingest.kind == "artifact";
        let trusty = rt.def.eval.kind == "trusty";
        let rule = CompiledRule::compile(rt).expect("unsupported rule types still load");
        let inv = plumbline_engine::Invocation {
            entity: &entity,
            params: &params,
            def: &def,
        };
        let o = rule.run(&inv, &Empty).await.expect("not a transient error");
        assert_eq!(o.status, EvalStatus::Error, "{}: {o:?}", p.display());
        if trusty {
            assert!(o.message.contains("discontinued"), "{}", o.message);
            continue;
        }
        if diff {
            assert!(o.message.contains("pull requests"), "{}", o.message);
            seen.insert("diff".to_string());
            continue;
        }
        if deps {
            assert!(o.message.contains("data source"), "{}", o.message);
            seen.insert("deps".to_string());
            continue;
        }
        // Artifacts are read from GitHub's packages first: a repository has none of that.
        if artifact {
            assert!(
                o.message.contains("has not been read from GitHub"),
                "{}",
                o.message
            );
            seen.insert("artifact".to_string());
            continue;
        }
        // The first unsupported part (ingest runs before eval) is named.
        assert!(
            o.message.contains("not supported") && o.message.contains(&kinds[0]),
            "{}: {}",
            p.display(),
            o.message
        );
        seen.extend(kinds);
    }
    for kind in ["deps", "diff", "artifact"] {
        assert!(seen.contains(kind), "the corpus exercises {kind}: {seen:?}");
    }
}
