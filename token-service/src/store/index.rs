//! Reading the install indexes: every install by id (for paging) and the installs of an org, newest
//! first, from the grant cache when it answers first. An org indexed before installs fell back to
//! one another (one install in a string key) is migrated on first read. Readers tolerate entries
//! that lag their grant.

use std::sync::Arc;

use redis::AsyncCommands as _;

use super::{
    Store,
    changed::Changed,
    error::StoreError,
    keys::{INSTALLS, legacy_org_key, org_key},
};
use crate::grant::{InstallId, OrgId};

impl Store {
    /// Every install that covers `org`, newest first: from the grant cache when it answers
    /// first, else from Redis (and kept); from the cache also when Redis does not answer.
    pub async fn installs_for_org(&self, org: &OrgId) -> Result<Arc<[InstallId]>, StoreError> {
        if let Some(ids) = self.cache.org(org) {
            return Ok(ids);
        }
        let ticket = self.cache.org_ticket(org);
        match self.read_installs_for_org(org).await {
            Ok(ids) => {
                let ids: Arc<[InstallId]> = ids.into();
                self.cache.insert_org(ticket, *org, Arc::clone(&ids));
                Ok(ids)
            }
            Err(e @ StoreError::Unavailable(_)) => {
                self.cache.redis_failed();
                self.cache.stand_in_org(org).ok_or(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Every install that covers `org`, newest first, as Redis has it. An org indexed before the
    /// fallback (one install in a string key) is migrated on first read.
    async fn read_installs_for_org(&self, org: &OrgId) -> Result<Vec<InstallId>, StoreError> {
        let mut c = self.conn.clone();
        let mut ids: Vec<String> = c.zrevrange(org_key(org), 0, -1).await?;
        if ids.is_empty() {
            let legacy: Option<String> = c.get(legacy_org_key(org)).await?;
            if let Some(legacy) = legacy {
                let _forget = Changed::org(&self.cache, *org);
                let _: i64 = c.zadd(org_key(org), &legacy, 0).await?;
                let _: i64 = c.del(legacy_org_key(org)).await?;
                ids.push(legacy);
            }
        }
        Ok(ids
            .iter()
            .filter_map(|s| InstallId::parse(s).ok())
            .collect())
    }

    /// Drops an install from an org's list (its grant is gone).
    pub async fn unindex_org(&self, org: &OrgId, id: &InstallId) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _forget = Changed::org(&self.cache, *org);
        let _: i64 = c.zrem(org_key(org), id.to_string()).await?;
        Ok(())
    }

    /// Up to `limit` install ids after `after` (exclusive), in id order.
    pub async fn list_ids(
        &self,
        after: Option<&InstallId>,
        limit: usize,
    ) -> Result<Vec<InstallId>, StoreError> {
        let mut c = self.conn.clone();
        let min = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(INSTALLS)
            .arg(min)
            .arg("+")
            .arg("BYLEX")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut c)
            .await?;
        Ok(ids
            .iter()
            .filter_map(|s| InstallId::parse(s).ok())
            .collect())
    }
}
