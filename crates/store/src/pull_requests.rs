//! Entities under a repository: pull requests and artifacts (container image versions).
//!
//! Ingest enrolls a pull request when a `pull_request` webhook names it; the evaluator then
//! reads it from GitHub and keeps what it found (head and base, author, labels) in its
//! properties, or retires it when GitHub says it is closed or gone. A pull request exists only
//! under an active, registered repository, and takes that repository's project: a webhook
//! cannot place one anywhere else. It keeps no provider binding of its own (reads resolve the
//! repository's), so a provider's users are its repositories.

use crate::{Store, StoreError};
use plumbline_domain::{EntityKind, EntityRef};

/// What enrolling a pull request or an artifact did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildEnrolment {
    /// A new row, or a retired one active again (the evaluator confirms it is open).
    Enrolled,
    /// Already active: nothing changed.
    Known,
    /// Its repository is not registered (or retired), or the id is taken by another entity:
    /// nothing is stored.
    NoRepository,
}

impl Store {
    /// Enrolls pull request `pull` (number `number`) under repository entity `repository`.
    #[tracing::instrument(name = "db.enroll_pull_request", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn enroll_pull_request(
        &self,
        repository: &str,
        pull: &EntityRef,
        number: i64,
    ) -> Result<ChildEnrolment, StoreError> {
        if pull.kind != EntityKind::PullRequest {
            return Err(StoreError::Invalid(format!(
                "{} is not a pull request",
                pull.id()
            )));
        }
        self.enroll_child(repository, pull, &serde_json::json!({ "number": number }))
            .await
    }

    /// Enrolls `child` (a pull request or an artifact) under repository entity `repository`,
    /// with `properties` when it is new (a row already there keeps its own: the evaluator
    /// refreshes them from GitHub).
    #[tracing::instrument(name = "db.enroll_child", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn enroll_child(
        &self,
        repository: &str,
        child: &EntityRef,
        properties: &serde_json::Value,
    ) -> Result<ChildEnrolment, StoreError> {
        if !matches!(child.kind, EntityKind::PullRequest | EntityKind::Artifact) {
            return Err(StoreError::Invalid(format!(
                "{} cannot be enrolled under a repository",
                child.id()
            )));
        }
        if !properties.is_object() {
            return Err(StoreError::Invalid(
                "entity properties must be a JSON object".into(),
            ));
        }
        let c = self.client().await?;
        let row = c
            .query_opt(
                &c.prepare_cached(
                    // FOR SHARE: a retirement of the repository committing meanwhile either
                    // waits for this enrolment (and retires the new pull request with it) or
                    // is seen here (and nothing is enrolled).
                    "WITH parent AS (
                        SELECT project, owner, name FROM entities
                        WHERE id = $1 AND kind = 'repository' AND retired_at IS NULL FOR SHARE),
                     before AS (SELECT retired_at IS NOT NULL AS was_retired FROM entities WHERE id = $2)
                     INSERT INTO entities (id, project, provider, kind, upstream_id, owner, name,
                                           properties, credential, parent)
                     SELECT $2, project, $3, $6, $4, owner, name, $5, NULL, $1
                     FROM parent
                     ON CONFLICT (id) DO UPDATE SET retired_at = NULL, updated_at = now()
                       WHERE entities.parent = EXCLUDED.parent AND entities.project = EXCLUDED.project
                         AND entities.kind = EXCLUDED.kind AND entities.retired_at IS NOT NULL
                     RETURNING (xmax = 0) OR coalesce((SELECT was_retired FROM before), false)",
                )
                .await?,
                &[
                    &repository,
                    &child.id(),
                    &child.provider,
                    &child.upstream_id,
                    properties,
                    &child.kind.as_str(),
                ],
            )
            .await?;
        if row.is_some() {
            return Ok(ChildEnrolment::Enrolled);
        }
        // No row written: already active under this repository, or refused.
        let known = c
            .query_opt(
                &c.prepare_cached(
                    "SELECT 1 FROM entities e JOIN entities p ON p.id = e.parent
                     WHERE e.id = $1 AND e.parent = $2 AND e.retired_at IS NULL
                       AND p.retired_at IS NULL",
                )
                .await?,
                &[&child.id(), &repository],
            )
            .await?;
        Ok(if known.is_some() {
            ChildEnrolment::Known
        } else {
            ChildEnrolment::NoRepository
        })
    }

    /// Merges what GitHub says of an active entity into its properties (a pull request's head,
    /// base, author and labels); writes only when something differs. Returns whether it wrote.
    #[tracing::instrument(name = "db.merge_properties", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn merge_properties(
        &self,
        id: &str,
        properties: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        if !properties.is_object() {
            return Err(StoreError::Invalid(
                "entity properties must be a JSON object".into(),
            ));
        }
        let c = self.client().await?;
        let n = c
            .execute(
                &c.prepare_cached(
                    "UPDATE entities SET properties = properties || $2, updated_at = now()
                     WHERE id = $1 AND retired_at IS NULL AND (properties || $2) IS DISTINCT FROM properties",
                )
                .await?,
                &[&id, properties],
            )
            .await?;
        Ok(n > 0)
    }
}
