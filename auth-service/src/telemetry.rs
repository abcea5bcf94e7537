//! Request tracing: the root span of every request.
//!
//! Two choices against tracing-actix-web's `DefaultRootSpanBuilder`:
//! - it records `http.target` with the query string, and the query of `/callback` carries the
//!   authorization code; this builder records the path only;
//! - it makes the incoming `traceparent` the span's parent (and keeps `tracestate`), so whoever
//!   sends a request would pick the trace id, the parent and the sampling decision of everything
//!   done for it inside the system. auth-service's callers are browsers, so each request starts a
//!   trace of its own, linked to the browser's (`service_runtime::telemetry::link_from`); the
//!   calls made under it (token-service, projects-service: see
//!   `service_runtime::telemetry::current_context_headers`) continue the new trace.
//!
//! Otherwise it records what the default one does: the same fields, the same outcome.

use actix_web::{
    Error,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};

/// The root span of a request, without its query string.
#[derive(Debug)]
pub struct PathOnlyRootSpan;

impl RootSpanBuilder for PathOnlyRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let route = request.match_pattern().unwrap_or_else(|| "default".into());
        let span = tracing::info_span!(
            "HTTP request",
            http.method = %request.method(),
            http.route = %route,
            http.target = %request.path(),
            http.status_code = tracing::field::Empty,
            otel.name = %format!("{} {}", request.method(), route),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
        );
        service_runtime::telemetry::link_from(&span, |k| {
            request
                .headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{App, HttpResponse, test, web};
    use tracing_actix_web::TracingLogger;

    /// The trace headers a call made while handling this request would send, one `name: value`
    /// line each (empty ones left out).
    async fn outgoing_trace_headers() -> HttpResponse {
        let lines: Vec<String> = service_runtime::telemetry::current_context_headers()
            .into_iter()
            // The propagator writes an empty `tracestate` when there is none.
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        HttpResponse::Ok().body(lines.join("\n"))
    }

    #[tokio::test]
    async fn each_request_starts_a_trace_that_calls_continue() {
        let _telemetry = service_runtime::telemetry::init("auth-service-test", "auth_service=info");
        let app = test::init_service(
            App::new()
                .wrap(TracingLogger::<PathOnlyRootSpan>::new())
                .route("/", web::get().to(outgoing_trace_headers)),
        )
        .await;

        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let req = test::TestRequest::get()
            .uri("/")
            .insert_header(("traceparent", incoming))
            .insert_header(("tracestate", "vendor=chosen-by-the-browser"))
            .to_request();
        let body = test::call_and_read_body(&app, req).await;
        let out = String::from_utf8_lossy(&body);
        assert!(
            out.starts_with("traceparent: 00-") && out.len() == "traceparent: ".len() + 55,
            "calls carry one trace header, no tracestate: {out}"
        );
        assert!(
            !out.contains("4bf92f3577b34da6a3ce929d0e0e4736") && !out.contains("00f067aa0ba902b7"),
            "a new trace, not the browser's: {out}"
        );

        let body =
            test::call_and_read_body(&app, test::TestRequest::get().uri("/").to_request()).await;
        let out = String::from_utf8_lossy(&body);
        assert_eq!(
            out.len(),
            "traceparent: ".len() + 55,
            "a new trace when the browser sent none: {out}"
        );
        assert!(!out.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
    }
}
