use crate::error::column;
use crate::{Store, StoreError};
use chrono::{DateTime, Utc};
use plumbline_domain::{ActionKind, ActionOperation, ActionStatus, PlannedRequest};
use uuid::Uuid;

/// An action the actuator is about to take.
#[derive(Debug, Clone)]
pub struct NewAction {
    /// Unique per (entity, profile, rule, intended change): a redelivered verdict maps to the
    /// same key, so the action is taken once.
    pub idempotency_key: String,
    pub entity_id: String,
    pub project: String,
    pub profile: String,
    pub rule_type: String,
    /// The rule's name in the profile.
    pub rule_name: String,
    pub kind: ActionKind,
    pub action_type: String,
    pub operation: ActionOperation,
    pub evaluation_id: Option<Uuid>,
}

/// How a claimed action ended.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionResult {
    pub status: ActionStatus,
    pub message: String,
    /// The main request (the one that made the change), for readers that want one line.
    pub method: String,
    pub url: String,
    pub body: String,
    /// Every request sent (or, in dry run, planned), in order.
    pub requests: Vec<PlannedRequest>,
    /// What the provider calls the result: `pull:12`, `advisory:GHSA-...`, `issue:7`.
    pub provider_ref: String,
}

/// Where a recorded action stands: claimed and under way, or ended with a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionState {
    Pending,
    Ended(ActionStatus),
}

impl ActionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionState::Pending => "pending",
            ActionState::Ended(s) => s.as_str(),
        }
    }

    /// The status it ended with, if it ended.
    pub fn ended(self) -> Option<ActionStatus> {
        match self {
            ActionState::Pending => None,
            ActionState::Ended(s) => Some(s),
        }
    }
}

impl std::fmt::Display for ActionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`Store::take_over_action`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum TakeOver {
    /// The caller holds the claim now.
    Taken(i64),
    /// Another owner holds it, until its lease runs out.
    Held { owner: String, until: DateTime<Utc> },
    /// It finished.
    Done(Box<ActionRecord>),
    /// It was released (a failure) since: claim it anew.
    Gone,
}

/// An action as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRecord {
    pub id: i64,
    pub idempotency_key: String,
    pub entity_id: String,
    pub profile: String,
    pub rule_type: String,
    pub rule_name: String,
    pub kind: ActionKind,
    pub action_type: String,
    pub operation: ActionOperation,
    pub status: ActionState,
    pub message: String,
    pub method: String,
    pub url: String,
    pub body: String,
    pub requests: Vec<PlannedRequest>,
    pub provider_ref: String,
    /// The evaluation whose verdict asked for the action.
    pub evaluation_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which of a project's actions to list (see [`Store::actions_page`]).
#[derive(Debug, Clone, Default)]
pub struct ActionFilter {
    pub project: String,
    pub entity_id: Option<String>,
    pub profile: Option<String>,
    pub status: Option<ActionStatus>,
    pub before: Option<i64>,
    pub limit: i64,
}

const COLUMNS: &str = "id, idempotency_key, entity_id, profile, rule_type, rule_name, kind, action_type, operation, status, message, method, url, body, requests, provider_ref, created_at, updated_at, evaluation_id";

/// The `requests` column (jsonb), written only by [`Store::finish_action`]. Rows older than
/// that column's shape read as no requests rather than failing the whole read.
fn requests_from(v: serde_json::Value) -> Vec<PlannedRequest> {
    match serde_json::from_value(v) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "an action's recorded requests are not a list of method, url and body");
            Vec::new()
        }
    }
}

fn from_row(r: &tokio_postgres::Row) -> Result<ActionRecord, StoreError> {
    let status: &str = r.get(9);
    Ok(ActionRecord {
        id: r.get(0),
        idempotency_key: r.get(1),
        entity_id: r.get(2),
        profile: r.get(3),
        rule_type: r.get(4),
        rule_name: r.get(5),
        kind: column("actions.kind", r.get(6))?,
        action_type: r.get(7),
        operation: column("actions.operation", r.get(8))?,
        status: match status {
            "pending" => ActionState::Pending,
            s => ActionState::Ended(column("actions.status", s)?),
        },
        message: r.get(10),
        method: r.get(11),
        url: r.get(12),
        body: r.get(13),
        requests: requests_from(r.get(14)),
        provider_ref: r.get(15),
        created_at: r.get(16),
        updated_at: r.get(17),
        evaluation_id: r.get(18),
    })
}

impl Store {
    /// Claims an action for `owner` until the lease runs out: `Ok(Some(id))` when this caller
    /// should act; `Ok(None)` when an action with this key already exists (it was taken, or is
    /// being taken, by an earlier delivery; see [`Store::take_over_action`]).
    #[tracing::instrument(name = "db.claim_action", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn claim_action(
        &self,
        a: &NewAction,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<Option<i64>, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &c.prepare_cached("INSERT INTO actions (idempotency_key, entity_id, project, profile, rule_type, rule_name, kind, action_type, operation, status, evaluation_id, claimed_by, lease_until)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, now() + make_interval(secs => $12))
                 ON CONFLICT (idempotency_key) DO NOTHING
                 RETURNING id").await?,
                &[
                    &a.idempotency_key,
                    &a.entity_id,
                    &a.project,
                    &a.profile,
                    &a.rule_type,
                    &a.rule_name,
                    &a.kind.as_str(),
                    &a.action_type,
                    &a.operation.as_str(),
                    &a.evaluation_id,
                    &owner,
                    &lease.as_secs_f64(),
                ],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Takes over a pending action whose lease has run out (its owner crashed or lost its
    /// partition), or that `owner` itself holds (a retry of its own attempt), renewing the lease.
    pub async fn take_over_action(
        &self,
        key: &str,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<TakeOver, StoreError> {
        let c = self.client().await?;
        let taken = c
            .query_opt(
                &c.prepare_cached(
                    "UPDATE actions SET claimed_by = $2, lease_until = now() + make_interval(secs => $3)
                     WHERE idempotency_key = $1 AND status = 'pending' AND (lease_until <= now() OR claimed_by = $2)
                     RETURNING id",
                )
                .await?,
                &[&key, &owner, &lease.as_secs_f64()],
            )
            .await?;
        if let Some(r) = taken {
            return Ok(TakeOver::Taken(r.get(0)));
        }
        let row = c
            .query_opt(
                &c.prepare_cached(&format!("SELECT {COLUMNS}, claimed_by, lease_until FROM actions WHERE idempotency_key = $1")).await?,
                &[&key],
            )
            .await?;
        Ok(match row {
            None => TakeOver::Gone,
            Some(r) if r.get::<_, String>(9) == "pending" => TakeOver::Held {
                owner: r.get(19),
                until: r.get(20),
            },
            Some(r) => TakeOver::Done(Box::new(from_row(&r)?)),
        })
    }

    /// Records how a claimed action ended.
    #[tracing::instrument(name = "db.finish_action", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]

    pub async fn finish_action(&self, id: i64, result: &ActionResult) -> Result<(), StoreError> {
        let c = self.client().await?;
        let requests = serde_json::to_value(&result.requests)
            .map_err(|e| StoreError::Other(format!("encoding the action's requests: {e}")))?;
        // The ending and its audit record are one statement: every action the actuator takes is
        // in the audit log (who: the replica; what: kind and type; the digest of the requests
        // sent or planned; the outcome: the action's status).
        let n = c
            .execute(
                &c.prepare_cached("WITH done AS (
                    UPDATE actions SET status = $2, message = $3, method = $4, url = $5, body = $6,
                        requests = $7, provider_ref = $8, updated_at = now() WHERE id = $1
                    RETURNING project, kind, action_type, claimed_by, requests)
                  INSERT INTO audit_log (principal, project, rpc, request_digest, outcome)
                  SELECT CASE WHEN claimed_by = '' THEN 'actuator' ELSE 'actuator:' || claimed_by END,
                         project, kind || ':' || action_type,
                         encode(sha256(convert_to(requests::text, 'UTF8')), 'hex'), $2
                  FROM done").await?,
                &[&id, &result.status.as_str(), &result.message, &result.method, &result.url, &result.body, &requests, &result.provider_ref],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("action {id}")));
        }
        Ok(())
    }

    /// Forgets a claim whose action failed, so a later verdict may try again.
    pub async fn release_action(&self, id: i64) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            &c.prepare_cached(
                "DELETE FROM actions WHERE id = $1 AND status IN ('pending', 'failed')",
            )
            .await?,
            &[&id],
        )
        .await?;
        Ok(())
    }

    pub async fn get_action(&self, key: &str) -> Result<Option<ActionRecord>, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM actions WHERE idempotency_key = $1"
                ))
                .await?,
                &[&key],
            )
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The newest finished action of a kind for one rule of one
    /// entity under one profile, whose status is one of `statuses`: "is an alert open", "did
    /// the last remediation fail".
    pub async fn last_action(
        &self,
        entity_id: &str,
        profile: &str,
        rule_name: &str,
        kind: ActionKind,
        statuses: &[ActionStatus],
    ) -> Result<Option<ActionRecord>, StoreError> {
        let c = self.client().await?;
        let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        let kind = kind.as_str();
        let row = c
            .query_opt(
                &c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM actions
                     WHERE entity_id = $1 AND profile = $2 AND rule_name = $3 AND kind = $4 AND status = ANY($5)
                     ORDER BY id DESC LIMIT 1"
                )).await?,
                &[&entity_id, &profile, &rule_name, &kind, &statuses],
            )
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The newest `limit` finished actions of a kind for one rule of one entity under one
    /// profile, newest first.
    pub async fn recent_actions(
        &self,
        entity_id: &str,
        profile: &str,
        rule_name: &str,
        kind: ActionKind,
        limit: i64,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        let c = self.client().await?;
        let kind = kind.as_str();
        let rows = c
            .query(
                &c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM actions
                     WHERE entity_id = $1 AND profile = $2 AND rule_name = $3 AND kind = $4 AND status <> 'pending'
                     ORDER BY id DESC LIMIT $5"
                ))
                .await?,
                &[&entity_id, &profile, &rule_name, &kind, &limit],
            )
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Whether the rule passed at some time after `since` (and before `until`, if given).
    /// History holds a row per change of verdict, so that is: a passing row in between, or the
    /// row in effect at `since` passing (a pass recorded just before `since` by a clock a little
    /// ahead, and re-confirmed since without a new row).
    pub async fn passed_between(
        &self,
        entity_id: &str,
        profile: &str,
        rule_name: &str,
        since: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_one(
                &c.prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM evaluation_history
                     WHERE entity_id = $1 AND profile = $2 AND rule_name = $3 AND status = 'pass'
                       AND evaluated_at > $4 AND ($5::timestamptz IS NULL OR evaluated_at < $5))
                     OR coalesce((SELECT status = 'pass' FROM evaluation_history
                                  WHERE entity_id = $1 AND profile = $2 AND rule_name = $3
                                    AND evaluated_at <= $4
                                  ORDER BY evaluated_at DESC LIMIT 1), false)",
                )
                .await?,
                &[&entity_id, &profile, &rule_name, &since, &until],
            )
            .await?;
        Ok(row.get(0))
    }

    /// A project's actions, newest first, filtered; page with `before` = the last id seen.
    pub async fn actions_page(&self, f: &ActionFilter) -> Result<Vec<ActionRecord>, StoreError> {
        let c = self.client().await?;
        let status = f.status.map(|s| s.as_str());
        let rows = c
            .query(
                &c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM actions WHERE project = $1 \
                     AND ($2::text IS NULL OR entity_id = $2) \
                     AND ($3::text IS NULL OR profile = $3) \
                     AND ($4::text IS NULL OR status = $4) \
                     AND ($5::bigint IS NULL OR id < $5) \
                     ORDER BY id DESC LIMIT $6"
                ))
                .await?,
                &[
                    &f.project,
                    &f.entity_id,
                    &f.profile,
                    &status,
                    &f.before,
                    &f.limit.clamp(1, 1000),
                ],
            )
            .await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn list_actions(&self, entity_id: &str) -> Result<Vec<ActionRecord>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                &c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM actions WHERE entity_id = $1 ORDER BY id"
                ))
                .await?,
                &[&entity_id],
            )
            .await?;
        rows.iter().map(from_row).collect()
    }
}
