//! Repository settings: the body of `PATCH /repos/{owner}/{repo}` and of
//! `PUT /repos/{owner}/{repo}/actions/permissions/workflow`, and their application to the state
//! (with the `repository` "edited" and `security_and_analysis` webhooks GitHub sends).

use serde_json::{json, Map, Value};

use crate::render;
use crate::state::{Actions, Actor, State};
use crate::webhooks::{self, Event};
use crate::{SimError, WorkflowPermissions};

/// Type of a known `PATCH /repos/{owner}/{repo}` field, for validation.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Bool,
    String,
    /// A string, or null (clears the value).
    NullableString,
    /// A string from a fixed set.
    Enum(&'static [&'static str]),
}

/// The fields of GitHub's "update a repository" body. Only some are applied (see
/// [`RepoPatch`]); the others are type-checked and then ignored, so a client sending them gets
/// GitHub's 422 for a wrong type but no error for a correct one. Unknown fields are ignored,
/// like GitHub does.
const KNOWN_FIELDS: &[(&str, Kind)] = &[
    ("name", Kind::String),
    ("description", Kind::NullableString),
    ("homepage", Kind::NullableString),
    ("private", Kind::Bool),
    ("visibility", Kind::Enum(&["public", "private"])),
    ("has_issues", Kind::Bool),
    ("has_projects", Kind::Bool),
    ("has_wiki", Kind::Bool),
    ("has_pull_requests", Kind::Bool),
    ("is_template", Kind::Bool),
    ("default_branch", Kind::String),
    ("allow_squash_merge", Kind::Bool),
    ("allow_merge_commit", Kind::Bool),
    ("allow_rebase_merge", Kind::Bool),
    ("allow_auto_merge", Kind::Bool),
    ("delete_branch_on_merge", Kind::Bool),
    ("allow_update_branch", Kind::Bool),
    ("use_squash_pr_title_as_default", Kind::Bool),
    (
        "squash_merge_commit_title",
        Kind::Enum(&["PR_TITLE", "COMMIT_OR_PR_TITLE"]),
    ),
    (
        "squash_merge_commit_message",
        Kind::Enum(&["PR_BODY", "COMMIT_MESSAGES", "BLANK"]),
    ),
    (
        "merge_commit_title",
        Kind::Enum(&["PR_TITLE", "MERGE_MESSAGE"]),
    ),
    (
        "merge_commit_message",
        Kind::Enum(&["PR_BODY", "PR_TITLE", "BLANK"]),
    ),
    ("archived", Kind::Bool),
    ("allow_forking", Kind::Bool),
    ("web_commit_signoff_required", Kind::Bool),
];

/// The changes of a PATCH the simulator applies; None = not mentioned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RepoPatch {
    /// Some(None) clears the description.
    pub description: Option<Option<String>>,
    pub has_issues: Option<bool>,
    pub delete_branch_on_merge: Option<bool>,
    pub allow_forking: Option<bool>,
    pub secret_scanning: Option<bool>,
    pub secret_scanning_push_protection: Option<bool>,
}

/// GitHub's 422 message for a value of the wrong type.
fn invalid(field: &str, value: &Value, expected: &str) -> String {
    format!("Invalid request.\n\nFor 'properties/{field}', {value} is not {expected}.")
}

fn check(field: &str, value: &Value, kind: Kind) -> Result<(), String> {
    let ok = match kind {
        Kind::Bool => value.is_boolean(),
        Kind::String => value.is_string(),
        Kind::NullableString => value.is_string() || value.is_null(),
        Kind::Enum(values) => value.as_str().is_some_and(|v| values.contains(&v)),
    };
    if ok {
        return Ok(());
    }
    let expected = match kind {
        Kind::Bool => "a boolean".to_owned(),
        Kind::String => "a string".to_owned(),
        Kind::NullableString => "a string or null".to_owned(),
        Kind::Enum(values) => format!("one of {values:?}"),
    };
    Err(invalid(field, value, &expected))
}

/// One `security_and_analysis.{feature}` entry: None when absent, else whether it is enabled.
fn feature_status(features: &Map<String, Value>, feature: &str) -> Result<Option<bool>, String> {
    let Some(entry) = features.get(feature) else {
        return Ok(None);
    };
    let field = format!("security_and_analysis/{feature}");
    let entry = entry
        .as_object()
        .ok_or_else(|| invalid(&field, entry, "an object"))?;
    match entry.get("status") {
        None => Ok(None),
        Some(Value::String(s)) if s == "enabled" => Ok(Some(true)),
        Some(Value::String(s)) if s == "disabled" => Ok(Some(false)),
        Some(other) => Err(invalid(
            &format!("{field}/status"),
            other,
            "\"enabled\" or \"disabled\"",
        )),
    }
}

/// Validates a PATCH body and extracts the changes the simulator applies; the error is
/// GitHub's 422 message.
pub(crate) fn parse_patch(body: &Value) -> Result<RepoPatch, String> {
    let fields = body
        .as_object()
        .ok_or_else(|| format!("Invalid request.\n\n{body} is not an object."))?;
    for (field, kind) in KNOWN_FIELDS {
        if let Some(value) = fields.get(*field) {
            check(field, value, *kind)?;
        }
    }
    let flag = |field: &str| fields.get(field).and_then(Value::as_bool);
    let mut patch = RepoPatch {
        description: fields
            .get("description")
            .map(|v| v.as_str().map(str::to_owned)),
        has_issues: flag("has_issues"),
        delete_branch_on_merge: flag("delete_branch_on_merge"),
        allow_forking: flag("allow_forking"),
        ..RepoPatch::default()
    };
    match fields.get("security_and_analysis") {
        None | Some(Value::Null) => {}
        Some(Value::Object(features)) => {
            // Every feature has the same `{"status"}` shape; all are checked, two are applied.
            for feature in features.keys() {
                feature_status(features, feature)?;
            }
            patch.secret_scanning = feature_status(features, "secret_scanning")?;
            patch.secret_scanning_push_protection =
                feature_status(features, "secret_scanning_push_protection")?;
        }
        Some(other) => return Err(invalid("security_and_analysis", other, "an object")),
    }
    Ok(patch)
}

/// Validates a `PUT .../actions/permissions/workflow` body; absent fields keep `current`.
pub(crate) fn parse_workflow(body: &Value, current: Actions) -> Result<Actions, String> {
    let fields = body
        .as_object()
        .ok_or_else(|| format!("Invalid request.\n\n{body} is not an object."))?;
    let mut next = current;
    if let Some(value) = fields.get("default_workflow_permissions") {
        next.default_workflow_permissions = value
            .as_str()
            .and_then(WorkflowPermissions::parse)
            .ok_or_else(|| {
                invalid(
                    "default_workflow_permissions",
                    value,
                    "one of [\"read\", \"write\"]",
                )
            })?;
    }
    if let Some(value) = fields.get("can_approve_pull_request_reviews") {
        next.can_approve_pull_request_reviews = value
            .as_bool()
            .ok_or_else(|| invalid("can_approve_pull_request_reviews", value, "a boolean"))?;
    }
    Ok(next)
}

/// The body of `GET .../actions/permissions/workflow`.
pub(crate) fn workflow_json(actions: &Actions) -> Value {
    json!({
        "default_workflow_permissions": actions.default_workflow_permissions.as_str(),
        "can_approve_pull_request_reviews": actions.can_approve_pull_request_reviews,
    })
}

impl State {
    /// Applies a PATCH to a repository. Returns the `repository` "edited" event when a
    /// repository setting changed and the `security_and_analysis` event when a security
    /// feature changed; nothing when the PATCH changes nothing.
    pub(crate) fn update_repo(
        &mut self,
        owner: &str,
        name: &str,
        patch: RepoPatch,
        actor: Actor,
    ) -> Result<Vec<Event>, SimError> {
        let repo = self.repo_mut(owner, name)?;
        let id = repo.id;
        let previous_security = render::security_json(repo);
        let settings = &mut repo.settings;
        let mut changes = Map::new();
        if let Some(description) = patch.description {
            if description != settings.description {
                changes.insert(
                    "description".into(),
                    json!({ "from": settings.description }),
                );
                settings.description = description;
            }
        }
        let flags = [
            ("has_issues", patch.has_issues, &mut settings.has_issues),
            (
                "delete_branch_on_merge",
                patch.delete_branch_on_merge,
                &mut settings.delete_branch_on_merge,
            ),
            (
                "allow_forking",
                patch.allow_forking,
                &mut settings.allow_forking,
            ),
        ];
        for (field, wanted, current) in flags {
            if let Some(wanted) = wanted {
                if wanted != *current {
                    changes.insert(field.into(), json!({ "from": *current }));
                    *current = wanted;
                }
            }
        }
        let security = &mut repo.security;
        let mut security_changed = false;
        for (wanted, current) in [
            (patch.secret_scanning, &mut security.secret_scanning),
            (
                patch.secret_scanning_push_protection,
                &mut security.secret_scanning_push_protection,
            ),
        ] {
            if let Some(wanted) = wanted {
                security_changed |= wanted != *current;
                *current = wanted;
            }
        }
        if !changes.is_empty() || security_changed {
            repo.updated_at = chrono::Utc::now();
        }
        let Some((org, repo)) = self
            .repos
            .get(&id)
            .and_then(|repo| Some((self.orgs.get(&repo.owner_key)?, repo)))
        else {
            return Ok(Vec::new());
        };
        let base = self.base_url(None);
        let mut events = Vec::new();
        if !changes.is_empty() {
            events.push(webhooks::repository_edited_event(
                &base,
                org,
                repo,
                Value::Object(changes),
                actor,
            ));
        }
        if security_changed {
            events.push(webhooks::security_and_analysis_event(
                &base,
                org,
                repo,
                previous_security,
                actor,
            ));
        }
        Ok(events)
    }

    /// Replaces the Actions workflow permissions of a repository (no webhook: GitHub has none
    /// for this setting).
    pub(crate) fn set_actions(
        &mut self,
        owner: &str,
        name: &str,
        actions: Actions,
    ) -> Result<(), SimError> {
        let repo = self.repo_mut(owner, name)?;
        repo.actions = actions;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_bodies_are_type_checked() {
        let patch = parse_patch(&json!({
            "description": "d",
            "has_issues": false,
            "homepage": "https://example.com",
            "unknown": [1],
            "security_and_analysis": { "secret_scanning": { "status": "enabled" } },
        }))
        .unwrap();
        assert_eq!(patch.description, Some(Some("d".to_owned())));
        assert_eq!(patch.has_issues, Some(false));
        assert_eq!(patch.secret_scanning, Some(true));
        assert_eq!(patch.secret_scanning_push_protection, None);
        assert!(parse_patch(&json!({ "has_issues": "yes" })).is_err());
        assert!(parse_patch(&json!({ "private": 1 })).is_err());
        assert!(parse_patch(
            &json!({ "security_and_analysis": { "secret_scanning": { "status": "on" } } })
        )
        .is_err());
        assert!(
            parse_patch(&json!({ "security_and_analysis": { "advanced_security": "x" } })).is_err()
        );
        assert!(parse_patch(&json!([])).is_err());
    }

    #[test]
    fn workflow_bodies_are_validated() {
        let current = Actions::default();
        let next =
            parse_workflow(&json!({ "default_workflow_permissions": "read" }), current).unwrap();
        assert_eq!(next.default_workflow_permissions, WorkflowPermissions::Read);
        assert!(!next.can_approve_pull_request_reviews);
        assert!(
            parse_workflow(&json!({ "default_workflow_permissions": "admin" }), current).is_err()
        );
        assert!(parse_workflow(
            &json!({ "can_approve_pull_request_reviews": "yes" }),
            current
        )
        .is_err());
    }
}
