//! An install's Snyk request budget in Redis (`budget_reserve.lua`): the schedule every replica
//! reserves its requests on, and the pause a 429 sets. `budget` decides how long to wait.

use std::time::Duration;

use super::{Store, error::StoreError, keys::budget_key};
use crate::grant::InstallId;

/// The shape of a budget: how far apart requests go, and how many may go back to back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Milliseconds between two requests at the budget's rate.
    pub interval_ms: f64,
    /// How far ahead of the schedule a request may go (the burst), in milliseconds.
    pub tolerance_ms: f64,
}

/// What the budget answered one reservation.
#[derive(Debug, Clone, PartialEq)]
pub enum Reservation {
    /// A slot is reserved: the request may go after `wait`.
    Reserved {
        wait: Duration,
        /// The install's pause as it was then (Redis time, ms, as stored), to tell a newer one.
        pause: String,
    },
    /// No slot within the wait allowed: the earliest is `wait` away. Nothing was reserved.
    Refused { wait: Duration },
}

impl Store {
    /// Reserves the next slot of `id`'s budget if it comes within `max_wait`, after recording
    /// `rate_limited` (a 429's Retry-After) as a pause of every request for `id`.
    pub async fn reserve_snyk_request(
        &self,
        id: &InstallId,
        schedule: Schedule,
        max_wait: Duration,
        rate_limited: Option<Duration>,
    ) -> Result<Reservation, StoreError> {
        let mut c = self.conn.clone();
        let (granted, wait_ms, pause): (i64, i64, String) = self
            .scripts
            .budget_reserve
            .key(budget_key(id))
            .arg(format!("{:.3}", schedule.interval_ms))
            .arg(format!("{:.3}", schedule.tolerance_ms))
            .arg(max_wait.as_millis() as u64)
            .arg(rate_limited.map_or(0, |d| d.as_millis() as u64))
            .invoke_async(&mut c)
            .await?;
        let wait = Duration::from_millis(wait_ms.max(0) as u64);
        Ok(if granted == 1 {
            Reservation::Reserved { wait, pause }
        } else {
            Reservation::Refused { wait }
        })
    }

    /// `id`'s pause as stored (None when the budget has expired): a value other than the one a
    /// reservation saw means a 429 was reported since.
    pub async fn snyk_pause(&self, id: &InstallId) -> Result<Option<String>, StoreError> {
        let mut c = self.conn.clone();
        Ok(redis::cmd("HGET")
            .arg(budget_key(id))
            .arg("pause")
            .query_async(&mut c)
            .await?)
    }
}
