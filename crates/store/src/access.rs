//! Projects, service accounts, role bindings and the audit log: what the control API checks
//! before every call and records after it.

use crate::{error::column, Store, StoreError};
use chrono::{DateTime, Utc};
use plumbline_domain::{Principal, Role};

/// A project as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRow {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// A service account: its token is only ever held as a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ServiceAccount {
    /// Whether its token is accepted at `now`.
    pub fn active_at(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// One member of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleBinding {
    pub project: String,
    pub principal: Principal,
    pub role: Role,
    pub granted_at: DateTime<Utc>,
    pub granted_by: String,
}

/// Whether a call was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOutcome {
    /// Authorized (and, for a change, about to be carried out).
    Allowed,
    /// Refused: the caller lacks the role or is not the operator.
    Denied,
    /// A service account's token that is revoked or expired was presented.
    Unauthenticated,
    /// An action the actuator ended, with its status.
    Action(plumbline_domain::ActionStatus),
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Allowed => "allowed",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Unauthenticated => "unauthenticated",
            AuditOutcome::Action(s) => s.as_str(),
        }
    }
}

/// An audit outcome the store does not know (a row not written by Plumbline).
#[derive(Debug, thiserror::Error)]
#[error("unknown audit outcome {0:?}")]
pub struct UnknownOutcome(String);

impl std::str::FromStr for AuditOutcome {
    type Err = UnknownOutcome;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allowed" => Ok(AuditOutcome::Allowed),
            "denied" => Ok(AuditOutcome::Denied),
            "unauthenticated" => Ok(AuditOutcome::Unauthenticated),
            other => other
                .parse()
                .map(AuditOutcome::Action)
                .map_err(|_| UnknownOutcome(other.to_string())),
        }
    }
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub principal: String,
    pub project: String,
    pub rpc: String,
    pub request_digest: String,
    pub outcome: AuditOutcome,
}

/// Which audit records to list: all filters optional, newest first, `before` an id to page on.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub project: Option<String>,
    pub principal: Option<String>,
    pub rpc: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub before: Option<i64>,
    pub limit: i64,
}

/// The tables a project's data lives in, deleted with it (children first).
const PROJECT_TABLES: [&str; 12] = [
    "waits",
    "credential_quota",
    "sweep_progress",
    "evaluation_history",
    "evaluation_checks",
    "evaluation_status",
    "actions",
    "entities",
    "profiles",
    "rule_types",
    "data_sources",
    // Last: deleting statuses (also by the entities' cascade) updates the counts.
    "posture_counts",
];

impl Store {
    /// Creates a project; `Conflict` when the name is taken.
    pub async fn create_project(&self, name: &str, created_by: &str) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO projects (name, created_by) VALUES ($1, $2)",
            &[&name, &created_by],
        )
        .await?;
        Ok(())
    }

    /// A page of every project, in name order after `after`.
    pub async fn list_projects(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ProjectRow>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT name, created_at, created_by FROM projects \
                 WHERE ($1::text IS NULL OR name > $1) ORDER BY name LIMIT $2",
                &[&after, &limit.clamp(1, 1000)],
            )
            .await?;
        Ok(rows.iter().map(project_row).collect())
    }

    /// A page of the projects `principal` holds a role in, in name order after `after`.
    pub async fn projects_of(
        &self,
        principal: &Principal,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ProjectRow>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT p.name, p.created_at, p.created_by FROM projects p \
                 JOIN role_bindings b ON b.project = p.name WHERE b.principal = $1 \
                 AND ($2::text IS NULL OR p.name > $2) ORDER BY p.name LIMIT $3",
                &[&principal.to_string(), &after, &limit.clamp(1, 1000)],
            )
            .await?;
        Ok(rows.iter().map(project_row).collect())
    }

    pub async fn project_exists(&self, name: &str) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM projects WHERE name = $1)",
                &[&name],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Deletes a project and everything it owns (rule types, data sources, profiles, entities,
    /// statuses, history, actions, members) in one transaction. The audit log stays. Returns
    /// whether it existed.
    pub async fn delete_project(&self, name: &str) -> Result<bool, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        for table in PROJECT_TABLES {
            tx.execute(&format!("DELETE FROM {table} WHERE project = $1"), &[&name])
                .await?;
        }
        let deleted = tx
            .execute("DELETE FROM projects WHERE name = $1", &[&name])
            .await?;
        tx.commit().await?;
        Ok(deleted > 0)
    }

    /// Creates a service account holding `token_digest`; `Conflict` when the name is taken.
    pub async fn create_service_account(
        &self,
        name: &str,
        token_digest: &[u8],
        created_by: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO service_accounts (name, token_digest, created_by, expires_at) \
             VALUES ($1, $2, $3, $4)",
            &[&name, &token_digest, &created_by, &expires_at],
        )
        .await?;
        Ok(())
    }

    /// The service account whose token has this digest, active or not.
    pub async fn service_account_by_digest(
        &self,
        token_digest: &[u8],
    ) -> Result<Option<ServiceAccount>, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &c.prepare_cached(
                    "SELECT name, created_at, created_by, expires_at, revoked_at \
                     FROM service_accounts WHERE token_digest = $1",
                )
                .await?,
                &[&token_digest],
            )
            .await?;
        Ok(row.map(|r| service_account(&r)))
    }

    /// A page of the service accounts, in name order after `after`.
    pub async fn list_service_accounts(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ServiceAccount>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT name, created_at, created_by, expires_at, revoked_at \
                 FROM service_accounts WHERE ($1::text IS NULL OR name > $1) ORDER BY name LIMIT $2",
                &[&after, &limit.clamp(1, 1000)],
            )
            .await?;
        Ok(rows.iter().map(service_account).collect())
    }

    /// Revokes a service account's token at once. Returns whether it was active.
    pub async fn revoke_service_account(&self, name: &str) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE service_accounts SET revoked_at = now() \
                 WHERE name = $1 AND revoked_at IS NULL",
                &[&name],
            )
            .await?;
        Ok(n > 0)
    }

    /// Gives `principal` `role` in `project` (replacing a role it had). `NotFound` when the
    /// project does not exist.
    pub async fn grant_role(
        &self,
        project: &str,
        principal: &Principal,
        role: Role,
        granted_by: &str,
    ) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO role_bindings (project, principal, role, granted_by) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (project, principal) DO UPDATE \
             SET role = excluded.role, granted_at = now(), granted_by = excluded.granted_by",
            &[
                &project,
                &principal.to_string(),
                &role.as_str(),
                &granted_by,
            ],
        )
        .await?;
        Ok(())
    }

    /// Removes `principal` from `project`. Returns whether it was a member.
    pub async fn revoke_role(
        &self,
        project: &str,
        principal: &Principal,
    ) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let n = c
            .execute(
                "DELETE FROM role_bindings WHERE project = $1 AND principal = $2",
                &[&project, &principal.to_string()],
            )
            .await?;
        Ok(n > 0)
    }

    /// The role `principal` holds in `project`, if any.
    pub async fn role_of(
        &self,
        project: &str,
        principal: &Principal,
    ) -> Result<Option<Role>, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &c.prepare_cached(
                    "SELECT role FROM role_bindings WHERE project = $1 AND principal = $2",
                )
                .await?,
                &[&project, &principal.to_string()],
            )
            .await?;
        row.map(|r| column::<Role>("role_bindings.role", r.get::<_, &str>(0)))
            .transpose()
    }

    /// A page of a project's members, in principal order after `after`.
    pub async fn list_roles(
        &self,
        project: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<RoleBinding>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT project, principal, role, granted_at, granted_by FROM role_bindings \
                 WHERE project = $1 AND ($2::text IS NULL OR principal > $2) \
                 ORDER BY principal LIMIT $3",
                &[&project, &after, &limit.clamp(1, 1000)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RoleBinding {
                    project: r.get(0),
                    principal: column("role_bindings.principal", r.get::<_, &str>(1))?,
                    role: column("role_bindings.role", r.get::<_, &str>(2))?,
                    granted_at: r.get(3),
                    granted_by: r.get(4),
                })
            })
            .collect()
    }

    /// Records one call in the audit log.
    pub async fn record_audit(
        &self,
        principal: &str,
        project: &str,
        rpc: &str,
        request_digest: &str,
        outcome: AuditOutcome,
    ) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            &c.prepare_cached(
                "INSERT INTO audit_log (principal, project, rpc, request_digest, outcome) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .await?,
            &[
                &principal,
                &project,
                &rpc,
                &request_digest,
                &outcome.as_str(),
            ],
        )
        .await?;
        Ok(())
    }

    /// Audit records, newest first, filtered; page with `before` = the last id seen.
    pub async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT id, at, principal, project, rpc, request_digest, outcome FROM audit_log \
                 WHERE ($1::text IS NULL OR project = $1) \
                   AND ($2::text IS NULL OR principal = $2) \
                   AND ($3::text IS NULL OR rpc = $3) \
                   AND ($4::timestamptz IS NULL OR at >= $4) \
                   AND ($5::timestamptz IS NULL OR at < $5) \
                   AND ($6::bigint IS NULL OR id < $6) \
                 ORDER BY id DESC LIMIT $7",
                &[
                    &f.project,
                    &f.principal,
                    &f.rpc,
                    &f.since,
                    &f.until,
                    &f.before,
                    &f.limit.clamp(1, 1000),
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.get(0),
                    at: r.get(1),
                    principal: r.get(2),
                    project: r.get(3),
                    rpc: r.get(4),
                    request_digest: r.get(5),
                    outcome: column("audit_log.outcome", r.get::<_, &str>(6))?,
                })
            })
            .collect()
    }
}

fn project_row(r: &tokio_postgres::Row) -> ProjectRow {
    ProjectRow {
        name: r.get(0),
        created_at: r.get(1),
        created_by: r.get(2),
    }
}

fn service_account(r: &tokio_postgres::Row) -> ServiceAccount {
    ServiceAccount {
        name: r.get(0),
        created_at: r.get(1),
        created_by: r.get(2),
        expires_at: r.get(3),
        revoked_at: r.get(4),
    }
}
