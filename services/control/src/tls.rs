//! TLS for the control API (rustls), with the certificate and key re-read when their files
//! change.
//!
//! tonic's own TLS takes a certificate once at start-up; a certificate rotated by cert-manager
//! (or any renewal) would then need a restart. Here each handshake asks a resolver that checks
//! the two files' modification times and sizes (one `stat` each) and reloads them when either
//! changed. A pair that fails to load (half-written, key not matching) keeps the previous pair
//! in service and logs why, so a botched rotation never takes the API down.

use plumbline_reload::Reloading;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: PathBuf },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("the key in {key} does not fit the certificate in {cert}: {source}")]
    Key {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("tls configuration: {0}")]
    Config(#[source] rustls::Error),
}

fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsConfigError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsConfigError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::Pem {
            path: cert.to_path_buf(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsConfigError::NoCertificate {
            path: cert.to_path_buf(),
        });
    }
    let key_pem = secrecy::SecretBox::new(Box::new(read(key)?));
    let key_der = PrivateKeyDer::from_pem_slice(secrecy::ExposeSecret::expose_secret(&key_pem))
        .map_err(|e| TlsConfigError::Pem {
            path: key.to_path_buf(),
            reason: e.to_string(),
        })?;
    let provider = rustls::crypto::ring::default_provider();
    let ck = CertifiedKey::from_der(chain, key_der, &provider).map_err(|source| {
        TlsConfigError::Key {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        }
    })?;
    Ok(ck)
}

/// Serves the certificate in `cert`/`key`, reloading it when either file changes.
#[derive(Debug)]
pub struct ReloadingCert {
    pair: Reloading<CertifiedKey, TlsConfigError>,
}

impl ReloadingCert {
    pub fn new(cert: &Path, key: &Path) -> Result<Self, TlsConfigError> {
        let pair = Reloading::open(
            vec![cert.to_path_buf(), key.to_path_buf()],
            "control API certificate",
            |paths: &[PathBuf]| match paths {
                [cert, key] => load(cert, key),
                _ => Err(TlsConfigError::NoCertificate {
                    path: PathBuf::new(),
                }),
            },
        )?;
        Ok(ReloadingCert { pair })
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pair.get())
    }
}

/// A TLS acceptor speaking HTTP/2 (gRPC) with the reloading certificate.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsConfigError> {
    let resolver = Arc::new(ReloadingCert::new(cert, key)?);
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(TlsConfigError::Config)?
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    // gRPC over HTTP/2, and grpc-web over HTTP/1.1 for clients without HTTP/2.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepted connections after their TLS handshake, as tonic's incoming stream. Handshakes run
/// concurrently and are bounded in time, so a client that stalls mid-handshake holds nothing
/// but its own task.
pub fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shutdown: CancellationToken,
) -> impl futures::Stream<Item = Result<TlsStream<tokio::net::TcpStream>, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = listener.accept() => a,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "control API accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "control API TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(%peer, "control API TLS handshake timed out"),
                }
            });
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}
