//! What token-service did, counted twice on purpose: OpenTelemetry instruments (exported over
//! OTLP and at `/metrics`) and plain atomics that tests read as a [`Snapshot`] without any
//! exporter in the way.

use std::{
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use opentelemetry::{
    KeyValue, global,
    metrics::{Counter, Histogram},
};

use crate::grant::ReauthReason;

/// The OpenTelemetry instruments (no-ops until `service_runtime::telemetry::init` ran).
#[derive(Debug)]
struct Instruments {
    token_requests: Counter<u64>,
    refreshes: Counter<u64>,
    in_doubt: Counter<u64>,
    needs_reauth: Counter<u64>,
    lease_wait: Histogram<f64>,
    snyk_calls: Counter<u64>,
}

impl Default for Instruments {
    fn default() -> Self {
        let meter = global::meter("token-service");
        Instruments {
            token_requests: meter
                .u64_counter("snykapps.token.requests")
                .with_description("Access tokens handed out, by whether a refresh was needed (cache=hit: none)")
                .build(),
            refreshes: meter
                .u64_counter("snykapps.token.refreshes")
                .with_description("Refreshes at Snyk's token endpoint, by outcome")
                .build(),
            in_doubt: meter
                .u64_counter("snykapps.token.refresh_in_doubt")
                .with_description("Refreshes whose answer was lost or whose holder died mid-refresh (the token may be spent)")
                .build(),
            needs_reauth: meter
                .u64_counter("snykapps.installs.needs_reauth")
                .with_description("Installs moved to NEEDS_REAUTH, by reason")
                .build(),
            lease_wait: meter
                .f64_histogram("snykapps.token.refresh_lease_wait")
                .with_unit("s")
                .with_description("Time a replica waited for another replica's refresh lease")
                .with_boundaries(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
                .build(),
            snyk_calls: meter
                .u64_counter("snykapps.snyk.calls")
                .with_description("Calls to Snyk, by endpoint and HTTP status (or error)")
                .build(),
        }
    }
}

/// Process-wide counters (lock-free; read as a [`Snapshot`]).
#[derive(Debug, Default)]
pub struct Metrics {
    otel: Instruments,
    tokens_cached: AtomicU64,
    tokens_after_refresh: AtomicU64,
    refresh_ok: AtomicU64,
    refresh_invalid_grant: AtomicU64,
    refresh_in_doubt: AtomicU64,
    refresh_unavailable: AtomicU64,
    in_doubt_events: AtomicU64,
    needs_reauth_rejected: AtomicU64,
    needs_reauth_in_doubt: AtomicU64,
    lease_waits: AtomicU64,
    lease_wait_micros: AtomicU64,
}

/// A point-in-time copy of [`Metrics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
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
}

impl Metrics {
    pub fn token_served(&self, after_refresh: bool) {
        if after_refresh {
            &self.tokens_after_refresh
        } else {
            &self.tokens_cached
        }
        .fetch_add(1, Relaxed);
        let cache = if after_refresh { "miss" } else { "hit" };
        self.otel.token_requests.add(
            1,
            &[
                KeyValue::new("outcome", "ok"),
                KeyValue::new("cache", cache),
            ],
        );
    }

    /// A token request that ended in an error (the gRPC status code's name).
    pub fn token_failed(&self, code: String) {
        self.otel.token_requests.add(
            1,
            &[
                KeyValue::new("outcome", code),
                KeyValue::new("cache", "miss"),
            ],
        );
    }

    /// One call to Snyk: `endpoint` like "oauth2/token", `status` the HTTP status or "error".
    pub fn snyk_call(&self, endpoint: &'static str, status: String) {
        self.otel.snyk_calls.add(
            1,
            &[
                KeyValue::new("endpoint", endpoint),
                KeyValue::new("status", status),
            ],
        );
    }

    pub fn refresh(&self, outcome: &'static str) {
        match outcome {
            "ok" => &self.refresh_ok,
            "invalid_grant" => &self.refresh_invalid_grant,
            "in_doubt" => &self.refresh_in_doubt,
            _ => &self.refresh_unavailable,
        }
        .fetch_add(1, Relaxed);
        self.otel
            .refreshes
            .add(1, &[KeyValue::new("outcome", outcome)]);
    }

    pub fn in_doubt(&self) {
        self.in_doubt_events.fetch_add(1, Relaxed);
        self.otel.in_doubt.add(1, &[]);
    }

    pub fn needs_reauth(&self, reason: ReauthReason) {
        match reason {
            ReauthReason::RefreshTokenRejected => &self.needs_reauth_rejected,
            ReauthReason::RefreshInDoubt => &self.needs_reauth_in_doubt,
        }
        .fetch_add(1, Relaxed);
        self.otel
            .needs_reauth
            .add(1, &[KeyValue::new("reason", reason.as_str())]);
    }

    pub fn lease_waited(&self, d: Duration) {
        self.lease_waits.fetch_add(1, Relaxed);
        self.lease_wait_micros
            .fetch_add(d.as_micros() as u64, Relaxed);
        self.otel.lease_wait.record(d.as_secs_f64(), &[]);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            tokens_cached: self.tokens_cached.load(Relaxed),
            tokens_after_refresh: self.tokens_after_refresh.load(Relaxed),
            refresh_ok: self.refresh_ok.load(Relaxed),
            refresh_invalid_grant: self.refresh_invalid_grant.load(Relaxed),
            refresh_in_doubt: self.refresh_in_doubt.load(Relaxed),
            refresh_unavailable: self.refresh_unavailable.load(Relaxed),
            in_doubt_events: self.in_doubt_events.load(Relaxed),
            needs_reauth_rejected: self.needs_reauth_rejected.load(Relaxed),
            needs_reauth_in_doubt: self.needs_reauth_in_doubt.load(Relaxed),
            lease_waits: self.lease_waits.load(Relaxed),
            lease_wait_micros: self.lease_wait_micros.load(Relaxed),
        }
    }
}
