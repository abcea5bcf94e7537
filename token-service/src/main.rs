//! The `token-service` binary. `token-service` serves; `token-service reseal` re-seals every stored
//! grant with the primary encryption key and exits; `token-service healthcheck` asks the service
//! listening on `TOKEN_SERVICE_ADDR` for its gRPC health (exit code 0 when serving);
//! `token-service installs …` and `token-service events tail` are the operator tools, a gRPC
//! client of a running token-service (`token_service::ops`); `token-service check-config` reads the
//! settings as start-up does, prints them with secrets redacted and exits 0, or 2 with the error
//! start-up would give; `token-service certs` makes or renews the internal CA and the services'
//! certificates in a folder (`token_service::certs`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use service_runtime::{config::Env, shutdown_signal, telemetry};
use token_service::{Application, Settings, certs, ops, reseal};

/// The command line. Parsed before anything else is read, so `--help` and a mistyped command
/// need no configuration (a usage error exits with 2).
#[derive(Debug, Parser)]
#[command(
    name = "token-service",
    version,
    about = "The only holder of the Snyk client secret and tokens (gRPC), and its operator tools."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve gRPC on TOKEN_SERVICE_ADDR (the default when no command is given).
    Serve,
    /// Re-seal every stored grant with the first key of TOKEN_ENCRYPTION_KEYS, then exit.
    Reseal,
    /// Ask the token-service on TOKEN_SERVICE_ADDR for its gRPC health (exit code 0: serving).
    Healthcheck,
    /// Read and validate the settings as start-up does, without the network; print them with
    /// secrets redacted (exit code 0: it would start, 2: it would not, and why).
    CheckConfig,
    /// List, show and delete installs (through a running token-service's gRPC API).
    Installs(ops::InstallsArgs),
    /// Follow the installs' lifecycle events (WatchInstallEvents).
    Events(ops::EventsArgs),
    /// Make or renew a private CA and a TLS certificate per internal service, then exit
    /// (compose's real mode runs it at every start).
    Certs(certs::CertsArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    // Before the command line is parsed: what a container healthcheck runs every few seconds
    // stays exactly as it was, whatever follows it.
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return healthcheck().await;
    }
    let command = Cli::parse().command.unwrap_or(Command::Serve);
    let command = match command {
        // The operator tools are a client: none of the service's secrets, no Redis, no
        // telemetry (their output is for a person or a script, not for the log pipeline).
        Command::Installs(args) => return ops::installs(args, &Env::process()).await,
        Command::Events(args) => return ops::events(args, &Env::process()).await,
        // Files only: no settings, no Redis, no telemetry.
        Command::Certs(args) => return certs::main(&args),
        Command::Serve => Run::Serve,
        Command::Reseal => Run::Reseal,
        Command::Healthcheck => return healthcheck().await,
        Command::CheckConfig => {
            return service_runtime::check_config::report("token-service", Settings::from_env());
        }
    };
    let telemetry = telemetry::init("token-service", "info");
    let code = match try_main(command).await {
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

/// What the service itself does: serve, or re-seal and exit.
enum Run {
    Serve,
    Reseal,
}

/// Needs only the listen address: no settings, no Redis, no telemetry.
async fn healthcheck() -> ExitCode {
    let result = service_runtime::healthcheck::grpc(
        token_service::config::ADDR_VAR,
        token_service::config::DEFAULT_ADDR,
        snykapps_proto::token_service::SERVICE_NAME,
    )
    .await;
    service_runtime::healthcheck::report("token-service", &result)
}

async fn try_main(command: Run) -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let app = Application::build(settings).await?;
    match command {
        Run::Serve => app.run_until_stopped(shutdown_signal()?).await,
        Run::Reseal => {
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
    }
}
