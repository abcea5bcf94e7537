//! Builds the gRPC server (and its `/metrics` side port) from settings and runs it until a
//! shutdown future resolves (zero2prod's `Application`, mini-redis's passed-in shutdown).

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use opentelemetry::global;
use snykapps_proto::token_v1::token_service_server::TokenServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use crate::{
    audit::AuditTrail, budget::SnykBudget, cache::GrantCache, config::Settings,
    decode_status::DecodeStatusLayer, keepalive::KeepAlive, metrics::Metrics, refresh::Refresher,
    rpc_duration::RpcDurationLayer, service::TokenApi, snyk::SnykClient, store::Store,
};

/// Largest request we decode: every field we accept is at most a few KiB.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// A built token-service, bound to its ports, not yet serving.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    metrics_listener: TcpListener,
    metrics_addr: SocketAddr,
    settings: Settings,
    store: Store,
    refresher: Arc<Refresher>,
    snyk: SnykClient,
    metrics: Arc<Metrics>,
}

impl Application {
    /// Connects to Redis (failing fast with a clear message) and binds both ports.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = Store::connect(
            &settings.redis,
            Arc::clone(&settings.keyring),
            settings.redis_timeout,
            settings.redis_min_replicas,
        )
        .await
        .with_context(|| {
            let var = match settings.redis.is_cluster() {
                true => "REDIS_CLUSTER_URLS",
                false => "REDIS_URL",
            };
            format!("cannot connect to Redis ({var}: {})", settings.redis)
        })?
        .with_cache(Arc::new(GrantCache::new(settings.cache_capacity)))
        .with_events_maxlen(settings.events_maxlen);
        tracing::info!(redis = %settings.redis, "connected to Redis");
        settings.redis.warn_plaintext();
        let metrics = Arc::new(Metrics::default());
        metrics.set_durable_commits(store.durability().is_durable());
        metrics.observe_cache(store.cache());
        let snyk = SnykClient::new(
            settings.snyk_api_url.clone(),
            settings.client_id.clone(),
            settings.client_secret.clone(),
            settings.rest_version.clone(),
            settings.refresh.attempt_timeout,
            settings.snyk_ca.certificates(),
            Arc::clone(&metrics),
        )
        .context("cannot set up the Snyk client (SNYK_API_URL, SNYK_CA_CERT)")?;
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
        let metrics_listener = TcpListener::bind(settings.metrics_addr)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on TOKEN_SERVICE_METRICS_ADDR {}",
                    settings.metrics_addr
                )
            })?;
        let metrics_addr = metrics_listener.local_addr()?;
        Ok(Application {
            listener,
            local_addr,
            metrics_listener,
            metrics_addr,
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

    /// Where `GET /metrics` (Prometheus text) is served.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// The store this application uses (for the re-seal command and tests).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves until `shutdown` resolves. Then health turns NOT_SERVING, the service keeps serving
    /// for `SHUTDOWN_DRAIN_MS` (so load balancers notice), stops accepting, lets in-flight RPCs
    /// finish and waits for every refresh in flight to store its result.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<TokenServiceServer<TokenApi>>().await;
        // Reflection maps the whole API for anyone who can connect (it needs no key), so it is
        // served only when asked for.
        let reflection = if self.settings.reflection {
            Some(
                tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(snykapps_proto::FILE_DESCRIPTOR_SET)
                    .build_v1()?,
            )
        } else {
            None
        };
        let keepalive = KeepAlive::new(
            self.store.clone(),
            Arc::clone(&self.refresher),
            Arc::clone(&self.metrics),
            self.settings.keepalive.clone(),
        );
        let stop_tracking = CancellationToken::new();
        let tracking = if self.settings.cache_capacity > 0 && self.settings.cache_tracking {
            Some(tokio::spawn(crate::store::tracking::run(
                self.settings.redis.clone(),
                Arc::clone(self.store.cache()),
                self.settings.redis_timeout,
                stop_tracking.clone(),
            )))
        } else {
            None
        };
        let (stop_sweeping, sweeping_stopped) = tokio::sync::oneshot::channel::<()>();
        let sweeper = tokio::spawn(keepalive.run(async {
            let _ = sweeping_stopped.await;
        }));
        // Event watches never end by themselves; the graceful shutdown ends them after the drain.
        let stop_watches = CancellationToken::new();
        let audit = Arc::new(AuditTrail::new(self.settings.audit_interval));
        let stop_audit = CancellationToken::new();
        let audit_writer = tokio::spawn(Arc::clone(&audit).run(stop_audit.clone()));
        let budget = SnykBudget::new(
            self.store.clone(),
            self.settings.snyk_rate,
            Arc::clone(&self.metrics),
        );
        let api = TokenApi::new(
            self.store,
            Arc::clone(&self.refresher),
            self.snyk,
            Arc::clone(&self.metrics),
            audit,
            budget,
        )
        .with_watch_stop(stop_watches.clone());
        let server = TokenServiceServer::new(api)
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(4 * 1024 * 1024);
        let authorized = crate::caller::Authorize::new(server, Arc::clone(&self.settings.callers));

        let metrics_server = tokio::spawn(serve_metrics(self.metrics_listener));
        tracing::info!(
            addr = %self.local_addr,
            metrics = %self.metrics_addr,
            callers = ?self.settings.callers,
            reflection = self.settings.reflection,
            "token-service listening"
        );
        let drain = self.settings.shutdown_drain;
        let stopped = async move {
            shutdown.await;
            tracing::info!("shutting down: readiness off, draining");
            health
                .set_not_serving::<TokenServiceServer<TokenApi>>()
                .await;
            tokio::time::sleep(drain).await;
            stop_watches.cancel();
            tracing::info!("no new calls; finishing in-flight calls and refreshes");
        };
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &self.settings.tls {
            use secrecy::ExposeSecret as _;
            let identity = tonic::transport::Identity::from_pem(&tls.cert, tls.key.expose_secret());
            builder = builder
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .context("TOKEN_SERVICE_TLS_CERT / TOKEN_SERVICE_TLS_KEY are not a usable certificate and key")?;
        }
        let result = builder
            .trace_fn(grpc_span)
            // Outermost first: the duration is recorded with the status the caller gets, after
            // the decode-status rewrite.
            .layer(RpcDurationLayer::new(&global::meter("token-service")))
            .layer(DecodeStatusLayer)
            .add_service(health_service)
            .add_optional_service(reflection)
            .add_service(authorized)
            .serve_with_incoming_shutdown(nodelay(TcpListenerStream::new(self.listener)), stopped)
            .await
            .context("gRPC server failed");
        let _ = stop_sweeping.send(());
        let _ = sweeper.await;
        stop_tracking.cancel();
        if let Some(tracking) = tracking {
            let _ = tracking.await;
        }
        self.refresher.drain().await;
        // After the last hand-out: the pending counts are written before the process ends.
        stop_audit.cancel();
        let _ = audit_writer.await;
        metrics_server.abort();
        tracing::info!("token-service stopped");
        result
    }
}

/// Sets `TCP_NODELAY` on every accepted socket. tonic applies its own `tcp_nodelay` setting only
/// to listeners it binds itself, not to an incoming stream; without it Nagle's algorithm holds
/// small responses back (scripts/bench measured a 5x worse p99 on the bare gRPC server).
fn nodelay(
    incoming: TcpListenerStream,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt as _;
    incoming.map(|conn| {
        if let Ok(stream) = &conn
            && let Err(e) = stream.set_nodelay(true)
        {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        conn
    })
}

/// Longest client-supplied `x-request-id` we repeat in logs.
const MAX_CLIENT_REQUEST_ID: usize = 128;

// Named once: a `&str` name is parsed and checked on every lookup, and these are read per call.
static X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");
static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

/// One span per RPC, child of the caller's `traceparent` when it sent one. `request_id` is ours
/// (a fresh UUID); an `x-request-id` the client sent is kept apart as `client_request_id`, since
/// this span opens before the caller is authenticated and anyone can send anything there.
///
/// `GetAccessToken`, the hot path, gets its span at the default level (info) only when the
/// caller asks to be followed: its trace is sampled (its `traceparent` says so) or it sent an
/// `x-request-id`. Otherwise the span is at debug level, so an untraced hand-out costs no span,
/// no request id and no context extraction (its audit line still names caller and install).
fn grpc_span(req: &http::Request<()>) -> tracing::Span {
    macro_rules! span_at {
        ($level:expr, $path:expr, $client_request_id:expr) => {
            tracing::span!(
                $level,
                "grpc",
                otel.name = %$path,
                otel.kind = "server",
                rpc.system = "grpc",
                rpc.method = %$path,
                request_id = tracing::field::Empty,
                client_request_id = $client_request_id,
            )
        };
    }
    let path = req.uri().path();
    let header = |k: &http::HeaderName| req.headers().get(k).and_then(|v| v.to_str().ok());
    let client_request_id = header(&X_REQUEST_ID).filter(|v| v.len() <= MAX_CLIENT_REQUEST_ID);
    let span = if path == crate::caller::Rpc::GetAccessToken.path()
        && client_request_id.is_none()
        && !header(&TRACEPARENT).is_some_and(sampled)
    {
        span_at!(tracing::Level::DEBUG, path, client_request_id)
    } else {
        span_at!(tracing::Level::INFO, path, client_request_id)
    };
    if span.is_disabled() {
        return span;
    }
    span.record("request_id", tracing::field::display(uuid::Uuid::new_v4()));
    service_runtime::telemetry::set_parent_from(&span, |k| {
        req.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    span
}

/// Does a W3C `traceparent` (`00-<trace>-<parent>-<flags>`) carry the sampled flag?
fn sampled(traceparent: &str) -> bool {
    traceparent
        .rsplit('-')
        .next()
        .and_then(|flags| u8::from_str_radix(flags, 16).ok())
        .is_some_and(|flags| flags & 1 == 1)
}

/// `GET /metrics` in Prometheus text format on the side port.
async fn serve_metrics(listener: TcpListener) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            (
                [("content-type", "text/plain; version=0.0.4")],
                service_runtime::telemetry::prometheus_text(),
            )
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics server failed");
    }
}

#[cfg(test)]
mod tests {
    use super::sampled;

    #[test]
    fn sampling_flags() {
        let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331";
        assert!(sampled(&format!("{trace}-01")));
        assert!(!sampled(&format!("{trace}-00")));
        assert!(!sampled("garbage"));
    }
}
