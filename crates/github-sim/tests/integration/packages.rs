//! Container packages and artifact attestations end to end: the `/users/{username}` routes
//! (checked against the schemas of their `/orgs/{org}` twins, which GitHub's description
//! shares), tag moves and deletions as REST clients see them, pagination, the `package` and
//! `registry_package` webhooks, and what installation tokens may see.

use crate::contract_packages::{bundle, mint, DIGEST_A, DIGEST_B, DIGEST_C};
use crate::{helpers, support};

use helpers::{header, webhook_config, Receiver, Server};
use plumbline_github_sim::{
    AppConfig, InstallationConfig, RepoOptions, RepositorySelection, SimConfig,
};
use serde_json::Value;
use support::{schema_errors, Spec};

/// The 200 schema of an operation of the document.
fn schema(spec: &Spec, method: &str, route: &str) -> Value {
    spec.operation(method, route)
        .and_then(|op| op.pointer("/responses/200/content/application~1json/schema"))
        .unwrap_or_else(|| panic!("{method} {route} has a 200 schema"))
        .clone()
}

async fn get_json(server: &Server, path: &str, token: Option<&str>) -> (u16, Value, String) {
    let response = server.get(path, token).await;
    let status = response.status().as_u16();
    let link = response
        .headers()
        .get("link")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, response.json().await.unwrap_or(Value::Null), link)
}

#[tokio::test]
async fn user_routes_tags_and_deletions_match_the_org_shapes() {
    let spec = Spec::load();
    let s = Server::start(SimConfig::default()).await;
    s.sim.create_repo("acme", "api", RepoOptions::default());
    let a = s
        .sim
        .add_container_version("acme", "api", Some("acme/api"), DIGEST_A, &["v1", "latest"])
        .unwrap();
    let b = s
        .sim
        .add_container_version("acme", "api", None, DIGEST_B, &["latest"])
        .unwrap();
    assert!(s
        .sim
        .add_container_version("acme", "api", None, "sha256:nothex", &[])
        .is_err());
    assert!(s
        .sim
        .add_container_version("acme", "x", Some("acme/nope"), DIGEST_A, &[])
        .is_err());

    // The list and the package: public because acme/api is, linked to it.
    let (status, list, _) = get_json(&s, "/users/acme/packages?package_type=container", None).await;
    assert_eq!(status, 200);
    let errors = schema_errors(&schema(&spec, "GET", "/orgs/{org}/packages"), &list);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(list[0]["name"], "api");
    assert_eq!(list[0]["visibility"], "public");
    assert_eq!(list[0]["version_count"], 2);
    assert_eq!(list[0]["repository"]["full_name"], "acme/api");
    let (status, package, _) = get_json(&s, "/users/acme/packages/container/api", None).await;
    assert_eq!(status, 200);
    let errors = schema_errors(
        &schema(
            &spec,
            "GET",
            "/orgs/{org}/packages/{package_type}/{package_name}",
        ),
        &package,
    );
    assert!(errors.is_empty(), "{errors:?}");

    // Newest first; `latest` moved from A to B.
    let (_, versions, _) = get_json(&s, "/users/acme/packages/container/api/versions", None).await;
    assert_eq!(versions[0]["id"], b);
    assert_eq!(versions[0]["name"], DIGEST_B);
    assert_eq!(versions[0]["metadata"]["package_type"], "container");
    assert_eq!(
        versions[0]["metadata"]["container"]["tags"],
        serde_json::json!(["latest"])
    );
    assert_eq!(
        versions[1]["metadata"]["container"]["tags"],
        serde_json::json!(["v1"])
    );
    s.sim
        .tag_container_version("acme", "api", DIGEST_B, "v1")
        .unwrap();
    let version_route =
        "/orgs/{org}/packages/{package_type}/{package_name}/versions/{package_version_id}";
    let (status, version, _) = get_json(
        &s,
        &format!("/users/acme/packages/container/api/versions/{b}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(schema_errors(&schema(&spec, "GET", version_route), &version).is_empty());
    assert_eq!(
        version["metadata"]["container"]["tags"],
        serde_json::json!(["latest", "v1"])
    );

    // Pagination of versions carries GitHub's Link header.
    let (_, page, link) = get_json(
        &s,
        "/orgs/acme/packages/container/api/versions?per_page=1",
        None,
    )
    .await;
    assert_eq!(page.as_array().map(Vec::len), Some(1));
    assert!(link.contains("per_page=1&page=2>; rel=\"next\""), "{link}");

    // Delete A (untagged now) through the user route: 204, then 404, listed as deleted.
    let response = s
        .client
        .delete(s.url(&format!("/users/acme/packages/container/api/versions/{a}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let (status, _, _) = get_json(
        &s,
        &format!("/users/acme/packages/container/api/versions/{a}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (_, deleted, _) = get_json(
        &s,
        "/orgs/acme/packages/container/api/versions?state=deleted",
        None,
    )
    .await;
    assert_eq!(deleted[0]["id"], a);
    assert!(deleted[0]["deleted_at"].is_string());
    // B is the last tagged version: GitHub refuses, the admin method too.
    assert!(s.sim.delete_container_version("acme", "api", b).is_err());
    let (status, error, _) = {
        let response = s
            .client
            .delete(s.url(&format!("/orgs/acme/packages/container/api/versions/{b}")))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.unwrap(), ())
    };
    assert_eq!(status, 400);
    assert!(error["message"]
        .as_str()
        .unwrap()
        .starts_with("You cannot delete the last tagged version"));

    // The listing's 400s: no or an unknown package_type, a page beyond 10,000 items.
    for path in [
        "/orgs/acme/packages",
        "/orgs/acme/packages?package_type=pypi",
        "/orgs/acme/packages?package_type=container&per_page=100&page=101",
    ] {
        let (status, error, _) = get_json(&s, path, None).await;
        assert_eq!(status, 400, "{path}");
        assert!(error["message"].is_string(), "{path}: {error}");
    }
    let (status, empty, _) = get_json(&s, "/orgs/acme/packages?package_type=npm", None).await;
    assert_eq!((status, empty), (200, serde_json::json!([])));

    // Every request was counted under its route, like other endpoints.
    let counts = s.sim.request_counts();
    assert_eq!(counts["GET /users/{username}/packages"], 1);
    assert_eq!(
        counts["DELETE /users/{username}/packages/{package_type}/{package_name}/versions/{package_version_id}"],
        1
    );
}

#[tokio::test]
async fn pushes_send_package_and_registry_package_webhooks() {
    let mut receiver = Receiver::start().await;
    let s = Server::start(webhook_config(&receiver.url)).await;
    s.sim.create_repo("acme", "api", RepoOptions::default());
    let _ = receiver.next().await; // repository "created"
    let id = s
        .sim
        .add_container_version("acme", "api", Some("acme/api"), DIGEST_A, &["v1"])
        .unwrap();
    for (event, key) in [
        ("package", "package"),
        ("registry_package", "registry_package"),
    ] {
        let (name, payload) = receiver.next().await;
        assert_eq!(name, event);
        assert_eq!(payload["action"], "published");
        // GitHub's own payload of the event, from the shared examples.
        let sample: Value = serde_json::from_str(
            &std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
                    "../../../shared/github-webhooks/api.github.com/{event}/published.docker.payload.json"
                )),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(payload["repository"]["full_name"], "acme/api");
        assert!(payload["installation"]["id"].is_u64());
        assert!(payload["sender"]["login"].is_string());
        let package = &payload[key];
        assert_eq!(package["package_type"], "CONTAINER");
        assert_eq!(package["ecosystem"], "CONTAINER");
        assert_eq!(package["namespace"], "acme/api");
        assert_eq!(package["registry"]["type"], "CONTAINER");
        let version = &package["package_version"];
        assert_eq!(version["id"], id);
        assert_eq!(version["version"], DIGEST_A);
        assert_eq!(version["container_metadata"]["tag"]["name"], "v1");
        assert_eq!(version["container_metadata"]["tag"]["digest"], DIGEST_A);
        // Every key of GitHub's sample is there, at each level we fill.
        for (ours, theirs) in [
            (&payload, &sample),
            (package, &sample[key]),
            (version, &sample[key]["package_version"]),
            (
                &version["container_metadata"],
                &sample[key]["package_version"]["container_metadata"],
            ),
        ] {
            for k in theirs.as_object().unwrap().keys() {
                assert!(ours.get(k).is_some(), "{event}: missing key {k}");
            }
        }
        // The builder gives the same payload.
        let built = if event == "package" {
            s.sim
                .package_webhook_payload("published", "acme", "api", id)
        } else {
            s.sim
                .registry_package_webhook_payload("published", "acme", "api", id)
        };
        assert_eq!(built.as_ref(), Some(&payload));
    }
    s.sim
        .tag_container_version("acme", "api", DIGEST_A, "latest")
        .unwrap();
    for event in ["package", "registry_package"] {
        let (name, payload) = receiver.next().await;
        assert_eq!(name, event);
        assert_eq!(payload["action"], "updated");
        assert_eq!(
            payload[event]["package_version"]["container_metadata"]["tag"]["name"],
            "latest"
        );
    }
    // Deleting and attesting send nothing, as on GitHub.
    s.sim
        .add_container_version("acme", "api", None, DIGEST_B, &[])
        .unwrap();
    let _ = (receiver.next().await, receiver.next().await);
    let untagged = s.sim.container_versions("acme", "api")[0]["id"]
        .as_u64()
        .unwrap();
    s.sim
        .delete_container_version("acme", "api", untagged)
        .unwrap();
    s.sim
        .add_attestation(
            "acme",
            "api",
            DIGEST_A,
            bundle(DIGEST_A, "https://slsa.dev/provenance/v1"),
        )
        .unwrap();
    receiver.assert_quiet().await;
    assert!(s
        .sim
        .package_webhook_payload("published", "acme", "nope", id)
        .is_none());
}

#[tokio::test]
async fn installation_tokens_see_attestations_of_their_repositories_only() {
    let config = SimConfig {
        apps: vec![AppConfig::new(42, "plumbline", helpers::APP_PUBLIC_KEY)],
        installations: vec![InstallationConfig {
            id: 7,
            app_id: 42,
            account: "acme".to_owned(),
            repository_selection: RepositorySelection::Selected(vec!["api".to_owned()]),
        }],
        ..SimConfig::default()
    };
    let s = Server::start(config).await;
    for name in ["api", "web"] {
        s.sim.create_repo("acme", name, RepoOptions::default());
        for _ in 0..3 {
            s.sim
                .add_attestation(
                    "acme",
                    name,
                    DIGEST_A,
                    bundle(DIGEST_A, "https://slsa.dev/provenance/v1"),
                )
                .unwrap();
        }
    }
    s.sim
        .add_attestation(
            "acme",
            "web",
            DIGEST_C,
            bundle(DIGEST_C, "https://slsa.dev/provenance/v1"),
        )
        .unwrap();
    s.sim
        .add_container_version("acme", "api", Some("acme/api"), DIGEST_A, &["v1"])
        .unwrap();
    let token = mint(&s.base, 42, 7).await;

    // The organization listing leaves out acme/web, which the token cannot see.
    let (status, body, _) = get_json(
        &s,
        &format!("/orgs/acme/attestations/{DIGEST_A}"),
        Some(&token),
    )
    .await;
    assert_eq!(status, 200);
    let repo_ids: std::collections::BTreeSet<u64> = body["attestations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["repository_id"].as_u64().unwrap())
        .collect();
    assert_eq!(repo_ids.len(), 1);
    let (status, _, _) = get_json(
        &s,
        &format!("/orgs/acme/attestations/{DIGEST_C}"),
        Some(&token),
    )
    .await;
    assert_eq!(status, 404);
    // acme/web itself answers 404, as everywhere for repositories out of the token's reach.
    let (status, _, _) = get_json(
        &s,
        &format!("/repos/acme/web/attestations/{DIGEST_A}"),
        Some(&token),
    )
    .await;
    assert_eq!(status, 404);
    // Without a token all six are there; cursor pages follow `next` to the end.
    let mut path = format!("/orgs/acme/attestations/{DIGEST_A}?per_page=4");
    let mut seen = Vec::new();
    loop {
        let response = s.get(&path, None).await;
        assert_eq!(response.status().as_u16(), 200);
        let link = header(&response, "link").to_owned();
        let body: Value = response.json().await.unwrap();
        seen.extend(body["attestations"].as_array().unwrap().iter().cloned());
        let Some(next) = link
            .split(", ")
            .find(|l| l.ends_with("rel=\"next\""))
            .map(|l| {
                l.trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_owned()
            })
        else {
            break;
        };
        path = next.trim_start_matches(&s.base).to_owned();
    }
    assert_eq!(seen.len(), 6);
    // bundle_url serves the bundle.
    let url = seen[0]["bundle_url"].as_str().unwrap();
    let served: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    assert_eq!(served, seen[0]["bundle"]);
    // A filter that leaves nothing is a 404 too.
    let (status, _, _) = get_json(
        &s,
        &format!("/orgs/acme/attestations/{DIGEST_A}?predicate_type=sbom"),
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Package endpoints are not enabled for GitHub Apps, whatever the token's permissions.
    let (status, body, _) = get_json(
        &s,
        "/orgs/acme/packages?package_type=container",
        Some(&token),
    )
    .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (400, Some("Invalid argument."))
    );
    let (status, body, _) = get_json(&s, "/orgs/acme/packages/container/api", Some(&token)).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (404, Some("Package not found."))
    );
    // ...and they are charged like any other request.
    let charged = s
        .sim
        .request_log()
        .iter()
        .filter(|e| e.route.contains("/packages") && e.charged)
        .count();
    assert_eq!(charged, 2);
}
