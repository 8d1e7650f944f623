//! The provider's calls for every endpoint family Plumbline uses, against the GitHub simulator
//! over HTTP (octocrab underneath, as in production): reads that rule types make, and the
//! changes remediations and alerts make.

use plumbline_github::{FileChange, GitHub, GitHubConfig, Method, NewAdvisory};
use plumbline_github_sim::{RepoOptions, SimConfig, Simulator};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

struct Env {
    sim: Simulator,
    gh: GitHub,
    stop: CancellationToken,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn env() -> Env {
    let sim = Simulator::new(SimConfig::default());
    sim.create_repo(
        "acme",
        "api",
        RepoOptions {
            protected: true,
            files: vec![
                ("README.md".into(), b"# api\n".to_vec()),
                ("LICENSE".into(), b"MIT License\n\nPermission is hereby granted, free of charge, to any person obtaining a copy".to_vec()),
            ],
            ..RepoOptions::default()
        },
    );
    let stop = CancellationToken::new();
    let addr = sim
        .serve("127.0.0.1:0".parse().expect("addr"), stop.clone())
        .await
        .expect("serve");
    let gh = GitHub::new(&GitHubConfig::new(
        format!("http://{addr}"),
        Some("t".into()),
    ))
    .expect("client");
    Env { sim, gh, stop }
}

#[tokio::test]
async fn repository_settings_and_protection() {
    let e = env().await;
    let repo = e.gh.get_repository("acme", "api").await.expect("repo");
    assert_eq!(
        (repo.full_name.as_str(), repo.default_branch.as_deref()),
        ("acme/api", Some("main"))
    );
    let p: Value =
        e.gh.get_json("/repos/acme/api/branches/main/protection")
            .await
            .expect("protection");
    assert!(p.get("required_pull_request_reviews").is_some());
    let patched: Value =
        e.gh.request_ok(
            Method::PATCH,
            "/repos/acme/api",
            Some(
                &json!({ "security_and_analysis": { "secret_scanning": { "status": "enabled" } } }),
            ),
        )
        .await
        .expect("patch")
        .json()
        .expect("json");
    assert_eq!(
        patched.pointer("/security_and_analysis/secret_scanning/status"),
        Some(&json!("enabled"))
    );
    let repos = e.gh.list_org_repositories("acme").await.expect("list");
    assert_eq!(repos.len(), 1);
}

#[tokio::test]
async fn actions_permissions_family() {
    let e = env().await;
    let perms: Value =
        e.gh.get_json("/repos/acme/api/actions/permissions")
            .await
            .expect("permissions");
    assert!(perms.get("enabled").is_some(), "{perms}");
    e.gh.request_ok(
        Method::PUT,
        "/repos/acme/api/actions/permissions",
        Some(&json!({ "enabled": true, "allowed_actions": "selected" })),
    )
    .await
    .expect("put permissions");
    e.gh.request_ok(Method::PUT, "/repos/acme/api/actions/permissions/selected-actions", Some(&json!({ "github_owned_allowed": true, "verified_allowed": false, "patterns_allowed": ["acme/*"] })))
        .await
        .expect("put selected");
    let selected: Value =
        e.gh.get_json("/repos/acme/api/actions/permissions/selected-actions")
            .await
            .expect("selected");
    assert_eq!(selected["patterns_allowed"], json!(["acme/*"]));
    let wf: Value =
        e.gh.get_json("/repos/acme/api/actions/permissions/workflow")
            .await
            .expect("workflow");
    assert!(wf.get("default_workflow_permissions").is_some());
    let access =
        e.gh.request(
            Method::GET,
            "/repos/acme/api/actions/permissions/access",
            None,
        )
        .await
        .expect("access");
    assert_eq!(
        access.status, 422,
        "a public repository has no workflow access level"
    );
}

#[tokio::test]
async fn advisories_open_and_close() {
    let e = env().await;
    let created =
        e.gh.create_advisory(
            "acme",
            "api",
            &NewAdvisory {
                summary: "branch protection is off".into(),
                description: "plumbline found the default branch unprotected".into(),
                severity: "medium".into(),
                vulnerabilities: vec![
                    json!({ "package": { "ecosystem": "other", "name": "acme/api" } }),
                ],
            },
        )
        .await
        .expect("create advisory");
    assert!(created.ghsa_id.starts_with("GHSA-"), "{}", created.ghsa_id);
    let open =
        e.gh.list_advisories("acme", "api", Some("draft"))
            .await
            .expect("list");
    assert_eq!(
        open.iter().map(|a| a.ghsa_id.as_str()).collect::<Vec<_>>(),
        vec![created.ghsa_id.as_str()]
    );
    let closed =
        e.gh.update_advisory(
            "acme",
            "api",
            &created.ghsa_id,
            &json!({ "state": "closed" }),
        )
        .await
        .expect("close");
    assert_eq!(closed.state, "closed");
}

#[tokio::test]
async fn issues_open_comment_and_close() {
    let e = env().await;
    let issue =
        e.gh.create_issue(
            "acme",
            "api",
            "posture: branch protection",
            "found by plumbline",
            &["plumbline"],
        )
        .await
        .expect("create");
    let listed =
        e.gh.list_issues("acme", "api", "open", &["plumbline"])
            .await
            .expect("list");
    assert_eq!(
        listed.iter().map(|i| i.number).collect::<Vec<_>>(),
        vec![issue.number]
    );
    e.gh.request_ok(
        Method::POST,
        &format!("/repos/acme/api/issues/{}/comments", issue.number),
        Some(&json!({ "body": "still failing" })),
    )
    .await
    .expect("comment");
    let closed =
        e.gh.update_issue(
            "acme",
            "api",
            issue.number,
            &json!({ "state": "closed", "state_reason": "completed" }),
        )
        .await
        .expect("close");
    assert_eq!(closed.state, "closed");
}

#[tokio::test]
async fn contents_license_and_git_ingest_reads() {
    let e = env().await;
    let file: Value =
        e.gh.get_json("/repos/acme/api/contents/README.md")
            .await
            .expect("contents");
    assert_eq!(file["type"], "file");
    let raw =
        e.gh.request_with_headers(
            Method::GET,
            "/repos/acme/api/contents/README.md",
            None,
            &[("Accept".into(), "application/vnd.github.raw".into())],
        )
        .await
        .expect("raw");
    assert_eq!(&raw.body[..], b"# api\n");
    let license: Value =
        e.gh.get_json("/repos/acme/api/license")
            .await
            .expect("license");
    assert_eq!(license.pointer("/license/spdx_id"), Some(&json!("MIT")));
    let head =
        e.gh.branch_head("acme", "api", "main")
            .await
            .expect("head")
            .expect("branch exists");
    assert_eq!(Some(head.clone()), e.sim.branch_sha("acme", "api", "main"));
    assert_eq!(
        e.gh.branch_head("acme", "api", "nope").await.expect("head"),
        None
    );
    let tree: Value =
        e.gh.get_json(&format!("/repos/acme/api/git/trees/{head}?recursive=1"))
            .await
            .expect("tree");
    assert!(tree["tree"]
        .as_array()
        .is_some_and(|t| t.iter().any(|x| x["path"] == "LICENSE")));
    let tarball =
        e.gh.tarball("acme", "api", &head, 1 << 20)
            .await
            .expect("tarball at a commit");
    assert!(!tarball.is_empty());
    // An unchanged branch head is a free 304 on the second read.
    e.sim.reset_request_log();
    e.gh.branch_head("acme", "api", "main").await.expect("head");
    assert_eq!(
        e.sim
            .request_log()
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        vec![304]
    );
}

#[tokio::test]
async fn a_pull_request_remediation_branch_commit_pr_reuse() {
    let e = env().await;
    let head =
        e.gh.branch_head("acme", "api", "main")
            .await
            .expect("head")
            .expect("main");
    e.gh.create_branch("acme", "api", "plumbline/dependabot", &head)
        .await
        .expect("branch");
    let files = [
        FileChange {
            path: ".github/dependabot.yml".into(),
            mode: "100644".into(),
            content: Some(b"version: 2\n".to_vec()),
        },
        FileChange {
            path: "scripts/check.sh".into(),
            mode: "100755".into(),
            content: Some(b"#!/bin/sh\n".to_vec()),
        },
    ];
    let commit =
        e.gh.commit_files(
            "acme",
            "api",
            "plumbline/dependabot",
            "add dependabot",
            &files,
        )
        .await
        .expect("commit");
    assert_eq!(
        e.sim.branch_sha("acme", "api", "plumbline/dependabot"),
        Some(commit)
    );
    assert_eq!(
        e.sim.file(
            "acme",
            "api",
            "plumbline/dependabot",
            ".github/dependabot.yml"
        ),
        Some(b"version: 2\n".to_vec())
    );
    assert!(e
        .gh
        .find_open_pulls("acme", "api", "plumbline/dependabot", "main")
        .await
        .expect("find")
        .is_empty());
    let pr =
        e.gh.open_pull(
            "acme",
            "api",
            "Add dependabot",
            "by plumbline",
            "plumbline/dependabot",
            "main",
        )
        .await
        .expect("open");
    let found =
        e.gh.find_open_pulls("acme", "api", "plumbline/dependabot", "main")
            .await
            .expect("find");
    assert_eq!(
        found.iter().map(|p| p.number).collect::<Vec<_>>(),
        vec![pr.number]
    );
    // A second PR from the same branch is refused by GitHub: callers reuse the open one.
    let again =
        e.gh.open_pull(
            "acme",
            "api",
            "Add dependabot",
            "by plumbline",
            "plumbline/dependabot",
            "main",
        )
        .await;
    assert!(
        matches!(
            again,
            Err(plumbline_github::GitHubError::Status { status: 422, .. })
        ),
        "{again:?}"
    );
    let updated =
        e.gh.update_pull(
            "acme",
            "api",
            pr.number,
            &json!({ "body": "updated by plumbline" }),
        )
        .await
        .expect("update");
    assert_eq!(updated.body.as_deref(), Some("updated by plumbline"));
}

#[tokio::test]
async fn rules_vulnerability_reporting_collaborators_and_releases() {
    let e = env().await;
    e.gh.request_ok(
        Method::POST,
        "/repos/acme/api/rulesets",
        Some(&json!({
            "name": "protect default",
            "target": "branch",
            "enforcement": "active",
            "conditions": { "ref_name": { "include": ["~DEFAULT_BRANCH"], "exclude": [] } },
            "rules": [ { "type": "non_fast_forward" }, { "type": "deletion" } ]
        })),
    )
    .await
    .expect("create ruleset");
    let rules: Vec<Value> =
        e.gh.get_json("/repos/acme/api/rules/branches/main")
            .await
            .expect("branch rules");
    let types: Vec<&str> = rules.iter().filter_map(|r| r["type"].as_str()).collect();
    assert!(
        types.contains(&"non_fast_forward") && types.contains(&"deletion"),
        "{types:?}"
    );
    e.gh.set_feature("acme", "api", "private-vulnerability-reporting", true)
        .await
        .expect("enable pvr");
    let pvr: Value =
        e.gh.get_json("/repos/acme/api/private-vulnerability-reporting")
            .await
            .expect("pvr");
    assert_eq!(pvr["enabled"], true);
    e.gh.set_feature("acme", "api", "vulnerability-alerts", true)
        .await
        .expect("enable alerts");
    assert_eq!(
        e.gh.request(Method::GET, "/repos/acme/api/vulnerability-alerts", None)
            .await
            .expect("alerts")
            .status,
        204
    );
    e.gh.set_feature("acme", "api", "automated-security-fixes", true)
        .await
        .expect("enable fixes");
    let fixes: Value =
        e.gh.get_json("/repos/acme/api/automated-security-fixes")
            .await
            .expect("fixes");
    assert_eq!(fixes["enabled"], true);
    let collaborators: Vec<Value> =
        e.gh.list_all("/repos/acme/api/collaborators?per_page=100", None, 10)
            .await
            .expect("collaborators");
    assert!(collaborators.iter().all(|c| c.get("login").is_some()));
    e.gh.request_ok(
        Method::POST,
        "/repos/acme/api/releases",
        Some(&json!({ "tag_name": "v1.0.0", "name": "v1.0.0" })),
    )
    .await
    .expect("release");
    let releases: Vec<Value> =
        e.gh.list_all("/repos/acme/api/releases?per_page=1", None, 10)
            .await
            .expect("releases");
    assert_eq!(releases.len(), 1);
}
