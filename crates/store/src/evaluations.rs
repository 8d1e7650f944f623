use crate::error::column;
use crate::{Store, StoreError};
use chrono::{DateTime, Utc};
use plumbline_domain::EvalStatus;
use uuid::Uuid;

/// One rule evaluation, written as the latest status and appended to history in one transaction.
#[derive(Debug, Clone)]
pub struct EvaluationRecord {
    pub evaluation_id: Uuid,
    pub entity_id: String,
    pub project: String,
    pub profile: String,
    pub rule_type: String,
    pub rule_name: String,
    pub status: EvalStatus,
    pub message: String,
    pub details: serde_json::Value,
    pub input_digest: String,
    pub rule_type_version: i64,
    pub cause_event_id: String,
    pub evaluated_at: DateTime<Utc>,
    /// The same verdict as the rule's latest status (status, message, details, input and rule
    /// type version): the status is refreshed, but history gets no row for it (the entity's
    /// check is recorded in `evaluation_checks` either way).
    pub unchanged: bool,
}

/// The latest verdict of one entity x profile x rule, with the entity's names.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusRow {
    pub entity_id: String,
    pub owner: String,
    pub name: String,
    pub profile: String,
    pub rule_type: String,
    pub rule_name: String,
    pub status: EvalStatus,
    pub message: String,
    pub input_digest: String,
    pub evaluated_at: DateTime<Utc>,
}

impl StatusRow {
    /// A row of `entity_id, owner, name, profile, rule_type, rule_name, status, message,
    /// input_digest, evaluated_at`, the columns every status query selects in this order.
    pub(crate) fn from_row(r: &tokio_postgres::Row) -> Result<StatusRow, StoreError> {
        Ok(StatusRow {
            entity_id: r.get(0),
            owner: r.get(1),
            name: r.get(2),
            profile: r.get(3),
            rule_type: r.get(4),
            rule_name: r.get(5),
            status: column("evaluation status", r.get(6))?,
            message: r.get(7),
            input_digest: r.get(8),
            evaluated_at: r.get(9),
        })
    }
}

/// What an entity's last complete evaluation read, and what else it was decided on.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredInputs {
    /// A digest of what the evaluation was decided on besides the reads: the entity as
    /// registered and the profiles and rule types that applied to it.
    pub context: String,
    /// The reads' validators (`plumbline_github::reads::Validator`s), as the evaluator wrote them.
    pub validators: serde_json::Value,
}

/// What an evaluation does to its entity's [`StoredInputs`].
#[derive(Debug, Clone)]
pub enum InputsChange {
    /// Left as it is (nothing new was learnt: the verdicts were reused from it).
    Keep,
    /// Replaced by what this evaluation read.
    Set(StoredInputs),
    /// Removed: this evaluation's reads cannot be validated, or it did not complete.
    Clear,
}

/// One entity's evaluation, as [`Store::record_entities`] writes it.
#[derive(Debug, Clone, Copy)]
pub struct EntityWrite<'a> {
    pub entity_id: &'a str,
    /// Every rule the entity was evaluated against this time; its other status rows are
    /// removed. A rule listed twice keeps its last record.
    pub records: &'a [EvaluationRecord],
    pub inputs: &'a InputsChange,
}

/// What an entity's last evaluation of one rule found: enough to reuse it when nothing changed.
#[derive(Debug, Clone, PartialEq)]
pub struct LastVerdict {
    pub status: EvalStatus,
    pub message: String,
    pub details: serde_json::Value,
    pub input_digest: String,
    pub rule_type_version: i64,
}

impl Store {
    /// History retention: deletes rows older than `max_age` (but never a rule's newest: history
    /// holds changes, so that row says since when the current verdict holds), and rows beyond
    /// the newest `keep_per_rule` of each entity x profile x rule, at most `limit` of each kind per call
    /// (callers loop while it returns a full `limit`, so one call never holds locks for long).
    /// The latest status is never touched.
    pub async fn prune_history(
        &self,
        max_age: std::time::Duration,
        keep_per_rule: i64,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let c = self.client().await?;
        let aged = c
            .execute(
                &c.prepare_cached("DELETE FROM evaluation_history WHERE id IN
                   (SELECT h.id FROM evaluation_history h
                    WHERE h.evaluated_at < now() - $1 * interval '1 second'
                      AND EXISTS (SELECT 1 FROM evaluation_history n
                                  WHERE n.entity_id = h.entity_id AND n.profile = h.profile
                                    AND n.rule_name = h.rule_name AND n.evaluated_at > h.evaluated_at)
                    LIMIT $2)").await?,
                &[&max_age.as_secs_f64(), &limit],
            )
            .await?;
        let surplus = c
            .execute(
                &c.prepare_cached("DELETE FROM evaluation_history WHERE id IN
                   (SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY entity_id, profile, rule_name
                                                                  ORDER BY evaluated_at DESC, id DESC) AS n
                                    FROM evaluation_history) ranked
                    WHERE n > $1 LIMIT $2)").await?,
                &[&keep_per_rule.max(1), &limit],
            )
            .await?;
        Ok(aged + surplus)
    }

    /// Retention of [`checks`](Self::checks_count): rows older than `max_age`, at most `limit`
    /// per call (callers loop while it returns a full `limit`). By age only, from the
    /// `checked_at` index: a count per entity would rank millions of rows on every call.
    pub async fn prune_checks(
        &self,
        max_age: std::time::Duration,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let c = self.client().await?;
        Ok(c
            .execute(
                &c.prepare_cached("DELETE FROM evaluation_checks WHERE id IN
                   (SELECT id FROM evaluation_checks WHERE checked_at < now() - $1 * interval '1 second' LIMIT $2)").await?,
                &[&max_age.as_secs_f64(), &limit],
            )
            .await?)
    }

    /// The latest verdict of every (profile, rule name) of one entity.
    #[tracing::instrument(name = "db.last_verdicts", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]

    pub async fn last_verdicts(
        &self,
        entity_id: &str,
    ) -> Result<std::collections::HashMap<(String, String), LastVerdict>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                &c.prepare_cached("SELECT profile, rule_name, status, message, details, input_digest, rule_type_version
                 FROM evaluation_status WHERE entity_id = $1").await?,
                &[&entity_id],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    (r.get(0), r.get(1)),
                    LastVerdict {
                        status: column("evaluation status", r.get(2))?,
                        message: r.get(3),
                        details: r.get(4),
                        input_digest: r.get(5),
                        rule_type_version: r.get(6),
                    },
                ))
            })
            .collect()
    }

    /// Writes a batch of evaluations (one entity's rules) atomically: every status row and every
    /// history row, or none, so the offset is stored only after all of it is durable.
    ///
    /// The entity's status rows for rules it was not evaluated against this time (a rule removed
    /// from a profile, a profile deleted or renamed) are removed in the same transaction, so
    /// the latest status never reports a rule that no longer applies.
    pub async fn record_evaluations(
        &self,
        entity_id: &str,
        records: &[EvaluationRecord],
    ) -> Result<(), StoreError> {
        self.record_entities(&[EntityWrite {
            entity_id,
            records,
            inputs: &InputsChange::Keep,
        }])
        .await
    }

    /// Several entities' evaluations (see [`record_evaluations`](Self::record_evaluations)),
    /// each with what it does to its entity's [`StoredInputs`], in one transaction: all of
    /// them or none.
    ///
    /// Why batches: measured with `evaluator_overhead`, Postgres took 30% of the box's CPU
    /// writing one transaction of five statements per entity, most of it per-statement work
    /// (executor set-up, the posture counts' statement triggers) rather than rows. Here each
    /// statement carries every entity of the batch, so that cost is paid once per batch.
    ///
    /// Entities are written in id order. An entity listed more than once is written in the
    /// order given, each later write in a pass of its own within the same transaction. A
    /// record must belong to the entity it is written for (batches mix projects: a record
    /// naming another entity is refused, not written into that entity's rows).
    ///
    /// Two batches running at once (two evaluator replicas) share the posture counters of the
    /// statuses they change, which the statement triggers lock in one order per statement but
    /// not across the delete, insert and update triggers of one batch: Postgres may abort one
    /// with a deadlock ([`StoreError::Retry`]), and the caller writes it again.
    #[tracing::instrument(name = "db.record_evaluations", skip_all, fields(otel.kind = "client", db.system = "postgresql", entities = writes.len()))]
    pub async fn record_entities(&self, writes: &[EntityWrite<'_>]) -> Result<(), StoreError> {
        if let Some((w, r)) = writes.iter().find_map(|w| {
            w.records
                .iter()
                .find(|r| r.entity_id != w.entity_id)
                .map(|r| (w, r))
        }) {
            return Err(StoreError::Invalid(format!(
                "an evaluation of {} was given to be written for {}",
                r.entity_id, w.entity_id
            )));
        }
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let statements = Statements::prepare(&tx).await?;
        for pass in passes(writes) {
            statements.write(&tx, &pass).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// What the entity's last complete evaluation read, if it was recorded.
    #[tracing::instrument(name = "db.entity_inputs", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn entity_inputs(&self, entity_id: &str) -> Result<Option<StoredInputs>, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &c.prepare_cached(
                    "SELECT context, validators FROM entity_inputs WHERE entity_id = $1",
                )
                .await?,
                &[&entity_id],
            )
            .await?;
        Ok(row.map(|r| StoredInputs {
            context: r.get(0),
            validators: r.get(1),
        }))
    }

    /// Latest statuses of a project, optionally for one entity or one profile.
    pub async fn list_status(
        &self,
        project: &str,
        entity_id: Option<&str>,
        profile: Option<&str>,
    ) -> Result<Vec<StatusRow>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                &c.prepare_cached("SELECT s.entity_id, e.owner, e.name, s.profile, s.rule_type, s.rule_name, s.status,
                        s.message, s.input_digest, s.evaluated_at
                 FROM evaluation_status s JOIN entities e ON e.id = s.entity_id
                 WHERE s.project = $1 AND e.retired_at IS NULL
                   AND ($2::text IS NULL OR s.entity_id = $2)
                   AND ($3::text IS NULL OR s.profile = $3)
                 ORDER BY e.owner, e.name, s.profile, s.rule_name").await?,
                &[&project, &entity_id, &profile],
            )
            .await?;
        rows.iter().map(StatusRow::from_row).collect()
    }

    /// How many times an entity was evaluated (one row per evaluation, whatever changed).
    pub async fn checks_count(&self, entity_id: &str) -> Result<i64, StoreError> {
        self.count_of_entity(
            "SELECT count(*) FROM evaluation_checks WHERE entity_id = $1",
            entity_id,
        )
        .await
    }

    /// Number of history rows for an entity (all profiles and rules).
    pub async fn history_count(&self, entity_id: &str) -> Result<i64, StoreError> {
        self.count_of_entity(
            "SELECT count(*) FROM evaluation_history WHERE entity_id = $1",
            entity_id,
        )
        .await
    }

    async fn count_of_entity(&self, sql: &str, entity_id: &str) -> Result<i64, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_one(&c.prepare_cached(sql).await?, &[&entity_id])
            .await?;
        Ok(row.get(0))
    }
}

/// `writes` split into passes in which each entity appears once (in the order given), each
/// pass sorted by entity id.
fn passes<'w, 'a>(writes: &'w [EntityWrite<'a>]) -> Vec<Vec<&'w EntityWrite<'a>>> {
    let mut passes: Vec<Vec<&EntityWrite>> = Vec::new();
    for w in writes {
        // The first pass after the last one holding this entity.
        let after = passes
            .iter()
            .rposition(|p| p.iter().any(|x| x.entity_id == w.entity_id))
            .map_or(0, |i| i + 1);
        match passes.get_mut(after) {
            Some(p) => p.push(w),
            None => passes.push(vec![w]),
        }
    }
    for p in &mut passes {
        p.sort_by(|a, b| a.entity_id.cmp(b.entity_id));
    }
    passes
}

/// The statements of [`Store::record_entities`], each over every entity of a pass.
struct Statements {
    delete: tokio_postgres::Statement,
    upsert: tokio_postgres::Statement,
    history: tokio_postgres::Statement,
    check: tokio_postgres::Statement,
    set_inputs: tokio_postgres::Statement,
    clear_inputs: tokio_postgres::Statement,
}

impl Statements {
    async fn prepare(tx: &deadpool_postgres::Transaction<'_>) -> Result<Statements, StoreError> {
        Ok(Statements {
            // An entity's status rows for rules it was not evaluated against this time.
            delete: tx
                .prepare_cached(
                    "DELETE FROM evaluation_status s WHERE s.entity_id = ANY($1::text[])
                     AND NOT EXISTS (SELECT 1 FROM unnest($2::text[], $3::text[], $4::text[])
                                            AS k(entity_id, profile, rule_name)
                                     WHERE k.entity_id = s.entity_id AND k.profile = s.profile
                                       AND k.rule_name = s.rule_name)",
                )
                .await?,
            // All statuses in one statement (the posture counts are kept by a statement-level
            // trigger: one pass per statement, not per row).
            upsert: tx
                .prepare_cached(
                    "INSERT INTO evaluation_status
                        (entity_id, project, profile, rule_type, rule_name, status, message, details,
                         input_digest, rule_type_version, evaluation_id, evaluated_at)
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                          $6::text[], $7::text[], $8::jsonb[], $9::text[], $10::int8[],
                                          $11::uuid[], $12::timestamptz[])
                     ON CONFLICT (entity_id, profile, rule_name) DO UPDATE SET
                        rule_type = EXCLUDED.rule_type, status = EXCLUDED.status,
                        message = EXCLUDED.message, details = EXCLUDED.details,
                        input_digest = EXCLUDED.input_digest,
                        rule_type_version = EXCLUDED.rule_type_version,
                        evaluation_id = EXCLUDED.evaluation_id, evaluated_at = EXCLUDED.evaluated_at
                     WHERE evaluation_status.evaluated_at <= EXCLUDED.evaluated_at",
                )
                .await?,
            // History rows only for verdicts that changed.
            history: tx
                .prepare_cached(
                    "INSERT INTO evaluation_history
                        (evaluation_id, entity_id, project, profile, rule_type, rule_name, status,
                         message, details, input_digest, cause_event_id, evaluated_at)
                     SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                                          $6::text[], $7::text[], $8::text[], $9::jsonb[], $10::text[],
                                          $11::text[], $12::timestamptz[])",
                )
                .await?,
            // One check per entity evaluated, whatever changed.
            check: tx
                .prepare_cached(
                    "INSERT INTO evaluation_checks (entity_id, project, cause_event_id, rules, changed)
                     SELECT e.id, e.project, k.cause, k.rules, k.changed
                     FROM unnest($1::text[], $2::text[], $3::int4[], $4::int4[])
                          AS k(entity_id, cause, rules, changed)
                     JOIN entities e ON e.id = k.entity_id",
                )
                .await?,
            set_inputs: tx
                .prepare_cached(
                    "INSERT INTO entity_inputs (entity_id, context, validators)
                     SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[])
                     ON CONFLICT (entity_id) DO UPDATE SET
                        context = EXCLUDED.context, validators = EXCLUDED.validators,
                        recorded_at = now()
                     WHERE entity_inputs.context <> EXCLUDED.context
                        OR entity_inputs.validators <> EXCLUDED.validators",
                )
                .await?,
            clear_inputs: tx
                .prepare_cached("DELETE FROM entity_inputs WHERE entity_id = ANY($1::text[])")
                .await?,
        })
    }

    /// One pass (each entity once), its statements sent together: tokio-postgres pipelines
    /// statements polled at once on one connection, so the lot is one round trip. They touch
    /// different rows or tables, and the server runs them in the order they were sent.
    async fn write(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        pass: &[&EntityWrite<'_>],
    ) -> Result<(), StoreError> {
        type Params<'a> = Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)>;
        fn col<'a, T>(
            rs: &[&'a EvaluationRecord],
            f: impl Fn(&'a EvaluationRecord) -> T,
        ) -> Vec<T> {
            rs.iter().map(|r| f(r)).collect()
        }
        let entities: Vec<&str> = pass.iter().map(|w| w.entity_id).collect();
        // Each entity's rules, a rule listed twice keeping its last record.
        let mut latest: Vec<&EvaluationRecord> = Vec::new();
        let mut changed: Vec<&EvaluationRecord> = Vec::new();
        let (mut causes, mut rule_counts, mut changed_counts) = (vec![], vec![], vec![]);
        for w in pass {
            let first = latest.len();
            for r in w.records {
                match latest[first..]
                    .iter_mut()
                    .find(|l| l.profile == r.profile && l.rule_name == r.rule_name)
                {
                    Some(l) => *l = r,
                    None => latest.push(r),
                }
            }
            let changed_before = changed.len();
            changed.extend(w.records.iter().filter(|r| !r.unchanged));
            causes.push(
                w.records
                    .first()
                    .map(|r| r.cause_event_id.as_str())
                    .unwrap_or_default(),
            );
            rule_counts.push(i32::try_from(latest.len() - first).unwrap_or(i32::MAX));
            changed_counts.push(i32::try_from(changed.len() - changed_before).unwrap_or(i32::MAX));
        }
        let s = (
            col(&latest, |r| r.entity_id.as_str()),
            col(&latest, |r| r.project.as_str()),
            col(&latest, |r| r.profile.as_str()),
            col(&latest, |r| r.rule_type.as_str()),
            col(&latest, |r| r.rule_name.as_str()),
            col(&latest, |r| r.status.as_str()),
            col(&latest, |r| r.message.as_str()),
            col(&latest, |r| &r.details),
            col(&latest, |r| r.input_digest.as_str()),
            col(&latest, |r| r.rule_type_version),
            col(&latest, |r| r.evaluation_id),
            col(&latest, |r| r.evaluated_at),
        );
        let status_params: Params = vec![
            &s.0, &s.1, &s.2, &s.3, &s.4, &s.5, &s.6, &s.7, &s.8, &s.9, &s.10, &s.11,
        ];
        // The statuses kept: every other status row of these entities is removed (each record
        // is its write's entity's, as `record_entities` checked).
        let delete_params: Params = vec![&entities, &s.0, &s.2, &s.4];
        let h = (
            col(&changed, |r| r.evaluation_id),
            col(&changed, |r| r.entity_id.as_str()),
            col(&changed, |r| r.project.as_str()),
            col(&changed, |r| r.profile.as_str()),
            col(&changed, |r| r.rule_type.as_str()),
            col(&changed, |r| r.rule_name.as_str()),
            col(&changed, |r| r.status.as_str()),
            col(&changed, |r| r.message.as_str()),
            col(&changed, |r| &r.details),
            col(&changed, |r| r.input_digest.as_str()),
            col(&changed, |r| r.cause_event_id.as_str()),
            col(&changed, |r| r.evaluated_at),
        );
        let history_params: Params = vec![
            &h.0, &h.1, &h.2, &h.3, &h.4, &h.5, &h.6, &h.7, &h.8, &h.9, &h.10, &h.11,
        ];
        let check_params: Params = vec![&entities, &causes, &rule_counts, &changed_counts];
        let mut set = (vec![], vec![], vec![]);
        let mut clear = vec![];
        for w in pass {
            match w.inputs {
                InputsChange::Keep => {}
                InputsChange::Set(stored) => {
                    set.0.push(w.entity_id);
                    set.1.push(stored.context.as_str());
                    set.2.push(&stored.validators);
                }
                InputsChange::Clear => clear.push(w.entity_id),
            }
        }
        let set_params: Params = vec![&set.0, &set.1, &set.2];
        let clear_params: Params = vec![&clear];

        let mut writes = Vec::with_capacity(6);
        writes.push(tx.execute(&self.delete, &delete_params));
        if !latest.is_empty() {
            writes.push(tx.execute(&self.upsert, &status_params));
        }
        if !changed.is_empty() {
            writes.push(tx.execute(&self.history, &history_params));
        }
        writes.push(tx.execute(&self.check, &check_params));
        if !set.0.is_empty() {
            writes.push(tx.execute(&self.set_inputs, &set_params));
        }
        if !clear.is_empty() {
            writes.push(tx.execute(&self.clear_inputs, &clear_params));
        }
        futures::future::try_join_all(writes).await?;
        Ok(())
    }
}
