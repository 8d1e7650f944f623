//! Plumbline's Postgres store: the only crate that links tokio-postgres.
//!
//! Errors are mapped once, here, by SQLSTATE ([`StoreError`]), so services never parse driver
//! messages. Migrations are embedded in the binary and applied in order under an advisory lock, so
//! several replicas starting together do not race.

mod access;
mod actions;
mod budget;
mod deliveries;
mod entities;
mod error;
mod evaluations;
mod migrate;
mod posture;
mod providers;
mod pull_requests;
mod rules;
/// Test helpers; only with the `testing` feature, never in a service binary.
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
mod waits;

pub use access::{
    AuditEntry, AuditFilter, AuditOutcome, ProjectRow, RoleBinding, ServiceAccount, UnknownOutcome,
};
pub use actions::{ActionFilter, ActionRecord, ActionResult, ActionState, NewAction, TakeOver};
pub use budget::{ContentLimits, ContentUsage};
pub use deliveries::Claim;
pub use error::StoreError;
pub use evaluations::{
    EntityWrite, EvaluationRecord, InputsChange, LastVerdict, StatusRow, StoredInputs,
};
pub use migrate::migrations;
pub use posture::{
    HistoryEntry, HistoryFilter, HistoryRow, PostureCount, StatusCursor, StatusFilter, StatusPage,
    MAX_PAGE,
};
pub use providers::{DeleteProvider, ProviderCredential, ProviderRow, SealedValue, StoredPat};
pub use pull_requests::ChildEnrolment;
pub use rules::{DocumentKind, StoredDocument};
pub use waits::{quota_key, QuotaRow, SweepProgress, WaitSummary};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

/// A cheap-to-clone handle on a connection pool.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

/// Appends a server option (`-c name=value`) to the session options of a configuration.
fn add_option(cfg: &mut tokio_postgres::Config, option: &str) {
    let options = match cfg.get_options() {
        Some(o) if !o.trim().is_empty() => format!("{o} {option}"),
        _ => option.to_string(),
    };
    cfg.options(&options);
}

impl Store {
    /// Connects lazily: the first query opens the first connection. `max_connections` bounds the
    /// pool, which bounds what one replica can ask of the database.
    pub fn connect(database_url: &str, max_connections: usize) -> Result<Self, StoreError> {
        let parsed = tls::parse(database_url)?;
        Self::with_config(parsed, max_connections)
    }

    /// Like [`Store::connect`], but its commits do not wait for the database's WAL flush
    /// (`synchronous_commit = off`): Postgres writes them out within a few hundred milliseconds
    /// instead, batching the flushes. A database crash can lose the last of them; a server crash
    /// cannot corrupt anything. Only for data whose loss is harmless: ingest's delivery dedupe,
    /// where a lost claim means at most one duplicate record for a redelivery.
    pub fn connect_relaxed(database_url: &str, max_connections: usize) -> Result<Self, StoreError> {
        let mut parsed = tls::parse(database_url)?;
        add_option(&mut parsed.config, "-c synchronous_commit=off");
        Self::with_config(parsed, max_connections)
    }

    /// Like [`Store::connect`], with every statement of the pool's sessions cancelled by the
    /// server after `timeout` (`statement_timeout`): a query stuck on a lock or a bad plan
    /// frees its connection instead of holding one of the few a replica has.
    pub fn connect_with_timeout(
        database_url: &str,
        max_connections: usize,
        timeout: std::time::Duration,
    ) -> Result<Self, StoreError> {
        let mut parsed = tls::parse(database_url)?;
        add_option(
            &mut parsed.config,
            &format!("-c statement_timeout={}", timeout.as_millis().max(1)),
        );
        Self::with_config(parsed, max_connections)
    }

    fn with_config(parsed: tls::Parsed, max_connections: usize) -> Result<Self, StoreError> {
        let mgr = Manager::from_config(
            parsed.config,
            parsed.tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(max_connections.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .create_timeout(Some(std::time::Duration::from_secs(10)))
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        Ok(Store { pool })
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(StoreError::from_pool)
    }

    /// The current value of a server setting for this store's connections (`SHOW name`).
    pub async fn setting(&self, name: &str) -> Result<String, StoreError> {
        let c = self.client().await?;
        Ok(c.query_one("SELECT current_setting($1)", &[&name])
            .await?
            .get(0))
    }

    /// The size of the database on disk (bytes): tables, indexes and TOAST.
    pub async fn database_size_bytes(&self) -> Result<i64, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_one("SELECT pg_database_size(current_database())", &[])
            .await?;
        Ok(row.get(0))
    }

    /// Whether this pool's connections to Postgres are encrypted (TLS).
    pub async fn connection_encrypted(&self) -> Result<bool, StoreError> {
        let c = self.client().await?;
        Ok(c.query_one(
            "SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
            &[],
        )
        .await?
        .get(0))
    }

    /// Answers whether the database can be reached (a readiness probe).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.simple_query("SELECT 1").await?;
        Ok(())
    }

    /// Tries to become the single active instance for `key` (a Postgres session advisory lock).
    ///
    /// The lock lives as long as the returned guard's connection: if the process dies the
    /// connection drops and another instance takes over.
    pub async fn try_lock(&self, key: i64) -> Result<Option<LockGuard>, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await?;
        let got: bool = row.get(0);
        Ok(got.then_some(LockGuard {
            client: Some(c),
            key,
        }))
    }
}

/// Holds a session advisory lock; dropping it releases the lock by discarding the connection.
pub struct LockGuard {
    client: Option<deadpool_postgres::Object>,
    key: i64,
}

impl LockGuard {
    /// Confirms the lock's connection is still alive (a lost connection means a lost lock).
    pub async fn still_held(&self) -> bool {
        match &self.client {
            Some(c) => c
                .query_one(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND objid = ($1::bigint & x'ffffffff'::bigint)::oid",
                    &[&self.key],
                )
                .await
                .map(|r| r.get::<_, i64>(0) > 0)
                .unwrap_or(false),
            None => false,
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            // Never return a connection holding a session lock to the pool.
            let _ = deadpool_postgres::Object::take(c);
        }
    }
}

/// Creating and dropping whole databases: for `plumb dev` (a database of its own) and tests.
pub mod admin {
    use super::StoreError;
    pub(crate) async fn connect(url: &str) -> Result<tokio_postgres::Client, StoreError> {
        let parsed = super::tls::parse(url)?;
        let (client, conn) = parsed.config.connect(parsed.tls).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "admin connection closed");
            }
        });
        Ok(client)
    }

    fn check_name(name: &str) -> Result<(), StoreError> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(StoreError::Invalid(format!(
                "database name {name:?}: use [A-Za-z0-9_]"
            )));
        }
        Ok(())
    }

    /// Creates database `name` (no-op if it exists) through the server at `admin_url`.
    pub async fn create_database(admin_url: &str, name: &str) -> Result<(), StoreError> {
        check_name(name)?;
        let c = connect(admin_url).await?;
        match c.simple_query(&format!("CREATE DATABASE \"{name}\"")).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn drop_database(admin_url: &str, name: &str) -> Result<(), StoreError> {
        check_name(name)?;
        let c = connect(admin_url).await?;
        c.simple_query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await?;
        Ok(())
    }

    /// Answers whether a server accepts connections at `url`.
    pub async fn reachable(url: &str) -> bool {
        match tokio::time::timeout(std::time::Duration::from_secs(3), connect(url)).await {
            Ok(Ok(c)) => c.simple_query("SELECT 1").await.is_ok(),
            _ => false,
        }
    }

    /// `url` with its database name replaced by `db`.
    pub fn with_database(url: &str, db: &str) -> String {
        match url.rsplit_once('/') {
            Some((base, rest)) if base.contains("://") && !base.ends_with('/') => {
                let query = rest
                    .split_once('?')
                    .map(|(_, q)| format!("?{q}"))
                    .unwrap_or_default();
                format!("{base}/{db}{query}")
            }
            _ => format!("{}/{db}", url.trim_end_matches('/')),
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn database_is_swapped_in_urls() {
            assert_eq!(
                super::with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
                "postgres://postgres@127.0.0.1:5432/x"
            );
            assert_eq!(
                super::with_database("postgres://postgres@127.0.0.1:5432", "x"),
                "postgres://postgres@127.0.0.1:5432/x"
            );
            assert_eq!(
                super::with_database("postgres://h/db?sslmode=disable", "x"),
                "postgres://h/x?sslmode=disable"
            );
        }
    }
}
