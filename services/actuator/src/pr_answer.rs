//! Answers on a pull request: what a rule that judges a pull request's change says on the pull
//! request itself, when its profile's alerts are on (`dry_run`: the requests are recorded and
//! published, not sent).
//!
//! The answer is the profile rule's `action` (Minder's `pr_vulnerability_check` schema), else
//! the eval type's default:
//! - `review` (vulncheck's default): a review that requests changes, with a line comment at
//!   each finding, dismissed when the rule passes or replaced on the next head;
//! - `comment` (homoglyphs' default, as Minder): the same review as a comment, which GitHub
//!   does not let anyone dismiss, so it stays as the record of what that head had;
//! - `commit_status`: a `failure` status on the head (context `plumbline/<rule name>`),
//!   `success` once the rule passes (a status only; Minder adds a comment review too, which
//!   the `comment` action gives where wanted);
//! - `summary`: one comment review per head listing the findings, no line comments;
//! - `profile_only`: nothing on the pull request, the verdict only.
//!
//! Never twice: an answer is recorded with the review and the head it was given at, so a
//! redelivered verdict, a sweep or a restart finds it answered. Only a review Plumbline
//! recorded is taken for its own (a pull request's author can post anything, markers
//! included). The
//! rule is evaluated again against the live pull request before anything is sent, for the lines
//! to comment on and so that a change pushed meanwhile is not answered with stale findings.

use super::*;
use crate::ledger::Ended;
use serde_json::json;

/// Line comments in one review at most; the rest are listed in its body.
const MAX_LINE_COMMENTS: usize = 50;
/// Findings listed in a review's body at most.
const MAX_LISTED: usize = 100;

/// What a rule answers on a pull request with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    Review {
        /// `REQUEST_CHANGES` or `COMMENT`.
        event: &'static str,
        line_comments: bool,
    },
    /// A commit status on the head.
    Status,
    ProfileOnly,
}

impl Answer {
    fn action_type(self) -> &'static str {
        match self {
            Answer::Status => "commit_status",
            Answer::Review {
                line_comments: false,
                ..
            } => "pull_request_summary",
            Answer::Review { .. } => "pull_request_review",
            Answer::ProfileOnly => "profile_only",
        }
    }
}

/// The answer a rule gives on a pull request, if it gives one: `Err` for an `action` this
/// version does not know (the rule type's schema should have refused it).
pub(crate) fn answer_for(
    rule: &CompiledRule,
    profile_rule: &ProfileRule,
) -> Option<Result<Answer, String>> {
    let eval = rule.rule_type.def.eval.kind.as_str();
    let action = profile_rule.def.get("action").and_then(Value::as_str);
    let review = |event, line_comments| {
        Ok(Answer::Review {
            event,
            line_comments,
        })
    };
    Some(match (eval, action) {
        (_, Some("review")) | ("vulncheck", None) => review("REQUEST_CHANGES", true),
        (_, Some("comment")) | ("homoglyphs", None) => review("COMMENT", true),
        (_, Some("commit_status")) => Ok(Answer::Status),
        (_, Some("summary")) => review("COMMENT", false),
        (_, Some("profile_only")) => Ok(Answer::ProfileOnly),
        (_, Some(other)) => Err(format!(
            "action {other:?} is not one of review, comment, commit_status, summary, profile_only"
        )),
        _ => return None,
    })
}

/// `(review id, commit)` of a review.
fn review_ref(r: &Value) -> (u64, &str) {
    (
        r.get("id").and_then(Value::as_u64).unwrap_or(0),
        r.get("commit_id").and_then(Value::as_str).unwrap_or(""),
    )
}

impl Actuator {
    /// Every review of the pull request (all pages).
    async fn reviews(&self, job: &Job<'_>, number: u64) -> Result<Vec<Value>, Failure> {
        let (owner, repo) = (&job.entity.owner, &job.entity.name);
        let mut all = Vec::new();
        for page in 1..=30 {
            let path =
                format!("/repos/{owner}/{repo}/pulls/{number}/reviews?per_page=100&page={page}");
            let r = job
                .github
                .request_ok(Method::GET, &path, None)
                .await
                .map_err(github_unavailable)?;
            let batch = match r.json() {
                Ok(Value::Array(items)) => items,
                _ => {
                    return Err(Failure::Attempt(format!(
                        "GET {path}: not a list of reviews"
                    )))
                }
            };
            let last = batch.len() < 100;
            all.extend(batch);
            if last {
                break;
            }
        }
        Ok(all)
    }

    /// Answers a pull request's failing or passing verdict (see the module documentation).
    #[tracing::instrument(
        name = "action.answer_pull_request",
        skip_all,
        fields(rule_type = %job.verdict.rule_type, rule = %job.verdict.rule_name, mode = mode.as_str())
    )]
    pub(crate) async fn answer_pull_request(
        &self,
        job: &Job<'_>,
        answer: Answer,
        mode: ActionMode,
        failing: bool,
    ) -> Result<(), Failure> {
        let (review, status) = match answer {
            Answer::Review {
                event,
                line_comments,
            } => (Some((event, line_comments)), false),
            Answer::Status => (None, true),
            Answer::ProfileOnly => return Ok(()),
        };
        let props = &job.entity.properties;
        let (Some(number), Some(head)) = (
            props.get("number").and_then(Value::as_u64),
            props
                .get("head_sha")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())),
        ) else {
            tracing::warn!(entity = %job.entity_id, "pull request without a number or head: not answered");
            return Ok(());
        };
        let done = ActionState::Ended(if mode == ActionMode::DryRun {
            ActionStatus::Planned
        } else {
            ActionStatus::Applied
        });
        let at_head = format!("@{head}");
        let last = self.last_alert(job).await?;
        let operation = if failing {
            // Already answered at this head (a sweep, a redelivery): nothing new to say.
            if last.as_ref().is_some_and(|l| {
                l.operation == ActionOperation::Open
                    && l.status == done
                    && l.provider_ref.ends_with(&at_head)
            }) {
                return Ok(());
            }
            ActionOperation::Open
        } else {
            // Only a failure answered before has anything to take back.
            if !last
                .as_ref()
                .is_some_and(|l| l.operation == ActionOperation::Open && l.status == done)
            {
                return Ok(());
            }
            ActionOperation::Close
        };
        let action_type = answer.action_type();
        let action = self.new_action(
            job,
            plumbline_domain::ActionKind::Alert,
            action_type,
            operation,
        );
        let outcome = self.outcome(
            job,
            ActionKind::Alert,
            action_type,
            operation.as_str(),
            &action.idempotency_key,
        );
        let id = match self.claim(&action).await?.into_action() {
            Err(existing) => return self.announce(job, outcome, &existing).await,
            Ok((id, _)) => id,
        };
        if let Some(why) = self.identity_mismatch(job).await? {
            return self
                .finish(job, id, outcome, Ended::new(ActionStatus::Failed, why))
                .await;
        }
        // The live pull request, judged again: the findings to point at, and no answer to a
        // change that is no longer there.
        let live = match self.reevaluate(job).await? {
            Ok(o) => o,
            Err(why) => {
                return self
                    .finish(job, id, outcome, Ended::new(ActionStatus::Failed, why))
                    .await
            }
        };
        let now_failing = live.status == EvalStatus::Fail;
        if now_failing != failing || matches!(live.status, EvalStatus::Error | EvalStatus::Skipped)
        {
            let ended = Ended::new(
                ActionStatus::Skipped,
                format!(
                    "the rule is {} on the live pull request now, not {}: the next evaluation answers",
                    live.status.as_str(),
                    if failing { "fail" } else { "pass" }
                ),
            );
            return self.finish(job, id, outcome, ended).await;
        }
        let (owner, repo) = (job.entity.owner.as_str(), job.entity.name.as_str());
        let marker = alerts::marker(job.entity_id, &job.verdict.profile, &job.verdict.rule_name);
        let url = |p: &str| format!("{}{}", job.github.api_url(), p);
        let context = format!("plumbline/{}", job.verdict.rule_name);
        let status_path = format!("/repos/{owner}/{repo}/statuses/{head}");
        let status_body = |state: &str, description: String| {
            json!({
                "state": state,
                "context": context,
                "description": description.chars().take(140).collect::<String>(),
            })
        };
        let reviews = match review {
            Some(_) => self.reviews(job, number).await?,
            None => Vec::new(),
        };
        // Our earlier review is the one we recorded, by id: a review anyone else posts with
        // the same text (its marker included) is not taken for ours, so it can neither stand
        // in for an answer nor be dismissed by us. (A crash between posting a review and
        // recording it can therefore leave one extra review.)
        let recorded = last
            .as_ref()
            .filter(|l| l.operation == ActionOperation::Open && l.status == done)
            .and_then(|l| l.provider_ref.strip_prefix("review:"))
            .and_then(|r| r.split('@').next())
            .and_then(|id| id.parse::<u64>().ok());
        let previous = recorded.and_then(|id| {
            reviews.iter().find(|r| {
                r.get("id").and_then(Value::as_u64) == Some(id)
                    && r.get("state").and_then(Value::as_str) != Some("DISMISSED")
            })
        });
        let reviews_path = format!("/repos/{owner}/{repo}/pulls/{number}/reviews");
        let dismissal = |review: u64, message: String| {
            (
                format!("{reviews_path}/{review}/dismissals"),
                json!({"message": message, "event": "DISMISS"}),
            )
        };
        // What to send, in order.
        let mut plan: Vec<(Method, String, Value)> = Vec::new();
        let provider_ref;
        if failing {
            if let Some(prev) = previous {
                let (prev_id, prev_commit) = review_ref(prev);
                if prev_commit == head {
                    // Posted by an attempt cut short before it was recorded.
                    let ended = Ended {
                        provider_ref: format!("review:{prev_id}{at_head}"),
                        ..Ended::new(
                            ActionStatus::Applied,
                            format!("review {prev_id} on {head} was already posted: reused"),
                        )
                    };
                    return self.finish(job, id, outcome, ended).await;
                }
                if matches!(
                    prev.get("state").and_then(Value::as_str),
                    Some("CHANGES_REQUESTED" | "APPROVED")
                ) {
                    let (p, b) = dismissal(
                        prev_id,
                        format!("Superseded by Plumbline's review of {head}."),
                    );
                    plan.push((Method::PUT, p, b));
                }
            }
            if let Some((event, line_comments)) = review {
                let (body, comments) = review_content(job, &marker, &live, line_comments);
                plan.push((
                    Method::POST,
                    reviews_path.clone(),
                    json!({"commit_id": head, "event": event, "body": body, "comments": comments}),
                ));
            }
            if status {
                plan.push((
                    Method::POST,
                    status_path.clone(),
                    status_body("failure", live.message.clone()),
                ));
            }
            provider_ref = format!("{}{at_head}", if status { "status" } else { "review" });
        } else {
            if let Some(prev) = previous {
                if prev.get("state").and_then(Value::as_str) == Some("CHANGES_REQUESTED") {
                    let (p, b) = dismissal(
                        review_ref(prev).0,
                        format!("Plumbline: `{}` passes at {head}.", job.verdict.rule_name),
                    );
                    plan.push((Method::PUT, p, b));
                }
            }
            if status {
                plan.push((
                    Method::POST,
                    status_path.clone(),
                    status_body("success", format!("{} passes", job.verdict.rule_name)),
                ));
            }
            provider_ref = format!("passed{at_head}");
        }
        let requests: Vec<PlannedRequest> = plan
            .iter()
            .map(|(m, p, b)| PlannedRequest::new(m.as_str(), url(p), b.to_string()))
            .collect();
        if mode == ActionMode::DryRun {
            let ended = Ended {
                requests,
                provider_ref,
                ..Ended::new(
                    ActionStatus::Planned,
                    "dry run: nothing sent to the pull request",
                )
            };
            return self.finish(job, id, outcome, ended).await;
        }
        let mut review_id = None;
        for (method, path, body) in &plan {
            let reservation = self.reserve(job, 1).await?;
            let sent = alerts::send(job.github, method.clone(), path, body).await;
            reservation.finish(1).await;
            let (code, mut answer) = sent.map_err(github_unavailable)?;
            // A line GitHub will not comment on (its diff changed under us): the review goes
            // out with the findings in its body instead.
            if code == 422
                && path == &reviews_path
                && body["comments"].as_array().is_some_and(|c| !c.is_empty())
            {
                let (text, _) = review_content(job, &marker, &live, false);
                let mut again = body.clone();
                again["comments"] = json!([]);
                again["body"] = json!(text);
                let reservation = self.reserve(job, 1).await?;
                let sent = alerts::send(job.github, method.clone(), path, &again).await;
                reservation.finish(1).await;
                let (c, a) = sent.map_err(github_unavailable)?;
                if (200..300).contains(&c) {
                    answer = a;
                } else {
                    return self
                        .refused(job, id, outcome, requests, method, path, c, &a)
                        .await;
                }
            } else if !(200..300).contains(&code) {
                // A review gone meanwhile needs no dismissal.
                if !(code == 404 && path.ends_with("/dismissals")) {
                    return self
                        .refused(job, id, outcome, requests, method, path, code, &answer)
                        .await;
                }
            }
            if path == &reviews_path {
                review_id = answer.get("id").and_then(Value::as_u64);
            }
        }
        let provider_ref = match review_id {
            Some(r) => format!("review:{r}{at_head}"),
            None => provider_ref,
        };
        let message = if failing {
            format!("answered on {owner}/{repo}#{number} at {head}")
        } else {
            format!("{owner}/{repo}#{number} passes at {head}: earlier answer taken back")
        };
        let ended = Ended {
            requests,
            provider_ref,
            ..Ended::new(ActionStatus::Applied, message)
        };
        self.finish(job, id, outcome, ended).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn refused(
        &self,
        job: &Job<'_>,
        id: i64,
        outcome: ActionOutcome,
        requests: Vec<PlannedRequest>,
        method: &Method,
        path: &str,
        code: u16,
        answer: &Value,
    ) -> Result<(), Failure> {
        let why = answer.get("message").and_then(Value::as_str).unwrap_or("");
        let ended = Ended {
            requests,
            ..Ended::new(
                ActionStatus::Failed,
                format!("{method} {path} answered {code}: {why}"),
            )
        };
        self.finish(job, id, outcome, ended).await
    }
}

/// A review's body (marker first, so the review is found again) and its line comments.
fn review_content(
    job: &Job<'_>,
    marker: &str,
    live: &plumbline_engine::Outcome,
    line_comments: bool,
) -> (String, Vec<Value>) {
    let title = if job.rule.rule_type.display_name.is_empty() {
        job.verdict.rule_type.as_str()
    } else {
        job.rule.rule_type.display_name.as_str()
    };
    let mut body = format!(
        "{marker}\n\n### Plumbline: {title}\n\n{}\n",
        if live.message.is_empty() {
            "The rule fails on this change."
        } else {
            live.message.as_str()
        }
    );
    let mut comments = Vec::new();
    let mut listed = Vec::new();
    for a in &live.annotations {
        if line_comments && a.in_diff && comments.len() < MAX_LINE_COMMENTS {
            comments.push(json!({
                "path": a.path,
                "line": a.line,
                "side": "RIGHT",
                "body": format!("**{title}**: {}", a.message),
            }));
        } else {
            listed.push(format!("- `{}` line {}: {}", a.path, a.line, a.message));
        }
    }
    if live.annotations.is_empty() {
        listed.extend(live.details.iter().map(|d| format!("- {d}")));
    }
    if !listed.is_empty() {
        body.push('\n');
        for l in listed.iter().take(MAX_LISTED) {
            body.push_str(l);
            body.push('\n');
        }
        if listed.len() > MAX_LISTED {
            body.push_str(&format!("- and {} more\n", listed.len() - MAX_LISTED));
        }
    }
    if !job.rule.rule_type.guidance.trim().is_empty() {
        body.push_str(&format!("\n{}\n", job.rule.rule_type.guidance.trim()));
    }
    (body, comments)
}
