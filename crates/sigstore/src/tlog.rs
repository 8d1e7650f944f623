//! The transparency-log checks sigstore-rs's bundle verifier leaves out.
//!
//! `sigstore::bundle::verify::Verifier` (0.15) checks that the logged body matches the signature
//! and certificate, but neither the Signed Entry Timestamp nor the inclusion proof (see the
//! `TODO(tnytown) ... sigstore-rs#285` lines in its `verifier.rs`). Both are done here with
//! sigstore-rs's public primitives: the SET with [`CosignVerificationKey`] over Rekor's canonical
//! `{body, integratedTime, logID, logIndex}` (RFC 8785 JSON), the inclusion proof with
//! [`sigstore::rekor::models::InclusionProof::verify`] (RFC 6962 Merkle path, the checkpoint's
//! signature, and the checkpoint matching the proof's root and size).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sigstore::crypto::{CosignVerificationKey, Signature};
use sigstore::rekor::models::log_entry::RekorInclusionProof;
use sigstore::rekor::models::InclusionProof;
use sigstore_protobuf_specs::dev::sigstore::rekor::v1::TransparencyLogEntry;

use crate::TrustRoot;

/// Checks the entry's SET (required) and inclusion proof (when present) against the Rekor keys
/// of `trust`. `Err` is a one-line reason.
pub(crate) fn verify_entry(trust: &TrustRoot, entry: &TransparencyLogEntry) -> Result<(), String> {
    let log_id = entry
        .log_id
        .as_ref()
        .map(|id| hex::encode(&id.key_id))
        .unwrap_or_default();
    let key = trust
        .rekor_key(&log_id, entry.integrated_time)
        .ok_or_else(|| {
            format!(
                "transparency log {log_id:?} is not trusted by the trust root (at integrated time {})",
                entry.integrated_time
            )
        })?;
    let key = CosignVerificationKey::try_from_der(&key.spki)
        .map_err(|e| format!("transparency log key does not load: {e}"))?;

    let set = entry
        .inclusion_promise
        .as_ref()
        .map(|p| p.signed_entry_timestamp.as_slice())
        .filter(|s| !s.is_empty())
        .ok_or("transparency log entry has no signed entry timestamp (inclusion promise)")?;
    let payload = serde_json::json!({
        "body": B64.encode(&entry.canonicalized_body),
        "integratedTime": entry.integrated_time,
        "logIndex": entry.log_index,
        "logID": log_id,
    });
    let canonical = serde_json_canonicalizer::to_vec(&payload)
        .map_err(|e| format!("cannot canonicalize the SET payload: {e}"))?;
    key.verify_signature(Signature::Raw(set), &canonical)
        .map_err(|e| format!("signed entry timestamp does not verify under the log's key: {e}"))?;

    if let Some(proof) = &entry.inclusion_proof {
        let api = RekorInclusionProof {
            hashes: proof.hashes.iter().map(hex::encode).collect(),
            log_index: proof.log_index,
            root_hash: hex::encode(&proof.root_hash),
            tree_size: u64::try_from(proof.tree_size)
                .map_err(|_| "inclusion proof has a negative tree size".to_string())?,
            checkpoint: proof
                .checkpoint
                .as_ref()
                .map(|c| c.envelope.clone())
                .unwrap_or_default(),
        };
        let proof = InclusionProof::try_from(&api)
            .map_err(|e| format!("inclusion proof does not parse: {e}"))?;
        proof
            .verify(&entry.canonicalized_body, &key)
            .map_err(|e| format!("inclusion proof does not verify: {e}"))?;
    }
    Ok(())
}
