//! `TrustRoot::from_tuf` against a TUF repository built here (test keys, the test kit's
//! `trusted_root.json` as target) and served from loopback by a minimal HTTP server: no network,
//! no registry.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use plumbline_sigstore::testkit::{TestSigstore, WorkflowIdentity};
use plumbline_sigstore::{
    verify, Error, Evidence, ImageRef, TrustRoot, TufError, TufSource, TufState,
};
use rcgen::{PublicKeyData as _, SigningKey as _};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha512};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An ECDSA P-256 TUF key, with its key id (sha256 of its canonical JSON).
struct Key {
    pair: rcgen::KeyPair,
    id: String,
}

impl Key {
    fn new() -> Key {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let id = hex::encode(Sha256::digest(canonical(&key_json(&pair))));
        Key { pair, id }
    }

    fn json(&self) -> Value {
        key_json(&self.pair)
    }
}

fn key_json(pair: &rcgen::KeyPair) -> Value {
    json!({
        "keytype": "ecdsa",
        "scheme": "ecdsa-sha2-nistp256",
        "keyval": {"public": public_key_pem(pair)},
    })
}

fn public_key_pem(pair: &rcgen::KeyPair) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(pair.subject_public_key_info());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

fn canonical(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut out, olpc_cjson::CanonicalFormatter::new());
    value.serialize(&mut ser).unwrap();
    out
}

/// `{"signed": ..., "signatures": [...]}` signed by `keys`.
fn sign(signed: &Value, keys: &[&Key]) -> Vec<u8> {
    let bytes = canonical(signed);
    let signatures: Vec<Value> = keys
        .iter()
        .map(|k| json!({"keyid": k.id, "sig": hex::encode(k.pair.sign(&bytes).unwrap())}))
        .collect();
    serde_json::to_vec_pretty(&json!({"signed": signed, "signatures": signatures})).unwrap()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn in_a_day() -> String {
    rfc3339(Utc::now() + chrono::Duration::days(1))
}

fn meta(bytes: &[u8], version: u64) -> Value {
    json!({
        "version": version,
        "length": bytes.len(),
        "hashes": {"sha256": hex::encode(Sha256::digest(bytes))},
    })
}

/// One repository: its keys and the files it serves (`metadata/...`, `targets/...`).
struct Repo {
    root_key: Key,
    timestamp_key: Key,
    snapshot_key: Key,
    targets_key: Key,
    /// `1.root.json`, the root a client pins.
    root_json: Vec<u8>,
    target_path: String,
    files: BTreeMap<String, Vec<u8>>,
    /// The version `set_timestamp` writes.
    timestamp_version: u64,
}

impl Repo {
    /// A consistent-snapshot repository whose one target is `trusted_root.json` = `target`.
    fn new(target: &[u8]) -> Repo {
        let mut repo = Repo {
            root_key: Key::new(),
            timestamp_key: Key::new(),
            snapshot_key: Key::new(),
            targets_key: Key::new(),
            root_json: Vec::new(),
            target_path: String::new(),
            files: BTreeMap::new(),
            timestamp_version: 1,
        };
        repo.root_json = sign(
            &repo.root_signed(1, &repo.root_key, &repo.timestamp_key),
            &[&repo.root_key],
        );
        repo.files
            .insert("metadata/1.root.json".into(), repo.root_json.clone());
        let targets = sign(
            &json!({
                "_type": "targets",
                "spec_version": "1.0.31",
                "version": 1,
                "expires": in_a_day(),
                "targets": {
                    "trusted_root.json": {
                        "length": target.len(),
                        "hashes": {
                            "sha256": hex::encode(Sha256::digest(target)),
                            "sha512": hex::encode(Sha512::digest(target)),
                        },
                    },
                },
            }),
            &[&repo.targets_key],
        );
        let snapshot = sign(
            &json!({
                "_type": "snapshot",
                "spec_version": "1.0.31",
                "version": 1,
                "expires": in_a_day(),
                "meta": {"targets.json": meta(&targets, 1)},
            }),
            &[&repo.snapshot_key],
        );
        repo.target_path = format!(
            "targets/{}.trusted_root.json",
            hex::encode(Sha256::digest(target))
        );
        repo.files.insert(repo.target_path.clone(), target.to_vec());
        repo.files.insert("metadata/1.targets.json".into(), targets);
        repo.files
            .insert("metadata/1.snapshot.json".into(), snapshot);
        repo.set_timestamp(&in_a_day(), None);
        repo
    }

    fn root_signed(&self, version: u64, root_key: &Key, timestamp_key: &Key) -> Value {
        let mut keys = serde_json::Map::new();
        for k in [
            root_key,
            timestamp_key,
            &self.snapshot_key,
            &self.targets_key,
        ] {
            keys.insert(k.id.clone(), k.json());
        }
        json!({
            "_type": "root",
            "spec_version": "1.0.31",
            "version": version,
            "expires": in_a_day(),
            "consistent_snapshot": true,
            "keys": keys,
            "roles": {
                "root": {"keyids": [root_key.id], "threshold": 1},
                "timestamp": {"keyids": [timestamp_key.id], "threshold": 1},
                "snapshot": {"keyids": [self.snapshot_key.id], "threshold": 1},
                "targets": {"keyids": [self.targets_key.id], "threshold": 1},
            },
        })
    }

    /// (Re)writes `timestamp.json` with this expiry, signed by `key` (the timestamp key if none).
    fn set_timestamp(&mut self, expires: &str, key: Option<&Key>) {
        let snapshot = &self.files["metadata/1.snapshot.json"];
        let timestamp = sign(
            &json!({
                "_type": "timestamp",
                "spec_version": "1.0.31",
                "version": self.timestamp_version,
                "expires": expires,
                "meta": {"snapshot.json": meta(snapshot, 1)},
            }),
            &[key.unwrap_or(&self.timestamp_key)],
        );
        self.files
            .insert("metadata/timestamp.json".into(), timestamp);
    }
}

/// A loopback HTTP/1.1 server of `files` (by path, without the leading `/`); 404 otherwise.
/// With `omit_length` the 200 answers have no Content-Length (the body ends at close).
async fn serve(
    files: BTreeMap<String, Vec<u8>>,
    omit_length: bool,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let files = Arc::new(files);
    let log = Arc::new(Mutex::new(Vec::new()));
    let requests = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let files = files.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let path = line
                    .split(' ')
                    .nth(1)
                    .unwrap_or("/")
                    .trim_start_matches('/')
                    .to_string();
                log.lock().unwrap().push(path.clone());
                let response = match files.get(&path) {
                    Some(body) if omit_length => {
                        let mut r = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
                        r.extend_from_slice(body);
                        r
                    }
                    Some(body) => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend_from_slice(body);
                        r
                    }
                    None => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = stream.write_all(&response).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, requests)
}

fn source(addr: SocketAddr, root_json: &[u8]) -> TufSource {
    TufSource {
        metadata_url: format!("http://{addr}/metadata"),
        targets_url: format!("http://{addr}/targets/"),
        root_json: root_json.to_vec(),
        timeout: Duration::from_secs(10),
        max_bytes: 1 << 20,
    }
}

async fn load(repo: &Repo) -> Result<TrustRoot, Error> {
    let (addr, _) = serve(repo.files.clone(), false).await;
    TrustRoot::from_tuf(&source(addr, &repo.root_json)).await
}

fn tuf_error(result: Result<TrustRoot, Error>) -> TufError {
    match result {
        Err(Error::Tuf(e)) => e,
        Err(other) => panic!("expected a TUF error, got {other}"),
        Ok(_) => panic!("expected a TUF error, got a trust root"),
    }
}

/// Does a fresh attestation of `signer` verify under `trust`?
fn verifies(trust: &TrustRoot, signer: &TestSigstore) -> bool {
    let digest = format!("sha256:{}", "ab".repeat(32));
    let image = ImageRef::new("octo-org/app", &digest).unwrap();
    let bundle = signer.attestation_bundle(&digest, &WorkflowIdentity::github("Octo-Org/app"));
    let v = verify(trust, &image, &Evidence::from_bundle_json(&bundle));
    assert!(v.is_signed);
    v.is_verified
}

#[tokio::test]
async fn refreshed_root_verifies_its_sigstore_and_no_other() {
    let sigstore = TestSigstore::new();
    let repo = Repo::new(&sigstore.trusted_root_json());
    let (addr, requests) = serve(repo.files.clone(), false).await;
    let trust = TrustRoot::from_tuf(&source(addr, &repo.root_json))
        .await
        .unwrap();
    assert!(verifies(&trust, &sigstore));
    assert!(!verifies(&trust, &TestSigstore::new()));
    // The consistent-snapshot names, in the client workflow's order.
    let requests = requests.lock().unwrap().clone();
    assert_eq!(
        requests,
        [
            "metadata/2.root.json",
            "metadata/timestamp.json",
            "metadata/1.snapshot.json",
            "metadata/1.targets.json",
            repo.target_path.as_str(),
        ]
    );
}

#[tokio::test]
async fn root_rotation_is_followed_and_must_be_signed_by_the_old_root() {
    let sigstore = TestSigstore::new();
    let mut repo = Repo::new(&sigstore.trusted_root_json());
    // Root v2 replaces the root and timestamp keys; the timestamp is signed by the new key only,
    // so it verifies only if the rotation was followed.
    let (new_root, new_timestamp) = (Key::new(), Key::new());
    let v2 = repo.root_signed(2, &new_root, &new_timestamp);
    repo.set_timestamp(&in_a_day(), Some(&new_timestamp));

    repo.files.insert(
        "metadata/2.root.json".into(),
        sign(&v2, &[&repo.root_key, &new_root]),
    );
    let trust = load(&repo).await.unwrap();
    assert!(verifies(&trust, &sigstore));

    // Without the old root's signature the rotation is refused.
    repo.files
        .insert("metadata/2.root.json".into(), sign(&v2, &[&new_root]));
    let err = tuf_error(load(&repo).await);
    assert!(
        matches!(&err, TufError::Signatures { file, valid: 0, threshold: 1, .. } if file == "2.root.json"),
        "{err}"
    );

    // Without its own new keys' signature too.
    repo.files
        .insert("metadata/2.root.json".into(), sign(&v2, &[&repo.root_key]));
    let err = tuf_error(load(&repo).await);
    assert!(
        matches!(&err, TufError::Signatures { file, .. } if file == "2.root.json"),
        "{err}"
    );

    // A file served as 2.root.json must be version 2.
    let v3 = repo.root_signed(3, &new_root, &new_timestamp);
    repo.files.insert(
        "metadata/2.root.json".into(),
        sign(&v3, &[&repo.root_key, &new_root]),
    );
    let err = tuf_error(load(&repo).await);
    assert!(err.to_string().contains("version 3 where 2"), "{err}");
}

#[tokio::test]
async fn tampered_target_is_refused() {
    let mut repo = Repo::new(&TestSigstore::new().trusted_root_json());
    let mut tampered = TestSigstore::new().trusted_root_json();
    tampered.truncate(repo.files[&repo.target_path].len());
    tampered.resize(repo.files[&repo.target_path].len(), b' ');
    repo.files.insert(repo.target_path.clone(), tampered);
    let err = tuf_error(load(&repo).await);
    assert!(
        matches!(&err, TufError::Mismatch { file, .. } if file == "trusted_root.json"),
        "{err}"
    );

    // A longer body is cut at the listed length.
    let mut longer = TestSigstore::new().trusted_root_json();
    longer.extend_from_slice(&[b' '; 4096]);
    repo.files.insert(repo.target_path.clone(), longer);
    let err = tuf_error(load(&repo).await);
    assert!(matches!(err, TufError::TooLarge { .. }), "{err}");
}

#[tokio::test]
async fn metadata_signed_by_a_key_outside_the_pinned_root_is_refused() {
    let mut repo = Repo::new(&TestSigstore::new().trusted_root_json());
    let rogue = Key::new();
    repo.set_timestamp(&in_a_day(), Some(&rogue));
    let err = tuf_error(load(&repo).await);
    assert!(
        matches!(&err, TufError::Signatures { file, role, valid: 0, threshold: 1 } if file == "timestamp.json" && role == "timestamp"),
        "{err}"
    );

    // A root whose one root key is not the pinned one does not stand in for it either.
    let other = Repo::new(&TestSigstore::new().trusted_root_json());
    repo.files.insert("metadata/2.root.json".into(), {
        let v2 = other.root_signed(2, &other.root_key, &rogue);
        sign(&v2, &[&other.root_key])
    });
    let err = tuf_error(load(&repo).await);
    assert!(
        matches!(&err, TufError::Signatures { file, .. } if file == "2.root.json"),
        "{err}"
    );
}

#[tokio::test]
async fn expired_timestamp_is_refused() {
    let mut repo = Repo::new(&TestSigstore::new().trusted_root_json());
    let expired = rfc3339(Utc::now() - chrono::Duration::minutes(1));
    repo.set_timestamp(&expired, None);
    let err = tuf_error(load(&repo).await);
    assert!(
        matches!(&err, TufError::Expired { file, .. } if file == "timestamp.json"),
        "{err}"
    );
}

#[tokio::test]
async fn server_down_and_oversized_bodies_are_errors() {
    let repo = Repo::new(&TestSigstore::new().trusted_root_json());

    // Nothing listens.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let started = Instant::now();
    let err = tuf_error(TrustRoot::from_tuf(&source(addr, &repo.root_json)).await);
    assert!(matches!(err, TufError::Request { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // Every file over the cap, with and without Content-Length.
    for omit_length in [false, true] {
        let (addr, _) = serve(repo.files.clone(), omit_length).await;
        let mut small = source(addr, &repo.root_json);
        small.max_bytes = 256;
        let err = tuf_error(TrustRoot::from_tuf(&small).await);
        assert!(
            matches!(&err, TufError::TooLarge { url, limit: 256 } if url.ends_with("timestamp.json")),
            "{err}"
        );
    }

    // Bad sources.
    let mut bad = source(addr, &repo.root_json);
    bad.metadata_url = "file:///etc".into();
    assert!(matches!(
        tuf_error(TrustRoot::from_tuf(&bad).await),
        TufError::Options(_)
    ));
    let mut bad = source(addr, &repo.root_json);
    bad.max_bytes = 0;
    assert!(matches!(
        tuf_error(TrustRoot::from_tuf(&bad).await),
        TufError::Options(_)
    ));
    let bad = source(addr, b"not json");
    assert!(matches!(
        tuf_error(TrustRoot::from_tuf(&bad).await),
        TufError::Json { .. }
    ));
}

#[tokio::test]
async fn a_verified_target_that_is_no_trust_root_fails_as_from_trusted_root_json() {
    let repo = Repo::new(br#"{"mediaType":"application/json"}"#);
    match load(&repo).await {
        Err(Error::TrustRoot(reason)) => assert!(reason.contains("mediaType"), "{reason}"),
        other => panic!("expected Error::TrustRoot, got {other:?}"),
    }
}

/// A refresh starts from what the last one verified: a mirror serving older (still unexpired)
/// metadata is refused rather than moving the root back.
#[tokio::test]
async fn older_metadata_than_the_last_refresh_is_refused() {
    let signer = TestSigstore::new();
    let mut repo = Repo::new(&signer.trusted_root_json());
    repo.timestamp_version = 2;
    repo.set_timestamp(&in_a_day(), None);
    let (addr, _) = serve(repo.files.clone(), false).await;
    let (root, state) =
        TrustRoot::from_tuf_after(&source(addr, &repo.root_json), &TufState::default())
            .await
            .expect("first refresh");
    assert!(verifies(&root, &signer));
    assert_eq!(state.targets_version(), 1);
    // The same metadata again is fine (nothing newer was published).
    TrustRoot::from_tuf_after(&source(addr, &repo.root_json), &state)
        .await
        .expect("same versions");
    repo.timestamp_version = 1;
    repo.set_timestamp(&in_a_day(), None);
    let (older, _) = serve(repo.files.clone(), false).await;
    match TrustRoot::from_tuf_after(&source(older, &repo.root_json), &state).await {
        Err(Error::Tuf(TufError::Rollback {
            seen: 2, got: 1, ..
        })) => {}
        Err(e) => panic!("expected a rollback refusal, got {e}"),
        Ok(_) => panic!("expected a rollback refusal, got a trust root"),
    }
}

/// Plain http is for a loopback test repository only, and nothing is requested otherwise.
#[tokio::test]
async fn plain_http_is_refused_off_loopback() {
    let src = TufSource {
        metadata_url: "http://tuf.example.com".into(),
        targets_url: "http://tuf.example.com/targets".into(),
        root_json: b"{}".to_vec(),
        timeout: Duration::from_secs(1),
        max_bytes: 1 << 20,
    };
    assert!(matches!(
        tuf_error(TrustRoot::from_tuf(&src).await),
        TufError::Options(_)
    ));
}
