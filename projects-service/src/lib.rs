//! projects-service: lists an org's Snyk projects through the Snyk REST API on an install's behalf.
//!
//! A request reads top to bottom: `api` (routes, caller key, input checks) -> `listing` (paging,
//! refresh on 401, retries) -> `tokens` (token-service) and `snyk_rest` (Snyk); `error` is the one
//! place that knows the error body; `trace` carries `traceparent` along.

pub mod api;
pub mod config;
pub mod error;
pub mod listing;
pub mod startup;
pub mod tokens;
pub mod trace;

pub use config::Settings;
pub use startup::Application;
