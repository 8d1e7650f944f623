//! Providers: a token given to the API is stored sealed, never returned, and re-sealed when
//! the key rotates; an installation belongs to one project. Against the real service and
//! Postgres.

use crate::common;

use plumbline_proto::v1::control_service_client::ControlServiceClient;
use plumbline_proto::v1::*;
use plumbline_runtime::sealed::{Sealed, Sealer};
use plumbline_store::testing::TestDatabase;
use prost::Message as _;
use secrecy::ExposeSecret as _;
use tonic::Code;

const K1: &str = "0101010101010101010101010101010101010101010101010101010101010101";
const K2: &str = "0202020202020202020202020202020202020202020202020202020202020202";
const TOKEN: &str = "ghp_supersecret_token_value_0123";

#[tokio::test]
async fn tokens_are_stored_sealed_never_returned_and_resealed_on_rotation() {
    let db = TestDatabase::new().await;
    let dir = tempfile::tempdir().expect("tmp");
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("first {K1}\n")).expect("keys");
    let base = common::local(&db.url);
    let mut with_keys = base.clone();
    with_keys.service.credentials_key_file = Some(keys.clone());
    let served = common::Served::start(with_keys).await;
    let channel = served.channel.clone();
    let mut c = ControlServiceClient::new(channel);
    c.create_provider(CreateProviderRequest {
        project: String::new(),
        name: "gh".into(),
        installation_id: 0,
        token: TOKEN.into(),
    })
    .await
    .expect("token provider");
    c.create_provider(CreateProviderRequest {
        project: String::new(),
        name: "app".into(),
        installation_id: 42,
        token: String::new(),
    })
    .await
    .expect("installation provider");
    for (installation_id, token) in [(0, ""), (7, TOKEN)] {
        let bad = c
            .create_provider(CreateProviderRequest {
                project: String::new(),
                name: "bad".into(),
                installation_id,
                token: token.into(),
            })
            .await
            .expect_err("exactly one");
        assert_eq!(bad.code(), Code::InvalidArgument);
    }
    // An installation belongs to one project.
    c.create_project(CreateProjectRequest {
        project: "beta".into(),
    })
    .await
    .expect("project");
    let taken = c
        .create_provider(CreateProviderRequest {
            project: "beta".into(),
            name: "app".into(),
            installation_id: 42,
            token: String::new(),
        })
        .await
        .expect_err("installation taken");
    assert_eq!(taken.code(), Code::AlreadyExists);

    // Stored sealed; listed without it.
    let store = plumbline_store::Store::connect(&db.url, 1).expect("store");
    let stored = store
        .pats_sealed_with_other_keys("none")
        .await
        .expect("stored");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].sealed.key_id, "first");
    assert!(!stored[0]
        .sealed
        .ciphertext
        .windows(TOKEN.len())
        .any(|w| w == TOKEN.as_bytes()));
    let listed = c
        .list_providers(ListProvidersRequest {
            project: String::new(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.providers.len(), 2);
    let bytes = listed.encode_to_vec();
    assert!(!bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()));
    let gh = listed
        .providers
        .iter()
        .find(|p| p.name == "gh")
        .expect("gh");
    assert_eq!(
        (gh.kind.as_str(), gh.key_id.as_str()),
        ("github-pat", "first")
    );

    // Rotation: a new first key; every token re-sealed with it; the old key can then go.
    std::fs::write(&keys, format!("second {K2}\nfirst {K1}\n")).expect("keys");
    let rotated = c
        .rotate_credentials_key(RotateCredentialsKeyRequest {})
        .await
        .expect("rotate")
        .into_inner();
    assert_eq!((rotated.resealed, rotated.key_id.as_str()), (1, "second"));
    let again = c
        .rotate_credentials_key(RotateCredentialsKeyRequest {})
        .await
        .expect("rotate again")
        .into_inner();
    assert_eq!(again.resealed, 0, "nothing left to re-seal");
    std::fs::write(&keys, format!("second {K2}\n")).expect("keys");
    let row = store
        .pats_sealed_with_other_keys("none")
        .await
        .expect("stored")
        .remove(0);
    let sealed = Sealed {
        key_id: row.sealed.key_id.clone(),
        nonce: row.sealed.nonce.clone(),
        ciphertext: row.sealed.ciphertext.clone(),
    };
    let sealer = Sealer::open_file(&keys).expect("keys");
    assert_eq!(
        sealer
            .open(&sealed, b"providers/default/gh")
            .expect("opens with the new key")
            .expose_secret(),
        TOKEN
    );
    // Copied to another provider's row, it does not open there.
    assert!(sealer.open(&sealed, b"providers/beta/gh").is_err());

    c.delete_provider(DeleteProviderRequest {
        project: String::new(),
        name: "gh".into(),
    })
    .await
    .expect("delete");
    let gone = c
        .delete_provider(DeleteProviderRequest {
            project: String::new(),
            name: "gh".into(),
        })
        .await
        .expect_err("gone");
    assert_eq!(gone.code(), Code::NotFound);
    served.stop().await;

    // Without a key file, tokens are refused rather than stored unsealed.
    let served = common::Served::start(base).await;
    let channel = served.channel.clone();
    let refused = ControlServiceClient::new(channel)
        .create_provider(CreateProviderRequest {
            project: String::new(),
            name: "gh2".into(),
            installation_id: 0,
            token: TOKEN.into(),
        })
        .await
        .expect_err("no key file");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    served.stop().await;
}
