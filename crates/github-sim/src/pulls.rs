//! Pull requests: list, create, get and update (`/repos/{owner}/{repo}/pulls[/{pull_number}]`),
//! the `pull_request` webhooks (opened, edited, closed, reopened, synchronize), and opening a pull
//! request as a human through the admin API.
//!
//! Pull requests are between branches of the same repository (forks are not modelled). Their
//! numbers come from the repository's issue number sequence, like on GitHub. The head sha follows
//! the head branch: every push to it sends `synchronize`, and deleting it closes the pull request.
//! Merging is not modelled.

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::api::{base_of, json_response, paginate, tagged, with_link, ApiError, PageParams};
use crate::gitdata::{body_object, not_a, opt_bool, opt_str, unprocessable};
use crate::render;
use crate::state::{Actor, Org, Repo, State as SimState};
use crate::webhooks::{self, Event};
use crate::{SimError, Simulator};

const ROUTE_PULLS: &str = "/repos/{owner}/{repo}/pulls";
const ROUTE_PULL: &str = "/repos/{owner}/{repo}/pulls/{pull_number}";

const DOCS_LIST: &str = "https://docs.github.com/rest/pulls/pulls#list-pull-requests";
const DOCS_CREATE: &str = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request";
const DOCS_GET: &str = "https://docs.github.com/rest/pulls/pulls#get-a-pull-request";
const DOCS_UPDATE: &str = "https://docs.github.com/rest/pulls/pulls#update-a-pull-request";

/// A pull request as stored.
#[derive(Debug, Clone)]
pub(crate) struct Pull {
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    pub open: bool,
    /// Head branch name.
    pub head: String,
    /// Last known head sha (kept when the head branch is deleted).
    pub head_sha: String,
    /// Base branch name.
    pub base: String,
    /// Last known base sha (kept when the base branch is deleted).
    pub base_sha: String,
    pub author: Actor,
    pub draft: bool,
    pub maintainer_can_modify: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// A pull request to open with [`Simulator::open_pull_request`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewPullRequest {
    pub title: String,
    /// Head branch, as `branch` or `owner:branch`.
    pub head: String,
    /// Base branch.
    pub base: String,
    pub body: Option<String>,
    pub draft: bool,
}

/// Why a pull request operation was refused.
#[derive(Debug)]
enum PullError {
    NotFound,
    /// GitHub's "Validation Failed" with its `errors` list.
    Validation(Vec<Value>),
    /// A 422 with a plain message (request body of the wrong shape).
    Invalid(String),
}

impl PullError {
    fn field(field: &str, code: &str) -> PullError {
        PullError::Validation(vec![
            json!({ "resource": "PullRequest", "field": field, "code": code }),
        ])
    }

    fn custom(message: String) -> PullError {
        PullError::Validation(vec![
            json!({ "resource": "PullRequest", "code": "custom", "message": message }),
        ])
    }

    fn response(self, documentation_url: &'static str) -> Response {
        match self {
            PullError::NotFound => {
                ApiError::not_found("Not Found", documentation_url).into_response()
            }
            PullError::Invalid(message) => {
                unprocessable(message, documentation_url).into_response()
            }
            PullError::Validation(errors) => json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({
                    "message": "Validation Failed",
                    "errors": errors,
                    "documentation_url": documentation_url,
                    "status": "422",
                }),
            ),
        }
    }

    fn sim(self) -> SimError {
        match self {
            PullError::NotFound => SimError::NotFound("Not Found".to_owned()),
            PullError::Invalid(message) => SimError::Invalid(message),
            PullError::Validation(errors) => {
                let described: Vec<String> = errors
                    .iter()
                    .map(|e| match e["message"].as_str() {
                        Some(message) => message.to_owned(),
                        None => format!(
                            "{} {}",
                            e["field"].as_str().unwrap_or("?"),
                            e["code"].as_str().unwrap_or("invalid")
                        ),
                    })
                    .collect();
                SimError::Invalid(format!("Validation Failed: {}", described.join("; ")))
            }
        }
    }
}

/// An error answer of this family, rendered on the way out (keeps handler results small).
enum Reject {
    Api(ApiError),
    Pull(PullError, &'static str),
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        match self {
            Reject::Api(error) => error.into_response(),
            Reject::Pull(error, documentation_url) => error.response(documentation_url),
        }
    }
}

impl From<ApiError> for Reject {
    fn from(error: ApiError) -> Reject {
        Reject::Api(error)
    }
}

pub(crate) fn routes(sim: &Simulator) -> Router<Simulator> {
    Router::new()
        .route(
            ROUTE_PULLS,
            tagged(sim, ROUTE_PULLS, get(list_pulls).post(create_pull)),
        )
        .route(
            ROUTE_PULL,
            tagged(sim, ROUTE_PULL, get(get_pull).patch(update_pull)),
        )
}

/// Admin routes (merged under `/_admin`): open a pull request as a human.
pub(crate) fn admin_routes() -> Router<Simulator> {
    Router::new().route("/repos/{owner}/{repo}/pulls", post(admin_open_pull))
}

/// A global id for a pull request (GitHub's ids are unique across repositories).
fn pull_id(repo_id: u64, number: u64) -> u64 {
    repo_id * 1_000_000 + number
}

/// Commits, line counts and mergeability of a pull request, as the single-pull shape reports.
struct Stats {
    commits: usize,
    additions: u64,
    deletions: u64,
    changed_files: usize,
    conflicts: bool,
}

fn stats(repo: &Repo, head: &str, base: &str) -> Stats {
    let git = &repo.git;
    let merge_base = git.merge_base(head, base);
    let tree_of = |sha: &str| git.commit(sha).map(|c| c.tree.clone());
    let base_tree = merge_base.as_deref().and_then(tree_of);
    let head_tree = tree_of(head).unwrap_or_default();
    let changes = git.diff(base_tree.as_deref(), &head_tree);
    // Counted like the files endpoint lists them (renames paired, binary files without lines).
    let entries = crate::diffs::entries(repo, base_tree.as_deref(), &head_tree);
    let (additions, deletions) = entries
        .iter()
        .map(|e| crate::diffs::line_counts(repo, e))
        .fold((0, 0), |(a, d), (x, y)| (a + x, d + y));
    // A conflict: a path both sides changed since the merge base, to different results.
    let theirs = tree_of(base)
        .map(|t| git.diff(base_tree.as_deref(), &t))
        .unwrap_or_default();
    let conflicts = changes.iter().any(|ours| {
        theirs
            .iter()
            .any(|t| t.path == ours.path && t.new != ours.new)
    });
    Stats {
        commits: git.new_commits(head, &[base], usize::MAX).len(),
        additions,
        deletions,
        changed_files: entries.len(),
        conflicts,
    }
}

/// The current head and base shas: the branches' heads, or the last known ones if deleted.
pub(crate) fn shas(repo: &Repo, pull: &Pull) -> (String, String) {
    let head = repo
        .branches
        .get(&pull.head)
        .map_or_else(|| pull.head_sha.clone(), |b| b.sha.clone());
    let base = repo
        .branches
        .get(&pull.base)
        .map_or_else(|| pull.base_sha.clone(), |b| b.sha.clone());
    (head, base)
}

/// A pull request in GitHub's shape: the list shape ("pull request simple"), or with `full`
/// the single-pull shape that webhooks carry too (merge state and counters).
pub(crate) fn pull_json(base: &str, org: &Org, repo: &Repo, pull: &Pull, full: bool) -> Value {
    let api = format!("{base}/repos/{}/{}", org.login, repo.name);
    let html = format!("{base}/{}/{}", org.login, repo.name);
    let n = pull.number;
    let id = pull_id(repo.id, n);
    let (head_sha, base_sha) = shas(repo, pull);
    let repo_value = render::repo_json(base, org, repo);
    let owner_value = render::owner_json(base, org);
    let side = |branch: &str, sha: &str| {
        json!({
            "label": format!("{}:{branch}", org.login),
            "ref": branch,
            "sha": sha,
            "user": owner_value,
            "repo": repo_value,
        })
    };
    let href = |url: String| json!({ "href": url });
    let time = |t: &Option<DateTime<Utc>>| t.as_ref().map(render::time);
    let mut m = Map::new();
    m.insert("url".into(), json!(format!("{api}/pulls/{n}")));
    m.insert("id".into(), json!(id));
    m.insert("node_id".into(), json!(render::node_id("PullRequest", id)));
    m.insert("html_url".into(), json!(format!("{html}/pull/{n}")));
    m.insert("diff_url".into(), json!(format!("{html}/pull/{n}.diff")));
    m.insert("patch_url".into(), json!(format!("{html}/pull/{n}.patch")));
    m.insert("issue_url".into(), json!(format!("{api}/issues/{n}")));
    m.insert(
        "commits_url".into(),
        json!(format!("{api}/pulls/{n}/commits")),
    );
    m.insert(
        "review_comments_url".into(),
        json!(format!("{api}/pulls/{n}/comments")),
    );
    m.insert(
        "review_comment_url".into(),
        json!(format!("{api}/pulls/comments{{/number}}")),
    );
    m.insert(
        "comments_url".into(),
        json!(format!("{api}/issues/{n}/comments")),
    );
    m.insert(
        "statuses_url".into(),
        json!(format!("{api}/statuses/{head_sha}")),
    );
    m.insert("number".into(), json!(n));
    m.insert(
        "state".into(),
        json!(if pull.open { "open" } else { "closed" }),
    );
    m.insert("locked".into(), json!(false));
    m.insert("title".into(), json!(pull.title));
    m.insert("user".into(), render::sender_json(base, pull.author));
    m.insert("body".into(), json!(pull.body));
    m.insert("labels".into(), json!([]));
    m.insert("milestone".into(), Value::Null);
    m.insert("active_lock_reason".into(), Value::Null);
    m.insert("created_at".into(), json!(render::time(&pull.created_at)));
    m.insert("updated_at".into(), json!(render::time(&pull.updated_at)));
    m.insert("closed_at".into(), json!(time(&pull.closed_at)));
    m.insert("merged_at".into(), Value::Null);
    m.insert("merge_commit_sha".into(), Value::Null);
    m.insert("assignee".into(), Value::Null);
    m.insert("assignees".into(), json!([]));
    m.insert("requested_reviewers".into(), json!([]));
    m.insert("requested_teams".into(), json!([]));
    m.insert("head".into(), side(&pull.head, &head_sha));
    m.insert("base".into(), side(&pull.base, &base_sha));
    m.insert(
        "_links".into(),
        json!({
            "self": href(format!("{api}/pulls/{n}")),
            "html": href(format!("{html}/pull/{n}")),
            "issue": href(format!("{api}/issues/{n}")),
            "comments": href(format!("{api}/issues/{n}/comments")),
            "review_comments": href(format!("{api}/pulls/{n}/comments")),
            "review_comment": href(format!("{api}/pulls/comments{{/number}}")),
            "commits": href(format!("{api}/pulls/{n}/commits")),
            "statuses": href(format!("{api}/statuses/{head_sha}")),
        }),
    );
    let association = match pull.author {
        Actor::Admin => "MEMBER",
        Actor::Api => "NONE",
    };
    m.insert("author_association".into(), json!(association));
    m.insert("auto_merge".into(), Value::Null);
    m.insert("draft".into(), json!(pull.draft));
    if full {
        let s = stats(repo, &head_sha, &base_sha);
        let needs_review = repo
            .branches
            .get(&pull.base)
            .and_then(|b| b.protection.as_ref())
            .and_then(|p| p.settings.required_pull_request_reviews.as_ref())
            .is_some_and(|r| {
                !crate::reviews::approved(repo, pull.number, r.required_approving_review_count)
            });
        let state = if s.conflicts {
            "dirty"
        } else if pull.draft {
            "draft"
        } else if needs_review {
            "blocked"
        } else {
            "clean"
        };
        m.insert("merged".into(), json!(false));
        m.insert("mergeable".into(), json!(!s.conflicts));
        m.insert("rebaseable".into(), json!(!s.conflicts));
        m.insert("mergeable_state".into(), json!(state));
        m.insert("merged_by".into(), Value::Null);
        m.insert("comments".into(), json!(0));
        m.insert(
            "review_comments".into(),
            json!(crate::reviews::comment_count(repo, pull.number)),
        );
        m.insert(
            "maintainer_can_modify".into(),
            json!(pull.maintainer_can_modify),
        );
        m.insert("commits".into(), json!(s.commits));
        m.insert("additions".into(), json!(s.additions));
        m.insert("deletions".into(), json!(s.deletions));
        m.insert("changed_files".into(), json!(s.changed_files));
    }
    Value::Object(m)
}

impl SimState {
    /// A `pull_request` event for one pull request, with action-specific `extra` fields
    /// (`before`/`after` for synchronize, `changes` for edited).
    fn pull_event(
        &self,
        repo_id: u64,
        number: u64,
        action: &str,
        extra: Map<String, Value>,
        actor: Actor,
    ) -> Option<Event> {
        let repo = self.repos.get(&repo_id)?;
        let org = self.orgs.get(&repo.owner_key)?;
        let pull = repo.pulls.get(&number)?;
        let base = self.base_url(None);
        let mut payload = webhooks::base_payload(&base, org, repo, action, actor);
        payload.insert("number".into(), json!(number));
        payload.insert(
            "pull_request".into(),
            pull_json(&base, org, repo, pull, true),
        );
        payload.extend(extra);
        Some(Event {
            name: "pull_request",
            payload: Value::Object(payload),
        })
    }

    /// After a push to `branch`: open pull requests from it follow the new head and send
    /// `synchronize`.
    pub(crate) fn pulls_after_push(
        &mut self,
        repo_id: u64,
        branch: &str,
        before: &str,
        after: &str,
        actor: Actor,
    ) -> Vec<Event> {
        let Some(repo) = self.repos.get_mut(&repo_id) else {
            return Vec::new();
        };
        let now = Utc::now();
        let mut moved = Vec::new();
        for pull in repo.pulls.values_mut() {
            if pull.open && pull.head == branch {
                pull.head_sha = after.to_owned();
                pull.updated_at = now;
                moved.push(pull.number);
            }
            if pull.open && pull.base == branch {
                pull.base_sha = after.to_owned();
            }
        }
        moved
            .into_iter()
            .filter_map(|number| {
                let extra = Map::from_iter([
                    ("before".to_owned(), json!(before)),
                    ("after".to_owned(), json!(after)),
                ]);
                self.pull_event(repo_id, number, "synchronize", extra, actor)
            })
            .collect()
    }

    /// After `branch` was deleted: open pull requests from or into it are closed, as GitHub
    /// closes them.
    pub(crate) fn pulls_after_branch_deleted(
        &mut self,
        repo_id: u64,
        branch: &str,
        actor: Actor,
    ) -> Vec<Event> {
        let Some(repo) = self.repos.get_mut(&repo_id) else {
            return Vec::new();
        };
        let now = Utc::now();
        let mut closed = Vec::new();
        for pull in repo.pulls.values_mut() {
            if pull.open && (pull.head == branch || pull.base == branch) {
                pull.open = false;
                pull.closed_at = Some(now);
                pull.updated_at = now;
                closed.push(pull.number);
            }
        }
        closed
            .into_iter()
            .filter_map(|n| self.pull_event(repo_id, n, "closed", Map::new(), actor))
            .collect()
    }

    /// Opens a pull request; returns its number and the `opened` event.
    fn create_pull(
        &mut self,
        owner: &str,
        name: &str,
        request: NewPullRequest,
        maintainer_can_modify: bool,
        actor: Actor,
    ) -> Result<(u64, Vec<Event>), PullError> {
        let id = self.repo_id(owner, name).map_err(|_| PullError::NotFound)?;
        let org_login = self
            .repo(owner, name)
            .map(|(org, _)| org.login.clone())
            .ok_or(PullError::NotFound)?;
        let repo = self.repos.get_mut(&id).ok_or(PullError::NotFound)?;
        let head = match request.head.split_once(':') {
            Some((head_owner, branch)) if head_owner.eq_ignore_ascii_case(&org_login) => branch,
            Some(_) => return Err(PullError::field("head", "invalid")),
            None => request.head.as_str(),
        };
        let head_sha = repo
            .branches
            .get(head)
            .map(|b| b.sha.clone())
            .ok_or_else(|| PullError::field("head", "invalid"))?;
        let base_sha = repo
            .branches
            .get(&request.base)
            .map(|b| b.sha.clone())
            .ok_or_else(|| PullError::field("base", "invalid"))?;
        if request.title.trim().is_empty() {
            return Err(PullError::field("title", "missing_field"));
        }
        if repo
            .pulls
            .values()
            .any(|p| p.open && p.head == head && p.base == request.base)
        {
            return Err(PullError::custom(format!(
                "A pull request already exists for {org_login}:{head}."
            )));
        }
        if repo.git.is_ancestor(&head_sha, &base_sha) {
            return Err(PullError::custom(format!(
                "No commits between {} and {head}",
                request.base
            )));
        }
        let number = repo.next_issue_number;
        repo.next_issue_number += 1;
        let now = Utc::now();
        repo.pulls.insert(
            number,
            Pull {
                number,
                title: request.title,
                body: request.body,
                open: true,
                head: head.to_owned(),
                head_sha,
                base: request.base,
                base_sha,
                author: actor,
                draft: request.draft,
                maintainer_can_modify,
                created_at: now,
                updated_at: now,
                closed_at: None,
            },
        );
        repo.updated_at = now;
        let events = self
            .pull_event(id, number, "opened", Map::new(), actor)
            .into_iter()
            .collect();
        Ok((number, events))
    }
}

/// The changes a PATCH asks for; None = not mentioned.
#[derive(Debug, Default)]
struct PullPatch {
    title: Option<String>,
    body: Option<Option<String>>,
    open: Option<bool>,
    base: Option<String>,
    maintainer_can_modify: Option<bool>,
}

fn parse_patch(obj: &Map<String, Value>) -> Result<PullPatch, String> {
    let open = match obj.get("state") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "open" => Some(true),
        Some(Value::String(s)) if s == "closed" => Some(false),
        Some(other) => return Err(not_a("state", other, "one of open, closed")),
    };
    let body = match obj.get("body") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(other) => return Err(not_a("body", other, "a string")),
    };
    Ok(PullPatch {
        title: opt_str(obj, "title")?.map(str::to_owned),
        body,
        open,
        base: opt_str(obj, "base")?.map(str::to_owned),
        maintainer_can_modify: opt_bool(obj, "maintainer_can_modify")?,
    })
}

impl SimState {
    /// Applies a PATCH; returns the events (`edited` for title/body/base, then `closed` or
    /// `reopened`).
    fn update_pull(
        &mut self,
        owner: &str,
        name: &str,
        number: u64,
        patch: PullPatch,
        actor: Actor,
    ) -> Result<Vec<Event>, PullError> {
        let id = self.repo_id(owner, name).map_err(|_| PullError::NotFound)?;
        let org_login = self
            .repo(owner, name)
            .map(|(org, _)| org.login.clone())
            .ok_or(PullError::NotFound)?;
        let repo = self.repos.get_mut(&id).ok_or(PullError::NotFound)?;
        let pull = repo.pulls.get(&number).ok_or(PullError::NotFound)?;
        let mut changes = Map::new();
        let base_change = match &patch.base {
            Some(base) if *base != pull.base => {
                let base_sha = repo
                    .branches
                    .get(base)
                    .map(|b| b.sha.clone())
                    .ok_or_else(|| PullError::field("base", "invalid"))?;
                let (head_sha, _) = shas(repo, pull);
                if repo.git.is_ancestor(&head_sha, &base_sha) {
                    return Err(PullError::custom(format!(
                        "There are no new commits between base branch '{base}' and head branch '{}'",
                        pull.head
                    )));
                }
                Some((base.clone(), base_sha))
            }
            _ => None,
        };
        let reopen = patch.open == Some(true) && !pull.open;
        let close = patch.open == Some(false) && pull.open;
        if reopen {
            if !repo.branches.contains_key(&pull.head) {
                return Err(PullError::custom(format!(
                    "state cannot be changed. The {} branch has been deleted.",
                    pull.head
                )));
            }
            let target = base_change.as_ref().map_or(&pull.base, |(b, _)| b);
            let duplicate = repo
                .pulls
                .values()
                .any(|p| p.open && p.number != number && p.head == pull.head && p.base == *target);
            if duplicate {
                return Err(PullError::custom(format!(
                    "A pull request already exists for {org_login}:{}.",
                    pull.head
                )));
            }
        }
        let now = Utc::now();
        let Some(pull) = repo.pulls.get_mut(&number) else {
            return Err(PullError::NotFound);
        };
        if let Some(title) = patch.title.filter(|t| *t != pull.title) {
            changes.insert("title".into(), json!({ "from": pull.title }));
            pull.title = title;
        }
        if let Some(body) = patch.body.filter(|b| *b != pull.body) {
            changes.insert("body".into(), json!({ "from": pull.body }));
            pull.body = body;
        }
        if let Some((base, base_sha)) = base_change {
            changes.insert(
                "base".into(),
                json!({ "ref": { "from": pull.base }, "sha": { "from": pull.base_sha } }),
            );
            pull.base = base;
            pull.base_sha = base_sha;
        }
        if let Some(flag) = patch.maintainer_can_modify {
            pull.maintainer_can_modify = flag;
        }
        if close {
            pull.open = false;
            pull.closed_at = Some(now);
        }
        if reopen {
            pull.open = true;
            pull.closed_at = None;
        }
        let changed = !changes.is_empty() || close || reopen;
        if changed {
            pull.updated_at = now;
        }
        let mut events = Vec::new();
        if !changes.is_empty() {
            let extra = Map::from_iter([("changes".to_owned(), Value::Object(changes))]);
            events.extend(self.pull_event(id, number, "edited", extra, actor));
        }
        if close {
            events.extend(self.pull_event(id, number, "closed", Map::new(), actor));
        }
        if reopen {
            events.extend(self.pull_event(id, number, "reopened", Map::new(), actor));
        }
        Ok(events)
    }
}

fn lookup<'a>(
    st: &'a SimState,
    owner: &str,
    name: &str,
    documentation_url: &'static str,
) -> Result<(&'a Org, &'a Repo), Reject> {
    st.repo(owner, name)
        .ok_or(Reject::Pull(PullError::NotFound, documentation_url))
}

/// A query parameter that must be one of `allowed` (GitHub validates these enums).
fn enum_param<'a>(
    query: &'a HashMap<String, String>,
    key: &str,
    allowed: &[&str],
) -> Result<Option<&'a str>, Reject> {
    match query.get(key).map(String::as_str) {
        None => Ok(None),
        Some(value) if allowed.contains(&value) => Ok(Some(value)),
        Some(value) => Err(Reject::Pull(
            PullError::Validation(vec![json!({
                "resource": "Search",
                "field": key,
                "code": "invalid",
                "message": format!(
                    "{value:?} is not a valid value for {key}: one of {}",
                    allowed.join(", ")
                ),
            })]),
            DOCS_LIST,
        )),
    }
}

async fn list_pulls(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, Reject> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, repo) = lookup(&st, &owner, &name, DOCS_LIST)?;
    let state = enum_param(&query, "state", &["open", "closed", "all"])?.unwrap_or("open");
    let sort = enum_param(
        &query,
        "sort",
        &["created", "updated", "popularity", "long-running"],
    )?
    .unwrap_or("created");
    let direction = enum_param(&query, "direction", &["asc", "desc"])?;
    let mut pulls: Vec<&Pull> = repo
        .pulls
        .values()
        .filter(|p| match state {
            "open" => p.open,
            "closed" => !p.open,
            _ => true,
        })
        .filter(|p| query.get("base").is_none_or(|b| *b == p.base))
        .filter(|p| match query.get("head").map(String::as_str) {
            // GitHub filters by `user:ref`; a bare owner keeps all of that owner's heads.
            Some(head) => match head.split_once(':') {
                Some((who, branch)) => who.eq_ignore_ascii_case(&org.login) && branch == p.head,
                None => head.eq_ignore_ascii_case(&org.login),
            },
            None => true,
        })
        .collect();
    match sort {
        "updated" => pulls.sort_by_key(|p| (p.updated_at, p.number)),
        _ => pulls.sort_by_key(|p| p.number),
    }
    // Newest first unless asked otherwise; for other sorts GitHub defaults to ascending only
    // for `long-running`, which is approximated by creation order.
    let descending = match direction {
        Some(d) => d == "desc",
        None => sort != "long-running",
    };
    if descending {
        pulls.reverse();
    }
    let params = PageParams::from_query(&query);
    let url = format!("{base}/repos/{}/{}/pulls", org.login, repo.name);
    let (page, link) = paginate(&pulls, params, &url, &query);
    let body = Value::Array(
        page.iter()
            .map(|p| pull_json(&base, org, repo, p, false))
            .collect(),
    );
    Ok(with_link(json_response(StatusCode::OK, &body), link))
}

/// The fields of a create request.
fn parse_create(obj: &Map<String, Value>) -> Result<(NewPullRequest, Option<bool>), PullError> {
    let invalid = PullError::Invalid;
    let required = |field: &str| match obj.get(field) {
        None | Some(Value::Null) => Err(PullError::field(field, "missing_field")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(invalid(not_a(field, other, "a string"))),
    };
    let head = required("head")?;
    let base = required("base")?;
    let title = opt_str(obj, "title")
        .map_err(invalid)?
        .unwrap_or_default()
        .to_owned();
    let body = opt_str(obj, "body").map_err(invalid)?.map(str::to_owned);
    let draft = opt_bool(obj, "draft").map_err(invalid)?.unwrap_or(false);
    let maintainer_can_modify = opt_bool(obj, "maintainer_can_modify").map_err(invalid)?;
    if obj.get("issue").is_some_and(|v| !v.is_null()) && title.is_empty() {
        return Err(invalid(
            "Converting an issue into a pull request is not supported by the simulator".to_owned(),
        ));
    }
    Ok((
        NewPullRequest {
            title,
            head,
            base,
            body,
            draft,
        },
        maintainer_can_modify,
    ))
}

async fn create_pull(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Reject> {
    let mut st = sim.lock();
    let base = base_of(&st, &headers);
    lookup(&st, &owner, &name, DOCS_CREATE)?;
    let obj = body_object(&body, DOCS_CREATE)?;
    let (request, maintainer_can_modify) =
        parse_create(&obj).map_err(|e| Reject::Pull(e, DOCS_CREATE))?;
    let (number, events) = st
        .create_pull(
            &owner,
            &name,
            request,
            maintainer_can_modify.unwrap_or(true),
            Actor::Api,
        )
        .map_err(|e| Reject::Pull(e, DOCS_CREATE))?;
    sim.emit(&st, events);
    let (org, repo) = lookup(&st, &owner, &name, DOCS_CREATE)?;
    let pull = repo
        .pulls
        .get(&number)
        .ok_or(Reject::Pull(PullError::NotFound, DOCS_CREATE))?;
    let value = pull_json(&base, org, repo, pull, true);
    let mut response = json_response(StatusCode::CREATED, &value);
    if let Some(url) = value["url"].as_str() {
        crate::api::set_header(response.headers_mut(), "location", url.to_owned());
    }
    Ok(response)
}

/// The pull request number of the path; anything else is GitHub's 404.
fn number(raw: &str, documentation_url: &'static str) -> Result<u64, Reject> {
    raw.parse::<u64>()
        .map_err(|_| Reject::Pull(PullError::NotFound, documentation_url))
}

async fn get_pull(
    State(sim): State<Simulator>,
    Path((owner, name, raw)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, Reject> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, repo) = lookup(&st, &owner, &name, DOCS_GET)?;
    let number = number(&raw, DOCS_GET)?;
    let pull = repo
        .pulls
        .get(&number)
        .ok_or(Reject::Pull(PullError::NotFound, DOCS_GET))?;
    Ok(json_response(
        StatusCode::OK,
        &pull_json(&base, org, repo, pull, true),
    ))
}

async fn update_pull(
    State(sim): State<Simulator>,
    Path((owner, name, raw)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Reject> {
    let mut st = sim.lock();
    let base = base_of(&st, &headers);
    let (_, repo) = lookup(&st, &owner, &name, DOCS_UPDATE)?;
    let number = number(&raw, DOCS_UPDATE)?;
    if !repo.pulls.contains_key(&number) {
        return Err(Reject::Pull(PullError::NotFound, DOCS_UPDATE));
    }
    let obj = body_object(&body, DOCS_UPDATE)?;
    let patch = parse_patch(&obj).map_err(|m| Reject::Pull(PullError::Invalid(m), DOCS_UPDATE))?;
    let events = st
        .update_pull(&owner, &name, number, patch, Actor::Api)
        .map_err(|e| Reject::Pull(e, DOCS_UPDATE))?;
    sim.emit(&st, events);
    let (org, repo) = lookup(&st, &owner, &name, DOCS_UPDATE)?;
    let pull = repo
        .pulls
        .get(&number)
        .ok_or(Reject::Pull(PullError::NotFound, DOCS_UPDATE))?;
    Ok(json_response(
        StatusCode::OK,
        &pull_json(&base, org, repo, pull, true),
    ))
}

impl Simulator {
    /// Opens a pull request as a human in the UI (author and webhook sender `sim-admin`).
    /// Validates like GitHub (branches exist, a title, no open pull request for the same head and
    /// base, commits between them). Sends `pull_request` "opened". Returns the number.
    pub fn open_pull_request(
        &self,
        owner: &str,
        repo: &str,
        request: NewPullRequest,
    ) -> Result<u64, SimError> {
        let mut st = self.lock();
        let (number, events) = st
            .create_pull(owner, repo, request, true, Actor::Admin)
            .map_err(PullError::sim)?;
        self.emit(&st, events);
        Ok(number)
    }

    /// A pull request in the shape of `GET /repos/{owner}/{repo}/pulls/{number}`; None if the
    /// repository or pull request does not exist.
    pub fn pull_request(&self, owner: &str, repo: &str, number: u64) -> Option<Value> {
        let st = self.lock();
        let base = st.base_url(None);
        let (org, repo) = st.repo(owner, repo)?;
        let pull = repo.pulls.get(&number)?;
        Some(pull_json(&base, org, repo, pull, true))
    }

    /// The numbers of a repository's pull requests by state ("open" or "closed"), ascending.
    pub fn pull_requests(&self, owner: &str, repo: &str) -> BTreeMap<u64, &'static str> {
        let st = self.lock();
        st.repo(owner, repo)
            .map(|(_, repo)| {
                repo.pulls
                    .values()
                    .map(|p| (p.number, if p.open { "open" } else { "closed" }))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `POST /_admin/repos/{owner}/{repo}/pulls` with `{"title", "head", "base", "body"?,
/// "draft"?}`: 201 with the pull request in GitHub's shape.
async fn admin_open_pull(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let obj = match crate::admin::parse_object(&body) {
        Ok(obj) => obj,
        Err(response) => return *response,
    };
    let request = match parse_create(&obj) {
        Ok((request, _)) => request,
        Err(e) => return crate::admin::sim_error(e.sim()),
    };
    let number = match sim.open_pull_request(&owner, &name, request) {
        Ok(number) => number,
        Err(e) => return crate::admin::sim_error(e),
    };
    let st = sim.lock();
    let base = base_of(&st, &headers);
    match st
        .repo(&owner, &name)
        .and_then(|(org, repo)| Some((org, repo, repo.pulls.get(&number)?)))
    {
        Some((org, repo, pull)) => json_response(
            StatusCode::CREATED,
            &pull_json(&base, org, repo, pull, true),
        ),
        None => crate::admin::sim_error(SimError::NotFound("Not Found".to_owned())),
    }
}
