//! Rate limits over real HTTP with tokio's clock paused: the client honours `retry-after` and
//! `x-ratelimit-reset`, refuses to send while limited, and resumes once the limit lifts — all
//! without sleeping. The client runs without a request timeout here because, with the clock
//! paused, any pending timer fires as soon as the runtime waits on the network.

use plumbline_github::{GitHub, GitHubConfig, GitHubError, Method};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A server answering from a script of (status, headers); it records how many requests came.
async fn scripted(script: Vec<(u16, Vec<(&'static str, String)>)>) -> (String, Arc<Mutex<u32>>) {
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    let calls = Arc::new(Mutex::new(0u32));
    let (s, c) = (script.clone(), calls.clone());
    let app = axum::Router::new().fallback(move || {
        let (s, c) = (s.clone(), c.clone());
        async move {
            *c.lock().expect("calls") += 1;
            let (status, headers) = s
                .lock()
                .expect("script")
                .pop_front()
                .unwrap_or((200, vec![]));
            let mut r = axum::http::Response::builder()
                .status(status)
                .header("content-type", "application/json");
            for (k, v) in headers {
                r = r.header(k, v);
            }
            r.body(axum::body::Body::from(r#"{"message":"scripted"}"#))
                .expect("response")
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(l, app).await });
    (format!("http://{addr}"), calls)
}

fn client(url: &str) -> GitHub {
    let mut cfg = GitHubConfig::new(url, Some("t".into()));
    cfg.timeout = None;
    cfg.etag_cache_bytes = 0;
    GitHub::new(&cfg).expect("client")
}

fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_is_honoured_without_sending_meanwhile() {
    let (url, calls) = scripted(vec![(429, vec![("retry-after", "30".into())])]).await;
    let gh = client(&url);
    let before = epoch_now();
    let until = match gh.request(Method::GET, "/repos/a/b", None).await {
        Err(GitHubError::RateLimited { until_epoch_secs }) => until_epoch_secs,
        other => panic!("expected rate limited, got {other:?}"),
    };
    assert!(
        (before + 29..=before + 31).contains(&until),
        "until {until} is 30 s after {before}"
    );
    // Still limited 29 s later: refused at once, nothing sent.
    tokio::time::advance(Duration::from_secs(29)).await;
    assert!(matches!(
        gh.request(Method::GET, "/repos/a/b", None).await,
        Err(GitHubError::RateLimited { .. })
    ));
    assert_eq!(
        *calls.lock().expect("calls"),
        1,
        "no request is sent while limited"
    );
    // The limit lifts: the next request goes out and succeeds.
    tokio::time::advance(Duration::from_secs(2)).await;
    let r = gh
        .request(Method::GET, "/repos/a/b", None)
        .await
        .expect("after retry-after");
    assert_eq!(r.status, 200);
    assert_eq!(*calls.lock().expect("calls"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_pauses_until_reset_then_resumes() {
    let reset = (epoch_now() + 600).to_string();
    let (url, calls) = scripted(vec![
        (
            200,
            vec![
                ("x-ratelimit-remaining", "1".into()),
                ("x-ratelimit-reset", reset.clone()),
            ],
        ),
        (
            200,
            vec![
                ("x-ratelimit-remaining", "0".into()),
                ("x-ratelimit-reset", reset.clone()),
            ],
        ),
    ])
    .await;
    let gh = client(&url);
    for _ in 0..2 {
        gh.request(Method::GET, "/repos/a/b", None)
            .await
            .expect("within budget");
    }
    assert_eq!(gh.rate_remaining(), Some(0));
    for _ in 0..5 {
        match gh.request(Method::GET, "/repos/a/b", None).await {
            Err(GitHubError::RateLimited { until_epoch_secs }) => {
                assert!(until_epoch_secs + 1 >= reset.parse::<u64>().expect("reset"))
            }
            other => panic!("expected rate limited until the reset, got {other:?}"),
        }
    }
    assert_eq!(
        *calls.lock().expect("calls"),
        2,
        "nothing is sent while the budget is spent"
    );
    tokio::time::advance(Duration::from_secs(590)).await;
    assert!(
        gh.request(Method::GET, "/repos/a/b", None).await.is_err(),
        "still before the reset"
    );
    tokio::time::advance(Duration::from_secs(15)).await;
    gh.request(Method::GET, "/repos/a/b", None)
        .await
        .expect("resumes after the reset");
    assert_eq!(*calls.lock().expect("calls"), 3);
}

#[tokio::test(start_paused = true)]
async fn a_secondary_limit_without_retry_after_backs_off_from_a_minute() {
    let (url, calls) = scripted(vec![
        (403, vec![("x-ratelimit-remaining", "0".into())]),
        (429, vec![]),
    ])
    .await;
    let gh = client(&url);
    assert!(matches!(
        gh.request(Method::GET, "/x", None).await,
        Err(GitHubError::RateLimited { .. })
    ));
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(matches!(
        gh.request(Method::GET, "/x", None).await,
        Err(GitHubError::RateLimited { .. })
    ));
    tokio::time::advance(Duration::from_secs(2)).await;
    // The 429 without any header: back off twice as long as the first, unexplained, limit.
    assert!(matches!(
        gh.request(Method::GET, "/x", None).await,
        Err(GitHubError::RateLimited { .. })
    ));
    assert_eq!(*calls.lock().expect("calls"), 2);
    tokio::time::advance(Duration::from_secs(61)).await;
    assert!(
        gh.request(Method::GET, "/x", None).await.is_err(),
        "the back-off grew"
    );
    tokio::time::advance(Duration::from_secs(60)).await;
    gh.request(Method::GET, "/x", None).await.expect("resumes");
    assert_eq!(*calls.lock().expect("calls"), 3);
}

/// The simulator's injected secondary limit and 5xx, end to end over HTTP.
#[tokio::test(start_paused = true)]
async fn simulator_faults_secondary_limit_and_server_errors() {
    use plumbline_github_sim::{Fault, RepoOptions, SimConfig, Simulator};
    let sim = Simulator::new(SimConfig::default());
    sim.create_repo("acme", "api", RepoOptions::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let addr = sim
        .serve("127.0.0.1:0".parse().expect("addr"), stop.clone())
        .await
        .expect("serve");
    let mut cfg = GitHubConfig::new(format!("http://{addr}"), Some("t".into()));
    cfg.timeout = None;
    cfg.retry_base = Duration::from_millis(10);
    let gh = GitHub::new(&cfg).expect("client");

    sim.add_fault(Fault::secondary_rate_limit(429, 45).times(1))
        .expect("fault");
    assert!(matches!(
        gh.request(Method::GET, "/repos/acme/api", None).await,
        Err(GitHubError::RateLimited { .. })
    ));
    tokio::time::advance(Duration::from_secs(44)).await;
    assert!(matches!(
        gh.request(Method::GET, "/repos/acme/api", None).await,
        Err(GitHubError::RateLimited { .. })
    ));
    assert_eq!(sim.request_log().len(), 1, "nothing sent while limited");
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(
        gh.request(Method::GET, "/repos/acme/api", None)
            .await
            .expect("resumed")
            .status,
        200
    );

    // Two 502s then success: retried with backoff (paused clock), invisible to the caller.
    sim.add_fault(Fault::server_error(502).times(2))
        .expect("fault");
    assert_eq!(
        gh.request(Method::GET, "/repos/acme/api", None)
            .await
            .expect("retried")
            .status,
        200
    );
    // A PATCH is not idempotent, so it is not retried: the 5xx surfaces as a retryable error.
    sim.add_fault(Fault::server_error(503).times(1))
        .expect("fault");
    let err = gh
        .request(
            Method::PATCH,
            "/repos/acme/api",
            Some(&serde_json::json!({"has_issues": true})),
        )
        .await
        .expect_err("5xx");
    assert!(err.is_retryable(), "{err:?}");
    let statuses: Vec<u16> = sim.request_log().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        vec![429, 200, 502, 502, 304, 503],
        "the retried GET is conditional: a free 304"
    );
    stop.cancel();
}
