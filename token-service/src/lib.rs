//! token-service: the only holder of the Snyk client secret and of tokens.
//!
//! A request reads top to bottom through these modules: `decode_status` (undecodable bytes are
//! the caller's fault) -> `caller` (who is calling) -> `service` (the RPCs; `page_token` and
//! `convert` to and from the wire) -> `refresh` (when Snyk is called; the grant `cache` answers
//! first) -> `store` (Redis records, lease, fenced writes; `store::tracking` keeps the cache
//! coherent) -> `seal` (AEAD keyring); `snyk` is the token-endpoint client (`client_secret`: which
//! of the app's secrets it sends), `grant` the domain,
//! `error` the one mapping to gRPC statuses, `backoff` the one way to wait before trying again.

pub mod audit;
pub mod backoff;
pub mod cache;
pub mod caller;
pub mod certs;
pub mod client_secret;
pub mod config;
pub mod convert;
pub mod decode_status;
pub mod error;
pub mod events;
pub mod grant;
pub mod keepalive;
pub mod metrics;
pub mod ops;
pub mod page_token;
pub mod refresh;
pub mod reseal;
pub mod rpc_duration;
pub mod seal;
pub mod service;
pub mod snyk;
pub mod startup;
pub mod store;
pub mod watch;

pub use config::Settings;
pub use startup::Application;
