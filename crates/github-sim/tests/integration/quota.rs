//! Quota accounting in the request log: token labels, 304s counted and never charged, per
//! route and per token, and GitHub's rate-limit headers on every answer.

use crate::helpers;

use std::collections::HashMap;

use helpers::{header, remaining, Server};
use plumbline_github_sim::{token_label, Fault, QuotaUsage, RepoOptions, SimConfig};
use reqwest::header::{ETAG, IF_NONE_MATCH};
use serde_json::{json, Value};

const REPO_ROUTE: &str = "GET /repos/{owner}/{repo}";

async fn conditional_get(
    server: &Server,
    path: &str,
    token: Option<&str>,
    etag: Option<&str>,
) -> reqwest::Response {
    let mut request = server.client.get(server.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(etag) = etag {
        request = request.header(IF_NONE_MATCH, etag);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn not_modified_answers_are_counted_per_token_and_never_charged() {
    let server = Server::start(SimConfig::default()).await;
    server
        .sim
        .create_repo("acme", "api", RepoOptions::default());

    let first = conditional_get(&server, "/repos/acme/api", Some("token-a"), None).await;
    assert_eq!(first.status(), 200);
    let etag = first.headers()[ETAG].to_str().unwrap().to_owned();
    assert_eq!(remaining(&first), 4999);
    for _ in 0..3 {
        let again = conditional_get(&server, "/repos/acme/api", Some("token-a"), Some(&etag)).await;
        assert_eq!(again.status(), 304);
        assert_eq!(remaining(&again), 4999, "a 304 costs nothing");
    }
    conditional_get(&server, "/repos/acme/api", Some("token-b"), None).await;
    conditional_get(&server, "/repos/acme/nope", Some("token-b"), None).await;
    conditional_get(&server, "/repos/acme/api", None, Some(&etag)).await;

    let a = token_label(Some("token-a"));
    let b = token_label(Some("token-b"));
    let quota = server.sim.quota();
    assert_eq!(
        quota.token(&a),
        QuotaUsage {
            requests: 4,
            not_modified: 3,
            charged: 1
        }
    );
    assert_eq!(
        quota.token(&b),
        QuotaUsage {
            requests: 2,
            not_modified: 0,
            charged: 2
        },
        "a 404 is charged like on GitHub"
    );
    assert_eq!(
        quota.token("anonymous"),
        QuotaUsage {
            requests: 1,
            not_modified: 1,
            charged: 0
        }
    );
    assert_eq!(
        quota.total,
        QuotaUsage {
            requests: 7,
            not_modified: 4,
            charged: 3
        }
    );
    assert_eq!(quota.route(REPO_ROUTE).requests, 7);
    assert_eq!(quota.by_route_and_token[REPO_ROUTE][&a].not_modified, 3);

    // The log carries the same facts per request, and never the token.
    let log = server.sim.request_log();
    assert_eq!(log.len(), 7);
    for entry in &log {
        assert_eq!(entry.not_modified, entry.status == 304);
        assert!(!(entry.charged && entry.not_modified));
    }
    assert!(log.iter().all(|entry| !entry.token_label.contains("token")));
    assert_eq!(log.iter().filter(|entry| entry.not_modified).count(), 4);
    // The existing counters are unchanged.
    assert_eq!(server.sim.request_counts()[REPO_ROUTE], 7);

    let admin: Value = server
        .client
        .get(server.url("/_admin/requests/quota"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        admin["by_token"][&a],
        json!({ "requests": 4, "not_modified": 3, "charged": 1 })
    );
    assert_eq!(admin["total"]["charged"], 3);

    server.sim.reset_request_log();
    assert_eq!(server.sim.quota(), Default::default());
}

#[tokio::test]
async fn a_sweep_over_unchanged_repositories_costs_no_quota() {
    let server = Server::start(SimConfig::default()).await;
    let fleet = server.sim.seed("acme", 20, "svc", 0.5);
    let token = Some("sweeper");
    let mut etags: HashMap<String, String> = HashMap::new();
    for (owner, name, _) in &fleet {
        let path = format!("/repos/{owner}/{name}/branches/main");
        let response = conditional_get(&server, &path, token, None).await;
        etags.insert(path, response.headers()[ETAG].to_str().unwrap().to_owned());
    }
    server.sim.reset_request_log();
    let mut last_remaining = None;
    for (path, etag) in &etags {
        let response = conditional_get(&server, path, token, Some(etag)).await;
        assert_eq!(response.status(), 304);
        last_remaining = Some(remaining(&response));
    }
    let quota = server.sim.quota();
    let usage = quota.token(&token_label(token));
    assert_eq!(usage.requests, 20);
    assert_eq!(usage.not_modified, 20);
    assert_eq!(usage.charged, 0, "an unchanged fleet costs nothing");
    assert_eq!(last_remaining, Some(4980));
}

#[tokio::test]
async fn every_answer_carries_the_rate_limit_headers() {
    let server = Server::start(SimConfig {
        tokens: vec!["good".to_owned()],
        ..SimConfig::default()
    })
    .await;
    server
        .sim
        .create_repo("acme", "api", RepoOptions::default());
    let mut answers: Vec<reqwest::Response> = Vec::new();

    let ok = conditional_get(&server, "/repos/acme/api", Some("good"), None).await;
    let etag = ok.headers()[ETAG].to_str().unwrap().to_owned();
    answers.push(ok);
    answers.push(conditional_get(&server, "/repos/acme/api", Some("good"), Some(&etag)).await);
    answers.push(conditional_get(&server, "/repos/acme/api", Some("bad"), None).await);
    answers.push(conditional_get(&server, "/repos/acme/api", None, None).await);
    answers.push(conditional_get(&server, "/repos/acme/nope", Some("good"), None).await);
    answers.push(conditional_get(&server, "/no/such/route", Some("good"), None).await);
    answers.push(
        server
            .client
            .patch(server.url("/repos/acme/api"))
            .bearer_auth("good")
            .json(&json!({ "has_issues": "yes" }))
            .send()
            .await
            .unwrap(),
    );
    server
        .sim
        .add_fault(Fault::server_error(502).times(1))
        .unwrap();
    answers.push(conditional_get(&server, "/repos/acme/api", Some("good"), None).await);
    server
        .sim
        .add_fault(Fault::secondary_rate_limit(429, 3).times(1))
        .unwrap();
    answers.push(conditional_get(&server, "/repos/acme/api", Some("good"), None).await);
    server.sim.set_rate_remaining(&token_label(Some("good")), 0);
    answers.push(conditional_get(&server, "/repos/acme/api", Some("good"), None).await);

    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [200, 304, 401, 401, 404, 404, 422, 502, 429, 403]);
    for response in &answers {
        for name in [
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-used",
            "x-ratelimit-reset",
        ] {
            let value: i64 = header(response, name).parse().unwrap();
            assert!(value >= 0, "{name} on {}", response.status());
        }
        assert_eq!(header(response, "x-ratelimit-resource"), "core");
        assert!(!header(response, "x-github-request-id").is_empty());
    }
    // The 401s are answered out of the anonymous budget; the token's own budget is spent.
    assert_eq!(remaining(&answers[2]), 5000);
    assert_eq!(remaining(&answers[9]), 0);
}
