//! Commit statuses: create one (`POST /repos/{owner}/{repo}/statuses/{sha}`), list those of a
//! ref newest first (`GET /repos/{owner}/{repo}/commits/{ref}/statuses`), the combined status of
//! a ref (`GET /repos/{owner}/{repo}/commits/{ref}/status`), and the `status` webhook.
//!
//! The two GET routes share their path prefix with `GET /repos/{owner}/{repo}/commits/{ref}`,
//! whose ref may contain slashes (a catch-all route). [`commit_routes`] registers the three as
//! one route that picks the endpoint by the last path segment (`.../status`, `.../statuses`)
//! and runs it in its own GitHub middleware, so each is logged under its own route template.
//!
//! Like GitHub, a status is attached to a commit sha (full or abbreviated; not a branch name),
//! contexts compare case-insensitively in the combined status, and one sha takes at most
//! [`MAX_STATUSES_PER_CONTEXT`] statuses per context.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{any, get, post, MethodRouter};
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::api::{
    base_of, find_repo, json_response, paginate, set_header, tagged, with_link, ApiError,
    PageParams, Tag,
};
use crate::content::resolve_commit;
use crate::gitdata::{body_object, commit_json, missing, not_a, unprocessable};
use crate::objects::Person;
use crate::pull_files::repo_urls;
use crate::render::{self, node_id};
use crate::state::{Actor, Org, Repo, State as SimState};
use crate::webhooks::Event;
use crate::{git, Simulator};

const ROUTE_CREATE: &str = "/repos/{owner}/{repo}/statuses/{sha}";
const ROUTE_LIST: &str = "/repos/{owner}/{repo}/commits/{ref}/statuses";
const ROUTE_COMBINED: &str = "/repos/{owner}/{repo}/commits/{ref}/status";

const DOCS_CREATE: &str = "https://docs.github.com/rest/commits/statuses#create-a-commit-status";
const DOCS_LIST: &str =
    "https://docs.github.com/rest/commits/statuses#list-commit-statuses-for-a-reference";
const DOCS_COMBINED: &str =
    "https://docs.github.com/rest/commits/statuses#get-the-combined-status-for-a-specific-reference";

/// GitHub's limit of statuses for one sha and context.
pub const MAX_STATUSES_PER_CONTEXT: usize = 1000;

const STATES: [&str; 4] = ["error", "failure", "pending", "success"];

/// A commit status.
#[derive(Debug, Clone)]
pub(crate) struct Status {
    pub id: u64,
    pub sha: String,
    pub state: String,
    pub target_url: Option<String>,
    pub description: Option<String>,
    pub context: String,
    pub creator: Person,
    pub created_at: DateTime<Utc>,
}

/// A status to create.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NewStatus {
    state: String,
    target_url: Option<String>,
    description: Option<String>,
    context: String,
}

pub(crate) fn register(router: Router<Simulator>, tag: Tag<'_>) -> Router<Simulator> {
    router.route(ROUTE_CREATE, tag(ROUTE_CREATE, post(create_status)))
}

/// The route of `/repos/{owner}/{repo}/commits/{*ref}`: `.../{ref}/statuses` and
/// `.../{ref}/status` answer the status endpoints, anything else `commit` (the get-a-commit
/// route), each wrapped in the GitHub middleware under its own template.
pub(crate) fn commit_routes(
    sim: &Simulator,
    commit: MethodRouter<Simulator>,
) -> MethodRouter<Simulator> {
    let list = tagged(sim, ROUTE_LIST, get(list_statuses));
    let combined = tagged(sim, ROUTE_COMBINED, get(combined_status));
    any(move |State(sim): State<Simulator>, request: Request| {
        let target = match status_route(request.uri().path()) {
            Some(ROUTE_LIST) => list.clone(),
            Some(_) => combined.clone(),
            None => commit.clone(),
        };
        async move { Handler::call(target, request, sim).await }
    })
}

/// Which status route a `/repos/{owner}/{repo}/commits/...` path is, if any: a ref (not empty)
/// followed by `/statuses` or `/status`.
fn status_route(path: &str) -> Option<&'static str> {
    let rest = path.trim_start_matches('/').splitn(5, '/').nth(4)?;
    let (reference, last) = rest.rsplit_once('/')?;
    if reference.is_empty() {
        return None;
    }
    match last {
        "statuses" => Some(ROUTE_LIST),
        "status" => Some(ROUTE_COMBINED),
        _ => None,
    }
}

/// The commit a status may be attached to: a full or abbreviated sha of the repository.
fn commit_of(repo: &Repo, sha: &str) -> Option<String> {
    let lower = sha.to_ascii_lowercase();
    if git::is_sha(&lower) && repo.git.commit(&lower).is_some() {
        return Some(lower);
    }
    repo.git.commit_by_prefix(sha)
}

/// A status in GitHub's `status` shape; without `creator` for the combined status's items.
fn status_json(base: &str, api: &str, status: &Status, with_creator: bool) -> Value {
    let creator = status.creator.json(base);
    let mut m = Map::new();
    m.insert(
        "url".into(),
        json!(format!("{api}/statuses/{}", status.sha)),
    );
    m.insert("avatar_url".into(), creator["avatar_url"].clone());
    m.insert("id".into(), json!(status.id));
    m.insert("node_id".into(), json!(node_id("StatusContext", status.id)));
    m.insert("state".into(), json!(status.state));
    m.insert("description".into(), json!(status.description));
    m.insert("target_url".into(), json!(status.target_url));
    m.insert("context".into(), json!(status.context));
    m.insert("created_at".into(), json!(render::time(&status.created_at)));
    m.insert("updated_at".into(), json!(render::time(&status.created_at)));
    if with_creator {
        m.insert("creator".into(), creator);
    }
    Value::Object(m)
}

/// The statuses of a commit, newest first.
fn statuses_of<'a>(repo: &'a Repo, sha: &str) -> Vec<&'a Status> {
    repo.statuses
        .iter()
        .rev()
        .filter(|s| s.sha == sha)
        .collect()
}

/// The latest status of each context (contexts compare case-insensitively), newest first, and
/// GitHub's combined state of them.
fn combined<'a>(repo: &'a Repo, sha: &str) -> (&'static str, Vec<&'a Status>) {
    let mut seen = std::collections::HashSet::new();
    let latest: Vec<&Status> = statuses_of(repo, sha)
        .into_iter()
        .filter(|s| seen.insert(s.context.to_lowercase()))
        .collect();
    let state = if latest
        .iter()
        .any(|s| s.state == "error" || s.state == "failure")
    {
        "failure"
    } else if latest.is_empty() || latest.iter().any(|s| s.state == "pending") {
        "pending"
    } else {
        "success"
    };
    (state, latest)
}

fn parse_new(obj: &Map<String, Value>) -> Result<NewStatus, ApiError> {
    let invalid = |message: String| unprocessable(message, DOCS_CREATE);
    let text = |field: &str| match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid(not_a(field, other, "a string"))),
    };
    let state = text("state")?.ok_or_else(|| invalid(missing("state")))?;
    if !STATES.contains(&state.as_str()) {
        return Err(ApiError::validation(
            json!([{
                "resource": "Status",
                "field": "state",
                "code": "custom",
                "message": "state is not included in the list",
            }]),
            DOCS_CREATE,
        ));
    }
    Ok(NewStatus {
        state,
        target_url: text("target_url")?,
        description: text("description")?,
        context: text("context")?.unwrap_or_else(|| "default".to_owned()),
    })
}

impl SimState {
    /// Adds a status to a commit; returns its id and the `status` event.
    fn create_status(
        &mut self,
        owner: &str,
        name: &str,
        sha: &str,
        new: NewStatus,
        actor: Actor,
    ) -> Result<(u64, Vec<Event>), ApiError> {
        let repo_id = self
            .repo_id(owner, name)
            .map_err(|e| ApiError::from_sim(e, DOCS_CREATE))?;
        let (_, repo) = find_repo(self, owner, name, DOCS_CREATE)?;
        let sha = commit_of(repo, sha)
            .ok_or_else(|| unprocessable(format!("No commit found for SHA: {sha}"), DOCS_CREATE))?;
        let same_context = repo
            .statuses
            .iter()
            .filter(|s| s.sha == sha && s.context.eq_ignore_ascii_case(&new.context))
            .count();
        if same_context >= MAX_STATUSES_PER_CONTEXT {
            return Err(ApiError::validation(
                json!([{
                    "resource": "Status",
                    "code": "custom",
                    "message": "This SHA and context has reached the maximum number of statuses.",
                }]),
                DOCS_CREATE,
            ));
        }
        let id = self.next_object_id();
        let status = Status {
            id,
            sha,
            state: new.state,
            target_url: new.target_url,
            description: new.description,
            context: new.context,
            creator: Person::Actor(actor),
            created_at: Utc::now(),
        };
        if let Some(repo) = self.repos.get_mut(&repo_id) {
            repo.statuses.push(status);
        }
        let events = self.status_event(repo_id, id, actor).into_iter().collect();
        Ok((id, events))
    }

    /// The `status` event of status `id` (GitHub's status event has no `action`).
    fn status_event(&self, repo_id: u64, id: u64, actor: Actor) -> Option<Event> {
        if !self.delivers_webhooks() {
            return None;
        }
        let repo = self.repos.get(&repo_id)?;
        let org = self.orgs.get(&repo.owner_key)?;
        let status = repo.statuses.iter().find(|s| s.id == id)?;
        let base = self.base_url(None);
        let (api, _) = repo_urls(&base, org, repo);
        let branches: Vec<Value> = repo
            .branches
            .values()
            .filter(|b| b.sha == status.sha)
            .map(|b| {
                json!({
                    "name": b.name,
                    "commit": { "sha": b.sha, "url": format!("{api}/commits/{}", b.sha) },
                    "protected": b.protection.is_some(),
                })
            })
            .collect();
        let time = render::time(&status.created_at);
        let fields = vec![
            ("id", json!(status.id)),
            ("sha", json!(status.sha)),
            ("name", json!(format!("{}/{}", org.login, repo.name))),
            ("target_url", json!(status.target_url)),
            ("context", json!(status.context)),
            ("description", json!(status.description)),
            ("state", json!(status.state)),
            ("commit", commit_json(&base, org, repo, &status.sha, false)),
            ("branches", Value::Array(branches)),
            ("created_at", json!(time)),
            ("updated_at", json!(time)),
            (
                "avatar_url",
                status.creator.json(&base)["avatar_url"].clone(),
            ),
        ];
        let mut event = self.repo_object_event(repo_id, "status", "created", actor, fields)?;
        if let Value::Object(payload) = &mut event.payload {
            payload.remove("action");
        }
        Some(event)
    }
}

async fn create_status(
    State(sim): State<Simulator>,
    Path((owner, name, sha)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let base = base_of(&st, &headers);
    find_repo(&st, &owner, &name, DOCS_CREATE)?;
    let obj = body_object(&body, DOCS_CREATE)?;
    let new = parse_new(&obj)?;
    let (id, events) = st.create_status(&owner, &name, &sha, new, Actor::Api)?;
    sim.emit(&st, events);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_CREATE)?;
    let status = repo
        .statuses
        .iter()
        .find(|s| s.id == id)
        .ok_or_else(|| ApiError::not_found("Not Found", DOCS_CREATE))?;
    let (api, _) = repo_urls(&base, org, repo);
    let value = status_json(&base, &api, status, true);
    let mut response = json_response(StatusCode::CREATED, &value);
    set_header(
        response.headers_mut(),
        "location",
        format!("{api}/statuses/{}", status.sha),
    );
    Ok(response)
}

/// The repository and the commit of a `{ref}` path parameter that ends in `/{suffix}`.
fn lookup<'a>(
    st: &'a SimState,
    owner: &str,
    name: &str,
    raw: &str,
    suffix: &str,
    documentation_url: &'static str,
) -> Result<(&'a Org, &'a Repo, String), ApiError> {
    let (org, repo) = find_repo(st, owner, name, documentation_url)?;
    let reference = raw.strip_suffix(suffix).unwrap_or(raw);
    let sha = resolve_commit(repo, reference).ok_or_else(|| {
        ApiError::not_found(
            format!("No commit found for SHA: {reference}"),
            documentation_url,
        )
    })?;
    Ok((org, repo, sha))
}

async fn list_statuses(
    State(sim): State<Simulator>,
    Path((owner, name, raw)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, repo, sha) = lookup(&st, &owner, &name, &raw, "/statuses", DOCS_LIST)?;
    let (api, _) = repo_urls(&base, org, repo);
    let all = statuses_of(repo, &sha);
    let params = PageParams::from_query(&query);
    let reference = raw.strip_suffix("/statuses").unwrap_or(&raw);
    let url = format!("{api}/commits/{reference}/statuses");
    let (page, link) = paginate(&all, params, &url, &query);
    let body: Vec<Value> = page
        .iter()
        .map(|s| status_json(&base, &api, s, true))
        .collect();
    Ok(with_link(
        json_response(StatusCode::OK, &Value::Array(body)),
        link,
    ))
}

async fn combined_status(
    State(sim): State<Simulator>,
    Path((owner, name, raw)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, repo, sha) = lookup(&st, &owner, &name, &raw, "/status", DOCS_COMBINED)?;
    let (api, _) = repo_urls(&base, org, repo);
    let (state, latest) = combined(repo, &sha);
    let params = PageParams::from_query(&query);
    let reference = raw.strip_suffix("/status").unwrap_or(&raw);
    let url = format!("{api}/commits/{reference}/status");
    let (page, link) = paginate(&latest, params, &url, &query);
    let body = json!({
        "state": state,
        "statuses": page
            .iter()
            .map(|s| status_json(&base, &api, s, false))
            .collect::<Vec<_>>(),
        "sha": sha,
        "total_count": latest.len(),
        "repository": render::repo_json(&base, org, repo),
        "commit_url": format!("{api}/commits/{sha}"),
        "url": format!("{api}/commits/{sha}/status"),
    });
    Ok(with_link(json_response(StatusCode::OK, &body), link))
}

impl Simulator {
    /// The statuses of a commit (`sha`, or a branch name) in the shape of `GET
    /// /repos/{owner}/{repo}/commits/{ref}/statuses`, newest first, all of them; empty if the
    /// repository or commit does not exist.
    pub fn commit_statuses(&self, owner: &str, repo: &str, sha: &str) -> Vec<Value> {
        let st = self.lock();
        let base = st.base_url(None);
        let Some((org, found)) = st.repo(owner, repo) else {
            return Vec::new();
        };
        let Some(sha) = resolve_commit(found, sha) else {
            return Vec::new();
        };
        let (api, _) = repo_urls(&base, org, found);
        statuses_of(found, &sha)
            .into_iter()
            .map(|s| status_json(&base, &api, s, true))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_routes_by_last_segment() {
        assert_eq!(
            status_route("/repos/o/r/commits/main/statuses"),
            Some(ROUTE_LIST)
        );
        assert_eq!(
            status_route("/repos/o/r/commits/feature/x/status"),
            Some(ROUTE_COMBINED)
        );
        // A ref named "status" is a commit.
        assert_eq!(status_route("/repos/o/r/commits/status"), None);
        assert_eq!(status_route("/repos/o/r/commits/main"), None);
        assert_eq!(status_route("/repos/o/r/commits/a/b"), None);
    }
}
