//! Entity events as the benchmarks send them: one per entity, with its names, acknowledged.

use plumbline_bus::{Producer, TraceContext};
use plumbline_domain::{Entity, EventReason};
use plumbline_proto::v1::EntityEvent;
use plumbline_proto::Message as _;
use std::collections::BTreeMap;

/// Publishes one `reason` event per entity on `topic`, keyed by entity id, 5,000 in flight at
/// most; returns once the broker acknowledged every one.
pub async fn publish(
    producer: &Producer,
    topic: &str,
    entities: &[Entity],
    reason: EventReason,
) -> anyhow::Result<()> {
    for chunk in entities.chunks(5000) {
        let sends = chunk.iter().map(|e| async move {
            let mut ev = EntityEvent::new(&e.entity_ref, reason);
            ev.owner = e.owner.clone();
            ev.name = e.name.clone();
            producer
                .publish(
                    topic,
                    &e.id(),
                    &ev.encode_to_vec(),
                    "dev.plumbline.entity_event.v1",
                    &ev.event_id,
                    &TraceContext::new_root(),
                    &BTreeMap::new(),
                )
                .await
        });
        for r in futures::future::join_all(sends).await {
            r?;
        }
    }
    Ok(())
}
