//! A throwaway, migrated database for tests of any crate: created with a random name on the
//! server at `PLUMB_TEST_DATABASE_URL` (default: the local server) and dropped with the value.

use crate::{admin, Store};

pub fn admin_url() -> String {
    std::env::var("PLUMB_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    /// Creates and migrates a new database. Panics on failure: for tests only.
    pub async fn new() -> TestDatabase {
        let name = format!("plumb_test_{}", uuid::Uuid::new_v4().simple());
        if let Err(e) = admin::create_database(&admin_url(), &name).await {
            panic!("cannot create a test database on {}: {e} (is postgres running? see scripts/test.sh)", admin_url());
        }
        let url = admin::with_database(&admin_url(), &name);
        let db = TestDatabase { name, url };
        if let Err(e) = db.store().migrate().await {
            panic!("migrating the test database: {e}");
        }
        db
    }

    /// Runs SQL statements as they are (seeding a large fleet in one round trip, VACUUM).
    /// Panics on failure: for tests only.
    pub async fn batch(&self, sql: &str) {
        let store = self.store();
        let result = match store.client().await {
            Ok(c) => c.batch_execute(sql).await.map_err(crate::StoreError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            panic!("running test sql: {e}");
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
