//! The keep-alive sweeper: refreshes installs nobody calls before their refresh token expires.
//!
//! Snyk's refresh tokens live about 180 days and a refresh "must be done while the refresh_token
//! itself is still valid". Every replica sweeps every `TOKEN_KEEPALIVE_INTERVAL_SECONDS`
//! (jittered): it reads the installs whose refresh token expires within
//! `TOKEN_KEEPALIVE_MARGIN_SECONDS` from the keep-alive index (a sorted set by refresh expiry that
//! every commit keeps up to date, so no sweep reads every record) and refreshes each through the
//! refresher's single flight and lease: N replicas sweeping still make one refresh per install.
//! A sweep also retries the installs this replica left with its own "sending" mark, which only it
//! may resolve, and sets the "shortest remaining refresh-token life" gauge.

use std::{sync::Arc, time::Duration};

use futures::StreamExt as _;

use crate::{
    backoff::Backoff,
    error::Error,
    grant::{InstallId, now_millis},
    metrics::{KeepAliveOutcome, Metrics},
    refresh::Refresher,
    store::Store,
};

/// Installs read per sweep; the rest wait for the next sweep (soonest expiry first).
const BATCH: usize = 500;
/// Refreshes in flight at once per sweeping replica.
const CONCURRENCY: usize = 8;

#[derive(Debug, Clone)]
pub struct KeepAliveSettings {
    /// Refresh when the refresh token has less life than this left (capped at half its lifetime).
    pub margin: Duration,
    /// Time between sweeps (each jittered by up to a fifth either way).
    pub interval: Duration,
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    pub due: usize,
    pub refreshed: usize,
    pub own_doubts_retried: usize,
}

#[derive(Debug, Clone)]
pub struct KeepAlive {
    store: Store,
    refresher: Arc<Refresher>,
    metrics: Arc<Metrics>,
    settings: KeepAliveSettings,
}

impl KeepAlive {
    pub fn new(
        store: Store,
        refresher: Arc<Refresher>,
        metrics: Arc<Metrics>,
        settings: KeepAliveSettings,
    ) -> Self {
        KeepAlive {
            store,
            refresher,
            metrics,
            settings,
        }
    }

    /// Sweeps until `shutdown` resolves; a sweep in progress is dropped at shutdown (every refresh
    /// it started runs on as a detached flight, which the refresher drains).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        // A fifth either way, so replicas started together do not sweep together.
        let pause = Backoff::constant(self.settings.interval).jitter(80, 120);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(pause.delay(0)) => {}
            }
            tokio::select! {
                () = &mut shutdown => return,
                report = self.sweep() => {
                    if report.due > 0 || report.own_doubts_retried > 0 {
                        tracing::info!(due = report.due, refreshed = report.refreshed, own_doubts = report.own_doubts_retried, "keep-alive sweep");
                    }
                }
            }
        }
    }

    /// One sweep: every due install, once.
    pub async fn sweep(&self) -> SweepReport {
        let mut report = SweepReport {
            own_doubts_retried: self.refresher.resolve_own_doubts().await,
            ..SweepReport::default()
        };
        let now = now_millis();
        match self.store.earliest_refresh_expiry().await {
            Ok(at) => self
                .metrics
                .set_min_refresh_remaining(at.map(|at| (at - now) / 1000)),
            Err(e) => tracing::warn!(error = %e, "keep-alive: cannot read the index"),
        }
        let until = now.saturating_add(self.settings.margin.as_millis() as i64);
        let due = match self.store.keepalive_due(until, BATCH).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "keep-alive: cannot read the index");
                return report;
            }
        };
        report.due = due.len();
        let outcomes: Vec<KeepAliveOutcome> = futures::stream::iter(due)
            .map(|id| self.keep_alive(id))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for outcome in outcomes {
            self.metrics.keepalive(outcome);
            if outcome == KeepAliveOutcome::Refreshed {
                report.refreshed += 1;
            }
        }
        report
    }

    async fn keep_alive(&self, id: InstallId) -> KeepAliveOutcome {
        let margin = self.settings.margin;
        let v = match self.store.load(&id).await {
            Ok(Some(v)) => v,
            Ok(None) => {
                // The grant is gone; its entry lagged.
                let _ = self.store.unindex_keepalive(&id).await;
                return KeepAliveOutcome::NotDue;
            }
            Err(e) => {
                tracing::warn!(install_id = %id, error = %e, "keep-alive: cannot read the grant");
                return KeepAliveOutcome::Unavailable;
            }
        };
        if !v.grant.is_active() || !v.grant.keepalive_due(margin, now_millis()) {
            // The entry lagged its grant (or the margin is capped for this grant): put it right.
            let _ = self.store.index_keepalive(&v.grant).await;
            return KeepAliveOutcome::NotDue;
        }
        let in_doubt = self.refresher.settings().in_doubt.as_millis() as i64;
        if v.sending
            .as_ref()
            .is_some_and(|m| now_millis().saturating_sub(m.at) < in_doubt)
        {
            // A request is out (here or on another replica); its outcome re-indexes the install.
            // An older mark goes through the refresher, which declares the install in doubt.
            return KeepAliveOutcome::InProgress;
        }
        match self.refresher.keep_alive(id, margin).await {
            Ok(_) => KeepAliveOutcome::Refreshed,
            Err(Error::NeedsReauth(..)) => KeepAliveOutcome::NeedsReauth,
            Err(Error::UnknownInstall(_)) => KeepAliveOutcome::NotDue,
            Err(e) => {
                tracing::warn!(install_id = %id, error = %e, "keep-alive refresh failed; retrying next sweep");
                KeepAliveOutcome::Unavailable
            }
        }
    }
}
