//! End-to-end tests: the simulator on a real port, driven with reqwest, webhooks received by a
//! real axum server.

use crate::helpers;

use std::time::Duration;

use helpers::{header, header_value, remaining, webhook_config, Receiver, Server};
use plumbline_github_sim::{RepoOptions, SimConfig, SimError, Simulator, WorkflowPermissions};
use reqwest::header::{ETAG, IF_NONE_MATCH, LINK};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

fn full_protection_body() -> Value {
    json!({
        "required_status_checks": { "strict": true, "contexts": ["ci/build"] },
        "enforce_admins": true,
        "required_pull_request_reviews": {
            "dismiss_stale_reviews": true,
            "require_code_owner_reviews": false,
            "required_approving_review_count": 2,
        },
        "restrictions": null,
        "required_linear_history": true,
        "allow_force_pushes": false,
    })
}

/// Assertions of this file on the shared receiver.
impl Receiver {
    /// The next delivery, verified: signature, headers, JSON body; (event, delivery id,
    /// payload).
    async fn next_with_id(&mut self) -> (String, String, Value) {
        let (headers, payload) = self.next_delivery().await;
        let get = |name: &str| header_value(&headers, name);
        assert_eq!(get("content-type"), "application/json");
        assert_eq!(get("user-agent"), "GitHub-Hookshot/sim");
        assert!(!get("x-github-hook-id").is_empty());
        let delivery = get("x-github-delivery");
        uuid::Uuid::parse_str(&delivery).expect("delivery id is a uuid");
        (get("x-github-event"), delivery, payload)
    }
}

async fn wait_for(mut condition: impl FnMut() -> bool) {
    for _ in 0..100 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not reached in time");
}

#[tokio::test]
async fn get_repo_has_github_shape_and_headers() {
    let server = Server::start(SimConfig::default()).await;
    let id = server.sim.create_repo(
        "acme",
        "api",
        RepoOptions {
            private: true,
            ..RepoOptions::default()
        },
    );
    assert!(id >= 1000);

    let response = server.get("/repos/acme/api", None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type"),
        "application/json; charset=utf-8"
    );
    assert_eq!(header(&response, "x-ratelimit-limit"), "5000");
    assert_eq!(header(&response, "x-ratelimit-resource"), "core");
    assert_eq!(header(&response, "x-ratelimit-used"), "1");
    assert_eq!(remaining(&response), 4999);
    let reset: i64 = header(&response, "x-ratelimit-reset").parse().unwrap();
    assert!(reset > chrono::Utc::now().timestamp());
    assert!(!header(&response, "x-github-request-id").is_empty());
    let etag = header(&response, "etag").to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong etag: {etag}"
    );

    let repo: Value = response.json().await.unwrap();
    assert_eq!(repo["id"], id);
    assert_eq!(repo["name"], "api");
    assert_eq!(repo["full_name"], "acme/api");
    assert_eq!(repo["private"], true);
    assert_eq!(repo["visibility"], "private");
    assert_eq!(repo["default_branch"], "main");
    assert_eq!(repo["archived"], false);
    assert_eq!(repo["owner"]["login"], "acme");
    assert_eq!(repo["owner"]["type"], "Organization");
    assert_eq!(repo["url"], server.url("/repos/acme/api"));
    assert_eq!(
        repo["security_and_analysis"]["secret_scanning"]["status"],
        "disabled"
    );
    assert!(repo["node_id"].as_str().is_some());

    // Names are case-insensitive, like on GitHub.
    assert_eq!(server.get("/repos/ACME/Api", None).await.status(), 200);

    let missing = server.get("/repos/acme/nope", None).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap(),
        json!({
            "message": "Not Found",
            "documentation_url": "https://docs.github.com/rest/repos/repos#get-a-repository",
            "status": "404",
        })
    );
}

#[tokio::test]
async fn protection_lifecycle_with_etags() {
    let server = Server::start(SimConfig::default()).await;
    server
        .sim
        .create_repo("acme", "api", RepoOptions::default());
    let path = "/repos/acme/api/branches/main/protection";

    let unprotected = server.get(path, None).await;
    assert_eq!(unprotected.status(), 404);
    assert_eq!(
        unprotected.json::<Value>().await.unwrap(),
        json!({
            "message": "Branch not protected",
            "documentation_url": "https://docs.github.com/rest/branches/branch-protection#get-branch-protection",
            "status": "404",
        })
    );
    let no_branch = server
        .get("/repos/acme/api/branches/dev/protection", None)
        .await;
    assert_eq!(no_branch.status(), 404);
    assert_eq!(
        no_branch.json::<Value>().await.unwrap()["message"],
        "Branch not found"
    );
    let branch: Value = server
        .get("/repos/acme/api/branches/main", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(branch["name"], "main");
    assert_eq!(branch["protected"], false);

    let put = server
        .client
        .put(server.url(path))
        .bearer_auth("any")
        .json(&full_protection_body())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let put_body: Value = put.json().await.unwrap();
    assert_eq!(put_body["url"], server.url(path));
    assert_eq!(put_body["enforce_admins"]["enabled"], true);
    assert_eq!(
        put_body["enforce_admins"]["url"],
        server.url(&format!("{path}/enforce_admins"))
    );
    assert_eq!(
        put_body["required_pull_request_reviews"]["required_approving_review_count"],
        2
    );
    assert_eq!(
        put_body["required_pull_request_reviews"]["dismiss_stale_reviews"],
        true
    );
    assert_eq!(
        put_body["required_status_checks"]["contexts"],
        json!(["ci/build"])
    );
    assert_eq!(put_body["required_status_checks"]["strict"], true);
    assert_eq!(put_body["required_signatures"]["enabled"], false);
    assert_eq!(put_body["required_linear_history"]["enabled"], true);
    assert_eq!(put_body["allow_force_pushes"]["enabled"], false);
    assert_eq!(put_body["lock_branch"]["enabled"], false);
    assert!(put_body.get("restrictions").is_none());

    let branch: Value = server
        .get("/repos/acme/api/branches/main", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(branch["protected"], true);

    // GET returns what PUT answered, and so does the Rust API.
    let first = server.get(path, None).await;
    assert_eq!(first.status(), 200);
    let etag = header(&first, ETAG.as_str()).to_owned();
    let before = remaining(&first);
    assert_eq!(first.json::<Value>().await.unwrap(), put_body);
    assert_eq!(
        server.sim.protection("acme", "api", "main").unwrap()["enforce_admins"]["enabled"],
        true
    );

    // A conditional GET with the ETag is a free 304 with an empty body.
    let cached = server
        .client
        .get(server.url(path))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);
    assert_eq!(remaining(&cached), before, "304 must not spend budget");
    assert_eq!(header(&cached, ETAG.as_str()), etag);
    assert!(cached.bytes().await.unwrap().is_empty());

    // A change invalidates the ETag.
    let mut body = full_protection_body();
    body["enforce_admins"] = json!(false);
    server
        .sim
        .set_protection("acme", "api", "main", body)
        .unwrap();
    let changed = server
        .client
        .get(server.url(path))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    assert_eq!(remaining(&changed), before - 1);
    assert_ne!(header(&changed, ETAG.as_str()), etag);

    let deleted = server.client.delete(server.url(path)).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert!(deleted.headers().get("content-type").is_none());
    assert_eq!(server.get(path, None).await.status(), 404);
    let again = server.client.delete(server.url(path)).send().await.unwrap();
    assert_eq!(again.status(), 404);
    assert_eq!(
        again.json::<Value>().await.unwrap()["message"],
        "Branch not protected"
    );
    assert!(server.sim.protection("acme", "api", "main").is_none());
}

#[tokio::test]
async fn put_protection_validates_like_github() {
    let server = Server::start(SimConfig::default()).await;
    server
        .sim
        .create_repo("acme", "api", RepoOptions::default());
    let path = "/repos/acme/api/branches/main/protection";

    let mut body = full_protection_body();
    body.as_object_mut().unwrap().remove("restrictions");
    let response = server
        .client
        .put(server.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let error: Value = response.json().await.unwrap();
    assert_eq!(
        error["message"],
        "Invalid request.\n\n\"restrictions\" wasn't supplied."
    );
    assert_eq!(error["status"], "422");
    assert_eq!(
        error["documentation_url"],
        "https://docs.github.com/rest/branches/branch-protection#update-branch-protection"
    );

    let garbage = server
        .client
        .put(server.url(path))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);

    let missing_repo = server
        .client
        .put(server.url("/repos/acme/nope/branches/main/protection"))
        .json(&full_protection_body())
        .send()
        .await
        .unwrap();
    assert_eq!(missing_repo.status(), 404);

    // Nothing was stored by the failed attempts.
    assert!(server.sim.protection("acme", "api", "main").is_none());
    assert_eq!(
        server.sim.set_protection("acme", "api", "main", json!({})),
        Err(SimError::Invalid(
            "Invalid request.\n\n\"required_status_checks\", \"enforce_admins\", \
             \"required_pull_request_reviews\", \"restrictions\" weren't supplied."
                .to_owned()
        ))
    );
    assert!(matches!(
        server.sim.remove_protection("acme", "api", "main"),
        Err(SimError::NotFound(_))
    ));
}

#[tokio::test]
async fn lists_paginate_with_link_headers() {
    let server = Server::start(SimConfig::default()).await;
    let seeded = server.sim.seed("acme", 75, "svc", 0.2);
    assert_eq!(seeded.len(), 75);
    assert_eq!(seeded[0].1, "svc-001");
    let protected = seeded
        .iter()
        .filter(|(o, n, _)| server.sim.protection(o, n, "main").is_some())
        .count();
    assert_eq!(protected, 15);
    server.sim.create_repo("other", "x", RepoOptions::default());

    let first = server.get("/orgs/acme/repos?per_page=30", None).await;
    assert_eq!(first.status(), 200);
    let link = header(&first, LINK.as_str()).to_owned();
    let next_url = server.url("/orgs/acme/repos?per_page=30&page=2");
    let last_url = server.url("/orgs/acme/repos?per_page=30&page=3");
    assert_eq!(
        link,
        format!("<{next_url}>; rel=\"next\", <{last_url}>; rel=\"last\"")
    );
    let page: Vec<Value> = first.json().await.unwrap();
    assert_eq!(page.len(), 30);
    assert_eq!(page[0]["name"], "svc-001");

    // Following `next` works as-is.
    let second = server.client.get(&next_url).send().await.unwrap();
    let link = header(&second, LINK.as_str()).to_owned();
    assert!(link.contains("rel=\"prev\""));
    assert!(link.contains("rel=\"first\""));
    let page: Vec<Value> = second.json().await.unwrap();
    assert_eq!(page[0]["name"], "svc-031");

    let third = server.client.get(&last_url).send().await.unwrap();
    assert!(!header(&third, LINK.as_str()).contains("rel=\"next\""));
    assert_eq!(third.json::<Vec<Value>>().await.unwrap().len(), 15);

    // Default page size is 30, maximum 100.
    let default: Vec<Value> = server
        .get("/orgs/acme/repos", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(default.len(), 30);
    let all = server.get("/orgs/acme/repos?per_page=500", None).await;
    assert!(all.headers().get(LINK).is_none());
    assert_eq!(all.json::<Vec<Value>>().await.unwrap().len(), 75);

    let installation = server
        .get("/installation/repositories?per_page=50", None)
        .await;
    assert!(header(&installation, LINK.as_str()).contains("page=2>; rel=\"next\""));
    let body: Value = installation.json().await.unwrap();
    assert_eq!(body["total_count"], 76);
    assert_eq!(body["repositories"].as_array().unwrap().len(), 50);

    assert_eq!(server.get("/orgs/nobody/repos", None).await.status(), 404);
}

#[tokio::test]
async fn admin_changes_send_signed_webhooks() {
    let mut receiver = Receiver::start().await;
    let server = Server::start(webhook_config(&receiver.url)).await;

    let id = server
        .sim
        .create_repo("acme", "api", RepoOptions::default());
    let (event, _, payload) = receiver.next_with_id().await;
    assert_eq!(event, "repository");
    assert_eq!(payload["action"], "created");
    assert_eq!(payload["repository"]["id"], id);
    assert_eq!(payload["repository"]["full_name"], "acme/api");
    assert_eq!(payload["repository"]["owner"]["login"], "acme");
    assert_eq!(payload["organization"]["login"], "acme");
    assert_eq!(payload["sender"]["type"], "User");

    server
        .sim
        .set_protection("acme", "api", "main", full_protection_body())
        .unwrap();
    let (event, created_id, payload) = receiver.next_with_id().await;
    assert_eq!(event, "branch_protection_rule");
    assert_eq!(payload["action"], "created");
    assert_eq!(payload["rule"]["name"], "main");
    assert_eq!(payload["rule"]["repository_id"], id);
    assert_eq!(payload["rule"]["admin_enforced"], true);
    assert_eq!(
        payload["rule"]["pull_request_reviews_enforcement_level"],
        "everyone"
    );
    assert_eq!(payload["rule"]["required_approving_review_count"], 2);
    let rule_id = payload["rule"]["id"].clone();

    let mut body = full_protection_body();
    body["enforce_admins"] = json!(false);
    server
        .sim
        .set_protection("acme", "api", "main", body)
        .unwrap();
    let (_, _, payload) = receiver.next_with_id().await;
    assert_eq!(payload["action"], "edited");
    assert_eq!(payload["rule"]["id"], rule_id);
    assert_eq!(payload["changes"]["admin_enforced"]["from"], true);

    server.sim.remove_protection("acme", "api", "main").unwrap();
    let (event, deleted_id, payload) = receiver.next_with_id().await;
    assert_eq!(event, "branch_protection_rule");
    assert_eq!(payload["action"], "deleted");
    assert_eq!(payload["rule"]["id"], rule_id);
    assert_eq!(payload["repository"]["name"], "api");
    assert_ne!(created_id, deleted_id, "each delivery has its own id");

    // Changes through the REST API are attributed to the app's bot.
    server
        .client
        .put(server.url("/repos/acme/api/branches/main/protection"))
        .json(&full_protection_body())
        .send()
        .await
        .unwrap();
    let (_, _, payload) = receiver.next_with_id().await;
    assert_eq!(payload["action"], "created");
    assert_eq!(payload["sender"]["type"], "Bot");

    wait_for(|| server.sim.webhooks_sent() == 5).await;
}

#[tokio::test]
async fn disabled_webhooks_are_not_delivered() {
    let mut receiver = Receiver::start().await;
    let server = Server::start(webhook_config(&receiver.url)).await;
    server.sim.set_webhooks_enabled(false);
    server.sim.create_repo(
        "acme",
        "api",
        RepoOptions {
            protected: true,
            ..RepoOptions::default()
        },
    );
    server.sim.remove_protection("acme", "api", "main").unwrap();
    receiver.assert_quiet().await;
    assert_eq!(server.sim.webhooks_sent(), 0);

    // Re-enabled, only new changes are delivered.
    server.sim.set_webhooks_enabled(true);
    server
        .sim
        .set_protection("acme", "api", "main", full_protection_body())
        .unwrap();
    let (_, _, payload) = receiver.next_with_id().await;
    assert_eq!(payload["action"], "created");
    receiver.assert_quiet().await;

    // No receiver configured: nothing is sent either.
    server.sim.set_webhook_url(None);
    server.sim.remove_protection("acme", "api", "main").unwrap();
    receiver.assert_quiet().await;
    assert_eq!(server.sim.webhooks_sent(), 1);
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_the_same_id() {
    let mut receiver = Receiver::start_failing(1).await;
    let server = Server::start(webhook_config(&receiver.url)).await;
    server
        .sim
        .create_repo("acme", "api", RepoOptions::default());
    let (event, _, _) = receiver.next_with_id().await;
    assert_eq!(event, "repository");
    assert_eq!(receiver.hits(), 2);
    wait_for(|| server.sim.webhooks_sent() == 1).await;
}

#[tokio::test]
async fn request_counts_use_route_templates() {
    let server = Server::start(SimConfig::default()).await;
    server
        .sim
        .create_repo("acme", "api", RepoOptions::default());
    server
        .sim
        .create_repo("acme", "web", RepoOptions::default());
    for repo in ["api", "web"] {
        server
            .get(
                &format!("/repos/acme/{repo}/branches/main/protection"),
                None,
            )
            .await;
        server.get(&format!("/repos/acme/{repo}"), None).await;
    }
    server.get("/repos/acme/api", None).await;

    let unknown = server.get("/nope/nothing", None).await;
    assert_eq!(unknown.status(), 404);
    assert!(unknown.headers().get("x-ratelimit-remaining").is_some());
    assert_eq!(
        unknown.json::<Value>().await.unwrap(),
        json!({ "message": "Not Found", "documentation_url": "https://docs.github.com/rest" })
    );
    // A known path with an unsupported method is an unknown route too.
    let wrong_method = server
        .client
        .post(server.url("/repos/acme/api"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 404);

    // Admin traffic is not counted.
    let admin: Value = server
        .get("/_admin/requests", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(admin["total"], 7);

    let counts = server.sim.request_counts();
    assert_eq!(
        counts.get("GET /repos/{owner}/{repo}/branches/{branch}/protection"),
        Some(&2)
    );
    assert_eq!(counts.get("GET /repos/{owner}/{repo}"), Some(&3));
    assert_eq!(counts.get("GET (unmatched)"), Some(&1));
    assert_eq!(counts.get("POST (unmatched)"), Some(&1));
    assert_eq!(counts.values().sum::<u64>(), 7);
    assert_eq!(admin["counts"]["GET /repos/{owner}/{repo}"], 3);

    let log = server.sim.request_log();
    assert_eq!(log.len(), 7);
    assert_eq!(log[0].path, "/repos/acme/api/branches/main/protection");
    assert_eq!(
        log[0].route,
        "/repos/{owner}/{repo}/branches/{branch}/protection"
    );
    assert_eq!(log[0].status, 404);
    assert_eq!(log[0].method, "GET");

    server.sim.reset_request_log();
    assert!(server.sim.request_counts().is_empty());
}

#[tokio::test]
async fn tokens_are_checked_and_budgets_are_per_token() {
    let server = Server::start(SimConfig {
        tokens: vec!["good".to_owned(), "other".to_owned()],
        ..SimConfig::default()
    })
    .await;
    server
        .sim
        .create_repo("acme", "api", RepoOptions::default());
    let url = server.url("/repos/acme/api");

    let bad = server
        .client
        .get(&url)
        .bearer_auth("bad")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    assert_eq!(
        bad.json::<Value>().await.unwrap(),
        json!({
            "message": "Bad credentials",
            "documentation_url": "https://docs.github.com/rest",
            "status": "401",
        })
    );
    assert_eq!(server.get("/repos/acme/api", None).await.status(), 401);
    let good = server
        .client
        .get(&url)
        .header("Authorization", "token good")
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
    assert_eq!(
        server.sim.request_log().last().unwrap().token_label,
        plumbline_github_sim::token_label(Some("good")),
        "the log records the token's label, never the token"
    );

    server.sim.set_rate_limit(3);
    // "good" already spent one request.
    for expected in [1, 0] {
        let response = server
            .client
            .get(&url)
            .bearer_auth("good")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(remaining(&response), expected);
    }
    let limited = server
        .client
        .get(&url)
        .bearer_auth("good")
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 403);
    assert_eq!(remaining(&limited), 0);
    let body: Value = limited.json().await.unwrap();
    assert!(body["message"]
        .as_str()
        .unwrap()
        .starts_with("API rate limit exceeded"));

    // Another token has its own budget.
    let other = server
        .client
        .get(&url)
        .bearer_auth("other")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    assert_eq!(remaining(&other), 2);
}

#[tokio::test]
async fn admin_http_api() {
    let mut receiver = Receiver::start().await;
    // No receiver yet; it is configured through the admin API below.
    let server = Server::start(SimConfig {
        webhook_url: None,
        ..webhook_config("")
    })
    .await;

    let created = server
        .client
        .post(server.url("/_admin/repos"))
        .json(
            &json!({ "owner": "acme", "name": "api", "default_branch": "trunk", "private": true }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_u64()
        .unwrap();
    let repo: Value = server
        .get("/repos/acme/api", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(repo["id"], id);
    assert_eq!(repo["default_branch"], "trunk");
    assert_eq!(repo["private"], true);

    let seeded = server
        .client
        .post(server.url("/_admin/seed"))
        .json(&json!({ "org": "beta", "count": 4, "prefix": "lib", "protected_fraction": 0.5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(seeded.status(), 201);
    let list: Vec<Value> = seeded.json().await.unwrap();
    assert_eq!(list.len(), 4);
    assert_eq!(list[3]["name"], "lib-004");
    assert!(server.sim.protection("beta", "lib-002", "main").is_some());
    assert!(server.sim.protection("beta", "lib-001", "main").is_none());

    // Webhooks can be pointed somewhere at runtime.
    let switched = server
        .client
        .put(server.url("/_admin/webhooks"))
        .json(&json!({ "enabled": true, "url": receiver.url }))
        .send()
        .await
        .unwrap();
    assert_eq!(switched.status(), 204);

    let path = "/_admin/repos/acme/api/branches/trunk/protection";
    let put = server
        .client
        .put(server.url(path))
        .json(&json!({
            "required_status_checks": null,
            "enforce_admins": null,
            "required_pull_request_reviews": null,
            "restrictions": { "users": ["octocat"], "teams": ["core"] },
            "required_signatures": true,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let view: Value = put.json().await.unwrap();
    assert_eq!(view["required_signatures"]["enabled"], true);
    assert_eq!(view["restrictions"]["users"][0]["login"], "octocat");
    assert_eq!(view["restrictions"]["teams"][0]["slug"], "core");
    let (event, _, payload) = receiver.next_with_id().await;
    assert_eq!(event, "branch_protection_rule");
    assert_eq!(payload["rule"]["name"], "trunk");
    assert_eq!(
        payload["rule"]["authorized_actor_names"],
        json!(["octocat"])
    );

    let invalid = server
        .client
        .put(server.url(path))
        .json(&json!({ "enforce_admins": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 422);

    let deleted = server.client.delete(server.url(path)).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let (_, _, payload) = receiver.next_with_id().await;
    assert_eq!(payload["action"], "deleted");
    let missing = server.client.delete(server.url(path)).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    let disabled = server
        .client
        .put(server.url("/_admin/webhooks"))
        .json(&json!({ "enabled": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), 204);
    server
        .sim
        .create_repo("acme", "quiet", RepoOptions::default());
    receiver.assert_quiet().await;

    let requests: Value = server
        .get("/_admin/requests", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(requests["total"], 1);
    assert_eq!(requests["not_modified"], 0);
    assert_eq!(requests["counts"]["GET /repos/{owner}/{repo}"], 1);
    let log: Vec<Value> = server
        .get("/_admin/requests/log", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["route"], "/repos/{owner}/{repo}");
    assert_eq!(log[0]["status"], 200);
}

#[tokio::test]
async fn serve_stops_on_cancel() {
    let sim = Simulator::new(SimConfig::default());
    let shutdown = CancellationToken::new();
    let addr = sim
        .serve("127.0.0.1:0".parse().unwrap(), shutdown.clone())
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("http://{addr}/rate_limit");
    let rate: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(rate["resources"]["core"]["limit"], 5000);
    shutdown.cancel();
    let mut stopped = false;
    for _ in 0..50 {
        if client.get(&url).send().await.is_err() {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stopped, "server still answering after shutdown");
}

/// Unpacks a gzip'd tar into (path, mode, contents) entries, asserting they are regular files.
fn untar(bytes: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
    use std::io::Read;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        assert_eq!(entry.header().entry_type(), tar::EntryType::Regular);
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mode = entry.header().mode().unwrap();
        let mut contents = Vec::new();
        entry.read_to_end(&mut contents).unwrap();
        out.push((path, mode, contents));
    }
    out
}

#[tokio::test]
async fn tarball_round_trip() {
    let server = Server::start(SimConfig::default()).await;
    let opts = RepoOptions {
        files: vec![
            ("README.md".to_owned(), b"# api\n".to_vec()),
            ("old.txt".to_owned(), b"bye".to_vec()),
        ],
        ..RepoOptions::default()
    };
    server.sim.create_repo("Acme", "api", opts);
    server
        .sim
        .put_file(
            "acme",
            "api",
            "main",
            ".github/workflows/ci.yml",
            b"on: push\n".to_vec(),
        )
        .unwrap();
    server
        .sim
        .put_file("acme", "api", "main", "README.md", b"# api v2\n".to_vec())
        .unwrap();
    server
        .sim
        .remove_file("acme", "api", "main", "old.txt")
        .unwrap();
    assert_eq!(
        server.sim.remove_file("acme", "api", "main", "old.txt"),
        Err(SimError::NotFound("Not Found".to_owned()))
    );
    assert_eq!(
        server
            .sim
            .put_file("acme", "api", "nope", "a", b"x".to_vec()),
        Err(SimError::NotFound("Branch not found".to_owned()))
    );
    assert_eq!(
        server
            .sim
            .file("acme", "api", "main", "README.md")
            .as_deref(),
        Some(&b"# api v2\n"[..])
    );
    let sha = server.sim.branch_sha("acme", "api", "main").unwrap();

    // Without following: GitHub's 302 to a download URL on the same server.
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirect = no_redirect
        .get(server.url("/repos/acme/api/tarball/main"))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 302);
    assert_eq!(
        header(&redirect, "location"),
        server.url("/_download/tarball/Acme/api/main")
    );
    assert!(redirect.headers().get("etag").is_none());

    // Following it (reqwest's default) yields the archive.
    let response = server.get("/repos/acme/api/tarball/main", None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "application/x-gzip");
    let bytes = response.bytes().await.unwrap();
    let top = format!("Acme-api-{}", &sha[..7]);
    let entries = untar(&bytes);
    let expected = vec![
        (
            format!("{top}/.github/workflows/ci.yml"),
            0o644,
            b"on: push\n".to_vec(),
        ),
        (format!("{top}/README.md"), 0o644, b"# api v2\n".to_vec()),
    ];
    assert_eq!(entries, expected);

    // The head sha is a ref too.
    let by_sha = server
        .get(&format!("/repos/acme/api/tarball/{sha}"), None)
        .await;
    assert_eq!(by_sha.status(), 200);
    assert_eq!(untar(&by_sha.bytes().await.unwrap()), expected);

    // Unknown repositories and refs are GitHub's JSON 404, on both URLs.
    for path in [
        "/repos/acme/api/tarball/nope",
        "/repos/acme/nope/tarball/main",
        "/_download/tarball/acme/api/nope",
    ] {
        let missing = server.get(path, None).await;
        assert_eq!(missing.status(), 404, "{path}");
        let body: Value = missing.json().await.unwrap();
        assert_eq!(body["message"], "Not Found", "{path}");
    }

    // The API call is charged, the download is not; both are logged under their templates.
    let counts = server.sim.request_counts();
    assert_eq!(
        counts.get("GET /repos/{owner}/{repo}/tarball/{ref}"),
        Some(&5)
    );
    assert_eq!(
        counts.get("GET /_download/tarball/{owner}/{repo}/{ref}"),
        Some(&3)
    );
    let rate: Value = server.get("/rate_limit", None).await.json().await.unwrap();
    assert_eq!(rate["resources"]["core"]["used"], 5);
}

#[tokio::test]
async fn file_changes_send_push_webhooks() {
    let mut receiver = Receiver::start().await;
    let server = Server::start(webhook_config(&receiver.url)).await;
    let id = server
        .sim
        .create_repo("acme", "api", RepoOptions::default());
    let (event, _, _) = receiver.next_with_id().await;
    assert_eq!(event, "repository");
    let initial = server.sim.branch_sha("acme", "api", "main").unwrap();

    server
        .sim
        .put_file("acme", "api", "main", "a.txt", b"1".to_vec())
        .unwrap();
    let (event, _, payload) = receiver.next_with_id().await;
    assert_eq!(event, "push");
    let first = server.sim.branch_sha("acme", "api", "main").unwrap();
    assert_eq!(payload["ref"], "refs/heads/main");
    assert_eq!(payload["before"], initial);
    assert_eq!(payload["after"], first);
    assert_eq!(payload["repository"]["id"], id);
    assert_eq!(payload["repository"]["master_branch"], "main");
    assert!(payload["repository"]["pushed_at"].is_i64());
    assert_eq!(payload["pusher"]["name"], "sim-admin");
    assert_eq!(payload["sender"]["login"], "sim-admin");
    assert_eq!(payload["head_commit"]["id"], first);
    assert_eq!(payload["head_commit"]["added"], json!(["a.txt"]));
    assert_eq!(payload["head_commit"]["modified"], json!([]));
    assert_eq!(payload["commits"][0], payload["head_commit"]);

    server
        .sim
        .put_file("acme", "api", "main", "a.txt", b"2".to_vec())
        .unwrap();
    let (_, _, payload) = receiver.next_with_id().await;
    assert_eq!(payload["before"], first);
    assert_eq!(payload["head_commit"]["modified"], json!(["a.txt"]));

    server
        .sim
        .remove_file("acme", "api", "main", "a.txt")
        .unwrap();
    let (_, _, payload) = receiver.next_with_id().await;
    assert_eq!(payload["head_commit"]["removed"], json!(["a.txt"]));
    assert_eq!(
        payload["after"],
        server.sim.branch_sha("acme", "api", "main").unwrap()
    );

    // The branch endpoint reports the new head.
    let branch: Value = server
        .get("/repos/acme/api/branches/main", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(branch["commit"]["sha"], payload["after"]);
}

#[tokio::test]
async fn workflow_permissions_get_put_and_validate() {
    let server = Server::start(SimConfig::default()).await;
    server
        .sim
        .create_repo("acme", "api", RepoOptions::default());
    let path = "/repos/acme/api/actions/permissions/workflow";

    let response = server.get(path, None).await;
    assert_eq!(response.status(), 200);
    let etag = header(&response, "etag").to_owned();
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({ "default_workflow_permissions": "write", "can_approve_pull_request_reviews": false })
    );
    let cached = server
        .client
        .get(server.url(path))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);

    let put = server
        .client
        .put(server.url(path))
        .json(&json!({ "default_workflow_permissions": "read", "can_approve_pull_request_reviews": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    assert_eq!(
        server.sim.workflow_permissions("acme", "api"),
        Some((WorkflowPermissions::Read, true))
    );
    let changed = server
        .client
        .get(server.url(path))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    assert_eq!(
        changed.json::<Value>().await.unwrap()["default_workflow_permissions"],
        "read"
    );

    for body in [
        json!({ "default_workflow_permissions": "admin" }),
        json!({ "can_approve_pull_request_reviews": "yes" }),
    ] {
        let invalid = server
            .client
            .put(server.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(invalid.status(), 422, "{body}");
        let error: Value = invalid.json().await.unwrap();
        assert_eq!(error["status"], "422");
    }
    assert_eq!(
        server.sim.workflow_permissions("acme", "api"),
        Some((WorkflowPermissions::Read, true))
    );
    let missing = server
        .get("/repos/acme/nope/actions/permissions/workflow", None)
        .await;
    assert_eq!(missing.status(), 404);

    server
        .sim
        .set_workflow_permissions("acme", "api", WorkflowPermissions::Write, false)
        .unwrap();
    let body: Value = server.get(path, None).await.json().await.unwrap();
    assert_eq!(body["default_workflow_permissions"], "write");
    assert_eq!(body["can_approve_pull_request_reviews"], false);
    assert!(server
        .sim
        .set_workflow_permissions("acme", "nope", WorkflowPermissions::Read, false)
        .is_err());

    let counts = server.sim.request_counts();
    assert_eq!(
        counts.get("PUT /repos/{owner}/{repo}/actions/permissions/workflow"),
        Some(&3)
    );
}

#[tokio::test]
async fn patch_repo_updates_settings_and_sends_webhooks() {
    let mut receiver = Receiver::start().await;
    let server = Server::start(webhook_config(&receiver.url)).await;
    server
        .sim
        .create_repo("acme", "api", RepoOptions::default());
    receiver.next_with_id().await;

    let response = server
        .client
        .patch(server.url("/repos/acme/api"))
        .json(&json!({
            "description": "Payments API",
            "has_issues": false,
            "delete_branch_on_merge": true,
            "allow_forking": false,
            "has_wiki": true,
            "security_and_analysis": {
                "secret_scanning": { "status": "enabled" },
                "secret_scanning_push_protection": { "status": "enabled" }
            }
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let repo: Value = response.json().await.unwrap();
    assert_eq!(repo["description"], "Payments API");
    assert_eq!(repo["has_issues"], false);
    assert_eq!(repo["delete_branch_on_merge"], true);
    assert_eq!(repo["allow_forking"], false);
    assert_eq!(
        repo["security_and_analysis"]["secret_scanning"]["status"],
        "enabled"
    );
    assert_eq!(
        repo["security_and_analysis"]["secret_scanning_push_protection"]["status"],
        "enabled"
    );
    let fetched: Value = server
        .get("/repos/acme/api", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, repo, "PATCH answers the same object as GET");

    let (event, _, payload) = receiver.next_with_id().await;
    assert_eq!(event, "repository");
    assert_eq!(payload["action"], "edited");
    assert_eq!(payload["sender"]["type"], "Bot");
    assert_eq!(
        payload["changes"],
        json!({
            "description": { "from": null },
            "has_issues": { "from": true },
            "delete_branch_on_merge": { "from": false },
            "allow_forking": { "from": true },
        })
    );
    assert_eq!(payload["repository"]["description"], "Payments API");
    let (event, _, payload) = receiver.next_with_id().await;
    assert_eq!(event, "security_and_analysis");
    assert!(payload.get("action").is_none());
    assert_eq!(
        payload["changes"]["from"]["security_and_analysis"]["secret_scanning"]["status"],
        "disabled"
    );
    assert_eq!(
        payload["repository"]["security_and_analysis"]["secret_scanning"]["status"],
        "enabled"
    );

    // Wrong types are GitHub's 422 and change nothing; a PATCH that changes nothing is silent.
    for body in [
        json!({ "has_issues": "no" }),
        json!({ "description": 1 }),
        json!({ "security_and_analysis": { "secret_scanning": { "status": "on" } } }),
    ] {
        let invalid = server
            .client
            .patch(server.url("/repos/acme/api"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(invalid.status(), 422, "{body}");
    }
    let same = server
        .client
        .patch(server.url("/repos/acme/api"))
        .json(&json!({ "has_issues": false, "homepage": "https://example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 200);
    receiver.assert_quiet().await;

    // The admin setter acts like the UI: a human sender, push protection follows scanning.
    server
        .sim
        .set_secret_scanning("acme", "api", false)
        .unwrap();
    let (event, _, payload) = receiver.next_with_id().await;
    assert_eq!(event, "security_and_analysis");
    assert_eq!(payload["sender"]["type"], "User");
    let security = &payload["repository"]["security_and_analysis"];
    assert_eq!(security["secret_scanning"]["status"], "disabled");
    assert_eq!(
        security["secret_scanning_push_protection"]["status"],
        "disabled"
    );
    server
        .sim
        .set_secret_scanning("acme", "api", false)
        .unwrap();
    receiver.assert_quiet().await;
    assert!(server
        .sim
        .set_secret_scanning("acme", "nope", true)
        .is_err());

    let counts = server.sim.request_counts();
    assert_eq!(counts.get("PATCH /repos/{owner}/{repo}"), Some(&5));
}
