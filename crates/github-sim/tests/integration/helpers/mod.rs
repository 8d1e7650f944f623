//! Helpers of the functional tests (apps, quota, faults, posture seeding, git, settings and
//! security, the core API): a simulator on port 0, a signed-webhook receiver, and GitHub App JWTs
//! signed with the test key.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use plumbline_github_sim::{SimConfig, Simulator};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "test-secret";
pub const APP_PUBLIC_KEY: &str = include_str!("../../../testdata/app-public-key.pem");
pub const APP_PRIVATE_KEY: &str = include_str!("../../../testdata/app-private-key.pem");
pub const OTHER_PRIVATE_KEY: &str = include_str!("../../../testdata/other-private-key.pem");

pub struct Server {
    pub sim: Simulator,
    pub base: String,
    pub client: reqwest::Client,
    pub shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Server {
    pub async fn start(config: SimConfig) -> Server {
        let sim = Simulator::new(config);
        let shutdown = CancellationToken::new();
        let addr = sim
            .serve("127.0.0.1:0".parse().unwrap(), shutdown.clone())
            .await
            .unwrap();
        Server {
            sim,
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            shutdown,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET with an optional bearer token.
    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }
}

pub fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .unwrap()
}

pub fn remaining(response: &reqwest::Response) -> u64 {
    header(response, "x-ratelimit-remaining").parse().unwrap()
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An RS256 JWT with the given claims, signed with `key_pem`.
pub fn jwt_with(iss: Value, iat: i64, exp: i64, key_pem: &str) -> String {
    let key = EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &json!({ "iss": iss, "iat": iat, "exp": exp }),
        &key,
    )
    .unwrap()
}

/// A valid JWT of `app_id` as GitHub documents it: `iat` 60 s ago, `exp` 9 minutes ahead.
pub fn jwt(app_id: u64) -> String {
    jwt_with(
        json!(app_id.to_string()),
        now() - 60,
        now() + 540,
        APP_PRIVATE_KEY,
    )
}

/// A webhook receiver on port 0 that verifies signatures and forwards (event, payload).
pub struct Receiver {
    pub url: String,
    deliveries: mpsc::UnboundedReceiver<(HeaderMap, Bytes)>,
    hits: Arc<AtomicUsize>,
    shutdown: CancellationToken,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        Receiver::start_failing(0).await
    }

    /// A receiver that answers the first `fail_first` requests 500, to exercise retries.
    pub async fn start_failing(fail_first: usize) -> Receiver {
        let (tx, rx) = mpsc::unbounded_channel();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = Router::new().route(
            "/webhooks/github",
            post(move |headers: HeaderMap, body: Bytes| {
                let tx = tx.clone();
                let counter = counter.clone();
                async move {
                    if counter.fetch_add(1, Ordering::SeqCst) < fail_first {
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    let _ = tx.send((headers, body));
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .unwrap();
        });
        Receiver {
            url: format!("http://{addr}/webhooks/github"),
            deliveries: rx,
            hits,
            shutdown,
        }
    }

    /// How many requests reached the receiver, failed ones included.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// The next delivery with a verified signature: (headers, payload).
    pub async fn next_delivery(&mut self) -> (HeaderMap, Value) {
        let (headers, body) = tokio::time::timeout(Duration::from_secs(5), self.deliveries.recv())
            .await
            .expect("webhook not delivered in time")
            .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(&body);
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(
            header_value(&headers, "x-hub-signature-256"),
            expected,
            "bad signature"
        );
        (headers, serde_json::from_slice(&body).unwrap())
    }

    /// The next delivery with a verified signature: (event, payload).
    pub async fn next(&mut self) -> (String, Value) {
        let (headers, payload) = self.next_delivery().await;
        (header_value(&headers, "x-github-event"), payload)
    }

    /// Asserts nothing arrives within a short while.
    pub async fn assert_quiet(&mut self) {
        let got = tokio::time::timeout(Duration::from_millis(400), self.deliveries.recv()).await;
        assert!(got.is_err(), "unexpected delivery: {got:?}");
    }
}

/// A header of a delivery (it must be there).
pub fn header_value(headers: &HeaderMap, name: &str) -> String {
    headers.get(name).unwrap().to_str().unwrap().to_owned()
}

/// A config delivering webhooks to `url` with [`SECRET`].
pub fn webhook_config(url: &str) -> SimConfig {
    SimConfig {
        webhook_url: Some(url.to_owned()),
        webhook_secret: SECRET.to_owned(),
        ..SimConfig::default()
    }
}
