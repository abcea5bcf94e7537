//! The kit the system tests in `system/` (and the container tests in `compose/`) are written
//! with: a private Redis, the fake Snyk and any number of real token-service replicas (their
//! `Application`s, on port 0), projects-service and auth-service over them, and typed clients.
//! (Test scaffolding: `Debug` would add nothing here.)
//!
//! Reading order:
//! - [`stack`]: [`Stack`] (Redis + the fake, shared by the services a test starts), token-service
//!   [`Replica`]s and [`ProjectsService`]s in process;
//! - [`auth_stack`]: [`AuthStack`], the whole system behind a browser, and the install as a
//!   browser walks it;
//! - [`http_browser`]: [`Browser`], the browser-like HTTP client (cookies, no redirects followed);
//! - [`browser`]: a real browser, headless Chromium driven by chromedriver;
//! - [`token_client`]: token-service's gRPC API as the tests call it;
//! - [`fake`]: the fake Snyk's configuration and controls;
//! - [`redis_servers`]: the Redis servers as compose runs them, and readers of what they hold;
//! - [`process`]: the real binaries as child processes.
//!
//! Every module's items are re-exported here, so a test file starts with `use system_tests::*;`.
//! The constants below are the credentials every stack is wired with.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_debug_implementations
)]

pub mod auth_stack;
pub mod browser;
pub mod fake;
pub mod http_browser;
pub mod process;
pub mod redis_servers;
pub mod stack;
pub mod token_client;

pub use auth_stack::*;
pub use fake::*;
pub use http_browser::*;
pub use redis_servers::*;
pub use stack::*;
pub use test_support::{Certificates, certificates, certificates_for};
pub use token_client::*;

/// The app registered at the fake (its client id, secret and redirect URI).
pub const CLIENT_ID: &str = "test-client-id";
pub const CLIENT_SECRET: &str = "test-client-secret";
pub const REDIRECT_URI: &str = "http://localhost:8080/callback";
/// The key of the tests' own token-service caller, `ops`: granted every RPC, because the tests
/// install, inspect and delete installs as an operator would. The real services get their real
/// grants ([`PROJECTS_TOKEN_KEY`], [`AUTH_TOKEN_KEY`]).
pub const CALLER_KEY: &str = "ops-test-caller-key-0123456789";
/// The key projects-service presents to token-service (granted [`PROJECTS_SERVICE_RPCS`]).
pub const PROJECTS_TOKEN_KEY: &str = "projects-service-key-0123456789";
/// What projects-service may call on token-service (as in docker-compose.yml).
pub const PROJECTS_SERVICE_RPCS: &str = "GetAccessToken+ForceRefresh+AcquireSnykPermit";
/// What auth-service may call on token-service (as in docker-compose.yml).
pub const AUTH_SERVICE_RPCS: &str = "CompleteInstall+GetInstall+DeleteInstall";
/// token-service's encryption keys: `K1` seals, `K2` is the one a rotation adds.
pub const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
/// The key auth-service presents to projects-service.
pub const PROJECTS_KEY: &str = "auth-service-key-0123456789abcdef";
/// The tests' own caller of projects-service (`tests`): the only one granted the org route.
pub const PROJECTS_OPS_KEY: &str = "tests-ops-projects-key-0123456789";
/// The key auth-service presents to token-service.
pub const AUTH_TOKEN_KEY: &str = "auth-service-token-key-0123456789";
/// `AUTH_COOKIE_KEY` of the test auth-services: the 64 bytes 0..=63, base64.
pub const AUTH_COOKIE_KEY: &str =
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==";
