//! The refresh lease of an install: taken with `SET NX PX` by a random owner, renewed while its
//! holder works, released only by that owner (compare-and-delete). `refresh` decides when.

use std::time::Duration;

use super::{Store, error::StoreError, keys::lease_key};
use crate::grant::InstallId;

impl Store {
    /// `SET NX PX`: takes the refresh lease of `id` for `owner`.
    pub async fn try_lease(
        &self,
        id: &InstallId,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let ok: Option<String> = redis::cmd("SET")
            .arg(lease_key(id))
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut c)
            .await?;
        Ok(ok.is_some())
    }

    /// Extends the lease while `owner` still holds it; false when it was lost.
    pub async fn renew_lease(
        &self,
        id: &InstallId,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let n: i64 = self
            .scripts
            .renew
            .key(lease_key(id))
            .arg(owner)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut c)
            .await?;
        Ok(n == 1)
    }

    /// Releases the lease only if `owner` still holds it (compare-and-delete; no event).
    pub async fn release_lease(&self, id: &InstallId, owner: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: i64 = self
            .scripts
            .compare_and_delete
            .key(lease_key(id))
            .arg(owner)
            .arg("release")
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }
}
