//! The `auth-service` binary. `auth-service` serves; `auth-service healthcheck` asks the service
//! listening on `AUTH_SERVICE_ADDR` for `/readyz` (exit code 0 on 200);
//! `auth-service check-config` reads the settings as start-up does, prints them with secrets redacted
//! and exits 0, or 2 with the error start-up would give.

use std::process::ExitCode;

use auth_service::{Application, Settings};
use service_runtime::{shutdown_signal, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        // Needs only the listen address: no settings, no telemetry.
        let result =
            service_runtime::healthcheck::http("AUTH_SERVICE_ADDR", "0.0.0.0:8080", "/readyz")
                .await;
        return service_runtime::healthcheck::report("auth-service", &result);
    }
    if std::env::args().nth(1).as_deref() == Some("check-config") {
        // No telemetry: the output is for a person or a test, not for the log pipeline.
        return service_runtime::check_config::report("auth-service", Settings::from_env());
    }
    let telemetry = telemetry::init("auth-service", "info");
    let code = match try_main().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "auth-service failed");
            eprintln!("auth-service: {e:#}");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

async fn try_main() -> anyhow::Result<()> {
    let app = Application::build(Settings::from_env()?).await?;
    app.run_until_stopped(shutdown_signal()?).await
}
