//! Which entities may have changed, given a webhook. Pure and panic-free (it is fuzzed: see
//! `fuzz/` and the README).
//!
//! Level-triggered: the mapping only names entities; the evaluator reads their live state, so
//! nothing here trusts the payload beyond ids and names. What the payload must hold for an event
//! Plumbline acts on is checked strictly (a `repository` without a numeric id is a 400, not a
//! record keyed by nothing); the rest of the payload is not looked at. Error messages name the
//! field, never its value, so they can be logged without leaking payload content.

use plumbline_domain::{EntityKind, EntityRef, EventReason};
use plumbline_proto::v1::{self, EntityEvent};
use serde_json::Value;

/// Events that say "this repository's posture may have changed". Minder's list, plus
/// `deploy_key` and `dependabot_alert`, which change what posture rules read too.
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
    "deploy_key",
    "dependabot_alert",
];

/// Events understood besides the repository ones (enrolment, other entity kinds, ping).
pub const OTHER_KNOWN_EVENTS: &[&str] = &[
    "ping",
    "installation",
    "installation_repositories",
    "pull_request",
    "release",
    "package",
    "registry_package",
];

/// Whether `event` is one Plumbline understands (it gets a metrics label of its own).
pub fn is_known_event(event: &str) -> bool {
    REPOSITORY_EVENTS.contains(&event) || OTHER_KNOWN_EVENTS.contains(&event)
}

/// A repository as a webhook names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRef {
    pub id: u64,
    pub owner: String,
    pub name: String,
    /// Present when the payload carries the full repository (not in installation events).
    pub default_branch: Option<String>,
    pub private: Option<bool>,
}

impl RepoRef {
    pub fn entity_ref(&self, provider: &str) -> EntityRef {
        EntityRef::repository(provider, self.id)
    }
}

/// What one webhook asks of ingest: enrolments first, then records to publish.
///
/// Retirements and renames are only announced (a `RETIRED` or webhook record carrying the
/// names the payload gives): a signed body can be replayed, so the evaluator applies them only
/// once GitHub confirms them (see its `confirm_identity`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Repositories to register (or re-activate) in the store, when enrolment is on. The
    /// evaluator retires again one whose name GitHub does not know.
    pub enroll: Vec<RepoRef>,
    /// Records for the entity-events topic, keyed by entity id.
    pub events: Vec<EntityEvent>,
    /// The GitHub App installation that delivered the event (`installation.id`), if any:
    /// repositories it enrolls join the project that installation is a provider of.
    pub installation: Option<i64>,
    /// Pull requests and artifacts to enroll under their repository (only if that repository
    /// is registered; the evaluator then confirms each with GitHub, or retires it).
    pub children: Vec<ChildRef>,
}

/// A pull request or an artifact a webhook names, under the repository it belongs to, with
/// what the evaluator needs to find it again (a pull request's number; a package's account,
/// account kind and name). Nothing else of the payload is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildRef {
    pub repository: EntityRef,
    pub child: EntityRef,
    pub properties: Value,
}

/// `package` / `registry_package` actions after which a version exists (a new image, or a
/// new tag on one).
const PACKAGE_ACTIONS: &[&str] = &["published", "updated"];

/// `pull_request` actions after which the pull request is open (or may be): it is enrolled.
/// "closed" is only announced: the evaluator retires it once GitHub says it is closed.
const PULL_OPEN_ACTIONS: &[&str] = &[
    "opened",
    "reopened",
    "synchronize",
    "edited",
    "ready_for_review",
    "converted_to_draft",
    "labeled",
    "unlabeled",
];

#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// Something to do.
    Plan(Plan),
    /// Understood and deliberately not acted on, with the reason.
    Ignored(&'static str),
    /// An event Plumbline does not use.
    Unknown,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MappingError {
    #[error("payload is not json: {0}")]
    NotJson(String),
    #[error("payload is not a json object")]
    NotObject,
    #[error("{event} payload has no valid {field}")]
    MissingField { event: String, field: &'static str },
}

/// Parses a webhook body and maps it. The fuzz target's entry point.
///
/// The body is parsed in full (malformed JSON anywhere is an error) but only the fields the
/// mapping reads are built (see `prune`).
pub fn parse_and_map(
    provider: &str,
    event: &str,
    delivery: &str,
    body: &[u8],
) -> Result<Mapped, MappingError> {
    if !is_known_event(event) {
        // Not parsed at all: an event we do not use cannot be malformed for us.
        return Ok(Mapped::Unknown);
    }
    let payload: Value = crate::prune::parse(body).map_err(|e| {
        // serde_json's messages give a category and a position, never input bytes.
        MappingError::NotJson(e.to_string())
    })?;
    if !payload.is_object() {
        return Err(MappingError::NotObject);
    }
    let installation = payload
        .get("installation")
        .and_then(|i| i.get("id"))
        .and_then(Value::as_i64)
        .filter(|id| *id > 0);
    Ok(match map_event(provider, event, delivery, &payload)? {
        Mapped::Plan(plan) => Mapped::Plan(Plan {
            installation,
            ..plan
        }),
        other => other,
    })
}

struct Fields<'a> {
    event: &'a str,
}

impl Fields<'_> {
    fn missing(&self, field: &'static str) -> MappingError {
        MappingError::MissingField {
            event: self.event.to_string(),
            field,
        }
    }

    fn object<'v>(
        &self,
        v: &'v Value,
        key: &str,
        field: &'static str,
    ) -> Result<&'v Value, MappingError> {
        v.get(key)
            .filter(|o| o.is_object())
            .ok_or_else(|| self.missing(field))
    }

    fn id(&self, v: &Value, field: &'static str) -> Result<u64, MappingError> {
        v.get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| self.missing(field))
    }

    fn name(&self, v: &Value, key: &str, field: &'static str) -> Result<String, MappingError> {
        v.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| self.missing(field))
    }

    /// The full `repository` object of repository-scoped events.
    fn repository(&self, payload: &Value) -> Result<RepoRef, MappingError> {
        let repo = self.object(payload, "repository", "repository")?;
        let id = self.id(repo, "repository.id")?;
        let name = self.name(repo, "name", "repository.name")?;
        let owner = repo
            .get("owner")
            .and_then(|o| o.get("login"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.missing("repository.owner.login"))?;
        Ok(RepoRef {
            id,
            owner: owner.to_string(),
            name,
            default_branch: repo
                .get("default_branch")
                .and_then(Value::as_str)
                .map(str::to_string),
            private: repo.get("private").and_then(Value::as_bool),
        })
    }

    /// The short repository entries of installation events (`id`, `name`, `full_name`).
    fn repository_list(
        &self,
        payload: &Value,
        key: &str,
        field: &'static str,
        account: Option<&str>,
    ) -> Result<Vec<RepoRef>, MappingError> {
        let Some(list) = payload.get(key) else {
            return Ok(Vec::new());
        };
        let list = list.as_array().ok_or_else(|| self.missing(field))?;
        list.iter()
            .map(|r| {
                let id = r
                    .get("id")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| self.missing(field))?;
                let name = r
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| self.missing(field))?;
                let owner = r
                    .get("full_name")
                    .and_then(Value::as_str)
                    .and_then(|f| f.split_once('/'))
                    .map(|(o, _)| o)
                    .or(account)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| self.missing(field))?;
                Ok(RepoRef {
                    id,
                    owner: owner.to_string(),
                    name: name.to_string(),
                    default_branch: None,
                    private: r.get("private").and_then(Value::as_bool),
                })
            })
            .collect()
    }
}

fn event_for(
    provider: &str,
    entity: EntityRef,
    reason: EventReason,
    repo: &RepoRef,
    event: &str,
    delivery: &str,
) -> EntityEvent {
    let mut ev = EntityEvent::new(&entity, reason);
    ev.owner = repo.owner.clone();
    ev.name = repo.name.clone();
    ev.source_event = event.to_string();
    ev.delivery_id = delivery.to_string();
    if entity.kind != EntityKind::Repository {
        ev.parent = Some(v1::EntityRef::from(&repo.entity_ref(provider)));
    }
    ev
}

fn repo_events(
    provider: &str,
    repos: &[RepoRef],
    reason: EventReason,
    event: &str,
    delivery: &str,
) -> Vec<EntityEvent> {
    repos
        .iter()
        .map(|r| event_for(provider, r.entity_ref(provider), reason, r, event, delivery))
        .collect()
}

/// A pull request or release: its own id, its repository as the parent.
fn child_event(
    provider: &str,
    f: &Fields<'_>,
    payload: &Value,
    key: &str,
    kind: EntityKind,
    delivery: &str,
) -> Result<Mapped, MappingError> {
    let (object_field, id_field) = match kind {
        EntityKind::PullRequest => ("pull_request", "pull_request.id"),
        _ => ("release", "release.id"),
    };
    let repo = f.repository(payload)?;
    let child = f.object(payload, key, object_field)?;
    let id = f.id(child, id_field)?;
    let action = payload.get("action").and_then(Value::as_str).unwrap_or("");
    let reason = if kind == EntityKind::Release && action == "deleted" {
        EventReason::Retired
    } else {
        EventReason::Webhook
    };
    let entity = EntityRef {
        provider: provider.to_string(),
        kind,
        upstream_id: id.to_string(),
    };
    let mut ev = event_for(provider, entity.clone(), reason, &repo, f.event, delivery);
    let mut children = Vec::new();
    if kind == EntityKind::PullRequest {
        ev.number = child
            .get("number")
            .and_then(Value::as_i64)
            .filter(|n| *n > 0)
            .ok_or_else(|| f.missing("pull_request.number"))?;
        if PULL_OPEN_ACTIONS.contains(&action) {
            children.push(ChildRef {
                repository: repo.entity_ref(provider),
                child: entity,
                properties: serde_json::json!({ "number": ev.number }),
            });
        }
    }
    Ok(Mapped::Plan(Plan {
        events: vec![ev],
        children,
        ..Plan::default()
    }))
}

/// A container image version published by a repository's workflow (`package` or
/// `registry_package`, under the key of the same name). Other package types are not entities.
fn package_event(
    provider: &str,
    f: &Fields<'_>,
    payload: &Value,
    key: &str,
    delivery: &str,
) -> Result<Mapped, MappingError> {
    let action = payload.get("action").and_then(Value::as_str).unwrap_or("");
    if !PACKAGE_ACTIONS.contains(&action) {
        return Ok(Mapped::Ignored("package action that adds no version"));
    }
    let package = f.object(payload, key, "package")?;
    let package_type = package
        .get("package_type")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !package_type.eq_ignore_ascii_case("container") {
        return Ok(Mapped::Ignored("not a container package"));
    }
    let repo = f.repository(payload)?;
    let name = f.name(package, "name", "package.name")?;
    let owner = package
        .get("owner")
        .filter(|o| o.is_object())
        .ok_or_else(|| f.missing("package.owner"))?;
    let owner_login = f.name(owner, "login", "package.owner.login")?;
    let owner_type = owner.get("type").and_then(Value::as_str).unwrap_or("User");
    let version = f.object(package, "package_version", "package.package_version")?;
    let version_id = f.id(version, "package.package_version.id")?;
    let entity = EntityRef {
        provider: provider.to_string(),
        kind: EntityKind::Artifact,
        upstream_id: version_id.to_string(),
    };
    let ev = event_for(
        provider,
        entity.clone(),
        EventReason::Webhook,
        &repo,
        f.event,
        delivery,
    );
    Ok(Mapped::Plan(Plan {
        events: vec![ev],
        children: vec![ChildRef {
            repository: repo.entity_ref(provider),
            child: entity,
            properties: serde_json::json!({
                "type": "container",
                "package_owner": owner_login,
                "package_owner_type": if owner_type.eq_ignore_ascii_case("organization") { "Organization" } else { "User" },
                "package_name": name,
                "version_id": version_id,
                "repo_id": repo.id,
            }),
        }],
        ..Plan::default()
    }))
}

/// Maps one parsed webhook to what ingest must do.
pub fn map_event(
    provider: &str,
    event: &str,
    delivery: &str,
    payload: &Value,
) -> Result<Mapped, MappingError> {
    let f = Fields { event };
    let action = payload.get("action").and_then(Value::as_str).unwrap_or("");
    let reevaluate = |repo: RepoRef| Plan {
        events: repo_events(
            provider,
            std::slice::from_ref(&repo),
            EventReason::Webhook,
            event,
            delivery,
        ),
        ..Plan::default()
    };
    match event {
        "ping" => Ok(Mapped::Ignored("ping")),
        // Global advisories (GitHub's advisory database) carry no repository.
        "security_advisory" if payload.get("repository").is_none() => {
            Ok(Mapped::Ignored("global security advisory"))
        }
        // An organisation webhook was deleted: no repository to re-evaluate.
        "meta" if payload.get("repository").is_none() => {
            Ok(Mapped::Ignored("organisation webhook deleted"))
        }
        "repository" => {
            let repo = f.repository(payload)?;
            match action {
                // Transferred: Minder treats the repository as gone from this installation; if it
                // is still reachable, the reconciler's re-listing enrolls it again under its new owner.
                "deleted" | "transferred" => Ok(Mapped::Plan(Plan {
                    events: repo_events(
                        provider,
                        std::slice::from_ref(&repo),
                        EventReason::Retired,
                        event,
                        delivery,
                    ),
                    ..Plan::default()
                })),
                "created" => Ok(Mapped::Plan(Plan {
                    events: repo_events(
                        provider,
                        std::slice::from_ref(&repo),
                        EventReason::Registered,
                        event,
                        delivery,
                    ),
                    enroll: vec![repo],
                    ..Plan::default()
                })),
                // The record carries the new names; the evaluator takes them once they lead
                // to this repository.
                _ => Ok(Mapped::Plan(reevaluate(repo))),
            }
        }
        "push" => {
            let repo = f.repository(payload)?;
            let git_ref = payload
                .get("ref")
                .and_then(Value::as_str)
                .ok_or_else(|| f.missing("ref"))?;
            match &repo.default_branch {
                Some(default) if git_ref.strip_prefix("refs/heads/") == Some(default.as_str()) => {
                    Ok(Mapped::Plan(reevaluate(repo)))
                }
                _ => Ok(Mapped::Ignored("push to a branch other than the default")),
            }
        }
        "installation" | "installation_repositories" => {
            let installation = f.object(payload, "installation", "installation")?;
            let account = installation
                .get("account")
                .and_then(|a| a.get("login"))
                .and_then(Value::as_str);
            let (added, removed) = if event == "installation" {
                let repos = f.repository_list(payload, "repositories", "repositories", account)?;
                match action {
                    "created" => (repos, vec![]),
                    "deleted" => (vec![], repos),
                    // Access comes back or widens: re-evaluate what is listed (still enrolled).
                    "unsuspend" | "new_permissions_accepted" => {
                        return Ok(if repos.is_empty() {
                            Mapped::Ignored("installation event lists no repositories")
                        } else {
                            Mapped::Plan(Plan {
                                events: repo_events(
                                    provider,
                                    &repos,
                                    EventReason::Webhook,
                                    event,
                                    delivery,
                                ),
                                ..Plan::default()
                            })
                        })
                    }
                    // Suspended: repositories stay enrolled; reads fail until it is lifted.
                    _ => {
                        return Ok(Mapped::Ignored(
                            "installation change without repository changes",
                        ))
                    }
                }
            } else {
                (
                    f.repository_list(
                        payload,
                        "repositories_added",
                        "repositories_added",
                        account,
                    )?,
                    f.repository_list(
                        payload,
                        "repositories_removed",
                        "repositories_removed",
                        account,
                    )?,
                )
            };
            if added.is_empty() && removed.is_empty() {
                return Ok(Mapped::Ignored("installation event lists no repositories"));
            }
            let mut events =
                repo_events(provider, &added, EventReason::Registered, event, delivery);
            events.extend(repo_events(
                provider,
                &removed,
                EventReason::Retired,
                event,
                delivery,
            ));
            Ok(Mapped::Plan(Plan {
                enroll: added,
                events,
                ..Plan::default()
            }))
        }
        "pull_request" => child_event(
            provider,
            &f,
            payload,
            "pull_request",
            EntityKind::PullRequest,
            delivery,
        ),
        "release" => child_event(
            provider,
            &f,
            payload,
            "release",
            EntityKind::Release,
            delivery,
        ),
        "package" | "registry_package" => package_event(provider, &f, payload, event, delivery),
        e if REPOSITORY_EVENTS.contains(&e) => Ok(Mapped::Plan(reevaluate(f.repository(payload)?))),
        _ => Ok(Mapped::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn repo() -> Value {
        json!({"id": 42, "name": "r", "owner": {"login": "o"}, "default_branch": "main"})
    }

    fn plan(m: Result<Mapped, MappingError>) -> Plan {
        match m {
            Ok(Mapped::Plan(p)) => p,
            other => panic!("expected a plan, got {other:?}"),
        }
    }

    #[test]
    fn repository_events_name_the_repository() {
        let p = plan(map_event(
            "github",
            "branch_protection_rule",
            "d1",
            &json!({"action": "deleted", "repository": repo()}),
        ));
        assert_eq!(p.events.len(), 1);
        assert_eq!(
            p.events[0].entity_ref().expect("ref").id(),
            "github/repository/42"
        );
        assert_eq!(
            (
                p.events[0].owner.as_str(),
                p.events[0].name.as_str(),
                p.events[0].delivery_id.as_str()
            ),
            ("o", "r", "d1")
        );
        assert!(p.enroll.is_empty());
    }

    #[test]
    fn events_beyond_the_corpus_map_too() {
        for e in [
            "branch_protection_configuration",
            "repository_ruleset",
            "security_and_analysis",
            "repository_advisory",
        ] {
            let p = plan(map_event(
                "github",
                e,
                "d",
                &json!({"action": "x", "repository": repo()}),
            ));
            assert_eq!(p.events[0].source_event, e);
        }
    }

    #[test]
    fn push_only_to_default_branch() {
        let p = |r: &str| json!({"ref": r, "repository": repo()});
        assert!(matches!(
            map_event("github", "push", "d", &p("refs/heads/main")),
            Ok(Mapped::Plan(_))
        ));
        assert!(matches!(
            map_event("github", "push", "d", &p("refs/heads/dev")),
            Ok(Mapped::Ignored(_))
        ));
        assert!(matches!(
            map_event("github", "push", "d", &p("refs/tags/main")),
            Ok(Mapped::Ignored(_))
        ));
        assert!(
            map_event("github", "push", "d", &json!({"repository": repo()})).is_err(),
            "push without ref"
        );
    }

    #[test]
    fn repository_lifecycle() {
        let p = plan(map_event(
            "github",
            "repository",
            "d",
            &json!({"action": "deleted", "repository": repo()}),
        ));
        assert!(
            p.enroll.is_empty(),
            "only announced: the evaluator confirms it"
        );
        assert_eq!(p.events[0].reason, v1::EventReason::Retired as i32);
        let p = plan(map_event(
            "github",
            "repository",
            "d",
            &json!({"action": "created", "repository": repo()}),
        ));
        assert_eq!(p.enroll[0].default_branch.as_deref(), Some("main"));
        let p = plan(map_event(
            "github",
            "repository",
            "d",
            &json!({"action": "renamed", "repository": repo()}),
        ));
        assert_eq!(
            (p.events[0].owner.as_str(), p.events[0].name.as_str()),
            ("o", "r"),
            "the new names ride on the record"
        );
        assert_eq!(p.events[0].reason, v1::EventReason::Webhook as i32);
    }

    #[test]
    fn installation_repositories_enroll_and_retire() {
        let body = json!({
            "action": "added",
            "installation": {"id": 1, "account": {"login": "acme"}},
            "repositories_added": [{"id": 1, "name": "a", "full_name": "acme/a", "private": true}],
            "repositories_removed": [{"id": 2, "name": "b"}],
        });
        let p = plan(map_event("github", "installation_repositories", "d", &body));
        assert_eq!(
            p.enroll,
            vec![RepoRef {
                id: 1,
                owner: "acme".into(),
                name: "a".into(),
                default_branch: None,
                private: Some(true)
            }]
        );
        assert_eq!(p.events.len(), 2);
        assert_eq!(
            (p.events[1].owner.as_str(), p.events[1].reason),
            ("acme", v1::EventReason::Retired as i32),
            "owner from the installation account"
        );
        let bad = json!({"action": "added", "installation": {"id": 1}, "repositories_added": [{"id": "1", "name": "a"}]});
        assert!(map_event("github", "installation_repositories", "d", &bad).is_err());
    }

    #[test]
    fn container_packages_enroll_their_version_under_the_repository() {
        let payload = |action: &str, package_type: &str| {
            json!({"action": action, "repository": repo(), "package": {
                "name": "web", "package_type": package_type,
                "owner": {"login": "o", "type": "Organization"},
                "package_version": {"id": 77, "version": "sha256:00"}}})
        };
        for event in ["package", "registry_package"] {
            let mut body = payload("published", "CONTAINER");
            if event == "registry_package" {
                let p = body["package"].take();
                body["registry_package"] = p;
            }
            let p = plan(map_event("github", event, "d", &body));
            let ev = &p.events[0];
            assert_eq!(ev.entity_ref().expect("ref").id(), "github/artifact/77");
            assert_eq!(
                ev.parent.as_ref().map(|r| r.upstream_id.as_str()),
                Some("42")
            );
            assert_eq!(
                p.children,
                vec![ChildRef {
                    repository: EntityRef::repository("github", 42),
                    child: ev.entity_ref().expect("ref"),
                    properties: json!({"type": "container", "package_owner": "o",
                        "package_owner_type": "Organization", "package_name": "web",
                        "version_id": 77, "repo_id": 42}),
                }],
                "{event}"
            );
        }
        assert_eq!(
            map_event("github", "package", "d", &payload("published", "npm")),
            Ok(Mapped::Ignored("not a container package"))
        );
        assert!(matches!(
            map_event("github", "package", "d", &payload("deleted", "container")),
            Ok(Mapped::Ignored(_))
        ));
        let mut no_version = payload("updated", "container");
        no_version["package"]["package_version"] = json!({"id": "x"});
        assert!(map_event("github", "package", "d", &no_version).is_err());
        let mut no_repo = payload("updated", "container");
        no_repo["repository"] = Value::Null;
        assert!(map_event("github", "package", "d", &no_repo).is_err());
    }

    #[test]
    fn pull_requests_and_releases_name_their_repository() {
        let p = plan(map_event(
            "github",
            "pull_request",
            "d",
            &json!({"action": "opened", "repository": repo(), "pull_request": {"id": 9, "number": 3}}),
        ));
        let ev = &p.events[0];
        assert_eq!(ev.entity_ref().expect("ref").id(), "github/pull_request/9");
        assert_eq!(ev.number, 3);
        assert_eq!(
            ev.parent.as_ref().map(|r| r.upstream_id.as_str()),
            Some("42")
        );
        assert_eq!(
            p.children,
            vec![ChildRef {
                repository: EntityRef::repository("github", 42),
                child: ev.entity_ref().expect("ref"),
                properties: json!({"number": 3}),
            }],
            "an opened pull request is enrolled under its repository"
        );
        // Closing is only announced: the evaluator retires it once GitHub says it is closed.
        let closed = plan(map_event(
            "github",
            "pull_request",
            "d",
            &json!({"action": "closed", "repository": repo(), "pull_request": {"id": 9, "number": 3}}),
        ));
        assert!(closed.children.is_empty());
        assert_eq!(closed.events.len(), 1);
        for action in ["synchronize", "reopened", "edited", "labeled"] {
            let p = plan(map_event(
                "github",
                "pull_request",
                "d",
                &json!({"action": action, "repository": repo(), "pull_request": {"id": 9, "number": 3}}),
            ));
            assert_eq!(p.children.len(), 1, "{action}");
        }
        assert!(
            map_event(
                "github",
                "pull_request",
                "d",
                &json!({"action": "opened", "repository": repo(), "pull_request": {"id": 9, "number": 0}})
            )
            .is_err(),
            "a pull request numbered 0 is refused"
        );
        assert!(map_event(
            "github",
            "pull_request",
            "d",
            &json!({"repository": repo(), "pull_request": {"id": 9}})
        )
        .is_err());
        let p = plan(map_event(
            "github",
            "release",
            "d",
            &json!({"action": "deleted", "repository": repo(), "release": {"id": 5}}),
        ));
        assert_eq!(p.events[0].reason, v1::EventReason::Retired as i32);
    }

    #[test]
    fn unknown_and_ping_are_ignored_and_bad_payloads_are_errors() {
        assert_eq!(
            parse_and_map("github", "ping", "d", b"{}"),
            Ok(Mapped::Ignored("ping"))
        );
        assert_eq!(
            parse_and_map("github", "star", "d", b"not even json"),
            Ok(Mapped::Unknown)
        );
        assert_eq!(
            parse_and_map("github", "member", "d", b"[1]"),
            Err(MappingError::NotObject)
        );
        assert!(matches!(
            parse_and_map("github", "member", "d", b"{\"a\":"),
            Err(MappingError::NotJson(_))
        ));
        let e = parse_and_map(
            "github",
            "branch_protection_rule",
            "d",
            br#"{"repository": {"id": "secret-value"}}"#,
        )
        .expect_err("typed");
        assert!(
            !e.to_string().contains("secret-value"),
            "errors never quote the payload: {e}"
        );
        assert!(map_event("github", "member", "d", &json!({})).is_err());
    }
}
