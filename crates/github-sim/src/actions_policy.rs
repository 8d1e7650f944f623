//! Actions permissions of a repository beyond the workflow token (`settings.rs` serves
//! `/actions/permissions/workflow`): whether Actions run at all and which actions may run
//! (`/actions/permissions`), the allow-list used when only selected actions may run
//! (`/actions/permissions/selected-actions`), and how far a private repository shares its
//! actions and reusable workflows (`/actions/permissions/access`).
//!
//! GitHub sends no webhook for any of these settings, so neither the REST handlers nor the admin
//! methods emit one.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api::{base_of, find_repo, json_response, parse_json, ApiError, Tag};
use crate::objects::{object, opt_bool, opt_strings};
use crate::state::State as SimState;
use crate::{SimError, Simulator};

const ROUTE_PERMISSIONS: &str = "/repos/{owner}/{repo}/actions/permissions";
const ROUTE_SELECTED: &str = "/repos/{owner}/{repo}/actions/permissions/selected-actions";
const ROUTE_ACCESS: &str = "/repos/{owner}/{repo}/actions/permissions/access";

const DOCS_GET_PERMISSIONS: &str = "https://docs.github.com/rest/actions/permissions#get-github-actions-permissions-for-a-repository";
const DOCS_SET_PERMISSIONS: &str = "https://docs.github.com/rest/actions/permissions#set-github-actions-permissions-for-a-repository";
const DOCS_GET_SELECTED: &str = "https://docs.github.com/rest/actions/permissions#get-allowed-actions-and-reusable-workflows-for-a-repository";
const DOCS_SET_SELECTED: &str = "https://docs.github.com/rest/actions/permissions#set-allowed-actions-and-reusable-workflows-for-a-repository";
const DOCS_GET_ACCESS: &str = "https://docs.github.com/rest/actions/permissions#get-the-level-of-access-for-workflows-outside-of-the-repository";
const DOCS_SET_ACCESS: &str = "https://docs.github.com/rest/actions/permissions#set-the-level-of-access-for-workflows-outside-of-the-repository";

/// GitHub's answer to the selected-actions endpoints while the policy is not "selected": the
/// allow-list exists but does not apply, which GitHub reports as a conflict (409). Minder's
/// `allowed_selected_actions` rule type relies on exactly this status.
const NOT_SELECTED: &str =
    "Actions policy is not set to allow select actions and reusable workflows";

/// The access level only exists for private (and internal) repositories; a public repository's
/// actions are usable by everyone, and GitHub refuses the endpoint there.
const PUBLIC_ACCESS: &str = "Access policy is only applicable to private and internal repositories";

/// Which actions and reusable workflows may run (`allowed_actions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AllowedActions {
    /// Any action or reusable workflow (GitHub's default).
    #[default]
    All,
    /// Only those defined in repositories of the same owner.
    LocalOnly,
    /// Only those on the selected-actions allow-list.
    Selected,
}

impl AllowedActions {
    /// GitHub's wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            AllowedActions::All => "all",
            AllowedActions::LocalOnly => "local_only",
            AllowedActions::Selected => "selected",
        }
    }

    /// Parses GitHub's wire value.
    pub fn parse(value: &str) -> Option<AllowedActions> {
        match value {
            "all" => Some(AllowedActions::All),
            "local_only" => Some(AllowedActions::LocalOnly),
            "selected" => Some(AllowedActions::Selected),
            _ => None,
        }
    }
}

/// How far workflows outside a private repository may use its actions (`access_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AccessLevel {
    /// Only workflows of the repository itself (GitHub's default).
    #[default]
    None,
    /// Private repositories of the same user.
    User,
    /// Private repositories of the same organization.
    Organization,
}

impl AccessLevel {
    /// GitHub's wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessLevel::None => "none",
            AccessLevel::User => "user",
            AccessLevel::Organization => "organization",
        }
    }

    /// Parses GitHub's wire value.
    pub fn parse(value: &str) -> Option<AccessLevel> {
        match value {
            "none" => Some(AccessLevel::None),
            "user" => Some(AccessLevel::User),
            "organization" => Some(AccessLevel::Organization),
            _ => None,
        }
    }
}

/// The allow-list of `/actions/permissions/selected-actions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selected {
    pub github_owned_allowed: bool,
    pub verified_allowed: bool,
    pub patterns_allowed: Vec<String>,
}

impl Default for Selected {
    /// What GitHub shows before anyone edited the list: GitHub's own actions allowed.
    fn default() -> Self {
        Selected {
            github_owned_allowed: true,
            verified_allowed: false,
            patterns_allowed: Vec::new(),
        }
    }
}

/// The Actions permissions policy of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Policy {
    pub enabled: bool,
    pub allowed_actions: AllowedActions,
    pub sha_pinning_required: bool,
    /// Kept while another policy is active, like GitHub does, so switching back restores it.
    pub selected: Selected,
    pub access_level: AccessLevel,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            enabled: true,
            allowed_actions: AllowedActions::All,
            sha_pinning_required: false,
            selected: Selected::default(),
            access_level: AccessLevel::None,
        }
    }
}

impl Policy {
    fn selected_applies(&self) -> bool {
        self.enabled && self.allowed_actions == AllowedActions::Selected
    }
}

/// The body of `GET /actions/permissions`. A disabled repository reports only `enabled`, since
/// the other fields do not apply.
fn permissions_json(base: &str, owner: &str, repo: &str, policy: &Policy) -> Value {
    if !policy.enabled {
        return json!({ "enabled": false });
    }
    let mut body = json!({
        "enabled": true,
        "allowed_actions": policy.allowed_actions.as_str(),
        "sha_pinning_required": policy.sha_pinning_required,
    });
    if policy.allowed_actions == AllowedActions::Selected {
        body["selected_actions_url"] = json!(format!(
            "{base}/repos/{owner}/{repo}/actions/permissions/selected-actions"
        ));
    }
    body
}

fn selected_json(selected: &Selected) -> Value {
    json!({
        "github_owned_allowed": selected.github_owned_allowed,
        "verified_allowed": selected.verified_allowed,
        "patterns_allowed": selected.patterns_allowed,
    })
}

/// Everything at once, for the admin side.
fn policy_json(policy: &Policy) -> Value {
    json!({
        "enabled": policy.enabled,
        "allowed_actions": policy.allowed_actions.as_str(),
        "sha_pinning_required": policy.sha_pinning_required,
        "selected_actions": selected_json(&policy.selected),
        "access_level": policy.access_level.as_str(),
    })
}

/// Applies a `PUT /actions/permissions` body (`enabled` required; absent fields keep their
/// value); the error is GitHub's 422 message.
fn apply_permissions(policy: &mut Policy, body: &Value) -> Result<(), String> {
    let fields = object(body)?;
    let enabled = match fields.get("enabled") {
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(crate::objects::invalid_type("enabled", other, "a boolean"));
        }
        None => return Err("Invalid request.\n\n\"enabled\" wasn't supplied.".to_owned()),
    };
    let allowed = match fields.get("allowed_actions") {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_str().and_then(AllowedActions::parse).ok_or_else(|| {
            format!("Invalid request.\n\n{value} is not a member of [\"all\", \"local_only\", \"selected\"].")
        })?),
    };
    let pinning = opt_bool(fields, "sha_pinning_required")?;
    policy.enabled = enabled;
    if let Some(allowed) = allowed {
        policy.allowed_actions = allowed;
    }
    if let Some(pinning) = pinning {
        policy.sha_pinning_required = pinning;
    }
    Ok(())
}

/// Applies a `PUT .../selected-actions` body; absent fields keep their value.
fn apply_selected(selected: &mut Selected, body: &Value) -> Result<(), String> {
    let fields = object(body)?;
    let github_owned = opt_bool(fields, "github_owned_allowed")?;
    let verified = opt_bool(fields, "verified_allowed")?;
    let patterns = opt_strings(fields, "patterns_allowed")?;
    if let Some(v) = github_owned {
        selected.github_owned_allowed = v;
    }
    if let Some(v) = verified {
        selected.verified_allowed = v;
    }
    if let Some(v) = patterns {
        selected.patterns_allowed = v;
    }
    Ok(())
}

/// Parses a `PUT .../access` body.
fn parse_access(body: &Value) -> Result<AccessLevel, String> {
    let fields = object(body)?;
    match fields.get("access_level") {
        None => Err("Invalid request.\n\n\"access_level\" wasn't supplied.".to_owned()),
        Some(value) => value.as_str().and_then(AccessLevel::parse).ok_or_else(|| {
            format!(
                "Invalid request.\n\n{value} is not a member of [\"none\", \"user\", \"organization\"]."
            )
        }),
    }
}

impl SimState {
    fn policy(&self, owner: &str, name: &str) -> Result<(&Policy, bool), SimError> {
        self.repo(owner, name)
            .map(|(_, repo)| (&repo.actions_policy, repo.private))
            .ok_or_else(|| SimError::NotFound("Not Found".to_owned()))
    }

    fn policy_mut(&mut self, owner: &str, name: &str) -> Result<(&mut Policy, bool), SimError> {
        let repo = self.repo_mut(owner, name)?;
        Ok((&mut repo.actions_policy, repo.private))
    }
}

pub(crate) fn register(router: Router<Simulator>, tag: Tag<'_>) -> Router<Simulator> {
    router
        .route(
            ROUTE_PERMISSIONS,
            tag(ROUTE_PERMISSIONS, get(get_permissions).put(put_permissions)),
        )
        .route(
            ROUTE_SELECTED,
            tag(ROUTE_SELECTED, get(get_selected).put(put_selected)),
        )
        .route(
            ROUTE_ACCESS,
            tag(ROUTE_ACCESS, get(get_access).put(put_access)),
        )
}

async fn get_permissions(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_GET_PERMISSIONS)?;
    Ok(json_response(
        StatusCode::OK,
        &permissions_json(&base, &org.login, &repo.name, &repo.actions_policy),
    ))
}

async fn put_permissions(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let (policy, _) = st
        .policy_mut(&owner, &name)
        .map_err(|e| ApiError::from_sim(e, DOCS_SET_PERMISSIONS))?;
    let value = parse_json(&body, DOCS_SET_PERMISSIONS)?;
    // Validate on a copy so a rejected body changes nothing.
    let mut next = policy.clone();
    apply_permissions(&mut next, &value).map_err(|message| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            message,
            DOCS_SET_PERMISSIONS,
        )
    })?;
    *policy = next;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_selected(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let (policy, _) = st
        .policy(&owner, &name)
        .map_err(|e| ApiError::from_sim(e, DOCS_GET_SELECTED))?;
    if !policy.selected_applies() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            NOT_SELECTED,
            DOCS_GET_SELECTED,
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        &selected_json(&policy.selected),
    ))
}

async fn put_selected(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let (policy, _) = st
        .policy_mut(&owner, &name)
        .map_err(|e| ApiError::from_sim(e, DOCS_SET_SELECTED))?;
    let value = parse_json(&body, DOCS_SET_SELECTED)?;
    let mut next = policy.selected.clone();
    apply_selected(&mut next, &value).map_err(|message| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message, DOCS_SET_SELECTED)
    })?;
    if !policy.selected_applies() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            NOT_SELECTED,
            DOCS_SET_SELECTED,
        ));
    }
    policy.selected = next;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_access(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let (policy, private) = st
        .policy(&owner, &name)
        .map_err(|e| ApiError::from_sim(e, DOCS_GET_ACCESS))?;
    if !private {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            PUBLIC_ACCESS,
            DOCS_GET_ACCESS,
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({ "access_level": policy.access_level.as_str() }),
    ))
}

async fn put_access(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let (policy, private) = st
        .policy_mut(&owner, &name)
        .map_err(|e| ApiError::from_sim(e, DOCS_SET_ACCESS))?;
    let value = parse_json(&body, DOCS_SET_ACCESS)?;
    let level = parse_access(&value).map_err(|message| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message, DOCS_SET_ACCESS)
    })?;
    if !private {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            PUBLIC_ACCESS,
            DOCS_SET_ACCESS,
        ));
    }
    policy.access_level = level;
    Ok(StatusCode::NO_CONTENT.into_response())
}

impl Simulator {
    /// Sets whether Actions run in a repository and which actions may run, as on the
    /// repository's "Actions > General" settings page (no webhook: GitHub sends none).
    pub fn set_actions_permissions(
        &self,
        owner: &str,
        repo: &str,
        enabled: bool,
        allowed_actions: AllowedActions,
    ) -> Result<(), SimError> {
        let mut st = self.lock();
        let (policy, _) = st.policy_mut(owner, repo)?;
        policy.enabled = enabled;
        policy.allowed_actions = allowed_actions;
        Ok(())
    }

    /// Sets the allow-list used while only selected actions may run. Unlike the REST endpoint
    /// this works whatever the policy is, like the settings page, which keeps the list.
    pub fn set_selected_actions(
        &self,
        owner: &str,
        repo: &str,
        github_owned_allowed: bool,
        verified_allowed: bool,
        patterns_allowed: Vec<String>,
    ) -> Result<(), SimError> {
        let mut st = self.lock();
        let (policy, _) = st.policy_mut(owner, repo)?;
        policy.selected = Selected {
            github_owned_allowed,
            verified_allowed,
            patterns_allowed,
        };
        Ok(())
    }

    /// Sets how far workflows outside a private repository may use its actions. A public
    /// repository has no such setting: `SimError::Invalid`.
    pub fn set_actions_access_level(
        &self,
        owner: &str,
        repo: &str,
        level: AccessLevel,
    ) -> Result<(), SimError> {
        let mut st = self.lock();
        let (policy, private) = st.policy_mut(owner, repo)?;
        if !private {
            return Err(SimError::Invalid(PUBLIC_ACCESS.to_owned()));
        }
        policy.access_level = level;
        Ok(())
    }

    /// The whole Actions permissions policy of a repository: `enabled`, `allowed_actions`,
    /// `sha_pinning_required`, `selected_actions` (the allow-list) and `access_level`.
    pub fn actions_policy(&self, owner: &str, repo: &str) -> Option<Value> {
        let st = self.lock();
        st.policy(owner, repo).ok().map(|(p, _)| policy_json(p))
    }
}

pub(crate) fn admin_routes() -> Router<Simulator> {
    Router::new().route(
        "/repos/{owner}/{repo}/actions/policy",
        get(admin_get_policy).put(admin_put_policy),
    )
}

/// `GET /_admin/repos/{owner}/{repo}/actions/policy`: the whole policy.
async fn admin_get_policy(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
) -> Response {
    crate::admin::found(StatusCode::OK, sim.actions_policy(&owner, &name))
}

/// `PUT /_admin/repos/{owner}/{repo}/actions/policy` with any of `enabled`, `allowed_actions`,
/// `sha_pinning_required`, `selected_actions` (the REST allow-list body) and `access_level`;
/// 200 with the whole policy. Everything is validated before anything changes.
async fn admin_put_policy(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let value: Value = match crate::admin::parse(&body) {
        Ok(v) => v,
        Err(response) => return *response,
    };
    let mut st = sim.lock();
    let (policy, private) = match st.policy_mut(&owner, &name) {
        Ok(found) => found,
        Err(e) => return crate::admin::sim_error(e),
    };
    let result = (|| -> Result<Policy, String> {
        let fields = object(&value)?;
        let mut next = policy.clone();
        // The REST body with `enabled` defaulting to the current value.
        const KEYS: [&str; 3] = ["enabled", "allowed_actions", "sha_pinning_required"];
        if KEYS.iter().any(|k| fields.contains_key(*k)) {
            let mut permissions = json!({ "enabled": next.enabled });
            for key in KEYS {
                if let Some(v) = fields.get(key) {
                    permissions[key] = v.clone();
                }
            }
            apply_permissions(&mut next, &permissions)?;
        }
        if let Some(selected) = fields.get("selected_actions") {
            apply_selected(&mut next.selected, selected)?;
        }
        if let Some(level) = fields.get("access_level") {
            if !private {
                return Err(PUBLIC_ACCESS.to_owned());
            }
            next.access_level = parse_access(&json!({ "access_level": level }))?;
        }
        Ok(next)
    })();
    match result {
        Ok(next) => {
            *policy = next;
            crate::admin::ok_json(StatusCode::OK, &policy_json(policy))
        }
        Err(message) => crate::admin::error(StatusCode::UNPROCESSABLE_ENTITY, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_bodies_are_validated_and_partial() {
        let mut policy = Policy::default();
        apply_permissions(
            &mut policy,
            &json!({ "enabled": true, "allowed_actions": "selected" }),
        )
        .unwrap();
        assert_eq!(policy.allowed_actions, AllowedActions::Selected);
        assert!(policy.selected_applies());
        apply_permissions(&mut policy, &json!({ "enabled": false })).unwrap();
        assert_eq!(policy.allowed_actions, AllowedActions::Selected);
        assert!(!policy.selected_applies());
        assert!(apply_permissions(&mut policy, &json!({ "allowed_actions": "all" })).is_err());
        assert!(apply_permissions(
            &mut policy,
            &json!({ "enabled": true, "allowed_actions": "some" })
        )
        .is_err());
        let rendered = permissions_json("http://h", "o", "r", &policy);
        assert_eq!(rendered, json!({ "enabled": false }));
    }

    #[test]
    fn selected_and_access_bodies() {
        let mut selected = Selected::default();
        apply_selected(&mut selected, &json!({ "patterns_allowed": ["acme/*"] })).unwrap();
        assert!(selected.github_owned_allowed);
        assert_eq!(selected.patterns_allowed, ["acme/*"]);
        assert!(apply_selected(&mut selected, &json!({ "verified_allowed": "yes" })).is_err());
        assert_eq!(
            parse_access(&json!({ "access_level": "user" })).unwrap(),
            AccessLevel::User
        );
        assert!(parse_access(&json!({ "access_level": "enterprise" })).is_err());
        assert!(parse_access(&json!({})).is_err());
    }
}
