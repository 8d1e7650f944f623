//! Contract tests of the repository content families: contents, the git database (blobs, trees,
//! commits, refs), commits, pull requests and license, checked against GitHub's OpenAPI
//! description with the shared harness (`support`).
//!
//! Two kinds of answers cannot go through `Checker::run` unchanged, and are checked by hand here
//! (see [`by_hand`]), with the reason printed:
//!
//! - the document describes some error bodies with a `oneOf` whose alternatives both accept
//!   every error GitHub sends (`{"message", "documentation_url", "status"}`), so no real answer
//!   can satisfy "exactly one" (409 of `PUT /contents/{path}`, 422 of `POST /git/blobs`);
//! - it declares the 422 of `DELETE /git/refs/{ref}` without content, while GitHub answers it
//!   with its JSON error ("Reference does not exist").
//!
//! Requests that are valid per the requestBody schema but refused by GitHub for what they mean
//! (the ref exists, the update is not a fast forward, the pull request exists) are checked
//! against the schema here, then sent as raw JSON (see [`semantic`]): the harness reads a 422 to
//! a schema-valid JSON body as over-strict validation, which these are not.

use crate::support;

use base64::Engine;
use plumbline_github_sim::{CommitFile, SimConfig};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{json, Value};
use support::{schema_errors, start, Case, Checker, Server, Spec, SpecGap};

const R_CONTENTS: &str = "/repos/{owner}/{repo}/contents/{path}";
const R_TREE: &str = "/repos/{owner}/{repo}/git/trees/{tree_sha}";
const R_TREES: &str = "/repos/{owner}/{repo}/git/trees";
const R_BLOB: &str = "/repos/{owner}/{repo}/git/blobs/{file_sha}";
const R_BLOBS: &str = "/repos/{owner}/{repo}/git/blobs";
const R_GIT_COMMITS: &str = "/repos/{owner}/{repo}/git/commits";
const R_REFS: &str = "/repos/{owner}/{repo}/git/refs";
const R_GET_REF: &str = "/repos/{owner}/{repo}/git/ref/{ref}";
const R_REF: &str = "/repos/{owner}/{repo}/git/refs/{ref}";
const R_COMMIT: &str = "/repos/{owner}/{repo}/commits/{ref}";
const R_PULLS: &str = "/repos/{owner}/{repo}/pulls";
const R_PULL: &str = "/repos/{owner}/{repo}/pulls/{pull_number}";
const R_LICENSE: &str = "/repos/{owner}/{repo}/license";

/// The routes this file covers (method, path template), as the simulator logs them.
const ROUTES: &[(&str, &str)] = &[
    ("GET", R_CONTENTS),
    ("PUT", R_CONTENTS),
    ("DELETE", R_CONTENTS),
    ("GET", R_TREE),
    ("POST", R_TREES),
    ("GET", R_BLOB),
    ("POST", R_BLOBS),
    ("POST", R_GIT_COMMITS),
    ("POST", R_REFS),
    ("GET", R_GET_REF),
    ("PATCH", R_REF),
    ("DELETE", R_REF),
    ("GET", R_COMMIT),
    ("GET", R_PULLS),
    ("POST", R_PULLS),
    ("GET", R_PULL),
    ("PATCH", R_PULL),
    ("GET", R_LICENSE),
];

/// Statuses the simulator answers like GitHub although the document does not declare them.
const SPEC_GAPS: &[SpecGap] = &[
    // Conditional requests: GitHub answers 304 to a matching If-None-Match on any GET.
    ("GET", R_TREE, 304, "conditional GET"),
    ("GET", R_BLOB, 304, "conditional GET"),
    ("GET", R_GET_REF, 304, "conditional GET"),
    ("GET", R_COMMIT, 304, "conditional GET"),
    ("GET", R_LICENSE, 304, "conditional GET"),
    // Unknown repository: GitHub answers 404 where only other errors are declared.
    ("POST", R_REFS, 404, "unknown repository"),
    ("PATCH", R_REF, 404, "unknown repository"),
    ("DELETE", R_REF, 404, "unknown repository"),
    ("GET", R_PULLS, 404, "unknown repository"),
    ("POST", R_PULLS, 404, "unknown repository"),
    ("PATCH", R_PULL, 404, "unknown repository or pull request"),
    // Unparseable JSON bodies are answered 400 "Problems parsing JSON".
    ("PUT", R_CONTENTS, 400, "malformed JSON body"),
    ("POST", R_TREES, 400, "malformed JSON body"),
    ("POST", R_PULLS, 400, "malformed JSON body"),
    // A bad token is answered 401 "Bad credentials" on every endpoint.
    ("GET", R_CONTENTS, 401, "bad credentials"),
    ("PUT", R_CONTENTS, 401, "bad credentials"),
    ("GET", R_COMMIT, 401, "bad credentials"),
    ("PATCH", R_REF, 401, "bad credentials"),
    ("POST", R_PULLS, 401, "bad credentials"),
    ("GET", R_LICENSE, 401, "bad credentials"),
    // An exhausted primary rate limit is answered 403 on every charged endpoint.
    ("PUT", R_CONTENTS, 403, "rate limit exceeded"),
    ("GET", R_COMMIT, 403, "rate limit exceeded"),
    ("PATCH", R_REF, 403, "rate limit exceeded"),
    ("GET", R_PULLS, 403, "rate limit exceeded"),
    ("GET", R_LICENSE, 403, "rate limit exceeded"),
];

const MIT: &str = "MIT License\n\nCopyright (c) 2024 Acme\n\nPermission is hereby granted, free \
                   of charge, to any person obtaining a copy\nof this software and associated \
                   documentation files (the \"Software\"), to deal\nin the Software without \
                   restriction.\n";

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

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

/// Sends a request whose answer the document cannot describe exactly (see the module docs) and
/// checks it by hand: the status, a JSON error body with GitHub's fields, and, where the
/// document has a `oneOf` for the status, that at least one alternative accepts the body.
/// Returns the printed finding.
async fn by_hand(
    spec: &Spec,
    server: &Server,
    (method, route, path): (&str, &str, &str),
    body: Option<Value>,
    expect: u16,
    message: &str,
) -> String {
    let client = reqwest::Client::new();
    let mut request = client.request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        format!("{}{path}", server.base),
    );
    if let Some(body) = body {
        request = request
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status().as_u16(), expect, "{method} {path}");
    assert!(response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["message"], message, "{method} {path}: {answer}");
    assert!(answer["documentation_url"].is_string());
    let declared = spec
        .operation(method, route)
        .and_then(|op| op.get("responses"))
        .and_then(|r| r.get(expect.to_string()))
        .unwrap_or_else(|| panic!("{method} {route} declares {expect}"));
    let how = match declared.pointer("/content/application~1json/schema") {
        Some(schema) => {
            let alternatives = schema["oneOf"].as_array().expect("an ambiguous oneOf");
            let matching = alternatives
                .iter()
                .filter(|alt| schema_errors(alt, &answer).is_empty())
                .count();
            assert!(
                matching >= 1,
                "{method} {route} {expect}: no alternative fits {answer}"
            );
            format!(
                "matches {matching} of the {} `oneOf` alternatives",
                alternatives.len()
            )
        }
        None => "declared without content; GitHub sends its JSON error".to_owned(),
    };
    format!("{method} {route} → {expect} ({message:?}): checked by hand, {how}")
}

async fn get_json(server: &Server, path: &str) -> Value {
    reqwest::get(format!("{}{path}", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn repository_content_families_honour_github_openapi_contract() {
    let mut c = Checker::new(SPEC_GAPS);
    c.expect_routes(ROUTES);
    let spec = Spec::load();
    let mut findings = Vec::new();

    // --- Seeded content. -------------------------------------------------------------------
    let s = start(SimConfig::default()).await;
    let sim = &s.sim;
    sim.commit_files(
        "acme",
        "open",
        "main",
        Some("Seed"),
        vec![
            CommitFile::file("README.md", "# open\n"),
            CommitFile::file("LICENSE", MIT),
            CommitFile::file("docs/guide.md", "Guide\n"),
            CommitFile::executable("scripts/run.sh", "#!/bin/sh\necho hi\n"),
            CommitFile::symlink("latest", "docs/guide.md"),
        ],
    )
    .unwrap();
    sim.put_file(
        "acme",
        "svc-001",
        "main",
        "COPYING",
        "All rights reserved.\n",
    )
    .unwrap();
    let main = sim.branch_sha("acme", "open", "main").unwrap();
    sim.create_branch("acme", "open", "feature", "main")
        .unwrap();
    sim.put_file("acme", "open", "feature", "docs/new.md", "New\n")
        .unwrap();
    let feature = sim.branch_sha("acme", "open", "feature").unwrap();
    sim.create_branch("acme", "open", "same", "main").unwrap();
    let (_, readme_sha) = sim.file_entry("acme", "open", "main", "README.md").unwrap();
    let tree_sha = get_json(&s, &format!("/repos/acme/open/commits/{main}")).await["commit"]
        ["tree"]["sha"]
        .as_str()
        .unwrap()
        .to_owned();
    sim.reset_request_log();

    // GET /repos/{owner}/{repo}/contents/{path}
    let etag = c
        .run(
            &s,
            Case::new(
                "file",
                "GET",
                R_CONTENTS,
                "/repos/acme/open/contents/README.md",
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_CONTENTS,
            "/repos/acme/open/contents/README.md",
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "directory",
            "GET",
            R_CONTENTS,
            "/repos/acme/open/contents/docs",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "repository root",
            "GET",
            R_CONTENTS,
            "/repos/acme/open/contents",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "symlink",
            "GET",
            R_CONTENTS,
            "/repos/acme/open/contents/latest",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "executable at a branch",
            "GET",
            R_CONTENTS,
            "/repos/acme/open/contents/scripts/run.sh?ref=feature",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "at a commit sha",
            "GET",
            R_CONTENTS,
            &format!("/repos/acme/open/contents/README.md?ref={main}"),
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown path",
            "GET",
            R_CONTENTS,
            "/repos/acme/open/contents/nope.md",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown ref",
            "GET",
            R_CONTENTS,
            "/repos/acme/open/contents/README.md?ref=nope",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "GET",
            R_CONTENTS,
            "/repos/acme/nope/contents/README.md",
            404,
        ),
    )
    .await;

    // PUT /repos/{owner}/{repo}/contents/{path}
    let create = json!({
        "message": "Add SECURITY.md",
        "content": b64("Report to security@acme.test\n"),
        "branch": "feature",
        "committer": { "name": "Octo Cat", "email": "octocat@github.com" }
    });
    c.run(
        &s,
        Case::new(
            "create",
            "PUT",
            R_CONTENTS,
            "/repos/acme/open/contents/SECURITY.md",
            201,
        )
        .json(create.clone()),
    )
    .await;
    let update = json!({
        "message": "Update README",
        "content": b64("# open v2\n"),
        "sha": readme_sha,
    });
    c.run(
        &s,
        Case::new(
            "update with the blob sha",
            "PUT",
            R_CONTENTS,
            "/repos/acme/open/contents/README.md",
            200,
        )
        .json(update.clone()),
    )
    .await;
    let no_sha = semantic(
        &spec,
        "PUT",
        R_CONTENTS,
        json!({ "message": "m", "content": b64("x") }),
    );
    c.run(
        &s,
        Case::new(
            "existing file without `sha`",
            "PUT",
            R_CONTENTS,
            "/repos/acme/open/contents/README.md",
            422,
        )
        .raw(no_sha),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "missing `message`",
            "PUT",
            R_CONTENTS,
            "/repos/acme/open/contents/x.md",
            422,
        )
        .json(json!({ "content": b64("x") })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown branch",
            "PUT",
            R_CONTENTS,
            "/repos/acme/open/contents/x.md",
            404,
        )
        .json(json!({ "message": "m", "content": b64("x"), "branch": "nope" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "PUT",
            R_CONTENTS,
            "/repos/acme/nope/contents/x.md",
            404,
        )
        .json(create.clone()),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "malformed JSON",
            "PUT",
            R_CONTENTS,
            "/repos/acme/open/contents/x.md",
            400,
        )
        .raw("{not json"),
    )
    .await;
    findings.push(
        by_hand(
            &spec,
            &s,
            ("PUT", R_CONTENTS, "/repos/acme/open/contents/README.md"),
            Some(update.clone()),
            409,
            &format!("README.md does not match {readme_sha}"),
        )
        .await,
    );
    findings.push(
        by_hand(
            &spec,
            &s,
            ("PUT", R_CONTENTS, "/repos/acme/guarded/contents/x.md"),
            Some(json!({ "message": "m", "content": b64("x") })),
            409,
            "Could not create file: Changes must be made through a pull request.",
        )
        .await,
    );

    // DELETE /repos/{owner}/{repo}/contents/{path}
    let (_, guide_sha) = sim
        .file_entry("acme", "open", "main", "docs/guide.md")
        .unwrap();
    c.run(
        &s,
        Case::new(
            "stale `sha`",
            "DELETE",
            R_CONTENTS,
            "/repos/acme/open/contents/docs/guide.md",
            409,
        )
        .json(json!({ "message": "rm", "sha": readme_sha })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "missing `sha`",
            "DELETE",
            R_CONTENTS,
            "/repos/acme/open/contents/docs/guide.md",
            422,
        )
        .json(json!({ "message": "rm" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "delete",
            "DELETE",
            R_CONTENTS,
            "/repos/acme/open/contents/docs/guide.md",
            200,
        )
        .json(json!({ "message": "rm", "sha": guide_sha })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "already deleted",
            "DELETE",
            R_CONTENTS,
            "/repos/acme/open/contents/docs/guide.md",
            404,
        )
        .json(json!({ "message": "rm", "sha": guide_sha })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "DELETE",
            R_CONTENTS,
            "/repos/acme/nope/contents/a.md",
            404,
        )
        .json(json!({ "message": "rm", "sha": guide_sha })),
    )
    .await;

    // GET /repos/{owner}/{repo}/git/blobs/{file_sha}, POST /repos/{owner}/{repo}/git/blobs
    let etag = c
        .run(
            &s,
            Case::new(
                "blob",
                "GET",
                R_BLOB,
                &format!("/repos/acme/open/git/blobs/{readme_sha}"),
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_BLOB,
            &format!("/repos/acme/open/git/blobs/{readme_sha}"),
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown blob",
            "GET",
            R_BLOB,
            &format!("/repos/acme/open/git/blobs/{}", "0".repeat(40)),
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "not a sha",
            "GET",
            R_BLOB,
            "/repos/acme/open/git/blobs/xyz",
            422,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "GET",
            R_BLOB,
            &format!("/repos/acme/nope/git/blobs/{readme_sha}"),
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new("utf-8", "POST", R_BLOBS, "/repos/acme/open/git/blobs", 201)
            .json(json!({ "content": "hello\n", "encoding": "utf-8" })),
    )
    .await;
    c.run(
        &s,
        Case::new("base64", "POST", R_BLOBS, "/repos/acme/open/git/blobs", 201)
            .json(json!({ "content": b64("hello\n"), "encoding": "base64" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "POST",
            R_BLOBS,
            "/repos/acme/nope/git/blobs",
            404,
        )
        .json(json!({ "content": "x" })),
    )
    .await;
    findings.push(
        by_hand(
            &spec,
            &s,
            ("POST", R_BLOBS, "/repos/acme/open/git/blobs"),
            Some(json!({ "encoding": "utf-8" })),
            422,
            "Invalid request.\n\n\"content\" wasn't supplied.",
        )
        .await,
    );

    // GET /repos/{owner}/{repo}/git/trees/{tree_sha}, POST /repos/{owner}/{repo}/git/trees
    let etag = c
        .run(
            &s,
            Case::new(
                "tree by sha",
                "GET",
                R_TREE,
                &format!("/repos/acme/open/git/trees/{tree_sha}"),
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_TREE,
            &format!("/repos/acme/open/git/trees/{tree_sha}"),
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "by branch, recursive",
            "GET",
            R_TREE,
            "/repos/acme/open/git/trees/feature?recursive=1",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown tree",
            "GET",
            R_TREE,
            &format!("/repos/acme/open/git/trees/{}", "0".repeat(40)),
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "GET",
            R_TREE,
            "/repos/acme/nope/git/trees/main",
            404,
        ),
    )
    .await;
    let new_tree = json!({
        "base_tree": tree_sha,
        "tree": [
            { "path": ".github/workflows/ci.yml", "mode": "100644", "type": "blob", "content": "on: push\n" },
            { "path": "scripts/lint.sh", "mode": "100755", "type": "blob", "sha": readme_sha },
            { "path": "docs/guide.md", "mode": "100644", "type": "blob", "sha": null }
        ]
    });
    c.run(
        &s,
        Case::new(
            "edit a base tree",
            "POST",
            R_TREES,
            "/repos/acme/open/git/trees",
            201,
        )
        .json(new_tree.clone()),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "mode outside the enum",
            "POST",
            R_TREES,
            "/repos/acme/open/git/trees",
            422,
        )
        .json(
            json!({ "tree": [{ "path": "a", "mode": "100600", "type": "blob", "content": "x" }] }),
        ),
    )
    .await;
    let bad_blob = semantic(
        &spec,
        "POST",
        R_TREES,
        json!({ "tree": [{ "path": "a", "mode": "100644", "type": "blob", "sha": "0".repeat(40) }] }),
    );
    c.run(
        &s,
        Case::new(
            "sha of no blob",
            "POST",
            R_TREES,
            "/repos/acme/open/git/trees",
            422,
        )
        .raw(bad_blob),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "POST",
            R_TREES,
            "/repos/acme/nope/git/trees",
            404,
        )
        .json(new_tree),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "malformed JSON",
            "POST",
            R_TREES,
            "/repos/acme/open/git/trees",
            400,
        )
        .raw("{not json"),
    )
    .await;

    // POST /repos/{owner}/{repo}/git/commits
    let commit = json!({
        "message": "Tree from the API",
        "tree": tree_sha,
        "parents": [main],
        "author": { "name": "Mona", "email": "mona@example.com", "date": "2024-05-01T12:00:00Z" }
    });
    c.run(
        &s,
        Case::new(
            "commit",
            "POST",
            R_GIT_COMMITS,
            "/repos/acme/open/git/commits",
            201,
        )
        .json(commit.clone()),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "missing `tree`",
            "POST",
            R_GIT_COMMITS,
            "/repos/acme/open/git/commits",
            422,
        )
        .json(json!({ "message": "m" })),
    )
    .await;
    let no_tree = semantic(
        &spec,
        "POST",
        R_GIT_COMMITS,
        json!({ "message": "m", "tree": "0".repeat(40) }),
    );
    c.run(
        &s,
        Case::new(
            "unknown tree",
            "POST",
            R_GIT_COMMITS,
            "/repos/acme/open/git/commits",
            422,
        )
        .raw(no_tree),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "POST",
            R_GIT_COMMITS,
            "/repos/acme/nope/git/commits",
            404,
        )
        .json(commit),
    )
    .await;

    // Refs: POST /git/refs, GET /git/ref/{ref}, PATCH and DELETE /git/refs/{ref}
    sim.create_branch("acme", "open", "scratch", "main")
        .unwrap();
    let ahead = sim
        .commit_files(
            "acme",
            "open",
            "scratch",
            None,
            vec![CommitFile::file("ahead.txt", "1\n")],
        )
        .unwrap();
    c.run(
        &s,
        Case::new(
            "create branch",
            "POST",
            R_REFS,
            "/repos/acme/open/git/refs",
            201,
        )
        .json(json!({ "ref": "refs/heads/topic", "sha": main })),
    )
    .await;
    let exists = semantic(
        &spec,
        "POST",
        R_REFS,
        json!({ "ref": "refs/heads/topic", "sha": main }),
    );
    c.run(
        &s,
        Case::new(
            "already exists",
            "POST",
            R_REFS,
            "/repos/acme/open/git/refs",
            422,
        )
        .raw(exists),
    )
    .await;
    let no_object = semantic(
        &spec,
        "POST",
        R_REFS,
        json!({ "ref": "refs/heads/other", "sha": "0".repeat(40) }),
    );
    c.run(
        &s,
        Case::new(
            "unknown object",
            "POST",
            R_REFS,
            "/repos/acme/open/git/refs",
            422,
        )
        .raw(no_object),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "missing `sha`",
            "POST",
            R_REFS,
            "/repos/acme/open/git/refs",
            422,
        )
        .json(json!({ "ref": "refs/heads/x" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "POST",
            R_REFS,
            "/repos/acme/nope/git/refs",
            404,
        )
        .json(json!({ "ref": "refs/heads/x", "sha": main })),
    )
    .await;
    let etag = c
        .run(
            &s,
            Case::new(
                "branch ref",
                "GET",
                R_GET_REF,
                "/repos/acme/open/git/ref/heads/topic",
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_GET_REF,
            "/repos/acme/open/git/ref/heads/topic",
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
            R_GET_REF,
            "/repos/acme/open/git/ref/heads/nope",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "GET",
            R_GET_REF,
            "/repos/acme/nope/git/ref/heads/main",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "fast forward",
            "PATCH",
            R_REF,
            "/repos/acme/open/git/refs/heads/topic",
            200,
        )
        .json(json!({ "sha": ahead })),
    )
    .await;
    let backwards = semantic(&spec, "PATCH", R_REF, json!({ "sha": main }));
    c.run(
        &s,
        Case::new(
            "not a fast forward",
            "PATCH",
            R_REF,
            "/repos/acme/open/git/refs/heads/topic",
            422,
        )
        .raw(backwards),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "forced",
            "PATCH",
            R_REF,
            "/repos/acme/open/git/refs/heads/topic",
            200,
        )
        .json(json!({ "sha": main, "force": true })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "missing `sha`",
            "PATCH",
            R_REF,
            "/repos/acme/open/git/refs/heads/topic",
            422,
        )
        .json(json!({ "force": true })),
    )
    .await;
    let missing_ref = semantic(&spec, "PATCH", R_REF, json!({ "sha": main }));
    c.run(
        &s,
        Case::new(
            "unknown ref",
            "PATCH",
            R_REF,
            "/repos/acme/open/git/refs/heads/nope",
            422,
        )
        .raw(missing_ref),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "PATCH",
            R_REF,
            "/repos/acme/nope/git/refs/heads/main",
            404,
        )
        .json(json!({ "sha": main })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "delete branch",
            "DELETE",
            R_REF,
            "/repos/acme/open/git/refs/heads/topic",
            204,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "DELETE",
            R_REF,
            "/repos/acme/nope/git/refs/heads/topic",
            404,
        ),
    )
    .await;
    findings.push(
        by_hand(
            &spec,
            &s,
            ("DELETE", R_REF, "/repos/acme/open/git/refs/heads/topic"),
            None,
            422,
            "Reference does not exist",
        )
        .await,
    );

    // GET /repos/{owner}/{repo}/commits/{ref}
    let etag = c
        .run(
            &s,
            Case::new(
                "by branch",
                "GET",
                R_COMMIT,
                "/repos/acme/open/commits/feature",
                200,
            ),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_COMMIT,
            "/repos/acme/open/commits/feature",
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "by sha",
            "GET",
            R_COMMIT,
            &format!("/repos/acme/open/commits/{feature}"),
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "by short sha",
            "GET",
            R_COMMIT,
            &format!("/repos/acme/open/commits/{}", &main[..7]),
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown ref",
            "GET",
            R_COMMIT,
            "/repos/acme/open/commits/nope",
            422,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "GET",
            R_COMMIT,
            "/repos/acme/nope/commits/main",
            404,
        ),
    )
    .await;

    // Pull requests
    let open_pr = json!({
        "title": "Add docs/new.md",
        "head": "acme:feature",
        "base": "main",
        "body": "Opened by the contract test.",
        "maintainer_can_modify": true
    });
    c.run(
        &s,
        Case::new("open", "POST", R_PULLS, "/repos/acme/open/pulls", 201).json(open_pr.clone()),
    )
    .await;
    let duplicate = semantic(&spec, "POST", R_PULLS, open_pr.clone());
    c.run(
        &s,
        Case::new(
            "already exists",
            "POST",
            R_PULLS,
            "/repos/acme/open/pulls",
            422,
        )
        .raw(duplicate),
    )
    .await;
    let empty = semantic(
        &spec,
        "POST",
        R_PULLS,
        json!({ "title": "t", "head": "same", "base": "main" }),
    );
    c.run(
        &s,
        Case::new(
            "no commits between",
            "POST",
            R_PULLS,
            "/repos/acme/open/pulls",
            422,
        )
        .raw(empty),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "missing `head`",
            "POST",
            R_PULLS,
            "/repos/acme/open/pulls",
            422,
        )
        .json(json!({ "title": "t", "base": "main" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "POST",
            R_PULLS,
            "/repos/acme/nope/pulls",
            404,
        )
        .json(open_pr.clone()),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "malformed JSON",
            "POST",
            R_PULLS,
            "/repos/acme/open/pulls",
            400,
        )
        .raw("{not json"),
    )
    .await;
    sim.create_branch("acme", "open", "second", "scratch")
        .unwrap();
    c.run(
        &s,
        Case::new(
            "open a second",
            "POST",
            R_PULLS,
            "/repos/acme/open/pulls",
            201,
        )
        .json(json!({ "title": "Second", "head": "second", "base": "main", "draft": true })),
    )
    .await;
    let etag = c
        .run(
            &s,
            Case::new("open ones", "GET", R_PULLS, "/repos/acme/open/pulls", 200),
        )
        .await;
    c.run(
        &s,
        Case::new("conditional", "GET", R_PULLS, "/repos/acme/open/pulls", 304).if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "by head, all states",
            "GET",
            R_PULLS,
            "/repos/acme/open/pulls?state=all&head=acme:feature",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "second page",
            "GET",
            R_PULLS,
            "/repos/acme/open/pulls?per_page=1&page=2",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "state outside the enum",
            "GET",
            R_PULLS,
            "/repos/acme/open/pulls?state=merged",
            422,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "GET",
            R_PULLS,
            "/repos/acme/nope/pulls",
            404,
        ),
    )
    .await;
    let etag = c
        .run(
            &s,
            Case::new("one", "GET", R_PULL, "/repos/acme/open/pulls/1", 200),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_PULL,
            "/repos/acme/open/pulls/1",
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown number",
            "GET",
            R_PULL,
            "/repos/acme/open/pulls/99",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "edit title and body",
            "PATCH",
            R_PULL,
            "/repos/acme/open/pulls/1",
            200,
        )
        .json(json!({ "title": "Add docs", "body": "Edited." })),
    )
    .await;
    c.run(
        &s,
        Case::new("close", "PATCH", R_PULL, "/repos/acme/open/pulls/1", 200)
            .json(json!({ "state": "closed" })),
    )
    .await;
    c.run(
        &s,
        Case::new("reopen", "PATCH", R_PULL, "/repos/acme/open/pulls/1", 200)
            .json(json!({ "state": "open" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "state outside the enum",
            "PATCH",
            R_PULL,
            "/repos/acme/open/pulls/1",
            422,
        )
        .json(json!({ "state": "merged" })),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown number",
            "PATCH",
            R_PULL,
            "/repos/acme/open/pulls/99",
            404,
        )
        .json(json!({ "title": "x" })),
    )
    .await;

    // GET /repos/{owner}/{repo}/license
    let etag = c
        .run(
            &s,
            Case::new("MIT", "GET", R_LICENSE, "/repos/acme/open/license", 200),
        )
        .await;
    c.run(
        &s,
        Case::new(
            "conditional",
            "GET",
            R_LICENSE,
            "/repos/acme/open/license",
            304,
        )
        .if_none_match(etag),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unrecognised license",
            "GET",
            R_LICENSE,
            "/repos/acme/svc-001/license",
            200,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "no license file",
            "GET",
            R_LICENSE,
            "/repos/acme/svc-002/license",
            404,
        ),
    )
    .await;
    c.run(
        &s,
        Case::new(
            "unknown repo",
            "GET",
            R_LICENSE,
            "/repos/acme/nope/license",
            404,
        ),
    )
    .await;

    // --- Authenticating simulator: 401 for bad credentials. ----------------------------------
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
            R_CONTENTS,
            "/repos/acme/open/contents",
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
            R_CONTENTS,
            "/repos/acme/open/contents/README.md",
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
            R_CONTENTS,
            "/repos/acme/open/contents/x.md",
            401,
        )
        .token("bad")
        .json(json!({ "message": "m", "content": b64("x") })),
    )
    .await;
    c.run(
        &auth,
        Case::new(
            "bad token",
            "GET",
            R_COMMIT,
            "/repos/acme/open/commits/main",
            401,
        )
        .token("bad"),
    )
    .await;
    c.run(
        &auth,
        Case::new(
            "bad token",
            "PATCH",
            R_REF,
            "/repos/acme/open/git/refs/heads/main",
            401,
        )
        .token("bad")
        .json(json!({ "sha": main })),
    )
    .await;
    c.run(
        &auth,
        Case::new("bad token", "POST", R_PULLS, "/repos/acme/open/pulls", 401)
            .token("bad")
            .json(json!({ "title": "t", "head": "a", "base": "main" })),
    )
    .await;
    c.run(
        &auth,
        Case::new(
            "bad token",
            "GET",
            R_LICENSE,
            "/repos/acme/open/license",
            401,
        )
        .token("bad"),
    )
    .await;

    // --- Exhausted simulator: 403 rate limit exceeded. -------------------------------------
    let exhausted = start(SimConfig::default()).await;
    exhausted.sim.set_rate_limit(0);
    c.run(
        &exhausted,
        Case::new(
            "rate limited",
            "PUT",
            R_CONTENTS,
            "/repos/acme/open/contents/x.md",
            403,
        )
        .json(json!({ "message": "m", "content": b64("x") })),
    )
    .await;
    c.run(
        &exhausted,
        Case::new(
            "rate limited",
            "POST",
            R_TREES,
            "/repos/acme/open/git/trees",
            403,
        )
        .json(json!({ "tree": [] })),
    )
    .await;
    c.run(
        &exhausted,
        Case::new(
            "rate limited",
            "POST",
            R_BLOBS,
            "/repos/acme/open/git/blobs",
            403,
        )
        .json(json!({ "content": "x" })),
    )
    .await;
    c.run(
        &exhausted,
        Case::new(
            "rate limited",
            "GET",
            R_COMMIT,
            "/repos/acme/open/commits/main",
            403,
        ),
    )
    .await;
    c.run(
        &exhausted,
        Case::new(
            "rate limited",
            "PATCH",
            R_REF,
            "/repos/acme/open/git/refs/heads/main",
            403,
        )
        .json(json!({ "sha": main })),
    )
    .await;
    c.run(
        &exhausted,
        Case::new(
            "rate limited",
            "GET",
            R_PULLS,
            "/repos/acme/open/pulls",
            403,
        ),
    )
    .await;
    c.run(
        &exhausted,
        Case::new(
            "rate limited",
            "GET",
            R_LICENSE,
            "/repos/acme/open/license",
            403,
        ),
    )
    .await;

    // --- Coverage. -----------------------------------------------------------------------------
    println!("checked by hand ({}):", findings.len());
    for finding in &findings {
        println!("  - {finding}");
    }
    c.check_request_logs(&[&s, &auth, &exhausted], ROUTES);
    c.finish(ROUTES);
}

/// The raw and sha media types answer bare bytes, which the harness (JSON only) cannot check:
/// content type, `X-GitHub-Media-Type`, and a stable ETag for the sha.
#[tokio::test]
async fn raw_and_sha_media_types() {
    let s = start(SimConfig::default()).await;
    s.sim
        .put_file("acme", "open", "main", "bin/data", vec![0u8, 159, 146, 150])
        .unwrap();
    let client = reqwest::Client::new();
    let raw = client
        .get(format!("{}/repos/acme/open/contents/bin/data", s.base))
        .header(ACCEPT, "application/vnd.github.raw")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
    assert_eq!(
        raw.headers()[CONTENT_TYPE],
        "application/vnd.github.raw; charset=utf-8"
    );
    assert_eq!(raw.headers()["x-github-media-type"], "github.v3; param=raw");
    assert_eq!(raw.bytes().await.unwrap().as_ref(), &[0u8, 159, 146, 150]);

    let sha_url = format!("{}/repos/acme/open/commits/main", s.base);
    let first = client
        .get(&sha_url)
        .header(ACCEPT, "application/vnd.github.sha")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(
        first.headers()["x-github-media-type"],
        "github.v3; param=sha"
    );
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(
        first.text().await.unwrap(),
        s.sim.branch_sha("acme", "open", "main").unwrap()
    );
    let again = client
        .get(&sha_url)
        .header(ACCEPT, "application/vnd.github.sha")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    s.sim
        .put_file("acme", "open", "main", "moved", "x")
        .unwrap();
    let moved = client
        .get(&sha_url)
        .header(ACCEPT, "application/vnd.github.sha")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200);
}
