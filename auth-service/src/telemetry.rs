//! Request tracing: the root span of every request.
//!
//! tracing-actix-web's default root span records `http.target` with the query string, and the
//! query of `/callback` carries the authorization code. This builder records the path only, and
//! otherwise what the default one does: the same fields, and the incoming `traceparent` as the
//! span's remote parent, so the calls made under it (token-service, projects-service: see
//! `service_runtime::telemetry::current_context_headers`) continue the caller's trace.

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
        service_runtime::telemetry::set_parent_from(&span, |k| {
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

    async fn outgoing_traceparent() -> HttpResponse {
        let headers = service_runtime::telemetry::current_context_headers();
        let tp = headers
            .into_iter()
            .find(|(k, _)| *k == "traceparent")
            .map(|(_, v)| v)
            .unwrap_or_default();
        HttpResponse::Ok().body(tp)
    }

    #[tokio::test]
    async fn calls_continue_the_incoming_trace_or_start_one() {
        let _telemetry = service_runtime::telemetry::init("auth-service-test", "auth_service=info");
        let app = test::init_service(
            App::new()
                .wrap(TracingLogger::<PathOnlyRootSpan>::new())
                .route("/", web::get().to(outgoing_traceparent)),
        )
        .await;

        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let req = test::TestRequest::get()
            .uri("/")
            .insert_header(("traceparent", incoming))
            .to_request();
        let body = test::call_and_read_body(&app, req).await;
        let out = String::from_utf8_lossy(&body);
        assert!(
            out.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "same trace: {out}"
        );
        assert!(
            !out.contains("00f067aa0ba902b7"),
            "a child span, not the caller's: {out}"
        );

        let body =
            test::call_and_read_body(&app, test::TestRequest::get().uri("/").to_request()).await;
        let out = String::from_utf8_lossy(&body);
        assert_eq!(
            out.len(),
            55,
            "a new trace when the browser sent none: {out}"
        );
        assert!(!out.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
    }
}
