//! Verification: does one piece of evidence hold for one image, and who made it.
//!
//! What sigstore-rs checks, through its public [`sigstore::bundle::verify::Verifier`] (the one
//! verifier it exposes): the certificate chains to a CA of the trust root (webpki, code-signing
//! EKU), its embedded SCT verifies under a CT key of the root, the signature verifies with the
//! certificate's key (over the message digest, or the DSSE PAE), the logged body matches this
//! signature and certificate, and the log's integrated time lies inside the certificate's
//! validity. A cosign `.sig` layer is handed to the same verifier as the v0.1 bundle it is
//! equivalent to (message signature over the simple-signing payload, the hashedrekord entry and
//! SET from the `dev.sigstore.cosign/bundle` annotation).
//!
//! What this module adds: only CAs and CT keys whose `validFor` covers the integrated time are
//! offered to the verifier; the SET and the inclusion proof (see `tlog.rs`, which sigstore-rs does
//! not check); no log entry means not verified; and the binding to *this* image: the
//! simple-signing `critical.image.docker-manifest-digest`, a DSSE in-toto subject, or a message
//! digest equal to the image digest.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use sigstore::bundle::verify::policy::PolicyResult;
use sigstore::bundle::verify::{
    ArtifactDigest, CertificateErrorKind, VerificationError, VerificationPolicy, Verifier,
};
use sigstore::bundle::Bundle;
use sigstore::trust::ManualTrustRoot;
use sigstore_protobuf_specs::dev::sigstore::bundle::v1::{
    bundle, verification_material, VerificationMaterial,
};
use sigstore_protobuf_specs::dev::sigstore::common::v1::{
    HashAlgorithm, HashOutput, LogId, MessageSignature, X509Certificate,
};
use sigstore_protobuf_specs::dev::sigstore::rekor::v1::{
    InclusionPromise, KindVersion, TransparencyLogEntry,
};
use x509_cert::der::Decode;

use crate::error::{clip, untrusted};
use crate::evidence::{Content, CosignSignature};
use crate::identity::summarize;
use crate::{tlog, CertificateSummary, Evidence, EvidenceSource, ImageRef, TrustRoot};

/// The in-toto statement of a verified DSSE bundle.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Statement {
    pub predicate_type: String,
    pub predicate: serde_json::Value,
}

/// The answer for one piece of evidence.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Verification {
    /// A signature is there (verified or not).
    pub is_signed: bool,
    /// It verified, under the trust root, for this image.
    pub is_verified: bool,
    /// Who signed (only when verified).
    pub certificate: Option<CertificateSummary>,
    /// The in-toto statement of a verified DSSE bundle.
    pub statement: Option<Statement>,
    /// Why it did not verify (one line).
    pub error: Option<String>,
    pub source: EvidenceSource,
}

const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";
const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The longest `Verification::error`, in characters: each untrusted value in it is already cut
/// to 200 (see `error::untrusted`); this bounds the line as a whole (sigstore-rs's messages too).
const MAX_ERROR_CHARS: usize = 1000;

/// Verifies one piece of evidence for one image under `trust`. Pure CPU; never fails: a signature
/// that does not hold comes back `is_signed` and not `is_verified`, with the reason in `error`.
pub fn verify(trust: &TrustRoot, image: &ImageRef, evidence: &Evidence) -> Verification {
    let result = match &evidence.content {
        Content::Unreadable(why) => Err(why.clone()),
        Content::Cosign(sig) => verify_cosign(trust, image, sig),
        Content::Bundle(bundle) => verify_bundle(trust, image, bundle),
    };
    match result {
        Ok((certificate, statement)) => Verification {
            is_signed: true,
            is_verified: true,
            certificate: Some(certificate),
            statement,
            error: None,
            source: evidence.source,
        },
        Err(error) => Verification {
            is_signed: true,
            is_verified: false,
            certificate: None,
            statement: None,
            error: Some(clip(&error, MAX_ERROR_CHARS)),
            source: evidence.source,
        },
    }
}

type Verified = (CertificateSummary, Option<Statement>);

fn verify_bundle(trust: &TrustRoot, image: &ImageRef, bundle: &Bundle) -> Result<Verified, String> {
    let material = bundle
        .verification_material
        .as_ref()
        .ok_or("bundle has no verification material")?;
    let entry = single_entry(material)?;
    let (statement, input) = match &bundle.content {
        Some(bundle::Content::DsseEnvelope(envelope)) => {
            if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
                return Err(format!(
                    "DSSE payload type {:?} is not an in-toto statement",
                    untrusted(&envelope.payload_type)
                ));
            }
            let statement: serde_json::Value = serde_json::from_slice(&envelope.payload)
                .map_err(|e| format!("DSSE payload is not JSON: {}", untrusted(&e.to_string())))?;
            let bound = statement["subject"].as_array().is_some_and(|subjects| {
                subjects
                    .iter()
                    .any(|s| s["digest"]["sha256"].as_str() == Some(image.hex()))
            });
            if !bound {
                return Err(format!(
                    "digest mismatch: no in-toto subject of the statement is {}",
                    image.digest
                ));
            }
            let predicate_type = statement["predicateType"]
                .as_str()
                .ok_or("in-toto statement has no predicateType")?
                .to_string();
            let statement = Statement {
                predicate_type,
                predicate: statement["predicate"].clone(),
            };
            (Some(statement), image.digest_bytes())
        }
        Some(bundle::Content::MessageSignature(signature)) => {
            let signed = signature
                .message_digest
                .as_ref()
                .map(|d| d.digest.as_slice())
                .unwrap_or_default();
            if signed != image.digest_bytes() {
                return Err(format!(
                    "digest mismatch: the bundle signs sha256:{}, the image is {}",
                    untrusted(&hex::encode(signed)),
                    image.digest
                ));
            }
            (None, image.digest_bytes())
        }
        None => return Err("bundle has no signature".into()),
    };
    sigstore_verify(trust, entry.integrated_time, bundle.clone(), input)?;
    tlog::verify_entry(trust, entry)?;
    let leaf = leaf_der(material).ok_or("bundle has no certificate")?;
    Ok((summary(leaf)?, statement))
}

/// A cosign `.sig` layer, verified as the v0.1 bundle it amounts to.
fn verify_cosign(
    trust: &TrustRoot,
    image: &ImageRef,
    sig: &CosignSignature,
) -> Result<Verified, String> {
    let certificate = sig
        .certificate
        .as_deref()
        .ok_or("signature has no certificate (only keyless Sigstore signatures are accepted)")?;
    let (label, cert_der) = x509_cert::der::pem::decode_vec(certificate.trim().as_bytes())
        .map_err(|e| format!("signing certificate is not PEM: {e}"))?;
    if label != "CERTIFICATE" {
        return Err(format!(
            "signing certificate PEM is a {:?}",
            untrusted(label)
        ));
    }
    let signature = B64
        .decode(
            sig.signature
                .as_deref()
                .ok_or("layer has no signature annotation")?
                .trim(),
        )
        .map_err(|e| format!("signature annotation is not base64: {e}"))?;
    let rekor = sig
        .rekor_bundle
        .as_deref()
        .ok_or("no transparency log entry (no dev.sigstore.cosign/bundle annotation)")?;
    let rekor: RekorBundle = serde_json::from_str(rekor).map_err(|e| {
        format!(
            "transparency log bundle does not parse: {}",
            untrusted(&e.to_string())
        )
    })?;
    let body = B64
        .decode(&rekor.payload.body)
        .map_err(|e| format!("logged body is not base64: {e}"))?;
    let logged: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("logged body is not JSON: {}", untrusted(&e.to_string())))?;
    let entry = TransparencyLogEntry {
        log_index: rekor.payload.log_index,
        log_id: Some(LogId {
            key_id: hex::decode(&rekor.payload.log_id)
                .map_err(|e| format!("log id is not hex: {e}"))?,
        }),
        kind_version: Some(KindVersion {
            kind: logged["kind"].as_str().unwrap_or_default().to_string(),
            version: logged["apiVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        }),
        integrated_time: rekor.payload.integrated_time,
        inclusion_promise: Some(InclusionPromise {
            signed_entry_timestamp: B64
                .decode(&rekor.signed_entry_timestamp)
                .map_err(|e| format!("signed entry timestamp is not base64: {e}"))?,
        }),
        inclusion_proof: None,
        canonicalized_body: body,
    };
    let payload_digest: [u8; 32] = Sha256::digest(&sig.payload).into();
    let bundle = Bundle {
        media_type: "application/vnd.dev.sigstore.bundle+json;version=0.1".into(),
        verification_material: Some(VerificationMaterial {
            content: Some(verification_material::Content::Certificate(
                X509Certificate {
                    raw_bytes: cert_der.clone(),
                },
            )),
            tlog_entries: vec![entry.clone()],
            timestamp_verification_data: None,
        }),
        content: Some(bundle::Content::MessageSignature(MessageSignature {
            message_digest: Some(HashOutput {
                algorithm: HashAlgorithm::Sha2256 as i32,
                digest: payload_digest.to_vec(),
            }),
            signature,
        })),
    };
    sigstore_verify(trust, entry.integrated_time, bundle, payload_digest)?;
    tlog::verify_entry(trust, &entry)?;

    let payload: serde_json::Value = serde_json::from_slice(&sig.payload).map_err(|e| {
        format!(
            "signed payload is not simple-signing JSON: {}",
            untrusted(&e.to_string())
        )
    })?;
    let critical = &payload["critical"];
    if critical["type"].as_str() != Some(SIMPLE_SIGNING_TYPE) {
        return Err(format!(
            "signed payload type {} is not {SIMPLE_SIGNING_TYPE:?}",
            untrusted(&critical["type"].to_string())
        ));
    }
    let named = critical["image"]["docker-manifest-digest"]
        .as_str()
        .unwrap_or_default();
    if named != image.digest {
        return Err(format!(
            "digest mismatch: the signature names {:?}, the image is {}",
            untrusted(named),
            image.digest
        ));
    }
    Ok((summary(&cert_der)?, None))
}

/// cosign's `dev.sigstore.cosign/bundle` annotation.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RekorBundle {
    signed_entry_timestamp: String,
    payload: RekorPayload,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RekorPayload {
    body: String,
    integrated_time: i64,
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

fn single_entry(material: &VerificationMaterial) -> Result<&TransparencyLogEntry, String> {
    match material.tlog_entries.as_slice() {
        [entry] => Ok(entry),
        [] => Err("no transparency log entry".into()),
        more => Err(format!(
            "{} transparency log entries, expected one",
            more.len()
        )),
    }
}

fn leaf_der(material: &VerificationMaterial) -> Option<&[u8]> {
    match material.content.as_ref()? {
        verification_material::Content::Certificate(c) => Some(&c.raw_bytes),
        verification_material::Content::X509CertificateChain(chain) => {
            chain.certificates.first().map(|c| c.raw_bytes.as_slice())
        }
        verification_material::Content::PublicKey(_) => None,
    }
}

fn summary(leaf_der: &[u8]) -> Result<CertificateSummary, String> {
    let cert = x509_cert::Certificate::from_der(leaf_der)
        .map_err(|e| format!("signing certificate does not parse: {e}"))?;
    Ok(summarize(&cert))
}

/// Any identity: who signed is the caller's policy, read from [`CertificateSummary`].
struct AnyIdentity;

impl VerificationPolicy for AnyIdentity {
    fn verify(&self, _cert: &x509_cert::Certificate) -> PolicyResult {
        Ok(())
    }
}

/// Runs sigstore-rs's bundle verifier with the CAs and CT keys valid at `integrated_time`.
fn sigstore_verify(
    trust: &TrustRoot,
    integrated_time: i64,
    bundle: Bundle,
    input: [u8; 32],
) -> Result<(), String> {
    let cas = trust.ca_certificates_at(integrated_time);
    if cas.is_empty() {
        return Err(format!(
            "certificate not trusted: no certificate authority of the trust root was valid at {integrated_time}"
        ));
    }
    let root = ManualTrustRoot {
        fulcio_certs: cas.into_iter().map(CertificateDer::from).collect(),
        rekor_keys: BTreeMap::new(),
        ctfe_keys: trust.ct_keys_at(integrated_time),
    };
    let verifier = Verifier::new(Default::default(), root)
        .map_err(|e| format!("trust root does not load into the verifier: {e}"))?;
    // The verifier is async only in signature: with `offline` it never awaits I/O.
    let result = futures::executor::block_on(verifier.verify_digest_with(
        ArtifactDigest::Sha256(input),
        bundle,
        &AnyIdentity,
        true,
    ));
    result.map_err(|e| describe(&e))
}

/// One line for a sigstore-rs verification error, with its causes.
fn describe(error: &VerificationError) -> String {
    let prefix = match error {
        VerificationError::Certificate(CertificateErrorKind::VerificationFailed(_)) => {
            "certificate not trusted: it does not chain to a certificate authority of the trust root"
        }
        VerificationError::Certificate(CertificateErrorKind::Sct(_)) => {
            "certificate not trusted: its embedded SCT does not verify under a CT log key of the trust root"
        }
        VerificationError::Certificate(CertificateErrorKind::Expired) => {
            "certificate was not valid at the transparency log's integrated time"
        }
        _ => "",
    };
    let mut line = if prefix.is_empty() {
        error.to_string()
    } else {
        prefix.to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line
}
