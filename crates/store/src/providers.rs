//! The credentials each project acts with. Tokens arrive here sealed (the store never sees a
//! key or a token in the clear) and leave only sealed.

use crate::{Store, StoreError};
use chrono::{DateTime, Utc};

/// A sealed value as stored (see `plumbline_runtime::sealed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedValue {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// What a provider authenticates with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderCredential {
    /// A GitHub App installation; the App's key is the services' own.
    Installation(i64),
    /// A personal access token, sealed.
    Pat(SealedValue),
}

/// A provider as listed: never its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRow {
    pub project: String,
    pub name: String,
    pub installation_id: Option<i64>,
    /// For a token: the id of the key that sealed it.
    pub key_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// A sealed token and where it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPat {
    pub project: String,
    pub name: String,
    pub sealed: SealedValue,
}

/// What [`Store::delete_provider`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteProvider {
    Deleted,
    /// Refused: this many active entities are acted on with it.
    InUse(i64),
    Missing,
}

impl Store {
    /// Adds a provider to `project`; `Conflict` when the name is taken or the installation
    /// belongs to a project already, `NotFound` when the project does not exist.
    pub async fn create_provider(
        &self,
        project: &str,
        name: &str,
        credential: &ProviderCredential,
        created_by: &str,
    ) -> Result<(), StoreError> {
        let c = self.client().await?;
        match credential {
            ProviderCredential::Installation(id) => {
                c.execute(
                    "INSERT INTO providers (project, name, kind, installation_id, created_by) \
                     VALUES ($1, $2, 'github-app-installation', $3, $4)",
                    &[&project, &name, id, &created_by],
                )
                .await?;
            }
            ProviderCredential::Pat(s) => {
                c.execute(
                    "INSERT INTO providers (project, name, kind, key_id, nonce, ciphertext, created_by) \
                     VALUES ($1, $2, 'github-pat', $3, $4, $5, $6)",
                    &[&project, &name, &s.key_id, &s.nonce, &s.ciphertext, &created_by],
                )
                .await?;
            }
        }
        Ok(())
    }

    /// A page of a project's providers, in name order after `after`.
    pub async fn list_providers(
        &self,
        project: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ProviderRow>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT project, name, installation_id, key_id, created_at, created_by \
                 FROM providers WHERE project = $1 AND ($2::text IS NULL OR name > $2) \
                 ORDER BY name LIMIT $3",
                &[&project, &after, &limit.clamp(1, 1000)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ProviderRow {
                project: r.get(0),
                name: r.get(1),
                installation_id: r.get(2),
                key_id: r.get(3),
                created_at: r.get(4),
                created_by: r.get(5),
            })
            .collect())
    }

    /// Removes a provider, unless active entities are acted on with it: then
    /// [`DeleteProvider::InUse`] with how many (they are deregistered, or registered anew with
    /// another provider, first). Retired entities lose the binding.
    ///
    /// The provider row is locked first (`FOR UPDATE`, which the foreign-key check of a
    /// registration binding an entity to it conflicts with): a registration that committed
    /// before is counted, one still to come fails on the foreign key. No active entity is
    /// ever left unbound by a delete.
    pub async fn delete_provider(
        &self,
        project: &str,
        name: &str,
    ) -> Result<DeleteProvider, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let locked = tx
            .query_opt(
                "SELECT 1 FROM providers WHERE project = $1 AND name = $2 FOR UPDATE",
                &[&project, &name],
            )
            .await?;
        if locked.is_none() {
            return Ok(DeleteProvider::Missing);
        }
        let users: i64 = tx
            .query_one(
                "SELECT count(*) FROM entities \
                 WHERE project = $1 AND credential = $2 AND retired_at IS NULL",
                &[&project, &name],
            )
            .await?
            .get(0);
        if users > 0 {
            return Ok(DeleteProvider::InUse(users));
        }
        tx.execute(
            "DELETE FROM providers WHERE project = $1 AND name = $2",
            &[&project, &name],
        )
        .await?;
        tx.commit().await?;
        Ok(DeleteProvider::Deleted)
    }

    /// What a project's provider authenticates with; `None` when there is no such provider.
    #[tracing::instrument(name = "db.provider_credential", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]

    pub async fn provider_credential(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Option<ProviderCredential>, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &c.prepare_cached(
                    "SELECT installation_id, key_id, nonce, ciphertext FROM providers \
                     WHERE project = $1 AND name = $2",
                )
                .await?,
                &[&project, &name],
            )
            .await?;
        let Some(r) = row else { return Ok(None) };
        let installation: Option<i64> = r.get(0);
        let sealed: (Option<String>, Option<Vec<u8>>, Option<Vec<u8>>) =
            (r.get(1), r.get(2), r.get(3));
        Ok(Some(match (installation, sealed) {
            (Some(id), _) => ProviderCredential::Installation(id),
            (None, (Some(key_id), Some(nonce), Some(ciphertext))) => {
                ProviderCredential::Pat(SealedValue {
                    key_id,
                    nonce,
                    ciphertext,
                })
            }
            // The table's checks rule this out.
            _ => {
                return Err(StoreError::Invalid(format!(
                    "provider {project}/{name} has neither an installation nor a token"
                )))
            }
        }))
    }

    /// The project and provider a GitHub App installation is enrolled as, if any.
    #[tracing::instrument(name = "db.provider_for_installation", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]

    pub async fn provider_for_installation(
        &self,
        installation_id: i64,
    ) -> Result<Option<(String, String)>, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &c.prepare_cached("SELECT project, name FROM providers WHERE installation_id = $1")
                    .await?,
                &[&installation_id],
            )
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// The names of a project's providers, at most `limit` (to pick the one a registration
    /// uses when it names none).
    pub async fn provider_names(
        &self,
        project: &str,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT name FROM providers WHERE project = $1 ORDER BY name LIMIT $2",
                &[&project, &limit],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Every sealed token not sealed with `current_key_id` (what a key rotation re-seals).
    pub async fn pats_sealed_with_other_keys(
        &self,
        current_key_id: &str,
    ) -> Result<Vec<StoredPat>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT project, name, key_id, nonce, ciphertext FROM providers \
                 WHERE kind = 'github-pat' AND key_id <> $1 ORDER BY project, name",
                &[&current_key_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| StoredPat {
                project: r.get(0),
                name: r.get(1),
                sealed: SealedValue {
                    key_id: r.get(2),
                    nonce: r.get(3),
                    ciphertext: r.get(4),
                },
            })
            .collect())
    }

    /// Replaces a token's sealing, unless it changed since `was` was read. Returns whether it
    /// was replaced.
    pub async fn reseal_pat(
        &self,
        project: &str,
        name: &str,
        was: &SealedValue,
        now: &SealedValue,
    ) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE providers SET key_id = $4, nonce = $5, ciphertext = $6 \
                 WHERE project = $1 AND name = $2 AND kind = 'github-pat' AND nonce = $3",
                &[
                    &project,
                    &name,
                    &was.nonce,
                    &now.key_id,
                    &now.nonce,
                    &now.ciphertext,
                ],
            )
            .await?;
        Ok(n > 0)
    }
}
