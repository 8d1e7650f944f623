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
//! - `commit_status`: a status on every head (context `plumbline/<rule name>`): `failure`,
//!   `error` when the change could not be inspected, `success` when the rule passes, so the
//!   status can be a required check (a status only; Minder adds a comment review too, which
//!   the `comment` action gives where wanted);
//! - `summary`: one comment review per head listing the findings, no line comments;
//! - `profile_only`: nothing on the pull request, the verdict only.
//!
//! An `error` verdict (the change could not be inspected in full) is answered like a failure,
//! saying so: a change that cannot be judged must not look clean. Reviews and statuses show
//! what an author controls (file names, matched text) as code, never as Markdown or mentions.
//!
//! Never twice: an answer is recorded with the review and the head it was given at, so a
//! redelivered verdict, a sweep or a restart finds it answered. Only a review Plumbline
//! recorded is taken for its own (a pull request's author can post anything, markers
//! included). The rule is evaluated again against the live pull request before anything is
//! sent, for the lines to comment on and so that a change pushed meanwhile is not answered with
//! stale findings.

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

/// A review's id.
fn review_id(r: &Value) -> u64 {
    r.get("id").and_then(Value::as_u64).unwrap_or(0)
}

impl Actuator {
    /// One review of the pull request; `None` when GitHub no longer has it.
    async fn review(&self, job: &Job<'_>, number: u64, id: u64) -> Result<Option<Value>, Failure> {
        let (owner, repo) = (&job.entity.owner, &job.entity.name);
        let path = format!("/repos/{owner}/{repo}/pulls/{number}/reviews/{id}");
        match job.github.request_ok(Method::GET, &path, None).await {
            Ok(r) => r
                .json()
                .map(Some)
                .map_err(|e| Failure::Attempt(format!("GET {path}: {e}"))),
            Err(GitHubError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(github_unavailable(e)),
        }
    }

    /// Answers a pull request's verdict (see the module documentation).
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
        verdict: EvalStatus,
    ) -> Result<(), Failure> {
        let (review, status) = match answer {
            Answer::Review {
                event,
                line_comments,
            } => (Some((event, line_comments)), false),
            Answer::Status => (None, true),
            Answer::ProfileOnly => return Ok(()),
        };
        // What the answer says: a failure, or that the change could not be inspected (an
        // `error` verdict is answered too: a change that cannot be judged must not look clean).
        let state = match verdict {
            EvalStatus::Fail => "failure",
            EvalStatus::Error => "error",
            EvalStatus::Pass => "success",
            EvalStatus::Skipped => return Ok(()),
        };
        let answering = verdict != EvalStatus::Pass;
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
        // Recorded answers end in `:<state>@<head>`.
        let stamp = format!(":{state}@{head}");
        let last = self.last_alert(job).await?.filter(|l| l.status == done);
        // Already said at this head (a sweep, a redelivery): nothing new to say.
        if last
            .as_ref()
            .is_some_and(|l| l.provider_ref.ends_with(&stamp))
        {
            return Ok(());
        }
        let open = last
            .as_ref()
            .is_some_and(|l| l.operation == ActionOperation::Open);
        // A pass takes back an earlier answer, and a status answer says `success` on every
        // head (so the status can be required); otherwise there is nothing to say.
        if !answering && !open && !status {
            return Ok(());
        }
        let operation = if answering {
            ActionOperation::Open
        } else {
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
            // What cannot be read cannot be inspected: that is what an error verdict says.
            Err(why) if verdict == EvalStatus::Error => plumbline_engine::Outcome::error(why),
            Err(why) => {
                return self
                    .finish(job, id, outcome, Ended::new(ActionStatus::Failed, why))
                    .await
            }
        };
        if live.status != verdict {
            let ended = Ended::new(
                ActionStatus::Skipped,
                format!(
                    "the rule is {} on the live pull request now, not {}: the next evaluation answers",
                    live.status.as_str(),
                    verdict.as_str()
                ),
            );
            return self.finish(job, id, outcome, ended).await;
        }
        let (owner, repo) = (job.entity.owner.as_str(), job.entity.name.as_str());
        let marker = alerts::marker(job.entity_id, &job.verdict.profile, &job.verdict.rule_name);
        let url = |p: &str| format!("{}{}", job.github.api_url(), p);
        let context = format!("plumbline/{}", job.verdict.rule_name);
        let status_path = format!("/repos/{owner}/{repo}/statuses/{head}");
        let description = match verdict {
            EvalStatus::Pass => format!("{} passes", job.verdict.rule_name),
            EvalStatus::Error => format!("could not be inspected: {}", live.message),
            _ => live.message.clone(),
        };
        let status_body = json!({
            "state": state,
            "context": context,
            "description": description.chars().take(140).collect::<String>(),
        });
        // Our earlier review is the one we recorded, by id: a review anyone else posts with
        // the same text (its marker included) is not taken for ours, so it can neither stand
        // in for an answer nor be dismissed by us. (A crash between posting a review and
        // recording it can therefore leave one extra review.)
        let recorded = last
            .as_ref()
            .filter(|l| l.operation == ActionOperation::Open)
            .and_then(|l| l.provider_ref.strip_prefix("review:"))
            .and_then(|r| r.split(':').next())
            .and_then(|id| id.parse::<u64>().ok());
        let previous = match (review, recorded) {
            (Some(_), Some(id)) => self.review(job, number, id).await?,
            _ => None,
        }
        .filter(|r| r.get("state").and_then(Value::as_str) != Some("DISMISSED"));
        let reviews_path = format!("/repos/{owner}/{repo}/pulls/{number}/reviews");
        let dismissal = |review: u64, message: String| {
            (
                Method::PUT,
                format!("{reviews_path}/{review}/dismissals"),
                json!({"message": message, "event": "DISMISS"}),
            )
        };
        let dismissable = |r: &Value| {
            matches!(
                r.get("state").and_then(Value::as_str),
                Some("CHANGES_REQUESTED" | "APPROVED")
            )
        };
        // What to send, in order: the new review before the old one is dismissed, so a review
        // GitHub refuses never leaves the pull request with none.
        let mut plan: Vec<(Method, String, Value)> = Vec::new();
        if answering {
            if let Some((event, line_comments)) = review {
                let (body, comments) = review_content(job, &marker, &live, line_comments, verdict);
                plan.push((
                    Method::POST,
                    reviews_path.clone(),
                    json!({"commit_id": head, "event": event, "body": body, "comments": comments}),
                ));
                if let Some(prev) = previous.as_ref().filter(|p| dismissable(p)) {
                    plan.push(dismissal(
                        review_id(prev),
                        format!("Superseded by Plumbline's review of {head}."),
                    ));
                }
            }
        } else if let Some(prev) = previous.as_ref().filter(|p| dismissable(p)) {
            plan.push(dismissal(
                review_id(prev),
                format!("Plumbline: {} passes at {head}.", job.verdict.rule_name),
            ));
        }
        if status {
            plan.push((Method::POST, status_path.clone(), status_body));
        }
        let requests: Vec<PlannedRequest> = plan
            .iter()
            .map(|(m, p, b)| PlannedRequest::new(m.as_str(), url(p), b.to_string()))
            .collect();
        let stamped = |review: Option<u64>| match (review, status) {
            (Some(r), _) => format!("review:{r}{stamp}"),
            (None, true) => format!("status{stamp}"),
            (None, false) => format!("review{stamp}"),
        };
        if mode == ActionMode::DryRun {
            let ended = Ended {
                requests,
                provider_ref: stamped(None),
                ..Ended::new(
                    ActionStatus::Planned,
                    "dry run: nothing sent to the pull request",
                )
            };
            return self.finish(job, id, outcome, ended).await;
        }
        let mut posted = None;
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
                let (text, _) = review_content(job, &marker, &live, false, verdict);
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
                posted = answer.get("id").and_then(Value::as_u64);
            }
        }
        let message = match verdict {
            EvalStatus::Pass => format!("{owner}/{repo}#{number} passes at {head}"),
            _ => format!("answered on {owner}/{repo}#{number} at {head} ({state})"),
        };
        let ended = Ended {
            requests,
            provider_ref: stamped(posted),
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

/// Largest review body sent (GitHub refuses bodies over 65,536 characters).
const MAX_BODY_CHARS: usize = 60_000;
/// Longest single finding shown.
const MAX_ENTRY_CHARS: usize = 500;

/// `text` as an inline code span, on one line, at most [`MAX_ENTRY_CHARS`]: what an author
/// controls (file names, matched text) is shown literally, never rendered as Markdown, links
/// or @mentions.
fn code(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_ENTRY_CHARS)
        .collect();
    let longest = flat.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    format!("{fence} {flat} {fence}")
}

/// A review's body (the marker first, for people reading it) and its line comments.
fn review_content(
    job: &Job<'_>,
    marker: &str,
    live: &plumbline_engine::Outcome,
    line_comments: bool,
    verdict: EvalStatus,
) -> (String, Vec<Value>) {
    let title = if job.rule.rule_type.display_name.is_empty() {
        job.verdict.rule_type.as_str()
    } else {
        job.rule.rule_type.display_name.as_str()
    };
    let lead = if verdict == EvalStatus::Error {
        "Plumbline could not inspect this change, so it cannot say the change is safe:"
    } else {
        "The rule fails on this change:"
    };
    let mut body = format!(
        "{marker}\n\n### Plumbline: {}\n\n{lead} {}\n",
        code(title),
        code(if live.message.is_empty() {
            "the rule's policy denied the change"
        } else {
            live.message.as_str()
        })
    );
    let mut comments = Vec::new();
    let mut listed = Vec::new();
    for a in &live.annotations {
        if line_comments && a.in_diff && a.line > 0 && comments.len() < MAX_LINE_COMMENTS {
            comments.push(json!({
                "path": a.path,
                "line": a.line,
                "side": "RIGHT",
                "body": format!("**Plumbline**: {}", code(&a.message)),
            }));
        } else {
            listed.push(format!(
                "- {} line {}: {}",
                code(&a.path),
                a.line,
                code(&a.message)
            ));
        }
    }
    if live.annotations.is_empty() {
        listed.extend(live.details.iter().map(|d| format!("- {}", code(d))));
    }
    if !listed.is_empty() {
        body.push('\n');
        for l in listed.iter().take(MAX_LISTED) {
            if body.len() + l.len() + 64 > MAX_BODY_CHARS {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        let shown = listed
            .iter()
            .take(MAX_LISTED)
            .filter(|l| body.contains(l.as_str()))
            .count();
        if listed.len() > shown {
            body.push_str(&format!("- and {} more\n", listed.len() - shown));
        }
    }
    let guidance = job.rule.rule_type.guidance.trim();
    if !guidance.is_empty() && body.len() + guidance.len() < MAX_BODY_CHARS {
        body.push_str(&format!("\n{guidance}\n"));
    }
    (body, comments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_an_author_controls_is_shown_as_code_on_one_line() {
        assert_eq!(code("src/a.js"), "` src/a.js `");
        // Backticks cannot close the span early; newlines cannot start Markdown blocks.
        assert_eq!(code("a`b``c"), "``` a`b``c ```");
        let hostile = code("x\n## All checks passed\n@org/security-team");
        assert!(!hostile.contains('\n'), "{hostile}");
        assert!(hostile.starts_with("` ") && hostile.ends_with(" `"));
        assert!(code(&"y".repeat(10_000)).len() < MAX_ENTRY_CHARS + 10);
    }
}
