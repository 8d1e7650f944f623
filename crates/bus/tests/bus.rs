//! The bus against a real Kafka-protocol broker (tansu in CI) and the embedded mock cluster.

use plumbline_bus::{ensure_topics, Consumer, ConsumerConfig, EmbeddedBroker, Producer, ProducerConfig, Record, Topics, TraceContext};
use std::collections::BTreeMap;
use std::time::Duration;

fn kafka() -> String {
    std::env::var("PLUMB_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn unique(p: &str) -> String {
    format!("{p}{}", uuid::Uuid::new_v4().simple())
}

fn consumer(brokers: &str, group: &str, topic: &str) -> Consumer {
    let mut cc = ConsumerConfig::new(brokers, group, topic);
    cc.session_timeout = Duration::from_secs(6);
    Consumer::new(&cc).expect("consumer")
}

async fn next(c: &Consumer, within: Duration) -> Option<Record> {
    tokio::time::timeout(within, c.recv()).await.ok().and_then(Result::ok)
}

async fn publish(p: &Producer, topic: &str, key: &str, body: &[u8]) {
    p.publish(topic, key, body, "dev.plumbline.test.v1", &unique("id-"), &TraceContext::new_root(), &BTreeMap::new())
        .await
        .expect("acknowledged");
}

#[tokio::test(flavor = "multi_thread")]
async fn records_carry_key_trace_and_cloudevents_headers() {
    let topics = Topics::with_prefix(&format!("{}.", unique("b")));
    ensure_topics(&kafka(), &topics, 3).await.expect("topics");
    // Creating existing topics again is fine.
    ensure_topics(&kafka(), &topics, 3).await.expect("topics again");
    let p = Producer::new(&ProducerConfig::new(kafka(), "test")).expect("producer");
    publish(&p, &topics.verdicts, "github/repository/1", b"payload").await;
    let c = consumer(&kafka(), &unique("g-"), &topics.verdicts);
    let r = next(&c, Duration::from_secs(30)).await.expect("a record");
    assert_eq!(r.key.as_deref(), Some("github/repository/1"));
    assert_eq!(r.payload, b"payload");
    for h in ["traceparent", "ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "content-type"] {
        assert!(r.headers.contains_key(h), "missing header {h}: {:?}", r.headers);
    }
    assert_eq!(r.headers["ce_source"], "/plumbline/test");
}

#[tokio::test(flavor = "multi_thread")]
async fn offsets_are_committed_only_for_records_marked_done() {
    let topics = Topics::with_prefix(&format!("{}.", unique("b")));
    ensure_topics(&kafka(), &topics, 1).await.expect("topics");
    let p = Producer::new(&ProducerConfig::new(kafka(), "test")).expect("producer");
    publish(&p, &topics.entity_events, "k", b"one").await;
    publish(&p, &topics.entity_events, "k", b"two").await;
    let group = unique("g-");

    // First member finishes "one" but crashes (is dropped) before finishing "two".
    let c1 = consumer(&kafka(), &group, &topics.entity_events);
    let one = next(&c1, Duration::from_secs(30)).await.expect("one");
    assert_eq!(one.payload, b"one");
    c1.done(&one).expect("store offset");
    let two = next(&c1, Duration::from_secs(10)).await.expect("two");
    assert_eq!(two.payload, b"two");
    c1.commit_stored().expect("commit");
    drop(c1);

    // The next member of the group resumes at "two": it was not done, so it is redelivered.
    let c2 = consumer(&kafka(), &group, &topics.entity_events);
    let again = next(&c2, Duration::from_secs(30)).await.expect("redelivered");
    assert_eq!(again.payload, b"two");
    c2.done(&again).expect("store");
    c2.commit_stored().expect("commit");
    drop(c2);

    // After "two" is done, nothing is redelivered.
    let c3 = consumer(&kafka(), &group, &topics.entity_events);
    assert!(next(&c3, Duration::from_secs(12)).await.is_none(), "everything was done");
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_broker_serves_producers_and_groups() {
    let topics = Topics::default();
    let broker = EmbeddedBroker::start(&topics, 3).expect("embedded broker");
    let b = broker.bootstrap_servers().to_string();
    let p = Producer::new(&ProducerConfig::new(&b, "test")).expect("producer");
    publish(&p, &topics.actions, "k", b"x").await;
    let c = consumer(&b, "g", &topics.actions);
    let r = next(&c, Duration::from_secs(30)).await.expect("a record");
    assert_eq!(r.payload, b"x");
}

/// A dependency outage is waited out: the record is neither dead-lettered nor skipped, even
/// with a single attempt allowed, and its offset is stored once it succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn unavailable_dependencies_are_waited_out_not_dead_lettered() {
    use plumbline_bus::worker::{Failure, Handler, Worker};
    struct Flaky {
        calls: u32,
        done: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    }
    impl Handler for Flaky {
        async fn handle(&mut self, r: &Record) -> Result<(), Failure> {
            self.calls += 1;
            if self.calls <= 2 {
                return Err(Failure::Unavailable { reason: "database failover".into(), until: None });
            }
            let _ = self.done.send(r.payload.clone());
            Ok(())
        }
    }
    let topics = Topics::with_prefix(&format!("{}.", unique("b")));
    ensure_topics(&kafka(), &topics, 1).await.expect("topics");
    let p = Producer::new(&ProducerConfig::new(kafka(), "test")).expect("producer");
    publish(&p, &topics.entity_events, "k", b"work").await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker = Worker {
        name: "test",
        consumer: consumer(&kafka(), &unique("g-"), &topics.entity_events),
        max_attempts: 1,
        dead_letter: Some((p.clone(), topics.dlq.clone())),
        health: plumbline_telemetry::Health::new("test"),
        metrics: plumbline_telemetry::Metrics::new(),
        base_backoff: Duration::from_millis(50),
    };
    let task = worker.spawn(Flaky { calls: 0, done: tx }, shutdown.clone(), || async { true });
    let got = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("processed in time");
    assert_eq!(got.as_deref(), Some(&b"work"[..]));
    shutdown.cancel();
    let _ = task.await;
    let dlq = consumer(&kafka(), &unique("g-"), &topics.dlq);
    assert!(next(&dlq, Duration::from_secs(8)).await.is_none(), "nothing was dead-lettered");
}
