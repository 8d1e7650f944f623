//! GitHub's content-creation limit, kept on our side: at most `per_minute` content-creating
//! requests in any minute and `per_hour` in any hour, per credential (GitHub documents 80 and
//! 500). Exceeding it earns a secondary rate limit that GitHub may answer with bans of its own,
//! so the actuator never sends past it: an action reserves every write it will make before
//! making the first, and waits (parked, not dropped) when the budget is spent.
//!
//! A reserved slot counts as used *now* until the action ends, and then as used at the end
//! time; since a request arrives at GitHub before its answer comes back, GitHub's window never
//! sees more requests than ours.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::time::{Duration, Instant};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

#[derive(Debug, Default)]
struct Window {
    /// When finished writes ended, oldest first, for the last hour.
    ended: VecDeque<Instant>,
    /// Slots reserved by actions still running.
    in_use: u32,
}

/// The budget of every credential; cheap to clone.
#[derive(Debug, Clone)]
pub struct ContentBudget {
    per_minute: u32,
    per_hour: u32,
    windows: Arc<Mutex<HashMap<String, Window>>>,
}

/// Slots held by a running action; [`Reservation::finish`] says how many it used.
#[derive(Debug)]
pub struct Reservation {
    budget: ContentBudget,
    credential: String,
    slots: u32,
    done: bool,
}

impl Reservation {
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// The action ended having sent `used` content-creating requests (the rest are returned).
    pub fn finish(mut self, used: u32) {
        self.release(used.min(self.slots));
    }

    fn release(&mut self, used: u32) {
        if self.done {
            return;
        }
        self.done = true;
        let mut windows = self.budget.lock();
        // Read under the lock, so `ended` stays in time order (the counts below search it).
        let now = Instant::now();
        let w = windows.entry(self.credential.clone()).or_default();
        w.in_use = w.in_use.saturating_sub(self.slots);
        for _ in 0..used {
            w.ended.push_back(now);
        }
    }
}

impl Drop for Reservation {
    /// An action that ended without saying (an error, a panic) may have sent them all.
    fn drop(&mut self) {
        let slots = self.slots;
        self.release(slots);
    }
}

impl ContentBudget {
    pub fn new(per_minute: u32, per_hour: u32) -> Self {
        ContentBudget {
            per_minute: per_minute.max(1),
            per_hour: per_hour.max(1),
            windows: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Window>> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `slots` content-creating requests of `credential` now, or says when to ask
    /// again. An action needing more than a minute's budget gets the whole minute's.
    pub fn try_reserve(&self, credential: &str, slots: u32) -> Result<Reservation, Instant> {
        let slots = slots.min(self.per_minute).min(self.per_hour);
        let now = Instant::now();
        let mut windows = self.lock();
        let w = windows.entry(credential.to_string()).or_default();
        while w.ended.front().is_some_and(|t| now.duration_since(*t) >= HOUR) {
            w.ended.pop_front();
        }
        // `ended` is in time order: the last minute's writes are its tail. Searching instead of
        // scanning keeps this cheap when the limits are raised far past GitHub's defaults.
        let minute_start = w.ended.partition_point(|t| now.duration_since(*t) >= MINUTE);
        let minute_used = w.in_use + (w.ended.len() - minute_start) as u32;
        let hour_used = w.in_use + w.ended.len() as u32;
        if minute_used + slots <= self.per_minute && hour_used + slots <= self.per_hour {
            w.in_use += slots;
            return Ok(Reservation {
                budget: self.clone(),
                credential: credential.to_string(),
                slots,
                done: false,
            });
        }
        // When enough of the ended writes have left each window; reserved slots free up when
        // their actions end, so with nothing ended to wait for, ask again shortly.
        let mut at = now + Duration::from_secs(1);
        let need = |used: u32, limit: u32| (used + slots).saturating_sub(limit) as usize;
        let minute_excess = need(minute_used, self.per_minute);
        if minute_excess > 0 {
            if let Some(t) = w.ended.get(minute_start + minute_excess - 1) {
                at = at.max(*t + MINUTE);
            }
        }
        let hour_excess = need(hour_used, self.per_hour);
        if hour_excess > 0 {
            if let Some(t) = w.ended.get(hour_excess - 1) {
                at = at.max(*t + HOUR);
            }
        }
        Err(at)
    }

    /// Content-creating requests of `credential` ended in the last minute and hour, and slots
    /// held now (for metrics).
    pub fn usage(&self, credential: &str) -> (u32, u32, u32) {
        let now = Instant::now();
        let windows = self.lock();
        let Some(w) = windows.get(credential) else { return (0, 0, 0) };
        let minute = (w.ended.len() - w.ended.partition_point(|t| now.duration_since(*t) >= MINUTE)) as u32;
        let hour = (w.ended.len() - w.ended.partition_point(|t| now.duration_since(*t) >= HOUR)) as u32;
        (minute, hour, w.in_use)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 200 actions of 4 writes each, each asking until it gets its slots (as a parked record
    /// does): no minute ever holds more than 80 writes, no hour more than 500, and all finish.
    #[tokio::test(start_paused = true)]
    async fn queued_actions_all_finish_within_the_minute_and_hour_limits() {
        let budget = ContentBudget::new(80, 500);
        let mut sent: Vec<Instant> = Vec::new();
        let mut queue: VecDeque<u32> = (0..200).collect();
        let start = Instant::now();
        while let Some(action) = queue.pop_front() {
            match budget.try_reserve("app:1", 4) {
                Ok(r) => {
                    // The writes take 50 ms; they are sent during that time.
                    for _ in 0..4 {
                        sent.push(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    r.finish(4);
                }
                Err(at) => {
                    assert!(at > Instant::now(), "a refusal says when to come back");
                    queue.push_front(action);
                    tokio::time::sleep_until(at).await;
                }
            }
        }
        assert_eq!(sent.len(), 800, "every action ran");
        for (i, t) in sent.iter().enumerate() {
            let in_minute = sent[i..].iter().take_while(|u| u.duration_since(*t) < MINUTE).count();
            assert!(in_minute <= 80, "{in_minute} writes within a minute of write {i}");
            let in_hour = sent[i..].iter().take_while(|u| u.duration_since(*t) < HOUR).count();
            assert!(in_hour <= 500, "{in_hour} writes within an hour of write {i}");
        }
        // 500 fit in the first hour, the other 300 in the next one.
        let elapsed = Instant::now().duration_since(start);
        assert!(elapsed >= HOUR && elapsed < HOUR + Duration::from_secs(5 * 60), "{elapsed:?}");
    }

    /// Raised limits (thousands an hour): the windows are counted from the time-ordered tail,
    /// and a refusal still names the moment the oldest write in the way leaves the minute.
    #[tokio::test(start_paused = true)]
    async fn windows_count_right_with_many_writes_spread_over_the_hour() {
        let budget = ContentBudget::new(5_000, 10_000);
        let start = Instant::now();
        for _ in 0..2_000 {
            budget.try_reserve("a", 1).expect("within the limits").finish(1);
            tokio::time::sleep(Duration::from_millis(30)).await; // write i at i * 30 ms
        }
        // At 60 s every write but the first (sent a full minute ago) is within the minute.
        assert_eq!(budget.usage("a"), (1_999, 2_000, 0));
        tokio::time::sleep(Duration::from_secs(30)).await;
        // At 90 s, writes 1,001 .. 1,999 (sent after 30 s) are.
        assert_eq!(budget.usage("a"), (999, 2_000, 0));
        // 4,500 more would be 499 too many: free when write 1,499 leaves the minute.
        let at = budget.try_reserve("a", 4_500).expect_err("999 in the minute already");
        assert_eq!(at, start + Duration::from_millis(1_499 * 30) + MINUTE);
        assert!(budget.try_reserve("a", 4_001).is_ok(), "exactly the minute's limit fits");
    }

    #[tokio::test(start_paused = true)]
    async fn credentials_have_budgets_of_their_own_and_unused_slots_come_back() {
        let budget = ContentBudget::new(10, 500);
        let r = budget.try_reserve("a", 8).expect("fits");
        assert!(budget.try_reserve("a", 4).is_err(), "8 held + 4 > 10");
        let other = budget.try_reserve("b", 10).expect("another credential's budget");
        r.finish(2); // it needed only two (a reused pull request)
        let again = budget.try_reserve("a", 8).expect("6 came back");
        assert_eq!(budget.usage("a"), (2, 2, 8));
        drop(again); // an action that ended without saying counts as having sent them all
        assert_eq!(budget.usage("a"), (10, 10, 0));
        let at = budget.try_reserve("a", 1).expect_err("the minute is spent");
        assert_eq!(at, Instant::now() + MINUTE, "free again when the first write leaves the window");
        tokio::time::sleep(MINUTE).await;
        assert!(budget.try_reserve("a", 10).is_ok());
        other.finish(0);
        // An action larger than the minute's budget gets the whole minute, never starves.
        let big = budget.try_reserve("b", 25).expect("clamped");
        assert_eq!(big.slots(), 10);
    }
}
