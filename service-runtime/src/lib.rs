//! What every service binary does the same way, so that each service's own code is only its
//! domain: reading and checking settings, demo mode, telemetry and metrics, the hops to our own
//! services and to Redis, certificates, the `healthcheck` and `check-config` subcommands, and the
//! shutdown signal.
//!
//! Reading order:
//! 1. [`config`]: settings from the environment (and `<NAME>_FILE` files), each error naming its
//!    variable; [`demo`]: the published demo values and where demo mode may run;
//!    [`check_config`]: the subcommand that judges settings exactly as start-up does.
//! 2. [`telemetry`]: logs, traces and metrics (OTLP and Prometheus text), `traceparent` on every
//!    hop; [`process_metrics`]: the standard `process_*` series; `http` (feature `actix`): what
//!    the actix-web services share (request metrics, `/metrics`, readiness while draining).
//! 3. [`internal`]: when a hop to our own services may be plain text and which CA it trusts;
//!    [`tls`]: PEM certificates (extra Snyk roots, a server's chain and key); [`grpc`]: the channel
//!    to token-service's replicas; `redis` (feature `redis`): every Redis connection.
//! 4. [`healthcheck`]: the subcommand container healthchecks run; [`shutdown_signal`]: SIGINT or
//!    SIGTERM, for every binary's graceful stop; [`retry_after_seconds`]: a wait as every
//!    service's `Retry-After`.

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

/// A wait as a `Retry-After` value (an HTTP header, or gRPC metadata of the same name): whole
/// seconds rounded up, so a client that waits that long gets through, and at least 1, since
/// `Retry-After: 0` invites a busy loop.
pub fn retry_after_seconds(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Installs the handlers of SIGINT (Ctrl-C) and SIGTERM (what `docker stop` and Kubernetes send)
/// and returns what resolves on the first of them: every binary's stop request.
///
/// A handler that cannot be installed is an error, for the binary to report before it serves:
/// started without it, the binary would be killed mid-request by the next stop instead of
/// draining, and nobody would learn why until then. Nor is a failed handler ever taken as the
/// signal itself, which would stop a healthy process at once. Both are installed here, before
/// the returned future is first polled, so neither failure can surface later.
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    use anyhow::Context as _;
    #[cfg(unix)]
    let (mut interrupt, mut terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind| signal(kind).context("cannot install the SIGINT and SIGTERM handlers");
        (
            install(SignalKind::interrupt())?,
            install(SignalKind::terminate())?,
        )
    };
    #[cfg(windows)]
    let mut interrupt =
        tokio::signal::windows::ctrl_c().context("cannot install the Ctrl-C handler")?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        #[cfg(windows)]
        interrupt.recv().await;
        tracing::info!("shutdown signal received");
    })
}

#[cfg(all(test, unix))]
mod tests {
    #[test]
    fn a_retry_after_is_whole_seconds_rounded_up_and_never_zero() {
        use std::time::Duration;
        assert_eq!(super::retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(super::retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(super::retry_after_seconds(Duration::from_secs(2)), 2);
        assert_eq!(super::retry_after_seconds(Duration::from_millis(2001)), 3);
    }

    use std::time::Duration;

    /// The handlers are in place when `shutdown_signal` returns: a SIGTERM that comes before the
    /// future is first polled is not lost, and does not kill the process either.
    #[tokio::test]
    async fn a_sigterm_before_the_first_poll_resolves_the_signal() {
        let signal = super::shutdown_signal().expect("the handlers install");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(10), signal)
            .await
            .expect("SIGTERM resolves the shutdown signal");
    }
}
