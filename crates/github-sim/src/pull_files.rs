//! The files a pull request changes (`GET /repos/{owner}/{repo}/pulls/{pull_number}/files`) and
//! the comparison of two commits (`GET /repos/{owner}/{repo}/compare/{basehead}`), both with
//! GitHub's `diff-entry` items (see [`crate::diffs`] for the patch text).
//!
//! Both diff the merge base of the two sides against the head, like GitHub's three-dot diffs.
//! The files of a pull request are capped at [`MAX_PULL_FILES`] over all pages; a comparison
//! lists at most [`MAX_COMPARE_FILES`] files and, without paging parameters, the newest 250
//! commits. Only refs and shas of the same repository can be compared (`base...head`, each side
//! a branch, `owner:branch` of the same owner, or a full or abbreviated sha).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::api::{
    base_of, find_repo, json_response, paginate, with_link, ApiError, PageParams, Tag,
};
use crate::content::resolve_commit;
use crate::diffs::{self, Entry, MAX_COMPARE_FILES, MAX_PULL_FILES};
use crate::gitdata::commit_json;
use crate::pulls::{self, Pull};
use crate::state::{Org, Repo};
use crate::Simulator;

const ROUTE_FILES: &str = "/repos/{owner}/{repo}/pulls/{pull_number}/files";
const ROUTE_COMPARE: &str = "/repos/{owner}/{repo}/compare/{basehead}";

const DOCS_FILES: &str = "https://docs.github.com/rest/pulls/pulls#list-pull-requests-files";
const DOCS_COMPARE: &str = "https://docs.github.com/rest/commits/commits#compare-two-commits";

/// Most commits a comparison lists when no paging parameter is given (the newest ones).
const MAX_COMPARE_COMMITS: usize = 250;

pub(crate) fn register(router: Router<Simulator>, tag: Tag<'_>) -> Router<Simulator> {
    router
        .route(ROUTE_FILES, tag(ROUTE_FILES, get(list_files)))
        // Branch names may contain slashes, so `base...head` spans the rest of the path.
        .route(
            "/repos/{owner}/{repo}/compare/{*basehead}",
            tag(ROUTE_COMPARE, get(compare)),
        )
}

/// The repository's API and web URLs.
pub(crate) fn repo_urls(base: &str, org: &Org, repo: &Repo) -> (String, String) {
    (
        format!("{base}/repos/{}/{}", org.login, repo.name),
        format!("{base}/{}/{}", org.login, repo.name),
    )
}

/// The pull request of a path's `pull_number`, or GitHub's 404.
pub(crate) fn find_pull<'a>(
    repo: &'a Repo,
    raw: &str,
    documentation_url: &'static str,
) -> Result<&'a Pull, ApiError> {
    raw.parse::<u64>()
        .ok()
        .and_then(|n| repo.pulls.get(&n))
        .ok_or_else(|| ApiError::not_found("Not Found", documentation_url))
}

/// The merge base of `head` and `base` and the changed paths from it to `head` (everything in
/// `head` when they share no history).
pub(crate) fn three_dot(repo: &Repo, head: &str, base: &str) -> (Option<String>, Vec<Entry>) {
    let git = &repo.git;
    let merge_base = git.merge_base(head, base);
    let tree_of = |sha: &str| git.commit(sha).map(|c| c.tree.clone());
    let old_tree = merge_base.as_deref().and_then(tree_of);
    let Some(new_tree) = tree_of(head) else {
        return (merge_base, Vec::new());
    };
    let entries = diffs::entries(repo, old_tree.as_deref(), &new_tree);
    (merge_base, entries)
}

/// The changed files of a pull request at its current head, in diff order.
pub(crate) fn pull_entries(repo: &Repo, pull: &Pull) -> (String, String, Vec<Entry>) {
    let (head, base) = pulls::shas(repo, pull);
    let (merge_base, entries) = three_dot(repo, &head, &base);
    (head, merge_base.unwrap_or(base), entries)
}

/// The diff-entry items of `entries` (patches rendered here).
fn entries_json(
    base: &str,
    org: &Org,
    repo: &Repo,
    entries: &[Entry],
    head: &str,
    old: &str,
) -> Vec<Value> {
    let (api, html) = repo_urls(base, org, repo);
    entries
        .iter()
        .map(|entry| {
            let file = diffs::file_diff(repo, entry);
            diffs::entry_json(&api, &html, &file, head, old)
        })
        .collect()
}

/// The diff-entry items of a pull request's files, as `GET .../pulls/{n}/files` lists them
/// (all pages, at most [`MAX_PULL_FILES`]).
pub(crate) fn pull_files_json(base: &str, org: &Org, repo: &Repo, pull: &Pull) -> Vec<Value> {
    let (head, old, mut entries) = pull_entries(repo, pull);
    entries.truncate(MAX_PULL_FILES);
    entries_json(base, org, repo, &entries, &head, &old)
}

async fn list_files(
    State(sim): State<Simulator>,
    Path((owner, name, raw)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_FILES)?;
    let pull = find_pull(repo, &raw, DOCS_FILES)?;
    let (head, old, mut entries) = pull_entries(repo, pull);
    entries.truncate(MAX_PULL_FILES);
    let params = PageParams::from_query(&query);
    let (api, _) = repo_urls(&base, org, repo);
    let url = format!("{api}/pulls/{}/files", pull.number);
    // Only the requested page is diffed.
    let (page, link) = paginate(&entries, params, &url, &query);
    let body = entries_json(&base, org, repo, &page, &head, &old);
    Ok(with_link(
        json_response(StatusCode::OK, &Value::Array(body)),
        link,
    ))
}

/// One side of `base...head`: a branch (also `owner:branch` of this repository's owner) or a
/// commit sha.
fn resolve_side(org: &Org, repo: &Repo, side: &str) -> Option<String> {
    let side = match side.split_once(':') {
        Some((owner, rest)) if owner.eq_ignore_ascii_case(&org.login) => rest,
        Some(_) => return None,
        None => side,
    };
    resolve_commit(repo, side)
}

async fn compare(
    State(sim): State<Simulator>,
    Path((owner, name, basehead)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_COMPARE)?;
    let not_found = || ApiError::not_found("Not Found", DOCS_COMPARE);
    let (base_ref, head_ref) = basehead.split_once("...").ok_or_else(not_found)?;
    let base_sha = resolve_side(org, repo, base_ref).ok_or_else(not_found)?;
    let head_sha = resolve_side(org, repo, head_ref).ok_or_else(not_found)?;
    let git = &repo.git;
    let merge_base = git.merge_base(&head_sha, &base_sha).ok_or_else(|| {
        ApiError::not_found(
            format!("No common ancestor between {base_ref} and {head_ref}."),
            DOCS_COMPARE,
        )
    })?;
    let ahead = git.new_commits(&head_sha, &[&base_sha], usize::MAX);
    let behind_by = git.new_commits(&base_sha, &[&head_sha], usize::MAX).len();
    let status = match (ahead.len(), behind_by) {
        (0, 0) => "identical",
        (_, 0) => "ahead",
        (0, _) => "behind",
        _ => "diverged",
    };
    let (api, html) = repo_urls(&base, org, repo);
    let url = format!("{api}/compare/{basehead}");
    let paged = query.contains_key("page") || query.contains_key("per_page");
    let (commits, link, first_page) = if paged {
        let params = PageParams::from_query(&query);
        let (page, link) = paginate(&ahead, params, &url, &query);
        (page, link, params.page == 1)
    } else {
        let skip = ahead.len().saturating_sub(MAX_COMPARE_COMMITS);
        (ahead[skip..].to_vec(), None, true)
    };
    let files = if first_page {
        let (_, mut entries) = three_dot(repo, &head_sha, &base_sha);
        entries.truncate(MAX_COMPARE_FILES);
        entries_json(&base, org, repo, &entries, &head_sha, &merge_base)
    } else {
        Vec::new()
    };
    let body = json!({
        "url": url,
        "html_url": format!("{html}/compare/{basehead}"),
        "permalink_url": format!(
            "{html}/compare/{}:{base_sha}...{}:{head_sha}",
            org.login, org.login
        ),
        "diff_url": format!("{html}/compare/{basehead}.diff"),
        "patch_url": format!("{html}/compare/{basehead}.patch"),
        "base_commit": commit_json(&base, org, repo, &base_sha, false),
        "merge_base_commit": commit_json(&base, org, repo, &merge_base, false),
        "status": status,
        "ahead_by": ahead.len(),
        "behind_by": behind_by,
        "total_commits": ahead.len(),
        "commits": commits
            .iter()
            .map(|sha| commit_json(&base, org, repo, sha, false))
            .collect::<Vec<_>>(),
        "files": files,
    });
    Ok(with_link(json_response(StatusCode::OK, &body), link))
}

impl Simulator {
    /// The files of a pull request in the shape of `GET .../pulls/{number}/files`, all pages
    /// (at most [`MAX_PULL_FILES`]); empty if the repository or pull request does not exist.
    pub fn pull_request_files(&self, owner: &str, repo: &str, number: u64) -> Vec<Value> {
        let st = self.lock();
        let base = st.base_url(None);
        let Some((org, found)) = st.repo(owner, repo) else {
            return Vec::new();
        };
        let Some(pull) = found.pulls.get(&number) else {
            return Vec::new();
        };
        pull_files_json(&base, org, found, pull)
    }
}
