//! The verifier against a real OCI registry (distribution 2.8, `scripts/test.sh` starts it) and
//! the test kit's Sigstore: nothing mocked but the public-good root.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plumbline_sigstore::testkit::{TestSigstore, WorkflowIdentity};
use plumbline_sigstore::{
    verify, Error, Evidence, EvidenceSource, ImageRef, Registry, RegistryAuth, RegistryOptions,
    TrustRoot, Verification,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

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
async fn oversized_signature_manifest_is_signed_not_verified() {
    let sigstore = TestSigstore::new();
    let Image { repo, image } = pushed_image("oversize").await;
    sigstore
        .push_cosign_signature(&registry_host(), &repo, &image.digest, &image.digest, &id())
        .await;
    let mut opts = RegistryOptions::new(registry_host());
    opts.plain_http = true;
    opts.max_manifest_bytes = 64;
    let found = Registry::new(opts)
        .unwrap()
        .signatures(&image, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].source(), EvidenceSource::CosignTag);
    let v = verify(&sigstore.trust_root(), &image, &found[0]);
    assert!(v.is_signed && !v.is_verified, "{v:?}");
    assert!(v.error.unwrap().contains("larger than 64 bytes"));
}

#[tokio::test]
async fn oversized_signature_blobs_are_signed_not_verified() {
    let sigstore = TestSigstore::new();
    let Image { repo, image } = pushed_image("oversize-blob").await;
    sigstore
        .push_cosign_signature(&registry_host(), &repo, &image.digest, &image.digest, &id())
        .await;
    sigstore
        .push_referrer_bundle(&registry_host(), &repo, &image.digest, &id())
        .await;
    let mut opts = RegistryOptions::new(registry_host());
    opts.plain_http = true;
    opts.max_signature_bytes = 64;
    let found = Registry::new(opts)
        .unwrap()
        .signatures(&image, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    let results: Vec<Verification> = found
        .iter()
        .map(|e| verify(&sigstore.trust_root(), &image, e))
        .collect();
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results[0].source, EvidenceSource::CosignTag);
    assert_eq!(results[1].source, EvidenceSource::Referrer);
    for v in &results {
        assert!(v.is_signed && !v.is_verified, "{v:?}");
        assert!(
            v.error.as_deref().unwrap().contains("larger than 64 bytes"),
            "{v:?}"
        );
    }
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

// A registry whose content is hostile. distribution refuses to store most of it (manifests that
// do not parse, bytes under another digest, indexes naming what does not exist), so these
// tests serve it from a minimal HTTP server on loopback instead. Registry options naming it as
// `0.0.0.0:<port>` reach the same server (Linux routes the unspecified address locally) while the
// client treats the registry as not on loopback, as a real one.

/// One canned answer.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status: 200,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    fn redirect(location: &str) -> Reply {
        Reply {
            status: 302,
            headers: vec![("Location".into(), location.into())],
            body: Vec::new(),
        }
    }
}

/// What the server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    /// Request target (path and query).
    target: String,
    authorization: Option<String>,
}

#[derive(Clone, Default)]
struct MockState {
    /// By path (query ignored); anything else is 404.
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    /// When set, `/v2/` requests without `Authorization` are answered 401 with this challenge.
    challenge: Arc<Mutex<Option<String>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

struct Mock {
    port: u16,
    state: MockState,
}

impl Mock {
    async fn start() -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = MockState::default();
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        Mock { port, state }
    }

    fn route(&self, path: &str, reply: Reply) {
        self.state
            .routes
            .lock()
            .unwrap()
            .insert(path.to_string(), reply);
    }

    fn challenge(&self, challenge: &str) {
        *self.state.challenge.lock().unwrap() = Some(challenge.to_string());
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// A client for this server: on loopback (`127.0.0.1`) or, as far as the client can tell,
    /// not (`0.0.0.0`).
    fn registry(&self, loopback: bool, tune: impl FnOnce(&mut RegistryOptions)) -> Registry {
        let host = if loopback { "127.0.0.1" } else { "0.0.0.0" };
        let mut opts = RegistryOptions::new(format!("{host}:{}", self.port));
        opts.plain_http = true;
        opts.timeout = Duration::from_secs(5);
        tune(&mut opts);
        Registry::new(opts).unwrap()
    }
}

async fn serve(mut stream: tokio::net::TcpStream, state: MockState) {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&request).to_string();
    let target = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("/")
        .to_string();
    let authorization = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("authorization")
            .then(|| value.trim().to_string())
    });
    state.seen.lock().unwrap().push(Seen {
        target: target.clone(),
        authorization: authorization.clone(),
    });
    let path = target.split('?').next().unwrap_or("/");
    let challenge = state.challenge.lock().unwrap().clone();
    let reply = match challenge {
        Some(challenge) if authorization.is_none() && path.starts_with("/v2/") => Reply {
            status: 401,
            headers: vec![("WWW-Authenticate".into(), challenge)],
            body: Vec::new(),
        },
        _ => state
            .routes
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .unwrap_or(Reply {
                status: 404,
                headers: Vec::new(),
                body: b"{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\"}]}".to_vec(),
            }),
    };
    let mut out = format!(
        "HTTP/1.1 {} Mock\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&reply.body);
    // The client may hang up early (a body over its cap): nothing to do about it.
    let _ = stream.write_all(&bytes).await;
    let _ = stream.shutdown().await;
}

fn sha256_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn mock_image() -> ImageRef {
    ImageRef::new("octo-org/app", &sha256_of(b"the image")).unwrap()
}

const BUNDLE_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// A referrers index (API answer or tag schema) listing `digests` as Sigstore bundles.
fn referrers_index(digests: &[String]) -> Vec<u8> {
    let manifests: Vec<serde_json::Value> = digests
        .iter()
        .map(|d| {
            json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "size": 100,
                "digest": d,
                "artifactType": BUNDLE_TYPE,
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .unwrap()
}

fn referrers_path(image: &ImageRef) -> String {
    format!("/v2/{}/referrers/{}", image.repository, image.digest)
}

fn sig_path(image: &ImageRef) -> String {
    format!(
        "/v2/{}/manifests/sha256-{}.sig",
        image.repository,
        image.digest.trim_start_matches("sha256:")
    )
}

/// Serves `blobs` and a `.sig` manifest with one simple-signing layer per blob.
fn serve_cosign_layers(mock: &Mock, image: &ImageRef, blobs: &[Vec<u8>]) {
    let mut layers = Vec::new();
    for blob in blobs {
        let digest = sha256_of(blob);
        mock.route(
            &format!("/v2/{}/blobs/{digest}", image.repository),
            Reply::ok(blob.clone()),
        );
        layers.push(json!({
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "size": blob.len(),
            "digest": digest,
        }));
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2, "digest": sha256_of(b"{}")},
        "layers": layers,
    });
    mock.route(
        &sig_path(image),
        Reply::ok(serde_json::to_vec(&manifest).unwrap()),
    );
}

/// Each evidence, verified under a fresh test root: all must be signed, not verified, and say
/// `needle`.
fn assert_all_unreadable(found: &[Evidence], image: &ImageRef, needle: &str) {
    assert!(!found.is_empty());
    let trust = TestSigstore::new().trust_root();
    for e in found {
        let v = verify(&trust, image, e);
        assert!(v.is_signed && !v.is_verified, "{v:?}");
        let error = v.error.unwrap();
        assert!(error.contains(needle), "{error:?} lacks {needle:?}");
    }
}

#[tokio::test]
async fn signature_blobs_over_their_cap_are_signed_not_verified() {
    let mock = Mock::start().await;
    let image = mock_image();
    // 600 KiB is over the default 512 KiB signature cap; 5 MiB over the 4 MiB manifest cap too.
    serve_cosign_layers(&mock, &image, &[vec![b'a'; 600 << 10], vec![b'b'; 5 << 20]]);
    let bundle = vec![b'c'; 600 << 10];
    let bundle_digest = sha256_of(&bundle);
    let referrer = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": BUNDLE_TYPE,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2, "digest": sha256_of(b"{}")},
        "layers": [{"mediaType": BUNDLE_TYPE, "size": bundle.len(), "digest": bundle_digest}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1, "digest": image.digest},
    }))
    .unwrap();
    let referrer_digest = sha256_of(&referrer);
    mock.route(
        &referrers_path(&image),
        Reply::ok(referrers_index(std::slice::from_ref(&referrer_digest))),
    );
    mock.route(
        &format!("/v2/{}/manifests/{referrer_digest}", image.repository),
        Reply::ok(referrer),
    );
    mock.route(
        &format!("/v2/{}/blobs/{bundle_digest}", image.repository),
        Reply::ok(bundle),
    );
    let found = mock
        .registry(true, |_| {})
        .signatures(&image, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    let sources: Vec<EvidenceSource> = found.iter().map(Evidence::source).collect();
    assert_eq!(
        sources,
        [
            EvidenceSource::CosignTag,
            EvidenceSource::CosignTag,
            EvidenceSource::Referrer
        ]
    );
    assert_all_unreadable(&found, &image, "larger than 524288 bytes");
}

#[tokio::test]
async fn referrers_index_that_cannot_be_read_is_signed_not_verified() {
    let image = mock_image();
    let tag_schema = format!(
        "/v2/{}/manifests/sha256-{}",
        image.repository,
        image.digest.trim_start_matches("sha256:")
    );
    // From the referrers API, then from the tag schema (the API answering 404).
    for path in [referrers_path(&image), tag_schema.clone()] {
        let mock = Mock::start().await;
        mock.route(&path, Reply::ok(b"{\"manifests\": 7".to_vec()));
        let found = mock
            .registry(true, |_| {})
            .signatures(&image, &RegistryAuth::Anonymous)
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "{path}: {found:?}");
        assert_eq!(found[0].source(), EvidenceSource::Referrer);
        assert_all_unreadable(&found, &image, "referrers index does not parse");
    }
    // Over the manifest cap.
    let mock = Mock::start().await;
    mock.route(&tag_schema, Reply::ok(referrers_index(&[sha256_of(b"x")])));
    let found = mock
        .registry(true, |o| o.max_manifest_bytes = 64)
        .signatures(&image, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_all_unreadable(&found, &image, "referrers index is larger than 64 bytes");
}

#[tokio::test]
async fn referrer_manifest_that_cannot_be_read_is_signed_not_verified() {
    let mock = Mock::start().await;
    let image = mock_image();
    // Listed under one digest, served as other bytes.
    let listed = sha256_of(b"what the index names");
    // Matches its digest but is no manifest.
    let garbage = b"{\"schemaVersion\": \"two\"}".to_vec();
    let garbage_digest = sha256_of(&garbage);
    mock.route(
        &referrers_path(&image),
        Reply::ok(referrers_index(&[listed.clone(), garbage_digest.clone()])),
    );
    mock.route(
        &format!("/v2/{}/manifests/{listed}", image.repository),
        Reply::ok(b"something else".to_vec()),
    );
    mock.route(
        &format!("/v2/{}/manifests/{garbage_digest}", image.repository),
        Reply::ok(garbage),
    );
    let found = mock
        .registry(true, |_| {})
        .signatures(&image, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().all(|e| e.source() == EvidenceSource::Referrer));
    assert_all_unreadable(&found[..1], &image, "does not match its digest");
    assert_all_unreadable(&found[1..], &image, "does not parse");
}

#[tokio::test]
async fn request_budget_is_signed_not_verified() {
    let mock = Mock::start().await;
    let image = mock_image();
    mock.challenge(&format!(
        "Bearer realm=\"http://127.0.0.1:{}/token\",service=\"mock\"",
        mock.port
    ));
    mock.route("/token", Reply::ok(b"{\"token\":\"t\"}".to_vec()));
    // A hundred entries that all turn out missing: each costs a request, none is evidence.
    let missing: Vec<String> = (0..100)
        .map(|i| sha256_of(format!("missing {i}").as_bytes()))
        .collect();
    mock.route(
        &referrers_path(&image),
        Reply::ok(referrers_index(&missing)),
    );
    let found = mock
        .registry(true, |o| {
            o.max_signatures = 100;
            o.max_requests = 10;
        })
        .signatures(&image, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    let seen = mock.seen();
    // The challenge, the token fetch, the `.sig` tag, the referrers API, then manifests.
    assert_eq!(seen.len(), 10, "{seen:?}");
    assert_eq!(seen[1].target, "/token?service=mock");
    assert_eq!(seen[2].authorization.as_deref(), Some("Bearer t"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].source(), EvidenceSource::Referrer);
    assert_all_unreadable(&found, &image, "more than 10 registry requests");
}

#[tokio::test]
async fn referrer_entries_read_are_bounded_by_twice_the_signature_cap() {
    let mock = Mock::start().await;
    let image = mock_image();
    let missing: Vec<String> = (0..20)
        .map(|i| sha256_of(format!("missing {i}").as_bytes()))
        .collect();
    mock.route(
        &referrers_path(&image),
        Reply::ok(referrers_index(&missing)),
    );
    let found = mock
        .registry(true, |o| o.max_signatures = 2)
        .signatures(&image, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    // The `.sig` tag, the referrers API, then four of the twenty entries.
    let seen = mock.seen();
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_all_unreadable(&found, &image, "more than 4 candidate signatures");
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line
}

#[tokio::test]
async fn token_realm_inside_the_network_is_refused() {
    let image = mock_image();
    for realm in [
        // Plain http, and loopback.
        "http://127.0.0.1:{port}/token".to_string(),
        "https://127.0.0.1:{port}/token".to_string(),
        "https://169.254.169.254/latest/meta-data".to_string(),
        "https://10.0.0.1/token".to_string(),
        "https://localhost/token".to_string(),
        "https://[::ffff:7f00:1]/token".to_string(),
    ] {
        let mock = Mock::start().await;
        let realm = realm.replace("{port}", &mock.port.to_string());
        mock.challenge(&format!("Bearer realm=\"{realm}\",service=\"mock\""));
        mock.route("/token", Reply::ok(b"{\"token\":\"t\"}".to_vec()));
        let err = mock
            .registry(false, |o| o.timeout = Duration::from_secs(2))
            .signatures(&image, &RegistryAuth::Anonymous)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Auth(why) if why.contains("refused")),
            "{realm}: {err:?}"
        );
        assert_eq!(mock.seen().len(), 1, "{realm}: {:?}", mock.seen());
    }
}

#[tokio::test]
async fn token_realm_of_a_loopback_test_registry_is_asked() {
    let mock = Mock::start().await;
    let image = mock_image();
    mock.challenge(&format!(
        "Bearer realm=\"http://127.0.0.1:{}/token\",service=\"mock\"",
        mock.port
    ));
    mock.route("/token", Reply::ok(b"{\"token\":\"t\"}".to_vec()));
    let found = mock
        .registry(true, |_| {})
        .signatures(&image, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    assert!(found.is_empty(), "{found:?}");
    let seen = mock.seen();
    assert!(
        seen.iter().any(|s| s.target.starts_with("/token")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn redirects_go_only_to_https_outside_the_network() {
    let image = mock_image();
    let cases = [
        // A registry not on loopback: no plain http, no internal address.
        (false, "http://127.0.0.1:{port}/elsewhere", "refused"),
        (false, "https://10.0.0.1/elsewhere", "private"),
        (false, "https://[fe80::1]/elsewhere", "link-local"),
        // A loopback test registry: plain http to itself only.
        (true, "http://localhost:{port}/elsewhere", "refused"),
    ];
    for (loopback, location, needle) in cases {
        let mock = Mock::start().await;
        let location = location.replace("{port}", &mock.port.to_string());
        serve_cosign_layers(&mock, &image, &[b"payload".to_vec()]);
        mock.route("/elsewhere", Reply::ok(b"payload".to_vec()));
        let blob = format!("/v2/{}/blobs/{}", image.repository, sha256_of(b"payload"));
        mock.route(&blob, Reply::redirect(&location));
        let err = mock
            .registry(loopback, |o| o.timeout = Duration::from_secs(2))
            .signatures(&image, &RegistryAuth::Anonymous)
            .await
            .unwrap_err();
        let why = chain(&err);
        assert!(
            matches!(err, Error::Request { .. }) && why.contains(needle),
            "{location}: {why}"
        );
        assert!(
            !mock.seen().iter().any(|s| s.target == "/elsewhere"),
            "{location}"
        );
    }
}

#[tokio::test]
async fn redirects_to_the_same_loopback_host_are_followed_five_times() {
    let image = mock_image();
    let mock = Mock::start().await;
    serve_cosign_layers(&mock, &image, &[b"payload".to_vec()]);
    let blob = format!("/v2/{}/blobs/{}", image.repository, sha256_of(b"payload"));
    let hop = |i: usize| format!("http://127.0.0.1:{}/hop{i}", mock.port);
    mock.route(&blob, Reply::redirect(&hop(1)));
    for i in 1..5 {
        mock.route(&format!("/hop{i}"), Reply::redirect(&hop(i + 1)));
    }
    mock.route("/hop5", Reply::ok(b"payload".to_vec()));
    let found = mock
        .registry(true, |_| {})
        .signatures(&image, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    // Read, so it fails only for want of a certificate.
    let v = verify(&TestSigstore::new().trust_root(), &image, &found[0]);
    assert!(
        v.error.as_deref().unwrap().contains("no certificate"),
        "{v:?}"
    );

    // One more is too many.
    mock.route("/hop5", Reply::redirect(&hop(6)));
    mock.route("/hop6", Reply::ok(b"payload".to_vec()));
    let err = mock
        .registry(true, |_| {})
        .signatures(&image, &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    assert!(chain(&err).contains("more than 5 redirects"), "{err:?}");
}

/// What a hostile signer puts where the verifier quotes it: a megabyte, line breaks that would
/// start a fake log line, a terminal escape.
fn hostile_text() -> String {
    format!(
        "x{}\n2024-01-01T00:00:00Z INFO plumbline: verified\r\u{1b}[2K",
        "A".repeat(1 << 20)
    )
}

fn assert_bounded(v: &Verification) {
    assert!(v.is_signed && !v.is_verified, "{v:?}");
    let error = v.error.as_deref().unwrap();
    assert!(error.chars().count() <= 1000, "{} chars", error.len());
    assert!(!error.chars().any(char::is_control), "{error:?}");
    assert!(!error.contains("INFO plumbline: verified\r"), "{error:?}");
}

#[test]
fn hostile_text_in_verification_errors_is_bounded_and_on_one_line() {
    let sigstore = TestSigstore::new();
    let trust = sigstore.trust_root();
    let image = digest_image();

    // A DSSE payload type.
    let mut bundle = attestation(&sigstore, &image);
    bundle["dsseEnvelope"]["payloadType"] = hostile_text().into();
    let v = verify(&trust, &image, &Evidence::from_bundle_json(&bundle));
    assert_bounded(&v);
    assert!(v.error.as_deref().unwrap().contains("DSSE payload type"));

    // A message digest of a megabyte.
    let mut bundle = attestation(&sigstore, &image);
    let envelope = bundle
        .as_object_mut()
        .unwrap()
        .remove("dsseEnvelope")
        .unwrap();
    bundle["messageSignature"] = json!({
        "messageDigest": {"algorithm": "SHA2_256", "digest": base64_of(&vec![7u8; 1 << 20])},
        "signature": envelope["signatures"][0]["sig"],
    });
    let v = verify(&trust, &image, &Evidence::from_bundle_json(&bundle));
    assert_bounded(&v);
    assert!(v.error.as_deref().unwrap().contains("digest mismatch"));

    // A validly signed simple-signing payload: its `critical.type`, then the digest it names.
    let payload = json!({
        "critical": {
            "identity": {"docker-reference": "ghcr.io/octo-org/app"},
            "image": {"docker-manifest-digest": image.digest},
            "type": hostile_text(),
        },
    });
    let evidence = sigstore.cosign_evidence(&serde_json::to_vec(&payload).unwrap(), &id());
    let v = verify(&trust, &image, &evidence);
    assert_bounded(&v);
    assert!(v.error.as_deref().unwrap().contains("signed payload type"));

    let payload = json!({
        "critical": {
            "identity": {"docker-reference": "ghcr.io/octo-org/app"},
            "image": {"docker-manifest-digest": hostile_text()},
            "type": "cosign container image signature",
        },
    });
    let evidence = sigstore.cosign_evidence(&serde_json::to_vec(&payload).unwrap(), &id());
    let v = verify(&trust, &image, &evidence);
    assert_bounded(&v);
    let error = v.error.unwrap();
    assert!(error.contains("digest mismatch"), "{error:?}");
    // The image's own digest, after the cut value, is still there.
    assert!(error.ends_with(&image.digest), "{error:?}");
}
