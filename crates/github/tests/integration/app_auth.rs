//! GitHub App authentication against the simulator: JWT → installation token through octocrab,
//! tokens refreshed before they expire, one client (and one budget) per installation.

use plumbline_github::{AppCredentials, GitHub, GitHubConfig, GitHubError, Method};
use plumbline_github_sim::{
    AppConfig, InstallationConfig, RepoOptions, RepositorySelection, SimConfig, Simulator,
};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const PRIVATE_KEY: &str = include_str!("../../../github-sim/testdata/app-private-key.pem");
const PUBLIC_KEY: &str = include_str!("../../../github-sim/testdata/app-public-key.pem");
const OTHER_KEY: &str = include_str!("../../../github-sim/testdata/other-private-key.pem");

async fn sim() -> (Simulator, String, CancellationToken) {
    let sim = Simulator::new(SimConfig {
        // A closed token list: only installation tokens the simulator minted get in.
        tokens: vec!["not-this-one".into()],
        ..SimConfig::default()
    });
    sim.create_repo("acme", "api", RepoOptions::default());
    sim.create_repo("acme", "web", RepoOptions::default());
    sim.create_repo("other", "lib", RepoOptions::default());
    sim.add_app(AppConfig::new(77, "plumbline", PUBLIC_KEY))
        .expect("app");
    sim.add_installation(InstallationConfig {
        id: 1001,
        app_id: 77,
        account: "acme".into(),
        repository_selection: RepositorySelection::All,
    })
    .expect("installation acme");
    sim.add_installation(InstallationConfig {
        id: 1002,
        app_id: 77,
        account: "other".into(),
        repository_selection: RepositorySelection::Selected(vec!["lib".into()]),
    })
    .expect("installation other");
    let stop = CancellationToken::new();
    let addr = sim
        .serve("127.0.0.1:0".parse().expect("addr"), stop.clone())
        .await
        .expect("serve");
    (sim, format!("http://{addr}"), stop)
}

fn app_client(url: &str, key: &str, installation_id: Option<u64>) -> GitHub {
    let mut cfg = GitHubConfig::new(url, None);
    cfg.app = Some(AppCredentials {
        app_id: 77,
        private_key_pem: key.into(),
        installation_id,
        private_key_file: None,
    });
    GitHub::new(&cfg).expect("client")
}

#[tokio::test]
async fn an_app_lists_its_installations_and_acts_as_each() {
    let (sim, url, stop) = sim().await;
    let app = app_client(&url, PRIVATE_KEY, None);
    let installations = app.list_app_installations().await.expect("installations");
    let mut ids: Vec<(u64, String)> = installations
        .iter()
        .map(|i| (i.id, i.account.login.clone()))
        .collect();
    ids.sort();
    assert_eq!(ids, vec![(1001, "acme".into()), (1002, "other".into())]);

    let acme = app.installation(1001).expect("acme client");
    let mut names: Vec<String> = acme
        .list_installation_repositories()
        .await
        .expect("repos")
        .into_iter()
        .map(|r| r.full_name)
        .collect();
    names.sort();
    assert_eq!(names, vec!["acme/api", "acme/web"]);
    let other = app.installation(1002).expect("other client");
    let names: Vec<String> = other
        .list_installation_repositories()
        .await
        .expect("repos")
        .into_iter()
        .map(|r| r.full_name)
        .collect();
    assert_eq!(names, vec!["other/lib"]);
    // Each installation is its own credential: own cache partition and budget.
    assert_ne!(acme.credential_id(), other.credential_id());
    assert!(
        acme.credential_id().starts_with("app:"),
        "{}",
        acme.credential_id()
    );
    // A repository outside the installation is not visible to it.
    assert_eq!(
        acme.request(Method::GET, "/repos/other/lib", None)
            .await
            .expect("answer")
            .status,
        404
    );
    assert_eq!(
        acme.request(Method::GET, "/repos/acme/api", None)
            .await
            .expect("answer")
            .status,
        200
    );
    assert_eq!(
        sim.installation_tokens_minted(),
        2,
        "one token per installation, reused across requests"
    );
    stop.cancel();
}

#[tokio::test]
async fn installation_tokens_are_refreshed_before_they_expire() {
    let (sim, url, stop) = sim().await;
    // Tokens that live 20 s are inside octocrab's 30 s refresh margin: every request mints a
    // fresh one rather than risk sending one that expires in flight.
    sim.set_installation_token_ttl(Duration::from_secs(20));
    let gh = app_client(&url, PRIVATE_KEY, Some(1001));
    for _ in 0..3 {
        assert_eq!(
            gh.request(Method::GET, "/repos/acme/api", None)
                .await
                .expect("get")
                .status,
            200
        );
    }
    assert_eq!(sim.installation_tokens_minted(), 3);
    // Long-lived tokens are minted once.
    sim.set_installation_token_ttl(Duration::from_secs(3600));
    let gh = app_client(&url, PRIVATE_KEY, Some(1001));
    for _ in 0..3 {
        gh.request(Method::GET, "/repos/acme/web", None)
            .await
            .expect("get");
    }
    assert_eq!(sim.installation_tokens_minted(), 4);
    stop.cancel();
}

#[tokio::test]
async fn a_wrong_key_or_a_bad_pem_is_a_clear_error() {
    let (_sim, url, stop) = sim().await;
    let mut cfg = GitHubConfig::new(&url, None);
    cfg.app = Some(AppCredentials {
        app_id: 77,
        private_key_pem: "not a pem".into(),
        private_key_file: None,
        installation_id: Some(1001),
    });
    assert!(matches!(GitHub::new(&cfg), Err(GitHubError::Config(m)) if m.contains("private key")));
    // A key GitHub does not know: the token exchange is refused, nothing is retried forever.
    let gh = app_client(&url, OTHER_KEY, Some(1001));
    assert!(gh
        .request(Method::GET, "/repos/acme/api", None)
        .await
        .is_err());
    let plain = app_client(&url, PRIVATE_KEY, None);
    assert!(plain.installation(1001).is_ok());
    let token_client = GitHub::new(&GitHubConfig::new(&url, Some("t".into()))).expect("client");
    assert!(matches!(
        token_client.installation(1001),
        Err(GitHubError::Config(_))
    ));
    stop.cancel();
}

/// The App key read from a file is re-read when the file changes: a client started with the
/// wrong key (GitHub refuses its JWT) works as soon as the right key is written, without a new
/// client or a restart.
#[tokio::test]
async fn a_rotated_key_file_is_used_without_a_restart() {
    let (_sim, url, stop) = sim().await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("app.pem");
    std::fs::write(&path, OTHER_KEY).expect("write");
    let mut cfg = GitHubConfig::new(&url, None);
    cfg.app = Some(AppCredentials {
        app_id: 77,
        private_key_pem: OTHER_KEY.into(),
        installation_id: Some(1001),
        private_key_file: Some(path.clone()),
    });
    let gh = GitHub::new(&cfg).expect("client");
    assert!(
        gh.get_repository("acme", "api").await.is_err(),
        "the wrong key gets no installation token"
    );
    std::fs::write(&path, PRIVATE_KEY).expect("rotate");
    let repo = gh
        .get_repository("acme", "api")
        .await
        .expect("the rotated key is used");
    assert_eq!(repo.name, "api");
    // A broken file keeps the working key.
    std::fs::write(&path, "not a key").expect("break");
    assert!(
        gh.get_repository("acme", "web").await.is_ok(),
        "the last good key stays in use"
    );
    stop.cancel();
}
