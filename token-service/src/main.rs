//! The `token-service` binary. `token-service` serves; `token-service reseal` re-seals every stored
//! grant with the primary encryption key and exits; `token-service healthcheck` asks the service
//! listening on `TOKEN_SERVICE_ADDR` for its gRPC health (exit code 0 when serving).

use std::process::ExitCode;

use service_runtime::{shutdown_signal, telemetry};
use token_service::{Application, Settings, reseal};

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        // Needs only the listen address: no settings, no Redis, no telemetry.
        let result = service_runtime::healthcheck::grpc(
            "TOKEN_SERVICE_ADDR",
            "0.0.0.0:50051",
            snykapps_proto::token_v1::token_service_server::SERVICE_NAME,
        )
        .await;
        return service_runtime::healthcheck::report("token-service", &result);
    }
    let telemetry = telemetry::init("token-service", "info");
    let code = match try_main().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "token-service failed");
            eprintln!("token-service: {e:#}");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
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
            anyhow::bail!(
                "unknown command {other:?}; use `serve` (default), `reseal` or `healthcheck`"
            )
        }
    }
}
