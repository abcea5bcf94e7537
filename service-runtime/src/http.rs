//! What the actix-web services share: request-duration metrics, `/metrics`, and readiness that
//! turns false while the service drains at shutdown.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use actix_web::{
    Error, HttpResponse,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
};
use opentelemetry::{KeyValue, global, metrics::Histogram};

fn histogram() -> &'static Histogram<f64> {
    static H: OnceLock<Histogram<f64>> = OnceLock::new();
    H.get_or_init(|| {
        global::meter("http")
            .f64_histogram("http.server.duration")
            .with_unit("s")
            .with_description("HTTP request durations, by method, route and status")
            .with_boundaries(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ])
            .build()
    })
}

/// Middleware (`middleware::from_fn(record_duration)`): records `http.server.duration` by
/// method, matched route pattern (not the raw path, so ids do not explode the label set) and status.
pub async fn record_duration(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    // A client may send any method token: only the standard ones become label values.
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "_OTHER",
    };
    let res = next.call(req).await?;
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    histogram().record(
        started.elapsed().as_secs_f64(),
        &[
            KeyValue::new("http.request.method", method),
            KeyValue::new("http.route", route),
            KeyValue::new(
                "http.response.status_code",
                i64::from(res.status().as_u16()),
            ),
        ],
    );
    Ok(res)
}

/// `GET /metrics`: every metric of the process in Prometheus text format.
pub async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::telemetry::prometheus_text())
}

/// Set when shutdown begins; `/readyz` answers 503 from then on.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    pub fn start(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
