//! The actuator's ledger of actions: each one claimed under an idempotency key before anything
//! is sent, recorded when it ends and announced as an `ActionOutcome`, so a redelivered verdict
//! or a crashed replica's half-done action is finished exactly once.

use super::*;

/// The idempotency key: one action per (entity, profile, rule, kind and operation, evaluation).
///
/// The evaluation id makes a redelivered verdict map to the same key. A later failing
/// evaluation gets a new key, but its plan is computed against live state, so an applied fix
/// plans nothing (and an open pull request or alert is reused).
pub(super) fn idempotency_key(entity_id: &str, v: &Verdict, kind: &str, operation: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        entity_id,
        &v.profile,
        &v.rule_name,
        kind,
        operation,
        &v.evaluation_id,
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

pub(super) fn status_i32(s: ActionStatus) -> i32 {
    plumbline_proto::v1::ActionStatus::from(s) as i32
}

/// How an action ended, before it is recorded.
pub(super) struct Ended {
    pub(super) status: ActionStatus,
    pub(super) message: String,
    pub(super) requests: Vec<PlannedRequest>,
    pub(super) provider_ref: String,
}

impl Ended {
    pub(super) fn new(status: ActionStatus, message: impl Into<String>) -> Self {
        Ended {
            status,
            message: message.into(),
            requests: Vec::new(),
            provider_ref: String::new(),
        }
    }
}

/// A claim on an action: new, taken over from an attempt cut short (a crash, a retry after an
/// unavailable dependency), or already finished.
pub(super) enum Claim {
    Act(i64),
    TakeOver(i64),
    Done(Box<ActionRecord>),
}

impl Claim {
    /// The action to carry out, or the finished record.
    pub(super) fn into_action(self) -> Result<(i64, bool), Box<ActionRecord>> {
        match self {
            Claim::Act(id) => Ok((id, false)),
            Claim::TakeOver(id) => Ok((id, true)),
            Claim::Done(r) => Err(r),
        }
    }
}

impl Actuator {
    pub(super) fn new_action(
        &self,
        job: &Job<'_>,
        kind: plumbline_domain::ActionKind,
        action_type: &str,
        operation: ActionOperation,
    ) -> NewAction {
        NewAction {
            // The key's text is the stored kind and operation, as before they were types, so
            // actions recorded by earlier versions still match.
            idempotency_key: idempotency_key(
                job.entity_id,
                job.verdict,
                kind.as_str(),
                operation.as_str(),
            ),
            entity_id: job.entity_id.to_string(),
            project: job.verdict.project.clone(),
            profile: job.verdict.profile.clone(),
            rule_type: job.verdict.rule_type.clone(),
            rule_name: job.verdict.rule_name.clone(),
            kind,
            action_type: action_type.into(),
            operation,
            evaluation_id: uuid::Uuid::parse_str(&job.verdict.evaluation_id).ok(),
        }
    }

    /// Claims `action`, or finds it finished (a redelivery), or takes over a pending claim whose
    /// lease ran out (a crash) or that this replica holds itself (its own retry). A claim another
    /// live replica holds parks the verdict until that lease ends: by then the action is finished
    /// (and this delivery only announces it) or abandoned (and taken over).
    pub(super) async fn claim(&self, action: &NewAction) -> Result<Claim, Failure> {
        use plumbline_store::TakeOver;
        loop {
            if let Some(id) = self
                .store
                .claim_action(action, &self.replica, self.lease)
                .await
                .map_err(unavailable)?
            {
                return Ok(Claim::Act(id));
            }
            match self
                .store
                .take_over_action(&action.idempotency_key, &self.replica, self.lease)
                .await
                .map_err(unavailable)?
            {
                TakeOver::Taken(id) => {
                    tracing::info!(entity = %action.entity_id, rule = %action.rule_name, kind = %action.kind, "taking over a pending action");
                    return Ok(Claim::TakeOver(id));
                }
                TakeOver::Held { owner, until } => {
                    self.metrics
                        .inc(&plumbline_telemetry::catalog::ACTUATOR_CLAIMS_HELD, &[], 1);
                    tracing::info!(entity = %action.entity_id, rule = %action.rule_name, %owner, %until, "another replica holds this action; waiting for its lease");
                    let wait = (until - chrono::Utc::now()).to_std().unwrap_or_default()
                        + Duration::from_millis(100);
                    return Err(Failure::Unavailable {
                        cause: plumbline_domain::WaitCause::ActionLease,
                        // Shown to the project: the replica's name stays in the log above.
                        reason: format!("another actuator replica holds the action until {until}"),
                        until: Some(std::time::SystemTime::now() + wait),
                    });
                }
                TakeOver::Done(existing) => return Ok(Claim::Done(existing)),
                TakeOver::Gone => continue, // released between the two calls: claim it again
            }
        }
    }

    pub(super) fn outcome(
        &self,
        job: &Job<'_>,
        kind: ActionKind,
        action_type: &str,
        operation: &str,
        key: &str,
    ) -> ActionOutcome {
        ActionOutcome {
            entity: job.verdict.entity.clone(),
            project: job.verdict.project.clone(),
            profile: job.verdict.profile.clone(),
            rule_type: job.verdict.rule_type.clone(),
            rule_name: job.verdict.rule_name.clone(),
            kind: kind as i32,
            action_type: action_type.to_string(),
            operation: operation.to_string(),
            evaluation_id: job.verdict.evaluation_id.clone(),
            idempotency_key: key.to_string(),
            ..Default::default()
        }
    }

    /// Records how a claimed action ended and announces it.
    pub(super) async fn finish(
        &self,
        job: &Job<'_>,
        id: i64,
        mut outcome: ActionOutcome,
        ended: Ended,
    ) -> Result<(), Failure> {
        let requests = proto_requests(&ended.requests);
        let main = requests.last().cloned().unwrap_or_default();
        let result = ActionResult {
            status: ended.status,
            message: ended.message.clone(),
            method: main.method.clone(),
            url: main.url.clone(),
            body: main.body.clone(),
            requests: ended.requests,
            provider_ref: ended.provider_ref.clone(),
        };
        self.store
            .finish_action(id, &result)
            .await
            .map_err(unavailable)?;
        tracing::info!(
            entity = %job.entity_id, repo = %job.entity.full_name(), rule = %job.verdict.rule_name,
            action = %outcome.action_type, operation = %outcome.operation, status = ended.status.as_str(),
            provider_ref = %ended.provider_ref, "action"
        );
        outcome.status = status_i32(ended.status);
        outcome.message = ended.message;
        outcome.method = main.method;
        outcome.url = main.url;
        outcome.body = main.body;
        outcome.requests = requests;
        outcome.provider_ref = ended.provider_ref;
        self.publish(job, outcome).await
    }

    /// Announces a finished action again (a redelivered verdict): consumers dedupe on the key.
    pub(super) async fn announce(
        &self,
        job: &Job<'_>,
        mut outcome: ActionOutcome,
        existing: &ActionRecord,
    ) -> Result<(), Failure> {
        tracing::debug!(entity = %job.entity_id, key = %existing.idempotency_key, status = %existing.status, "action already taken for this verdict");
        outcome.status = existing.status.ended().map(status_i32).unwrap_or(0);
        outcome.message = existing.message.clone();
        outcome.method = existing.method.clone();
        outcome.url = existing.url.clone();
        outcome.body = existing.body.clone();
        outcome.requests = proto_requests(&existing.requests);
        outcome.provider_ref = existing.provider_ref.clone();
        self.publish(job, outcome).await
    }
}
