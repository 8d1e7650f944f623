//! The credential each entity is acted on with: its project's provider, never another
//! project's, and the services' own credential only for the operator's project.
//!
//! A repository is registered or enrolled through one of its project's providers (a GitHub App
//! installation, with the App key the services hold, or a personal access token sealed in the
//! store) and the entity row names it (`entities.credential`). Every read and every change for
//! that entity goes out with that provider's credential, so what one team's credential cannot
//! see or change, no other team's entity can make Plumbline see or change for it.
//!
//! An entity bound to no provider is acted on with the services' own credential (their
//! `--github-*` flags) only when it belongs to the operator's project
//! (`--own-credential-project`, `default` unless set; empty: no project). In any other
//! project such an entity is not acted on at all, and every rule of it reports why.
//!
//! The provider row is read for every entity handled (one primary-key lookup), so a deleted
//! provider stops being used at once; the clients built from rows are kept (bounded), keyed by
//! what they were built from (the installation id, or the sealed token's nonce), so an
//! unchanged provider costs no new token.

use crate::sealed::{Sealed, Sealer};
use plumbline_github::{GitHub, GitHubError};
use plumbline_store::{ProviderCredential, Store, StoreError};
use secrecy::ExposeSecret;

/// Why the credentials could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("the services' own GitHub client: {0}")]
    GitHub(#[from] GitHubError),
    #[error("the credentials key file: {0}")]
    Sealing(#[from] crate::sealed::SealError),
}

/// Why an entity cannot be acted on.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The store could not be read: retry later.
    #[error("reading provider {provider} of project {project}")]
    Store {
        project: String,
        provider: String,
        #[source]
        source: StoreError,
    },
    #[error("provider {provider} of project {project} no longer exists: register the repository again with one that does")]
    ProviderGone { project: String, provider: String },
    #[error("project {project} has no provider for this repository, and only project {own} may use the services' own credential: add one (plumb provider add) and register the repository with it")]
    NoProvider { project: String, own: String },
    #[error("provider {provider} of project {project} is an App installation, but the services hold no GitHub App key (--github-app-id)")]
    NoApp { project: String, provider: String },
    #[error("provider {provider} of project {project} holds a token, but this service has no --credentials-key-file to open it with")]
    NoSealingKey { project: String, provider: String },
    #[error("opening the token of provider {provider} of project {project}")]
    Seal {
        project: String,
        provider: String,
        #[source]
        source: crate::sealed::SealError,
    },
    #[error("building a GitHub client for provider {provider} of project {project}")]
    Client {
        project: String,
        provider: String,
        #[source]
        source: Box<GitHubError>,
    },
}

impl CredentialError {
    /// Whether the same entity may be acted on later without anyone changing anything (the
    /// store was unreachable), as opposed to a configuration an operator must fix.
    pub fn is_transient(&self) -> bool {
        match self {
            CredentialError::Store { source, .. } => source.is_transient(),
            _ => false,
        }
    }

    /// This error and its sources as one line (what a verdict's message or a log carries).
    pub fn describe(&self) -> String {
        plumbline_domain::describe_error(self)
    }
}

/// What a token is sealed to: its provider's row, so a sealed token copied to another
/// provider's row does not open there.
pub fn provider_aad(project: &str, name: &str) -> String {
    format!("providers/{project}/{name}")
}

/// Resolves and keeps the GitHub clients entities are acted on with.
#[derive(Clone)]
pub struct Credentials {
    store: Store,
    own: GitHub,
    own_project: Option<String>,
    sealer: Option<Sealer>,
    clients: std::sync::Arc<quick_cache::sync::Cache<String, GitHub>>,
}

/// Clients kept at most (one per provider in use; each is a few KiB plus its token).
const MAX_CLIENTS: usize = 10_000;

impl Credentials {
    /// `own` is the services' own client; `own_project` the one project whose unbound entities
    /// it acts for (`None`: none); `sealer` opens stored tokens.
    pub fn new(
        store: Store,
        own: GitHub,
        own_project: Option<String>,
        sealer: Option<Sealer>,
    ) -> Self {
        Credentials {
            store,
            own,
            own_project: own_project.filter(|p| !p.is_empty()),
            sealer,
            clients: std::sync::Arc::new(quick_cache::sync::Cache::new(MAX_CLIENTS)),
        }
    }

    /// The keys stored tokens are opened with (the control service seals with the same).
    pub fn sealer(&self) -> Option<&Sealer> {
        self.sealer.as_ref()
    }

    /// The services' own client (metrics that are about the process, not an entity).
    pub fn own(&self) -> &GitHub {
        &self.own
    }

    /// The client to act for `entity` with: `Err` when the store could not be read (retry
    /// later), `Ok(Err)` when the entity cannot be acted on until an operator or its project
    /// changes something (the reason is what its rules report).
    pub async fn for_entity(
        &self,
        entity: &plumbline_domain::Entity,
    ) -> Result<Result<GitHub, CredentialError>, CredentialError> {
        match self
            .client(&entity.project, entity.credential.as_deref())
            .await
        {
            Err(e) if e.is_transient() => Err(e),
            other => Ok(other),
        }
    }

    /// The client to act for an entity of `project` bound to `provider` (`None`: unbound).
    pub async fn client(
        &self,
        project: &str,
        provider: Option<&str>,
    ) -> Result<GitHub, CredentialError> {
        let Some(provider) = provider else {
            return match &self.own_project {
                Some(own) if own == project => Ok(self.own.clone()),
                own => Err(CredentialError::NoProvider {
                    project: project.to_string(),
                    own: own.clone().unwrap_or_else(|| "(none)".into()),
                }),
            };
        };
        let names = || (project.to_string(), provider.to_string());
        let credential = self
            .store
            .provider_credential(project, provider)
            .await
            .map_err(|source| {
                let (project, provider) = names();
                CredentialError::Store {
                    project,
                    provider,
                    source,
                }
            })?
            .ok_or_else(|| {
                let (project, provider) = names();
                CredentialError::ProviderGone { project, provider }
            })?;
        let key = match &credential {
            ProviderCredential::Installation(id) => format!("{project}\0{provider}\0i{id}"),
            ProviderCredential::Pat(s) => {
                format!("{project}\0{provider}\0p{}", hex::encode(&s.nonce))
            }
        };
        if let Some(client) = self.clients.get(&key) {
            return Ok(client);
        }
        let client = self.build(project, provider, credential)?;
        self.clients.insert(key, client.clone());
        Ok(client)
    }

    fn build(
        &self,
        project: &str,
        provider: &str,
        credential: ProviderCredential,
    ) -> Result<GitHub, CredentialError> {
        let names = || (project.to_string(), provider.to_string());
        let client = match credential {
            ProviderCredential::Installation(id) => {
                let id = u64::try_from(id).map_err(|_| {
                    let (project, provider) = names();
                    CredentialError::Client {
                        project,
                        provider,
                        source: Box::new(GitHubError::Config(format!("installation id {id}"))),
                    }
                })?;
                if !self.own.has_app() {
                    let (project, provider) = names();
                    return Err(CredentialError::NoApp { project, provider });
                }
                self.own.installation(id)
            }
            ProviderCredential::Pat(sealed) => {
                let Some(sealer) = &self.sealer else {
                    let (project, provider) = names();
                    return Err(CredentialError::NoSealingKey { project, provider });
                };
                let token = sealer
                    .open(
                        &Sealed {
                            key_id: sealed.key_id,
                            nonce: sealed.nonce,
                            ciphertext: sealed.ciphertext,
                        },
                        provider_aad(project, provider).as_bytes(),
                    )
                    .map_err(|source| {
                        let (project, provider) = names();
                        CredentialError::Seal {
                            project,
                            provider,
                            source,
                        }
                    })?;
                self.own.with_token(token.expose_secret().to_string())
            }
        };
        client.map_err(|source| {
            let (project, provider) = names();
            CredentialError::Client {
                project,
                provider,
                source: Box::new(source),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumbline_store::testing::TestDatabase;
    use plumbline_store::SealedValue;

    const KEY: &str = "0101010101010101010101010101010101010101010101010101010101010101";

    fn own() -> GitHub {
        let config = plumbline_github::GitHubConfig::new("http://127.0.0.1:9", Some("own".into()));
        GitHub::new(&config).expect("client")
    }

    /// Which credential each kind of entity gets, and each refusal.
    #[tokio::test]
    async fn each_entity_acts_with_its_projects_provider_only() {
        let db = TestDatabase::new().await;
        let store = db.store();
        let dir = tempfile::tempdir().expect("tmp");
        let keys = dir.path().join("keys");
        std::fs::write(&keys, format!("k1 {KEY}\n")).expect("keys");
        let sealer = Sealer::open_file(&keys).expect("sealer");
        for p in ["team-a", "team-b"] {
            store.create_project(p, "test").await.expect("project");
        }
        let sealed = sealer
            .seal(
                &"ghp_team_a".to_string().into(),
                provider_aad("team-a", "pat").as_bytes(),
            )
            .expect("seal");
        let pat = ProviderCredential::Pat(SealedValue {
            key_id: sealed.key_id.clone(),
            nonce: sealed.nonce.clone(),
            ciphertext: sealed.ciphertext.clone(),
        });
        store
            .create_provider("team-a", "pat", &pat, "test")
            .await
            .expect("provider");
        // The same sealed token copied into another project's row does not open there.
        store
            .create_provider("team-b", "copied", &pat, "test")
            .await
            .expect("provider");
        store
            .create_provider(
                "team-b",
                "app",
                &ProviderCredential::Installation(7),
                "test",
            )
            .await
            .expect("provider");

        let own_client = own();
        let creds = Credentials::new(
            store.clone(),
            own_client.clone(),
            Some("default".into()),
            Some(sealer),
        );
        // Unbound: the services' own credential, for the operator's project only.
        let c = creds.client("default", None).await.expect("own");
        assert_eq!(c.credential_id(), own_client.credential_id());
        assert!(matches!(
            creds.client("team-a", None).await,
            Err(CredentialError::NoProvider { .. })
        ));
        // A project's token: its own client, kept while the row is unchanged.
        let a = creds.client("team-a", Some("pat")).await.expect("pat");
        assert_ne!(a.credential_id(), own_client.credential_id());
        let again = creds.client("team-a", Some("pat")).await.expect("pat");
        assert_eq!(a.credential_id(), again.credential_id());
        assert!(matches!(
            creds.client("team-b", Some("copied")).await,
            Err(CredentialError::Seal { .. })
        ));
        // Another project's provider name is not found in this one.
        assert!(matches!(
            creds.client("team-b", Some("pat")).await,
            Err(CredentialError::ProviderGone { .. })
        ));
        // An installation needs the App key the services hold.
        let Err(err) = creds.client("team-b", Some("app")).await else {
            panic!("no app key, yet a client")
        };
        assert!(matches!(err, CredentialError::NoApp { .. }), "{err:?}");
        assert!(!err.is_transient());
        // A deleted provider stops being used at once.
        assert_eq!(
            store.delete_provider("team-a", "pat").await.expect("store"),
            plumbline_store::DeleteProvider::Deleted
        );
        assert!(matches!(
            creds.client("team-a", Some("pat")).await,
            Err(CredentialError::ProviderGone { .. })
        ));
        // Without the key file a token cannot be opened; with no operator project nothing
        // falls back to the services' own credential.
        let keyless = Credentials::new(store.clone(), own(), Some(String::new()), None);
        assert!(matches!(
            keyless.client("default", None).await,
            Err(CredentialError::NoProvider { .. })
        ));
        let Err(err) = keyless.client("team-b", Some("copied")).await else {
            panic!("no key file, yet a client")
        };
        assert!(
            matches!(err, CredentialError::NoSealingKey { .. }),
            "{err:?}"
        );
        assert!(
            err.describe().contains("--credentials-key-file"),
            "{}",
            err.describe()
        );
    }
}
