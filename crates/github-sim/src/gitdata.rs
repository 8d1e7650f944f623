//! The git database API (`/git/blobs`, `/git/trees`, `/git/commits`, `/git/refs`), the commit
//! endpoint (`/commits/{ref}`, including the `application/vnd.github.sha` media type), the admin
//! operations on branches and commits, and the request-body helpers the write endpoints of this
//! and the neighbouring families share.
//!
//! Branches are `refs/heads/*`; every change of one goes through [`State::set_ref`], which sends
//! the `create` / `push` / `delete` webhooks. Tags are not modelled.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::api::{base_of, find_repo, json_response, set_header, tagged, ApiError, MediaType};
use crate::content::{self, resolve_commit};
use crate::git::{self, Commit, CommitFile, EntryMode, FileMode, Object, Person};
use crate::state::{Actor, Org, Repo, State as SimState};
use crate::{SimError, Simulator};

const ROUTE_BLOBS: &str = "/repos/{owner}/{repo}/git/blobs";
const ROUTE_BLOB: &str = "/repos/{owner}/{repo}/git/blobs/{file_sha}";
const ROUTE_TREES: &str = "/repos/{owner}/{repo}/git/trees";
const ROUTE_TREE: &str = "/repos/{owner}/{repo}/git/trees/{tree_sha}";
const ROUTE_GIT_COMMITS: &str = "/repos/{owner}/{repo}/git/commits";
const ROUTE_REFS: &str = "/repos/{owner}/{repo}/git/refs";
const ROUTE_GET_REF: &str = "/repos/{owner}/{repo}/git/ref/{ref}";
const ROUTE_REF: &str = "/repos/{owner}/{repo}/git/refs/{ref}";
const ROUTE_COMMIT: &str = "/repos/{owner}/{repo}/commits/{ref}";

const DOCS_CREATE_BLOB: &str = "https://docs.github.com/rest/git/blobs#create-a-blob";
const DOCS_GET_BLOB: &str = "https://docs.github.com/rest/git/blobs#get-a-blob";
const DOCS_CREATE_TREE: &str = "https://docs.github.com/rest/git/trees#create-a-tree";
const DOCS_GET_TREE: &str = "https://docs.github.com/rest/git/trees#get-a-tree";
const DOCS_CREATE_COMMIT: &str = "https://docs.github.com/rest/git/commits#create-a-commit";
const DOCS_CREATE_REF: &str = "https://docs.github.com/rest/git/refs#create-a-reference";
const DOCS_GET_REF: &str = "https://docs.github.com/rest/git/refs#get-a-reference";
const DOCS_UPDATE_REF: &str = "https://docs.github.com/rest/git/refs#update-a-reference";
const DOCS_DELETE_REF: &str = "https://docs.github.com/rest/git/refs#delete-a-reference";
const DOCS_GET_COMMIT: &str = "https://docs.github.com/rest/commits/commits#get-a-commit";

/// Content type of the bare sha answered for `Accept: application/vnd.github.sha`.
const SHA_CONTENT_TYPE: &str = "application/vnd.github.sha; charset=utf-8";

pub(crate) fn routes(sim: &Simulator) -> Router<Simulator> {
    Router::new()
        .route(ROUTE_BLOBS, tagged(sim, ROUTE_BLOBS, post(create_blob)))
        .route(ROUTE_BLOB, tagged(sim, ROUTE_BLOB, get(get_blob)))
        .route(ROUTE_TREES, tagged(sim, ROUTE_TREES, post(create_tree)))
        // Trees are also addressed by branch name, and branch names may contain slashes.
        .route(
            "/repos/{owner}/{repo}/git/trees/{*tree_sha}",
            tagged(sim, ROUTE_TREE, get(get_tree)),
        )
        .route(
            ROUTE_GIT_COMMITS,
            tagged(sim, ROUTE_GIT_COMMITS, post(create_commit)),
        )
        .route(ROUTE_REFS, tagged(sim, ROUTE_REFS, post(create_ref)))
        .route(
            "/repos/{owner}/{repo}/git/ref/{*ref}",
            tagged(sim, ROUTE_GET_REF, get(get_ref)),
        )
        .route(
            "/repos/{owner}/{repo}/git/refs/{*ref}",
            tagged(
                sim,
                ROUTE_REF,
                axum::routing::patch(update_ref).delete(delete_ref),
            ),
        )
        // The commit's ref may contain slashes; the commit status routes under it
        // (`.../{ref}/status`, `.../{ref}/statuses`) are told apart in `statuses`.
        .route(
            "/repos/{owner}/{repo}/commits/{*ref}",
            crate::statuses::commit_routes(sim, tagged(sim, ROUTE_COMMIT, get(get_commit))),
        )
}

/// Admin routes (merged under `/_admin`): create a branch, commit several files at once.
pub(crate) fn admin_routes() -> Router<Simulator> {
    Router::new()
        .route("/repos/{owner}/{repo}/branches", post(admin_create_branch))
        .route("/repos/{owner}/{repo}/commits", post(admin_commit))
}

// ---------------------------------------------------------------------------------------------
// Request bodies (shared with the contents and pull request families)
// ---------------------------------------------------------------------------------------------

/// GitHub's 422 message for a required field that is missing.
pub(crate) fn missing(field: &str) -> String {
    format!("Invalid request.\n\n\"{field}\" wasn't supplied.")
}

/// GitHub's 422 message for a field of the wrong type or value.
pub(crate) fn not_a(field: &str, value: &Value, expected: &str) -> String {
    format!("Invalid request.\n\nFor 'properties/{field}', {value} is not {expected}.")
}

/// Parses a JSON object body: 400 "Problems parsing JSON" if it is not JSON, 422 if it is not
/// an object.
pub(crate) fn body_object(
    body: &Bytes,
    documentation_url: &'static str,
) -> Result<Map<String, Value>, ApiError> {
    match crate::api::parse_json(body, documentation_url)? {
        Value::Object(map) => Ok(map),
        other => Err(unprocessable(
            format!("Invalid request.\n\n{other} is not an object."),
            documentation_url,
        )),
    }
}

/// A 422 answer.
pub(crate) fn unprocessable(
    message: impl Into<String>,
    documentation_url: &'static str,
) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message, documentation_url)
}

/// A required string field.
pub(crate) fn req_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(missing(field)),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(not_a(field, other, "a string")),
    }
}

/// An optional string field (null counts as absent).
pub(crate) fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(not_a(field, other, "a string")),
    }
}

/// An optional boolean field (null counts as absent).
pub(crate) fn opt_bool(obj: &Map<String, Value>, field: &str) -> Result<Option<bool>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(not_a(field, other, "a boolean")),
    }
}

/// An optional `{name, email, date}` identity (`author` / `committer`); the date defaults to
/// now.
pub(crate) fn opt_person(obj: &Map<String, Value>, field: &str) -> Result<Option<Person>, String> {
    let value = match obj.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(value) => value,
    };
    let inner = value
        .as_object()
        .ok_or_else(|| not_a(field, value, "an object"))?;
    let sub = |name: &str| format!("{field}/{name}");
    let text = |name: &str| match inner.get(name) {
        None | Some(Value::Null) => Err(missing(&sub(name))),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(not_a(&sub(name), other, "a string")),
    };
    let date = match inner.get("date") {
        None | Some(Value::Null) => Utc::now(),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|_| not_a(&sub("date"), &Value::String(s.clone()), "a date-time"))?,
        Some(other) => return Err(not_a(&sub("date"), other, "a string")),
    };
    Ok(Some(Person {
        name: text("name")?,
        email: text("email")?,
        date,
    }))
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

/// GitHub's legacy node id of a git object, base64 of "0{len}:{Type}{repo id}:{sha}".
pub(crate) fn object_node_id(kind: &str, repo_id: u64, key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .encode(format!("0{}:{kind}{repo_id}:{key}", kind.len()))
}

fn api_url(base: &str, org: &Org, repo: &Repo) -> String {
    format!("{base}/repos/{}/{}", org.login, repo.name)
}

fn html_url(base: &str, org: &Org, repo: &Repo) -> String {
    format!("{base}/{}/{}", org.login, repo.name)
}

fn person_json(person: &Person) -> Value {
    json!({
        "name": person.name,
        "email": person.email,
        "date": crate::render::time(&person.date),
    })
}

fn unsigned() -> Value {
    json!({
        "verified": false,
        "reason": "unsigned",
        "signature": null,
        "payload": null,
        "verified_at": null,
    })
}

/// A commit in the git database shape (`POST /git/commits`, the `commit` of contents writes).
pub(crate) fn git_commit_json(base: &str, org: &Org, repo: &Repo, sha: &str) -> Value {
    let api = api_url(base, org, repo);
    let html = html_url(base, org, repo);
    let Some(commit) = repo.git.commit(sha) else {
        return Value::Null;
    };
    let parents: Vec<Value> = commit
        .parents
        .iter()
        .map(|p| {
            json!({
                "sha": p,
                "url": format!("{api}/git/commits/{p}"),
                "html_url": format!("{html}/commit/{p}"),
            })
        })
        .collect();
    json!({
        "sha": sha,
        "node_id": object_node_id("Commit", repo.id, sha),
        "url": format!("{api}/git/commits/{sha}"),
        "html_url": format!("{html}/commit/{sha}"),
        "author": person_json(&commit.author),
        "committer": person_json(&commit.committer),
        "tree": { "sha": commit.tree, "url": format!("{api}/git/trees/{}", commit.tree) },
        "message": commit.message,
        "parents": parents,
        "verification": unsigned(),
    })
}

/// A commit in the shape of `GET /repos/{owner}/{repo}/commits/{ref}` (also the `commit` of a
/// branch); with `files`, the `stats` and `files` against the first parent are included.
pub(crate) fn commit_json(base: &str, org: &Org, repo: &Repo, sha: &str, files: bool) -> Value {
    let api = api_url(base, org, repo);
    let html = html_url(base, org, repo);
    let Some(commit) = repo.git.commit(sha) else {
        return Value::Null;
    };
    let parents: Vec<Value> = commit
        .parents
        .iter()
        .map(|p| {
            json!({
                "sha": p,
                "url": format!("{api}/commits/{p}"),
                "html_url": format!("{html}/commit/{p}"),
            })
        })
        .collect();
    let mut value = json!({
        "sha": sha,
        "node_id": object_node_id("Commit", repo.id, sha),
        "commit": {
            "author": person_json(&commit.author),
            "committer": person_json(&commit.committer),
            "message": commit.message,
            "tree": { "sha": commit.tree, "url": format!("{api}/git/trees/{}", commit.tree) },
            "url": format!("{api}/git/commits/{sha}"),
            "comment_count": 0,
            "verification": unsigned(),
        },
        "url": format!("{api}/commits/{sha}"),
        "html_url": format!("{html}/commit/{sha}"),
        "comments_url": format!("{api}/commits/{sha}/comments"),
        "author": content::account_for_email(base, &commit.author.email),
        "committer": content::account_for_email(base, &commit.committer.email),
        "parents": parents,
    });
    if files {
        let mut total_add = 0;
        let mut total_del = 0;
        let list: Vec<Value> = repo
            .git
            .commit_changes(sha)
            .iter()
            .map(|change| {
                let (additions, deletions) = repo.git.line_stats(change);
                total_add += additions;
                total_del += deletions;
                let status = match change.kind {
                    git::ChangeKind::Added => "added",
                    git::ChangeKind::Modified => "modified",
                    git::ChangeKind::Removed => "removed",
                };
                let blob = change
                    .new
                    .as_ref()
                    .or(change.old.as_ref())
                    .map(|(_, s)| s.clone());
                let path = &change.path;
                json!({
                    "sha": blob,
                    "filename": path,
                    "status": status,
                    "additions": additions,
                    "deletions": deletions,
                    "changes": additions + deletions,
                    "blob_url": format!("{html}/blob/{sha}/{path}"),
                    "raw_url": format!("{html}/raw/{sha}/{path}"),
                    "contents_url": format!("{api}/contents/{path}?ref={sha}"),
                })
            })
            .collect();
        value["stats"] = json!({
            "total": total_add + total_del,
            "additions": total_add,
            "deletions": total_del,
        });
        value["files"] = Value::Array(list);
    }
    value
}

/// GitHub's legacy node id of a reference, base64 of "03:Ref{ref}".
fn ref_node_id(full: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("03:Ref{full}"))
}

/// A branch reference (`refs/heads/{branch}`).
fn ref_json(base: &str, org: &Org, repo: &Repo, branch: &str, sha: &str) -> Value {
    let api = api_url(base, org, repo);
    let full = format!("refs/heads/{branch}");
    json!({
        "ref": full,
        "node_id": ref_node_id(&full),
        "url": format!("{api}/git/{full}"),
        "object": {
            "sha": sha,
            "type": "commit",
            "url": format!("{api}/git/commits/{sha}"),
        },
    })
}

/// One entry of a tree listing; `path` is relative to the listed tree.
fn tree_entry_json(api: &str, repo: &Repo, path: &str, mode: EntryMode, sha: &str) -> Value {
    let mut entry = json!({
        "path": path,
        "mode": mode.api(),
        "type": mode.kind(),
        "sha": sha,
    });
    match mode {
        EntryMode::File(_) => {
            let size = repo.git.blob(sha).map_or(0, <[u8]>::len);
            entry["size"] = json!(size);
            entry["url"] = json!(format!("{api}/git/blobs/{sha}"));
        }
        EntryMode::Tree => entry["url"] = json!(format!("{api}/git/trees/{sha}")),
        // A gitlink points into another repository; GitHub gives it no URL.
        EntryMode::Submodule => {}
    }
    entry
}

fn list_tree(
    api: &str,
    repo: &Repo,
    tree: &str,
    prefix: &str,
    recursive: bool,
    out: &mut Vec<Value>,
) {
    let Some(entries) = repo.git.tree(tree) else {
        return;
    };
    for entry in entries {
        let path = format!("{prefix}{}", entry.name);
        out.push(tree_entry_json(api, repo, &path, entry.mode, &entry.sha));
        if recursive && entry.mode == EntryMode::Tree {
            list_tree(api, repo, &entry.sha, &format!("{path}/"), true, out);
        }
    }
}

/// A tree as `GET /git/trees` and `POST /git/trees` answer it.
fn tree_json(base: &str, org: &Org, repo: &Repo, tree: &str, recursive: bool) -> Value {
    let api = api_url(base, org, repo);
    let mut entries = Vec::new();
    list_tree(&api, repo, tree, "", recursive, &mut entries);
    json!({
        "sha": tree,
        "url": format!("{api}/git/trees/{tree}"),
        "tree": entries,
        "truncated": false,
    })
}

fn created(value: &Value, location: &str) -> Response {
    let mut response = json_response(StatusCode::CREATED, value);
    set_header(response.headers_mut(), "location", location.to_owned());
    response
}

// ---------------------------------------------------------------------------------------------
// Branch rules
// ---------------------------------------------------------------------------------------------

/// Git's rules for a branch name (`git check-ref-format --branch`), simplified.
pub(crate) fn valid_branch_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['/', '-', '.'])
        && !name.ends_with(['/', '.'])
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("//")
        && !name.contains("@{")
        && name != "@"
        && !name
            .chars()
            .any(|c| c.is_ascii_control() || " ~^:?*[\\".contains(c))
}

/// Why branch protection refuses a direct update of `branch` by the app, if it does. Humans
/// (the admin API) bypass protection, as repository admins can; the app cannot.
pub(crate) fn push_blocked(repo: &Repo, branch: &str) -> Option<String> {
    let settings = &repo.branches.get(branch)?.protection.as_ref()?.settings;
    if settings.lock_branch {
        return Some("Cannot push to a locked branch.".to_owned());
    }
    if settings.required_pull_request_reviews.is_some() {
        return Some("Changes must be made through a pull request.".to_owned());
    }
    let checks = settings
        .required_status_checks
        .as_ref()
        .map_or(0, |c| c.checks.len());
    match checks {
        0 => None,
        1 => settings
            .required_status_checks
            .as_ref()
            .and_then(|c| c.checks.first())
            .map(|c| format!("Required status check \"{}\" is expected.", c.context)),
        n => Some(format!("{n} of {n} required status checks are expected.")),
    }
}

/// Why the app may not delete `branch`, if it may not.
fn delete_blocked(repo: &Repo, branch: &str) -> Option<&'static str> {
    if branch == repo.default_branch {
        return Some("Cannot delete the default branch.");
    }
    let protection = repo.branches.get(branch)?.protection.as_ref()?;
    (!protection.settings.allow_deletions).then_some("Cannot delete this protected branch.")
}

/// A validation failure of a branch operation: the message and whether it is a 404 (a missing
/// repository) rather than GitHub's 422.
#[derive(Debug)]
enum RefError {
    NotFound,
    Invalid(String),
}

impl RefError {
    fn api(self, documentation_url: &'static str) -> ApiError {
        match self {
            RefError::NotFound => ApiError::not_found("Not Found", documentation_url),
            RefError::Invalid(message) => unprocessable(message, documentation_url),
        }
    }

    fn sim(self) -> SimError {
        match self {
            RefError::NotFound => SimError::NotFound("Not Found".to_owned()),
            RefError::Invalid(message) => SimError::Invalid(message),
        }
    }
}

impl SimState {
    fn repo_index(&self, owner: &str, name: &str) -> Result<u64, RefError> {
        self.repo_id(owner, name).map_err(|_| RefError::NotFound)
    }

    /// Creates `refs/heads/{branch}` at commit `sha`.
    fn create_branch(
        &mut self,
        owner: &str,
        name: &str,
        branch: &str,
        sha: &str,
        actor: Actor,
    ) -> Result<Vec<crate::webhooks::Event>, RefError> {
        let id = self.repo_index(owner, name)?;
        let repo = self.repos.get(&id).ok_or(RefError::NotFound)?;
        if !valid_branch_name(branch) {
            return Err(RefError::Invalid("Reference name is invalid".to_owned()));
        }
        if repo.branches.contains_key(branch) {
            return Err(RefError::Invalid("Reference already exists".to_owned()));
        }
        if repo.git.commit(sha).is_none() {
            return Err(RefError::Invalid("Object does not exist".to_owned()));
        }
        Ok(self.set_ref(id, branch, Some(sha.to_owned()), actor))
    }

    /// Moves an existing branch to commit `sha`.
    fn move_branch(
        &mut self,
        owner: &str,
        name: &str,
        branch: &str,
        sha: &str,
        force: bool,
        actor: Actor,
    ) -> Result<Vec<crate::webhooks::Event>, RefError> {
        let id = self.repo_index(owner, name)?;
        let repo = self.repos.get(&id).ok_or(RefError::NotFound)?;
        let current = repo
            .branches
            .get(branch)
            .ok_or_else(|| RefError::Invalid("Reference does not exist".to_owned()))?;
        if repo.git.commit(sha).is_none() {
            return Err(RefError::Invalid("Object does not exist".to_owned()));
        }
        let fast_forward = repo.git.is_ancestor(&current.sha, sha);
        if !fast_forward && !force {
            return Err(RefError::Invalid("Update is not a fast forward".to_owned()));
        }
        if actor == Actor::Api {
            let force_blocked = !fast_forward
                && current
                    .protection
                    .as_ref()
                    .is_some_and(|p| !p.settings.allow_force_pushes);
            if force_blocked {
                return Err(RefError::Invalid(
                    "Cannot force-push to this protected branch".to_owned(),
                ));
            }
            if let Some(reason) = push_blocked(repo, branch) {
                return Err(RefError::Invalid(format!(
                    "Protected branch update failed for refs/heads/{branch}. {reason}"
                )));
            }
        }
        Ok(self.set_ref(id, branch, Some(sha.to_owned()), actor))
    }

    /// Deletes a branch.
    fn delete_branch(
        &mut self,
        owner: &str,
        name: &str,
        branch: &str,
        actor: Actor,
    ) -> Result<Vec<crate::webhooks::Event>, RefError> {
        let id = self.repo_index(owner, name)?;
        let repo = self.repos.get(&id).ok_or(RefError::NotFound)?;
        if !repo.branches.contains_key(branch) {
            return Err(RefError::Invalid("Reference does not exist".to_owned()));
        }
        if let Some(reason) = delete_blocked(repo, branch) {
            // The default branch is protected from everyone; protection rules from the app.
            if actor == Actor::Api || branch == repo.default_branch {
                return Err(RefError::Invalid(reason.to_owned()));
            }
        }
        Ok(self.set_ref(id, branch, None, actor))
    }
}

/// The branch of a `heads/{branch}` (or `refs/heads/{branch}`) ref parameter.
fn branch_of_ref(reference: &str) -> Option<&str> {
    reference
        .strip_prefix("refs/")
        .unwrap_or(reference)
        .strip_prefix("heads/")
        .filter(|b| !b.is_empty())
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

/// The repository for changing it, or GitHub's 404.
fn lookup_mut<'a>(
    st: &'a mut SimState,
    owner: &str,
    name: &str,
    documentation_url: &'static str,
) -> Result<&'a mut Repo, ApiError> {
    st.repo_mut(owner, name)
        .map_err(|e| ApiError::from_sim(e, documentation_url))
}

async fn create_blob(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let base = base_of(&st, &headers);
    find_repo(&st, &owner, &name, DOCS_CREATE_BLOB)?;
    let obj = body_object(&body, DOCS_CREATE_BLOB)?;
    let invalid = |m: String| unprocessable(m, DOCS_CREATE_BLOB);
    let content = req_str(&obj, "content").map_err(invalid)?;
    let data = match opt_str(&obj, "encoding").map_err(invalid)? {
        None | Some("utf-8") | Some("utf8") => content.as_bytes().to_vec(),
        Some("base64") => git::decode_base64(content)
            .ok_or_else(|| unprocessable("content is not valid Base64", DOCS_CREATE_BLOB))?,
        Some(other) => {
            return Err(unprocessable(
                format!("encoding must be either utf-8 or base64, not {other:?}"),
                DOCS_CREATE_BLOB,
            ))
        }
    };
    let repo = lookup_mut(&mut st, &owner, &name, DOCS_CREATE_BLOB)?;
    let sha = repo.git.write_blob(data);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_CREATE_BLOB)?;
    let url = format!("{}/git/blobs/{sha}", api_url(&base, org, repo));
    Ok(created(&json!({ "sha": sha, "url": url }), &url))
}

async fn get_blob(
    State(sim): State<Simulator>,
    Path((owner, name, sha)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_GET_BLOB)?;
    if !git::is_sha(&sha) {
        return Err(unprocessable(
            "The sha parameter must be exactly 40 characters and contain only [0-9a-f].",
            DOCS_GET_BLOB,
        ));
    }
    let data = repo
        .git
        .blob(&sha)
        .ok_or_else(|| ApiError::not_found("Not Found", DOCS_GET_BLOB))?;
    let body = json!({
        "sha": sha,
        "node_id": object_node_id("Blob", repo.id, &sha),
        "size": data.len(),
        "url": format!("{}/git/blobs/{sha}", api_url(&base, org, repo)),
        "content": git::wrapped_base64(data),
        "encoding": "base64",
    });
    Ok(json_response(StatusCode::OK, &body))
}

/// A tree by tree sha, commit sha or branch name.
fn resolve_tree(repo: &Repo, reference: &str) -> Option<String> {
    if git::is_sha(reference) {
        match repo.git.get(reference)? {
            Object::Tree(_) => return Some(reference.to_owned()),
            Object::Commit(commit) => return Some(commit.tree.clone()),
            Object::Blob(_) => return None,
        }
    }
    let commit = resolve_commit(repo, reference)?;
    repo.git.commit(&commit).map(|c| c.tree.clone())
}

async fn get_tree(
    State(sim): State<Simulator>,
    Path((owner, name, reference)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_GET_TREE)?;
    let tree = resolve_tree(repo, &reference)
        .ok_or_else(|| ApiError::not_found("Not Found", DOCS_GET_TREE))?;
    // GitHub recurses for any value of `recursive`, even "0" or "false".
    let recursive = query.contains_key("recursive");
    Ok(json_response(
        StatusCode::OK,
        &tree_json(&base, org, repo, &tree, recursive),
    ))
}

/// One parsed entry of a create-tree request.
enum TreeEdit {
    /// Put a blob (by sha or new content) or a gitlink at a path.
    Put(EntryMode, String),
    /// Put a whole tree at a path.
    PutTree(String),
    /// Remove a path (file or directory).
    Remove,
}

fn parse_tree_entry(
    repo: &mut Repo,
    index: usize,
    entry: &Value,
) -> Result<(String, TreeEdit), String> {
    let field = format!("tree/{index}");
    let obj = entry
        .as_object()
        .ok_or_else(|| not_a(&field, entry, "an object"))?;
    let path = req_str(obj, "path").map_err(|_| missing(&format!("{field}/path")))?;
    if !git::valid_path(path) {
        return Err(format!("tree.path {path:?} is invalid"));
    }
    let mode_text = req_str(obj, "mode").map_err(|_| missing(&format!("{field}/mode")))?;
    let mode = EntryMode::parse(mode_text).ok_or_else(|| {
        not_a(
            &format!("{field}/mode"),
            &json!(mode_text),
            "one of 100644, 100755, 040000, 160000, 120000",
        )
    })?;
    if let Some(kind) = opt_str(obj, "type")? {
        if kind != mode.kind() {
            return Err(format!(
                "Invalid tree info: mode {mode_text} is not a {kind}"
            ));
        }
    }
    let content = opt_str(obj, "content")?;
    let sha = match obj.get("sha") {
        None => None,
        Some(Value::Null) => {
            if content.is_some() {
                return Err("Must supply either tree.sha or tree.content, not both".to_owned());
            }
            return Ok((path.to_owned(), TreeEdit::Remove));
        }
        Some(Value::String(s)) => Some(s.as_str()),
        Some(other) => return Err(not_a(&format!("{field}/sha"), other, "a string")),
    };
    match (sha, content) {
        (Some(_), Some(_)) => {
            Err("Must supply either tree.sha or tree.content, not both".to_owned())
        }
        (None, None) => Err("Must supply either tree.sha or tree.content".to_owned()),
        (None, Some(text)) => match mode {
            EntryMode::File(_) => {
                let blob = repo.git.write_blob(text.as_bytes().to_vec());
                Ok((path.to_owned(), TreeEdit::Put(mode, blob)))
            }
            _ => Err(format!(
                "tree.content is only valid for blobs, not mode {mode_text}"
            )),
        },
        (Some(sha), None) => match mode {
            EntryMode::File(_) if repo.git.blob(sha).is_some() => {
                Ok((path.to_owned(), TreeEdit::Put(mode, sha.to_owned())))
            }
            EntryMode::File(_) => Err(format!("tree.sha {sha} is not a valid blob")),
            EntryMode::Tree if repo.git.tree(sha).is_some() => {
                Ok((path.to_owned(), TreeEdit::PutTree(sha.to_owned())))
            }
            EntryMode::Tree => Err(format!("tree.sha {sha} is not a valid tree")),
            // A gitlink names a commit of another repository, which cannot be checked here.
            EntryMode::Submodule if git::is_sha(sha) => {
                Ok((path.to_owned(), TreeEdit::Put(mode, sha.to_owned())))
            }
            EntryMode::Submodule => Err(format!("tree.sha {sha} is not a valid commit")),
        },
    }
}

async fn create_tree(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let base = base_of(&st, &headers);
    find_repo(&st, &owner, &name, DOCS_CREATE_TREE)?;
    let obj = body_object(&body, DOCS_CREATE_TREE)?;
    let invalid = |m: String| unprocessable(m, DOCS_CREATE_TREE);
    let entries = match obj.get("tree") {
        None | Some(Value::Null) => return Err(invalid(missing("tree"))),
        Some(Value::Array(entries)) => entries,
        Some(other) => return Err(invalid(not_a("tree", other, "an array"))),
    };
    let repo = lookup_mut(&mut st, &owner, &name, DOCS_CREATE_TREE)?;
    let mut files = match opt_str(&obj, "base_tree").map_err(invalid)? {
        None => git::Files::new(),
        Some(base_tree) => {
            // GitHub peels a commit to its tree here too.
            let tree = if git::is_sha(base_tree) {
                match repo.git.get(base_tree) {
                    Some(Object::Tree(_)) => Some(base_tree.to_owned()),
                    Some(Object::Commit(c)) => Some(c.tree.clone()),
                    _ => None,
                }
            } else {
                None
            };
            let tree =
                tree.ok_or_else(|| invalid("base_tree is not a valid tree oid".to_owned()))?;
            repo.git.flatten(&tree)
        }
    };
    let mut edits = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        edits.push(parse_tree_entry(repo, index, entry).map_err(invalid)?);
    }
    for (path, edit) in edits {
        let dir = format!("{path}/");
        files.retain(|p, _| p != &path && !p.starts_with(&dir));
        // A file replacing a directory's parent path replaces the file too.
        let parents: Vec<String> = path
            .match_indices('/')
            .map(|(i, _)| path[..i].to_owned())
            .collect();
        match edit {
            TreeEdit::Remove => {}
            TreeEdit::Put(mode, sha) => {
                for parent in &parents {
                    files.remove(parent);
                }
                files.insert(path, (mode, sha));
            }
            TreeEdit::PutTree(tree) => {
                for parent in &parents {
                    files.remove(parent);
                }
                for (sub, entry) in repo.git.flatten(&tree) {
                    files.insert(format!("{dir}{sub}"), entry);
                }
            }
        }
    }
    let tree = repo.git.write_files(&files);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_CREATE_TREE)?;
    let value = tree_json(&base, org, repo, &tree, false);
    let location = format!("{}/git/trees/{tree}", api_url(&base, org, repo));
    Ok(created(&value, &location))
}

async fn create_commit(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let base = base_of(&st, &headers);
    find_repo(&st, &owner, &name, DOCS_CREATE_COMMIT)?;
    let obj = body_object(&body, DOCS_CREATE_COMMIT)?;
    let invalid = |m: String| unprocessable(m, DOCS_CREATE_COMMIT);
    let message = req_str(&obj, "message").map_err(invalid)?.to_owned();
    let tree = req_str(&obj, "tree").map_err(invalid)?.to_owned();
    let parents: Vec<String> = match obj.get("parents") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid(not_a("parents", item, "a string")))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(invalid(not_a("parents", other, "an array"))),
    };
    let author = opt_person(&obj, "author").map_err(invalid)?;
    let committer = opt_person(&obj, "committer").map_err(invalid)?;
    let repo = lookup_mut(&mut st, &owner, &name, DOCS_CREATE_COMMIT)?;
    if repo.git.tree(&tree).is_none() {
        return Err(invalid("Tree SHA does not exist".to_owned()));
    }
    if parents.iter().any(|p| repo.git.commit(p).is_none()) {
        return Err(invalid(
            "Parent SHA does not exist or is not a commit object".to_owned(),
        ));
    }
    let committer = committer
        .or_else(|| author.clone())
        .unwrap_or_else(|| content::person(Actor::Api, Utc::now()));
    let author = author.unwrap_or_else(|| committer.clone());
    let sha = repo.git.write_commit(Commit {
        tree,
        parents,
        author,
        committer,
        message,
    });
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_CREATE_COMMIT)?;
    let location = format!("{}/git/commits/{sha}", api_url(&base, org, repo));
    Ok(created(&git_commit_json(&base, org, repo, &sha), &location))
}

async fn create_ref(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let base = base_of(&st, &headers);
    find_repo(&st, &owner, &name, DOCS_CREATE_REF)?;
    let obj = body_object(&body, DOCS_CREATE_REF)?;
    let invalid = |m: String| unprocessable(m, DOCS_CREATE_REF);
    let full = req_str(&obj, "ref").map_err(invalid)?;
    let sha = req_str(&obj, "sha").map_err(invalid)?;
    if !full.starts_with("refs/") || full.matches('/').count() < 2 {
        return Err(invalid(
            "Reference name must be fully qualified, e.g. refs/heads/main".to_owned(),
        ));
    }
    let branch = full.strip_prefix("refs/heads/").ok_or_else(|| {
        invalid("Only branches (refs/heads/*) are supported by the simulator".to_owned())
    })?;
    let events = st
        .create_branch(&owner, &name, branch, sha, Actor::Api)
        .map_err(|e| e.api(DOCS_CREATE_REF))?;
    sim.emit(&st, events);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_CREATE_REF)?;
    let value = ref_json(&base, org, repo, branch, sha);
    let location = format!("{}/git/refs/heads/{branch}", api_url(&base, org, repo));
    Ok(created(&value, &location))
}

async fn get_ref(
    State(sim): State<Simulator>,
    Path((owner, name, reference)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_GET_REF)?;
    let branch = reference
        .strip_prefix("heads/")
        .and_then(|b| repo.branches.get(b))
        .ok_or_else(|| ApiError::not_found("Not Found", DOCS_GET_REF))?;
    Ok(json_response(
        StatusCode::OK,
        &ref_json(&base, org, repo, &branch.name, &branch.sha),
    ))
}

async fn update_ref(
    State(sim): State<Simulator>,
    Path((owner, name, reference)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let base = base_of(&st, &headers);
    find_repo(&st, &owner, &name, DOCS_UPDATE_REF)?;
    let obj = body_object(&body, DOCS_UPDATE_REF)?;
    let invalid = |m: String| unprocessable(m, DOCS_UPDATE_REF);
    let sha = req_str(&obj, "sha").map_err(invalid)?.to_owned();
    let force = opt_bool(&obj, "force").map_err(invalid)?.unwrap_or(false);
    let branch = branch_of_ref(&reference)
        .ok_or_else(|| invalid("Reference does not exist".to_owned()))?
        .to_owned();
    let events = st
        .move_branch(&owner, &name, &branch, &sha, force, Actor::Api)
        .map_err(|e| e.api(DOCS_UPDATE_REF))?;
    sim.emit(&st, events);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_UPDATE_REF)?;
    Ok(json_response(
        StatusCode::OK,
        &ref_json(&base, org, repo, &branch, &sha),
    ))
}

async fn delete_ref(
    State(sim): State<Simulator>,
    Path((owner, name, reference)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    find_repo(&st, &owner, &name, DOCS_DELETE_REF)?;
    let branch = branch_of_ref(&reference)
        .ok_or_else(|| unprocessable("Reference does not exist", DOCS_DELETE_REF))?
        .to_owned();
    let events = st
        .delete_branch(&owner, &name, &branch, Actor::Api)
        .map_err(|e| e.api(DOCS_DELETE_REF))?;
    sim.emit(&st, events);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Whether an `Accept` header asks for `application/vnd.github[.v3].{param}` (optionally
/// `+json`).
pub(crate) fn accepts(headers: &HeaderMap, param: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .any(|media| {
            let media = media.strip_suffix("+json").unwrap_or(&media);
            media == format!("application/vnd.github.{param}")
                || media == format!("application/vnd.github.v3.{param}")
        })
}

/// A non-JSON answer in one of GitHub's media types (the middleware keeps its content type).
pub(crate) fn media_response(
    body: Vec<u8>,
    content_type: &'static str,
    media: &'static str,
) -> Response {
    let mut response = Response::new(axum::body::Body::from(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.extensions_mut().insert(MediaType(media));
    response
}

async fn get_commit(
    State(sim): State<Simulator>,
    Path((owner, name, reference)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_GET_COMMIT)?;
    let sha = resolve_commit(repo, &reference).ok_or_else(|| {
        unprocessable(
            format!("No commit found for SHA: {reference}"),
            DOCS_GET_COMMIT,
        )
    })?;
    if accepts(&headers, "sha") {
        // The cheapest "where is this branch now" read: the body (and so the ETag) only changes
        // when the branch moves.
        return Ok(media_response(
            sha.into_bytes(),
            SHA_CONTENT_TYPE,
            "github.v3; param=sha",
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        &commit_json(&base, org, repo, &sha, true),
    ))
}

// ---------------------------------------------------------------------------------------------
// Admin
// ---------------------------------------------------------------------------------------------

impl Simulator {
    /// Creates branch `branch` at `from` (a branch name or commit sha), as a human pushing a new
    /// branch would. Sends `create` and `push` webhooks. Returns the branch's head sha.
    pub fn create_branch(
        &self,
        owner: &str,
        repo: &str,
        branch: &str,
        from: &str,
    ) -> Result<String, SimError> {
        let mut st = self.lock();
        let (_, found) = st
            .repo(owner, repo)
            .ok_or_else(|| SimError::NotFound("Not Found".to_owned()))?;
        let sha = resolve_commit(found, from)
            .ok_or_else(|| SimError::NotFound("Branch not found".to_owned()))?;
        let events = st
            .create_branch(owner, repo, branch, &sha, Actor::Admin)
            .map_err(RefError::sim)?;
        self.emit(&st, events);
        Ok(sha)
    }

    /// Deletes a branch as a human would (protection does not stop an admin, but the default
    /// branch cannot be deleted). Sends `delete` and `push` webhooks, and `pull_request` "closed"
    /// for open pull requests from the branch.
    pub fn delete_branch(&self, owner: &str, repo: &str, branch: &str) -> Result<(), SimError> {
        let mut st = self.lock();
        let events = st
            .delete_branch(owner, repo, branch, Actor::Admin)
            .map_err(RefError::sim)?;
        self.emit(&st, events);
        Ok(())
    }
}

/// `POST /_admin/repos/{owner}/{repo}/branches` with `{"name": ..., "from": branch-or-sha}`
/// (`from` defaults to the default branch): 201 `{"name", "sha"}`.
async fn admin_create_branch(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let obj = match crate::admin::parse_object(&body) {
        Ok(obj) => obj,
        Err(response) => return *response,
    };
    let branch = match req_str(&obj, "name") {
        Ok(b) => b.to_owned(),
        Err(m) => return crate::admin::sim_error(SimError::Invalid(m)),
    };
    let from = match opt_str(&obj, "from") {
        Ok(Some(from)) => from.to_owned(),
        Ok(None) => match sim.lock().repo(&owner, &name) {
            Some((_, repo)) => repo.default_branch.clone(),
            None => return crate::admin::sim_error(SimError::NotFound("Not Found".to_owned())),
        },
        Err(m) => return crate::admin::sim_error(SimError::Invalid(m)),
    };
    match sim.create_branch(&owner, &name, &branch, &from) {
        Ok(sha) => json_response(StatusCode::CREATED, &json!({ "name": branch, "sha": sha })),
        Err(e) => crate::admin::sim_error(e),
    }
}

/// One file of an admin commit: `{"path", "content" (utf-8) | "content_base64", "mode"
/// ("100644" default, "100755", "120000"), "delete": bool}`.
fn admin_file(index: usize, value: &Value) -> Result<CommitFile, String> {
    let field = format!("files/{index}");
    let obj = value
        .as_object()
        .ok_or_else(|| not_a(&field, value, "an object"))?;
    let path = req_str(obj, "path")?.to_owned();
    if opt_bool(obj, "delete")?.unwrap_or(false) {
        return Ok(CommitFile::delete(path));
    }
    let mode = match opt_str(obj, "mode")? {
        None => FileMode::Regular,
        Some(text) => FileMode::parse(text)
            .ok_or_else(|| not_a(&format!("{field}/mode"), value, "100644, 100755 or 120000"))?,
    };
    let contents = match (opt_str(obj, "content")?, opt_str(obj, "content_base64")?) {
        (Some(text), None) => text.as_bytes().to_vec(),
        (None, Some(encoded)) => git::decode_base64(encoded)
            .ok_or_else(|| format!("{field}/content_base64 is not valid Base64"))?,
        _ => {
            return Err(format!(
                "{field} needs exactly one of content, content_base64 or delete"
            ))
        }
    };
    Ok(CommitFile {
        path,
        contents: Some(contents),
        mode,
    })
}

/// `POST /_admin/repos/{owner}/{repo}/commits` with `{"branch", "message"?, "files": [...]}`:
/// one commit, one `push` webhook. 201 `{"sha"}`.
async fn admin_commit(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let obj = match crate::admin::parse_object(&body) {
        Ok(obj) => obj,
        Err(response) => return *response,
    };
    let parsed = (|| {
        let branch = req_str(&obj, "branch")?.to_owned();
        let message = opt_str(&obj, "message")?.map(str::to_owned);
        let files = match obj.get("files") {
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(i, v)| admin_file(i, v))
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err("files must be a non-empty array".to_owned()),
        };
        Ok::<_, String>((branch, message, files))
    })();
    let (branch, message, files) = match parsed {
        Ok(parsed) => parsed,
        Err(m) => return crate::admin::sim_error(SimError::Invalid(m)),
    };
    match sim.commit_files(&owner, &name, &branch, message.as_deref(), files) {
        Ok(sha) => json_response(StatusCode::CREATED, &json!({ "sha": sha })),
        Err(e) => crate::admin::sim_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names_follow_git_rules() {
        for good in ["main", "feature/x", "plumbline/fix-1", "v1.2"] {
            assert!(valid_branch_name(good), "{good}");
        }
        for bad in ["", "-x", "a..b", "a b", "x.lock", "a/", "a//b", "a:b", "@"] {
            assert!(!valid_branch_name(bad), "{bad}");
        }
        assert_eq!(branch_of_ref("heads/a/b"), Some("a/b"));
        assert_eq!(branch_of_ref("refs/heads/a"), Some("a"));
        assert_eq!(branch_of_ref("tags/v1"), None);
    }

    #[test]
    fn accept_headers_select_media_types() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.github.v3.raw"),
        );
        assert!(accepts(&headers, "raw"));
        assert!(!accepts(&headers, "sha"));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, application/vnd.github.sha"),
        );
        assert!(accepts(&headers, "sha"));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.github.raw+json"),
        );
        assert!(accepts(&headers, "raw"));
        // The examples of GitHub's OpenAPI description.
        assert_eq!(
            object_node_id(
                "Commit",
                1296269,
                "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d"
            ),
            "MDY6Q29tbWl0MTI5NjI2OTo3ZmQxYTYwYjAxZjkxYjMxNGY1OTk1NWE0ZTRkNGU4MGQ4ZWRmMTFk"
        );
        assert_eq!(
            ref_node_id("refs/heads/featureA"),
            "MDM6UmVmcmVmcy9oZWFkcy9mZWF0dXJlQQ=="
        );
    }
}
