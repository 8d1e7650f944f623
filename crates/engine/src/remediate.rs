//! Remediation plans: what request would fix a failing rule.
//!
//! Planning is pure (current state in, request out) so that `dry_run` can publish exactly the
//! request `on` would send, and so the actuator can tell "already compliant" from "needs a change".

use crate::template::Template;
use crate::EngineError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// A rule type's remediation, templates parsed.
#[derive(Debug)]
pub(crate) enum CompiledRemediation {
    None,
    /// `rest`: one templated request.
    Rest {
        method: String,
        endpoint: Template,
        body: Option<Template>,
    },
    /// `gh_branch_protection`: a templated JSON merge-patch over the live protection.
    BranchProtection {
        patch: Template,
    },
    /// `pull_request` with Minder's default method (`minder.content`): files with contents.
    PullRequest {
        title: Template,
        body: Template,
        contents: Vec<(Template, Template, String)>,
    },
    /// Loads, but cannot be applied (a pull-request method that rewrites files in place).
    Unsupported(String),
}

impl CompiledRemediation {
    pub(crate) fn compile(r: Option<&crate::model::Remediate>) -> Result<Self, EngineError> {
        let Some(r) = r else {
            return Ok(CompiledRemediation::None);
        };
        let text =
            |v: &Value, field: &str, required: bool| -> Result<Option<String>, EngineError> {
                match v.get(field) {
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    None | Some(Value::Null) if !required => Ok(None),
                    _ => Err(EngineError::Parse(format!(
                        "{} remediation: {field} must be a string",
                        r.kind
                    ))),
                }
            };
        Ok(match r.kind.as_str() {
            "gh_branch_protection" => match &r.gh_branch_protection {
                Some(bp) => CompiledRemediation::BranchProtection {
                    patch: Template::parse(&bp.patch)?,
                },
                None => {
                    return Err(EngineError::Parse(
                        "gh_branch_protection remediation without a patch".into(),
                    ))
                }
            },
            "rest" => {
                let v = r.rest.clone().ok_or_else(|| {
                    EngineError::Parse("rest remediation without a rest section".into())
                })?;
                let method = text(&v, "method", false)?
                    .unwrap_or_else(|| "PATCH".into())
                    .to_ascii_uppercase();
                if !["POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                    return Err(EngineError::Parse(format!(
                        "rest remediation: method {method} changes nothing"
                    )));
                }
                let endpoint = text(&v, "endpoint", true)?.unwrap_or_default();
                CompiledRemediation::Rest {
                    method,
                    endpoint: Template::parse(&endpoint)?,
                    body: text(&v, "body", false)?
                        .map(|b| Template::parse(&b))
                        .transpose()?,
                }
            }
            "pull_request" => {
                let v = r.pull_request.clone().ok_or_else(|| {
                    EngineError::Parse(
                        "pull_request remediation without a pull_request section".into(),
                    )
                })?;
                let method = text(&v, "method", false)?.unwrap_or_else(|| "minder.content".into());
                if method != "minder.content" {
                    return Ok(CompiledRemediation::Unsupported(format!(
                        "pull request method {method:?} is not supported yet"
                    )));
                }
                let mut contents = Vec::new();
                for c in v
                    .get("contents")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let path = text(c, "path", true)?.unwrap_or_default();
                    let content = text(c, "content", true)?.unwrap_or_default();
                    let mode = text(c, "mode", false)?.unwrap_or_else(|| "100644".into());
                    if !["100644", "100755", "120000"].contains(&mode.as_str()) {
                        return Err(EngineError::Parse(format!(
                            "pull_request remediation: {path}: mode {mode} is not a file mode"
                        )));
                    }
                    if let Some(action) = text(c, "action", false)? {
                        if action != "replace" {
                            return Ok(CompiledRemediation::Unsupported(format!(
                                "pull request content action {action:?} is not supported yet"
                            )));
                        }
                    }
                    contents.push((Template::parse(&path)?, Template::parse(&content)?, mode));
                }
                if contents.is_empty() {
                    return Err(EngineError::Parse(
                        "pull_request remediation without contents".into(),
                    ));
                }
                CompiledRemediation::PullRequest {
                    title: Template::parse(&text(&v, "title", true)?.unwrap_or_default())?,
                    body: Template::parse(&text(&v, "body", false)?.unwrap_or_default())?,
                    contents,
                }
            }
            other => CompiledRemediation::Unsupported(format!(
                "remediation type {other:?} is not supported yet"
            )),
        })
    }
}

/// What would fix a failing rule, planned against live state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Remediation {
    /// One request (`rest`, and `gh_branch_protection` after merging the patch over the live
    /// protection).
    Request(PlannedRequest),
    /// A pull request carrying these files into the base branch.
    PullRequest(PullRequestPlan),
}

/// A pull request remediation: the files to commit and the request's text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullRequestPlan {
    pub title: String,
    pub body: String,
    /// The branch the pull request goes into (the rule's branch parameter or the default).
    pub base: String,
    pub files: Vec<PlannedFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedFile {
    pub path: String,
    /// `100644`, `100755` or `120000`.
    pub mode: String,
    pub content: String,
}

/// A rule type's alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertKind {
    /// A draft repository security advisory, opened on failure and closed on pass.
    SecurityAdvisory,
    /// An issue, for repositories where advisories are unavailable.
    Issue,
}

/// A request the actuator will send (or, in dry-run, publish without sending).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedRequest {
    pub method: String,
    /// Relative to the provider's API root.
    pub path: String,
    pub body: Option<Value>,
}

/// Boolean settings that GET returns as `{"enabled": b}` and PUT takes as plain booleans.
const TOGGLES: &[&str] = &[
    "required_linear_history",
    "allow_force_pushes",
    "allow_deletions",
    "block_creations",
    "required_conversation_resolution",
    "lock_branch",
    "allow_fork_syncing",
];

fn enabled(v: Option<&Value>) -> Option<bool> {
    v.and_then(|x| x.get("enabled")).and_then(Value::as_bool)
}

fn logins(v: Option<&Value>, field: &str) -> Value {
    Value::Array(
        v.and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| x.get(field).cloned()).collect())
            .unwrap_or_default(),
    )
}

/// Converts GitHub's GET branch-protection answer into the PUT request that would recreate it.
///
/// `None` (the branch is not protected, GitHub's 404) gives the minimal request: GitHub requires
/// the four keys `required_status_checks`, `enforce_admins`, `required_pull_request_reviews` and
/// `restrictions` to be present, and `null` switches each off.
pub fn protection_to_request(current: Option<&Value>) -> Value {
    let mut req = Map::new();
    let cur = current.unwrap_or(&Value::Null);
    req.insert(
        "required_status_checks".into(),
        match cur.get("required_status_checks") {
            Some(rsc) if rsc.is_object() => {
                let mut o = Map::new();
                o.insert(
                    "strict".into(),
                    rsc.get("strict").cloned().unwrap_or(Value::Bool(false)),
                );
                match rsc.get("checks").and_then(Value::as_array) {
                    Some(checks) if !checks.is_empty() => {
                        o.insert("checks".into(), Value::Array(checks.clone()));
                    }
                    _ => {
                        o.insert(
                            "contexts".into(),
                            rsc.get("contexts").cloned().unwrap_or(json!([])),
                        );
                    }
                }
                Value::Object(o)
            }
            _ => Value::Null,
        },
    );
    req.insert(
        "enforce_admins".into(),
        enabled(cur.get("enforce_admins"))
            .map(Value::Bool)
            .unwrap_or(Value::Null),
    );
    req.insert(
        "required_pull_request_reviews".into(),
        match cur.get("required_pull_request_reviews") {
            Some(r) if r.is_object() => {
                let mut o = Map::new();
                for k in [
                    "dismiss_stale_reviews",
                    "require_code_owner_reviews",
                    "required_approving_review_count",
                    "require_last_push_approval",
                ] {
                    if let Some(v) = r.get(k) {
                        o.insert(k.into(), v.clone());
                    }
                }
                for k in ["dismissal_restrictions", "bypass_pull_request_allowances"] {
                    if let Some(d) = r.get(k).filter(|d| d.is_object()) {
                        o.insert(
                            k.into(),
                            json!({
                                "users": logins(d.get("users"), "login"),
                                "teams": logins(d.get("teams"), "slug"),
                                "apps": logins(d.get("apps"), "slug"),
                            }),
                        );
                    }
                }
                Value::Object(o)
            }
            _ => Value::Null,
        },
    );
    req.insert(
        "restrictions".into(),
        match cur.get("restrictions") {
            Some(r) if r.is_object() => json!({
                "users": logins(r.get("users"), "login"),
                "teams": logins(r.get("teams"), "slug"),
                "apps": logins(r.get("apps"), "slug"),
            }),
            _ => Value::Null,
        },
    );
    for t in TOGGLES {
        if let Some(b) = enabled(cur.get(*t)) {
            req.insert((*t).into(), Value::Bool(b));
        }
    }
    Value::Object(req)
}

/// The PUT that applies `patch` (a JSON merge-patch, RFC 7396) over the current protection.
/// Returns `None` when the branch is already protected and the patch changes nothing.
pub fn plan_branch_protection(
    path: &str,
    current: Option<&Value>,
    patch: &Value,
) -> Option<PlannedRequest> {
    let base = protection_to_request(current);
    let mut desired = base.clone();
    json_patch::merge(&mut desired, patch);
    if current.is_some() && desired == base {
        return None;
    }
    Some(PlannedRequest {
        method: "PUT".into(),
        path: path.to_string(),
        body: Some(desired),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unprotected_branch_gets_minimal_request() {
        let p = plan_branch_protection("/p", None, &json!({})).expect("a plan");
        assert_eq!(
            p.body,
            Some(
                json!({"required_status_checks": null, "enforce_admins": null, "required_pull_request_reviews": null, "restrictions": null})
            )
        );
    }

    #[test]
    fn patch_merges_over_current_and_noop_is_none() {
        let current = json!({
            "url": "u",
            "enforce_admins": {"url": "x", "enabled": true},
            "required_pull_request_reviews": {"url": "y", "dismiss_stale_reviews": false, "require_code_owner_reviews": false, "required_approving_review_count": 1},
            "allow_force_pushes": {"enabled": false}
        });
        assert_eq!(
            plan_branch_protection("/p", Some(&current), &json!({"allow_force_pushes": false})),
            None
        );
        let p = plan_branch_protection(
            "/p",
            Some(&current),
            &json!({"required_pull_request_reviews": {"required_approving_review_count": 2}}),
        )
        .expect("a plan");
        let body = p.body.expect("body");
        assert_eq!(
            body["required_pull_request_reviews"]["required_approving_review_count"],
            json!(2)
        );
        assert_eq!(
            body["required_pull_request_reviews"]["dismiss_stale_reviews"],
            json!(false)
        );
        assert_eq!(body["enforce_admins"], json!(true));
        assert_eq!(body["restrictions"], Value::Null);
        assert_eq!(body["allow_force_pushes"], json!(false));
    }
}
