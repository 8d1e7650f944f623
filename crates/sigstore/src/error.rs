//! The crate's one error type: what can fail outside verification itself.
//!
//! Verification never fails with an `Error`: a signature that does not verify is an answer
//! ([`crate::Verification`] with `is_verified == false`), not an error. Errors are for a trust
//! root that cannot be used, an image reference that is not one, and a registry that cannot be
//! read.

/// Why a trust root, an image reference or a registry read was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The trusted root is not JSON of the Sigstore `TrustedRoot` shape.
    #[error("trust root is not a Sigstore trusted_root.json")]
    TrustRootJson(#[source] serde_json::Error),
    /// The trusted root parsed but cannot be used (no CA, no log key, a broken certificate...).
    #[error("trust root refused: {0}")]
    TrustRoot(String),
    /// A certificate of the trusted root does not parse.
    #[error("trust root certificate authority {index}: certificate does not parse")]
    TrustRootCertificate {
        index: usize,
        #[source]
        source: x509_cert::der::Error,
    },
    /// A transparency-log key of the trusted root is not a key sigstore-rs can use.
    #[error("trust root transparency log {log}: key refused")]
    TrustRootKey {
        log: String,
        #[source]
        source: sigstore::errors::SigstoreError,
    },
    /// The repository or digest of an image reference is not well formed.
    #[error("invalid image reference: {0}")]
    ImageRef(String),
    /// The registry options cannot make a client.
    #[error("registry options: {0}")]
    Options(String),
    /// The HTTP client could not be built.
    #[error("registry client")]
    Client(#[source] reqwest::Error),
    /// A registry request failed (connection refused, timeout, TLS...).
    #[error("registry request to {url} failed")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with a status that means it cannot be read.
    #[error("registry answered {status} to {url}")]
    Status { url: String, status: u16 },
    /// A manifest or layer is larger than `max_manifest_bytes`.
    #[error("registry body from {url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    /// A manifest or index the registry served does not parse.
    #[error("registry manifest from {url} does not parse")]
    Manifest {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    /// Content fetched by digest does not hash to that digest.
    #[error("registry content from {url} does not match its digest")]
    DigestMismatch { url: String },
    /// The registry asked for an authentication this client will not do.
    #[error("registry authentication: {0}")]
    Auth(String),
    /// The trust root could not be refreshed from a TUF repository (see [`crate::TufSource`]).
    #[error("trust root refresh from TUF repository failed")]
    Tuf(#[source] crate::tuf::TufError),
}
