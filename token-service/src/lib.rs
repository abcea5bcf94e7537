//! token-service: the only holder of the Snyk client secret and of tokens. It serves the
//! TokenService gRPC API to the other services and keeps every install's grant, sealed, in Redis.
//!
//! Reading order, every module once:
//! - **Start-up**: `main` (the binary: serve, or one of the operator commands below), `config`
//!   (typed settings, validated at start-up), `startup` (builds the server and runs it).
//! - **A request, top to bottom**: `decode_status` (undecodable bytes are the caller's fault) ->
//!   `rpc_duration` (each call's duration) -> `caller` (who is calling, and what they may call) ->
//!   `service` (the RPCs: parse, call the domain, map the result; `page_token` and `convert` to
//!   and from the wire; `audit`: an entry per call, token hand-outs counted) -> `refresh` (when
//!   Snyk is called; the grant `cache` answers first) or `install` (a new install or a
//!   reconnect: the code exchanged, the orgs listed, the grant created or replaced) -> `store`
//!   (Redis: records, the lease, fenced writes, indexes, events; `store::tracking` keeps the
//!   cache coherent) -> `seal` (the AEAD keyring). `budget` (each install's Snyk request budget,
//!   shared by every replica) gives a permit before every Snyk REST request: the org listing's,
//!   and projects-service's through `AcquireSnykPermit`.
//! - **The domain**, which depends on nothing above it: `grant` (ids, the grant, its status, the
//!   rules for when it needs a refresh, the token pair) and `events` (lifecycle events as values).
//! - **Beside the request**: `snyk` (the client of Snyk's token, revoke and org endpoints;
//!   `client_secret`: which of the app's secrets it sends), `keepalive` (the sweeper that
//!   refreshes idle installs), `watch` (follows the event stream for `WatchInstallEvents`),
//!   `metrics` (what happened, counted), `error` (the one mapping to gRPC statuses), `backoff`
//!   (the one way to wait before trying again).
//! - **Operator commands**: `ops` (`installs …` and `events tail`, a gRPC client of a running
//!   service), `reseal` (every grant sealed again with the primary key), `certs` (the internal CA
//!   and certificates).

pub mod audit;
pub mod backoff;
pub mod budget;
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
pub mod install;
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
