//! The HTTP contract of projects-service that its callers share: the JSON error body
//! `{"code", "message"}` and its stable codes, written by projects-service and read by
//! auth-service from this one definition (as `proto/` holds token-service's gRPC contract).

use std::fmt;

use serde::{Deserialize, Serialize};

/// An error answer of projects-service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// For a person; callers decide on `code` only.
    #[serde(default)]
    pub message: String,
}

/// The stable, machine-readable `code` of an error answer.
///
/// Three codes come with a 404, each for its own kind of miss: the org (`unknown_org`) or the
/// install (`unknown_install`) a valid path names, and a path that names no route at all
/// (`not_found`, a caller's mistake rather than a state of the data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 401: no key, or not a key of `PROJECTS_SERVICE_CLIENT_KEYS`.
    Unauthorized,
    /// 403: a known caller on a route it is not granted.
    Forbidden,
    /// 400: an id that is not a UUID, a bad or unknown filter.
    BadRequest,
    /// 404: no install serves the org, or Snyk does not show it to the install.
    UnknownOrg,
    /// 404: no such install.
    UnknownInstall,
    /// 404: no such route.
    NotFound,
    /// 409: the install must be authorized again.
    NeedsReauth,
    /// 503: Snyk or token-service unavailable; `Retry-After` is set.
    Unavailable,
    /// 429: the install's Snyk request budget (`SNYK_RATE_LIMIT_PER_MINUTE`, shared by every
    /// replica) has no room for the listing before its deadline
    /// (`PROJECTS_SERVICE_DEADLINE_SECONDS`); `Retry-After` says when it would have.
    RateLimited,
    /// 422: the org has more projects than one listing returns (`PROJECTS_SERVICE_MAX_PROJECTS`);
    /// the same request fails the same way, a narrower one (the filters) may not.
    TooManyProjects,
    /// 502: Snyk refused the request, or rejected a freshly refreshed token.
    UpstreamError,
    /// 500.
    Internal,
    /// A code this build does not know (from a newer projects-service), as it was sent.
    #[serde(untagged)]
    Other(String),
}

impl ErrorCode {
    /// The code as it is on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownOrg => "unknown_org",
            ErrorCode::UnknownInstall => "unknown_install",
            ErrorCode::NotFound => "not_found",
            ErrorCode::NeedsReauth => "needs_reauth",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManyProjects => "too_many_projects",
            ErrorCode::UpstreamError => "upstream_error",
            ErrorCode::Internal => "internal",
            ErrorCode::Other(code) => code,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const KNOWN: [(ErrorCode, &str); 12] = [
        (ErrorCode::Unauthorized, "unauthorized"),
        (ErrorCode::Forbidden, "forbidden"),
        (ErrorCode::BadRequest, "bad_request"),
        (ErrorCode::UnknownOrg, "unknown_org"),
        (ErrorCode::UnknownInstall, "unknown_install"),
        (ErrorCode::NotFound, "not_found"),
        (ErrorCode::NeedsReauth, "needs_reauth"),
        (ErrorCode::Unavailable, "unavailable"),
        (ErrorCode::RateLimited, "rate_limited"),
        (ErrorCode::TooManyProjects, "too_many_projects"),
        (ErrorCode::UpstreamError, "upstream_error"),
        (ErrorCode::Internal, "internal"),
    ];

    /// Each code is written as the README documents it, reads back as itself, and `as_str`
    /// (used in messages) agrees with the JSON.
    #[test]
    fn every_code_round_trips_through_json() {
        for (code, wire) in KNOWN {
            let body = ErrorBody {
                code: code.clone(),
                message: "m".into(),
            };
            let json = serde_json::to_string(&body).unwrap();
            assert_eq!(json, format!(r#"{{"code":"{wire}","message":"m"}}"#));
            assert_eq!(serde_json::from_str::<ErrorBody>(&json).unwrap(), body);
            assert_eq!(code.as_str(), wire);
        }
    }

    /// A code from a newer projects-service is kept as sent, and a body without a message is
    /// still read.
    #[test]
    fn an_unknown_code_is_kept_and_the_message_is_optional() {
        let body: ErrorBody = serde_json::from_str(r#"{"code":"gone_fishing"}"#).unwrap();
        assert_eq!(body.code, ErrorCode::Other("gone_fishing".into()));
        assert_eq!(body.code.to_string(), "gone_fishing");
        assert_eq!(body.message, "");
        assert_eq!(
            serde_json::to_string(&body.code).unwrap(),
            r#""gone_fishing""#
        );
        assert!(serde_json::from_str::<ErrorBody>(r#"{"code":7}"#).is_err());
    }
}
