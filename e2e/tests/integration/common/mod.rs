//! Shared test harness: a private database and topic namespace per test, on the real broker and
//! the real Postgres that `scripts/test.sh` makes sure are running.
#![allow(dead_code, unused_imports)]

pub use plumbline_bus::testing::{eventually, kafka, topics, unique, Reader};
pub use plumbline_store::testing::TestDatabase as TestDb;

/// Signs a webhook body as GitHub does.
pub fn sign(secret: &str, body: &[u8]) -> String {
    plumbline_github::webhook::sign(secret.as_bytes(), body)
}
