//! The writes of a refresh, each fenced: on the generation read and the lease (the "started" mark,
//! re-seals, verdicts), the durable "sending" mark written right before each request to Snyk,
//! and settling the outcome fenced on that mark alone (docs/design.md, "One refresh").

use super::{
    Store,
    changed::Changed,
    error::StoreError,
    keys::{grant_key, lease_key},
};
use crate::{
    events::{EventKind, NewEvent},
    grant::{Grant, InstallId, Status, UnixMillis},
};

/// "A refresh token of this install went to Snyk and its outcome is not stored yet": written by
/// the lease holder right before each send, cleared only by [`Store::settle`] with the same
/// mark. Names the replica (process) that sent, so only that replica ever presents the token
/// again. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendingMark {
    /// The sending process (random per start).
    pub replica: String,
    /// The lease owner token of the flight that sent.
    pub flight: String,
    /// When the last request went out.
    pub at: UnixMillis,
}

impl SendingMark {
    fn encode(&self) -> String {
        format!("{}/{}/{}", self.replica, self.flight, self.at)
    }

    pub(super) fn parse(s: &str) -> Option<SendingMark> {
        let mut parts = s.splitn(3, '/');
        Some(SendingMark {
            replica: parts.next()?.to_owned(),
            flight: parts.next()?.to_owned(),
            at: parts.next()?.parse().ok()?,
        })
    }
}

/// The result of a fenced write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fenced {
    /// Written; the record is now at this generation.
    Written(u64),
    /// Not written: the record is no longer at the expected generation (or was deleted).
    Stale,
    /// Not written: this writer does not hold the refresh lease.
    NotLeaseHolder,
}

/// The result of [`Store::settle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Stored at this generation; the "sending" mark is gone.
    Written(u64),
    /// Not stored: the mark is not ours any more (the install was deleted or replaced).
    Orphaned,
}

impl Store {
    /// Writes `grant` over generation `expected`; with `lease_owner`, only while holding the lease.
    /// Leaves a "sending" mark as it is. No lifecycle event: for the "started" mark and re-seals.
    pub async fn write_fenced(
        &self,
        expected: u64,
        grant: &Grant,
        lease_owner: Option<&str>,
    ) -> Result<Fenced, StoreError> {
        self.fenced(expected, grant, lease_owner, None).await
    }

    /// [`Store::write_fenced`] of a NEEDS_REAUTH verdict, with its event (`in_doubt` or
    /// `needs_reauth`) appended by the same script when the write lands.
    pub async fn write_verdict(
        &self,
        expected: u64,
        grant: &Grant,
        lease_owner: &str,
    ) -> Result<Fenced, StoreError> {
        let event = verdict_event(grant);
        self.fenced(expected, grant, Some(lease_owner), event.as_ref())
            .await
    }

    async fn fenced(
        &self,
        expected: u64,
        grant: &Grant,
        lease_owner: Option<&str>,
        event: Option<&NewEvent>,
    ) -> Result<Fenced, StoreError> {
        let id = grant.install_id;
        let mut c = self.conn.clone();
        let _forget = Changed::grant(&self.cache, id, &[]);
        let mut call = self.scripts.fenced_write.key(grant_key(&id));
        call.key(lease_key(&id))
            .arg(expected.to_string())
            .arg(self.seal(grant, expected + 1))
            .arg(lease_owner.unwrap_or(""));
        self.with_event(&mut call, &id, event);
        let n: i64 = call.invoke_async(&mut c).await?;
        Ok(match n {
            0 => Fenced::Stale,
            -1 => Fenced::NotLeaseHolder,
            n => Fenced::Written(n as u64),
        })
    }

    /// Writes the "sending" mark while `lease_owner` holds the lease and the record is still at
    /// `generation`, then waits until Redis has it durably. Only `Written` allows a send.
    pub async fn mark_sending(
        &self,
        id: &InstallId,
        generation: u64,
        lease_owner: &str,
        mark: &SendingMark,
    ) -> Result<Fenced, StoreError> {
        let mut c = self.durable_conn.clone();
        let _forget = Changed::grant(&self.cache, *id, &[]);
        let n: i64 = self
            .scripts
            .mark_sending
            .key(grant_key(id))
            .key(lease_key(id))
            .arg(generation.to_string())
            .arg(lease_owner)
            .arg(mark.encode())
            .invoke_async(&mut c)
            .await?;
        match n {
            1 => {
                self.durability.wait(&mut c).await?;
                Ok(Fenced::Written(generation))
            }
            -1 => Ok(Fenced::NotLeaseHolder),
            _ => Ok(Fenced::Stale),
        }
    }

    /// Stores the outcome of a refresh whose request went out under `mark`, fenced on that mark
    /// only (not on the lease, not on the generation: whatever was written meanwhile, a
    /// NEEDS_REAUTH for instance, is older than this outcome). Clears the mark, keeps the
    /// keep-alive index in step, and waits until Redis has it durably. Its event: `refreshed`
    /// for an ACTIVE grant (a new pair), the verdict's for a NEEDS_REAUTH one.
    pub async fn settle(
        &self,
        mark: &SendingMark,
        generation: u64,
        grant: &Grant,
    ) -> Result<Settled, StoreError> {
        let event = match grant.status {
            Status::Active => Some(NewEvent::plain(EventKind::Refreshed)),
            Status::NeedsReauth(_) => verdict_event(grant),
        };
        self.settle_with(mark, generation, grant, event.as_ref())
            .await
    }

    /// [`Store::settle`] with the event to append (None: the outcome is no lifecycle change,
    /// like clearing the marks of a refresh Snyk did not redeem).
    pub async fn settle_with(
        &self,
        mark: &SendingMark,
        mut generation: u64,
        grant: &Grant,
        event: Option<&NewEvent>,
    ) -> Result<Settled, StoreError> {
        let id = grant.install_id;
        let mut c = self.durable_conn.clone();
        let _forget = Changed::grant(&self.cache, id, &[]);
        let encoded = mark.encode();
        // Each round either writes, or learns the generation a concurrent write left behind
        // (the seal binds the generation, so the record is sealed again for it).
        for _ in 0..16 {
            let mut call = self.scripts.settle.key(grant_key(&id));
            call.arg(&encoded)
                .arg((generation + 1).to_string())
                .arg(self.seal(grant, generation + 1));
            self.with_event(&mut call, &id, event);
            let n: i64 = call.invoke_async(&mut c).await?;
            match n {
                0 => return Ok(Settled::Orphaned),
                n if n < 0 => generation = n.unsigned_abs(),
                n => {
                    if let Err(e) = self.durability.wait(&mut c).await {
                        // Stored on the primary all the same; only its survival of a crash is
                        // unconfirmed. Failing the refresh now would hide a good pair.
                        tracing::error!(install_id = %id, error = %e, "refreshed grant stored but not confirmed durable");
                    }
                    if let Err(e) = self.index_keepalive(grant).await {
                        // The sweeper re-scores a lagging entry when it meets it.
                        tracing::warn!(install_id = %id, error = %e, "could not update the keep-alive index");
                    }
                    return Ok(Settled::Written(n as u64));
                }
            }
        }
        Err(StoreError::Corrupt {
            install: id,
            reason: "the record kept changing under a settling refresh".into(),
        })
    }
}

/// The event of a NEEDS_REAUTH verdict written as `grant` (None for an ACTIVE grant).
fn verdict_event(grant: &Grant) -> Option<NewEvent> {
    match grant.status {
        Status::Active => None,
        Status::NeedsReauth(r) => Some(NewEvent::verdict(r)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sending_marks_round_trip() {
        let m = SendingMark {
            replica: "ab12".into(),
            flight: "cd34".into(),
            at: 1_700_000_000_123,
        };
        assert_eq!(SendingMark::parse(&m.encode()), Some(m));
        assert_eq!(SendingMark::parse("garbage"), None);
    }
}
