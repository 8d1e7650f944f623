//! `plumb auth login` against a local OIDC issuer (discovery, device and token endpoints, keys):
//! the login waits out "authorization pending", keeps the ID token in the context (0600), and
//! the control API then knows the caller as `user:<sub>`.

use axum::routing::{get, post};
use axum::Json;
use base64::Engine as _;
use plumbline_control::{start, ControlConfig};
use plumbline_runtime::ServiceArgs;
use plumbline_store::testing::TestDatabase;
use serde_json::json;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

const CLIENT_ID: &str = "plumbline-cli";

fn plumb(config: &std::path::Path, args: &[String]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(args)
        .env("PLUMB_CONFIG", config)
        .env_remove("PLUMB_PROJECT")
        .env_remove("PLUMB_TOKEN")
        .env_remove("PLUMB_CONTROL_URL")
        .env_remove("PLUMB_CONTEXT")
        .output()
        .expect("run plumb");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_code_login_keeps_an_id_token_the_api_accepts() {
    // The issuer: one P-256 key, tokens for alice once the second poll comes.
    let key = rcgen::KeyPair::generate().expect("key");
    let raw = key.public_key_raw().to_vec();
    let pem = key.serialize_pem();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let polls = Arc::new(AtomicUsize::new(0));
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
        "kid": "k1", "x": b64(&raw[1..33]), "y": b64(&raw[33..65])}]});
    let discovery = json!({"issuer": base, "jwks_uri": format!("{base}/keys"),
        "device_authorization_endpoint": format!("{base}/device"),
        "token_endpoint": format!("{base}/token")});
    let id_token = {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("k1".into());
        let claims = json!({"iss": base, "aud": CLIENT_ID, "sub": "alice",
                            "exp": chrono::Utc::now().timestamp() + 300});
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).expect("key"),
        )
        .expect("sign")
    };
    let activate = format!("{base}/activate");
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || {
                let d = discovery.clone();
                async move { Json(d) }
            }),
        )
        .route(
            "/keys",
            get(move || {
                let k = jwks.clone();
                async move { Json(k) }
            }),
        )
        .route(
            "/device",
            post(move || {
                let a = activate.clone();
                async move {
                    Json(json!({"device_code": "dc-1", "user_code": "WDJB-MJHT",
                                "verification_uri": a, "expires_in": 60, "interval": 1}))
                }
            }),
        )
        .route(
            "/token",
            post({
                let polls = polls.clone();
                move || {
                    let n = polls.fetch_add(1, Ordering::SeqCst);
                    let t = id_token.clone();
                    async move {
                        if n == 0 {
                            (
                                axum::http::StatusCode::BAD_REQUEST,
                                Json(json!({"error": "authorization_pending"})),
                            )
                        } else {
                            (
                                axum::http::StatusCode::OK,
                                Json(json!({"id_token": t, "token_type": "Bearer"})),
                            )
                        }
                    }
                }
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let db = TestDatabase::new().await;
    let kafka =
        std::env::var("PLUMB_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let shutdown = CancellationToken::new();
    let running = start(
        ControlConfig {
            oidc_issuer: Some(base.clone()),
            oidc_audience: Some(CLIENT_ID.into()),
            ..ControlConfig::local(ServiceArgs::local(&kafka, &db.url, "http://127.0.0.1:9"))
        },
        shutdown.clone(),
    )
    .await
    .expect("control starts");
    let url = format!("http://{}", running.addr);
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("config.yaml");
    let run = |args: &[&str]| {
        let config = config.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        async move {
            tokio::task::spawn_blocking(move || plumb(&config, &args))
                .await
                .expect("plumb ran")
        }
    };

    let (code, _, err) = run(&["config", "set-context", "work", "--url", &url]).await;
    assert_eq!(code, 0, "{err}");
    // Without a token, an authenticated API refuses.
    let (code, _, _) = run(&["project", "list"]).await;
    assert_eq!(code, 3);
    let (code, _, err) = run(&["auth", "login", "--issuer", &base, "--client-id", CLIENT_ID]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("WDJB-MJHT") && err.contains("/activate"),
        "{err}"
    );
    assert!(err.contains("context work"), "{err}");
    assert_eq!(
        polls.load(Ordering::SeqCst),
        2,
        "waited out authorization_pending"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&config)
            .expect("config")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The API now knows alice (a member of nothing yet: an empty list, not a refusal).
    let (code, out, err) = run(&["project", "list"]).await;
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    // A plain-http issuer off loopback is refused before anything is sent.
    let (code, _, err) = run(&[
        "auth",
        "login",
        "--issuer",
        "http://issuer.example",
        "--client-id",
        "x",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("https"), "{err}");

    shutdown.cancel();
    let _ = running.task.await;
}
