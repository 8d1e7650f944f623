//! Webhook delivery dedupe (`webhook_deliveries`), shared by every ingest replica.
//!
//! A delivery is *claimed* before it is published and marked *published* once the broker
//! acknowledged it. The two states matter for a redelivery that arrives while the first attempt
//! is still in flight: if it were answered 2xx and the first attempt then failed, GitHub would
//! show the redelivery as delivered and the event would be lost. A claim expires after a lease
//! (a replica that died mid-publish does not block redeliveries), a published row after the
//! dedupe window.

use crate::{Store, StoreError};
use std::time::Duration;

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// New (or its earlier claim or dedupe window expired): this caller publishes it.
    Claimed,
    /// Already published within the dedupe window: answer 2xx, publish nothing.
    Duplicate,
    /// Another attempt holds a live claim right now: ask GitHub to try again later.
    InFlight,
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Store {
    /// Claims `delivery_id` for `lease`. See [`Claim`].
    pub async fn claim_delivery(
        &self,
        delivery_id: &str,
        event: &str,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let claims = self
            .claim_deliveries(&[(delivery_id.to_string(), event.to_string())], lease)
            .await?;
        Ok(claims.into_iter().next().unwrap_or(Claim::InFlight))
    }

    /// Claims many deliveries in one round trip (ingest batches the claims of concurrent
    /// requests): one [`Claim`] per input, in order. An id repeated within the batch is claimed
    /// by its first occurrence; the others are [`Claim::InFlight`].
    pub async fn claim_deliveries(
        &self,
        deliveries: &[(String, String)],
        lease: Duration,
    ) -> Result<Vec<Claim>, StoreError> {
        let mut seen = std::collections::HashSet::new();
        let (ids, events): (Vec<&str>, Vec<&str>) = deliveries
            .iter()
            .filter(|(id, _)| seen.insert(id.as_str()))
            .map(|(id, e)| (id.as_str(), e.as_str()))
            .unzip();
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let c = self.client().await?;
        let taken: std::collections::HashSet<String> = c
            .query(
                &c.prepare_cached("INSERT INTO webhook_deliveries (delivery_id, event, state, expires_at)
                 SELECT d, e, 'claimed', now() + $3 * interval '1 millisecond' FROM unnest($1::text[], $2::text[]) AS t(d, e)
                 ON CONFLICT (delivery_id) DO UPDATE SET
                    event = EXCLUDED.event, state = 'claimed', claimed_at = now(), received_at = now(),
                    expires_at = EXCLUDED.expires_at
                 WHERE webhook_deliveries.expires_at < now()
                 RETURNING delivery_id").await?,
                &[&ids, &events, &millis(lease)],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let others: Vec<&str> = ids
            .iter()
            .copied()
            .filter(|id| !taken.contains(*id))
            .collect();
        let states: std::collections::HashMap<String, String> = if others.is_empty() {
            Default::default()
        } else {
            // Not a cached statement: see mark_deliveries_published.
            c.query(
                "SELECT delivery_id, state FROM webhook_deliveries WHERE delivery_id = ANY($1)",
                &[&others],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
        };
        let mut first = std::collections::HashSet::new();
        Ok(deliveries
            .iter()
            .map(|(id, _)| {
                if !first.insert(id.as_str()) {
                    Claim::InFlight // a repeat within this batch
                } else if taken.contains(id) {
                    Claim::Claimed
                } else if states.get(id).map(String::as_str) == Some("published") {
                    Claim::Duplicate
                } else {
                    // Claimed elsewhere (or purged between the two statements: try again later).
                    Claim::InFlight
                }
            })
            .collect())
    }

    /// Marks claimed deliveries published; they are remembered for `window`. Returns how many
    /// rows changed (a claim that expired and was taken over is left to its new owner).
    pub async fn mark_deliveries_published(
        &self,
        delivery_ids: &[String],
        window: Duration,
    ) -> Result<u64, StoreError> {
        if delivery_ids.is_empty() {
            return Ok(0);
        }
        let c = self.client().await?;
        // An unnamed statement, planned for this array on the table as it is now. A cached
        // statement switches to a generic plan after five runs, and one chosen while the table
        // was small (a fresh deployment, the first seconds of a burst) is a sequential scan that
        // the connection keeps until the next ANALYZE: 25 million rows read in 30 s, measured.
        Ok(c.execute(
            "UPDATE webhook_deliveries SET state = 'published', expires_at = now() + $2 * interval '1 millisecond'
             WHERE delivery_id = ANY($1) AND state = 'claimed'",
            &[&delivery_ids, &millis(window)],
        )
        .await?)
    }

    /// Gives a claim back after a failed publish, so a redelivery is published.
    pub async fn release_delivery(&self, delivery_id: &str) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let n = c
            .execute(
                &c.prepare_cached(
                    "DELETE FROM webhook_deliveries WHERE delivery_id = $1 AND state = 'claimed'",
                )
                .await?,
                &[&delivery_id],
            )
            .await?;
        Ok(n > 0)
    }

    /// Deletes up to `limit` expired rows received more than `older_than` ago, oldest first;
    /// returns how many.
    ///
    /// `older_than` is the dedupe window: a published row expires a window after it was
    /// received, so younger rows need not be looked at (the index on `received_at` then reads
    /// only candidates). A claim abandoned by a crashed replica expires after its lease but is
    /// removed only then; until that it is taken over by a redelivery like any expired claim.
    pub async fn purge_expired_deliveries(
        &self,
        older_than: Duration,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let c = self.client().await?;
        Ok(c.execute(
            &c.prepare_cached(
                "DELETE FROM webhook_deliveries WHERE delivery_id IN
               (SELECT delivery_id FROM webhook_deliveries
                 WHERE received_at < now() - $1 * interval '1 millisecond' AND expires_at < now()
                 ORDER BY received_at LIMIT $2)",
            )
            .await?,
            &[&millis(older_than), &limit],
        )
        .await?)
    }

    /// The state of one delivery (`claimed`, `published`), if remembered.
    pub async fn delivery_state(&self, delivery_id: &str) -> Result<Option<String>, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &c.prepare_cached("SELECT state FROM webhook_deliveries WHERE delivery_id = $1")
                    .await?,
                &[&delivery_id],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }
}
