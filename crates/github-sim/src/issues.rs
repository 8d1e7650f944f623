//! Issues and their comments (`/issues`, `/issues/{issue_number}`,
//! `/issues/{issue_number}/comments`).
//!
//! Issue numbers come from the repository's `next_issue_number`, the sequence GitHub shares
//! between issues and pull requests. Labels are created on first use, as GitHub does when a
//! client with push access names an unknown label; GitHub's default labels (bug, enhancement,
//! ...) keep their colours and descriptions. While a repository has issues turned off
//! (`has_issues: false`), the issue endpoints answer 410 Gone like GitHub's.
//!
//! Webhooks: `issues` (opened, edited, closed, reopened, labeled, unlabeled, assigned,
//! unassigned) and `issue_comment` (created).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, patch, post, put};
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::api::{
    base_of, encode_query_component, find_repo, json_response, paginate, parse_json, set_header,
    with_link, ApiError, PageParams, Tag,
};
use crate::objects::{choice, invalid_type, object, reactions_json, Person};
use crate::render::{self, node_id, stable_id, time};
use crate::state::{Actor, Org, Repo, State as SimState};
use crate::webhooks::Event;
use crate::{SimError, Simulator};

const ROUTE_ISSUES: &str = "/repos/{owner}/{repo}/issues";
const ROUTE_ISSUE: &str = "/repos/{owner}/{repo}/issues/{issue_number}";
const ROUTE_COMMENTS: &str = "/repos/{owner}/{repo}/issues/{issue_number}/comments";

const DOCS_LIST: &str = "https://docs.github.com/rest/issues/issues#list-repository-issues";
const DOCS_CREATE: &str = "https://docs.github.com/rest/issues/issues#create-an-issue";
const DOCS_GET: &str = "https://docs.github.com/rest/issues/issues#get-an-issue";
const DOCS_UPDATE: &str = "https://docs.github.com/rest/issues/issues#update-an-issue";
const DOCS_LIST_COMMENTS: &str = "https://docs.github.com/rest/issues/comments#list-issue-comments";
const DOCS_CREATE_COMMENT: &str =
    "https://docs.github.com/rest/issues/comments#create-an-issue-comment";

const ISSUES_DISABLED: &str = "Issues are disabled for this repo";

/// GitHub's default labels of a new repository: (name, colour, description).
const DEFAULT_LABELS: [(&str, &str, &str); 9] = [
    ("bug", "d73a4a", "Something isn't working"),
    (
        "documentation",
        "0075ca",
        "Improvements or additions to documentation",
    ),
    (
        "duplicate",
        "cfd3d7",
        "This issue or pull request already exists",
    ),
    ("enhancement", "a2eeef", "New feature or request"),
    ("good first issue", "7057ff", "Good for newcomers"),
    ("help wanted", "008672", "Extra attention is needed"),
    ("invalid", "e4e669", "This doesn't seem right"),
    ("question", "d876e3", "Further information is requested"),
    ("wontfix", "ffffff", "This will not be worked on"),
];

/// The reasons an issue can be closed with (`state_reason` other than "reopened").
const CLOSE_REASONS: [&str; 3] = ["completed", "not_planned", "duplicate"];

/// An issue comment.
#[derive(Debug, Clone)]
pub(crate) struct Comment {
    pub id: u64,
    pub body: String,
    pub user: Person,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An issue.
#[derive(Debug, Clone)]
pub(crate) struct Issue {
    pub id: u64,
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    pub user: Person,
    pub labels: Vec<String>,
    pub assignees: Vec<String>,
    pub closed: bool,
    pub state_reason: Option<String>,
    pub comments: Vec<Comment>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub closed_by: Option<Person>,
}

/// The fields of a new issue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NewIssue {
    pub title: String,
    pub body: Option<String>,
    pub labels: Vec<String>,
    pub assignees: Vec<String>,
}

/// The changes of a PATCH; None = not mentioned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct IssuePatch {
    pub title: Option<String>,
    /// Some(None) clears the body.
    pub body: Option<Option<String>>,
    /// Some(true) closes, Some(false) reopens.
    pub closed: Option<bool>,
    /// Some(None) clears the reason.
    pub state_reason: Option<Option<String>>,
    pub labels: Option<Vec<String>>,
    pub assignees: Option<Vec<String>>,
}

fn author_association(person: &Person) -> &'static str {
    match person {
        Person::Actor(Actor::Admin) => "MEMBER",
        _ => "NONE",
    }
}

/// A label object; unknown names get GitHub's colour for labels created on the fly.
fn label_json(api: &str, repo_id: u64, name: &str) -> Value {
    let known = DEFAULT_LABELS
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name));
    let id = stable_id("label", &format!("{repo_id}/{}", name.to_lowercase()));
    json!({
        "id": id,
        "node_id": node_id("Label", id),
        "url": format!("{api}/labels/{}", encode_query_component(name)),
        "name": name,
        "color": known.map_or("ededed", |(_, c, _)| c),
        "default": known.is_some(),
        "description": known.map(|(_, _, d)| *d),
    })
}

fn repo_api(base: &str, org: &Org, repo: &Repo) -> (String, String) {
    (
        format!("{base}/repos/{}/{}", org.login, repo.name),
        format!("{base}/{}/{}", org.login, repo.name),
    )
}

/// The issue object of REST answers and webhooks.
pub(crate) fn issue_json(base: &str, org: &Org, repo: &Repo, issue: &Issue) -> Value {
    let (api, html) = repo_api(base, org, repo);
    let url = format!("{api}/issues/{}", issue.number);
    let assignees: Vec<Value> = issue
        .assignees
        .iter()
        .map(|login| render::user_json(base, login))
        .collect();
    let mut m = Map::new();
    m.insert("url".into(), json!(url));
    m.insert("repository_url".into(), json!(api));
    m.insert("labels_url".into(), json!(format!("{url}/labels{{/name}}")));
    m.insert("comments_url".into(), json!(format!("{url}/comments")));
    m.insert("events_url".into(), json!(format!("{url}/events")));
    m.insert(
        "html_url".into(),
        json!(format!("{html}/issues/{}", issue.number)),
    );
    m.insert("id".into(), json!(issue.id));
    m.insert("node_id".into(), json!(node_id("Issue", issue.id)));
    m.insert("number".into(), json!(issue.number));
    m.insert("title".into(), json!(issue.title));
    m.insert("user".into(), issue.user.json(base));
    m.insert(
        "labels".into(),
        Value::Array(
            issue
                .labels
                .iter()
                .map(|l| label_json(&api, repo.id, l))
                .collect(),
        ),
    );
    m.insert(
        "state".into(),
        json!(if issue.closed { "closed" } else { "open" }),
    );
    m.insert("locked".into(), json!(false));
    m.insert(
        "assignee".into(),
        assignees.first().cloned().unwrap_or(Value::Null),
    );
    m.insert("assignees".into(), Value::Array(assignees));
    m.insert("milestone".into(), Value::Null);
    m.insert("comments".into(), json!(issue.comments.len()));
    m.insert("created_at".into(), json!(time(&issue.created_at)));
    m.insert("updated_at".into(), json!(time(&issue.updated_at)));
    m.insert(
        "closed_at".into(),
        json!(issue.closed_at.as_ref().map(time)),
    );
    m.insert(
        "author_association".into(),
        json!(author_association(&issue.user)),
    );
    m.insert("active_lock_reason".into(), Value::Null);
    m.insert("body".into(), json!(issue.body));
    m.insert(
        "closed_by".into(),
        issue
            .closed_by
            .as_ref()
            .map_or(Value::Null, |p| p.json(base)),
    );
    m.insert("reactions".into(), reactions_json(&url));
    m.insert("timeline_url".into(), json!(format!("{url}/timeline")));
    m.insert("performed_via_github_app".into(), Value::Null);
    m.insert("state_reason".into(), json!(issue.state_reason));
    // Pull requests share the issue shape; a plain issue is never a draft.
    m.insert("draft".into(), json!(false));
    Value::Object(m)
}

fn comment_json(base: &str, org: &Org, repo: &Repo, issue: &Issue, comment: &Comment) -> Value {
    let (api, html) = repo_api(base, org, repo);
    let url = format!("{api}/issues/comments/{}", comment.id);
    json!({
        "url": url,
        "html_url": format!("{html}/issues/{}#issuecomment-{}", issue.number, comment.id),
        "issue_url": format!("{api}/issues/{}", issue.number),
        "id": comment.id,
        "node_id": node_id("IssueComment", comment.id),
        "user": comment.user.json(base),
        "created_at": time(&comment.created_at),
        "updated_at": time(&comment.updated_at),
        "author_association": author_association(&comment.user),
        "body": comment.body,
        "reactions": reactions_json(&url),
        "performed_via_github_app": null,
    })
}

/// `title` as GitHub takes it: a string, or an integer used as its decimal text.
fn title(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        other => Err(invalid_type("title", other, "a string or integer")),
    }
}

/// Label names from `labels`: strings or objects with a `name`.
fn labels(value: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err(invalid_type("labels", value, "an array"));
    };
    let mut names: Vec<String> = Vec::new();
    for item in items {
        let name = match item {
            Value::String(s) => s.clone(),
            Value::Object(o) => match o.get("name") {
                Some(Value::String(s)) => s.clone(),
                _ => return Err(invalid_type("labels", item, "a label name")),
            },
            other => return Err(invalid_type("labels", other, "a string or object")),
        };
        if name.trim().is_empty() {
            return Err(invalid_type("labels", item, "a label name"));
        }
        if !names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            names.push(name);
        }
    }
    Ok(names)
}

/// Logins from `assignees` (strings, or objects with a `login` on PATCH) plus `assignee`.
fn assignees(fields: &Map<String, Value>) -> Result<Option<Vec<String>>, String> {
    let mut logins: Option<Vec<String>> = None;
    if let Some(value) = fields.get("assignees") {
        let Value::Array(items) = value else {
            return Err(invalid_type("assignees", value, "an array"));
        };
        let mut list = Vec::new();
        for item in items {
            let login = match item {
                Value::String(s) => s.clone(),
                Value::Object(o) => match o.get("login") {
                    Some(Value::String(s)) => s.clone(),
                    _ => return Err(invalid_type("assignees", item, "a login")),
                },
                other => return Err(invalid_type("assignees", other, "a string")),
            };
            if !list.iter().any(|l: &String| l.eq_ignore_ascii_case(&login)) {
                list.push(login);
            }
        }
        logins = Some(list);
    }
    match fields.get("assignee") {
        None => {}
        Some(Value::Null) => {
            logins.get_or_insert_with(Vec::new);
        }
        Some(Value::String(login)) => {
            let list = logins.get_or_insert_with(Vec::new);
            if !list.iter().any(|l| l.eq_ignore_ascii_case(login)) {
                list.insert(0, login.clone());
            }
        }
        Some(other) => return Err(invalid_type("assignee", other, "a string or null")),
    }
    Ok(logins)
}

/// The simulator has no milestones, so any milestone a client names does not exist.
fn check_milestone(fields: &Map<String, Value>) -> Result<(), Value> {
    match fields.get("milestone") {
        None | Some(Value::Null) => Ok(()),
        Some(value) => Err(json!([{
            "value": value,
            "resource": "Issue",
            "field": "milestone",
            "code": "invalid",
        }])),
    }
}

/// Why a body was refused: GitHub's plain 422 message, or a "Validation Failed" errors list.
#[derive(Debug)]
enum Refusal {
    Message(String),
    Errors(Value),
}

impl Refusal {
    fn into_api(self, docs: &'static str) -> ApiError {
        match self {
            Refusal::Message(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m, docs),
            Refusal::Errors(e) => ApiError::validation(e, docs),
        }
    }

    fn into_sim(self) -> SimError {
        match self {
            Refusal::Message(m) => SimError::Invalid(m),
            Refusal::Errors(e) => SimError::Invalid(format!("Validation Failed: {e}")),
        }
    }
}

impl From<String> for Refusal {
    fn from(message: String) -> Self {
        Refusal::Message(message)
    }
}

fn parse_new(body: &Value) -> Result<NewIssue, Refusal> {
    let fields = object(body)?;
    let title = match fields.get("title") {
        None => {
            return Err(Refusal::Message(
                "Invalid request.\n\n\"title\" wasn't supplied.".to_owned(),
            ))
        }
        Some(value) => title(value)?,
    };
    if title.trim().is_empty() {
        return Err(Refusal::Errors(json!([{
            "resource": "Issue", "field": "title", "code": "missing_field",
        }])));
    }
    let body_text = match fields.get("body") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(invalid_type("body", other, "a string").into()),
    };
    let labels = match fields.get("labels") {
        None | Some(Value::Null) => Vec::new(),
        Some(value) => labels(value)?,
    };
    let assignees = assignees(fields)?.unwrap_or_default();
    check_milestone(fields).map_err(Refusal::Errors)?;
    Ok(NewIssue {
        title,
        body: body_text,
        labels,
        assignees,
    })
}

fn parse_patch(body: &Value) -> Result<IssuePatch, Refusal> {
    let fields = object(body)?;
    let mut patch = IssuePatch::default();
    match fields.get("title") {
        None | Some(Value::Null) => {}
        Some(value) => {
            let t = title(value)?;
            if t.trim().is_empty() {
                return Err(Refusal::Errors(json!([{
                    "resource": "Issue", "field": "title", "code": "missing_field",
                }])));
            }
            patch.title = Some(t);
        }
    }
    match fields.get("body") {
        None => {}
        Some(Value::Null) => patch.body = Some(None),
        Some(Value::String(s)) => patch.body = Some(Some(s.clone())),
        Some(other) => return Err(invalid_type("body", other, "a string or null").into()),
    }
    match fields.get("state") {
        None => {}
        Some(Value::String(s)) if s == "open" => patch.closed = Some(false),
        Some(Value::String(s)) if s == "closed" => patch.closed = Some(true),
        Some(other) => {
            return Err(invalid_type("state", other, "one of [\"open\", \"closed\"]").into())
        }
    }
    match fields.get("state_reason") {
        None => {}
        Some(Value::Null) => patch.state_reason = Some(None),
        Some(Value::String(s)) if CLOSE_REASONS.contains(&s.as_str()) || s == "reopened" => {
            patch.state_reason = Some(Some(s.clone()));
        }
        Some(other) => {
            return Err(invalid_type(
                "state_reason",
                other,
                "one of [\"completed\", \"not_planned\", \"duplicate\", \"reopened\"]",
            )
            .into())
        }
    }
    if let Some(value) = fields.get("labels") {
        patch.labels = Some(match value {
            Value::Null => Vec::new(),
            other => labels(other)?,
        });
    }
    patch.assignees = assignees(fields)?;
    check_milestone(fields).map_err(Refusal::Errors)?;
    Ok(patch)
}

impl SimState {
    fn issues_enabled(&self, owner: &str, name: &str) -> Result<bool, SimError> {
        self.repo(owner, name)
            .map(|(_, repo)| repo.settings.has_issues)
            .ok_or_else(|| SimError::NotFound("Not Found".to_owned()))
    }

    fn issue_event(
        &self,
        repo_id: u64,
        number: u64,
        name: &'static str,
        action: &str,
        actor: Actor,
        mut fields: Vec<(&str, Value)>,
    ) -> Option<Event> {
        let repo = self.repos.get(&repo_id)?;
        let org = self.orgs.get(&repo.owner_key)?;
        let issue = repo.issues.get(&number)?;
        let base = self.base_url(None);
        fields.insert(0, ("issue", issue_json(&base, org, repo, issue)));
        self.repo_object_event(repo_id, name, action, actor, fields)
    }

    /// Opens an issue; returns its number and the `issues` events ("opened", then "labeled"
    /// and "assigned" for each label and assignee it was opened with).
    pub(crate) fn create_issue(
        &mut self,
        owner: &str,
        name: &str,
        new: NewIssue,
        author: Person,
        actor: Actor,
    ) -> Result<(u64, Vec<Event>), SimError> {
        let id = self.next_object_id();
        let repo = self.repo_mut(owner, name)?;
        let repo_id = repo.id;
        let number = repo.next_issue_number;
        repo.next_issue_number += 1;
        let now = Utc::now();
        let labels = new.labels.clone();
        let assignees = new.assignees.clone();
        repo.issues.insert(
            number,
            Issue {
                id,
                number,
                title: new.title,
                body: new.body,
                user: author,
                labels: new.labels,
                assignees: new.assignees,
                closed: false,
                state_reason: None,
                comments: Vec::new(),
                created_at: now,
                updated_at: now,
                closed_at: None,
                closed_by: None,
            },
        );
        repo.updated_at = now;
        let base = self.base_url(None);
        let api = self.repo_api_url(repo_id);
        let mut events = Vec::new();
        events.extend(self.issue_event(repo_id, number, "issues", "opened", actor, Vec::new()));
        for label in &labels {
            let label = label_json(&api, repo_id, label);
            events.extend(self.issue_event(
                repo_id,
                number,
                "issues",
                "labeled",
                actor,
                vec![("label", label)],
            ));
        }
        for login in &assignees {
            let assignee = render::user_json(&base, login);
            events.extend(self.issue_event(
                repo_id,
                number,
                "issues",
                "assigned",
                actor,
                vec![("assignee", assignee)],
            ));
        }
        Ok((number, events))
    }

    /// Applies a PATCH; returns the `issues` events for what changed, in the order edited,
    /// labeled/unlabeled, assigned/unassigned, closed/reopened.
    pub(crate) fn update_issue(
        &mut self,
        owner: &str,
        name: &str,
        number: u64,
        patch: IssuePatch,
        actor: Actor,
    ) -> Result<Vec<Event>, SimError> {
        let repo = self.repo_mut(owner, name)?;
        let repo_id = repo.id;
        let issue = repo
            .issues
            .get_mut(&number)
            .ok_or_else(|| SimError::NotFound("Not Found".to_owned()))?;
        let now = Utc::now();
        let mut changes = Map::new();
        if let Some(title) = patch.title {
            if title != issue.title {
                changes.insert("title".into(), json!({ "from": issue.title }));
                issue.title = title;
            }
        }
        if let Some(body) = patch.body {
            if body != issue.body {
                changes.insert("body".into(), json!({ "from": issue.body }));
                issue.body = body;
            }
        }
        let (mut added_labels, mut removed_labels) = (Vec::new(), Vec::new());
        if let Some(labels) = patch.labels {
            for label in &labels {
                if !issue.labels.iter().any(|l| l.eq_ignore_ascii_case(label)) {
                    added_labels.push(label.clone());
                }
            }
            for label in &issue.labels {
                if !labels.iter().any(|l| l.eq_ignore_ascii_case(label)) {
                    removed_labels.push(label.clone());
                }
            }
            issue.labels = labels;
        }
        let (mut assigned, mut unassigned) = (Vec::new(), Vec::new());
        if let Some(logins) = patch.assignees {
            for login in &logins {
                if !issue
                    .assignees
                    .iter()
                    .any(|l| l.eq_ignore_ascii_case(login))
                {
                    assigned.push(login.clone());
                }
            }
            for login in &issue.assignees {
                if !logins.iter().any(|l| l.eq_ignore_ascii_case(login)) {
                    unassigned.push(login.clone());
                }
            }
            issue.assignees = logins;
        }
        let mut transition = None;
        match patch.closed {
            Some(true) if !issue.closed => {
                issue.closed = true;
                issue.closed_at = Some(now);
                issue.closed_by = Some(Person::Actor(actor));
                issue.state_reason = Some(
                    patch
                        .state_reason
                        .clone()
                        .flatten()
                        .filter(|r| r != "reopened")
                        .unwrap_or_else(|| "completed".to_owned()),
                );
                transition = Some("closed");
            }
            Some(false) if issue.closed => {
                issue.closed = false;
                issue.closed_at = None;
                issue.closed_by = None;
                issue.state_reason = Some("reopened".to_owned());
                transition = Some("reopened");
            }
            // Without a state change, GitHub only takes a new reason for a closed issue.
            _ => {
                if let (true, Some(reason)) = (issue.closed, patch.state_reason) {
                    if reason.as_deref() != Some("reopened") {
                        issue.state_reason = reason;
                    }
                }
            }
        }
        issue.updated_at = now;
        repo.updated_at = now;
        let base = self.base_url(None);
        let api = self.repo_api_url(repo_id);
        let mut events = Vec::new();
        if !changes.is_empty() {
            events.extend(self.issue_event(
                repo_id,
                number,
                "issues",
                "edited",
                actor,
                vec![("changes", Value::Object(changes))],
            ));
        }
        let label_events = added_labels
            .iter()
            .map(|l| ("labeled", l))
            .chain(removed_labels.iter().map(|l| ("unlabeled", l)));
        for (action, label) in label_events {
            let label = label_json(&api, repo_id, label);
            events.extend(self.issue_event(
                repo_id,
                number,
                "issues",
                action,
                actor,
                vec![("label", label)],
            ));
        }
        let assignee_events = assigned
            .iter()
            .map(|l| ("assigned", l))
            .chain(unassigned.iter().map(|l| ("unassigned", l)));
        for (action, login) in assignee_events {
            let assignee = render::user_json(&base, login);
            events.extend(self.issue_event(
                repo_id,
                number,
                "issues",
                action,
                actor,
                vec![("assignee", assignee)],
            ));
        }
        if let Some(action) = transition {
            events.extend(self.issue_event(repo_id, number, "issues", action, actor, Vec::new()));
        }
        Ok(events)
    }

    /// Comments on an issue; returns the comment id and the `issue_comment` "created" event.
    pub(crate) fn comment_issue(
        &mut self,
        owner: &str,
        name: &str,
        number: u64,
        body: String,
        author: Person,
        actor: Actor,
    ) -> Result<(u64, Vec<Event>), SimError> {
        let id = self.next_object_id();
        let repo = self.repo_mut(owner, name)?;
        let repo_id = repo.id;
        let issue = repo
            .issues
            .get_mut(&number)
            .ok_or_else(|| SimError::NotFound("Not Found".to_owned()))?;
        let now = Utc::now();
        issue.comments.push(Comment {
            id,
            body,
            user: author,
            created_at: now,
            updated_at: now,
        });
        issue.updated_at = now;
        let comment = self.repos.get(&repo_id).and_then(|repo| {
            let org = self.orgs.get(&repo.owner_key)?;
            let issue = repo.issues.get(&number)?;
            let comment = issue.comments.last()?;
            Some(comment_json(
                &self.base_url(None),
                org,
                repo,
                issue,
                comment,
            ))
        });
        let events = comment
            .and_then(|c| {
                self.issue_event(
                    repo_id,
                    number,
                    "issue_comment",
                    "created",
                    actor,
                    vec![("comment", c)],
                )
            })
            .into_iter()
            .collect();
        Ok((id, events))
    }
}

pub(crate) fn register(router: Router<Simulator>, tag: Tag<'_>) -> Router<Simulator> {
    router
        .route(
            ROUTE_ISSUES,
            tag(ROUTE_ISSUES, get(list_issues).post(create_issue)),
        )
        .route(
            ROUTE_ISSUE,
            tag(ROUTE_ISSUE, get(get_issue).patch(update_issue)),
        )
        .route(
            ROUTE_COMMENTS,
            tag(ROUTE_COMMENTS, get(list_comments).post(create_comment)),
        )
}

/// GitHub's 404 for a missing repository, 410 while issues are off.
fn check_enabled(
    st: &SimState,
    owner: &str,
    name: &str,
    docs: &'static str,
) -> Result<(), ApiError> {
    let enabled = st
        .issues_enabled(owner, name)
        .map_err(|e| ApiError::from_sim(e, docs))?;
    if enabled {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::GONE, ISSUES_DISABLED, docs))
    }
}

/// The repository and its issue `number`, or GitHub's 404 "Not Found".
fn find_issue<'a>(
    st: &'a SimState,
    owner: &str,
    name: &str,
    number: u64,
    docs: &'static str,
) -> Result<(&'a Org, &'a Repo, &'a Issue), ApiError> {
    let (org, repo) = find_repo(st, owner, name, docs)?;
    let issue = repo
        .issues
        .get(&number)
        .ok_or_else(|| ApiError::not_found("Not Found", docs))?;
    Ok((org, repo, issue))
}

/// The issue number from the path; anything that is not a number is no issue (404).
fn issue_number(raw: &str, docs: &'static str) -> Result<u64, ApiError> {
    raw.parse::<u64>()
        .map_err(|_| ApiError::not_found("Not Found", docs))
}

fn created(value: &Value, location: String) -> Response {
    let mut response = json_response(StatusCode::CREATED, value);
    set_header(response.headers_mut(), "location", location);
    response
}

fn parse_since(
    query: &HashMap<String, String>,
    docs: &'static str,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    match query.get("since") {
        None => Ok(None),
        Some(raw) => DateTime::parse_from_rfc3339(raw)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("Invalid value for `since`: {raw:?}"),
                    docs,
                )
            }),
    }
}

async fn list_issues(
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
    let state = choice(&query, "state", &["open", "closed", "all"], "open").map_err(invalid)?;
    let sort = choice(
        &query,
        "sort",
        &["created", "updated", "comments"],
        "created",
    )
    .map_err(invalid)?;
    let direction = choice(&query, "direction", &["asc", "desc"], "desc").map_err(invalid)?;
    let since = parse_since(&query, DOCS_LIST)?;
    let wanted_labels: Vec<&str> = query
        .get("labels")
        .map(|l| {
            l.split(',')
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let creator = query.get("creator");
    let assignee = query.get("assignee");
    // While issues are off, GitHub lists none (pull requests would still be listed).
    let mut issues: Vec<&Issue> = if repo.settings.has_issues {
        repo.issues.values().collect()
    } else {
        Vec::new()
    };
    issues.retain(|i| match state {
        "open" => !i.closed,
        "closed" => i.closed,
        _ => true,
    });
    issues.retain(|i| {
        wanted_labels
            .iter()
            .all(|w| i.labels.iter().any(|l| l.eq_ignore_ascii_case(w)))
    });
    if let Some(creator) = creator {
        issues.retain(|i| i.user.login().eq_ignore_ascii_case(creator));
    }
    if let Some(assignee) = assignee {
        issues.retain(|i| match assignee.as_str() {
            "none" => i.assignees.is_empty(),
            "*" => !i.assignees.is_empty(),
            login => i.assignees.iter().any(|a| a.eq_ignore_ascii_case(login)),
        });
    }
    if let Some(since) = since {
        issues.retain(|i| i.updated_at >= since);
    }
    match sort {
        "updated" => issues.sort_by_key(|i| (i.updated_at, i.number)),
        "comments" => issues.sort_by_key(|i| (i.comments.len(), i.number)),
        _ => issues.sort_by_key(|i| i.number),
    }
    if direction == "desc" {
        issues.reverse();
    }
    let url = format!("{base}/repos/{}/{}/issues", org.login, repo.name);
    let (page, link) = paginate(&issues, PageParams::from_query(&query), &url, &query);
    let body = Value::Array(
        page.iter()
            .map(|i| issue_json(&base, org, repo, i))
            .collect(),
    );
    Ok(with_link(json_response(StatusCode::OK, &body), link))
}

async fn create_issue(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let base = base_of(&st, &headers);
    check_enabled(&st, &owner, &name, DOCS_CREATE)?;
    let value = parse_json(&body, DOCS_CREATE)?;
    let new = parse_new(&value).map_err(|r| r.into_api(DOCS_CREATE))?;
    let (number, events) = st
        .create_issue(&owner, &name, new, Person::Actor(Actor::Api), Actor::Api)
        .map_err(|e| ApiError::from_sim(e, DOCS_CREATE))?;
    sim.emit(&st, events);
    let (org, repo, issue) = find_issue(&st, &owner, &name, number, DOCS_CREATE)?;
    let value = issue_json(&base, org, repo, issue);
    let location = format!("{base}/repos/{}/{}/issues/{number}", org.login, repo.name);
    Ok(created(&value, location))
}

async fn get_issue(
    State(sim): State<Simulator>,
    Path((owner, name, number)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    check_enabled(&st, &owner, &name, DOCS_GET)?;
    let number = issue_number(&number, DOCS_GET)?;
    let (org, repo, issue) = find_issue(&st, &owner, &name, number, DOCS_GET)?;
    Ok(json_response(
        StatusCode::OK,
        &issue_json(&base, org, repo, issue),
    ))
}

async fn update_issue(
    State(sim): State<Simulator>,
    Path((owner, name, number)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let base = base_of(&st, &headers);
    check_enabled(&st, &owner, &name, DOCS_UPDATE)?;
    let number = issue_number(&number, DOCS_UPDATE)?;
    find_issue(&st, &owner, &name, number, DOCS_UPDATE)?;
    let value = parse_json(&body, DOCS_UPDATE)?;
    let patch = parse_patch(&value).map_err(|r| r.into_api(DOCS_UPDATE))?;
    let events = st
        .update_issue(&owner, &name, number, patch, Actor::Api)
        .map_err(|e| ApiError::from_sim(e, DOCS_UPDATE))?;
    sim.emit(&st, events);
    let (org, repo, issue) = find_issue(&st, &owner, &name, number, DOCS_UPDATE)?;
    Ok(json_response(
        StatusCode::OK,
        &issue_json(&base, org, repo, issue),
    ))
}

async fn list_comments(
    State(sim): State<Simulator>,
    Path((owner, name, number)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    check_enabled(&st, &owner, &name, DOCS_LIST_COMMENTS)?;
    let number = issue_number(&number, DOCS_LIST_COMMENTS)?;
    let (org, repo, issue) = find_issue(&st, &owner, &name, number, DOCS_LIST_COMMENTS)?;
    let since = parse_since(&query, DOCS_LIST_COMMENTS)?;
    let comments: Vec<&Comment> = issue
        .comments
        .iter()
        .filter(|c| since.is_none_or(|s| c.updated_at >= s))
        .collect();
    let url = format!(
        "{base}/repos/{}/{}/issues/{number}/comments",
        org.login, repo.name
    );
    let (page, link) = paginate(&comments, PageParams::from_query(&query), &url, &query);
    let body = Value::Array(
        page.iter()
            .map(|c| comment_json(&base, org, repo, issue, c))
            .collect(),
    );
    Ok(with_link(json_response(StatusCode::OK, &body), link))
}

/// A comment body: `{"body": string}`, required.
fn parse_comment(value: &Value) -> Result<String, String> {
    let fields = object(value)?;
    match fields.get("body") {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err("Invalid request.\n\nBody cannot be blank.".to_owned()),
        Some(other) => Err(invalid_type("body", other, "a string")),
        None => Err("Invalid request.\n\n\"body\" wasn't supplied.".to_owned()),
    }
}

async fn create_comment(
    State(sim): State<Simulator>,
    Path((owner, name, number)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let base = base_of(&st, &headers);
    check_enabled(&st, &owner, &name, DOCS_CREATE_COMMENT)?;
    let number = issue_number(&number, DOCS_CREATE_COMMENT)?;
    find_issue(&st, &owner, &name, number, DOCS_CREATE_COMMENT)?;
    let value = parse_json(&body, DOCS_CREATE_COMMENT)?;
    let text = parse_comment(&value).map_err(|message| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            message,
            DOCS_CREATE_COMMENT,
        )
    })?;
    let (id, events) = st
        .comment_issue(
            &owner,
            &name,
            number,
            text,
            Person::Actor(Actor::Api),
            Actor::Api,
        )
        .map_err(|e| ApiError::from_sim(e, DOCS_CREATE_COMMENT))?;
    sim.emit(&st, events);
    let (org, repo, issue) = find_issue(&st, &owner, &name, number, DOCS_CREATE_COMMENT)?;
    let comment = issue
        .comments
        .iter()
        .find(|c| c.id == id)
        .ok_or_else(|| ApiError::not_found("Not Found", DOCS_CREATE_COMMENT))?;
    let value = comment_json(&base, org, repo, issue, comment);
    let location = format!(
        "{base}/repos/{}/{}/issues/comments/{id}",
        org.login, repo.name
    );
    Ok(created(&value, location))
}

impl Simulator {
    fn admin_issue_check(&self, st: &SimState, owner: &str, repo: &str) -> Result<(), SimError> {
        if st.issues_enabled(owner, repo)? {
            Ok(())
        } else {
            Err(SimError::Invalid(ISSUES_DISABLED.to_owned()))
        }
    }

    /// Opens an issue as `user` (None: the admin user), as in the GitHub UI. `body` is the
    /// request body of `POST /repos/{owner}/{repo}/issues`. Returns the issue number; sends
    /// `issues` "opened" (and "labeled"/"assigned"). Refused while issues are off.
    pub fn create_issue(
        &self,
        owner: &str,
        repo: &str,
        user: Option<&str>,
        body: Value,
    ) -> Result<u64, SimError> {
        let new = parse_new(&body).map_err(Refusal::into_sim)?;
        let author = user.map_or(Person::Actor(Actor::Admin), |u| Person::User(u.to_owned()));
        let mut st = self.lock();
        self.admin_issue_check(&st, owner, repo)?;
        let (number, events) = st.create_issue(owner, repo, new, author, Actor::Admin)?;
        self.emit(&st, events);
        Ok(number)
    }

    /// Changes an issue as the admin user; `body` is the request body of `PATCH
    /// /repos/{owner}/{repo}/issues/{issue_number}` (e.g. `{"state": "closed"}`). Sends the
    /// matching `issues` webhooks.
    pub fn update_issue(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
        body: Value,
    ) -> Result<(), SimError> {
        let patch = parse_patch(&body).map_err(Refusal::into_sim)?;
        let mut st = self.lock();
        self.admin_issue_check(&st, owner, repo)?;
        let events = st.update_issue(owner, repo, number, patch, Actor::Admin)?;
        self.emit(&st, events);
        Ok(())
    }

    /// Comments on an issue as `user` (None: the admin user); returns the comment id and sends
    /// `issue_comment` "created".
    pub fn comment_on_issue(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
        user: Option<&str>,
        body: &str,
    ) -> Result<u64, SimError> {
        let text = parse_comment(&json!({ "body": body })).map_err(SimError::Invalid)?;
        let author = user.map_or(Person::Actor(Actor::Admin), |u| Person::User(u.to_owned()));
        let mut st = self.lock();
        self.admin_issue_check(&st, owner, repo)?;
        let (id, events) = st.comment_issue(owner, repo, number, text, author, Actor::Admin)?;
        self.emit(&st, events);
        Ok(id)
    }

    /// Turns the Issues feature of a repository on or off (`has_issues`), as on the settings
    /// page; sends `repository` "edited" when it changes. Existing issues are kept and come back
    /// when it is turned on again, like on GitHub.
    pub fn set_issues_enabled(
        &self,
        owner: &str,
        repo: &str,
        enabled: bool,
    ) -> Result<(), SimError> {
        let patch = crate::settings::RepoPatch {
            has_issues: Some(enabled),
            ..Default::default()
        };
        let mut st = self.lock();
        let events = st.update_repo(owner, repo, patch, Actor::Admin)?;
        self.emit(&st, events);
        Ok(())
    }

    /// An issue in the shape of GitHub's GET response; None if it does not exist.
    pub fn issue(&self, owner: &str, repo: &str, number: u64) -> Option<Value> {
        let st = self.lock();
        let base = st.base_url(None);
        let (org, repo) = st.repo(owner, repo)?;
        let issue = repo.issues.get(&number)?;
        Some(issue_json(&base, org, repo, issue))
    }
}

pub(crate) fn admin_routes() -> Router<Simulator> {
    Router::new()
        .route("/repos/{owner}/{repo}/issues", post(admin_create))
        .route("/repos/{owner}/{repo}/issues/{number}", patch(admin_update))
        .route(
            "/repos/{owner}/{repo}/issues/{number}/comments",
            post(admin_comment),
        )
        .route("/repos/{owner}/{repo}/settings/issues", put(admin_enable))
}

#[derive(Debug, serde::Deserialize)]
struct Toggle {
    enabled: bool,
}

/// `PUT /_admin/repos/{owner}/{repo}/settings/issues` with `{"enabled": bool}`: 204.
async fn admin_enable(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let toggle: Toggle = match crate::admin::parse(&body) {
        Ok(t) => t,
        Err(response) => return *response,
    };
    match sim.set_issues_enabled(&owner, &name, toggle.enabled) {
        Ok(()) => axum::response::IntoResponse::into_response(StatusCode::NO_CONTENT),
        Err(e) => crate::admin::sim_error(e),
    }
}

/// Splits an optional `user` (the author's login) off an admin body.
fn take_user(value: &mut Value) -> Result<Option<String>, String> {
    match value.as_object_mut().and_then(|o| o.remove("user")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
        Some(other) => Err(format!("user must be a login, got {other}")),
    }
}

/// `POST /_admin/repos/{owner}/{repo}/issues` with the REST body plus an optional `user`:
/// 201 with `{"number"}`.
async fn admin_create(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let mut value: Value = match crate::admin::parse(&body) {
        Ok(v) => v,
        Err(response) => return *response,
    };
    let user = match take_user(&mut value) {
        Ok(u) => u,
        Err(message) => return crate::admin::error(StatusCode::UNPROCESSABLE_ENTITY, message),
    };
    match sim.create_issue(&owner, &name, user.as_deref(), value) {
        Ok(number) => crate::admin::ok_json(StatusCode::CREATED, &json!({ "number": number })),
        Err(e) => crate::admin::sim_error(e),
    }
}

/// `PATCH /_admin/repos/{owner}/{repo}/issues/{number}` with the REST body: 200 with the issue.
async fn admin_update(
    State(sim): State<Simulator>,
    Path((owner, name, number)): Path<(String, String, u64)>,
    body: Bytes,
) -> Response {
    let value: Value = match crate::admin::parse(&body) {
        Ok(v) => v,
        Err(response) => return *response,
    };
    if let Err(e) = sim.update_issue(&owner, &name, number, value) {
        return crate::admin::sim_error(e);
    }
    crate::admin::found(StatusCode::OK, sim.issue(&owner, &name, number))
}

/// `POST /_admin/repos/{owner}/{repo}/issues/{number}/comments` with `{"body", "user"?}`: 201
/// with `{"id"}`.
async fn admin_comment(
    State(sim): State<Simulator>,
    Path((owner, name, number)): Path<(String, String, u64)>,
    body: Bytes,
) -> Response {
    let mut value: Value = match crate::admin::parse(&body) {
        Ok(v) => v,
        Err(response) => return *response,
    };
    let user = match take_user(&mut value) {
        Ok(u) => u,
        Err(message) => return crate::admin::error(StatusCode::UNPROCESSABLE_ENTITY, message),
    };
    let text = match value.get("body").and_then(Value::as_str) {
        Some(text) => text.to_owned(),
        None => {
            return crate::admin::error(StatusCode::UNPROCESSABLE_ENTITY, "body must be a string")
        }
    };
    match sim.comment_on_issue(&owner, &name, number, user.as_deref(), &text) {
        Ok(id) => crate::admin::ok_json(StatusCode::CREATED, &json!({ "id": id })),
        Err(e) => crate::admin::sim_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RepoOptions;

    #[test]
    fn bodies_are_validated() {
        let new =
            parse_new(&json!({ "title": 42, "labels": ["bug", { "name": "Bug" }, "x"] })).unwrap();
        assert_eq!(new.title, "42");
        assert_eq!(new.labels, ["bug", "x"]);
        assert!(parse_new(&json!({ "body": "no title" })).is_err());
        assert!(matches!(
            parse_new(&json!({ "title": "t", "milestone": 1 })),
            Err(Refusal::Errors(_))
        ));
        let patch = parse_patch(
            &json!({ "state": "closed", "state_reason": "not_planned", "assignee": "octocat" }),
        )
        .unwrap();
        assert_eq!(patch.closed, Some(true));
        assert_eq!(patch.assignees, Some(vec!["octocat".to_owned()]));
        assert!(parse_patch(&json!({ "state": "done" })).is_err());
        assert!(parse_patch(&json!({ "state_reason": "fixed" })).is_err());
    }

    #[test]
    fn lifecycle_events() {
        let mut st = SimState::new();
        st.create_repo("acme", "api", &RepoOptions::default(), Actor::Admin);
        let new = NewIssue {
            title: "t".to_owned(),
            labels: vec!["bug".to_owned()],
            ..NewIssue::default()
        };
        let (number, events) = st
            .create_issue("acme", "api", new, Person::Actor(Actor::Api), Actor::Api)
            .unwrap();
        assert_eq!(number, 1);
        let actions: Vec<_> = events.iter().map(|e| e.payload["action"].clone()).collect();
        assert_eq!(actions, [json!("opened"), json!("labeled")]);
        assert_eq!(events[1].payload["label"]["color"], "d73a4a");
        let patch = IssuePatch {
            title: Some("t2".to_owned()),
            closed: Some(true),
            labels: Some(Vec::new()),
            ..IssuePatch::default()
        };
        let events = st
            .update_issue("acme", "api", 1, patch, Actor::Api)
            .unwrap();
        let actions: Vec<_> = events.iter().map(|e| e.payload["action"].clone()).collect();
        assert_eq!(
            actions,
            [json!("edited"), json!("unlabeled"), json!("closed")]
        );
        assert_eq!(
            events[0].payload["changes"],
            json!({ "title": { "from": "t" } })
        );
        assert_eq!(events[2].payload["issue"]["state_reason"], "completed");
        let (_, events) = st
            .comment_issue(
                "acme",
                "api",
                1,
                "hi".to_owned(),
                Person::User("u".to_owned()),
                Actor::Admin,
            )
            .unwrap();
        assert_eq!(events[0].name, "issue_comment");
        assert_eq!(events[0].payload["issue"]["comments"], 1);
        assert_eq!(events[0].payload["comment"]["user"]["login"], "u");
    }
}
