//! The flight: one refresh per install in this replica, run on a task of its own that callers
//! join, which takes the install's lease or waits for the replica that holds it, and decides
//! under the lease whether to refresh, wait for another replica's request, or give up on it.

use std::sync::Arc;

use futures::FutureExt as _;
use rand::Rng as _;
use tokio::time::Instant;

use super::{BACKOFF_CAP, Flight, FlightResult, Refresher, check_usable, lease::random_owner};
use crate::{
    backoff::Backoff,
    error::Error,
    grant::{InstallId, Need, ReauthReason, Status, now_millis},
    store::{Fenced, Versioned},
};

/// What a lease holder found it must do.
enum UnderLease {
    Done(Box<FlightResult>),
    /// Another replica's request is out with this refresh token: wait for its outcome.
    WaitForSender,
}

impl Refresher {
    pub(super) fn join_or_start(self: &Arc<Self>, id: InstallId, need: Need) -> Flight {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, flight)) = flights.get(&id) {
            return flight.clone();
        }
        let flight_id: u64 = rand::rng().random();
        let this = Arc::clone(self);
        let handle = self.tasks.spawn(async move {
            let result = this.fly(id, need).await;
            if let Err(Error::Unavailable(_)) = &result {
                this.cooling
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, Instant::now() + BACKOFF_CAP);
            }
            let mut flights = this.flights.lock().unwrap_or_else(|p| p.into_inner());
            if flights.get(&id).is_some_and(|(fid, _)| *fid == flight_id) {
                flights.remove(&id);
            }
            result
        });
        let flight = async move {
            handle
                .await
                .unwrap_or_else(|e| Err(Error::Internal(format!("refresh task failed: {e}"))))
        }
        .boxed()
        .shared();
        flights.insert(id, (flight_id, flight.clone()));
        flight
    }

    /// Takes the lease and refreshes, or waits for the replica that holds it (or that has a
    /// request out).
    async fn fly(&self, id: InstallId, need: Need) -> FlightResult {
        let deadline = Instant::now() + self.settings.wait_timeout;
        // Up to half an interval more, so waiting replicas do not poll in step.
        let poll = Backoff::constant(self.settings.poll_interval).jitter(100, 150);
        let mut waited = false;
        loop {
            let owner = random_owner();
            let started = Instant::now();
            if self
                .store
                .try_lease(&id, &owner, self.settings.lease_ttl)
                .await?
            {
                if waited {
                    self.metrics.lease_waited(started.elapsed());
                }
                let step = self.under_lease(id, &need, &owner).await;
                if let Err(e) = self.store.release_lease(&id, &owner).await {
                    // The lease expires by itself; the next holder only waits longer.
                    tracing::warn!(install_id = %id, error = %e, "could not release the refresh lease");
                }
                if let UnderLease::Done(result) = step {
                    return *result;
                }
            }
            waited = true;
            tokio::time::sleep(poll.delay(0)).await;
            let v = self
                .store
                .load(&id)
                .await?
                .ok_or(Error::UnknownInstall(id))?;
            check_usable(&v.grant)?;
            if v.grant.satisfies(&need, self.settings.margin, now_millis()) {
                return Ok(v.grant);
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(
                    "timed out waiting for a refresh in progress on another replica; retry".into(),
                ));
            }
        }
    }

    /// The holder's decision: nothing to do, wait for another replica's request, mark the
    /// install in doubt, or refresh.
    async fn under_lease(&self, id: InstallId, need: &Need, owner: &str) -> UnderLease {
        let v = match self.store.load(&id).await {
            Ok(Some(v)) => v,
            Ok(None) => return done(Err(Error::UnknownInstall(id))),
            Err(e) => return done(Err(e.into())),
        };
        if let Err(e) = check_usable(&v.grant) {
            return done(Err(e));
        }
        let satisfied = v.grant.satisfies(need, self.settings.margin, now_millis());
        let own_doubt = match &v.sending {
            Some(mark) if mark.replica != self.replica => {
                if satisfied {
                    return done(Ok(v.grant));
                }
                let age = now_millis().saturating_sub(mark.at);
                if age < self.settings.in_doubt.as_millis() as i64 {
                    return UnderLease::WaitForSender;
                }
                return done(self.give_up_on_sender(v, owner).await);
            }
            Some(_) => true,
            None if satisfied => return done(Ok(v.grant)),
            None => false,
        };
        let keepalive = matches!(need, Need::KeepAlive(_));
        done(self.refresh(v, owner, own_doubt, keepalive).await)
    }

    /// Another replica sent this refresh token `in_doubt` ago and never stored an outcome: it is
    /// dead, or frozen. Nobody else may present the token, so the install needs its user. The
    /// "sending" mark stays, so the sender's late outcome still lands and wins.
    async fn give_up_on_sender(&self, v: Versioned, owner: &str) -> FlightResult {
        let id = v.grant.install_id;
        let mut dead = v.grant.clone();
        dead.status = Status::NeedsReauth(ReauthReason::RefreshInDoubt);
        match self.store.write_verdict(v.generation, &dead, owner).await? {
            Fenced::Written(_) => {
                if let Err(e) = self.store.index_keepalive(&dead).await {
                    tracing::warn!(install_id = %id, error = %e, "could not update the keep-alive index");
                }
                self.metrics.needs_reauth(ReauthReason::RefreshInDoubt);
                tracing::error!(install_id = %id, sender = %v.sending.as_ref().map_or("", |m| m.replica.as_str()), "another replica sent the refresh token and never stored the outcome; the install needs re-authorization");
                Err(Error::NeedsReauth(id, ReauthReason::RefreshInDoubt))
            }
            Fenced::Stale | Fenced::NotLeaseHolder => Err(Error::Unavailable(
                "the grant changed during the refresh; retry".into(),
            )),
        }
    }
}

fn done(result: FlightResult) -> UnderLease {
    UnderLease::Done(Box::new(result))
}
