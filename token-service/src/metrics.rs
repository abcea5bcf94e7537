//! Counters of what token-service did, read by tests now and exported by the telemetry work later.

use std::{
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use crate::grant::ReauthReason;

/// Process-wide counters (lock-free; read as a [`Snapshot`]).
#[derive(Debug, Default)]
pub struct Metrics {
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
    }

    pub fn refresh(&self, outcome: &'static str) {
        match outcome {
            "ok" => &self.refresh_ok,
            "invalid_grant" => &self.refresh_invalid_grant,
            "in_doubt" => &self.refresh_in_doubt,
            _ => &self.refresh_unavailable,
        }
        .fetch_add(1, Relaxed);
    }

    pub fn in_doubt(&self) {
        self.in_doubt_events.fetch_add(1, Relaxed);
    }

    pub fn needs_reauth(&self, reason: ReauthReason) {
        match reason {
            ReauthReason::RefreshTokenRejected => &self.needs_reauth_rejected,
            ReauthReason::RefreshInDoubt => &self.needs_reauth_in_doubt,
        }
        .fetch_add(1, Relaxed);
    }

    pub fn lease_waited(&self, d: Duration) {
        self.lease_waits.fetch_add(1, Relaxed);
        self.lease_wait_micros
            .fetch_add(d.as_micros() as u64, Relaxed);
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
