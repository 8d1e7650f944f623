//! Which entities may have changed, given a webhook. Pure and panic-free (it is fuzzed).
//!
//! Level-triggered: the mapping only names entities; the evaluator reads their live state, so
//! nothing here trusts the payload beyond the repository's immutable id and its names.

use plumbline_domain::{EntityRef, EventReason};
use plumbline_proto::v1::EntityEvent;
use serde_json::Value;

/// Events that say "this repository's posture may have changed".
pub const REPOSITORY_EVENTS: &[&str] = &[
    "repository",
    "meta",
    "branch_protection_rule",
    "branch_protection_configuration",
    "repository_ruleset",
    "push",
    "create",
    "member",
    "public",
    "team_add",
    "security_and_analysis",
    "secret_scanning_alert",
    "code_scanning_alert",
    "repository_vulnerability_alert",
    "repository_advisory",
    "security_advisory",
];

/// Events understood besides the repository ones (enrolment, other entity kinds, ping).
const OTHER_KNOWN_EVENTS: &[&str] = &["ping", "installation", "installation_repositories", "pull_request", "release"];

/// Whether `event` is one Plumbline understands (it gets a metrics label of its own).
pub fn is_known_event(event: &str) -> bool {
    REPOSITORY_EVENTS.contains(&event) || OTHER_KNOWN_EVENTS.contains(&event)
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// Records to publish (keyed by entity id).
    Events(Vec<EntityEvent>),
    /// Understood and deliberately not acted on, with the reason.
    Ignored(&'static str),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MappingError {
    #[error("{event} payload has no valid {field}")]
    MissingField { event: String, field: &'static str },
}

fn repo_fields(event: &str, payload: &Value) -> Result<(u64, String, String), MappingError> {
    let missing = |field| MappingError::MissingField {
        event: event.to_string(),
        field,
    };
    let repo = payload.get("repository").filter(|r| r.is_object()).ok_or_else(|| missing("repository"))?;
    let id = repo.get("id").and_then(Value::as_u64).ok_or_else(|| missing("repository.id"))?;
    let name = repo.get("name").and_then(Value::as_str).ok_or_else(|| missing("repository.name"))?;
    let owner = repo
        .get("owner")
        .and_then(|o| o.get("login"))
        .and_then(Value::as_str)
        .ok_or_else(|| missing("repository.owner.login"))?;
    Ok((id, owner.to_string(), name.to_string()))
}

fn repo_event(provider: &str, event: &str, delivery: &str, payload: &Value) -> Result<EntityEvent, MappingError> {
    let (id, owner, name) = repo_fields(event, payload)?;
    let mut ev = EntityEvent::new(&EntityRef::repository(provider, id), EventReason::Webhook);
    ev.owner = owner;
    ev.name = name;
    ev.source_event = event.to_string();
    ev.delivery_id = delivery.to_string();
    Ok(ev)
}

/// Maps one webhook to entity events.
pub fn map_event(provider: &str, event: &str, delivery: &str, payload: &Value) -> Result<Mapped, MappingError> {
    let action = payload.get("action").and_then(Value::as_str).unwrap_or("");
    match event {
        "ping" => Ok(Mapped::Ignored("ping")),
        // Global advisories (GitHub's advisory database) carry no repository.
        "security_advisory" if payload.get("repository").is_none() => Ok(Mapped::Ignored("global security advisory")),
        "repository" if matches!(action, "deleted" | "transferred") => {
            Ok(Mapped::Ignored("repository retirement is not handled by ingest yet"))
        }
        "push" => {
            let (_, _, _) = repo_fields(event, payload)?;
            let git_ref = payload.get("ref").and_then(Value::as_str).unwrap_or("");
            let default = payload
                .get("repository")
                .and_then(|r| r.get("default_branch"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if default.is_empty() || git_ref != format!("refs/heads/{default}") {
                return Ok(Mapped::Ignored("push to a branch other than the default"));
            }
            Ok(Mapped::Events(vec![repo_event(provider, event, delivery, payload)?]))
        }
        e if REPOSITORY_EVENTS.contains(&e) => Ok(Mapped::Events(vec![repo_event(provider, event, delivery, payload)?])),
        _ => Ok(Mapped::Ignored("event not used by plumbline")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn repo() -> Value {
        json!({"id": 42, "name": "r", "owner": {"login": "o"}, "default_branch": "main"})
    }

    #[test]
    fn repository_events_name_the_repository() {
        let m = map_event("github", "branch_protection_rule", "d1", &json!({"action": "deleted", "repository": repo()})).expect("mapped");
        let Mapped::Events(evs) = m else { panic!("expected events") };
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].entity_ref().expect("ref").id(), "github/repository/42");
        assert_eq!((evs[0].owner.as_str(), evs[0].name.as_str(), evs[0].delivery_id.as_str()), ("o", "r", "d1"));
    }

    #[test]
    fn push_only_to_default_branch() {
        let p = |r: &str| json!({"ref": r, "repository": repo()});
        assert!(matches!(map_event("github", "push", "d", &p("refs/heads/main")), Ok(Mapped::Events(_))));
        assert!(matches!(map_event("github", "push", "d", &p("refs/heads/dev")), Ok(Mapped::Ignored(_))));
    }

    #[test]
    fn unknown_and_ping_are_ignored_and_bad_payloads_are_errors() {
        assert_eq!(map_event("github", "ping", "d", &json!({})), Ok(Mapped::Ignored("ping")));
        assert!(matches!(map_event("github", "star", "d", &json!({})), Ok(Mapped::Ignored(_))));
        assert!(map_event("github", "branch_protection_rule", "d", &json!({"repository": {"id": "x"}})).is_err());
        assert!(map_event("github", "member", "d", &json!({})).is_err());
    }
}
