//! The `token-service` binary. `token-service` serves; `token-service reseal` re-seals every stored
//! grant with the primary encryption key and exits.

use std::process::ExitCode;

use service_runtime::{init_logging, shutdown_signal};
use token_service::{Application, Settings, reseal};

#[tokio::main]
async fn main() -> ExitCode {
    init_logging("info");
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
                anyhow::bail!(
                    "{} record(s) could not be opened with any key in TOKEN_ENCRYPTION_KEYS",
                    report.unreadable
                );
            }
            Ok(())
        }
        Some(other) => {
            anyhow::bail!("unknown command {other:?}; use `serve` (default) or `reseal`")
        }
    }
}
