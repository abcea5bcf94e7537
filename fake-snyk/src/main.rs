//! The `fake-snyk` binary: serves the fake on `FAKE_SNYK_ADDR` (HTTPS with `FAKE_SNYK_TLS_CERT`
//! and `FAKE_SNYK_TLS_KEY`) until SIGINT or SIGTERM. `fake-snyk healthcheck` asks the fake
//! listening on `FAKE_SNYK_ADDR` for `/healthz` (exit code 0 on 200), for container healthchecks;
//! with `FAKE_SNYK_TLS_CERT` set it asks over HTTPS, trusting exactly that certificate. The
//! `/_fake/*` control endpoints are served only with `DEMO_MODE=true`.

use anyhow::Context as _;
use fake_snyk::{Config, FakeSnyk};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return healthcheck();
    }
    init_tracing();
    match try_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the whole context chain on one line.
            tracing::error!("fake-snyk failed: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `fake-snyk healthcheck`: needs only `FAKE_SNYK_ADDR` (and `FAKE_SNYK_TLS_CERT` when TLS is on);
/// says one line on stderr.
fn healthcheck() -> std::process::ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the Tokio runtime")
        .and_then(|runtime| {
            runtime.block_on(service_runtime::healthcheck::http_or_https(
                "FAKE_SNYK_ADDR",
                "127.0.0.1:8090",
                "/healthz",
                "FAKE_SNYK_TLS_CERT",
            ))
        });
    service_runtime::healthcheck::report("fake-snyk", &result)
}

fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: scripts and tests read the "ready" line.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A closed stderr (the reader went away) must not turn into a panic on the next log line.
        .log_internal_errors(false)
        .init();
}

fn try_main() -> anyhow::Result<()> {
    let (addr, config) = Config::from_env().context("invalid configuration")?;
    let control = config.control_endpoints;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the Tokio runtime")?;
    runtime.block_on(async move {
        let fake = FakeSnyk::bind(addr, config)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        tracing::info!(url = %fake.url(), control_endpoints = control, "fake Snyk ready");
        fake.run_until(service_runtime::shutdown_signal()?).await;
        Ok(())
    })
}
