use crate::{Store, StoreError};

/// A rule type or profile as stored: its source YAML and a version that increases on change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDocument {
    pub project: String,
    pub name: String,
    pub version: i64,
    pub digest: String,
    pub source_yaml: String,
}

/// Which kind of document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocumentKind {
    RuleType,
    DataSource,
    Profile,
}

impl DocumentKind {
    /// The table documents of this kind are stored in.
    fn table(self) -> &'static str {
        match self {
            DocumentKind::RuleType => "rule_types",
            DocumentKind::Profile => "profiles",
            DocumentKind::DataSource => "data_sources",
        }
    }
}

impl Store {
    /// Stores a rule type; returns (version, changed). Re-applying identical content keeps the
    /// version, so evaluators' caches and reused verdicts stay valid.
    pub async fn upsert_rule_type(
        &self,
        project: &str,
        name: &str,
        digest: &str,
        yaml: &str,
    ) -> Result<(i64, bool), StoreError> {
        self.upsert_document(DocumentKind::RuleType, project, name, digest, yaml)
            .await
    }

    pub async fn upsert_profile(
        &self,
        project: &str,
        name: &str,
        digest: &str,
        yaml: &str,
    ) -> Result<(i64, bool), StoreError> {
        self.upsert_document(DocumentKind::Profile, project, name, digest, yaml)
            .await
    }

    pub async fn upsert_data_source(
        &self,
        project: &str,
        name: &str,
        digest: &str,
        yaml: &str,
    ) -> Result<(i64, bool), StoreError> {
        self.upsert_document(DocumentKind::DataSource, project, name, digest, yaml)
            .await
    }

    pub async fn list_data_sources(
        &self,
        project: &str,
    ) -> Result<Vec<StoredDocument>, StoreError> {
        self.get_document(DocumentKind::DataSource, project, None)
            .await
    }

    #[tracing::instrument(name = "db.get_rule_type", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]

    pub async fn get_rule_type(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Option<StoredDocument>, StoreError> {
        self.document(DocumentKind::RuleType, project, name).await
    }

    #[tracing::instrument(name = "db.get_profile", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]

    pub async fn get_profile(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Option<StoredDocument>, StoreError> {
        self.document(DocumentKind::Profile, project, name).await
    }

    pub async fn list_rule_types(&self, project: &str) -> Result<Vec<StoredDocument>, StoreError> {
        self.get_document(DocumentKind::RuleType, project, None)
            .await
    }

    pub async fn list_profiles(&self, project: &str) -> Result<Vec<StoredDocument>, StoreError> {
        self.get_document(DocumentKind::Profile, project, None)
            .await
    }

    /// (kind, name, version) of every rule type, profile and data source of a project: a cheap check that lets
    /// evaluators keep parsed documents cached until something actually changed.
    pub async fn document_versions(
        &self,
        project: &str,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                &c.prepare_cached(
                    "SELECT 'rule_type', name, version FROM rule_types WHERE project = $1
                 UNION ALL
                 SELECT 'profile', name, version FROM profiles WHERE project = $1
                 UNION ALL
                 SELECT 'data_source', name, version FROM data_sources WHERE project = $1
                 ORDER BY 1, 2",
                )
                .await?,
                &[&project],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// A page of a project's documents of one kind, in name order after `after`.
    pub async fn documents_page(
        &self,
        kind: DocumentKind,
        project: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StoredDocument>, StoreError> {
        let c = self.client().await?;
        let sql = format!(
            "SELECT project, name, version, digest, source_yaml FROM {} \
             WHERE project = $1 AND ($2::text IS NULL OR name > $2) ORDER BY name LIMIT $3",
            kind.table()
        );
        let rows = c
            .query(
                &c.prepare_cached(&sql).await?,
                &[&project, &after, &limit.clamp(1, 1000)],
            )
            .await?;
        Ok(rows.iter().map(document).collect())
    }

    /// One document, if it exists.
    pub async fn document(
        &self,
        kind: DocumentKind,
        project: &str,
        name: &str,
    ) -> Result<Option<StoredDocument>, StoreError> {
        Ok(self.get_document(kind, project, Some(name)).await?.pop())
    }

    /// Deletes a document; deleting a profile also takes its statuses out of the posture
    /// (history stays). Returns whether it existed.
    pub async fn delete_document(
        &self,
        kind: DocumentKind,
        project: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let sql = format!(
            "DELETE FROM {} WHERE project = $1 AND name = $2",
            kind.table()
        );
        let deleted = tx.execute(&sql, &[&project, &name]).await?;
        if kind == DocumentKind::Profile {
            tx.execute(
                "DELETE FROM evaluation_status WHERE project = $1 AND profile = $2",
                &[&project, &name],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn upsert_document(
        &self,
        kind: DocumentKind,
        project: &str,
        name: &str,
        digest: &str,
        yaml: &str,
    ) -> Result<(i64, bool), StoreError> {
        let c = self.client().await?;
        let sql = format!(
            "INSERT INTO {t} AS d (project, name, version, digest, source_yaml)
             VALUES ($1, $2, 1, $3, $4)
             ON CONFLICT (project, name) DO UPDATE SET
                version = CASE WHEN d.digest = EXCLUDED.digest THEN d.version ELSE d.version + 1 END,
                source_yaml = EXCLUDED.source_yaml,
                updated_at = CASE WHEN d.digest = EXCLUDED.digest THEN d.updated_at ELSE now() END,
                digest = EXCLUDED.digest
             RETURNING version, (xmax = 0) AS inserted,
                (SELECT digest FROM {t} WHERE project = $1 AND name = $2) AS old_digest",
            t = kind.table()
        );
        let row = c
            .query_one(
                &c.prepare_cached(&sql).await?,
                &[&project, &name, &digest, &yaml],
            )
            .await?;
        let version: i64 = row.get("version");
        let inserted: bool = row.get("inserted");
        let old: Option<String> = row.get("old_digest");
        Ok((version, inserted || old.as_deref() != Some(digest)))
    }

    async fn get_document(
        &self,
        kind: DocumentKind,
        project: &str,
        name: Option<&str>,
    ) -> Result<Vec<StoredDocument>, StoreError> {
        let c = self.client().await?;
        let sql = format!(
            "SELECT project, name, version, digest, source_yaml FROM {} WHERE project = $1 AND ($2::text IS NULL OR name = $2) ORDER BY name",
            kind.table()
        );
        let rows = c
            .query(&c.prepare_cached(&sql).await?, &[&project, &name])
            .await?;
        Ok(rows.iter().map(document).collect())
    }
}

fn document(r: &tokio_postgres::Row) -> StoredDocument {
    StoredDocument {
        project: r.get(0),
        name: r.get(1),
        version: r.get(2),
        digest: r.get(3),
        source_yaml: r.get(4),
    }
}
