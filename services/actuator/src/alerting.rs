//! The actuator's alert actions: opening an advisory (or issue) when a rule fails and closing
//! it when the rule passes again, claimed and recorded like remediations. The GitHub calls and
//! markers they use are in `alerts.rs`.

use super::*;
use crate::ledger::Ended;

impl Actuator {
    /// The last alert action of this rule that opened or closed something (or planned to).
    pub(crate) async fn last_alert(&self, job: &Job<'_>) -> Result<Option<ActionRecord>, Failure> {
        self.store
            .last_action(
                job.entity_id,
                &job.verdict.profile,
                &job.verdict.rule_name,
                plumbline_domain::ActionKind::Alert,
                &[ActionStatus::Applied, ActionStatus::Planned],
            )
            .await
            .map_err(unavailable)
    }

    #[tracing::instrument(
        name = "action.open_alert",
        skip_all,
        fields(rule_type = %job.verdict.rule_type, rule = %job.verdict.rule_name, mode = mode.as_str())
    )]
    pub(crate) async fn open_alert(&self, job: &Job<'_>, mode: ActionMode) -> Result<(), Failure> {
        let planned = ActionState::Ended(if mode == ActionMode::DryRun {
            ActionStatus::Planned
        } else {
            ActionStatus::Applied
        });
        if let Some(last) = self.last_alert(job).await? {
            if last.operation == ActionOperation::Open && last.status == planned {
                return Ok(()); // already open
            }
        }
        let kind = match job.rule.alert_kind() {
            Some(Ok(k)) => k,
            Some(Err(e)) => {
                tracing::warn!(rule_type = %job.verdict.rule_type, error = %e, "alert not opened");
                return Ok(());
            }
            None => return Ok(()),
        };
        let action_type = match kind {
            AlertKind::SecurityAdvisory => "security_advisory",
            AlertKind::Issue => "issue",
        };
        let action = self.new_action(
            job,
            plumbline_domain::ActionKind::Alert,
            action_type,
            ActionOperation::Open,
        );
        let mut outcome = self.outcome(
            job,
            ActionKind::Alert,
            action_type,
            "open",
            &action.idempotency_key,
        );
        let id = match self.claim(&action).await?.into_action() {
            Err(existing) => return self.announce(job, outcome, &existing).await,
            Ok((id, _)) => id,
        };
        // An alert describes a weakness: it must not land on another repository.
        if let Some(why) = self.identity_mismatch(job).await? {
            return self
                .finish(job, id, outcome, Ended::new(ActionStatus::Failed, why))
                .await;
        }
        let (owner, repo) = (job.entity.owner.as_str(), job.entity.name.as_str());
        let marker = alerts::marker(job.entity_id, &job.verdict.profile, &job.verdict.rule_name);
        let summary = alerts::summary(job.rule, job.verdict, job.entity);
        let description = alerts::description(job.rule, job.verdict, job.entity, &marker);
        let (path, body) = match kind {
            AlertKind::SecurityAdvisory => alerts::advisory_request(
                owner,
                repo,
                &summary,
                &description,
                job.rule.alert_severity(),
            ),
            AlertKind::Issue => alerts::issue_request(owner, repo, &summary, &description),
        };
        let url = |p: &str| format!("{}{}", job.github.api_url(), p);
        if mode == ActionMode::DryRun {
            let ended = Ended {
                requests: vec![PlannedRequest::new("POST", url(&path), body.to_string())],
                ..Ended::new(
                    ActionStatus::Planned,
                    format!("dry run: {action_type} not opened"),
                )
            };
            return self.finish(job, id, outcome, ended).await;
        }
        // One left open by an attempt cut short before it was recorded is this one.
        if let Some(found) = alerts::find_open(job.github, owner, repo, &marker)
            .await
            .map_err(github_unavailable)?
        {
            let ended = Ended {
                provider_ref: found.clone(),
                ..Ended::new(
                    ActionStatus::Applied,
                    format!("{found} was already open: reused"),
                )
            };
            return self.finish(job, id, outcome, ended).await;
        }
        let mut requests = Vec::new();
        let (mut path, mut body, mut kind) = (path, body, kind);
        loop {
            let reservation = self.reserve(job, 1).await?;
            let sent = alerts::send(job.github, Method::POST, &path, &body).await;
            reservation.finish(1).await;
            let (status, answer) = sent.map_err(github_unavailable)?;
            requests.push(PlannedRequest::new("POST", url(&path), body.to_string()));
            let refused = matches!(status, 403 | 404 | 410 | 422);
            if (200..300).contains(&status) {
                let provider_ref = match kind {
                    AlertKind::SecurityAdvisory => format!(
                        "advisory:{}",
                        answer
                            .get("ghsa_id")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                    ),
                    AlertKind::Issue => format!(
                        "issue:{}",
                        answer
                            .get("number")
                            .and_then(Value::as_u64)
                            .unwrap_or_default()
                    ),
                };
                let html = answer
                    .get("html_url")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                outcome.action_type = match kind {
                    AlertKind::SecurityAdvisory => "security_advisory".into(),
                    AlertKind::Issue => "issue".into(),
                };
                let ended = Ended {
                    requests: requests.clone(),
                    provider_ref: provider_ref.clone(),
                    ..Ended::new(
                        ActionStatus::Applied,
                        format!("{provider_ref} opened: {html}"),
                    )
                };
                return self.finish(job, id, outcome, ended).await;
            }
            let why = answer
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            // An issue is public on a public repository: it would announce the weakness to
            // everyone, where an advisory stays private to maintainers. Fall back there only
            // when the operator said so; an entity of unknown visibility counts as public.
            if refused && kind == AlertKind::SecurityAdvisory && self.alert_issue_fallback {
                let private = job
                    .entity
                    .properties
                    .get("private")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                if !private && !self.alert_issue_fallback_public {
                    let ended = Ended {
                        requests: requests.clone(),
                        ..Ended::new(
                            ActionStatus::Failed,
                            format!("POST {path} answered {status}: {why}; no issue opened instead, since the repository is public and an issue would disclose the weakness (PLUMB_ALERT_ISSUE_FALLBACK_PUBLIC allows it)"),
                        )
                    };
                    return self.finish(job, id, outcome, ended).await;
                }
                tracing::info!(entity = %job.entity_id, status, reason = %why, "security advisory refused, opening an issue instead");
                kind = AlertKind::Issue;
                (path, body) = alerts::issue_request(owner, repo, &summary, &description);
                continue;
            }
            let ended = Ended {
                requests: requests.clone(),
                ..Ended::new(
                    ActionStatus::Failed,
                    format!("POST {path} answered {status}: {why}"),
                )
            };
            return self.finish(job, id, outcome, ended).await;
        }
    }

    #[tracing::instrument(
        name = "action.close_alert",
        skip_all,
        fields(rule_type = %job.verdict.rule_type, rule = %job.verdict.rule_name, mode = mode.as_str())
    )]
    pub(crate) async fn close_alert(&self, job: &Job<'_>, mode: ActionMode) -> Result<(), Failure> {
        let planned = ActionState::Ended(if mode == ActionMode::DryRun {
            ActionStatus::Planned
        } else {
            ActionStatus::Applied
        });
        let Some(open) = self
            .last_alert(job)
            .await?
            .filter(|l| l.operation == ActionOperation::Open && l.status == planned)
        else {
            return Ok(()); // nothing open
        };
        let action = self.new_action(
            job,
            plumbline_domain::ActionKind::Alert,
            &open.action_type,
            ActionOperation::Close,
        );
        let outcome = self.outcome(
            job,
            ActionKind::Alert,
            &open.action_type,
            "close",
            &action.idempotency_key,
        );
        let id = match self.claim(&action).await?.into_action() {
            Err(existing) => return self.announce(job, outcome, &existing).await,
            Ok((id, _)) => id,
        };
        let (owner, repo) = (job.entity.owner.as_str(), job.entity.name.as_str());
        let Some((path, body)) = alerts::close_request(owner, repo, &open.provider_ref) else {
            let ended = Ended::new(
                if mode == ActionMode::DryRun {
                    ActionStatus::Planned
                } else {
                    ActionStatus::Skipped
                },
                "the open alert has no provider reference",
            );
            return self.finish(job, id, outcome, ended).await;
        };
        let requests = vec![PlannedRequest::new(
            "PATCH",
            format!("{}{}", job.github.api_url(), path),
            body.to_string(),
        )];
        if mode == ActionMode::DryRun {
            let ended = Ended {
                requests,
                ..Ended::new(ActionStatus::Planned, "dry run: alert not closed")
            };
            return self.finish(job, id, outcome, ended).await;
        }
        let reservation = self.reserve(job, 1).await?;
        let sent = alerts::send(job.github, Method::PATCH, &path, &body).await;
        reservation.finish(1).await;
        let (status, answer) = sent.map_err(github_unavailable)?;
        let ended = if (200..300).contains(&status) || status == 404 {
            // 404: removed by a human meanwhile; closed is what was wanted.
            Ended {
                requests,
                provider_ref: open.provider_ref.clone(),
                ..Ended::new(
                    ActionStatus::Applied,
                    format!("{} closed: the rule passes", open.provider_ref),
                )
            }
        } else {
            let why = answer.get("message").and_then(Value::as_str).unwrap_or("");
            Ended {
                requests,
                provider_ref: open.provider_ref.clone(),
                ..Ended::new(
                    ActionStatus::Failed,
                    format!("PATCH {path} answered {status}: {why}"),
                )
            }
        };
        self.finish(job, id, outcome, ended).await
    }
}
