//! Builds the HTTP server (and its `/metrics` side port) from settings and runs it until a
//! shutdown future resolves (zero2prod's `Application`, mini-redis's passed-in shutdown).
//!
//! `/metrics` has a listener of its own (`AUTH_SERVICE_METRICS_ADDR`) because the main port is
//! the public one: whoever can reach the landing page must not read our counters.

use std::{future::Future, net::SocketAddr, time::Duration};

use actix_web::{App, HttpServer, middleware::from_fn, web};
use anyhow::Context;
use service_runtime::internal::InternalCa;
use tracing_actix_web::TracingLogger;

use crate::{
    config::Settings,
    projects_client::ProjectsClient,
    rate_limit::AuthRateLimiter,
    routes::{AppState, oauth::OAuthClient, routes},
    security,
    session::Cookies,
    state::StateStore,
    telemetry::PathOnlyRootSpan,
    token_client::TokenClient,
};

/// Connect and response timeout of Redis.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a graceful stop waits for in-flight requests.
const SHUTDOWN_TIMEOUT_SECS: u64 = 30;

/// A built auth-service, bound to its port and connected to Redis, not yet serving.
#[derive(Debug)]
pub struct Application {
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
    metrics_listener: std::net::TcpListener,
    metrics_addr: SocketAddr,
    state: AppState,
    csp: String,
    hsts: bool,
    drain: Duration,
}

impl Application {
    /// Connects to Redis (failing fast with a clear message), prepares the clients of
    /// token-service and projects-service (lazily connected) and binds `AUTH_SERVICE_ADDR` and
    /// `AUTH_SERVICE_METRICS_ADDR`.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let states = StateStore::connect(&settings.redis, REDIS_TIMEOUT)
            .await
            .with_context(|| {
                format!(
                    "cannot connect to Redis ({}: {})",
                    settings.redis_var, settings.redis
                )
            })?;
        let tokens = TokenClient::new(
            &settings.token_service_urls,
            settings.token_service_ca.as_ref().map(InternalCa::pem),
            &settings.token_service_api_key,
            settings.token_service_timeout,
        )?;
        let projects = ProjectsClient::new(
            settings.projects_service_url.clone(),
            settings.projects_service_ca.as_ref(),
            settings.projects_service_api_key.clone(),
            settings.projects_service_timeout,
        )?;
        settings.internal_hops.warn_plaintext();
        settings.redis.warn_plaintext();
        let state = AppState {
            oauth: OAuthClient::new(&settings),
            states,
            tokens,
            projects,
            cookies: Cookies::new(
                settings.cookie_keys.sealing().clone(),
                settings.cookie_keys.all().split_off(1),
                settings.secure_cookies(),
                settings.session_ttl,
            ),
            limiter: AuthRateLimiter::new(
                settings.auth_rate_limit_per_minute,
                settings.trust_x_forwarded_for,
            ),
            public_origin: settings.public_origin(),
            draining: service_runtime::http::Draining::default(),
        };
        let listener = std::net::TcpListener::bind(settings.addr)
            .with_context(|| format!("cannot listen on AUTH_SERVICE_ADDR {}", settings.addr))?;
        let local_addr = listener.local_addr()?;
        let metrics_listener =
            std::net::TcpListener::bind(settings.metrics_addr).with_context(|| {
                format!(
                    "cannot listen on AUTH_SERVICE_METRICS_ADDR {}",
                    settings.metrics_addr
                )
            })?;
        let metrics_addr = metrics_listener.local_addr()?;
        let csp = security::content_security_policy(state.snyk_app_url());
        Ok(Application {
            listener,
            local_addr,
            metrics_listener,
            metrics_addr,
            state,
            csp,
            hsts: settings.secure_cookies(),
            drain: settings.shutdown_drain,
        })
    }

    /// Where `/metrics` is served.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let draining = self.state.draining.clone();
        let cleanup = tokio::spawn(self.state.limiter.clone().run_cleanup());
        let state = web::Data::new(self.state);
        let (csp, hsts) = (self.csp, self.hsts);
        let metrics = HttpServer::new(|| {
            App::new().route("/metrics", web::get().to(service_runtime::http::metrics))
        })
        .workers(1)
        .disable_signals()
        .listen(self.metrics_listener)?
        .run();
        let metrics_handle = metrics.handle();
        let metrics = tokio::spawn(metrics);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(routes)
                .wrap(from_fn(security::no_store))
                .wrap(security::default_headers(&csp, hsts))
                .wrap(from_fn(service_runtime::http::record_duration))
                .wrap(TracingLogger::<PathOnlyRootSpan>::new())
        })
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        .listen(self.listener)?
        .run();
        let handle = server.handle();
        tracing::info!(addr = %self.local_addr, metrics = %self.metrics_addr, "auth-service listening");
        let result = tokio::select! {
            r = server => r.context("HTTP server failed"),
            () = shutdown => {
                tracing::info!("shutting down: readiness off, draining");
                draining.start();
                tokio::time::sleep(self.drain).await;
                tracing::info!("no new requests; finishing in-flight ones");
                handle.stop(true).await;
                Ok(())
            }
        };
        cleanup.abort();
        metrics_handle.stop(false).await;
        let _ = metrics.await;
        tracing::info!("auth-service stopped");
        result
    }
}
