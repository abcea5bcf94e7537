//! token-service: the only holder of the Snyk client secret and of tokens.
//!
//! A request reads top to bottom through these modules: `caller` (who is calling) -> `service`
//! (the RPCs) -> `refresh` (when Snyk is called) -> `store` (Redis records, lease, fenced writes)
//! -> `seal` (AEAD keyring); `snyk` is the token-endpoint client, `grant` the domain, `error` the
//! one mapping to gRPC statuses.

pub mod caller;
pub mod config;
pub mod error;
pub mod grant;
pub mod keepalive;
pub mod metrics;
pub mod refresh;
pub mod reseal;
pub mod seal;
pub mod service;
pub mod snyk;
pub mod startup;
pub mod store;

pub use config::Settings;
pub use startup::Application;
