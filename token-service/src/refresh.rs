//! The one place that decides when Snyk's token endpoint is called with a refresh token.
//!
//! docs/design.md ("One refresh") has the state machine this module implements and the reasons
//! behind it; in short, a refresh token is single use, so a refresh is serialized at three levels:
//! 1. **single flight** inside a replica: one task per install refreshes, concurrent callers await
//!    its result (a shared future), and the task runs detached from the request, so a caller that
//!    hangs up cannot cancel a refresh half way (between Snyk's answer and our write);
//! 2. **a Redis lease** per install across replicas (`SET NX PX`, random owner, compare-and-delete
//!    release, renewal while it works); a replica that cannot take the lease polls the grant
//!    until the holder has stored the new one;
//! 3. **marks and fences**: under the lease the grant is re-read and marked "started"; right
//!    before each request to Snyk a lease-fenced, durable "sending" mark names this replica; the
//!    outcome is stored fenced on that mark (not on the lease), so a holder frozen past its lease
//!    still lands its pair. A replica that finds another replica's "sending" mark never presents
//!    that refresh token: it waits, and after `TOKEN_REFRESH_IN_DOUBT_SECONDS` marks the install
//!    NEEDS_REAUTH(`refresh_in_doubt`).
//!
//! Inside the refresh margin a caller takes the stored token at once while it still has more than
//! the validity floor left, and the refresh runs in the background (refresh ahead of need).

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::{FutureExt, future::BoxFuture, future::Shared};
use rand::Rng as _;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::{
    backoff::Backoff,
    error::Error,
    events::{EventKind, NewEvent},
    grant::{Grant, Handout, InstallId, Need, ReauthReason, Status, TokenPair, now_millis},
    metrics::{Metrics, RefreshOutcome, Served},
    snyk::{Redemption, SnykClient, SnykError},
    store::{Deleted, Fenced, SendingMark, Settled, Store, StoreError, Versioned},
};

/// The longest pause between two attempts (Snyk calls or Redis writes). The lease must cover
/// one such pause per retry (see `config`).
pub const BACKOFF_CAP: Duration = Duration::from_secs(2);

/// Pauses between tries to store the outcome of a refresh through Redis errors.
const SETTLE_BACKOFF: Backoff = Backoff::exponential(Duration::from_millis(100), BACKOFF_CAP);

/// Timing knobs of the refresh protocol (validated together in `config`).
#[derive(Debug, Clone)]
pub struct RefreshSettings {
    /// Refresh when less validity than this is left (capped at half the token's lifetime).
    pub margin: Duration,
    /// Below this much validity a caller waits for the refresh; above it, inside the margin, it
    /// gets the stored token and the refresh runs in the background (capped at a quarter of
    /// the token's lifetime).
    pub min_validity: Duration,
    /// TTL of the Redis lease; renewed every third of it while the holder works.
    pub lease_ttl: Duration,
    /// Timeout of one call to Snyk's token endpoint.
    pub attempt_timeout: Duration,
    /// Retries after an answer that proves the token was not redeemed (429, 503 with
    /// `Retry-After`, connect errors); the one retry after a maybe-redeemed failure comes on top.
    pub transient_retries: u32,
    /// First backoff; doubles per retry, jittered, capped at [`BACKOFF_CAP`].
    pub backoff_base: Duration,
    /// How long a caller waits for a refresh that another replica is doing.
    pub wait_timeout: Duration,
    /// How often a waiting replica re-reads the grant.
    pub poll_interval: Duration,
    /// How long another replica's "sending" mark is waited for before the install is marked
    /// NEEDS_REAUTH(`refresh_in_doubt`).
    pub in_doubt: Duration,
}

type FlightResult = Result<Grant, Error>;
type Flight = Shared<BoxFuture<'static, FlightResult>>;

/// Hands out valid grants, refreshing them exactly once when needed.
#[derive(Debug)]
pub struct Refresher {
    store: Store,
    snyk: SnykClient,
    settings: RefreshSettings,
    metrics: Arc<Metrics>,
    /// This process, in "sending" marks: only it may present a refresh token it sent.
    replica: String,
    /// In-flight refreshes of this replica. A std mutex: it is held for a map lookup only, never
    /// across an `.await` (so are the two below).
    flights: Mutex<HashMap<InstallId, (u64, Flight)>>,
    /// Installs whose background refresh just failed: no new background refresh before then.
    cooling: Mutex<HashMap<InstallId, Instant>>,
    /// Installs this replica left with its own "sending" mark (answer maybe redeemed, lost):
    /// only this replica can resolve them, which the keep-alive sweeper does.
    own_doubts: Mutex<HashSet<InstallId>>,
    tasks: TaskTracker,
}

/// What a lease holder found it must do.
enum UnderLease {
    Done(Box<FlightResult>),
    /// Another replica's request is out with this refresh token: wait for its outcome.
    WaitForSender,
}

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
    pub fn new(
        store: Store,
        snyk: SnykClient,
        settings: RefreshSettings,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Refresher {
            store,
            snyk,
            settings,
            metrics,
            replica: format!("{:016x}", rand::rng().random::<u64>()),
            flights: Mutex::new(HashMap::new()),
            cooling: Mutex::new(HashMap::new()),
            own_doubts: Mutex::new(HashSet::new()),
            tasks: TaskTracker::new(),
        })
    }

    pub fn settings(&self) -> &RefreshSettings {
        &self.settings
    }

    /// Waits for every refresh in flight to finish and store its result (graceful shutdown).
    pub async fn drain(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// A token that satisfies `need`; refreshes first when the stored one does not, or (inside
    /// the margin, above the floor) hands out the stored token and refreshes in the background.
    ///
    /// The grant cache answers first while it is coherent (docs/design.md, "The grant cache"):
    /// a hit touches neither Redis nor the keyring. A cached token that does not satisfy `need`
    /// is read again from Redis (it may be stale: a ForceRefresh of a token another replica
    /// already replaced finds the newer one there). When Redis does not answer, the cached token
    /// is served if it satisfies `need`: only a due refresh fails through a Redis outage.
    ///
    /// Says how the token was had, for the caller's count (`Metrics::token_served`).
    pub async fn token(
        self: &Arc<Self>,
        id: InstallId,
        need: Need,
    ) -> Result<(Arc<Handout>, Served), Error> {
        let cache = self.store.cache();
        if let Some(cached) = cache.install(&id)
            && let Some(how) = self.serves(&cached, &need)?
        {
            return Ok((cached, how));
        }
        let ticket = cache.install_ticket(&id);
        let stored = match self.store.load(&id).await {
            Ok(v) => v.ok_or(Error::UnknownInstall(id))?,
            Err(e @ StoreError::Unavailable(_)) => {
                cache.redis_failed();
                if let Some(cached) = cache.stand_in_install(&id)
                    && let Some(how) = self.serves(&cached, &need)?
                {
                    cache.served_in_outage();
                    return Ok((cached, how));
                }
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        let handout = Arc::new(Handout::from(&stored.grant));
        cache.insert_install(ticket, Arc::clone(&handout));
        if let Some(how) = self.serves(&handout, &need)? {
            return Ok((handout, how));
        }
        let grant = self.refreshed(id, need).await?;
        Ok((Arc::new(Handout::from(&grant)), Served::AfterRefresh))
    }

    /// May `handout` be handed out for `need` without waiting for a refresh? Yes when it
    /// satisfies it ([`Served::Stored`]); yes inside the margin above the floor, with a refresh
    /// started in the background ([`Served::AheadOfRefresh`]). An error when the install cannot
    /// be served at all.
    fn serves(self: &Arc<Self>, handout: &Handout, need: &Need) -> Result<Option<Served>, Error> {
        usable(handout.install_id, handout.status)?;
        if let Need::Validity(min) = need
            && min.as_secs() >= handout.access_lifetime_secs
        {
            return Err(Error::InvalidArgument(format!(
                "min_validity_seconds must be below the token lifetime of this install ({} s)",
                handout.access_lifetime_secs
            )));
        }
        let now = now_millis();
        if handout.satisfies(need, self.settings.margin, now) {
            return Ok(Some(Served::Stored));
        }
        if let Need::Validity(min) = need
            && handout.servable_ahead(*min, self.settings.min_validity, now)
        {
            self.refresh_in_background(handout.install_id, need.clone());
            return Ok(Some(Served::AheadOfRefresh));
        }
        Ok(None)
    }

    /// The keep-alive's request: a refresh token with more than `margin` (capped at half its
    /// lifetime) left, refreshing through the same single flight and lease as callers.
    pub async fn keep_alive(self: &Arc<Self>, id: InstallId, margin: Duration) -> FlightResult {
        self.refreshed(id, Need::KeepAlive(margin)).await
    }

    /// Joins or starts flights until the grant satisfies `need`. A joined flight may have been
    /// started for a weaker need (say, a ForceRefresh of a token that was already replaced); then
    /// we start our own. Three rounds are plenty: each round either refreshes or proves no
    /// refresh is needed.
    async fn refreshed(self: &Arc<Self>, id: InstallId, need: Need) -> FlightResult {
        for _ in 0..3 {
            let grant = self.join_or_start(id, need.clone()).await?;
            if grant.satisfies(&need, self.settings.margin, now_millis()) {
                return Ok(grant);
            }
        }
        Err(Error::Unavailable(
            "the token could not be refreshed; retry".into(),
        ))
    }

    /// Starts a refresh nobody waits for, unless one is running or the last one failed moments
    /// ago (so a Snyk outage is not hammered by every call inside the margin).
    fn refresh_in_background(self: &Arc<Self>, id: InstallId, need: Need) {
        {
            let mut cooling = self.cooling.lock().unwrap_or_else(|p| p.into_inner());
            match cooling.get(&id) {
                Some(until) if Instant::now() < *until => return,
                Some(_) => {
                    cooling.remove(&id);
                }
                None => {}
            }
        }
        drop(self.join_or_start(id, need));
    }

    /// Retries the installs this replica left with its own "sending" mark (their last answer
    /// was lost): only this replica may present those refresh tokens again. Returns how many it
    /// tried.
    pub async fn resolve_own_doubts(self: &Arc<Self>) -> usize {
        let ids: Vec<InstallId> = self
            .own_doubts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        for id in &ids {
            // The flight sees its own mark and resolves it whatever the need.
            match self
                .join_or_start(*id, Need::Validity(Duration::ZERO))
                .await
            {
                Err(Error::Unavailable(_)) => {}
                _ => {
                    self.own_doubts
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(id);
                }
            }
        }
        ids.len()
    }

    fn join_or_start(self: &Arc<Self>, id: InstallId, need: Need) -> Flight {
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

    /// Refreshes under the lease: "started" mark, attempts (each behind a "sending" mark), then
    /// the outcome, stored fenced on the last mark. `keepalive`: the keep-alive sweeper asked
    /// (a failure it settles is a `keepalive_failed` event).
    async fn refresh(
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
}

fn done(result: FlightResult) -> UnderLease {
    UnderLease::Done(Box::new(result))
}

fn random_owner() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}

/// Keeps a lease alive while its holder works, and says when it may no longer send: at the
/// first renewal that fails (lost, or unknown because Redis did not answer), sends stop for good.
struct LeaseKeeper {
    may_send: Arc<AtomicBool>,
    really_lost: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseKeeper {
    fn start(store: Store, id: InstallId, owner: String, ttl: Duration) -> Self {
        let may_send = Arc::new(AtomicBool::new(true));
        let really_lost = Arc::new(AtomicBool::new(false));
        let (send, lost) = (Arc::clone(&may_send), Arc::clone(&really_lost));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(ttl / 3);
            tick.tick().await;
            loop {
                tick.tick().await;
                match store.renew_lease(&id, &owner, ttl).await {
                    Ok(true) => {}
                    Ok(false) => {
                        send.store(false, Ordering::SeqCst);
                        lost.store(true, Ordering::SeqCst);
                        tracing::error!(install_id = %id, "refresh lease lost; no further request is sent");
                        return;
                    }
                    Err(e) => {
                        send.store(false, Ordering::SeqCst);
                        tracing::warn!(install_id = %id, error = %e, "could not renew the refresh lease; no further request is sent");
                    }
                }
            }
        });
        LeaseKeeper {
            may_send,
            really_lost,
            task,
        }
    }

    fn may_send(&self) -> bool {
        self.may_send.load(Ordering::SeqCst)
    }

    /// Redis said the lease is no longer ours (not merely "Redis did not answer").
    fn really_lost(&self) -> bool {
        self.really_lost.load(Ordering::SeqCst)
    }

    fn stop(self) {
        self.task.abort();
    }
}

fn check_usable(grant: &Grant) -> Result<(), Error> {
    usable(grant.install_id, grant.status)
}

fn usable(install_id: InstallId, status: Status) -> Result<(), Error> {
    match status {
        Status::Active => Ok(()),
        Status::NeedsReauth(reason) => Err(Error::NeedsReauth(install_id, reason)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use test_support::RedisServer;

    use super::*;
    use crate::{seal::Keyring, store::RedisTarget};

    async fn store(redis: &RedisServer) -> Store {
        let keyring = Keyring::parse("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        Store::connect(
            &RedisTarget::parse(&redis.url()).unwrap(),
            Arc::new(keyring),
            Duration::from_millis(300),
            0,
        )
        .await
        .unwrap()
    }

    /// "A failed renewal stops further sends at once": a lease taken over by another owner is
    /// noticed at the next renewal, and the holder may send no more.
    #[tokio::test]
    async fn a_lost_lease_stops_sends_at_the_next_renewal() {
        let redis = RedisServer::start().unwrap();
        let store = store(&redis).await;
        let id = InstallId::new_random();
        let ttl = Duration::from_millis(300);
        assert!(store.try_lease(&id, "holder", ttl).await.unwrap());
        let lease = LeaseKeeper::start(store.clone(), id, "holder".into(), ttl);
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert!(lease.may_send(), "renewed past its first TTL");
        assert!(!lease.really_lost());

        // The lease runs out and a successor takes it (as after a freeze).
        store.release_lease(&id, "holder").await.unwrap();
        assert!(store.try_lease(&id, "successor", ttl).await.unwrap());
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(!lease.may_send());
        assert!(lease.really_lost());
        lease.stop();
    }

    /// A renewal Redis does not answer also stops sends (the lease may be gone), without
    /// claiming the lease is lost.
    #[tokio::test]
    async fn an_unanswered_renewal_stops_sends() {
        let mut redis = RedisServer::start().unwrap();
        let store = store(&redis).await;
        let id = InstallId::new_random();
        let ttl = Duration::from_millis(300);
        assert!(store.try_lease(&id, "holder", ttl).await.unwrap());
        let lease = LeaseKeeper::start(store.clone(), id, "holder".into(), ttl);
        redis.kill();
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!lease.may_send());
        assert!(!lease.really_lost());
        lease.stop();
    }
}
