//! The one place that decides when Snyk's token endpoint is called with a refresh token.
//!
//! A refresh token is single use, so a refresh is serialized at three levels:
//! 1. **single flight** inside a replica: one task per install refreshes, concurrent callers await
//!    its result (a shared future), and the task runs detached from the request, so a caller that
//!    hangs up cannot cancel a refresh half way (between Snyk's answer and our write);
//! 2. **a Redis lease** per install across replicas (`SET NX PX`, random owner, compare-and-delete
//!    release, renewal while Snyk is called); every Snyk attempt is bounded so the whole refresh
//!    ends well inside the lease, and a replica that cannot take the lease polls the grant until
//!    the holder has stored the new one;
//! 3. **fenced writes**: under the lease the grant is re-read, then marked "refresh started"
//!    (written only while holding the lease and only over the generation just read), and the new
//!    pair is written over exactly that generation before anyone is answered.
//!
//! The "refresh started" mark is what makes a crash honest: if a holder dies after sending the
//! refresh token, the next holder sees the mark and knows the token may be spent. It retries once
//! with the same token (it works if the dead holder never reached Snyk); `invalid_grant` then
//! means the first attempt was redeemed and its pair lost, and the install moves to `NEEDS_REAUTH`
//! with reason `refresh_in_doubt` instead of failing forever.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{FutureExt, future::BoxFuture, future::Shared};
use rand::Rng as _;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::{
    error::Error,
    grant::{Grant, InstallId, Need, Org, ReauthReason, Status, now_millis},
    metrics::Metrics,
    snyk::{SnykClient, SnykError, TokenPair},
    store::{Fenced, Store, StoreError},
};

/// Timing knobs of the refresh protocol (validated together in `config`).
#[derive(Debug, Clone)]
pub struct RefreshSettings {
    /// Refresh when less validity than this is left (capped at half the token's lifetime).
    pub margin: Duration,
    /// TTL of the Redis lease; renewed every third of it while Snyk is called.
    pub lease_ttl: Duration,
    /// Timeout of one call to Snyk's token endpoint.
    pub attempt_timeout: Duration,
    /// Retries after a 429/5xx/connect error (the lost-answer retry comes on top).
    pub transient_retries: u32,
    /// First backoff; doubles per retry, jittered, capped at 2 s.
    pub backoff_base: Duration,
    /// How long a caller waits for a refresh that another replica is doing.
    pub wait_timeout: Duration,
    /// How often a waiting replica re-reads the grant.
    pub poll_interval: Duration,
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
    /// In-flight refreshes of this replica. A std mutex: it is held for a map lookup only, never
    /// across an `.await`.
    flights: Mutex<HashMap<InstallId, (u64, Flight)>>,
    tasks: TaskTracker,
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
            flights: Mutex::new(HashMap::new()),
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

    /// A grant whose access token satisfies `need`; refreshes first when it does not.
    pub async fn token(self: &Arc<Self>, id: InstallId, need: Need) -> Result<Grant, Error> {
        let v = self
            .store
            .load(&id)
            .await?
            .ok_or(Error::UnknownInstall(id))?;
        check_usable(&v.grant)?;
        if let Need::Validity(min) = &need
            && min.as_secs() >= v.grant.access_lifetime_secs
        {
            return Err(Error::InvalidArgument(format!(
                "min_validity_seconds must be below the token lifetime of this install ({} s)",
                v.grant.access_lifetime_secs
            )));
        }
        if v.grant.satisfies(&need, self.settings.margin, now_millis()) {
            self.metrics.token_served(false);
            return Ok(v.grant);
        }
        // A joined flight may have been started for a weaker need (say, a ForceRefresh of a token
        // that was already replaced); then start our own. Three rounds are plenty: each round
        // either refreshes or proves no refresh is needed.
        for _ in 0..3 {
            let grant = self.join_or_start(id, need.clone()).await?;
            if grant.satisfies(&need, self.settings.margin, now_millis()) {
                self.metrics.token_served(true);
                return Ok(grant);
            }
        }
        Err(Error::Unavailable(
            "the token could not be refreshed; retry".into(),
        ))
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

    /// Takes the lease and refreshes, or waits for the replica that holds it.
    async fn fly(&self, id: InstallId, need: Need) -> FlightResult {
        let deadline = Instant::now() + self.settings.wait_timeout;
        let mut waited = false;
        loop {
            let owner = format!("{:032x}", rand::rng().random::<u128>());
            let started = Instant::now();
            if self
                .store
                .try_lease(&id, &owner, self.settings.lease_ttl)
                .await?
            {
                if waited {
                    self.metrics.lease_waited(started.elapsed());
                }
                let result = self.refresh_under_lease(id, &need, &owner, started).await;
                if let Err(e) = self.store.release_lease(&id, &owner).await {
                    // The lease expires by itself; the next holder only waits longer.
                    tracing::warn!(install_id = %id, error = %e, "could not release the refresh lease");
                }
                return result;
            }
            waited = true;
            let jitter =
                rand::rng().random_range(0..=self.settings.poll_interval.as_millis() as u64 / 2);
            tokio::time::sleep(self.settings.poll_interval + Duration::from_millis(jitter)).await;
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

    async fn refresh_under_lease(
        &self,
        id: InstallId,
        need: &Need,
        owner: &str,
        leased_at: Instant,
    ) -> FlightResult {
        let v = self
            .store
            .load(&id)
            .await?
            .ok_or(Error::UnknownInstall(id))?;
        check_usable(&v.grant)?;
        if v.grant.satisfies(need, self.settings.margin, now_millis()) {
            return Ok(v.grant);
        }
        let was_started = v.grant.refresh_started_at.is_some();
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

        let renewal = self.renew_while_running(id, owner.to_owned());
        let outcome = self.call_snyk(&marked, was_started, leased_at).await;
        renewal.abort();

        match outcome {
            Ok(pair) => {
                let fresh = with_new_pair(&marked, pair);
                self.commit(generation, &fresh, leased_at).await?;
                self.metrics.refresh("ok");
                tracing::info!(install_id = %id, "refreshed the access token");
                Ok(fresh)
            }
            Err(Outcome::InvalidGrant(reason)) => {
                let mut dead = marked.clone();
                dead.status = Status::NeedsReauth(reason);
                dead.refresh_started_at = None;
                self.commit(generation, &dead, leased_at).await?;
                self.metrics.refresh("invalid_grant");
                self.metrics.needs_reauth(reason);
                tracing::warn!(install_id = %id, reason = reason.as_str(), "install needs re-authorization");
                Err(Error::NeedsReauth(id, reason))
            }
            Err(Outcome::Failed { maybe_spent, error }) => {
                if maybe_spent {
                    // Keep the mark: the next holder must treat the token as possibly spent.
                    self.metrics.refresh("in_doubt");
                } else {
                    let mut unmarked = marked.clone();
                    unmarked.refresh_started_at = None;
                    self.commit(generation, &unmarked, leased_at).await?;
                    self.metrics.refresh("unavailable");
                }
                tracing::warn!(install_id = %id, maybe_spent, error = %error, "refresh failed");
                Err(Error::Unavailable(format!(
                    "Snyk's token endpoint is unavailable: {error}"
                )))
            }
        }
    }

    /// Calls the token endpoint with bounded retries, never past the lease.
    async fn call_snyk(
        &self,
        grant: &Grant,
        was_started: bool,
        leased_at: Instant,
    ) -> Result<TokenPair, Outcome> {
        let s = &self.settings;
        // Stop starting attempts when one more could outlive the lease.
        let last_start = leased_at
            + s.lease_ttl
                .saturating_sub(s.attempt_timeout + Duration::from_secs(1));
        let mut in_doubt = was_started;
        let mut doubt_retried = false;
        let mut retries = 0;
        if was_started {
            self.metrics.in_doubt();
            tracing::warn!(install_id = %grant.install_id, "previous refresh did not finish; retrying once with the same token");
            doubt_retried = true;
        }
        loop {
            if Instant::now() > last_start {
                return Err(Outcome::Failed {
                    maybe_spent: in_doubt,
                    error: SnykError::Lost("no time left inside the refresh lease".into()),
                });
            }
            let error = match self.snyk.refresh(&grant.refresh_token).await {
                Ok(pair) => return Ok(pair),
                Err(e) => e,
            };
            match &error {
                e if e.is_invalid_grant() => {
                    let reason = if in_doubt {
                        ReauthReason::RefreshInDoubt
                    } else {
                        ReauthReason::RefreshTokenRejected
                    };
                    return Err(Outcome::InvalidGrant(reason));
                }
                SnykError::Lost(_) if !doubt_retried => {
                    self.metrics.in_doubt();
                    in_doubt = true;
                    doubt_retried = true;
                    tracing::warn!(install_id = %grant.install_id, error = %error, "refresh answer lost; retrying once with the same token");
                }
                SnykError::Transient { retry_after, .. } if retries < s.transient_retries => {
                    retries += 1;
                    let wait =
                        backoff(s.backoff_base, retries).max(retry_after.unwrap_or_default());
                    if Instant::now() + wait > last_start {
                        return Err(Outcome::Failed {
                            maybe_spent: in_doubt,
                            error,
                        });
                    }
                    tokio::time::sleep(wait).await;
                }
                SnykError::NotSent(_) if retries < s.transient_retries => {
                    retries += 1;
                    tokio::time::sleep(backoff(s.backoff_base, retries)).await;
                }
                SnykError::Lost(_) => {
                    return Err(Outcome::Failed {
                        maybe_spent: true,
                        error,
                    });
                }
                _ => {
                    return Err(Outcome::Failed {
                        maybe_spent: in_doubt,
                        error,
                    });
                }
            }
        }
    }

    /// Stores the result of a refresh over `generation`. Redis hiccups are retried until the
    /// lease runs out: the pair in hand exists nowhere else, and while the lease is ours (Redis
    /// keeps its expiry across a restart) no other replica may act on this install.
    async fn commit(
        &self,
        generation: u64,
        grant: &Grant,
        leased_at: Instant,
    ) -> Result<(), Error> {
        let deadline = leased_at
            + self
                .settings
                .lease_ttl
                .saturating_sub(Duration::from_millis(500));
        let mut attempt = 0;
        loop {
            match self.store.write_fenced(generation, grant, None).await {
                Ok(Fenced::Written(_)) => return Ok(()),
                Ok(_) => {
                    tracing::error!(install_id = %grant.install_id, "grant changed while this replica held the refresh lease; result discarded");
                    return Err(Error::Unavailable(
                        "the grant changed during the refresh; retry".into(),
                    ));
                }
                Err(StoreError::Unavailable(e)) if Instant::now() < deadline => {
                    attempt += 1;
                    tracing::warn!(install_id = %grant.install_id, error = %e, attempt, "could not store the refreshed grant; retrying");
                    tokio::time::sleep(
                        backoff(Duration::from_millis(100), attempt).min(deadline - Instant::now()),
                    )
                    .await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn renew_while_running(&self, id: InstallId, owner: String) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let ttl = self.settings.lease_ttl;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ttl / 3);
            tick.tick().await;
            loop {
                tick.tick().await;
                match store.renew_lease(&id, &owner, ttl).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::error!(install_id = %id, "refresh lease lost while calling Snyk");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(install_id = %id, error = %e, "could not renew the refresh lease")
                    }
                }
            }
        })
    }
}

enum Outcome {
    InvalidGrant(ReauthReason),
    Failed { maybe_spent: bool, error: SnykError },
}

fn check_usable(grant: &Grant) -> Result<(), Error> {
    match grant.status {
        Status::Active => Ok(()),
        Status::NeedsReauth(reason) => Err(Error::NeedsReauth(grant.install_id, reason)),
    }
}

/// A new install's grant, straight from the code exchange.
pub fn grant_from_pair(install_id: InstallId, orgs: Vec<Org>, pair: TokenPair) -> Grant {
    let now = now_millis();
    Grant {
        install_id,
        access_token: pair.access_token,
        refresh_token: pair.refresh_token,
        token_type: pair.token_type,
        access_expires_at: now + (pair.expires_in as i64) * 1000,
        access_lifetime_secs: pair.expires_in,
        refresh_expires_at: pair.refresh_expires_in.map(|s| now + (s as i64) * 1000),
        scope: pair.scope,
        bot_id: pair.bot_id,
        orgs,
        created_at: now,
        status: Status::Active,
        refresh_started_at: None,
    }
}

/// The grant after a successful refresh: new pair, mark cleared, active; same install and orgs.
fn with_new_pair(grant: &Grant, pair: TokenPair) -> Grant {
    Grant {
        created_at: grant.created_at,
        ..grant_from_pair(grant.install_id, grant.orgs.clone(), pair)
    }
}

/// Exponential backoff with jitter (between half and all of the step), capped at 2 s.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let cap = base
        .saturating_mul(1 << attempt.min(10))
        .min(Duration::from_secs(2));
    Duration::from_millis(
        rand::rng().random_range(cap.as_millis() as u64 / 2..=cap.as_millis() as u64),
    )
}
