//! Contract tests of the container packages and artifact attestation families, checked against
//! GitHub's OpenAPI description with the shared harness (`support`). The `/users/{username}`
//! forms the document keeps (only the versions listing) are covered here; the others are
//! checked against the schemas of their `/orgs/{org}` twins in `packages.rs`, and so are the
//! listing's 400 answers (the document declares that 400 without a body; GitHub sends its
//! usual error body).

use crate::{helpers, support};

use std::collections::BTreeMap;

use base64::Engine;
use plumbline_github_sim::{AppConfig, InstallationConfig, RepositorySelection, SimConfig};
use serde_json::{json, Value};
use support::{start, Case, Checker, Server, SpecGap};

const R_PACKAGES: &str = "/orgs/{org}/packages";
const R_PACKAGE: &str = "/orgs/{org}/packages/{package_type}/{package_name}";
const R_VERSIONS: &str = "/orgs/{org}/packages/{package_type}/{package_name}/versions";
const R_VERSION: &str =
    "/orgs/{org}/packages/{package_type}/{package_name}/versions/{package_version_id}";
const R_USER_VERSIONS: &str = "/users/{username}/packages/{package_type}/{package_name}/versions";
const R_REPO_ATT: &str = "/repos/{owner}/{repo}/attestations/{subject_digest}";
const R_ORG_ATT: &str = "/orgs/{org}/attestations/{subject_digest}";

/// The routes this file covers (method, path template), as the simulator logs them.
const ROUTES: &[(&str, &str)] = &[
    ("GET", R_PACKAGES),
    ("GET", R_PACKAGE),
    ("GET", R_VERSIONS),
    ("GET", R_VERSION),
    ("DELETE", R_VERSION),
    ("GET", R_USER_VERSIONS),
    ("GET", R_REPO_ATT),
    ("GET", R_ORG_ATT),
];

/// Statuses the simulator answers like GitHub although the document does not declare them.
const SPEC_GAPS: &[SpecGap] = &[
    ("GET", R_PACKAGES, 404, "unknown organization"),
    (
        "GET",
        R_PACKAGE,
        404,
        "\"Package not found.\" (also to installation tokens)",
    ),
    ("GET", R_VERSION, 404, "unknown or deleted version"),
    (
        "DELETE",
        R_VERSION,
        400,
        "the last tagged version of a package cannot be deleted",
    ),
    ("GET", R_REPO_ATT, 404, "no attestations for the digest"),
    ("GET", R_ORG_ATT, 404, "no attestations for the digest"),
    (
        "GET",
        R_REPO_ATT,
        403,
        "installation token without the attestations permission",
    ),
    (
        "GET",
        R_ORG_ATT,
        403,
        "installation token without the attestations permission",
    ),
];

pub const DIGEST_A: &str =
    "sha256:1111111111111111111111111111111111111111111111111111111111111111";
pub const DIGEST_B: &str =
    "sha256:2222222222222222222222222222222222222222222222222222222222222222";
pub const DIGEST_C: &str =
    "sha256:3333333333333333333333333333333333333333333333333333333333333333";

/// A Sigstore bundle in the shape `actions/attest-build-provenance` produces, with an in-toto
/// statement of `predicate_type` about `digest`.
pub fn bundle(digest: &str, predicate_type: &str) -> Value {
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{
            "name": "ghcr.io/acme/api",
            "digest": { "sha256": digest.trim_start_matches("sha256:") },
        }],
        "predicateType": predicate_type,
        "predicate": {},
    });
    let payload =
        base64::engine::general_purpose::STANDARD.encode(statement.to_string().as_bytes());
    json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {
            "certificate": { "rawBytes": "MIIC" },
            "tlogEntries": [],
        },
        "dsseEnvelope": {
            "payload": payload,
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [{ "sig": "MEUCIQ" }],
        },
    })
}

/// An app installed on acme whose permissions leave out `attestations`.
const BARE_APP: u64 = 43;

fn app_config() -> SimConfig {
    let mut bare = AppConfig::new(BARE_APP, "bare", helpers::APP_PUBLIC_KEY);
    bare.permissions = BTreeMap::from([("metadata".to_owned(), "read".to_owned())]);
    SimConfig {
        apps: vec![
            AppConfig::new(42, "plumbline", helpers::APP_PUBLIC_KEY),
            bare,
        ],
        installations: vec![
            InstallationConfig {
                id: 7,
                app_id: 42,
                account: "acme".to_owned(),
                repository_selection: RepositorySelection::All,
            },
            InstallationConfig {
                id: 9,
                app_id: BARE_APP,
                account: "acme".to_owned(),
                repository_selection: RepositorySelection::All,
            },
        ],
        ..SimConfig::default()
    }
}

/// Mints an installation token with a JWT of `app`.
pub async fn mint(base: &str, app: u64, installation: u64) -> String {
    let body: Value = reqwest::Client::new()
        .post(format!(
            "{base}/app/installations/{installation}/access_tokens"
        ))
        .bearer_auth(helpers::jwt_with(
            json!(app.to_string()),
            helpers::now() - 60,
            helpers::now() + 540,
            helpers::APP_PRIVATE_KEY,
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["token"].as_str().expect("token minted").to_owned()
}

#[tokio::test]
async fn packages_and_attestations_honour_github_openapi_contract() {
    let mut c = Checker::new(SPEC_GAPS);
    c.expect_routes(ROUTES);
    let s: Server = start(app_config()).await;
    let sim = &s.sim;

    // acme/api (public) publishes ghcr.io/acme/api: A (v1), B (latest), C (untagged).
    let a = sim
        .add_container_version("acme", "api", Some("acme/svc-001"), DIGEST_A, &["v1"])
        .unwrap();
    sim.add_container_version("acme", "api", None, DIGEST_B, &["latest"])
        .unwrap();
    let untagged = sim
        .add_container_version("acme", "api", None, DIGEST_C, &[])
        .unwrap();
    // A package without a repository.
    sim.add_container_version("acme", "tools", None, DIGEST_A, &["1.0"])
        .unwrap();
    sim.add_attestation(
        "acme",
        "svc-001",
        DIGEST_A,
        bundle(DIGEST_A, "https://slsa.dev/provenance/v1"),
    )
    .unwrap();
    sim.add_attestation(
        "acme",
        "svc-001",
        DIGEST_A,
        bundle(DIGEST_A, "https://spdx.dev/Document/v2.3"),
    )
    .unwrap();
    sim.add_attestation(
        "acme",
        "open",
        DIGEST_A,
        bundle(DIGEST_A, "https://slsa.dev/provenance/v1"),
    )
    .unwrap();
    let installation = mint(&s.base, 42, 7).await;
    let bare = mint(&s.base, BARE_APP, 9).await;
    // Minting went through the app routes, which this table does not cover.
    sim.reset_request_log();

    let cases = vec![
        // --- Packages ------------------------------------------------------------------------
        Case::new(
            "list",
            "GET",
            R_PACKAGES,
            "/orgs/acme/packages?package_type=container",
            200,
        ),
        Case::new(
            "paged",
            "GET",
            R_PACKAGES,
            "/orgs/acme/packages?package_type=container&per_page=1&page=2",
            200,
        ),
        Case::new(
            "public only",
            "GET",
            R_PACKAGES,
            "/orgs/acme/packages?package_type=container&visibility=public",
            200,
        ),
        Case::new(
            "other type: empty",
            "GET",
            R_PACKAGES,
            "/orgs/acme/packages?package_type=npm",
            200,
        ),
        Case::new(
            "unknown org",
            "GET",
            R_PACKAGES,
            "/orgs/nobody/packages?package_type=container",
            404,
        ),
        Case::new(
            "linked",
            "GET",
            R_PACKAGE,
            "/orgs/acme/packages/container/api",
            200,
        ),
        Case::new(
            "unlinked",
            "GET",
            R_PACKAGE,
            "/orgs/acme/packages/container/tools",
            200,
        ),
        Case::new(
            "other type",
            "GET",
            R_PACKAGE,
            "/orgs/acme/packages/npm/api",
            404,
        ),
        Case::new(
            "unknown",
            "GET",
            R_PACKAGE,
            "/orgs/acme/packages/container/nope",
            404,
        ),
        Case::new(
            "installation token",
            "GET",
            R_PACKAGE,
            "/orgs/acme/packages/container/api",
            404,
        )
        .token(&installation),
        Case::new(
            "active",
            "GET",
            R_VERSIONS,
            "/orgs/acme/packages/container/api/versions",
            200,
        ),
        Case::new(
            "paged",
            "GET",
            R_VERSIONS,
            "/orgs/acme/packages/container/api/versions?per_page=2&page=2",
            200,
        ),
        Case::new(
            "unknown package",
            "GET",
            R_VERSIONS,
            "/orgs/acme/packages/container/nope/versions",
            404,
        ),
        Case::new(
            "user form",
            "GET",
            R_USER_VERSIONS,
            "/users/acme/packages/container/api/versions",
            200,
        ),
        Case::new(
            "user form, unknown",
            "GET",
            R_USER_VERSIONS,
            "/users/acme/packages/container/nope/versions",
            404,
        ),
        Case::new(
            "one",
            "GET",
            R_VERSION,
            &format!("/orgs/acme/packages/container/api/versions/{a}"),
            200,
        ),
        Case::new(
            "delete untagged",
            "DELETE",
            R_VERSION,
            &format!("/orgs/acme/packages/container/api/versions/{untagged}"),
            204,
        ),
        Case::new(
            "deleted one",
            "GET",
            R_VERSION,
            &format!("/orgs/acme/packages/container/api/versions/{untagged}"),
            404,
        ),
        Case::new(
            "delete again",
            "DELETE",
            R_VERSION,
            &format!("/orgs/acme/packages/container/api/versions/{untagged}"),
            404,
        ),
        Case::new(
            "deleted",
            "GET",
            R_VERSIONS,
            "/orgs/acme/packages/container/api/versions?state=deleted",
            200,
        ),
        // --- Attestations --------------------------------------------------------------------
        Case::new(
            "all",
            "GET",
            R_REPO_ATT,
            &format!("/repos/acme/svc-001/attestations/{DIGEST_A}"),
            200,
        ),
        Case::new(
            "provenance, paged",
            "GET",
            R_REPO_ATT,
            &format!(
                "/repos/acme/svc-001/attestations/{DIGEST_A}?predicate_type=provenance&per_page=1"
            ),
            200,
        ),
        Case::new(
            "installation token",
            "GET",
            R_REPO_ATT,
            &format!("/repos/acme/svc-001/attestations/{DIGEST_A}"),
            200,
        )
        .token(&installation),
        Case::new(
            "none",
            "GET",
            R_REPO_ATT,
            &format!("/repos/acme/svc-001/attestations/{DIGEST_B}"),
            404,
        ),
        Case::new(
            "no permission",
            "GET",
            R_REPO_ATT,
            &format!("/repos/acme/svc-001/attestations/{DIGEST_A}"),
            403,
        )
        .token(&bare),
        Case::new(
            "org",
            "GET",
            R_ORG_ATT,
            &format!("/orgs/acme/attestations/{DIGEST_A}"),
            200,
        ),
        Case::new(
            "org, none",
            "GET",
            R_ORG_ATT,
            &format!("/orgs/acme/attestations/{DIGEST_C}"),
            404,
        ),
        Case::new(
            "org, no permission",
            "GET",
            R_ORG_ATT,
            &format!("/orgs/acme/attestations/{DIGEST_A}"),
            403,
        )
        .token(&bare),
    ];
    for case in cases {
        c.run(&s, case).await;
    }
    // Deleting the last tagged version is refused: untag A first, then B is the last.
    sim.tag_container_version("acme", "api", DIGEST_B, "v1")
        .unwrap();
    c.run(
        &s,
        Case::new(
            "delete untagged",
            "DELETE",
            R_VERSION,
            &format!("/orgs/acme/packages/container/api/versions/{a}"),
            204,
        ),
    )
    .await;
    let b = sim.container_versions("acme", "api")[0]["id"]
        .as_u64()
        .unwrap();
    c.run(
        &s,
        Case::new(
            "last tagged",
            "DELETE",
            R_VERSION,
            &format!("/orgs/acme/packages/container/api/versions/{b}"),
            400,
        ),
    )
    .await;

    c.check_request_logs(&[&s], ROUTES);
    c.finish(ROUTES);
}
