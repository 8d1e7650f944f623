//! Shared test harness: a private database and topic namespace per test, on the real broker and
//! the real Postgres that `scripts/test.sh` makes sure are running.
#![allow(dead_code)]

use plumbline_bus::{Consumer, ConsumerConfig, Record, Topics};
use std::future::Future;
use std::time::Duration;

pub fn kafka() -> String {
    std::env::var("PLUMB_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple().to_string().get(..12).unwrap_or("x"))
}

pub use plumbline_store::testing::TestDatabase as TestDb;

/// A topic namespace of its own on the shared broker.
pub async fn topics(partitions: i32) -> (String, Topics) {
    let prefix = format!("{}.", unique("t"));
    let topics = Topics::with_prefix(&prefix);
    plumbline_bus::ensure_topics(&kafka(), &topics, partitions).await.expect("create topics");
    (prefix, topics)
}

/// Reads a topic from the beginning in a consumer group of its own.
pub struct Reader {
    consumer: Consumer,
    pub records: Vec<Record>,
}

impl Reader {
    pub fn new(topic: &str) -> Reader {
        let mut cc = ConsumerConfig::new(kafka(), unique("reader-"), topic);
        cc.session_timeout = Duration::from_secs(6);
        Reader {
            consumer: Consumer::new(&cc).expect("reader consumer"),
            records: vec![],
        }
    }

    /// Reads until `done(all records so far)` holds or `timeout` passes; returns whether it held.
    pub async fn read_until(&mut self, timeout: Duration, mut done: impl FnMut(&[Record]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(&self.records) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            if let Ok(Ok(r)) = tokio::time::timeout(left.min(Duration::from_millis(500)), self.consumer.recv()).await {
                self.records.push(r);
            }
        }
        true
    }

    /// Reads everything that arrives within `window`.
    pub async fn drain(&mut self, window: Duration) -> &[Record] {
        let _ = self.read_until(window, |_| false).await;
        &self.records
    }
}

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
