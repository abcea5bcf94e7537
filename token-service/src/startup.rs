//! Builds the gRPC server from settings and runs it until a shutdown future resolves
//! (zero2prod's `Application`, mini-redis's passed-in shutdown).

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use snykapps_proto::token_v1::token_service_server::TokenServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;

use crate::{
    config::Settings, metrics::Metrics, refresh::Refresher, service::TokenApi, snyk::SnykClient,
    store::Store,
};

/// Largest request we decode: every field we accept is at most a few KiB.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// A built token-service, bound to its port, not yet serving.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    settings: Settings,
    store: Store,
    refresher: Arc<Refresher>,
    snyk: SnykClient,
    metrics: Arc<Metrics>,
}

impl Application {
    /// Connects to Redis (failing fast with a clear message) and binds `settings.addr`.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = Store::connect(
            &settings.redis_url,
            Arc::clone(&settings.keyring),
            settings.redis_timeout,
        )
        .await
        .context("cannot connect to Redis at REDIS_URL")?;
        let snyk = SnykClient::new(
            settings.snyk_api_url.clone(),
            settings.client_id.clone(),
            settings.client_secret.clone(),
            settings.rest_version.clone(),
            settings.refresh.attempt_timeout,
        )?;
        let metrics = Arc::new(Metrics::default());
        let refresher = Refresher::new(
            store.clone(),
            snyk.clone(),
            settings.refresh.clone(),
            Arc::clone(&metrics),
        );
        let listener = TcpListener::bind(settings.addr)
            .await
            .with_context(|| format!("cannot listen on TOKEN_SERVICE_ADDR {}", settings.addr))?;
        let local_addr = listener.local_addr()?;
        Ok(Application {
            listener,
            local_addr,
            settings,
            store,
            refresher,
            snyk,
            metrics,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// The store this application uses (for the re-seal command and tests).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight RPCs finish and waits
    /// for every refresh in flight to store its result.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<TokenServiceServer<TokenApi>>().await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(snykapps_proto::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let api = TokenApi::new(self.store, Arc::clone(&self.refresher), self.snyk);
        let keys = Arc::clone(&self.settings.client_keys);
        let server = TokenServiceServer::new(api)
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(4 * 1024 * 1024);
        let authenticated =
            InterceptedService::new(server, move |req| crate::caller::check(&keys, req));

        tracing::info!(addr = %self.local_addr, "token-service listening");
        let stopped = async {
            shutdown.await;
            tracing::info!("shutting down: no new calls; finishing in-flight calls and refreshes");
            health
                .set_not_serving::<TokenServiceServer<TokenApi>>()
                .await;
        };
        tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(authenticated)
            .serve_with_incoming_shutdown(TcpListenerStream::new(self.listener), stopped)
            .await
            .context("gRPC server failed")?;
        self.refresher.drain().await;
        tracing::info!("token-service stopped");
        Ok(())
    }
}
