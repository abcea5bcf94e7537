//! The `token-service` binary. `token-service` serves; `token-service reseal` re-seals every stored
//! grant with the primary encryption key and exits.

use std::process::ExitCode;

use token_service::{Application, Settings, reseal, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    telemetry::init("info,token_service=info");
    match try_main().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "token-service failed");
            eprintln!("token-service: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn try_main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let app = Application::build(settings).await?;
    match std::env::args().nth(1).as_deref() {
        None | Some("serve") => app.run_until_stopped(shutdown_signal()).await,
        Some("reseal") => {
            let report = reseal::reseal_all(app.store()).await?;
            tracing::info!(?report, "re-seal finished");
            if report.unreadable > 0 {
                anyhow::bail!("{} record(s) could not be opened with any key in TOKEN_ENCRYPTION_KEYS", report.unreadable);
            }
            Ok(())
        }
        Some(other) => anyhow::bail!("unknown command {other:?}; use `serve` (default) or `reseal`"),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
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
}
