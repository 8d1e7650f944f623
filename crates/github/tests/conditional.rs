//! Conditional requests against the GitHub simulator over HTTP.

use plumbline_github::{GitHub, GitHubConfig, Method};
use plumbline_github_sim::{RepoOptions, SimConfig, Simulator};
use tokio_util::sync::CancellationToken;

async fn sim() -> (Simulator, String, CancellationToken) {
    let sim = Simulator::new(SimConfig::default());
    let stop = CancellationToken::new();
    let addr = sim.serve("127.0.0.1:0".parse().expect("addr"), stop.clone()).await.expect("serve");
    (sim, format!("http://{addr}"), stop)
}

fn remaining(r: &plumbline_github::ApiResponse) -> u64 {
    r.headers.get("x-ratelimit-remaining").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn unchanged_resources_are_free_304s_answered_from_the_cache() {
    let (sim, url, stop) = sim().await;
    sim.create_repo("acme", "api", RepoOptions { protected: true, ..Default::default() });
    let gh = GitHub::new(&GitHubConfig::new(&url, Some("t1".into()))).expect("client");
    let path = "/repos/acme/api/branches/main/protection";

    let first = gh.request(Method::GET, path, None).await.expect("first");
    let second = gh.request(Method::GET, path, None).await.expect("second");
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(first.body, second.body, "the 304 is answered with the cached body");
    assert_eq!(remaining(&second), remaining(&first), "a 304 costs no rate limit");
    let log = sim.request_log();
    assert_eq!(log.iter().map(|r| r.status).collect::<Vec<_>>(), vec![200, 304]);
    let stats = gh.cache_stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));

    // A change is seen: the ETag no longer matches.
    sim.remove_protection("acme", "api", "main").expect("remove");
    let third = gh.request(Method::GET, path, None).await.expect("third");
    assert_eq!(third.status, 404);
    assert_eq!(gh.cache_stats().hits, 1);

    // Another credential never sees the first one's entries.
    let other = GitHub::new(&GitHubConfig::new(&url, Some("t2".into()))).expect("client");
    other.request(Method::GET, "/repos/acme/api", None).await.expect("get");
    gh.request(Method::GET, "/repos/acme/api", None).await.expect("get");
    assert_eq!(other.cache_stats().hits, 0);
    assert_eq!(gh.cache_stats().hits, 1, "t1's first read of /repos/acme/api is a miss");
    stop.cancel();
}

#[tokio::test]
async fn the_cache_can_be_disabled() {
    let (sim, url, stop) = sim().await;
    sim.create_repo("acme", "api", RepoOptions::default());
    let mut cfg = GitHubConfig::new(&url, None);
    cfg.etag_cache_entries = 0;
    let gh = GitHub::new(&cfg).expect("client");
    for _ in 0..2 {
        assert_eq!(gh.request(Method::GET, "/repos/acme/api", None).await.expect("get").status, 200);
    }
    assert!(sim.request_log().iter().all(|r| r.status == 200), "no conditional requests were sent");
    stop.cancel();
}
