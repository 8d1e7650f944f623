//! Per-credential rate-limit state: read from every response, consulted before every request.
//!
//! Once GitHub says a credential is limited (primary: `x-ratelimit-remaining: 0`; secondary:
//! 403/429 with `retry-after`), no request is sent with it until the limit lifts; callers get
//! a typed `RateLimited { until }` at once and can pause that credential's work instead of
//! spinning. Monotonic tokio time is used, so tests run it with paused time.

use http::{HeaderMap, StatusCode};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// The first back-off when GitHub says "limited" without saying until when.
const FIRST_BACKOFF: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(60 * 60);

#[derive(Debug, Default)]
pub struct RateState {
    /// Requests left in the current window, as last reported.
    pub remaining: Option<u64>,
    pub limit: Option<u64>,
    /// When the window renews (epoch seconds), as last reported.
    reset: Option<u64>,
    limited_until: Option<Instant>,
    /// Consecutive limit answers without a reset time: the back-off doubles each time.
    unexplained_limits: u32,
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// `until` as epoch seconds, for errors and logs.
pub fn epoch_of(until: Instant) -> u64 {
    epoch_now() + until.saturating_duration_since(Instant::now()).as_secs()
}

impl RateState {
    /// `Some(until)` while requests must not be sent.
    pub fn blocked_until(&self) -> Option<Instant> {
        self.limited_until.filter(|u| *u > Instant::now())
    }

    /// Updates the state from a response; returns `Some(until)` when the response itself
    /// says "rate limited".
    /// When the current window renews (epoch seconds), as GitHub last said.
    pub fn reset_epoch(&self) -> Option<u64> {
        self.reset
    }

    pub fn observe(
        &mut self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Option<Instant> {
        let now = Instant::now();
        if let Some(r) = header_u64(headers, "x-ratelimit-remaining") {
            // Answers to concurrent requests arrive in any order: within one window the count
            // only goes down, so an older answer does not raise it again.
            let same_window = header_u64(headers, "x-ratelimit-reset")
                .is_some_and(|reset| Some(reset) == self.reset);
            self.remaining = Some(match self.remaining {
                Some(known) if same_window => known.min(r),
                _ => r,
            });
        }
        if let Some(l) = header_u64(headers, "x-ratelimit-limit") {
            self.limit = Some(l);
        }
        if let Some(r) = header_u64(headers, "x-ratelimit-reset") {
            self.reset = Some(r);
        }
        let reset_in = header_u64(headers, "x-ratelimit-reset")
            .map(|reset| Duration::from_secs(reset.saturating_sub(epoch_now())));
        let limited_status =
            status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS;
        let until = if limited_status {
            if let Some(secs) = header_u64(headers, "retry-after") {
                Some(now + Duration::from_secs(secs))
            } else if let (Some(0), Some(reset_in)) = (self.remaining, reset_in) {
                Some(now + reset_in)
            } else if status == StatusCode::TOO_MANY_REQUESTS
                || self.remaining == Some(0)
                || says_secondary_limit(body)
            {
                // Limited without saying until when: back off exponentially from a minute.
                let backoff = FIRST_BACKOFF
                    .saturating_mul(1 << self.unexplained_limits.min(6))
                    .min(MAX_BACKOFF);
                self.unexplained_limits += 1;
                Some(now + backoff)
            } else {
                // A plain 403 (permissions) is a final answer, not a limit.
                None
            }
        } else {
            None
        };
        match until {
            Some(u) => self.limited_until = Some(u),
            None if (200..400).contains(&status.as_u16()) => {
                self.unexplained_limits = 0;
                // A successful answer that spent the last request: the next one would fail.
                if self.remaining == Some(0) {
                    self.limited_until = Some(now + reset_in.unwrap_or(FIRST_BACKOFF));
                }
            }
            None => {}
        }
        until
    }
}

/// Whether a 403's body is GitHub's secondary rate limit (or its older "abuse detection")
/// message. GitHub does not always send `retry-after` with it, and a secondary limit taken for
/// a permission refusal would trigger fallbacks (an issue instead of an advisory) and keep
/// hammering the limit.
fn says_secondary_limit(body: &[u8]) -> bool {
    let head = &body[..body.len().min(4096)];
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    text.contains("secondary rate limit") || text.contains("abuse detection")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().expect("header"));
        }
        m
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_blocks_until_it_passes() {
        let mut s = RateState::default();
        assert!(s
            .observe(
                StatusCode::TOO_MANY_REQUESTS,
                &h(&[("retry-after", "30".into())]),
                b""
            )
            .is_some());
        assert!(s.blocked_until().is_some());
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(s.blocked_until().is_some(), "still limited at 29 s");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(s.blocked_until().is_none(), "free after 30 s");
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_budget_blocks_until_reset_and_plain_403_does_not() {
        let mut s = RateState::default();
        let reset = (epoch_now() + 120).to_string();
        s.observe(
            StatusCode::OK,
            &h(&[
                ("x-ratelimit-remaining", "0".into()),
                ("x-ratelimit-reset", reset),
            ]),
            b"",
        );
        let until = s.blocked_until().expect("limited after the last request");
        assert!(until.saturating_duration_since(Instant::now()) > Duration::from_secs(100));
        let mut p = RateState::default();
        assert!(p
            .observe(
                StatusCode::FORBIDDEN,
                &h(&[("x-ratelimit-remaining", "10".into())]),
                b"{\"message\": \"Resource not accessible by integration\"}"
            )
            .is_none());
        assert!(p.blocked_until().is_none());
        // The same status whose body says secondary rate limit is a limit, with or without
        // retry-after, and blocks the credential.
        let body = br#"{"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}"#;
        assert!(p
            .observe(
                StatusCode::FORBIDDEN,
                &h(&[("x-ratelimit-remaining", "10".into())]),
                body
            )
            .is_some());
        assert!(p.blocked_until().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn within_a_window_the_count_left_only_goes_down() {
        let mut s = RateState::default();
        let reset = (epoch_now() + 600).to_string();
        let answer = |left: &str, reset: &str| {
            h(&[
                ("x-ratelimit-remaining", left.into()),
                ("x-ratelimit-reset", reset.into()),
            ])
        };
        s.observe(StatusCode::OK, &answer("0", &reset), b"");
        // The answer to a request sent earlier, read later.
        s.observe(StatusCode::OK, &answer("1", &reset), b"");
        assert_eq!(s.remaining, Some(0));
        // A new window starts from what GitHub says.
        let next = (epoch_now() + 4200).to_string();
        s.observe(StatusCode::OK, &answer("4999", &next), b"");
        assert_eq!(s.remaining, Some(4999));
    }

    #[tokio::test(start_paused = true)]
    async fn unexplained_limits_back_off_exponentially_from_a_minute() {
        let mut s = RateState::default();
        let first = s
            .observe(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), b"")
            .expect("limited");
        assert_eq!(
            first.saturating_duration_since(Instant::now()),
            Duration::from_secs(60)
        );
        let second = s
            .observe(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), b"")
            .expect("limited");
        assert_eq!(
            second.saturating_duration_since(Instant::now()),
            Duration::from_secs(120)
        );
        s.observe(StatusCode::OK, &HeaderMap::new(), b"");
        let again = s
            .observe(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), b"")
            .expect("limited");
        assert_eq!(
            again.saturating_duration_since(Instant::now()),
            Duration::from_secs(60),
            "reset by a success"
        );
    }
}
