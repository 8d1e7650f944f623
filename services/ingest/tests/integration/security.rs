//! Webhook senders cannot starve ingest: what slow, oversized and unsigned senders receive,
//! and that signed deliveries keep flowing meanwhile.

use crate::support;

use plumbline_store::testing::TestDatabase;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads until the server answers or closes; returns what it sent and how long it took.
async fn answer(s: &mut tokio::net::TcpStream, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut buf = vec![0u8; 4096];
    let n = match tokio::time::timeout(within, s.read(&mut buf)).await {
        Ok(Ok(n)) => n,
        Ok(Err(_)) => 0,
        Err(_) => panic!("no answer within {within:?}"),
    };
    (
        String::from_utf8_lossy(&buf[..n]).to_string(),
        started.elapsed(),
    )
}

fn head(delivery: &str, length: usize, signature: Option<&str>) -> String {
    let sig = signature
        .map(|s| format!("X-Hub-Signature-256: {s}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: branch_protection_rule\r\nX-GitHub-Delivery: {delivery}\r\nContent-Type: application/json\r\n{sig}Content-Length: {length}\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_senders_are_cut_off_and_hold_no_slot() {
    let h = Harness::start_with(&plumbline_bus::testing::kafka(), |c| {
        c.header_timeout_ms = 500;
        c.body_timeout_ms = 1000;
        // One slot: if a slow sender held it, the signed delivery below would be shed.
        c.max_in_flight = 1;
    })
    .await;
    let addr = h.ingest.addr;

    // Headers trickled: the connection is closed once the header deadline passes.
    let mut slow_head = tokio::net::TcpStream::connect(addr).await.expect("connect");
    slow_head
        .write_all(b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("partial head");
    // Bodies trickled: headers complete, a few bytes of the body, then nothing.
    let mut slow_bodies = Vec::new();
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(head(&delivery(), 5000, Some("sha256=00")).as_bytes())
            .await
            .expect("head");
        s.write_all(b"{\"a\":").await.expect("a little body");
        slow_bodies.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Meanwhile a signed delivery gets through: the stalled senders hold no in-flight slot.
    let a = h
        .post(
            "branch_protection_rule",
            &delivery(),
            &repo_payload("deleted", 7),
        )
        .await;
    assert_eq!(a.status, 202, "{:?}", a.body);

    let (resp, took) = answer(&mut slow_head, Duration::from_secs(5)).await;
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 408"),
        "slow headers: {resp:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "slow headers cut off after {took:?}"
    );
    for mut s in slow_bodies {
        let (resp, took) = answer(&mut s, Duration::from_secs(5)).await;
        assert!(resp.starts_with("HTTP/1.1 408"), "slow body: {resp:?}");
        assert!(
            took < Duration::from_secs(3),
            "slow body cut off after {took:?}"
        );
    }

    // No length declared: refused before reading (GitHub always declares it).
    let mut chunked = tokio::net::TcpStream::connect(addr).await.expect("connect");
    chunked
        .write_all(format!("POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: {}\r\nX-Hub-Signature-256: sha256=00\r\nTransfer-Encoding: chunked\r\n\r\n", delivery()).as_bytes())
        .await
        .expect("head");
    let (resp, _) = answer(&mut chunked, Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 411"), "{resp}");

    // The public port serves webhooks only; health and metrics are on the admin listener.
    for path in ["/metrics", "/healthz", "/readyz"] {
        let on_public = h
            .http
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .expect("get");
        assert_eq!(
            on_public.status(),
            404,
            "{path} must not be served on the webhook port"
        );
        let on_admin = h
            .http
            .get(format!("http://{}{path}", h.ingest.health_addr))
            .send()
            .await
            .expect("get");
        assert_eq!(on_admin.status(), 200, "{path} on the admin port");
    }
    let m = &h.ingest.metrics;
    assert_eq!(
        m.counter_value(
            "plumbline_ingest_deliveries_total",
            &[
                ("event", "branch_protection_rule"),
                ("outcome", "body_timeout")
            ]
        ),
        3
    );
    assert_eq!(
        m.counter_value(
            "plumbline_ingest_deliveries_total",
            &[("event", "push"), ("outcome", "length_required")]
        ),
        1
    );
    assert_eq!(
        h.records(1, Duration::from_secs(5)).await.len(),
        1,
        "only the signed delivery was published"
    );
    h.stop().await;
}

/// Resident and peak resident memory of a process, in KiB (`/proc/PID/status`).
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unsigned_floods_are_refused_without_buffering_them() {
    let db = TestDatabase::new().await;
    // Ready only once the broker answers for its topic, so the topic must exist.
    let (prefix, _topics) = plumbline_bus::testing::topics(1).await;
    let (port, admin) = (free_port(), free_port());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_plumbline-ingest"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--health-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .args([
            "--kafka-brokers",
            &plumbline_bus::testing::kafka(),
            "--topic-prefix",
            &prefix,
            "--database-url",
            &db.url,
            "--webhook-secret",
            SECRET,
        ])
        // One largest payload at a time may be held; everything else is refused up front.
        .args([
            "--max-body-bytes-in-flight",
            &(26 * 1024 * 1024).to_string(),
            "--body-timeout-ms",
            "3000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ingest starts");
    let pid = child.id();
    // Killed whatever happens below.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _reap = Reap(child);
    let http = reqwest::Client::new();
    let started = Instant::now();
    while !http
        .get(format!("http://127.0.0.1:{admin}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "ingest became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (baseline, _) = rss_kib(pid);

    // 30 MB declared, unsigned or not: 413 from the headers alone; the body is never sent.
    for sig in [None, Some("sha256=00")] {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        s.write_all(head(&delivery(), 30_000_000, sig).as_bytes())
            .await
            .expect("head");
        let (resp, took) = answer(&mut s, Duration::from_secs(5)).await;
        assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
    // Unsigned, with a body within the limit: 401 before a byte of the body is read.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(head(&delivery(), 20_000_000, None).as_bytes())
        .await
        .expect("head");
    let (resp, _) = answer(&mut s, Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");

    // A flood: 24 senders each push 20 MB with a made-up signature, all at once. Without a byte
    // budget ingest would hold 480 MB; with it, one body at a time and 503 for the rest.
    let body = vec![b' '; 20_000_000];
    let mut senders = Vec::new();
    for _ in 0..24 {
        let body = body.clone();
        senders.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            let _ = s
                .write_all(head(&delivery(), body.len(), Some("sha256=00")).as_bytes())
                .await;
            let _ = s.write_all(&body).await;
            let (resp, _) = answer(&mut s, Duration::from_secs(20)).await;
            resp.get(9..12).unwrap_or("").to_string()
        }));
    }
    let mut codes = std::collections::BTreeMap::new();
    for s in senders {
        *codes.entry(s.await.expect("sender")).or_insert(0) += 1;
    }
    let (_, peak) = rss_kib(pid);
    let grew_mib = peak.saturating_sub(baseline) / 1024;
    eprintln!(
        "answers {codes:?}; rss baseline {} MiB, peak {} MiB (+{grew_mib} MiB)",
        baseline / 1024,
        peak / 1024
    );
    assert!(
        codes.get("503").copied().unwrap_or(0) > 0,
        "the budget refused some: {codes:?}"
    );
    assert_eq!(codes.values().sum::<usize>(), 24);
    assert!(
        codes.keys().all(|c| c == "503" || c == "401"),
        "only refusals: {codes:?}"
    );
    assert!(
        grew_mib < 80,
        "peak memory grew by {grew_mib} MiB for 480 MB offered"
    );

    // Still serving signed deliveries afterwards.
    let a = http
        .post(format!("http://127.0.0.1:{port}/webhooks/github"))
        .header("x-github-event", "branch_protection_rule")
        .header("x-github-delivery", delivery())
        .header("content-type", "application/json")
        .header(
            "x-hub-signature-256",
            sign(SECRET, &repo_payload("deleted", 8)),
        )
        .body(repo_payload("deleted", 8))
        .send()
        .await
        .expect("signed delivery");
    assert_eq!(a.status(), 202);
}
