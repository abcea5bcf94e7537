//! projects-service: lists an org's Snyk projects through the Snyk REST API on an install's behalf.
//! Its HTTP API and error codes are described in `docs/api.md`.
//!
//! Reading order: `config` (typed settings, checked at start-up) → `startup` (the HTTP or HTTPS
//! server, `/metrics` on a side port when asked) → a request, top to bottom: `api` (routes, caller
//! key, input checks) → `listing` (paging, refresh on 401, retries, the cap on projects) →
//! `tokens` (token-service) and `snyk_rest` (Snyk); `error` is the one place that knows the error
//! body, `metrics` the one that counts. `traceparent` rides
//! along on every hop (service-runtime). `main.rs` is the thin binary (it serves, or
//! runs the `healthcheck` or `check-config` subcommand).

pub mod api;
pub mod config;
pub mod error;
pub mod listing;
pub mod metrics;
pub mod startup;
pub mod tokens;

pub use config::Settings;
pub use startup::Application;
