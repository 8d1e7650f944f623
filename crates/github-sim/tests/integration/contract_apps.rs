//! Contract tests of the GitHub App routes (`/app`, `/app/installations`, the installation
//! access token route) and of `/installation/repositories` called with an installation token,
//! against GitHub's OpenAPI description, with the shared harness (`support`).

use crate::support;

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use plumbline_github_sim::{
    AppConfig, InstallationConfig, RepoOptions, RepositorySelection, SimConfig,
};
use serde_json::{json, Value};
use support::{start, Case, Checker, SpecGap};

const R_APP: &str = "/app";
const R_INSTALLATIONS: &str = "/app/installations";
const R_TOKENS: &str = "/app/installations/{installation_id}/access_tokens";
const R_INST_REPOS: &str = "/installation/repositories";

/// The routes this file covers (method, path template).
const ROUTES: &[(&str, &str)] = &[
    ("GET", R_APP),
    ("GET", R_INSTALLATIONS),
    ("POST", R_TOKENS),
    ("GET", R_INST_REPOS),
];

/// Statuses GitHub answers although the description does not declare them for the operation.
const SPEC_GAPS: &[SpecGap] = &[
    // Conditional requests: GitHub answers 304 to a matching If-None-Match on any GET.
    ("GET", R_APP, 304, "conditional GET"),
    ("GET", R_INSTALLATIONS, 304, "conditional GET"),
    // Both JWT routes answer 401 for a missing, undecodable, badly signed or expired JWT, and
    // for an installation token ("A JSON web token could not be decoded").
    (
        "GET",
        R_APP,
        401,
        "JWT missing, undecodable, badly signed or outside its lifetime",
    ),
    (
        "GET",
        R_INSTALLATIONS,
        401,
        "JWT missing, undecodable, badly signed or outside its lifetime",
    ),
    // A JWT whose `iss` names no app: 404 "Integration not found".
    (
        "GET",
        R_APP,
        404,
        "Integration not found (iss names no app)",
    ),
    (
        "GET",
        R_INSTALLATIONS,
        404,
        "Integration not found (iss names no app)",
    ),
    // An exhausted primary rate limit is answered 403 on every charged endpoint.
    ("GET", R_APP, 403, "rate limit exceeded"),
    // Unparseable JSON bodies are answered 400 "Problems parsing JSON".
    ("POST", R_TOKENS, 400, "malformed JSON body"),
];

const APP_ID: u64 = 1001;
const OTHER_APP_ID: u64 = 1002;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An RS256 JWT like the ones GitHub's documentation describes: `iat` 60 s in the past, `exp`
/// nine minutes ahead, `iss` the app id as a string.
fn jwt_with(iss: Value, iat: i64, exp: i64, key_pem: &str) -> String {
    let key = EncodingKey::from_rsa_pem(key_pem.as_bytes()).expect("test key parses");
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &json!({ "iss": iss, "iat": iat, "exp": exp }),
        &key,
    )
    .expect("jwt signs")
}

fn app_key() -> &'static str {
    include_str!("../../testdata/app-private-key.pem")
}

fn jwt(app_id: u64) -> String {
    jwt_with(
        json!(app_id.to_string()),
        now() - 60,
        now() + 540,
        app_key(),
    )
}

fn config() -> SimConfig {
    let public = include_str!("../../testdata/app-public-key.pem");
    SimConfig {
        apps: vec![
            AppConfig::new(APP_ID, "plumbline-test", public),
            AppConfig::new(OTHER_APP_ID, "other-app", public),
        ],
        installations: vec![
            InstallationConfig {
                id: 1,
                app_id: APP_ID,
                account: "acme".to_owned(),
                repository_selection: RepositorySelection::All,
            },
            InstallationConfig {
                id: 2,
                app_id: APP_ID,
                account: "acme".to_owned(),
                repository_selection: RepositorySelection::Selected(vec!["open".to_owned()]),
            },
            InstallationConfig {
                id: 3,
                app_id: OTHER_APP_ID,
                account: "globex".to_owned(),
                repository_selection: RepositorySelection::All,
            },
        ],
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn app_routes_honour_github_openapi_contract() {
    let mut c = Checker::new(SPEC_GAPS);
    c.expect_routes(ROUTES);
    let s = start(config()).await;
    let token = jwt(APP_ID);
    let other = jwt(OTHER_APP_ID);

    // GET /app
    let etag = c
        .run(
            &s,
            Case::new("authenticated app", "GET", R_APP, "/app", 200).token(&token),
        )
        .await;
    c.run(
        &s,
        Case::new("conditional", "GET", R_APP, "/app", 304)
            .token(&token)
            .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new("another app", "GET", R_APP, "/app", 200).token(&other),
    )
    .await;
    c.run(&s, Case::new("no credentials", "GET", R_APP, "/app", 401))
        .await;
    c.run(
        &s,
        Case::new("not a JWT", "GET", R_APP, "/app", 401).token("ghp_notajwt"),
    )
    .await;
    let wrong_key = jwt_with(
        json!(APP_ID.to_string()),
        now() - 60,
        now() + 540,
        include_str!("../../testdata/other-private-key.pem"),
    );
    c.run(
        &s,
        Case::new("signed with another key", "GET", R_APP, "/app", 401).token(&wrong_key),
    )
    .await;
    let expired = jwt_with(json!(APP_ID), now() - 700, now() - 100, app_key());
    c.run(
        &s,
        Case::new("expired JWT", "GET", R_APP, "/app", 401).token(&expired),
    )
    .await;
    let too_long = jwt_with(json!(APP_ID), now() - 60, now() + 1200, app_key());
    c.run(
        &s,
        Case::new("exp too far in the future", "GET", R_APP, "/app", 401).token(&too_long),
    )
    .await;
    let unknown = jwt_with(json!("999"), now() - 60, now() + 540, app_key());
    c.run(
        &s,
        Case::new("unknown app", "GET", R_APP, "/app", 404).token(&unknown),
    )
    .await;

    // GET /app/installations
    let etag = c
        .run(
            &s,
            Case::new(
                "installations",
                "GET",
                R_INSTALLATIONS,
                "/app/installations",
                200,
            )
            .token(&token),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "second page",
            "GET",
            R_INSTALLATIONS,
            "/app/installations?per_page=1&page=2",
            200,
        )
        .token(&token),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_INSTALLATIONS,
            "/app/installations",
            304,
        )
        .token(&token)
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "no credentials",
            "GET",
            R_INSTALLATIONS,
            "/app/installations",
            401,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown app",
            "GET",
            R_INSTALLATIONS,
            "/app/installations",
            404,
        )
        .token(&unknown),
    )
    .await;

    // POST /app/installations/{installation_id}/access_tokens
    let path = "/app/installations/1/access_tokens";
    c.run(
        &s,
        Case::new("all repositories, no body", "POST", R_TOKENS, path, 201).token(&token),
    )
    .await;
    c.run(
        &s,
        Case::new("limited by name", "POST", R_TOKENS, path, 201)
            .token(&token)
            .json(json!({ "repositories": ["guarded", "open"] })),
    )
    .await;
    // `create_repo` of an existing repository only returns its id.
    let guarded_id = s.sim.create_repo("acme", "guarded", RepoOptions::default());
    c.run(
        &s,
        Case::new(
            "limited by id, fewer permissions",
            "POST",
            R_TOKENS,
            path,
            201,
        )
        .token(&token)
        .json(json!({
            "repository_ids": [guarded_id],
            "permissions": { "contents": "read", "metadata": "read" }
        })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "selected installation",
            "POST",
            R_TOKENS,
            "/app/installations/2/access_tokens",
            201,
        )
        .token(&token)
        .json(json!({})),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown installation",
            "POST",
            R_TOKENS,
            "/app/installations/77/access_tokens",
            404,
        )
        .token(&token),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "installation of another app",
            "POST",
            R_TOKENS,
            "/app/installations/3/access_tokens",
            404,
        )
        .token(&token),
    )
    .await;
    c.run(
        &s,
        Case::new("`repositories` not an array", "POST", R_TOKENS, path, 422)
            .token(&token)
            .json(json!({ "repositories": "open" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "permission level outside the enum",
            "POST",
            R_TOKENS,
            path,
            422,
        )
        .token(&token)
        .json(json!({ "permissions": { "contents": "admin" } })),
    )
    .await;
    c.run(
        &s,
        Case::new("malformed JSON", "POST", R_TOKENS, path, 400)
            .token(&token)
            .raw("{not json"),
    )
    .await;
    c.run(&s, Case::new("no credentials", "POST", R_TOKENS, path, 401))
        .await;
    let installation_token = mint(&s.base, &token, 2).await;
    c.run(
        &s,
        Case::new(
            "installation token instead of JWT",
            "POST",
            R_TOKENS,
            path,
            401,
        )
        .token(&installation_token),
    )
    .await;

    // GET /installation/repositories with an installation token.
    let etag = c
        .run(
            &s,
            Case::new(
                "selected installation's repositories",
                "GET",
                R_INST_REPOS,
                "/installation/repositories",
                200,
            )
            .token(&installation_token),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_INST_REPOS,
            "/installation/repositories",
            304,
        )
        .token(&installation_token)
        .if_none_match(etag),
    )
    .await;
    let all_token = mint(&s.base, &token, 1).await;
    c.run(
        &s,
        Case::new(
            "all repositories, paginated",
            "GET",
            R_INST_REPOS,
            "/installation/repositories?per_page=2",
            200,
        )
        .token(&all_token),
    )
    .await;
    s.sim.set_installation_token_ttl(std::time::Duration::ZERO);
    let expired_token = mint(&s.base, &token, 1).await;
    c.run(
        &s,
        Case::new(
            "expired installation token",
            "GET",
            R_INST_REPOS,
            "/installation/repositories",
            401,
        )
        .token(&expired_token),
    )
    .await;

    // Exhausted budgets: the app's own (JWT requests) and an installation token's.
    s.sim.set_rate_remaining("app-1001", 0);
    c.run(
        &s,
        Case::new("app rate limited", "GET", R_APP, "/app", 403).token(&token),
    )
    .await;
    c.run(
        &s,
        Case::new("app rate limited", "POST", R_TOKENS, path, 403).token(&token),
    )
    .await;
    s.sim
        .set_rate_remaining(&plumbline_github_sim::token_label(Some(&all_token)), 0);
    c.run(
        &s,
        Case::new(
            "installation rate limited",
            "GET",
            R_INST_REPOS,
            "/installation/repositories",
            403,
        )
        .token(&all_token),
    )
    .await;

    c.check_request_logs(&[&s], ROUTES);
    c.finish(ROUTES);
}

/// Mints an installation token outside the contract run (the run checks the route itself).
async fn mint(base: &str, jwt: &str, installation: u64) -> String {
    let response = reqwest::Client::new()
        .post(format!(
            "{base}/app/installations/{installation}/access_tokens"
        ))
        .bearer_auth(jwt)
        .send()
        .await
        .expect("simulator answers");
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.expect("json");
    body["token"].as_str().expect("token").to_owned()
}
