//! The REST API's per-token rate limit: at most N requests a minute with one access token, past
//! which Snyk answers 429 with `Retry-After` (docs/snyk-api.md, "Rate limits").
//!
//! The window **slides**: a request is refused when N requests with the same token were accepted
//! in the 60 seconds before it, whatever the clock's minute. A fixed window (a counter reset at
//! each whole minute) would let a client send 2N requests within a second across a minute's
//! boundary and pass against the fake while Snyk, which promises no particular window, may refuse
//! it; the fake is strict where a client could get away with sloppiness. Each token keeps the
//! times of its accepted requests (at most N of them), so `Retry-After` is exact: the whole
//! seconds, rounded up, until the oldest of the last N leaves the window and a request would be
//! accepted again. Refused requests take no slot: a client that honours `Retry-After` gets in
//! then, and one that retries sooner is refused again.
//!
//! Each 429 that comes after the `Retry-After` of the token's previous one opens a new *pause*
//! (`Stats::rate_limit_pauses`): a client whose replicas share the pause is refused about once
//! per replica per pause, one whose replicas each learn it alone once per request.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use crate::app::Inner;
use crate::error::RestError;

/// The length of the window.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);

/// The fewest tokens kept before stale windows are swept away.
const MIN_SWEEP: usize = 64;

/// The accepted requests of each access token in the last [`WINDOW`]. Lives under the state's
/// lock; the limit itself is armed like a fault ([`crate::Fault::RateLimitPerMinute`]).
#[derive(Default)]
pub(crate) struct RateLimiter {
    windows: HashMap<String, TokenWindow>,
    /// How many tokens may be kept before the windows that emptied are dropped: twice the count
    /// left by the last sweep, so that sweeping costs O(1) per request, amortized.
    sweep_at: usize,
}

/// One token's accepted requests still in the window, oldest first, and until when its last 429
/// asked it to wait.
#[derive(Default)]
struct TokenWindow {
    accepted: VecDeque<Instant>,
    paused_until: Option<Instant>,
}

/// Why a request was refused: the whole seconds until a slot frees, and whether this 429 opened
/// a pause (it came after the `Retry-After` of the token's previous 429).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) retry_after: u32,
    pub(crate) new_pause: bool,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The keys are access tokens: never print them.
        f.debug_struct("RateLimiter")
            .field("tokens", &self.windows.len())
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// Takes a slot in `token`'s window at `now`, or, when `per_minute` requests were accepted
    /// within the window already, answers the whole seconds (1 to 60) until one would be.
    pub(crate) fn admit(
        &mut self,
        token: &str,
        per_minute: NonZeroU32,
        now: Instant,
    ) -> Result<(), Refusal> {
        if self.windows.len() >= self.sweep_at.max(MIN_SWEEP) {
            self.windows.retain(|_, window| {
                forget_expired(&mut window.accepted, now);
                !window.accepted.is_empty() || window.paused_until.is_some_and(|t| t > now)
            });
            self.sweep_at = self.windows.len().saturating_mul(2);
        }
        let window = self.windows.entry(token.to_owned()).or_default();
        let accepted = &mut window.accepted;
        forget_expired(accepted, now);
        let limit = usize::try_from(per_minute.get()).unwrap_or(usize::MAX);
        if accepted.len() < limit {
            accepted.push_back(now);
            return Ok(());
        }
        // The limit may have been lowered since these were accepted: the slot frees when enough
        // of them have left that fewer than `limit` remain.
        let frees_at = accepted[accepted.len() - limit] + WINDOW;
        let retry_after = whole_seconds_up(frees_at.saturating_duration_since(now));
        let new_pause = window.paused_until.is_none_or(|until| now >= until);
        if new_pause {
            window.paused_until = Some(now + Duration::from_secs(retry_after.into()));
        }
        Err(Refusal {
            retry_after,
            new_pause,
        })
    }
}

fn forget_expired(window: &mut VecDeque<Instant>, now: Instant) {
    while window
        .front()
        .is_some_and(|&at| now.saturating_duration_since(at) >= WINDOW)
    {
        window.pop_front();
    }
}

/// `wait` in whole seconds rounded up, at least 1 (a `Retry-After: 0` invites a busy loop).
fn whole_seconds_up(wait: Duration) -> u32 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    u32::try_from(seconds.max(1)).unwrap_or(u32::MAX)
}

impl Inner {
    /// Lets a REST request made with `token` through the rate limit in force, if any; past it,
    /// counts the refusal and answers the 429.
    pub(crate) fn admit_rest_request(
        &mut self,
        token: &str,
        now: Instant,
    ) -> Result<(), RestError> {
        let Some(per_minute) = self.faults.rate_limit_per_minute() else {
            return Ok(());
        };
        self.rate_limiter
            .admit(token, per_minute, now)
            .map_err(|refusal| {
                self.stats.rate_limited += 1;
                self.stats.rate_limit_pauses += u64::from(refusal.new_pause);
                *self
                    .stats
                    .rate_limited_retry_after
                    .entry(refusal.retry_after)
                    .or_default() += 1;
                RestError::rate_limited(per_minute, refusal.retry_after)
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The seconds a refusal asks for.
    fn wait(r: Result<(), Refusal>) -> Result<(), u32> {
        r.map_err(|r| r.retry_after)
    }

    #[test]
    fn a_429_opens_a_pause_only_after_the_previous_one_ended() {
        let mut limiter = RateLimiter::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(limiter.admit("a", limit(1), at(0)), Ok(()));
        let first = limiter.admit("a", limit(1), at(30_000)).unwrap_err();
        assert_eq!(
            first,
            Refusal {
                retry_after: 30,
                new_pause: true
            }
        );
        // Inside the first one's Retry-After: the same pause.
        assert!(
            !limiter
                .admit("a", limit(1), at(59_000))
                .unwrap_err()
                .new_pause
        );
        assert_eq!(limiter.admit("a", limit(1), at(60_000)), Ok(()));
        // After it: a new one.
        assert!(
            limiter
                .admit("a", limit(1), at(61_000))
                .unwrap_err()
                .new_pause
        );
        // Another token's pauses are its own.
        assert_eq!(limiter.admit("b", limit(1), at(61_000)), Ok(()));
        assert!(
            limiter
                .admit("b", limit(1), at(61_001))
                .unwrap_err()
                .new_pause
        );
    }

    fn limit(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn the_window_slides_and_retry_after_names_when_a_slot_frees() {
        let mut limiter = RateLimiter::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(wait(limiter.admit("a", limit(2), at(0))), Ok(()));
        assert_eq!(wait(limiter.admit("a", limit(2), at(10_000))), Ok(()));
        // The first leaves the window at 60 s: 40.5 s from 19.5 s, rounded up.
        assert_eq!(wait(limiter.admit("a", limit(2), at(19_500))), Err(41));
        assert_eq!(wait(limiter.admit("a", limit(2), at(59_999))), Err(1));
        // A refusal took no slot: at 60 s exactly the first request has left.
        assert_eq!(wait(limiter.admit("a", limit(2), at(60_000))), Ok(()));
        // Now the second one (10 s) is the oldest of the last two.
        assert_eq!(wait(limiter.admit("a", limit(2), at(61_000))), Err(9));
        // No minute boundary resets it: 2 in any 60 s, never more.
        assert_eq!(wait(limiter.admit("a", limit(2), at(69_999))), Err(1));
        assert_eq!(wait(limiter.admit("a", limit(2), at(70_000))), Ok(()));
    }

    #[test]
    fn each_token_has_its_own_window() {
        let mut limiter = RateLimiter::default();
        let now = Instant::now();
        assert_eq!(wait(limiter.admit("a", limit(1), now)), Ok(()));
        assert_eq!(wait(limiter.admit("a", limit(1), now)), Err(60));
        assert_eq!(wait(limiter.admit("b", limit(1), now)), Ok(()));
    }

    #[test]
    fn a_lowered_limit_waits_for_enough_requests_to_leave() {
        let mut limiter = RateLimiter::default();
        let start = Instant::now();
        for s in 0..3 {
            let at = start + Duration::from_secs(s * 10);
            assert_eq!(wait(limiter.admit("a", limit(3), at)), Ok(()));
        }
        // Three in the window, two allowed: two must leave for one to fit, the second at 70 s.
        let at = start + Duration::from_secs(30);
        assert_eq!(wait(limiter.admit("a", limit(2), at)), Err(40));
        // One allowed: all three must leave, the last at 80 s.
        assert_eq!(wait(limiter.admit("a", limit(1), at)), Err(50));
    }

    #[test]
    fn windows_that_emptied_are_swept() {
        let mut limiter = RateLimiter::default();
        let start = Instant::now();
        for i in 0..MIN_SWEEP {
            limiter.admit(&i.to_string(), limit(1), start).unwrap();
        }
        assert_eq!(limiter.windows.len(), MIN_SWEEP);
        limiter.admit("late", limit(1), start + WINDOW).unwrap();
        assert_eq!(limiter.windows.len(), 1, "only the live window is kept");
        assert!(
            !format!("{limiter:?}").contains("late"),
            "no token in Debug"
        );
    }
}
