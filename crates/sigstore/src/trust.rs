//! The trust root: which Fulcio CAs, Rekor keys and CT log keys a signature must chain to.
//!
//! Read from Sigstore's `trusted_root.json` (the protobuf-specs `TrustedRoot` message in proto
//! JSON), either the public-good root shipped in the binary (`trust_root/`, see its README) or an
//! operator's private root. Each CA and key keeps its `validFor` window, so verification uses only
//! what was valid at the transparency log's integrated time. A root can also be read from a TUF
//! repository ([`TrustRoot::from_tuf`], `tuf.rs`), starting from a pinned TUF root: the shipped
//! one for the public-good instance, an operator's for a private one.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use sigstore_protobuf_specs::dev::sigstore::common::v1::TimeRange;
use sigstore_protobuf_specs::dev::sigstore::trustroot::v1::{TransparencyLogInstance, TrustedRoot};
use x509_cert::der::Decode;

use crate::Error;

/// Sigstore's public-good `trusted_root.json`, as shipped with sigstore-rs 0.15.0.
const PUBLIC_GOOD_TRUSTED_ROOT: &[u8] = include_bytes!("../trust_root/trusted_root.json");

/// A validity window in Unix seconds; `None` is open-ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    start: Option<i64>,
    end: Option<i64>,
}

impl Window {
    fn from_range(range: Option<&TimeRange>) -> Window {
        Window {
            start: range.and_then(|r| r.start.as_ref()).map(|t| t.seconds),
            end: range.and_then(|r| r.end.as_ref()).map(|t| t.seconds),
        }
    }

    pub(crate) fn contains(&self, t: i64) -> bool {
        self.start.is_none_or(|s| s <= t) && self.end.is_none_or(|e| t <= e)
    }
}

/// One certificate authority: its chain (DER, as listed) and when it may issue.
#[derive(Debug, Clone)]
pub(crate) struct Authority {
    pub(crate) certificates: Vec<Vec<u8>>,
    pub(crate) valid: Window,
}

/// One log key (Rekor or CT): its SubjectPublicKeyInfo (DER) and log id.
#[derive(Debug, Clone)]
pub(crate) struct LogKey {
    /// Hex of the log id (SHA-256 of the SPKI for Rekor v1 and CT logs).
    pub(crate) log_id: String,
    pub(crate) spki: Vec<u8>,
    pub(crate) valid: Window,
}

/// Fulcio CA certificates, Rekor keys (by log id) and CT log keys that signatures are checked
/// against.
#[derive(Debug, Clone)]
pub struct TrustRoot {
    pub(crate) authorities: Vec<Authority>,
    pub(crate) rekor: Vec<LogKey>,
    pub(crate) ct: Vec<LogKey>,
}

impl TrustRoot {
    /// Sigstore's public-good root, shipped in the binary (copied from the sigstore-0.15.0 crate,
    /// see `trust_root/README.md` for origin and checksums).
    pub fn public_good() -> Result<TrustRoot, Error> {
        TrustRoot::from_trusted_root_json(PUBLIC_GOOD_TRUSTED_ROOT)
    }

    /// An operator's private root in Sigstore `trusted_root.json` format (protobuf-specs
    /// `TrustedRoot` JSON). Refuses a root with no CA or no transparency-log key, and a root
    /// whose certificates or keys do not parse.
    pub fn from_trusted_root_json(bytes: &[u8]) -> Result<TrustRoot, Error> {
        let root: TrustedRoot = serde_json::from_slice(bytes).map_err(Error::TrustRootJson)?;
        if !root
            .media_type
            .starts_with("application/vnd.dev.sigstore.trustedroot")
        {
            return Err(Error::TrustRoot(format!(
                "mediaType {:?} is not a Sigstore trusted root",
                root.media_type
            )));
        }
        let mut authorities = Vec::new();
        for (index, ca) in root.certificate_authorities.iter().enumerate() {
            let certificates: Vec<Vec<u8>> = ca
                .cert_chain
                .as_ref()
                .map(|c| c.certificates.iter().map(|c| c.raw_bytes.clone()).collect())
                .unwrap_or_default();
            if certificates.is_empty() {
                continue;
            }
            for der in &certificates {
                x509_cert::Certificate::from_der(der)
                    .map_err(|source| Error::TrustRootCertificate { index, source })?;
            }
            authorities.push(Authority {
                certificates,
                valid: Window::from_range(ca.valid_for.as_ref()),
            });
        }
        if authorities.is_empty() {
            return Err(Error::TrustRoot(
                "no certificate authority with a certificate".into(),
            ));
        }
        let rekor = log_keys(&root.tlogs)?;
        if rekor.is_empty() {
            return Err(Error::TrustRoot("no transparency log key".into()));
        }
        let ct = log_keys(&root.ctlogs)?;
        Ok(TrustRoot {
            authorities,
            rekor,
            ct,
        })
    }

    /// The CA certificates (DER) of every authority valid at `t`.
    pub(crate) fn ca_certificates_at(&self, t: i64) -> Vec<&[u8]> {
        self.authorities
            .iter()
            .filter(|a| a.valid.contains(t))
            .flat_map(|a| a.certificates.iter().map(Vec::as_slice))
            .collect()
    }

    /// The Rekor key with this log id (hex), if it was valid at `t`.
    pub(crate) fn rekor_key(&self, log_id: &str, t: i64) -> Option<&LogKey> {
        self.rekor
            .iter()
            .find(|k| k.log_id.eq_ignore_ascii_case(log_id) && k.valid.contains(t))
    }

    /// The CT log keys valid at `t`, by log id.
    pub(crate) fn ct_keys_at(&self, t: i64) -> BTreeMap<String, Vec<u8>> {
        self.ct
            .iter()
            .filter(|k| k.valid.contains(t))
            .map(|k| (k.log_id.clone(), k.spki.clone()))
            .collect()
    }
}

fn log_keys(logs: &[TransparencyLogInstance]) -> Result<Vec<LogKey>, Error> {
    let mut keys = Vec::new();
    for log in logs {
        let Some(public_key) = log.public_key.as_ref() else {
            continue;
        };
        let Some(spki) = public_key.raw_bytes.as_ref().filter(|b| !b.is_empty()) else {
            continue;
        };
        let log_id = match log.log_id.as_ref() {
            Some(id) if !id.key_id.is_empty() => hex::encode(&id.key_id),
            _ => hex::encode(Sha256::digest(spki)),
        };
        sigstore::crypto::CosignVerificationKey::try_from_der(spki).map_err(|source| {
            Error::TrustRootKey {
                log: log.base_url.clone(),
                source,
            }
        })?;
        keys.push(LogKey {
            log_id,
            spki: spki.clone(),
            valid: Window::from_range(public_key.valid_for.as_ref()),
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_good_loads() {
        let root = TrustRoot::public_good().unwrap();
        assert!(!root.authorities.is_empty());
        assert!(!root.rekor.is_empty());
        assert!(!root.ct.is_empty());
        // rekor.sigstore.dev's log id.
        assert!(root
            .rekor_key(
                "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d",
                1_700_000_000
            )
            .is_some());
    }

    #[test]
    fn refuses_garbage_and_empty_roots() {
        assert!(matches!(
            TrustRoot::from_trusted_root_json(b"not json"),
            Err(Error::TrustRootJson(_))
        ));
        assert!(TrustRoot::from_trusted_root_json(b"{}").is_err());
        let empty = br#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[],"certificateAuthorities":[],"ctlogs":[]}"#;
        let err = TrustRoot::from_trusted_root_json(empty).unwrap_err();
        assert!(
            err.to_string().contains("no certificate authority"),
            "{err}"
        );
        // A CA but no log key.
        let public: serde_json::Value = serde_json::from_slice(PUBLIC_GOOD_TRUSTED_ROOT).unwrap();
        let mut no_tlog = public.clone();
        no_tlog["tlogs"] = serde_json::json!([]);
        let err =
            TrustRoot::from_trusted_root_json(&serde_json::to_vec(&no_tlog).unwrap()).unwrap_err();
        assert!(err.to_string().contains("no transparency log key"), "{err}");
    }
}
