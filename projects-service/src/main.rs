//! The `projects-service` binary. `projects-service` serves; `projects-service healthcheck` asks the
//! service listening on `PROJECTS_SERVICE_ADDR` for `/readyz` (exit code 0 on 200), over HTTPS
//! when `PROJECTS_SERVICE_TLS_CERT` is set; `projects-service check-config` reads the settings as
//! start-up does, prints them with secrets redacted and exits 0, or 2 with the error start-up
//! would give.

use std::process::ExitCode;

use projects_service::{Application, Settings};
use service_runtime::{shutdown_signal, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        // Needs only the listen address (and, over HTTPS, the certificate it pins): no
        // settings, no telemetry.
        let result = service_runtime::healthcheck::http_or_https(
            "PROJECTS_SERVICE_ADDR",
            "0.0.0.0:8081",
            "/readyz",
            projects_service::config::TLS_CERT_VAR,
        )
        .await;
        return service_runtime::healthcheck::report("projects-service", &result);
    }
    if std::env::args().nth(1).as_deref() == Some("check-config") {
        // No telemetry: the output is for a person or a test, not for the log pipeline.
        return service_runtime::check_config::report("projects-service", Settings::from_env());
    }
    let telemetry = telemetry::init("projects-service", "info");
    let code = match try_main().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "projects-service failed");
            eprintln!("projects-service: {e:#}");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

async fn try_main() -> anyhow::Result<()> {
    let app = Application::build(Settings::from_env()?)?;
    app.run_until_stopped(shutdown_signal()?).await
}
