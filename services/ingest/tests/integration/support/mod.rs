//! An ingest service on a port of its own, with its own database and topic namespace, on the real
//! broker and Postgres (`scripts/test.sh` makes sure both run), and a signing client for it.
#![allow(dead_code)]

use plumbline_bus::testing::{kafka, topics_on, Reader};
use plumbline_bus::{Record, Topics};
use plumbline_ingest::{IngestConfig, Running};
use plumbline_proto::v1::EntityEvent;
use plumbline_proto::Message as _;
use plumbline_store::testing::TestDatabase;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "current-secret";

pub struct Harness {
    pub db: TestDatabase,
    pub brokers: String,
    pub prefix: String,
    pub topics: Topics,
    pub ingest: Running,
    pub shutdown: CancellationToken,
    pub url: String,
    pub http: reqwest::Client,
}

pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
}

impl Harness {
    /// Ingest on the shared broker with default settings.
    pub async fn start() -> Harness {
        Self::start_with(&kafka(), |_| {}).await
    }

    /// Ingest on `brokers`, its configuration adjusted by `tweak`.
    pub async fn start_with(brokers: &str, tweak: impl FnOnce(&mut IngestConfig)) -> Harness {
        let db = TestDatabase::new().await;
        let (prefix, topics) = topics_on(brokers, 3).await;
        let mut config = IngestConfig::local(brokers, &db.url, &prefix, SECRET);
        tweak(&mut config);
        let shutdown = CancellationToken::new();
        let ingest = plumbline_ingest::start(config, shutdown.clone())
            .await
            .expect("ingest starts");
        let url = format!("http://{}/webhooks/github", ingest.addr);
        Harness {
            db,
            brokers: brokers.to_string(),
            prefix,
            topics,
            ingest,
            shutdown,
            url,
            http: reqwest::Client::new(),
        }
    }

    /// A second replica on the same database and topics.
    pub async fn replica(&self) -> (Running, String, CancellationToken) {
        let config = IngestConfig::local(&self.brokers, &self.db.url, &self.prefix, SECRET);
        let shutdown = CancellationToken::new();
        let r = plumbline_ingest::start(config, shutdown.clone())
            .await
            .expect("replica starts");
        let url = format!("http://{}/webhooks/github", r.addr);
        (r, url, shutdown)
    }

    /// Posts `body` as GitHub would: signed with the current secret.
    pub async fn post(&self, event: &str, delivery: &str, body: &[u8]) -> Answer {
        self.post_to(&self.url, event, delivery, body, Some(sign(SECRET, body)))
            .await
    }

    pub async fn post_to(
        &self,
        url: &str,
        event: &str,
        delivery: &str,
        body: &[u8],
        signature: Option<String>,
    ) -> Answer {
        let mut r = self
            .http
            .post(url)
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(s) = signature {
            r = r.header("x-hub-signature-256", s);
        }
        let resp = r.send().await.expect("request reaches ingest");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        Answer { status, body }
    }

    /// Every record on the entity-events topic, read until `expected` arrived (then a little
    /// longer, so extra records would be seen too) or `timeout` passed.
    pub async fn records(&self, expected: usize, timeout: Duration) -> Vec<(Record, EntityEvent)> {
        let mut reader = Reader::on(&self.brokers, &self.topics.entity_events);
        reader.read_until(timeout, |rs| rs.len() >= expected).await;
        let records = reader.drain(Duration::from_secs(2)).await.to_vec();
        records
            .into_iter()
            .map(|r| {
                let ev = EntityEvent::decode(r.payload.as_slice()).expect("records decode");
                (r, ev)
            })
            .collect()
    }

    /// Waits (at most 10 s) until every delivery is marked published in Postgres: marks are
    /// written in batches a moment after the answer, as a redelivery from GitHub would find them.
    pub async fn wait_marked(&self, deliveries: &[String]) {
        let store = self.db.store();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        for d in deliveries {
            loop {
                let state = store.delivery_state(d).await.expect("delivery state");
                if state.as_deref() == Some("published") {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{d} not marked published: {state:?}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.ingest.health_addr);
        self.http
            .get(url)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.ingest.task.await;
    }
}

pub fn sign(secret: &str, body: &[u8]) -> String {
    plumbline_github::webhook::sign(secret.as_bytes(), body)
}

pub fn delivery() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A minimal repository-scoped payload.
pub fn repo_payload(event_action: &str, id: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "action": event_action,
        "repository": {"id": id, "name": format!("repo-{id}"), "owner": {"login": "acme"}, "default_branch": "main"},
    }))
    .expect("json")
}
