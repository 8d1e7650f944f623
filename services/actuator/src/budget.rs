//! GitHub's content-creation limit, kept on our side: at most `per_minute` content-creating
//! requests in any minute and `per_hour` in any hour, per credential (GitHub documents 80 and
//! 500). Exceeding it earns a secondary rate limit that GitHub may answer with bans of its own,
//! so the actuator never sends past it: an action reserves every write it will make before
//! making the first, and waits (parked, not dropped) when the budget is spent.
//!
//! The budget is shared by every actuator replica using the credential: reservations are rows
//! of a ledger in Postgres (see `plumbline_store`'s `reserve_content`), counted on the
//! database's clock. A reserved slot counts as used *now* until the action ends, and then as
//! used at the end time; since a request arrives at GitHub before its answer comes back,
//! GitHub's window never sees more requests than ours.

use plumbline_store::{ContentLimits, ContentUsage, Store, StoreError};
use std::time::{Duration, SystemTime};

/// The budget of every credential; cheap to clone.
#[derive(Clone)]
pub struct ContentBudget {
    store: Store,
    limits: ContentLimits,
}

/// Slots held by a running action; [`Reservation::finish`] says how many it used. Dropped
/// unfinished (an error, a panic), it counts as having sent them all.
pub struct Reservation {
    store: Store,
    id: i64,
    slots: u32,
    done: bool,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("id", &self.id)
            .field("slots", &self.slots)
            .finish()
    }
}

impl Reservation {
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// The action ended having sent `used` content-creating requests (the rest are returned).
    pub async fn finish(mut self, used: u32) {
        self.done = true;
        if let Err(e) = self
            .store
            .finish_content(self.id, used.min(self.slots))
            .await
        {
            // The open reservation keeps counting for an hour: safe, only slower.
            tracing::warn!(reservation = self.id, error = %e, "finishing a content-budget reservation failed");
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let (store, id, slots) = (self.store.clone(), self.id, self.slots);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = store.finish_content(id, slots).await;
            });
        }
    }
}

impl ContentBudget {
    /// GitHub's windows: a minute and an hour.
    pub fn new(store: Store, per_minute: u32, per_hour: u32) -> Self {
        Self::with_windows(
            store,
            per_minute,
            per_hour,
            Duration::from_secs(60),
            Duration::from_secs(3600),
        )
    }

    /// Other window lengths (tests).
    pub fn with_windows(
        store: Store,
        per_minute: u32,
        per_hour: u32,
        minute: Duration,
        hour: Duration,
    ) -> Self {
        ContentBudget {
            store,
            limits: ContentLimits {
                per_minute: per_minute.max(1),
                per_hour: per_hour.max(1),
                minute,
                hour,
            },
        }
    }

    /// Reserves `slots` content-creating requests of `credential` now, or says when to ask
    /// again. An action needing more than a minute's budget gets the whole minute's.
    pub async fn try_reserve(
        &self,
        credential: &str,
        slots: u32,
    ) -> Result<Result<Reservation, SystemTime>, StoreError> {
        let slots = slots.min(self.limits.per_minute).min(self.limits.per_hour);
        Ok(
            match self
                .store
                .reserve_content(credential, slots, &self.limits)
                .await?
            {
                Ok(id) => Ok(Reservation {
                    store: self.store.clone(),
                    id,
                    slots,
                    done: false,
                }),
                Err(at) => Err(SystemTime::from(at)),
            },
        )
    }

    /// Content-creating requests of `credential` in the last minute and hour, and slots held
    /// now, over all replicas (for metrics).
    pub async fn usage(&self, credential: &str) -> Result<ContentUsage, StoreError> {
        self.store.content_usage(credential, &self.limits).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumbline_store::testing::TestDatabase;
    use std::time::Instant;

    /// Three replicas (budgets of their own on one database) run 60 actions of 2 writes each
    /// as fast as the budget lets them: no window ever holds more than its limit, summed over
    /// the replicas, and every action finishes. Windows are 1 s and 4 s here.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn replicas_share_one_budget_per_credential() {
        let db = TestDatabase::new().await;
        let (minute, hour) = (Duration::from_secs(1), Duration::from_secs(4));
        // Each write's reservation happened, by the database's clock, between these two
        // instants of this process: taken before asking and after the answer.
        let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(Instant, Instant)>::new()));
        let mut replicas = Vec::new();
        for r in 0..3 {
            let budget = ContentBudget::with_windows(db.store(), 8, 20, minute, hour);
            let sent = sent.clone();
            replicas.push(tokio::spawn(async move {
                for _ in 0..20 {
                    loop {
                        let asked = Instant::now();
                        match budget.try_reserve("app:1", 2).await.expect("ledger") {
                            Ok(res) => {
                                let answered = Instant::now();
                                for _ in 0..2 {
                                    sent.lock().expect("lock").push((asked, answered));
                                }
                                tokio::time::sleep(Duration::from_millis(20)).await;
                                res.finish(2).await;
                                break;
                            }
                            Err(at) => {
                                let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
                                assert!(wait <= hour + Duration::from_secs(1), "replica {r}: a refusal names a time within the window: {wait:?}");
                                tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
                            }
                        }
                    }
                }
            }));
        }
        for r in replicas {
            r.await.expect("replica");
        }
        let mut sent = sent.lock().expect("lock").clone();
        sent.sort();
        assert_eq!(sent.len(), 120, "every action ran");
        // Writes that certainly fall within one window (the latest answer minus the earliest
        // question is shorter than the window, with a little slack for the gap between the
        // database's clock and this process's) must be within its limit. Bounds rather than
        // one instant, so a replica delayed after its reservation (a loaded machine) cannot
        // make writes look closer together than the ledger saw them.
        let slack = Duration::from_millis(50);
        for (i, (first, _)) in sent.iter().enumerate() {
            let within = |window: Duration| {
                sent.iter()
                    .filter(|(asked, answered)| {
                        asked >= first && answered.duration_since(*first) + slack < window
                    })
                    .count()
            };
            let in_minute = within(minute);
            assert!(
                in_minute <= 8,
                "{in_minute} writes certainly within a window-minute of write {i}"
            );
            let in_hour = within(hour);
            assert!(
                in_hour <= 20,
                "{in_hour} writes certainly within a window-hour of write {i}"
            );
        }
    }

    #[tokio::test]
    async fn unused_slots_come_back_and_an_unfinished_reservation_counts_whole() {
        let db = TestDatabase::new().await;
        let budget = ContentBudget::with_windows(
            db.store(),
            10,
            500,
            Duration::from_secs(60),
            Duration::from_secs(3600),
        );
        let r = budget
            .try_reserve("a", 8)
            .await
            .expect("ledger")
            .expect("fits");
        assert!(
            budget.try_reserve("a", 4).await.expect("ledger").is_err(),
            "8 held + 4 > 10"
        );
        let other = budget
            .try_reserve("b", 10)
            .await
            .expect("ledger")
            .expect("another credential's budget");
        r.finish(2).await; // it needed only two (a reused pull request)
        let again = budget
            .try_reserve("a", 8)
            .await
            .expect("ledger")
            .expect("6 came back");
        assert_eq!(
            budget.usage("a").await.expect("usage"),
            ContentUsage {
                minute: 10,
                hour: 10,
                held: 8
            }
        );
        drop(again); // an action that ended without saying counts as having sent them all
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            budget.usage("a").await.expect("usage"),
            ContentUsage {
                minute: 10,
                hour: 10,
                held: 0
            }
        );
        let at = budget
            .try_reserve("a", 1)
            .await
            .expect("ledger")
            .expect_err("the minute is spent");
        let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
        assert!(
            wait > Duration::from_secs(55) && wait <= Duration::from_secs(61),
            "free again when the first write leaves the minute: {wait:?}"
        );
        other.finish(0).await;
        // An action larger than the minute's budget gets the whole minute, never starves.
        let big = budget
            .try_reserve("b", 25)
            .await
            .expect("ledger")
            .expect("clamped");
        assert_eq!(big.slots(), 10);
    }
}
