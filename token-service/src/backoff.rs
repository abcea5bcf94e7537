//! How long to wait before trying again: the one delay computation of token-service. A step
//! (constant, or doubling per attempt up to a cap) spread by random jitter, so that callers and
//! replicas that failed together do not retry, poll or sweep together.
//!
//! Its users, each with its own parameters: retries of Snyk calls and of Redis writes in
//! `refresh` (doubling, half to all of the step), a replica waiting for another one's lease
//! (`refresh`: the poll interval up to half as long again), the keep-alive sweep (`keepalive`: a
//! fifth either way) and the org listing of a new install (`service`: a fixed pause).

use std::time::Duration;

use rand::Rng as _;

/// A delay policy: [`Backoff::delay`] of attempt `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    doubling: bool,
    /// The delay falls uniformly between these percentages of the step, in whole milliseconds.
    low_percent: u32,
    high_percent: u32,
}

impl Backoff {
    /// `base`, doubled per attempt (attempt 0 is `base`), at most `cap`; the delay falls between
    /// half the step and all of it ("equal jitter": spread, yet never much shorter than planned).
    pub const fn exponential(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            doubling: true,
            low_percent: 50,
            high_percent: 100,
        }
    }

    /// `step` for every attempt, without jitter until [`Backoff::jitter`] adds some.
    pub const fn constant(step: Duration) -> Self {
        Backoff {
            base: step,
            cap: step,
            doubling: false,
            low_percent: 100,
            high_percent: 100,
        }
    }

    /// The delay falls uniformly between `low` and `high` percent of the step (`low <= high`).
    pub const fn jitter(self, low_percent: u32, high_percent: u32) -> Self {
        assert!(low_percent <= high_percent, "jitter: low above high");
        Backoff {
            low_percent,
            high_percent,
            ..self
        }
    }

    /// A random delay before attempt `attempt`, within [`Backoff::bounds`].
    pub fn delay(&self, attempt: u32) -> Duration {
        let (low, high) = self.bounds_millis(attempt);
        Duration::from_millis(if low == high {
            low
        } else {
            rand::rng().random_range(low..=high)
        })
    }

    /// The shortest and the longest delay before attempt `attempt`.
    pub fn bounds(&self, attempt: u32) -> (Duration, Duration) {
        let (low, high) = self.bounds_millis(attempt);
        (Duration::from_millis(low), Duration::from_millis(high))
    }

    /// The step before jitter: `base`, doubled `attempt` times when doubling (at most 2^10),
    /// capped.
    fn step(&self, attempt: u32) -> Duration {
        if self.doubling {
            self.base.saturating_mul(1 << attempt.min(10)).min(self.cap)
        } else {
            self.base
        }
    }

    /// Both bounds round down to whole milliseconds.
    fn bounds_millis(&self, attempt: u32) -> (u64, u64) {
        let step = self.step(attempt).as_millis();
        let percent = |p: u32| u64::try_from(step * u128::from(p) / 100).unwrap_or(u64::MAX);
        (percent(self.low_percent), percent(self.high_percent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn exponential_steps_double_from_base_up_to_the_cap() {
        let b = Backoff::exponential(ms(200), ms(2000));
        assert_eq!(b.bounds(0), (ms(100), ms(200)));
        assert_eq!(b.bounds(1), (ms(200), ms(400)));
        assert_eq!(b.bounds(2), (ms(400), ms(800)));
        assert_eq!(b.bounds(3), (ms(800), ms(1600)));
        // Capped from here on, however many attempts (no overflow either).
        for attempt in [4, 10, 11, 64, u32::MAX] {
            assert_eq!(b.bounds(attempt), (ms(1000), ms(2000)), "attempt {attempt}");
        }
        // A base so large that doubling saturates is still capped.
        let huge = Backoff::exponential(Duration::MAX, ms(2000));
        assert_eq!(huge.bounds(u32::MAX), (ms(1000), ms(2000)));
    }

    #[test]
    fn delays_stay_within_their_bounds() {
        let cases = [
            Backoff::exponential(ms(100), ms(2000)),
            Backoff::exponential(ms(7), ms(2000)),
            Backoff::constant(ms(25)).jitter(100, 150),
            Backoff::constant(ms(60_000)).jitter(80, 120),
            Backoff::constant(ms(300)),
        ];
        for b in cases {
            for attempt in 0..16 {
                let (low, high) = b.bounds(attempt);
                for _ in 0..50 {
                    let d = b.delay(attempt);
                    assert!(low <= d && d <= high, "{b:?} attempt {attempt}: {d:?}");
                }
            }
        }
    }

    #[test]
    fn jitter_spreads_over_the_whole_range() {
        let b = Backoff::exponential(ms(1000), ms(2000));
        let delays: Vec<Duration> = (0..1000).map(|_| b.delay(1)).collect();
        let (min, max) = (delays.iter().min(), delays.iter().max());
        // 1000 draws from [1000, 2000] ms: missing a quarter at either end is ~0.75^1000.
        assert!(min < Some(&ms(1250)), "{min:?}");
        assert!(max > Some(&ms(1750)), "{max:?}");
    }

    #[test]
    fn constant_steps_do_not_grow() {
        let b = Backoff::constant(ms(300));
        for attempt in [0, 1, 2, 30] {
            assert_eq!(b.delay(attempt), ms(300));
        }
        assert_eq!(
            Backoff::constant(ms(25)).jitter(100, 150).bounds(9),
            (ms(25), ms(37))
        );
    }

    /// The shapes its callers had before they shared this helper, bound for bound.
    #[test]
    fn bounds_match_the_former_formulas() {
        // refresh: between half and all of `base * 2^attempt`, capped at 2 s.
        for base in [1, 100, 200, 333, 2000] {
            let b = Backoff::exponential(ms(base), ms(2000));
            for attempt in 0..12 {
                let cap = (base << attempt.min(10)).min(2000);
                assert_eq!(b.bounds(attempt), (ms(cap / 2), ms(cap)));
            }
        }
        // A replica waiting for a lease: the poll interval plus up to half of it.
        for poll in [1, 25, 101, 1000] {
            let b = Backoff::constant(ms(poll)).jitter(100, 150);
            assert_eq!(b.bounds(0), (ms(poll), ms(poll + poll / 2)));
        }
        // The keep-alive sweep: the interval, a fifth either way (whole seconds).
        for secs in [1, 7, 60, 3600] {
            let interval = secs * 1000;
            let b = Backoff::constant(ms(interval)).jitter(80, 120);
            assert_eq!(
                b.bounds(0),
                (ms(interval - interval / 5), ms(interval + interval / 5))
            );
        }
    }
}
