//! The one place that turns errors into answers: a status and the contract's
//! `{"code", "message"}` body ([`ErrorBody`]) with a stable [`ErrorCode`].

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use snykapps_projects_api::{ErrorBody, ErrorCode};

use crate::{listing::ListError, tokens::TokenError};

/// An error as the HTTP API reports it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    /// A known caller asking for a route it is not granted.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    /// The org is unknown (to token-service or to Snyk), or the install does not cover it.
    #[error("{0}")]
    UnknownOrg(String),
    /// No such install (install route).
    #[error("{0}")]
    UnknownInstall(String),
    #[error("no such route")]
    NoRoute,
    #[error("{0}")]
    NeedsReauth(String),
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after_secs: u64,
    },
    /// The install's Snyk request budget has no room before the listing's deadline.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    /// More projects than one listing returns.
    #[error("{0}")]
    TooManyProjects(String),
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn code(&self) -> ErrorCode {
        match self {
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::UnknownOrg(_) => ErrorCode::UnknownOrg,
            ApiError::UnknownInstall(_) => ErrorCode::UnknownInstall,
            ApiError::NoRoute => ErrorCode::NotFound,
            ApiError::NeedsReauth(_) => ErrorCode::NeedsReauth,
            ApiError::Unavailable { .. } => ErrorCode::Unavailable,
            ApiError::RateLimited { .. } => ErrorCode::RateLimited,
            ApiError::TooManyProjects(_) => ErrorCode::TooManyProjects,
            ApiError::BadGateway(_) => ErrorCode::UpstreamError,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnknownOrg(_) | ApiError::UnknownInstall(_) | ApiError::NoRoute => {
                StatusCode::NOT_FOUND
            }
            ApiError::NeedsReauth(_) => StatusCode::CONFLICT,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            // The request is well formed, its org exists and Snyk answered: nothing a retry would
            // change (not 5xx), and not the request's own size (413). The caller must ask for
            // less, with the filters.
            ApiError::TooManyProjects(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let mut res = HttpResponse::build(self.status_code());
        if let ApiError::Unavailable {
            retry_after_secs, ..
        }
        | ApiError::RateLimited {
            retry_after_secs, ..
        } = self
        {
            res.insert_header(("Retry-After", retry_after_secs.to_string()));
        }
        if let ApiError::Unauthorized(_) = self {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        res.json(ErrorBody {
            code: self.code(),
            message,
        })
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::UnknownOrg => ApiError::UnknownOrg("no install serves this org".into()),
            TokenError::UnknownInstall => ApiError::UnknownInstall("no such install".into()),
            TokenError::NeedsReauth(m) => ApiError::NeedsReauth(m),
            TokenError::Unavailable(m) => ApiError::Unavailable {
                message: format!("token-service is unavailable: {m}"),
                retry_after_secs: 2,
            },
            TokenError::RateLimited { retry_after } => ApiError::RateLimited {
                message: format!(
                    "the install's Snyk request budget (SNYK_RATE_LIMIT_PER_MINUTE) has no room for this listing within PROJECTS_SERVICE_DEADLINE_SECONDS; retry in {} s",
                    service_runtime::retry_after_seconds(retry_after)
                ),
                retry_after_secs: service_runtime::retry_after_seconds(retry_after),
            },
            TokenError::Misconfigured(m) => {
                ApiError::Internal(format!("token-service refused this service: {m}"))
            }
        }
    }
}

impl From<ListError> for ApiError {
    fn from(e: ListError) -> Self {
        match e {
            ListError::Token(t) => t.into(),
            ListError::OrgNotVisible => {
                ApiError::UnknownOrg("Snyk does not show this org to the install".into())
            }
            e @ ListError::StillUnauthorized(_) => ApiError::BadGateway(e.to_string()),
            ListError::Unavailable { error, retry_after } => ApiError::Unavailable {
                message: format!("Snyk is unavailable: {error}"),
                retry_after_secs: retry_after.map_or(5, |d| d.as_secs().max(1)),
            },
            ListError::Upstream(e) => {
                ApiError::BadGateway(format!("Snyk refused the request: {e}"))
            }
            e @ ListError::DeadlinePassed(_) => ApiError::Unavailable {
                message: e.to_string(),
                retry_after_secs: 5,
            },
            e @ ListError::AnswerTooLarge(_) => ApiError::BadGateway(e.to_string()),
            e @ ListError::TooManyProjects { .. } => ApiError::TooManyProjects(e.to_string()),
        }
    }
}
