//! Conditional requests against the GitHub simulator over HTTP.

use plumbline_github::{GitHub, GitHubConfig, Method};
use plumbline_github_sim::{RepoOptions, SimConfig, Simulator};
use tokio_util::sync::CancellationToken;

async fn sim() -> (Simulator, String, CancellationToken) {
    let sim = Simulator::new(SimConfig::default());
    let stop = CancellationToken::new();
    let addr = sim
        .serve("127.0.0.1:0".parse().expect("addr"), stop.clone())
        .await
        .expect("serve");
    (sim, format!("http://{addr}"), stop)
}

fn remaining(r: &plumbline_github::ApiResponse) -> u64 {
    r.headers
        .get("x-ratelimit-remaining")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn unchanged_resources_are_free_304s_answered_from_the_cache() {
    let (sim, url, stop) = sim().await;
    sim.create_repo(
        "acme",
        "api",
        RepoOptions {
            protected: true,
            ..Default::default()
        },
    );
    let gh = GitHub::new(&GitHubConfig::new(&url, Some("t1".into()))).expect("client");
    let path = "/repos/acme/api/branches/main/protection";

    let first = gh.request(Method::GET, path, None).await.expect("first");
    let second = gh.request(Method::GET, path, None).await.expect("second");
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(
        first.body, second.body,
        "the 304 is answered with the cached body"
    );
    assert_eq!(
        remaining(&second),
        remaining(&first),
        "a 304 costs no rate limit"
    );
    let log = sim.request_log();
    assert_eq!(
        log.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![200, 304]
    );
    let stats = gh.cache_stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));

    // A change is seen: the ETag no longer matches.
    sim.remove_protection("acme", "api", "main")
        .expect("remove");
    let third = gh.request(Method::GET, path, None).await.expect("third");
    assert_eq!(third.status, 404);
    assert_eq!(gh.cache_stats().hits, 1);

    // Another credential never sees the first one's entries.
    let other = GitHub::new(&GitHubConfig::new(&url, Some("t2".into()))).expect("client");
    other
        .request(Method::GET, "/repos/acme/api", None)
        .await
        .expect("get");
    gh.request(Method::GET, "/repos/acme/api", None)
        .await
        .expect("get");
    assert_eq!(other.cache_stats().hits, 0);
    assert_eq!(
        gh.cache_stats().hits,
        1,
        "t1's first read of /repos/acme/api is a miss"
    );
    stop.cancel();
}

#[tokio::test]
async fn the_cache_can_be_disabled() {
    let (sim, url, stop) = sim().await;
    sim.create_repo("acme", "api", RepoOptions::default());
    let mut cfg = GitHubConfig::new(&url, None);
    cfg.etag_cache_bytes = 0;
    let gh = GitHub::new(&cfg).expect("client");
    for _ in 0..2 {
        assert_eq!(
            gh.request(Method::GET, "/repos/acme/api", None)
                .await
                .expect("get")
                .status,
            200
        );
    }
    assert!(
        sim.request_log().iter().all(|r| r.status == 200),
        "no conditional requests were sent"
    );
    stop.cancel();
}

#[tokio::test]
async fn an_exhausted_budget_stops_requests_until_reset() {
    let (sim, url, stop) = sim().await;
    sim.create_repo("acme", "api", RepoOptions::default());
    sim.set_rate_limit(2);
    let mut cfg = GitHubConfig::new(&url, Some("t".into()));
    cfg.etag_cache_bytes = 0;
    let gh = GitHub::new(&cfg).expect("client");
    for _ in 0..2 {
        gh.request(Method::GET, "/repos/acme/api", None)
            .await
            .expect("within budget");
    }
    assert_eq!(gh.rate_remaining(), Some(0));
    // The budget is spent: the client refuses without sending anything.
    for _ in 0..3 {
        match gh.request(Method::GET, "/repos/acme/api", None).await {
            Err(plumbline_github::GitHubError::RateLimited { until_epoch_secs }) => {
                assert!(until_epoch_secs > 0)
            }
            other => panic!("expected rate limited, got {other:?}"),
        }
    }
    assert_eq!(
        sim.request_log().len(),
        2,
        "no request was sent while limited"
    );
    stop.cancel();
}

#[tokio::test]
async fn transient_failures_of_idempotent_requests_are_retried_and_bounded() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    // A server that fails with 502 a given number of times, then answers.
    async fn flaky(failures: u32) -> (String, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let app = axum::Router::new().fallback(move || {
            let c = c.clone();
            async move {
                if c.fetch_add(1, Ordering::SeqCst) < failures {
                    (
                        axum::http::StatusCode::BAD_GATEWAY,
                        "{\"message\":\"bad gateway\"}",
                    )
                } else {
                    (axum::http::StatusCode::OK, "{\"ok\":true}")
                }
            }
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(l, app).await });
        (format!("http://{addr}"), calls)
    }
    let client = |url: &str| {
        let mut cfg = GitHubConfig::new(url, None);
        cfg.retry_base = std::time::Duration::from_millis(5);
        cfg.max_retries = 3;
        GitHub::new(&cfg).expect("client")
    };
    let (url, calls) = flaky(2).await;
    let r = client(&url)
        .request(Method::GET, "/x", None)
        .await
        .expect("succeeds on the third try");
    assert_eq!((r.status, calls.load(Ordering::SeqCst)), (200, 3));
    let (url, calls) = flaky(100).await;
    let err = client(&url)
        .request(Method::GET, "/x", None)
        .await
        .expect_err("gives up");
    assert!(
        matches!(err, plumbline_github::GitHubError::Transient(_)),
        "{err:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 4, "one try and three retries");
    // A POST is not idempotent: it is not retried.
    let (url, calls) = flaky(1).await;
    assert!(client(&url)
        .request(Method::POST, "/x", Some(&serde_json::json!({})))
        .await
        .is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn not_found_answers_are_reread_for_free_through_their_validator() {
    let (sim, url, stop) = sim().await;
    sim.create_repo("acme", "api", RepoOptions::default());
    let gh = GitHub::new(&GitHubConfig::new(&url, Some("t1".into()))).expect("client");
    let path = "/repos/acme/api/branches/main/protection";
    assert_eq!(
        gh.request(Method::GET, path, None)
            .await
            .expect("first")
            .status,
        404
    );
    sim.reset_request_log();
    for _ in 0..3 {
        assert_eq!(
            gh.request(Method::GET, path, None)
                .await
                .expect("again")
                .status,
            404
        );
    }
    let quota = sim.quota();
    assert_eq!(
        (
            quota.total.requests,
            quota.total.not_modified,
            quota.total.charged
        ),
        (3, 3, 0),
        "three free 304s of the branch"
    );
    // Protection switched on: the branch changes, so the kept 404 is dropped and re-read.
    sim.set_protection("acme", "api", "main", serde_json::json!({
        "required_status_checks": null, "enforce_admins": true,
        "required_pull_request_reviews": { "required_approving_review_count": 1 }, "restrictions": null
    }))
    .expect("protect");
    assert_eq!(
        gh.request(Method::GET, path, None)
            .await
            .expect("after change")
            .status,
        200
    );
    stop.cancel();
}
