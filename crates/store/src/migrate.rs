//! Embedded, versioned migrations.

use crate::{Store, StoreError};

/// (version, name, SQL). Append only: an applied migration is never edited.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/0001_initial.sql")),
    (
        2,
        "data_sources",
        include_str!("../migrations/0002_data_sources.sql"),
    ),
    (
        3,
        "webhook_deliveries",
        include_str!("../migrations/0003_webhook_deliveries.sql"),
    ),
    (
        4,
        "posture_and_actions",
        include_str!("../migrations/0004_posture_and_actions.sql"),
    ),
    (
        5,
        "webhook_deliveries_hot",
        include_str!("../migrations/0005_webhook_deliveries_hot.sql"),
    ),
    (
        6,
        "actuator_leases_and_budget",
        include_str!("../migrations/0006_actuator_leases_and_budget.sql"),
    ),
];

/// Arbitrary constant identifying "Plumbline migrations" among advisory locks.
const MIGRATION_LOCK: i64 = 0x0050_4c55_4d4d_4947; // "PLUMMIG"

impl Store {
    /// Applies pending migrations in order, each in its own transaction; returns how many ran.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let mut c = self.client().await?;
        c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let result = apply(&mut c).await;
        let _ = c
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        result
    }

    /// The highest applied migration version (0 for an empty database).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let c = self.client().await?;
        let exists: bool = c
            .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
            .await?
            .get(0);
        if !exists {
            return Ok(0);
        }
        let v: Option<i64> = c
            .query_one("SELECT max(version) FROM schema_migrations", &[])
            .await?
            .get(0);
        Ok(v.unwrap_or(0))
    }
}

async fn apply(c: &mut deadpool_postgres::Object) -> Result<usize, StoreError> {
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version bigint PRIMARY KEY,
            name text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let rows = c
        .query("SELECT version FROM schema_migrations", &[])
        .await?;
    let applied: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    let mut ran = 0;
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let tx = c.transaction().await?;
        tx.batch_execute(sql)
            .await
            .map_err(|e| StoreError::Migration {
                version: *version,
                reason: StoreError::from(e).to_string(),
            })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, name, "migration applied");
        ran += 1;
    }
    Ok(ran)
}
