//! Shared test harness: a private database and topic namespace per test, on the real broker and
//! the real Postgres that `scripts/test.sh` makes sure are running.
#![allow(dead_code, unused_imports)]

use std::future::Future;
use std::time::Duration;

pub use plumbline_bus::testing::{kafka, topics, unique, Reader};
pub use plumbline_store::testing::TestDatabase as TestDb;

/// Polls `check` until it returns Some or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Signs a webhook body as GitHub does.
pub fn sign(secret: &str, body: &[u8]) -> String {
    plumbline_github::webhook::sign(secret.as_bytes(), body)
}
