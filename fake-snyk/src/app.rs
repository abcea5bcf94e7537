//! Shared state of one fake instance and the HTTP routes that reach it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};

use axum::Router;
use axum::routing::{get, post};

use crate::catalog::{AddOrgsError, Catalog};
use crate::config::{Config, OrgSeed};
use crate::faults::{Fault, Faults};
use crate::ratelimit::RateLimiter;
use crate::secrets::{ClientSecretError, ClientSecrets, SecretChange};
use crate::stats::Stats;
use crate::store::{Lifetimes, Store};
use crate::{authorize, control, rest, token};

/// Everything a request may read or change.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) config: Config,
    /// Its own lock, apart from `inner`: every REST request reads it, orgs are rarely added
    /// (`POST /_fake/orgs`), and a page of projects is built under the read lock without holding
    /// up the requests that only touch `inner`.
    catalog: RwLock<Catalog>,
    // A std mutex, not a Tokio one: every critical section is a few map operations and never
    // crosses an `.await`, so blocking briefly is cheaper than an async lock (mini-redis' reasoning).
    inner: Mutex<Inner>,
}

/// The mutable part, under one lock so that a request sees faults, grants and counters change
/// together (a lost-response refresh bumps three of them at once).
pub(crate) struct Inner {
    pub(crate) store: Store,
    /// The client's active secrets (the config's one at start).
    pub(crate) secrets: ClientSecrets,
    pub(crate) faults: Faults,
    /// The accepted REST requests of each access token in the last minute.
    pub(crate) rate_limiter: RateLimiter,
    /// `/rest/*` requests being answered now (`rest::count_in_flight`).
    pub(crate) rest_in_flight: u64,
    pub(crate) stats: Stats,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens live in the store: never print them.
        f.debug_struct("Inner")
            .field("faults", &self.faults)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

pub(crate) type SharedState = Arc<AppState>;

impl AppState {
    pub(crate) fn new(config: Config) -> Self {
        let lifetimes = Lifetimes {
            access: config.access_token_ttl,
            refresh: config.refresh_token_ttl,
            code: config.code_ttl,
        };
        let mut faults = Faults::default();
        if !config.token_latency.is_zero() {
            faults.inject(Fault::TokenLatency(config.token_latency));
        }
        faults.inject(Fault::RateLimitPerMinute(config.rate_limit_per_minute));
        let secrets = ClientSecrets::new(&config.client_secret);
        Self {
            catalog: RwLock::new(Catalog::new(&config.orgs)),
            config,
            inner: Mutex::new(Inner {
                store: Store::new(lifetimes),
                secrets,
                faults,
                rate_limiter: RateLimiter::default(),
                rest_in_flight: 0,
                stats: Stats::default(),
            }),
        }
    }

    /// Locks the mutable state. A panic while holding the lock cannot leave it half-updated in a
    /// way that matters to a test double, so a poisoned lock is simply taken over.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The orgs served, read-locked (a poisoned lock is taken over, as [`AppState::lock`] does).
    pub(crate) fn catalog(&self) -> RwLockReadGuard<'_, Catalog> {
        self.catalog.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds orgs after those served (all or none, see [`Catalog::add`]).
    pub(crate) fn add_orgs(&self, seeds: &[OrgSeed]) -> Result<(), AddOrgsError> {
        self.catalog
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .add(seeds)
    }

    /// Changes the client's secrets; the new secret when one was generated.
    pub(crate) fn change_client_secret(
        &self,
        change: &SecretChange,
    ) -> Result<Option<String>, ClientSecretError> {
        self.lock().secrets.apply(change)
    }

    pub(crate) fn inject(&self, fault: Fault) {
        let mut inner = self.lock();
        if inner.faults.inject(fault) == crate::faults::Armed::ExpireAccessTokensNow {
            inner.store.expire_access_tokens(std::time::Instant::now());
        }
    }
}

/// All routes: the app host's consent page, the API host's OAuth and REST endpoints, `/healthz`
/// and, when the config allows them, the `/_fake` control endpoints (404 otherwise).
pub(crate) fn router(state: SharedState) -> Router {
    let routes = Router::new()
        .route("/oauth2/authorize", get(authorize::page))
        .route("/oauth2/authorize/decision", post(authorize::decision))
        .route("/oauth2/token", post(token::token))
        .route("/oauth2/revoke", post(token::revoke))
        .nest(
            "/rest",
            rest::router().layer(axum::middleware::from_fn_with_state(
                Arc::clone(&state),
                rest::count_in_flight,
            )),
        )
        // Not a Snyk endpoint: what `fake-snyk healthcheck` asks, with or without control.
        .route("/healthz", get(|| async { "ok" }));
    if !state.config.control_endpoints {
        return routes.with_state(state);
    }
    routes
        .route("/_fake/stats", get(control::stats))
        .route(
            "/_fake/faults",
            post(control::inject).delete(control::clear),
        )
        .route(
            "/_fake/expire-access-tokens",
            post(control::expire_access_tokens),
        )
        .route(
            "/_fake/refresh-token-ttl",
            post(control::set_refresh_token_ttl),
        )
        .route("/_fake/client-secrets", post(control::change_client_secret))
        .route("/_fake/orgs", post(control::add_orgs))
        .with_state(state)
}
