//! The control API fails closed: what an unauthenticated or misconfigured caller receives.
//!
//! Against the real service on loopback (Postgres for the calls that get through).

use plumbline_control::{start, ControlConfig, StartError};
use plumbline_proto::v1::control_service_client::ControlServiceClient;
use plumbline_proto::v1::ListRepositoriesRequest;
use plumbline_runtime::ServiceArgs;
use plumbline_store::testing::TestDatabase;
use secrecy::SecretString;
use std::net::SocketAddr;
use std::path::Path;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

const TOKEN: &str = "operator-token-0123456789abcdef";

fn kafka() -> String {
    std::env::var("PLUMB_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn config(db_url: &str) -> ControlConfig {
    ControlConfig::local(ServiceArgs::local(&kafka(), db_url, "http://127.0.0.1:9"))
}

async fn refused(config: ControlConfig) -> StartError {
    match start(config, CancellationToken::new()).await {
        Ok(_) => panic!("the control API started although it must not"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn refuses_to_start_open_or_in_cleartext_on_a_network_address() {
    let network = SocketAddr::from(([0, 0, 0, 0], 0));
    // No authenticator on 0.0.0.0.
    let e = refused(ControlConfig {
        listen: network,
        ..config("postgres://postgres@127.0.0.1:5432/none")
    })
    .await;
    assert!(matches!(e, StartError::OpenOnNetwork(_)), "{e}");
    assert!(
        e.to_string().contains("--auth-token-file"),
        "the error says what to do: {e}"
    );
    // An empty token is not "no authentication": it is refused.
    let e = refused(ControlConfig {
        listen: network,
        auth_tokens: vec![SecretString::from("")],
        ..config("postgres://postgres@127.0.0.1:5432/none")
    })
    .await;
    assert!(e.to_string().contains("empty"), "{e}");
    // Also on loopback: an empty or short token is a configuration error, never "open".
    let e = refused(ControlConfig {
        auth_tokens: vec![SecretString::from("short")],
        ..config("postgres://postgres@127.0.0.1:5432/none")
    })
    .await;
    assert!(e.to_string().contains("at least 16"), "{e}");
    // Authenticated but cleartext on the network.
    let e = refused(ControlConfig {
        listen: network,
        auth_tokens: vec![SecretString::from(TOKEN)],
        ..config("postgres://postgres@127.0.0.1:5432/none")
    })
    .await;
    assert!(matches!(e, StartError::CleartextOnNetwork(_)), "{e}");
}

fn client(
    channel: Channel,
    token: Option<&str>,
) -> ControlServiceClient<
    tonic::service::interceptor::InterceptedService<Channel, impl tonic::service::Interceptor>,
> {
    let header: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> =
        token.map(|t| format!("Bearer {t}").parse().expect("header"));
    ControlServiceClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        if let Some(h) = &header {
            req.metadata_mut().insert("authorization", h.clone());
        }
        Ok(req)
    })
}

async fn list(channel: Channel, token: Option<&str>) -> Result<usize, tonic::Status> {
    client(channel, token)
        .list_repositories(ListRepositoriesRequest {
            project: String::new(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().repositories.len())
}

#[tokio::test]
async fn unauthenticated_and_wrong_token_calls_are_refused() {
    let db = TestDatabase::new().await;
    let dir = tempfile::tempdir().expect("tmp");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{TOKEN}\n")).expect("write");
    let shutdown = CancellationToken::new();
    let running = start(
        ControlConfig {
            auth_token_file: Some(tokens.clone()),
            ..config(&db.url)
        },
        shutdown.clone(),
    )
    .await
    .expect("starts");
    let channel = Channel::from_shared(format!("http://{}", running.addr))
        .expect("url")
        .connect()
        .await
        .expect("connects");

    let none = list(channel.clone(), None).await.expect_err("no token");
    assert_eq!(none.code(), tonic::Code::Unauthenticated);
    assert_eq!(none.message(), "missing bearer token");
    let wrong = list(channel.clone(), Some("operator-token-0123456789abcdeX"))
        .await
        .expect_err("wrong token");
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
    assert_eq!(wrong.message(), "invalid bearer token");
    let prefix = list(channel.clone(), Some("operator-token"))
        .await
        .expect_err("a prefix of the token");
    assert_eq!(prefix.code(), tonic::Code::Unauthenticated);
    assert_eq!(
        list(channel.clone(), Some(TOKEN))
            .await
            .expect("the right token"),
        0
    );

    // Rotation without a restart: the new token works and the old one is refused at once.
    let rotated = "rotated-token-0123456789abcdef--";
    std::fs::write(&tokens, format!("# rotated\n{rotated}\n")).expect("write");
    assert_eq!(
        list(channel.clone(), Some(rotated))
            .await
            .expect("rotated token"),
        0
    );
    assert_eq!(
        list(channel.clone(), Some(TOKEN))
            .await
            .expect_err("old token")
            .code(),
        tonic::Code::Unauthenticated
    );
    shutdown.cancel();
    let _ = running.task.await;
}

fn write_cert(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("certificate");
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem()).expect("write cert");
    std::fs::write(&k, signing_key.serialize_pem()).expect("write key");
    (c, k, cert.pem())
}

async fn tls_channel(addr: SocketAddr, ca_pem: &str) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .expect("url")
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)))?
        .connect()
        .await
}

#[tokio::test]
async fn tls_is_served_and_a_rotated_certificate_is_picked_up_without_a_restart() {
    let db = TestDatabase::new().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (cert, key, first_pem) = write_cert(dir.path(), "first");
    let shutdown = CancellationToken::new();
    let running = start(
        ControlConfig {
            auth_tokens: vec![SecretString::from(TOKEN)],
            tls_cert_file: Some(cert.clone()),
            tls_key_file: Some(key.clone()),
            ..config(&db.url)
        },
        shutdown.clone(),
    )
    .await
    .expect("starts");

    let channel = tls_channel(running.addr, &first_pem)
        .await
        .expect("tls connects");
    assert_eq!(
        list(channel.clone(), Some(TOKEN))
            .await
            .expect("authenticated over tls"),
        0
    );
    assert_eq!(
        list(channel, None)
            .await
            .expect_err("tls alone is not authentication")
            .code(),
        tonic::Code::Unauthenticated
    );

    // Cleartext to the TLS port gets nowhere.
    let plain = Channel::from_shared(format!("http://{}", running.addr))
        .expect("url")
        .connect()
        .await;
    if let Ok(plain) = plain {
        assert!(
            list(plain, Some(TOKEN)).await.is_err(),
            "cleartext call answered by a TLS listener"
        );
    }

    // Rotate: a new pair written over the old files is served to the next connection.
    let (new_cert, new_key, second_pem) = write_cert(dir.path(), "second");
    std::fs::copy(&new_key, &key).expect("copy key");
    std::fs::copy(&new_cert, &cert).expect("copy cert");
    let channel = tls_channel(running.addr, &second_pem)
        .await
        .expect("new certificate served");
    assert_eq!(
        list(channel, Some(TOKEN))
            .await
            .expect("call over the rotated certificate"),
        0
    );
    let stale = match tls_channel(running.addr, &first_pem).await {
        Ok(ch) => list(ch, Some(TOKEN)).await.is_err(),
        Err(_) => true,
    };
    assert!(
        stale,
        "a client trusting only the old certificate must fail after rotation"
    );

    // A half-written rotation (garbage) keeps the last good certificate in service.
    std::fs::write(&cert, "not a certificate").expect("write");
    let channel = tls_channel(running.addr, &second_pem)
        .await
        .expect("previous certificate still served");
    assert_eq!(list(channel, Some(TOKEN)).await.expect("still serving"), 0);
    shutdown.cancel();
    let _ = running.task.await;
}
