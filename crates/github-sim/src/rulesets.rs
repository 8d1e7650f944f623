//! Repository rulesets (`GET/POST /repos/{owner}/{repo}/rulesets`) and the rules that apply to
//! a branch (`GET /repos/{owner}/{repo}/rules/branches/{branch}`).
//!
//! A ruleset targets refs through `conditions.ref_name`: `include` and `exclude` hold
//! `~DEFAULT_BRANCH`, `~ALL` or full ref patterns in fnmatch syntax (`refs/heads/release/*`),
//! matched like GitHub's `File.fnmatch` with `FNM_PATHNAME`: `*` and `?` stop at `/`, `**/`
//! spans directories. A ruleset applies to a branch when an include pattern matches and no
//! exclude pattern does; the branch endpoint lists the rules of the *active* branch rulesets
//! only (`evaluate` and `disabled` ones are not enforced), each tagged with its ruleset.
//!
//! Rules are stored as sent (`type` plus `parameters`) after checking the type is one GitHub
//! knows and the parameters GitHub requires for it are there with the right types.
//!
//! Webhooks: `repository_ruleset` "created" (REST and admin), "edited" and "deleted" (admin).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::api::{
    base_of, find_repo, json_response, paginate, parse_json, set_header, with_link, ApiError,
    PageParams, Tag,
};
use crate::objects::{invalid_type, object};
use crate::render::{node_id, time};
use crate::state::{Actor, Org, Repo, State as SimState};
use crate::webhooks::Event;
use crate::{SimError, Simulator};

const ROUTE_RULESETS: &str = "/repos/{owner}/{repo}/rulesets";
const ROUTE_BRANCH_RULES: &str = "/repos/{owner}/{repo}/rules/branches/{branch}";

const DOCS_LIST: &str = "https://docs.github.com/rest/repos/rules#get-all-repository-rulesets";
const DOCS_CREATE: &str = "https://docs.github.com/rest/repos/rules#create-a-repository-ruleset";
const DOCS_BRANCH_RULES: &str = "https://docs.github.com/rest/repos/rules#get-rules-for-a-branch";

/// Type of a required rule parameter.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Bool,
    Int,
    Str,
    Array,
}

const PATTERN: &[(&str, Kind)] = &[("operator", Kind::Str), ("pattern", Kind::Str)];

/// Rule types GitHub accepts in repository rulesets and the parameters each requires.
const RULE_TYPES: &[(&str, &[(&str, Kind)])] = &[
    ("creation", &[]),
    ("update", &[("update_allows_fetch_and_merge", Kind::Bool)]),
    ("deletion", &[]),
    ("required_linear_history", &[]),
    (
        "merge_queue",
        &[
            ("check_response_timeout_minutes", Kind::Int),
            ("grouping_strategy", Kind::Str),
            ("max_entries_to_build", Kind::Int),
            ("max_entries_to_merge", Kind::Int),
            ("merge_method", Kind::Str),
            ("min_entries_to_merge", Kind::Int),
            ("min_entries_to_merge_wait_minutes", Kind::Int),
        ],
    ),
    (
        "required_deployments",
        &[("required_deployment_environments", Kind::Array)],
    ),
    ("required_signatures", &[]),
    (
        "pull_request",
        &[
            ("dismiss_stale_reviews_on_push", Kind::Bool),
            ("require_code_owner_review", Kind::Bool),
            ("require_last_push_approval", Kind::Bool),
            ("required_approving_review_count", Kind::Int),
            ("required_review_thread_resolution", Kind::Bool),
        ],
    ),
    (
        "required_status_checks",
        &[
            ("required_status_checks", Kind::Array),
            ("strict_required_status_checks_policy", Kind::Bool),
        ],
    ),
    ("non_fast_forward", &[]),
    ("commit_message_pattern", PATTERN),
    ("commit_author_email_pattern", PATTERN),
    ("committer_email_pattern", PATTERN),
    ("branch_name_pattern", PATTERN),
    ("tag_name_pattern", PATTERN),
    ("workflows", &[("workflows", Kind::Array)]),
    ("code_scanning", &[("code_scanning_tools", Kind::Array)]),
    ("copilot_code_review", &[]),
    ("license_compliance_scanning", &[]),
    (
        "file_path_restriction",
        &[("restricted_file_paths", Kind::Array)],
    ),
    (
        "max_file_path_length",
        &[("max_file_path_length", Kind::Int)],
    ),
    (
        "file_extension_restriction",
        &[("restricted_file_extensions", Kind::Array)],
    ),
    ("max_file_size", &[("max_file_size", Kind::Int)]),
];

const TARGETS: [&str; 3] = ["branch", "tag", "push"];
const ENFORCEMENTS: [&str; 3] = ["disabled", "active", "evaluate"];
const ACTOR_TYPES: [&str; 6] = [
    "Integration",
    "OrganizationAdmin",
    "RepositoryRole",
    "Team",
    "DeployKey",
    "User",
];
const BYPASS_MODES: [&str; 3] = ["always", "pull_request", "exempt"];

/// `conditions.ref_name` of a ruleset: (include, exclude) patterns.
pub(crate) type RefName = (Vec<String>, Vec<String>);

/// A repository ruleset.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ruleset {
    pub id: u64,
    pub name: String,
    pub target: String,
    pub enforcement: String,
    pub bypass_actors: Vec<Value>,
    /// `conditions.ref_name`, None when the ruleset has no conditions (it targets nothing).
    pub ref_name: Option<RefName>,
    pub rules: Vec<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The client-settable part of a ruleset.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spec {
    pub name: String,
    pub target: String,
    pub enforcement: String,
    pub bypass_actors: Vec<Value>,
    pub ref_name: Option<RefName>,
    pub rules: Vec<Value>,
}

fn invalid(detail: impl std::fmt::Display) -> String {
    format!("Invalid request.\n\n{detail}")
}

fn one_of(field: &str, value: &Value, allowed: &[&str]) -> Result<String, String> {
    match value.as_str() {
        Some(v) if allowed.contains(&v) => Ok(v.to_owned()),
        _ => Err(invalid(format!(
            "For 'properties/{field}', {value} is not one of {allowed:?}."
        ))),
    }
}

fn check_kind(field: &str, value: &Value, kind: Kind) -> Result<(), String> {
    let ok = match kind {
        Kind::Bool => value.is_boolean(),
        Kind::Int => value.is_i64() || value.is_u64(),
        Kind::Str => value.is_string(),
        Kind::Array => value.is_array(),
    };
    if ok {
        return Ok(());
    }
    let expected = match kind {
        Kind::Bool => "a boolean",
        Kind::Int => "an integer",
        Kind::Str => "a string",
        Kind::Array => "an array",
    };
    Err(invalid_type(field, value, expected))
}

fn parse_rule(rule: &Value) -> Result<Value, String> {
    let fields = rule
        .as_object()
        .ok_or_else(|| invalid_type("rules", rule, "an object"))?;
    let kind = fields
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("\"type\" wasn't supplied."))?;
    let (_, required) = RULE_TYPES
        .iter()
        .find(|(name, _)| *name == kind)
        .ok_or_else(|| invalid(format!("{kind:?} is not a valid rule type.")))?;
    match fields.get("parameters") {
        None if required.is_empty() => {}
        None => return Err(invalid("\"parameters\" wasn't supplied.")),
        Some(Value::Object(parameters)) => {
            for (name, kind) in *required {
                let value = parameters
                    .get(*name)
                    .ok_or_else(|| invalid(format!("\"{name}\" wasn't supplied.")))?;
                check_kind(&format!("parameters/{name}"), value, *kind)?;
            }
            if kind == "pull_request" {
                let count = parameters
                    .get("required_approving_review_count")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                if count > 10 {
                    return Err(invalid(format!(
                        "For 'properties/required_approving_review_count', {count} is greater than the maximum of 10."
                    )));
                }
            }
        }
        Some(other) => return Err(invalid_type("parameters", other, "an object")),
    }
    let mut stored = Map::new();
    stored.insert("type".into(), json!(kind));
    if let Some(parameters) = fields.get("parameters") {
        stored.insert("parameters".into(), parameters.clone());
    }
    Ok(Value::Object(stored))
}

fn parse_ref_name(conditions: &Value) -> Result<Option<RefName>, String> {
    let fields = match conditions {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        other => return Err(invalid_type("conditions", other, "an object")),
    };
    let Some(ref_name) = fields.get("ref_name") else {
        return Ok(None);
    };
    let ref_name = ref_name
        .as_object()
        .ok_or_else(|| invalid_type("conditions/ref_name", ref_name, "an object"))?;
    let list = |key: &str| -> Result<Vec<String>, String> {
        match ref_name.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str().map(str::to_owned).ok_or_else(|| {
                        invalid_type(&format!("conditions/ref_name/{key}"), item, "a string")
                    })
                })
                .collect(),
            Some(other) => Err(invalid_type(
                &format!("conditions/ref_name/{key}"),
                other,
                "an array",
            )),
        }
    };
    Ok(Some((list("include")?, list("exclude")?)))
}

fn parse_bypass_actors(value: &Value) -> Result<Vec<Value>, String> {
    let Value::Array(items) = value else {
        return Err(invalid_type("bypass_actors", value, "an array"));
    };
    items
        .iter()
        .map(|item| {
            let fields = item
                .as_object()
                .ok_or_else(|| invalid_type("bypass_actors", item, "an object"))?;
            let actor_type = one_of(
                "bypass_actors/actor_type",
                fields.get("actor_type").unwrap_or(&Value::Null),
                &ACTOR_TYPES,
            )?;
            let actor_id = match fields.get("actor_id") {
                None | Some(Value::Null) => Value::Null,
                Some(v) if v.is_i64() || v.is_u64() => v.clone(),
                Some(other) => {
                    return Err(invalid_type("bypass_actors/actor_id", other, "an integer"))
                }
            };
            let mode = match fields.get("bypass_mode") {
                None => "always".to_owned(),
                Some(v) => one_of("bypass_actors/bypass_mode", v, &BYPASS_MODES)?,
            };
            Ok(json!({ "actor_id": actor_id, "actor_type": actor_type, "bypass_mode": mode }))
        })
        .collect()
}

/// Validates a create body; the error is GitHub's 422 message.
pub(crate) fn parse_spec(body: &Value) -> Result<Spec, String> {
    let fields = object(body)?;
    let name = match fields.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => return Err(invalid("Name can't be blank.")),
        Some(other) => return Err(invalid_type("name", other, "a string")),
        None => return Err(invalid("\"name\" wasn't supplied.")),
    };
    let enforcement = match fields.get("enforcement") {
        None => return Err(invalid("\"enforcement\" wasn't supplied.")),
        Some(v) => one_of("enforcement", v, &ENFORCEMENTS)?,
    };
    let target = match fields.get("target") {
        None | Some(Value::Null) => "branch".to_owned(),
        Some(v) => one_of("target", v, &TARGETS)?,
    };
    let bypass_actors = match fields.get("bypass_actors") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => parse_bypass_actors(v)?,
    };
    let ref_name = parse_ref_name(fields.get("conditions").unwrap_or(&Value::Null))?;
    let rules = match fields.get("rules") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().map(parse_rule).collect::<Result<_, _>>()?,
        Some(other) => return Err(invalid_type("rules", other, "an array")),
    };
    Ok(Spec {
        name,
        target,
        enforcement,
        bypass_actors,
        ref_name,
        rules,
    })
}

/// `File.fnmatch(pattern, text, File::FNM_PATHNAME)`: `*` and `?` do not cross `/`, `**/`
/// matches zero or more directories, `[...]` is a character class (`!` or `^` negates), `\`
/// escapes.
pub(crate) fn fnmatch(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    fn go(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') if p.get(1) == Some(&'*') && p.get(2) == Some(&'/') => {
                // Zero directories, or one directory then the same `**/` again.
                if go(&p[3..], t) {
                    return true;
                }
                match t.iter().position(|c| *c == '/') {
                    Some(slash) => go(p, &t[slash + 1..]),
                    None => false,
                }
            }
            Some('*') => {
                let rest = &p[1..];
                let mut i = 0;
                loop {
                    if go(rest, &t[i..]) {
                        return true;
                    }
                    match t.get(i) {
                        Some(c) if *c != '/' => i += 1,
                        _ => return false,
                    }
                }
            }
            Some('?') => matches!(t.first(), Some(c) if *c != '/') && go(&p[1..], &t[1..]),
            Some('[') => {
                let Some(c) = t.first() else { return false };
                match class(&p[1..], *c) {
                    Some((matched, used)) => matched && *c != '/' && go(&p[1 + used..], &t[1..]),
                    // An unclosed `[` is a literal.
                    None => *c == '[' && go(&p[1..], &t[1..]),
                }
            }
            Some('\\') if p.len() > 1 => t.first() == Some(&p[1]) && go(&p[2..], &t[1..]),
            Some(literal) => t.first() == Some(literal) && go(&p[1..], &t[1..]),
        }
    }
    /// Matches `c` against the class starting after `[`; returns (matched, chars used
    /// including the closing `]`), None if the class is not closed.
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        let mut i = 0;
        let negate = matches!(p.first(), Some('!') | Some('^'));
        if negate {
            i += 1;
        }
        let mut matched = false;
        let mut first = true;
        while i < p.len() {
            if p[i] == ']' && !first {
                return Some((matched != negate, i + 1));
            }
            first = false;
            let lo = p[i];
            if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|h| *h != ']') {
                let hi = p[i + 2];
                matched |= lo <= c && c <= hi;
                i += 3;
            } else {
                matched |= lo == c;
                i += 1;
            }
        }
        None
    }
    go(&p, &t)
}

/// Whether one include/exclude entry matches a full ref name.
fn ref_matches(pattern: &str, refname: &str, default_branch: &str) -> bool {
    match pattern {
        "~ALL" => true,
        "~DEFAULT_BRANCH" => refname == format!("refs/heads/{default_branch}"),
        pattern => fnmatch(pattern, refname),
    }
}

impl Ruleset {
    /// Whether the ruleset targets `branch` of a repository with `default_branch`.
    fn applies_to_branch(&self, branch: &str, default_branch: &str) -> bool {
        if self.target != "branch" {
            return false;
        }
        let Some((include, exclude)) = &self.ref_name else {
            return false;
        };
        let refname = format!("refs/heads/{branch}");
        include
            .iter()
            .any(|p| ref_matches(p, &refname, default_branch))
            && !exclude
                .iter()
                .any(|p| ref_matches(p, &refname, default_branch))
    }

    fn spec(&self) -> Spec {
        Spec {
            name: self.name.clone(),
            target: self.target.clone(),
            enforcement: self.enforcement.clone(),
            bypass_actors: self.bypass_actors.clone(),
            ref_name: self.ref_name.clone(),
            rules: self.rules.clone(),
        }
    }
}

fn links(base: &str, org: &Org, repo: &Repo, id: u64) -> Value {
    json!({
        "self": { "href": format!("{base}/repos/{}/{}/rulesets/{id}", org.login, repo.name) },
        "html": { "href": format!("{base}/{}/{}/rules/{id}", org.login, repo.name) },
    })
}

fn conditions_json(ref_name: &Option<RefName>) -> Value {
    match ref_name {
        Some((include, exclude)) => {
            json!({ "ref_name": { "include": include, "exclude": exclude } })
        }
        None => json!({}),
    }
}

/// The list shape: identity, target and enforcement, without conditions and rules.
fn summary_json(base: &str, org: &Org, repo: &Repo, r: &Ruleset) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "target": r.target,
        "source_type": "Repository",
        "source": format!("{}/{}", org.login, repo.name),
        "enforcement": r.enforcement,
        "node_id": node_id("RepositoryRuleset", r.id),
        "_links": links(base, org, repo, r.id),
        "created_at": time(&r.created_at),
        "updated_at": time(&r.updated_at),
    })
}

/// The full ruleset of the create answer and of webhooks.
pub(crate) fn ruleset_json(base: &str, org: &Org, repo: &Repo, r: &Ruleset) -> Value {
    let mut value = summary_json(base, org, repo, r);
    value["bypass_actors"] = Value::Array(r.bypass_actors.clone());
    value["current_user_can_bypass"] = json!("never");
    value["conditions"] = conditions_json(&r.ref_name);
    value["rules"] = Value::Array(r.rules.clone());
    value
}

/// The `changes` of a "repository_ruleset" "edited" webhook.
fn changes(old: &Spec, new: &Spec) -> Value {
    let mut changes = Map::new();
    if old.name != new.name {
        changes.insert("name".into(), json!({ "from": old.name }));
    }
    if old.enforcement != new.enforcement {
        changes.insert("enforcement".into(), json!({ "from": old.enforcement }));
    }
    if old.ref_name != new.ref_name {
        let (from_include, from_exclude) = old.ref_name.clone().unwrap_or_default();
        changes.insert(
            "conditions".into(),
            json!({ "updated": [{
                "condition": conditions_json(&new.ref_name)["ref_name"],
                "changes": {
                    "include": { "from": from_include },
                    "exclude": { "from": from_exclude },
                },
            }] }),
        );
    }
    if old.rules != new.rules {
        let added: Vec<&Value> = new
            .rules
            .iter()
            .filter(|r| !old.rules.contains(r))
            .collect();
        let deleted: Vec<&Value> = old
            .rules
            .iter()
            .filter(|r| !new.rules.contains(r))
            .collect();
        changes.insert(
            "rules".into(),
            json!({ "added": added, "deleted": deleted, "updated": [] }),
        );
    }
    Value::Object(changes)
}

impl SimState {
    fn ruleset_event(
        &self,
        repo_id: u64,
        id: u64,
        action: &str,
        actor: Actor,
        extra: Option<Value>,
    ) -> Option<Event> {
        let repo = self.repos.get(&repo_id)?;
        let org = self.orgs.get(&repo.owner_key)?;
        let ruleset = repo.rulesets.iter().find(|r| r.id == id)?;
        let base = self.base_url(None);
        let mut fields = vec![(
            "repository_ruleset",
            ruleset_json(&base, org, repo, ruleset),
        )];
        if let Some(changes) = extra {
            fields.push(("changes", changes));
        }
        self.repo_object_event(repo_id, "repository_ruleset", action, actor, fields)
    }

    /// Creates a ruleset; names are unique per repository.
    pub(crate) fn create_ruleset(
        &mut self,
        owner: &str,
        name: &str,
        spec: Spec,
        actor: Actor,
    ) -> Result<(u64, Vec<Event>), SimError> {
        let id = self.next_object_id();
        let repo = self.repo_mut(owner, name)?;
        if repo.rulesets.iter().any(|r| r.name == spec.name) {
            return Err(SimError::Invalid("Name must be unique".to_owned()));
        }
        let repo_id = repo.id;
        let now = Utc::now();
        repo.rulesets.push(Ruleset {
            id,
            name: spec.name,
            target: spec.target,
            enforcement: spec.enforcement,
            bypass_actors: spec.bypass_actors,
            ref_name: spec.ref_name,
            rules: spec.rules,
            created_at: now,
            updated_at: now,
        });
        let events = self
            .ruleset_event(repo_id, id, "created", actor, None)
            .into_iter()
            .collect();
        Ok((id, events))
    }

    fn update_ruleset(
        &mut self,
        owner: &str,
        name: &str,
        id: u64,
        spec: Spec,
        actor: Actor,
    ) -> Result<Vec<Event>, SimError> {
        let repo = self.repo_mut(owner, name)?;
        let repo_id = repo.id;
        if repo
            .rulesets
            .iter()
            .any(|r| r.id != id && r.name == spec.name)
        {
            return Err(SimError::Invalid("Name must be unique".to_owned()));
        }
        let ruleset = repo
            .rulesets
            .iter_mut()
            .find(|r| r.id == id)
            .ok_or_else(|| SimError::NotFound("Not Found".to_owned()))?;
        let old = ruleset.spec();
        if old == spec {
            return Ok(Vec::new());
        }
        let diff = changes(&old, &spec);
        ruleset.name = spec.name;
        ruleset.target = spec.target;
        ruleset.enforcement = spec.enforcement;
        ruleset.bypass_actors = spec.bypass_actors;
        ruleset.ref_name = spec.ref_name;
        ruleset.rules = spec.rules;
        ruleset.updated_at = Utc::now();
        Ok(self
            .ruleset_event(repo_id, id, "edited", actor, Some(diff))
            .into_iter()
            .collect())
    }

    fn delete_ruleset(
        &mut self,
        owner: &str,
        name: &str,
        id: u64,
        actor: Actor,
    ) -> Result<Vec<Event>, SimError> {
        let repo = self.repo_mut(owner, name)?;
        let repo_id = repo.id;
        if !repo.rulesets.iter().any(|r| r.id == id) {
            return Err(SimError::NotFound("Not Found".to_owned()));
        }
        // The event shows the ruleset as it was, so it is built before the removal.
        let event = self.ruleset_event(repo_id, id, "deleted", actor, None);
        if let Some(repo) = self.repos.get_mut(&repo_id) {
            repo.rulesets.retain(|r| r.id != id);
        }
        Ok(event.into_iter().collect())
    }
}

pub(crate) fn register(router: Router<Simulator>, tag: Tag<'_>) -> Router<Simulator> {
    router
        .route(
            ROUTE_RULESETS,
            tag(
                ROUTE_RULESETS,
                axum::routing::get(list_rulesets).post(create_ruleset),
            ),
        )
        .route(
            ROUTE_BRANCH_RULES,
            tag(ROUTE_BRANCH_RULES, axum::routing::get(branch_rules)),
        )
}

async fn list_rulesets(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_LIST)?;
    let targets: Option<Vec<&str>> = query.get("targets").map(|t| {
        t.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect()
    });
    let rulesets: Vec<&Ruleset> = repo
        .rulesets
        .iter()
        .filter(|r| {
            targets
                .as_ref()
                .is_none_or(|t| t.contains(&r.target.as_str()))
        })
        .collect();
    let url = format!("{base}/repos/{}/{}/rulesets", org.login, repo.name);
    let (page, link) = paginate(&rulesets, PageParams::from_query(&query), &url, &query);
    let body = Value::Array(
        page.iter()
            .map(|r| summary_json(&base, org, repo, r))
            .collect(),
    );
    Ok(with_link(json_response(StatusCode::OK, &body), link))
}

async fn create_ruleset(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let base = base_of(&st, &headers);
    find_repo(&st, &owner, &name, DOCS_CREATE)?;
    let value = parse_json(&body, DOCS_CREATE)?;
    let spec = parse_spec(&value)
        .map_err(|message| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message, DOCS_CREATE))?;
    let (id, events) = st
        .create_ruleset(&owner, &name, spec, Actor::Api)
        .map_err(|e| match e {
            SimError::Invalid(message) => ApiError::validation(
                json!([{ "resource": "Ruleset", "field": "name", "code": "custom", "message": message }]),
                DOCS_CREATE,
            ),
            other => ApiError::from_sim(other, DOCS_CREATE),
        })?;
    sim.emit(&st, events);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_CREATE)?;
    let ruleset = repo
        .rulesets
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ApiError::not_found("Not Found", DOCS_CREATE))?;
    let mut response = json_response(
        StatusCode::CREATED,
        &ruleset_json(&base, org, repo, ruleset),
    );
    set_header(
        response.headers_mut(),
        "location",
        format!("{base}/repos/{}/{}/rulesets/{id}", org.login, repo.name),
    );
    Ok(response)
}

async fn branch_rules(
    State(sim): State<Simulator>,
    Path((owner, name, branch)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_BRANCH_RULES)?;
    let source = format!("{}/{}", org.login, repo.name);
    let rules: Vec<Value> = repo
        .rulesets
        .iter()
        .filter(|r| r.enforcement == "active" && r.applies_to_branch(&branch, &repo.default_branch))
        .flat_map(|r| {
            r.rules.iter().map(|rule| {
                let mut rule = rule.clone();
                rule["ruleset_source_type"] = json!("Repository");
                rule["ruleset_source"] = json!(source);
                rule["ruleset_id"] = json!(r.id);
                rule
            })
        })
        .collect();
    let url = format!(
        "{base}/repos/{}/{}/rules/branches/{}",
        org.login,
        repo.name,
        crate::api::encode_query_component(&branch)
    );
    let (page, link) = paginate(&rules, PageParams::from_query(&query), &url, &query);
    Ok(with_link(
        json_response(StatusCode::OK, &Value::Array(page)),
        link,
    ))
}

impl Simulator {
    /// Creates a ruleset from a body in the shape of GitHub's create request, as in the
    /// repository's "Rules" settings; returns its id and sends `repository_ruleset` "created".
    pub fn create_ruleset(&self, owner: &str, repo: &str, body: Value) -> Result<u64, SimError> {
        let spec = parse_spec(&body).map_err(SimError::Invalid)?;
        let mut st = self.lock();
        let (id, events) = st.create_ruleset(owner, repo, spec, Actor::Admin)?;
        self.emit(&st, events);
        Ok(id)
    }

    /// Replaces a ruleset with a body in the shape of the create request; sends
    /// `repository_ruleset` "edited" with GitHub's `changes` when anything changed.
    pub fn update_ruleset(
        &self,
        owner: &str,
        repo: &str,
        id: u64,
        body: Value,
    ) -> Result<(), SimError> {
        let spec = parse_spec(&body).map_err(SimError::Invalid)?;
        let mut st = self.lock();
        let events = st.update_ruleset(owner, repo, id, spec, Actor::Admin)?;
        self.emit(&st, events);
        Ok(())
    }

    /// Deletes a ruleset; sends `repository_ruleset` "deleted".
    pub fn delete_ruleset(&self, owner: &str, repo: &str, id: u64) -> Result<(), SimError> {
        let mut st = self.lock();
        let events = st.delete_ruleset(owner, repo, id, Actor::Admin)?;
        self.emit(&st, events);
        Ok(())
    }

    /// A ruleset in the shape of GitHub's full ruleset object; None if it does not exist.
    pub fn ruleset(&self, owner: &str, repo: &str, id: u64) -> Option<Value> {
        let st = self.lock();
        let base = st.base_url(None);
        let (org, repo) = st.repo(owner, repo)?;
        let ruleset = repo.rulesets.iter().find(|r| r.id == id)?;
        Some(ruleset_json(&base, org, repo, ruleset))
    }
}

pub(crate) fn admin_routes() -> Router<Simulator> {
    Router::new()
        .route("/repos/{owner}/{repo}/rulesets", post(admin_create))
        .route(
            "/repos/{owner}/{repo}/rulesets/{id}",
            put(admin_update).delete(admin_delete),
        )
}

/// `POST /_admin/repos/{owner}/{repo}/rulesets` with the REST body: 201 with the ruleset.
async fn admin_create(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let value: Value = match crate::admin::parse(&body) {
        Ok(v) => v,
        Err(response) => return *response,
    };
    match sim.create_ruleset(&owner, &name, value) {
        Ok(id) => crate::admin::found(StatusCode::CREATED, sim.ruleset(&owner, &name, id)),
        Err(e) => crate::admin::sim_error(e),
    }
}

/// `PUT /_admin/repos/{owner}/{repo}/rulesets/{id}` with the REST create body: 200 with the
/// ruleset.
async fn admin_update(
    State(sim): State<Simulator>,
    Path((owner, name, id)): Path<(String, String, u64)>,
    body: Bytes,
) -> Response {
    let value: Value = match crate::admin::parse(&body) {
        Ok(v) => v,
        Err(response) => return *response,
    };
    if let Err(e) = sim.update_ruleset(&owner, &name, id, value) {
        return crate::admin::sim_error(e);
    }
    crate::admin::found(StatusCode::OK, sim.ruleset(&owner, &name, id))
}

/// `DELETE /_admin/repos/{owner}/{repo}/rulesets/{id}`: 204.
async fn admin_delete(
    State(sim): State<Simulator>,
    Path((owner, name, id)): Path<(String, String, u64)>,
) -> Response {
    match sim.delete_ruleset(&owner, &name, id) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => crate::admin::sim_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnmatch_follows_pathname_rules() {
        assert!(fnmatch("refs/heads/main", "refs/heads/main"));
        assert!(fnmatch("refs/heads/*", "refs/heads/main"));
        assert!(!fnmatch("refs/heads/*", "refs/heads/qa/one"));
        assert!(fnmatch("refs/heads/qa/**/*", "refs/heads/qa/one"));
        assert!(fnmatch("refs/heads/qa/**/*", "refs/heads/qa/one/two"));
        assert!(fnmatch("refs/heads/rel-?", "refs/heads/rel-1"));
        assert!(!fnmatch("refs/heads/rel-?", "refs/heads/rel-10"));
        assert!(fnmatch("refs/heads/v[0-9]*", "refs/heads/v1.2"));
        assert!(!fnmatch("refs/heads/v[!0-9]*", "refs/heads/v1.2"));
        assert!(fnmatch("refs/heads/dev*", "refs/heads/develop"));
        assert!(!fnmatch("main", "refs/heads/main"));
    }

    #[test]
    fn conditions_select_branches() {
        let spec = parse_spec(&json!({
            "name": "protect",
            "enforcement": "active",
            "conditions": { "ref_name": { "include": ["~DEFAULT_BRANCH", "refs/heads/release/*"], "exclude": ["refs/heads/release/old"] } },
            "rules": [{ "type": "deletion" }, { "type": "pull_request", "parameters": {
                "dismiss_stale_reviews_on_push": true, "require_code_owner_review": false,
                "require_last_push_approval": false, "required_approving_review_count": 1,
                "required_review_thread_resolution": false } }],
        }))
        .unwrap();
        let now = Utc::now();
        let ruleset = Ruleset {
            id: 1,
            name: spec.name,
            target: spec.target,
            enforcement: spec.enforcement,
            bypass_actors: spec.bypass_actors,
            ref_name: spec.ref_name,
            rules: spec.rules,
            created_at: now,
            updated_at: now,
        };
        assert!(ruleset.applies_to_branch("main", "main"));
        assert!(ruleset.applies_to_branch("release/1.0", "main"));
        assert!(!ruleset.applies_to_branch("release/old", "main"));
        assert!(!ruleset.applies_to_branch("feature", "main"));
        let all = Ruleset {
            ref_name: Some((vec!["~ALL".to_owned()], Vec::new())),
            ..ruleset.clone()
        };
        assert!(all.applies_to_branch("anything/at/all", "main"));
        let none = Ruleset {
            ref_name: None,
            ..ruleset
        };
        assert!(!none.applies_to_branch("main", "main"));
    }

    #[test]
    fn rules_are_validated() {
        let base = json!({ "name": "n", "enforcement": "active" });
        let with_rules = |rules: Value| {
            let mut body = base.clone();
            body["rules"] = rules;
            parse_spec(&body)
        };
        assert!(with_rules(json!([{ "type": "non_fast_forward" }])).is_ok());
        assert!(with_rules(json!([{ "type": "teleport" }])).is_err());
        assert!(with_rules(json!([{ "type": "update" }])).is_err());
        assert!(with_rules(
            json!([{ "type": "update", "parameters": { "update_allows_fetch_and_merge": "yes" } }])
        )
        .is_err());
        assert!(parse_spec(&json!({ "name": "n", "enforcement": "on" })).is_err());
        assert!(parse_spec(&json!({ "enforcement": "active" })).is_err());
        assert!(parse_spec(
            &json!({ "name": "n", "enforcement": "active", "target": "repository" })
        )
        .is_err());
    }
}
