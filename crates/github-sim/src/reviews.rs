//! Pull request reviews and review comments: list, create, get and dismiss reviews
//! (`/pulls/{pull_number}/reviews[/{review_id}[/dismissals]]`), list review comments
//! (`/pulls/{pull_number}/comments`), and the `pull_request_review` (submitted, dismissed) and
//! `pull_request_review_comment` (created) webhooks.
//!
//! A review is created with its inline comments in one request, all or nothing, validated like
//! GitHub's (422 `{"message": "Unprocessable Entity", "errors": ["..."]}`):
//!
//! - a comment's `path` must be a file the pull request changes at the review's commit
//!   ("Path could not be resolved");
//! - its `line` must be a line of that file's patch on its `side`: on `RIGHT` (the default) a
//!   context or added line, numbered in the head version; on `LEFT` a context or removed line,
//!   numbered in the base version ("Line could not be resolved"); a comment may give the
//!   legacy `position` (the line's index below the file's first `@@` line) instead
//!   ("Position could not be resolved"); a `start_line` must come before `line` in the same
//!   hunk;
//! - `REQUEST_CHANGES` and `COMMENT` need a `body` unless the review has inline comments;
//! - without `event` the review is `PENDING` (no `submitted_at`, no webhook, its comments not
//!   listed), and a user can have one pending review per pull request.
//!
//! Only `APPROVED` and `CHANGES_REQUESTED` reviews can be dismissed (GitHub's "Can not dismiss a
//! ... pull request review" otherwise). Submitting or deleting a pending review is not modelled.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::api::{
    base_of, find_repo, json_response, paginate, with_link, ApiError, PageParams, Tag,
};
use crate::diffs::{self, FileDiff, LineKind};
use crate::gitdata::{missing, not_a};
use crate::objects::{choice, reactions_json, Person};
use crate::pull_files::{find_pull, repo_urls, three_dot};
use crate::render::{self, node_id};
use crate::state::{Actor, Org, Repo, State as SimState};
use crate::webhooks::Event;
use crate::{pulls, SimError, Simulator};

const ROUTE_REVIEWS: &str = "/repos/{owner}/{repo}/pulls/{pull_number}/reviews";
const ROUTE_REVIEW: &str = "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}";
const ROUTE_DISMISSALS: &str =
    "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}/dismissals";
const ROUTE_COMMENTS: &str = "/repos/{owner}/{repo}/pulls/{pull_number}/comments";

const DOCS_LIST: &str =
    "https://docs.github.com/rest/pulls/reviews#list-reviews-for-a-pull-request";
const DOCS_CREATE: &str =
    "https://docs.github.com/rest/pulls/reviews#create-a-review-for-a-pull-request";
const DOCS_GET: &str = "https://docs.github.com/rest/pulls/reviews#get-a-review-for-a-pull-request";
const DOCS_DISMISS: &str =
    "https://docs.github.com/rest/pulls/reviews#dismiss-a-review-for-a-pull-request";
const DOCS_COMMENTS: &str =
    "https://docs.github.com/rest/pulls/comments#list-review-comments-on-a-pull-request";

/// The state of a review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReviewState {
    Pending,
    Approved,
    ChangesRequested,
    Commented,
    Dismissed,
}

impl ReviewState {
    fn as_str(self) -> &'static str {
        match self {
            ReviewState::Pending => "PENDING",
            ReviewState::Approved => "APPROVED",
            ReviewState::ChangesRequested => "CHANGES_REQUESTED",
            ReviewState::Commented => "COMMENTED",
            ReviewState::Dismissed => "DISMISSED",
        }
    }
}

/// A review of a pull request.
#[derive(Debug, Clone)]
pub(crate) struct Review {
    pub id: u64,
    pub pull: u64,
    pub user: Person,
    pub body: String,
    pub state: ReviewState,
    pub commit_id: String,
    pub submitted_at: Option<DateTime<Utc>>,
}

/// An inline comment of a review.
#[derive(Debug, Clone)]
pub(crate) struct ReviewComment {
    pub id: u64,
    pub review_id: u64,
    pub pull: u64,
    pub path: String,
    pub line: u64,
    pub side: &'static str,
    pub start_line: Option<u64>,
    pub start_side: Option<&'static str>,
    /// Index of the line in the file's patch (GitHub's `position`).
    pub position: usize,
    pub diff_hunk: String,
    pub body: String,
    pub commit_id: String,
    pub user: Person,
    pub created_at: DateTime<Utc>,
}

/// The reviews and review comments of a repository's pull requests, in creation order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reviews {
    pub reviews: Vec<Review>,
    pub comments: Vec<ReviewComment>,
}

/// Why a review operation was refused.
#[derive(Debug)]
enum ReviewError {
    NotFound,
    /// A 422 with a plain message (request body of the wrong shape).
    Invalid(String),
    /// GitHub's 422 "Unprocessable Entity" with one error string.
    Unprocessable(String),
    /// GitHub's 422 "Validation Failed" with one error string.
    Failed(String),
}

impl ReviewError {
    fn response(self, documentation_url: &'static str) -> Response {
        let with_errors = |message: &str, error: String| {
            json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({
                    "message": message,
                    "errors": [error],
                    "documentation_url": documentation_url,
                    "status": "422",
                }),
            )
        };
        match self {
            ReviewError::NotFound => {
                ApiError::not_found("Not Found", documentation_url).into_response()
            }
            ReviewError::Invalid(message) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message, documentation_url)
                    .into_response()
            }
            ReviewError::Unprocessable(error) => with_errors("Unprocessable Entity", error),
            ReviewError::Failed(error) => with_errors("Validation Failed", error),
        }
    }

    fn sim(self) -> SimError {
        match self {
            ReviewError::NotFound => SimError::NotFound("Not Found".to_owned()),
            ReviewError::Invalid(message)
            | ReviewError::Unprocessable(message)
            | ReviewError::Failed(message) => SimError::Invalid(message),
        }
    }
}

/// An error answer of this family, rendered on the way out.
struct Reject(ReviewError, &'static str);

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        self.0.response(self.1)
    }
}

pub(crate) fn register(router: Router<Simulator>, tag: Tag<'_>) -> Router<Simulator> {
    router
        .route(
            ROUTE_REVIEWS,
            tag(ROUTE_REVIEWS, get(list_reviews).post(create_review)),
        )
        .route(ROUTE_REVIEW, tag(ROUTE_REVIEW, get(get_review)))
        .route(ROUTE_DISMISSALS, tag(ROUTE_DISMISSALS, put(dismiss_review)))
        .route(ROUTE_COMMENTS, tag(ROUTE_COMMENTS, get(list_comments)))
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

fn association(person: &Person) -> &'static str {
    match person {
        Person::Actor(Actor::Admin) => "MEMBER",
        _ => "NONE",
    }
}

/// A review in GitHub's `pull-request-review` shape.
fn review_json(base: &str, org: &Org, repo: &Repo, review: &Review) -> Value {
    let (api, html) = repo_urls(base, org, repo);
    let n = review.pull;
    let html_url = format!("{html}/pull/{n}#pullrequestreview-{}", review.id);
    let pull_url = format!("{api}/pulls/{n}");
    let mut m = Map::new();
    m.insert("id".into(), json!(review.id));
    m.insert(
        "node_id".into(),
        json!(node_id("PullRequestReview", review.id)),
    );
    m.insert("user".into(), review.user.json(base));
    m.insert("body".into(), json!(review.body));
    m.insert("state".into(), json!(review.state.as_str()));
    m.insert("html_url".into(), json!(html_url));
    m.insert("pull_request_url".into(), json!(pull_url));
    m.insert(
        "author_association".into(),
        json!(association(&review.user)),
    );
    m.insert(
        "_links".into(),
        json!({ "html": { "href": html_url }, "pull_request": { "href": pull_url } }),
    );
    if let Some(at) = &review.submitted_at {
        m.insert("submitted_at".into(), json!(render::time(at)));
    }
    m.insert("commit_id".into(), json!(review.commit_id));
    Value::Object(m)
}

/// A review comment in GitHub's `pull-request-review-comment` shape.
fn comment_json(base: &str, org: &Org, repo: &Repo, comment: &ReviewComment) -> Value {
    let (api, html) = repo_urls(base, org, repo);
    let n = comment.pull;
    let url = format!("{api}/pulls/comments/{}", comment.id);
    let html_url = format!("{html}/pull/{n}#discussion_r{}", comment.id);
    let pull_url = format!("{api}/pulls/{n}");
    let time = render::time(&comment.created_at);
    let mut m = Map::new();
    m.insert("url".into(), json!(url));
    m.insert("pull_request_review_id".into(), json!(comment.review_id));
    m.insert("id".into(), json!(comment.id));
    m.insert(
        "node_id".into(),
        json!(node_id("PullRequestReviewComment", comment.id)),
    );
    m.insert("diff_hunk".into(), json!(comment.diff_hunk));
    m.insert("path".into(), json!(comment.path));
    m.insert("position".into(), json!(comment.position));
    m.insert("original_position".into(), json!(comment.position));
    m.insert("commit_id".into(), json!(comment.commit_id));
    m.insert("original_commit_id".into(), json!(comment.commit_id));
    m.insert("user".into(), comment.user.json(base));
    m.insert("body".into(), json!(comment.body));
    m.insert("created_at".into(), json!(time));
    m.insert("updated_at".into(), json!(time));
    m.insert("html_url".into(), json!(html_url));
    m.insert("pull_request_url".into(), json!(pull_url));
    m.insert(
        "author_association".into(),
        json!(association(&comment.user)),
    );
    m.insert(
        "_links".into(),
        json!({
            "self": { "href": url },
            "html": { "href": html_url },
            "pull_request": { "href": pull_url },
        }),
    );
    m.insert("reactions".into(), reactions_json(&url));
    m.insert("start_line".into(), json!(comment.start_line));
    m.insert("original_start_line".into(), json!(comment.start_line));
    m.insert("start_side".into(), json!(comment.start_side));
    m.insert("line".into(), json!(comment.line));
    m.insert("original_line".into(), json!(comment.line));
    m.insert("side".into(), json!(comment.side));
    m.insert("subject_type".into(), json!("line"));
    Value::Object(m)
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// One inline comment of a create request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct NewComment {
    path: String,
    body: String,
    line: Option<u64>,
    side: Option<String>,
    start_line: Option<u64>,
    start_side: Option<String>,
    position: Option<u64>,
}

/// A create request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct NewReview {
    commit_id: Option<String>,
    body: Option<String>,
    state: Option<ReviewState>,
    comments: Vec<NewComment>,
}

/// GitHub's message for a value of the wrong type (`nil` for null, as GitHub writes it).
fn wrong(field: &str, value: &Value, expected: &str) -> String {
    match value {
        Value::Null => {
            format!("Invalid request.\n\nFor 'properties/{field}', nil is not {expected}.")
        }
        other => not_a(field, other, expected),
    }
}

/// An optional string field: absent is None, null or another type a 422.
fn text(obj: &Map<String, Value>, field: &str, shown: &str) -> Result<Option<String>, String> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong(shown, other, "a string")),
    }
}

/// An optional positive integer field.
fn number(obj: &Map<String, Value>, field: &str, shown: &str) -> Result<Option<u64>, String> {
    match obj.get(field) {
        None => Ok(None),
        Some(value) => value
            .as_u64()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| wrong(shown, value, "a positive integer")),
    }
}

fn parse_review(obj: &Map<String, Value>) -> Result<NewReview, String> {
    let state = match obj.get("event") {
        None => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "APPROVE" => ReviewState::Approved,
            "REQUEST_CHANGES" => ReviewState::ChangesRequested,
            "COMMENT" => ReviewState::Commented,
            _ => {
                return Err(wrong(
                    "event",
                    &Value::String(s.clone()),
                    "one of APPROVE, REQUEST_CHANGES, COMMENT",
                ))
            }
        }),
        Some(other) => return Err(wrong("event", other, "a string")),
    };
    let comments = match obj.get("comments") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| parse_comment(i, item))
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(wrong("comments", other, "an array")),
    };
    Ok(NewReview {
        commit_id: text(obj, "commit_id", "commit_id")?,
        body: text(obj, "body", "body")?,
        state,
        comments,
    })
}

fn parse_comment(index: usize, item: &Value) -> Result<NewComment, String> {
    let shown = |field: &str| format!("comments/{index}/{field}");
    let obj = item
        .as_object()
        .ok_or_else(|| wrong(&format!("comments/{index}"), item, "an object"))?;
    let required =
        |field: &str| text(obj, field, &shown(field))?.ok_or_else(|| missing(&shown(field)));
    let side = |field: &str| match text(obj, field, &shown(field))? {
        Some(s) if s != "LEFT" && s != "RIGHT" => Err(wrong(
            &shown(field),
            &Value::String(s),
            "one of LEFT, RIGHT",
        )),
        other => Ok(other),
    };
    Ok(NewComment {
        path: required("path")?,
        body: required("body")?,
        line: number(obj, "line", &shown("line"))?,
        side: side("side")?,
        start_line: number(obj, "start_line", &shown("start_line"))?,
        start_side: side("start_side")?,
        position: number(obj, "position", &shown("position"))?,
    })
}

/// Where a comment lands in its file's patch: (position, line, side).
fn place(file: &FileDiff, comment: &NewComment) -> Result<(usize, u64, &'static str), ReviewError> {
    let unresolved =
        |what: &str| ReviewError::Unprocessable(format!("{what} could not be resolved"));
    match (comment.line, comment.position) {
        (Some(line), _) => {
            let right = comment.side.as_deref() != Some("LEFT");
            let position = file
                .position_of(line, right)
                .ok_or_else(|| unresolved("Line"))?;
            Ok((position, line, if right { "RIGHT" } else { "LEFT" }))
        }
        (None, Some(position)) => {
            let index = usize::try_from(position).map_err(|_| unresolved("Position"))?;
            let line = file
                .lines
                .get(index)
                .ok_or_else(|| unresolved("Position"))?;
            match line.kind {
                LineKind::Context | LineKind::Added => {
                    Ok((index, line.new.unwrap_or_default(), "RIGHT"))
                }
                LineKind::Removed => Ok((index, line.old.unwrap_or_default(), "LEFT")),
                LineKind::Hunk | LineKind::NoNewline => Err(unresolved("Position")),
            }
        }
        (None, None) => Err(unresolved("Line")),
    }
}

impl SimState {
    /// Creates a review with its comments; returns its id and the webhooks.
    fn create_review(
        &mut self,
        owner: &str,
        name: &str,
        number: u64,
        request: NewReview,
        actor: Actor,
    ) -> Result<(u64, Vec<Event>), ReviewError> {
        let repo_id = self
            .repo_id(owner, name)
            .map_err(|_| ReviewError::NotFound)?;
        let repo = self.repos.get(&repo_id).ok_or(ReviewError::NotFound)?;
        let pull = repo.pulls.get(&number).ok_or(ReviewError::NotFound)?;
        let user = Person::Actor(actor);
        let pending = request.state.is_none();
        if pending
            && repo
                .reviews
                .reviews
                .iter()
                .any(|r| r.pull == number && r.state == ReviewState::Pending && r.user == user)
        {
            return Err(ReviewError::Unprocessable(
                "User can only have one pending review per pull request".to_owned(),
            ));
        }
        let body = request.body.unwrap_or_default();
        if body.trim().is_empty() && request.comments.is_empty() {
            match request.state {
                Some(ReviewState::ChangesRequested) => {
                    return Err(ReviewError::Unprocessable(
                        "You need to leave a comment indicating the requested changes.".to_owned(),
                    ))
                }
                Some(ReviewState::Commented) => {
                    return Err(ReviewError::Unprocessable(
                        "You need to leave a comment.".to_owned(),
                    ))
                }
                _ => {}
            }
        }
        let (head, base) = pulls::shas(repo, pull);
        let commit_id = match &request.commit_id {
            None => head,
            Some(sha) => {
                let lower = sha.to_ascii_lowercase();
                let found = if crate::git::is_sha(&lower) && repo.git.commit(&lower).is_some() {
                    Some(lower)
                } else {
                    repo.git.commit_by_prefix(sha)
                };
                found.ok_or_else(|| {
                    ReviewError::Unprocessable("Commit could not be resolved".to_owned())
                })?
            }
        };
        // Every comment is placed before anything is stored: all or nothing.
        let mut placed = Vec::new();
        if !request.comments.is_empty() {
            let (_, entries) = three_dot(repo, &commit_id, &base);
            let mut files: HashMap<&str, FileDiff> = HashMap::new();
            for comment in &request.comments {
                if !files.contains_key(comment.path.as_str()) {
                    let entry =
                        entries
                            .iter()
                            .find(|e| e.path == comment.path)
                            .ok_or_else(|| {
                                ReviewError::Unprocessable("Path could not be resolved".to_owned())
                            })?;
                    files.insert(comment.path.as_str(), diffs::file_diff(repo, entry));
                }
                let Some(file) = files.get(comment.path.as_str()) else {
                    return Err(ReviewError::NotFound);
                };
                let (position, line, side) = place(file, comment)?;
                let start = match comment.start_line {
                    None => None,
                    Some(start_line) => {
                        let start_side = match comment.start_side.as_deref() {
                            Some("LEFT") => "LEFT",
                            Some(_) => "RIGHT",
                            None => side,
                        };
                        let start_position = file
                            .position_of(start_line, start_side == "RIGHT")
                            .ok_or_else(|| {
                                ReviewError::Unprocessable(
                                    "Start line could not be resolved".to_owned(),
                                )
                            })?;
                        if start_position >= position {
                            return Err(ReviewError::Unprocessable(
                                "start_line must precede the end line.".to_owned(),
                            ));
                        }
                        if file.lines[start_position].hunk != file.lines[position].hunk {
                            return Err(ReviewError::Unprocessable(
                                "Pull request review thread start line must be part of the \
                                 same hunk as the line."
                                    .to_owned(),
                            ));
                        }
                        Some((start_line, start_side))
                    }
                };
                placed.push((
                    comment,
                    position,
                    line,
                    side,
                    start,
                    file.diff_hunk(position),
                ));
            }
        }
        let placed: Vec<_> = placed
            .into_iter()
            .map(|(c, position, line, side, start, hunk)| {
                (
                    c.path.clone(),
                    c.body.clone(),
                    position,
                    line,
                    side,
                    start,
                    hunk,
                )
            })
            .collect();
        let now = Utc::now();
        let review_id = self.next_object_id();
        let mut comments = Vec::new();
        for (path, body, position, line, side, start, diff_hunk) in placed {
            comments.push(ReviewComment {
                id: self.next_object_id(),
                review_id,
                pull: number,
                path,
                line,
                side,
                start_line: start.map(|(l, _)| l),
                start_side: start.map(|(_, s)| s),
                position,
                diff_hunk,
                body,
                commit_id: commit_id.clone(),
                user: user.clone(),
                created_at: now,
            });
        }
        let comment_ids: Vec<u64> = comments.iter().map(|c| c.id).collect();
        let review = Review {
            id: review_id,
            pull: number,
            user,
            body,
            state: request.state.unwrap_or(ReviewState::Pending),
            commit_id,
            submitted_at: (!pending).then_some(now),
        };
        let repo = self.repos.get_mut(&repo_id).ok_or(ReviewError::NotFound)?;
        repo.reviews.reviews.push(review);
        repo.reviews.comments.extend(comments);
        let mut events = Vec::new();
        if !pending {
            events.extend(self.review_event(repo_id, review_id, "submitted", actor));
            for id in comment_ids {
                events.extend(self.review_comment_event(repo_id, id, actor));
            }
        }
        Ok((review_id, events))
    }

    /// Dismisses an approving or change-requesting review; returns the webhooks.
    fn dismiss_review(
        &mut self,
        owner: &str,
        name: &str,
        number: u64,
        review_id: u64,
        actor: Actor,
    ) -> Result<Vec<Event>, ReviewError> {
        let repo_id = self
            .repo_id(owner, name)
            .map_err(|_| ReviewError::NotFound)?;
        let repo = self.repos.get_mut(&repo_id).ok_or(ReviewError::NotFound)?;
        if !repo.pulls.contains_key(&number) {
            return Err(ReviewError::NotFound);
        }
        let review = repo
            .reviews
            .reviews
            .iter_mut()
            .find(|r| r.id == review_id && r.pull == number)
            .ok_or(ReviewError::NotFound)?;
        let refused = match review.state {
            ReviewState::Approved | ReviewState::ChangesRequested => None,
            ReviewState::Pending => Some("pending"),
            ReviewState::Commented => Some("commented"),
            ReviewState::Dismissed => Some("dismissed"),
        };
        if let Some(state) = refused {
            return Err(ReviewError::Failed(format!(
                "Can not dismiss a {state} pull request review"
            )));
        }
        review.state = ReviewState::Dismissed;
        Ok(self
            .review_event(repo_id, review_id, "dismissed", actor)
            .into_iter()
            .collect())
    }

    /// A `pull_request_review` event about review `id`.
    fn review_event(&self, repo_id: u64, id: u64, action: &str, actor: Actor) -> Option<Event> {
        if !self.delivers_webhooks() {
            return None;
        }
        let repo = self.repos.get(&repo_id)?;
        let org = self.orgs.get(&repo.owner_key)?;
        let review = repo.reviews.reviews.iter().find(|r| r.id == id)?;
        let pull = repo.pulls.get(&review.pull)?;
        let base = self.base_url(None);
        let mut value = review_json(&base, org, repo, review);
        // Webhook payloads spell review states in lower case.
        value["state"] = json!(review.state.as_str().to_lowercase());
        let fields = vec![
            ("review", value),
            (
                "pull_request",
                pulls::pull_json(&base, org, repo, pull, false),
            ),
        ];
        self.repo_object_event(repo_id, "pull_request_review", action, actor, fields)
    }

    /// A `pull_request_review_comment` "created" event about comment `id`.
    fn review_comment_event(&self, repo_id: u64, id: u64, actor: Actor) -> Option<Event> {
        let repo = self.repos.get(&repo_id)?;
        let org = self.orgs.get(&repo.owner_key)?;
        let comment = repo.reviews.comments.iter().find(|c| c.id == id)?;
        let pull = repo.pulls.get(&comment.pull)?;
        let base = self.base_url(None);
        let fields = vec![
            ("comment", comment_json(&base, org, repo, comment)),
            (
                "pull_request",
                pulls::pull_json(&base, org, repo, pull, false),
            ),
        ];
        self.repo_object_event(
            repo_id,
            "pull_request_review_comment",
            "created",
            actor,
            fields,
        )
    }
}

/// Whether a pull request's reviews meet a protected branch's review rule: at least `required`
/// reviewers whose latest approving, change-requesting or dismissed review approves, and none
/// whose latest one requests changes (comments and pending reviews do not count). Stale
/// approvals are not dismissed on push.
pub(crate) fn approved(repo: &Repo, number: u64, required: u64) -> bool {
    let mut latest: Vec<(&Person, ReviewState)> = Vec::new();
    for review in repo.reviews.reviews.iter().filter(|r| r.pull == number) {
        if matches!(review.state, ReviewState::Pending | ReviewState::Commented) {
            continue;
        }
        match latest.iter_mut().find(|(user, _)| **user == review.user) {
            Some(entry) => entry.1 = review.state,
            None => latest.push((&review.user, review.state)),
        }
    }
    let approvals = latest
        .iter()
        .filter(|(_, s)| *s == ReviewState::Approved)
        .count() as u64;
    let blocked = latest
        .iter()
        .any(|(_, s)| *s == ReviewState::ChangesRequested);
    !blocked && approvals >= required
}

/// The number of review comments of submitted reviews on a pull request (the pull request's
/// `review_comments`).
pub(crate) fn comment_count(repo: &Repo, number: u64) -> usize {
    repo.reviews
        .comments
        .iter()
        .filter(|c| c.pull == number && submitted(repo, c))
        .count()
}

/// Whether a review is visible to REST callers: pending reviews only to their author.
fn visible(review: &Review) -> bool {
    review.state != ReviewState::Pending || review.user == Person::Actor(Actor::Api)
}

fn lookup<'a>(
    st: &'a SimState,
    owner: &str,
    name: &str,
    raw: &str,
    documentation_url: &'static str,
) -> Result<(&'a Org, &'a Repo, u64), ApiError> {
    let (org, repo) = find_repo(st, owner, name, documentation_url)?;
    let pull = find_pull(repo, raw, documentation_url)?;
    Ok((org, repo, pull.number))
}

async fn list_reviews(
    State(sim): State<Simulator>,
    Path((owner, name, raw)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, repo, number) = lookup(&st, &owner, &name, &raw, DOCS_LIST)?;
    let reviews: Vec<&Review> = repo
        .reviews
        .reviews
        .iter()
        .filter(|r| r.pull == number && visible(r))
        .collect();
    let (api, _) = repo_urls(&base, org, repo);
    let url = format!("{api}/pulls/{number}/reviews");
    let (page, link) = paginate(&reviews, PageParams::from_query(&query), &url, &query);
    let body: Vec<Value> = page
        .iter()
        .map(|r| review_json(&base, org, repo, r))
        .collect();
    Ok(with_link(
        json_response(StatusCode::OK, &Value::Array(body)),
        link,
    ))
}

/// The body of a request whose body is optional: empty means `{}`.
fn optional_object(
    body: &Bytes,
    documentation_url: &'static str,
) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    crate::gitdata::body_object(body, documentation_url)
}

async fn create_review(
    State(sim): State<Simulator>,
    Path((owner, name, raw)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let mut st = sim.lock();
    let base = base_of(&st, &headers);
    let (_, _, number) =
        lookup(&st, &owner, &name, &raw, DOCS_CREATE).map_err(IntoResponse::into_response)?;
    let obj = optional_object(&body, DOCS_CREATE).map_err(IntoResponse::into_response)?;
    let request = parse_review(&obj)
        .map_err(|m| Reject(ReviewError::Invalid(m), DOCS_CREATE).into_response())?;
    let (id, events) = st
        .create_review(&owner, &name, number, request, Actor::Api)
        .map_err(|e| Reject(e, DOCS_CREATE).into_response())?;
    sim.emit(&st, events);
    let (org, repo, _) =
        lookup(&st, &owner, &name, &raw, DOCS_CREATE).map_err(IntoResponse::into_response)?;
    let review = repo
        .reviews
        .reviews
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| Reject(ReviewError::NotFound, DOCS_CREATE).into_response())?;
    Ok(json_response(
        StatusCode::OK,
        &review_json(&base, org, repo, review),
    ))
}

/// A review of the path's pull request, visible to the caller, or GitHub's 404.
fn find_review<'a>(
    repo: &'a Repo,
    number: u64,
    raw: &str,
    documentation_url: &'static str,
) -> Result<&'a Review, ApiError> {
    raw.parse::<u64>()
        .ok()
        .and_then(|id| {
            repo.reviews
                .reviews
                .iter()
                .find(|r| r.id == id && r.pull == number && visible(r))
        })
        .ok_or_else(|| ApiError::not_found("Not Found", documentation_url))
}

async fn get_review(
    State(sim): State<Simulator>,
    Path((owner, name, raw, raw_review)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, repo, number) = lookup(&st, &owner, &name, &raw, DOCS_GET)?;
    let review = find_review(repo, number, &raw_review, DOCS_GET)?;
    Ok(json_response(
        StatusCode::OK,
        &review_json(&base, org, repo, review),
    ))
}

async fn dismiss_review(
    State(sim): State<Simulator>,
    Path((owner, name, raw, raw_review)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let mut st = sim.lock();
    let base = base_of(&st, &headers);
    let (_, repo, number) =
        lookup(&st, &owner, &name, &raw, DOCS_DISMISS).map_err(IntoResponse::into_response)?;
    let review_id = find_review(repo, number, &raw_review, DOCS_DISMISS)
        .map_err(IntoResponse::into_response)?
        .id;
    let obj =
        crate::gitdata::body_object(&body, DOCS_DISMISS).map_err(IntoResponse::into_response)?;
    let invalid = |m: String| Reject(ReviewError::Invalid(m), DOCS_DISMISS).into_response();
    text(&obj, "message", "message")
        .map_err(invalid)?
        .ok_or_else(|| invalid(missing("message")))?;
    match text(&obj, "event", "event").map_err(invalid)? {
        Some(event) if event != "DISMISS" => {
            return Err(invalid(wrong(
                "event",
                &Value::String(event),
                "one of DISMISS",
            )))
        }
        _ => {}
    }
    let events = st
        .dismiss_review(&owner, &name, number, review_id, Actor::Api)
        .map_err(|e| Reject(e, DOCS_DISMISS).into_response())?;
    sim.emit(&st, events);
    let (org, repo, _) =
        lookup(&st, &owner, &name, &raw, DOCS_DISMISS).map_err(IntoResponse::into_response)?;
    let review = find_review(repo, number, &raw_review, DOCS_DISMISS)
        .map_err(IntoResponse::into_response)?;
    Ok(json_response(
        StatusCode::OK,
        &review_json(&base, org, repo, review),
    ))
}

/// Whether the comment's review is submitted (comments of pending reviews are not listed).
fn submitted(repo: &Repo, comment: &ReviewComment) -> bool {
    repo.reviews
        .reviews
        .iter()
        .any(|r| r.id == comment.review_id && r.state != ReviewState::Pending)
}

async fn list_comments(
    State(sim): State<Simulator>,
    Path((owner, name, raw)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, repo, number) = lookup(&st, &owner, &name, &raw, DOCS_COMMENTS)?;
    let invalid = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m, DOCS_COMMENTS);
    let sort = choice(&query, "sort", &["created", "updated"], "created").map_err(invalid)?;
    // GitHub ignores `direction` without `sort`; with it, the default is descending.
    let direction = match query.get("sort") {
        Some(_) => choice(&query, "direction", &["asc", "desc"], "desc").map_err(invalid)?,
        None => "asc",
    };
    let since = match query.get("since") {
        None => None,
        Some(raw) => Some(
            DateTime::parse_from_rfc3339(raw)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| invalid(format!("Invalid value for `since`: {raw:?}")))?,
        ),
    };
    let _ = sort; // Comments are never edited: created and updated order are the same.
    let mut comments: Vec<&ReviewComment> = repo
        .reviews
        .comments
        .iter()
        .filter(|c| c.pull == number && submitted(repo, c))
        .filter(|c| since.is_none_or(|t| c.created_at >= t))
        .collect();
    if direction == "desc" {
        comments.reverse();
    }
    let (api, _) = repo_urls(&base, org, repo);
    let url = format!("{api}/pulls/{number}/comments");
    let (page, link) = paginate(&comments, PageParams::from_query(&query), &url, &query);
    let body: Vec<Value> = page
        .iter()
        .map(|c| comment_json(&base, org, repo, c))
        .collect();
    Ok(with_link(
        json_response(StatusCode::OK, &Value::Array(body)),
        link,
    ))
}

impl Simulator {
    /// The reviews of a pull request in the shape of `GET .../pulls/{number}/reviews`, in
    /// creation order, pending ones included; empty if the repository or pull request does not
    /// exist.
    pub fn pull_reviews(&self, owner: &str, repo: &str, number: u64) -> Vec<Value> {
        let st = self.lock();
        let base = st.base_url(None);
        let Some((org, found)) = st.repo(owner, repo) else {
            return Vec::new();
        };
        found
            .reviews
            .reviews
            .iter()
            .filter(|r| r.pull == number)
            .map(|r| review_json(&base, org, found, r))
            .collect()
    }

    /// The review comments of a pull request in the shape of `GET .../pulls/{number}/comments`,
    /// in creation order, those of pending reviews included; empty if the repository or pull
    /// request does not exist.
    pub fn pull_review_comments(&self, owner: &str, repo: &str, number: u64) -> Vec<Value> {
        let st = self.lock();
        let base = st.base_url(None);
        let Some((org, found)) = st.repo(owner, repo) else {
            return Vec::new();
        };
        found
            .reviews
            .comments
            .iter()
            .filter(|c| c.pull == number)
            .map(|c| comment_json(&base, org, found, c))
            .collect()
    }

    /// Reviews a pull request as a human in the UI (author and webhook sender `sim-admin`):
    /// `event` is `APPROVE`, `REQUEST_CHANGES` or `COMMENT`, without inline comments. Validates
    /// like the REST endpoint and sends `pull_request_review` "submitted". Returns the review id.
    pub fn review_pull_request(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
        event: &str,
        body: &str,
    ) -> Result<u64, SimError> {
        let obj = Map::from_iter([
            ("event".to_owned(), json!(event)),
            ("body".to_owned(), json!(body)),
        ]);
        let request = parse_review(&obj).map_err(SimError::Invalid)?;
        let mut st = self.lock();
        let (id, events) = st
            .create_review(owner, repo, number, request, Actor::Admin)
            .map_err(ReviewError::sim)?;
        self.emit(&st, events);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn review_bodies_parse_like_github() {
        let obj = |v: Value| v.as_object().cloned().unwrap();
        let parsed = parse_review(&obj(json!({
            "event": "COMMENT",
            "body": "b",
            "comments": [{ "path": "a", "body": "x", "line": 2, "side": "RIGHT" }],
        })))
        .unwrap();
        assert_eq!(parsed.state, Some(ReviewState::Commented));
        assert_eq!(parsed.comments[0].line, Some(2));
        assert_eq!(parse_review(&Map::new()).unwrap().state, None);
        assert!(parse_review(&obj(json!({ "event": "MERGE" }))).is_err());
        let null_body = parse_review(&obj(json!({ "body": null }))).unwrap_err();
        assert!(null_body.contains("nil is not a string"), "{null_body}");
        assert!(parse_review(&obj(json!({ "comments": [{ "path": "a" }] }))).is_err());
        assert!(parse_review(&obj(
            json!({ "comments": [{ "path": "a", "body": "x", "line": 0 }] })
        ))
        .is_err());
    }
}
