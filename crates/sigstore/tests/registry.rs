//! The verifier against a real OCI registry (distribution 2.8, `scripts/test.sh` starts it) and
//! the test kit's Sigstore: nothing mocked but the public-good root.

use std::time::Duration;

use plumbline_sigstore::testkit::{TestSigstore, WorkflowIdentity};
use plumbline_sigstore::{
    verify, Error, Evidence, EvidenceSource, ImageRef, Registry, RegistryAuth, RegistryOptions,
    TrustRoot, Verification,
};

fn registry_host() -> String {
    std::env::var("PLUMB_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into())
}

fn registry() -> Registry {
    let mut opts = RegistryOptions::new(registry_host());
    opts.plain_http = true;
    opts.timeout = Duration::from_secs(10);
    Registry::new(opts).unwrap()
}

/// A repository name no other test (or earlier run) uses.
fn fresh_repo(test: &str) -> String {
    let nonce: u64 = rand::random();
    format!("plumbline-test/{test}-{nonce:016x}")
}

struct Image {
    repo: String,
    image: ImageRef,
}

async fn pushed_image(test: &str) -> Image {
    let repo = fresh_repo(test);
    let digest = TestSigstore::push_image(&registry_host(), &repo, "latest", test.as_bytes()).await;
    let image = ImageRef::new(&repo, &digest).unwrap();
    Image { repo, image }
}

async fn verified(trust: &TrustRoot, image: &ImageRef) -> Vec<Verification> {
    registry()
        .signatures(image, &RegistryAuth::Anonymous)
        .await
        .unwrap()
        .iter()
        .map(|e| verify(trust, image, e))
        .collect()
}

fn id() -> WorkflowIdentity {
    WorkflowIdentity::github("Octo-Org/app")
}

#[tokio::test]
async fn cosign_tag_signed_by_the_workflow_verifies_with_its_identity() {
    let sigstore = TestSigstore::new();
    let Image { repo, image } = pushed_image("cosign").await;
    sigstore
        .push_cosign_signature(&registry_host(), &repo, &image.digest, &image.digest, &id())
        .await;
    let results = verified(&sigstore.trust_root(), &image).await;
    assert_eq!(results.len(), 1, "{results:?}");
    let v = &results[0];
    assert!(v.is_signed && v.is_verified, "{v:?}");
    assert_eq!(v.source, EvidenceSource::CosignTag);
    assert_eq!(v.error, None);
    let cert = v.certificate.as_ref().unwrap();
    assert_eq!(
        cert.issuer.as_deref(),
        Some("https://token.actions.githubusercontent.com")
    );
    assert_eq!(
        cert.subject_alternative_name.as_deref(),
        Some("https://github.com/Octo-Org/app/.github/workflows/build.yml@refs/heads/main")
    );
    assert_eq!(
        cert.source_repository_uri.as_deref(),
        Some("https://github.com/Octo-Org/app")
    );
    assert_eq!(
        cert.source_repository_ref.as_deref(),
        Some("refs/heads/main")
    );
    assert_eq!(cert.runner_environment.as_deref(), Some("github-hosted"));
    assert_eq!(
        cert.build_signer_uri.as_deref(),
        Some("https://github.com/Octo-Org/app/.github/workflows/build.yml@refs/heads/main")
    );
    assert_eq!(v.statement, None);
}

#[tokio::test]
async fn referrer_bundle_verifies() {
    let sigstore = TestSigstore::new();
    let Image { repo, image } = pushed_image("referrer").await;
    sigstore
        .push_referrer_bundle(&registry_host(), &repo, &image.digest, &id())
        .await;
    let results = verified(&sigstore.trust_root(), &image).await;
    assert_eq!(results.len(), 1, "{results:?}");
    let v = &results[0];
    assert!(v.is_signed && v.is_verified, "{v:?}");
    assert_eq!(v.source, EvidenceSource::Referrer);
    let statement = v.statement.as_ref().unwrap();
    assert_eq!(
        statement.predicate_type,
        "https://sigstore.dev/cosign/sign/v1"
    );
    assert_eq!(
        v.certificate
            .as_ref()
            .unwrap()
            .source_repository_ref
            .as_deref(),
        Some("refs/heads/main")
    );
}

#[tokio::test]
async fn both_kinds_side_by_side_are_each_found() {
    let sigstore = TestSigstore::new();
    let Image { repo, image } = pushed_image("both").await;
    let host = registry_host();
    sigstore
        .push_cosign_signature(&host, &repo, &image.digest, &image.digest, &id())
        .await;
    sigstore
        .push_referrer_bundle(&host, &repo, &image.digest, &id())
        .await;
    sigstore
        .push_referrer_bundle(&host, &repo, &image.digest, &id())
        .await;
    let results = verified(&sigstore.trust_root(), &image).await;
    assert_eq!(results.len(), 3, "{results:?}");
    assert!(results.iter().all(|v| v.is_verified), "{results:?}");
}

#[tokio::test]
async fn attestation_bundle_verifies_with_its_statement() {
    let sigstore = TestSigstore::new();
    let image = ImageRef::new(
        "octo-org/app",
        "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    )
    .unwrap();
    let evidence = Evidence::from_bundle_json(&sigstore.attestation_bundle(&image.digest, &id()));
    assert_eq!(evidence.source(), EvidenceSource::Attestation);
    let v = verify(&sigstore.trust_root(), &image, &evidence);
    assert!(v.is_signed && v.is_verified, "{v:?}");
    let statement = v.statement.as_ref().unwrap();
    assert_eq!(statement.predicate_type, "https://slsa.dev/provenance/v1");
    let definition = &statement.predicate["buildDefinition"];
    assert_eq!(
        definition["buildType"],
        "https://actions.github.io/buildtypes/workflow/v1"
    );
    assert_eq!(
        definition["externalParameters"]["workflow"]["path"],
        ".github/workflows/build.yml"
    );
    assert_eq!(
        definition["internalParameters"]["github"]["runner_environment"],
        "github-hosted"
    );
    assert_eq!(
        v.certificate.as_ref().unwrap().issuer.as_deref(),
        Some("https://token.actions.githubusercontent.com")
    );

    // The same attestation does not vouch for another image.
    let other = ImageRef::new("octo-org/app", &format!("sha256:{}", "1".repeat(64))).unwrap();
    let v = verify(&sigstore.trust_root(), &other, &evidence);
    assert!(v.is_signed && !v.is_verified, "{v:?}");
    assert!(
        v.error.as_deref().unwrap().contains("digest mismatch"),
        "{v:?}"
    );
}

#[tokio::test]
async fn unsigned_image_has_no_evidence_and_no_error() {
    let Image { image, .. } = pushed_image("unsigned").await;
    let evidence = registry()
        .signatures(&image, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    assert!(evidence.is_empty(), "{evidence:?}");
}

#[tokio::test]
async fn signature_copied_from_another_digest_is_signed_not_verified() {
    let sigstore = TestSigstore::new();
    let Image { repo, image } = pushed_image("copied").await;
    let other = TestSigstore::push_image(&registry_host(), &repo, "other", b"other").await;
    sigstore
        .push_cosign_signature(&registry_host(), &repo, &image.digest, &other, &id())
        .await;
    let results = verified(&sigstore.trust_root(), &image).await;
    assert_eq!(results.len(), 1, "{results:?}");
    let v = &results[0];
    assert!(v.is_signed && !v.is_verified, "{v:?}");
    assert!(v.certificate.is_none());
    assert!(
        v.error.as_deref().unwrap().contains("digest mismatch"),
        "{v:?}"
    );
}

#[tokio::test]
async fn certificate_from_another_sigstore_is_not_trusted() {
    let ours = TestSigstore::new();
    let theirs = TestSigstore::new();
    let Image { repo, image } = pushed_image("untrusted").await;
    theirs
        .push_cosign_signature(&registry_host(), &repo, &image.digest, &image.digest, &id())
        .await;
    theirs
        .push_referrer_bundle(&registry_host(), &repo, &image.digest, &id())
        .await;
    let results = verified(&ours.trust_root(), &image).await;
    assert_eq!(results.len(), 2, "{results:?}");
    for v in &results {
        assert!(v.is_signed && !v.is_verified, "{v:?}");
        assert!(v.error.as_deref().unwrap().contains("not trusted"), "{v:?}");
    }
    // Nor under the public-good root.
    let public = TrustRoot::public_good().unwrap();
    for v in verified(&public, &image).await {
        assert!(v.is_signed && !v.is_verified, "{v:?}");
    }
}

fn attestation(sigstore: &TestSigstore, image: &ImageRef) -> serde_json::Value {
    sigstore.attestation_bundle(&image.digest, &id())
}

fn digest_image() -> ImageRef {
    ImageRef::new("octo-org/app", &format!("sha256:{}", "ab".repeat(32))).unwrap()
}

fn assert_not_verified(trust: &TrustRoot, bundle: &serde_json::Value, needle: &str) {
    let v = verify(trust, &digest_image(), &Evidence::from_bundle_json(bundle));
    assert!(v.is_signed && !v.is_verified, "{v:?}");
    let error = v.error.unwrap();
    assert!(error.contains(needle), "{error:?} lacks {needle:?}");
}

#[test]
fn tampered_set_is_not_verified() {
    let sigstore = TestSigstore::new();
    let mut bundle = attestation(&sigstore, &digest_image());
    let entry = &mut bundle["verificationMaterial"]["tlogEntries"][0];
    let set = entry["inclusionPromise"]["signedEntryTimestamp"]
        .as_str()
        .unwrap()
        .to_string();
    // Another valid-looking signature: the SET of a different entry.
    let other = attestation(&sigstore, &digest_image());
    let other_set = other["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"]
        ["signedEntryTimestamp"]
        .clone();
    assert_ne!(other_set.as_str().unwrap(), set);
    entry["inclusionPromise"]["signedEntryTimestamp"] = other_set;
    assert_not_verified(&sigstore.trust_root(), &bundle, "signed entry timestamp");

    // A changed integrated time breaks the SET too.
    let mut bundle = attestation(&sigstore, &digest_image());
    let entry = &mut bundle["verificationMaterial"]["tlogEntries"][0];
    let t: i64 = entry["integratedTime"].as_str().unwrap().parse().unwrap();
    entry["integratedTime"] = serde_json::json!((t + 1).to_string());
    assert_not_verified(&sigstore.trust_root(), &bundle, "signed entry timestamp");
}

#[test]
fn missing_set_or_tlog_entry_is_not_verified() {
    let sigstore = TestSigstore::new();
    let mut bundle = attestation(&sigstore, &digest_image());
    bundle["verificationMaterial"]["tlogEntries"] = serde_json::json!([]);
    assert_not_verified(&sigstore.trust_root(), &bundle, "transparency log entr");

    let mut bundle = attestation(&sigstore, &digest_image());
    bundle["verificationMaterial"]["tlogEntries"][0]
        .as_object_mut()
        .unwrap()
        .remove("inclusionPromise");
    assert_not_verified(&sigstore.trust_root(), &bundle, "signed entry timestamp");
}

#[test]
fn broken_inclusion_proof_is_not_verified() {
    let sigstore = TestSigstore::new();
    let mut bundle = attestation(&sigstore, &digest_image());
    let proof = &mut bundle["verificationMaterial"]["tlogEntries"][0]["inclusionProof"];
    let hashes = proof["hashes"].as_array_mut().unwrap();
    assert!(!hashes.is_empty());
    hashes.reverse();
    hashes.push(serde_json::json!(base64_of(&[7u8; 32])));
    assert_not_verified(&sigstore.trust_root(), &bundle, "inclusion proof");

    // A checkpoint signed by someone else.
    let mut bundle = attestation(&sigstore, &digest_image());
    let stranger = attestation(&TestSigstore::new(), &digest_image());
    bundle["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"] =
        stranger["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"].clone();
    assert_not_verified(&sigstore.trust_root(), &bundle, "inclusion proof");
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn logged_body_of_another_signature_is_not_verified() {
    let sigstore = TestSigstore::new();
    let mut bundle = attestation(&sigstore, &digest_image());
    let other = attestation(&sigstore, &digest_image());
    bundle["verificationMaterial"]["tlogEntries"] =
        other["verificationMaterial"]["tlogEntries"].clone();
    assert_not_verified(&sigstore.trust_root(), &bundle, "inconsistent");
}

#[test]
fn broken_bundle_json_is_signed_not_verified() {
    let sigstore = TestSigstore::new();
    for broken in [
        serde_json::json!({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "verificationMaterial": 7}),
        serde_json::json!("not a bundle"),
        serde_json::json!({}),
    ] {
        let v = verify(
            &sigstore.trust_root(),
            &digest_image(),
            &Evidence::from_bundle_json(&broken),
        );
        assert!(v.is_signed && !v.is_verified, "{v:?}");
        assert!(v.error.is_some());
        assert_eq!(v.source, EvidenceSource::Attestation);
    }
    // A tampered statement: the signature no longer covers it.
    let mut bundle = attestation(&sigstore, &digest_image());
    let payload = bundle["dsseEnvelope"]["payload"]
        .as_str()
        .unwrap()
        .to_string();
    let mut statement: serde_json::Value = {
        use base64::Engine as _;
        serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(&payload)
                .unwrap(),
        )
        .unwrap()
    };
    statement["predicate"]["buildDefinition"]["externalParameters"]["workflow"]["ref"] =
        "refs/heads/evil".into();
    bundle["dsseEnvelope"]["payload"] = base64_of(&serde_json::to_vec(&statement).unwrap()).into();
    assert_not_verified(&sigstore.trust_root(), &bundle, "signature");
}

#[test]
fn public_good_root_loads() {
    TrustRoot::public_good().unwrap();
}

#[test]
fn private_root_round_trips_and_garbage_is_refused() {
    let sigstore = TestSigstore::new();
    TrustRoot::from_trusted_root_json(&sigstore.trusted_root_json()).unwrap();
    assert!(TrustRoot::from_trusted_root_json(b"\x00garbage").is_err());
    assert!(TrustRoot::from_trusted_root_json(b"{}").is_err());
    let empty = br#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}"#;
    assert!(TrustRoot::from_trusted_root_json(empty).is_err());
}

#[test]
fn image_refs_are_strict() {
    let d = format!("sha256:{}", "0a".repeat(32));
    assert!(ImageRef::new("../x", &d).is_err());
    assert!(ImageRef::new("owner/../x", &d).is_err());
    assert!(ImageRef::new("owner/x", &d.to_uppercase()).is_err());
    assert!(ImageRef::new("owner/x", &format!("sha256:{}", "A".repeat(64))).is_err());
    assert!(ImageRef::new("owner/x", "sha256:0a0a").is_err());
    assert_eq!(ImageRef::new("Owner/X", &d).unwrap().repository, "owner/x");
}

#[tokio::test]
async fn unreachable_registry_is_an_error() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut opts = RegistryOptions::new(format!("127.0.0.1:{port}"));
    opts.plain_http = true;
    opts.timeout = Duration::from_secs(2);
    let registry = Registry::new(opts).unwrap();
    let image = ImageRef::new("octo-org/app", &format!("sha256:{}", "0a".repeat(32))).unwrap();
    let err = registry
        .signatures(&image, &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Request { .. }), "{err:?}");
}

#[tokio::test]
async fn oversized_manifest_is_an_error() {
    let sigstore = TestSigstore::new();
    let Image { repo, image } = pushed_image("oversize").await;
    sigstore
        .push_cosign_signature(&registry_host(), &repo, &image.digest, &image.digest, &id())
        .await;
    let mut opts = RegistryOptions::new(registry_host());
    opts.plain_http = true;
    opts.max_manifest_bytes = 64;
    let err = Registry::new(opts)
        .unwrap()
        .signatures(&image, &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err:?}");
}

#[tokio::test]
async fn signatures_are_capped() {
    let sigstore = TestSigstore::new();
    let Image { repo, image } = pushed_image("capped").await;
    for _ in 0..3 {
        sigstore
            .push_referrer_bundle(&registry_host(), &repo, &image.digest, &id())
            .await;
    }
    let mut opts = RegistryOptions::new(registry_host());
    opts.plain_http = true;
    opts.max_signatures = 2;
    let found = Registry::new(opts)
        .unwrap()
        .signatures(&image, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
}
