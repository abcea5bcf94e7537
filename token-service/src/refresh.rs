//! The one place that decides when Snyk's token endpoint is called with a refresh token.
//!
//! A refresh token is single use, so a refresh is serialized at three levels: a single flight per
//! install inside a replica, a Redis lease per install across replicas, and marks and fences in
//! Redis. docs/design.md ("One refresh") states them, with the state machine and the reasons
//! behind it. In reading order:
//! - this file: the [`Refresher`] and when it hands out a stored token: one that satisfies the
//!   caller's need at once (from the grant cache first); one inside the refresh margin with more
//!   than the validity floor left also at once, with the refresh in the background (refresh ahead
//!   of need); one only the caller finds short, minted less than the minimum refresh interval
//!   ago, also at once (no spinning refreshes); otherwise after the refresh (a ForceRefresh of a
//!   token that new waits for the interval to pass first);
//! - `flight`: the single flight (a task per install that callers join, detached from them so a
//!   caller that hangs up cannot cancel a refresh half way), the wait for the lease, and the
//!   holder's decision: refresh, wait for another replica's request, or give up on it;
//! - `lease`: the lease as its holder keeps it: renewed while it works, no send after a renewal
//!   that failed;
//! - `attempts`: the refresh under the lease: the "started" mark, each request behind a durable
//!   "sending" mark, failures told apart by whether Snyk may have redeemed the token, and the
//!   outcome stored fenced on the last mark (so a holder frozen past its lease still lands it);
//! - `delete`: deleting an install under its lease.

mod attempts;
mod delete;
mod flight;
mod lease;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::{BoxFuture, Shared};
use rand::Rng as _;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::{
    error::Error,
    grant::{
        Grant, Handling, Handout, HandoutRules, InstallId, Need, OrgId, Status, UnixMillis,
        now_millis,
    },
    metrics::{Metrics, Served},
    snyk::SnykClient,
    store::{Store, StoreError},
};

/// The longest pause between two attempts (Snyk calls or Redis writes). The lease must cover
/// one such pause per retry (see `config`).
pub const BACKOFF_CAP: Duration = Duration::from_secs(2);

/// Timing knobs of the refresh protocol (validated together in `config`).
#[derive(Debug, Clone)]
pub struct RefreshSettings {
    /// Refresh when less validity than this is left (capped at half the token's lifetime).
    pub margin: Duration,
    /// Below this much validity a caller waits for the refresh; above it, inside the margin, it
    /// gets the stored token and the refresh runs in the background (capped at a quarter of
    /// the token's lifetime).
    pub min_validity: Duration,
    /// A caller's demand refreshes an install at most once per this interval, from when its
    /// stored token was minted (`TOKEN_MIN_REFRESH_INTERVAL_SECONDS`).
    pub min_refresh_interval: Duration,
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

impl RefreshSettings {
    /// The hand-out policy these settings make (`grant::Handout::handling`).
    pub fn handout_rules(&self) -> HandoutRules {
        HandoutRules {
            margin: self.margin,
            floor: self.min_validity,
            min_refresh_interval: self.min_refresh_interval,
        }
    }
}

/// A token handed out: how it was had, for the caller's count (`Metrics::token_served`), and
/// whether the caller's demand for a refresh was held to the minimum refresh interval (a refused
/// spin, `Metrics::spin_refused`).
#[derive(Debug)]
pub struct Answer {
    pub handout: Arc<Handout>,
    pub served: Served,
    pub spin_refused: bool,
}

/// What [`Refresher::serves`] decided: an answer at once, or a refresh first (not before
/// `not_before` when the caller's demand came sooner than the interval allows).
enum Step {
    Answer(Answer),
    Refresh { not_before: Option<UnixMillis> },
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
    /// A refresh a caller demands sooner than the minimum refresh interval allows (a ForceRefresh
    /// of a token minted moments ago) waits for the interval, then joins the flight like any
    /// other: every caller that waited for the same token shares one refresh (docs/design.md,
    /// "No spinning refreshes").
    pub async fn token(self: &Arc<Self>, id: InstallId, need: Need) -> Result<Answer, Error> {
        let cache = self.store.cache();
        if let Some(cached) = cache.install(&id)
            && let Step::Answer(answer) = self.serves(cached, &need)?
        {
            return Ok(answer);
        }
        let ticket = cache.install_ticket(&id);
        let stored = match self.store.load(&id).await {
            Ok(v) => v.ok_or(Error::UnknownInstall(id))?,
            Err(e @ StoreError::Unavailable(_)) => {
                cache.redis_failed();
                if let Some(cached) = cache.stand_in_install(&id)
                    && let Step::Answer(answer) = self.serves(cached, &need)?
                {
                    cache.served_in_outage();
                    return Ok(answer);
                }
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        let handout = Arc::new(Handout::from(&stored.grant));
        cache.insert_install(ticket, Arc::clone(&handout));
        let not_before = match self.serves(handout, &need)? {
            Step::Answer(answer) => return Ok(answer),
            Step::Refresh { not_before } => not_before,
        };
        if let Some(at) = not_before {
            let wait = u64::try_from(at.saturating_sub(now_millis())).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        let grant = self.refreshed(id, need).await?;
        Ok(Answer {
            handout: Arc::new(Handout::from(&grant)),
            served: Served::AfterRefresh,
            spin_refused: not_before.is_some(),
        })
    }

    /// A token for `org`: served by its newest ACTIVE install (an org keeps every install that
    /// covers it, newest first), so deleting an install or its needing re-authorization falls
    /// back to the next one. The org's installs come from the grant cache like the grants do
    /// (`Store::installs_for_org`), so a hit by org touches Redis no more than a hit by install.
    pub async fn token_by_org(self: &Arc<Self>, org: OrgId, need: Need) -> Result<Answer, Error> {
        let mut needs_reauth = None;
        for id in self.store.installs_for_org(&org).await?.iter() {
            match self.token(*id, need.clone()).await {
                Ok(served) => return Ok(served),
                Err(Error::UnknownInstall(_)) => {
                    // The grant is gone; its index entry lagged.
                    self.store.unindex_org(&org, id).await?;
                }
                Err(e @ Error::NeedsReauth(..)) => {
                    needs_reauth.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(needs_reauth.unwrap_or(Error::UnknownOrg(org)))
    }

    /// May `handout` be handed out for `need` without waiting for a refresh
    /// ([`Handout::handling`])? Yes when it satisfies it ([`Served::Stored`]); yes inside the
    /// margin above the floor, with a refresh started in the background
    /// ([`Served::AheadOfRefresh`]); yes when only the caller's own `min_validity` finds it short
    /// and it is too new for a caller to have it refreshed (a refused spin). An error when the
    /// install cannot be served at all.
    fn serves(self: &Arc<Self>, handout: Arc<Handout>, need: &Need) -> Result<Step, Error> {
        usable(handout.install_id, handout.status)?;
        if let Need::Validity(min) = need
            && min.as_secs() >= handout.access_lifetime_secs
        {
            return Err(Error::InvalidArgument(format!(
                "min_validity_seconds must be below the token lifetime of this install ({} s)",
                handout.access_lifetime_secs
            )));
        }
        let handling = handout.handling(need, &self.settings.handout_rules(), now_millis());
        let (served, spin_refused) = match handling {
            Handling::Stored => (Served::Stored, false),
            Handling::AheadOfRefresh => {
                self.refresh_in_background(handout.install_id, need.clone());
                (Served::AheadOfRefresh, false)
            }
            Handling::SpinRefused => (Served::Stored, true),
            Handling::Refresh { not_before } => return Ok(Step::Refresh { not_before }),
        };
        Ok(Step::Answer(Answer {
            handout,
            served,
            spin_refused,
        }))
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
