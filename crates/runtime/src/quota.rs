//! Each credential's GitHub quota, written where the reconciler and `plumb status` read it.
//!
//! A client knows its credential's quota from the rate-limit headers of every answer; nobody
//! outside the process does. The reconciler needs it to leave a credential's reserve to
//! webhooks and fixes, and people need it to understand why evaluations wait. Writing after
//! every request would add a database write per request, so a credential's quota is written
//! at most every [`EVERY`], and at once when its "limited" state changes.

use plumbline_domain::Entity;
use plumbline_github::{GitHub, Quota};
use plumbline_store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest a credential's recorded quota lags behind the client's (while it is in use).
pub const EVERY: Duration = Duration::from_secs(5);

/// Credentials remembered at most (a credential dropped from memory is simply written again).
const MAX_CREDENTIALS: usize = 10_000;

/// What was last written for each credential; cheap to clone.
#[derive(Clone, Default)]
pub struct QuotaReporter {
    last: Arc<Mutex<HashMap<String, (Instant, Quota)>>>,
}

fn datetime(epoch_secs: u64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(i64::try_from(epoch_secs).unwrap_or(i64::MAX), 0)
        .unwrap_or_default()
}

impl QuotaReporter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `quota` of `key` is due to be written now (and, if so, notes it as written).
    fn due(&self, key: &str, quota: Quota) -> bool {
        let Ok(mut last) = self.last.lock() else {
            return true;
        };
        let due = match last.get(key) {
            None => true,
            Some((at, q)) => {
                at.elapsed() >= EVERY
                    || q.limited_until_epoch_secs.is_some()
                        != quota.limited_until_epoch_secs.is_some()
                    || q.reset_epoch_secs != quota.reset_epoch_secs
            }
        };
        if due {
            if last.len() >= MAX_CREDENTIALS && !last.contains_key(key) {
                last.clear();
            }
            last.insert(key.to_string(), (Instant::now(), quota));
        }
        due
    }

    /// Writes the quota of the credential `entity` is acted on with, `github`, when due. A
    /// failed write is logged: the quota is advice to the reconciler, not the record's work.
    pub async fn report(&self, store: &Store, entity: &Entity, github: &GitHub) {
        let Some(quota) = github.quota() else { return };
        let key = plumbline_store::quota_key(&entity.project, entity.credential.as_deref());
        if !self.due(&key, quota) {
            return;
        }
        let written = store
            .record_quota(
                &key,
                &entity.project,
                i64::try_from(quota.remaining).unwrap_or(i64::MAX),
                i64::try_from(quota.limit).unwrap_or(i64::MAX),
                datetime(quota.reset_epoch_secs),
                quota.limited_until_epoch_secs.map(datetime),
            )
            .await;
        if let Err(e) = written {
            tracing::debug!(credential = %key, error = %e, "recording the quota failed");
            // Try again on the next answer rather than in EVERY.
            if let Ok(mut last) = self.last.lock() {
                last.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(remaining: u64, limited: bool) -> Quota {
        Quota {
            remaining,
            limit: 5000,
            reset_epoch_secs: 1_000,
            limited_until_epoch_secs: limited.then_some(1_000),
        }
    }

    #[test]
    fn a_quota_is_written_once_per_interval_and_at_once_when_limited() {
        let r = QuotaReporter::new();
        assert!(r.due("own", q(10, false)), "first answer");
        assert!(!r.due("own", q(9, false)), "within the interval");
        assert!(r.due("own", q(0, true)), "limited now: at once");
        assert!(!r.due("own", q(0, true)));
        assert!(r.due("provider:a/b", q(10, false)), "another credential");
        let mut renewed = q(4999, false);
        renewed.reset_epoch_secs = 4_600;
        assert!(r.due("own", renewed), "a new window: at once");
    }
}
