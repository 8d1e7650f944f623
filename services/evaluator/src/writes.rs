//! Status writes batched across the entities in flight.
//!
//! Each evaluation hands its rows to one writer task and waits for them to be durable before it
//! publishes its verdicts (the order the evaluator has always kept). The writer takes whatever
//! has queued while its previous transaction ran and writes it as one
//! ([`Store::record_entities`]): no timer, so an idle evaluator writes a lone entity at once and
//! a busy one writes larger batches. Measured with `evaluator_overhead`: one transaction per
//! entity left Postgres with 30% of the box's CPU, mostly per-statement work.
//!
//! A batch that fails for a reason other than the database being unavailable is written again
//! one entity at a time, so one entity's bad row (its entity removed meanwhile, say) fails only
//! its own evaluation.

use plumbline_bus::worker::Failure;
use plumbline_store::{EntityWrite, EvaluationRecord, InputsChange, Store};
use plumbline_telemetry::{catalog, Metrics};
use tokio::sync::{mpsc, oneshot};

/// Most entities in one transaction: a batch's statements carry every row at once, and a
/// batch this size (20 rules each) stays well under a second of Postgres work.
const MAX_BATCH: usize = 64;

struct Pending {
    entity_id: String,
    records: Vec<EvaluationRecord>,
    inputs: InputsChange,
    done: oneshot::Sender<Result<(), Failure>>,
}

impl Pending {
    fn write(&self) -> EntityWrite<'_> {
        EntityWrite {
            entity_id: &self.entity_id,
            records: &self.records,
            inputs: &self.inputs,
        }
    }
}

/// The handle evaluations write through; the writer task ends when every handle is dropped,
/// after writing what was queued.
#[derive(Clone)]
pub(crate) struct Writer {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Writer {
    pub(crate) fn spawn(store: Store, metrics: Metrics) -> Writer {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, metrics, rx));
        Writer { queue }
    }

    /// Writes one entity's evaluation; returns once it is durable (or failed).
    pub(crate) async fn write(
        &self,
        entity_id: String,
        records: Vec<EvaluationRecord>,
        inputs: InputsChange,
    ) -> Result<(), Failure> {
        let (done, result) = oneshot::channel();
        let stopped = || Failure::Unavailable {
            cause: plumbline_domain::WaitCause::Dependency,
            reason: "the status writer has stopped".into(),
            until: None,
        };
        self.queue
            .send(Pending {
                entity_id,
                records,
                inputs,
                done,
            })
            .map_err(|_| stopped())?;
        // Dropped unanswered: writing the batch panicked.
        result.await.map_err(|_| {
            Failure::Attempt("writing the evaluation to Postgres failed unexpectedly".into())
        })?
    }
}

async fn run(store: Store, metrics: Metrics, mut rx: mpsc::UnboundedReceiver<Pending>) {
    use futures::FutureExt as _;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // A panic while writing one batch fails that batch's evaluations (their answers are
        // dropped: `Writer::write` counts it as a failed attempt), never the writer: a writer
        // that stopped would leave every later evaluation of this replica waiting.
        let written = std::panic::AssertUnwindSafe(write_batch(&store, &metrics, &mut batch))
            .catch_unwind()
            .await;
        if written.is_err() {
            tracing::error!(
                entities = batch.len(),
                "writing a batch of evaluations panicked"
            );
            batch.clear();
        }
    }
}

/// Concurrent transactions that lock the same posture counters in different orders can
/// deadlock (Postgres then aborts one): the aborted batch is written again at once, a few
/// times, before its evaluations are told to back off.
const DEADLOCK_RETRIES: usize = 3;

async fn write_batch(store: &Store, metrics: &Metrics, batch: &mut Vec<Pending>) {
    let mut result = Ok(());
    for _ in 0..=DEADLOCK_RETRIES {
        let writes: Vec<EntityWrite> = batch.iter().map(Pending::write).collect();
        result = record(store, metrics, &writes).await;
        if !matches!(result, Err(plumbline_store::StoreError::Retry(_))) {
            break;
        }
    }
    match result {
        Ok(()) => answer(batch.drain(..), || Ok(())),
        Err(e) if e.is_transient() || batch.len() == 1 => {
            let failure = crate::store_failure(e);
            answer(batch.drain(..), || Err(failure.clone()))
        }
        Err(e) => {
            tracing::warn!(error = %e, entities = batch.len(), "a batched status write failed; writing its entities one at a time");
            for p in batch.drain(..) {
                let result = record(store, metrics, &[p.write()])
                    .await
                    .map_err(crate::store_failure);
                let _ = p.done.send(result);
            }
        }
    }
}

async fn record(
    store: &Store,
    metrics: &Metrics,
    writes: &[EntityWrite<'_>],
) -> Result<(), plumbline_store::StoreError> {
    metrics.inc(&catalog::EVALUATOR_STATUS_WRITES, &[], 1);
    metrics.inc(
        &catalog::EVALUATOR_STATUS_WRITE_ENTITIES,
        &[],
        writes.len() as u64,
    );
    store.record_entities(writes).await
}

fn answer(batch: impl Iterator<Item = Pending>, result: impl Fn() -> Result<(), Failure>) {
    for p in batch {
        // The evaluation may have been cancelled (shutdown): nobody is waiting then.
        let _ = p.done.send(result());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumbline_domain::{Entity, EntityRef};
    use plumbline_store::testing::TestDatabase;

    fn record(entity: &str) -> EvaluationRecord {
        plumbline_store::testing::evaluation(
            entity,
            plumbline_domain::EvalStatus::Pass,
            chrono::Utc::now(),
        )
    }

    /// Evaluations waiting together are written in one transaction; one that cannot be
    /// written fails alone and the others still land.
    #[tokio::test]
    async fn waiting_writes_share_a_transaction_and_a_bad_one_fails_alone() {
        let db = TestDatabase::new().await;
        let store = db.store();
        for i in 1..=3u64 {
            store
                .upsert_entity(&Entity {
                    entity_ref: EntityRef::repository("github", i),
                    project: "default".into(),
                    credential: None,
                    owner: "acme".into(),
                    name: format!("r{i}"),
                    properties: serde_json::json!({}),
                    labels: vec![],
                })
                .await
                .expect("entity");
        }
        let metrics = Metrics::new();
        let writer = Writer::spawn(store.clone(), metrics.clone());
        let write = |i: u64| {
            let writer = writer.clone();
            async move {
                let id = format!("github/repository/{i}");
                writer
                    .write(id.clone(), vec![record(&id)], InputsChange::Clear)
                    .await
            }
        };
        let counts = || {
            (
                metrics.counter_value("plumbline_evaluator_status_writes_total", &[]),
                metrics.counter_value("plumbline_evaluator_status_write_entities_total", &[]),
            )
        };
        // Queued together (the writer task runs only once all three are queued).
        let results = futures::future::join_all([write(1), write(2), write(3)]).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(counts(), (1, 3), "one transaction for the three");

        // Entity 404 is not registered: its row breaks the batch, which is written again one
        // entity at a time.
        let results = futures::future::join_all([write(1), write(404), write(3)]).await;
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        assert!(
            matches!(&results[1], Err(Failure::Attempt(_))),
            "{:?}",
            results[1]
        );
        assert_eq!(counts(), (1 + 1 + 3, 3 + 3 + 3));
        for i in [1, 3] {
            assert_eq!(
                store
                    .checks_count(&format!("github/repository/{i}"))
                    .await
                    .expect("checks"),
                2
            );
        }
    }
}
