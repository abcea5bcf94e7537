//! What every service binary does the same way: telemetry set-up (logs, traces, metrics) and the
//! shutdown signal (SIGINT or SIGTERM).

pub mod config;
pub mod grpc;
pub mod healthcheck;
pub mod telemetry;

#[cfg(feature = "actix")]
pub mod http;

/// Logging and tracing without a flush at exit. Prefer [`telemetry::init`] and keep its handle;
/// this remains for binaries not yet moved over.
pub fn init_logging(default_filter: &str) {
    let name = std::env::args()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "service".into());
    std::mem::forget(telemetry::init(&name, default_filter));
}

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
