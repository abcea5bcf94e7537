//! The refresh under the lease: the "started" mark, the attempts at Snyk's token endpoint (each
//! behind a durable "sending" mark, retried by what the failure says about the refresh token),
//! and the outcome stored fenced on the last mark.

use std::time::Duration;

use tokio::time::Instant;

use super::{BACKOFF_CAP, FlightResult, Refresher, lease::LeaseKeeper};
use crate::{
    backoff::Backoff,
    error::Error,
    events::{EventKind, NewEvent},
    grant::{Grant, InstallId, ReauthReason, Status, TokenPair, now_millis},
    metrics::RefreshOutcome,
    snyk::{Redemption, SnykError},
    store::{Fenced, SendingMark, Settled, StoreError, Versioned},
};

/// Pauses between tries to store the outcome of a refresh through Redis errors.
const SETTLE_BACKOFF: Backoff = Backoff::exponential(Duration::from_millis(100), BACKOFF_CAP);

/// How the attempts of one flight ended.
enum Attempts {
    Pair(TokenPair, SendingMark),
    InvalidGrant(ReauthReason, SendingMark),
    /// No pair. `mark` is the last mark written (None: nothing went out); `maybe_spent` when an
    /// attempt may have been redeemed without its answer reaching us.
    Failed {
        error: String,
        mark: Option<SendingMark>,
        maybe_spent: bool,
    },
}

impl Refresher {
    /// Refreshes under the lease: "started" mark, attempts (each behind a "sending" mark), then
    /// the outcome, stored fenced on the last mark. `keepalive`: the keep-alive sweeper asked
    /// (a failure it settles is a `keepalive_failed` event).
    pub(super) async fn refresh(
        &self,
        v: Versioned,
        owner: &str,
        own_doubt: bool,
        keepalive: bool,
    ) -> FlightResult {
        let id = v.grant.install_id;
        if own_doubt {
            self.metrics.in_doubt();
            tracing::warn!(install_id = %id, "an earlier request of this replica may have been redeemed without an answer; retrying once with the same token");
        } else if v.grant.refresh_started_at.is_some() {
            tracing::info!(install_id = %id, "a previous holder started a refresh but sent nothing; refreshing");
        }
        let mut marked = v.grant.clone();
        marked.refresh_started_at = Some(now_millis());
        let generation = match self
            .store
            .write_fenced(v.generation, &marked, Some(owner))
            .await?
        {
            Fenced::Written(g) => g,
            Fenced::Stale | Fenced::NotLeaseHolder => {
                return Err(Error::Unavailable(
                    "the grant changed during the refresh; retry".into(),
                ));
            }
        };

        let lease = LeaseKeeper::start(
            self.store.clone(),
            id,
            owner.to_owned(),
            self.settings.lease_ttl,
        );
        let attempts = self
            .attempts(&marked, generation, owner, &lease, own_doubt)
            .await;
        let (result, left_own_mark) = self
            .conclude(&marked, generation, attempts, &lease, keepalive)
            .await;
        lease.stop();
        let mut doubts = self.own_doubts.lock().unwrap_or_else(|p| p.into_inner());
        if left_own_mark {
            doubts.insert(id);
        } else {
            doubts.remove(&id);
        }
        result
    }

    /// Calls the token endpoint, each time behind a fresh "sending" mark, with bounded retries:
    /// while the lease is ours and has time left for one more attempt.
    async fn attempts(
        &self,
        grant: &Grant,
        generation: u64,
        owner: &str,
        lease: &LeaseKeeper,
        own_doubt: bool,
    ) -> Attempts {
        let s = &self.settings;
        let id = grant.install_id;
        // Stop starting attempts when one more could outlive the lease.
        let last_start = Instant::now()
            + s.lease_ttl
                .saturating_sub(s.attempt_timeout + Duration::from_secs(1));
        let mut maybe_spent = own_doubt;
        let mut doubt_retry_left = !own_doubt;
        let backoff = Backoff::exponential(s.backoff_base, BACKOFF_CAP);
        let mut retries = 0;
        let mut sent: Option<SendingMark> = None;
        loop {
            let failed = |error: String, sent: Option<SendingMark>, maybe_spent| Attempts::Failed {
                error,
                mark: sent,
                maybe_spent,
            };
            if !lease.may_send() {
                return failed("the refresh lease was lost".into(), sent, maybe_spent);
            }
            if Instant::now() > last_start {
                return failed(
                    "no time left inside the refresh lease".into(),
                    sent,
                    maybe_spent,
                );
            }
            let mark = SendingMark {
                replica: self.replica.clone(),
                flight: owner.to_owned(),
                at: now_millis(),
            };
            match self.store.mark_sending(&id, generation, owner, &mark).await {
                Ok(Fenced::Written(_)) => {}
                Ok(Fenced::NotLeaseHolder) => {
                    return failed("the refresh lease was lost".into(), sent, maybe_spent);
                }
                Ok(Fenced::Stale) => {
                    return failed(
                        "the grant changed during the refresh".into(),
                        sent,
                        maybe_spent,
                    );
                }
                Err(e) => {
                    // Nothing went out, but the mark may have been written: from here on it
                    // counts as ours (an unresolved own mark is retried by this replica only).
                    sent = Some(mark);
                    if retries >= s.transient_retries {
                        return failed(e.to_string(), sent, maybe_spent);
                    }
                    retries += 1;
                    tracing::warn!(install_id = %id, error = %e, "could not write the sending mark; retrying");
                    tokio::time::sleep(backoff.delay(retries)).await;
                    continue;
                }
            }
            sent = Some(mark.clone());
            let error = match self.snyk.refresh(&grant.refresh_token).await {
                Ok(pair) => return Attempts::Pair(pair, mark),
                Err(e) => e,
            };
            if error.is_invalid_grant() {
                let reason = if maybe_spent {
                    ReauthReason::RefreshInDoubt
                } else {
                    ReauthReason::RefreshTokenRejected
                };
                return Attempts::InvalidGrant(reason, mark);
            }
            match error.redemption() {
                Redemption::Maybe if doubt_retry_left => {
                    self.metrics.in_doubt();
                    maybe_spent = true;
                    doubt_retry_left = false;
                    tracing::warn!(install_id = %id, error = %error, "refresh answer lost or failed after sending; retrying once with the same token");
                }
                Redemption::Maybe => {
                    return failed(error.to_string(), sent, true);
                }
                Redemption::NotRedeemed { retry_after }
                    if retries < s.transient_retries
                        && !matches!(
                            error,
                            SnykError::Rejected { .. }
                                | SnykError::Unexpected(_)
                                | SnykError::ClientRefused { .. }
                        ) =>
                {
                    retries += 1;
                    let wait = backoff.delay(retries).max(retry_after.unwrap_or_default());
                    if Instant::now() + wait > last_start {
                        return failed(error.to_string(), sent, maybe_spent);
                    }
                    tokio::time::sleep(wait).await;
                }
                Redemption::NotRedeemed { .. } => {
                    return failed(error.to_string(), sent, maybe_spent);
                }
            }
        }
    }

    /// Stores how the attempts ended, fenced on the last "sending" mark. Returns the flight's
    /// result and whether this replica's mark stays in place (an answer maybe redeemed and lost:
    /// only this replica may resolve it).
    async fn conclude(
        &self,
        marked: &Grant,
        generation: u64,
        attempts: Attempts,
        lease: &LeaseKeeper,
        keepalive: bool,
    ) -> (FlightResult, bool) {
        let id = marked.install_id;
        match attempts {
            Attempts::Pair(pair, mark) => {
                let fresh = marked.with_new_pair(pair.clone(), now_millis());
                let event = NewEvent::plain(EventKind::Refreshed);
                match self
                    .settle(&mark, generation, &fresh, Some(&event), lease)
                    .await
                {
                    Ok(Settled::Written(_)) => {
                        self.metrics.refresh(RefreshOutcome::Ok);
                        tracing::info!(install_id = %id, "refreshed the access token");
                        (Ok(fresh), false)
                    }
                    Ok(Settled::Orphaned) => {
                        // Deleted or reconnected while our request was out: the new pair
                        // belongs to nobody, so it must not stay alive at Snyk.
                        tracing::warn!(install_id = %id, "install deleted or reconnected while refreshing; revoking the new pair");
                        if let Err(e) = self.snyk.revoke(&pair.refresh_token).await {
                            tracing::error!(install_id = %id, error = %e, "could not revoke an orphaned token pair");
                        }
                        (Err(self.orphaned(id).await), false)
                    }
                    Err(e) => {
                        self.metrics.refresh(RefreshOutcome::InDoubt);
                        tracing::error!(install_id = %id, error = %e, "a refreshed pair could not be stored; the install is in doubt");
                        (Err(e), true)
                    }
                }
            }
            Attempts::InvalidGrant(reason, mark) => {
                let mut dead = marked.clone();
                dead.status = Status::NeedsReauth(reason);
                dead.refresh_started_at = None;
                let event = NewEvent::verdict(reason);
                match self
                    .settle(&mark, generation, &dead, Some(&event), lease)
                    .await
                {
                    Ok(Settled::Written(_)) => {
                        self.metrics.refresh(RefreshOutcome::InvalidGrant);
                        self.metrics.needs_reauth(reason);
                        tracing::warn!(install_id = %id, reason = reason.as_str(), "install needs re-authorization");
                        (Err(Error::NeedsReauth(id, reason)), false)
                    }
                    Ok(Settled::Orphaned) => (Err(self.orphaned(id).await), false),
                    Err(e) => (Err(e), true),
                }
            }
            Attempts::Failed {
                error,
                mark,
                maybe_spent,
            } => {
                tracing::warn!(install_id = %id, maybe_spent, error = %error, "refresh failed");
                let left_own_mark = if maybe_spent {
                    // Keep the mark: this replica alone may present the token again.
                    self.metrics.refresh(RefreshOutcome::InDoubt);
                    true
                } else {
                    self.metrics.refresh(RefreshOutcome::Unavailable);
                    match mark {
                        // Snyk did not redeem it: clear the mark, anyone may refresh.
                        Some(mark) => {
                            let mut unmarked = marked.clone();
                            unmarked.refresh_started_at = None;
                            // Only the keep-alive's failures are events: a caller's failed
                            // refresh is retried by the next caller, a keep-alive's only by the
                            // next sweep, which an operator wants to know about.
                            let event = keepalive.then(|| {
                                NewEvent::because(EventKind::KeepaliveFailed, "snyk_unavailable")
                            });
                            // Anything but a clean clear may leave a mark of ours behind: this
                            // replica then resolves it itself (see `resolve_own_doubts`).
                            !matches!(
                                self.settle(&mark, generation, &unmarked, event.as_ref(), lease)
                                    .await,
                                Ok(Settled::Written(_))
                            )
                        }
                        // Nothing went out; a "started" mark alone binds nobody.
                        None => false,
                    }
                };
                (
                    Err(Error::Unavailable(format!(
                        "Snyk's token endpoint is unavailable: {error}"
                    ))),
                    left_own_mark,
                )
            }
        }
    }

    /// What a flight whose mark was taken away answers: the install is gone (deleted), or it
    /// was reconnected meanwhile (its new grant is served on the next call).
    async fn orphaned(&self, id: InstallId) -> Error {
        match self.store.load(&id).await {
            Ok(Some(_)) => Error::Unavailable(
                "the install was re-authorized while this refresh was out; retry".into(),
            ),
            _ => Error::UnknownInstall(id),
        }
    }

    /// [`Store::settle_with`], retried through Redis errors while the lease is not known to be
    /// lost (the pair in hand exists nowhere else), for at most `in_doubt`.
    async fn settle(
        &self,
        mark: &SendingMark,
        generation: u64,
        grant: &Grant,
        event: Option<&NewEvent>,
        lease: &LeaseKeeper,
    ) -> Result<Settled, Error> {
        let give_up = Instant::now() + self.settings.in_doubt;
        let mut attempt = 0;
        loop {
            match self.store.settle_with(mark, generation, grant, event).await {
                Ok(settled) => return Ok(settled),
                Err(StoreError::Unavailable(e))
                    if !lease.really_lost() && Instant::now() < give_up =>
                {
                    attempt += 1;
                    tracing::warn!(install_id = %grant.install_id, error = %e, attempt, "could not store the outcome of a refresh; retrying");
                    tokio::time::sleep(SETTLE_BACKOFF.delay(attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
