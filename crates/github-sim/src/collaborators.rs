//! Repository collaborators (`GET /repos/{owner}/{repo}/collaborators`).
//!
//! Collaborators are seeded from the admin side only (the REST API Plumbline uses just lists
//! them). Each has a permission and an affiliation: a direct collaborator who is a member of the
//! organization, an outside collaborator, or someone with access through the organization
//! (base permission or a team). Adding, changing or removing a direct or outside collaborator
//! sends the `member` webhook GitHub sends; access through the organization has none.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api::{
    base_of, find_repo, json_response, paginate, with_link, ApiError, PageParams, Tag,
};
use crate::objects::choice;
use crate::render;
use crate::state::{Actor, State as SimState};
use crate::webhooks::Event;
use crate::{SimError, Simulator};

const ROUTE: &str = "/repos/{owner}/{repo}/collaborators";
const DOCS_LIST: &str =
    "https://docs.github.com/rest/collaborators/collaborators#list-repository-collaborators";

/// A repository permission, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Read.
    Pull,
    /// Read plus managing issues and pull requests.
    Triage,
    /// Write.
    Push,
    /// Write plus some repository settings.
    Maintain,
    /// Everything.
    Admin,
}

impl Permission {
    /// GitHub's permission name (`pull`, `triage`, `push`, `maintain`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Pull => "pull",
            Permission::Triage => "triage",
            Permission::Push => "push",
            Permission::Maintain => "maintain",
            Permission::Admin => "admin",
        }
    }

    /// Parses GitHub's permission name.
    pub fn parse(value: &str) -> Option<Permission> {
        match value {
            "pull" => Some(Permission::Pull),
            "triage" => Some(Permission::Triage),
            "push" => Some(Permission::Push),
            "maintain" => Some(Permission::Maintain),
            "admin" => Some(Permission::Admin),
            _ => None,
        }
    }

    /// The role name GitHub reports (`read`, `triage`, `write`, `maintain`, `admin`).
    pub fn role_name(self) -> &'static str {
        match self {
            Permission::Pull => "read",
            Permission::Triage => "triage",
            Permission::Push => "write",
            Permission::Maintain => "maintain",
            Permission::Admin => "admin",
        }
    }
}

/// How a collaborator got access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Affiliation {
    /// Added to the repository directly, and a member of the organization.
    #[default]
    Direct,
    /// Added to the repository directly, not a member of the organization.
    Outside,
    /// Access through the organization (base permission or a team) only.
    Organization,
}

impl Affiliation {
    fn is_direct(self) -> bool {
        matches!(self, Affiliation::Direct | Affiliation::Outside)
    }
}

/// A collaborator of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Collaborator {
    pub login: String,
    pub permission: Permission,
    pub affiliation: Affiliation,
}

fn collaborator_json(base: &str, c: &Collaborator) -> Value {
    let mut value = render::user_json(base, &c.login);
    let at_least = |p: Permission| c.permission >= p;
    value["permissions"] = json!({
        "pull": at_least(Permission::Pull),
        "triage": at_least(Permission::Triage),
        "push": at_least(Permission::Push),
        "maintain": at_least(Permission::Maintain),
        "admin": at_least(Permission::Admin),
    });
    value["role_name"] = json!(c.permission.role_name());
    value
}

impl SimState {
    /// Adds a collaborator or changes their permission and affiliation; returns the `member`
    /// event ("added" or "edited") for direct access.
    fn put_collaborator(
        &mut self,
        owner: &str,
        name: &str,
        collaborator: Collaborator,
        actor: Actor,
    ) -> Result<Vec<Event>, SimError> {
        if collaborator.login.is_empty() || collaborator.login.contains('/') {
            return Err(SimError::Invalid(format!(
                "invalid login {:?}",
                collaborator.login
            )));
        }
        let repo = self.repo_mut(owner, name)?;
        let id = repo.id;
        let existing = repo
            .collaborators
            .iter_mut()
            .find(|c| c.login.eq_ignore_ascii_case(&collaborator.login));
        let (action, changes) = match existing {
            Some(current) if *current == collaborator => return Ok(Vec::new()),
            Some(current) => {
                let from = current.permission;
                let was_direct = current.affiliation.is_direct();
                *current = collaborator.clone();
                let action = if was_direct { "edited" } else { "added" };
                let changes = if was_direct {
                    json!({ "permission": { "from": from.role_name(), "to": collaborator.permission.role_name() } })
                } else {
                    json!({ "permission": { "to": collaborator.permission.role_name() } })
                };
                (action, changes)
            }
            None => {
                repo.collaborators.push(collaborator.clone());
                (
                    "added",
                    json!({ "permission": { "to": collaborator.permission.role_name() } }),
                )
            }
        };
        if !collaborator.affiliation.is_direct() {
            return Ok(Vec::new());
        }
        let base = self.base_url(None);
        let member = render::user_json(&base, &collaborator.login);
        Ok(self
            .repo_object_event(
                id,
                "member",
                action,
                actor,
                vec![("member", member), ("changes", changes)],
            )
            .into_iter()
            .collect())
    }

    /// Removes a collaborator; `member` "removed" for direct access.
    fn remove_collaborator(
        &mut self,
        owner: &str,
        name: &str,
        login: &str,
        actor: Actor,
    ) -> Result<Vec<Event>, SimError> {
        let repo = self.repo_mut(owner, name)?;
        let id = repo.id;
        let index = repo
            .collaborators
            .iter()
            .position(|c| c.login.eq_ignore_ascii_case(login))
            .ok_or_else(|| SimError::NotFound("Not Found".to_owned()))?;
        let removed = repo.collaborators.remove(index);
        if !removed.affiliation.is_direct() {
            return Ok(Vec::new());
        }
        let base = self.base_url(None);
        let member = render::user_json(&base, &removed.login);
        Ok(self
            .repo_object_event(id, "member", "removed", actor, vec![("member", member)])
            .into_iter()
            .collect())
    }
}

pub(crate) fn register(router: Router<Simulator>, tag: Tag<'_>) -> Router<Simulator> {
    router.route(ROUTE, tag(ROUTE, get(list)))
}

async fn list(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_LIST)?;
    let invalid =
        |message: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message, DOCS_LIST);
    let affiliation =
        choice(&query, "affiliation", &["outside", "direct", "all"], "all").map_err(invalid)?;
    let permission = match query.get("permission") {
        None => None,
        Some(value) => Some(
            Permission::parse(value)
                .ok_or_else(|| invalid(format!("Invalid value for `permission`: {value:?}")))?,
        ),
    };
    let matching: Vec<&Collaborator> = repo
        .collaborators
        .iter()
        .filter(|c| match affiliation {
            "outside" => c.affiliation == Affiliation::Outside,
            "direct" => c.affiliation.is_direct(),
            _ => true,
        })
        .filter(|c| permission.is_none_or(|p| c.permission >= p))
        .collect();
    let url = format!("{base}/repos/{}/{}/collaborators", org.login, repo.name);
    let (page, link) = paginate(&matching, PageParams::from_query(&query), &url, &query);
    let body = Value::Array(page.iter().map(|c| collaborator_json(&base, c)).collect());
    Ok(with_link(json_response(StatusCode::OK, &body), link))
}

impl Simulator {
    /// Gives `login` access to a repository, or changes it, as on the "Collaborators and teams"
    /// settings page. Direct and outside collaborators send `member` "added" (or "edited" when
    /// their permission changes); access through the organization sends nothing.
    pub fn add_collaborator(
        &self,
        owner: &str,
        repo: &str,
        login: &str,
        permission: Permission,
        affiliation: Affiliation,
    ) -> Result<(), SimError> {
        let collaborator = Collaborator {
            login: login.to_owned(),
            permission,
            affiliation,
        };
        let mut st = self.lock();
        let events = st.put_collaborator(owner, repo, collaborator, Actor::Admin)?;
        self.emit(&st, events);
        Ok(())
    }

    /// Removes a collaborator; `member` "removed" for direct access. Unknown logins are
    /// `SimError::NotFound`.
    pub fn remove_collaborator(
        &self,
        owner: &str,
        repo: &str,
        login: &str,
    ) -> Result<(), SimError> {
        let mut st = self.lock();
        let events = st.remove_collaborator(owner, repo, login, Actor::Admin)?;
        self.emit(&st, events);
        Ok(())
    }
}

pub(crate) fn admin_routes() -> Router<Simulator> {
    Router::new().route(
        "/repos/{owner}/{repo}/collaborators/{login}",
        put(admin_put).delete(admin_delete),
    )
}

#[derive(Debug, Deserialize)]
struct AdminCollaborator {
    permission: Permission,
    #[serde(default)]
    affiliation: Affiliation,
}

/// `PUT /_admin/repos/{owner}/{repo}/collaborators/{login}` with `{"permission":
/// "pull|triage|push|maintain|admin", "affiliation": "direct|outside|organization"}`: 204.
async fn admin_put(
    State(sim): State<Simulator>,
    Path((owner, name, login)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let request: AdminCollaborator = match crate::admin::parse(&body) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    match sim.add_collaborator(
        &owner,
        &name,
        &login,
        request.permission,
        request.affiliation,
    ) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => crate::admin::sim_error(e),
    }
}

/// `DELETE /_admin/repos/{owner}/{repo}/collaborators/{login}`: 204.
async fn admin_delete(
    State(sim): State<Simulator>,
    Path((owner, name, login)): Path<(String, String, String)>,
) -> Response {
    match sim.remove_collaborator(&owner, &name, &login) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => crate::admin::sim_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_are_cumulative() {
        let c = Collaborator {
            login: "octocat".to_owned(),
            permission: Permission::Push,
            affiliation: Affiliation::Outside,
        };
        let value = collaborator_json("http://h", &c);
        assert_eq!(value["role_name"], "write");
        assert_eq!(
            value["permissions"],
            json!({ "pull": true, "triage": true, "push": true, "maintain": false, "admin": false })
        );
        assert!(Permission::Admin > Permission::Maintain);
        assert_eq!(Permission::parse("triage"), Some(Permission::Triage));
    }
}
