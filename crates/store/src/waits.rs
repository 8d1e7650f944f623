//! What waits, and until when: parked entities, each credential's GitHub quota, sweep progress.
//!
//! The services hold this in memory (a parked record, a client's rate state, a sweep's
//! position), where nobody outside the process can see it. Recorded here, `plumb status` and
//! `plumb dev` can say why a fleet's verdicts are not moving ("412 evaluations wait for the
//! GitHub quota of provider acme, until 10:41") instead of showing numbers that stand still.
//! Every read is one project's, from an index.

use crate::error::column;
use crate::{Store, StoreError};
use chrono::{DateTime, Utc};
use plumbline_domain::{Stage, WaitCause};

/// The quota key of the credential an entity is acted on with: `own` (the services' own, for
/// unbound entities) or `provider:<project>/<name>`.
pub fn quota_key(project: &str, provider: Option<&str>) -> String {
    match provider {
        None => "own".to_string(),
        Some(name) => format!("provider:{project}/{name}"),
    }
}

/// Entities of one project waiting in one stage for one cause (only waits still ahead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitSummary {
    pub stage: Stage,
    pub cause: WaitCause,
    pub entities: i64,
    /// The earliest and the latest time they wait for.
    pub first_until: DateTime<Utc>,
    pub last_until: DateTime<Utc>,
    /// The reason of the wait that ends last, as the service said it.
    pub reason: String,
}

/// A credential's GitHub quota as last read from GitHub's answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaRow {
    pub credential: String,
    pub project: String,
    pub remaining: i64,
    pub limit: i64,
    pub resets_at: DateTime<Utc>,
    /// Set while GitHub said "limited" (a secondary limit, or the quota spent).
    pub limited_until: Option<DateTime<Utc>>,
    pub observed_at: DateTime<Utc>,
}

/// The active reconciler's progress through one project's share of the current sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepProgress {
    pub project: String,
    pub started_at: DateTime<Utc>,
    pub entities: i64,
    pub done: i64,
    /// Left out of this sweep: their credential's quota was at its reserve.
    pub deferred: i64,
    /// When the earliest of those quotas renews.
    pub deferred_until: Option<DateTime<Utc>>,
    pub expected_finish: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A re-park that changes nothing worth saying (same cause, an end within a few seconds of the
/// recorded one) writes nothing: a quota storm re-parks every record of a fleet.
const RECORD_WAIT: &str = "INSERT INTO waits (entity_id, stage, project, cause, reason, until)
     SELECT id, $2, project, $3, $4, $5 FROM entities WHERE id = $1
     ON CONFLICT (entity_id, stage) DO UPDATE
       SET cause = EXCLUDED.cause, reason = EXCLUDED.reason, until = EXCLUDED.until,
           recorded_at = now()
       WHERE waits.cause <> EXCLUDED.cause
          OR abs(extract(epoch FROM waits.until - EXCLUDED.until)) > 5";

/// Counts per stage and cause from the `(project, until)` index, and the reason of the wait
/// that ends last read by one index probe per group (not an array of every reason).
pub(crate) const WAITS: &str = "SELECT g.stage, g.cause, g.n, g.first_until, g.last_until,
            coalesce((SELECT w.reason FROM waits w
                      WHERE w.project = $1 AND w.until = g.last_until
                        AND w.stage = g.stage AND w.cause = g.cause
                      LIMIT 1), '')
     FROM (SELECT stage, cause, count(*) AS n, min(until) AS first_until, max(until) AS last_until
           FROM waits WHERE project = $1 AND until > now()
           GROUP BY stage, cause) g
     ORDER BY g.stage, g.cause";

/// Only for a project that exists: a write racing the project's deletion leaves nothing for a
/// later project of the same name to read.
const RECORD_QUOTA: &str = "INSERT INTO credential_quota
       (credential, project, remaining, quota_limit, resets_at, limited_until, observed_at)
     SELECT $1, $2, $3, $4, $5, $6, now() WHERE EXISTS (SELECT 1 FROM projects WHERE name = $2)
     ON CONFLICT (credential) DO UPDATE
       SET project = EXCLUDED.project, remaining = EXCLUDED.remaining,
           quota_limit = EXCLUDED.quota_limit, resets_at = EXCLUDED.resets_at,
           limited_until = EXCLUDED.limited_until, observed_at = now()";

const QUOTA_COLUMNS: &str =
    "credential, project, remaining, quota_limit, resets_at, limited_until, observed_at";

const PROGRESS_COLUMNS: &str =
    "project, started_at, entities, done, deferred, deferred_until, expected_finish, updated_at";

fn quota_row(r: &tokio_postgres::Row) -> QuotaRow {
    QuotaRow {
        credential: r.get(0),
        project: r.get(1),
        remaining: r.get(2),
        limit: r.get(3),
        resets_at: r.get(4),
        limited_until: r.get(5),
        observed_at: r.get(6),
    }
}

impl Store {
    /// Records that `entity_id`'s work in `stage` is parked until `until`. An entity no longer
    /// registered records nothing.
    pub async fn record_wait(
        &self,
        entity_id: &str,
        stage: Stage,
        cause: WaitCause,
        reason: &str,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let c = self.client().await?;
        // Reasons come from errors; keep the row small whatever they say.
        let reason: String = reason.chars().take(500).collect();
        c.execute(
            &c.prepare_cached(RECORD_WAIT).await?,
            &[
                &entity_id,
                &stage.as_str(),
                &cause.as_str(),
                &reason,
                &until,
            ],
        )
        .await?;
        Ok(())
    }

    /// [`record_wait`](Self::record_wait) for a record parked on a known limit, as the
    /// evaluator and the actuator are told of it (records are keyed by entity id): nothing
    /// without a key, and a failure logged, never returned (the wait is advice to people, not
    /// the record's work).
    pub async fn note_parked(
        &self,
        entity_id: Option<&str>,
        stage: Stage,
        cause: WaitCause,
        reason: &str,
        until: std::time::SystemTime,
    ) {
        let Some(entity_id) = entity_id else { return };
        if let Err(e) = self
            .record_wait(
                entity_id,
                stage,
                cause,
                reason,
                DateTime::<Utc>::from(until),
            )
            .await
        {
            tracing::warn!(entity = %entity_id, error = %e, "recording a wait failed");
        }
    }

    /// A project's entities that wait now, per stage and cause.
    pub async fn waits(&self, project: &str) -> Result<Vec<WaitSummary>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(&c.prepare_cached(WAITS).await?, &[&project])
            .await?;
        rows.iter()
            .map(|r| {
                let stage: String = r.get(0);
                let cause: String = r.get(1);
                Ok(WaitSummary {
                    stage: column("waits.stage", &stage)?,
                    cause: column("waits.cause", &cause)?,
                    entities: r.get(2),
                    first_until: r.get(3),
                    last_until: r.get(4),
                    reason: r.get(5),
                })
            })
            .collect()
    }

    /// Deletes waits that ended more than `older_than` ago; returns how many.
    pub async fn prune_waits(&self, older_than: std::time::Duration) -> Result<u64, StoreError> {
        let c = self.client().await?;
        Ok(c.execute(
            "DELETE FROM waits WHERE until < now() - make_interval(secs => $1)",
            &[&older_than.as_secs_f64()],
        )
        .await?)
    }

    /// Records a credential's quota as GitHub last stated it.
    pub async fn record_quota(
        &self,
        credential: &str,
        project: &str,
        remaining: i64,
        limit: i64,
        resets_at: DateTime<Utc>,
        limited_until: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            &c.prepare_cached(RECORD_QUOTA).await?,
            &[
                &credential,
                &project,
                &remaining,
                &limit,
                &resets_at,
                &limited_until,
            ],
        )
        .await?;
        Ok(())
    }

    /// Every credential's quota (one row per credential in use: the reconciler's view).
    pub async fn quotas(&self) -> Result<Vec<QuotaRow>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!("SELECT {QUOTA_COLUMNS} FROM credential_quota ORDER BY credential"),
                &[],
            )
            .await?;
        Ok(rows.iter().map(quota_row).collect())
    }

    /// The quotas of the credentials one project's entities are acted on with.
    pub async fn project_quotas(&self, project: &str) -> Result<Vec<QuotaRow>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {QUOTA_COLUMNS} FROM credential_quota WHERE project = $1 \
                     ORDER BY credential"
                ),
                &[&project],
            )
            .await?;
        Ok(rows.iter().map(quota_row).collect())
    }

    /// Replaces one project's sweep progress.
    pub async fn record_sweep_progress(&self, p: &SweepProgress) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO sweep_progress
               (project, started_at, entities, done, deferred, deferred_until, expected_finish,
                updated_at)
             SELECT $1, $2, $3, $4, $5, $6, $7, now()
             WHERE EXISTS (SELECT 1 FROM projects WHERE name = $1)
             ON CONFLICT (project) DO UPDATE
               SET started_at = EXCLUDED.started_at, entities = EXCLUDED.entities,
                   done = EXCLUDED.done, deferred = EXCLUDED.deferred,
                   deferred_until = EXCLUDED.deferred_until,
                   expected_finish = EXCLUDED.expected_finish, updated_at = now()",
            &[
                &p.project,
                &p.started_at,
                &p.entities,
                &p.done,
                &p.deferred,
                &p.deferred_until,
                &p.expected_finish,
            ],
        )
        .await?;
        Ok(())
    }

    /// Forgets the progress of projects a sweep no longer covers (no active entities left, or
    /// deleted), so nothing reports a sweep that will not move.
    pub async fn retain_sweep_progress(&self, projects: &[String]) -> Result<u64, StoreError> {
        let c = self.client().await?;
        Ok(c.execute(
            "DELETE FROM sweep_progress WHERE project <> ALL($1)",
            &[&projects],
        )
        .await?)
    }

    /// One project's progress in the current (or last) sweep.
    pub async fn sweep_progress(&self, project: &str) -> Result<Option<SweepProgress>, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &format!("SELECT {PROGRESS_COLUMNS} FROM sweep_progress WHERE project = $1"),
                &[&project],
            )
            .await?;
        Ok(row.map(|r| SweepProgress {
            project: r.get(0),
            started_at: r.get(1),
            entities: r.get(2),
            done: r.get(3),
            deferred: r.get(4),
            deferred_until: r.get(5),
            expected_finish: r.get(6),
            updated_at: r.get(7),
        }))
    }
}
