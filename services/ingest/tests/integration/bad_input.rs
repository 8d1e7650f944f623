//! What each bad input receives, and that none of it puts anything on the topic.

use crate::support;

use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_bad_input_gets_its_status_and_publishes_nothing() {
    let h = Harness::start_with(&plumbline_bus::testing::kafka(), |c| {
        // A rotation in progress: the new secret first, the old one still accepted.
        c.webhook_secrets = vec![SECRET.into(), "previous-secret".into()];
        // (both accepted: the current one and the previous one of a rotation)
    })
    .await;
    let body = repo_payload("edited", 77);
    let post = |sig: Option<String>, b: Vec<u8>| {
        let h = &h;
        async move {
            h.post_to(&h.url, "branch_protection_rule", &delivery(), &b, sig)
                .await
        }
    };
    let valid = sign(SECRET, &body);

    // Signatures.
    assert_eq!(
        post(Some(sign("not-the-secret", &body)), body.clone())
            .await
            .status,
        401,
        "forged"
    );
    assert_eq!(post(None, body.clone()).await.status, 401, "missing");
    assert_eq!(
        post(Some(valid[..valid.len() - 8].to_string()), body.clone())
            .await
            .status,
        401,
        "truncated"
    );
    assert_eq!(
        post(
            Some(valid.trim_start_matches("sha256=").to_string()),
            body.clone()
        )
        .await
        .status,
        401,
        "no sha256= prefix"
    );
    assert_eq!(
        post(Some(format!("sha1={}", &valid[7..47])), body.clone())
            .await
            .status,
        401,
        "sha1 only"
    );
    assert_eq!(
        post(Some(sign("retired-secret", &body)), body.clone())
            .await
            .status,
        401,
        "stale secret no longer configured"
    );
    let tampered = repo_payload("edited", 78);
    assert_eq!(
        post(Some(valid.clone()), tampered).await.status,
        401,
        "body changed after signing"
    );

    // Payloads (correctly signed).
    let signed = |b: &[u8]| (Some(sign(SECRET, b)), b.to_vec());
    let (s, b) = signed(b"{not json");
    let a = post(s, b).await;
    assert_eq!(a.status, 400, "malformed json");
    assert!(
        a.body["error"].as_str().unwrap_or("").contains("not json"),
        "{}",
        a.body
    );
    let (s, b) = signed(br#"{"action":"deleted","repository":{"id":"seventy-seven","name":"r","owner":{"login":"o"}}}"#);
    let a = post(s, b).await;
    assert_eq!(a.status, 400, "repository.id of the wrong type");
    assert_eq!(
        a.body["error"],
        "branch_protection_rule payload has no valid repository.id"
    );
    assert!(
        !a.body.to_string().contains("seventy-seven"),
        "the answer does not echo the payload"
    );
    let (s, b) = signed(br#"{"action":"deleted"}"#);
    assert_eq!(post(s, b).await.status, 400, "event without its repository");
    let (s, b) = signed(b"[1,2,3]");
    assert_eq!(post(s, b).await.status, 400, "json that is not an object");
    let (s, b) = signed(b"");
    assert_eq!(post(s, b).await.status, 400, "empty body");
    let (s, b) = signed(&body[..body.len() / 2]);
    assert_eq!(post(s, b).await.status, 400, "truncated body");

    // Headers.
    let no_event = h
        .http
        .post(&h.url)
        .header("x-github-delivery", delivery())
        .header("x-hub-signature-256", valid.clone())
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(no_event.status(), 400, "missing X-GitHub-Event");
    let no_delivery = h
        .http
        .post(&h.url)
        .header("x-github-event", "member")
        .header("x-hub-signature-256", valid.clone())
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(no_delivery.status(), 400, "missing X-GitHub-Delivery");

    // Method and path.
    assert_eq!(
        h.http.get(&h.url).send().await.expect("send").status(),
        405,
        "GET"
    );
    assert_eq!(
        h.http
            .put(&h.url)
            .body(body.clone())
            .send()
            .await
            .expect("send")
            .status(),
        405,
        "PUT"
    );
    let other = format!("http://{}/webhooks/gitlab", h.ingest.addr);
    assert_eq!(
        h.http
            .post(&other)
            .body(body.clone())
            .send()
            .await
            .expect("send")
            .status(),
        404,
        "wrong path"
    );

    // The previous secret of a rotation is still accepted; a redelivery publishes nothing new.
    let d = delivery();
    let a = h
        .post_to(
            &h.url,
            "branch_protection_rule",
            &d,
            &body,
            Some(sign("previous-secret", &body)),
        )
        .await;
    assert_eq!(a.status, 202, "signed with the previous secret: {}", a.body);
    // Marks are written in batches a moment after the answer; until then a redelivery is "in
    // flight" (503, publishes nothing), after that a duplicate (200, publishes nothing).
    let mut again = h.post("branch_protection_rule", &d, &body).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while again.status == 503 && std::time::Instant::now() < deadline {
        assert_eq!(
            again.body["error"]
                .as_str()
                .map(|e| e.contains("being processed")),
            Some(true),
            "{}",
            again.body
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        again = h.post("branch_protection_rule", &d, &body).await;
    }
    assert_eq!(
        (again.status, again.body["duplicate"].as_bool()),
        (200, Some(true)),
        "redelivery"
    );

    let records = h.records(1, Duration::from_secs(30)).await;
    assert_eq!(
        records.len(),
        1,
        "only the one valid delivery was published"
    );
    assert_eq!(records[0].1.delivery_id, d);

    let m = &h.ingest.metrics;
    assert_eq!(
        m.counter_value("plumbline_ingest_signature_failures_total", &[]),
        7
    );
    let text = h.metrics().await;
    for name in [
        "plumbline_ingest_deliveries_total",
        "plumbline_ingest_latency_seconds_bucket",
        "plumbline_ingest_signature_failures_total",
    ] {
        assert!(text.contains(name), "{name} exported");
    }
    assert!(text.contains(r#"outcome="duplicate""#) && text.contains(r#"outcome="bad_signature""#));
    h.stop().await;
}

/// Raw HTTP/1.1 over TCP: a request line and headers, then as much body as `send_body` says.
async fn raw_request(
    addr: std::net::SocketAddr,
    head: &str,
    send_body: usize,
) -> (String, Duration) {
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("head");
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < send_body {
        let n = chunk.len().min(send_body - sent);
        if s.write_all(&chunk[..n]).await.is_err() {
            break; // the server stopped reading: expected once it has answered
        }
        sent += n;
    }
    let mut resp = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut resp))
        .await
        .expect("answer in time")
        .unwrap_or(0);
    (
        String::from_utf8_lossy(&resp[..n]).to_string(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_bodies_get_413_without_being_read() {
    let h = Harness::start().await;
    let addr = h.ingest.addr;
    // Declared too large: answered from the headers alone; the body is never sent.
    let head = format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        delivery(),
        26 * 1024 * 1024
    );
    let (resp, took) = raw_request(addr, &head, 0).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(
        took < Duration::from_secs(5),
        "answered without waiting for 26 MiB: {took:?}"
    );

    // Chunked, so no length up front: refused before a byte of the body is read (GitHub always
    // declares the length, and an undeclared one could only be bounded by reading it).
    let head = format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        delivery()
    );
    let (resp, took) = raw_request(addr, &head, 0).await;
    assert!(resp.starts_with("HTTP/1.1 411"), "{resp}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // Just under the limit is read (and then fails the signature, proving it was read whole).
    let body = vec![b' '; 1024];
    let a = h
        .post_to(
            &h.url,
            "push",
            &delivery(),
            &body,
            Some(sign("wrong", &body)),
        )
        .await;
    assert_eq!(a.status, 401);
    assert_eq!(
        h.ingest.metrics.counter_value(
            "plumbline_ingest_deliveries_total",
            &[("event", "push"), ("outcome", "too_large")]
        ),
        1
    );
    assert!(
        h.records(1, Duration::from_secs(3)).await.is_empty(),
        "nothing published"
    );
    h.stop().await;
}
