use crate::{Store, StoreError};
use chrono::{DateTime, Utc};
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
    /// "remediation" or "alert".
    pub kind: String,
    pub action_type: String,
    pub evaluation_id: Option<Uuid>,
}

/// An action as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRecord {
    pub id: i64,
    pub idempotency_key: String,
    pub entity_id: String,
    pub profile: String,
    pub rule_type: String,
    pub kind: String,
    pub action_type: String,
    pub status: String,
    pub message: String,
    pub method: String,
    pub url: String,
    pub body: String,
    pub provider_ref: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, idempotency_key, entity_id, profile, rule_type, kind, action_type, status, message, method, url, body, provider_ref, created_at, updated_at";

fn from_row(r: &tokio_postgres::Row) -> ActionRecord {
    ActionRecord {
        id: r.get(0),
        idempotency_key: r.get(1),
        entity_id: r.get(2),
        profile: r.get(3),
        rule_type: r.get(4),
        kind: r.get(5),
        action_type: r.get(6),
        status: r.get(7),
        message: r.get(8),
        method: r.get(9),
        url: r.get(10),
        body: r.get(11),
        provider_ref: r.get(12),
        created_at: r.get(13),
        updated_at: r.get(14),
    }
}

impl Store {
    /// Claims an action: `Ok(Some(id))` when this caller should act; `Ok(None)` when an action
    /// with this key already exists (it was taken, or is being taken, by an earlier delivery).
    pub async fn claim_action(&self, a: &NewAction) -> Result<Option<i64>, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                "INSERT INTO actions (idempotency_key, entity_id, project, profile, rule_type, kind, action_type, status, evaluation_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8)
                 ON CONFLICT (idempotency_key) DO NOTHING
                 RETURNING id",
                &[
                    &a.idempotency_key,
                    &a.entity_id,
                    &a.project,
                    &a.profile,
                    &a.rule_type,
                    &a.kind,
                    &a.action_type,
                    &a.evaluation_id,
                ],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Records how a claimed action ended.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_action(
        &self,
        id: i64,
        status: &str,
        message: &str,
        method: &str,
        url: &str,
        body: &str,
        provider_ref: &str,
    ) -> Result<(), StoreError> {
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE actions SET status = $2, message = $3, method = $4, url = $5, body = $6,
                    provider_ref = $7, updated_at = now() WHERE id = $1",
                &[&id, &status, &message, &method, &url, &body, &provider_ref],
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
        c.execute("DELETE FROM actions WHERE id = $1 AND status IN ('pending', 'failed')", &[&id]).await?;
        Ok(())
    }

    pub async fn get_action(&self, key: &str) -> Result<Option<ActionRecord>, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_opt(&format!("SELECT {COLUMNS} FROM actions WHERE idempotency_key = $1"), &[&key])
            .await?;
        Ok(row.as_ref().map(from_row))
    }

    pub async fn list_actions(&self, entity_id: &str) -> Result<Vec<ActionRecord>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!("SELECT {COLUMNS} FROM actions WHERE entity_id = $1 ORDER BY id"),
                &[&entity_id],
            )
            .await?;
        Ok(rows.iter().map(from_row).collect())
    }
}
