//! Contract tests of the pull request review families: pull request files, compare, reviews,
//! dismissals, review comments and commit statuses, checked against GitHub's OpenAPI
//! description with the shared harness (`support`).
//!
//! Requests that are valid per the requestBody schema but refused by GitHub for what they mean
//! (a comment outside the diff, dismissing a dismissed review, a status for an unknown sha) are
//! checked against the schema here, then sent as raw JSON (see [`semantic`]): the harness reads
//! a 422 to a schema-valid JSON body as over-strict validation, which these are not.

use crate::support;

use plumbline_github_sim::{CommitFile, NewPullRequest, SimConfig};
use serde_json::{json, Value};
use support::{schema_errors, start, Case, Checker, Spec, SpecGap};

const R_FILES: &str = "/repos/{owner}/{repo}/pulls/{pull_number}/files";
const R_COMPARE: &str = "/repos/{owner}/{repo}/compare/{basehead}";
const R_REVIEWS: &str = "/repos/{owner}/{repo}/pulls/{pull_number}/reviews";
const R_REVIEW: &str = "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}";
const R_DISMISSALS: &str =
    "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}/dismissals";
const R_COMMENTS: &str = "/repos/{owner}/{repo}/pulls/{pull_number}/comments";
const R_STATUSES: &str = "/repos/{owner}/{repo}/statuses/{sha}";
const R_REF_STATUSES: &str = "/repos/{owner}/{repo}/commits/{ref}/statuses";
const R_COMBINED: &str = "/repos/{owner}/{repo}/commits/{ref}/status";

/// The routes this file covers (method, path template), as the simulator logs them.
const ROUTES: &[(&str, &str)] = &[
    ("GET", R_FILES),
    ("GET", R_COMPARE),
    ("GET", R_REVIEWS),
    ("POST", R_REVIEWS),
    ("GET", R_REVIEW),
    ("PUT", R_DISMISSALS),
    ("GET", R_COMMENTS),
    ("POST", R_STATUSES),
    ("GET", R_REF_STATUSES),
    ("GET", R_COMBINED),
];

/// Statuses the simulator answers like GitHub although the document does not declare them.
const SPEC_GAPS: &[SpecGap] = &[
    // Conditional requests: GitHub answers 304 to a matching If-None-Match on any GET.
    ("GET", R_FILES, 304, "conditional GET"),
    ("GET", R_COMPARE, 304, "conditional GET"),
    ("GET", R_REVIEWS, 304, "conditional GET"),
    ("GET", R_REVIEW, 304, "conditional GET"),
    ("GET", R_COMMENTS, 304, "conditional GET"),
    ("GET", R_REF_STATUSES, 304, "conditional GET"),
    ("GET", R_COMBINED, 304, "conditional GET"),
    // Unknown repository, pull request or ref: GitHub answers 404 where it is not declared.
    ("GET", R_FILES, 404, "unknown repository or pull request"),
    ("GET", R_REVIEWS, 404, "unknown repository or pull request"),
    ("POST", R_REVIEWS, 404, "unknown repository or pull request"),
    ("GET", R_COMMENTS, 404, "unknown repository or pull request"),
    ("POST", R_STATUSES, 404, "unknown repository"),
    ("GET", R_REF_STATUSES, 404, "unknown repository or ref"),
    // Validation failures of a status (unknown sha, a state outside the enum).
    (
        "POST",
        R_STATUSES,
        422,
        "no commit found for the sha / invalid state",
    ),
    // Unparseable JSON bodies are answered 400 "Problems parsing JSON".
    ("POST", R_REVIEWS, 400, "malformed JSON body"),
    ("PUT", R_DISMISSALS, 400, "malformed JSON body"),
    ("POST", R_STATUSES, 400, "malformed JSON body"),
    // A bad token is answered 401 "Bad credentials" on every endpoint.
    ("GET", R_FILES, 401, "bad credentials"),
    ("POST", R_REVIEWS, 401, "bad credentials"),
    ("POST", R_STATUSES, 401, "bad credentials"),
    ("GET", R_COMBINED, 401, "bad credentials"),
    // An exhausted primary rate limit is answered 403 on every charged endpoint.
    ("GET", R_FILES, 403, "rate limit exceeded"),
    ("GET", R_COMPARE, 403, "rate limit exceeded"),
    ("GET", R_REF_STATUSES, 403, "rate limit exceeded"),
    ("POST", R_STATUSES, 403, "rate limit exceeded"),
];

/// A body GitHub's requestBody schema accepts but GitHub refuses with a 422 for its meaning:
/// asserted valid here, then sent raw (see the module docs).
fn semantic(spec: &Spec, method: &str, route: &str, body: Value) -> &'static str {
    let schema = spec
        .operation(method, route)
        .and_then(|op| op.pointer("/requestBody/content/application~1json/schema"))
        .unwrap_or_else(|| panic!("{method} {route} has a requestBody schema"));
    let errors = schema_errors(schema, &body);
    assert!(
        errors.is_empty(),
        "{method} {route}: the semantic-422 body must be schema-valid: {errors:?}"
    );
    Box::leak(body.to_string().into_boxed_str())
}

#[tokio::test]
async fn pull_request_review_families_honour_github_openapi_contract() {
    let mut c = Checker::new(SPEC_GAPS);
    c.expect_routes(ROUTES);
    let spec = Spec::load();

    // --- Seeded content: pull request #1 of acme/open adds, changes and removes files. ------
    let s = start(SimConfig::default()).await;
    let sim = &s.sim;
    sim.commit_files(
        "acme",
        "open",
        "main",
        Some("Seed"),
        vec![
            CommitFile::file("README.md", "# open\n"),
            CommitFile::file("src/lib.rs", "fn a() {}\nfn b() {}\nfn c() {}\n"),
            CommitFile::file("old.txt", "old\n"),
        ],
    )
    .unwrap();
    sim.create_branch("acme", "open", "feature", "main")
        .unwrap();
    sim.commit_files(
        "acme",
        "open",
        "feature",
        Some("Change"),
        vec![
            CommitFile::file("src/lib.rs", "fn a() {}\nfn b2() {}\nfn c() {}\n"),
            CommitFile::file("docs/new.md", "one\ntwo\nthree\n"),
            CommitFile::file("logo.png", vec![0u8, 1, 2, 3]),
            CommitFile::delete("old.txt"),
        ],
    )
    .unwrap();
    sim.put_file("acme", "open", "main", "main-only.txt", "m\n")
        .unwrap();
    let number = sim
        .open_pull_request(
            "acme",
            "open",
            NewPullRequest {
                title: "Change".to_owned(),
                head: "feature".to_owned(),
                base: "main".to_owned(),
                ..NewPullRequest::default()
            },
        )
        .unwrap();
    assert_eq!(number, 1);
    let head = sim.branch_sha("acme", "open", "feature").unwrap();
    let main = sim.branch_sha("acme", "open", "main").unwrap();
    sim.reset_request_log();

    // GET /repos/{owner}/{repo}/pulls/{pull_number}/files
    let etag = c
        .run(
            &s,
            Case::new(
                "files",
                "GET",
                R_FILES,
                "/repos/acme/open/pulls/1/files",
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "second page",
            "GET",
            R_FILES,
            "/repos/acme/open/pulls/1/files?per_page=2&page=2",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_FILES,
            "/repos/acme/open/pulls/1/files",
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown pull request",
            "GET",
            R_FILES,
            "/repos/acme/open/pulls/99/files",
            404,
        ),
    )
    .await;

    // GET /repos/{owner}/{repo}/compare/{basehead}
    let etag = c
        .run(
            &s,
            Case::new(
                "diverged",
                "GET",
                R_COMPARE,
                "/repos/acme/open/compare/main...feature",
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "identical shas",
            "GET",
            R_COMPARE,
            &format!("/repos/acme/open/compare/{head}...{head}"),
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "paged",
            "GET",
            R_COMPARE,
            "/repos/acme/open/compare/acme:main...acme:feature?per_page=1",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_COMPARE,
            "/repos/acme/open/compare/main...feature",
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown ref",
            "GET",
            R_COMPARE,
            "/repos/acme/open/compare/main...nope",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "GET",
            R_COMPARE,
            "/repos/acme/nope/compare/main...feature",
            404,
        ),
    )
    .await;

    // POST /repos/{owner}/{repo}/pulls/{pull_number}/reviews
    let reviews = "/repos/acme/open/pulls/1/reviews";
    c.run(
        &s,
        Case::new("approve", "POST", R_REVIEWS, reviews, 200).json(json!({
            "commit_id": head,
            "body": "Looks good",
            "event": "APPROVE",
        })),
    )
    .await;
    c.run(
        &s,
        Case::new("with line comments", "POST", R_REVIEWS, reviews, 200).json(json!({
            "body": "Two remarks",
            "event": "REQUEST_CHANGES",
            "comments": [
                { "path": "docs/new.md", "line": 2, "side": "RIGHT", "body": "Why two?" },
                { "path": "src/lib.rs", "line": 2, "side": "LEFT", "body": "Keep b" },
                { "path": "src/lib.rs", "position": 3, "body": "b2?" },
                { "path": "docs/new.md", "start_line": 1, "line": 3, "body": "All" },
            ],
        })),
    )
    .await;
    c.run(
        &s,
        Case::new("pending", "POST", R_REVIEWS, reviews, 200).json(json!({
            "comments": [{ "path": "docs/new.md", "line": 1, "body": "Later" }],
        })),
    )
    .await;
    let outside = semantic(
        &spec,
        "POST",
        R_REVIEWS,
        json!({
            "event": "COMMENT",
            "body": "b",
            "comments": [{ "path": "src/lib.rs", "line": 40, "body": "x" }],
        }),
    );
    c.run(
        &s,
        Case::new("line outside the diff", "POST", R_REVIEWS, reviews, 422).raw(outside),
    )
    .await;
    let unchanged = semantic(
        &spec,
        "POST",
        R_REVIEWS,
        json!({
            "event": "COMMENT",
            "body": "b",
            "comments": [{ "path": "README.md", "line": 1, "body": "x" }],
        }),
    );
    c.run(
        &s,
        Case::new("path not in the diff", "POST", R_REVIEWS, reviews, 422).raw(unchanged),
    )
    .await;
    let no_body = semantic(
        &spec,
        "POST",
        R_REVIEWS,
        json!({ "event": "REQUEST_CHANGES" }),
    );
    c.run(
        &s,
        Case::new("changes without body", "POST", R_REVIEWS, reviews, 422).raw(no_body),
    )
    .await;
    c.run(
        &s,
        Case::new("unknown event", "POST", R_REVIEWS, reviews, 422)
            .json(json!({ "event": "MERGE", "body": "b" })),
    )
    .await;
    c.run(
        &s,
        Case::new("malformed", "POST", R_REVIEWS, reviews, 400).raw("{"),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown pull request",
            "POST",
            R_REVIEWS,
            "/repos/acme/open/pulls/99/reviews",
            404,
        )
        .json(json!({ "event": "APPROVE" })),
    )
    .await;

    // GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews
    let etag = c
        .run(&s, Case::new("all", "GET", R_REVIEWS, reviews, 200))
        .await;
    c.run(
        &s,
        Case::new(
            "one page",
            "GET",
            R_REVIEWS,
            &format!("{reviews}?per_page=1&page=2"),
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new("conditional", "GET", R_REVIEWS, reviews, 304).if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown pull request",
            "GET",
            R_REVIEWS,
            "/repos/acme/open/pulls/99/reviews",
            404,
        ),
    )
    .await;

    // GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}
    let listed = sim.pull_reviews("acme", "open", number);
    let approved = listed[0]["id"].as_u64().unwrap();
    let changes = listed[1]["id"].as_u64().unwrap();
    let pending = listed[2]["id"].as_u64().unwrap();
    let etag = c
        .run(
            &s,
            Case::new(
                "approved",
                "GET",
                R_REVIEW,
                &format!("{reviews}/{approved}"),
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "pending",
            "GET",
            R_REVIEW,
            &format!("{reviews}/{pending}"),
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_REVIEW,
            &format!("{reviews}/{approved}"),
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown review",
            "GET",
            R_REVIEW,
            &format!("{reviews}/1"),
            404,
        ),
    )
    .await;

    // PUT /repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}/dismissals
    let dismissals = |id: u64| format!("{reviews}/{id}/dismissals");
    c.run(
        &s,
        Case::new("dismiss", "PUT", R_DISMISSALS, &dismissals(approved), 200)
            .json(json!({ "message": "Outdated", "event": "DISMISS" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "dismiss changes requested",
            "PUT",
            R_DISMISSALS,
            &dismissals(changes),
            200,
        )
        .json(json!({ "message": "Addressed" })),
    )
    .await;
    let again = semantic(&spec, "PUT", R_DISMISSALS, json!({ "message": "Again" }));
    c.run(
        &s,
        Case::new(
            "already dismissed",
            "PUT",
            R_DISMISSALS,
            &dismissals(approved),
            422,
        )
        .raw(again),
    )
    .await;
    c.run(
        &s,
        Case::new("pending", "PUT", R_DISMISSALS, &dismissals(pending), 422).raw(again),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "no message",
            "PUT",
            R_DISMISSALS,
            &dismissals(approved),
            422,
        )
        .json(json!({ "event": "DISMISS" })),
    )
    .await;
    c.run(
        &s,
        Case::new("malformed", "PUT", R_DISMISSALS, &dismissals(approved), 400).raw("{"),
    )
    .await;
    c.run(
        &s,
        Case::new("unknown review", "PUT", R_DISMISSALS, &dismissals(1), 404)
            .json(json!({ "message": "x" })),
    )
    .await;

    // GET /repos/{owner}/{repo}/pulls/{pull_number}/comments
    let comments = "/repos/acme/open/pulls/1/comments";
    let etag = c
        .run(&s, Case::new("all", "GET", R_COMMENTS, comments, 200))
        .await;
    c.run(
        &s,
        Case::new(
            "newest first, paged",
            "GET",
            R_COMMENTS,
            &format!("{comments}?sort=created&direction=desc&per_page=2"),
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new("conditional", "GET", R_COMMENTS, comments, 304).if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown pull request",
            "GET",
            R_COMMENTS,
            "/repos/acme/open/pulls/99/comments",
            404,
        ),
    )
    .await;

    // POST /repos/{owner}/{repo}/statuses/{sha}
    let statuses = format!("/repos/acme/open/statuses/{head}");
    c.run(
        &s,
        Case::new("pending", "POST", R_STATUSES, &statuses, 201).json(json!({
            "state": "pending",
            "target_url": "https://ci.example.com/1",
            "description": "Building",
            "context": "ci/build",
        })),
    )
    .await;
    c.run(
        &s,
        Case::new("default context", "POST", R_STATUSES, &statuses, 201)
            .json(json!({ "state": "success" })),
    )
    .await;
    c.run(
        &s,
        Case::new("failure", "POST", R_STATUSES, &statuses, 201)
            .json(json!({ "state": "failure", "context": "lint", "target_url": null })),
    )
    .await;
    let unknown_sha = semantic(&spec, "POST", R_STATUSES, json!({ "state": "success" }));
    c.run(
        &s,
        Case::new(
            "unknown sha",
            "POST",
            R_STATUSES,
            &format!("/repos/acme/open/statuses/{}", "0".repeat(40)),
            422,
        )
        .raw(unknown_sha),
    )
    .await;
    c.run(
        &s,
        Case::new("invalid state", "POST", R_STATUSES, &statuses, 422)
            .json(json!({ "state": "done" })),
    )
    .await;
    c.run(
        &s,
        Case::new("malformed", "POST", R_STATUSES, &statuses, 400).raw("{"),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "POST",
            R_STATUSES,
            &format!("/repos/acme/nope/statuses/{head}"),
            404,
        )
        .json(json!({ "state": "success" })),
    )
    .await;

    // GET /repos/{owner}/{repo}/commits/{ref}/statuses
    let etag = c
        .run(
            &s,
            Case::new(
                "by branch",
                "GET",
                R_REF_STATUSES,
                "/repos/acme/open/commits/feature/statuses",
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "by sha, paged",
            "GET",
            R_REF_STATUSES,
            &format!("/repos/acme/open/commits/{head}/statuses?per_page=1"),
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "none",
            "GET",
            R_REF_STATUSES,
            "/repos/acme/open/commits/main/statuses",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_REF_STATUSES,
            "/repos/acme/open/commits/feature/statuses",
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown ref",
            "GET",
            R_REF_STATUSES,
            "/repos/acme/open/commits/nope/statuses",
            404,
        ),
    )
    .await;

    // GET /repos/{owner}/{repo}/commits/{ref}/status
    let etag = c
        .run(
            &s,
            Case::new(
                "failure",
                "GET",
                R_COMBINED,
                "/repos/acme/open/commits/feature/status",
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "no statuses",
            "GET",
            R_COMBINED,
            &format!("/repos/acme/open/commits/{main}/status"),
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_COMBINED,
            "/repos/acme/open/commits/feature/status",
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown ref",
            "GET",
            R_COMBINED,
            "/repos/acme/open/commits/nope/status",
            404,
        ),
    )
    .await;

    // --- Authentication and rate limit. -------------------------------------------------------
    let auth = start(SimConfig {
        tokens: vec!["good-token".to_owned()],
        ..SimConfig::default()
    })
    .await;
    auth.sim
        .commit_files(
            "acme",
            "open",
            "main",
            None,
            vec![CommitFile::file("a.txt", "a\n")],
        )
        .unwrap();
    let auth_main = auth.sim.branch_sha("acme", "open", "main").unwrap();
    c.run(
        &auth,
        Case::new(
            "valid token",
            "GET",
            R_COMBINED,
            "/repos/acme/open/commits/main/status",
            200,
        )
        .token("good-token"),
    )
    .await;
    c.run(
        &auth,
        Case::new(
            "bad token",
            "GET",
            R_COMBINED,
            "/repos/acme/open/commits/main/status",
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
            R_FILES,
            "/repos/acme/open/pulls/1/files",
            401,
        )
        .token("bad"),
    )
    .await;
    c.run(
        &auth,
        Case::new(
            "bad token",
            "POST",
            R_REVIEWS,
            "/repos/acme/open/pulls/1/reviews",
            401,
        )
        .token("bad")
        .json(json!({ "event": "APPROVE" })),
    )
    .await;
    c.run(
        &auth,
        Case::new(
            "bad token",
            "POST",
            R_STATUSES,
            &format!("/repos/acme/open/statuses/{auth_main}"),
            401,
        )
        .token("bad")
        .json(json!({ "state": "success" })),
    )
    .await;

    let exhausted = start(SimConfig::default()).await;
    exhausted.sim.set_rate_limit(0);
    for (route, path) in [
        (R_FILES, "/repos/acme/open/pulls/1/files"),
        (R_COMPARE, "/repos/acme/open/compare/main...main"),
        (R_REF_STATUSES, "/repos/acme/open/commits/main/statuses"),
    ] {
        c.run(
            &exhausted,
            Case::new("rate limited", "GET", route, path, 403),
        )
        .await;
    }
    c.run(
        &exhausted,
        Case::new(
            "rate limited",
            "POST",
            R_STATUSES,
            &format!("/repos/acme/open/statuses/{head}"),
            403,
        )
        .json(json!({ "state": "success" })),
    )
    .await;

    // --- Coverage. -----------------------------------------------------------------------------
    c.check_request_logs(&[&s, &auth, &exhausted], ROUTES);
    c.finish(ROUTES);
}
