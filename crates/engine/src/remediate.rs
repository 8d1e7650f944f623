//! Remediation plans: what request would fix a failing rule.
//!
//! Planning is pure (current state in, request out) so that `dry_run` can publish exactly the
//! request `on` would send, and so the actuator can tell "already compliant" from "needs a change".

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

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
                o.insert("strict".into(), rsc.get("strict").cloned().unwrap_or(Value::Bool(false)));
                match rsc.get("checks").and_then(Value::as_array) {
                    Some(checks) if !checks.is_empty() => {
                        o.insert("checks".into(), Value::Array(checks.clone()));
                    }
                    _ => {
                        o.insert("contexts".into(), rsc.get("contexts").cloned().unwrap_or(json!([])));
                    }
                }
                Value::Object(o)
            }
            _ => Value::Null,
        },
    );
    req.insert(
        "enforce_admins".into(),
        enabled(cur.get("enforce_admins")).map(Value::Bool).unwrap_or(Value::Null),
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
pub fn plan_branch_protection(path: &str, current: Option<&Value>, patch: &Value) -> Option<PlannedRequest> {
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
            Some(json!({"required_status_checks": null, "enforce_admins": null, "required_pull_request_reviews": null, "restrictions": null}))
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
        assert_eq!(plan_branch_protection("/p", Some(&current), &json!({"allow_force_pushes": false})), None);
        let p = plan_branch_protection("/p", Some(&current), &json!({"required_pull_request_reviews": {"required_approving_review_count": 2}})).expect("a plan");
        let body = p.body.expect("body");
        assert_eq!(body["required_pull_request_reviews"]["required_approving_review_count"], json!(2));
        assert_eq!(body["required_pull_request_reviews"]["dismiss_stale_reviews"], json!(false));
        assert_eq!(body["enforce_admins"], json!(true));
        assert_eq!(body["restrictions"], Value::Null);
        assert_eq!(body["allow_force_pushes"], json!(false));
    }
}
