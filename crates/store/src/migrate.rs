//! Versioned migrations, embedded from `migrations/` (`V{n}__{name}.sql`) and run by refinery.
//!
//! refinery records a checksum of every migration it applies, so an applied migration edited
//! afterwards stops `plumb migrate` with a divergence instead of going unnoticed, and one
//! applied but missing from the binary (a downgrade) stops it too. Each migration runs in its
//! own transaction, under an advisory lock so that replicas starting together apply each once.

use crate::{Store, StoreError};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The table refinery keeps its history in (its default name).
const HISTORY: &str = "refinery_schema_history";

/// Arbitrary constant identifying "Plumbline migrations" among advisory locks.
const MIGRATION_LOCK: i64 = 0x0050_4c55_4d4d_4947; // "PLUMMIG"

/// The embedded migrations as (version, name), in order.
pub fn migrations() -> Vec<(i64, String)> {
    let mut all: Vec<(i64, String)> = embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| (i64::from(m.version()), m.name().to_string()))
        .collect();
    all.sort();
    all
}

fn migration_error(e: refinery::Error) -> StoreError {
    use refinery::error::Kind;
    match e.kind() {
        Kind::DivergentVersion(applied, local) => StoreError::Migration {
            version: i64::from(local.version()),
            reason: format!(
                "the applied migration {applied} differs from the one in this binary ({local}): a migration was edited after it was applied; restore it and add a new migration instead"
            ),
        },
        Kind::MissingVersion(applied) => StoreError::Migration {
            version: i64::from(applied.version()),
            reason: format!("migration {applied} was applied but this binary does not have it (an older Plumbline against a newer schema?)"),
        },
        _ => StoreError::Migration {
            version: e.report().and_then(|r| r.applied_migrations().last().map(|m| i64::from(m.version()) + 1)).unwrap_or(0),
            reason: with_database_error(&e),
        },
    }
}

/// Leaves the migration history writable by its owner alone. Default privileges (such as
/// `k8s/postgres-roles.sql`'s for the services' role) grant row writes on every table the
/// migrator creates, this one included; a service that could write it would make `plumb
/// migrate` skip a migration (a row from the future), re-run them all (rows deleted) or refuse
/// to run (a checksum changed). Reading stays granted: services wait on it.
async fn seal_history(c: &mut tokio_postgres::Client) -> Result<(), StoreError> {
    c.batch_execute(&format!(
        "DO $$ DECLARE r record; BEGIN
           FOR r IN SELECT DISTINCT grantee FROM information_schema.role_table_grants
                    WHERE table_schema = current_schema() AND table_name = '{HISTORY}'
                      AND privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
                      AND grantee <> (SELECT pg_catalog.pg_get_userbyid(relowner) FROM pg_catalog.pg_class
                                      WHERE oid = '{HISTORY}'::regclass)
           LOOP
             EXECUTE 'REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {HISTORY} FROM '
               || CASE WHEN r.grantee = 'PUBLIC' THEN 'PUBLIC' ELSE quote_ident(r.grantee) END;
           END LOOP;
         END $$;"
    ))
    .await?;
    Ok(())
}

/// refinery's own text names only its step ("error asserting migrations table", "db error"):
/// the database's message is further down the chain, and without it an operator cannot tell a
/// missing privilege from a broken migration.
fn with_database_error(e: &refinery::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(db) = s
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(tokio_postgres::Error::as_db_error)
        {
            let hint = if db.code() == &tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE {
                "; this role may not change the schema: run `plumb migrate` as the schema owner \
                 (plumbline_migrator in k8s/postgres-roles.sql, the migrate-url of Secret \
                 plumbline-database), not as the services' role"
            } else {
                ""
            };
            return format!("{e}: {}{hint}", db.message());
        }
        source = s.source();
    }
    e.to_string()
}

impl Store {
    /// Applies pending migrations in order, each in its own transaction; returns how many ran.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let mut c = self.client().await?;
        c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let result = async {
            let client: &mut tokio_postgres::Client = &mut c;
            adopt_legacy_history(client).await?;
            let report = embedded::migrations::runner()
                .set_abort_divergent(true)
                .set_abort_missing(true)
                .run_async(client)
                .await
                .map_err(migration_error)?;
            for m in report.applied_migrations() {
                tracing::info!(version = m.version(), name = m.name(), "migration applied");
            }
            seal_history(client).await?;
            Ok(report.applied_migrations().len())
        }
        .await;
        let _ = c
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        result
    }

    /// Waits until the schema is at least the version this binary was built for (its newest
    /// embedded migration), checking every `poll`, for at most `max_wait`: services start
    /// beside the migration Job and must not run against the schema before it. A newer schema
    /// is accepted (migrations stay compatible with the previous release, so an older build
    /// keeps working through a rollout). Returns the version found; an error names what to
    /// run when the wait is over.
    pub async fn wait_for_schema(
        &self,
        max_wait: std::time::Duration,
        poll: std::time::Duration,
    ) -> Result<i64, StoreError> {
        let needed = migrations().last().map(|(v, _)| *v).unwrap_or(0);
        let started = tokio::time::Instant::now();
        let mut said = None::<tokio::time::Instant>;
        loop {
            let found = self.schema_version().await;
            match &found {
                Ok(v) if *v >= needed => {
                    if *v > needed {
                        tracing::info!(schema = v, built_for = needed, "the schema is newer than this build: running against it (migrations stay compatible with the previous release)");
                    }
                    return Ok(*v);
                }
                _ => {}
            }
            let describe = match &found {
                Ok(v) => format!("the schema is at version {v}, this build needs version {needed}"),
                Err(e) => format!(
                    "the schema version cannot be read ({e}); this build needs version {needed}"
                ),
            };
            if started.elapsed() >= max_wait {
                return Err(StoreError::Migration {
                    version: needed,
                    reason: format!(
                        "{describe}: apply the migrations (`plumb migrate`, the migrate Job) and start again"
                    ),
                });
            }
            if said.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(30)) {
                tracing::warn!(
                    waited_secs = started.elapsed().as_secs(),
                    "{describe}: waiting for the migrations"
                );
                said = Some(tokio::time::Instant::now());
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// The highest applied migration version (0 for an empty database).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let c = self.client().await?;
        for (table, query) in [
            (
                HISTORY,
                "SELECT max(version)::int8 FROM refinery_schema_history",
            ),
            (
                "schema_migrations",
                "SELECT max(version)::int8 FROM schema_migrations",
            ),
        ] {
            let exists: bool = c
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
                .await?
                .get(0);
            if exists {
                let v: Option<i64> = c.query_one(query, &[]).await?.get(0);
                return Ok(v.unwrap_or(0));
            }
        }
        Ok(0)
    }
}

/// Databases migrated before refinery kept their history in `schema_migrations` (version,
/// name, applied_at). Its versions are recorded in refinery's table with the embedded
/// migrations' checksums, once, so refinery takes over where it stopped. The old table stays,
/// as it was, for the record.
async fn adopt_legacy_history(c: &mut tokio_postgres::Client) -> Result<(), StoreError> {
    let row = c
        .query_one(
            "SELECT to_regclass('schema_migrations') IS NOT NULL, to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await?;
    let (legacy, current): (bool, bool) = (row.get(0), row.get(1));
    if !legacy || current {
        return Ok(());
    }
    let runner = embedded::migrations::runner();
    let rows = c
        .query(
            "SELECT version, to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM schema_migrations ORDER BY version",
            &[],
        )
        .await?;
    // Every legacy version must be one this binary has, before anything is written.
    let mut adopted = Vec::with_capacity(rows.len());
    for r in &rows {
        let version: i64 = r.get(0);
        let applied_on: String = r.get(1);
        let Some(m) = runner
            .get_migrations()
            .iter()
            .find(|m| i64::from(m.version()) == version)
        else {
            return Err(StoreError::Migration {
                version,
                reason: "recorded in schema_migrations but not embedded in this binary".into(),
            });
        };
        // refinery's own column types: version INT4, the rest text (checksum as digits).
        let version = i32::try_from(m.version()).map_err(|_| StoreError::Migration {
            version,
            reason: "version out of refinery's range".into(),
        })?;
        adopted.push((
            version,
            m.name().to_string(),
            applied_on,
            m.checksum().to_string(),
        ));
    }
    let tx = c.transaction().await?;
    tx.batch_execute(
        "CREATE TABLE refinery_schema_history(
             version INT4 PRIMARY KEY,
             name VARCHAR(255),
             applied_on VARCHAR(255),
             checksum VARCHAR(255))",
    )
    .await?;
    let insert = tx
        .prepare("INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES ($1, $2, $3, $4)")
        .await?;
    for (version, name, applied_on, checksum) in &adopted {
        tx.execute(&insert, &[version, name, applied_on, checksum])
            .await?;
    }
    tx.commit().await?;
    tracing::info!(
        migrations = rows.len(),
        "migration history adopted from schema_migrations"
    );
    Ok(())
}
