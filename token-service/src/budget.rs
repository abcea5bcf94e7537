//! Snyk's request budget of each install, shared by every replica of every service
//! (docs/design.md, "Snyk's request budget"). Every Snyk REST request made with an install's
//! token first takes a permit here: token-service's own org listing directly, projects-service's
//! pages through `AcquireSnykPermit`. The schedule lives in Redis (`store::budget`), on Redis's
//! clock; this module decides how long a caller waits for its slot, and when it is refused.

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use tokio::time::Instant;

use crate::{
    error::Error,
    grant::InstallId,
    metrics::{Metrics, PermitOutcome},
    store::{Reservation, Schedule, Store},
};

/// The default budget: under Snyk's documented ~1,620 requests a minute per key.
pub const DEFAULT_PER_MINUTE: u32 = 1500;
/// The longest wait for a permit when the caller set no deadline.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// The longest wait for a permit whatever the caller's deadline.
pub const MAX_WAIT: Duration = Duration::from_secs(600);
/// Kept free of the caller's deadline: the answer must reach it before the deadline does.
const ANSWER_MARGIN: Duration = Duration::from_millis(50);
/// The pause after a 429 that carried no `Retry-After`: Snyk answers 429 "until a quiet minute
/// passes" (docs/snyk-api.md).
pub const DEFAULT_PAUSE: Duration = Duration::from_secs(60);
/// The longest pause a reported `Retry-After` may set.
pub const MAX_PAUSE: Duration = Duration::from_secs(300);

/// `SNYK_RATE_LIMIT_PER_MINUTE`: requests per minute per install, over all replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(NonZeroU32);

impl Rate {
    pub fn per_minute(n: NonZeroU32) -> Rate {
        Rate(n)
    }

    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// Requests go one interval apart; up to a second's worth of the budget (at least one) may
    /// go back to back. So any minute carries at most the budget plus one second's worth:
    /// 1,525 for the default against Snyk's 1,620.
    pub fn schedule(self) -> Schedule {
        let per_minute = f64::from(self.0.get());
        let interval_ms = 60_000.0 / per_minute;
        let burst = (per_minute / 60.0).floor().max(1.0);
        Schedule {
            interval_ms,
            tolerance_ms: (burst - 1.0) * interval_ms,
        }
    }
}

impl Default for Rate {
    fn default() -> Self {
        Rate(NonZeroU32::new(DEFAULT_PER_MINUTE).unwrap_or(NonZeroU32::MIN))
    }
}

/// A permit to send one request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permit {
    pub waited: Duration,
}

/// Every install's budget, as this replica takes permits from it.
#[derive(Debug, Clone)]
pub struct SnykBudget {
    store: Store,
    rate: Rate,
    metrics: Arc<Metrics>,
}

impl SnykBudget {
    pub fn new(store: Store, rate: Rate, metrics: Arc<Metrics>) -> Self {
        SnykBudget {
            store,
            rate,
            metrics,
        }
    }

    /// A permit to send one request with `install`'s token, waited for until `deadline` at the
    /// latest ([`DEFAULT_WAIT`] from now without one, [`MAX_WAIT`] at most). `rate_limited`: the request sent with the
    /// previous permit was answered 429 with this `Retry-After` (None from Snyk: [`DEFAULT_PAUSE`]);
    /// it pauses every replica's requests for `install` first.
    ///
    /// A slot is reserved only when it comes before the deadline, so a refused caller costs the
    /// others nothing. After a wait, a pause set meanwhile (another replica's 429) sends the
    /// caller to the back of the schedule again: it was not there when its slot was reserved.
    pub async fn acquire(
        &self,
        install: &InstallId,
        deadline: Option<Instant>,
        rate_limited: Option<Option<Duration>>,
    ) -> Result<Permit, Error> {
        let start = Instant::now();
        let deadline = deadline.map_or(start + DEFAULT_WAIT, |d| d.min(start + MAX_WAIT));
        let mut report = rate_limited.map(|after| after.unwrap_or(DEFAULT_PAUSE).min(MAX_PAUSE));
        if report.is_some() {
            self.metrics.snyk_paused();
        }
        loop {
            let max_wait = deadline
                .saturating_duration_since(Instant::now())
                .saturating_sub(ANSWER_MARGIN);
            let reservation = self
                .store
                .reserve_snyk_request(install, self.rate.schedule(), max_wait, report.take())
                .await?;
            let (wait, pause) = match reservation {
                Reservation::Refused { wait } => {
                    self.metrics.snyk_permit(PermitOutcome::Refused);
                    return Err(Error::RateLimited {
                        install: *install,
                        retry_after: wait,
                    });
                }
                Reservation::Reserved { wait, pause } => (wait, pause),
            };
            if wait.is_zero() {
                let waited = start.elapsed();
                self.metrics.snyk_permit(if waited.is_zero() {
                    PermitOutcome::Granted
                } else {
                    PermitOutcome::Waited
                });
                return Ok(Permit { waited });
            }
            tokio::time::sleep(wait).await;
            if self.store.snyk_pause(install).await?.as_ref() == Some(&pause) {
                self.metrics.snyk_permit(PermitOutcome::Waited);
                return Ok(Permit {
                    waited: start.elapsed(),
                });
            }
            // Paused while this caller slept: its slot is inside the pause. Reserve again.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_never_carries_more_than_the_budget_and_a_second() {
        for per_minute in [1, 59, 60, 61, 550, 1500, 100_000] {
            let s =
                Rate::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN)).schedule();
            // GCRA lets 1 + (window + tolerance) / interval requests into any window.
            let most = 1.0 + ((60_000.0 + s.tolerance_ms) / s.interval_ms).floor();
            let second = (f64::from(per_minute) / 60.0).floor().max(1.0);
            assert!(
                most <= f64::from(per_minute) + second,
                "{per_minute}/min lets {most} into a minute"
            );
        }
        let s = Rate::default().schedule();
        assert!((s.interval_ms - 40.0).abs() < 1e-9);
        assert!((s.tolerance_ms - 24.0 * 40.0).abs() < 1e-9);
    }
}
