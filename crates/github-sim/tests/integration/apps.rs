//! GitHub App authentication end to end: JWTs, installations, minting and using installation
//! tokens, their expiry, scope and budgets, and the admin API for apps.

use crate::helpers;

use std::time::Duration;

use helpers::{
    header, jwt, jwt_with, now, remaining, webhook_config, Receiver, Server, APP_PRIVATE_KEY,
    APP_PUBLIC_KEY, OTHER_PRIVATE_KEY,
};
use plumbline_github_sim::{
    token_label, AppConfig, InstallationConfig, RepoOptions, RepositorySelection, SimConfig,
};
use serde_json::{json, Value};

const APP: u64 = 42;

fn installation(id: u64, account: &str, selection: RepositorySelection) -> InstallationConfig {
    InstallationConfig {
        id,
        app_id: APP,
        account: account.to_owned(),
        repository_selection: selection,
    }
}

fn app_config() -> SimConfig {
    SimConfig {
        apps: vec![AppConfig::new(APP, "plumbline", APP_PUBLIC_KEY)],
        installations: vec![
            installation(7, "acme", RepositorySelection::All),
            installation(
                8,
                "acme",
                RepositorySelection::Selected(vec!["API".to_owned()]),
            ),
        ],
        ..SimConfig::default()
    }
}

async fn server_with_repos(config: SimConfig) -> Server {
    let server = Server::start(config).await;
    for name in ["api", "web", "docs"] {
        server.sim.create_repo("acme", name, RepoOptions::default());
    }
    server
        .sim
        .create_repo("globex", "site", RepoOptions::default());
    server
}

/// POST access_tokens with `body`; returns (status, json body).
async fn request_token(
    server: &Server,
    jwt: &str,
    installation: u64,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = server
        .client
        .post(server.url(&format!("/app/installations/{installation}/access_tokens")))
        .bearer_auth(jwt);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn mint(server: &Server, installation: u64) -> String {
    let (status, body) = request_token(server, &jwt(APP), installation, None).await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

async fn names(server: &Server, token: &str) -> (Vec<String>, Value) {
    let response = server.get("/installation/repositories", Some(token)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let names = body["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["full_name"].as_str().unwrap().to_owned())
        .collect();
    (names, body)
}

#[tokio::test]
async fn app_mints_installation_tokens_that_see_their_repositories() {
    let server = server_with_repos(app_config()).await;

    // The app itself, with `iss` as a string and as a number.
    for iss in [json!(APP.to_string()), json!(APP)] {
        let token = jwt_with(iss, now() - 60, now() + 540, APP_PRIVATE_KEY);
        let response = server.get("/app", Some(&token)).await;
        assert_eq!(response.status(), 200);
        let app: Value = response.json().await.unwrap();
        assert_eq!(app["id"], APP);
        assert_eq!(app["slug"], "plumbline");
        assert_eq!(app["installations_count"], 2);
    }
    let response = server.get("/app/installations", Some(&jwt(APP))).await;
    let installations: Value = response.json().await.unwrap();
    let ids: Vec<u64> = installations
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [7, 8]);
    assert_eq!(installations[1]["repository_selection"], "selected");
    assert_eq!(installations[0]["account"]["login"], "acme");
    assert_eq!(
        installations[0]["access_tokens_url"],
        format!("{}/app/installations/7/access_tokens", server.base)
    );

    // A token of the "all" installation sees every acme repository, none of globex.
    assert_eq!(server.sim.installation_tokens_minted(), 0);
    let (status, minted) = request_token(&server, &jwt(APP), 7, None).await;
    assert_eq!(status, 201);
    let all = minted["token"].as_str().unwrap().to_owned();
    assert!(all.starts_with("ghs_") && all.len() == 40, "{all}");
    assert_eq!(minted["repository_selection"], "all");
    assert_eq!(minted["permissions"]["administration"], "write");
    assert!(minted.get("repositories").is_none());
    let expires = chrono::DateTime::parse_from_rfc3339(minted["expires_at"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert!(
        (expires - now() - 3600).abs() <= 5,
        "one hour by default: {expires}"
    );
    assert_eq!(server.sim.installation_tokens_minted(), 1);
    let (list, body) = names(&server, &all).await;
    assert_eq!(list, ["acme/api", "acme/web", "acme/docs"]);
    assert_eq!(body["total_count"], 3);
    assert_eq!(body["repository_selection"], "all");
    assert_eq!(
        server.get("/repos/acme/web", Some(&all)).await.status(),
        200
    );
    assert_eq!(
        server.get("/repos/globex/site", Some(&all)).await.status(),
        404,
        "an installation token does not see other accounts"
    );

    // The "selected" installation sees only api (selected names are case-insensitive).
    let selected = mint(&server, 8).await;
    let (list, body) = names(&server, &selected).await;
    assert_eq!(list, ["acme/api"]);
    assert_eq!(body["repository_selection"], "selected");
    assert_eq!(
        server
            .get("/repos/acme/api", Some(&selected))
            .await
            .status(),
        200
    );
    let hidden = server
        .get("/repos/acme/web/branches/main", Some(&selected))
        .await;
    assert_eq!(hidden.status(), 404);
    let body: Value = hidden.json().await.unwrap();
    assert_eq!(body["message"], "Not Found");
    // Writes are scoped too: nothing changes in a repository the token cannot see.
    let put = server
        .client
        .put(server.url("/repos/acme/web/branches/main/protection"))
        .bearer_auth(&selected)
        .json(&json!({
            "required_status_checks": null,
            "enforce_admins": true,
            "required_pull_request_reviews": null,
            "restrictions": null
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 404);
    assert!(server.sim.protection("acme", "web", "main").is_none());

    // Other credentials still see everything (the simulator's single default installation).
    let (list, _) = names(&server, "ghp_personal").await;
    assert_eq!(list.len(), 4);
    assert_eq!(server.sim.installation_tokens_minted(), 2);
}

#[tokio::test]
async fn tokens_can_be_limited_to_repositories_and_permissions() {
    let server = server_with_repos(app_config()).await;
    let web = server
        .sim
        .create_repo("acme", "web", RepoOptions::default());
    let (status, body) = request_token(
        &server,
        &jwt(APP),
        7,
        Some(json!({
            "repositories": ["api"],
            "repository_ids": [web],
            "permissions": { "contents": "read", "administration": "write" }
        })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["repository_selection"], "selected");
    assert_eq!(
        body["permissions"],
        json!({ "contents": "read", "administration": "write" })
    );
    let listed: Vec<&str> = body["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["api", "web"]);
    let token = body["token"].as_str().unwrap();
    let (list, _) = names(&server, token).await;
    assert_eq!(list, ["acme/api", "acme/web"]);
    assert_eq!(
        server.get("/repos/acme/docs", Some(token)).await.status(),
        404
    );

    // A repository outside the installation, and a permission the app lacks: 422.
    for (installation, body) in [
        (7, json!({ "repositories": ["site"] })),
        (8, json!({ "repositories": ["web"] })),
        (7, json!({ "repository_ids": [999_999] })),
    ] {
        let (status, answer) = request_token(&server, &jwt(APP), installation, Some(body)).await;
        assert_eq!(status, 422);
        assert_eq!(
            answer["message"],
            "There is at least one repository that does not exist or is not accessible to the parent installation."
        );
    }
    let (status, answer) = request_token(
        &server,
        &jwt(APP),
        7,
        Some(json!({ "permissions": { "members": "read" } })),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        answer["message"],
        "The permissions requested are not granted to this installation."
    );
    let (status, _) = request_token(
        &server,
        &jwt(APP),
        7,
        Some(json!({ "permissions": { "metadata": "write" } })),
    )
    .await;
    assert_eq!(status, 422, "read access does not grant write");
}

#[tokio::test]
async fn jwts_are_verified_with_githubs_rules_and_messages() {
    let server = server_with_repos(app_config()).await;
    let installation_token = mint(&server, 7).await;
    let cases: Vec<(Option<String>, u16, &str)> = vec![
        (None, 401, "Requires authentication"),
        (
            Some("not-a-jwt".to_owned()),
            401,
            "A JSON web token could not be decoded",
        ),
        (
            Some(installation_token),
            401,
            "A JSON web token could not be decoded",
        ),
        (
            Some(jwt_with(json!(APP), now() - 60, now() + 540, OTHER_PRIVATE_KEY)),
            401,
            "A JSON web token could not be decoded",
        ),
        (
            Some(jwt_with(json!("plumbline"), now() - 60, now() + 540, APP_PRIVATE_KEY)),
            401,
            "'Issuer' claim ('iss') must be an Integer",
        ),
        (
            Some(jwt_with(json!(APP), now() + 120, now() + 540, APP_PRIVATE_KEY)),
            401,
            "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
        ),
        (
            Some(jwt_with(json!(APP), now() - 660, now() - 60, APP_PRIVATE_KEY)),
            401,
            "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
        ),
        (
            Some(jwt_with(json!(APP), now() - 60, now() + 600, APP_PRIVATE_KEY)),
            401,
            "'Expiration time' claim ('exp') is too far in the future",
        ),
        (
            Some(jwt_with(json!(7777), now() - 60, now() + 540, APP_PRIVATE_KEY)),
            404,
            "Integration not found",
        ),
    ];
    for (token, status, message) in cases {
        let response = server.get("/app", token.as_deref()).await;
        assert_eq!(response.status(), status, "{message}");
        assert!(response.headers().contains_key("x-ratelimit-remaining"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["message"], message);
    }
    // Exactly ten minutes between iat and exp is allowed.
    let edge = jwt_with(json!(APP), now() - 1, now() + 599, APP_PRIVATE_KEY);
    assert_eq!(server.get("/app", Some(&edge)).await.status(), 200);
    // JWT requests are budgeted per app.
    let quota = server.sim.quota();
    assert_eq!(
        quota.token("app-42").requests,
        2,
        "the mint and the last /app"
    );
    assert_eq!(quota.token("app-42").charged, 2);
}

#[tokio::test]
async fn installation_tokens_expire_and_have_their_own_budgets() {
    let server = server_with_repos(SimConfig {
        // A closed simulator: installation tokens are accepted although not listed.
        tokens: vec!["ghp_listed".to_owned()],
        installation_token_ttl: Duration::from_secs(3600),
        ..app_config()
    })
    .await;
    server
        .sim
        .set_installation_token_ttl(Duration::from_millis(700));
    let short = mint(&server, 7).await;
    let other = mint(&server, 7).await;
    assert_ne!(short, other);

    let first = server.get("/repos/acme/api", Some(&short)).await;
    assert_eq!(first.status(), 200);
    assert_eq!(remaining(&first), 4999);
    let second = server.get("/repos/acme/api", Some(&short)).await;
    assert_eq!(remaining(&second), 4998);
    let theirs = server.get("/repos/acme/api", Some(&other)).await;
    assert_eq!(remaining(&theirs), 4999, "each token has its own budget");
    let listed = server.get("/repos/acme/api", Some("ghp_listed")).await;
    assert_eq!(remaining(&listed), 4999);
    assert_eq!(
        server
            .get("/repos/acme/api", Some("ghp_unlisted"))
            .await
            .status(),
        401
    );
    let rate: Value = server
        .get("/rate_limit", Some(&short))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rate["resources"]["core"]["used"], 2);

    let quota = server.sim.quota();
    assert_eq!(quota.token(&token_label(Some(&short))).charged, 2);
    assert_eq!(quota.token(&token_label(Some(&other))).charged, 1);

    tokio::time::sleep(Duration::from_millis(800)).await;
    let expired = server.get("/repos/acme/api", Some(&short)).await;
    assert_eq!(expired.status(), 401);
    let body: Value = expired.json().await.unwrap();
    assert_eq!(body["message"], "Bad credentials");
    // A fresh token works again, with the default lifetime restored.
    server
        .sim
        .set_installation_token_ttl(plumbline_github_sim::DEFAULT_INSTALLATION_TOKEN_TTL);
    let fresh = mint(&server, 7).await;
    let again = server.get("/repos/acme/api", Some(&fresh)).await;
    assert_eq!(again.status(), 200);
    assert!(header(&again, "x-ratelimit-limit") == "5000");
    assert_eq!(server.sim.installation_tokens_minted(), 3);
}

#[tokio::test]
async fn apps_and_installations_via_the_admin_api() {
    let mut receiver = Receiver::start().await;
    let server = Server::start(webhook_config(&receiver.url)).await;
    server
        .sim
        .create_repo("initech", "tps", RepoOptions::default());
    receiver.next().await; // repository created

    let admin = |path: &str| server.url(&format!("/_admin{path}"));
    let created = server
        .client
        .post(admin("/apps"))
        .json(&json!({ "id": 5, "slug": "sweeper", "public_key_pem": APP_PUBLIC_KEY }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let bad_key = server
        .client
        .post(admin("/apps"))
        .json(&json!({ "id": 6, "slug": "broken", "public_key_pem": "not a key" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_key.status(), 422);
    let unknown_app = server
        .client
        .post(admin("/installations"))
        .json(&json!({ "id": 50, "app_id": 99, "account": "initech" }))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_app.status(), 404);

    let installed = server
        .client
        .post(admin("/installations"))
        .json(&json!({
            "id": 50, "app_id": 5, "account": "initech",
            "repository_selection": "selected", "repositories": ["tps"]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(installed.status(), 201);
    let (event, payload) = receiver.next().await;
    assert_eq!(event, "installation");
    assert_eq!(payload["action"], "created");
    assert_eq!(payload["installation"]["id"], 50);
    assert_eq!(payload["installation"]["app_id"], 5);
    assert_eq!(payload["installation"]["account"]["login"], "initech");
    assert_eq!(payload["installation"]["repository_selection"], "selected");
    assert!(payload["installation"]["created_at"].is_i64());
    assert_eq!(payload["repositories"][0]["full_name"], "initech/tps");
    assert_eq!(payload["sender"]["login"], "sim-admin");
    let duplicate = server
        .client
        .post(admin("/installations"))
        .json(&json!({ "id": 50, "app_id": 5, "account": "initech" }))
        .send()
        .await
        .unwrap();
    assert_eq!(duplicate.status(), 422);

    let ttl = server
        .client
        .put(admin("/apps/token_ttl"))
        .json(&json!({ "seconds": 120 }))
        .send()
        .await
        .unwrap();
    assert_eq!(ttl.status(), 204);
    let token = jwt_with(json!(5), now() - 30, now() + 300, APP_PRIVATE_KEY);
    let (status, body) = request_token(&server, &token, 50, None).await;
    assert_eq!(status, 201);
    let expires = chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert!((expires - now() - 120).abs() <= 5);
    let state: Value = server
        .client
        .get(admin("/apps"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["apps"], json!([{ "id": 5, "slug": "sweeper" }]));
    assert_eq!(state["installations"][0]["repositories"], json!(["tps"]));
    assert_eq!(state["tokens_minted"], 1);
    assert_eq!(state["token_ttl_seconds"], 120.0);
}
