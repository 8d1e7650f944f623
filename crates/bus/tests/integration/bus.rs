//! The bus against a real Kafka-protocol broker (tansu in CI) and the embedded mock cluster.

use plumbline_bus::{
    ensure_topics, Consumer, ConsumerConfig, EmbeddedBroker, Producer, ProducerConfig, Record,
    Topics, TraceContext,
};
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
    tokio::time::timeout(within, c.recv())
        .await
        .ok()
        .and_then(Result::ok)
}

async fn publish(p: &Producer, topic: &str, key: &str, body: &[u8]) {
    p.publish(
        topic,
        key,
        body,
        "dev.plumbline.test.v1",
        &unique("id-"),
        &TraceContext::new_root(),
        &BTreeMap::new(),
    )
    .await
    .expect("acknowledged");
}

#[tokio::test(flavor = "multi_thread")]
async fn records_carry_key_trace_and_cloudevents_headers() {
    let topics = Topics::with_prefix(&format!("{}.", unique("b")));
    ensure_topics(&kafka(), &topics, 3).await.expect("topics");
    // Creating existing topics again is fine.
    ensure_topics(&kafka(), &topics, 3)
        .await
        .expect("topics again");
    let p = Producer::new(&ProducerConfig::new(kafka(), "test")).expect("producer");
    publish(&p, &topics.verdicts, "github/repository/1", b"payload").await;
    let c = consumer(&kafka(), &unique("g-"), &topics.verdicts);
    let r = next(&c, Duration::from_secs(30)).await.expect("a record");
    assert_eq!(r.key.as_deref(), Some("github/repository/1"));
    assert_eq!(r.payload, b"payload");
    for h in [
        "traceparent",
        "ce_specversion",
        "ce_id",
        "ce_type",
        "ce_source",
        "ce_time",
        "content-type",
    ] {
        assert!(
            r.headers.contains_key(h),
            "missing header {h}: {:?}",
            r.headers
        );
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
    let again = next(&c2, Duration::from_secs(30))
        .await
        .expect("redelivered");
    assert_eq!(again.payload, b"two");
    c2.done(&again).expect("store");
    c2.commit_stored().expect("commit");
    drop(c2);

    // After "two" is done, nothing is redelivered.
    let c3 = consumer(&kafka(), &group, &topics.entity_events);
    assert!(
        next(&c3, Duration::from_secs(12)).await.is_none(),
        "everything was done"
    );
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
        calls: std::sync::atomic::AtomicU32,
        done: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    }
    impl Handler for Flaky {
        async fn handle(&self, r: &Record) -> Result<(), Failure> {
            let calls = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            if calls <= 2 {
                return Err(Failure::Unavailable {
                    cause: plumbline_domain::WaitCause::Dependency,
                    reason: "database failover".into(),
                    until: None,
                });
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
        max_in_flight: 4,
        coalesce: true,
    };
    let task = worker.spawn(
        Flaky {
            calls: 0.into(),
            done: tx,
        },
        shutdown.clone(),
        || async { true },
    );
    let got = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("processed in time");
    assert_eq!(got.as_deref(), Some(&b"work"[..]));
    shutdown.cancel();
    let _ = task.await;
    let dlq = consumer(&kafka(), &unique("g-"), &topics.dlq);
    assert!(
        next(&dlq, Duration::from_secs(8)).await.is_none(),
        "nothing was dead-lettered"
    );
}

/// Many keys in flight at once, one key never twice at once, waiting records of a key collapsed
/// into one handling of the newest, and every offset committed once all is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_run_concurrently_in_order_and_waiting_records_coalesce() {
    use plumbline_bus::worker::{Failure, Handler, Worker};
    use std::collections::{HashMap, HashSet};
    use std::sync::{Arc, Mutex};
    #[derive(Default)]
    struct Probe {
        running: Mutex<HashSet<String>>,
        now: std::sync::atomic::AtomicUsize,
        max_seen: std::sync::atomic::AtomicUsize,
        overlaps: std::sync::atomic::AtomicUsize,
        handled: Mutex<HashMap<String, Vec<u32>>>,
    }
    struct Slow(Arc<Probe>);
    impl Handler for Slow {
        async fn handle(&self, r: &Record) -> Result<(), Failure> {
            use std::sync::atomic::Ordering::SeqCst;
            let key = r.key.clone().unwrap_or_default();
            if !self.0.running.lock().expect("lock").insert(key.clone()) {
                self.0.overlaps.fetch_add(1, SeqCst);
            }
            let now = self.0.now.fetch_add(1, SeqCst) + 1;
            self.0.max_seen.fetch_max(now, SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            let seq: u32 = String::from_utf8_lossy(&r.payload).parse().unwrap_or(0);
            self.0
                .handled
                .lock()
                .expect("lock")
                .entry(key.clone())
                .or_default()
                .push(seq);
            self.0.now.fetch_sub(1, SeqCst);
            self.0.running.lock().expect("lock").remove(&key);
            Ok(())
        }
    }
    let topics = Topics::with_prefix(&format!("{}.", unique("b")));
    ensure_topics(&kafka(), &topics, 3).await.expect("topics");
    let p = Producer::new(&ProducerConfig::new(kafka(), "test")).expect("producer");
    // 20 keys, 10 records each, interleaved; the payload is the record's sequence per key.
    for seq in 0..10u32 {
        let sends = (0..20).map(|k| {
            let p = p.clone();
            let topic = topics.entity_events.clone();
            async move {
                publish(
                    &p,
                    &topic,
                    &format!("entity-{k}"),
                    seq.to_string().as_bytes(),
                )
                .await
            }
        });
        futures::future::join_all(sends).await;
    }
    let group = unique("g-");
    let probe = Arc::new(Probe::default());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let metrics = plumbline_telemetry::Metrics::new();
    let worker = Worker {
        name: "test",
        consumer: consumer(&kafka(), &group, &topics.entity_events),
        max_attempts: 3,
        dead_letter: None,
        health: plumbline_telemetry::Health::new("test"),
        metrics: metrics.clone(),
        base_backoff: Duration::from_millis(50),
        max_in_flight: 8,
        coalesce: true,
    };
    let task = worker.spawn(Slow(probe.clone()), shutdown.clone(), || async { true });
    // Done when every key's newest record (9) was handled.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = probe
            .handled
            .lock()
            .expect("lock")
            .values()
            .filter(|v| v.last() == Some(&9))
            .count();
        if done == 20 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{done} of 20 keys reached their newest record"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // let the last offsets be stored
    shutdown.cancel();
    let _ = task.await;
    use std::sync::atomic::Ordering::SeqCst;
    assert_eq!(
        probe.overlaps.load(SeqCst),
        0,
        "one key was handled twice at once"
    );
    assert!(probe.max_seen.load(SeqCst) > 1, "keys ran concurrently");
    assert!(
        probe.max_seen.load(SeqCst) <= 8,
        "at most max_in_flight at once"
    );
    let handled = probe.handled.lock().expect("lock").clone();
    let total: usize = handled.values().map(Vec::len).sum();
    for (key, seqs) in &handled {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{key} handled out of order: {seqs:?}"
        );
    }
    assert!(
        total < 200,
        "waiting records coalesced: {total} handlings for 200 records"
    );
    assert_eq!(
        metrics.counter_value("plumbline_worker_coalesced_total", &[("worker", "test")]) as usize,
        200 - total
    );
    // Everything is committed: the group's next member reads nothing.
    let again = consumer(&kafka(), &group, &topics.entity_events);
    assert!(
        next(&again, Duration::from_secs(10)).await.is_none(),
        "offsets committed past every record"
    );
}

/// Lag is what the member has not consumed yet on its partitions.
#[tokio::test(flavor = "multi_thread")]
async fn lag_counts_the_records_not_yet_consumed() {
    let topics = Topics::with_prefix(&format!("{}.", unique("b")));
    ensure_topics(&kafka(), &topics, 1).await.expect("topics");
    let p = Producer::new(&ProducerConfig::new(kafka(), "test")).expect("producer");
    for i in 0..5 {
        publish(&p, &topics.entity_events, "k", format!("{i}").as_bytes()).await;
    }
    let c = std::sync::Arc::new(consumer(&kafka(), &unique("g-"), &topics.entity_events));
    for _ in 0..2 {
        next(&c, Duration::from_secs(30)).await.expect("a record");
    }
    let c2 = c.clone();
    let lag = tokio::task::spawn_blocking(move || c2.lag(Duration::from_secs(5)))
        .await
        .expect("task")
        .expect("lag");
    assert_eq!(lag, 3, "5 records, 2 consumed");
}

/// A record limited until a known time (a provider's rate limit) is parked: with one slot,
/// the other keys are handled meanwhile, and the parked key runs again once its time came.
#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_record_is_parked_and_other_keys_go_on() {
    use plumbline_bus::worker::{Failure, Handler, Parked, Worker};
    use std::sync::{Arc, Mutex};
    use std::time::SystemTime;
    #[derive(Default)]
    struct Probe {
        /// (key, when handled, whether it succeeded)
        calls: Mutex<Vec<(String, SystemTime, bool)>>,
        until: Mutex<Option<SystemTime>>,
        /// What the handler was told of each park: (key, wait).
        parked: Mutex<Vec<(String, Parked)>>,
    }
    struct Limited(Arc<Probe>);
    impl Handler for Limited {
        async fn handle(&self, r: &Record) -> Result<(), Failure> {
            let key = r.key.clone().unwrap_or_default();
            let now = SystemTime::now();
            let first = key == "limited" && self.0.until.lock().expect("lock").is_none();
            if first {
                let until = now + Duration::from_secs(3);
                *self.0.until.lock().expect("lock") = Some(until);
                self.0.calls.lock().expect("lock").push((key, now, false));
                return Err(Failure::Unavailable {
                    cause: plumbline_domain::WaitCause::ProviderQuota,
                    reason: "rate limited".into(),
                    until: Some(until),
                });
            }
            self.0.calls.lock().expect("lock").push((key, now, true));
            Ok(())
        }
        async fn parked(&self, r: &Record, wait: &Parked) {
            let key = r.key.clone().unwrap_or_default();
            self.0
                .parked
                .lock()
                .expect("lock")
                .push((key, wait.clone()));
        }
    }
    let topics = Topics::with_prefix(&format!("{}.", unique("b")));
    ensure_topics(&kafka(), &topics, 1).await.expect("topics");
    let p = Producer::new(&ProducerConfig::new(kafka(), "test")).expect("producer");
    publish(&p, &topics.entity_events, "limited", b"x").await;
    for i in 0..5 {
        publish(&p, &topics.entity_events, &format!("other-{i}"), b"y").await;
    }
    let probe = Arc::new(Probe::default());
    let group = unique("g-");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let metrics = plumbline_telemetry::Metrics::new();
    let worker = Worker {
        name: "test",
        consumer: consumer(&kafka(), &group, &topics.entity_events),
        max_attempts: 1,
        dead_letter: Some((p.clone(), topics.dlq.clone())),
        health: plumbline_telemetry::Health::new("test"),
        metrics: metrics.clone(),
        base_backoff: Duration::from_millis(50),
        max_in_flight: 1,
        coalesce: true,
    };
    let task = worker.spawn(Limited(probe.clone()), shutdown.clone(), || async { true });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = probe
            .calls
            .lock()
            .expect("lock")
            .iter()
            .filter(|c| c.2)
            .count();
        if done == 6 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{done} of 6 keys handled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // let the last offsets be committed
    shutdown.cancel();
    let _ = task.await;
    let calls = probe.calls.lock().expect("lock").clone();
    let until = probe
        .until
        .lock()
        .expect("lock")
        .expect("the limited key was tried");
    let retry = calls
        .iter()
        .position(|c| c.0 == "limited" && c.2)
        .expect("the limited key ran again");
    assert!(
        calls[retry].1 >= until,
        "the parked key ran again only once its limit lifted"
    );
    let others_done = calls
        .iter()
        .filter(|c| c.0.starts_with("other-") && c.2)
        .count();
    assert_eq!(others_done, 5);
    // The handler was told once, with the cause, the reason and the time it waits for (the
    // services record it for `plumb status`).
    let parked = probe.parked.lock().expect("lock").clone();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].0, "limited");
    assert_eq!(
        parked[0].1.cause,
        plumbline_domain::WaitCause::ProviderQuota
    );
    assert_eq!(parked[0].1.reason, "rate limited");
    let off = parked[0]
        .1
        .until
        .duration_since(until)
        .unwrap_or_else(|e| e.duration());
    assert!(off < Duration::from_millis(500), "until off by {off:?}");
    assert!(
        calls[..retry]
            .iter()
            .filter(|c| c.0.starts_with("other-"))
            .count()
            == 5,
        "the other keys were handled while the limited one was parked: {calls:?}"
    );
    assert_eq!(
        metrics.counter_value("plumbline_worker_parked_total", &[("worker", "test")]),
        1
    );
    let again = consumer(&kafka(), &group, &topics.entity_events);
    assert!(
        next(&again, Duration::from_secs(10)).await.is_none(),
        "offsets committed past every record, the parked one included"
    );
    let dlq = consumer(&kafka(), &unique("g-"), &topics.dlq);
    assert!(
        next(&dlq, Duration::from_secs(5)).await.is_none(),
        "a limit is not a failure of the record"
    );
}

/// The group rebalances cooperatively (the cooperative-sticky assignor, what lets autoscaling
/// move only the partitions that change hands), on the broker the tests run against.
#[tokio::test]
async fn groups_rebalance_cooperatively() {
    let topics = Topics::with_prefix(&format!("{}.", unique("c")));
    ensure_topics(&kafka(), &topics, 2).await.expect("topics");
    let p = Producer::new(&ProducerConfig::new(kafka(), "test")).expect("producer");
    publish(&p, &topics.entity_events, "k", b"1").await;
    let c = consumer(&kafka(), &unique("g-"), &topics.entity_events);
    assert!(
        next(&c, Duration::from_secs(30)).await.is_some(),
        "the member joined and read"
    );
    assert!(c.assigned_partitions() > 0);
    assert!(c.rebalances_cooperatively());
}

/// A second member joins while the first is busy: the revoked partitions' handlings finish
/// before the new owner starts on them (no key is ever handled by both at once), what the first
/// held for them is dropped rather than done twice in parallel, and at the end every key's
/// newest record was handled and every offset committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebalance_hands_partitions_over_without_overlapping_work() {
    use plumbline_bus::worker::{Failure, Handler, Worker};
    use std::collections::{HashMap, HashSet};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::{Arc, Mutex};
    #[derive(Default)]
    struct Probe {
        running: Mutex<HashSet<String>>,
        overlaps: AtomicUsize,
        handlings: AtomicUsize,
        newest: Mutex<HashMap<String, u32>>,
        by_member: Mutex<HashMap<&'static str, usize>>,
    }
    struct Slow(Arc<Probe>, &'static str);
    impl Handler for Slow {
        async fn handle(&self, r: &Record) -> Result<(), Failure> {
            let key = r.key.clone().unwrap_or_default();
            if !self.0.running.lock().expect("lock").insert(key.clone()) {
                self.0.overlaps.fetch_add(1, SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let seq: u32 = String::from_utf8_lossy(&r.payload).parse().unwrap_or(0);
            let mut newest = self.0.newest.lock().expect("lock");
            let e = newest.entry(key.clone()).or_default();
            *e = (*e).max(seq);
            drop(newest);
            *self
                .0
                .by_member
                .lock()
                .expect("lock")
                .entry(self.1)
                .or_default() += 1;
            self.0.handlings.fetch_add(1, SeqCst);
            self.0.running.lock().expect("lock").remove(&key);
            Ok(())
        }
    }
    let topics = Topics::with_prefix(&format!("{}.", unique("b")));
    ensure_topics(&kafka(), &topics, 4).await.expect("topics");
    let p = Producer::new(&ProducerConfig::new(kafka(), "test")).expect("producer");
    for seq in 0..3u32 {
        let sends = (0..40).map(|k| {
            let p = p.clone();
            let topic = topics.entity_events.clone();
            async move {
                publish(
                    &p,
                    &topic,
                    &format!("entity-{k}"),
                    seq.to_string().as_bytes(),
                )
                .await
            }
        });
        futures::future::join_all(sends).await;
    }
    let group = unique("g-");
    let probe = Arc::new(Probe::default());
    let worker = |name: &'static str| Worker {
        name,
        consumer: consumer(&kafka(), &group, &topics.entity_events),
        max_attempts: 3,
        dead_letter: None,
        health: plumbline_telemetry::Health::new("test"),
        metrics: plumbline_telemetry::Metrics::new(),
        base_backoff: Duration::from_millis(50),
        max_in_flight: 4,
        coalesce: false,
    };
    let stop_a = tokio_util::sync::CancellationToken::new();
    let a = worker("a").spawn(Slow(probe.clone(), "a"), stop_a.clone(), || async { true });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while probe.handlings.load(SeqCst) < 8 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first member started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stop_b = tokio_util::sync::CancellationToken::new();
    let b = worker("b").spawn(Slow(probe.clone(), "b"), stop_b.clone(), || async { true });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let done = probe
            .newest
            .lock()
            .expect("lock")
            .values()
            .filter(|s| **s == 2)
            .count();
        if done == 40 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{done} of 40 keys reached their newest record"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_a.cancel();
    stop_b.cancel();
    let _ = a.await;
    let _ = b.await;
    assert_eq!(
        probe.overlaps.load(SeqCst),
        0,
        "a key was handled by two members at once"
    );
    let by_member = probe.by_member.lock().expect("lock").clone();
    assert!(
        by_member.get("b").copied().unwrap_or(0) > 0,
        "the second member took partitions over: {by_member:?}"
    );
    let again = consumer(&kafka(), &group, &topics.entity_events);
    assert!(
        next(&again, Duration::from_secs(12)).await.is_none(),
        "offsets committed past every record"
    );
}

/// Shutdown ends at once however work waits: a record parked behind an hour-long rate limit
/// does not hold it, and a handling stuck on a dependency is abandoned (its offset not stored)
/// [`plumbline_bus::worker::SHUTDOWN_GRACE`] after shutdown began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_parked_waits_and_stuck_handlings() {
    use plumbline_bus::worker::{Failure, Handler, Worker, SHUTDOWN_GRACE};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::SystemTime;
    #[derive(Default)]
    struct Probe {
        parked: AtomicUsize,
        stuck: AtomicUsize,
    }
    struct Waits(Arc<Probe>);
    impl Handler for Waits {
        async fn handle(&self, r: &Record) -> Result<(), Failure> {
            if r.key.as_deref() == Some("limited") {
                self.0.parked.fetch_add(1, Ordering::SeqCst);
                return Err(Failure::Unavailable {
                    cause: plumbline_domain::WaitCause::ProviderQuota,
                    reason: "rate limited for an hour".into(),
                    until: Some(SystemTime::now() + Duration::from_secs(3600)),
                });
            }
            self.0.stuck.fetch_add(1, Ordering::SeqCst);
            // A dependency that never answers.
            std::future::pending::<()>().await;
            Ok(())
        }
    }
    let topics = Topics::with_prefix(&format!("{}.", unique("b")));
    ensure_topics(&kafka(), &topics, 1).await.expect("topics");
    let p = Producer::new(&ProducerConfig::new(kafka(), "test")).expect("producer");
    publish(&p, &topics.entity_events, "limited", b"x").await;
    publish(&p, &topics.entity_events, "stuck", b"y").await;
    let probe = Arc::new(Probe::default());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker = Worker {
        name: "test",
        consumer: consumer(&kafka(), &unique("g-"), &topics.entity_events),
        max_attempts: 3,
        dead_letter: None,
        health: plumbline_telemetry::Health::new("test"),
        metrics: plumbline_telemetry::Metrics::new(),
        base_backoff: Duration::from_millis(50),
        max_in_flight: 4,
        coalesce: true,
    };
    let task = worker.spawn(Waits(probe.clone()), shutdown.clone(), || async { true });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while probe.parked.load(Ordering::SeqCst) == 0 || probe.stuck.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "both records reached the handler"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stopping = std::time::Instant::now();
    shutdown.cancel();
    tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(5), task)
        .await
        .expect("the worker stops within the grace period")
        .expect("worker task");
    let took = stopping.elapsed();
    assert!(
        took < SHUTDOWN_GRACE + Duration::from_secs(3),
        "stopped after {took:?}"
    );
}
