//! Functional tests of the pull request review families: the files of a pull request (patch
//! text exactly as GitHub renders it, pagination, binary and oversized files), comparisons,
//! reviews and review comments validated against the diff, dismissals, commit statuses and the
//! combined status, and their webhooks.

use crate::helpers;

use helpers::{Receiver, SECRET};
use plumbline_github_sim::{
    CommitFile, NewPullRequest, RepoOptions, SimConfig, Simulator, MAX_PATCH_LINES, MAX_PULL_FILES,
};
use reqwest::header::{ETAG, IF_NONE_MATCH, LINK};
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

/// An answer: status, `Link` header (if any) and JSON body.
struct Answer {
    status: u16,
    link: Option<String>,
    body: Value,
}

impl Server {
    async fn start(webhook_url: Option<&str>) -> Server {
        let sim = Simulator::new(SimConfig {
            webhook_url: webhook_url.map(str::to_owned),
            webhook_secret: SECRET.to_owned(),
            ..SimConfig::default()
        });
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

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let mut request = self.client.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", self.base),
        );
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let link = response
            .headers()
            .get(LINK)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.json().await.unwrap_or(Value::Null);
        Answer { status, link, body }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.call("POST", path, Some(body)).await
    }
}

/// `acme/api` with `b.txt`, `old.txt` and `gone.txt` on main, and pull request #1 from
/// `feature` that adds `new.txt` (3 lines), a binary `logo.png` and `nonl.txt` (no final
/// newline), changes line 2 of `b.txt`, renames `old.txt` and removes `gone.txt`.
fn seed(sim: &Simulator) -> u64 {
    sim.create_repo(
        "acme",
        "api",
        RepoOptions {
            files: vec![
                ("b.txt".to_owned(), b"one\ntwo\nthree\n".to_vec()),
                ("old.txt".to_owned(), b"same\n".to_vec()),
                ("gone.txt".to_owned(), b"bye\n".to_vec()),
            ],
            ..RepoOptions::default()
        },
    );
    sim.create_branch("acme", "api", "feature", "main").unwrap();
    sim.commit_files(
        "acme",
        "api",
        "feature",
        Some("Change things"),
        vec![
            CommitFile::file("new.txt", "a\nb\nc\n"),
            CommitFile::file("b.txt", "one\nTWO\nthree\n"),
            CommitFile::file("logo.png", vec![0x89, b'P', b'N', b'G', 0, 1, 2]),
            CommitFile::file("nonl.txt", "x"),
            CommitFile::delete("old.txt"),
            CommitFile::file("moved.txt", "same\n"),
            CommitFile::delete("gone.txt"),
        ],
    )
    .unwrap();
    sim.open_pull_request(
        "acme",
        "api",
        NewPullRequest {
            title: "Change things".to_owned(),
            head: "feature".to_owned(),
            base: "main".to_owned(),
            ..NewPullRequest::default()
        },
    )
    .unwrap()
}

fn by_name<'a>(files: &'a Value, name: &str) -> &'a Value {
    files
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["filename"] == name)
        .unwrap_or_else(|| panic!("no file {name} in {files}"))
}

#[tokio::test]
async fn pull_request_files_have_githubs_patches() {
    let server = Server::start(None).await;
    let sim = &server.sim;
    let number = seed(sim);
    let head = sim.branch_sha("acme", "api", "feature").unwrap();
    let main = sim.branch_sha("acme", "api", "main").unwrap();
    let answer = server
        .get(&format!("/repos/acme/api/pulls/{number}/files"))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.link, None);
    let files = &answer.body;
    let names: Vec<&str> = files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filename"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "b.txt",
            "gone.txt",
            "logo.png",
            "moved.txt",
            "new.txt",
            "nonl.txt"
        ]
    );

    let added = by_name(files, "new.txt");
    assert_eq!(added["status"], "added");
    assert_eq!(
        (&added["additions"], &added["deletions"], &added["changes"]),
        (&json!(3), &json!(0), &json!(3))
    );
    assert_eq!(added["patch"], "@@ -0,0 +1,3 @@\n+a\n+b\n+c");
    let (_, blob) = sim.file_entry("acme", "api", "feature", "new.txt").unwrap();
    assert_eq!(added["sha"], blob);
    assert!(added["blob_url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/acme/api/blob/{head}/new.txt")));
    assert!(added["raw_url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/acme/api/raw/{head}/new.txt")));
    assert!(added["contents_url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/repos/acme/api/contents/new.txt?ref={head}")));

    let modified = by_name(files, "b.txt");
    assert_eq!(modified["status"], "modified");
    assert_eq!(
        (
            &modified["additions"],
            &modified["deletions"],
            &modified["changes"]
        ),
        (&json!(1), &json!(1), &json!(2))
    );
    assert_eq!(
        modified["patch"],
        "@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three"
    );

    let no_newline = by_name(files, "nonl.txt");
    assert_eq!(
        no_newline["patch"],
        "@@ -0,0 +1 @@\n+x\n\\ No newline at end of file"
    );

    let binary = by_name(files, "logo.png");
    assert_eq!(binary["status"], "added");
    assert!(binary.get("patch").is_none(), "binary files have no patch");
    assert_eq!(binary["changes"], 0);

    let removed = by_name(files, "gone.txt");
    assert_eq!(removed["status"], "removed");
    assert_eq!(removed["patch"], "@@ -1 +0,0 @@\n-bye");
    // A removed file's URLs point at the base side.
    assert!(removed["blob_url"]
        .as_str()
        .unwrap()
        .contains(&format!("/blob/{main}/")));

    let renamed = by_name(files, "moved.txt");
    assert_eq!(renamed["status"], "renamed");
    assert_eq!(renamed["previous_filename"], "old.txt");
    assert!(renamed.get("patch").is_none());

    // The helper answers the same.
    assert_eq!(
        Value::Array(sim.pull_request_files("acme", "api", number)),
        answer.body
    );
    // The pull request's own counters agree with the files.
    let pull = sim.pull_request("acme", "api", number).unwrap();
    assert_eq!(pull["changed_files"], 6);

    assert_eq!(
        server.get("/repos/acme/api/pulls/99/files").await.status,
        404
    );
    assert_eq!(
        server.get("/repos/acme/nope/pulls/1/files").await.status,
        404
    );
    assert_eq!(
        server.get("/repos/acme/api/pulls/x/files").await.status,
        404
    );
}

#[tokio::test]
async fn hunks_carry_context_and_the_function_line() {
    let server = Server::start(None).await;
    let sim = &server.sim;
    let old: String = (1..=20).map(|i| format!("line {i}\n")).collect();
    let source = format!("fn main() {{\n{}}}\n", old.replace("line", "    line"));
    sim.create_repo(
        "acme",
        "api",
        RepoOptions {
            files: vec![("main.rs".to_owned(), source.clone().into_bytes())],
            ..RepoOptions::default()
        },
    );
    sim.create_branch("acme", "api", "edit", "main").unwrap();
    let edited = source
        .replace("    line 2\n", "    line two\n")
        .replace("    line 15\n", "    line 15\n    inserted\n");
    sim.put_file("acme", "api", "edit", "main.rs", edited.as_str())
        .unwrap();
    let number = sim
        .open_pull_request(
            "acme",
            "api",
            NewPullRequest {
                title: "Edit".to_owned(),
                head: "edit".to_owned(),
                base: "main".to_owned(),
                ..NewPullRequest::default()
            },
        )
        .unwrap();
    let files = server
        .get(&format!("/repos/acme/api/pulls/{number}/files"))
        .await
        .body;
    assert_eq!(
        files[0]["patch"],
        "@@ -1,6 +1,6 @@\n fn main() {\n     line 1\n-    line 2\n+    line two\n     line 3\n     \
         line 4\n     line 5\n\
         @@ -14,6 +14,7 @@ fn main() {\n     line 13\n     line 14\n     line 15\n+    inserted\n     \
         line 16\n     line 17\n     line 18"
    );
    assert_eq!(
        (&files[0]["additions"], &files[0]["deletions"]),
        (&json!(2), &json!(1))
    );
}

#[tokio::test]
async fn pull_request_files_paginate_and_stop_at_githubs_limits() {
    let server = Server::start(None).await;
    let sim = &server.sim;
    sim.create_repo("acme", "api", RepoOptions::default());
    sim.create_branch("acme", "api", "many", "main").unwrap();
    let mut files: Vec<CommitFile> = (0..MAX_PULL_FILES + 5)
        .map(|i| CommitFile::file(format!("f/{i:04}.txt"), format!("{i}\n")))
        .collect();
    let big: String = (0..=MAX_PATCH_LINES).map(|i| format!("{i}\n")).collect();
    files.push(CommitFile::file("big.txt", big));
    sim.commit_files("acme", "api", "many", Some("Many"), files)
        .unwrap();
    let number = sim
        .open_pull_request(
            "acme",
            "api",
            NewPullRequest {
                title: "Many".to_owned(),
                head: "many".to_owned(),
                base: "main".to_owned(),
                ..NewPullRequest::default()
            },
        )
        .unwrap();
    let path = format!("/repos/acme/api/pulls/{number}/files");

    // 30 per page by default, with GitHub's Link header.
    let first = server.get(&path).await;
    assert_eq!(first.body.as_array().unwrap().len(), 30);
    let link = first.link.unwrap();
    assert!(link.contains("per_page=30&page=2>; rel=\"next\""), "{link}");
    // 3000 files over all pages: the last page is 100, and there is nothing after it.
    assert!(link.contains("page=100>; rel=\"last\""), "{link}");
    // Files come in path order: big.txt, then f/0000.txt ...
    assert_eq!(first.body[0]["filename"], "big.txt");
    assert_eq!(first.body[1]["filename"], "f/0000.txt");
    assert_eq!(first.body[1]["patch"], "@@ -0,0 +1 @@\n+0");

    let last = server.get(&format!("{path}?per_page=100&page=30")).await;
    let items = last.body.as_array().unwrap();
    assert_eq!(items.len(), 100);
    assert_eq!(items[99]["filename"], "f/2998.txt");
    assert!(!last.link.unwrap().contains("rel=\"next\""));
    let past = server.get(&format!("{path}?per_page=100&page=31")).await;
    assert_eq!(past.body, json!([]));
    // per_page is capped at 100.
    let capped = server.get(&format!("{path}?per_page=500")).await;
    assert_eq!(capped.body.as_array().unwrap().len(), 100);

    // One file's diff over GitHub's limit: counted, but no patch.
    let big = &first.body[0];
    assert_eq!(big["additions"], MAX_PATCH_LINES as u64 + 1);
    assert!(big.get("patch").is_none());

    // Conditional requests work like on every list.
    let response = server
        .client
        .get(format!("{}{path}", server.base))
        .send()
        .await
        .unwrap();
    let etag = response.headers()[ETAG].to_str().unwrap().to_owned();
    let again = server
        .client
        .get(format!("{}{path}", server.base))
        .header(IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
}

#[tokio::test]
async fn compare_reports_ahead_behind_commits_and_files() {
    let server = Server::start(None).await;
    let sim = &server.sim;
    seed(sim);
    let merge_base = sim.branch_sha("acme", "api", "main").unwrap();
    sim.put_file("acme", "api", "main", "main-only.txt", "m\n")
        .unwrap();
    sim.put_file("acme", "api", "feature", "second.txt", "s\n")
        .unwrap();
    let feature = sim.branch_sha("acme", "api", "feature").unwrap();

    let answer = server.get("/repos/acme/api/compare/main...feature").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let c = &answer.body;
    assert_eq!(c["status"], "diverged");
    assert_eq!((&c["ahead_by"], &c["behind_by"]), (&json!(2), &json!(1)));
    assert_eq!(c["total_commits"], 2);
    assert_eq!(c["merge_base_commit"]["sha"], merge_base);
    let commits = c["commits"].as_array().unwrap();
    assert_eq!(commits.len(), 2);
    // Chronological: the newest last.
    assert_eq!(commits[1]["sha"], feature);
    // Files of the three-dot diff: main's own change is not among them.
    let names: Vec<&str> = c["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filename"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"second.txt") && !names.contains(&"main-only.txt"));
    assert_eq!(
        by_name(&c["files"], "new.txt")["patch"],
        "@@ -0,0 +1,3 @@\n+a\n+b\n+c"
    );

    let behind = server
        .get("/repos/acme/api/compare/feature...main")
        .await
        .body;
    assert_eq!(behind["status"], "diverged");
    let same = server
        .get(&format!("/repos/acme/api/compare/{feature}...acme:feature"))
        .await
        .body;
    assert_eq!(same["status"], "identical");
    assert_eq!(same["files"], json!([]));
    let ahead = server
        .get(&format!("/repos/acme/api/compare/{merge_base}...feature"))
        .await
        .body;
    assert_eq!(
        (&ahead["status"], &ahead["behind_by"]),
        (&json!("ahead"), &json!(0))
    );

    // Paging pages the commits; the files come with the first page only.
    let page = server
        .get("/repos/acme/api/compare/main...feature?per_page=1&page=2")
        .await;
    assert_eq!(page.body["commits"][0]["sha"], feature);
    assert_eq!(page.body["files"], json!([]));
    assert!(page.link.unwrap().contains("rel=\"prev\""));

    for bad in ["main...nope", "main..feature", "other:main...feature"] {
        let answer = server.get(&format!("/repos/acme/api/compare/{bad}")).await;
        assert_eq!(answer.status, 404, "{bad}");
    }
}

/// A review request's answer.
async fn review(server: &Server, number: u64, body: Value) -> Answer {
    server
        .post(&format!("/repos/acme/api/pulls/{number}/reviews"), body)
        .await
}

#[tokio::test]
async fn review_comments_must_land_on_the_diff() {
    let server = Server::start(None).await;
    let sim = &server.sim;
    let number = seed(sim);
    let head = sim.branch_sha("acme", "api", "feature").unwrap();

    // A comment on an added line.
    let answer = review(
        &server,
        number,
        json!({
            "event": "COMMENT",
            "body": "Looks fine",
            "comments": [{ "path": "new.txt", "line": 2, "body": "Why b?" }],
        }),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let first = answer.body;
    assert_eq!(first["state"], "COMMENTED");
    assert_eq!(first["commit_id"], head);
    assert_eq!(first["body"], "Looks fine");
    assert!(first["submitted_at"].is_string());
    let comments = server
        .get(&format!("/repos/acme/api/pulls/{number}/comments"))
        .await
        .body;
    let comment = &comments[0];
    assert_eq!(comments.as_array().unwrap().len(), 1);
    assert_eq!(comment["pull_request_review_id"], first["id"]);
    assert_eq!(
        (&comment["path"], &comment["line"], &comment["side"]),
        (&json!("new.txt"), &json!(2), &json!("RIGHT"))
    );
    assert_eq!(comment["position"], 2);
    assert_eq!(comment["diff_hunk"], "@@ -0,0 +1,3 @@\n+a\n+b");
    assert_eq!(comment["commit_id"], head);
    assert_eq!(comment["body"], "Why b?");

    // Lines outside the diff, paths outside the pull request: 422, nothing stored.
    let refused = [
        (
            json!({ "path": "b.txt", "line": 10, "body": "x" }),
            "Line could not be resolved",
        ),
        (
            json!({ "path": "README.md", "line": 1, "body": "x" }),
            "Path could not be resolved",
        ),
        // gone.txt was removed: it has no line on the RIGHT side; a binary file has no lines.
        (
            json!({ "path": "gone.txt", "line": 1, "body": "x" }),
            "Line could not be resolved",
        ),
        (
            json!({ "path": "logo.png", "line": 1, "body": "x" }),
            "Line could not be resolved",
        ),
        (
            json!({ "path": "new.txt", "body": "x" }),
            "Line could not be resolved",
        ),
        (
            json!({ "path": "new.txt", "position": 9, "body": "x" }),
            "Position could not be resolved",
        ),
    ];
    for (comment, error) in refused {
        let answer = review(
            &server,
            number,
            json!({ "event": "COMMENT", "body": "b", "comments": [
                { "path": "new.txt", "line": 1, "body": "fine" },
                comment,
            ] }),
        )
        .await;
        assert_eq!(answer.status, 422, "{}", answer.body);
        assert_eq!(answer.body["message"], "Unprocessable Entity");
        assert_eq!(answer.body["errors"], json!([error]));
    }
    assert_eq!(sim.pull_reviews("acme", "api", number).len(), 1);
    assert_eq!(sim.pull_review_comments("acme", "api", number).len(), 1);

    // The LEFT side takes base line numbers; `position` and multi-line comments work too.
    let answer = review(
        &server,
        number,
        json!({ "event": "REQUEST_CHANGES", "body": "Please", "comments": [
            { "path": "b.txt", "line": 2, "side": "LEFT", "body": "keep two" },
            { "path": "b.txt", "position": 3, "body": "TWO?" },
            { "path": "new.txt", "start_line": 1, "line": 3, "body": "all of it" },
        ] }),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["state"], "CHANGES_REQUESTED");
    let all = sim.pull_review_comments("acme", "api", number);
    assert_eq!(
        (&all[1]["line"], &all[1]["side"]),
        (&json!(2), &json!("LEFT"))
    );
    assert_eq!(all[1]["diff_hunk"], "@@ -1,3 +1,3 @@\n one\n-two");
    assert_eq!(
        (&all[2]["line"], &all[2]["side"]),
        (&json!(2), &json!("RIGHT"))
    );
    assert_eq!(
        (&all[3]["start_line"], &all[3]["line"]),
        (&json!(1), &json!(3))
    );

    // Bodies: REQUEST_CHANGES and COMMENT need one (unless they have inline comments).
    for event in ["REQUEST_CHANGES", "COMMENT"] {
        let answer = review(&server, number, json!({ "event": event })).await;
        assert_eq!(answer.status, 422, "{event}: {}", answer.body);
        assert_eq!(answer.body["message"], "Unprocessable Entity");
    }
    let approve = review(&server, number, json!({ "event": "APPROVE" })).await;
    assert_eq!(approve.status, 200);
    assert_eq!(
        (&approve.body["state"], &approve.body["body"]),
        (&json!("APPROVED"), &json!(""))
    );
    let invalid = review(&server, number, json!({ "event": "MERGE" })).await;
    assert_eq!(invalid.status, 422);

    // Without an event the review is pending: not submitted, comments not listed, one per user.
    let pending = review(
        &server,
        number,
        json!({ "comments": [{ "path": "new.txt", "line": 3, "body": "later" }] }),
    )
    .await;
    assert_eq!(pending.status, 200, "{}", pending.body);
    assert_eq!(pending.body["state"], "PENDING");
    assert!(pending.body.get("submitted_at").is_none());
    let again = review(&server, number, json!({})).await;
    assert_eq!(again.status, 422);
    assert_eq!(
        again.body["errors"],
        json!(["User can only have one pending review per pull request"])
    );
    let listed = server
        .get(&format!("/repos/acme/api/pulls/{number}/comments"))
        .await
        .body;
    assert_eq!(listed.as_array().unwrap().len(), 4);
    assert_eq!(sim.pull_review_comments("acme", "api", number).len(), 5);

    // Listing and getting reviews.
    let reviews = server
        .get(&format!("/repos/acme/api/pulls/{number}/reviews"))
        .await
        .body;
    let states: Vec<&str> = reviews
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["COMMENTED", "CHANGES_REQUESTED", "APPROVED", "PENDING"]
    );
    assert_eq!(
        Value::Array(sim.pull_reviews("acme", "api", number)),
        reviews
    );
    let id = first["id"].as_u64().unwrap();
    let got = server
        .get(&format!("/repos/acme/api/pulls/{number}/reviews/{id}"))
        .await;
    assert_eq!((got.status, &got.body), (200, &first));
    let paged = server
        .get(&format!(
            "/repos/acme/api/pulls/{number}/reviews?per_page=1"
        ))
        .await;
    assert_eq!(paged.body.as_array().unwrap().len(), 1);
    assert!(paged.link.unwrap().contains("rel=\"next\""));
    for path in [
        format!("/repos/acme/api/pulls/{number}/reviews/1"),
        format!("/repos/acme/api/pulls/99/reviews/{id}"),
        "/repos/acme/api/pulls/99/reviews".to_owned(),
        "/repos/acme/api/pulls/99/comments".to_owned(),
    ] {
        assert_eq!(server.get(&path).await.status, 404, "{path}");
    }
    assert_eq!(
        review(&server, 99, json!({ "event": "APPROVE" }))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn approvals_can_be_dismissed_once() {
    let server = Server::start(None).await;
    let sim = &server.sim;
    let number = seed(sim);
    let approve = review(&server, number, json!({ "event": "APPROVE", "body": "ok" })).await;
    let id = approve.body["id"].as_u64().unwrap();
    let path = format!("/repos/acme/api/pulls/{number}/reviews/{id}/dismissals");
    let dismiss = |body: Value| server.call("PUT", &path, Some(body));

    let missing = dismiss(json!({ "event": "DISMISS" })).await;
    assert_eq!(missing.status, 422);
    let answer = dismiss(json!({ "message": "Outdated", "event": "DISMISS" })).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["state"], "DISMISSED");
    assert_eq!(answer.body["body"], "ok");
    assert_eq!(
        sim.pull_reviews("acme", "api", number)[0]["state"],
        "DISMISSED"
    );
    let again = dismiss(json!({ "message": "Again" })).await;
    assert_eq!(again.status, 422);
    assert_eq!(again.body["message"], "Validation Failed");
    assert_eq!(
        again.body["errors"],
        json!(["Can not dismiss a dismissed pull request review"])
    );

    // Pending and commented reviews cannot be dismissed.
    let pending = review(&server, number, json!({ "body": "draft" })).await;
    let commented = review(&server, number, json!({ "event": "COMMENT", "body": "c" })).await;
    for (review, state) in [(pending.body, "pending"), (commented.body, "commented")] {
        let answer = server
            .call(
                "PUT",
                &format!(
                    "/repos/acme/api/pulls/{number}/reviews/{}/dismissals",
                    review["id"]
                ),
                Some(json!({ "message": "No" })),
            )
            .await;
        assert_eq!(answer.status, 422, "{state}");
        assert_eq!(
            answer.body["errors"],
            json!([format!("Can not dismiss a {state} pull request review")])
        );
    }
    let unknown = server
        .call(
            "PUT",
            &format!("/repos/acme/api/pulls/{number}/reviews/1/dismissals"),
            Some(json!({ "message": "No" })),
        )
        .await;
    assert_eq!(unknown.status, 404);

    // A human's review through the admin method.
    let human = sim
        .review_pull_request("acme", "api", number, "REQUEST_CHANGES", "Fix it")
        .unwrap();
    let reviews = sim.pull_reviews("acme", "api", number);
    let by_human = reviews.iter().find(|r| r["id"] == human).unwrap();
    assert_eq!(by_human["user"]["login"], "sim-admin");
    assert_eq!(by_human["author_association"], "MEMBER");
    assert!(sim
        .review_pull_request("acme", "api", number, "REQUEST_CHANGES", "")
        .is_err());
}

async fn status(server: &Server, sha: &str, body: Value) -> Answer {
    server
        .post(&format!("/repos/acme/api/statuses/{sha}"), body)
        .await
}

#[tokio::test]
async fn commit_statuses_and_the_combined_status() {
    let server = Server::start(None).await;
    let sim = &server.sim;
    sim.create_repo("acme", "api", RepoOptions::default());
    sim.create_branch("acme", "api", "feature/x", "main")
        .unwrap();
    sim.put_file("acme", "api", "feature/x", "a.txt", "a\n")
        .unwrap();
    let sha = sim.branch_sha("acme", "api", "feature/x").unwrap();

    // Before any status: pending, nothing listed.
    let none = server.get("/repos/acme/api/commits/feature/x/status").await;
    assert_eq!(none.status, 200, "{}", none.body);
    assert_eq!(
        (&none.body["state"], &none.body["total_count"]),
        (&json!("pending"), &json!(0))
    );
    assert_eq!(none.body["sha"], sha);

    let created = status(
        &server,
        &sha,
        json!({ "state": "pending", "context": "ci/build", "target_url": "https://ci.example/1" }),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["state"], "pending");
    assert_eq!(created.body["context"], "ci/build");
    assert_eq!(created.body["description"], Value::Null);
    assert!(created.body["url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/repos/acme/api/statuses/{sha}")));
    status(
        &server,
        &sha,
        json!({ "state": "success", "context": "CI/Build" }),
    )
    .await;
    let default = status(&server, &sha[..10], json!({ "state": "success" })).await;
    assert_eq!(default.status, 201);
    assert_eq!(default.body["context"], "default");

    // Newest first; by branch name or sha.
    let list = server
        .get("/repos/acme/api/commits/feature/x/statuses")
        .await;
    assert_eq!(list.status, 200);
    let states: Vec<(&str, &str)> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["context"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [
            ("default", "success"),
            ("CI/Build", "success"),
            ("ci/build", "pending")
        ]
    );
    assert_eq!(
        server
            .get(&format!("/repos/acme/api/commits/{sha}/statuses"))
            .await
            .body,
        list.body
    );
    assert_eq!(
        Value::Array(sim.commit_statuses("acme", "api", &sha)),
        list.body
    );
    let paged = server
        .get("/repos/acme/api/commits/feature/x/statuses?per_page=2")
        .await;
    assert_eq!(paged.body.as_array().unwrap().len(), 2);
    assert!(paged.link.unwrap().contains("page=2>; rel=\"next\""));

    // Combined: the latest per context (case-insensitive): all success.
    let combined = server
        .get(&format!("/repos/acme/api/commits/{sha}/status"))
        .await;
    assert_eq!(combined.body["state"], "success");
    assert_eq!(combined.body["total_count"], 2);
    assert!(combined.body["statuses"][0].get("creator").is_none());
    status(
        &server,
        &sha,
        json!({ "state": "failure", "context": "lint" }),
    )
    .await;
    let combined = server.get("/repos/acme/api/commits/feature/x/status").await;
    assert_eq!(
        (&combined.body["state"], &combined.body["total_count"]),
        (&json!("failure"), &json!(3))
    );
    status(
        &server,
        &sha,
        json!({ "state": "pending", "context": "lint" }),
    )
    .await;
    let combined = server.get("/repos/acme/api/commits/feature/x/status").await;
    assert_eq!(combined.body["state"], "pending");

    // Refusals.
    let unknown = status(&server, &"0".repeat(40), json!({ "state": "success" })).await;
    assert_eq!(unknown.status, 422);
    assert_eq!(
        unknown.body["message"],
        format!("No commit found for SHA: {}", "0".repeat(40))
    );
    let branch = status(&server, "main", json!({ "state": "success" })).await;
    assert_eq!(branch.status, 422, "statuses take a sha, not a branch");
    assert_eq!(
        status(&server, &sha, json!({ "state": "done" }))
            .await
            .status,
        422
    );
    assert_eq!(status(&server, &sha, json!({})).await.status, 422);
    let no_repo = server
        .post(
            &format!("/repos/acme/nope/statuses/{sha}"),
            json!({ "state": "success" }),
        )
        .await;
    assert_eq!(no_repo.status, 404);
    assert_eq!(
        server
            .get("/repos/acme/api/commits/nope/status")
            .await
            .status,
        404
    );
    assert_eq!(
        server
            .get("/repos/acme/api/commits/nope/statuses")
            .await
            .status,
        404
    );

    // The commit endpoint under the same prefix is unchanged, slashes in refs included.
    let commit = server.get("/repos/acme/api/commits/feature/x").await;
    assert_eq!((commit.status, &commit.body["sha"]), (200, &json!(sha)));
    let counts = sim.request_counts();
    assert_eq!(counts["GET /repos/{owner}/{repo}/commits/{ref}"], 1);
    assert_eq!(counts["GET /repos/{owner}/{repo}/commits/{ref}/status"], 5);
    assert_eq!(
        counts["GET /repos/{owner}/{repo}/commits/{ref}/statuses"],
        4
    );
    assert!(counts["POST /repos/{owner}/{repo}/statuses/{sha}"] >= 8);
}

/// The real payload examples beside the checkout (`PLUMBLINE_GITHUB_WEBHOOKS` overrides).
fn webhook_sample(event: &str, file: &str) -> Value {
    let dir = std::env::var_os("PLUMBLINE_GITHUB_WEBHOOKS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/github-webhooks/api.github.com")
        });
    let path = dir.join(event).join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read webhook sample {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Every key of the real payload (recursively, first array element) is in ours too; null real
/// values are not compared further.
fn missing_keys(real: &Value, ours: &Value, at: &str, missing: &mut Vec<String>) {
    match (real, ours) {
        (Value::Object(real), Value::Object(ours)) => {
            for (key, value) in real {
                match ours.get(key) {
                    None => missing.push(format!("{at}/{key}")),
                    Some(mine) => missing_keys(value, mine, &format!("{at}/{key}"), missing),
                }
            }
        }
        (Value::Array(real), Value::Array(ours)) => {
            if let (Some(r), Some(o)) = (real.first(), ours.first()) {
                missing_keys(r, o, &format!("{at}/0"), missing);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn reviews_and_statuses_send_webhooks_shaped_like_githubs() {
    let mut receiver = Receiver::start().await;
    let server = Server::start(Some(&receiver.url)).await;
    let sim = &server.sim;
    let number = seed(sim);
    // Drain the seeding events (repository, create, push x2, pull_request).
    loop {
        let (event, _) = receiver.next().await;
        if event == "pull_request" {
            break;
        }
    }
    let mut ours = Vec::new();
    let answer = review(
        &server,
        number,
        json!({ "event": "APPROVE", "body": "Nice", "comments": [
            { "path": "new.txt", "line": 1, "body": "A" },
        ] }),
    )
    .await;
    let id = answer.body["id"].as_u64().unwrap();
    let (event, submitted) = receiver.next().await;
    assert_eq!(
        (event.as_str(), &submitted["action"]),
        ("pull_request_review", &json!("submitted"))
    );
    assert_eq!(submitted["review"]["state"], "approved");
    assert_eq!(submitted["pull_request"]["number"], number);
    ours.push(("pull_request_review", "submitted.payload.json", submitted));
    let (event, comment) = receiver.next().await;
    assert_eq!(
        (event.as_str(), &comment["action"]),
        ("pull_request_review_comment", &json!("created"))
    );
    assert_eq!(comment["comment"]["pull_request_review_id"], id);
    ours.push((
        "pull_request_review_comment",
        "created.payload.json",
        comment,
    ));
    server
        .call(
            "PUT",
            &format!("/repos/acme/api/pulls/{number}/reviews/{id}/dismissals"),
            Some(json!({ "message": "Stale" })),
        )
        .await;
    let (event, dismissed) = receiver.next().await;
    assert_eq!(
        (event.as_str(), &dismissed["action"]),
        ("pull_request_review", &json!("dismissed"))
    );
    assert_eq!(dismissed["review"]["state"], "dismissed");
    ours.push(("pull_request_review", "dismissed.payload.json", dismissed));
    // Pending reviews send nothing; a status does.
    review(&server, number, json!({ "body": "draft" })).await;
    let sha = sim.branch_sha("acme", "api", "feature").unwrap();
    status(
        &server,
        &sha,
        json!({ "state": "success", "context": "ci" }),
    )
    .await;
    let (event, status_event) = receiver.next().await;
    assert_eq!(event, "status");
    assert_eq!(
        (&status_event["sha"], &status_event["state"]),
        (&json!(sha), &json!("success"))
    );
    assert_eq!(status_event["branches"][0]["name"], "feature");
    assert!(status_event.get("action").is_none());
    ours.push(("status", "payload.json", status_event));

    let mut missing = Vec::new();
    for (event, file, payload) in &ours {
        let real = webhook_sample(event, file);
        missing_keys(&real, payload, &format!("{event}/{file}"), &mut missing);
    }
    assert!(
        missing.is_empty(),
        "keys of real payloads we do not send: {missing:#?}"
    );
}

#[tokio::test]
async fn approvals_unblock_a_protected_base() {
    let server = Server::start(None).await;
    let sim = &server.sim;
    sim.create_repo(
        "acme",
        "guarded",
        RepoOptions {
            protected: true,
            ..RepoOptions::default()
        },
    );
    sim.create_branch("acme", "guarded", "topic", "main")
        .unwrap();
    sim.put_file("acme", "guarded", "topic", "a.txt", "a\n")
        .unwrap();
    let number = sim
        .open_pull_request(
            "acme",
            "guarded",
            NewPullRequest {
                title: "Topic".to_owned(),
                head: "topic".to_owned(),
                base: "main".to_owned(),
                ..NewPullRequest::default()
            },
        )
        .unwrap();
    let state = || sim.pull_request("acme", "guarded", number).unwrap()["mergeable_state"].clone();
    assert_eq!(state(), "blocked", "one approval is required");
    // Comments do not approve.
    let path = format!("/repos/acme/guarded/pulls/{number}/reviews");
    let comment = server
        .post(
            &path,
            json!({ "event": "COMMENT", "comments": [{ "path": "a.txt", "line": 1, "body": "a?" }] }),
        )
        .await;
    assert_eq!(comment.status, 200, "{}", comment.body);
    assert_eq!(state(), "blocked");
    let pull = sim.pull_request("acme", "guarded", number).unwrap();
    assert_eq!(pull["review_comments"], 1);
    sim.review_pull_request("acme", "guarded", number, "APPROVE", "")
        .unwrap();
    assert_eq!(state(), "clean");
    // Changes requested by anyone block again, until that review is dismissed.
    let changes = server
        .post(&path, json!({ "event": "REQUEST_CHANGES", "body": "No" }))
        .await;
    assert_eq!(state(), "blocked");
    let dismissed = server
        .call(
            "PUT",
            &format!("{path}/{}/dismissals", changes.body["id"]),
            Some(json!({ "message": "Resolved" })),
        )
        .await;
    assert_eq!(dismissed.status, 200);
    assert_eq!(state(), "clean");
}
