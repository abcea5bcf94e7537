//! auth-service: the browser side of the Snyk App install. It runs OAuth2 with PKCE S256 towards
//! Snyk, hands the code to token-service, and shows an install's orgs and projects through
//! projects-service; it holds no client secret and never sees a refresh token. Its routes are
//! described in `docs/api.md`, its state and cookies in `auth-service/README.md`.
//!
//! Reading order: `config` (typed settings, checked at start-up) → `startup` (the server, its
//! middleware and the `/metrics` side port) with `telemetry` (each request's root span) → a
//! request, top to bottom: `rate_limit` (`/auth` per client) → `routes` (one module per page
//! group) → `security` (headers, same-origin posts) → `state` / `session` (what Redis and the
//! browser remember) with `pkce` (verifier and challenge) → `token_client` / `projects_client`
//! (the services behind us) → `templates` (the HTML) and `error` (the one place that turns
//! failures into pages). `main.rs` is the thin binary (it serves, or runs the `healthcheck` or
//! `check-config` subcommand).

pub mod config;
pub mod error;
pub mod pkce;
pub mod projects_client;
pub mod rate_limit;
pub mod routes;
pub mod security;
pub mod session;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod templates;
pub mod token_client;

pub use config::Settings;
pub use startup::Application;
