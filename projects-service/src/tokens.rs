//! The token-service client: an access token for an org (whoever serves it) or for one install,
//! and a forced refresh of exactly the token Snyk rejected, asked the same way.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use service_runtime::grpc::{TokenServiceChannel, TokenServiceUrls};
use snykapps_ids::{InstallId, OrgId};
use snykapps_proto::{
    token_service,
    token_v1::{
        self as pb, force_refresh_request, get_access_token_request,
        token_service_client::TokenServiceClient,
    },
};
use tonic::Code;

/// Whose token: token-service's two ways of naming a grant (`GetAccessToken`'s `target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Whoever serves the org: its newest ACTIVE install, older ones as fallbacks.
    Org(OrgId),
    /// This install and no other, whatever org is listed with its token.
    Install(InstallId),
}

impl Target {
    fn for_get(self) -> get_access_token_request::Target {
        match self {
            Target::Org(org) => get_access_token_request::Target::OrgId(org.to_string()),
            Target::Install(id) => get_access_token_request::Target::InstallId(id.to_string()),
        }
    }

    fn for_refresh(self) -> force_refresh_request::Target {
        match self {
            Target::Org(org) => force_refresh_request::Target::OrgId(org.to_string()),
            Target::Install(id) => force_refresh_request::Target::InstallId(id.to_string()),
        }
    }
}

/// Why no token could be had.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("no install serves this org")]
    UnknownOrg,
    #[error("no such install")]
    UnknownInstall,
    #[error("the install needs re-authorization: {0}")]
    NeedsReauth(String),
    #[error("token-service is unavailable: {0}")]
    Unavailable(String),
    /// Our own misconfiguration (wrong key, bad request): not the caller's fault.
    #[error("token-service refused this service: {0}")]
    Misconfigured(String),
}

/// A cheap-to-clone handle on token-service (one or several replicas).
#[derive(Debug, Clone)]
pub struct TokenSource {
    channel: TokenServiceChannel,
}

impl TokenSource {
    /// Lazily connects to `urls`; calls fail with `Unavailable` while no replica can be reached.
    pub fn new(
        urls: &TokenServiceUrls,
        ca_pem: Option<&[u8]>,
        api_key: &SecretString,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        Ok(TokenSource {
            channel: TokenServiceChannel::new(urls, ca_pem, api_key, timeout)?,
        })
    }

    /// A valid access token of `target`.
    pub async fn get(&self, target: Target) -> Result<SecretString, TokenError> {
        let req = pb::GetAccessTokenRequest {
            target: Some(target.for_get()),
            min_validity_seconds: 0,
        };
        let token = self
            .channel
            .call(req, |channel, req| async move {
                TokenServiceClient::new(channel).get_access_token(req).await
            })
            .await
            .map_err(|s| map_status(target, s))?;
        Ok(token.into_inner().access_token.into())
    }

    /// Snyk answered 401 to `rejected`: a newer token (token-service refreshes at most once).
    pub async fn force_refresh(
        &self,
        target: Target,
        rejected: &SecretString,
    ) -> Result<SecretString, TokenError> {
        let req = pb::ForceRefreshRequest {
            target: Some(target.for_refresh()),
            rejected_access_token: rejected.expose_secret().to_owned(),
        };
        let token = self
            .channel
            .call(req, |channel, req| async move {
                TokenServiceClient::new(channel).force_refresh(req).await
            })
            .await
            .map_err(|s| map_status(target, s))?;
        Ok(token.into_inner().access_token.into())
    }

    /// Is token-service up and serving the token API? (gRPC health check)
    pub async fn ready(&self) -> bool {
        self.channel.serving(token_service::SERVICE_NAME).await
    }
}

fn map_status(target: Target, s: tonic::Status) -> TokenError {
    match s.code() {
        Code::NotFound => match target {
            Target::Org(_) => TokenError::UnknownOrg,
            Target::Install(_) => TokenError::UnknownInstall,
        },
        Code::FailedPrecondition => TokenError::NeedsReauth(s.message().to_owned()),
        Code::Unauthenticated | Code::InvalidArgument | Code::PermissionDenied => {
            TokenError::Misconfigured(s.message().to_owned())
        }
        _ => TokenError::Unavailable(format!("{:?}: {}", s.code(), s.message())),
    }
}
