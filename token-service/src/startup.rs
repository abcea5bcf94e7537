//! Builds the gRPC server (and its `/metrics` side port) from settings and runs it until a
//! shutdown future resolves (zero2prod's `Application`, mini-redis's passed-in shutdown).

use std::{
    future::Future,
    net::SocketAddr,
    sync::Arc,
    task::{Context as TaskContext, Poll},
    time::Instant,
};

use anyhow::Context;
use opentelemetry::{KeyValue, global, metrics::Histogram};
use snykapps_proto::token_v1::token_service_server::TokenServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use crate::{
    cache::GrantCache, config::Settings, decode_status::DecodeStatusLayer, error::GRPC_STATUS,
    keepalive::KeepAlive, metrics::Metrics, refresh::Refresher, service::TokenApi,
    snyk::SnykClient, store::Store,
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
        .context("cannot connect to Redis (REDIS_URL or REDIS_CLUSTER_URLS)")?
        .with_cache(Arc::new(GrantCache::new(settings.cache_capacity)))
        .with_events_maxlen(settings.events_maxlen);
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
        let api = TokenApi::new(
            self.store,
            Arc::clone(&self.refresher),
            self.snyk,
            Arc::clone(&self.metrics),
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
            .layer(tower::layer::layer_fn(RpcDuration::new))
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

/// A tower layer recording `rpc.server.duration` by method and gRPC status.
#[derive(Debug, Clone)]
struct RpcDuration<S> {
    inner: S,
    histogram: Histogram<f64>,
}

impl<S> RpcDuration<S> {
    fn new(inner: S) -> Self {
        let histogram = global::meter("token-service")
            .f64_histogram("rpc.server.duration")
            .with_unit("s")
            .with_description("gRPC request durations, by method and status")
            .with_boundaries(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
            ])
            .build();
        RpcDuration { inner, histogram }
    }
}

impl<S, B> tower::Service<http::Request<B>> for RpcDuration<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Timed<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        Timed {
            method: method_label(req.uri().path()),
            histogram: self.histogram.clone(),
            started: Instant::now(),
            inner: self.inner.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    /// An RPC's response future that records its duration when it completes (no allocation).
    struct Timed<F> {
        #[pin]
        inner: F,
        method: &'static str,
        histogram: Histogram<f64>,
        started: Instant,
    }
}

impl<F, E> Future for Timed<F>
where
    F: Future<Output = Result<http::Response<tonic::body::Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = std::task::ready!(this.inner.poll(cx));
        // Errors come back "trailers-only", with grpc-status in the headers; success has it in
        // the trailers, so no header means OK here.
        let status = match &res {
            Ok(r) => status_label(r.headers().get(&GRPC_STATUS).map(|v| v.as_bytes())),
            Err(_) => "transport_error",
        };
        this.histogram.record(
            this.started.elapsed().as_secs_f64(),
            &[
                KeyValue::new("rpc.method", *this.method),
                KeyValue::new("rpc.grpc.status_code", status),
            ],
        );
        Poll::Ready(res)
    }
}

/// The `rpc.grpc.status_code` label: the code's number as sent (0-16; absent means OK), without
/// an allocation per call; anything else is "invalid".
fn status_label(grpc_status: Option<&[u8]>) -> &'static str {
    const CODES: [&str; 17] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    ];
    match grpc_status {
        None => "0",
        Some(code) => CODES
            .into_iter()
            .find(|c| c.as_bytes() == code)
            .unwrap_or("invalid"),
    }
}

/// The `rpc.method` label: one of the methods this server has, or "other". The path comes from
/// the client (authenticated or not), so it must not become a label value as sent: every new
/// path would be a new time series.
fn method_label(path: &str) -> &'static str {
    const OTHERS: [&str; 4] = [
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ];
    if let Some(rpc) = crate::caller::Rpc::from_path(path) {
        return rpc.path();
    }
    OTHERS.into_iter().find(|p| *p == path).unwrap_or("other")
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
    use super::{method_label, sampled, status_label};

    #[test]
    fn status_labels_and_sampling_flags() {
        assert_eq!(status_label(None), "0");
        assert_eq!(status_label(Some(b"14")), "14");
        assert_eq!(status_label(Some(b"99")), "invalid");
        let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331";
        assert!(sampled(&format!("{trace}-01")));
        assert!(!sampled(&format!("{trace}-00")));
        assert!(!sampled("garbage"));
    }

    #[test]
    fn method_labels_are_bounded() {
        assert_eq!(
            method_label("/snykapps.token.v1.TokenService/GetAccessToken"),
            "/snykapps.token.v1.TokenService/GetAccessToken"
        );
        assert_eq!(
            method_label("/grpc.health.v1.Health/Check"),
            "/grpc.health.v1.Health/Check"
        );
        for junk in ["/x", "/snykapps.token.v1.TokenService/Nope", "/a/b/c/d"] {
            assert_eq!(method_label(junk), "other");
        }
    }
}
