//! Counters of what clients did to the fake, for tests and benchmarks to assert on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A snapshot of the fake's counters (also served as JSON by `GET /_fake/stats`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stats {
    /// Token-endpoint requests by `grant_type` as sent (`"missing"` when absent or unreadable).
    pub token_calls: BTreeMap<String, u64>,
    /// Refresh grants whose rotation was applied (including those whose answer was then lost).
    pub successful_refreshes: u64,
    /// Refresh tokens presented after they had already been redeemed (each one revoked its grant).
    pub spent_refresh_token_reuses: u64,
    /// Authorization codes successfully exchanged for tokens.
    pub codes_exchanged: u64,
    /// Revoke requests accepted (client authenticated), whether the token was known or not.
    pub revocations: u64,
    /// Token and revoke requests refused with `invalid_client` (a wrong, deleted or missing
    /// secret), before any code or refresh token was looked at.
    #[serde(default)]
    pub client_authentication_failures: u64,
    /// Responses deliberately dropped by [`crate::Fault::LoseRefreshResponses`].
    pub lost_responses: u64,
    /// REST (`/rest/*`) responses by HTTP status.
    pub rest_calls: BTreeMap<u16, u64>,
    /// REST requests by endpoint: `"orgs"`, `"projects"`, `"self"`.
    pub rest_calls_by_path: BTreeMap<String, u64>,
    /// REST requests refused with 429 by the per-token rate limit
    /// ([`crate::Config::rate_limit_per_minute`], [`crate::Fault::RateLimitPerMinute`]); injected
    /// 429s are not counted here (both are in `rest_calls`).
    #[serde(default)]
    pub rate_limited: u64,
    /// Of those, the 429s that came after the `Retry-After` of the same token's previous 429:
    /// each opens a pause. A client whose replicas share what a 429 says gets about one 429 per
    /// replica per pause.
    #[serde(default)]
    pub rate_limit_pauses: u64,
    /// The most `/rest/*` requests being answered at once, from arrival to answer (an injected
    /// latency included): how many a client had in flight together.
    #[serde(default)]
    pub rest_in_flight_max: u64,
    /// The `Retry-After` of those refusals, in seconds: how many were sent with each value
    /// (what a benchmark needs to count the windows within which a client should have waited).
    #[serde(default)]
    pub rate_limited_retry_after: BTreeMap<u32, u64>,
}

impl Stats {
    pub(crate) fn count_token_call(&mut self, grant_type: &str) {
        *self.token_calls.entry(grant_type.to_owned()).or_default() += 1;
    }

    pub(crate) fn count_rest_call(&mut self, status: u16, path: Option<&str>) {
        *self.rest_calls.entry(status).or_default() += 1;
        if let Some(path) = path {
            *self.rest_calls_by_path.entry(path.to_owned()).or_default() += 1;
        }
    }
}
