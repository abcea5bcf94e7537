//! What token-service did, counted twice on purpose: OpenTelemetry instruments (exported over
//! OTLP and at `/metrics`) and plain atomics that tests read as a [`Snapshot`] without any
//! exporter in the way. The values each label takes are typed in `labels`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use opentelemetry::{
    KeyValue, global,
    metrics::{AsyncInstrument, Counter, Histogram, ObservableCounter, ObservableGauge},
};

use crate::{cache::GrantCache, caller::Rpc, client_secret, grant::ReauthReason};

mod labels;

pub use labels::{KeepAliveOutcome, PermitOutcome, RefreshOutcome, Served, SnykEndpoint};

/// `snykapps.token.requests`, counted per caller in plain atomics on the hot path and handed to
/// OpenTelemetry only when metrics are collected (an observable counter): a hand-out costs one
/// uncontended read lock and one atomic add, not the SDK's attribute hashing per call.
#[derive(Debug, Default)]
struct TokenRequests {
    /// One row per caller name, in order of first request (a handful: the configured callers).
    rows: std::sync::RwLock<Vec<CallerRow>>,
}

#[derive(Debug)]
struct CallerRow {
    caller: Arc<str>,
    /// By [`Served`], in the order of [`Served::ALL`].
    served: [AtomicU64; 3],
    /// Failed requests by gRPC code (0-16).
    failed: [AtomicU64; 17],
    /// Refused spins, by RPC in the order of [`SPIN_RPCS`].
    spins_refused: [AtomicU64; SPIN_RPCS.len()],
}

/// The RPCs through which a caller demands a refresh: the `rpc` label of
/// `snykapps.token.refresh_spins_refused`.
const SPIN_RPCS: [Rpc; 2] = [Rpc::GetAccessToken, Rpc::ForceRefresh];

impl TokenRequests {
    /// Runs `f` on `caller`'s row, adding the row on the caller's first request.
    fn with_row(&self, caller: &Arc<str>, f: impl Fn(&CallerRow)) {
        let find = |rows: &[CallerRow]| {
            rows.iter()
                .position(|r| Arc::ptr_eq(&r.caller, caller) || r.caller == *caller)
        };
        {
            let rows = self.rows.read().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = find(&rows) {
                return f(&rows[i]);
            }
        }
        let mut rows = self.rows.write().unwrap_or_else(|p| p.into_inner());
        let i = find(&rows).unwrap_or_else(|| {
            rows.push(CallerRow {
                caller: Arc::clone(caller),
                served: Default::default(),
                failed: Default::default(),
                spins_refused: Default::default(),
            });
            rows.len() - 1
        });
        f(&rows[i]);
    }

    /// Hand-outs of every caller, by [`Served`].
    fn served_totals(&self) -> [u64; 3] {
        let rows = self.rows.read().unwrap_or_else(|p| p.into_inner());
        std::array::from_fn(|i| rows.iter().map(|r| r.served[i].load(Relaxed)).sum())
    }

    /// Refused spins of every caller.
    fn spins_refused_total(&self) -> u64 {
        let rows = self.rows.read().unwrap_or_else(|p| p.into_inner());
        rows.iter()
            .flat_map(|r| &r.spins_refused)
            .map(|n| n.load(Relaxed))
            .sum()
    }

    /// Reports the refused spins of every caller that asked for a token, zeros included (a rate
    /// reads 0, not "no data"), labelled `caller` and `rpc`.
    fn observe_spins(&self, o: &dyn opentelemetry::metrics::AsyncInstrument<u64>) {
        let rows = self.rows.read().unwrap_or_else(|p| p.into_inner());
        for row in rows.iter() {
            for (rpc, n) in SPIN_RPCS.iter().zip(&row.spins_refused) {
                let caller = opentelemetry::StringValue::from(Arc::clone(&row.caller));
                let labels = [
                    KeyValue::new("caller", caller),
                    KeyValue::new("rpc", rpc.name()),
                ];
                o.observe(n.load(Relaxed), &labels);
            }
        }
    }

    /// Reports every non-zero count with its labels (`caller`, `outcome`, `served`).
    fn observe(&self, o: &dyn opentelemetry::metrics::AsyncInstrument<u64>) {
        let rows = self.rows.read().unwrap_or_else(|p| p.into_inner());
        for row in rows.iter() {
            let caller = KeyValue::new(
                "caller",
                opentelemetry::StringValue::from(Arc::clone(&row.caller)),
            );
            for (how, n) in Served::ALL.iter().zip(&row.served) {
                let n = n.load(Relaxed);
                if n > 0 {
                    let outcome = KeyValue::new("outcome", "ok");
                    let served = KeyValue::new("served", how.label());
                    o.observe(n, &[outcome, served, caller.clone()]);
                }
            }
            for (code, n) in row.failed.iter().enumerate() {
                let n = n.load(Relaxed);
                if n > 0 {
                    let code = tonic::Code::from_i32(code as i32);
                    let outcome = KeyValue::new("outcome", format!("{code:?}"));
                    let served = KeyValue::new("served", Served::NONE);
                    o.observe(n, &[outcome, served, caller.clone()]);
                }
            }
        }
    }
}

/// The OpenTelemetry instruments (no-ops until `service_runtime::telemetry::init` ran).
#[derive(Debug)]
struct Instruments {
    lease_wait: Histogram<f64>,
    snyk_calls: Counter<u64>,
}

/// The outcomes of refreshes and keep-alive sweeps, counted here and exported by observable
/// counters read at collection: every label value is there from start-up (at 0), so a rate over
/// it reads 0, not "no data", before its first event. Indexed by the enums' declaration order.
#[derive(Debug, Default)]
struct Outcomes {
    refreshes: [AtomicU64; RefreshOutcome::ALL.len()],
    in_doubt: AtomicU64,
    needs_reauth: [AtomicU64; ReauthReason::ALL.len()],
    keepalive: [AtomicU64; KeepAliveOutcome::ALL.len()],
    /// Answers `invalid_client` by the position of the secret sent in `SNYK_CLIENT_SECRET`.
    client_secret_rejected: [AtomicU64; client_secret::MAX_SECRETS],
    snyk_permits: [AtomicU64; PermitOutcome::ALL.len()],
    /// 429s from Snyk reported to an install's budget (each pauses the install's requests).
    snyk_pauses: AtomicU64,
    /// Answers whose body passed `snyk_rest::MAX_BODY_BYTES`, by endpoint.
    snyk_body_capped: [AtomicU64; SnykEndpoint::ALL.len()],
}

impl Outcomes {
    /// Registers the observable counters over `outcomes`; keep them to stay registered.
    fn observe(outcomes: &Arc<Outcomes>) -> Vec<ObservableCounter<u64>> {
        let meter = global::meter("token-service");
        let counter = |name: &'static str,
                       what: &'static str,
                       observe: fn(&Outcomes, &dyn AsyncInstrument<u64>)| {
            let outcomes = Arc::clone(outcomes);
            meter
                .u64_observable_counter(name)
                .with_description(what)
                .with_callback(move |o| observe(&outcomes, o))
                .build()
        };
        vec![
            counter(
                "snykapps.token.refreshes",
                "Refreshes at Snyk's token endpoint, by outcome",
                |m, o| {
                    observe_each(
                        o,
                        &m.refreshes,
                        "outcome",
                        RefreshOutcome::ALL,
                        RefreshOutcome::label,
                    )
                },
            ),
            counter(
                "snykapps.token.refresh_in_doubt",
                "Refreshes whose answer was lost or whose holder died mid-refresh (the token may be spent)",
                |m, o| o.observe(m.in_doubt.load(Relaxed), &[]),
            ),
            counter(
                "snykapps.installs.needs_reauth",
                "Installs moved to NEEDS_REAUTH, by reason",
                |m, o| {
                    observe_each(
                        o,
                        &m.needs_reauth,
                        "reason",
                        ReauthReason::ALL,
                        ReauthReason::as_str,
                    )
                },
            ),
            counter(
                "snykapps.snyk.client_secret_rejected",
                "Calls to Snyk's token or revoke endpoint refused with invalid_client, by the position of the secret sent in SNYK_CLIENT_SECRET (1 = first listed): a secret Snyk no longer accepts",
                |m, o| {
                    for (position, n) in m.client_secret_rejected.iter().enumerate() {
                        let secret = client_secret::position_label(position);
                        o.observe(n.load(Relaxed), &[KeyValue::new("secret", secret)]);
                    }
                },
            ),
            counter(
                "snykapps.snyk.permits",
                "Permits to send a Snyk REST request, from the install's budget (SNYK_RATE_LIMIT_PER_MINUTE), by outcome: granted at once, waited for, or refused (no permit before the caller's deadline)",
                |m, o| {
                    observe_each(
                        o,
                        &m.snyk_permits,
                        "outcome",
                        PermitOutcome::ALL,
                        PermitOutcome::label,
                    )
                },
            ),
            counter(
                "snykapps.snyk.pauses",
                "429s from Snyk reported to an install's budget: each pauses every replica's requests for that install until its Retry-After",
                |m, o| o.observe(m.snyk_pauses.load(Relaxed), &[]),
            ),
            counter(
                "snykapps.snyk.body_capped",
                "Answers from Snyk whose body was over the byte cap, not read (an error for the call), by endpoint",
                |m, o| {
                    observe_each(
                        o,
                        &m.snyk_body_capped,
                        "endpoint",
                        SnykEndpoint::ALL,
                        SnykEndpoint::label,
                    )
                },
            ),
            counter(
                "snykapps.keepalive.refreshes",
                "Due installs the keep-alive sweeper handled, by outcome",
                |m, o| {
                    observe_each(
                        o,
                        &m.keepalive,
                        "outcome",
                        KeepAliveOutcome::ALL,
                        KeepAliveOutcome::label,
                    )
                },
            ),
        ]
    }
}

/// Reports each count of `counts` labelled `key` = the label of its value in `all` (the counts
/// are in `all`'s order: `outcomes_have_their_own_slots`).
fn observe_each<T: Copy>(
    o: &dyn AsyncInstrument<u64>,
    counts: &[AtomicU64],
    key: &'static str,
    all: impl IntoIterator<Item = T>,
    label: fn(T) -> &'static str,
) {
    for (value, n) in all.into_iter().zip(counts) {
        o.observe(n.load(Relaxed), &[KeyValue::new(key, label(value))]);
    }
}

/// Values that gauges report when they are read (set by start-up and the sweeper).
#[derive(Debug)]
struct Gauges {
    /// Seconds of life left to the refresh token that expires first (ACTIVE installs);
    /// `i64::MIN` until the first sweep.
    min_refresh_remaining: AtomicI64,
    /// 1 when Redis makes a refresh durable before acknowledging it, 0 when not, -1 unknown.
    durable_commits: AtomicI64,
}

impl Default for Gauges {
    fn default() -> Self {
        Gauges {
            min_refresh_remaining: AtomicI64::new(i64::MIN),
            durable_commits: AtomicI64::new(-1),
        }
    }
}

impl Default for Instruments {
    fn default() -> Self {
        let meter = global::meter("token-service");
        Instruments {
            lease_wait: meter
                .f64_histogram("snykapps.token.refresh_lease_wait")
                .with_unit("s")
                .with_description("Time a replica waited for another replica's refresh lease")
                .with_boundaries(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ])
                .build(),
            snyk_calls: meter
                .u64_counter("snykapps.snyk.calls")
                .with_description("Calls to Snyk, by endpoint and HTTP status (or error)")
                .build(),
        }
    }
}

/// Process-wide counters (lock-free; read as a [`Snapshot`]).
#[derive(Debug)]
pub struct Metrics {
    otel: Instruments,
    gauges: Arc<Gauges>,
    /// Kept so the gauges stay registered.
    _observed: Vec<ObservableGauge<i64>>,
    /// The grant cache's instruments, once [`Metrics::observe_cache`] registered them.
    cache_observed: std::sync::Mutex<Vec<Box<dyn std::any::Any + Send + Sync>>>,
    token_requests: Arc<TokenRequests>,
    /// Kept so the token-request and refused-spin counters stay registered.
    _token_requests_observed: [ObservableCounter<u64>; 2],
    outcomes: Arc<Outcomes>,
    /// Kept so the outcome counters stay registered.
    _outcomes_observed: Vec<ObservableCounter<u64>>,
    lease_waits: AtomicU64,
    lease_wait_micros: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        let meter = global::meter("token-service");
        let gauges = Arc::new(Gauges::default());
        let g = Arc::clone(&gauges);
        let min_remaining = meter
            .i64_observable_gauge("snykapps.installs.refresh_token_min_remaining")
            .with_unit("s")
            .with_description("Life left to the refresh token that expires first, over ACTIVE installs (as of the last keep-alive sweep)")
            .with_callback(move |o| {
                let v = g.min_refresh_remaining.load(Relaxed);
                if v != i64::MIN {
                    o.observe(v, &[]);
                }
            })
            .build();
        let g = Arc::clone(&gauges);
        let durable = meter
            .i64_observable_gauge("snykapps.redis.durable_commits")
            .with_description("1 when Redis makes a refresh durable before acknowledging it (WAITAOF, or appendfsync always), 0 when a crash can lose one")
            .with_callback(move |o| {
                let v = g.durable_commits.load(Relaxed);
                if v >= 0 {
                    o.observe(v, &[]);
                }
            })
            .build();
        let token_requests = Arc::new(TokenRequests::default());
        let counts = Arc::clone(&token_requests);
        let token_requests_observed = meter
            .u64_observable_counter("snykapps.token.requests")
            .with_description("Token requests by caller, outcome and how the token was served (served=stored: no refresh needed; ahead: stored, refresh in the background; refreshed: after a refresh; none: failed)")
            .with_callback(move |o| counts.observe(o))
            .build();
        let counts = Arc::clone(&token_requests);
        let spins_refused_observed = meter
            .u64_observable_counter("snykapps.token.refresh_spins_refused")
            .with_description("Token requests by caller and RPC that demanded a refresh sooner than TOKEN_MIN_REFRESH_INTERVAL_SECONDS allows (GetAccessToken: answered with the stored token; ForceRefresh: held until the interval passed)")
            .with_callback(move |o| counts.observe_spins(o))
            .build();
        let outcomes = Arc::new(Outcomes::default());
        Metrics {
            otel: Instruments::default(),
            gauges,
            _observed: vec![min_remaining, durable],
            cache_observed: std::sync::Mutex::default(),
            token_requests,
            _token_requests_observed: [token_requests_observed, spins_refused_observed],
            _outcomes_observed: Outcomes::observe(&outcomes),
            outcomes,
            lease_waits: AtomicU64::default(),
            lease_wait_micros: AtomicU64::default(),
        }
    }
}

/// A point-in-time copy of [`Metrics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Stored tokens handed out inside the margin while a background refresh ran.
    pub tokens_ahead: u64,
    /// Due installs whose refresh token the keep-alive sweeper saw fresh again.
    pub keepalive_refreshed: u64,
    pub tokens_cached: u64,
    pub tokens_after_refresh: u64,
    pub refresh_ok: u64,
    pub refresh_invalid_grant: u64,
    pub refresh_in_doubt: u64,
    pub refresh_unavailable: u64,
    /// Refreshes whose answer was lost or whose predecessor died mid-refresh.
    pub in_doubt_events: u64,
    pub needs_reauth_rejected: u64,
    pub needs_reauth_in_doubt: u64,
    pub lease_waits: u64,
    pub lease_wait_micros: u64,
    /// `invalid_client` answers by the position of the secret in `SNYK_CLIENT_SECRET`.
    pub client_secret_rejected: [u64; client_secret::MAX_SECRETS],
    /// Callers' demands for a refresh held to the minimum refresh interval, every caller's.
    pub spins_refused: u64,
    /// Answers over the body cap, in [`SnykEndpoint::ALL`]'s order.
    pub snyk_body_capped: [u64; SnykEndpoint::ALL.len()],
}

impl Metrics {
    /// A token handed out to `caller`.
    pub fn token_served(&self, caller: &Arc<str>, how: Served) {
        self.token_requests.with_row(caller, |row| {
            row.served[how as usize].fetch_add(1, Relaxed);
        });
    }

    /// A demand of `caller` through `rpc` for a refresh sooner than the minimum refresh interval
    /// allows, held back (docs/design.md, "No spinning refreshes").
    pub fn spin_refused(&self, caller: &Arc<str>, rpc: Rpc) {
        if let Some(i) = SPIN_RPCS.iter().position(|r| *r == rpc) {
            self.token_requests.with_row(caller, |row| {
                row.spins_refused[i].fetch_add(1, Relaxed);
            });
        }
    }

    pub fn keepalive(&self, outcome: KeepAliveOutcome) {
        self.outcomes.keepalive[outcome as usize].fetch_add(1, Relaxed);
    }

    /// After a sweep: the life left to the refresh token that expires first (None: no ACTIVE
    /// install has one).
    pub fn set_min_refresh_remaining(&self, seconds: Option<i64>) {
        self.gauges
            .min_refresh_remaining
            .store(seconds.unwrap_or(i64::MIN), Relaxed);
    }

    pub fn set_durable_commits(&self, durable: bool) {
        self.gauges
            .durable_commits
            .store(i64::from(durable), Relaxed);
    }

    /// The shortest remaining refresh-token life as of the last sweep (None before the first
    /// sweep, or when no ACTIVE install has a refresh expiry).
    pub fn min_refresh_remaining(&self) -> Option<i64> {
        match self.gauges.min_refresh_remaining.load(Relaxed) {
            i64::MIN => None,
            v => Some(v),
        }
    }

    /// The durable-commits gauge as last set (None before start-up set it).
    pub fn durable_commits(&self) -> Option<bool> {
        match self.gauges.durable_commits.load(Relaxed) {
            -1 => None,
            v => Some(v == 1),
        }
    }

    /// A token request of `caller` that ended in an error.
    pub fn token_failed(&self, caller: &Arc<str>, code: tonic::Code) {
        self.token_requests.with_row(caller, |row| {
            if let Some(n) = row.failed.get(code as usize) {
                n.fetch_add(1, Relaxed);
            }
        });
    }

    /// One call to Snyk: `status` the HTTP status or "error".
    pub fn snyk_call(&self, endpoint: SnykEndpoint, status: String) {
        self.otel.snyk_calls.add(
            1,
            &[
                KeyValue::new("endpoint", endpoint.label()),
                KeyValue::new("status", status),
            ],
        );
    }

    pub fn snyk_permit(&self, outcome: PermitOutcome) {
        self.outcomes.snyk_permits[outcome as usize].fetch_add(1, Relaxed);
    }

    pub fn snyk_paused(&self) {
        self.outcomes.snyk_pauses.fetch_add(1, Relaxed);
    }

    /// An answer from `endpoint` whose body was over the cap, left unread.
    pub fn snyk_body_capped(&self, endpoint: SnykEndpoint) {
        self.outcomes.snyk_body_capped[endpoint as usize].fetch_add(1, Relaxed);
    }

    pub fn refresh(&self, outcome: RefreshOutcome) {
        self.outcomes.refreshes[outcome as usize].fetch_add(1, Relaxed);
    }

    /// Snyk refused the secret at `position` of `SNYK_CLIENT_SECRET` (`invalid_client`).
    pub fn client_secret_rejected(&self, position: usize) {
        if let Some(n) = self.outcomes.client_secret_rejected.get(position) {
            n.fetch_add(1, Relaxed);
        }
    }

    pub fn in_doubt(&self) {
        self.outcomes.in_doubt.fetch_add(1, Relaxed);
    }

    pub fn needs_reauth(&self, reason: ReauthReason) {
        self.outcomes.needs_reauth[reason as usize].fetch_add(1, Relaxed);
    }

    pub fn lease_waited(&self, d: Duration) {
        self.lease_waits.fetch_add(1, Relaxed);
        self.lease_wait_micros
            .fetch_add(d.as_micros() as u64, Relaxed);
        self.otel.lease_wait.record(d.as_secs_f64(), &[]);
    }

    /// Exports the grant cache's counters (`snykapps.token.cache.*`) and whether it answers
    /// first (`snykapps.token.cache.tracked`), read when metrics are collected.
    pub fn observe_cache(&self, cache: &Arc<GrantCache>) {
        let meter = global::meter("token-service");
        let counter = |name: &'static str, what: &'static str, read: fn(&GrantCache) -> u64| {
            let cache = Arc::clone(cache);
            meter
                .u64_observable_counter(name)
                .with_description(what)
                .with_callback(move |o| o.observe(read(&cache), &[]))
                .build()
        };
        let counters = vec![
            counter(
                "snykapps.token.cache.hits",
                "Grant cache lookups that found the install",
                |c| c.stats().hits,
            ),
            counter(
                "snykapps.token.cache.misses",
                "Grant cache lookups that did not",
                |c| c.stats().misses,
            ),
            counter(
                "snykapps.token.cache.invalidations",
                "Grant cache entries dropped for a change (own writes and tracking pushes)",
                |c| c.stats().invalidations,
            ),
            counter(
                "snykapps.token.cache.flushes",
                "Times the grant cache stopped trusting all its entries (a new tracking connection, a flushed Redis)",
                |c| c.stats().flushes,
            ),
            counter(
                "snykapps.token.cache.served_in_outage",
                "Tokens handed out from the grant cache because Redis did not answer",
                |c| c.stats().served_in_outage,
            ),
        ];
        let tracked_cache = Arc::clone(cache);
        let tracked = meter
            .i64_observable_gauge("snykapps.token.cache.tracked")
            .with_description("1 while the grant cache is coherent and answers first, 0 while Redis answers first")
            .with_callback(move |o| {
                let tracked = tracked_cache.coherence() == crate::cache::Coherence::Tracked;
                o.observe(i64::from(tracked), &[]);
            })
            .build();
        let mut observed = self
            .cache_observed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        observed.extend(
            counters
                .into_iter()
                .map(|c| Box::new(c) as Box<dyn std::any::Any + Send + Sync>),
        );
        observed.push(Box::new(tracked));
    }

    pub fn snapshot(&self) -> Snapshot {
        let [tokens_cached, tokens_ahead, tokens_after_refresh] =
            self.token_requests.served_totals();
        let o = &self.outcomes;
        Snapshot {
            tokens_cached,
            tokens_ahead,
            tokens_after_refresh,
            keepalive_refreshed: o.keepalive[KeepAliveOutcome::Refreshed as usize].load(Relaxed),
            refresh_ok: o.refreshes[RefreshOutcome::Ok as usize].load(Relaxed),
            refresh_invalid_grant: o.refreshes[RefreshOutcome::InvalidGrant as usize].load(Relaxed),
            refresh_in_doubt: o.refreshes[RefreshOutcome::InDoubt as usize].load(Relaxed),
            refresh_unavailable: o.refreshes[RefreshOutcome::Unavailable as usize].load(Relaxed),
            in_doubt_events: o.in_doubt.load(Relaxed),
            needs_reauth_rejected: o.needs_reauth[ReauthReason::RefreshTokenRejected as usize]
                .load(Relaxed),
            needs_reauth_in_doubt: o.needs_reauth[ReauthReason::RefreshInDoubt as usize]
                .load(Relaxed),
            lease_waits: self.lease_waits.load(Relaxed),
            lease_wait_micros: self.lease_wait_micros.load(Relaxed),
            client_secret_rejected: std::array::from_fn(|i| {
                o.client_secret_rejected[i].load(Relaxed)
            }),
            spins_refused: self.token_requests.spins_refused_total(),
            snyk_body_capped: std::array::from_fn(|i| o.snyk_body_capped[i].load(Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_have_their_own_slots() {
        for (i, o) in RefreshOutcome::ALL.into_iter().enumerate() {
            assert_eq!(o as usize, i, "{o:?}");
        }
        for (i, r) in ReauthReason::ALL.into_iter().enumerate() {
            assert_eq!(r as usize, i, "{r:?}");
        }
        for (i, o) in KeepAliveOutcome::ALL.into_iter().enumerate() {
            assert_eq!(o as usize, i, "{o:?}");
        }
        for (i, o) in PermitOutcome::ALL.into_iter().enumerate() {
            assert_eq!(o as usize, i, "{o:?}");
        }
        for (i, e) in SnykEndpoint::ALL.into_iter().enumerate() {
            assert_eq!(e as usize, i, "{e:?}");
        }
    }

    #[test]
    fn served_kinds_have_their_own_slots() {
        for (i, how) in Served::ALL.into_iter().enumerate() {
            assert_eq!(how as usize, i, "{how:?}");
        }
    }

    #[test]
    fn refused_spins_are_counted_per_caller_and_rpc() {
        let m = Metrics::default();
        let a: Arc<str> = Arc::from("projects-service");
        m.spin_refused(&a, Rpc::ForceRefresh);
        m.spin_refused(&a, Rpc::ForceRefresh);
        m.spin_refused(&Arc::from("projects-service"), Rpc::GetAccessToken);
        m.spin_refused(&Arc::from("ops"), Rpc::GetAccessToken);
        // No other RPC demands a refresh: nothing to count.
        m.spin_refused(&a, Rpc::DeleteInstall);
        assert_eq!(m.snapshot().spins_refused, 4);
        let rows = m
            .token_requests
            .rows
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let spins = |name: &str| {
            rows.iter()
                .find(|r| &*r.caller == name)
                .map(|r| r.spins_refused.each_ref().map(|n| n.load(Relaxed)))
        };
        assert_eq!(SPIN_RPCS, [Rpc::GetAccessToken, Rpc::ForceRefresh]);
        assert_eq!(spins("projects-service"), Some([1, 2]));
        assert_eq!(spins("ops"), Some([1, 0]));
    }

    #[test]
    fn token_requests_are_counted_per_caller_and_outcome() {
        let m = Metrics::default();
        let a: Arc<str> = Arc::from("projects-service");
        m.token_served(&a, Served::Stored);
        m.token_served(&a, Served::Stored);
        m.token_served(&a, Served::AfterRefresh);
        // A second Arc with the same name counts in the same row.
        m.token_served(&Arc::from("projects-service"), Served::AheadOfRefresh);
        m.token_served(&Arc::from("auth-service"), Served::Stored);
        m.token_failed(&a, tonic::Code::Unavailable);
        m.token_failed(&Arc::from("other"), tonic::Code::NotFound);

        let snap = m.snapshot();
        assert_eq!(
            (
                snap.tokens_cached,
                snap.tokens_ahead,
                snap.tokens_after_refresh
            ),
            (3, 1, 1)
        );
        let rows = m
            .token_requests
            .rows
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let row = |name: &str| {
            rows.iter().find(|r| &*r.caller == name).map(|r| {
                let served: Vec<u64> = r.served.iter().map(|n| n.load(Relaxed)).collect();
                let failed: Vec<(usize, u64)> = r
                    .failed
                    .iter()
                    .map(|n| n.load(Relaxed))
                    .enumerate()
                    .filter(|(_, n)| *n > 0)
                    .collect();
                (served, failed)
            })
        };
        assert_eq!(
            row("projects-service"),
            Some((vec![2, 1, 1], vec![(tonic::Code::Unavailable as usize, 1)]))
        );
        assert_eq!(row("auth-service"), Some((vec![1, 0, 0], vec![])));
        assert_eq!(
            row("other"),
            Some((vec![0, 0, 0], vec![(tonic::Code::NotFound as usize, 1)]))
        );
        assert_eq!(rows.len(), 3);
    }
}
