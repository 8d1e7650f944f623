//! Branch protection: validating GitHub's "update branch protection" request body, and rendering
//! the GET response and the webhook `rule` object from the stored settings.
//!
//! The stored model is deliberately the request model (what a client can set), because every
//! representation GitHub hands out (REST response, webhook rule) is derived from those settings.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::render;

/// Keys GitHub requires in the PUT body, in the order GitHub reports them when missing.
const REQUIRED_KEYS: [&str; 4] = [
    "required_status_checks",
    "enforce_admins",
    "required_pull_request_reviews",
    "restrictions",
];

/// Users, teams and apps named in a restriction or allowance (logins and slugs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Actors {
    pub users: Vec<String>,
    pub teams: Vec<String>,
    pub apps: Vec<String>,
}

impl Actors {
    fn is_empty(&self) -> bool {
        self.users.is_empty() && self.teams.is_empty() && self.apps.is_empty()
    }
}

/// One required status check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Check {
    pub context: String,
    pub app_id: Option<i64>,
}

/// Required status checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatusChecks {
    pub strict: bool,
    pub checks: Vec<Check>,
}

/// Required pull request reviews.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reviews {
    pub dismiss_stale_reviews: bool,
    pub require_code_owner_reviews: bool,
    pub required_approving_review_count: u64,
    pub require_last_push_approval: bool,
    pub dismissal_restrictions: Option<Actors>,
    pub bypass_pull_request_allowances: Option<Actors>,
}

/// Everything the PUT request sets. A PUT replaces all of it, like on GitHub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    pub required_status_checks: Option<StatusChecks>,
    pub enforce_admins: bool,
    pub required_pull_request_reviews: Option<Reviews>,
    pub restrictions: Option<Actors>,
    pub required_linear_history: bool,
    pub allow_force_pushes: bool,
    pub allow_deletions: bool,
    pub block_creations: bool,
    pub required_conversation_resolution: bool,
    pub lock_branch: bool,
    pub allow_fork_syncing: bool,
}

impl Settings {
    /// The protection of repositories created with `RepoOptions::protected`: what a team
    /// typically clicks together — one approving review, admins included, no force pushes.
    pub(crate) fn typical() -> Settings {
        Settings {
            required_status_checks: None,
            enforce_admins: true,
            required_pull_request_reviews: Some(Reviews {
                dismiss_stale_reviews: false,
                require_code_owner_reviews: false,
                required_approving_review_count: 1,
                require_last_push_approval: false,
                dismissal_restrictions: None,
                bypass_pull_request_allowances: None,
            }),
            restrictions: None,
            required_linear_history: false,
            allow_force_pushes: false,
            allow_deletions: false,
            block_creations: false,
            required_conversation_resolution: false,
            lock_branch: false,
            allow_fork_syncing: false,
        }
    }
}

/// A validated PUT body. `required_signatures` is only accepted from the admin side (it has its
/// own endpoint on GitHub); None keeps the current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub settings: Settings,
    pub required_signatures: Option<bool>,
}

/// The protection of one branch as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Protection {
    /// Id of the branch protection rule, reported in webhooks.
    pub rule_id: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub settings: Settings,
    pub required_signatures: bool,
}

fn invalid(detail: impl std::fmt::Display) -> String {
    format!("Invalid request.\n\n{detail}")
}

fn type_error(pointer: &str, value: &Value, expected: &str) -> String {
    invalid(format!(
        "For 'properties/{pointer}', {value} is not {expected}."
    ))
}

fn missing_keys(keys: &[&str]) -> String {
    let list = keys
        .iter()
        .map(|k| format!("\"{k}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let verb = if keys.len() == 1 { "wasn't" } else { "weren't" };
    invalid(format!("{list} {verb} supplied."))
}

/// Optional boolean: absent and null both mean false (GitHub documents null as "disable" for
/// the nullable ones and treats omitted flags as false on a full replace).
fn flag(obj: &Map<String, Value>, key: &str, pointer: &str) -> Result<bool, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(type_error(pointer, other, "a boolean")),
    }
}

fn string_list(value: &Value, pointer: &str) -> Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err(type_error(pointer, value, "an array"));
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => Ok(s.clone()),
            other => Err(type_error(pointer, other, "a string")),
        })
        .collect()
}

/// Parses a `{users, teams, apps}` object; `required` lists the keys that must be present.
fn actors(value: &Value, pointer: &str, required: &[&str]) -> Result<Actors, String> {
    let Value::Object(obj) = value else {
        return Err(type_error(pointer, value, "an object"));
    };
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|k| !obj.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        return Err(missing_keys(&missing));
    }
    let list = |key: &str| -> Result<Vec<String>, String> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(v) => string_list(v, &format!("{pointer}/{key}")),
        }
    };
    Ok(Actors {
        users: list("users")?,
        teams: list("teams")?,
        apps: list("apps")?,
    })
}

fn status_checks(value: &Value) -> Result<Option<StatusChecks>, String> {
    let pointer = "required_status_checks";
    let obj = match value {
        Value::Null => return Ok(None),
        Value::Object(obj) => obj,
        other => return Err(type_error(pointer, other, "an object or null")),
    };
    let strict = match obj.get("strict") {
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(type_error(
                "required_status_checks/strict",
                other,
                "a boolean",
            ))
        }
        None => return Err(missing_keys(&["strict"])),
    };
    // `contexts` is deprecated in favour of `checks`; GitHub accepts either.
    let checks = match (obj.get("checks"), obj.get("contexts")) {
        (Some(Value::Array(items)), _) => items
            .iter()
            .map(|item| {
                let context = item
                    .get("context")
                    .and_then(Value::as_str)
                    .ok_or_else(|| type_error("required_status_checks/checks", item, "a check"))?;
                let app_id = match item.get("app_id") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(v.as_i64().ok_or_else(|| {
                        type_error("required_status_checks/checks/app_id", v, "an integer")
                    })?),
                };
                Ok(Check {
                    context: context.to_owned(),
                    app_id,
                })
            })
            .collect::<Result<Vec<_>, String>>()?,
        (Some(other), _) => {
            return Err(type_error(
                "required_status_checks/checks",
                other,
                "an array",
            ))
        }
        (None, Some(contexts)) => string_list(contexts, "required_status_checks/contexts")?
            .into_iter()
            .map(|context| Check {
                context,
                app_id: None,
            })
            .collect(),
        (None, None) => return Err(missing_keys(&["contexts"])),
    };
    Ok(Some(StatusChecks { strict, checks }))
}

fn reviews(value: &Value) -> Result<Option<Reviews>, String> {
    let pointer = "required_pull_request_reviews";
    let obj = match value {
        Value::Null => return Ok(None),
        Value::Object(obj) => obj,
        other => return Err(type_error(pointer, other, "an object or null")),
    };
    let count = match obj.get("required_approving_review_count") {
        // GitHub requires one approval when the count is left out.
        None | Some(Value::Null) => 1,
        Some(v) => {
            let n = v.as_u64().ok_or_else(|| {
                type_error(
                    "required_pull_request_reviews/required_approving_review_count",
                    v,
                    "an integer",
                )
            })?;
            if n > 6 {
                return Err(invalid(format!(
                    "For 'properties/required_approving_review_count', {n} is greater than the maximum of 6."
                )));
            }
            n
        }
    };
    // An empty `dismissal_restrictions` object disables it, as documented by GitHub.
    let optional_actors = |key: &str| -> Result<Option<Actors>, String> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let parsed = actors(v, &format!("{pointer}/{key}"), &[])?;
                Ok((!parsed.is_empty()).then_some(parsed))
            }
        }
    };
    Ok(Some(Reviews {
        dismiss_stale_reviews: flag(obj, "dismiss_stale_reviews", "dismiss_stale_reviews")?,
        require_code_owner_reviews: flag(
            obj,
            "require_code_owner_reviews",
            "require_code_owner_reviews",
        )?,
        required_approving_review_count: count,
        require_last_push_approval: flag(
            obj,
            "require_last_push_approval",
            "require_last_push_approval",
        )?,
        dismissal_restrictions: optional_actors("dismissal_restrictions")?,
        bypass_pull_request_allowances: optional_actors("bypass_pull_request_allowances")?,
    }))
}

/// Validates a body in the shape of GitHub's PUT request and returns the settings, or GitHub's
/// 422 message. `allow_signatures` additionally accepts `required_signatures: bool` (admin side).
pub(crate) fn parse_put(body: &Value, allow_signatures: bool) -> Result<Parsed, String> {
    let Value::Object(obj) = body else {
        return Err(invalid(format!("{body} is not an object.")));
    };
    let missing: Vec<&str> = REQUIRED_KEYS
        .iter()
        .copied()
        .filter(|k| !obj.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        return Err(missing_keys(&missing));
    }
    let enforce_admins = match obj.get("enforce_admins") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(type_error("enforce_admins", other, "a boolean or null")),
    };
    let restrictions = match obj.get("restrictions") {
        None | Some(Value::Null) => None,
        Some(v) => Some(actors(v, "restrictions", &["users", "teams"])?),
    };
    let settings = Settings {
        required_status_checks: status_checks(
            obj.get("required_status_checks").unwrap_or(&Value::Null),
        )?,
        enforce_admins,
        required_pull_request_reviews: reviews(
            obj.get("required_pull_request_reviews")
                .unwrap_or(&Value::Null),
        )?,
        restrictions,
        required_linear_history: flag(obj, "required_linear_history", "required_linear_history")?,
        allow_force_pushes: flag(obj, "allow_force_pushes", "allow_force_pushes")?,
        allow_deletions: flag(obj, "allow_deletions", "allow_deletions")?,
        block_creations: flag(obj, "block_creations", "block_creations")?,
        required_conversation_resolution: flag(
            obj,
            "required_conversation_resolution",
            "required_conversation_resolution",
        )?,
        lock_branch: flag(obj, "lock_branch", "lock_branch")?,
        allow_fork_syncing: flag(obj, "allow_fork_syncing", "allow_fork_syncing")?,
    };
    let required_signatures = if allow_signatures && obj.contains_key("required_signatures") {
        Some(flag(obj, "required_signatures", "required_signatures")?)
    } else {
        None
    };
    Ok(Parsed {
        settings,
        required_signatures,
    })
}

fn enabled(value: bool) -> Value {
    json!({ "enabled": value })
}

/// Renders `{users, teams, apps}` as GitHub's full objects, with the list URLs under `url`.
fn actors_json(base: &str, org: &str, url: &str, actors: &Actors, with_apps_url: bool) -> Value {
    let mut m = Map::new();
    m.insert("url".into(), Value::String(url.to_owned()));
    m.insert("users_url".into(), Value::String(format!("{url}/users")));
    m.insert("teams_url".into(), Value::String(format!("{url}/teams")));
    if with_apps_url {
        m.insert("apps_url".into(), Value::String(format!("{url}/apps")));
    }
    m.insert("users".into(), users_json(base, &actors.users));
    m.insert("teams".into(), teams_json(base, org, &actors.teams));
    m.insert("apps".into(), apps_json(base, &actors.apps));
    Value::Object(m)
}

fn users_json(base: &str, users: &[String]) -> Value {
    Value::Array(users.iter().map(|u| render::user_json(base, u)).collect())
}

fn teams_json(base: &str, org: &str, teams: &[String]) -> Value {
    Value::Array(
        teams
            .iter()
            .map(|t| render::team_json(base, org, t))
            .collect(),
    )
}

fn apps_json(base: &str, apps: &[String]) -> Value {
    Value::Array(apps.iter().map(|a| render::app_json(base, a)).collect())
}

/// Renders the GET (and PUT 200) response. `url` is the protection URL,
/// `{base}/repos/{owner}/{repo}/branches/{branch}/protection`.
pub(crate) fn render(base: &str, org: &str, url: &str, p: &Protection) -> Value {
    let s = &p.settings;
    let mut m = Map::new();
    m.insert("url".into(), Value::String(url.to_owned()));
    if let Some(checks) = &s.required_status_checks {
        let contexts: Vec<Value> = checks
            .checks
            .iter()
            .map(|c| Value::String(c.context.clone()))
            .collect();
        let list: Vec<Value> = checks
            .checks
            .iter()
            .map(|c| json!({ "context": c.context, "app_id": c.app_id }))
            .collect();
        m.insert(
            "required_status_checks".into(),
            json!({
                "url": format!("{url}/required_status_checks"),
                "strict": checks.strict,
                "contexts": contexts,
                "contexts_url": format!("{url}/required_status_checks/contexts"),
                "checks": list,
            }),
        );
    }
    if let Some(r) = &s.required_pull_request_reviews {
        let mut reviews = Map::new();
        reviews.insert(
            "url".into(),
            Value::String(format!("{url}/required_pull_request_reviews")),
        );
        if let Some(d) = &r.dismissal_restrictions {
            reviews.insert(
                "dismissal_restrictions".into(),
                actors_json(
                    base,
                    org,
                    &format!("{url}/dismissal_restrictions"),
                    d,
                    false,
                ),
            );
        }
        if let Some(b) = &r.bypass_pull_request_allowances {
            reviews.insert(
                "bypass_pull_request_allowances".into(),
                json!({
                    "users": users_json(base, &b.users),
                    "teams": teams_json(base, org, &b.teams),
                    "apps": apps_json(base, &b.apps),
                }),
            );
        }
        reviews.insert(
            "dismiss_stale_reviews".into(),
            Value::Bool(r.dismiss_stale_reviews),
        );
        reviews.insert(
            "require_code_owner_reviews".into(),
            Value::Bool(r.require_code_owner_reviews),
        );
        reviews.insert(
            "required_approving_review_count".into(),
            Value::from(r.required_approving_review_count),
        );
        reviews.insert(
            "require_last_push_approval".into(),
            Value::Bool(r.require_last_push_approval),
        );
        m.insert(
            "required_pull_request_reviews".into(),
            Value::Object(reviews),
        );
    }
    m.insert(
        "required_signatures".into(),
        json!({ "url": format!("{url}/required_signatures"), "enabled": p.required_signatures }),
    );
    m.insert(
        "enforce_admins".into(),
        json!({ "url": format!("{url}/enforce_admins"), "enabled": s.enforce_admins }),
    );
    m.insert(
        "required_linear_history".into(),
        enabled(s.required_linear_history),
    );
    m.insert("allow_force_pushes".into(), enabled(s.allow_force_pushes));
    m.insert("allow_deletions".into(), enabled(s.allow_deletions));
    if let Some(r) = &s.restrictions {
        m.insert(
            "restrictions".into(),
            actors_json(base, org, &format!("{url}/restrictions"), r, true),
        );
    }
    m.insert("block_creations".into(), enabled(s.block_creations));
    m.insert(
        "required_conversation_resolution".into(),
        enabled(s.required_conversation_resolution),
    );
    m.insert("lock_branch".into(), enabled(s.lock_branch));
    m.insert("allow_fork_syncing".into(), enabled(s.allow_fork_syncing));
    Value::Object(m)
}

/// Renders the `rule` object of `branch_protection_rule` webhooks. GitHub reports each setting
/// as an enforcement level: "off", "non_admins", or "everyone" when admins are included.
pub(crate) fn rule(p: &Protection, repository_id: u64, branch: &str) -> Value {
    let s = &p.settings;
    let level = |on: bool| match (on, s.enforce_admins) {
        (false, _) => "off",
        (true, false) => "non_admins",
        (true, true) => "everyone",
    };
    // Force pushes and deletions are permissions, not requirements: "everyone" means allowed.
    let allowed = |on: bool| if on { "everyone" } else { "off" };
    let reviews = s.required_pull_request_reviews.as_ref();
    let checks = s.required_status_checks.as_ref();
    json!({
        "id": p.rule_id,
        "repository_id": repository_id,
        "name": branch,
        "created_at": render::rule_time(&p.created_at),
        "updated_at": render::rule_time(&p.updated_at),
        "pull_request_reviews_enforcement_level": level(reviews.is_some()),
        "required_approving_review_count": reviews.map_or(0, |r| r.required_approving_review_count),
        "dismiss_stale_reviews_on_push": reviews.is_some_and(|r| r.dismiss_stale_reviews),
        "require_code_owner_review": reviews.is_some_and(|r| r.require_code_owner_reviews),
        "authorized_dismissal_actors_only": reviews.is_some_and(|r| r.dismissal_restrictions.is_some()),
        "ignore_approvals_from_contributors": false,
        "require_last_push_approval": reviews.is_some_and(|r| r.require_last_push_approval),
        "required_status_checks": checks.map_or_else(Vec::new, |c| c.checks.iter().map(|c| c.context.clone()).collect()),
        "required_status_checks_enforcement_level": level(checks.is_some()),
        "strict_required_status_checks_policy": checks.is_some_and(|c| c.strict),
        "signature_requirement_enforcement_level": level(p.required_signatures),
        "linear_history_requirement_enforcement_level": level(s.required_linear_history),
        "lock_branch_enforcement_level": level(s.lock_branch),
        "lock_allows_fork_sync": s.allow_fork_syncing,
        "admin_enforced": s.enforce_admins,
        "create_protected": s.block_creations,
        "allow_force_pushes_enforcement_level": allowed(s.allow_force_pushes),
        "allow_deletions_enforcement_level": allowed(s.allow_deletions),
        "merge_queue_enforcement_level": "off",
        "required_deployments_enforcement_level": "off",
        "required_conversation_resolution_level": level(s.required_conversation_resolution),
        "authorized_actors_only": s.restrictions.is_some(),
        "authorized_actor_names": s.restrictions.as_ref().map_or_else(Vec::new, |r| r.users.clone()),
    })
}

/// The `changes` object of an "edited" webhook: `{field: {"from": old}}` for every rule field
/// whose value changed (identity and timestamps excluded).
pub(crate) fn rule_changes(old: &Value, new: &Value) -> Value {
    const IGNORED: [&str; 5] = ["id", "repository_id", "name", "created_at", "updated_at"];
    let mut changes = Map::new();
    if let (Value::Object(old), Value::Object(new)) = (old, new) {
        for (key, old_value) in old {
            if IGNORED.contains(&key.as_str()) {
                continue;
            }
            if new.get(key) != Some(old_value) {
                changes.insert(key.clone(), json!({ "from": old_value }));
            }
        }
    }
    Value::Object(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Value {
        json!({
            "required_status_checks": null,
            "enforce_admins": true,
            "required_pull_request_reviews": { "required_approving_review_count": 2 },
            "restrictions": null,
        })
    }

    #[test]
    fn parses_minimal_body() {
        let parsed = parse_put(&minimal(), false).unwrap();
        assert!(parsed.settings.enforce_admins);
        let reviews = parsed.settings.required_pull_request_reviews.unwrap();
        assert_eq!(reviews.required_approving_review_count, 2);
        assert_eq!(parsed.required_signatures, None);
    }

    #[test]
    fn reports_missing_keys_like_github() {
        let mut body = minimal();
        body.as_object_mut().unwrap().remove("restrictions");
        assert_eq!(
            parse_put(&body, false).unwrap_err(),
            "Invalid request.\n\n\"restrictions\" wasn't supplied."
        );
        let err = parse_put(&json!({}), false).unwrap_err();
        assert!(err.ends_with("\"restrictions\" weren't supplied."), "{err}");
    }

    #[test]
    fn rejects_wrong_types_and_ranges() {
        let mut body = minimal();
        body["enforce_admins"] = json!("yes");
        assert!(parse_put(&body, false).is_err());
        let mut body = minimal();
        body["required_pull_request_reviews"] = json!({ "required_approving_review_count": 7 });
        assert!(parse_put(&body, false).is_err());
        let mut body = minimal();
        body["required_status_checks"] = json!({ "contexts": [] });
        assert!(parse_put(&body, false).is_err());
    }

    #[test]
    fn signatures_only_from_admin() {
        let mut body = minimal();
        body["required_signatures"] = json!(true);
        assert_eq!(parse_put(&body, false).unwrap().required_signatures, None);
        assert_eq!(
            parse_put(&body, true).unwrap().required_signatures,
            Some(true)
        );
    }

    #[test]
    fn changes_list_only_differences() {
        let old = json!({"id": 1, "admin_enforced": false, "x": 1});
        let new = json!({"id": 2, "admin_enforced": true, "x": 1});
        assert_eq!(
            rule_changes(&old, &new),
            json!({"admin_enforced": {"from": false}})
        );
    }
}
