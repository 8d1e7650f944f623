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
use plumbline_store::{EntityWrite, EvaluationRecord, InputsChange, Store, StoredInputs};
use plumbline_telemetry::{catalog, Metrics};
use tokio::sync::{mpsc, oneshot};

/// Most entities in one transaction: a batch's statements carry every row at once, and a
/// batch this size (20 rules each) stays well under a second of Postgres work.
const MAX_BATCH: usize = 64;

/// What an evaluation does to its entity's stored inputs (an owned [`InputsChange`]).
pub(crate) enum Inputs {
    Keep,
    Set(StoredInputs),
    Clear,
}

struct Pending {
    entity_id: String,
    records: Vec<EvaluationRecord>,
    inputs: Inputs,
    done: oneshot::Sender<Result<(), Failure>>,
}

impl Pending {
    fn write(&self) -> EntityWrite<'_> {
        EntityWrite {
            entity_id: &self.entity_id,
            records: &self.records,
            inputs: match &self.inputs {
                Inputs::Keep => InputsChange::Keep,
                Inputs::Set(s) => InputsChange::Set(s),
                Inputs::Clear => InputsChange::Clear,
            },
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
        inputs: Inputs,
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
        result.await.map_err(|_| stopped())?
    }
}

async fn run(store: Store, metrics: Metrics, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let writes: Vec<EntityWrite> = batch.iter().map(Pending::write).collect();
        let result = record(&store, &metrics, &writes).await;
        drop(writes);
        match result {
            Ok(()) => answer(batch.drain(..), || Ok(())),
            Err(e) if e.is_transient() || batch.len() == 1 => {
                let failure = crate::store_failure(e);
                answer(batch.drain(..), || Err(failure.clone()))
            }
            Err(e) => {
                tracing::warn!(error = %e, entities = batch.len(), "a batched status write failed; writing its entities one at a time");
                for p in batch.drain(..) {
                    let result = record(&store, &metrics, &[p.write()])
                        .await
                        .map_err(crate::store_failure);
                    let _ = p.done.send(result);
                }
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
