//! Fault injection and GitHub's limits: latency, 5xx, timeouts, secondary rate limits (injected
//! and the content-creation limit), primary budget exhaustion, and the admin API for them.

use crate::helpers;

use std::time::{Duration, Instant};

use helpers::{header, remaining, webhook_config, Receiver, Server};
use plumbline_github_sim::{token_label, ContentLimits, Fault, RepoOptions, SimConfig};
use serde_json::{json, Value};

const REPO: &str = "/repos/{owner}/{repo}";
const PROTECTION: &str = "/repos/{owner}/{repo}/branches/{branch}/protection";
const SECONDARY: &str = "You have exceeded a secondary rate limit";

async fn server() -> Server {
    let server = Server::start(SimConfig::default()).await;
    server
        .sim
        .create_repo("acme", "api", RepoOptions::default());
    server
}

async fn patch_repo(server: &Server, token: &str, description: &str) -> reqwest::Response {
    server
        .client
        .patch(server.url("/repos/acme/api"))
        .bearer_auth(token)
        .json(&json!({ "description": description }))
        .send()
        .await
        .unwrap()
}

async fn description(server: &Server) -> Value {
    let body: Value = server
        .get("/repos/acme/api", Some("observer"))
        .await
        .json()
        .await
        .unwrap();
    body["description"].clone()
}

#[tokio::test]
async fn a_429_with_retry_after_answers_the_next_request_only() {
    let server = server().await;
    server
        .sim
        .add_fault(
            Fault::secondary_rate_limit(429, 7)
                .on_route(REPO)
                .on_method("GET")
                .times(1),
        )
        .unwrap();
    // Another route is not affected, nor is it counted against the fault.
    assert_eq!(
        server
            .get("/repos/acme/api/branches/main", None)
            .await
            .status(),
        200
    );
    let limited = server.get("/repos/acme/api", Some("t")).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(header(&limited, "retry-after"), "7");
    assert_eq!(header(&limited, "x-ratelimit-resource"), "core");
    let request_id = header(&limited, "x-github-request-id").to_owned();
    let body: Value = limited.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(message.starts_with(SECONDARY), "{message}");
    assert!(
        message.contains(&request_id),
        "GitHub quotes the request id"
    );
    assert!(body["documentation_url"]
        .as_str()
        .unwrap()
        .contains("secondary-rate-limits"));

    let next = server.get("/repos/acme/api", Some("t")).await;
    assert_eq!(next.status(), 200);
    assert_eq!(
        remaining(&next),
        4999,
        "the limited request was not charged"
    );
    assert!(server.sim.faults().is_empty(), "used up");

    let log = server.sim.request_log();
    let entry = &log[1];
    assert_eq!(
        (entry.status, entry.fault.as_deref(), entry.charged),
        (429, Some("secondary_rate_limit"), false)
    );
    assert_eq!(log[2].fault, None);
}

#[tokio::test]
async fn faults_can_target_one_token_and_answer_403() {
    let server = server().await;
    let victim = token_label(Some("victim"));
    server
        .sim
        .add_fault(Fault::secondary_rate_limit(403, 60).for_token_label(&victim))
        .unwrap();
    for _ in 0..2 {
        let response = server.get("/repos/acme/api", Some("victim")).await;
        assert_eq!(response.status(), 403);
        assert_eq!(header(&response, "retry-after"), "60");
    }
    assert_eq!(
        server
            .get("/repos/acme/api", Some("bystander"))
            .await
            .status(),
        200
    );
    server.sim.clear_faults();
    assert_eq!(
        server.get("/repos/acme/api", Some("victim")).await.status(),
        200
    );
}

#[tokio::test]
async fn latency_delays_concurrent_requests_concurrently() {
    let server = server().await;
    // Ten requests behind a 500 ms delay: serialized they would take 5 s, concurrent about
    // 0.5 s; the bound sits far from both so a loaded machine cannot flip the verdict.
    let delay = Duration::from_millis(500);
    server
        .sim
        .add_fault(Fault::latency(delay).on_route(REPO))
        .unwrap();
    let started = Instant::now();
    let requests = (0..10).map(|i| {
        let client = server.client.clone();
        let url = server.url("/repos/acme/api");
        tokio::spawn(async move {
            let response = client
                .get(url)
                .bearer_auth(format!("t{i}"))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), Instant::now())
        })
    });
    let mut finished = Vec::new();
    for handle in requests.collect::<Vec<_>>() {
        finished.push(handle.await.unwrap());
    }
    let total = started.elapsed();
    assert!(finished.iter().all(|(status, _)| *status == 200));
    for (_, at) in &finished {
        assert!(
            at.duration_since(started) >= delay,
            "every request is delayed"
        );
    }
    assert!(
        total < delay * 5,
        "10 concurrent requests took {total:?}, the delay is {delay:?}: they were serialized"
    );
    let log = server.sim.request_log();
    assert_eq!(log.len(), 10);
    assert!(log
        .iter()
        .all(|e| e.fault.as_deref() == Some("latency") && e.charged));
}

#[tokio::test]
async fn a_faulted_put_leaves_state_unchanged() {
    let mut receiver = Receiver::start().await;
    let server = Server::start(webhook_config(&receiver.url)).await;
    server.sim.create_repo(
        "acme",
        "api",
        RepoOptions {
            protected: true,
            ..RepoOptions::default()
        },
    );
    receiver.next().await; // repository created
    receiver.next().await; // branch_protection_rule created
    let before = server.sim.protection("acme", "api", "main").unwrap();
    server
        .sim
        .add_fault(
            Fault::server_error(503)
                .on_route(PROTECTION)
                .on_method("PUT")
                .times(1),
        )
        .unwrap();
    let body = json!({
        "required_status_checks": { "strict": true, "contexts": ["ci"] },
        "enforce_admins": false,
        "required_pull_request_reviews": null,
        "restrictions": null
    });
    let put = || {
        server
            .client
            .put(server.url("/repos/acme/api/branches/main/protection"))
            .bearer_auth("actuator")
            .json(&body)
            .send()
    };
    let faulted = put().await.unwrap();
    assert_eq!(faulted.status(), 503);
    assert_eq!(
        faulted.json::<Value>().await.unwrap(),
        json!({ "message": "Service Unavailable" })
    );
    assert_eq!(
        server.sim.protection("acme", "api", "main").unwrap(),
        before
    );
    receiver.assert_quiet().await;
    let entry = server.sim.request_log().pop().unwrap();
    assert_eq!(
        (entry.status, entry.fault.as_deref(), entry.charged),
        (503, Some("server_error"), false)
    );

    // The retry goes through, and only now the state changes and the webhook goes out.
    assert_eq!(put().await.unwrap().status(), 200);
    assert_ne!(
        server.sim.protection("acme", "api", "main").unwrap(),
        before
    );
    let (event, payload) = receiver.next().await;
    assert_eq!(
        (event.as_str(), &payload["action"]),
        ("branch_protection_rule", &json!("edited"))
    );

    // 500 and 502 answer GitHub's "Server Error".
    for status in [500, 502] {
        server
            .sim
            .add_fault(Fault::server_error(status).times(1))
            .unwrap();
        let response = server.get("/repos/acme/api", None).await;
        assert_eq!(response.status().as_u16(), status);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["message"], "Server Error");
    }
}

#[tokio::test]
async fn timeouts_leave_requests_unanswered() {
    let server = server().await;
    server
        .sim
        .add_fault(Fault::timeout(None).on_route(REPO).times(1))
        .unwrap();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let error = impatient
        .get(server.url("/repos/acme/api"))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    let entry = server.sim.request_log().pop().unwrap();
    assert_eq!(
        (entry.status, entry.fault.as_deref(), entry.charged),
        (0, Some("timeout"), false)
    );
    assert_eq!(server.get("/repos/acme/api", None).await.status(), 200);

    // With a hang shorter than the client's patience, the connection closes without an answer.
    server
        .sim
        .add_fault(Fault::timeout(Some(Duration::from_millis(100))).times(1))
        .unwrap();
    let outcome = match server
        .client
        .get(server.url("/repos/acme/api"))
        .send()
        .await
    {
        Ok(response) => response.bytes().await.map(|_| ()),
        Err(error) => Err(error),
    };
    assert!(outcome.is_err(), "no answer expected");

    // Clearing the faults releases a request hanging in the default (long) timeout.
    server.sim.add_fault(Fault::timeout(None)).unwrap();
    let client = server.client.clone();
    let url = server.url("/repos/acme/api");
    let hanging = tokio::spawn(async move {
        match client.get(url).send().await {
            Ok(response) => response.bytes().await.is_err(),
            Err(_) => true,
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!hanging.is_finished());
    server.sim.clear_faults();
    let failed = tokio::time::timeout(Duration::from_secs(5), hanging)
        .await
        .expect("released")
        .unwrap();
    assert!(failed);
}

#[tokio::test]
async fn primary_budget_can_be_exhausted_and_reset() {
    let server = server().await;
    let label = token_label(Some("sweeper"));
    server.sim.set_rate_remaining(&label, 2);
    for expected in [1, 0] {
        let response = server.get("/repos/acme/api", Some("sweeper")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(remaining(&response), expected);
    }
    let limited = server.get("/repos/acme/api", Some("sweeper")).await;
    assert_eq!(limited.status(), 403);
    let body: Value = limited.json().await.unwrap();
    assert!(body["message"]
        .as_str()
        .unwrap()
        .starts_with("API rate limit exceeded"));
    let reset_before: i64 = header(
        &server.get("/rate_limit", Some("sweeper")).await,
        "x-ratelimit-reset",
    )
    .parse()
    .unwrap();

    // "The hour passes".
    tokio::time::sleep(Duration::from_millis(1100)).await;
    server.sim.reset_rate_window(&label);
    let fresh = server.get("/repos/acme/api", Some("sweeper")).await;
    assert_eq!(fresh.status(), 200);
    assert_eq!(remaining(&fresh), 4999);
    let reset_after: i64 = header(&fresh, "x-ratelimit-reset").parse().unwrap();
    assert!(reset_after > reset_before, "a new window starts now");

    // The same through the admin API.
    let admin = |path: String| server.url(&format!("/_admin{path}"));
    let response = server
        .client
        .put(admin(format!("/rate_limit/tokens/{label}")))
        .json(&json!({ "remaining": 0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        server
            .get("/repos/acme/api", Some("sweeper"))
            .await
            .status(),
        403
    );
    let response = server
        .client
        .post(admin(format!("/rate_limit/tokens/{label}/reset")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        server
            .get("/repos/acme/api", Some("sweeper"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn content_creation_is_limited_per_token() {
    let server = server().await;
    // GitHub's default: 80 content-creating requests per minute.
    for i in 0..80 {
        let response = patch_repo(&server, "writer", &format!("v{i}")).await;
        assert_eq!(response.status(), 200, "request {i}");
    }
    let limited = patch_repo(&server, "writer", "one too many").await;
    assert_eq!(limited.status(), 403);
    let retry_after: u64 = header(&limited, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = limited.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().starts_with(SECONDARY));
    assert_eq!(
        description(&server).await,
        "v79",
        "the limited PATCH changed nothing"
    );
    let limited_entry = server
        .sim
        .request_log()
        .into_iter()
        .rev()
        .find(|e| e.method == "PATCH")
        .unwrap();
    assert_eq!(
        (
            limited_entry.status,
            limited_entry.fault.as_deref(),
            limited_entry.charged
        ),
        (403, Some("content_creation_limit"), false)
    );
    // Reads are not limited; other tokens have their own allowance.
    assert_eq!(
        server.get("/repos/acme/api", Some("writer")).await.status(),
        200
    );
    assert_eq!(patch_repo(&server, "other", "x").await.status(), 200);
    // When the hour passes, the writer may write again.
    server.sim.reset_rate_window(&token_label(Some("writer")));
    assert_eq!(patch_repo(&server, "writer", "y").await.status(), 200);

    // Configurable, per hour too, and can be switched off.
    server
        .sim
        .set_content_limits(Some(ContentLimits::new(10, 2)));
    assert_eq!(patch_repo(&server, "hourly", "a").await.status(), 200);
    assert_eq!(patch_repo(&server, "hourly", "b").await.status(), 200);
    let limited = patch_repo(&server, "hourly", "c").await;
    assert_eq!(limited.status(), 403);
    let retry_after: u64 = header(&limited, "retry-after").parse().unwrap();
    assert!(retry_after > 3500, "{retry_after}");
    // Anonymous writes (open mode only) are not limited: GitHub never accepts them at all.
    for _ in 0..3 {
        let anonymous = server
            .client
            .patch(server.url("/repos/acme/api"))
            .json(&json!({ "has_issues": true }))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 200);
    }
    server.sim.set_content_limits(None);
    for _ in 0..5 {
        assert_eq!(patch_repo(&server, "hourly", "d").await.status(), 200);
    }
}

#[tokio::test]
async fn faults_via_the_admin_api() {
    let server = server().await;
    let admin = |path: &str| server.url(&format!("/_admin{path}"));
    let created = server
        .client
        .post(admin("/faults"))
        .json(&json!({ "kind": "server_error", "status": 500, "route": REPO, "times": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let fault: Value = created.json().await.unwrap();
    assert_eq!(fault["kind"], "server_error");
    let id = fault["id"].as_u64().unwrap();
    let listed: Value = server
        .client
        .get(admin("/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["id"], id);
    assert_eq!(listed[0]["times"], 2);
    let statuses = [
        server.get("/repos/acme/api", None).await.status(),
        server.get("/repos/acme/api", None).await.status(),
        server.get("/repos/acme/api", None).await.status(),
    ];
    assert_eq!(statuses.map(|s| s.as_u16()), [500, 500, 200]);
    let gone = server
        .client
        .delete(admin(&format!("/faults/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404, "used up");

    let invalid = server
        .client
        .post(admin("/faults"))
        .json(&json!({ "kind": "server_error", "status": 404 }))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 422);
    let unknown_kind = server
        .client
        .post(admin("/faults"))
        .json(&json!({ "kind": "gremlins" }))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_kind.status(), 400);

    let created: Value = server
        .client
        .post(admin("/faults"))
        .json(&json!({ "kind": "secondary_rate_limit", "status": 429, "retry_after": 5, "method": "PATCH" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patch_repo(&server, "t", "x").await.status(), 429);
    assert_eq!(server.get("/repos/acme/api", None).await.status(), 200);
    let removed = server
        .client
        .delete(admin(&format!("/faults/{}", created["id"])))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    assert_eq!(patch_repo(&server, "t", "x").await.status(), 200);

    server
        .client
        .post(admin("/faults"))
        .json(&json!({ "kind": "latency", "millis": 1 }))
        .send()
        .await
        .unwrap();
    let cleared = server.client.delete(admin("/faults")).send().await.unwrap();
    assert_eq!(cleared.status(), 204);
    assert!(server.sim.faults().is_empty());

    let limits: Value = server
        .client
        .get(admin("/faults/content_limits"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        limits,
        json!({ "enabled": true, "per_minute": 80, "per_hour": 500, "minute_ms": 60_000, "hour_ms": 3_600_000 })
    );
    let off = server
        .client
        .put(admin("/faults/content_limits"))
        .json(&json!({ "enabled": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 204);
    let limits: Value = server
        .client
        .get(admin("/faults/content_limits"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(limits, json!({ "enabled": false }));
}
