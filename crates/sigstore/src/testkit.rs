//! A Sigstore for tests: a Fulcio-style CA, a CT log, a Rekor log, and image pushes.
//!
//! Produces what real cosign and GitHub produce, so the verifier is tested against the real
//! shapes: leaf certificates with Fulcio's extensions and an embedded SCT (signed over the
//! precertificate TBS, RFC 6962), cosign `.sig` tags (simple-signing layer, certificate, chain
//! and Rekor bundle annotations), v0.3 bundles with a DSSE in-toto statement, a hashedrekord or
//! dsse log entry with its SET and an inclusion proof under a signed checkpoint. Behind the
//! `testkit` feature; nothing that ships enables it. Helpers panic on failure (tests only).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::{Client, Reference};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
    SerialNumber, SigningKey, PKCS_ECDSA_P256_SHA256,
};
use reqwest::header::HeaderValue;
use serde_json::json;
use sha2::{Digest, Sha256};
use sigstore_protobuf_specs::dev::sigstore::bundle::v1::{
    bundle, verification_material, Bundle, VerificationMaterial,
};
use sigstore_protobuf_specs::dev::sigstore::common::v1::{LogId, X509Certificate};
use sigstore_protobuf_specs::dev::sigstore::rekor::v1::{
    Checkpoint, InclusionPromise, InclusionProof, KindVersion, TransparencyLogEntry,
};
use sigstore_protobuf_specs::io::intoto::{Envelope, Signature as DsseSignature};
use time::OffsetDateTime;
use x509_cert::der::{Any, Decode, Encode};

use crate::TrustRoot;

/// The GitHub Actions workflow a test certificate is issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowIdentity {
    /// `owner/repo`.
    pub repository: String,
    /// `refs/heads/main`.
    pub git_ref: String,
    /// `.github/workflows/build.yml`.
    pub workflow_path: String,
    /// `github-hosted`.
    pub runner_environment: String,
    /// `https://token.actions.githubusercontent.com`.
    pub issuer: String,
}

impl WorkflowIdentity {
    /// `repository`'s `build.yml` on `refs/heads/main`, on a GitHub-hosted runner.
    pub fn github(repository: &str) -> WorkflowIdentity {
        WorkflowIdentity {
            repository: repository.to_string(),
            git_ref: "refs/heads/main".into(),
            workflow_path: ".github/workflows/build.yml".into(),
            runner_environment: "github-hosted".into(),
            issuer: "https://token.actions.githubusercontent.com".into(),
        }
    }

    /// The certificate SAN: `https://github.com/{repository}/{workflow_path}@{git_ref}`.
    pub fn san(&self) -> String {
        format!(
            "https://github.com/{}/{}@{}",
            self.repository, self.workflow_path, self.git_ref
        )
    }
}

/// A private Sigstore: CA (root + intermediate), CT log key, Rekor key and an in-memory log.
pub struct TestSigstore {
    root_der: Vec<u8>,
    intermediate: Issuer<'static, KeyPair>,
    intermediate_der: Vec<u8>,
    ct_key: KeyPair,
    rekor_key: KeyPair,
    /// Leaf hashes of the log (RFC 6962), starting with a few unrelated entries.
    log: Mutex<Vec<[u8; 32]>>,
    created: i64,
}

impl Default for TestSigstore {
    fn default() -> Self {
        TestSigstore::new()
    }
}

const REKOR_ORIGIN: &str = "rekor.test.plumbline - 1193050959916656506";
const SCT_LIST_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 11129, 2, 4, 2];

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn offset(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(seconds).unwrap()
}

fn p256() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()
}

fn ca_params(name: &str, created: i64) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "plumbline.test");
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = offset(created - 86_400);
    params.not_after = offset(created + 10 * 365 * 86_400);
    params
}

/// DER TLV with a definite length.
fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0xff {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

fn fulcio_ext(last: u64, content: Vec<u8>) -> CustomExtension {
    CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 57264, 1, last], content)
}

fn utf8(s: &str) -> Vec<u8> {
    der_tlv(0x0c, s.as_bytes())
}

fn pem(der: &[u8]) -> String {
    x509_cert::der::pem::encode_string("CERTIFICATE", x509_cert::der::pem::LineEnding::LF, der)
        .unwrap()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn canonical(v: &serde_json::Value) -> Vec<u8> {
    serde_json_canonicalizer::to_vec(v).unwrap()
}

/// RFC 6962 Merkle tree hash over leaf hashes.
fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => sha256(b""),
        1 => leaves[0],
        n => {
            let k = split(n);
            node(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// RFC 6962 audit path for leaf `m`, leaf to root.
fn path(m: usize, leaves: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split(n);
    if m < k {
        let mut p = path(m, &leaves[..k]);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = path(m - k, &leaves[k..]);
        p.push(mth(&leaves[..k]));
        p
    }
}

/// The largest power of two smaller than `n` (n > 1).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn node(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(l);
    h.update(r);
    h.finalize().into()
}

fn leaf_hash(entry: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    h.finalize().into()
}

/// A leaf certificate and its key.
struct Leaf {
    key: KeyPair,
    der: Vec<u8>,
}

impl TestSigstore {
    /// Fresh keys each time: a second instance is a root nobody else trusts.
    pub fn new() -> TestSigstore {
        let created = now();
        let root_key = p256();
        let root_params = ca_params("plumbline-test-root", created);
        let root_der = root_params.self_signed(&root_key).unwrap().der().to_vec();
        let root = Issuer::new(root_params, root_key);
        let intermediate_key = p256();
        let mut intermediate_params = ca_params("plumbline-test-intermediate", created);
        intermediate_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        intermediate_params.use_authority_key_identifier_extension = true;
        let intermediate_der = intermediate_params
            .signed_by(&intermediate_key, &root)
            .unwrap()
            .der()
            .to_vec();
        let intermediate = Issuer::new(intermediate_params, intermediate_key);
        // A few unrelated entries, so inclusion proofs have a path.
        let log = (0..5u8).map(|i| leaf_hash(&[i; 16])).collect();
        TestSigstore {
            root_der,
            intermediate,
            intermediate_der,
            ct_key: p256(),
            rekor_key: p256(),
            log: Mutex::new(log),
            created,
        }
    }

    /// This Sigstore as a `trusted_root.json` (protobuf-specs `TrustedRoot`, proto JSON).
    pub fn trusted_root_json(&self) -> Vec<u8> {
        let start = OffsetDateTime::from_unix_timestamp(self.created - 86_400)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let log = |key: &KeyPair, url: &str| {
            let spki = key.subject_public_key_info();
            json!({
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": B64.encode(&spki),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": start},
                },
                "logId": {"keyId": B64.encode(sha256(&spki))},
            })
        };
        let root = json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(&self.rekor_key, "https://rekor.test.plumbline")],
            "certificateAuthorities": [{
                "subject": {"organization": "plumbline.test", "commonName": "plumbline-test"},
                "uri": "https://fulcio.test.plumbline",
                "certChain": {"certificates": [
                    {"rawBytes": B64.encode(&self.intermediate_der)},
                    {"rawBytes": B64.encode(&self.root_der)},
                ]},
                "validFor": {"start": start},
            }],
            "ctlogs": [log(&self.ct_key, "https://ctfe.test.plumbline/test")],
        });
        serde_json::to_vec_pretty(&root).unwrap()
    }

    /// This Sigstore as a [`TrustRoot`].
    pub fn trust_root(&self) -> TrustRoot {
        TrustRoot::from_trusted_root_json(&self.trusted_root_json()).unwrap()
    }

    /// A Fulcio-style leaf for `id`: Fulcio's extensions, SAN URI, and an embedded SCT.
    fn issue_leaf(&self, id: &WorkflowIdentity) -> Leaf {
        let key = p256();
        let t = now();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(id.san().try_into().unwrap())];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        params.use_authority_key_identifier_extension = true;
        params.not_before = offset(t - 60);
        params.not_after = offset(t + 600);
        let serial: [u8; 16] = rand::random();
        let mut serial = serial.to_vec();
        serial[0] &= 0x7f;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let repo_url = format!("https://github.com/{}", id.repository);
        let signer = format!(
            "https://github.com/{}/{}@{}",
            id.repository, id.workflow_path, id.git_ref
        );
        let sha = hex::encode(sha256(id.san().as_bytes()))[..40].to_string();
        params.custom_extensions = vec![
            fulcio_ext(1, id.issuer.as_bytes().to_vec()),
            fulcio_ext(2, b"push".to_vec()),
            fulcio_ext(3, sha.as_bytes().to_vec()),
            fulcio_ext(4, b"build".to_vec()),
            fulcio_ext(5, id.repository.as_bytes().to_vec()),
            fulcio_ext(6, id.git_ref.as_bytes().to_vec()),
            fulcio_ext(8, utf8(&id.issuer)),
            fulcio_ext(9, utf8(&signer)),
            fulcio_ext(10, utf8(&sha)),
            fulcio_ext(11, utf8(&id.runner_environment)),
            fulcio_ext(12, utf8(&repo_url)),
            fulcio_ext(13, utf8(&sha)),
            fulcio_ext(14, utf8(&id.git_ref)),
            fulcio_ext(15, utf8("1")),
            // Fulcio's OID list: 16 owner URI, 18 build config URI (the run's top-level
            // workflow: the signer itself, no reusable workflow here), 19 its digest.
            fulcio_ext(
                16,
                utf8(&format!(
                    "https://github.com/{}",
                    id.repository.split('/').next().unwrap_or_default()
                )),
            ),
            fulcio_ext(17, utf8("1")),
            fulcio_ext(18, utf8(&signer)),
            fulcio_ext(19, utf8(&sha)),
            fulcio_ext(20, utf8("push")),
            fulcio_ext(
                21,
                utf8(&format!(
                    "https://github.com/{}/actions/runs/1/attempts/1",
                    id.repository
                )),
            ),
            fulcio_ext(22, utf8("public")),
        ];

        // The precertificate TBS: this certificate without the SCT list (RFC 6962 3.2).
        let precert = params.signed_by(&key, &self.intermediate).unwrap();
        let fields = Vec::<Any>::from_der(precert.der()).unwrap();
        let tbs = fields[0].to_der().unwrap();
        let issuer_key_hash = sha256(&self.intermediate.key().subject_public_key_info());
        let timestamp = (t as u64) * 1000;
        let mut signed = vec![0u8, 0u8];
        signed.extend(timestamp.to_be_bytes());
        signed.extend(1u16.to_be_bytes());
        signed.extend(issuer_key_hash);
        signed.extend(&(tbs.len() as u32).to_be_bytes()[1..]);
        signed.extend(&tbs);
        signed.extend(0u16.to_be_bytes());
        let sct_signature = self.ct_key.sign(&signed).unwrap();
        let mut sct = vec![0u8];
        sct.extend(sha256(&self.ct_key.subject_public_key_info()));
        sct.extend(timestamp.to_be_bytes());
        sct.extend(0u16.to_be_bytes());
        sct.extend([4u8, 3u8]);
        sct.extend((sct_signature.len() as u16).to_be_bytes());
        sct.extend(&sct_signature);
        let mut list = ((sct.len() + 2) as u16).to_be_bytes().to_vec();
        list.extend((sct.len() as u16).to_be_bytes());
        list.extend(&sct);
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                SCT_LIST_OID,
                der_tlv(0x04, &list),
            ));
        let der = params
            .signed_by(&key, &self.intermediate)
            .unwrap()
            .der()
            .to_vec();
        Leaf { key, der }
    }

    /// Appends `body` to the log: the entry with its SET and an inclusion proof under a signed
    /// checkpoint.
    fn log_entry(&self, body: &serde_json::Value) -> TransparencyLogEntry {
        let body = canonical(body);
        let (index, proof_hashes, root, size) = {
            let mut log = self.log.lock().unwrap();
            log.push(leaf_hash(&body));
            let index = log.len() - 1;
            (index, path(index, &log), mth(&log), log.len())
        };
        let integrated_time = now();
        let log_id = sha256(&self.rekor_key.subject_public_key_info());
        let set_payload = json!({
            "body": B64.encode(&body),
            "integratedTime": integrated_time,
            "logIndex": index as i64,
            "logID": hex::encode(log_id),
        });
        let set = self.rekor_key.sign(&canonical(&set_payload)).unwrap();
        let note = format!("{REKOR_ORIGIN}\n{size}\n{}\n", B64.encode(root));
        let note_signature = self.rekor_key.sign(note.as_bytes()).unwrap();
        let mut hinted = log_id[..4].to_vec();
        hinted.extend(note_signature);
        let checkpoint = format!(
            "{note}\n\u{2014} rekor.test.plumbline {}\n",
            B64.encode(hinted)
        );
        let kind = serde_json::from_slice::<serde_json::Value>(&body).unwrap();
        TransparencyLogEntry {
            log_index: index as i64,
            log_id: Some(LogId {
                key_id: log_id.to_vec(),
            }),
            kind_version: Some(KindVersion {
                kind: kind["kind"].as_str().unwrap().to_string(),
                version: kind["apiVersion"].as_str().unwrap().to_string(),
            }),
            integrated_time,
            inclusion_promise: Some(InclusionPromise {
                signed_entry_timestamp: set,
            }),
            inclusion_proof: Some(InclusionProof {
                log_index: index as i64,
                root_hash: root.to_vec(),
                tree_size: size as i64,
                hashes: proof_hashes.iter().map(|h| h.to_vec()).collect(),
                checkpoint: Some(Checkpoint {
                    envelope: checkpoint,
                }),
            }),
            canonicalized_body: body,
        }
    }

    /// A v0.3 bundle: `statement` in a DSSE envelope signed by a leaf for `id`, logged as a
    /// `dsse` entry.
    fn dsse_bundle(&self, statement: &serde_json::Value, id: &WorkflowIdentity) -> Bundle {
        let payload_type = "application/vnd.in-toto+json";
        let payload = serde_json::to_vec(statement).unwrap();
        let mut pae = format!(
            "DSSEv1 {} {payload_type} {} ",
            payload_type.len(),
            payload.len()
        )
        .into_bytes();
        pae.extend(&payload);
        let leaf = self.issue_leaf(id);
        let signature = leaf.key.sign(&pae).unwrap();
        let envelope = Envelope {
            payload: payload.clone(),
            payload_type: payload_type.into(),
            signatures: vec![DsseSignature {
                sig: signature.clone(),
                keyid: String::new(),
            }],
        };
        let envelope_json = serde_json::to_vec(&envelope).unwrap();
        let body = json!({
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": hex::encode(sha256(&envelope_json))},
                "payloadHash": {"algorithm": "sha256", "value": hex::encode(sha256(&payload))},
                "signatures": [{
                    "signature": B64.encode(&signature),
                    "verifier": B64.encode(pem(&leaf.der)),
                }],
            },
        });
        let entry = self.log_entry(&body);
        Bundle {
            media_type: "application/vnd.dev.sigstore.bundle.v0.3+json".into(),
            verification_material: Some(VerificationMaterial {
                content: Some(verification_material::Content::Certificate(
                    X509Certificate {
                        raw_bytes: leaf.der,
                    },
                )),
                tlog_entries: vec![entry],
                timestamp_verification_data: None,
            }),
            content: Some(bundle::Content::DsseEnvelope(envelope)),
        }
    }

    /// What GitHub's attestations API holds for `subject_digest`: a v0.3 bundle with a DSSE
    /// in-toto statement v1 carrying a SLSA provenance v1 predicate of the GitHub workflow.
    pub fn attestation_bundle(
        &self,
        subject_digest: &str,
        id: &WorkflowIdentity,
    ) -> serde_json::Value {
        let hex = subject_digest.trim_start_matches("sha256:");
        let statement = json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{
                "name": format!("ghcr.io/{}", id.repository.to_ascii_lowercase()),
                "digest": {"sha256": hex},
            }],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {
                "buildDefinition": {
                    "buildType": "https://actions.github.io/buildtypes/workflow/v1",
                    "externalParameters": {
                        "workflow": {
                            "ref": id.git_ref,
                            "repository": format!("https://github.com/{}", id.repository),
                            "path": id.workflow_path,
                        }
                    },
                    "internalParameters": {
                        "github": {
                            "event_name": "push",
                            "repository_id": "1",
                            "repository_owner_id": "1",
                            "runner_environment": id.runner_environment,
                        }
                    },
                    "resolvedDependencies": [{
                        "uri": format!("git+https://github.com/{}@{}", id.repository, id.git_ref),
                        "digest": {"gitCommit": "0".repeat(40)},
                    }],
                },
                "runDetails": {
                    "builder": {
                        "id": format!("https://github.com/{}/{}@{}", id.repository, id.workflow_path, id.git_ref),
                    },
                    "metadata": {
                        "invocationId": format!("https://github.com/{}/actions/runs/1/attempts/1", id.repository),
                    },
                },
            },
        });
        serde_json::to_value(self.dsse_bundle(&statement, id)).unwrap()
    }

    /// A cosign `sha256-<hex>.sig` tag for `image_digest` whose simple-signing payload names
    /// `payload_digest` (normally the same; another digest makes a copied signature).
    pub async fn push_cosign_signature(
        &self,
        registry: &str,
        repository: &str,
        image_digest: &str,
        payload_digest: &str,
        id: &WorkflowIdentity,
    ) {
        let payload = serde_json::to_vec(&json!({
            "critical": {
                "identity": {"docker-reference": format!("{registry}/{repository}")},
                "image": {"docker-manifest-digest": payload_digest},
                "type": "cosign container image signature",
            },
            "optional": null,
        }))
        .unwrap();
        let annotations = self.cosign_annotations(&payload, id);
        let client = client();
        let hex = image_digest.trim_start_matches("sha256:");
        let tag = format!("sha256-{hex}.sig");
        let reference = Reference::with_tag(registry.into(), repository.into(), tag);
        let config = br#"{"architecture":"","config":{},"created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let config_digest = push_blob(&client, &reference, config).await;
        let layer_digest = push_blob(&client, &reference, &payload).await;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": config_digest},
            "layers": [{
                "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                "size": payload.len(),
                "digest": layer_digest,
                "annotations": annotations,
            }],
        });
        push_manifest(&client, &reference, &manifest).await;
    }

    /// A cosign `.sig` layer over any `payload` (a hostile repository signs what it likes), as
    /// the evidence `Registry::signatures` would return for it.
    pub fn cosign_evidence(&self, payload: &[u8], id: &WorkflowIdentity) -> crate::Evidence {
        let annotations = self.cosign_annotations(payload, id);
        let annotation = |key: &str| annotations[key].as_str().map(str::to_string);
        crate::Evidence::cosign(crate::evidence::CosignSignature {
            payload: payload.to_vec(),
            signature: annotation("dev.cosignproject.cosign/signature"),
            certificate: annotation("dev.sigstore.cosign/certificate"),
            rekor_bundle: annotation("dev.sigstore.cosign/bundle"),
        })
    }

    /// The annotations of a cosign layer signing `payload`: signature, certificate, chain and
    /// Rekor bundle (the payload logged as a hashedrekord entry).
    fn cosign_annotations(&self, payload: &[u8], id: &WorkflowIdentity) -> serde_json::Value {
        let leaf = self.issue_leaf(id);
        let signature = leaf.key.sign(payload).unwrap();
        let certificate = pem(&leaf.der);
        let body = json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hex::encode(sha256(payload))}},
                "signature": {
                    "content": B64.encode(&signature),
                    "publicKey": {"content": B64.encode(&certificate)},
                },
            },
        });
        let entry = self.log_entry(&body);
        let rekor_bundle = json!({
            "SignedEntryTimestamp": B64.encode(&entry.inclusion_promise.as_ref().unwrap().signed_entry_timestamp),
            "Payload": {
                "body": B64.encode(&entry.canonicalized_body),
                "integratedTime": entry.integrated_time,
                "logIndex": entry.log_index,
                "logID": hex::encode(&entry.log_id.as_ref().unwrap().key_id),
            },
        });
        let chain = format!("{}{}", pem(&self.intermediate_der), pem(&self.root_der));
        json!({
            "dev.cosignproject.cosign/signature": B64.encode(&signature),
            "dev.sigstore.cosign/certificate": certificate,
            "dev.sigstore.cosign/chain": chain,
            "dev.sigstore.cosign/bundle": rekor_bundle.to_string(),
        })
    }

    /// An OCI 1.1 referrer of `image_digest` holding a v0.3 bundle (cosign's new bundle format:
    /// DSSE, predicate `https://sigstore.dev/cosign/sign/v1`), listed in the referrers tag schema
    /// index `sha256-<hex>` (registry 2.8 has no referrers API).
    pub async fn push_referrer_bundle(
        &self,
        registry: &str,
        repository: &str,
        image_digest: &str,
        id: &WorkflowIdentity,
    ) {
        let statement = json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{
                "name": format!("{registry}/{repository}"),
                "digest": {"sha256": image_digest.trim_start_matches("sha256:")},
            }],
            "predicateType": "https://sigstore.dev/cosign/sign/v1",
            "predicate": {},
        });
        let bundle = serde_json::to_vec(&self.dsse_bundle(&statement, id)).unwrap();
        push_referrer(registry, repository, image_digest, &bundle).await;
    }

    /// Pushes a minimal OCI image (config + one layer from `seed`) tagged `tag`; its digest.
    pub async fn push_image(registry: &str, repository: &str, tag: &str, seed: &[u8]) -> String {
        let client = client();
        let reference = Reference::with_tag(registry.into(), repository.into(), tag.into());
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"seed": hex::encode(sha256(seed))}},
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", hex::encode(sha256(seed)))]},
        }))
        .unwrap();
        let config_digest = push_blob(&client, &reference, &config).await;
        let layer_digest = push_blob(&client, &reference, seed).await;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": config_digest},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": seed.len(), "digest": layer_digest}],
        });
        push_manifest(&client, &reference, &manifest).await
    }

    /// Tags the manifest `digest` of `repository` as `tag` too.
    pub async fn add_tag(registry: &str, repository: &str, digest: &str, tag: &str) {
        let url = format!("http://{registry}/v2/{repository}/manifests/{digest}");
        let http = reqwest::Client::new();
        let response = http
            .get(&url)
            .header(
                "Accept",
                "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
            )
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "GET {url}: {}",
            response.status()
        );
        let content_type =
            response
                .headers()
                .get("content-type")
                .cloned()
                .unwrap_or(HeaderValue::from_static(
                    "application/vnd.oci.image.manifest.v1+json",
                ));
        let body = response.bytes().await.unwrap();
        let reference = Reference::with_tag(registry.into(), repository.into(), tag.into());
        client()
            .push_manifest_raw(&reference, body, content_type)
            .await
            .unwrap();
    }
}

/// Pushes `bundle` as a Sigstore-bundle referrer of `image_digest` and lists it in the
/// referrers tag schema index.
pub async fn push_referrer(registry: &str, repository: &str, image_digest: &str, bundle: &[u8]) {
    let client = client();
    let hex = image_digest.trim_start_matches("sha256:");
    let index_tag = format!("sha256-{hex}");
    let reference = Reference::with_tag(registry.into(), repository.into(), index_tag.clone());
    let empty = b"{}";
    let empty_digest = push_blob(&client, &reference, empty).await;
    let bundle_digest = push_blob(&client, &reference, bundle).await;
    let bundle_type = "application/vnd.dev.sigstore.bundle.v0.3+json";
    let image_size = manifest_size(registry, repository, image_digest).await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": bundle_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2, "digest": empty_digest},
        "layers": [{"mediaType": bundle_type, "size": bundle.len(), "digest": bundle_digest}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": image_size, "digest": image_digest},
        "annotations": {"dev.sigstore.bundle.content": "dsse-envelope", "dev.sigstore.bundle.predicateType": "https://sigstore.dev/cosign/sign/v1"},
    });
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = format!("sha256:{}", hex::encode(sha256(&manifest_bytes)));
    let by_digest =
        Reference::with_digest(registry.into(), repository.into(), manifest_digest.clone());
    client
        .push_manifest_raw(
            &by_digest,
            manifest_bytes.clone(),
            HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json"),
        )
        .await
        .unwrap();
    // The tag schema: the index at `sha256-<hex>`, with this referrer appended.
    let url = format!("http://{registry}/v2/{repository}/manifests/{index_tag}");
    let existing = reqwest::Client::new()
        .get(&url)
        .header("Accept", "application/vnd.oci.image.index.v1+json")
        .send()
        .await
        .unwrap();
    let mut index = if existing.status().is_success() {
        serde_json::from_slice(&existing.bytes().await.unwrap()).unwrap()
    } else {
        json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []})
    };
    index["manifests"].as_array_mut().unwrap().push(json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "size": manifest_bytes.len(),
        "digest": manifest_digest,
        "artifactType": bundle_type,
    }));
    client
        .push_manifest_raw(
            &reference,
            serde_json::to_vec(&index).unwrap(),
            HeaderValue::from_static("application/vnd.oci.image.index.v1+json"),
        )
        .await
        .unwrap();
}

async fn manifest_size(registry: &str, repository: &str, digest: &str) -> usize {
    let url = format!("http://{registry}/v2/{repository}/manifests/{digest}");
    let response = reqwest::Client::new()
        .get(&url)
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    response.bytes().await.map(|b| b.len()).unwrap_or_default()
}

fn client() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    })
}

async fn push_blob(client: &Client, reference: &Reference, data: &[u8]) -> String {
    let digest = format!("sha256:{}", hex::encode(sha256(data)));
    client
        .push_blob(reference, data.to_vec(), &digest)
        .await
        .unwrap();
    digest
}

async fn push_manifest(
    client: &Client,
    reference: &Reference,
    manifest: &serde_json::Value,
) -> String {
    let bytes = serde_json::to_vec(manifest).unwrap();
    let digest = format!("sha256:{}", hex::encode(sha256(&bytes)));
    client
        .push_manifest_raw(
            reference,
            bytes,
            HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json"),
        )
        .await
        .unwrap();
    digest
}
