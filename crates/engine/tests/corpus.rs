//! Conformance with Minder's public rule types, profiles and test suites
//! (`../shared/minder-rules`, beside the checkout).

use plumbline_engine::testsuite::{discover, run_suite};
use plumbline_engine::{CompiledRule, Profile, RuleType};
use std::collections::HashMap;
use std::path::PathBuf;

fn corpus() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/minder-rules");
    assert!(p.is_dir(), "the minder corpus is expected at {}", p.display());
    p
}

/// The 95 rule types, as listed in the corpus's INVENTORY.tsv.
fn rule_type_paths() -> Vec<PathBuf> {
    let inv = std::fs::read_to_string(corpus().join("INVENTORY.tsv")).expect("inventory");
    inv.lines().skip(1).filter_map(|l| l.split('\t').next()).map(|p| corpus().join(p)).collect()
}

fn profile_paths() -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![corpus()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
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
    assert!(failures.is_empty(), "{} of 95 rule types failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_profile_loads_and_validates_against_its_rule_types() {
    let mut rules: HashMap<String, CompiledRule> = HashMap::new();
    for p in rule_type_paths() {
        let rt = RuleType::from_yaml(&std::fs::read_to_string(&p).expect("read")).expect("rule type");
        rules.insert(rt.name.clone(), CompiledRule::compile(rt).expect("compiles"));
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
        for kind in [plumbline_domain::EntityKind::Repository, plumbline_domain::EntityKind::PullRequest, plumbline_domain::EntityKind::Artifact, plumbline_domain::EntityKind::Release] {
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
    let failed: Vec<String> = results.iter().filter(|r| !r.passed).map(|r| r.line()).collect();
    assert!(failed.is_empty(), "{} of {} cases failed:\n{}", failed.len(), results.len(), failed.join("\n"));
    assert_eq!(results.len(), 96);
}
