//! Refreshing the trust root from a TUF repository (Sigstore's public-good one, or a private one).
//!
//! The shipped `trusted_root.json` goes stale as Sigstore rotates its CAs and log keys; Sigstore
//! distributes the current one as the target `trusted_root.json` of a TUF repository. This module
//! is the client side of that: starting from a pinned TUF `root.json` (the shipped one, or an
//! operator's), it walks root rotations, then timestamp, snapshot and targets, and reads the
//! target only if every step checks out (TUF specification 1.0, "detailed client workflow"):
//!
//! - every metadata file is signed by a threshold of distinct keys of its role (keys counted once
//!   however many key ids list them; a threshold of 0 is refused), over OLPC canonical JSON;
//! - each new root `N+1.root.json` is signed by a threshold of the old root *and* of itself and
//!   has version `N+1`; the final root, the timestamp, snapshot and targets must not be expired
//!   at the time the refresh started;
//! - snapshot and targets have the versions (and, where listed, lengths and hashes) their parent
//!   names; with consistent snapshots they are read as `V.snapshot.json`, `V.targets.json`;
//! - the target's length and every known hash (sha256, sha512; at least one) must match, and it is
//!   read as `HASH.trusted_root.json` with consistent snapshots.
//!
//! Every file is capped at `max_bytes` (less when its parent gives a length) while it streams and
//! the whole refresh at `timeout`. Nothing is cached between refreshes, so rollback protection is
//! relative to the pinned root only, and only top-level targets are searched (Sigstore lists
//! `trusted_root.json` there).
//!
//! Why not the `tough` crate: since 0.19 it links aws-lc-rs (aws-lc-sys) and rustls
//! unconditionally, a second crypto and TLS stack beside the OpenSSL this crate already uses, and
//! 0.18 (the last on ring) misses five advisories fixed in 0.20. The checks here are the subset of
//! the client workflow a single top-level target needs; signatures are verified by sigstore-rs's
//! own key types, canonical JSON by `olpc-cjson` (the formatter tough uses), HTTP by reqwest.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use sigstore::crypto::{CosignVerificationKey, Signature, SigningScheme};

use crate::{Error, TrustRoot};

/// Sigstore's public-good TUF root (version 12), as shipped with sigstore-rs 0.15.0.
const PUBLIC_GOOD_ROOT: &[u8] = include_bytes!("../trust_root/root.json");

/// The target this module reads.
const TRUSTED_ROOT_TARGET: &str = "trusted_root.json";

/// At most this many root rotations are followed in one refresh.
const MAX_ROOT_ROTATIONS: u64 = 256;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo, before the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A TUF repository to read `trusted_root.json` from, and the root to trust it with.
#[derive(Debug, Clone)]
pub struct TufSource {
    /// Base URL of the metadata (`root.json`, `timestamp.json`...), e.g.
    /// `https://tuf-repo-cdn.sigstore.dev`. `http` or `https`.
    pub metadata_url: String,
    /// Base URL of the targets, e.g. `https://tuf-repo-cdn.sigstore.dev/targets`.
    pub targets_url: String,
    /// The trusted TUF `root.json` to start from (pinned by the operator, or the shipped one).
    pub root_json: Vec<u8>,
    /// Bound on the whole refresh, every request included.
    pub timeout: Duration,
    /// Cap on any one metadata or target file.
    pub max_bytes: usize,
}

/// What a refresh verified, for the next one to start from: the newest root and the versions
/// of timestamp, snapshot and targets seen. Kept in memory by the caller, it stops a mirror
/// from moving a running process back to older (still unexpired) metadata or a shorter root
/// chain (the specification's rollback checks, 5.3 to 5.5).
#[derive(Debug, Clone, Default)]
pub struct TufState {
    root_json: Option<Vec<u8>>,
    timestamp: u64,
    snapshot: u64,
    targets: u64,
}

impl TufState {
    /// The targets version the root in use came from (0 before any refresh).
    pub fn targets_version(&self) -> u64 {
        self.targets
    }
}

impl TufSource {
    /// Sigstore's public-good TUF repository, starting from the shipped `root.json` (see
    /// `trust_root/README.md`); 60 s for the refresh, 4 MiB per file.
    pub fn public_good() -> TufSource {
        TufSource {
            metadata_url: "https://tuf-repo-cdn.sigstore.dev".into(),
            targets_url: "https://tuf-repo-cdn.sigstore.dev/targets".into(),
            root_json: PUBLIC_GOOD_ROOT.to_vec(),
            timeout: Duration::from_secs(60),
            max_bytes: 4 << 20,
        }
    }
}

/// Why a TUF refresh was refused. `file` names the metadata or target file concerned
/// (`root.json` for the pinned root, `13.root.json`, `timestamp.json`, `trusted_root.json`...).
#[derive(Debug, thiserror::Error)]
pub enum TufError {
    /// The source's URLs, timeout or cap cannot be used.
    #[error("TUF source: {0}")]
    Options(String),
    /// The HTTP client could not be built.
    #[error("TUF HTTP client")]
    Client(#[source] reqwest::Error),
    /// The refresh took longer than the source's timeout.
    #[error("TUF refresh did not finish within {timeout:?}")]
    Timeout { timeout: Duration },
    /// A request failed (connection refused, timeout, TLS...).
    #[error("TUF request to {url} failed")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The repository answered a status other than 200.
    #[error("TUF repository answered {status} to {url}")]
    Status { url: String, status: u16 },
    /// A file is larger than its cap (`max_bytes`, or the length its parent metadata gives).
    #[error("TUF file from {url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    /// A metadata file is not JSON of the TUF shape.
    #[error("TUF metadata {file} does not parse")]
    Json {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    /// A metadata file parsed but breaks a rule (wrong type, version, spec version, roles...).
    #[error("TUF metadata {file}: {reason}")]
    Metadata { file: String, reason: String },
    /// Fewer distinct keys of the role signed the file than its threshold.
    #[error(
        "TUF metadata {file}: {valid} valid signature(s) from {role} keys, threshold {threshold}"
    )]
    Signatures {
        file: String,
        role: String,
        valid: usize,
        threshold: u64,
    },
    /// The metadata expired before the refresh started.
    #[error("TUF metadata {file} expired at {expires}")]
    Expired { file: String, expires: String },
    /// A file's length or hash is not what its parent metadata says.
    #[error("TUF file {file}: {reason}")]
    Mismatch { file: String, reason: String },
    /// The targets metadata does not list the trusted root target.
    #[error("TUF targets do not list {target} (delegated targets are not searched)")]
    TargetMissing { target: String },
    /// Older metadata than an earlier refresh verified (a rollback).
    #[error("TUF {file}: version {got} is older than version {seen} verified before")]
    Rollback { file: String, seen: u64, got: u64 },
}

impl TrustRoot {
    /// Loads the TUF repository of `source` (root rotation, then timestamp, snapshot and
    /// targets: signatures, thresholds, versions, expiry), reads its `trusted_root.json` target
    /// (length and hashes checked) and parses it as [`TrustRoot::from_trusted_root_json`] does.
    /// TUF failures are [`Error::Tuf`]; a verified target that is not a usable trusted root
    /// fails as `from_trusted_root_json` would.
    pub async fn from_tuf(source: &TufSource) -> Result<TrustRoot, Error> {
        Self::from_tuf_after(source, &TufState::default())
            .await
            .map(|(root, _)| root)
    }

    /// Like [`TrustRoot::from_tuf`], starting from what an earlier refresh verified: nothing
    /// older than `state` is accepted. Returns the state to start the next refresh from.
    pub async fn from_tuf_after(
        source: &TufSource,
        state: &TufState,
    ) -> Result<(TrustRoot, TufState), Error> {
        let (bytes, state) = fetch_trusted_root(source, state)
            .await
            .map_err(Error::Tuf)?;
        Ok((TrustRoot::from_trusted_root_json(&bytes)?, state))
    }
}

/// Refuses metadata older than what was verified before.
fn not_older(file: &str, seen: u64, got: u64) -> Result<(), TufError> {
    if got < seen {
        return Err(TufError::Rollback {
            file: file.to_string(),
            seen,
            got,
        });
    }
    Ok(())
}

/// The whole client workflow; returns the verified target's bytes.
async fn fetch_trusted_root(
    source: &TufSource,
    state: &TufState,
) -> Result<(Vec<u8>, TufState), TufError> {
    let started = Instant::now();
    let now = Utc::now();
    let metadata_base = base_url(&source.metadata_url, "metadata_url")?;
    let targets_base = base_url(&source.targets_url, "targets_url")?;
    if source.timeout.is_zero() || source.max_bytes == 0 {
        return Err(TufError::Options(
            "timeout and max_bytes must be positive".into(),
        ));
    }
    // No redirects: a TUF repository serves its files where its URLs say, and a redirect could
    // only lead somewhere else (another host, plain http).
    let http = reqwest::Client::builder()
        .connect_timeout(source.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(TufError::Client)?;
    let deadline = started
        .checked_add(source.timeout)
        .ok_or_else(|| TufError::Options("timeout is too large".into()))?;
    let fetcher = Fetcher {
        http,
        deadline,
        timeout: source.timeout,
        max_bytes: source.max_bytes,
    };

    // The pinned root, or the newest one an earlier refresh verified from it: trusted as given,
    // but it must be well formed and signed by itself.
    let mut root_json = state
        .root_json
        .clone()
        .unwrap_or_else(|| source.root_json.clone());
    let mut root = Metadata::<RootBody>::parse("root.json", &root_json, "root")?;
    root.body.check(&root.file)?;
    root.verify_by(&root.body, "root")?;

    // Root rotation: N+1.root.json, signed by the old root and by itself, until there is none.
    for _ in 0..MAX_ROOT_ROTATIONS {
        let next = root
            .common
            .version
            .checked_add(1)
            .ok_or_else(|| TufError::Metadata {
                file: root.file.clone(),
                reason: "version overflows".into(),
            })?;
        let file = format!("{next}.root.json");
        let Some(bytes) = fetcher
            .get(&format!("{metadata_base}/{file}"), source.max_bytes, true)
            .await?
        else {
            break;
        };
        let new = Metadata::<RootBody>::parse(&file, &bytes, "root")?;
        new.body.check(&new.file)?;
        new.verify_by(&root.body, "root")?;
        new.verify_by(&new.body, "root")?;
        new.expect_version(next)?;
        root = new;
        root_json = bytes;
    }
    root.check_expiry(now)?;
    let root_body = root.body;

    // Timestamp.
    let file = "timestamp.json".to_string();
    let bytes = fetcher
        .get(&format!("{metadata_base}/{file}"), source.max_bytes, false)
        .await?
        .ok_or_else(|| missing(&file))?;
    let timestamp = Metadata::<MetaBody>::parse(&file, &bytes, "timestamp")?;
    timestamp.verify_by(&root_body, "timestamp")?;
    not_older(&file, state.timestamp, timestamp.common.version)?;
    timestamp.check_expiry(now)?;
    let snapshot_meta = timestamp.body.entry(&file, "snapshot.json")?;
    not_older("snapshot.json", state.snapshot, snapshot_meta.version)?;

    // Snapshot.
    let file = versioned(
        root_body.consistent_snapshot,
        snapshot_meta.version,
        "snapshot.json",
    );
    let bytes = fetcher
        .get(
            &format!("{metadata_base}/{file}"),
            snapshot_meta.cap(source.max_bytes),
            false,
        )
        .await?
        .ok_or_else(|| missing(&file))?;
    snapshot_meta.check(&file, &bytes)?;
    let snapshot = Metadata::<MetaBody>::parse(&file, &bytes, "snapshot")?;
    snapshot.verify_by(&root_body, "snapshot")?;
    snapshot.expect_version(snapshot_meta.version)?;
    snapshot.check_expiry(now)?;
    let targets_meta = snapshot.body.entry(&file, "targets.json")?;
    not_older("targets.json", state.targets, targets_meta.version)?;

    // Targets.
    let file = versioned(
        root_body.consistent_snapshot,
        targets_meta.version,
        "targets.json",
    );
    let bytes = fetcher
        .get(
            &format!("{metadata_base}/{file}"),
            targets_meta.cap(source.max_bytes),
            false,
        )
        .await?
        .ok_or_else(|| missing(&file))?;
    targets_meta.check(&file, &bytes)?;
    let targets = Metadata::<TargetsBody>::parse(&file, &bytes, "targets")?;
    targets.verify_by(&root_body, "targets")?;
    targets.expect_version(targets_meta.version)?;
    targets.check_expiry(now)?;

    // The target itself.
    let target = targets
        .body
        .targets
        .get(TRUSTED_ROOT_TARGET)
        .ok_or_else(|| TufError::TargetMissing {
            target: TRUSTED_ROOT_TARGET.into(),
        })?;
    let known = target.known_hashes(TRUSTED_ROOT_TARGET)?;
    let Some((_, prefix)) = known.first() else {
        return Err(TufError::Metadata {
            file: targets.file,
            reason: format!("{TRUSTED_ROOT_TARGET} has no sha256 or sha512 hash"),
        });
    };
    let name = if root_body.consistent_snapshot {
        format!("{prefix}.{TRUSTED_ROOT_TARGET}")
    } else {
        TRUSTED_ROOT_TARGET.to_string()
    };
    let length = usize::try_from(target.length).unwrap_or(usize::MAX);
    if length > source.max_bytes {
        return Err(TufError::TooLarge {
            url: format!("{targets_base}/{name}"),
            limit: source.max_bytes,
        });
    }
    let bytes = fetcher
        .get(&format!("{targets_base}/{name}"), length, false)
        .await?
        .ok_or_else(|| missing(TRUSTED_ROOT_TARGET))?;
    check_length_and_hashes(TRUSTED_ROOT_TARGET, &bytes, Some(target.length), &known)?;
    Ok((
        bytes,
        TufState {
            root_json: Some(root_json),
            timestamp: timestamp.common.version,
            snapshot: snapshot_meta.version,
            targets: targets_meta.version,
        },
    ))
}

/// A URL base without its trailing slash, refused unless it is http(s) with a host.
fn base_url(url: &str, field: &str) -> Result<String, TufError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| TufError::Options(format!("{field} {url:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(TufError::Options(format!(
            "{field} {url:?} is not an http(s) URL with a host"
        )));
    }
    // Plain http only on loopback (a test repository): anywhere else anyone on the path could
    // serve old metadata or stop the root chain short.
    let host = parsed
        .host_str()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if parsed.scheme() == "http" && !loopback {
        return Err(TufError::Options(format!(
            "{field} {url:?}: plain http is allowed for a loopback repository only"
        )));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(TufError::Options(format!(
            "{field} {url:?} must not carry a query or fragment"
        )));
    }
    Ok(url.trim_end_matches('/').to_string())
}

fn versioned(consistent: bool, version: u64, name: &str) -> String {
    if consistent {
        format!("{version}.{name}")
    } else {
        name.to_string()
    }
}

fn missing(file: &str) -> TufError {
    TufError::Metadata {
        file: file.to_string(),
        reason: "not found in the repository".into(),
    }
}

/// Bounded, deadline-bound GETs.
struct Fetcher {
    http: reqwest::Client,
    deadline: Instant,
    timeout: Duration,
    max_bytes: usize,
}

impl Fetcher {
    /// The body of `url`, at most `limit` bytes (never more than `max_bytes`). `Ok(None)` for a
    /// 404 or 403 (how S3-style stores say "no such file") when `missing_ok`.
    async fn get(
        &self,
        url: &str,
        limit: usize,
        missing_ok: bool,
    ) -> Result<Option<Vec<u8>>, TufError> {
        let limit = limit.min(self.max_bytes);
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(TufError::Timeout {
                timeout: self.timeout,
            });
        }
        let request_error = |source| TufError::Request {
            url: url.to_string(),
            source,
        };
        let mut response = self
            .http
            .get(url)
            .timeout(remaining)
            .send()
            .await
            .map_err(request_error)?;
        let status = response.status();
        if missing_ok && matches!(status.as_u16(), 403 | 404) {
            return Ok(None);
        }
        if status != reqwest::StatusCode::OK {
            return Err(TufError::Status {
                url: url.to_string(),
                status: status.as_u16(),
            });
        }
        let too_large = || TufError::TooLarge {
            url: url.to_string(),
            limit,
        };
        if response
            .content_length()
            .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(request_error)? {
            if body.len().saturating_add(chunk.len()) > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }
}

/// `{"signed": ..., "signatures": [...]}`.
#[derive(Deserialize)]
struct Envelope {
    signed: serde_json::Value,
    signatures: Vec<RawSignature>,
}

#[derive(Deserialize)]
struct RawSignature {
    keyid: String,
    sig: String,
}

/// The fields every role's `signed` has.
#[derive(Deserialize)]
struct Common {
    #[serde(rename = "_type")]
    kind: String,
    spec_version: String,
    version: u64,
    expires: String,
}

#[derive(Deserialize)]
struct RootBody {
    #[serde(default)]
    consistent_snapshot: bool,
    keys: BTreeMap<String, KeyJson>,
    roles: BTreeMap<String, RoleKeys>,
}

#[derive(Deserialize)]
struct KeyJson {
    keytype: String,
    scheme: String,
    keyval: KeyVal,
}

#[derive(Deserialize)]
struct KeyVal {
    public: String,
}

#[derive(Deserialize)]
struct RoleKeys {
    keyids: Vec<String>,
    threshold: u64,
}

/// Timestamp and snapshot: the metadata files they vouch for.
#[derive(Deserialize)]
struct MetaBody {
    meta: BTreeMap<String, MetaFile>,
}

#[derive(Deserialize, Clone)]
struct MetaFile {
    version: u64,
    length: Option<u64>,
    hashes: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct TargetsBody {
    targets: BTreeMap<String, TargetFile>,
}

#[derive(Deserialize)]
struct TargetFile {
    length: u64,
    hashes: BTreeMap<String, String>,
}

/// One parsed metadata file: its envelope, the canonical bytes signed, and the typed body.
struct Metadata<T> {
    file: String,
    envelope: Envelope,
    canonical: Vec<u8>,
    common: Common,
    body: T,
}

impl<T: DeserializeOwned> Metadata<T> {
    fn parse(file: &str, bytes: &[u8], kind: &str) -> Result<Metadata<T>, TufError> {
        let json = |source| TufError::Json {
            file: file.to_string(),
            source,
        };
        let envelope: Envelope = serde_json::from_slice(bytes).map_err(json)?;
        let common = Common::deserialize(&envelope.signed).map_err(json)?;
        let body = T::deserialize(&envelope.signed).map_err(json)?;
        let bad = |reason: String| TufError::Metadata {
            file: file.to_string(),
            reason,
        };
        if common.kind != kind {
            return Err(bad(format!(
                "_type is {:?}, expected {kind:?}",
                common.kind
            )));
        }
        if common.spec_version.split('.').next() != Some("1") {
            return Err(bad(format!(
                "spec_version {:?} is not 1.x",
                common.spec_version
            )));
        }
        let mut canonical = Vec::new();
        let mut serializer = serde_json::Serializer::with_formatter(
            &mut canonical,
            olpc_cjson::CanonicalFormatter::new(),
        );
        envelope.signed.serialize(&mut serializer).map_err(json)?;
        Ok(Metadata {
            file: file.to_string(),
            envelope,
            canonical,
            common,
            body,
        })
    }
}

impl<T> Metadata<T> {
    /// A threshold of distinct keys of `role` in `root` signed the canonical `signed`.
    fn verify_by(&self, root: &RootBody, role: &str) -> Result<(), TufError> {
        let keys = root.roles.get(role).ok_or_else(|| TufError::Metadata {
            file: self.file.clone(),
            reason: format!("root has no {role} role"),
        })?;
        let mut counted: BTreeSet<Vec<u8>> = BTreeSet::new();
        let keyids: BTreeSet<&str> = keys.keyids.iter().map(String::as_str).collect();
        for keyid in keyids {
            let Some((spki, key)) = root.keys.get(keyid).and_then(KeyJson::verification_key) else {
                continue;
            };
            if counted.contains(&spki) {
                continue;
            }
            let verified = self
                .envelope
                .signatures
                .iter()
                // The first signature of a key id only: the list is not signed, and thousands of
                // copies would each cost a verification.
                .find(|s| s.keyid == keyid)
                .and_then(|s| hex::decode(&s.sig).ok())
                .filter(|sig| !sig.is_empty())
                .is_some_and(|sig| {
                    key.verify_signature(Signature::Raw(&sig), &self.canonical)
                        .is_ok()
                });
            if verified {
                counted.insert(spki);
            }
        }
        if (counted.len() as u64) < keys.threshold {
            return Err(TufError::Signatures {
                file: self.file.clone(),
                role: role.to_string(),
                valid: counted.len(),
                threshold: keys.threshold,
            });
        }
        Ok(())
    }

    fn expect_version(&self, expected: u64) -> Result<(), TufError> {
        if self.common.version != expected {
            return Err(TufError::Metadata {
                file: self.file.clone(),
                reason: format!(
                    "version {} where {expected} was expected",
                    self.common.version
                ),
            });
        }
        Ok(())
    }

    fn check_expiry(&self, now: DateTime<Utc>) -> Result<(), TufError> {
        let expires =
            DateTime::parse_from_rfc3339(&self.common.expires).map_err(|e| TufError::Metadata {
                file: self.file.clone(),
                reason: format!("expires {:?} is not RFC 3339: {e}", self.common.expires),
            })?;
        if expires <= now {
            return Err(TufError::Expired {
                file: self.file.clone(),
                expires: self.common.expires.clone(),
            });
        }
        Ok(())
    }
}

impl RootBody {
    /// The four top-level roles are there, each with a threshold of at least 1.
    fn check(&self, file: &str) -> Result<(), TufError> {
        for role in ["root", "timestamp", "snapshot", "targets"] {
            let keys = self.roles.get(role).ok_or_else(|| TufError::Metadata {
                file: file.to_string(),
                reason: format!("no {role} role"),
            })?;
            if keys.threshold == 0 {
                return Err(TufError::Metadata {
                    file: file.to_string(),
                    reason: format!("{role} role has threshold 0"),
                });
            }
        }
        Ok(())
    }
}

impl KeyJson {
    /// The key's SubjectPublicKeyInfo (DER) and verifier; `None` for a key type or scheme this
    /// client does not know, or a key that does not decode (it then counts toward no threshold).
    fn verification_key(&self) -> Option<(Vec<u8>, CosignVerificationKey)> {
        let public = self.keyval.public.trim();
        let (spki, scheme) = match (self.keytype.as_str(), self.scheme.as_str()) {
            ("ecdsa" | "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256") => (
                pem_or_hex_der(public)?,
                SigningScheme::ECDSA_P256_SHA256_ASN1,
            ),
            ("ecdsa" | "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp384") => (
                pem_or_hex_der(public)?,
                SigningScheme::ECDSA_P384_SHA384_ASN1,
            ),
            ("ed25519", "ed25519") => {
                let raw = hex::decode(public).ok().filter(|k| k.len() == 32)?;
                let mut spki = ED25519_SPKI_PREFIX.to_vec();
                spki.extend_from_slice(&raw);
                (spki, SigningScheme::ED25519)
            }
            ("rsa", "rsassa-pss-sha256") => {
                (pem_or_hex_der(public)?, SigningScheme::RSA_PSS_SHA256(0))
            }
            _ => return None,
        };
        let key = CosignVerificationKey::from_der(&spki, &scheme).ok()?;
        Some((spki, key))
    }
}

/// A public key as PEM (`-----BEGIN PUBLIC KEY-----`) or hex DER, as SubjectPublicKeyInfo DER.
fn pem_or_hex_der(public: &str) -> Option<Vec<u8>> {
    if public.starts_with("-----BEGIN PUBLIC KEY-----") {
        let body: String = public
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::trim)
            .collect();
        base64::engine::general_purpose::STANDARD.decode(body).ok()
    } else {
        hex::decode(public).ok()
    }
}

impl MetaBody {
    fn entry(&self, file: &str, name: &str) -> Result<MetaFile, TufError> {
        self.meta
            .get(name)
            .cloned()
            .ok_or_else(|| TufError::Metadata {
                file: file.to_string(),
                reason: format!("meta does not list {name}"),
            })
    }
}

impl MetaFile {
    /// The cap for this file: its listed length, within `max_bytes`.
    fn cap(&self, max_bytes: usize) -> usize {
        self.length
            .map_or(max_bytes, |n| usize::try_from(n).unwrap_or(usize::MAX))
            .min(max_bytes)
    }

    fn check(&self, file: &str, bytes: &[u8]) -> Result<(), TufError> {
        let known = match &self.hashes {
            Some(hashes) => known_hashes(file, hashes)?,
            None => Vec::new(),
        };
        check_length_and_hashes(file, bytes, self.length, &known)
    }
}

impl TargetFile {
    fn known_hashes(&self, file: &str) -> Result<Vec<(HashAlg, String)>, TufError> {
        known_hashes(file, &self.hashes)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HashAlg {
    Sha256,
    Sha512,
}

/// The sha256 and sha512 entries of a `hashes` map (lowercase hex), sha256 first; other
/// algorithms are ignored.
fn known_hashes(
    file: &str,
    hashes: &BTreeMap<String, String>,
) -> Result<Vec<(HashAlg, String)>, TufError> {
    let mut known = Vec::new();
    for (name, alg, len) in [
        ("sha256", HashAlg::Sha256, 64),
        ("sha512", HashAlg::Sha512, 128),
    ] {
        if let Some(value) = hashes.get(name) {
            let value = value.to_ascii_lowercase();
            if value.len() != len || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(TufError::Metadata {
                    file: file.to_string(),
                    reason: format!("{name} hash {value:?} is not {len} hex digits"),
                });
            }
            known.push((alg, value));
        }
    }
    Ok(known)
}

fn check_length_and_hashes(
    file: &str,
    bytes: &[u8],
    length: Option<u64>,
    hashes: &[(HashAlg, String)],
) -> Result<(), TufError> {
    let mismatch = |reason: String| TufError::Mismatch {
        file: file.to_string(),
        reason,
    };
    if let Some(length) = length {
        if bytes.len() as u64 != length {
            return Err(mismatch(format!(
                "{} bytes where {length} were listed",
                bytes.len()
            )));
        }
    }
    for (alg, expected) in hashes {
        let actual = match alg {
            HashAlg::Sha256 => hex::encode(Sha256::digest(bytes)),
            HashAlg::Sha512 => hex::encode(Sha512::digest(bytes)),
        };
        if &actual != expected {
            return Err(mismatch(format!(
                "{alg:?} is {actual}, {expected} was listed"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_good_carries_the_shipped_root() {
        let source = TufSource::public_good();
        assert_eq!(source.root_json, PUBLIC_GOOD_ROOT);
        assert!(source.metadata_url.starts_with("https://"));
        let root = Metadata::<RootBody>::parse("root.json", &source.root_json, "root").unwrap();
        root.body.check(&root.file).unwrap();
        assert!(root.body.consistent_snapshot);
        assert_eq!(root.common.version, 12);
        // Interop with real Sigstore metadata: OLPC canonical JSON, PEM ECDSA keys, DER
        // signatures. Root v12 is signed by 3 of its 5 root keys.
        root.verify_by(&root.body, "root").unwrap();
        // The same signatures over other bytes count for nothing.
        let err = {
            let mut other =
                Metadata::<RootBody>::parse("root.json", &source.root_json, "root").unwrap();
            other.canonical.push(b' ');
            other.verify_by(&root.body, "root").unwrap_err()
        };
        assert!(
            matches!(
                err,
                TufError::Signatures {
                    valid: 0,
                    threshold: 3,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn bad_sources_are_refused() {
        for url in [
            "ftp://example.com",
            "not a url",
            "file:///tmp/x",
            "https://h/?q=1",
        ] {
            assert!(matches!(
                base_url(url, "metadata_url"),
                Err(TufError::Options(_))
            ));
        }
        assert_eq!(
            base_url("https://tuf.example/", "metadata_url").unwrap(),
            "https://tuf.example"
        );
    }

    #[test]
    fn wrong_type_and_spec_version_are_refused() {
        let root: serde_json::Value = serde_json::from_slice(PUBLIC_GOOD_ROOT).unwrap();
        let err = Metadata::<RootBody>::parse("x", PUBLIC_GOOD_ROOT, "timestamp")
            .err()
            .unwrap();
        assert!(err.to_string().contains("_type"), "{err}");
        let mut v2 = root.clone();
        v2["signed"]["spec_version"] = "2.0".into();
        let err = Metadata::<RootBody>::parse("x", &serde_json::to_vec(&v2).unwrap(), "root")
            .err()
            .unwrap();
        assert!(err.to_string().contains("spec_version"), "{err}");
        let mut zero = root;
        zero["signed"]["roles"]["root"]["threshold"] = 0.into();
        let parsed =
            Metadata::<RootBody>::parse("x", &serde_json::to_vec(&zero).unwrap(), "root").unwrap();
        assert!(parsed.body.check("x").is_err());
    }
}
