//! Functional tests of the repository content families: the git object model under branches,
//! the contents / git data / commits / pull request / license endpoints, their webhooks, and the
//! admin operations (branch, multi-file commit, pull request as a human).

use crate::helpers;

use std::io::Read;

use base64::Engine;
use helpers::{Receiver, SECRET};
use plumbline_github_sim::{
    CommitFile, FileMode, NewPullRequest, RepoOptions, SimConfig, SimError, Simulator,
};
use reqwest::header::{ACCEPT, ETAG, IF_NONE_MATCH, LINK};
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use tokio_util::sync::CancellationToken;

const ZERO: &str = "0000000000000000000000000000000000000000";

const MIT: &str = "MIT License\n\nPermission is hereby granted, free of charge, to any person \
                   obtaining a copy of this software.\n";
const APACHE: &str = "                                 Apache License\n                           \
                      Version 2.0, January 2004\n";

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
    async fn start(webhook_url: Option<&str>) -> Server {
        let sim = Simulator::new(SimConfig {
            webhook_url: webhook_url.map(str::to_owned),
            webhook_secret: SECRET.to_owned(),
            tokens: Vec::new(),
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

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn send(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                self.url(path),
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// Assertions of this file on the shared receiver.
impl Receiver {
    /// The next delivery, which must be `event` (with `action`, if given).
    async fn expect(&mut self, event: &str, action: Option<&str>) -> Value {
        let (got, payload) = self.next().await;
        assert_eq!(got, event, "unexpected {got} {}", payload["action"]);
        if let Some(action) = action {
            assert_eq!(payload["action"], action);
        }
        payload
    }
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(text: &str) -> Vec<u8> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .unwrap()
}

/// `git hash-object` of a blob.
fn blob_sha(data: &[u8]) -> String {
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {}\0", data.len()).as_bytes());
    hasher.update(data);
    hex::encode(hasher.finalize())
}

/// (path, entry type, mode, contents or link target) of a gzip'd tar.
fn untar(bytes: &[u8]) -> Vec<(String, tar::EntryType, u32, String)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().unwrap();
        let text = match entry.link_name().unwrap() {
            Some(target) => target.to_string_lossy().into_owned(),
            None => {
                let mut s = String::new();
                entry.read_to_string(&mut s).unwrap();
                s
            }
        };
        let short = path.split_once('/').unwrap().1.to_owned();
        out.push((short, kind, mode, text));
    }
    out
}

#[tokio::test]
async fn shas_are_git_shas_and_files_keep_their_modes() {
    let server = Server::start(None).await;
    let sim = &server.sim;
    let opts = RepoOptions {
        files: vec![("README.md".to_owned(), b"# api\n".to_vec())],
        ..RepoOptions::default()
    };
    sim.create_repo("acme", "api", opts.clone());
    sim.create_repo("acme", "web", opts);
    // Identical content, identical blob sha, in any repository, equal to git's.
    let (mode, sha) = sim.file_entry("acme", "api", "main", "README.md").unwrap();
    assert_eq!(mode, FileMode::Regular);
    assert_eq!(sha, blob_sha(b"# api\n"));
    assert_eq!(
        sim.file_entry("acme", "web", "main", "README.md")
            .unwrap()
            .1,
        sha
    );

    let head = sim
        .commit_files(
            "acme",
            "api",
            "main",
            Some("Add tooling"),
            vec![
                CommitFile::executable("scripts/build.sh", "#!/bin/sh\nmake\n"),
                CommitFile::symlink("docs", "README.md"),
                CommitFile::file("a/b/c.txt", "deep\n"),
            ],
        )
        .unwrap();
    assert_eq!(sim.branch_sha("acme", "api", "main").unwrap(), head);
    assert_eq!(
        sim.file_entry("acme", "api", "main", "scripts/build.sh")
            .unwrap()
            .0,
        FileMode::Executable
    );
    // Overwriting a file through `put_file` keeps its mode.
    sim.put_file(
        "acme",
        "api",
        "main",
        "scripts/build.sh",
        "#!/bin/sh\nmake all\n",
    )
    .unwrap();
    assert_eq!(
        sim.file_entry("acme", "api", "main", "scripts/build.sh")
            .unwrap()
            .0,
        FileMode::Executable
    );

    // The recursive tree lists every entry with its mode, trees zero-padded as in the API.
    let (status, tree) = server
        .get("/repos/acme/api/git/trees/main?recursive=1")
        .await;
    assert_eq!(status, 200);
    let entries: Vec<(String, String, String)> = tree["tree"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_owned(),
                e["mode"].as_str().unwrap().to_owned(),
                e["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expect = |p: &str, m: &str, t: &str| (p.to_owned(), m.to_owned(), t.to_owned());
    assert!(entries.contains(&expect("a", "040000", "tree")));
    assert!(entries.contains(&expect("a/b/c.txt", "100644", "blob")));
    assert!(entries.contains(&expect("scripts/build.sh", "100755", "blob")));
    assert!(entries.contains(&expect("docs", "120000", "blob")));
    let (_, flat) = server.get("/repos/acme/api/git/trees/main").await;
    assert_eq!(flat["tree"].as_array().unwrap().len(), 4);

    // The tarball carries the modes: 0755 for executables, symlinks as symlinks.
    let bytes = server
        .client
        .get(server.url("/repos/acme/api/tarball/main"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let entries = untar(&bytes);
    let find = |p: &str| entries.iter().find(|e| e.0 == p).unwrap().clone();
    assert_eq!(find("scripts/build.sh").1, tar::EntryType::Regular);
    assert_eq!(find("scripts/build.sh").2, 0o755);
    assert_eq!(find("README.md").2, 0o644);
    assert_eq!(find("docs").1, tar::EntryType::Symlink);
    assert_eq!(find("docs").3, "README.md");

    // Branch objects report the real commit: message, tree and parent.
    let (_, branch) = server.get("/repos/acme/api/branches/main").await;
    let (_, commit) = server.get("/repos/acme/api/commits/main").await;
    assert_eq!(branch["commit"]["sha"], commit["sha"]);
    assert_eq!(
        branch["commit"]["commit"]["message"],
        "Update scripts/build.sh"
    );
    assert_eq!(commit["parents"][0]["sha"], head);
    assert_eq!(commit["author"]["login"], "sim-admin");
    assert_eq!(commit["files"][0]["filename"], "scripts/build.sh");
    assert_eq!(commit["files"][0]["status"], "modified");
    assert_eq!(
        commit["stats"],
        json!({ "total": 2, "additions": 1, "deletions": 1 })
    );
}

#[tokio::test]
async fn contents_api_reads_and_writes_files() {
    let mut receiver = Receiver::start().await;
    let server = Server::start(Some(&receiver.url)).await;
    let sim = &server.sim;
    sim.create_repo("acme", "api", RepoOptions::default());
    receiver.expect("repository", Some("created")).await;
    sim.commit_files(
        "acme",
        "api",
        "main",
        None,
        vec![
            CommitFile::file("README.md", "hello\n"),
            CommitFile::executable("run.sh", "#!/bin/sh\n"),
        ],
    )
    .unwrap();
    let push = receiver.expect("push", None).await;
    assert_eq!(push["head_commit"]["added"], json!(["README.md", "run.sh"]));
    assert_eq!(push["head_commit"]["message"], "Create 2 files");

    // Read: base64 wrapped like GitHub, the blob sha, and the raw media type.
    let (status, file) = server.get("/repos/acme/api/contents/README.md").await;
    assert_eq!(status, 200);
    assert_eq!(file["type"], "file");
    assert_eq!(file["encoding"], "base64");
    assert_eq!(file["content"], "aGVsbG8K\n");
    assert_eq!(file["sha"], blob_sha(b"hello\n"));
    assert_eq!(file["size"], 6);
    let raw = server
        .client
        .get(server.url("/repos/acme/api/contents/README.md"))
        .header(ACCEPT, "application/vnd.github.raw+json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.text().await.unwrap(), "hello\n");
    let (_, root) = server.get("/repos/acme/api/contents").await;
    assert_eq!(root.as_array().unwrap().len(), 2);

    // Create: 201, a push by the app's bot.
    let (status, created) = server
        .send(
            "PUT",
            "/repos/acme/api/contents/docs/guide.md",
            json!({ "message": "Add guide", "content": b64(b"Guide\n") }),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(created["content"]["path"], "docs/guide.md");
    assert_eq!(created["commit"]["message"], "Add guide");
    let push = receiver.expect("push", None).await;
    assert_eq!(push["after"], created["commit"]["sha"]);
    assert_eq!(push["sender"]["login"], "plumbline-sim[bot]");
    assert_eq!(push["head_commit"]["added"], json!(["docs/guide.md"]));

    // Update: the blob sha is required and must be current; the mode is kept.
    let run_sha = sim.file_entry("acme", "api", "main", "run.sh").unwrap().1;
    let body = |sha: Option<&str>| {
        let mut body = json!({ "message": "Tweak run.sh", "content": b64(b"#!/bin/sh\nexit 0\n") });
        if let Some(sha) = sha {
            body["sha"] = json!(sha);
        }
        body
    };
    let (status, error) = server
        .send("PUT", "/repos/acme/api/contents/run.sh", body(None))
        .await;
    assert_eq!(
        (status, error["message"].as_str()),
        (422, Some("Invalid request.\n\n\"sha\" wasn't supplied."))
    );
    let stale = blob_sha(b"old");
    let (status, error) = server
        .send("PUT", "/repos/acme/api/contents/run.sh", body(Some(&stale)))
        .await;
    assert_eq!(status, 409);
    assert_eq!(error["message"], format!("run.sh does not match {stale}"));
    let (status, _) = server
        .send(
            "PUT",
            "/repos/acme/api/contents/run.sh",
            body(Some(&run_sha)),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        sim.file_entry("acme", "api", "main", "run.sh").unwrap().0,
        FileMode::Executable
    );
    assert_eq!(
        receiver.expect("push", None).await["head_commit"]["modified"],
        json!(["run.sh"])
    );

    // Delete: content null, then the path is gone.
    let guide = sim
        .file_entry("acme", "api", "main", "docs/guide.md")
        .unwrap()
        .1;
    let (status, deleted) = server
        .send(
            "DELETE",
            "/repos/acme/api/contents/docs/guide.md",
            json!({ "message": "Drop guide", "sha": guide }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(deleted["content"], Value::Null);
    assert_eq!(
        receiver.expect("push", None).await["head_commit"]["removed"],
        json!(["docs/guide.md"])
    );
    assert_eq!(
        server.get("/repos/acme/api/contents/docs/guide.md").await.0,
        404
    );
    assert_eq!(server.get("/repos/acme/api/contents/docs").await.0, 404);

    // Writes to an unknown branch are 404; reads at unknown refs too.
    let (status, error) = server
        .send(
            "PUT",
            "/repos/acme/api/contents/x",
            json!({ "message": "m", "content": b64(b"x"), "branch": "nope" }),
        )
        .await;
    assert_eq!(
        (status, error["message"].as_str()),
        (404, Some("Branch nope not found"))
    );
    let (status, error) = server
        .get("/repos/acme/api/contents/README.md?ref=nope")
        .await;
    assert_eq!(
        (status, error["message"].as_str()),
        (404, Some("No commit found for the ref nope"))
    );
    receiver.assert_quiet().await;
}

#[tokio::test]
async fn protected_branches_refuse_the_app_but_not_an_admin() {
    let server = Server::start(None).await;
    let sim = &server.sim;
    sim.create_repo(
        "acme",
        "api",
        RepoOptions {
            protected: true,
            ..RepoOptions::default()
        },
    );
    let (status, error) = server
        .send(
            "PUT",
            "/repos/acme/api/contents/x.md",
            json!({ "message": "m", "content": b64(b"x") }),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(
        error["message"],
        "Could not create file: Changes must be made through a pull request."
    );
    // The human (admin) can push, e.g. to seed files.
    let initial = sim.branch_sha("acme", "api", "main").unwrap();
    sim.put_file("acme", "api", "main", "x.md", "x").unwrap();
    let main = sim.branch_sha("acme", "api", "main").unwrap();
    sim.create_branch("acme", "api", "work", "main").unwrap();
    let ahead = sim
        .commit_files(
            "acme",
            "api",
            "work",
            None,
            vec![CommitFile::file("y", "y")],
        )
        .unwrap();
    let (status, error) = server
        .send(
            "PATCH",
            "/repos/acme/api/git/refs/heads/main",
            json!({ "sha": ahead }),
        )
        .await;
    assert_eq!(status, 422);
    assert!(error["message"]
        .as_str()
        .unwrap()
        .starts_with("Protected branch update failed for refs/heads/main."));
    let (status, error) = server
        .send(
            "PATCH",
            "/repos/acme/api/git/refs/heads/main",
            json!({ "sha": initial, "force": true }),
        )
        .await;
    assert_eq!(
        (status, error["message"].as_str()),
        (422, Some("Cannot force-push to this protected branch"))
    );
    let (status, error) = server
        .send("DELETE", "/repos/acme/api/git/refs/heads/main", json!({}))
        .await;
    assert_eq!(
        (status, error["message"].as_str()),
        (422, Some("Cannot delete the default branch."))
    );
    assert_eq!(
        sim.delete_branch("acme", "api", "main"),
        Err(SimError::Invalid(
            "Cannot delete the default branch.".to_owned()
        ))
    );
    // Unprotected branches move freely through the API.
    let (status, moved) = server
        .send(
            "PATCH",
            "/repos/acme/api/git/refs/heads/work",
            json!({ "sha": main, "force": true }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(moved["object"]["sha"], main);
}

/// The actuator's flow through the git database API: blob, tree, commit, branch, pull request;
/// then an update of the pull request's branch and its closing by deleting the branch.
#[tokio::test]
async fn git_data_flow_opens_and_updates_a_pull_request() {
    let mut receiver = Receiver::start().await;
    let server = Server::start(Some(&receiver.url)).await;
    let sim = &server.sim;
    sim.create_repo(
        "acme",
        "api",
        RepoOptions {
            files: vec![("README.md".to_owned(), b"# api\n".to_vec())],
            ..RepoOptions::default()
        },
    );
    receiver.expect("repository", Some("created")).await;
    let main = sim.branch_sha("acme", "api", "main").unwrap();
    let (_, commit) = server.get("/repos/acme/api/commits/main").await;
    let base_tree = commit["commit"]["tree"]["sha"].as_str().unwrap().to_owned();

    let (status, blob) = server
        .send(
            "POST",
            "/repos/acme/api/git/blobs",
            json!({ "content": b64(b"#!/bin/sh\nplumbline check\n"), "encoding": "base64" }),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(blob["sha"], blob_sha(b"#!/bin/sh\nplumbline check\n"));
    let (status, read_back) = server
        .get(&format!(
            "/repos/acme/api/git/blobs/{}",
            blob["sha"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        unb64(read_back["content"].as_str().unwrap()),
        b"#!/bin/sh\nplumbline check\n"
    );

    let (status, tree) = server
        .send(
            "POST",
            "/repos/acme/api/git/trees",
            json!({
                "base_tree": base_tree,
                "tree": [
                    { "path": ".github/hooks/check.sh", "mode": "100755", "type": "blob", "sha": blob["sha"] },
                    { "path": "SECURITY.md", "mode": "100644", "type": "blob", "content": "Mail us.\n" }
                ]
            }),
        )
        .await;
    assert_eq!(status, 201);
    let paths: Vec<&str> = tree["tree"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, [".github", "README.md", "SECURITY.md"]);

    let (status, commit) = server
        .send(
            "POST",
            "/repos/acme/api/git/commits",
            json!({ "message": "Add security policy", "tree": tree["sha"], "parents": [main] }),
        )
        .await;
    assert_eq!(status, 201);
    let new_sha = commit["sha"].as_str().unwrap().to_owned();
    assert_eq!(commit["parents"][0]["sha"], main);
    assert_eq!(commit["author"]["name"], "plumbline-sim[bot]");
    receiver.assert_quiet().await;

    // A new branch at the commit: `create`, then a `push` that lists the new commit.
    let (status, reference) = server
        .send(
            "POST",
            "/repos/acme/api/git/refs",
            json!({ "ref": "refs/heads/plumbline/security", "sha": new_sha }),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(reference["ref"], "refs/heads/plumbline/security");
    let create = receiver.expect("create", None).await;
    assert_eq!(create["ref"], "plumbline/security");
    assert_eq!(create["ref_type"], "branch");
    let push = receiver.expect("push", None).await;
    assert_eq!(push["created"], true);
    assert_eq!(push["before"], ZERO);
    assert_eq!(push["after"], new_sha);
    assert_eq!(push["commits"][0]["id"], new_sha);
    assert_eq!(
        push["commits"][0]["added"],
        json!([".github/hooks/check.sh", "SECURITY.md"])
    );
    let (status, got) = server
        .get("/repos/acme/api/git/ref/heads/plumbline/security")
        .await;
    assert_eq!(status, 200);
    assert_eq!(got["object"]["sha"], new_sha);
    let (_, file) = server
        .get("/repos/acme/api/contents/SECURITY.md?ref=plumbline/security")
        .await;
    assert_eq!(unb64(file["content"].as_str().unwrap()), b"Mail us.\n");

    // The pull request: opened webhook, found by head, numbered from the issue sequence.
    let (status, pull) = server
        .send(
            "POST",
            "/repos/acme/api/pulls",
            json!({ "title": "Add a security policy", "head": "acme:plumbline/security", "base": "main", "body": "Automated." }),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(pull["number"], 1);
    assert_eq!(pull["head"]["sha"], new_sha);
    assert_eq!(pull["commits"], 1);
    assert_eq!(pull["changed_files"], 2);
    assert_eq!(pull["mergeable_state"], "clean");
    let opened = receiver.expect("pull_request", Some("opened")).await;
    assert_eq!(opened["number"], 1);
    assert_eq!(
        opened["pull_request"]["user"]["login"],
        "plumbline-sim[bot]"
    );
    let (status, again) = server
        .send(
            "POST",
            "/repos/acme/api/pulls",
            json!({ "title": "Again", "head": "plumbline/security", "base": "main" }),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        again["errors"][0]["message"],
        "A pull request already exists for acme:plumbline/security."
    );
    let (_, found) = server
        .get("/repos/acme/api/pulls?head=acme:plumbline/security")
        .await;
    assert_eq!(found.as_array().unwrap().len(), 1);
    let (_, none) = server.get("/repos/acme/api/pulls?head=acme:other").await;
    assert_eq!(none, json!([]));

    // Updating the branch (contents API on the branch): push, then synchronize.
    let security = sim
        .file_entry("acme", "api", "plumbline/security", "SECURITY.md")
        .unwrap()
        .1;
    let (status, updated) = server
        .send(
            "PUT",
            "/repos/acme/api/contents/SECURITY.md",
            json!({ "message": "Reword", "content": b64(b"Mail security@acme.test.\n"), "sha": security, "branch": "plumbline/security" }),
        )
        .await;
    assert_eq!(status, 200);
    let after = updated["commit"]["sha"].as_str().unwrap().to_owned();
    let push = receiver.expect("push", None).await;
    assert_eq!(push["ref"], "refs/heads/plumbline/security");
    assert_eq!(
        (push["before"].as_str(), push["after"].as_str()),
        (Some(new_sha.as_str()), Some(after.as_str()))
    );
    let sync = receiver.expect("pull_request", Some("synchronize")).await;
    assert_eq!(sync["before"], new_sha);
    assert_eq!(sync["after"], after);
    assert_eq!(sync["pull_request"]["head"]["sha"], after);
    assert_eq!(sync["pull_request"]["commits"], 2);

    // Editing, closing, reopening.
    let (status, _) = server
        .send(
            "PATCH",
            "/repos/acme/api/pulls/1",
            json!({ "title": "Security policy", "body": "v2" }),
        )
        .await;
    assert_eq!(status, 200);
    let edited = receiver.expect("pull_request", Some("edited")).await;
    assert_eq!(edited["changes"]["title"]["from"], "Add a security policy");
    assert_eq!(edited["changes"]["body"]["from"], "Automated.");
    assert_eq!(edited["pull_request"]["title"], "Security policy");
    let (status, closed) = server
        .send(
            "PATCH",
            "/repos/acme/api/pulls/1",
            json!({ "state": "closed" }),
        )
        .await;
    assert_eq!((status, closed["state"].as_str()), (200, Some("closed")));
    assert!(closed["closed_at"].is_string());
    receiver.expect("pull_request", Some("closed")).await;
    assert_eq!(server.get("/repos/acme/api/pulls").await.1, json!([]));
    assert_eq!(
        server
            .get("/repos/acme/api/pulls?state=closed")
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (status, _) = server
        .send(
            "PATCH",
            "/repos/acme/api/pulls/1",
            json!({ "state": "open" }),
        )
        .await;
    assert_eq!(status, 200);
    receiver.expect("pull_request", Some("reopened")).await;

    // Deleting the head branch: delete, push (deleted), and the pull request closes.
    let response = server
        .client
        .delete(server.url("/repos/acme/api/git/refs/heads/plumbline/security"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let delete = receiver.expect("delete", None).await;
    assert_eq!(delete["ref"], "plumbline/security");
    let push = receiver.expect("push", None).await;
    assert_eq!(push["deleted"], true);
    assert_eq!(push["after"], ZERO);
    assert_eq!(push["head_commit"], Value::Null);
    let closed = receiver.expect("pull_request", Some("closed")).await;
    assert_eq!(closed["pull_request"]["state"], "closed");
    let (status, error) = server
        .send(
            "PATCH",
            "/repos/acme/api/pulls/1",
            json!({ "state": "open" }),
        )
        .await;
    assert_eq!(status, 422);
    assert!(error["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("has been deleted"));
    receiver.assert_quiet().await;
}

#[tokio::test]
async fn refs_move_only_forward_unless_forced() {
    let mut receiver = Receiver::start().await;
    let server = Server::start(Some(&receiver.url)).await;
    let sim = &server.sim;
    sim.create_repo("acme", "api", RepoOptions::default());
    receiver.expect("repository", None).await;
    let main = sim.branch_sha("acme", "api", "main").unwrap();
    sim.create_branch("acme", "api", "topic", "main").unwrap();
    receiver.expect("create", None).await;
    let push = receiver.expect("push", None).await;
    assert_eq!(push["commits"], json!([]), "the commit is already on main");
    let one = sim
        .commit_files(
            "acme",
            "api",
            "topic",
            None,
            vec![CommitFile::file("a", "1")],
        )
        .unwrap();
    let two = sim
        .commit_files(
            "acme",
            "api",
            "topic",
            None,
            vec![CommitFile::file("b", "2")],
        )
        .unwrap();
    receiver.expect("push", None).await;
    receiver.expect("push", None).await;

    // main -> two is a fast forward over two commits: one push listing both, oldest first.
    let (status, _) = server
        .send(
            "PATCH",
            "/repos/acme/api/git/refs/heads/main",
            json!({ "sha": two }),
        )
        .await;
    assert_eq!(status, 200);
    let push = receiver.expect("push", None).await;
    let ids: Vec<&str> = push["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [one.as_str(), two.as_str()]);
    assert_eq!(push["forced"], false);

    let (status, error) = server
        .send(
            "PATCH",
            "/repos/acme/api/git/refs/heads/main",
            json!({ "sha": main }),
        )
        .await;
    assert_eq!(
        (status, error["message"].as_str()),
        (422, Some("Update is not a fast forward"))
    );
    let (status, _) = server
        .send(
            "PATCH",
            "/repos/acme/api/git/refs/heads/main",
            json!({ "sha": main, "force": true }),
        )
        .await;
    assert_eq!(status, 200);
    let push = receiver.expect("push", None).await;
    assert_eq!(push["forced"], true);
    assert_eq!(push["commits"], json!([]));

    let (status, error) = server
        .send(
            "POST",
            "/repos/acme/api/git/refs",
            json!({ "ref": "refs/heads/topic", "sha": main }),
        )
        .await;
    assert_eq!(
        (status, error["message"].as_str()),
        (422, Some("Reference already exists"))
    );
    let (status, error) = server
        .send(
            "POST",
            "/repos/acme/api/git/refs",
            json!({ "ref": "refs/heads/new", "sha": ZERO }),
        )
        .await;
    assert_eq!(
        (status, error["message"].as_str()),
        (422, Some("Object does not exist"))
    );
    let response = server
        .client
        .delete(server.url("/repos/acme/api/git/refs/heads/gone"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);

    // The sha media type answers the bare head; its ETag holds until the branch moves.
    let get_sha = |etag: Option<String>| {
        let mut request = server
            .client
            .get(server.url("/repos/acme/api/commits/topic"))
            .header(ACCEPT, "application/vnd.github.sha");
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        request.send()
    };
    let first = get_sha(None).await.unwrap();
    let etag = first.headers()[ETAG].to_str().unwrap().to_owned();
    assert_eq!(first.text().await.unwrap(), two);
    assert_eq!(get_sha(Some(etag.clone())).await.unwrap().status(), 304);
    sim.put_file("acme", "api", "topic", "c", "3").unwrap();
    assert_eq!(get_sha(Some(etag)).await.unwrap().status(), 200);
}

#[tokio::test]
async fn admin_http_api_creates_branches_commits_and_pull_requests() {
    let mut receiver = Receiver::start().await;
    let server = Server::start(Some(&receiver.url)).await;
    server
        .sim
        .create_repo("acme", "api", RepoOptions::default());
    receiver.expect("repository", None).await;

    let (status, branch) = server
        .send(
            "POST",
            "/_admin/repos/acme/api/branches",
            json!({ "name": "docs" }),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        branch["sha"],
        server.sim.branch_sha("acme", "api", "main").unwrap()
    );
    receiver.expect("create", None).await;
    receiver.expect("push", None).await;
    let (status, _) = server
        .send(
            "POST",
            "/_admin/repos/acme/api/branches",
            json!({ "name": "docs" }),
        )
        .await;
    assert_eq!(status, 422);

    // Several files with modes, one commit, one push.
    let (status, commit) = server
        .send(
            "POST",
            "/_admin/repos/acme/api/commits",
            json!({
                "branch": "docs",
                "message": "Docs and tools",
                "files": [
                    { "path": "docs/index.md", "content": "# Docs\n" },
                    { "path": "bin/tool", "content_base64": b64(b"\x7fELF"), "mode": "100755" },
                    { "path": "current", "content": "docs/index.md", "mode": "120000" }
                ]
            }),
        )
        .await;
    assert_eq!(status, 201);
    let push = receiver.expect("push", None).await;
    assert_eq!(push["after"], commit["sha"]);
    assert_eq!(push["commits"].as_array().unwrap().len(), 1);
    assert_eq!(push["head_commit"]["message"], "Docs and tools");
    assert_eq!(
        push["head_commit"]["added"],
        json!(["bin/tool", "current", "docs/index.md"])
    );
    assert_eq!(push["sender"]["login"], "sim-admin");
    assert_eq!(
        server
            .sim
            .file_entry("acme", "api", "docs", "bin/tool")
            .unwrap()
            .0,
        FileMode::Executable
    );
    assert_eq!(
        server.sim.file("acme", "api", "docs", "bin/tool").unwrap(),
        b"\x7fELF"
    );
    let (_, link) = server
        .get("/repos/acme/api/contents/current?ref=docs")
        .await;
    assert_eq!(link["type"], "symlink");
    assert_eq!(link["target"], "docs/index.md");

    let (status, deleted) = server
        .send(
            "POST",
            "/_admin/repos/acme/api/commits",
            json!({ "branch": "docs", "files": [{ "path": "current", "delete": true }] }),
        )
        .await;
    assert_eq!(status, 201, "{deleted}");
    assert_eq!(
        receiver.expect("push", None).await["head_commit"]["removed"],
        json!(["current"])
    );
    let (status, _) = server
        .send(
            "POST",
            "/_admin/repos/acme/api/commits",
            json!({ "branch": "nope", "files": [{ "path": "a", "content": "a" }] }),
        )
        .await;
    assert_eq!(status, 404);

    // A pull request opened by a human.
    let (status, pull) = server
        .send(
            "POST",
            "/_admin/repos/acme/api/pulls",
            json!({ "title": "Docs", "head": "docs", "base": "main" }),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(pull["user"]["login"], "sim-admin");
    assert_eq!(pull["author_association"], "MEMBER");
    let opened = receiver.expect("pull_request", Some("opened")).await;
    assert_eq!(opened["sender"]["login"], "sim-admin");
    assert_eq!(opened["number"], pull["number"]);
    let (status, error) = server
        .send(
            "POST",
            "/_admin/repos/acme/api/pulls",
            json!({ "title": "Docs", "head": "docs", "base": "main" }),
        )
        .await;
    assert_eq!(status, 422);
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("already exists"));
    let (status, _) = server
        .send(
            "POST",
            "/_admin/repos/acme/nope/pulls",
            json!({ "title": "t", "head": "a", "base": "b" }),
        )
        .await;
    assert_eq!(status, 404);

    // The same through the methods.
    let number = server
        .sim
        .open_pull_request(
            "acme",
            "api",
            NewPullRequest {
                title: "Same again".to_owned(),
                head: "docs".to_owned(),
                base: "main".to_owned(),
                ..NewPullRequest::default()
            },
        )
        .unwrap_err();
    assert!(matches!(number, SimError::Invalid(_)));
    assert_eq!(
        server.sim.pull_request("acme", "api", 1).unwrap()["title"],
        "Docs"
    );
    receiver.assert_quiet().await;
}

#[tokio::test]
async fn pull_requests_list_filter_and_paginate() {
    let server = Server::start(None).await;
    let sim = &server.sim;
    sim.create_repo("acme", "api", RepoOptions::default());
    for i in 1..=3 {
        let branch = format!("b{i}");
        sim.create_branch("acme", "api", &branch, "main").unwrap();
        sim.put_file("acme", "api", &branch, &format!("f{i}"), "x")
            .unwrap();
        let number = sim
            .open_pull_request(
                "acme",
                "api",
                NewPullRequest {
                    title: format!("PR {i}"),
                    head: branch,
                    base: "main".to_owned(),
                    ..NewPullRequest::default()
                },
            )
            .unwrap();
        assert_eq!(number, i);
    }
    let (_, all) = server.get("/repos/acme/api/pulls").await;
    let numbers: Vec<u64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [3, 2, 1], "newest first by default");
    let (_, asc) = server.get("/repos/acme/api/pulls?direction=asc").await;
    assert_eq!(asc[0]["number"], 1);
    let page = server
        .client
        .get(server.url("/repos/acme/api/pulls?per_page=2"))
        .send()
        .await
        .unwrap();
    let link = page.headers()[LINK].to_str().unwrap().to_owned();
    assert!(link.contains("page=2>; rel=\"next\""), "{link}");
    assert_eq!(
        page.json::<Value>()
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (_, by_base) = server.get("/repos/acme/api/pulls?base=other").await;
    assert_eq!(by_base, json!([]));
    let (status, _) = server.get("/repos/acme/api/pulls?state=merged").await;
    assert_eq!(status, 422);
    assert_eq!(sim.pull_requests("acme", "api").len(), 3);
    // The list shape is the "simple" one: no merge state or counters.
    assert!(all[0].get("mergeable").is_none());
    assert!(all[0].get("commits").is_none());
}

#[tokio::test]
async fn license_is_detected_on_the_default_branch() {
    let server = Server::start(None).await;
    let sim = &server.sim;
    sim.create_repo(
        "acme",
        "api",
        RepoOptions {
            files: vec![("LICENSE".to_owned(), MIT.as_bytes().to_vec())],
            ..RepoOptions::default()
        },
    );
    let (status, license) = server.get("/repos/acme/api/license").await;
    assert_eq!(status, 200);
    assert_eq!(license["path"], "LICENSE");
    assert_eq!(license["license"]["spdx_id"], "MIT");
    assert_eq!(unb64(license["content"].as_str().unwrap()), MIT.as_bytes());
    let (_, repo) = server.get("/repos/acme/api").await;
    assert_eq!(repo["license"]["key"], "mit");

    sim.remove_file("acme", "api", "main", "LICENSE").unwrap();
    sim.put_file("acme", "api", "main", "LICENSE.txt", APACHE)
        .unwrap();
    let (_, license) = server.get("/repos/acme/api/license").await;
    assert_eq!(license["path"], "LICENSE.txt");
    assert_eq!(license["license"]["key"], "apache-2.0");

    sim.remove_file("acme", "api", "main", "LICENSE.txt")
        .unwrap();
    sim.put_file(
        "acme",
        "api",
        "main",
        "COPYING",
        "Proprietary. Do not copy.\n",
    )
    .unwrap();
    let (_, license) = server.get("/repos/acme/api/license").await;
    assert_eq!(license["license"]["key"], "other");
    assert_eq!(license["license"]["spdx_id"], "NOASSERTION");

    sim.remove_file("acme", "api", "main", "COPYING").unwrap();
    assert_eq!(server.get("/repos/acme/api/license").await.0, 404);
    assert_eq!(
        server.get("/repos/acme/api").await.1["license"],
        Value::Null
    );
    // A license on another branch does not count.
    sim.create_branch("acme", "api", "lic", "main").unwrap();
    sim.put_file("acme", "api", "lic", "LICENSE", MIT).unwrap();
    assert_eq!(server.get("/repos/acme/api/license").await.0, 404);
    assert_eq!(server.get("/repos/acme/api/license?ref=lic").await.0, 200);
}

#[tokio::test]
async fn requests_are_counted_under_the_openapi_templates() {
    let server = Server::start(None).await;
    server
        .sim
        .create_repo("acme", "api", RepoOptions::default());
    server
        .sim
        .create_branch("acme", "api", "feature/x", "main")
        .unwrap();
    server.get("/repos/acme/api/contents/a/b/c.md").await;
    server.get("/repos/acme/api/contents").await;
    server.get("/repos/acme/api/git/ref/heads/feature/x").await;
    server.get("/repos/acme/api/commits/feature/x").await;
    server.get("/repos/acme/api/git/trees/feature/x").await;
    let counts = server.sim.request_counts();
    assert_eq!(counts["GET /repos/{owner}/{repo}/contents/{path}"], 2);
    assert_eq!(counts["GET /repos/{owner}/{repo}/git/ref/{ref}"], 1);
    assert_eq!(counts["GET /repos/{owner}/{repo}/commits/{ref}"], 1);
    assert_eq!(counts["GET /repos/{owner}/{repo}/git/trees/{tree_sha}"], 1);
    // Branch names with slashes resolve everywhere, the tarball too.
    let tar = server
        .client
        .get(server.url("/repos/acme/api/tarball/feature/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(tar.status(), 200);
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

/// Every key of the real payload (recursively, first array element) is in ours too. Where the
/// real value is null (or ours is, e.g. a deleted branch's head commit) the shapes are not
/// compared further.
fn assert_covers(real: &Value, ours: &Value, at: &str, missing: &mut Vec<String>) {
    match (real, ours) {
        (Value::Object(real), Value::Object(ours)) => {
            for (key, value) in real {
                match ours.get(key) {
                    None => missing.push(format!("{at}/{key}")),
                    Some(mine) => assert_covers(value, mine, &format!("{at}/{key}"), missing),
                }
            }
        }
        (Value::Array(real), Value::Array(ours)) => {
            if let (Some(r), Some(o)) = (real.first(), ours.first()) {
                assert_covers(r, o, &format!("{at}/0"), missing);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn webhooks_have_the_shape_of_real_ones() {
    let mut receiver = Receiver::start().await;
    let server = Server::start(Some(&receiver.url)).await;
    let sim = &server.sim;
    sim.create_repo("acme", "api", RepoOptions::default());
    receiver.expect("repository", None).await;
    let mut ours = Vec::new();
    sim.create_branch("acme", "api", "feature", "main").unwrap();
    ours.push((
        "create",
        "payload.json",
        receiver.expect("create", None).await,
    ));
    ours.push((
        "push",
        "with-new-branch.payload.json",
        receiver.expect("push", None).await,
    ));
    sim.put_file("acme", "api", "feature", "a.txt", "a\n")
        .unwrap();
    ours.push(("push", "payload.json", receiver.expect("push", None).await));
    let pull = NewPullRequest {
        title: "A".to_owned(),
        head: "feature".to_owned(),
        base: "main".to_owned(),
        body: Some("Body".to_owned()),
        draft: false,
    };
    sim.open_pull_request("acme", "api", pull).unwrap();
    ours.push((
        "pull_request",
        "opened.payload.json",
        receiver.expect("pull_request", Some("opened")).await,
    ));
    sim.put_file("acme", "api", "feature", "b.txt", "b\n")
        .unwrap();
    receiver.expect("push", None).await;
    ours.push((
        "pull_request",
        "synchronize.payload.json",
        receiver.expect("pull_request", Some("synchronize")).await,
    ));
    server
        .send(
            "PATCH",
            "/repos/acme/api/pulls/1",
            json!({ "state": "closed" }),
        )
        .await;
    ours.push((
        "pull_request",
        "closed.payload.json",
        receiver.expect("pull_request", Some("closed")).await,
    ));
    server
        .send(
            "PATCH",
            "/repos/acme/api/pulls/1",
            json!({ "state": "open" }),
        )
        .await;
    ours.push((
        "pull_request",
        "reopened.payload.json",
        receiver.expect("pull_request", Some("reopened")).await,
    ));
    sim.delete_branch("acme", "api", "feature").unwrap();
    ours.push((
        "delete",
        "payload.json",
        receiver.expect("delete", None).await,
    ));
    receiver.expect("push", None).await;
    receiver.expect("pull_request", Some("closed")).await;

    let mut missing = Vec::new();
    for (event, file, payload) in &ours {
        let real = webhook_sample(event, file);
        assert_covers(&real, payload, &format!("{event}/{file}"), &mut missing);
    }
    assert!(
        missing.is_empty(),
        "keys of real payloads we do not send: {missing:#?}"
    );
}
