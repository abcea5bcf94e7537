//! Builds the HTTP server (HTTPS with a certificate, and `/metrics` on a side port when asked)
//! from settings and runs it until a shutdown future resolves.

use std::{future::Future, net::SocketAddr, time::Duration};

use actix_web::{App, HttpServer, web};
use anyhow::Context;
use service_runtime::{internal::InternalCa, tls::ServerTls};
use tracing_actix_web::TracingLogger;

use crate::{
    api::{AppState, routes},
    config::Settings,
    listing::RetryPolicy,
    tokens::TokenSource,
};

/// A built projects-service, bound to its port, not yet serving.
#[derive(Debug)]
pub struct Application {
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
    /// HTTPS only when set (`PROJECTS_SERVICE_TLS_CERT`/`_KEY`).
    tls: Option<ServerTls>,
    /// `/metrics` on a port of its own (`PROJECTS_SERVICE_METRICS_ADDR`), plain HTTP.
    metrics_listener: Option<std::net::TcpListener>,
    state: AppState,
    drain: Duration,
}

impl Application {
    pub fn build(settings: Settings) -> anyhow::Result<Self> {
        let rest = snyk_rest::RestClient::new(
            settings.snyk_api_url.clone(),
            settings.snyk_rest_version.clone(),
            settings.snyk_timeout,
            settings.snyk_ca.certificates(),
        )
        .context("cannot set up the Snyk REST client (SNYK_API_URL, SNYK_CA_CERT)")?;
        let tokens = TokenSource::new(
            &settings.token_service_urls,
            settings.token_service_ca.as_ref().map(InternalCa::pem),
            &settings.token_service_api_key,
            settings.token_service_timeout,
        )?;
        let state = AppState {
            rest,
            tokens,
            policy: RetryPolicy {
                retries: settings.snyk_retries,
                base: Duration::from_millis(200),
                max_backoff: settings.snyk_max_backoff,
                deadline: settings.deadline,
                max_projects: settings.max_projects,
            },
            client_keys: settings.client_keys.clone(),
            org_route_callers: settings.org_route_callers.clone(),
            draining: service_runtime::http::Draining::default(),
        };
        let listener = std::net::TcpListener::bind(settings.addr)
            .with_context(|| format!("cannot listen on PROJECTS_SERVICE_ADDR {}", settings.addr))?;
        let local_addr = listener.local_addr()?;
        let metrics_listener = settings
            .metrics_addr
            .map(|addr| {
                std::net::TcpListener::bind(addr).with_context(|| {
                    format!("cannot listen on PROJECTS_SERVICE_METRICS_ADDR {addr}")
                })
            })
            .transpose()?;
        settings.internal_hops.warn_plaintext();
        crate::metrics::init();
        Ok(Application {
            listener,
            local_addr,
            tls: settings.tls,
            metrics_listener,
            state,
            drain: settings.shutdown_drain,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where `/metrics` is served when it has a port of its own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let draining = self.state.draining.clone();
        let state = web::Data::new(self.state);
        let metrics_here = self.metrics_listener.is_none();
        let metrics = match self.metrics_listener {
            Some(listener) => {
                let server = HttpServer::new(|| {
                    App::new().route("/metrics", web::get().to(service_runtime::http::metrics))
                })
                .workers(1)
                .disable_signals()
                .listen(listener)?
                .run();
                let handle = server.handle();
                Some((handle, tokio::spawn(server)))
            }
            None => None,
        };
        let server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(
                    service_runtime::http::record_duration,
                ))
                .wrap(TracingLogger::default())
                .app_data(state.clone())
                .app_data(web::PathConfig::default().error_handler(|e, _| {
                    crate::error::ApiError::BadRequest(format!("bad path: {e}")).into()
                }))
                .configure(|cfg| {
                    if metrics_here {
                        cfg.route("/metrics", web::get().to(service_runtime::http::metrics));
                    }
                    routes(cfg);
                })
        })
        .disable_signals()
        .shutdown_timeout(30);
        let https = self.tls.is_some();
        let server = match &self.tls {
            Some(tls) => server.listen_rustls_0_23(self.listener, tls.server_config())?,
            None => server.listen(self.listener)?,
        }
        .run();
        let handle = server.handle();
        tracing::info!(addr = %self.local_addr, https, "projects-service listening");
        tokio::select! {
            r = server => r.context("HTTP server failed")?,
            () = shutdown => {
                tracing::info!("shutting down: readiness off, draining");
                draining.start();
                tokio::time::sleep(self.drain).await;
                tracing::info!("no new requests; finishing in-flight ones");
                handle.stop(true).await;
            }
        }
        if let Some((handle, task)) = metrics {
            handle.stop(false).await;
            let _ = task.await;
        }
        Ok(())
    }
}
