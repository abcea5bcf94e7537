//! What every service binary does the same way, so that each service's own code is only its
//! domain: reading and checking settings, demo mode, telemetry and metrics, the hops to our own
//! services and to Redis, certificates, the `healthcheck` and `check-config` subcommands, and the
//! shutdown signal.
//!
//! Reading order:
//! 1. [`config`]: settings from the environment (and `<NAME>_FILE` files), each error naming its
//!    variable; [`demo`]: the published demo values and where demo mode may run;
//!    [`check_config`]: the subcommand that judges settings exactly as start-up does.
//! 2. [`telemetry`]: logs, traces and metrics (OTLP and Prometheus text), `traceparent` on every
//!    hop; [`process_metrics`]: the standard `process_*` series; `http` (feature `actix`): what
//!    the actix-web services share (request metrics, `/metrics`, readiness while draining).
//! 3. [`internal`]: when a hop to our own services may be plain text and which CA it trusts;
//!    [`tls`]: PEM certificates (extra Snyk roots, a server's chain and key); [`grpc`]: the channel
//!    to token-service's replicas; `redis` (feature `redis`): every Redis connection.
//! 4. [`healthcheck`]: the subcommand container healthchecks run; [`shutdown_signal`]: SIGINT or
//!    SIGTERM, for every binary's graceful stop.

pub mod check_config;
pub mod config;
pub mod demo;
pub mod grpc;
pub mod healthcheck;
pub mod internal;
pub mod process_metrics;
#[cfg(feature = "redis")]
pub mod redis;
pub mod telemetry;
pub mod tls;

#[cfg(feature = "actix")]
pub mod http;

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutdown signal received");
}
