//! sweep_cost: what a posture sweep costs in GitHub quota.
//!
//! Seeds the GitHub simulator with 1,000 repositories (10 organisations of 100) in a mixed
//! posture, then evaluates every repository against a 20-rule profile drawn from Minder's corpus
//! (`../shared/minder-rules`: 12 rest-ingest and 8 git-ingest rule types) twice, with nothing
//! changed in between, through the code the evaluator runs: `GitHubProvider` (conditional GETs
//! with the ETag cache; git trees resolved by a conditional read of the branch head and kept by
//! commit) under a per-entity `Memo` (each endpoint and tree read once per entity evaluation).
//! Broker and Postgres are left out: they do not talk to GitHub.
//!
//! From the simulator's request log it prints `requests_per_repo_first`,
//! `requests_per_repo_second` and `rate_limited_requests_per_repo_second` (requests of the
//! second sweep that consumed primary quota: everything but 304s and the free archive
//! download). Goal for the last: 0. Also printed: `not_modified_per_repo_second`,
//! `evaluations`, `errors`, and the seconds each sweep took. `BENCH_REPOS` changes the size.

use anyhow::{bail, Context as _};
use plumbline_domain::{Entity, EvalStatus};
use plumbline_engine::provider::Memo;
use plumbline_engine::{CompiledRule, Invocation, RuleType};
use plumbline_github::{GitHub, GitHubConfig};
use plumbline_github_provider::GitHubProvider;
use plumbline_github_sim::{RepoOptions, SimConfig, Simulator};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

const TOKEN: &str = "sweep-cost-token";

fn corpus() -> anyhow::Result<std::path::PathBuf> {
    for c in ["../shared/minder-rules", "../../shared/minder-rules"] {
        if Path::new(c).is_dir() {
            return Ok(c.into());
        }
    }
    bail!("the minder corpus (../shared/minder-rules) is not beside this checkout; run from the repository root")
}

/// The profile: (rule type file in the corpus, def). Twelve rest rules over six endpoints and
/// eight git rules over one tree.
fn profile() -> Vec<(&'static str, Value)> {
    vec![
        (
            "rule-types/github/branch_protection_enabled.yaml",
            json!({}),
        ),
        (
            "rule-types/github/branch_protection_enforce_admins.yaml",
            json!({ "enforce_admins": true }),
        ),
        (
            "rule-types/github/branch_protection_allow_force_pushes.yaml",
            json!({ "allow_force_pushes": false }),
        ),
        (
            "rule-types/github/branch_protection_allow_deletions.yaml",
            json!({ "allow_deletions": false }),
        ),
        (
            "rule-types/github/branch_protection_require_pull_request_approving_review_count.yaml",
            json!({ "required_approving_review_count": 1 }),
        ),
        (
            "rule-types/github/secret_scanning.yaml",
            json!({ "enabled": true }),
        ),
        (
            "rule-types/github/secret_push_protection.yaml",
            json!({ "enabled": true }),
        ),
        (
            "rule-types/github/automatic_branch_deletion.yaml",
            json!({}),
        ),
        (
            "rule-types/github/default_workflow_permissions.yaml",
            json!({ "default_workflow_permissions": "read", "can_approve_pull_request_reviews": false }),
        ),
        (
            "rule-types/github/github_actions_allowed.yaml",
            json!({ "allowed_actions": "selected" }),
        ),
        (
            "rule-types/github/repo_workflow_access_level.yaml",
            json!({ "access_level": "none" }),
        ),
        (
            "rule-types/github/no_open_security_advisories.yaml",
            json!({ "severity": "low" }),
        ),
        (
            "rule-types/github/dependabot_configured.yaml",
            json!({ "package_ecosystem": "cargo", "schedule_interval": "weekly" }),
        ),
        (
            "rule-types/common/license.yaml",
            json!({ "license_filename": "LICENSE", "license_type": "MIT" }),
        ),
        (
            "rule-types/github/actions_check_default_permissions.yaml",
            json!({}),
        ),
        (
            "rule-types/github/workflow_no_pull_request_target.yaml",
            json!({}),
        ),
        ("rule-types/github/no_binaries_in_repo.yaml", json!({})),
        (
            "rule-types/common/require_pre_commit_to_be_configured.yaml",
            json!({}),
        ),
        (
            "security-baseline/rule-types/github/osps-gv-03-01.yaml",
            json!({}),
        ),
        (
            "security-baseline/rule-types/github/osps-le-03-01.yaml",
            json!({}),
        ),
    ]
}

const CI_WORKFLOW: &str = "name: ci\non: [push, pull_request]\npermissions:\n  contents: read\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@b4ffde65f46336ab88eb53be808477a3936bae11\n      - run: cargo test\n";
const DEPENDABOT: &str = "version: 2\nupdates:\n  - package-ecosystem: cargo\n    directory: /\n    schedule:\n      interval: weekly\n";
const MIT: &str = "MIT License\n\nCopyright (c) 2026 Acme\n\nPermission is hereby granted, free of charge, to any person obtaining a copy of this software...\n";

/// Repository `i` of the seed: a mix of postures so every rule both passes and fails somewhere.
fn seed(sim: &Simulator, orgs: usize, per_org: usize) -> Vec<Entity> {
    let mut out = Vec::with_capacity(orgs * per_org);
    for o in 0..orgs {
        let org = format!("org-{o:02}");
        for r in 0..per_org {
            let i = o * per_org + r;
            let name = format!("svc-{r:03}");
            let mut files: Vec<(String, Vec<u8>)> = vec![
                ("README.md".into(), format!("# {name}\n").into_bytes()),
                ("src/main.rs".into(), b"fn main() {}\n".to_vec()),
            ];
            if i.is_multiple_of(2) {
                files.push((
                    ".github/workflows/ci.yml".into(),
                    CI_WORKFLOW.as_bytes().to_vec(),
                ));
            }
            if !i.is_multiple_of(3) {
                files.push((
                    ".github/dependabot.yml".into(),
                    DEPENDABOT.as_bytes().to_vec(),
                ));
            }
            if !i.is_multiple_of(4) {
                files.push(("LICENSE".into(), MIT.as_bytes().to_vec()));
            }
            if i.is_multiple_of(5) {
                files.push(("CONTRIBUTING.md".into(), b"# Contributing\n".to_vec()));
                files.push((".pre-commit-config.yaml".into(), b"repos: []\n".to_vec()));
            }
            let id = sim.create_repo(
                &org,
                &name,
                RepoOptions {
                    protected: i % 2 == 1,
                    // Enterprise fleets are private (and only private repositories have a
                    // workflow access level).
                    private: true,
                    files,
                    ..RepoOptions::default()
                },
            );
            out.push(plumbline_bench::fleet::repository(
                "default", &org, &name, id,
            ));
        }
    }
    out
}

struct Rule {
    name: String,
    compiled: Arc<CompiledRule>,
    def: Value,
}

/// Evaluates every entity against every rule; returns (evaluations, errors with a sample).
async fn sweep(
    provider: &GitHubProvider,
    entities: &[Entity],
    rules: &[Rule],
    concurrency: usize,
) -> (u64, Vec<String>) {
    use futures::stream::{self, StreamExt as _};
    let params = json!({});
    let results: Vec<(u64, Vec<String>)> = stream::iter(entities)
        .map(|entity| {
            let params = &params;
            async move {
                let memo = Memo::new(provider);
                let mut n = 0;
                let mut errors = Vec::new();
                for rule in rules {
                    let inv = Invocation {
                        entity,
                        params,
                        def: &rule.def,
                    };
                    n += 1;
                    let outcome = match rule.compiled.ingest(&inv, &memo).await {
                        Ok(ingested) => rule.compiled.evaluate(&ingested, &inv),
                        Err(e) => {
                            errors.push(format!(
                                "{} on {}: ingest: {e}",
                                rule.name,
                                entity.full_name()
                            ));
                            continue;
                        }
                    };
                    if outcome.status == EvalStatus::Error {
                        errors.push(format!(
                            "{} on {}: {}",
                            rule.name,
                            entity.full_name(),
                            outcome.message
                        ));
                    }
                }
                (n, errors)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let evaluations = results.iter().map(|(n, _)| n).sum();
    (
        evaluations,
        results.into_iter().flat_map(|(_, e)| e).collect(),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let repos: usize = std::env::var("BENCH_REPOS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let per_org = 100.min(repos.max(1));
    let orgs = repos.div_ceil(per_org);
    let corpus = corpus()?;
    let mut rules = Vec::new();
    for (path, def) in profile() {
        let yaml = std::fs::read_to_string(corpus.join(path)).with_context(|| path.to_string())?;
        let rt = RuleType::from_yaml(&yaml)?;
        let name = rt.name.clone();
        let compiled = CompiledRule::compile(rt).with_context(|| path.to_string())?;
        compiled
            .validate(&def, &json!({}))
            .with_context(|| format!("{path}: def"))?;
        rules.push(Rule {
            name,
            compiled: Arc::new(compiled),
            def,
        });
    }

    let sim = Simulator::new(SimConfig {
        tokens: vec![TOKEN.to_string()],
        ..SimConfig::default()
    });
    sim.set_rate_limit(1_000_000);
    let started = Instant::now();
    let entities = seed(&sim, orgs, per_org);
    let entities = &entities[..repos.min(entities.len())];
    eprintln!(
        "seeded {} repositories in {:.2}s",
        entities.len(),
        started.elapsed().as_secs_f64()
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let addr = sim.serve("127.0.0.1:0".parse()?, shutdown.clone()).await?;
    let mut config = GitHubConfig::new(format!("http://{addr}"), Some(TOKEN.to_string()));
    // Room for every conditional entry of the sweep (about 8 per repository).
    config.etag_cache_bytes = 20 * repos.max(1000) * 8192;
    let github = GitHub::new(&config)?;
    let provider = GitHubProvider::new(github, 4 << 30);

    let mut lines = Vec::new();
    for (label, round) in [("first", 1), ("second", 2)] {
        sim.reset_request_log();
        let t = Instant::now();
        let (evaluations, errors) = sweep(&provider, entities, &rules, 32).await;
        let secs = t.elapsed().as_secs_f64();
        if !errors.is_empty() {
            bail!(
                "{} evaluations failed in sweep {round}, e.g.:\n  {}",
                errors.len(),
                errors
                    .iter()
                    .take(10)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n  ")
            );
        }
        let stats = sim.quota();
        let n = entities.len() as f64;
        lines.push(format!(
            "requests_per_repo_{label} = {:.3}",
            stats.total.requests as f64 / n
        ));
        for (route, usage) in &stats.by_route {
            eprintln!(
                "sweep {round}: {route}: {} requests, {} not modified, {} charged",
                usage.requests, usage.not_modified, usage.charged
            );
        }
        if round == 2 {
            lines.push(format!(
                "rate_limited_requests_per_repo_second = {:.3}",
                stats.total.charged as f64 / n
            ));
            lines.push(format!(
                "not_modified_per_repo_second = {:.3}",
                stats.total.not_modified as f64 / n
            ));
        }
        lines.push(format!("sweep_{label}_seconds = {secs:.2}"));
        lines.push(format!("evaluations_{label} = {evaluations}"));
    }
    let (tree_hits, tree_misses) = provider.tree_cache_stats();
    lines.push(format!("tree_cache_hits = {tree_hits}"));
    lines.push(format!("tree_cache_misses = {tree_misses}"));
    shutdown.cancel();
    for l in lines {
        println!("{l}");
    }
    Ok(())
}
