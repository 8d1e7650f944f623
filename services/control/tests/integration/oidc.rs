//! OIDC bearer tokens against a local issuer: a discovery document and a key set served over
//! HTTP by the test, ID tokens signed by the test's keys. Each way a token can be wrong is
//! refused; a rotated key is picked up when a token names it.

use crate::common;

use axum::routing::get;
use axum::Json;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use plumbline_control::ControlConfig;
use plumbline_proto::v1::control_service_client::ControlServiceClient;
use plumbline_proto::v1::*;
use plumbline_store::testing::TestDatabase;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tonic::transport::Channel;
use tonic::Code;

const OPERATOR: &str = "oidc-operator-token-0123456789";
const AUDIENCE: &str = "plumbline";

struct Signer {
    kid: String,
    key: rcgen::KeyPair,
}

impl Signer {
    fn new(kid: &str) -> Self {
        Signer {
            kid: kid.into(),
            key: rcgen::KeyPair::generate().expect("P-256 key"),
        }
    }

    /// The public key as a JWK (an uncompressed P-256 point is 0x04 || x || y).
    fn jwk(&self) -> Value {
        let raw = self.key.public_key_raw();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid,
               "x": b64(&raw[1..33]), "y": b64(&raw[33..65])})
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let key = EncodingKey::from_ec_pem(self.key.serialize_pem().as_bytes()).expect("key");
        jsonwebtoken::encode(&header, claims, &key).expect("sign")
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Serves discovery and the key set; counts key-set fetches.
async fn issuer(keys: Arc<Mutex<Vec<Value>>>, fetches: Arc<AtomicUsize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let discovery = json!({"issuer": base, "jwks_uri": format!("{base}/keys")});
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
                fetches.fetch_add(1, Ordering::SeqCst);
                let keys = keys.lock().map(|k| k.clone()).unwrap_or_default();
                async move { Json(json!({ "keys": keys })) }
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

async fn list_projects(channel: &Channel, token: &str) -> Result<Vec<String>, tonic::Status> {
    let header: tonic::metadata::MetadataValue<_> =
        format!("Bearer {token}").parse().expect("header");
    let mut c = ControlServiceClient::with_interceptor(
        channel.clone(),
        move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", header.clone());
            Ok(req)
        },
    );
    c.list_projects(ListProjectsRequest::default())
        .await
        .map(|r| {
            r.into_inner()
                .projects
                .into_iter()
                .map(|p| p.name)
                .collect()
        })
}

#[tokio::test]
async fn oidc_tokens_are_verified_against_the_issuers_keys() {
    let first = Signer::new("first");
    let rotated = Signer::new("rotated");
    let encryption = Signer::new("enc");
    let mut enc_jwk = encryption.jwk();
    enc_jwk["use"] = json!("enc");
    // A key of a kind this verifier does not read (X25519) is skipped, not fatal to the set.
    let exotic = json!({"kty": "OKP", "crv": "X25519", "kid": "x", "x": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"});
    let keys = Arc::new(Mutex::new(vec![exotic, first.jwk(), enc_jwk]));
    let fetches = Arc::new(AtomicUsize::new(0));
    let iss = issuer(keys.clone(), fetches.clone()).await;

    let db = TestDatabase::new().await;
    let served = common::Served::start(ControlConfig {
        auth_tokens: vec![SecretString::from(OPERATOR)],
        oidc_issuer: Some(iss.clone()),
        oidc_audience: Some(AUDIENCE.into()),
        oidc_jwks_min_refresh_secs: 0,
        ..common::local(&db.url)
    })
    .await;
    let channel = served.channel.clone();
    // alice is a viewer of team-a.
    let header: tonic::metadata::MetadataValue<_> =
        format!("Bearer {OPERATOR}").parse().expect("header");
    let mut op = ControlServiceClient::with_interceptor(
        channel.clone(),
        move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", header.clone());
            Ok(req)
        },
    );
    op.create_project(CreateProjectRequest {
        project: "team-a".into(),
    })
    .await
    .expect("project");
    op.grant_role(GrantRoleRequest {
        project: "team-a".into(),
        principal: "user:alice".into(),
        role: Role::Viewer as i32,
    })
    .await
    .expect("grant");

    let claims = |overrides: Value| {
        let mut c = json!({"iss": iss, "aud": AUDIENCE, "sub": "alice",
                           "iat": now(), "exp": now() + 300});
        if let (Some(c), Some(o)) = (c.as_object_mut(), overrides.as_object()) {
            for (k, v) in o {
                c.insert(k.clone(), v.clone());
            }
        }
        c
    };
    // A good token: alice sees her project.
    let good = first.sign(&claims(json!({})));
    assert_eq!(
        list_projects(&channel, &good).await.expect("valid token"),
        vec!["team-a"]
    );
    // Each way a token can be wrong is refused.
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "first"})),
        b64(&claims(json!({})))
    );
    let hmac = jsonwebtoken::encode(
        &Header {
            kid: Some("first".into()),
            ..Header::new(Algorithm::HS256)
        },
        &claims(json!({})),
        &EncodingKey::from_secret(first.jwk().to_string().as_bytes()),
    )
    .expect("hs256");
    let cases = [
        ("expired", first.sign(&claims(json!({"exp": now() - 3600})))),
        (
            "wrong audience",
            first.sign(&claims(json!({"aud": "someone-else"}))),
        ),
        (
            "wrong issuer",
            first.sign(&claims(json!({"iss": "https://evil.example"}))),
        ),
        ("no subject", first.sign(&claims(json!({"sub": ""})))),
        ("alg none", unsigned),
        ("hmac with the public key", hmac),
        (
            "another key under a known kid",
            Signer::new("first").sign(&claims(json!({}))),
        ),
        ("not yet published key", rotated.sign(&claims(json!({})))),
        ("an encryption key", encryption.sign(&claims(json!({})))),
        ("tampered", {
            let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
            parts[1] = b64(&claims(json!({"sub": "mallory"})));
            parts.join(".")
        }),
    ];
    for (what, token) in cases {
        let err = list_projects(&channel, &token).await.expect_err(what);
        assert_eq!(err.code(), Code::Unauthenticated, "{what}");
        assert_eq!(err.message(), "invalid bearer token", "{what}");
    }
    // The issuer rotates: a token naming the new key makes the service fetch the keys again.
    let before = fetches.load(Ordering::SeqCst);
    keys.lock().expect("keys").push(rotated.jwk());
    assert_eq!(
        list_projects(&channel, &rotated.sign(&claims(json!({}))))
            .await
            .expect("rotated key"),
        vec!["team-a"]
    );
    assert!(
        fetches.load(Ordering::SeqCst) > before,
        "refetched on an unknown kid"
    );
    // An OIDC user without a role in a project is refused there.
    let mut bob = claims(json!({"sub": "bob"}));
    bob["exp"] = json!(now() + 300);
    assert_eq!(
        list_projects(&channel, &first.sign(&bob))
            .await
            .expect("bob"),
        Vec::<String>::new()
    );
    served.stop().await;

    // A discovery document that names another issuer is not believed.
    let liar_keys = Arc::new(Mutex::new(vec![first.jwk()]));
    let liar = issuer(liar_keys, Arc::new(AtomicUsize::new(0))).await;
    let liar_config = format!("{liar}/"); // configured with a trailing slash: not the same issuer
    let served = common::Served::start(ControlConfig {
        auth_tokens: vec![SecretString::from(OPERATOR)],
        oidc_issuer: Some(liar_config.clone()),
        oidc_audience: Some(AUDIENCE.into()),
        oidc_jwks_min_refresh_secs: 0,
        ..common::local(&db.url)
    })
    .await;
    let channel = served.channel.clone();
    let token = first.sign(&json!({"iss": liar_config, "aud": AUDIENCE, "sub": "alice",
                                   "exp": now() + 300}));
    let err = list_projects(&channel, &token)
        .await
        .expect_err("the discovery document is another issuer's");
    assert_eq!(err.code(), Code::Unauthenticated);
    served.stop().await;
}
