//! The repository contents API: `GET` (file, directory, symlink or submodule, also as raw bytes
//! with `Accept: application/vnd.github.raw`), `PUT` (create or update a file as one commit) and
//! `DELETE` of `/repos/{owner}/{repo}/contents/{path}`.
//!
//! Writes are commits on a branch through [`crate::content`], so they send the same `push`
//! webhooks as any other change of the branch. Like GitHub, an update must name the blob it
//! replaces (`sha`): a missing one is a 422, a stale one a 409, which is what makes concurrent
//! writers safe.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::api::{base_of, encode_query_component, find_repo, json_response, tagged, ApiError};
use crate::content::{resolve_commit, CommitMeta};
use crate::git::{self, CommitFile, EntryMode, FileMode};
use crate::gitdata::{
    accepts, body_object, git_commit_json, media_response, missing, opt_person, opt_str,
    push_blocked, req_str, unprocessable,
};
use crate::state::{Actor, Org, Repo};
use crate::Simulator;

const ROUTE_CONTENTS: &str = "/repos/{owner}/{repo}/contents/{path}";

const DOCS_GET: &str = "https://docs.github.com/rest/repos/contents#get-repository-content";
const DOCS_PUT: &str = "https://docs.github.com/rest/repos/contents#create-or-update-file-contents";
const DOCS_DELETE: &str = "https://docs.github.com/rest/repos/contents#delete-a-file";

/// Files above this size come without `content` (encoding "none"), like on GitHub.
const MAX_INLINE: usize = 1024 * 1024;

/// Content type of raw file answers.
const RAW_CONTENT_TYPE: &str = "application/vnd.github.raw; charset=utf-8";

pub(crate) fn routes(sim: &Simulator) -> Router<Simulator> {
    let methods = || get(get_contents).put(put_contents).delete(delete_contents);
    Router::new()
        // Paths span segments. The repository root (no path) is listed under the same route.
        .route(
            "/repos/{owner}/{repo}/contents/{*path}",
            tagged(sim, ROUTE_CONTENTS, methods()),
        )
        .route(
            "/repos/{owner}/{repo}/contents",
            tagged(sim, ROUTE_CONTENTS, get(get_root)),
        )
}

/// URLs of one path at one ref.
struct Urls {
    api: String,
    html: String,
    ref_query: String,
    reference: String,
}

impl Urls {
    fn new(base: &str, org: &Org, repo: &Repo, reference: &str) -> Urls {
        Urls {
            api: format!("{base}/repos/{}/{}", org.login, repo.name),
            html: format!("{base}/{}/{}", org.login, repo.name),
            ref_query: encode_query_component(reference),
            reference: reference.to_owned(),
        }
    }

    fn contents(&self, path: &str) -> String {
        format!("{}/contents/{path}?ref={}", self.api, self.ref_query)
    }
}

/// The fields every content object has: type, name, path, sha, size, the URLs and `_links`.
fn entry_json(urls: &Urls, repo: &Repo, path: &str, mode: EntryMode, sha: &str) -> Value {
    let name = path.rsplit('/').next().unwrap_or(path);
    let url = urls.contents(path);
    let (kind, size, git_url, html_url, download_url) = match mode {
        EntryMode::File(file_mode) => {
            let size = repo.git.blob(sha).map_or(0, <[u8]>::len);
            let kind = if file_mode == FileMode::Symlink {
                "symlink"
            } else {
                "file"
            };
            (
                kind,
                size,
                Value::String(format!("{}/git/blobs/{sha}", urls.api)),
                Value::String(format!("{}/blob/{}/{path}", urls.html, urls.reference)),
                Value::String(format!("{}/raw/{}/{path}", urls.html, urls.reference)),
            )
        }
        EntryMode::Tree => (
            "dir",
            0,
            Value::String(format!("{}/git/trees/{sha}", urls.api)),
            Value::String(format!("{}/tree/{}/{path}", urls.html, urls.reference)),
            Value::Null,
        ),
        EntryMode::Submodule => ("submodule", 0, Value::Null, Value::Null, Value::Null),
    };
    json!({
        "type": kind,
        "size": size,
        "name": name,
        "path": path,
        "sha": sha,
        "url": url,
        "git_url": git_url,
        "html_url": html_url,
        "download_url": download_url,
        "_links": { "self": url, "git": git_url, "html": html_url },
    })
}

/// A file with its base64 content, as `GET` answers it (and the license endpoint).
pub(crate) fn file_json(
    base: &str,
    org: &Org,
    repo: &Repo,
    reference: &str,
    path: &str,
    sha: &str,
) -> Value {
    let urls = Urls::new(base, org, repo, reference);
    let mut value = entry_json(&urls, repo, path, EntryMode::File(FileMode::Regular), sha);
    let data = repo.git.blob(sha).unwrap_or_default();
    if data.len() > MAX_INLINE {
        value["content"] = json!("");
        value["encoding"] = json!("none");
    } else {
        value["content"] = json!(git::wrapped_base64(data));
        value["encoding"] = json!("base64");
    }
    value
}

/// The URL of `.gitmodules`' entry for a submodule path, if the file names one.
fn submodule_url(repo: &Repo, tree: &str, path: &str) -> Option<String> {
    let (_, sha) = repo.git.lookup(tree, ".gitmodules")?;
    let text = String::from_utf8_lossy(repo.git.blob(&sha)?).into_owned();
    let mut current_path = None;
    let mut current_url = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            if current_path.as_deref() == Some(path) {
                return current_url;
            }
            current_path = None;
            current_url = None;
        } else if let Some((key, value)) = line.split_once('=') {
            match key.trim() {
                "path" => current_path = Some(value.trim().to_owned()),
                "url" => current_url = Some(value.trim().to_owned()),
                _ => {}
            }
        }
    }
    (current_path.as_deref() == Some(path))
        .then_some(current_url)
        .flatten()
}

async fn get_root(
    state: State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    query: Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    get_contents(state, Path((owner, name, String::new())), query, headers).await
}

async fn get_contents(
    State(sim): State<Simulator>,
    Path((owner, name, path)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_GET)?;
    let path = path.trim_end_matches('/');
    let reference = query
        .get("ref")
        .filter(|r| !r.is_empty())
        .cloned()
        .unwrap_or_else(|| repo.default_branch.clone());
    let commit = resolve_commit(repo, &reference).ok_or_else(|| {
        ApiError::not_found(format!("No commit found for the ref {reference}"), DOCS_GET)
    })?;
    let tree = repo
        .git
        .commit(&commit)
        .map(|c| c.tree.clone())
        .ok_or_else(|| ApiError::not_found("Not Found", DOCS_GET))?;
    let (mode, sha) = repo
        .git
        .lookup(&tree, path)
        .ok_or_else(|| ApiError::not_found("Not Found", DOCS_GET))?;
    let urls = Urls::new(&base, org, repo, &reference);
    let body = match mode {
        EntryMode::Tree => {
            let prefix = if path.is_empty() {
                String::new()
            } else {
                format!("{path}/")
            };
            let entries: Vec<Value> = repo
                .git
                .tree(&sha)
                .unwrap_or_default()
                .iter()
                .map(|e| entry_json(&urls, repo, &format!("{prefix}{}", e.name), e.mode, &e.sha))
                .collect();
            if accepts(&headers, "object") {
                let mut value = entry_json(&urls, repo, path, mode, &sha);
                value["entries"] = Value::Array(entries);
                value
            } else {
                Value::Array(entries)
            }
        }
        EntryMode::File(file_mode) => {
            if accepts(&headers, "raw") {
                let data = repo.git.blob(&sha).unwrap_or_default().to_vec();
                return Ok(media_response(
                    data,
                    RAW_CONTENT_TYPE,
                    "github.v3; param=raw",
                ));
            }
            if file_mode == FileMode::Symlink {
                let mut value = entry_json(&urls, repo, path, mode, &sha);
                let target = repo.git.blob(&sha).unwrap_or_default();
                value["target"] = json!(String::from_utf8_lossy(target));
                value
            } else {
                file_json(&base, org, repo, &reference, path, &sha)
            }
        }
        EntryMode::Submodule => {
            let mut value = entry_json(&urls, repo, path, mode, &sha);
            let url = submodule_url(repo, &tree, path)
                .unwrap_or_else(|| format!("{}/{path}.git", urls.html));
            value["submodule_git_url"] = json!(url);
            value
        }
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// The `content` part of a write answer: the file without its content.
fn written_json(base: &str, org: &Org, repo: &Repo, branch: &str, path: &str) -> Value {
    let entry = repo
        .branches
        .get(branch)
        .and_then(|b| repo.git.commit(&b.sha))
        .and_then(|c| repo.git.lookup(&c.tree, path));
    match entry {
        Some((mode, sha)) => {
            entry_json(&Urls::new(base, org, repo, branch), repo, path, mode, &sha)
        }
        None => Value::Null,
    }
}

/// The branch a write goes to (default branch if none is named) and the current entry at the
/// path on it; GitHub's 404 when the branch does not exist.
fn target(
    repo: &Repo,
    branch: Option<&str>,
    path: &str,
    documentation_url: &'static str,
) -> Result<(String, Option<(EntryMode, String)>), ApiError> {
    let branch = branch.unwrap_or(&repo.default_branch).to_owned();
    let head = repo.branches.get(&branch).ok_or_else(|| {
        ApiError::not_found(format!("Branch {branch} not found"), documentation_url)
    })?;
    let tree = repo
        .git
        .commit(&head.sha)
        .map(|c| c.tree.clone())
        .ok_or_else(|| ApiError::not_found("Not Found", documentation_url))?;
    Ok((branch, repo.git.lookup(&tree, path)))
}

fn conflict(message: impl Into<String>, documentation_url: &'static str) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, message, documentation_url)
}

/// Checks the `sha` a write names against the current blob: missing is GitHub's 422, stale its
/// 409.
fn check_sha(
    path: &str,
    current: &str,
    given: Option<&str>,
    documentation_url: &'static str,
) -> Result<(), ApiError> {
    match given {
        None => Err(unprocessable(missing("sha"), documentation_url)),
        Some(sha) if sha != current => Err(conflict(
            format!("{path} does not match {sha}"),
            documentation_url,
        )),
        Some(_) => Ok(()),
    }
}

async fn put_contents(
    State(sim): State<Simulator>,
    Path((owner, name, path)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let base = base_of(&st, &headers);
    let (_, repo) = find_repo(&st, &owner, &name, DOCS_PUT)?;
    let obj = body_object(&body, DOCS_PUT)?;
    let invalid = |m: String| unprocessable(m, DOCS_PUT);
    let message = req_str(&obj, "message").map_err(invalid)?.to_owned();
    let content = req_str(&obj, "content").map_err(invalid)?;
    let given_sha = opt_str(&obj, "sha").map_err(invalid)?;
    let branch = opt_str(&obj, "branch").map_err(invalid)?;
    let author = opt_person(&obj, "author").map_err(invalid)?;
    let committer = opt_person(&obj, "committer").map_err(invalid)?;
    if !git::valid_path(&path) {
        return Err(invalid(format!("path is invalid: {path:?}")));
    }
    let (branch, current) = target(repo, branch, &path, DOCS_PUT)?;
    let data = git::decode_base64(content)
        .ok_or_else(|| unprocessable("content is not valid Base64", DOCS_PUT))?;
    let mode = match &current {
        None => FileMode::Regular,
        Some((EntryMode::File(mode), blob)) => {
            check_sha(&path, blob, given_sha, DOCS_PUT)?;
            *mode
        }
        Some((EntryMode::Tree, _)) => {
            return Err(invalid(format!("{path} is a directory")));
        }
        Some((EntryMode::Submodule, _)) => {
            return Err(invalid(format!("{path} is a submodule")));
        }
    };
    if let Some(reason) = push_blocked(repo, &branch) {
        let verb = if current.is_some() {
            "update"
        } else {
            "create"
        };
        return Err(conflict(
            format!("Could not {verb} file: {reason}"),
            DOCS_PUT,
        ));
    }
    let file = CommitFile {
        path: path.clone(),
        contents: Some(data),
        mode,
    };
    let meta = CommitMeta {
        message: Some(message),
        author,
        committer,
    };
    let (sha, events) = st
        .commit_files(&owner, &name, &branch, vec![file], meta, Actor::Api)
        .map_err(|e| match e {
            crate::SimError::Invalid(m) => unprocessable(m, DOCS_PUT),
            other => ApiError::from_sim(other, DOCS_PUT),
        })?;
    sim.emit(&st, events);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_PUT)?;
    let value = json!({
        "content": written_json(&base, org, repo, &branch, &path),
        "commit": git_commit_json(&base, org, repo, &sha),
    });
    let status = if current.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(json_response(status, &value))
}

async fn delete_contents(
    State(sim): State<Simulator>,
    Path((owner, name, path)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let base = base_of(&st, &headers);
    let (_, repo) = find_repo(&st, &owner, &name, DOCS_DELETE)?;
    let obj = body_object(&body, DOCS_DELETE)?;
    let invalid = |m: String| unprocessable(m, DOCS_DELETE);
    let message = req_str(&obj, "message").map_err(invalid)?.to_owned();
    let given_sha = opt_str(&obj, "sha").map_err(invalid)?;
    let branch = opt_str(&obj, "branch").map_err(invalid)?;
    let author = opt_person(&obj, "author").map_err(invalid)?;
    let committer = opt_person(&obj, "committer").map_err(invalid)?;
    let (branch, current) = target(repo, branch, &path, DOCS_DELETE)?;
    let Some((EntryMode::File(_), blob)) = current else {
        return Err(ApiError::not_found("Not Found", DOCS_DELETE));
    };
    check_sha(&path, &blob, given_sha, DOCS_DELETE)?;
    if let Some(reason) = push_blocked(repo, &branch) {
        return Err(conflict(
            format!("Could not delete file: {reason}"),
            DOCS_DELETE,
        ));
    }
    let meta = CommitMeta {
        message: Some(message),
        author,
        committer,
    };
    let (sha, events) = st
        .commit_files(
            &owner,
            &name,
            &branch,
            vec![CommitFile::delete(path.clone())],
            meta,
            Actor::Api,
        )
        .map_err(|e| ApiError::from_sim(e, DOCS_DELETE))?;
    sim.emit(&st, events);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_DELETE)?;
    let value = json!({
        "content": Value::Null,
        "commit": git_commit_json(&base, org, repo, &sha),
    });
    Ok(json_response(StatusCode::OK, &value))
}
