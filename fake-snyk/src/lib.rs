//! A strict, in-memory stand-in for Snyk's OAuth2 and REST API, for tests (in-process, port 0),
//! benchmarks and the local browser demo.
//!
//! One HTTP server (HTTPS with [`Config::tls`]) plays both Snyk hosts: the app host's consent
//! page (`/oauth2/authorize`) and the API host (`/oauth2/token`, `/oauth2/revoke`, `/rest/...`),
//! plus `/healthz` and the `/_fake/...` control endpoints (on in the library; the binary serves
//! them only in demo mode). It follows `docs/snyk-api.md` and Snyk's REST OpenAPI document
//! (`docs/snyk-openapi/`), and is strict where a client could get away with sloppiness against a
//! lenient double: refresh tokens are single use and a replay revokes the grant, PKCE S256 is
//! mandatory, redirect URIs match exactly.
//!
//! Reading order: `config` (the registered client, lifetimes, seeded orgs) and `catalog` (the
//! orgs and generated projects) → `server` (the accept loop and the [`FakeSnyk`] handle) with
//! `tls` → `app` (shared state, the routes) → the two hosts: `authorize` (the consent page) on the
//! app host; `token` (code exchange, refresh, revoke), `rest` (`/rest/...`), `version` (the
//! `version` parameter) and `pagination` (cursors, `links`) on the API host → what they share:
//! `store` (codes, grants, tokens), `pkce`, `secrets` (the client's two secrets) and `error` (every
//! error body) → what tests and benchmarks drive: `faults` ([`Fault`]), `ratelimit` (the
//! per-token REST rate limit), `stats` (counters) and `control` (the `/_fake/*` endpoints).
//!
//! Its consent page is read, as a browser reads it, by the `fake-snyk-consent` crate beside it
//! (`fake-snyk/consent`): the system tests, loadgen and this crate's own tests use that one reader.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use fake_snyk::{Config, FakeSnyk, Fault};
//! let fake = FakeSnyk::start(Config::new("id", "secret", "http://localhost:8080/callback")).await?;
//! let api_and_app_base_url = fake.url(); // http://127.0.0.1:PORT
//! fake.inject(Fault::LoseRefreshResponses(1));
//! // ... point the client under test at `api_and_app_base_url` ...
//! fake.shutdown().await;
//! # Ok(()) }
//! ```

mod app;
mod authorize;
mod catalog;
mod config;
mod control;
mod error;
mod faults;
mod pagination;
mod pkce;
mod ratelimit;
mod rest;
mod secrets;
mod server;
mod stats;
mod store;
mod tls;
mod token;
mod version;

pub use authorize::AuthorizeError;
pub use catalog::{AddOrgsError, MAX_ORGS};
pub use config::{
    Config, ConfigError, DEFAULT_ACCESS_TOKEN_TTL, DEFAULT_CODE_TTL, DEFAULT_REFRESH_TOKEN_TTL,
    DEFAULT_SCOPE, OrgSeed,
};
pub use faults::Fault;
pub use secrets::{ClientSecretError, MAX_CLIENT_SECRETS, SecretChange};
pub use server::FakeSnyk;
pub use stats::Stats;
pub use tls::TlsIdentity;
