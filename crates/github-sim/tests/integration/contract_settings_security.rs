//! Contract tests of the repository settings and security families against GitHub's OpenAPI
//! description (same harness as `contract.rs`, see `support`): Actions permissions, repository
//! security advisories, issues and comments, rulesets and branch rules, private vulnerability
//! reporting, collaborators, releases and assets, Dependabot alerts and security updates.
//!
//! Every route is driven to each status the simulator answers where the input is a real GitHub
//! request: successes, conditional GETs (304), unknown repository or object (404), bodies
//! GitHub's schema rejects (422) or that are not JSON (400), the 409 and 410 states, bad
//! credentials (401) and an exhausted rate limit (403). Statuses GitHub answers that the
//! document does not declare are listed in [`SPEC_GAPS`] with the reason.
//!
//! Some GitHub answers cannot be checked here without weakening the harness, and are covered
//! by `tests/settings_security.rs` instead: 422s for bodies that are valid per the schema but
//! refused for the state they meet (duplicate release tag or asset name, invalid advisory state
//! transition, duplicate ruleset name, access level on a public repository), the JSON 404 of an
//! unknown repository on the two Dependabot check endpoints, whose declared 404 has no body, and
//! the JSON 401 of "get a release", whose declared 401 has no body either.

use crate::support;

use plumbline_github_sim::{Affiliation, Permission, SimConfig};
use serde_json::{json, Value};
use support::{start, Case, Checker, SpecGap};

const R_PERMS: &str = "/repos/{owner}/{repo}/actions/permissions";
const R_SELECTED: &str = "/repos/{owner}/{repo}/actions/permissions/selected-actions";
const R_ACCESS: &str = "/repos/{owner}/{repo}/actions/permissions/access";
const R_ADVS: &str = "/repos/{owner}/{repo}/security-advisories";
const R_ADV: &str = "/repos/{owner}/{repo}/security-advisories/{ghsa_id}";
const R_ISSUES: &str = "/repos/{owner}/{repo}/issues";
const R_ISSUE: &str = "/repos/{owner}/{repo}/issues/{issue_number}";
const R_COMMENTS: &str = "/repos/{owner}/{repo}/issues/{issue_number}/comments";
const R_RULESETS: &str = "/repos/{owner}/{repo}/rulesets";
const R_RULES: &str = "/repos/{owner}/{repo}/rules/branches/{branch}";
const R_PVR: &str = "/repos/{owner}/{repo}/private-vulnerability-reporting";
const R_COLLAB: &str = "/repos/{owner}/{repo}/collaborators";
const R_RELEASES: &str = "/repos/{owner}/{repo}/releases";
const R_RELEASE: &str = "/repos/{owner}/{repo}/releases/{release_id}";
const R_ASSETS: &str = "/repos/{owner}/{repo}/releases/{release_id}/assets";
const R_ALERTS: &str = "/repos/{owner}/{repo}/vulnerability-alerts";
const R_FIXES: &str = "/repos/{owner}/{repo}/automated-security-fixes";

/// The routes this file covers, as registered by the family modules.
const ROUTES: &[(&str, &str)] = &[
    ("GET", R_PERMS),
    ("PUT", R_PERMS),
    ("GET", R_SELECTED),
    ("PUT", R_SELECTED),
    ("GET", R_ACCESS),
    ("PUT", R_ACCESS),
    ("GET", R_ADVS),
    ("POST", R_ADVS),
    ("GET", R_ADV),
    ("PATCH", R_ADV),
    ("GET", R_ISSUES),
    ("POST", R_ISSUES),
    ("GET", R_ISSUE),
    ("PATCH", R_ISSUE),
    ("GET", R_COMMENTS),
    ("POST", R_COMMENTS),
    ("GET", R_RULESETS),
    ("POST", R_RULESETS),
    ("GET", R_RULES),
    ("GET", R_PVR),
    ("PUT", R_PVR),
    ("DELETE", R_PVR),
    ("GET", R_COLLAB),
    ("GET", R_RELEASES),
    ("POST", R_RELEASES),
    ("GET", R_RELEASE),
    ("PATCH", R_RELEASE),
    ("DELETE", R_RELEASE),
    ("GET", R_ASSETS),
    ("POST", R_ASSETS),
    ("GET", R_ALERTS),
    ("PUT", R_ALERTS),
    ("DELETE", R_ALERTS),
    ("GET", R_FIXES),
    ("PUT", R_FIXES),
    ("DELETE", R_FIXES),
];

const COND: &str = "conditional GET: GitHub answers 304 to a matching If-None-Match on any GET";
const NO_REPO: &str = "unknown repository";
const BAD_TOKEN: &str = "bad credentials are answered 401 on every endpoint";
const LIMITED: &str = "an exhausted primary rate limit is answered 403 on every charged endpoint";
const MALFORMED: &str = "unparseable JSON bodies are answered 400 \"Problems parsing JSON\"";
const INVALID: &str = "a body the request schema rejects is a 422 validation failure";

/// Statuses GitHub answers that the document does not declare for the operation.
const SPEC_GAPS: &[SpecGap] = &[
    // Conditional GETs.
    ("GET", R_PERMS, 304, COND),
    ("GET", R_SELECTED, 304, COND),
    ("GET", R_ACCESS, 304, COND),
    ("GET", R_ADVS, 304, COND),
    ("GET", R_ADV, 304, COND),
    ("GET", R_ISSUES, 304, COND),
    ("GET", R_COMMENTS, 304, COND),
    ("GET", R_RULESETS, 304, COND),
    ("GET", R_RULES, 304, COND),
    ("GET", R_PVR, 304, COND),
    ("GET", R_COLLAB, 304, COND),
    ("GET", R_RELEASES, 304, COND),
    ("GET", R_RELEASE, 304, COND),
    ("GET", R_ASSETS, 304, COND),
    ("GET", R_FIXES, 304, COND),
    // The allow-list only applies while `allowed_actions` is "selected"; otherwise GitHub
    // answers 409 Conflict (Minder's `allowed_selected_actions` rule type falls back on it).
    (
        "GET",
        R_SELECTED,
        409,
        "allowed_actions is not \"selected\"",
    ),
    (
        "PUT",
        R_SELECTED,
        409,
        "allowed_actions is not \"selected\"",
    ),
    // The access level exists for private repositories only.
    (
        "GET",
        R_ACCESS,
        422,
        "public repository: the access level only applies to private ones",
    ),
    ("PUT", R_ACCESS, 422, INVALID),
    ("PUT", R_PERMS, 422, INVALID),
    ("PUT", R_SELECTED, 422, INVALID),
    ("PATCH", R_RELEASE, 422, INVALID),
    ("POST", R_RULESETS, 400, MALFORMED),
    ("PATCH", R_ISSUE, 400, MALFORMED),
    ("POST", R_COMMENTS, 400, MALFORMED),
    ("POST", R_ADVS, 400, MALFORMED),
    ("PATCH", R_ADV, 400, MALFORMED),
    ("POST", R_RELEASES, 400, MALFORMED),
    ("PATCH", R_RELEASE, 400, MALFORMED),
    ("PUT", R_PERMS, 400, MALFORMED),
    ("PUT", R_SELECTED, 400, MALFORMED),
    ("PUT", R_ACCESS, 400, MALFORMED),
    // Unknown repository (or object) where only successes are declared.
    ("GET", R_PERMS, 404, NO_REPO),
    ("PUT", R_PERMS, 404, NO_REPO),
    ("GET", R_SELECTED, 404, NO_REPO),
    ("PUT", R_SELECTED, 404, NO_REPO),
    ("GET", R_ACCESS, 404, NO_REPO),
    ("PUT", R_ACCESS, 404, NO_REPO),
    ("GET", R_RULES, 404, NO_REPO),
    ("GET", R_PVR, 404, NO_REPO),
    ("PUT", R_PVR, 404, NO_REPO),
    ("DELETE", R_PVR, 404, NO_REPO),
    ("GET", R_RELEASE, 404, "unknown repository or release"),
    ("GET", R_ASSETS, 404, "unknown repository or release"),
    ("POST", R_ASSETS, 404, "unknown release"),
    ("PUT", R_ALERTS, 404, NO_REPO),
    ("DELETE", R_ALERTS, 404, NO_REPO),
    ("PUT", R_FIXES, 404, NO_REPO),
    ("DELETE", R_FIXES, 404, NO_REPO),
    // Bad credentials.
    ("GET", R_PERMS, 401, BAD_TOKEN),
    ("PUT", R_PERMS, 401, BAD_TOKEN),
    ("GET", R_SELECTED, 401, BAD_TOKEN),
    ("PUT", R_SELECTED, 401, BAD_TOKEN),
    ("GET", R_ACCESS, 401, BAD_TOKEN),
    ("PUT", R_ACCESS, 401, BAD_TOKEN),
    ("GET", R_ADVS, 401, BAD_TOKEN),
    ("POST", R_ADVS, 401, BAD_TOKEN),
    ("GET", R_ADV, 401, BAD_TOKEN),
    ("PATCH", R_ADV, 401, BAD_TOKEN),
    ("GET", R_ISSUES, 401, BAD_TOKEN),
    ("POST", R_ISSUES, 401, BAD_TOKEN),
    ("GET", R_ISSUE, 401, BAD_TOKEN),
    ("PATCH", R_ISSUE, 401, BAD_TOKEN),
    ("GET", R_COMMENTS, 401, BAD_TOKEN),
    ("POST", R_COMMENTS, 401, BAD_TOKEN),
    ("GET", R_RULESETS, 401, BAD_TOKEN),
    ("POST", R_RULESETS, 401, BAD_TOKEN),
    ("GET", R_RULES, 401, BAD_TOKEN),
    ("GET", R_PVR, 401, BAD_TOKEN),
    ("PUT", R_PVR, 401, BAD_TOKEN),
    ("DELETE", R_PVR, 401, BAD_TOKEN),
    ("GET", R_COLLAB, 401, BAD_TOKEN),
    ("GET", R_RELEASES, 401, BAD_TOKEN),
    ("POST", R_RELEASES, 401, BAD_TOKEN),
    ("PATCH", R_RELEASE, 401, BAD_TOKEN),
    ("DELETE", R_RELEASE, 401, BAD_TOKEN),
    ("GET", R_ASSETS, 401, BAD_TOKEN),
    ("POST", R_ASSETS, 401, BAD_TOKEN),
    ("GET", R_ALERTS, 401, BAD_TOKEN),
    ("PUT", R_ALERTS, 401, BAD_TOKEN),
    ("DELETE", R_ALERTS, 401, BAD_TOKEN),
    ("GET", R_FIXES, 401, BAD_TOKEN),
    ("PUT", R_FIXES, 401, BAD_TOKEN),
    ("DELETE", R_FIXES, 401, BAD_TOKEN),
    // Exhausted rate limit.
    ("GET", R_PERMS, 403, LIMITED),
    ("PUT", R_PERMS, 403, LIMITED),
    ("GET", R_SELECTED, 403, LIMITED),
    ("PUT", R_SELECTED, 403, LIMITED),
    ("GET", R_ACCESS, 403, LIMITED),
    ("PUT", R_ACCESS, 403, LIMITED),
    ("GET", R_ADVS, 403, LIMITED),
    ("GET", R_ISSUES, 403, LIMITED),
    ("GET", R_ISSUE, 403, LIMITED),
    ("GET", R_COMMENTS, 403, LIMITED),
    ("GET", R_RULESETS, 403, LIMITED),
    ("POST", R_RULESETS, 403, LIMITED),
    ("GET", R_RULES, 403, LIMITED),
    ("GET", R_PVR, 403, LIMITED),
    ("PUT", R_PVR, 403, LIMITED),
    ("DELETE", R_PVR, 403, LIMITED),
    ("GET", R_COLLAB, 403, LIMITED),
    ("GET", R_RELEASES, 403, LIMITED),
    ("POST", R_RELEASES, 403, LIMITED),
    ("GET", R_RELEASE, 403, LIMITED),
    ("PATCH", R_RELEASE, 403, LIMITED),
    ("DELETE", R_RELEASE, 403, LIMITED),
    ("GET", R_ASSETS, 403, LIMITED),
    ("POST", R_ASSETS, 403, LIMITED),
    ("GET", R_ALERTS, 403, LIMITED),
    ("PUT", R_ALERTS, 403, LIMITED),
    ("DELETE", R_ALERTS, 403, LIMITED),
    ("GET", R_FIXES, 403, LIMITED),
    ("PUT", R_FIXES, 403, LIMITED),
    ("DELETE", R_FIXES, 403, LIMITED),
];

// ---------------------------------------------------------------------------------------------
// Request bodies (real GitHub requests)
// ---------------------------------------------------------------------------------------------

fn advisory_body() -> Value {
    json!({
        "summary": "Prototype pollution in the config loader",
        "description": "Merging untrusted YAML can set properties on Object.prototype.",
        "severity": "high",
        "cve_id": null,
        "vulnerabilities": [{
            "package": { "ecosystem": "npm", "name": "acme-config" },
            "vulnerable_version_range": "< 2.4.1",
            "patched_versions": "2.4.1",
            "vulnerable_functions": ["merge"]
        }],
        "cwe_ids": ["CWE-1321", "CWE-20"],
        "credits": [{ "login": "octocat", "type": "finder" }]
    })
}

fn ruleset_body() -> Value {
    json!({
        "name": "protect default branch",
        "target": "branch",
        "enforcement": "active",
        "bypass_actors": [{ "actor_id": 5, "actor_type": "RepositoryRole", "bypass_mode": "always" }],
        "conditions": { "ref_name": { "include": ["~DEFAULT_BRANCH", "refs/heads/release/*"], "exclude": [] } },
        "rules": [
            { "type": "deletion" },
            { "type": "non_fast_forward" },
            { "type": "pull_request", "parameters": {
                "dismiss_stale_reviews_on_push": true,
                "require_code_owner_review": false,
                "require_last_push_approval": false,
                "required_approving_review_count": 1,
                "required_review_thread_resolution": true
            } },
            { "type": "required_status_checks", "parameters": {
                "strict_required_status_checks_policy": true,
                "required_status_checks": [{ "context": "ci/build" }]
            } }
        ]
    })
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn settings_and_security_families_honour_github_openapi_contract() {
    let mut c = Checker::new(SPEC_GAPS);
    c.expect_routes(ROUTES);
    let s = start(SimConfig::default()).await;

    // --- Actions permissions ------------------------------------------------------------------
    let etag = c
        .run(
            &s,
            Case::new(
                "defaults",
                "GET",
                R_PERMS,
                "/repos/acme/guarded/actions/permissions",
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_PERMS,
            "/repos/acme/guarded/actions/permissions",
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
            R_PERMS,
            "/repos/acme/nope/actions/permissions",
            404,
        ),
    )
    .await;
    c.run(&s, Case::new("only selected actions", "PUT", R_PERMS, "/repos/acme/guarded/actions/permissions", 204).json(json!({ "enabled": true, "allowed_actions": "selected", "sha_pinning_required": false }))).await;
    c.run(
        &s,
        Case::new(
            "selected policy read back",
            "GET",
            R_PERMS,
            "/repos/acme/guarded/actions/permissions",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "disable actions",
            "PUT",
            R_PERMS,
            "/repos/acme/svc-001/actions/permissions",
            204,
        )
        .json(json!({ "enabled": false })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "disabled read back",
            "GET",
            R_PERMS,
            "/repos/acme/svc-001/actions/permissions",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "value outside the enum",
            "PUT",
            R_PERMS,
            "/repos/acme/guarded/actions/permissions",
            422,
        )
        .json(json!({ "enabled": true, "allowed_actions": "some" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "`enabled` missing",
            "PUT",
            R_PERMS,
            "/repos/acme/guarded/actions/permissions",
            422,
        )
        .json(json!({ "allowed_actions": "all" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "malformed JSON",
            "PUT",
            R_PERMS,
            "/repos/acme/guarded/actions/permissions",
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
            R_PERMS,
            "/repos/acme/nope/actions/permissions",
            404,
        )
        .json(json!({ "enabled": true })),
    )
    .await;

    let selected = json!({ "github_owned_allowed": true, "verified_allowed": false, "patterns_allowed": ["acme/*", "docker/login-action@*"] });
    c.run(
        &s,
        Case::new(
            "set allow-list",
            "PUT",
            R_SELECTED,
            "/repos/acme/guarded/actions/permissions/selected-actions",
            204,
        )
        .json(selected.clone()),
    )
    .await;
    let etag = c
        .run(
            &s,
            Case::new(
                "allow-list",
                "GET",
                R_SELECTED,
                "/repos/acme/guarded/actions/permissions/selected-actions",
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_SELECTED,
            "/repos/acme/guarded/actions/permissions/selected-actions",
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "policy is `all`",
            "GET",
            R_SELECTED,
            "/repos/acme/open/actions/permissions/selected-actions",
            409,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "policy is `all`",
            "PUT",
            R_SELECTED,
            "/repos/acme/open/actions/permissions/selected-actions",
            409,
        )
        .json(selected.clone()),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "patterns not an array",
            "PUT",
            R_SELECTED,
            "/repos/acme/guarded/actions/permissions/selected-actions",
            422,
        )
        .json(json!({ "patterns_allowed": "acme/*" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "malformed JSON",
            "PUT",
            R_SELECTED,
            "/repos/acme/guarded/actions/permissions/selected-actions",
            400,
        )
        .raw("{not json"),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "GET",
            R_SELECTED,
            "/repos/acme/nope/actions/permissions/selected-actions",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "PUT",
            R_SELECTED,
            "/repos/acme/nope/actions/permissions/selected-actions",
            404,
        )
        .json(selected),
    )
    .await;

    let etag = c
        .run(
            &s,
            Case::new(
                "private repo default",
                "GET",
                R_ACCESS,
                "/repos/acme/open/actions/permissions/access",
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_ACCESS,
            "/repos/acme/open/actions/permissions/access",
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "public repo",
            "GET",
            R_ACCESS,
            "/repos/acme/guarded/actions/permissions/access",
            422,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "GET",
            R_ACCESS,
            "/repos/acme/nope/actions/permissions/access",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "share with the organization",
            "PUT",
            R_ACCESS,
            "/repos/acme/open/actions/permissions/access",
            204,
        )
        .json(json!({ "access_level": "organization" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "read back",
            "GET",
            R_ACCESS,
            "/repos/acme/open/actions/permissions/access",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "value outside the enum",
            "PUT",
            R_ACCESS,
            "/repos/acme/open/actions/permissions/access",
            422,
        )
        .json(json!({ "access_level": "enterprise" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "malformed JSON",
            "PUT",
            R_ACCESS,
            "/repos/acme/open/actions/permissions/access",
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
            R_ACCESS,
            "/repos/acme/nope/actions/permissions/access",
            404,
        )
        .json(json!({ "access_level": "none" })),
    )
    .await;

    // --- Security advisories ------------------------------------------------------------------
    c.run(
        &s,
        Case::new(
            "draft with severity",
            "POST",
            R_ADVS,
            "/repos/acme/guarded/security-advisories",
            201,
        )
        .json(advisory_body()),
    )
    .await;
    let mut with_vector = advisory_body();
    with_vector.as_object_mut().unwrap().remove("severity");
    with_vector["cvss_vector_string"] = json!("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H");
    with_vector["summary"] = json!("Remote code execution in the plugin loader");
    c.run(
        &s,
        Case::new(
            "draft with CVSS vector",
            "POST",
            R_ADVS,
            "/repos/acme/guarded/security-advisories",
            201,
        )
        .json(with_vector),
    )
    .await;
    c.run(&s, Case::new("minimal draft", "POST", R_ADVS, "/repos/acme/guarded/security-advisories", 201).json(json!({ "summary": "s", "description": "d", "vulnerabilities": [{ "package": { "ecosystem": "pip" } }] }))).await;
    c.run(
        &s,
        Case::new(
            "`vulnerabilities` missing",
            "POST",
            R_ADVS,
            "/repos/acme/guarded/security-advisories",
            422,
        )
        .json(json!({ "summary": "s", "description": "d" })),
    )
    .await;
    let mut bad_severity = advisory_body();
    bad_severity["severity"] = json!("urgent");
    c.run(
        &s,
        Case::new(
            "severity outside the enum",
            "POST",
            R_ADVS,
            "/repos/acme/guarded/security-advisories",
            422,
        )
        .json(bad_severity),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "malformed JSON",
            "POST",
            R_ADVS,
            "/repos/acme/guarded/security-advisories",
            400,
        )
        .raw("{not json"),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "POST",
            R_ADVS,
            "/repos/acme/nope/security-advisories",
            404,
        )
        .json(advisory_body()),
    )
    .await;

    let ghsa = s
        .sim
        .create_advisory("acme", "guarded", advisory_body())
        .expect("admin draft");
    s.sim
        .set_private_vulnerability_reporting("acme", "guarded", true)
        .expect("enable reporting");
    s.sim.report_vulnerability("acme", "guarded", "reporter", json!({ "summary": "XSS in the wiki", "description": "Stored XSS.", "severity": "medium", "vulnerabilities": [] })).expect("report");
    let etag = c
        .run(
            &s,
            Case::new(
                "all advisories",
                "GET",
                R_ADVS,
                "/repos/acme/guarded/security-advisories",
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_ADVS,
            "/repos/acme/guarded/security-advisories",
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "triage only, oldest first",
            "GET",
            R_ADVS,
            "/repos/acme/guarded/security-advisories?state=triage&sort=updated&direction=asc",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "first page of two",
            "GET",
            R_ADVS,
            "/repos/acme/guarded/security-advisories?per_page=2",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "empty list",
            "GET",
            R_ADVS,
            "/repos/acme/open/security-advisories",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown cursor",
            "GET",
            R_ADVS,
            "/repos/acme/guarded/security-advisories?after=bm9wZQ%3D%3D",
            400,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "GET",
            R_ADVS,
            "/repos/acme/nope/security-advisories",
            404,
        ),
    )
    .await;

    let adv = format!("/repos/acme/guarded/security-advisories/{ghsa}");
    let etag = c.run(&s, Case::new("draft", "GET", R_ADV, &adv, 200)).await;
    c.run(
        &s,
        Case::new("conditional", "GET", R_ADV, &adv, 304).if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown GHSA",
            "GET",
            R_ADV,
            "/repos/acme/guarded/security-advisories/GHSA-2222-3333-4444",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "GET",
            R_ADV,
            &format!("/repos/acme/nope/security-advisories/{ghsa}"),
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new("edit and publish", "PATCH", R_ADV, &adv, 200)
            .json(json!({ "summary": "Prototype pollution in acme-config", "state": "published" })),
    )
    .await;
    c.run(&s, Case::new("published", "GET", R_ADV, &adv, 200))
        .await;
    c.run(
        &s,
        Case::new("`triage` is not settable", "PATCH", R_ADV, &adv, 422)
            .json(json!({ "state": "triage" })),
    )
    .await;
    c.run(
        &s,
        Case::new("malformed JSON", "PATCH", R_ADV, &adv, 400).raw("{not json"),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown GHSA",
            "PATCH",
            R_ADV,
            "/repos/acme/guarded/security-advisories/GHSA-2222-3333-4444",
            404,
        )
        .json(json!({ "state": "closed" })),
    )
    .await;

    // --- Issues and comments -------------------------------------------------------------------
    let issue = json!({ "title": "Found a bug", "body": "Steps to reproduce: ...", "labels": ["bug"], "assignees": ["octocat"] });
    c.run(
        &s,
        Case::new(
            "open an issue",
            "POST",
            R_ISSUES,
            "/repos/acme/guarded/issues",
            201,
        )
        .json(issue.clone()),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "numeric title",
            "POST",
            R_ISSUES,
            "/repos/acme/guarded/issues",
            201,
        )
        .json(json!({ "title": 404 })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "`title` missing",
            "POST",
            R_ISSUES,
            "/repos/acme/guarded/issues",
            422,
        )
        .json(json!({ "body": "no title" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "labels not an array",
            "POST",
            R_ISSUES,
            "/repos/acme/guarded/issues",
            422,
        )
        .json(json!({ "title": "t", "labels": "bug" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "malformed JSON",
            "POST",
            R_ISSUES,
            "/repos/acme/guarded/issues",
            400,
        )
        .raw("{not json"),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "POST",
            R_ISSUES,
            "/repos/acme/nope/issues",
            404,
        )
        .json(issue.clone()),
    )
    .await;
    s.sim
        .create_issue(
            "acme",
            "svc-001",
            None,
            json!({ "title": "before issues were turned off" }),
        )
        .expect("admin issue");
    s.sim
        .set_issues_enabled("acme", "svc-001", false)
        .expect("turn issues off");
    c.run(
        &s,
        Case::new(
            "issues disabled",
            "POST",
            R_ISSUES,
            "/repos/acme/svc-001/issues",
            410,
        )
        .json(issue.clone()),
    )
    .await;

    let etag = c
        .run(
            &s,
            Case::new(
                "open issues",
                "GET",
                R_ISSUES,
                "/repos/acme/guarded/issues",
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_ISSUES,
            "/repos/acme/guarded/issues",
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "all with label",
            "GET",
            R_ISSUES,
            "/repos/acme/guarded/issues?state=all&labels=bug&creator=plumbline-sim%5Bbot%5D",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "second page",
            "GET",
            R_ISSUES,
            "/repos/acme/guarded/issues?per_page=1&page=2",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "state outside the enum",
            "GET",
            R_ISSUES,
            "/repos/acme/guarded/issues?state=done",
            422,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "GET",
            R_ISSUES,
            "/repos/acme/nope/issues",
            404,
        ),
    )
    .await;

    let etag = c
        .run(
            &s,
            Case::new("issue", "GET", R_ISSUE, "/repos/acme/guarded/issues/1", 200),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_ISSUE,
            "/repos/acme/guarded/issues/1",
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown issue",
            "GET",
            R_ISSUE,
            "/repos/acme/guarded/issues/99",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "issues disabled",
            "GET",
            R_ISSUE,
            "/repos/acme/svc-001/issues/1",
            410,
        ),
    )
    .await;
    c.run(&s, Case::new("close as completed", "PATCH", R_ISSUE, "/repos/acme/guarded/issues/1", 200).json(json!({ "state": "closed", "state_reason": "completed", "title": "Found a bug in the parser", "labels": ["bug", "parser"] }))).await;
    c.run(
        &s,
        Case::new(
            "reopen",
            "PATCH",
            R_ISSUE,
            "/repos/acme/guarded/issues/1",
            200,
        )
        .json(json!({ "state": "open" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "state outside the enum",
            "PATCH",
            R_ISSUE,
            "/repos/acme/guarded/issues/1",
            422,
        )
        .json(json!({ "state": "done" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "malformed JSON",
            "PATCH",
            R_ISSUE,
            "/repos/acme/guarded/issues/1",
            400,
        )
        .raw("{not json"),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown issue",
            "PATCH",
            R_ISSUE,
            "/repos/acme/guarded/issues/99",
            404,
        )
        .json(json!({ "state": "closed" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "issues disabled",
            "PATCH",
            R_ISSUE,
            "/repos/acme/svc-001/issues/1",
            410,
        )
        .json(json!({ "state": "closed" })),
    )
    .await;

    c.run(
        &s,
        Case::new(
            "comment",
            "POST",
            R_COMMENTS,
            "/repos/acme/guarded/issues/1/comments",
            201,
        )
        .json(json!({ "body": "Thanks, looking into it." })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "`body` missing",
            "POST",
            R_COMMENTS,
            "/repos/acme/guarded/issues/1/comments",
            422,
        )
        .json(json!({})),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "malformed JSON",
            "POST",
            R_COMMENTS,
            "/repos/acme/guarded/issues/1/comments",
            400,
        )
        .raw("{not json"),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown issue",
            "POST",
            R_COMMENTS,
            "/repos/acme/guarded/issues/99/comments",
            404,
        )
        .json(json!({ "body": "x" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "issues disabled",
            "POST",
            R_COMMENTS,
            "/repos/acme/svc-001/issues/1/comments",
            410,
        )
        .json(json!({ "body": "x" })),
    )
    .await;
    let etag = c
        .run(
            &s,
            Case::new(
                "comments",
                "GET",
                R_COMMENTS,
                "/repos/acme/guarded/issues/1/comments",
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_COMMENTS,
            "/repos/acme/guarded/issues/1/comments",
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "since",
            "GET",
            R_COMMENTS,
            "/repos/acme/guarded/issues/1/comments?since=2000-01-01T00:00:00Z",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown issue",
            "GET",
            R_COMMENTS,
            "/repos/acme/guarded/issues/99/comments",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "issues disabled",
            "GET",
            R_COMMENTS,
            "/repos/acme/svc-001/issues/1/comments",
            410,
        ),
    )
    .await;

    // --- Rulesets --------------------------------------------------------------------------------
    c.run(
        &s,
        Case::new(
            "create",
            "POST",
            R_RULESETS,
            "/repos/acme/guarded/rulesets",
            201,
        )
        .json(ruleset_body()),
    )
    .await;
    c.run(&s, Case::new("evaluate-only tag ruleset", "POST", R_RULESETS, "/repos/acme/guarded/rulesets", 201).json(json!({ "name": "tags", "target": "tag", "enforcement": "evaluate", "conditions": { "ref_name": { "include": ["~ALL"], "exclude": [] } }, "rules": [{ "type": "tag_name_pattern", "parameters": { "operator": "starts_with", "pattern": "v" } }] }))).await;
    c.run(
        &s,
        Case::new(
            "enforcement outside the enum",
            "POST",
            R_RULESETS,
            "/repos/acme/guarded/rulesets",
            422,
        )
        .json(json!({ "name": "x", "enforcement": "on" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "`name` missing",
            "POST",
            R_RULESETS,
            "/repos/acme/guarded/rulesets",
            422,
        )
        .json(json!({ "enforcement": "active" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown rule type",
            "POST",
            R_RULESETS,
            "/repos/acme/guarded/rulesets",
            422,
        )
        .json(json!({ "name": "x", "enforcement": "active", "rules": [{ "type": "teleport" }] })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "malformed JSON",
            "POST",
            R_RULESETS,
            "/repos/acme/guarded/rulesets",
            400,
        )
        .raw("{not json"),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "POST",
            R_RULESETS,
            "/repos/acme/nope/rulesets",
            404,
        )
        .json(ruleset_body()),
    )
    .await;
    let etag = c
        .run(
            &s,
            Case::new(
                "rulesets",
                "GET",
                R_RULESETS,
                "/repos/acme/guarded/rulesets",
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_RULESETS,
            "/repos/acme/guarded/rulesets",
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "branch targets only",
            "GET",
            R_RULESETS,
            "/repos/acme/guarded/rulesets?targets=branch&includes_parents=true",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "GET",
            R_RULESETS,
            "/repos/acme/nope/rulesets",
            404,
        ),
    )
    .await;
    let etag = c
        .run(
            &s,
            Case::new(
                "default branch",
                "GET",
                R_RULES,
                "/repos/acme/guarded/rules/branches/main",
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_RULES,
            "/repos/acme/guarded/rules/branches/main",
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "pattern-matched branch",
            "GET",
            R_RULES,
            "/repos/acme/guarded/rules/branches/release%2F1.0",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "branch without rules",
            "GET",
            R_RULES,
            "/repos/acme/guarded/rules/branches/feature",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "GET",
            R_RULES,
            "/repos/acme/nope/rules/branches/main",
            404,
        ),
    )
    .await;

    // --- Private vulnerability reporting ----------------------------------------------------------
    let etag = c
        .run(
            &s,
            Case::new(
                "disabled",
                "GET",
                R_PVR,
                "/repos/acme/svc-002/private-vulnerability-reporting",
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_PVR,
            "/repos/acme/svc-002/private-vulnerability-reporting",
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "enable",
            "PUT",
            R_PVR,
            "/repos/acme/svc-002/private-vulnerability-reporting",
            204,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "enabled",
            "GET",
            R_PVR,
            "/repos/acme/svc-002/private-vulnerability-reporting",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "private repository",
            "PUT",
            R_PVR,
            "/repos/acme/open/private-vulnerability-reporting",
            422,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "disable",
            "DELETE",
            R_PVR,
            "/repos/acme/svc-002/private-vulnerability-reporting",
            204,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "GET",
            R_PVR,
            "/repos/acme/nope/private-vulnerability-reporting",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "PUT",
            R_PVR,
            "/repos/acme/nope/private-vulnerability-reporting",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "DELETE",
            R_PVR,
            "/repos/acme/nope/private-vulnerability-reporting",
            404,
        ),
    )
    .await;

    // --- Collaborators ------------------------------------------------------------------------------
    s.sim
        .add_collaborator(
            "acme",
            "guarded",
            "alice",
            Permission::Admin,
            Affiliation::Direct,
        )
        .unwrap();
    s.sim
        .add_collaborator(
            "acme",
            "guarded",
            "bob",
            Permission::Push,
            Affiliation::Outside,
        )
        .unwrap();
    s.sim
        .add_collaborator(
            "acme",
            "guarded",
            "carol",
            Permission::Triage,
            Affiliation::Organization,
        )
        .unwrap();
    let etag = c
        .run(
            &s,
            Case::new(
                "all",
                "GET",
                R_COLLAB,
                "/repos/acme/guarded/collaborators",
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_COLLAB,
            "/repos/acme/guarded/collaborators",
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "outside collaborators",
            "GET",
            R_COLLAB,
            "/repos/acme/guarded/collaborators?affiliation=outside",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "at least push, paged",
            "GET",
            R_COLLAB,
            "/repos/acme/guarded/collaborators?permission=push&per_page=1&page=2",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "GET",
            R_COLLAB,
            "/repos/acme/nope/collaborators",
            404,
        ),
    )
    .await;

    // --- Releases and assets --------------------------------------------------------------------------
    let release = json!({ "tag_name": "v1.0.0", "target_commitish": "main", "name": "v1.0.0", "body": "First release", "draft": false, "prerelease": false, "make_latest": "true" });
    c.run(
        &s,
        Case::new(
            "publish",
            "POST",
            R_RELEASES,
            "/repos/acme/guarded/releases",
            201,
        )
        .json(release.clone()),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "draft with generated notes",
            "POST",
            R_RELEASES,
            "/repos/acme/guarded/releases",
            201,
        )
        .json(json!({ "tag_name": "v1.1.0", "draft": true, "generate_release_notes": true })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "`tag_name` missing",
            "POST",
            R_RELEASES,
            "/repos/acme/guarded/releases",
            422,
        )
        .json(json!({ "name": "no tag" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "`draft` not a boolean",
            "POST",
            R_RELEASES,
            "/repos/acme/guarded/releases",
            422,
        )
        .json(json!({ "tag_name": "v9", "draft": "yes" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown discussion category",
            "POST",
            R_RELEASES,
            "/repos/acme/guarded/releases",
            404,
        )
        .json(json!({ "tag_name": "v9", "discussion_category_name": "Announcements" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "malformed JSON",
            "POST",
            R_RELEASES,
            "/repos/acme/guarded/releases",
            400,
        )
        .raw("{not json"),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "POST",
            R_RELEASES,
            "/repos/acme/nope/releases",
            404,
        )
        .json(release.clone()),
    )
    .await;
    let etag = c
        .run(
            &s,
            Case::new(
                "releases",
                "GET",
                R_RELEASES,
                "/repos/acme/guarded/releases",
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_RELEASES,
            "/repos/acme/guarded/releases",
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "second page",
            "GET",
            R_RELEASES,
            "/repos/acme/guarded/releases?per_page=1&page=2",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "GET",
            R_RELEASES,
            "/repos/acme/nope/releases",
            404,
        ),
    )
    .await;

    let id = s
        .sim
        .create_release(
            "acme",
            "guarded",
            json!({ "tag_name": "v2.0.0-rc.1", "prerelease": true, "draft": true }),
        )
        .expect("admin release");
    s.sim
        .upload_release_asset(
            "acme",
            "guarded",
            id,
            "LICENSE",
            "text/plain",
            b"Apache-2.0".to_vec(),
        )
        .expect("admin asset");
    let one = format!("/repos/acme/guarded/releases/{id}");
    let etag = c
        .run(
            &s,
            Case::new("draft with asset", "GET", R_RELEASE, &one, 200),
        )
        .await;
    c.run(
        &s,
        Case::new("conditional", "GET", R_RELEASE, &one, 304).if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown release",
            "GET",
            R_RELEASE,
            "/repos/acme/guarded/releases/1",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new("publish the draft", "PATCH", R_RELEASE, &one, 200)
            .json(json!({ "draft": false, "name": "2.0.0 RC 1", "body": "Release candidate" })),
    )
    .await;
    c.run(
        &s,
        Case::new("`prerelease` not a boolean", "PATCH", R_RELEASE, &one, 422)
            .json(json!({ "prerelease": "no" })),
    )
    .await;
    c.run(
        &s,
        Case::new("malformed JSON", "PATCH", R_RELEASE, &one, 400).raw("{not json"),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown release",
            "PATCH",
            R_RELEASE,
            "/repos/acme/guarded/releases/1",
            404,
        )
        .json(json!({ "name": "x" })),
    )
    .await;

    let assets = format!("{one}/assets");
    c.run(
        &s,
        Case::new(
            "upload",
            "POST",
            R_ASSETS,
            &format!("{assets}?name=checksums.txt&label=Checksums"),
            201,
        )
        .raw("abc123  acme.tar.gz\n"),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown release",
            "POST",
            R_ASSETS,
            "/repos/acme/guarded/releases/1/assets?name=x.txt",
            404,
        )
        .raw("x"),
    )
    .await;
    let etag = c
        .run(&s, Case::new("assets", "GET", R_ASSETS, &assets, 200))
        .await;
    c.run(
        &s,
        Case::new("conditional", "GET", R_ASSETS, &assets, 304).if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown release",
            "GET",
            R_ASSETS,
            "/repos/acme/guarded/releases/1/assets",
            404,
        ),
    )
    .await;
    c.run(&s, Case::new("delete", "DELETE", R_RELEASE, &one, 204))
        .await;
    c.run(
        &s,
        Case::new("already deleted", "DELETE", R_RELEASE, &one, 404),
    )
    .await;

    // --- Dependabot ------------------------------------------------------------------------------------
    c.run(
        &s,
        Case::new(
            "alerts off",
            "GET",
            R_ALERTS,
            "/repos/acme/guarded/vulnerability-alerts",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "alerts off",
            "GET",
            R_FIXES,
            "/repos/acme/guarded/automated-security-fixes",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "enable alerts",
            "PUT",
            R_ALERTS,
            "/repos/acme/guarded/vulnerability-alerts",
            204,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "alerts on",
            "GET",
            R_ALERTS,
            "/repos/acme/guarded/vulnerability-alerts",
            204,
        ),
    )
    .await;
    let etag = c
        .run(
            &s,
            Case::new(
                "security updates off",
                "GET",
                R_FIXES,
                "/repos/acme/guarded/automated-security-fixes",
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_FIXES,
            "/repos/acme/guarded/automated-security-fixes",
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "enable security updates",
            "PUT",
            R_FIXES,
            "/repos/acme/guarded/automated-security-fixes",
            204,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "security updates on",
            "GET",
            R_FIXES,
            "/repos/acme/guarded/automated-security-fixes",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "disable security updates",
            "DELETE",
            R_FIXES,
            "/repos/acme/guarded/automated-security-fixes",
            204,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "disable alerts",
            "DELETE",
            R_ALERTS,
            "/repos/acme/guarded/vulnerability-alerts",
            204,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "PUT",
            R_ALERTS,
            "/repos/acme/nope/vulnerability-alerts",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "DELETE",
            R_ALERTS,
            "/repos/acme/nope/vulnerability-alerts",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "PUT",
            R_FIXES,
            "/repos/acme/nope/automated-security-fixes",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "DELETE",
            R_FIXES,
            "/repos/acme/nope/automated-security-fixes",
            404,
        ),
    )
    .await;

    // --- Bad credentials and exhausted rate limit, on every route ------------------------------
    let auth = start(SimConfig {
        tokens: vec!["good-token".to_owned()],
        ..SimConfig::default()
    })
    .await;
    let exhausted = start(SimConfig::default()).await;
    exhausted.sim.set_rate_limit(0);
    // One request per route: (method, route, concrete path, JSON body).
    let every: Vec<(&str, &'static str, &str, Option<Value>)> = vec![
        (
            "GET",
            R_PERMS,
            "/repos/acme/guarded/actions/permissions",
            None,
        ),
        (
            "PUT",
            R_PERMS,
            "/repos/acme/guarded/actions/permissions",
            Some(json!({ "enabled": true })),
        ),
        (
            "GET",
            R_SELECTED,
            "/repos/acme/guarded/actions/permissions/selected-actions",
            None,
        ),
        (
            "PUT",
            R_SELECTED,
            "/repos/acme/guarded/actions/permissions/selected-actions",
            Some(json!({ "verified_allowed": true })),
        ),
        (
            "GET",
            R_ACCESS,
            "/repos/acme/open/actions/permissions/access",
            None,
        ),
        (
            "PUT",
            R_ACCESS,
            "/repos/acme/open/actions/permissions/access",
            Some(json!({ "access_level": "none" })),
        ),
        (
            "GET",
            R_ADVS,
            "/repos/acme/guarded/security-advisories",
            None,
        ),
        (
            "POST",
            R_ADVS,
            "/repos/acme/guarded/security-advisories",
            Some(advisory_body()),
        ),
        (
            "GET",
            R_ADV,
            "/repos/acme/guarded/security-advisories/GHSA-2222-3333-4444",
            None,
        ),
        (
            "PATCH",
            R_ADV,
            "/repos/acme/guarded/security-advisories/GHSA-2222-3333-4444",
            Some(json!({ "state": "closed" })),
        ),
        ("GET", R_ISSUES, "/repos/acme/guarded/issues", None),
        (
            "POST",
            R_ISSUES,
            "/repos/acme/guarded/issues",
            Some(issue.clone()),
        ),
        ("GET", R_ISSUE, "/repos/acme/guarded/issues/1", None),
        (
            "PATCH",
            R_ISSUE,
            "/repos/acme/guarded/issues/1",
            Some(json!({ "state": "closed" })),
        ),
        (
            "GET",
            R_COMMENTS,
            "/repos/acme/guarded/issues/1/comments",
            None,
        ),
        (
            "POST",
            R_COMMENTS,
            "/repos/acme/guarded/issues/1/comments",
            Some(json!({ "body": "x" })),
        ),
        ("GET", R_RULESETS, "/repos/acme/guarded/rulesets", None),
        (
            "POST",
            R_RULESETS,
            "/repos/acme/guarded/rulesets",
            Some(ruleset_body()),
        ),
        (
            "GET",
            R_RULES,
            "/repos/acme/guarded/rules/branches/main",
            None,
        ),
        (
            "GET",
            R_PVR,
            "/repos/acme/guarded/private-vulnerability-reporting",
            None,
        ),
        (
            "PUT",
            R_PVR,
            "/repos/acme/guarded/private-vulnerability-reporting",
            None,
        ),
        (
            "DELETE",
            R_PVR,
            "/repos/acme/guarded/private-vulnerability-reporting",
            None,
        ),
        ("GET", R_COLLAB, "/repos/acme/guarded/collaborators", None),
        ("GET", R_RELEASES, "/repos/acme/guarded/releases", None),
        (
            "POST",
            R_RELEASES,
            "/repos/acme/guarded/releases",
            Some(release.clone()),
        ),
        ("GET", R_RELEASE, "/repos/acme/guarded/releases/1", None),
        (
            "PATCH",
            R_RELEASE,
            "/repos/acme/guarded/releases/1",
            Some(json!({ "name": "x" })),
        ),
        ("DELETE", R_RELEASE, "/repos/acme/guarded/releases/1", None),
        (
            "GET",
            R_ASSETS,
            "/repos/acme/guarded/releases/1/assets",
            None,
        ),
        (
            "POST",
            R_ASSETS,
            "/repos/acme/guarded/releases/1/assets?name=x.txt",
            None,
        ),
        (
            "GET",
            R_ALERTS,
            "/repos/acme/guarded/vulnerability-alerts",
            None,
        ),
        (
            "PUT",
            R_ALERTS,
            "/repos/acme/guarded/vulnerability-alerts",
            None,
        ),
        (
            "DELETE",
            R_ALERTS,
            "/repos/acme/guarded/vulnerability-alerts",
            None,
        ),
        (
            "GET",
            R_FIXES,
            "/repos/acme/guarded/automated-security-fixes",
            None,
        ),
        (
            "PUT",
            R_FIXES,
            "/repos/acme/guarded/automated-security-fixes",
            None,
        ),
        (
            "DELETE",
            R_FIXES,
            "/repos/acme/guarded/automated-security-fixes",
            None,
        ),
    ];
    assert_eq!(every.len(), ROUTES.len(), "one request per route");
    for (method, route, path, body) in every {
        // Routes whose 401/403 the document declares are checked against their schema; the
        // rest are spec gaps, listed above.
        let mut unauthorized = Case::new("bad token", method, route, path, 401).token("bad");
        let mut limited = Case::new("rate limited", method, route, path, 403);
        if let Some(body) = body {
            unauthorized = unauthorized.json(body.clone());
            limited = limited.json(body);
        }
        // The document declares "get a release" 401 without a body, but GitHub's 401 is the
        // usual JSON "Bad credentials" (the middleware answers it for every route alike), so
        // this one pair cannot be checked without loosening the harness.
        if !(method == "GET" && route == R_RELEASE) {
            c.run(&auth, unauthorized).await;
        }
        c.run(&exhausted, limited).await;
    }

    c.check_request_logs(&[&s, &auth, &exhausted], ROUTES);
    c.finish(ROUTES);
}
