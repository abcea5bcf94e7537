//! The one place that turns failures into error pages: each variant has its status code and its
//! wording. Bad input is always a 4xx page, an upstream that is down a 503 page with
//! `Retry-After`, and only our own faults a (logged, opaque) 500.

use actix_web::{
    HttpResponse, ResponseError,
    http::{StatusCode, header},
};

use crate::{templates, token_client::TokenError};

/// An error as a browser sees it.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// Malformed or missing parameters (`what` says which, in the user's words).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The state is unknown: expired, already used, or never issued.
    #[error("the sign-in state expired or was already used")]
    StateExpired,
    /// The state was started by another browser (its binding cookie does not match).
    #[error("the sign-in was started in another browser")]
    WrongBrowser,
    /// Snyk redirected back with an OAuth error other than `access_denied`, for a sign-in this
    /// browser started: only then is Snyk's text shown.
    #[error("Snyk returned error {code}")]
    Snyk {
        code: String,
        description: Option<String>,
    },
    /// An OAuth error for a state that is unknown or not this browser's: anyone can craft such a
    /// link, so its text is not shown (no phishing text under our name).
    #[error("a sign-in error for an unknown or foreign state")]
    UnverifiedSignInError,
    /// token-service (Snyk behind it) refused the authorization code or verifier.
    #[error("Snyk did not accept the authorization: {0}")]
    CodeRejected(String),
    /// Unknown route, or an install this browser may not see: the same page for both.
    #[error("not found")]
    NotFound,
    /// Another method on a known path; `allow` lists the ones it takes.
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    /// A state-changing form posted from another site (CSRF) or without a way to tell.
    #[error("cross-site request refused")]
    CrossSite,
    /// Reconnect or Disconnect of an install this browser's session does not hold (another
    /// browser, a signed-out or expired session). Decided from the session alone, before any
    /// lookup, so the page is the same whether the install exists or not.
    #[error("the install is not this browser's")]
    NotYourInstall,
    /// A Reconnect reached token-service after the install was deleted.
    #[error("the install no longer exists")]
    InstallGone,
    /// Too many sign-ins started from one address; retry after that many seconds.
    #[error("rate limited")]
    TooManyRequests { retry_after_secs: u64 },
    /// A service we depend on is down: `what` names it for the user.
    #[error("{what} is unavailable: {detail}")]
    Unavailable { what: &'static str, detail: String },
    /// Our side failed or is misconfigured; the detail is logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl PageError {
    fn page(&self) -> String {
        match self {
            PageError::BadRequest(what) => templates::message(
                "This link is not valid",
                &format!(
                    "The request could not be understood: {what}. Start the installation again from the beginning."
                ),
                true,
            ),
            PageError::StateExpired => templates::message(
                "This sign-in link has expired",
                "This sign-in link has expired or was already used; start again.",
                true,
            ),
            PageError::WrongBrowser => templates::message(
                "This sign-in was started elsewhere",
                "This sign-in was started in another browser (or your cookies were cleared), so it cannot be \
                 finished here; start again in this browser.",
                true,
            ),
            PageError::Snyk { code, description } => {
                templates::snyk_error(code, description.as_deref())
            }
            PageError::UnverifiedSignInError => templates::message(
                "The installation was not completed",
                "Snyk did not authorize the app, or this link does not belong to a sign-in started in \
                 this browser. Start again in this browser.",
                true,
            ),
            PageError::CodeRejected(_) => templates::message(
                "Snyk did not accept the authorization",
                "Snyk did not accept the authorization (it may have expired or been used already). Please try again.",
                true,
            ),
            PageError::NotFound => {
                templates::message("Page not found", "There is no page at this address.", false)
            }
            PageError::MethodNotAllowed { .. } => templates::message(
                "Not allowed",
                "This page cannot be requested that way.",
                false,
            ),
            PageError::CrossSite => templates::message(
                "Request refused",
                "This request did not come from this app's own pages, so it was refused. Use the \
                 button on the app's page instead.",
                false,
            ),
            PageError::NotYourInstall => templates::message(
                "This installation cannot be changed from here",
                "Only the browser that installed it, while still signed in, can reconnect or \
                 disconnect an installation. Nothing was changed.",
                false,
            ),
            PageError::InstallGone => templates::message(
                "This installation no longer exists",
                "This installation was disconnected or deleted, so it cannot be reconnected. \
                 Install the app again to create a new installation.",
                true,
            ),
            PageError::TooManyRequests { .. } => templates::message(
                "Too many sign-ins",
                "Too many installations were started from your network in the last minute. Please \
                 wait a minute, then try again.",
                false,
            ),
            PageError::Unavailable { what, .. } => templates::message(
                "Temporarily unavailable",
                &format!(
                    "The {what} is unavailable right now, so this could not be completed. Please try again in a minute."
                ),
                true,
            ),
            PageError::Internal(_) => templates::message(
                "Something went wrong",
                "Something went wrong on our side. Please try again later.",
                true,
            ),
        }
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            PageError::BadRequest(_)
            | PageError::StateExpired
            | PageError::WrongBrowser
            | PageError::Snyk { .. }
            | PageError::UnverifiedSignInError
            | PageError::CodeRejected(_) => StatusCode::BAD_REQUEST,
            PageError::NotFound => StatusCode::NOT_FOUND,
            PageError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            PageError::CrossSite | PageError::NotYourInstall => StatusCode::FORBIDDEN,
            PageError::InstallGone => StatusCode::GONE,
            PageError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            PageError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            PageError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            PageError::Internal(detail) => tracing::error!(error = %detail, "internal error"),
            PageError::Unavailable { what, detail } => {
                tracing::warn!(%what, %detail, "dependency unavailable")
            }
            _ => {}
        }
        let mut res = HttpResponse::build(self.status_code());
        res.content_type("text/html; charset=utf-8");
        if matches!(self, PageError::Unavailable { .. }) {
            res.insert_header((header::RETRY_AFTER, "5"));
        }
        match self {
            PageError::MethodNotAllowed { allow } => {
                res.insert_header((header::ALLOW, *allow));
            }
            PageError::TooManyRequests { retry_after_secs } => {
                res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            _ => {}
        }
        res.body(self.page())
    }
}

impl From<TokenError> for PageError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Rejected(m) => PageError::CodeRejected(m),
            TokenError::NotFound => PageError::NotFound,
            TokenError::Unavailable(detail) => PageError::Unavailable {
                what: "installation service",
                detail,
            },
            e @ (TokenError::Misconfigured(_) | TokenError::Failed(_)) => {
                PageError::Internal(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody as _;

    fn body(e: &PageError) -> String {
        let bytes = e
            .error_response()
            .into_body()
            .try_into_bytes()
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn statuses_are_stable() {
        let cases = [
            (PageError::BadRequest("x".into()), 400),
            (PageError::StateExpired, 400),
            (PageError::WrongBrowser, 400),
            (
                PageError::Snyk {
                    code: "invalid_scope".into(),
                    description: None,
                },
                400,
            ),
            (PageError::CodeRejected("bad".into()), 400),
            (PageError::UnverifiedSignInError, 400),
            (PageError::NotFound, 404),
            (PageError::MethodNotAllowed { allow: "POST" }, 405),
            (PageError::CrossSite, 403),
            (PageError::NotYourInstall, 403),
            (PageError::InstallGone, 410),
            (
                PageError::TooManyRequests {
                    retry_after_secs: 7,
                },
                429,
            ),
            (
                PageError::Unavailable {
                    what: "x",
                    detail: "y".into(),
                },
                503,
            ),
            (PageError::Internal("z".into()), 500),
        ];
        for (e, status) in cases {
            assert_eq!(e.error_response().status().as_u16(), status, "{e:?}");
        }
    }

    #[test]
    fn details_stay_out_of_pages() {
        assert!(!body(&PageError::Internal("secret detail".into())).contains("secret detail"));
        assert!(!body(&PageError::CodeRejected("invalid_grant: code abc".into())).contains("abc"));
        let unavailable = PageError::Unavailable {
            what: "installation service",
            detail: "tcp connect error".into(),
        };
        assert!(!body(&unavailable).contains("tcp"));
        assert_eq!(
            unavailable
                .error_response()
                .headers()
                .get("retry-after")
                .map(|v| v.as_bytes()),
            Some(&b"5"[..])
        );
    }

    #[test]
    fn retry_after_and_allow_headers() {
        let limited = PageError::TooManyRequests {
            retry_after_secs: 7,
        }
        .error_response();
        assert_eq!(
            limited.headers().get("retry-after").map(|v| v.as_bytes()),
            Some(&b"7"[..])
        );
        let wrong = PageError::MethodNotAllowed { allow: "POST" }.error_response();
        assert_eq!(
            wrong.headers().get("allow").map(|v| v.as_bytes()),
            Some(&b"POST"[..])
        );
    }

    #[test]
    fn token_errors_map_to_pages() {
        assert!(matches!(
            PageError::from(TokenError::Rejected("x".into())),
            PageError::CodeRejected(_)
        ));
        assert!(matches!(
            PageError::from(TokenError::Unavailable("x".into())),
            PageError::Unavailable { .. }
        ));
        assert!(matches!(
            PageError::from(TokenError::Misconfigured("x".into())),
            PageError::Internal(_)
        ));
        assert!(matches!(
            PageError::from(TokenError::NotFound),
            PageError::NotFound
        ));
    }
}
