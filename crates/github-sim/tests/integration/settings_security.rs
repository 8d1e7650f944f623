//! Functional tests of the repository settings and security families: state changes visible on
//! re-read, the webhooks GitHub would send (verified signatures), the admin methods and admin
//! HTTP endpoints, and the GitHub answers the contract test cannot drive (422s for bodies that
//! are valid per the schema but refused for the state they meet).

use crate::helpers;

use std::path::PathBuf;

use helpers::{Receiver, SECRET};
use plumbline_github_sim::{
    AccessLevel, Affiliation, AllowedActions, Permission, RepoOptions, SimConfig, SimError,
    Simulator,
};
use reqwest::header::LINK;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

struct Server {
    sim: Simulator,
    base: String,
    client: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Server {
    /// A simulator with `acme/api` (public) and `acme/vault` (private), delivering webhooks to
    /// `receiver` (if any) with the test secret.
    async fn start(receiver: Option<&Receiver>) -> Server {
        let sim = Simulator::new(SimConfig {
            webhook_url: receiver.map(|r| r.url.clone()),
            webhook_secret: SECRET.to_owned(),
            tokens: Vec::new(),
            ..SimConfig::default()
        });
        sim.set_webhooks_enabled(false);
        sim.create_repo("acme", "api", RepoOptions::default());
        let private = RepoOptions {
            private: true,
            ..RepoOptions::default()
        };
        sim.create_repo("acme", "vault", private);
        sim.set_webhooks_enabled(true);
        let shutdown = CancellationToken::new();
        let addr = sim
            .serve("127.0.0.1:0".parse().unwrap(), shutdown.clone())
            .await
            .unwrap();
        Server {
            sim,
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            shutdown,
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))
        };
        (status, value)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send("GET", path, None).await
    }
}

/// Assertions of this file on the shared receiver.
impl Receiver {
    /// The next delivery, which must be `event` with `action`.
    async fn expect_delivery(&mut self, event: &str, action: &str) -> Value {
        let (got, payload) = self.next().await;
        assert_eq!(
            (got.as_str(), payload["action"].as_str().unwrap_or("")),
            (event, action),
            "unexpected delivery: {payload}"
        );
        payload
    }
}

/// The `rel="next"` URL of a Link header, if any.
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get(LINK)?.to_str().ok()?;
    link.split(", ").find_map(|part| {
        let (url, rel) = part.split_once("; ")?;
        (rel == "rel=\"next\"").then(|| url.trim_matches(['<', '>']).to_owned())
    })
}

// ---------------------------------------------------------------------------------------------
// Actions permissions
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn actions_permissions_policy_allow_list_and_access() {
    let mut receiver = Receiver::start().await;
    let s = Server::start(Some(&receiver)).await;

    assert_eq!(
        s.get("/repos/acme/api/actions/permissions").await,
        (
            200,
            json!({ "enabled": true, "allowed_actions": "all", "sha_pinning_required": false })
        )
    );
    // The allow-list only answers while the policy is "selected" (Minder's fallback relies on
    // the 409).
    let (status, body) = s
        .get("/repos/acme/api/actions/permissions/selected-actions")
        .await;
    assert_eq!(status, 409, "{body}");
    let put = json!({ "enabled": true, "allowed_actions": "selected" });
    assert_eq!(
        s.send("PUT", "/repos/acme/api/actions/permissions", Some(put))
            .await
            .0,
        204
    );
    let (_, perms) = s.get("/repos/acme/api/actions/permissions").await;
    assert_eq!(perms["allowed_actions"], "selected");
    assert_eq!(
        perms["selected_actions_url"],
        format!(
            "{}/repos/acme/api/actions/permissions/selected-actions",
            s.base
        )
    );
    assert_eq!(
        s.get("/repos/acme/api/actions/permissions/selected-actions")
            .await,
        (
            200,
            json!({ "github_owned_allowed": true, "verified_allowed": false, "patterns_allowed": [] })
        )
    );
    let list = json!({ "verified_allowed": true, "patterns_allowed": ["acme/*"] });
    assert_eq!(
        s.send(
            "PUT",
            "/repos/acme/api/actions/permissions/selected-actions",
            Some(list)
        )
        .await
        .0,
        204
    );
    assert_eq!(
        s.get("/repos/acme/api/actions/permissions/selected-actions")
            .await
            .1,
        json!({ "github_owned_allowed": true, "verified_allowed": true, "patterns_allowed": ["acme/*"] })
    );

    // Disabling Actions hides the rest of the policy and the allow-list, but keeps them.
    assert_eq!(
        s.send(
            "PUT",
            "/repos/acme/api/actions/permissions",
            Some(json!({ "enabled": false }))
        )
        .await
        .0,
        204
    );
    assert_eq!(
        s.get("/repos/acme/api/actions/permissions").await.1,
        json!({ "enabled": false })
    );
    assert_eq!(
        s.get("/repos/acme/api/actions/permissions/selected-actions")
            .await
            .0,
        409
    );
    assert_eq!(
        s.send(
            "PUT",
            "/repos/acme/api/actions/permissions",
            Some(json!({ "enabled": true }))
        )
        .await
        .0,
        204
    );
    assert_eq!(
        s.get("/repos/acme/api/actions/permissions/selected-actions")
            .await
            .1["patterns_allowed"],
        json!(["acme/*"])
    );
    let (status, _) = s
        .send(
            "PUT",
            "/repos/acme/api/actions/permissions",
            Some(json!({ "enabled": "yes" })),
        )
        .await;
    assert_eq!(status, 422);

    // Access level: private repositories only.
    assert_eq!(
        s.get("/repos/acme/vault/actions/permissions/access").await,
        (200, json!({ "access_level": "none" }))
    );
    let org = json!({ "access_level": "organization" });
    assert_eq!(
        s.send(
            "PUT",
            "/repos/acme/vault/actions/permissions/access",
            Some(org.clone())
        )
        .await
        .0,
        204
    );
    assert_eq!(
        s.get("/repos/acme/vault/actions/permissions/access")
            .await
            .1,
        org
    );
    assert_eq!(
        s.get("/repos/acme/api/actions/permissions/access").await.0,
        422
    );
    assert_eq!(
        s.send(
            "PUT",
            "/repos/acme/api/actions/permissions/access",
            Some(org)
        )
        .await
        .0,
        422
    );

    // Admin side: methods and HTTP endpoint; GitHub sends no webhook for any of this.
    s.sim
        .set_actions_permissions("acme", "api", true, AllowedActions::LocalOnly)
        .unwrap();
    s.sim
        .set_selected_actions("acme", "api", false, false, vec!["octo/*".to_owned()])
        .unwrap();
    s.sim
        .set_actions_access_level("acme", "vault", AccessLevel::User)
        .unwrap();
    assert!(matches!(
        s.sim
            .set_actions_access_level("acme", "api", AccessLevel::User),
        Err(SimError::Invalid(_))
    ));
    let policy = s.sim.actions_policy("acme", "api").unwrap();
    assert_eq!(policy["allowed_actions"], "local_only");
    assert_eq!(
        policy["selected_actions"]["patterns_allowed"],
        json!(["octo/*"])
    );
    assert_eq!(
        s.sim.actions_policy("acme", "vault").unwrap()["access_level"],
        "user"
    );
    let (status, policy) = s
        .send("PUT", "/_admin/repos/acme/api/actions/policy", Some(json!({ "allowed_actions": "selected", "selected_actions": { "github_owned_allowed": true } })))
        .await;
    assert_eq!(status, 200);
    assert_eq!(policy["allowed_actions"], "selected");
    assert_eq!(policy["selected_actions"]["github_owned_allowed"], true);
    assert_eq!(
        s.send(
            "PUT",
            "/_admin/repos/acme/api/actions/policy",
            Some(json!({ "access_level": "user" }))
        )
        .await
        .0,
        422
    );
    assert_eq!(
        s.get("/_admin/repos/acme/api/actions/policy").await.1,
        policy
    );
    receiver.assert_quiet().await;
}

// ---------------------------------------------------------------------------------------------
// Security advisories
// ---------------------------------------------------------------------------------------------

fn advisory(summary: &str) -> Value {
    json!({
        "summary": summary,
        "description": "Details.",
        "vulnerabilities": [{ "package": { "ecosystem": "npm", "name": "acme" }, "vulnerable_version_range": "< 1.2.3", "patched_versions": "1.2.3" }],
        "cvss_vector_string": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "cwe_ids": ["CWE-79"]
    })
}

#[tokio::test]
async fn advisories_lifecycle_reports_and_cursor_pages() {
    let mut receiver = Receiver::start().await;
    let s = Server::start(Some(&receiver)).await;

    let response = s
        .client
        .post(s.url("/repos/acme/api/security-advisories"))
        .json(&advisory("XSS in the renderer"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let draft: Value = response.json().await.unwrap();
    let ghsa = draft["ghsa_id"].as_str().unwrap().to_owned();
    assert_eq!(location, draft["url"]);
    let parts: Vec<&str> = ghsa.split('-').collect();
    assert_eq!(parts.len(), 4, "{ghsa}");
    assert_eq!(parts[0], "GHSA");
    assert!(
        parts[1..]
            .iter()
            .all(|p| p.len() == 4 && p.bytes().all(|b| b"23456789cfghjmpqrvwx".contains(&b))),
        "{ghsa}"
    );
    assert_eq!(draft["state"], "draft");
    assert_eq!(draft["severity"], "critical", "derived from the CVSS score");
    assert_eq!(draft["cvss"]["score"], 9.8);
    assert_eq!(
        draft["cwes"][0]["name"],
        "Improper Neutralization of Input During Web Page Generation ('Cross-site Scripting')"
    );
    assert_eq!(draft["author"]["type"], "Bot");
    assert_eq!(
        draft["identifiers"],
        json!([{ "type": "GHSA", "value": ghsa }])
    );
    // Drafting sends nothing on GitHub.
    receiver.assert_quiet().await;

    let one = format!("/repos/acme/api/security-advisories/{ghsa}");
    let (status, body) = s
        .send("PATCH", &one, Some(json!({ "severity": "low" })))
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (422, Some("Cannot update severity value when CVSS is set."))
    );
    let (status, published) = s
        .send(
            "PATCH",
            &one,
            Some(json!({ "state": "published", "cve_id": "CVE-2024-12345" })),
        )
        .await;
    assert_eq!(status, 200, "{published}");
    assert_eq!(published["state"], "published");
    assert!(published["published_at"].is_string());
    assert_eq!(published["publisher"]["type"], "Bot");
    assert_eq!(
        published["identifiers"][1],
        json!({ "type": "CVE", "value": "CVE-2024-12345" })
    );
    let payload = receiver
        .expect_delivery("repository_advisory", "published")
        .await;
    assert_eq!(payload["repository_advisory"]["ghsa_id"], ghsa);
    assert_eq!(payload["repository"]["full_name"], "acme/api");
    assert_eq!(
        s.get(&one).await.1,
        published,
        "PATCH answers what GET shows"
    );
    let (status, body) = s
        .send("PATCH", &one, Some(json!({ "state": "draft" })))
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (
            422,
            Some("Invalid state transition from `published` to `draft`.")
        )
    );

    // Reports need private vulnerability reporting.
    let report = json!({ "summary": "Path traversal", "description": "../", "severity": "high", "vulnerabilities": [] });
    assert!(matches!(
        s.sim
            .report_vulnerability("acme", "api", "mallory", report.clone()),
        Err(SimError::Invalid(_))
    ));
    s.sim
        .set_private_vulnerability_reporting("acme", "api", true)
        .unwrap();
    let reported = s
        .sim
        .report_vulnerability("acme", "api", "mallory", report)
        .unwrap();
    let payload = receiver
        .expect_delivery("repository_advisory", "reported")
        .await;
    assert_eq!(payload["repository_advisory"]["state"], "triage");
    assert_eq!(payload["repository_advisory"]["author"]["login"], "mallory");
    assert_eq!(
        payload["repository_advisory"]["submission"],
        json!({ "accepted": false })
    );
    let (_, triage) = s
        .get("/repos/acme/api/security-advisories?state=triage")
        .await;
    assert_eq!(triage.as_array().unwrap().len(), 1);
    assert_eq!(triage[0]["ghsa_id"], reported);
    // Accepting a report moves it to draft.
    s.sim
        .update_advisory("acme", "api", &reported, json!({ "state": "draft" }))
        .unwrap();
    assert_eq!(
        s.sim.advisory("acme", "api", &reported).unwrap()["submission"],
        json!({ "accepted": true })
    );

    // Admin HTTP: a report, and staff withdrawing the published advisory.
    let (status, body) = s
        .send("POST", "/_admin/repos/acme/api/security-advisories/reports", Some(json!({ "reporter": "eve", "summary": "CSRF", "description": "d", "vulnerabilities": [] })))
        .await;
    assert_eq!((status, &body["state"]), (201, &json!("triage")));
    receiver
        .expect_delivery("repository_advisory", "reported")
        .await;
    let (status, body) = s
        .send(
            "POST",
            &format!("/_admin/repos/acme/api/security-advisories/{ghsa}/withdraw"),
            None,
        )
        .await;
    assert_eq!((status, &body["state"]), (200, &json!("withdrawn")));
    assert!(body["withdrawn_at"].is_string());

    // Cursor pagination: follow `next` through all three, one per page.
    let mut seen = Vec::new();
    let mut url =
        s.url("/repos/acme/api/security-advisories?per_page=1&sort=created&direction=asc");
    loop {
        let response = s.client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let next = next_link(response.headers());
        let page: Value = response.json().await.unwrap();
        assert_eq!(page.as_array().unwrap().len(), 1);
        seen.push(page[0]["ghsa_id"].as_str().unwrap().to_owned());
        match next {
            Some(next) => url = next,
            None => break,
        }
    }
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0], ghsa);
    assert_eq!(seen[1], reported);
    let (status, _) = s
        .get("/repos/acme/api/security-advisories?after=bogus")
        .await;
    assert_eq!(status, 400);
}

// ---------------------------------------------------------------------------------------------
// Issues
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn issues_lifecycle_comments_and_disabled_issues() {
    let mut receiver = Receiver::start().await;
    let s = Server::start(Some(&receiver)).await;

    let (status, issue) = s
        .send("POST", "/repos/acme/api/issues", Some(json!({ "title": "Crash on start", "body": "Trace: ...", "labels": ["bug", "triage"], "assignees": ["octocat"] })))
        .await;
    assert_eq!(status, 201, "{issue}");
    assert_eq!(issue["number"], 1);
    assert_eq!(issue["state"], "open");
    assert_eq!(
        issue["labels"][0]["color"], "d73a4a",
        "GitHub's default bug label"
    );
    assert_eq!(
        issue["labels"][1]["color"], "ededed",
        "created on first use"
    );
    assert_eq!(issue["assignee"]["login"], "octocat");
    let opened = receiver.expect_delivery("issues", "opened").await;
    assert_eq!(opened["issue"]["title"], "Crash on start");
    assert_eq!(opened["sender"]["type"], "Bot");
    assert_eq!(
        receiver.expect_delivery("issues", "labeled").await["label"]["name"],
        "bug"
    );
    assert_eq!(
        receiver.expect_delivery("issues", "labeled").await["label"]["name"],
        "triage"
    );
    assert_eq!(
        receiver.expect_delivery("issues", "assigned").await["assignee"]["login"],
        "octocat"
    );

    // Numbers come from the repository's sequence; the admin side can open issues as anyone.
    let second = s
        .sim
        .create_issue(
            "acme",
            "api",
            Some("reporter"),
            json!({ "title": "Docs typo", "labels": ["documentation"] }),
        )
        .unwrap();
    assert_eq!(second, 2);
    assert_eq!(
        receiver.expect_delivery("issues", "opened").await["issue"]["user"]["login"],
        "reporter"
    );
    receiver.expect_delivery("issues", "labeled").await;

    // Edit and close: edited (with changes), unlabeled, closed.
    let (status, closed) = s
        .send("PATCH", "/repos/acme/api/issues/1", Some(json!({ "title": "Crash on start-up", "labels": ["bug"], "state": "closed", "state_reason": "not_planned" })))
        .await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["state"], "closed");
    assert_eq!(closed["state_reason"], "not_planned");
    assert!(closed["closed_at"].is_string());
    assert_eq!(closed["closed_by"]["type"], "Bot");
    let edited = receiver.expect_delivery("issues", "edited").await;
    assert_eq!(
        edited["changes"],
        json!({ "title": { "from": "Crash on start" } })
    );
    assert_eq!(
        receiver.expect_delivery("issues", "unlabeled").await["label"]["name"],
        "triage"
    );
    assert_eq!(
        receiver.expect_delivery("issues", "closed").await["issue"]["state"],
        "closed"
    );
    assert_eq!(
        s.get("/repos/acme/api/issues/1").await.1,
        closed,
        "PATCH answers what GET shows"
    );

    // Lists: open by default, filters, pagination.
    let (_, open) = s.get("/repos/acme/api/issues").await;
    assert_eq!(open.as_array().unwrap().len(), 1);
    assert_eq!(open[0]["number"], 2);
    let (_, all) = s.get("/repos/acme/api/issues?state=all&labels=bug").await;
    assert_eq!(
        all.as_array()
            .unwrap()
            .iter()
            .map(|i| i["number"].clone())
            .collect::<Vec<_>>(),
        [json!(1)]
    );
    let (_, by_creator) = s
        .get("/repos/acme/api/issues?state=all&creator=reporter")
        .await;
    assert_eq!(by_creator[0]["number"], 2);
    let first_page = s
        .client
        .get(s.url("/repos/acme/api/issues?state=all&per_page=1"))
        .send()
        .await
        .unwrap();
    let next = next_link(first_page.headers()).expect("next page");
    assert!(next.contains("state=all"), "{next}");
    let page: Value = first_page.json().await.unwrap();
    assert_eq!(page[0]["number"], 2, "newest first");
    assert_eq!(s.get(&next).await.1[0]["number"], 1);

    // Reopen.
    s.sim
        .update_issue("acme", "api", 1, json!({ "state": "open" }))
        .unwrap();
    let reopened = receiver.expect_delivery("issues", "reopened").await;
    assert_eq!(reopened["issue"]["state_reason"], "reopened");
    assert_eq!(reopened["sender"]["type"], "User");

    // Comments.
    let (status, comment) = s
        .send(
            "POST",
            "/repos/acme/api/issues/1/comments",
            Some(json!({ "body": "Fixed in #3." })),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(comment["body"], "Fixed in #3.");
    let payload = receiver.expect_delivery("issue_comment", "created").await;
    assert_eq!(payload["comment"]["id"], comment["id"]);
    assert_eq!(payload["issue"]["comments"], 1);
    s.sim
        .comment_on_issue("acme", "api", 1, Some("reporter"), "Thanks!")
        .unwrap();
    receiver.expect_delivery("issue_comment", "created").await;
    let (_, comments) = s.get("/repos/acme/api/issues/1/comments").await;
    assert_eq!(comments.as_array().unwrap().len(), 2);
    assert_eq!(comments[1]["user"]["login"], "reporter");
    assert_eq!(s.get("/repos/acme/api/issues/1").await.1["comments"], 2);

    // Issues turned off: 410 everywhere, nothing listed, admin refused; back on, all is there.
    s.sim.set_issues_enabled("acme", "api", false).unwrap();
    assert_eq!(
        receiver.expect_delivery("repository", "edited").await["changes"],
        json!({ "has_issues": { "from": true } })
    );
    let (status, body) = s
        .send(
            "POST",
            "/repos/acme/api/issues",
            Some(json!({ "title": "x" })),
        )
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (410, Some("Issues are disabled for this repo"))
    );
    assert_eq!(s.get("/repos/acme/api/issues/1").await.0, 410);
    assert_eq!(
        s.send(
            "PATCH",
            "/repos/acme/api/issues/1",
            Some(json!({ "state": "closed" }))
        )
        .await
        .0,
        410
    );
    assert_eq!(s.get("/repos/acme/api/issues/1/comments").await.0, 410);
    assert_eq!(s.get("/repos/acme/api/issues").await.1, json!([]));
    assert!(matches!(
        s.sim
            .create_issue("acme", "api", None, json!({ "title": "x" })),
        Err(SimError::Invalid(_))
    ));
    s.sim.set_issues_enabled("acme", "api", true).unwrap();
    receiver.expect_delivery("repository", "edited").await;
    assert_eq!(s.get("/repos/acme/api/issues/1").await.0, 200);

    // Validation.
    for body in [
        json!({ "body": "no title" }),
        json!({ "title": "t", "milestone": 3 }),
        json!({ "title": ["t"] }),
    ] {
        assert_eq!(
            s.send("POST", "/repos/acme/api/issues", Some(body.clone()))
                .await
                .0,
            422,
            "{body}"
        );
    }
    assert_eq!(s.get("/repos/acme/api/issues/99").await.0, 404);
    assert_eq!(s.get("/repos/acme/api/issues/abc").await.0, 404);

    // Admin HTTP.
    let (status, body) = s
        .send(
            "POST",
            "/_admin/repos/acme/api/issues",
            Some(json!({ "title": "From the UI", "user": "dev" })),
        )
        .await;
    assert_eq!((status, &body["number"]), (201, &json!(3)));
    receiver.expect_delivery("issues", "opened").await;
    let (status, body) = s
        .send(
            "PATCH",
            "/_admin/repos/acme/api/issues/3",
            Some(json!({ "state": "closed" })),
        )
        .await;
    assert_eq!((status, &body["state"]), (200, &json!("closed")));
    receiver.expect_delivery("issues", "closed").await;
    let (status, _) = s
        .send(
            "POST",
            "/_admin/repos/acme/api/issues/3/comments",
            Some(json!({ "body": "done", "user": "dev" })),
        )
        .await;
    assert_eq!(status, 201);
    receiver.expect_delivery("issue_comment", "created").await;
    receiver.assert_quiet().await;

    let counts = s.sim.request_counts();
    assert_eq!(
        counts.get("GET /repos/{owner}/{repo}/issues/{issue_number}"),
        Some(&6)
    );
    assert_eq!(
        counts.get("POST /repos/{owner}/{repo}/issues/{issue_number}/comments"),
        Some(&1)
    );
}

// ---------------------------------------------------------------------------------------------
// Rulesets
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn rulesets_select_branches_and_send_webhooks() {
    let mut receiver = Receiver::start().await;
    let s = Server::start(Some(&receiver)).await;

    let body = json!({
        "name": "protect main and releases",
        "target": "branch",
        "enforcement": "active",
        "conditions": { "ref_name": { "include": ["~DEFAULT_BRANCH", "refs/heads/release/**/*"], "exclude": ["refs/heads/release/old/*"] } },
        "rules": [{ "type": "deletion" }, { "type": "non_fast_forward" }]
    });
    let (status, created) = s
        .send("POST", "/repos/acme/api/rulesets", Some(body.clone()))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_u64().unwrap();
    assert_eq!(created["source"], "acme/api");
    assert_eq!(created["source_type"], "Repository");
    assert_eq!(created["rules"], body["rules"]);
    let payload = receiver
        .expect_delivery("repository_ruleset", "created")
        .await;
    assert_eq!(payload["repository_ruleset"]["id"], id);
    assert_eq!(
        payload["repository_ruleset"]["conditions"],
        body["conditions"]
    );

    // Evaluate-mode rulesets are not enforced, so their rules do not apply.
    s.sim
        .create_ruleset("acme", "api", json!({ "name": "trial", "enforcement": "evaluate", "conditions": { "ref_name": { "include": ["~ALL"], "exclude": [] } }, "rules": [{ "type": "required_signatures" }] }))
        .unwrap();
    receiver
        .expect_delivery("repository_ruleset", "created")
        .await;

    let rules = |branch: &'static str| {
        let s = &s;
        async move {
            s.get(&format!("/repos/acme/api/rules/branches/{branch}"))
                .await
                .1
        }
    };
    let main = rules("main").await;
    assert_eq!(
        main,
        json!([
            { "type": "deletion", "ruleset_source_type": "Repository", "ruleset_source": "acme/api", "ruleset_id": id },
            { "type": "non_fast_forward", "ruleset_source_type": "Repository", "ruleset_source": "acme/api", "ruleset_id": id },
        ])
    );
    assert_eq!(rules("release%2F1.0").await.as_array().unwrap().len(), 2);
    assert_eq!(rules("release%2Fold%2F0.9").await, json!([]), "excluded");
    assert_eq!(rules("feature").await, json!([]));

    let (_, list) = s.get("/repos/acme/api/rulesets").await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert!(
        list[0].get("rules").is_none(),
        "the list leaves rules out, like GitHub"
    );
    assert_eq!(
        s.get("/repos/acme/api/rulesets?targets=tag").await.1,
        json!([])
    );

    // Names are unique.
    let (status, error) = s
        .send("POST", "/repos/acme/api/rulesets", Some(body.clone()))
        .await;
    assert_eq!(status, 422);
    assert_eq!(error["message"], "Validation Failed");
    assert_eq!(error["errors"][0]["message"], "Name must be unique");

    // The admin side edits (webhook with changes) and deletes.
    let mut disabled = body.clone();
    disabled["enforcement"] = json!("disabled");
    disabled["rules"] = json!([{ "type": "deletion" }]);
    s.sim.update_ruleset("acme", "api", id, disabled).unwrap();
    let edited = receiver
        .expect_delivery("repository_ruleset", "edited")
        .await;
    assert_eq!(
        edited["changes"]["enforcement"],
        json!({ "from": "active" })
    );
    assert_eq!(
        edited["changes"]["rules"]["deleted"],
        json!([{ "type": "non_fast_forward" }])
    );
    assert_eq!(rules("main").await, json!([]));
    let (status, _) = s
        .send(
            "DELETE",
            &format!("/_admin/repos/acme/api/rulesets/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        receiver
            .expect_delivery("repository_ruleset", "deleted")
            .await["repository_ruleset"]["id"],
        id
    );
    assert!(s.sim.ruleset("acme", "api", id).is_none());
    assert!(matches!(
        s.sim.delete_ruleset("acme", "api", id),
        Err(SimError::NotFound(_))
    ));

    // Minder's remediation sends PUT with a trailing comma: GitHub has no PUT there.
    assert_eq!(
        s.send("PUT", "/repos/acme/api/rulesets", Some(body))
            .await
            .0,
        404
    );
    let malformed = s
        .client
        .post(s.url("/repos/acme/api/rulesets"))
        .body(r#"{"name": "x", "rules": [{"type": "deletion",}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    receiver.assert_quiet().await;
}

// ---------------------------------------------------------------------------------------------
// Private vulnerability reporting, collaborators
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn private_vulnerability_reporting_toggles() {
    let s = Server::start(None).await;
    let path = "/repos/acme/api/private-vulnerability-reporting";
    assert_eq!(s.get(path).await, (200, json!({ "enabled": false })));
    assert_eq!(s.send("PUT", path, None).await.0, 204);
    assert_eq!(s.get(path).await.1, json!({ "enabled": true }));
    assert_eq!(
        s.sim.private_vulnerability_reporting("acme", "api"),
        Some(true)
    );
    assert_eq!(s.send("DELETE", path, None).await.0, 204);
    assert_eq!(s.get(path).await.1, json!({ "enabled": false }));
    // Public repositories only.
    assert_eq!(
        s.send(
            "PUT",
            "/repos/acme/vault/private-vulnerability-reporting",
            None
        )
        .await
        .0,
        422
    );
    assert!(s
        .sim
        .set_private_vulnerability_reporting("acme", "vault", true)
        .is_err());
    assert_eq!(
        s.send(
            "PUT",
            "/_admin/repos/acme/api/private-vulnerability-reporting",
            Some(json!({ "enabled": true }))
        )
        .await
        .0,
        204
    );
    assert_eq!(s.get(path).await.1, json!({ "enabled": true }));
}

#[tokio::test]
async fn collaborators_filters_and_member_webhooks() {
    let mut receiver = Receiver::start().await;
    let s = Server::start(Some(&receiver)).await;

    s.sim
        .add_collaborator(
            "acme",
            "api",
            "alice",
            Permission::Admin,
            Affiliation::Direct,
        )
        .unwrap();
    let added = receiver.expect_delivery("member", "added").await;
    assert_eq!(added["member"]["login"], "alice");
    assert_eq!(added["changes"], json!({ "permission": { "to": "admin" } }));
    s.sim
        .add_collaborator("acme", "api", "bob", Permission::Pull, Affiliation::Outside)
        .unwrap();
    receiver.expect_delivery("member", "added").await;
    // Access through the organization has no member webhook.
    s.sim
        .add_collaborator(
            "acme",
            "api",
            "carol",
            Permission::Maintain,
            Affiliation::Organization,
        )
        .unwrap();
    receiver.assert_quiet().await;

    let (status, all) = s.get("/repos/acme/api/collaborators").await;
    assert_eq!(status, 200);
    let logins = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| c["login"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(logins(&all), ["alice", "bob", "carol"]);
    assert_eq!(all[1]["role_name"], "read");
    assert_eq!(
        all[1]["permissions"],
        json!({ "pull": true, "triage": false, "push": false, "maintain": false, "admin": false })
    );
    assert_eq!(
        logins(
            &s.get("/repos/acme/api/collaborators?affiliation=outside")
                .await
                .1
        ),
        ["bob"]
    );
    assert_eq!(
        logins(
            &s.get("/repos/acme/api/collaborators?affiliation=direct")
                .await
                .1
        ),
        ["alice", "bob"]
    );
    assert_eq!(
        logins(
            &s.get("/repos/acme/api/collaborators?permission=maintain")
                .await
                .1
        ),
        ["alice", "carol"]
    );
    assert_eq!(
        s.get("/repos/acme/api/collaborators?permission=owner")
            .await
            .0,
        422
    );
    let page = s
        .client
        .get(s.url("/repos/acme/api/collaborators?per_page=2"))
        .send()
        .await
        .unwrap();
    let next = next_link(page.headers()).expect("next");
    assert_eq!(logins(&s.get(&next).await.1), ["carol"]);

    // Changing a permission is "edited"; removal is "removed" (admin HTTP).
    let (status, _) = s
        .send(
            "PUT",
            "/_admin/repos/acme/api/collaborators/bob",
            Some(json!({ "permission": "push", "affiliation": "outside" })),
        )
        .await;
    assert_eq!(status, 204);
    let edited = receiver.expect_delivery("member", "edited").await;
    assert_eq!(
        edited["changes"],
        json!({ "permission": { "from": "read", "to": "write" } })
    );
    assert_eq!(
        s.send("DELETE", "/_admin/repos/acme/api/collaborators/alice", None)
            .await
            .0,
        204
    );
    assert_eq!(
        receiver.expect_delivery("member", "removed").await["member"]["login"],
        "alice"
    );
    assert_eq!(
        s.send("DELETE", "/_admin/repos/acme/api/collaborators/alice", None)
            .await
            .0,
        404
    );
    assert_eq!(
        logins(&s.get("/repos/acme/api/collaborators").await.1),
        ["bob", "carol"]
    );
}

// ---------------------------------------------------------------------------------------------
// Releases
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn releases_assets_downloads_and_webhooks() {
    let mut receiver = Receiver::start().await;
    let s = Server::start(Some(&receiver)).await;

    let (status, v1) = s
        .send(
            "POST",
            "/repos/acme/api/releases",
            Some(json!({ "tag_name": "v1.0.0", "name": "One", "body": "First" })),
        )
        .await;
    assert_eq!(status, 201, "{v1}");
    assert_eq!(v1["target_commitish"], "main");
    assert!(v1["published_at"].is_string());
    assert_eq!(
        v1["tarball_url"],
        format!("{}/repos/acme/api/tarball/v1.0.0", s.base)
    );
    let id = v1["id"].as_u64().unwrap();
    for action in ["created", "published", "released"] {
        let payload = receiver.expect_delivery("release", action).await;
        assert_eq!(payload["release"]["tag_name"], "v1.0.0");
    }

    // A duplicate tag is GitHub's already_exists.
    let (status, error) = s
        .send(
            "POST",
            "/repos/acme/api/releases",
            Some(json!({ "tag_name": "v1.0.0" })),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        error["errors"],
        json!([{ "resource": "Release", "code": "already_exists", "field": "tag_name" }])
    );
    let (status, error) = s
        .send(
            "POST",
            "/repos/acme/api/releases",
            Some(json!({ "tag_name": "v3", "target_commitish": "nope" })),
        )
        .await;
    assert_eq!(
        (status, &error["errors"][0]["field"]),
        (422, &json!("target_commitish"))
    );

    // A draft, published later by PATCH.
    let draft = s
        .sim
        .create_release(
            "acme",
            "api",
            json!({ "tag_name": "v2.0.0", "draft": true, "prerelease": true }),
        )
        .unwrap();
    receiver.expect_delivery("release", "created").await;
    let (status, published) = s
        .send(
            "PATCH",
            &format!("/repos/acme/api/releases/{draft}"),
            Some(json!({ "draft": false, "name": "Two", "body": "Second" })),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(published["draft"], false);
    let edited = receiver.expect_delivery("release", "edited").await;
    assert_eq!(
        edited["changes"],
        json!({ "name": { "from": null }, "body": { "from": null } })
    );
    receiver.expect_delivery("release", "published").await;
    receiver.expect_delivery("release", "prereleased").await;
    let (_, list) = s.get("/repos/acme/api/releases").await;
    assert_eq!(
        list.as_array()
            .unwrap()
            .iter()
            .map(|r| r["tag_name"].clone())
            .collect::<Vec<_>>(),
        [json!("v2.0.0"), json!("v1.0.0")]
    );
    let (status, _) = s
        .send(
            "PATCH",
            &format!("/repos/acme/api/releases/{draft}"),
            Some(json!({ "tag_name": "v1.0.0" })),
        )
        .await;
    assert_eq!(status, 422);

    // Assets: upload to the upload_url, list, download, refuse duplicates.
    let upload = v1["upload_url"]
        .as_str()
        .unwrap()
        .replace("{?name,label}", "?name=LICENSE&label=License");
    let response = s
        .client
        .post(&upload)
        .header("content-type", "text/plain")
        .body("Apache-2.0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let asset: Value = response.json().await.unwrap();
    assert_eq!(asset["name"], "LICENSE");
    assert_eq!(asset["label"], "License");
    assert_eq!(asset["size"], 10);
    assert_eq!(asset["content_type"], "text/plain");
    let again = s.client.post(&upload).body("x").send().await.unwrap();
    assert_eq!(again.status(), 422);
    let error: Value = again.json().await.unwrap();
    assert_eq!(error["errors"][0]["code"], "already_exists");
    let download = s
        .client
        .get(asset["browser_download_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()["content-type"], "text/plain");
    assert_eq!(download.text().await.unwrap(), "Apache-2.0");
    let (_, assets) = s
        .get(&format!("/repos/acme/api/releases/{id}/assets"))
        .await;
    assert_eq!(assets[0]["download_count"], 1);
    assert_eq!(
        s.get(&format!("/repos/acme/api/releases/{id}")).await.1["assets"][0]["id"],
        asset["id"]
    );
    s.sim
        .upload_release_asset(
            "acme",
            "api",
            id,
            "notes (final).txt",
            "text/plain",
            b"n".to_vec(),
        )
        .unwrap();
    assert_eq!(
        s.get(&format!("/repos/acme/api/releases/{id}/assets"))
            .await
            .1[1]["name"],
        "notes..final..txt"
    );
    let missing = s
        .client
        .get(format!(
            "{}/_download/acme/api/releases/download/v1.0.0/nope",
            s.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // Delete.
    assert_eq!(
        s.send("DELETE", &format!("/repos/acme/api/releases/{id}"), None)
            .await
            .0,
        204
    );
    assert_eq!(
        receiver.expect_delivery("release", "deleted").await["release"]["id"],
        id
    );
    assert_eq!(
        s.get(&format!("/repos/acme/api/releases/{id}")).await.0,
        404
    );
    assert!(s.sim.release("acme", "api", id).is_none());
    receiver.assert_quiet().await;

    let counts = s.sim.request_counts();
    assert_eq!(
        counts.get("POST /repos/{owner}/{repo}/releases/{release_id}/assets"),
        Some(&2)
    );
    assert_eq!(
        counts.get("GET /_download/{owner}/{repo}/releases/download/{tag}/{name}"),
        Some(&2)
    );
}

// ---------------------------------------------------------------------------------------------
// Dependabot
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn dependabot_alerts_and_security_updates_stay_consistent() {
    let mut receiver = Receiver::start().await;
    let s = Server::start(Some(&receiver)).await;
    let security = |repo: &Value| {
        repo["security_and_analysis"]["dependabot_security_updates"]["status"].clone()
    };

    // Off: bare 404s (no body), unlike an unknown repository's JSON 404.
    let off = s
        .client
        .get(s.url("/repos/acme/api/vulnerability-alerts"))
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 404);
    assert!(off.bytes().await.unwrap().is_empty());
    assert_eq!(
        s.get("/repos/acme/api/automated-security-fixes").await,
        (404, Value::Null)
    );
    let (status, body) = s.get("/repos/acme/nope/vulnerability-alerts").await;
    assert_eq!((status, body["message"].as_str()), (404, Some("Not Found")));

    // Security updates on: alerts come on too, the repository agrees, one webhook.
    assert_eq!(
        s.send("PUT", "/repos/acme/api/automated-security-fixes", None)
            .await
            .0,
        204
    );
    assert_eq!(s.get("/repos/acme/api/vulnerability-alerts").await.0, 204);
    assert_eq!(
        s.get("/repos/acme/api/automated-security-fixes").await.1,
        json!({ "enabled": true, "paused": false })
    );
    assert_eq!(security(&s.get("/repos/acme/api").await.1), "enabled");
    let payload = receiver.next().await;
    assert_eq!(payload.0, "security_and_analysis");
    assert_eq!(
        payload.1["changes"]["from"]["security_and_analysis"]["dependabot_security_updates"]
            ["status"],
        "disabled"
    );
    assert_eq!(
        payload.1["repository"]["security_and_analysis"]["dependabot_security_updates"]["status"],
        "enabled"
    );

    // Paused from the admin side (GitHub pauses inactive repositories).
    s.sim
        .set_automated_security_fixes("acme", "api", true, true)
        .unwrap();
    assert_eq!(
        s.get("/repos/acme/api/automated-security-fixes").await.1,
        json!({ "enabled": true, "paused": true })
    );
    assert_eq!(
        s.sim.dependabot_settings("acme", "api"),
        Some((true, true, true))
    );
    receiver.assert_quiet().await;

    // Alerts off takes security updates with them.
    assert_eq!(
        s.send("DELETE", "/repos/acme/api/vulnerability-alerts", None)
            .await
            .0,
        204
    );
    assert_eq!(
        s.get("/repos/acme/api/automated-security-fixes").await.0,
        404
    );
    assert_eq!(security(&s.get("/repos/acme/api").await.1), "disabled");
    assert_eq!(receiver.next().await.0, "security_and_analysis");

    // Alerts alone leave security updates off; DELETE of security updates keeps alerts.
    assert_eq!(
        s.send("PUT", "/repos/acme/api/vulnerability-alerts", None)
            .await
            .0,
        204
    );
    assert_eq!(
        s.get("/repos/acme/api/automated-security-fixes").await.1,
        json!({ "enabled": false, "paused": false })
    );
    receiver.assert_quiet().await;
    let (status, body) = s
        .send(
            "PUT",
            "/_admin/repos/acme/api/dependabot",
            Some(json!({ "security_updates": true })),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({ "alerts": true, "security_updates": true, "paused": false })
        )
    );
    assert_eq!(receiver.next().await.1["sender"]["type"], "User");
    assert_eq!(
        s.send("DELETE", "/repos/acme/api/automated-security-fixes", None)
            .await
            .0,
        204
    );
    assert_eq!(s.get("/repos/acme/api/vulnerability-alerts").await.0, 204);
    assert_eq!(receiver.next().await.0, "security_and_analysis");
    assert_eq!(
        s.send("PUT", "/repos/acme/nope/automated-security-fixes", None)
            .await
            .0,
        404
    );
}

// ---------------------------------------------------------------------------------------------
// Webhook shapes against GitHub's own payloads
// ---------------------------------------------------------------------------------------------

/// The real payload examples beside the checkout, if present.
fn example(path: &str) -> Option<Value> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/github-webhooks/api.github.com");
    let text = std::fs::read_to_string(root.join(path)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Every key GitHub's example has (at the top and in `object`) is in ours too.
fn assert_keys_cover(ours: &Value, theirs: &Value, object: &str) {
    for (scope, a, b) in [
        ("payload", ours, theirs),
        (object, &ours[object], &theirs[object]),
    ] {
        let mine = a
            .as_object()
            .unwrap_or_else(|| panic!("{scope} is not an object: {a}"));
        for key in b.as_object().unwrap().keys() {
            assert!(
                mine.contains_key(key),
                "{scope} lacks `{key}` that GitHub sends"
            );
        }
    }
}

#[tokio::test]
async fn webhook_payloads_have_githubs_shape() {
    let examples = [
        ("issues/opened.with-organization.payload.json", "issue"),
        (
            "issue_comment/created.with-organization.payload.json",
            "comment",
        ),
        ("release/published.payload.json", "release"),
        ("release/edited.payload.json", "release"),
        ("member/added.payload.json", "member"),
    ];
    if examples.iter().any(|(path, _)| example(path).is_none()) {
        eprintln!("github-webhooks examples not found beside the checkout; skipping");
        return;
    }
    let mut receiver = Receiver::start().await;
    let s = Server::start(Some(&receiver)).await;
    s.send(
        "POST",
        "/repos/acme/api/issues",
        Some(json!({ "title": "t", "body": "b" })),
    )
    .await;
    let opened = receiver.expect_delivery("issues", "opened").await;
    s.send(
        "POST",
        "/repos/acme/api/issues/1/comments",
        Some(json!({ "body": "c" })),
    )
    .await;
    let commented = receiver.expect_delivery("issue_comment", "created").await;
    assert_keys_cover(&commented, &example(examples[1].0).unwrap(), "issue");
    s.send(
        "POST",
        "/repos/acme/api/releases",
        Some(json!({ "tag_name": "v1", "name": "FOO", "body": "" })),
    )
    .await;
    receiver.expect_delivery("release", "created").await;
    let published = receiver.expect_delivery("release", "published").await;
    receiver.expect_delivery("release", "released").await;
    let id = published["release"]["id"].as_u64().unwrap();
    s.send(
        "PATCH",
        &format!("/repos/acme/api/releases/{id}"),
        Some(json!({ "name": "BAR", "body": "x" })),
    )
    .await;
    let edited = receiver.expect_delivery("release", "edited").await;
    assert_eq!(
        edited["changes"],
        example(examples[3].0).unwrap()["changes"],
        "same `changes` for the same edit"
    );
    s.sim
        .add_collaborator(
            "acme",
            "api",
            "hacktocat",
            Permission::Push,
            Affiliation::Outside,
        )
        .unwrap();
    let member = receiver.expect_delivery("member", "added").await;
    for ((path, object), ours) in examples
        .iter()
        .zip([&opened, &commented, &published, &edited, &member])
    {
        assert_keys_cover(ours, &example(path).unwrap(), object);
    }
}
