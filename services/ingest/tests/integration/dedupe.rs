//! Redeliveries across replicas: published once, answered 2xx; a delivery still in flight
//! elsewhere gets 503 (never a 2xx that could hide a failure); expired claims are taken over.

use crate::support;

use plumbline_store::Claim;
use std::time::Duration;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redelivery_to_another_replica_publishes_nothing_new() {
    let h = Harness::start().await;
    let (replica, replica_url, replica_stop) = h.replica().await;
    let body = repo_payload("created", 5);
    let mut first = vec![];
    for i in 0..10 {
        let d = format!("delivery-{i}");
        let a = h.post("branch_protection_rule", &d, &body).await;
        assert_eq!(a.status, 202, "{}", a.body);
        first.push(d);
    }
    h.wait_marked(&first).await;
    for d in &first {
        // GitHub's "Redeliver", landing on the other replica behind the load balancer.
        let sig = Some(sign(SECRET, &body));
        let a = h
            .post_to(&replica_url, "branch_protection_rule", d, &body, sig)
            .await;
        assert_eq!(
            (a.status, a.body["duplicate"].as_bool()),
            (200, Some(true)),
            "{d}: {}",
            a.body
        );
    }
    let records = h.records(10, Duration::from_secs(30)).await;
    assert_eq!(records.len(), 10, "each delivery once");
    assert_eq!(
        replica.metrics.counter_value(
            "plumbline_ingest_deliveries_total",
            &[
                ("event", "branch_protection_rule"),
                ("outcome", "duplicate")
            ]
        ),
        10
    );
    replica_stop.cancel();
    let _ = replica.task.await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delivery_in_flight_elsewhere_gets_503_and_an_abandoned_claim_is_taken_over() {
    let h = Harness::start().await;
    let store = h.db.store();
    let body = repo_payload("created", 6);
    // Another replica holds a live claim (it is publishing right now).
    assert_eq!(
        store
            .claim_delivery("busy", "member", Duration::from_secs(60))
            .await
            .expect("claim"),
        Claim::Claimed
    );
    let a = h.post("member", "busy", &body).await;
    assert_eq!(a.status, 503, "in flight elsewhere: {}", a.body);
    // A replica died mid-publish long ago: its claim expired, this delivery is published.
    assert_eq!(
        store
            .claim_delivery("abandoned", "member", Duration::ZERO)
            .await
            .expect("claim"),
        Claim::Claimed
    );
    let a = h.post("member", "abandoned", &body).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let records = h.records(1, Duration::from_secs(30)).await;
    assert_eq!(
        records
            .iter()
            .map(|(_, e)| e.delivery_id.as_str())
            .collect::<Vec<_>>(),
        vec!["abandoned"]
    );
    // The published mark is written in batches, shortly after the answer.
    let mut state = None;
    for _ in 0..50 {
        state = store.delivery_state("abandoned").await.expect("state");
        if state.as_deref() == Some("published") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state.as_deref(), Some("published"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_postgres_dedupe_fails_open_and_nothing_is_lost() {
    // A database URL nothing answers on: claims fail, deliveries are still published.
    let h = Harness::start_with(&plumbline_bus::testing::kafka(), |c| {
        c.database_url = format!(
            "postgres://postgres@127.0.0.1:{}/none",
            plumbline_bus::testing::free_port()
        )
        .into();
    })
    .await;
    let body = repo_payload("created", 8);
    let d = delivery();
    assert_eq!(h.post("member", &d, &body).await.status, 202);
    assert_eq!(
        h.post("member", &d, &body).await.status,
        202,
        "no dedupe without the database, but no loss either"
    );
    let records = h.records(2, Duration::from_secs(30)).await;
    assert_eq!(records.len(), 2);
    assert!(
        h.ingest
            .metrics
            .counter_value("plumbline_ingest_dedupe_errors_total", &[("step", "claim")])
            >= 2
    );
    // Registry changes need the database: an installation event is refused, to be redelivered.
    let install = serde_json::to_vec(&serde_json::json!({
        "action": "created",
        "installation": {"id": 1, "account": {"login": "acme"}},
        "repositories": [{"id": 1, "name": "a", "full_name": "acme/a"}],
    }))
    .expect("json");
    assert_eq!(
        h.post("installation", &delivery(), &install).await.status,
        503
    );
    h.stop().await;
}
