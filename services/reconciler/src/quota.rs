//! Which entities a sweep leaves out because their credential's GitHub quota is at its reserve.
//!
//! A sweep is the one consumer of quota that can wait: webhooks (a change just made) and fixes
//! cannot. So a sweep re-emits an entity only while its credential has more than
//! `reserve_percent` of its hourly quota left (as the evaluators last read it from GitHub's
//! answers, see `plumbline_runtime::quota`); the rest of that credential's entities are
//! *deferred*, counted, and shown in `plumb status` with the time the quota renews. The next
//! sweep covers them: level-triggered, nothing is lost, and the reserve is left to what cannot
//! wait. An unchanged sweep costs no quota (every read is a 304), so it is never deferred
//! while the quota lasts.

use chrono::{DateTime, Utc};
use plumbline_store::{QuotaRow, Store};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// How long the quotas read from Postgres are used before they are read again.
const REFRESH: Duration = Duration::from_secs(5);

/// Until when a credential's sweep waits, `None` when it may go on. A renewed window (its
/// reset passed) always goes on: the row is what GitHub said before it renewed.
pub fn deferred_until(
    q: &QuotaRow,
    reserve_percent: u8,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if let Some(until) = q.limited_until.filter(|u| *u > now) {
        return Some(until.max(q.resets_at));
    }
    if q.resets_at <= now {
        return None;
    }
    let reserve = q.limit.max(0) as i128 * i128::from(reserve_percent.min(100)) / 100;
    (i128::from(q.remaining) <= reserve).then_some(q.resets_at)
}

/// The quotas, read at most every [`REFRESH`].
pub struct QuotaGate {
    reserve_percent: u8,
    rows: HashMap<String, QuotaRow>,
    read_at: Option<Instant>,
}

impl QuotaGate {
    pub fn new(reserve_percent: u8) -> Self {
        QuotaGate {
            reserve_percent,
            rows: HashMap::new(),
            read_at: None,
        }
    }

    /// Until when the sweep of an entity acted on with credential `key` waits. A failed read
    /// keeps what was read before (or lets the sweep go on: the evaluators still respect
    /// GitHub's limits themselves, parking what they cannot read).
    pub async fn deferred_until(&mut self, store: &Store, key: &str) -> Option<DateTime<Utc>> {
        if self.read_at.is_none_or(|at| at.elapsed() >= REFRESH) {
            match store.quotas().await {
                Ok(rows) => {
                    self.rows = rows
                        .into_iter()
                        .map(|r| (r.credential.clone(), r))
                        .collect();
                }
                Err(e) => tracing::debug!(error = %e, "reading the credentials' quotas failed"),
            }
            self.read_at = Some(Instant::now());
        }
        deferred_until(self.rows.get(key)?, self.reserve_percent, Utc::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(remaining: i64, resets_in: i64, limited_for: Option<i64>) -> (QuotaRow, DateTime<Utc>) {
        let now = Utc::now();
        (
            QuotaRow {
                credential: "own".into(),
                project: "default".into(),
                remaining,
                limit: 5000,
                resets_at: now + chrono::Duration::seconds(resets_in),
                limited_until: limited_for.map(|s| now + chrono::Duration::seconds(s)),
                observed_at: now,
            },
            now,
        )
    }

    #[test]
    fn a_sweep_waits_only_while_the_quota_is_at_its_reserve_and_the_window_runs() {
        let (q, now) = row(501, 600, None);
        assert_eq!(
            deferred_until(&q, 10, now),
            None,
            "above the reserve of 500"
        );
        let (q, now) = row(500, 600, None);
        assert_eq!(
            deferred_until(&q, 10, now),
            Some(q.resets_at),
            "at the reserve"
        );
        let (q, now) = row(0, -1, None);
        assert_eq!(deferred_until(&q, 10, now), None, "the window renewed");
        let (q, now) = row(4000, 600, Some(60));
        assert_eq!(
            deferred_until(&q, 10, now),
            Some(q.resets_at),
            "limited (a secondary limit): until the later of the two"
        );
        let (q, now) = row(4000, 30, Some(60));
        assert_eq!(deferred_until(&q, 10, now), q.limited_until);
        let (q, now) = row(1, 600, None);
        assert_eq!(
            deferred_until(&q, 0, now),
            None,
            "no reserve: only a limit stops it"
        );
        let (q, now) = row(0, 600, None);
        assert_eq!(deferred_until(&q, 0, now), Some(q.resets_at), "none left");
    }
}
