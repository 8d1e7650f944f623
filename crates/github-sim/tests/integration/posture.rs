//! Posture seeding: fleets of organizations and repositories in a chosen posture, exact
//! fractions, deterministic, fast, and without webhooks.

use crate::helpers;

use helpers::{webhook_config, Receiver, Server};
use plumbline_github_sim::{PostureSeed, SeededRepo, SimConfig, Simulator, WorkflowPermissions};
use serde_json::{json, Value};

fn fleet_spec() -> PostureSeed {
    PostureSeed {
        orgs: 10,
        repos_per_org: 100,
        org_prefix: "corp".to_owned(),
        repo_prefix: "svc".to_owned(),
        seed: 42,
        branch_protection: 0.6,
        secret_scanning: 0.3,
        workflow_permissions_read: 0.25,
        ci_workflow: 0.7,
        dependabot: 0.4,
        security_policy: 0.5,
        license: 0.8,
        readme: 0.9,
        codeowners: 0.2,
    }
}

fn count(seeded: &[SeededRepo], f: impl Fn(&SeededRepo) -> bool) -> usize {
    seeded.iter().filter(|r| f(r)).count()
}

#[tokio::test]
async fn seeds_a_thousand_repositories_with_the_requested_fractions() {
    let mut receiver = Receiver::start().await;
    let server = Server::start(webhook_config(&receiver.url)).await;
    let spec = fleet_spec();

    // How fast seeding is belongs to a benchmark, not to an assertion on wall time here.
    let seeded = server.sim.seed_posture(&spec).unwrap();
    assert_eq!(seeded.len(), 1000);
    assert!(seeded.iter().all(|r| r.created));
    assert_eq!(seeded[0].owner, "corp-001");
    assert_eq!(seeded[0].name, "svc-001");
    assert_eq!(seeded[999].owner, "corp-010");
    assert_eq!(seeded[999].name, "svc-100");

    // The simulator's state matches what was reported, and the fractions are exact.
    let sim = &server.sim;
    let protected = count(&seeded, |r| {
        sim.protection(&r.owner, &r.name, "main").is_some()
    });
    assert_eq!(protected, 600);
    assert_eq!(count(&seeded, |r| r.branch_protection), 600);
    let read_only = count(&seeded, |r| {
        sim.workflow_permissions(&r.owner, &r.name).unwrap().0 == WorkflowPermissions::Read
    });
    assert_eq!(read_only, 250);
    assert_eq!(count(&seeded, |r| r.secret_scanning), 300);
    for (path, expected) in [
        (".github/workflows/ci.yml", 700),
        (".github/dependabot.yml", 400),
        ("SECURITY.md", 500),
        ("LICENSE", 800),
        ("README.md", 900),
        ("CODEOWNERS", 200),
    ] {
        let present = count(&seeded, |r| {
            sim.file(&r.owner, &r.name, "main", path).is_some()
        });
        assert_eq!(present, expected, "{path}");
        assert_eq!(
            count(&seeded, |r| r.files.iter().any(|f| f == path)),
            expected
        );
    }
    // Properties are drawn independently, not all on the same repositories.
    assert!(
        count(&seeded, |r| r.branch_protection && !r.secret_scanning) > 0
            && count(&seeded, |r| !r.branch_protection && r.secret_scanning) > 0
    );

    // Secret scanning is visible through the REST API (checked for one organization).
    for repo in seeded.iter().filter(|r| r.owner == "corp-003") {
        let body: Value = server
            .get(&format!("/repos/{}/{}", repo.owner, repo.name), None)
            .await
            .json()
            .await
            .unwrap();
        let status = &body["security_and_analysis"]["secret_scanning"]["status"];
        let expected = if repo.secret_scanning {
            "enabled"
        } else {
            "disabled"
        };
        assert_eq!(status, expected, "{}/{}", repo.owner, repo.name);
    }

    // File contents are what the rules look for.
    let with_dependabot = seeded
        .iter()
        .find(|r| r.files.iter().any(|f| f == ".github/dependabot.yml"))
        .unwrap();
    let dependabot = sim
        .file(
            &with_dependabot.owner,
            &with_dependabot.name,
            "main",
            ".github/dependabot.yml",
        )
        .unwrap();
    let text = String::from_utf8(dependabot).unwrap();
    assert!(text.starts_with("version: 2\n") && text.contains("package-ecosystem: github-actions"));
    let with_license = seeded
        .iter()
        .find(|r| r.files.iter().any(|f| f == "LICENSE"))
        .unwrap();
    let license = sim
        .file(&with_license.owner, &with_license.name, "main", "LICENSE")
        .unwrap();
    assert!(String::from_utf8(license)
        .unwrap()
        .starts_with("MIT License"));

    // Seeding is silent: the fleet existed before the test.
    receiver.assert_quiet().await;
    assert_eq!(sim.webhooks_sent(), 0);
}

#[test]
fn seeding_is_deterministic_and_leaves_existing_repositories_alone() {
    let spec = fleet_spec();
    let first = Simulator::new(SimConfig::default())
        .seed_posture(&spec)
        .unwrap();
    let second = Simulator::new(SimConfig::default())
        .seed_posture(&spec)
        .unwrap();
    assert_eq!(first, second);
    let other_seed = Simulator::new(SimConfig::default())
        .seed_posture(&PostureSeed {
            seed: 43,
            ..fleet_spec()
        })
        .unwrap();
    assert_ne!(
        first
            .iter()
            .map(|r| r.branch_protection)
            .collect::<Vec<_>>(),
        other_seed
            .iter()
            .map(|r| r.branch_protection)
            .collect::<Vec<_>>()
    );

    let sim = Simulator::new(SimConfig::default());
    let small = PostureSeed {
        orgs: 1,
        repos_per_org: 4,
        branch_protection: 1.0,
        ..PostureSeed::default()
    };
    let seeded = sim.seed_posture(&small).unwrap();
    assert!(seeded.iter().all(|r| r.created && r.branch_protection));
    let again = sim
        .seed_posture(&PostureSeed {
            branch_protection: 0.0,
            repos_per_org: 5,
            ..small.clone()
        })
        .unwrap();
    assert_eq!(again.iter().filter(|r| r.created).count(), 1);
    assert!(
        sim.protection("org-001", "repo-001", "main").is_some(),
        "left alone"
    );
    assert!(sim.protection("org-001", "repo-005", "main").is_none());
    assert_eq!(again[0].id, seeded[0].id);

    assert!(sim
        .seed_posture(&PostureSeed {
            orgs: 1000,
            repos_per_org: 1000,
            ..PostureSeed::default()
        })
        .is_err());
    assert!(sim
        .seed_posture(&PostureSeed {
            readme: 1.5,
            ..PostureSeed::default()
        })
        .is_err());
}

#[tokio::test]
async fn posture_seeding_via_the_admin_api() {
    let server = Server::start(SimConfig::default()).await;
    let response = server
        .client
        .post(server.url("/_admin/seed"))
        .json(&json!({
            "orgs": 2,
            "repos_per_org": 5,
            "org_prefix": "team",
            "seed": 7,
            "branch_protection": "all",
            "secret_scanning": 0.4,
            "readme": "none",
            "license": 1
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["counts"],
        json!({
            "repositories": 10, "created": 10, "branch_protection": 10, "secret_scanning": 4,
            "workflow_permissions_read": 0, "ci_workflow": 0, "dependabot": 0,
            "security_policy": 0, "license": 10, "readme": 0, "codeowners": 0
        })
    );
    assert_eq!(body["repositories"][9]["owner"], "team-002");
    assert_eq!(body["repositories"][9]["name"], "repo-005");
    assert_eq!(body["repositories"][0]["files"], json!(["LICENSE"]));
    let listed: Value = server
        .get("/orgs/team-001/repos", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 5);

    for (bad, status) in [
        (json!({ "repos_per_org": 1, "readme": "most" }), 400),
        (json!({ "repos_per_org": 1, "license": 2 }), 400),
        (json!({ "orgs": 1000, "repos_per_org": 1000 }), 422),
        (json!({ "repos_per_org": 1, "org_prefix": "a/b" }), 422),
    ] {
        let response = server
            .client
            .post(server.url("/_admin/seed"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{bad}");
    }
    // The single-organization seed still works.
    let legacy = server
        .client
        .post(server.url("/_admin/seed"))
        .json(&json!({ "org": "legacy", "count": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(legacy.status(), 201);
}
