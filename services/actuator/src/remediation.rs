//! The remediation path: the live re-check, the identity check and the fix back-off, the plan,
//! the content budget, the requests (or the pull request) and the verification event. The steps
//! are listed in the crate's documentation.

use super::*;
use crate::ledger::Ended;

/// What the live re-check found.
pub(super) enum Recheck {
    Fails,
    Passes,
    Other(String),
}

impl Actuator {
    /// Evaluates the rule again against live state (on the blocking pool, like the evaluator):
    /// the outcome, or why live state cannot be read.
    pub(super) async fn reevaluate(
        &self,
        job: &Job<'_>,
    ) -> Result<Result<plumbline_engine::Outcome, String>, Failure> {
        let inv = Invocation {
            entity: job.entity,
            params: &job.profile_rule.params,
            def: &job.profile_rule.def,
        };
        let ingested = match job.rule.ingest(&inv, job.provider).await {
            Ok(i) => i,
            Err(IngestError::Transient(e)) => return Err(provider_unavailable(e)),
            Err(IngestError::Rule(e)) => return Ok(Err(format!("live state cannot be read: {e}"))),
            Err(e @ IngestError::NotApplicable(_)) => return Ok(Err(e.to_string())),
        };
        evaluate_on_blocking_pool(
            job.rule.clone(),
            ingested,
            job.entity,
            job.profile_rule,
            job.github,
            &self.egress,
        )
        .await
        .map(Ok)
        .map_err(|e| Failure::Attempt(format!("re-check panicked: {e}")))
    }

    /// Evaluates the rule again against live state: whether it still fails.
    pub(super) async fn recheck(&self, job: &Job<'_>) -> Result<Recheck, Failure> {
        let outcome = match self.reevaluate(job).await? {
            Ok(o) => o,
            Err(why) => return Ok(Recheck::Other(why)),
        };
        Ok(match outcome.status {
            EvalStatus::Fail => Recheck::Fails,
            EvalStatus::Pass => Recheck::Passes,
            EvalStatus::Skipped => Recheck::Other(format!(
                "the rule skips the entity now: {}",
                outcome.message
            )),
            EvalStatus::Error => Recheck::Other(format!(
                "the rule cannot be evaluated now: {}",
                outcome.message
            )),
        })
    }

    /// Applies (or plans) the rule's remediation. Returns whether the rule is fixed now: the
    /// fix was applied, or live state already complies.
    #[tracing::instrument(
        name = "action.remediate",
        skip_all,
        fields(rule_type = %job.verdict.rule_type, rule = %job.verdict.rule_name, mode = mode.as_str())
    )]
    pub(super) async fn remediate(&self, job: &Job<'_>, mode: ActionMode) -> Result<bool, Failure> {
        let action_type = job.rule.remediation_type().unwrap_or_default().to_string();
        let action = self.new_action(
            job,
            plumbline_domain::ActionKind::Remediation,
            &action_type,
            ActionOperation::Apply,
        );
        let outcome = self.outcome(
            job,
            ActionKind::Remediation,
            &action_type,
            "apply",
            &action.idempotency_key,
        );
        // A rule whose last remediation failed recently is left alone for the cool-off; the
        // verdict of a later evaluation (a sweep, a webhook) tries again after it.
        if self
            .store
            .get_action(&action.idempotency_key)
            .await
            .map_err(unavailable)?
            .is_none()
        {
            if let Some(last) = self
                .store
                .last_action(
                    job.entity_id,
                    &job.verdict.profile,
                    &job.verdict.rule_name,
                    plumbline_domain::ActionKind::Remediation,
                    &[
                        ActionStatus::Failed,
                        ActionStatus::Applied,
                        ActionStatus::Skipped,
                        ActionStatus::Planned,
                    ],
                )
                .await
                .map_err(unavailable)?
            {
                if last.status == ActionState::Ended(ActionStatus::Failed)
                    && chrono::Utc::now() - last.updated_at < self.cool_off
                {
                    tracing::info!(entity = %job.entity_id, rule = %job.verdict.rule_name, failed_at = %last.updated_at, "remediation cooling off after an error");
                    self.metrics.inc(
                        &plumbline_telemetry::catalog::ACTUATOR_DEFERRED,
                        &[("reason", "cool_off")],
                        1,
                    );
                    return Ok(false);
                }
            }
        }
        let (id, taken_over) = match self.claim(&action).await?.into_action() {
            Err(existing) => {
                self.announce(job, outcome, &existing).await?;
                let applied = existing.status == ActionState::Ended(ActionStatus::Applied);
                if applied && action_type != "pull_request" {
                    self.verify(job).await?;
                }
                // Fixed: a request applied (being verified), or nothing needed doing.
                let fixed = (applied && action_type != "pull_request")
                    || existing.status == ActionState::Ended(ActionStatus::Skipped);
                return Ok(fixed);
            }
            Ok(a) => a,
        };
        match self.recheck(job).await? {
            Recheck::Fails => {
                if mode == ActionMode::On && action_type != "pull_request" {
                    if let Some(ended) = self.back_off(job).await? {
                        self.metrics.inc(
                            &plumbline_telemetry::catalog::ACTUATOR_DEFERRED,
                            &[("reason", "fix_not_holding")],
                            1,
                        );
                        self.finish(job, id, outcome, ended).await?;
                        return Ok(false);
                    }
                }
            }
            Recheck::Passes => {
                let why = if taken_over {
                    "the rule passes against live state: nothing to do (an earlier attempt of this action, cut short before it was recorded, may have applied it)"
                } else {
                    "the rule passes against live state: nothing to do"
                };
                self.finish(job, id, outcome, Ended::new(ActionStatus::Skipped, why))
                    .await?;
                return Ok(true);
            }
            Recheck::Other(why) => {
                self.finish(job, id, outcome, Ended::new(ActionStatus::Failed, why))
                    .await?;
                return Ok(false);
            }
        }
        if let Some(why) = self.identity_mismatch(job).await? {
            tracing::warn!(entity = %job.entity_id, repo = %job.entity.full_name(), %why, "remediation refused");
            self.finish(job, id, outcome, Ended::new(ActionStatus::Failed, why))
                .await?;
            return Ok(false);
        }
        let inv = Invocation {
            entity: job.entity,
            params: &job.profile_rule.params,
            def: &job.profile_rule.def,
        };
        let plan = match job.rule.plan_remediation(&inv, job.provider).await {
            Err(IngestError::Transient(e)) => return Err(provider_unavailable(e)),
            Err(e @ (IngestError::Rule(_) | IngestError::NotApplicable(_))) => {
                tracing::warn!(entity = %job.entity_id, rule = %job.verdict.rule_name, error = %e, "remediation cannot be planned");
                self.finish(
                    job,
                    id,
                    outcome,
                    Ended::new(ActionStatus::Failed, e.to_string()),
                )
                .await?;
                return Ok(false);
            }
            Ok(None) => {
                self.finish(
                    job,
                    id,
                    outcome,
                    Ended::new(
                        ActionStatus::Skipped,
                        "live state already has what the remediation sets",
                    ),
                )
                .await?;
                return Ok(true);
            }
            Ok(Some(p)) => p,
        };
        let ended = match plan {
            Remediation::Request(req) => {
                self.send_request(job, mode, &req.method, &req.path, req.body.as_ref())
                    .await?
            }
            Remediation::PullRequest(pr) => self.open_pull_request(job, mode, &pr).await?,
        };
        let applied = ended.status == ActionStatus::Applied;
        self.finish(job, id, outcome, ended).await?;
        // A pull request fixes nothing until it is merged; the merge's push is what verifies it.
        if applied && action_type != "pull_request" {
            self.verify(job).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Writes address a repository by name, and a name can move: a rename whose webhook was
    /// lost, then a new repository under the old name, would point the write at someone else's
    /// repository. Before anything is planned or sent, the name is read back (a conditional GET,
    /// free while unchanged) and its id must be the one the entity was enrolled with. `Some` is
    /// why not.
    pub(super) async fn identity_mismatch(&self, job: &Job<'_>) -> Result<Option<String>, Failure> {
        let e = job.entity;
        let expected = e
            .properties
            .get("repo_id")
            .and_then(Value::as_u64)
            .or_else(|| {
                (e.entity_ref.kind == plumbline_domain::EntityKind::Repository)
                    .then(|| e.entity_ref.upstream_id.parse().ok())
                    .flatten()
            });
        let Some(expected) = expected else {
            return Ok(Some(format!(
                "{} has no recorded repository id to check the name against: nothing sent",
                e.full_name()
            )));
        };
        match job
            .github
            .check_repository_name(&e.owner, &e.name, expected)
            .await
        {
            Ok(check) => {
                let problem = check.problem(&e.full_name(), expected);
                if problem.is_some() {
                    self.metrics.inc(
                        &plumbline_telemetry::catalog::ACTUATOR_VERDICTS_REFUSED,
                        &[("reason", "identity")],
                        1,
                    );
                }
                Ok(problem.map(|p| format!("{p}: nothing sent")))
            }
            Err(err) if err.is_retryable() => Err(github_unavailable(err)),
            Err(err) => Ok(Some(format!(
                "the repository behind {} cannot be confirmed: {err}",
                e.full_name()
            ))),
        }
    }

    /// Whether to hold back a fix that was applied before and did not hold: the rule failed
    /// again without an evaluation passing since (a remediation the API accepts but ignores,
    /// a rule that does not describe what the remediation sets). Each such fix in a row doubles
    /// the wait from `--fix-backoff-secs`, up to `--fix-backoff-max-secs`, and each hold is
    /// recorded and announced as `deferred`, so the loop is visible instead of spinning. A fix
    /// that held (the rule passed in between) starts over, so a setting someone switches off
    /// again is put back at once, however often that happens.
    pub(super) async fn back_off(&self, job: &Job<'_>) -> Result<Option<Ended>, Failure> {
        let (entity, profile, rule) = (
            job.entity_id,
            job.verdict.profile.as_str(),
            job.verdict.rule_name.as_str(),
        );
        let recent = self
            .store
            .recent_actions(
                entity,
                profile,
                rule,
                plumbline_domain::ActionKind::Remediation,
                32,
            )
            .await
            .map_err(unavailable)?;
        let mut not_held = 0u32;
        let mut newest: Option<chrono::DateTime<chrono::Utc>> = None;
        let mut later: Option<chrono::DateTime<chrono::Utc>> = None;
        for a in &recent {
            match a.status {
                ActionState::Ended(ActionStatus::Deferred) => continue,
                ActionState::Ended(ActionStatus::Applied) => {
                    if self
                        .store
                        .passed_between(entity, profile, rule, a.updated_at, later)
                        .await
                        .map_err(unavailable)?
                    {
                        break;
                    }
                    not_held += 1;
                    newest.get_or_insert(a.updated_at);
                    later = Some(a.updated_at);
                }
                _ => break,
            }
        }
        let Some(last) = newest else { return Ok(None) };
        let wait = self
            .fix_backoff
            .checked_mul(1 << (not_held - 1).min(20))
            .unwrap_or(self.fix_backoff_max)
            .min(self.fix_backoff_max);
        let next = last + wait;
        if chrono::Utc::now() >= next {
            return Ok(None);
        }
        tracing::warn!(entity, repo = %job.entity.full_name(), rule, times = not_held, %next, "the fix did not hold; backing off");
        Ok(Some(Ended::new(
            ActionStatus::Deferred,
            format!("the fix applied at {last} did not hold ({not_held} in a row without the rule passing): the rule still fails against live state; next attempt after {next}"),
        )))
    }

    /// Reserves `slots` content-creating requests of this credential from the budget every
    /// replica shares, or parks the verdict until they are free.
    pub(super) async fn reserve(
        &self,
        job: &Job<'_>,
        slots: u32,
    ) -> Result<budget::Reservation, Failure> {
        self.budget
            .try_reserve(job.github.credential_id(), slots)
            .await
            .map_err(unavailable)?
            .map_err(budget_spent)
    }

    /// One remediation request (`rest`, `gh_branch_protection`), within the budget.
    pub(super) async fn send_request(
        &self,
        job: &Job<'_>,
        mode: ActionMode,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Ended, Failure> {
        let url = format!("{}{}", job.github.api_url(), path);
        let body_s = body.map(Value::to_string).unwrap_or_default();
        let requests = vec![PlannedRequest::new(method.to_string(), url, body_s)];
        if mode == ActionMode::DryRun {
            return Ok(Ended {
                requests,
                ..Ended::new(ActionStatus::Planned, "dry run: request not sent")
            });
        }
        let m = Method::from_bytes(method.as_bytes())
            .map_err(|_| Failure::Poison(format!("bad method {method}")))?;
        let reservation = self.reserve(job, 1).await?;
        let sent = job.github.request(m, path, body).await;
        reservation.finish(1).await;
        let r = match sent {
            Ok(r) => r,
            // Maybe applied, maybe not: the pending claim is taken over on the retry, whose
            // live re-check tells.
            Err(e @ (GitHubError::Transient(_) | GitHubError::RateLimited { .. })) => {
                return Err(github_unavailable(e))
            }
            Err(e) => {
                return Ok(Ended {
                    requests,
                    ..Ended::new(ActionStatus::Failed, e.to_string())
                })
            }
        };
        let message = if (200..300).contains(&r.status) {
            format!("{method} {path} answered {}", r.status)
        } else {
            format!(
                "{method} {path} answered {}: {}",
                r.status,
                r.message().chars().take(300).collect::<String>()
            )
        };
        let status = if (200..300).contains(&r.status) {
            ActionStatus::Applied
        } else {
            ActionStatus::Failed
        };
        Ok(Ended {
            requests,
            ..Ended::new(status, message)
        })
    }

    pub(super) async fn open_pull_request(
        &self,
        job: &Job<'_>,
        mode: ActionMode,
        plan: &plumbline_engine::PullRequestPlan,
    ) -> Result<Ended, Failure> {
        let (owner, repo) = (&job.entity.owner, &job.entity.name);
        let branch = pull_request::branch_for(&self.branch_prefix, &job.verdict.rule_name);
        let message = format!(
            "{}\n\nPlumbline remediation for rule {} of profile {}.",
            plan.title, job.verdict.rule_name, job.verdict.profile
        );
        let prepared =
            match pull_request::prepare(job.github, owner, repo, &branch, plan, &message).await {
                Ok(p) => p,
                Err(pull_request::PrError::Transient(e)) => return Err(github_unavailable(e)),
                Err(pull_request::PrError::Refused(m)) => {
                    return Ok(Ended::new(ActionStatus::Failed, m))
                }
            };
        let planned: Vec<PlannedRequest> = prepared
            .writes
            .iter()
            .map(|w| {
                PlannedRequest::new(
                    w.method.to_string(),
                    format!("{}{}", job.github.api_url(), w.path),
                    w.body.to_string(),
                )
            })
            .collect();
        if mode == ActionMode::DryRun {
            let what = match &prepared.existing {
                Some(pr) => format!(
                    "dry run: pull request #{} would be updated ({} requests not sent)",
                    pr.number,
                    planned.len()
                ),
                None => format!(
                    "dry run: a pull request from {branch} would be opened ({} requests not sent)",
                    planned.len()
                ),
            };
            return Ok(Ended {
                requests: planned.clone(),
                ..Ended::new(ActionStatus::Planned, what)
            });
        }
        if prepared.writes.is_empty() {
            if let Some(pr) = &prepared.existing {
                return Ok(Ended {
                    provider_ref: format!("pull:{}", pr.number),
                    ..Ended::new(
                        ActionStatus::Applied,
                        format!(
                            "pull request #{} is open with these contents: reused",
                            pr.number
                        ),
                    )
                });
            }
        }
        let reservation = self.reserve(job, prepared.writes.len() as u32).await?;
        match pull_request::apply(job.github, &prepared).await {
            Ok(applied) => {
                reservation.finish(applied.sent).await;
                let what = match &prepared.existing {
                    Some(_) => format!(
                        "pull request #{} updated: {}",
                        applied.number, applied.html_url
                    ),
                    None => format!(
                        "pull request #{} opened: {}",
                        applied.number, applied.html_url
                    ),
                };
                Ok(Ended {
                    requests: applied.requests.clone(),
                    provider_ref: format!("pull:{}", applied.number),
                    ..Ended::new(ActionStatus::Applied, what)
                })
            }
            Err((pull_request::PrError::Transient(e), sent)) => {
                reservation.finish(sent).await;
                Err(github_unavailable(e))
            }
            Err((pull_request::PrError::Refused(m), sent)) => {
                reservation.finish(sent).await;
                Ok(Ended {
                    requests: planned,
                    ..Ended::new(ActionStatus::Failed, m)
                })
            }
        }
    }

    /// Asks for a fresh evaluation of the entity, so an applied fix is verified now rather than
    /// at the next webhook or sweep.
    pub(super) async fn verify(&self, job: &Job<'_>) -> Result<(), Failure> {
        let ev = EntityEvent::new(&job.entity.entity_ref, EventReason::Remediated);
        self.producer
            .publish(
                &self.topics.entity_events,
                job.entity_id,
                &ev.encode_to_vec(),
                "dev.plumbline.entity_event.v1",
                &ev.event_id,
                &TraceContext::current(),
                &BTreeMap::new(),
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
