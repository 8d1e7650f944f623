//! A project's posture at fleet scale: counts, pages of statuses, one rule's history.
//!
//! Every query here is answered from an index whatever the fleet's size (the store's tests seed
//! 100,000 entities and check the plans with EXPLAIN): counts from `posture_counts`, which
//! triggers keep as statuses change (a few rows per rule, whatever the fleet's size), pages by
//! keyset over `(project[, status], entity_id, profile, rule_name)`, never by OFFSET. The SQL is built per filter combination rather than
//! with `$n IS NULL OR ...` guards, which hide the usable index from a generic plan.

use crate::evaluations::StatusRow;
use crate::{Store, StoreError};
use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;

/// How many rules of a profile are in one status across a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostureCount {
    pub profile: String,
    pub rule_name: String,
    pub status: String,
    pub count: i64,
}

/// Which statuses a page holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusFilter {
    pub status: Option<String>,
    pub profile: Option<String>,
    pub entity_id: Option<String>,
}

/// Where a page ends: the last row's (entity id, profile, rule name). Pass it back for the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCursor {
    pub entity_id: String,
    pub profile: String,
    pub rule_name: String,
}

impl StatusCursor {
    /// An opaque token for APIs (the three parts, NUL-separated, hex-encoded).
    pub fn token(&self) -> String {
        hex::encode(format!(
            "{}\0{}\0{}",
            self.entity_id, self.profile, self.rule_name
        ))
    }

    pub fn from_token(token: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::Invalid(format!("invalid page token {token:?}"));
        let bytes = hex::decode(token).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = text.split('\0');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(e), Some(p), Some(r), None) => Ok(StatusCursor {
                entity_id: e.to_string(),
                profile: p.to_string(),
                rule_name: r.to_string(),
            }),
            _ => Err(bad()),
        }
    }
}

/// One page of statuses and the cursor of the next (None: this was the last page).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusPage {
    pub rows: Vec<StatusRow>,
    pub next: Option<StatusCursor>,
}

/// One evaluation of a rule, from history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    pub evaluation_id: uuid::Uuid,
    pub status: String,
    pub message: String,
    pub input_digest: String,
    pub evaluated_at: DateTime<Utc>,
}

/// Which of a project's evaluations to list (see [`Store::history_page`]).
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub project: String,
    pub entity_id: Option<String>,
    pub profile: Option<String>,
    pub rule_name: Option<String>,
    pub status: Option<plumbline_domain::EvalStatus>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Page on: rows with a smaller id than this.
    pub before: Option<i64>,
    pub limit: i64,
}

/// One evaluation of a project's history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub id: i64,
    pub evaluation_id: uuid::Uuid,
    pub entity_id: String,
    pub profile: String,
    pub rule_type: String,
    pub rule_name: String,
    pub status: plumbline_domain::EvalStatus,
    pub message: String,
    pub evaluated_at: DateTime<Utc>,
}

/// Longest page served.
pub const MAX_PAGE: i64 = 1000;

/// From the counts kept as statuses change (migration V13): a few rows per rule and status.
const COUNTS_SQL: &str = "SELECT profile, rule_name, status, sum(n)::bigint FROM posture_counts
     WHERE project = $1 GROUP BY profile, rule_name, status HAVING sum(n) > 0
     ORDER BY profile, rule_name, status";

const HISTORY_SQL: &str =
    "SELECT evaluation_id, status, message, input_digest, evaluated_at FROM evaluation_history
     WHERE entity_id = $1 AND profile = $2 AND rule_name = $3
     ORDER BY evaluated_at DESC LIMIT $4";

/// The page query for a filter: `$1` project, then the filter's values, then the cursor, then
/// the limit, in that order.
fn page_sql(filter: &StatusFilter, with_cursor: bool) -> String {
    let mut conds = vec!["s.project = $1".to_string()];
    let mut n = 1;
    for (present, column) in [
        (filter.status.is_some(), "s.status"),
        (filter.profile.is_some(), "s.profile"),
        (filter.entity_id.is_some(), "s.entity_id"),
    ] {
        if present {
            n += 1;
            conds.push(format!("{column} = ${n}"));
        }
    }
    if with_cursor {
        conds.push(format!(
            "(s.entity_id, s.profile, s.rule_name) > (${}, ${}, ${})",
            n + 1,
            n + 2,
            n + 3
        ));
        n += 3;
    }
    format!(
        "SELECT s.entity_id, e.owner, e.name, s.profile, s.rule_type, s.rule_name, s.status,
                s.message, s.input_digest, s.evaluated_at
         FROM evaluation_status s JOIN entities e ON e.id = s.entity_id
         WHERE {}
         ORDER BY s.entity_id, s.profile, s.rule_name
         LIMIT ${}",
        conds.join(" AND "),
        n + 1
    )
}

fn page_params<'a>(
    project: &'a String,
    filter: &'a StatusFilter,
    after: Option<&'a StatusCursor>,
    limit: &'a i64,
) -> Vec<&'a (dyn ToSql + Sync)> {
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![project];
    for v in [&filter.status, &filter.profile, &filter.entity_id]
        .into_iter()
        .flatten()
    {
        params.push(v);
    }
    if let Some(c) = after {
        params.push(&c.entity_id);
        params.push(&c.profile);
        params.push(&c.rule_name);
    }
    params.push(limit);
    params
}

impl Store {
    /// How many rules are in each status, per profile and rule, across a project.
    pub async fn posture_counts(&self, project: &str) -> Result<Vec<PostureCount>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(&c.prepare_cached(COUNTS_SQL).await?, &[&project])
            .await?;
        Ok(rows
            .iter()
            .map(|r| PostureCount {
                profile: r.get(0),
                rule_name: r.get(1),
                status: r.get(2),
                count: r.get(3),
            })
            .collect())
    }

    /// One page of a project's latest statuses in (entity id, profile, rule name) order, after
    /// `after`, at most `limit` rows (capped at [`MAX_PAGE`]).
    pub async fn status_page(
        &self,
        project: &str,
        filter: &StatusFilter,
        after: Option<&StatusCursor>,
        limit: i64,
    ) -> Result<StatusPage, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let c = self.client().await?;
        let project = project.to_string();
        let sql = page_sql(filter, after.is_some());
        let rows = c
            .query(
                &c.prepare_cached(&sql).await?,
                &page_params(&project, filter, after, &limit),
            )
            .await?;
        let rows: Vec<StatusRow> = rows
            .iter()
            .map(StatusRow::from_row)
            .collect::<Result<_, _>>()?;
        let next = (rows.len() as i64 == limit)
            .then(|| rows.last())
            .flatten()
            .map(|r| StatusCursor {
                entity_id: r.entity_id.clone(),
                profile: r.profile.clone(),
                rule_name: r.rule_name.clone(),
            });
        Ok(StatusPage { rows, next })
    }

    /// The newest `limit` changes of one rule's verdict on one entity, newest first (history
    /// keeps a row per change; the status row says when it was last checked).
    pub async fn rule_history(
        &self,
        entity_id: &str,
        profile: &str,
        rule_name: &str,
        limit: i64,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        let c = self.client().await?;
        let limit = limit.clamp(1, MAX_PAGE);
        let rows = c
            .query(
                &c.prepare_cached(HISTORY_SQL).await?,
                &[&entity_id, &profile, &rule_name, &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| HistoryRow {
                evaluation_id: r.get(0),
                status: r.get(1),
                message: r.get(2),
                input_digest: r.get(3),
                evaluated_at: r.get(4),
            })
            .collect())
    }

    /// A project's evaluations, newest first, filtered; page with `before` = the last id seen.
    pub async fn history_page(&self, f: &HistoryFilter) -> Result<Vec<HistoryEntry>, StoreError> {
        let c = self.client().await?;
        let status = f.status.map(|s| s.as_str());
        let rows = c
            .query(
                &c.prepare_cached(
                    "SELECT id, evaluation_id, entity_id, profile, rule_type, rule_name, status, message, evaluated_at \
                     FROM evaluation_history WHERE project = $1 \
                     AND ($2::text IS NULL OR entity_id = $2) \
                     AND ($3::text IS NULL OR profile = $3) \
                     AND ($4::text IS NULL OR rule_name = $4) \
                     AND ($5::text IS NULL OR status = $5) \
                     AND ($6::timestamptz IS NULL OR evaluated_at >= $6) \
                     AND ($7::timestamptz IS NULL OR evaluated_at < $7) \
                     AND ($8::bigint IS NULL OR id < $8) \
                     ORDER BY id DESC LIMIT $9",
                )
                .await?,
                &[
                    &f.project,
                    &f.entity_id,
                    &f.profile,
                    &f.rule_name,
                    &status,
                    &f.since,
                    &f.until,
                    &f.before,
                    &f.limit.clamp(1, MAX_PAGE),
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(HistoryEntry {
                    id: r.get(0),
                    evaluation_id: r.get(1),
                    entity_id: r.get(2),
                    profile: r.get(3),
                    rule_type: r.get(4),
                    rule_name: r.get(5),
                    status: crate::error::column("evaluation_history.status", r.get::<_, &str>(6))?,
                    message: r.get(7),
                    evaluated_at: r.get(8),
                })
            })
            .collect()
    }

    /// The plans Postgres chooses for the posture queries, as `EXPLAIN (FORMAT JSON)` documents,
    /// named: what an operator (or a test) checks when the posture gets slow.
    pub async fn explain_posture_queries(
        &self,
        project: &str,
        entity_id: &str,
    ) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let c = self.client().await?;
        let project_s = project.to_string();
        let mut plans = Vec::new();
        let explain = |sql: &str| format!("EXPLAIN (FORMAT JSON) {sql}");
        let row = c
            .query_one(explain(COUNTS_SQL).as_str(), &[&project])
            .await?;
        plans.push((
            "posture_counts".to_string(),
            row.get::<_, serde_json::Value>(0),
        ));
        let cursor = StatusCursor {
            entity_id: entity_id.to_string(),
            profile: String::new(),
            rule_name: String::new(),
        };
        let limit = 100i64;
        for (name, filter, after) in [
            ("status_page", StatusFilter::default(), None),
            ("status_page_after", StatusFilter::default(), Some(&cursor)),
            (
                "failing_page",
                StatusFilter {
                    status: Some("fail".into()),
                    ..Default::default()
                },
                Some(&cursor),
            ),
            (
                "entity_status",
                StatusFilter {
                    entity_id: Some(entity_id.into()),
                    ..Default::default()
                },
                None,
            ),
        ] {
            let row = c
                .query_one(
                    explain(&page_sql(&filter, after.is_some())).as_str(),
                    &page_params(&project_s, &filter, after, &limit),
                )
                .await?;
            plans.push((name.to_string(), row.get::<_, serde_json::Value>(0)));
        }
        let (p, r) = (String::new(), String::new());
        let row = c
            .query_one(explain(HISTORY_SQL).as_str(), &[&entity_id, &p, &r, &limit])
            .await?;
        plans.push((
            "rule_history".to_string(),
            row.get::<_, serde_json::Value>(0),
        ));
        let row = c
            .query_one(explain(crate::waits::WAITS).as_str(), &[&project])
            .await?;
        plans.push(("waits".to_string(), row.get::<_, serde_json::Value>(0)));
        Ok(plans)
    }
}
