//! Contract tests: the simulator's answers checked against GitHub's own OpenAPI description.
//!
//! The document is `shared/github-openapi/api.github.com.subset.json` beside the checkout (see
//! `SOURCE.md` there; override the location with `PLUMBLINE_GITHUB_OPENAPI`). For every route the
//! simulator serves, the test drives each status code the simulator can answer, then validates
//! the response body against the schema the document declares for the same operation (path
//! template + method) and status code. PUT bodies the test sends are validated against the
//! operation's `requestBody` schema, so the inputs are real GitHub requests (and the 422 input
//! is checked to be one GitHub's schema rejects too).
//!
//! Every problem is collected and printed; the test fails at the end if there is any. Statuses
//! the simulator answers but the document does not declare for the operation are findings too;
//! the few that real GitHub is known to answer anyway (see [`SPEC_GAPS`]) are printed but do not
//! fail the test, any other undeclared status does.

use crate::support;

use plumbline_github_sim::SimConfig;
use serde_json::{json, Value};
use support::{schema_errors, start, Case, Checker, Spec, SpecGap};

/// The routes this file covers (method, path template), as registered in `src/api.rs`. Other
/// families are covered by the other `contract_*.rs` files, with the same harness (`support`).
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/repos/{owner}/{repo}"),
    ("PATCH", "/repos/{owner}/{repo}"),
    ("GET", "/repos/{owner}/{repo}/tarball/{ref}"),
    ("GET", "/repos/{owner}/{repo}/actions/permissions/workflow"),
    ("PUT", "/repos/{owner}/{repo}/actions/permissions/workflow"),
    ("GET", "/repos/{owner}/{repo}/branches/{branch}"),
    ("GET", "/repos/{owner}/{repo}/branches/{branch}/protection"),
    ("PUT", "/repos/{owner}/{repo}/branches/{branch}/protection"),
    (
        "DELETE",
        "/repos/{owner}/{repo}/branches/{branch}/protection",
    ),
    ("GET", "/orgs/{org}/repos"),
    ("GET", "/installation/repositories"),
    ("GET", "/rate_limit"),
];

/// (method, route, status) the simulator answers although the OpenAPI document does not declare
/// the status for the operation, and real GitHub answers them all the same. They are reported
/// as findings (spec gaps) but do not fail the test; any undeclared status not listed here does.
const SPEC_GAPS: &[SpecGap] = &[
    // Conditional requests: GitHub answers 304 to a matching If-None-Match on any GET, but the
    // description only declares 304 on a few operations.
    ("GET", "/repos/{owner}/{repo}", 304, "conditional GET"),
    (
        "GET",
        "/repos/{owner}/{repo}/branches/{branch}",
        304,
        "conditional GET",
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/branches/{branch}/protection",
        304,
        "conditional GET",
    ),
    ("GET", "/orgs/{org}/repos", 304, "conditional GET"),
    (
        "GET",
        "/repos/{owner}/{repo}/actions/permissions/workflow",
        304,
        "conditional GET",
    ),
    // Unknown repository or ref: GitHub answers 404 although only the 302 is declared.
    (
        "GET",
        "/repos/{owner}/{repo}/tarball/{ref}",
        404,
        "unknown repository or ref",
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/actions/permissions/workflow",
        404,
        "unknown repository",
    ),
    (
        "PUT",
        "/repos/{owner}/{repo}/actions/permissions/workflow",
        404,
        "unknown repository",
    ),
    // A value outside the enum of the request schema is a validation failure like everywhere.
    (
        "PUT",
        "/repos/{owner}/{repo}/actions/permissions/workflow",
        422,
        "invalid value",
    ),
    // A bad token is answered 401 "Bad credentials" on every endpoint.
    ("GET", "/repos/{owner}/{repo}", 401, "bad credentials"),
    (
        "GET",
        "/repos/{owner}/{repo}/branches/{branch}",
        401,
        "bad credentials",
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/branches/{branch}/protection",
        401,
        "bad credentials",
    ),
    (
        "PUT",
        "/repos/{owner}/{repo}/branches/{branch}/protection",
        401,
        "bad credentials",
    ),
    (
        "DELETE",
        "/repos/{owner}/{repo}/branches/{branch}/protection",
        401,
        "bad credentials",
    ),
    ("GET", "/orgs/{org}/repos", 401, "bad credentials"),
    ("GET", "/rate_limit", 401, "bad credentials"),
    ("PATCH", "/repos/{owner}/{repo}", 401, "bad credentials"),
    (
        "GET",
        "/repos/{owner}/{repo}/tarball/{ref}",
        401,
        "bad credentials",
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/actions/permissions/workflow",
        401,
        "bad credentials",
    ),
    (
        "PUT",
        "/repos/{owner}/{repo}/actions/permissions/workflow",
        401,
        "bad credentials",
    ),
    // An exhausted primary rate limit is answered 403 on every charged endpoint.
    (
        "GET",
        "/repos/{owner}/{repo}/branches/{branch}",
        403,
        "rate limit exceeded",
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/branches/{branch}/protection",
        403,
        "rate limit exceeded",
    ),
    ("GET", "/orgs/{org}/repos", 403, "rate limit exceeded"),
    (
        "GET",
        "/repos/{owner}/{repo}/tarball/{ref}",
        403,
        "rate limit exceeded",
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/actions/permissions/workflow",
        403,
        "rate limit exceeded",
    ),
    (
        "PUT",
        "/repos/{owner}/{repo}/actions/permissions/workflow",
        403,
        "rate limit exceeded",
    ),
    // Unparseable JSON bodies are answered 400 "Problems parsing JSON".
    (
        "PUT",
        "/repos/{owner}/{repo}/branches/{branch}/protection",
        400,
        "malformed JSON body",
    ),
    ("PATCH", "/repos/{owner}/{repo}", 400, "malformed JSON body"),
    (
        "PUT",
        "/repos/{owner}/{repo}/actions/permissions/workflow",
        400,
        "malformed JSON body",
    ),
    // Unknown organization.
    ("GET", "/orgs/{org}/repos", 404, "unknown organization"),
    // Unknown repository / "Branch not protected".
    (
        "DELETE",
        "/repos/{owner}/{repo}/branches/{branch}/protection",
        404,
        "not found / branch not protected",
    ),
];

// ---------------------------------------------------------------------------------------------
// Request bodies (GitHub's "update branch protection" shape)
// ---------------------------------------------------------------------------------------------

/// A minimal valid PUT: one approving review, admins enforced, nothing else.
fn minimal_protection() -> Value {
    json!({
        "required_status_checks": null,
        "enforce_admins": true,
        "required_pull_request_reviews": { "required_approving_review_count": 1 },
        "restrictions": null
    })
}

/// A PUT exercising every part of the response: status checks (with app), review dismissal and
/// bypass allowances, push restrictions and all the flags.
fn full_protection() -> Value {
    json!({
        "required_status_checks": {
            "strict": true,
            "contexts": [],
            "checks": [ { "context": "ci/build", "app_id": 15368 }, { "context": "ci/lint" } ]
        },
        "enforce_admins": false,
        "required_pull_request_reviews": {
            "dismissal_restrictions": { "users": ["octocat"], "teams": ["core"], "apps": [] },
            "dismiss_stale_reviews": true,
            "require_code_owner_reviews": true,
            "required_approving_review_count": 2,
            "require_last_push_approval": true,
            "bypass_pull_request_allowances": { "users": ["release-bot"], "teams": [], "apps": ["dependabot"] }
        },
        "restrictions": { "users": ["octocat"], "teams": ["core"], "apps": ["ci-app"] },
        "required_linear_history": true,
        "allow_force_pushes": false,
        "allow_deletions": false,
        "block_creations": true,
        "required_conversation_resolution": true,
        "lock_branch": false,
        "allow_fork_syncing": true
    })
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

const R_REPO: &str = "/repos/{owner}/{repo}";
const R_BRANCH: &str = "/repos/{owner}/{repo}/branches/{branch}";
const R_PROT: &str = "/repos/{owner}/{repo}/branches/{branch}/protection";
const R_ORG: &str = "/orgs/{org}/repos";
const R_INST: &str = "/installation/repositories";
const R_RATE: &str = "/rate_limit";
const R_TAR: &str = "/repos/{owner}/{repo}/tarball/{ref}";
const R_WF: &str = "/repos/{owner}/{repo}/actions/permissions/workflow";

#[tokio::test]
async fn simulator_honours_github_openapi_contract() {
    let mut c = Checker::new(SPEC_GAPS);
    c.expect_routes(ROUTES);

    // --- Main simulator: open access, default rate limit. ------------------------------------
    let s = start(SimConfig::default()).await;

    // GET /repos/{owner}/{repo}
    let etag = c
        .run(
            &s,
            Case::new("protected repo", "GET", R_REPO, "/repos/acme/guarded", 200),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "unprotected private repo",
            "GET",
            R_REPO,
            "/repos/acme/open",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new("conditional", "GET", R_REPO, "/repos/acme/guarded", 304).if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new("unknown repo", "GET", R_REPO, "/repos/acme/nope", 404),
    )
    .await;

    // PATCH /repos/{owner}/{repo}
    let patch = json!({
        "description": "Payments API",
        "has_issues": false,
        "delete_branch_on_merge": true,
        "allow_forking": false,
        "homepage": "https://example.com",
        "security_and_analysis": {
            "secret_scanning": { "status": "enabled" },
            "secret_scanning_push_protection": { "status": "enabled" }
        }
    });
    c.run(
        &s,
        Case::new("update settings", "PATCH", R_REPO, "/repos/acme/open", 200).json(patch.clone()),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "repeat (no change)",
            "PATCH",
            R_REPO,
            "/repos/acme/open",
            200,
        )
        .json(patch.clone()),
    )
    .await;
    c.run(
        &s,
        Case::new("repo after PATCH", "GET", R_REPO, "/repos/acme/open", 200),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "`has_issues` not a boolean",
            "PATCH",
            R_REPO,
            "/repos/acme/open",
            422,
        )
        .json(json!({ "has_issues": "yes" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "`description` not a string",
            "PATCH",
            R_REPO,
            "/repos/acme/open",
            422,
        )
        .json(json!({ "description": 5 })),
    )
    .await;
    c.run(
        &s,
        Case::new("malformed JSON", "PATCH", R_REPO, "/repos/acme/open", 400).raw("{not json"),
    )
    .await;
    c.run(
        &s,
        Case::new("unknown repo", "PATCH", R_REPO, "/repos/acme/nope", 404).json(patch),
    )
    .await;

    // GET /repos/{owner}/{repo}/tarball/{ref}
    s.sim
        .put_file("acme", "open", "main", "README.md", b"hello".to_vec())
        .expect("put_file");
    c.run(
        &s,
        Case::new("branch", "GET", R_TAR, "/repos/acme/open/tarball/main", 302),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "empty branch",
            "GET",
            R_TAR,
            "/repos/acme/guarded/tarball/main",
            302,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown ref",
            "GET",
            R_TAR,
            "/repos/acme/open/tarball/nope",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "GET",
            R_TAR,
            "/repos/acme/nope/tarball/main",
            404,
        ),
    )
    .await;

    // GET / PUT /repos/{owner}/{repo}/actions/permissions/workflow
    let etag = c
        .run(
            &s,
            Case::new(
                "default permissions",
                "GET",
                R_WF,
                "/repos/acme/open/actions/permissions/workflow",
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_WF,
            "/repos/acme/open/actions/permissions/workflow",
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "GET",
            R_WF,
            "/repos/acme/nope/actions/permissions/workflow",
            404,
        ),
    )
    .await;
    let read_only = json!({ "default_workflow_permissions": "read", "can_approve_pull_request_reviews": false });
    c.run(
        &s,
        Case::new(
            "read only",
            "PUT",
            R_WF,
            "/repos/acme/open/actions/permissions/workflow",
            204,
        )
        .json(read_only.clone()),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "partial body",
            "PUT",
            R_WF,
            "/repos/acme/open/actions/permissions/workflow",
            204,
        )
        .json(json!({ "can_approve_pull_request_reviews": true })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "read back",
            "GET",
            R_WF,
            "/repos/acme/open/actions/permissions/workflow",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "value outside the enum",
            "PUT",
            R_WF,
            "/repos/acme/open/actions/permissions/workflow",
            422,
        )
        .json(json!({ "default_workflow_permissions": "admin" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "malformed JSON",
            "PUT",
            R_WF,
            "/repos/acme/open/actions/permissions/workflow",
            400,
        )
        .raw("{not json"),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "PUT",
            R_WF,
            "/repos/acme/nope/actions/permissions/workflow",
            404,
        )
        .json(read_only.clone()),
    )
    .await;

    // GET /repos/{owner}/{repo}/branches/{branch}
    let etag = c
        .run(
            &s,
            Case::new(
                "protected branch",
                "GET",
                R_BRANCH,
                "/repos/acme/guarded/branches/main",
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "unprotected branch",
            "GET",
            R_BRANCH,
            "/repos/acme/open/branches/main",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_BRANCH,
            "/repos/acme/guarded/branches/main",
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "GET",
            R_BRANCH,
            "/repos/acme/nope/branches/main",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown branch",
            "GET",
            R_BRANCH,
            "/repos/acme/guarded/branches/nope",
            404,
        ),
    )
    .await;

    // GET /repos/{owner}/{repo}/branches/{branch}/protection
    let etag = c
        .run(
            &s,
            Case::new(
                "typical protection",
                "GET",
                R_PROT,
                "/repos/acme/guarded/branches/main/protection",
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_PROT,
            "/repos/acme/guarded/branches/main/protection",
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unprotected branch",
            "GET",
            R_PROT,
            "/repos/acme/open/branches/main/protection",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "GET",
            R_PROT,
            "/repos/acme/nope/branches/main/protection",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown branch",
            "GET",
            R_PROT,
            "/repos/acme/guarded/branches/nope/protection",
            404,
        ),
    )
    .await;

    // PUT /repos/{owner}/{repo}/branches/{branch}/protection
    c.run(
        &s,
        Case::new(
            "protect unprotected branch (minimal)",
            "PUT",
            R_PROT,
            "/repos/acme/open/branches/main/protection",
            200,
        )
        .json(minimal_protection()),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "replace protection (full)",
            "PUT",
            R_PROT,
            "/repos/acme/guarded/branches/main/protection",
            200,
        )
        .json(full_protection()),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "full protection read back",
            "GET",
            R_PROT,
            "/repos/acme/guarded/branches/main/protection",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "protected branch after full PUT",
            "GET",
            R_BRANCH,
            "/repos/acme/guarded/branches/main",
            200,
        ),
    )
    .await;
    let mut missing_restrictions = minimal_protection();
    missing_restrictions
        .as_object_mut()
        .unwrap()
        .remove("restrictions");
    c.run(
        &s,
        Case::new(
            "missing `restrictions`",
            "PUT",
            R_PROT,
            "/repos/acme/open/branches/main/protection",
            422,
        )
        .json(missing_restrictions),
    )
    .await;
    let mut wrong_type = minimal_protection();
    wrong_type["enforce_admins"] = json!("yes");
    c.run(
        &s,
        Case::new(
            "`enforce_admins` not a boolean",
            "PUT",
            R_PROT,
            "/repos/acme/open/branches/main/protection",
            422,
        )
        .json(wrong_type),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "malformed JSON",
            "PUT",
            R_PROT,
            "/repos/acme/open/branches/main/protection",
            400,
        )
        .raw("{not json"),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "PUT",
            R_PROT,
            "/repos/acme/nope/branches/main/protection",
            404,
        )
        .json(minimal_protection()),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown branch",
            "PUT",
            R_PROT,
            "/repos/acme/open/branches/nope/protection",
            404,
        )
        .json(minimal_protection()),
    )
    .await;

    // DELETE /repos/{owner}/{repo}/branches/{branch}/protection
    c.run(
        &s,
        Case::new(
            "remove protection",
            "DELETE",
            R_PROT,
            "/repos/acme/open/branches/main/protection",
            204,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "branch not protected",
            "DELETE",
            R_PROT,
            "/repos/acme/open/branches/main/protection",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "DELETE",
            R_PROT,
            "/repos/acme/nope/branches/main/protection",
            404,
        ),
    )
    .await;

    // GET /orgs/{org}/repos
    let etag = c
        .run(
            &s,
            Case::new("all org repos", "GET", R_ORG, "/orgs/acme/repos", 200),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "second page",
            "GET",
            R_ORG,
            "/orgs/acme/repos?per_page=2&page=2",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "private only",
            "GET",
            R_ORG,
            "/orgs/acme/repos?type=private",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new("conditional", "GET", R_ORG, "/orgs/acme/repos", 304).if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new("unknown org", "GET", R_ORG, "/orgs/nobody/repos", 404),
    )
    .await;

    // GET /installation/repositories
    let etag = c
        .run(
            &s,
            Case::new(
                "all repos",
                "GET",
                R_INST,
                "/installation/repositories",
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "second page",
            "GET",
            R_INST,
            "/installation/repositories?per_page=2&page=2",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_INST,
            "/installation/repositories",
            304,
        )
        .if_none_match(etag),
    )
    .await;

    // GET /rate_limit
    let etag = c
        .run(&s, Case::new("budget", "GET", R_RATE, "/rate_limit", 200))
        .await;
    c.run(
        &s,
        Case::new("conditional", "GET", R_RATE, "/rate_limit", 304).if_none_match(etag),
    )
    .await;

    // --- Authenticating simulator: 401 for missing and bad credentials. ----------------------
    let auth = start(SimConfig {
        tokens: vec!["good-token".to_owned()],
        ..SimConfig::default()
    })
    .await;
    c.run(
        &auth,
        Case::new(
            "valid token",
            "GET",
            R_INST,
            "/installation/repositories",
            200,
        )
        .token("good-token"),
    )
    .await;
    c.run(
        &auth,
        Case::new("no token", "GET", R_INST, "/installation/repositories", 401),
    )
    .await;
    c.run(
        &auth,
        Case::new(
            "bad token",
            "GET",
            R_INST,
            "/installation/repositories",
            401,
        )
        .token("bad"),
    )
    .await;
    c.run(
        &auth,
        Case::new("bad token", "GET", R_REPO, "/repos/acme/guarded", 401).token("bad"),
    )
    .await;
    c.run(
        &auth,
        Case::new(
            "bad token",
            "GET",
            R_BRANCH,
            "/repos/acme/guarded/branches/main",
            401,
        )
        .token("bad"),
    )
    .await;
    c.run(
        &auth,
        Case::new(
            "bad token",
            "GET",
            R_PROT,
            "/repos/acme/guarded/branches/main/protection",
            401,
        )
        .token("bad"),
    )
    .await;
    c.run(
        &auth,
        Case::new(
            "bad token",
            "PUT",
            R_PROT,
            "/repos/acme/guarded/branches/main/protection",
            401,
        )
        .token("bad")
        .json(minimal_protection()),
    )
    .await;
    c.run(
        &auth,
        Case::new(
            "bad token",
            "DELETE",
            R_PROT,
            "/repos/acme/guarded/branches/main/protection",
            401,
        )
        .token("bad"),
    )
    .await;
    c.run(
        &auth,
        Case::new("bad token", "GET", R_ORG, "/orgs/acme/repos", 401).token("bad"),
    )
    .await;
    c.run(
        &auth,
        Case::new("bad token", "GET", R_RATE, "/rate_limit", 401).token("bad"),
    )
    .await;
    c.run(
        &auth,
        Case::new("bad token", "PATCH", R_REPO, "/repos/acme/guarded", 401)
            .token("bad")
            .json(json!({ "has_issues": false })),
    )
    .await;
    c.run(
        &auth,
        Case::new(
            "bad token",
            "GET",
            R_TAR,
            "/repos/acme/guarded/tarball/main",
            401,
        )
        .token("bad"),
    )
    .await;
    c.run(
        &auth,
        Case::new(
            "bad token",
            "GET",
            R_WF,
            "/repos/acme/guarded/actions/permissions/workflow",
            401,
        )
        .token("bad"),
    )
    .await;
    c.run(
        &auth,
        Case::new(
            "bad token",
            "PUT",
            R_WF,
            "/repos/acme/guarded/actions/permissions/workflow",
            401,
        )
        .token("bad")
        .json(read_only.clone()),
    )
    .await;

    // --- Exhausted simulator: 403 rate limit exceeded (rate_limit itself is free). -----------
    let exhausted = start(SimConfig::default()).await;
    exhausted.sim.set_rate_limit(0);
    c.run(
        &exhausted,
        Case::new("rate limited", "GET", R_REPO, "/repos/acme/guarded", 403),
    )
    .await;
    c.run(
        &exhausted,
        Case::new(
            "rate limited",
            "GET",
            R_BRANCH,
            "/repos/acme/guarded/branches/main",
            403,
        ),
    )
    .await;
    c.run(
        &exhausted,
        Case::new(
            "rate limited",
            "GET",
            R_PROT,
            "/repos/acme/guarded/branches/main/protection",
            403,
        ),
    )
    .await;
    c.run(
        &exhausted,
        Case::new(
            "rate limited",
            "PUT",
            R_PROT,
            "/repos/acme/guarded/branches/main/protection",
            403,
        )
        .json(minimal_protection()),
    )
    .await;
    c.run(
        &exhausted,
        Case::new(
            "rate limited",
            "DELETE",
            R_PROT,
            "/repos/acme/guarded/branches/main/protection",
            403,
        ),
    )
    .await;
    c.run(
        &exhausted,
        Case::new("rate limited", "GET", R_ORG, "/orgs/acme/repos", 403),
    )
    .await;
    c.run(
        &exhausted,
        Case::new(
            "rate limited",
            "GET",
            R_INST,
            "/installation/repositories",
            403,
        ),
    )
    .await;
    c.run(
        &exhausted,
        Case::new("rate limited", "PATCH", R_REPO, "/repos/acme/guarded", 403)
            .json(json!({ "has_issues": false })),
    )
    .await;
    c.run(
        &exhausted,
        Case::new(
            "rate limited",
            "GET",
            R_TAR,
            "/repos/acme/guarded/tarball/main",
            403,
        ),
    )
    .await;
    c.run(
        &exhausted,
        Case::new(
            "rate limited",
            "GET",
            R_WF,
            "/repos/acme/guarded/actions/permissions/workflow",
            403,
        ),
    )
    .await;
    c.run(
        &exhausted,
        Case::new(
            "rate limited",
            "PUT",
            R_WF,
            "/repos/acme/guarded/actions/permissions/workflow",
            403,
        )
        .json(read_only),
    )
    .await;
    c.run(
        &exhausted,
        Case::new(
            "still answered when exhausted",
            "GET",
            R_RATE,
            "/rate_limit",
            200,
        ),
    )
    .await;

    // --- Coverage. -----------------------------------------------------------------------------
    c.check_request_logs(&[&s, &auth, &exhausted], ROUTES);
    c.finish(ROUTES);
}

/// Guards against a vacuous contract run: the converted schemas must still reject wrong shapes,
/// and the `nullable` conversion must admit null exactly where the document allows it.
#[test]
fn schema_checks_are_not_vacuous() {
    let spec = Spec::load();
    let repo = spec
        .operation("GET", R_REPO)
        .and_then(|op| op.pointer("/responses/200/content/application~1json/schema"))
        .expect("repos/get 200 schema");
    let errors = schema_errors(repo, &json!({}));
    assert!(
        errors.iter().any(|e| e.contains("keyword `required`")),
        "an empty object must violate the repository schema: {errors:?}"
    );
    let errors = schema_errors(repo, &json!({ "id": "not-a-number" }));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("pointer `/id` keyword `type`")),
        "a string id must violate the repository schema: {errors:?}"
    );

    let nullable = json!({ "type": "string", "nullable": true, "enum": ["a"] });
    assert!(schema_errors(&nullable, &json!(null)).is_empty());
    assert!(schema_errors(&nullable, &json!("a")).is_empty());
    assert!(!schema_errors(&nullable, &json!("b")).is_empty());
    assert!(!schema_errors(&json!({ "type": "string" }), &json!(null)).is_empty());
    let composed =
        json!({ "nullable": true, "allOf": [ { "type": "object", "required": ["x"] } ] });
    assert!(schema_errors(&composed, &json!(null)).is_empty());
    assert!(!schema_errors(&composed, &json!({})).is_empty());
    // Property names that happen to be keywords are left alone.
    let props = json!({ "type": "object", "properties": { "nullable": { "type": "boolean" } } });
    assert!(!schema_errors(&props, &json!({ "nullable": "x" })).is_empty());
}
