//! Evidence: one signature as found, before anything about it is believed.
//!
//! A signature reaches us in one of three shapes: a layer of cosign's `sha256-<hex>.sig` tag
//! (simple-signing payload, with the signature, certificate and Rekor bundle in annotations), a
//! Sigstore bundle stored as an OCI referrer, or a Sigstore bundle from GitHub's attestations
//! API. Parsing never fails: what does not parse is kept as evidence that there *is* a signature
//! which does not verify, so "signed but broken" stays distinguishable from "unsigned".

use sigstore::bundle::Bundle;

use crate::error::untrusted;

/// Where a signature was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum EvidenceSource {
    /// A layer of cosign's `sha256-<hex>.sig` tag.
    CosignTag,
    /// A Sigstore bundle attached as an OCI referrer (referrers API or tag schema).
    Referrer,
    /// A Sigstore bundle from GitHub's attestations API.
    Attestation,
}

/// One signature found somewhere; [`crate::verify`] says whether it holds.
#[derive(Debug, Clone)]
pub struct Evidence {
    pub(crate) source: EvidenceSource,
    pub(crate) content: Content,
}

/// What was found, as far as it parsed.
#[derive(Debug, Clone)]
pub(crate) enum Content {
    /// A cosign simple-signing layer and its annotations.
    Cosign(CosignSignature),
    /// A Sigstore bundle (any version the protobuf-specs parse).
    Bundle(Box<Bundle>),
    /// Something that claims to be a signature but cannot be read: why.
    Unreadable(String),
}

/// A layer of a cosign `.sig` manifest.
#[derive(Debug, Clone)]
pub(crate) struct CosignSignature {
    /// The layer blob: the simple-signing JSON that was signed.
    pub(crate) payload: Vec<u8>,
    /// `dev.cosignproject.cosign/signature`: base64 of the signature over `payload`.
    pub(crate) signature: Option<String>,
    /// `dev.sigstore.cosign/certificate`: the signing certificate (PEM).
    pub(crate) certificate: Option<String>,
    /// `dev.sigstore.cosign/bundle`: the Rekor bundle JSON (SET and logged entry).
    pub(crate) rekor_bundle: Option<String>,
}

impl Evidence {
    /// One entry of GitHub's attestations API (`attestations[].bundle`): a Sigstore bundle JSON.
    /// Never fails: a bundle that does not parse verifies to `is_signed`, not `is_verified`, with
    /// the parse error.
    pub fn from_bundle_json(bundle: &serde_json::Value) -> Evidence {
        Evidence {
            source: EvidenceSource::Attestation,
            content: parse_bundle_value(bundle),
        }
    }

    /// Where this signature was found.
    pub fn source(&self) -> EvidenceSource {
        self.source
    }

    pub(crate) fn bundle_bytes(source: EvidenceSource, bytes: &[u8]) -> Evidence {
        let content = match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(v) => parse_bundle_value(&v),
            Err(e) => {
                Content::Unreadable(format!("bundle is not JSON: {}", untrusted(&e.to_string())))
            }
        };
        Evidence { source, content }
    }

    pub(crate) fn unreadable(source: EvidenceSource, why: String) -> Evidence {
        Evidence {
            source,
            content: Content::Unreadable(why),
        }
    }

    pub(crate) fn cosign(signature: CosignSignature) -> Evidence {
        Evidence {
            source: EvidenceSource::CosignTag,
            content: Content::Cosign(signature),
        }
    }
}

fn parse_bundle_value(v: &serde_json::Value) -> Content {
    match serde_json::from_value::<Bundle>(v.clone()) {
        Ok(b)
            if b.media_type
                .starts_with("application/vnd.dev.sigstore.bundle") =>
        {
            Content::Bundle(Box::new(b))
        }
        Ok(b) => Content::Unreadable(format!(
            "bundle mediaType {:?} is not a Sigstore bundle",
            untrusted(&b.media_type)
        )),
        // Serde's messages quote the offending value: bounded like any text the signer chose.
        Err(e) => Content::Unreadable(format!(
            "bundle does not parse: {}",
            untrusted(&e.to_string())
        )),
    }
}
