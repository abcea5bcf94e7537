//! Domain errors of token-service and the one place that maps them to `tonic::Status`.

use snykapps_proto::token_service;
use tonic::{Code, Status};

use crate::{
    grant::{BadId, InstallId, OrgId, ReauthReason},
    page_token::BadPageToken,
    snyk::SnykError,
    store::StoreError,
    watch::WatchError,
};

/// Everything that can go wrong in a request. Cloneable, because one refresh's outcome is shared
/// by every caller that waited for it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("install {0} not found")]
    UnknownInstall(InstallId),
    #[error("no install serves org {0}")]
    UnknownOrg(OrgId),
    #[error("install {0} needs re-authorization ({reason})", reason = .1.as_str())]
    NeedsReauth(InstallId, ReauthReason),
    /// Snyk refused an authorization code (bad, expired or reused code, wrong verifier).
    #[error("Snyk rejected the authorization code: {0}")]
    CodeRejected(String),
    #[error("{0}")]
    Unavailable(String),
    /// The install's Snyk request budget has no permit before the caller's deadline.
    #[error(
        "install {install} has no Snyk request permit before the deadline (SNYK_RATE_LIMIT_PER_MINUTE); the next is free in {} ms",
        retry_after.as_millis()
    )]
    RateLimited {
        install: InstallId,
        retry_after: std::time::Duration,
    },
    /// Our own fault or misconfiguration; the message is logged, the caller sees it opaque.
    #[error("{0}")]
    Internal(String),
}

impl From<BadId> for Error {
    fn from(e: BadId) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

impl From<BadPageToken> for Error {
    fn from(e: BadPageToken) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(e) => {
                Error::Unavailable(format!("storage is unavailable: {e}"))
            }
            e @ StoreError::NotDurable(_) => Error::Unavailable(e.to_string()),
            // A random v4 id colliding: our fault, never the caller's.
            e @ StoreError::InstallIdTaken(_) => Error::Internal(e.to_string()),
            // One unreadable record is an error for that install only.
            e @ (StoreError::Unreadable { .. }
            | StoreError::Corrupt { .. }
            | StoreError::BadEventStream(_)) => Error::Internal(e.to_string()),
        }
    }
}

impl From<SnykError> for Error {
    fn from(e: SnykError) -> Self {
        match e {
            // Every configured secret refused: the caller is told plainly (its message names
            // SNYK_CLIENT_SECRET, never a secret), as UNAVAILABLE: nothing the caller did, and
            // it clears when the configuration is fixed; never NEEDS_REAUTH, the grant is fine.
            e @ SnykError::ClientRefused { .. } => Error::Unavailable(e.to_string()),
            e @ SnykError::Rejected { .. } => Error::Internal(e.to_string()),
            e @ (SnykError::Transient { .. } | SnykError::NotSent(_) | SnykError::Lost(_)) => {
                Error::Unavailable(e.to_string())
            }
            e @ SnykError::Unexpected(_) => Error::Unavailable(e.to_string()),
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::InvalidArgument(_) | Error::CodeRejected(_) => Code::InvalidArgument,
            Error::UnknownInstall(_) | Error::UnknownOrg(_) => Code::NotFound,
            Error::NeedsReauth(..) => Code::FailedPrecondition,
            Error::Unavailable(_) => Code::Unavailable,
            Error::RateLimited { retry_after, .. } => {
                let mut status = Status::resource_exhausted(e.to_string());
                let seconds = service_runtime::retry_after_seconds(*retry_after);
                if let Ok(v) = seconds.to_string().parse() {
                    status.metadata_mut().insert(token_service::RETRY_AFTER, v);
                }
                return status;
            }
            Error::Internal(msg) => {
                tracing::error!(error = %msg, "internal error");
                return Status::internal("internal error");
            }
        };
        Status::new(code, e.to_string())
    }
}

impl From<WatchError> for Status {
    fn from(e: WatchError) -> Self {
        let message = e.to_string();
        let code = match e {
            WatchError::Store(e) => return Status::from(Error::from(e)),
            WatchError::BadStart(_) => Code::InvalidArgument,
            WatchError::Trimmed { .. } | WatchError::FromTheFuture { .. } => Code::OutOfRange,
            WatchError::Cluster => Code::FailedPrecondition,
            WatchError::TooManyWatchers => Code::ResourceExhausted,
            WatchError::ShuttingDown => Code::Unavailable,
        };
        Status::new(code, message)
    }
}

/// tonic answers a request body that is not a valid protobuf message with INTERNAL ("failed to
/// decode Protobuf message"), before any of our code runs. That is the caller's fault, so it is
/// rewritten to INVALID_ARGUMENT on the way out (a "trailers-only" response carries the status
/// in its headers) by the `decode_status` layer.
pub fn decode_failures_are_invalid_argument(headers: &mut http::HeaderMap) {
    // The status first: on every OK response the message is never looked up.
    if headers.get(&GRPC_STATUS).is_none_or(|v| v != "13") {
        return;
    }
    let is_decode = headers
        .get(&GRPC_MESSAGE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| {
            m.starts_with("failed%20to%20decode%20Protobuf%20message")
                || m.starts_with("failed to decode Protobuf message")
        });
    if is_decode {
        headers.insert(GRPC_STATUS.clone(), http::HeaderValue::from_static("3"));
    }
}

/// The gRPC status header, named once (a `&str` name is parsed and checked on every lookup).
pub static GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: http::HeaderName = http::HeaderName::from_static("grpc-message");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecodable_requests_become_invalid_argument() {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", http::HeaderValue::from_static("13"));
        h.insert(
            "grpc-message",
            http::HeaderValue::from_static("failed%20to%20decode%20Protobuf%20message:%20x"),
        );
        decode_failures_are_invalid_argument(&mut h);
        assert_eq!(h["grpc-status"], "3");
        // Our own INTERNAL errors are left alone.
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", http::HeaderValue::from_static("13"));
        h.insert(
            "grpc-message",
            http::HeaderValue::from_static("internal%20error"),
        );
        decode_failures_are_invalid_argument(&mut h);
        assert_eq!(h["grpc-status"], "13");
    }

    #[test]
    fn statuses_are_stable() {
        let id = InstallId::new_random();
        let cases = [
            (Error::InvalidArgument("x".into()), Code::InvalidArgument),
            (Error::CodeRejected("bad".into()), Code::InvalidArgument),
            (Error::UnknownInstall(id), Code::NotFound),
            (
                Error::NeedsReauth(id, ReauthReason::RefreshInDoubt),
                Code::FailedPrecondition,
            ),
            (Error::Unavailable("x".into()), Code::Unavailable),
            (Error::Internal("secret detail".into()), Code::Internal),
        ];
        for (e, code) in cases {
            assert_eq!(Status::from(e).code(), code);
        }
        assert_eq!(
            Status::from(Error::Internal("secret detail".into())).message(),
            "internal error"
        );
        let refused = Status::from(Error::from(SnykError::ClientRefused {
            answer: "invalid_client".into(),
            count: 2,
        }));
        assert_eq!(refused.code(), Code::Unavailable);
        assert!(
            refused
                .message()
                .contains("SNYK_CLIENT_SECRET (2 configured)"),
            "{refused:?}"
        );
        let bad_page = Status::from(Error::from(crate::page_token::BadPageToken));
        assert_eq!(bad_page.code(), Code::InvalidArgument);
        assert_eq!(
            bad_page.message(),
            "page_token is not one this service issued"
        );
        assert_eq!(
            Status::from(Error::NeedsReauth(id, ReauthReason::RefreshInDoubt)).message(),
            format!("install {id} needs re-authorization (refresh_in_doubt)")
        );
    }
}
