//! TLS to Postgres (rustls), with libpq's `sslmode` and `sslrootcert` honoured.
//!
//! tokio-postgres parses `sslmode=disable|prefer|require` only and has no notion of verifying
//! the server, so the two TLS settings are taken out of the connection string here and turned
//! into a rustls client configuration:
//!
//! | `sslmode`     | encrypted        | server certificate checked             |
//! |---------------|------------------|----------------------------------------|
//! | `disable`     | no               | -                                      |
//! | `prefer`      | if offered       | no (as libpq; with `sslrootcert`: chain) |
//! | `require`     | yes              | no (as libpq; with `sslrootcert`: chain) |
//! | `verify-ca`   | yes              | chain to `sslrootcert` (or public roots) |
//! | `verify-full` | yes              | chain and host name                    |
//!
//! One departure from libpq, to fail closed: a connection string that names no `sslmode` and a
//! host that is not this machine (loopback or a Unix socket) is refused with a message saying to
//! choose one, instead of libpq's silent `prefer`, which accepts any certificate and cleartext.

use crate::StoreError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for TlsMode {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "disable" => TlsMode::Disable,
            "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            "allow" => {
                return Err(StoreError::Config(
                    "sslmode=allow is not supported: use prefer, require, verify-ca or verify-full"
                        .into(),
                ))
            }
            other => {
                return Err(StoreError::Config(format!(
                "unknown sslmode {other:?}: use disable, prefer, require, verify-ca or verify-full"
            )))
            }
        })
    }
}

/// A connection string's Postgres settings with its TLS settings taken out.
pub struct Parsed {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    pub mode: TlsMode,
}

/// Removes `sslmode`, `sslrootcert` (and refuses client-certificate settings) from a URL or
/// key=value connection string; returns what is left and the two values.
fn split_tls(url: &str) -> Result<(String, Option<String>, Option<PathBuf>), StoreError> {
    let mut mode = None;
    let mut root = None;
    let mut take = |k: &str, v: &str| -> Result<bool, StoreError> {
        match k {
            "sslmode" => mode = Some(v.to_string()),
            "sslrootcert" => root = Some(PathBuf::from(v)),
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" => {
                return Err(StoreError::Config(format!("{k} is not supported (client certificates): authenticate with a password or trust")))
            }
            _ => return Ok(false),
        }
        Ok(true)
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_string(), None, None));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
            if !take(k, &v)? {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        Ok((rest, mode, root))
    } else {
        let mut kept = Vec::new();
        for token in url.split_whitespace() {
            let (k, v) = token.split_once('=').unwrap_or((token, ""));
            if !take(k, v.trim_matches('\''))? {
                kept.push(token);
            }
        }
        Ok((kept.join(" "), mode, root))
    }
}

/// Whether every host a connection string names is on this machine (loopback or a Unix
/// socket); false for anything that does not parse. For the test harness, which must not set
/// up its roles on a server someone else uses.
#[cfg(any(test, feature = "testing"))]
pub(crate) fn names_local_server(url: &str) -> bool {
    split_tls(url)
        .ok()
        .and_then(|(rest, _, _)| tokio_postgres::Config::from_str(&rest).ok())
        .is_some_and(|config| local_only(&config))
}

fn local_only(cfg: &tokio_postgres::Config) -> bool {
    let hosts = cfg.get_hosts();
    !hosts.is_empty()
        && hosts.iter().all(|h| match h {
            Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            #[cfg(unix)]
            Host::Unix(_) => true,
        })
}

/// Parses a connection string into a configuration and the TLS connector its `sslmode` asks for.
pub fn parse(url: &str) -> Result<Parsed, StoreError> {
    let (rest, mode, root) = split_tls(url)?;
    let mut config =
        tokio_postgres::Config::from_str(&rest).map_err(|e| StoreError::Config(e.to_string()))?;
    let mode = match mode {
        Some(m) => m.parse()?,
        None if local_only(&config) => TlsMode::Prefer,
        None => {
            return Err(StoreError::Config(
                "the database URL names no sslmode for a host on the network: add sslmode=verify-full (with sslrootcert=CA.pem for a private CA), or sslmode=disable to connect in cleartext knowingly".into(),
            ))
        }
    };
    config.ssl_mode(match mode {
        TlsMode::Disable => SslMode::Disable,
        TlsMode::Prefer => SslMode::Prefer,
        TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
    });
    let roots = match &root {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| StoreError::Config(format!("sslrootcert {}: {e}", path.display())))?;
            let mut store = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| {
                    StoreError::Config(format!("sslrootcert {}: {e}", path.display()))
                })?;
                store.add(cert).map_err(|e| {
                    StoreError::Config(format!("sslrootcert {}: {e}", path.display()))
                })?;
            }
            if store.is_empty() {
                return Err(StoreError::Config(format!(
                    "sslrootcert {}: no certificate in it",
                    path.display()
                )));
            }
            store
        }
        None => rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| StoreError::Config(format!("tls roots: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, root.is_some()) {
        (TlsMode::VerifyFull, _) => webpki,
        (TlsMode::VerifyCa, _) | (TlsMode::Require | TlsMode::Prefer, true) => {
            Arc::new(ChainOnly(webpki))
        }
        // (`disable` never uses it.)
        (TlsMode::Require | TlsMode::Prefer, false) | (TlsMode::Disable, _) => {
            Arc::new(Unverified(provider.clone()))
        }
    };
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Config(format!("tls: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Parsed {
        config,
        tls: MakeRustlsConnect::new(client),
        mode,
    })
}

/// `verify-ca`: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `require`/`prefer` without `sslrootcert`: encrypted, server unverified (libpq's meaning; the
/// handshake signatures are still checked, so the session is bound to the presented key).
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_are_taken_out_of_urls_and_key_value_strings() {
        let (rest, mode, root) = split_tls("postgres://u:p@db:5432/x?sslmode=verify-full&application_name=a&sslrootcert=%2Fetc%2Fca.pem").expect("ok");
        assert_eq!(rest, "postgres://u:p@db:5432/x?application_name=a");
        assert_eq!(
            (mode.as_deref(), root),
            (Some("verify-full"), Some(PathBuf::from("/etc/ca.pem")))
        );
        let (rest, mode, _) = split_tls("host=db user=u sslmode=require").expect("ok");
        assert_eq!(
            (rest.as_str(), mode.as_deref()),
            ("host=db user=u", Some("require"))
        );
        assert!(
            split_tls("postgres://db/x?sslcert=c.pem").is_err(),
            "client certificates refused, not ignored"
        );
    }

    #[test]
    fn network_hosts_must_choose_a_mode() {
        let e = parse("postgres://postgres@db.internal:5432/plumbline")
            .err()
            .expect("refused");
        assert!(e.to_string().contains("sslmode"), "{e}");
        assert_eq!(
            parse("postgres://postgres@127.0.0.1:5432/x")
                .expect("loopback")
                .mode,
            TlsMode::Prefer
        );
        assert_eq!(
            parse("postgres://postgres@localhost/x")
                .expect("loopback")
                .mode,
            TlsMode::Prefer
        );
        assert_eq!(
            parse("postgres://postgres@db.internal/x?sslmode=disable")
                .expect("explicit")
                .mode,
            TlsMode::Disable
        );
        assert!(parse("postgres://postgres@db/x?sslmode=allow").is_err());
        assert!(
            parse("postgres://postgres@db/x?sslmode=verify-full&sslrootcert=/nonexistent.pem")
                .is_err()
        );
    }
}
