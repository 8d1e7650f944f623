use crate::error::column;
use crate::{Store, StoreError};
use plumbline_domain::{Entity, EntityRef};
use tokio_postgres::Row;

/// Entities as services act on them, from `entities e LEFT JOIN entities p ON p.id = e.parent`:
/// a pull request takes its repository's current names and provider binding (it keeps none of
/// its own), so a rename or a new binding of the repository applies to it at once.
const RESOLVED: &str = "e.id, e.project, e.provider, e.kind, e.upstream_id,
     coalesce(p.owner, e.owner) AS owner, coalesce(p.name, e.name) AS name,
     e.properties, e.labels,
     CASE WHEN e.parent IS NULL THEN e.credential ELSE p.credential END AS credential";

/// Only entities whose repository, if they have one, is active in their own project.
const UNDER_ACTIVE_PARENT: &str = "(e.parent IS NULL OR (p.retired_at IS NULL \
     AND p.project = e.project AND p.kind = 'repository'))";

fn entity_from_row(r: &Row) -> Result<Entity, StoreError> {
    Ok(Entity {
        entity_ref: EntityRef {
            provider: r.get("provider"),
            kind: column("entities.kind", r.get("kind"))?,
            upstream_id: r.get("upstream_id"),
        },
        project: r.get("project"),
        owner: r.get("owner"),
        name: r.get("name"),
        properties: r.get("properties"),
        labels: r.get("labels"),
        credential: r.get("credential"),
    })
}

impl Store {
    /// Registers or refreshes an entity (a rename or a new default branch updates the row;
    /// a retired entity that comes back is active again). Returns true when it was new.
    ///
    /// Only within its own project: an entity registered in another project is left exactly
    /// as it is (its labels steer that project's selectors) and the answer is `Conflict`,
    /// without naming the project.
    #[tracing::instrument(name = "db.upsert_entity", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn upsert_entity(&self, e: &Entity) -> Result<bool, StoreError> {
        self.insert_entity(
            e,
            "",
            "properties = EXCLUDED.properties, labels = EXCLUDED.labels, \
             credential = EXCLUDED.credential",
            "WHERE entities.project = EXCLUDED.project",
            "(xmax = 0)",
        )
        .await?
        .ok_or_else(|| {
            StoreError::Conflict(format!(
                "{} is registered in another project",
                e.full_name()
            ))
        })
    }

    /// Like [`upsert_entity`](Self::upsert_entity), but an entity already registered keeps
    /// its labels (registering a whole organisation without labels must not clear the labels
    /// its repositories were given one by one).
    pub async fn upsert_entity_keeping_labels(&self, e: &Entity) -> Result<bool, StoreError> {
        self.insert_entity(
            e,
            "",
            "properties = EXCLUDED.properties, credential = EXCLUDED.credential",
            "WHERE entities.project = EXCLUDED.project",
            "(xmax = 0)",
        )
        .await?
        .ok_or_else(|| {
            StoreError::Conflict(format!(
                "{} is registered in another project",
                e.full_name()
            ))
        })
    }

    /// `INSERT` of `e`, or on conflict (when `condition` holds) an update of names,
    /// `properties_and_labels` and re-activation; returns the boolean `returned` (which may read
    /// a CTE `with` defines), or `None` when the conflicting row was left alone.
    async fn insert_entity(
        &self,
        e: &Entity,
        with: &str,
        properties_and_labels: &str,
        condition: &str,
        returned: &str,
    ) -> Result<Option<bool>, StoreError> {
        let c = self.client().await?;
        let sql = format!(
            "{with}
             INSERT INTO entities (id, project, provider, kind, upstream_id, owner, name, properties, labels, credential)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (id) DO UPDATE SET
                owner = EXCLUDED.owner, name = EXCLUDED.name, {properties_and_labels},
                updated_at = now(), retired_at = NULL
             {condition}
             RETURNING {returned}"
        );
        let row = c
            .query_opt(
                &c.prepare_cached(&sql).await?,
                &[
                    &e.id(),
                    &e.project,
                    &e.entity_ref.provider,
                    &e.entity_ref.kind.as_str(),
                    &e.entity_ref.upstream_id,
                    &e.owner,
                    &e.name,
                    &e.properties,
                    &e.labels,
                    &e.credential,
                ],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// An active entity by id.
    #[tracing::instrument(name = "db.get_entity", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]

    pub async fn get_entity(&self, id: &str) -> Result<Option<Entity>, StoreError> {
        let c = self.client().await?;
        // A pull request is read with its repository's current names and provider binding
        // (a rename or a new binding of the repository applies to its pull requests at once),
        // and only while that repository is active.
        let row = c
            .query_opt(
                &c.prepare_cached(&format!(
                    "SELECT {RESOLVED} FROM entities e LEFT JOIN entities p ON p.id = e.parent
                     WHERE e.id = $1 AND e.retired_at IS NULL AND {UNDER_ACTIVE_PARENT}"
                ))
                .await?,
                &[&id],
            )
            .await?;
        row.as_ref().map(entity_from_row).transpose()
    }

    /// One page of a project's active entities in id order, after `after` (keyset pagination,
    /// so a sweep over 100k entities never scans what it already read).
    pub async fn list_entities(
        &self,
        project: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Entity>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                &c.prepare_cached(&format!(
                    "SELECT {RESOLVED} FROM entities e LEFT JOIN entities p ON p.id = e.parent
                     WHERE e.project = $1 AND e.retired_at IS NULL AND e.id > $2
                       AND {UNDER_ACTIVE_PARENT}
                     ORDER BY e.id LIMIT $3"
                ))
                .await?,
                &[&project, &after.unwrap_or(""), &limit],
            )
            .await?;
        rows.iter().map(entity_from_row).collect()
    }

    /// Like [`list_entities`](Self::list_entities), with ids at most `upto` when given (the
    /// database compares, in the order it sorts).
    pub async fn list_entities_between(
        &self,
        project: &str,
        after: Option<&str>,
        upto: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Entity>, StoreError> {
        let Some(upto) = upto else {
            return self.list_entities(project, after, limit).await;
        };
        let c = self.client().await?;
        let rows = c
            .query(
                &c.prepare_cached(&format!(
                    "SELECT {RESOLVED} FROM entities e LEFT JOIN entities p ON p.id = e.parent
                     WHERE e.project = $1 AND e.retired_at IS NULL AND e.id > $2 AND e.id <= $3
                       AND {UNDER_ACTIVE_PARENT}
                     ORDER BY e.id LIMIT $4"
                ))
                .await?,
                &[&project, &after.unwrap_or(""), &upto, &limit],
            )
            .await?;
        rows.iter().map(entity_from_row).collect()
    }

    /// Number of active entities across all projects.
    pub async fn count_active_entities(&self) -> Result<i64, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_one(
                &c.prepare_cached("SELECT count(*) FROM entities WHERE retired_at IS NULL")
                    .await?,
                &[],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Active entities per project, in project order (projects without any left out): what a
    /// sweep covers. Counted from the `(project, id)` partial index.
    pub async fn count_active_entities_by_project(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                &c.prepare_cached(
                    "SELECT project, count(*) FROM entities WHERE retired_at IS NULL \
                     GROUP BY project ORDER BY project",
                )
                .await?,
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Marks an entity retired: it is no longer swept or evaluated and leaves the posture (its
    /// latest statuses go); its history is kept.
    #[tracing::instrument(name = "db.retire_entity", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]

    pub async fn retire_entity(&self, id: &str) -> Result<bool, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let n = tx
            .execute(
                &tx.prepare_cached(
                    "UPDATE entities SET retired_at = now() WHERE id = $1 AND retired_at IS NULL",
                )
                .await?,
                &[&id],
            )
            .await?;
        // Its pull requests go with it: nothing is evaluated under a retired repository.
        let children: Vec<String> = tx
            .query(
                &tx.prepare_cached(
                    "UPDATE entities SET retired_at = now()
                     WHERE parent = $1 AND parent IS NOT NULL AND retired_at IS NULL RETURNING id",
                )
                .await?,
                &[&id],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut ids = children;
        ids.push(id.to_string());
        tx.execute(
            &tx.prepare_cached("DELETE FROM evaluation_status WHERE entity_id = ANY($1)")
                .await?,
            &[&ids],
        )
        .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Refreshes the names (and, when given, the default branch) of a registered, active entity
    /// after a rename or a settings change; an unknown entity is left alone. Returns whether a row
    /// changed.
    pub async fn refresh_entity(
        &self,
        id: &str,
        owner: &str,
        name: &str,
        default_branch: Option<&str>,
    ) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let n = c
            .execute(
                &c.prepare_cached("UPDATE entities SET owner = $2, name = $3,
                    properties = CASE WHEN $4::text IS NULL THEN properties
                                      ELSE jsonb_set(properties, '{default_branch}', to_jsonb($4::text)) END,
                    updated_at = now()
                 WHERE id = $1 AND retired_at IS NULL
                   AND (owner <> $2 OR name <> $3 OR ($4::text IS NOT NULL AND properties->>'default_branch' IS DISTINCT FROM $4::text))").await?,
                &[&id, &owner, &name, &default_branch],
            )
            .await?;
        Ok(n > 0)
    }

    /// Enrolls a repository seen by a webhook (an App installation, a new repository): inserts
    /// it, or re-activates it when retired. Unlike [`Store::upsert_entity`] it keeps what an
    /// operator set on an existing row (labels) and only adds the given properties. A row of
    /// another project is left exactly as it is, retired or not: a webhook (which can be
    /// replayed) never brings back what another project deregistered.
    /// Returns true when the entity was new or had been retired.
    #[tracing::instrument(name = "db.enroll_entity", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]

    pub async fn enroll_entity(&self, e: &Entity) -> Result<bool, StoreError> {
        self.insert_entity(
            e,
            "WITH before AS (SELECT retired_at IS NOT NULL AS was_retired FROM entities WHERE id = $1)",
            // A binding is only ever added by enrolment, and only within the row's own project
            // (the installation that reports it is then the project's provider).
            "properties = entities.properties || EXCLUDED.properties, \
             credential = CASE WHEN entities.project = EXCLUDED.project \
                THEN coalesce(entities.credential, EXCLUDED.credential) \
                ELSE entities.credential END",
            "WHERE entities.project = EXCLUDED.project",
            "(xmax = 0) OR coalesce((SELECT was_retired FROM before), false)",
        )
        .await
        .map(|r| r.unwrap_or(false))
    }
}
