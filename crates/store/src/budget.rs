//! The content-creation ledger every actuator replica shares (table `content_writes`).
//!
//! GitHub counts content-creating requests per credential, whichever process sends them; a
//! budget counted per process would give N replicas N times the limit. Each reservation is a
//! row, made under a transaction-scoped advisory lock per credential (so two replicas cannot
//! both take the last slots), and the windows are counted on the database's clock, the one
//! clock all replicas share.
//!
//! An open reservation counts as used *now* until it is finished, and then as used at the time
//! it ended: a request reaches GitHub before its answer comes back, so GitHub's windows never
//! see more than ours. A reservation never finished (its process died) keeps counting for the
//! hour window, then stops.

use crate::{Store, StoreError};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Arbitrary constant that keys the ledger's advisory locks (with the credential's hash).
const LEDGER_LOCK: i32 = 0x706c_7562;

/// The two windows and their limits.
#[derive(Debug, Clone, Copy)]
pub struct ContentLimits {
    pub per_minute: u32,
    pub per_hour: u32,
    /// The "minute" (60 s; shorter in tests).
    pub minute: Duration,
    /// The "hour" (3,600 s; shorter in tests).
    pub hour: Duration,
}

/// Slots used in each window, and held by unfinished reservations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContentUsage {
    pub minute: u32,
    pub hour: u32,
    pub held: u32,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

const USAGE: &str = "SELECT
    coalesce(sum(slots) FILTER (WHERE ended_at IS NULL OR ended_at > now() - make_interval(secs => $2)), 0)::bigint,
    coalesce(sum(slots) FILTER (WHERE ended_at IS NULL OR ended_at > now() - make_interval(secs => $3)), 0)::bigint,
    coalesce(sum(slots) FILTER (WHERE ended_at IS NULL), 0)::bigint
  FROM content_writes
  WHERE credential = $1 AND reserved_at > now() - make_interval(secs => $3)
    AND (ended_at IS NULL OR ended_at > now() - make_interval(secs => $3))";

impl Store {
    /// Reserves `slots` content-creating requests of `credential`: `Ok(Ok(id))`, or
    /// `Ok(Err(at))` when the budget is spent, with the time to ask again.
    pub async fn reserve_content(
        &self,
        credential: &str,
        slots: u32,
        limits: &ContentLimits,
    ) -> Result<Result<i64, DateTime<Utc>>, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&LEDGER_LOCK, &credential],
        )
        .await?;
        // Rows past both windows are of no use any more.
        tx.execute(
            &tx.prepare_cached("DELETE FROM content_writes WHERE credential = $1 AND reserved_at < now() - make_interval(secs => $2) AND ended_at IS NOT NULL AND ended_at < now() - make_interval(secs => $2)").await?,
            &[&credential, &secs(limits.hour)],
        )
        .await?;
        let row = tx
            .query_one(
                &tx.prepare_cached(USAGE).await?,
                &[&credential, &secs(limits.minute), &secs(limits.hour)],
            )
            .await?;
        let (minute, hour): (i64, i64) = (row.get(0), row.get(1));
        let want = i64::from(slots);
        if minute + want <= i64::from(limits.per_minute)
            && hour + want <= i64::from(limits.per_hour)
        {
            let id: i64 = tx
                .query_one(&tx.prepare_cached("INSERT INTO content_writes (credential, slots) VALUES ($1, $2) RETURNING id").await?, &[&credential, &(slots as i32)])
                .await?
                .get(0);
            tx.commit().await?;
            return Ok(Ok(id));
        }
        // When enough finished writes have left each window (the oldest first); with nothing
        // finished to wait for (open reservations hold the budget), ask again in a second.
        let mut at: DateTime<Utc> = tx
            .query_one("SELECT now() + interval '1 second'", &[])
            .await?
            .get(0);
        for (used, limit, window) in [
            (minute, limits.per_minute, limits.minute),
            (hour, limits.per_hour, limits.hour),
        ] {
            let excess = (used + want - i64::from(limit)).max(0);
            if excess == 0 {
                continue;
            }
            let freed: Option<DateTime<Utc>> = tx
                .query_opt(
                    &tx.prepare_cached(
                        "SELECT ended_at + make_interval(secs => $2) FROM (
                           SELECT ended_at, sum(slots) OVER (ORDER BY ended_at, id) AS cum
                           FROM content_writes
                           WHERE credential = $1 AND ended_at > now() - make_interval(secs => $2)
                         ) w WHERE cum >= $3 ORDER BY ended_at LIMIT 1",
                    )
                    .await?,
                    &[&credential, &secs(window), &excess],
                )
                .await?
                .map(|r| r.get(0));
            if let Some(f) = freed {
                at = at.max(f);
            }
        }
        tx.commit().await?;
        Ok(Err(at))
    }

    /// Finishes a reservation: `used` of its slots were sent, now.
    pub async fn finish_content(&self, id: i64, used: u32) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            &c.prepare_cached("UPDATE content_writes SET ended_at = now(), slots = least(slots, $2) WHERE id = $1 AND ended_at IS NULL").await?,
            &[&id, &(used as i32)],
        )
        .await?;
        Ok(())
    }

    /// What `credential` used in each window, and holds.
    pub async fn content_usage(
        &self,
        credential: &str,
        limits: &ContentLimits,
    ) -> Result<ContentUsage, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_one(
                &c.prepare_cached(USAGE).await?,
                &[&credential, &secs(limits.minute), &secs(limits.hour)],
            )
            .await?;
        let n = |i: usize| u32::try_from(row.get::<_, i64>(i)).unwrap_or(u32::MAX);
        Ok(ContentUsage {
            minute: n(0),
            hour: n(1),
            held: n(2),
        })
    }
}
