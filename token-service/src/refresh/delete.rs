//! Deleting an install under its lease, so no refresh rotates the pair between the revoke at Snyk
//! and the delete in Redis.

use tokio::time::Instant;

use super::{Refresher, lease::random_owner};
use crate::{error::Error, grant::InstallId, store::Deleted};

impl Refresher {
    /// Deletes an install under its lease, so no refresh can rotate the pair between the revoke
    /// and the delete. Revoking the refresh token revokes the whole grant at Snyk, including a
    /// pair that a frozen sender may still be about to store (its settle then finds no mark and
    /// revokes that pair too).
    pub async fn delete(&self, id: InstallId) -> Result<(), Error> {
        let deadline = Instant::now() + self.settings.wait_timeout;
        loop {
            let owner = random_owner();
            if self
                .store
                .try_lease(&id, &owner, self.settings.lease_ttl)
                .await?
            {
                let result = self.delete_under_lease(id, &owner).await;
                if let Err(e) = self.store.release_lease(&id, &owner).await {
                    tracing::warn!(install_id = %id, error = %e, "could not release the lease");
                }
                if result.is_ok() {
                    tracing::info!(install_id = %id, "install deleted");
                }
                return result;
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(
                    "a refresh of this install is in progress; retry".into(),
                ));
            }
            tokio::time::sleep(self.settings.poll_interval).await;
        }
    }

    /// Revokes the refresh token of the generation it read, then deletes that generation; a
    /// grant that moved meanwhile (a reconnect, or a frozen sender's late pair, neither of which
    /// takes the lease) is read again, so its newer refresh token is revoked too.
    async fn delete_under_lease(&self, id: InstallId, owner: &str) -> Result<(), Error> {
        for _ in 0..3 {
            let Some(v) = self.store.load(&id).await? else {
                return Ok(()); // Already gone: deleting is idempotent.
            };
            self.snyk.revoke(&v.grant.refresh_token).await?;
            match self.store.delete(&v.grant, v.generation, owner).await? {
                Deleted::Done => {
                    self.own_doubts
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                    return Ok(());
                }
                Deleted::NotLeaseHolder => {
                    return Err(Error::Unavailable(
                        "the lease ran out while deleting; retry".into(),
                    ));
                }
                Deleted::Moved => {}
            }
        }
        Err(Error::Unavailable(
            "the install kept changing while deleting; retry".into(),
        ))
    }
}
