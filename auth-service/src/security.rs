//! Security headers on every response, and `Cache-Control: no-store` on the pages that carry
//! per-user or per-sign-in data.

use actix_web::{
    Error,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::{self, HeaderValue},
    middleware::{DefaultHeaders, Next},
};
use url::Url;

/// The policy: no script at all, styles and images from our own origin only, forms may post to
/// us and (after a redirect) to Snyk's app host, and no framing.
pub fn content_security_policy(snyk_app_url: &Url) -> String {
    format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' {}; \
         frame-ancestors 'none'; base-uri 'none'",
        snyk_app_url.origin().ascii_serialization()
    )
}

/// Headers every response carries (unless a handler set its own).
pub fn default_headers(csp: &str) -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, csp.to_owned()))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // The callback URL carries the authorization code: never send it on as a referrer.
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
}

/// Pages no cache may keep: the sign-in redirects and the install pages.
fn is_private(path: &str) -> bool {
    path == "/auth" || path == "/callback" || path.starts_with("/installs/")
}

/// Middleware: `Cache-Control: no-store` on private pages, whatever their status.
pub async fn no_store(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let private = is_private(req.path());
    let mut res = next.call(req).await?;
    if private {
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csp_names_the_snyk_origin_only() {
        let csp =
            content_security_policy(&Url::parse("https://app.eu.snyk.io/some/path").expect("url"));
        assert_eq!(
            csp,
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' https://app.eu.snyk.io; \
             frame-ancestors 'none'; base-uri 'none'"
        );
        let local = content_security_policy(&Url::parse("http://127.0.0.1:8090").expect("url"));
        assert!(
            local.contains("form-action 'self' http://127.0.0.1:8090;"),
            "{local}"
        );
    }

    #[test]
    fn private_paths() {
        for p in ["/auth", "/callback", "/installs/x"] {
            assert!(is_private(p), "{p}");
        }
        for p in ["/", "/healthz", "/static/style.css", "/authx", "/installs"] {
            assert!(!is_private(p), "{p}");
        }
    }
}
