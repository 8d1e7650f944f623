//! A throwaway, migrated database for tests of any crate: created with a random name on the
//! server at `PLUMB_TEST_DATABASE_URL` (default: the local server) and dropped with the value.

use crate::{admin, Store};

pub fn admin_url() -> String {
    std::env::var("PLUMB_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub struct TestDatabase {
    pub name: String,
    /// The services' role, `plumbline_app`: rows only, as `k8s/postgres-roles.sql` sets it up
    /// for production. Every test that runs Plumbline's code against this database therefore
    /// shows that the services need nothing more.
    pub url: String,
    /// The schema owner, `plumbline_migrator`, which ran the migrations: for tests of
    /// migrating itself.
    pub owner_url: String,
}

/// The roles' SQL an operator runs once (`k8s/postgres-roles.sql`), run the same way here.
const ROLES_SQL: &str = include_str!("../../../k8s/postgres-roles.sql");
/// Passwords for the two roles on a test server (any server that asks for one).
const TEST_PASSWORD: &str = "plumbline-test-only";
/// Serializes concurrent test setups of the roles (see `TestDatabase::roles`).
const ROLES_LOCK: i64 = 0x706c_756d_6272_6f6c;

impl TestDatabase {
    /// Creates a database, sets up its two roles with `k8s/postgres-roles.sql` and migrates it
    /// as the schema owner. Panics on failure: for tests only.
    pub async fn new() -> TestDatabase {
        let name = format!("plumb_test_{}", uuid::Uuid::new_v4().simple());
        // The two roles are the server's, not the database's, and get a password written in
        // this file: never on a server someone else uses.
        if !crate::tls::names_local_server(&admin_url()) {
            panic!(
                "PLUMB_TEST_DATABASE_URL must name a throwaway server on loopback: test databases \
                 set up the server-wide roles plumbline_app and plumbline_migrator with a test \
                 password, which would take over a real installation's roles"
            );
        }
        if let Err(e) = admin::create_database(&admin_url(), &name).await {
            panic!("cannot create a test database on {}: {e} (is postgres running? see scripts/test.sh)", admin_url());
        }
        let superuser = admin::with_database(&admin_url(), &name);
        if let Err(e) = Self::roles(&superuser).await {
            panic!("setting up the roles of k8s/postgres-roles.sql: {e}");
        }
        let db = TestDatabase {
            url: with_user(&superuser, "plumbline_app", TEST_PASSWORD),
            owner_url: with_user(&superuser, "plumbline_migrator", TEST_PASSWORD),
            name,
        };
        if let Err(e) = db.owner_store().migrate().await {
            panic!("migrating the test database as plumbline_migrator: {e}");
        }
        db
    }

    /// One setup at a time on the server: the roles and their grants are catalog rows shared
    /// by every database, and concurrent changes to one fail ("tuple concurrently updated").
    /// The lock is taken in the admin database, since advisory locks are per database; it goes
    /// with the connection if the setup fails.
    async fn roles(superuser: &str) -> Result<(), crate::StoreError> {
        let lock = admin::connect(&admin_url()).await?;
        lock.execute("SELECT pg_advisory_lock($1)", &[&ROLES_LOCK])
            .await?;
        let c = admin::connect(superuser).await?;
        c.batch_execute(ROLES_SQL).await?;
        // Passwords, for servers that ask for one.
        c.batch_execute(&format!(
            "ALTER ROLE plumbline_migrator PASSWORD '{TEST_PASSWORD}'; \
             ALTER ROLE plumbline_app PASSWORD '{TEST_PASSWORD}';"
        ))
        .await?;
        lock.execute("SELECT pg_advisory_unlock($1)", &[&ROLES_LOCK])
            .await?;
        Ok(())
    }

    /// Runs SQL statements as they are, as a superuser (seeding a large fleet in one round
    /// trip, VACUUM, triggers that simulate faults). Panics on failure: for tests only.
    pub async fn batch(&self, sql: &str) {
        let superuser = admin::with_database(&admin_url(), &self.name);
        let result = match admin::connect(&superuser).await {
            Ok(c) => c.batch_execute(sql).await.map_err(crate::StoreError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            panic!("running test sql: {e}");
        }
    }

    /// The store as the schema owner (`plumbline_migrator`).
    pub fn owner_store(&self) -> Store {
        match Store::connect(&self.owner_url, 2) {
            Ok(s) => s,
            Err(e) => panic!("connecting to the test database as its owner: {e}"),
        }
    }

    pub fn store(&self) -> Store {
        match Store::connect(&self.url, 4) {
            Ok(s) => s,
            Err(e) => panic!("connecting to the test database: {e}"),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside an async runtime; do the async cleanup on a thread of its own.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                let _ = rt.block_on(admin::drop_database(&admin_url(), &name));
            }
        })
        .join();
    }
}

/// An evaluation of rule `r` (profile `p`, project `default`) of `entity`, for tests to adjust.
pub fn evaluation(
    entity: &str,
    status: plumbline_domain::EvalStatus,
    at: chrono::DateTime<chrono::Utc>,
) -> crate::EvaluationRecord {
    crate::EvaluationRecord {
        evaluation_id: uuid::Uuid::new_v4(),
        entity_id: entity.into(),
        project: "default".into(),
        profile: "p".into(),
        rule_type: "r".into(),
        rule_name: "r".into(),
        status,
        message: String::new(),
        details: serde_json::json!([]),
        input_digest: "d".into(),
        rule_type_version: 1,
        cause_event_id: "e".into(),
        evaluated_at: at,
        unchanged: false,
    }
}

/// `url` (`postgres://[userinfo@]host...`) connecting as `user` with `password`.
pub fn with_user(url: &str, user: &str, password: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        panic!("not a postgres:// url: {url}");
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{user}:{password}@{host}{tail}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_loopback_servers_take_test_roles() {
        for url in [
            "postgres://postgres@127.0.0.1:5432/postgres",
            "postgres://postgres@localhost/postgres",
            "postgres://u:p@[::1]:5432/x",
            "postgres://127.0.0.2/x",
        ] {
            assert!(crate::tls::names_local_server(url), "{url}");
        }
        for url in [
            "postgres://postgres@db.internal:5432/postgres",
            "postgres://u:p@10.0.0.5/x",
            "postgres://u:p@[2001:db8::1]:5432/x",
            "postgres://127.0.0.1.evil.example/x",
            "not a url",
        ] {
            assert!(!crate::tls::names_local_server(url), "{url}");
        }
    }

    #[test]
    fn with_user_replaces_only_the_user_info() {
        assert_eq!(
            super::with_user(
                "postgres://postgres@127.0.0.1:5432/x?sslmode=disable",
                "a",
                "p"
            ),
            "postgres://a:p@127.0.0.1:5432/x?sslmode=disable"
        );
        assert_eq!(
            super::with_user("postgres://u:s@cr@et@db:5432/x", "a", "p"),
            "postgres://a:p@db:5432/x"
        );
        assert_eq!(
            super::with_user("postgresql://db/x", "a", "p"),
            "postgresql://a:p@db/x"
        );
    }
}
