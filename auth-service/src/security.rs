//! Security headers on every response, `Cache-Control: no-store` on the pages that carry
//! per-user or per-sign-in data, and the same-origin check of state-changing form posts.

use actix_web::{
    Error, HttpRequest,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::{self, HeaderValue},
    middleware::{DefaultHeaders, Next},
};
use url::Url;

/// One year, the usual HSTS lifetime. No `includeSubDomains`: sibling hosts are not ours to
/// commit to https.
pub const HSTS: &str = "max-age=31536000";

/// The policy: no script at all, styles and images from our own origin only, forms may post to
/// us and (after a redirect) to Snyk's app host, and no framing.
pub fn content_security_policy(snyk_app_url: &Url) -> String {
    format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' {}; \
         frame-ancestors 'none'; base-uri 'none'",
        snyk_app_url.origin().ascii_serialization()
    )
}

/// Headers every response carries (unless a handler set its own); `hsts` (the public URL is
/// https) adds `Strict-Transport-Security`, so the browser never again tries plain http (where the
/// cookies' `Secure` would not help against a stripped first request).
pub fn default_headers(csp: &str, hsts: bool) -> DefaultHeaders {
    let headers = DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, csp.to_owned()))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // The callback URL carries the authorization code: never send it on as a referrer.
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::X_FRAME_OPTIONS, "DENY"));
    if hsts {
        headers.add((header::STRICT_TRANSPORT_SECURITY, HSTS))
    } else {
        headers
    }
}

/// Pages no cache may keep: the sign-in redirects, the install pages and logout.
fn is_private(path: &str) -> bool {
    path == "/auth" || path == "/callback" || path == "/logout" || path.starts_with("/installs/")
}

/// Did this (state-changing) POST come from our own pages? Pages here run no script, so the only
/// way to post is a form, and the browser labels it; a page cannot forge either label:
///
/// - `Sec-Fetch-Site` (Fetch Metadata, every current browser) decides when present: only
///   `same-origin` passes. It is checked first because our `Referrer-Policy: no-referrer` makes
///   browsers send `Origin: null` on our own form posts.
/// - Otherwise (older browsers) `Origin` must be our public origin (of `SNYK_REDIRECT_URI`).
/// - A request with neither cannot be told apart from a forged one and is refused.
pub fn is_same_origin_post(req: &HttpRequest, public_origin: &str) -> bool {
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        return site.as_bytes() == b"same-origin";
    }
    headers
        .get(header::ORIGIN)
        .is_some_and(|origin| origin.as_bytes() == public_origin.as_bytes())
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
    fn only_same_origin_posts_pass() {
        use actix_web::test::TestRequest;
        let ours = "https://app.example";
        let check = |headers: &[(&str, &str)]| {
            let mut req = TestRequest::post();
            for (k, v) in headers {
                req = req.insert_header((*k, *v));
            }
            is_same_origin_post(&req.to_http_request(), ours)
        };
        assert!(check(&[
            ("origin", ours),
            ("sec-fetch-site", "same-origin")
        ]));
        assert!(check(&[("origin", ours)]), "an older browser: Origin only");
        assert!(
            check(&[("sec-fetch-site", "same-origin")]),
            "Fetch Metadata only"
        );
        assert!(
            check(&[("origin", "null"), ("sec-fetch-site", "same-origin")]),
            "our own form under Referrer-Policy: no-referrer"
        );
        for refused in [
            &[
                ("origin", "https://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ][..],
            &[("origin", "https://evil.example")],
            &[("origin", "http://app.example")],
            &[("origin", "null")],
            &[("origin", ours), ("sec-fetch-site", "same-site")],
            &[("origin", ours), ("sec-fetch-site", "cross-site")],
            &[("sec-fetch-site", "cross-site")],
            &[("sec-fetch-site", "none")],
            &[],
        ] {
            assert!(!check(refused), "{refused:?}");
        }
    }

    #[actix_web::test]
    async fn hsts_only_when_asked() {
        use actix_web::{App, HttpResponse, test, web};
        for hsts in [true, false] {
            let app = test::init_service(
                App::new()
                    .wrap(default_headers("default-src 'none'", hsts))
                    .route("/", web::get().to(HttpResponse::Ok)),
            )
            .await;
            let res = test::call_service(&app, test::TestRequest::get().to_request()).await;
            let header = res
                .headers()
                .get("strict-transport-security")
                .map(|v| v.to_str().unwrap_or_default().to_owned());
            assert_eq!(header.as_deref(), hsts.then_some(HSTS), "hsts={hsts}");
        }
    }

    #[test]
    fn private_paths() {
        for p in ["/auth", "/callback", "/installs/x", "/logout"] {
            assert!(is_private(p), "{p}");
        }
        for p in ["/", "/healthz", "/static/style.css", "/authx", "/installs"] {
            assert!(!is_private(p), "{p}");
        }
    }
}
