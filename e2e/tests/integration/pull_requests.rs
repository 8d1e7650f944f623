//! Pull requests as entities, end to end on the broker, Postgres and the simulator: enrolled
//! from `pull_request` webhooks under their repository, judged on the head GitHub reports, and
//! retired when closed.

use crate::common;

use common::*;
use plumb::stack::{Stack, StackConfig};
use plumbline_github_sim::RepoOptions;
use std::time::Duration;

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/minder-rules/rule-types/github"
);

const PROFILE: &str = r#"
version: v1
type: profile
name: pull-request-hygiene
context:
  provider: github
alert: "on"
remediate: "off"
pull_request:
  - type: invisible_characters_check
    def: {}
  - type: invisible_characters_check
    name: invisible-status
    def:
      action: commit_status
  - type: mixed_scripts_check
    def: {}
"#;

async fn status(
    store: &plumbline_store::Store,
    entity: &str,
    rule: &str,
) -> Option<(String, String)> {
    store
        .list_status("default", Some(entity), None)
        .await
        .ok()?
        .into_iter()
        .find(|r| r.rule_name == rule)
        .map(|r| (r.status.as_str().to_string(), r.message))
}

async fn wait_for(store: &plumbline_store::Store, entity: &str, rule: &str, want: &str) -> String {
    let mut message = String::new();
    eventually(
        Duration::from_secs(60),
        &format!("{entity} {rule} = {want}"),
        || async {
            let (s, m) = status(store, entity, rule).await?;
            (s == want).then_some(m)
        },
    )
    .await;
    if let Some((_, m)) = status(store, entity, rule).await {
        message = m;
    }
    message
}

#[tokio::test]
async fn a_pull_request_adding_an_invisible_character_fails_and_a_closed_one_is_retired() {
    let db = TestDb::new().await;
    let (prefix, _topics) = topics(3).await;
    let stack = Stack::start(StackConfig::local(&kafka(), &db.url, &prefix))
        .await
        .expect("stack starts");
    let store = db.store();
    let sim = &stack.sim;
    sim.create_repo("acme", "app", RepoOptions::default());
    sim.put_file(
        "acme",
        "app",
        "main",
        "src/app.js",
        "let a = 1;\nlet b = 2;\n",
    )
    .expect("seed");
    enroll(&stack, &[("acme", "app")]).await;
    let mut c = plumb::client::connect(&stack.control_url(), None)
        .await
        .expect("control api");
    for name in ["invisible_characters_check", "mixed_scripts_check"] {
        let yaml = std::fs::read_to_string(format!("{CORPUS}/{name}.yaml")).expect("corpus");
        plumb::commands::apply_rule_type(&mut c, "default", &yaml)
            .await
            .expect("apply rule type");
    }
    plumb::commands::apply_profile(&mut c, "default", PROFILE)
        .await
        .expect("apply profile");

    // A change that hides a zero-width space in an added line.
    sim.create_branch("acme", "app", "feature", "main")
        .expect("branch");
    sim.put_file(
        "acme",
        "app",
        "feature",
        "src/app.js",
        "let a = 1;\nlet b = 2;\nlet is\u{200B}Admin = false;\n",
    )
    .expect("push");
    let number = sim
        .open_pull_request(
            "acme",
            "app",
            plumbline_github_sim::NewPullRequest {
                title: "tidy".into(),
                head: "feature".into(),
                base: "main".into(),
                ..Default::default()
            },
        )
        .expect("pull request");
    let pull = sim.pull_request("acme", "app", number).expect("pull");
    let id = format!("github/pull_request/{}", pull["id"]);
    let message = wait_for(&store, &id, "invisible_characters_check", "fail").await;
    assert!(
        message.contains("src/app.js:3") && message.contains("U+200B"),
        "names the file, the line and the character: {message}"
    );
    wait_for(&store, &id, "mixed_scripts_check", "pass").await;
    // Answered on the pull request: one comment review with a line comment where the
    // character is, and a failing status on the head.
    let head = pull["head"]["sha"].as_str().expect("head").to_string();
    eventually(
        Duration::from_secs(60),
        "the review and the status",
        || async {
            let reviews = sim.pull_reviews("acme", "app", number);
            let statuses = sim.commit_statuses("acme", "app", &head);
            (reviews.len() == 1 && !statuses.is_empty()).then_some(())
        },
    )
    .await;
    let review = &sim.pull_reviews("acme", "app", number)[0];
    assert_eq!(review["state"], "COMMENTED");
    assert_eq!(review["commit_id"], head.as_str());
    let comments = sim.pull_review_comments("acme", "app", number);
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert_eq!(
        (comments[0]["path"].as_str(), comments[0]["line"].as_u64()),
        (Some("src/app.js"), Some(3))
    );
    assert!(comments[0]["body"]
        .as_str()
        .unwrap_or("")
        .contains("U+200B"));
    let statuses = sim.commit_statuses("acme", "app", &head);
    assert_eq!(
        (
            statuses.len(),
            statuses[0]["state"].as_str(),
            statuses[0]["context"].as_str()
        ),
        (1, Some("failure"), Some("plumbline/invisible-status"))
    );
    let entity = store
        .get_entity(&id)
        .await
        .expect("store")
        .expect("enrolled");
    assert_eq!(entity.full_name(), "acme/app");
    assert_eq!(
        entity.properties["head_sha"], pull["head"]["sha"],
        "judged on the head GitHub reports"
    );

    // The webhook redelivered five times: the same entity, the same verdict.
    let body = serde_json::to_vec(&serde_json::json!({
        "action": "opened",
        "number": number,
        "pull_request": pull,
        "repository": pull["base"]["repo"],
    }))
    .expect("json");
    let before = store.checks_count(&id).await.expect("checks");
    for _ in 0..5 {
        assert_eq!(deliver(&stack, "pull_request", &body).await, 202);
    }
    eventually(
        Duration::from_secs(60),
        "the redeliveries evaluated",
        || async { (store.checks_count(&id).await.ok()? > before).then_some(()) },
    )
    .await;
    let (s, again) = status(&store, &id, "invisible_characters_check")
        .await
        .expect("status");
    assert_eq!((s.as_str(), again.as_str()), ("fail", message.as_str()));
    // Let the actuator see those verdicts too, then: still one review, one status.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        sim.pull_reviews("acme", "app", number).len(),
        1,
        "never duplicated"
    );
    assert_eq!(sim.commit_statuses("acme", "app", &head).len(), 1);

    // A push that removes the character: the pull request passes on its new head.
    sim.put_file(
        "acme",
        "app",
        "feature",
        "src/app.js",
        "let a = 1;\nlet b = 2;\nlet isAdmin = false;\n",
    )
    .expect("fix");
    wait_for(&store, &id, "invisible_characters_check", "pass").await;
    let fixed = sim.branch_sha("acme", "app", "feature").expect("head");
    eventually(
        Duration::from_secs(60),
        "a passing status on the new head",
        || async {
            let s = sim.commit_statuses("acme", "app", &fixed);
            (s.first()?["state"] == "success").then_some(())
        },
    )
    .await;
    assert_eq!(
        sim.pull_reviews("acme", "app", number).len(),
        1,
        "a passing change gets no new review"
    );

    // Closed (the head branch deleted, so GitHub closes it): retired.
    sim.delete_branch("acme", "app", "feature")
        .expect("delete branch");
    eventually(
        Duration::from_secs(60),
        "the closed pull request retired",
        || async { store.get_entity(&id).await.ok()?.is_none().then_some(()) },
    )
    .await;
    assert!(
        status(&store, &id, "invisible_characters_check")
            .await
            .is_none(),
        "a retired pull request leaves the posture"
    );
    // A replayed "opened" brings it back only until GitHub is asked: it is closed.
    assert_eq!(deliver(&stack, "pull_request", &body).await, 202);
    eventually(
        Duration::from_secs(60),
        "the replayed pull request retired again",
        || async { store.get_entity(&id).await.ok()?.is_none().then_some(()) },
    )
    .await;
}

/// Posts `body` to ingest as GitHub would, under a new delivery id; returns the status.
async fn deliver(stack: &Stack, event: &str, body: &[u8]) -> u16 {
    reqwest::Client::new()
        .post(stack.ingest_url())
        .header("x-github-event", event)
        .header("x-github-delivery", uuid::Uuid::new_v4().to_string())
        .header(
            "x-hub-signature-256",
            sign(&stack.config.webhook_secret, body),
        )
        .body(body.to_vec())
        .send()
        .await
        .expect("ingest answers")
        .status()
        .as_u16()
}

/// A lockfile with `left-pad`, and `lodash` at `lodash` when given.
fn package_lock(lodash: Option<&str>) -> String {
    let extra = lodash
        .map(|v| {
            format!(
                ",\n    \"node_modules/lodash\": {{\n      \"version\": \"{v}\",\n      \"resolved\": \"https://registry.npmjs.org/lodash/-/lodash-{v}.tgz\"\n    }}"
            )
        })
        .unwrap_or_default();
    let dependency = lodash
        .map(|v| format!(",\n        \"lodash\": \"{v}\""))
        .unwrap_or_default();
    format!(
        "{{\n  \"name\": \"shop\",\n  \"version\": \"1.0.0\",\n  \"lockfileVersion\": 3,\n  \"requires\": true,\n  \"packages\": {{\n    \"\": {{\n      \"name\": \"shop\",\n      \"version\": \"1.0.0\",\n      \"dependencies\": {{\n        \"left-pad\": \"1.3.0\"{dependency}\n      }}\n    }},\n    \"node_modules/left-pad\": {{\n      \"version\": \"1.3.0\",\n      \"resolved\": \"https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz\"\n    }}{extra}\n  }}\n}}\n"
    )
}

#[tokio::test]
async fn a_vulnerable_dependency_gets_one_review_on_its_line_and_a_failing_status_until_bumped() {
    let (osv, osv_url) = plumbline_osv_sim::OsvSim::start().await.expect("osv");
    osv.add(serde_json::json!({
        "schema_version": "1.6.0",
        "id": "GHSA-35jh-r3h4-6jhm",
        "modified": "2024-01-01T00:00:00Z",
        "published": "2021-02-15T00:00:00Z",
        "aliases": ["CVE-2021-23337"],
        "summary": "Command Injection in lodash",
        "affected": [{
            "package": {"ecosystem": "npm", "name": "lodash"},
            "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "4.17.21"}]}]
        }],
        "database_specific": {"severity": "HIGH"}
    }))
    .expect("record");
    let db = TestDb::new().await;
    let (prefix, _topics) = topics(3).await;
    let mut config = StackConfig::local(&kafka(), &db.url, &prefix);
    config.egress_local_hosts = vec!["127.0.0.1".into()];
    let stack = Stack::start(config).await.expect("stack starts");
    let store = db.store();
    let sim = &stack.sim;
    sim.create_repo("acme", "shop", RepoOptions::default());
    sim.put_file(
        "acme",
        "shop",
        "main",
        "package-lock.json",
        package_lock(None),
    )
    .expect("seed");
    enroll(&stack, &[("acme", "shop")]).await;
    let mut c = plumb::client::connect(&stack.control_url(), None)
        .await
        .expect("control api");
    let yaml =
        std::fs::read_to_string(format!("{CORPUS}/pr_vulnerability_check.yaml")).expect("corpus");
    plumb::commands::apply_rule_type(&mut c, "default", &yaml)
        .await
        .expect("apply rule type");
    let ecosystems = format!(
        "ecosystem_config:\n        - name: npm\n          vulnerability_database_type: osv\n          vulnerability_database_endpoint: {osv_url}/v1/query"
    );
    let profile = format!(
        "version: v1\ntype: profile\nname: dependencies\ncontext:\n  provider: github\nalert: \"on\"\nremediate: \"off\"\npull_request:\n  - type: pr_vulnerability_check\n    def:\n      action: review\n      {ecosystems}\n  - type: pr_vulnerability_check\n    name: vulnerability-status\n    def:\n      action: commit_status\n      {ecosystems}\n"
    );
    plumb::commands::apply_profile(&mut c, "default", &profile)
        .await
        .expect("apply profile");

    sim.create_branch("acme", "shop", "add-lodash", "main")
        .expect("branch");
    let lock = package_lock(Some("4.17.20"));
    sim.put_file(
        "acme",
        "shop",
        "add-lodash",
        "package-lock.json",
        lock.clone(),
    )
    .expect("push");
    let number = sim
        .open_pull_request(
            "acme",
            "shop",
            plumbline_github_sim::NewPullRequest {
                title: "add lodash".into(),
                head: "add-lodash".into(),
                base: "main".into(),
                ..Default::default()
            },
        )
        .expect("pull request");
    let pull = sim.pull_request("acme", "shop", number).expect("pull");
    let id = format!("github/pull_request/{}", pull["id"]);
    let head = pull["head"]["sha"].as_str().expect("head").to_string();
    let message = wait_for(&store, &id, "pr_vulnerability_check", "fail").await;
    assert!(
        message.contains("lodash 4.17.20")
            && message.contains("GHSA-35jh-r3h4-6jhm")
            && message.contains("4.17.21"),
        "names the package, the advisory and the fix: {message}"
    );
    // One review requesting changes, with its comment on the line that declares lodash, and a
    // failing status on the head.
    eventually(
        Duration::from_secs(60),
        "the review and the status",
        || async {
            let reviews = sim.pull_reviews("acme", "shop", number);
            let statuses = sim.commit_statuses("acme", "shop", &head);
            (reviews.len() == 1 && !statuses.is_empty()).then_some(())
        },
    )
    .await;
    let review = &sim.pull_reviews("acme", "shop", number)[0];
    assert_eq!(review["state"], "CHANGES_REQUESTED");
    let line = lock
        .lines()
        .position(|l| l.contains("\"node_modules/lodash\""))
        .expect("declared") as u64
        + 1;
    let comments = sim.pull_review_comments("acme", "shop", number);
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert_eq!(
        (comments[0]["path"].as_str(), comments[0]["line"].as_u64()),
        (Some("package-lock.json"), Some(line))
    );
    let statuses = sim.commit_statuses("acme", "shop", &head);
    assert_eq!(
        (
            statuses.len(),
            statuses[0]["state"].as_str(),
            statuses[0]["context"].as_str()
        ),
        (1, Some("failure"), Some("plumbline/vulnerability-status"))
    );

    // Bumped to the fixed version: the review is dismissed and the status passes.
    sim.put_file(
        "acme",
        "shop",
        "add-lodash",
        "package-lock.json",
        package_lock(Some("4.17.21")),
    )
    .expect("bump");
    wait_for(&store, &id, "pr_vulnerability_check", "pass").await;
    let bumped = sim.branch_sha("acme", "shop", "add-lodash").expect("head");
    eventually(
        Duration::from_secs(60),
        "the review dismissed and a passing status",
        || async {
            let reviews = sim.pull_reviews("acme", "shop", number);
            let statuses = sim.commit_statuses("acme", "shop", &bumped);
            (reviews.len() == 1
                && reviews[0]["state"] == "DISMISSED"
                && statuses.first()?["state"] == "success")
                .then_some(())
        },
    )
    .await;
    assert!(
        osv.requests().iter().any(|r| r.path == "/v1/querybatch"),
        "asked OSV"
    );

    // A lockfile that does not parse: the change cannot be inspected, and the pull request
    // says so (an error status, a review requesting changes) instead of looking clean.
    sim.put_file(
        "acme",
        "shop",
        "add-lodash",
        "package-lock.json",
        "{\"lockfileVersion\": 3, \"packages\": ",
    )
    .expect("broken");
    wait_for(&store, &id, "pr_vulnerability_check", "error").await;
    let broken = sim.branch_sha("acme", "shop", "add-lodash").expect("head");
    eventually(
        Duration::from_secs(60),
        "an error status and a review",
        || async {
            let statuses = sim.commit_statuses("acme", "shop", &broken);
            let reviews = sim.pull_reviews("acme", "shop", number);
            (statuses.first()?["state"] == "error"
                && reviews.len() == 2
                && reviews[1]["state"] == "CHANGES_REQUESTED")
                .then_some(())
        },
    )
    .await;
    let reviews = sim.pull_reviews("acme", "shop", number);
    assert!(
        reviews[1]["body"]
            .as_str()
            .unwrap_or("")
            .contains("could not inspect"),
        "{}",
        reviews[1]["body"]
    );
}

/// In dry run, an answer is planned and recorded, never sent; and a profile's selector picks
/// the pull requests it applies to by their properties.
#[tokio::test]
async fn in_dry_run_the_answer_is_planned_not_sent_and_selectors_pick_pull_requests() {
    let db = TestDb::new().await;
    let (prefix, _topics) = topics(3).await;
    let stack = Stack::start(StackConfig::local(&kafka(), &db.url, &prefix))
        .await
        .expect("stack starts");
    let store = db.store();
    let sim = &stack.sim;
    sim.create_repo("acme", "docs", RepoOptions::default());
    sim.put_file("acme", "docs", "main", "README.md", "hello\n")
        .expect("seed");
    enroll(&stack, &[("acme", "docs")]).await;
    let mut c = plumb::client::connect(&stack.control_url(), None)
        .await
        .expect("control api");
    let yaml = std::fs::read_to_string(format!("{CORPUS}/invisible_characters_check.yaml"))
        .expect("corpus");
    plumb::commands::apply_rule_type(&mut c, "default", &yaml)
        .await
        .expect("apply rule type");
    // Only pull requests that are not drafts.
    let profile = "version: v1\ntype: profile\nname: dry\ncontext:\n  provider: github\nalert: dry_run\nremediate: \"off\"\nselection:\n  - entity: pull_request\n    selector: \"!pull_request.properties['draft']\"\npull_request:\n  - type: invisible_characters_check\n    def: {}\n";
    plumb::commands::apply_profile(&mut c, "default", profile)
        .await
        .expect("apply profile");
    for (branch, draft) in [("ready", false), ("wip", true)] {
        sim.create_branch("acme", "docs", branch, "main")
            .expect("branch");
        sim.put_file("acme", "docs", branch, "README.md", "hello\u{200B}\n")
            .expect("push");
        sim.open_pull_request(
            "acme",
            "docs",
            plumbline_github_sim::NewPullRequest {
                title: branch.into(),
                head: branch.into(),
                base: "main".into(),
                draft,
                ..Default::default()
            },
        )
        .expect("pull request");
    }
    let pulls = sim.pull_requests("acme", "docs");
    let ids: Vec<String> = pulls
        .keys()
        .map(|n| {
            let p = sim.pull_request("acme", "docs", *n).expect("pull");
            format!("github/pull_request/{}", p["id"])
        })
        .collect();
    let (ready, draft) = (&ids[0], &ids[1]);
    wait_for(&store, ready, "invisible_characters_check", "fail").await;
    wait_for(&store, draft, "invisible_characters_check", "skipped").await;
    // The review is planned, with its line comment, and recorded as planned; nothing reaches
    // the pull request.
    eventually(Duration::from_secs(60), "the planned review", || async {
        (!store.list_actions(ready).await.ok()?.is_empty()).then_some(())
    })
    .await;
    let planned = store.list_actions(ready).await.expect("actions");
    let action = &planned[0];
    assert_eq!(action.action_type, "pull_request_review");
    assert_eq!(
        action.status,
        plumbline_store::ActionState::Ended(plumbline_domain::ActionStatus::Planned)
    );
    let review = action
        .requests
        .iter()
        .find(|r| r.method == "POST" && r.url.ends_with("/reviews"))
        .expect("a planned review");
    let body: serde_json::Value = serde_json::from_str(&review.body).expect("json");
    assert_eq!(body["event"], "COMMENT");
    assert_eq!(body["comments"][0]["path"], "README.md");
    assert_eq!(body["comments"][0]["line"], 1);
    assert!(sim.pull_reviews("acme", "docs", 1).is_empty());
    for n in pulls.keys() {
        assert!(
            sim.pull_reviews("acme", "docs", *n).is_empty(),
            "nothing sent"
        );
    }
}
