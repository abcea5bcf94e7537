//! The wire format of every error the fake answers: OAuth JSON bodies, JSON:API error documents and
//! HTML error pages. No other module builds an error body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use crate::faults::InjectedError;

/// An RFC 6749 §5.2 error: `{"error": …, "error_description": …}`.
#[derive(Debug)]
pub(crate) struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
    retry_after: Option<u32>,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            retry_after: None,
        }
    }

    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    pub(crate) fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    pub(crate) fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    pub(crate) fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    pub(crate) fn unsupported_grant_type(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            description,
        )
    }

    /// An injected failure: 5xx are `server_error`/`temporarily_unavailable`, 429 is
    /// `temporarily_unavailable` (the OAuth registry has no rate-limit code).
    pub(crate) fn injected(fault: InjectedError) -> Self {
        let status =
            StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let error = match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                "temporarily_unavailable"
            }
            s if s.is_server_error() => "server_error",
            _ => "invalid_request",
        };
        Self {
            retry_after: fault.retry_after,
            ..Self::new(status, error, "injected fault")
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "error_description": self.description});
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        // RFC 6749 §5.1/§5.2: token endpoint answers must not be cached.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A refused `/_fake/*` control request: 400 with `{"error": "invalid_request",
/// "error_description": …}`, the shape of an OAuth error so that one reader handles both (409
/// `conflict` and 404 `not_found` for a client-secret change the state refuses).
#[derive(Debug)]
pub(crate) struct ControlError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl ControlError {
    pub(crate) fn new(description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            description: description.into(),
        }
    }

    pub(crate) fn conflict(description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            error: "conflict",
            ..Self::new(description)
        }
    }

    pub(crate) fn not_found(description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            error: "not_found",
            ..Self::new(description)
        }
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "error_description": self.description});
        (self.status, axum::Json(body)).into_response()
    }
}

/// The `code` and `title` of a REST 429, injected or past the rate limit.
const TOO_MANY_REQUESTS: (&str, &str) = ("too_many_requests", "Too Many Requests");

/// A JSON:API error document as rest.json's `ErrorDocument` describes it. The response headers
/// (`snyk-request-id`, versions, content type) are added by the REST layer.
#[derive(Debug, Clone)]
pub(crate) struct RestError {
    pub(crate) status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: String,
    parameter: Option<&'static str>,
    pub(crate) retry_after: Option<u32>,
}

impl RestError {
    fn new(status: StatusCode, code: &'static str, title: &'static str, detail: String) -> Self {
        Self {
            status,
            code,
            title,
            detail,
            parameter: None,
            retry_after: None,
        }
    }

    pub(crate) fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail.into(),
        )
    }

    pub(crate) fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            detail.into(),
        )
    }

    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "Not Found",
            detail.into(),
        )
    }

    /// A 400 about one query or path parameter.
    pub(crate) fn bad_parameter(parameter: &'static str, detail: impl Into<String>) -> Self {
        Self {
            parameter: Some(parameter),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                "Bad Request",
                detail.into(),
            )
        }
    }

    /// No release of the endpoint matches the requested version.
    pub(crate) fn version_not_found(detail: impl Into<String>) -> Self {
        Self {
            parameter: Some("version"),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "version_not_found",
                "Not Found",
                detail.into(),
            )
        }
    }

    /// Past the per-token rate limit: 429, retry after `retry_after` seconds.
    pub(crate) fn rate_limited(per_minute: std::num::NonZeroU32, retry_after: u32) -> Self {
        let (code, title) = TOO_MANY_REQUESTS;
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                code,
                title,
                format!(
                    "more than {per_minute} requests in a minute with this access token; \
                     retry after {retry_after} s"
                ),
            )
        }
    }

    pub(crate) fn injected(fault: InjectedError) -> Self {
        let status =
            StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let (code, title) = match status {
            StatusCode::TOO_MANY_REQUESTS => TOO_MANY_REQUESTS,
            StatusCode::SERVICE_UNAVAILABLE => ("service_unavailable", "Service Unavailable"),
            s if s.is_server_error() => ("server_error", "Internal Server Error"),
            _ => ("injected_error", "Injected Error"),
        };
        Self {
            retry_after: fault.retry_after,
            ..Self::new(status, code, title, "injected fault".to_owned())
        }
    }

    /// The document body; `id` is the request id so that a report can name the occurrence.
    pub(crate) fn document(&self, request_id: uuid::Uuid) -> serde_json::Value {
        let mut error = json!({
            "id": request_id,
            "status": self.status.as_str(),
            "code": self.code,
            "title": self.title,
            "detail": self.detail,
        });
        if let Some(parameter) = self.parameter {
            error["source"] = json!({"parameter": parameter});
        }
        json!({"jsonapi": {"version": "1.0"}, "errors": [error]})
    }
}

/// Escapes text for HTML element content and double-quoted attribute values.
pub(crate) fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A complete HTML page; `body` must already be escaped.
pub(crate) fn html_page(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{title} - Fake Snyk</title></head>\n<body>\n{body}\n</body>\n</html>\n",
        title = html_escape(title),
    );
    let mut response = (status, Html(page)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The authorize endpoint's answer when it must not redirect (unknown client, unregistered
/// redirect URI): RFC 6749 §4.1.2.1 forbids sending the browser to an unverified URI.
pub(crate) fn authorize_error_page(error: &'static str, description: &str) -> Response {
    let body = format!(
        "<h1>Authorization failed</h1>\n<p id=\"error\">{}</p>\n<p id=\"error_description\">{}</p>",
        html_escape(error),
        html_escape(description)
    );
    html_page(StatusCode::BAD_REQUEST, "Authorization failed", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escape_covers_markup_and_quotes() {
        assert_eq!(
            html_escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn error_documents_carry_status_as_string_and_parameter() {
        let doc = RestError::bad_parameter("limit", "bad").document(uuid::Uuid::nil());
        assert_eq!(doc["errors"][0]["status"], "400");
        assert_eq!(doc["errors"][0]["source"]["parameter"], "limit");
        assert_eq!(doc["jsonapi"]["version"], "1.0");
    }
}
