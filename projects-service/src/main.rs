//! The `projects-service` binary.

use std::process::ExitCode;

use projects_service::{Application, Settings};
use service_runtime::{init_logging, shutdown_signal};

#[tokio::main]
async fn main() -> ExitCode {
    init_logging("info");
    match try_main().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "projects-service failed");
            eprintln!("projects-service: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn try_main() -> anyhow::Result<()> {
    let app = Application::build(Settings::from_env()?)?;
    app.run_until_stopped(shutdown_signal()).await
}
