//! What every service binary does the same way: telemetry set-up (logs, traces, metrics) and the
//! shutdown signal (SIGINT or SIGTERM).

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
