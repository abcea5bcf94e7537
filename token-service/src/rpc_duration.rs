//! `rpc.server.duration`: a tower layer around the whole gRPC server recording each call's
//! duration by method and gRPC status.
//!
//! Both labels come from short fixed lists (a path this server does not serve is "other", a
//! status that is not a gRPC code "invalid"), so every (method, status) pair has a slot, bound to
//! its attributes on first use ([`opentelemetry::metrics::BoundHistogram`]). A call then records
//! into its slot without the SDK hashing and looking up its attributes, the lookup that cost the
//! hot path the most of all its metrics (`scripts/callgrind`). A pair never seen is never bound,
//! so it exports no series, as before.
//!
//! It must sit outside `decode_status`, so the status recorded is the one the caller gets.

use std::{
    future::Future,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::Instant,
};

use opentelemetry::{
    KeyValue,
    metrics::{BoundHistogram, Histogram, Meter},
};

use crate::{caller::Rpc, error::GRPC_STATUS};

/// The other services this server has (health, reflection), after [`Rpc::ALL`] in the method
/// slots; then one slot for every other path.
const OTHER_METHODS: [&str; 4] = [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];
const METHODS: usize = Rpc::ALL.len() + OTHER_METHODS.len() + 1;

/// The status codes as sent (0-16), then "invalid" (anything else in `grpc-status`) and
/// "transport_error" (no response at all).
const STATUSES: [&str; 19] = [
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
    "10",
    "11",
    "12",
    "13",
    "14",
    "15",
    "16",
    "invalid",
    "transport_error",
];
const INVALID: usize = 17;
const TRANSPORT_ERROR: usize = 18;

/// The `rpc.method` slot of a request path. The path comes from the client (authenticated or
/// not), so it must not become a label value as sent: every new path would be a new series.
fn method_slot(path: &str) -> usize {
    if let Some(rpc) = Rpc::from_path(path) {
        return rpc as usize;
    }
    match OTHER_METHODS.iter().position(|p| *p == path) {
        Some(i) => Rpc::ALL.len() + i,
        None => METHODS - 1,
    }
}

/// The `rpc.method` label of a slot.
fn method_label(slot: usize) -> &'static str {
    match slot.checked_sub(Rpc::ALL.len()) {
        None => Rpc::ALL[slot].path(),
        Some(i) => OTHER_METHODS.get(i).copied().unwrap_or("other"),
    }
}

/// The `rpc.grpc.status_code` slot of a response's `grpc-status` header (absent means OK:
/// success carries its status in the trailers, errors "trailers-only" in the headers).
fn status_slot(grpc_status: Option<&[u8]>) -> usize {
    match grpc_status {
        None => 0,
        Some(code) => STATUSES[..INVALID]
            .iter()
            .position(|c| c.as_bytes() == code)
            .unwrap_or(INVALID),
    }
}

/// The histogram and its bound slots, one per (method, status), shared by every connection.
struct Slots {
    histogram: Histogram<f64>,
    bound: Box<[OnceLock<BoundHistogram<f64>>]>,
}

impl Slots {
    fn record(&self, method: usize, status: usize, seconds: f64) {
        self.bound[method * STATUSES.len() + status]
            .get_or_init(|| {
                self.histogram.bind(&[
                    KeyValue::new("rpc.method", method_label(method)),
                    KeyValue::new("rpc.grpc.status_code", STATUSES[status]),
                ])
            })
            .record(seconds);
    }
}

impl std::fmt::Debug for Slots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slots")
            .field("histogram", &self.histogram)
            .finish_non_exhaustive()
    }
}

/// Wraps a service in [`RpcDuration`], recording with instruments from `meter`.
#[derive(Debug, Clone)]
pub struct RpcDurationLayer {
    slots: Arc<Slots>,
}

impl RpcDurationLayer {
    pub fn new(meter: &Meter) -> Self {
        let histogram = meter
            .f64_histogram("rpc.server.duration")
            .with_unit("s")
            .with_description("gRPC request durations, by method and status")
            .with_boundaries(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
            ])
            .build();
        let bound = (0..METHODS * STATUSES.len())
            .map(|_| OnceLock::new())
            .collect();
        RpcDurationLayer {
            slots: Arc::new(Slots { histogram, bound }),
        }
    }
}

impl<S> tower::Layer<S> for RpcDurationLayer {
    type Service = RpcDuration<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcDuration {
            inner,
            slots: Arc::clone(&self.slots),
        }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct RpcDuration<S> {
    inner: S,
    slots: Arc<Slots>,
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for RpcDuration<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Timed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        Timed {
            method: method_slot(req.uri().path()),
            slots: Arc::clone(&self.slots),
            started: Instant::now(),
            inner: self.inner.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    /// An RPC's response future that records its duration when it completes (no allocation).
    pub struct Timed<F> {
        #[pin]
        inner: F,
        method: usize,
        slots: Arc<Slots>,
        started: Instant,
    }
}

impl<F, ResBody, E> Future for Timed<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = std::task::ready!(this.inner.poll(cx));
        let status = match &res {
            Ok(r) => status_slot(r.headers().get(&GRPC_STATUS).map(|v| v.as_bytes())),
            Err(_) => TRANSPORT_ERROR,
        };
        this.slots
            .record(*this.method, status, this.started.elapsed().as_secs_f64());
        Poll::Ready(res)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::convert::Infallible;

    use service_runtime::telemetry::ScrapedProvider;
    use tower::{Layer as _, ServiceExt as _};

    use super::*;

    #[test]
    fn every_label_has_its_own_slot_and_client_paths_are_bounded() {
        for rpc in Rpc::ALL {
            assert_eq!(method_label(method_slot(rpc.path())), rpc.path());
        }
        for path in OTHER_METHODS {
            assert_eq!(method_label(method_slot(path)), path);
        }
        for junk in ["/x", "/snykapps.token.v1.TokenService/Nope", "/a/b/c/d", ""] {
            assert_eq!(method_label(method_slot(junk)), "other");
        }
        let mut labels: Vec<_> = (0..METHODS).map(method_label).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), METHODS, "two method slots share a label");

        assert_eq!(STATUSES[status_slot(None)], "0");
        assert_eq!(STATUSES[status_slot(Some(b"14"))], "14");
        assert_eq!(STATUSES[status_slot(Some(b"16"))], "16");
        assert_eq!(STATUSES[status_slot(Some(b"99"))], "invalid");
        assert_eq!(STATUSES[status_slot(Some(b"invalid"))], "invalid");
        assert_eq!(STATUSES[TRANSPORT_ERROR], "transport_error");
    }

    /// Durations by (method, status) as `/metrics` shows them: each pair seen is its own series
    /// with its own count, and a pair never seen has none.
    #[tokio::test]
    async fn calls_are_counted_by_method_and_status_as_scraped() {
        let provider = ScrapedProvider::default();
        let layer = RpcDurationLayer::new(&provider.meter("test"));
        let server = tower::service_fn(|req: http::Request<()>| async move {
            let mut res = http::Response::new(());
            if req.uri().path() == Rpc::ForceRefresh.path() {
                res.headers_mut()
                    .insert(&GRPC_STATUS, http::HeaderValue::from_static("14"));
            }
            Ok::<_, Infallible>(res)
        });
        for (path, n) in [
            (Rpc::GetAccessToken.path(), 3),
            (Rpc::ForceRefresh.path(), 2),
            ("/a/path/nobody/serves", 1),
        ] {
            for _ in 0..n {
                let req = http::Request::builder().uri(path).body(()).unwrap();
                layer.layer(server).oneshot(req).await.unwrap();
            }
        }

        let text = provider.scrape();
        let mut counts: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("rpc_server_duration_count"))
            .collect();
        counts.sort_unstable();
        assert_eq!(
            counts,
            [
                r#"rpc_server_duration_count{rpc_grpc_status_code="0",rpc_method="/snykapps.token.v1.TokenService/GetAccessToken"} 3"#,
                r#"rpc_server_duration_count{rpc_grpc_status_code="0",rpc_method="other"} 1"#,
                r#"rpc_server_duration_count{rpc_grpc_status_code="14",rpc_method="/snykapps.token.v1.TokenService/ForceRefresh"} 2"#,
            ],
            "{text}"
        );
    }
}
