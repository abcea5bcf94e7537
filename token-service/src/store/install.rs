//! An install's life in Redis: created with its indexes, reauthorized (a reconnect replaces its
//! grant and re-indexes it), deleted under its lease with its index entries.

use redis::AsyncCommands as _;

use super::{
    Store,
    changed::Changed,
    error::StoreError,
    keys::{INSTALLS, grant_key, lease_key, org_key},
};
use crate::{
    events::{EventKind, NewEvent},
    grant::Grant,
};

/// The result of [`Store::reauthorize`].
#[derive(Debug, Clone)]
pub struct Reauthorized {
    /// The grant the new one replaced (its refresh token is the one to revoke).
    pub old: Grant,
    /// The new grant, as stored.
    pub grant: Grant,
    pub generation: u64,
}

/// The result of [`Store::delete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The grant and the lease are gone.
    Done,
    /// Nothing deleted: the lease is not ours.
    NotLeaseHolder,
    /// Nothing deleted: the grant moved past the generation read (a reconnect or a late
    /// refresh): read it again and revoke its newer refresh token first.
    Moved,
}

impl Store {
    /// Stores a new install's grant (generation 1) and indexes it. The keep-alive entry goes
    /// first, so a crash in between leaves an entry the sweeper drops, never a grant it misses.
    pub async fn create(&self, grant: &Grant) -> Result<(), StoreError> {
        let id = grant.install_id;
        let mut c = self.conn.clone();
        let _forget = Changed::grant(&self.cache, id, &grant.orgs);
        self.index_keepalive(grant).await?;
        let mut call = self.scripts.create.key(grant_key(&id));
        call.arg(self.seal(grant, 1));
        let event = NewEvent::with_orgs(EventKind::Installed, grant.orgs.iter().map(|o| o.id));
        self.with_event(&mut call, &id, Some(&event));
        let created: i64 = call.invoke_async(&mut c).await?;
        if created != 1 {
            return Err(StoreError::InstallIdTaken(id));
        }
        // One command per key: on a cluster these keys live on different slots.
        let _: i64 = c.zadd(INSTALLS, id.to_string(), 0).await?;
        for org in &grant.orgs {
            let _: i64 = c
                .zadd(org_key(&org.id), id.to_string(), grant.created_at)
                .await?;
        }
        Ok(())
    }

    /// Reconnect: replaces the grant of the existing install `fresh.install_id` with `fresh`
    /// (keeping the install's creation time) in one script that bumps the generation and deletes
    /// the "sending" mark, so no refresh begun before can land over it (docs/design.md,
    /// "Reconnect"); appends the `reauthorized` event; waits until Redis has it durably; then
    /// updates the indexes (keep-alive, orgs added and dropped). None when the install does not
    /// exist.
    pub async fn reauthorize(&self, fresh: &Grant) -> Result<Option<Reauthorized>, StoreError> {
        let id = fresh.install_id;
        let mut c = self.durable_conn.clone();
        // Each round either writes, or learns that the record moved (a late refresh or a verdict
        // landed): then the old grant is read again, so the refresh token revoked after the
        // write is the one that was replaced.
        for _ in 0..16 {
            let Some(old) = self.load(&id).await? else {
                return Ok(None);
            };
            let grant = Grant {
                created_at: old.grant.created_at,
                ..fresh.clone()
            };
            let mut orgs = old.grant.orgs.clone();
            orgs.extend(grant.orgs.iter().cloned());
            let _forget = Changed::grant(&self.cache, id, &orgs);
            let next = old.generation + 1;
            let mut call = self.scripts.reauthorize.key(grant_key(&id));
            call.arg(next.to_string()).arg(self.seal(&grant, next));
            let event =
                NewEvent::with_orgs(EventKind::Reauthorized, grant.orgs.iter().map(|o| o.id));
            self.with_event(&mut call, &id, Some(&event));
            let n: i64 = call.invoke_async(&mut c).await?;
            if n == 0 {
                return Ok(None);
            }
            if n < 0 {
                continue;
            }
            if let Err(e) = self.durability.wait(&mut c).await {
                // Stored on the primary all the same (as for a refreshed pair).
                tracing::error!(install_id = %id, error = %e, "reconnected grant stored but not confirmed durable");
            }
            if let Err(e) = self.reindex(&old.grant, &grant).await {
                // The grant is stored: failing now would revoke a pair that is in use. Readers
                // tolerate lagging index entries; a new org is indexed by the next reconnect.
                tracing::error!(install_id = %id, error = %e, "reconnected grant stored but its indexes could not be updated");
            }
            return Ok(Some(Reauthorized {
                old: old.grant,
                grant,
                generation: n as u64,
            }));
        }
        Err(StoreError::Corrupt {
            install: id,
            reason: "the record kept changing under a reconnect".into(),
        })
    }

    /// The indexes after a reconnect: the keep-alive entry at the new expiry, the new orgs
    /// indexed (at the install's creation time), the orgs no longer covered dropped.
    async fn reindex(&self, old: &Grant, new: &Grant) -> Result<(), StoreError> {
        let id = new.install_id;
        let mut c = self.conn.clone();
        self.index_keepalive(new).await?;
        let _: i64 = c.zadd(INSTALLS, id.to_string(), 0).await?;
        for org in &new.orgs {
            let _: i64 = c
                .zadd(org_key(&org.id), id.to_string(), new.created_at)
                .await?;
        }
        for org in old
            .orgs
            .iter()
            .filter(|o| !new.orgs.iter().any(|n| n.id == o.id))
        {
            let _: i64 = c.zrem(org_key(&org.id), id.to_string()).await?;
        }
        Ok(())
    }

    /// Deletes the install while `lease_owner` holds its lease and the grant is still at
    /// `generation` (the one whose refresh token the deleter revoked): the grant and the lease
    /// in one script, with the `deleted` event, then its index entries.
    pub async fn delete(
        &self,
        grant: &Grant,
        generation: u64,
        lease_owner: &str,
    ) -> Result<Deleted, StoreError> {
        let id = grant.install_id;
        let mut c = self.conn.clone();
        let _forget = Changed::grant(&self.cache, id, &grant.orgs);
        let mut call = self.scripts.compare_and_delete.key(lease_key(&id));
        call.key(grant_key(&id))
            .arg(lease_owner)
            .arg("delete")
            .arg(generation.to_string());
        self.with_event(&mut call, &id, Some(&NewEvent::plain(EventKind::Deleted)));
        match call.invoke_async::<i64>(&mut c).await? {
            0 => return Ok(Deleted::NotLeaseHolder),
            n if n < 0 => return Ok(Deleted::Moved),
            _ => {}
        }
        // Readers skip index entries whose grant is gone, so these may lag.
        for org in &grant.orgs {
            let _: i64 = c.zrem(org_key(&org.id), id.to_string()).await?;
        }
        let _: i64 = c.zrem(INSTALLS, id.to_string()).await?;
        self.unindex_keepalive(&id).await?;
        Ok(Deleted::Done)
    }
}
