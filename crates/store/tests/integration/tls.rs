//! Postgres over TLS, against the local cluster (`ssl = on` with Debian's snakeoil certificate,
//! issued to `localhost`): what each `sslmode` gets.

use plumbline_store::testing::TestDatabase;
use plumbline_store::Store;

/// The server's certificate: on Debian, the snakeoil pair `ssl-cert` makes for `localhost`.
const SERVER_CERT: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

fn with_query(url: &str, query: &str) -> String {
    if url.contains('?') {
        format!("{url}&{query}")
    } else {
        format!("{url}?{query}")
    }
}

fn on_host(url: &str, host: &str) -> String {
    url.replacen("@127.0.0.1:", &format!("@{host}:"), 1)
}

async fn encrypted(url: &str) -> Result<bool, String> {
    let store = Store::connect(url, 1).map_err(|e| e.to_string())?;
    store
        .connection_encrypted()
        .await
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn postgres_connections_honour_sslmode() {
    let db = TestDatabase::new().await;
    assert!(
        db.url.contains("@127.0.0.1:"),
        "the test expects the server on 127.0.0.1: {}",
        db.url
    );
    let ssl_on = Store::connect(&db.url, 1)
        .expect("store")
        .setting("ssl")
        .await
        .expect("setting");
    assert_eq!(
        ssl_on, "on",
        "the local cluster must have ssl = on (Debian's default) for this test"
    );

    // Cleartext only when asked for.
    assert_eq!(
        encrypted(&with_query(&db.url, "sslmode=disable")).await,
        Ok(false)
    );
    // Encrypted, server not verified (libpq's require).
    assert_eq!(
        encrypted(&with_query(&db.url, "sslmode=require")).await,
        Ok(true)
    );
    // No sslmode on loopback: prefer, which the server accepts.
    assert_eq!(encrypted(&db.url).await, Ok(true));
    // The chain is checked against sslrootcert; the name (127.0.0.1) is not, for verify-ca.
    let root = format!("sslrootcert={SERVER_CERT}");
    assert_eq!(
        encrypted(&with_query(&db.url, &format!("sslmode=verify-ca&{root}"))).await,
        Ok(true)
    );
    // verify-full checks the name too: the certificate names localhost, not 127.0.0.1.
    let wrong_name = encrypted(&with_query(&db.url, &format!("sslmode=verify-full&{root}"))).await;
    assert!(
        wrong_name.is_err(),
        "a certificate for another name was accepted: {wrong_name:?}"
    );
    assert_eq!(
        encrypted(&with_query(
            &on_host(&db.url, "localhost"),
            &format!("sslmode=verify-full&{root}")
        ))
        .await,
        Ok(true)
    );
    // Against the public roots (no sslrootcert) a self-signed certificate is refused.
    let untrusted = encrypted(&with_query(
        &on_host(&db.url, "localhost"),
        "sslmode=verify-full",
    ))
    .await;
    assert!(
        untrusted.is_err(),
        "an untrusted certificate was accepted: {untrusted:?}"
    );
    let untrusted = encrypted(&with_query(&db.url, "sslmode=verify-ca")).await;
    assert!(
        untrusted.is_err(),
        "an untrusted chain was accepted: {untrusted:?}"
    );
}
