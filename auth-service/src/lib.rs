//! auth-service: the browser side of the Snyk App install.
//!
//! A request reads top to bottom: `startup` (server, middleware, the `/metrics` side port) →
//! `rate_limit` (`/auth` per client) → `routes` (one module per page group) → `security`
//! (headers, same-origin posts) → `state` / `session` (what the browser and Redis remember) →
//! `token_client` / `projects_client` (the services behind us) → `templates` (the HTML) and
//! `error` (the one place that turns failures into pages).

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
