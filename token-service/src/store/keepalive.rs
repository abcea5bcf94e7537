//! The keep-alive index: ACTIVE installs whose refresh token expires, scored by that expiry, which
//! the keep-alive sweeper (`crate::keepalive`) works through soonest first.

use redis::AsyncCommands as _;

use super::{Store, error::StoreError, keys::KEEPALIVE};
use crate::grant::{Grant, InstallId, UnixMillis};

impl Store {
    /// Puts an ACTIVE grant with a known refresh expiry into the keep-alive index at that expiry,
    /// or takes it out.
    pub async fn index_keepalive(&self, grant: &Grant) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let member = grant.install_id.to_string();
        match grant.refresh_expires_at {
            Some(at) if grant.is_active() => {
                let _: i64 = c.zadd(KEEPALIVE, member, at).await?;
            }
            _ => {
                let _: i64 = c.zrem(KEEPALIVE, member).await?;
            }
        }
        Ok(())
    }

    /// Drops an id from the keep-alive index (its grant is gone).
    pub async fn unindex_keepalive(&self, id: &InstallId) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: i64 = c.zrem(KEEPALIVE, id.to_string()).await?;
        Ok(())
    }

    /// Up to `limit` installs whose refresh token expires at or before `until`, soonest first.
    pub async fn keepalive_due(
        &self,
        until: UnixMillis,
        limit: usize,
    ) -> Result<Vec<InstallId>, StoreError> {
        let mut c = self.conn.clone();
        let ids: Vec<String> = c
            .zrangebyscore_limit(KEEPALIVE, "-inf", until, 0, limit as isize)
            .await?;
        Ok(ids
            .iter()
            .filter_map(|s| InstallId::parse(s).ok())
            .collect())
    }

    /// The earliest refresh-token expiry over the keep-alive index (ACTIVE installs).
    pub async fn earliest_refresh_expiry(&self) -> Result<Option<UnixMillis>, StoreError> {
        let mut c = self.conn.clone();
        let first: Vec<(String, f64)> = c.zrange_withscores(KEEPALIVE, 0, 0).await?;
        Ok(first.first().map(|(_, score)| *score as UnixMillis))
    }
}
