//! The token-service client (gRPC): hands the authorization code over (`CompleteInstall`, for a
//! new install or a Reconnect of an existing one), reads installs back (`GetInstall`) and deletes
//! them (`DeleteInstall`, Disconnect). Every call carries our key and the current span's
//! `traceparent`, and has a deadline.

use std::{fmt, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use service_runtime::grpc::{TokenServiceChannel, TokenServiceUrls};
use snykapps_ids::InstallId;
use snykapps_proto::{
    token_service,
    token_v1::{self as pb, token_service_client::TokenServiceClient},
};
use tonic::Code;

use crate::state::Purpose;

/// Why token-service could not do what we asked.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// `INVALID_ARGUMENT`: Snyk refused the code or verifier (or our request was malformed).
    #[error("token-service refused the request: {0}")]
    Rejected(String),
    #[error("no such install")]
    NotFound,
    /// Down, unreachable, overloaded or too slow: worth trying again later.
    #[error("token-service is unavailable: {0}")]
    Unavailable(String),
    /// Our key was refused: a deployment mistake, not the user's.
    #[error("token-service refused auth-service's key: {0}")]
    Misconfigured(String),
    /// Anything else token-service reported (its internal errors are opaque to us).
    #[error("token-service failed: {0}")]
    Failed(String),
}

/// A cheap-to-clone handle on token-service.
#[derive(Clone)]
pub struct TokenClient {
    channel: TokenServiceChannel,
}

impl fmt::Debug for TokenClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenClient")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl TokenClient {
    /// Connects lazily: auth-service starts while token-service is down, and calls fail with
    /// [`TokenError::Unavailable`] until it is up.
    pub fn new(
        urls: &TokenServiceUrls,
        ca_pem: Option<&[u8]>,
        api_key: &SecretString,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        Ok(TokenClient {
            channel: TokenServiceChannel::new(urls, ca_pem, api_key, timeout)?,
        })
    }

    /// Redeems `code` (with its PKCE verifier) for a new install, or, for a
    /// [`Purpose::Reconnect`], for a new grant of that install under the same id (token-service
    /// answers NOT_FOUND when the install no longer exists).
    #[tracing::instrument(skip_all, fields(install_id = tracing::field::Empty, ?purpose))]
    pub async fn complete_install(
        &self,
        code: &str,
        verifier: &SecretString,
        redirect_uri: &str,
        purpose: Purpose,
    ) -> Result<pb::Install, TokenError> {
        let req = pb::CompleteInstallRequest {
            code: code.to_owned(),
            code_verifier: verifier.expose_secret().to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            reauthorize_install_id: match purpose {
                Purpose::Install => String::new(),
                Purpose::Reconnect(id) => id.to_string(),
            },
        };
        let install = self
            .channel
            .call(req, |channel, req| async move {
                TokenServiceClient::new(channel).complete_install(req).await
            })
            .await
            .map_err(map_status)?
            .into_inner();
        tracing::Span::current().record("install_id", install.install_id.as_str());
        Ok(install)
    }

    #[tracing::instrument(skip(self))]
    pub async fn get_install(&self, install_id: &InstallId) -> Result<pb::Install, TokenError> {
        let req = pb::GetInstallRequest {
            install_id: install_id.to_string(),
        };
        Ok(self
            .channel
            .call(req, |channel, req| async move {
                TokenServiceClient::new(channel).get_install(req).await
            })
            .await
            .map_err(map_status)?
            .into_inner())
    }

    /// Deletes the install: token-service revokes its grant at Snyk, then forgets it. Deleting an
    /// install that is already gone succeeds (the RPC is idempotent).
    #[tracing::instrument(skip(self))]
    pub async fn delete_install(&self, install_id: &InstallId) -> Result<(), TokenError> {
        let req = pb::DeleteInstallRequest {
            install_id: install_id.to_string(),
        };
        self.channel
            .call(req, |channel, req| async move {
                TokenServiceClient::new(channel).delete_install(req).await
            })
            .await
            .map_err(map_status)?;
        Ok(())
    }

    /// Does token-service answer its gRPC health check as serving?
    pub async fn ready(&self) -> bool {
        self.channel.serving(token_service::SERVICE_NAME).await
    }
}

fn map_status(s: tonic::Status) -> TokenError {
    let message = || format!("{:?}: {}", s.code(), s.message());
    match s.code() {
        Code::InvalidArgument => TokenError::Rejected(s.message().to_owned()),
        Code::NotFound => TokenError::NotFound,
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Cancelled => TokenError::Unavailable(message()),
        Code::Unauthenticated | Code::PermissionDenied => {
            TokenError::Misconfigured(s.message().to_owned())
        }
        _ => TokenError::Failed(message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Status;

    #[test]
    fn statuses_map_to_what_the_page_needs() {
        assert!(
            matches!(map_status(Status::invalid_argument("bad code")), TokenError::Rejected(m) if m == "bad code")
        );
        assert_eq!(map_status(Status::not_found("x")), TokenError::NotFound);
        for s in [
            Status::unavailable("down"),
            Status::deadline_exceeded("slow"),
            Status::cancelled("gone"),
        ] {
            assert!(matches!(map_status(s), TokenError::Unavailable(_)));
        }
        assert!(matches!(
            map_status(Status::unauthenticated("key")),
            TokenError::Misconfigured(_)
        ));
        assert!(matches!(
            map_status(Status::internal("internal error")),
            TokenError::Failed(_)
        ));
    }
}
