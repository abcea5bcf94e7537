//! The token-service client: an access token for an org (whoever serves it) or for one install,
//! a forced refresh of exactly the token Snyk rejected, asked the same way, and a permit of the
//! install's Snyk request budget before each request sent with its token.

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
use tokio::time::Instant;
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
    /// The install's Snyk request budget has no permit before the deadline.
    #[error("no Snyk request permit before the deadline; the next in {} ms", retry_after.as_millis())]
    RateLimited { retry_after: Duration },
    /// Our own misconfiguration (wrong key, bad request): not the caller's fault.
    #[error("token-service refused this service: {0}")]
    Misconfigured(String),
}

/// An access token, the install it belongs to (whose budget its requests count against), and
/// when it expires.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub secret: SecretString,
    pub install: InstallId,
    expires_at: Option<std::time::SystemTime>,
}

impl AccessToken {
    fn from_wire(token: pb::AccessToken) -> Result<Self, TokenError> {
        let install = InstallId::parse(&token.install_id).map_err(|_| {
            TokenError::Unavailable("token-service answered a malformed install id".into())
        })?;
        let expires_at = token.expires_at.and_then(|t| {
            let since_epoch = Duration::new(u64::try_from(t.seconds).ok()?, 0);
            std::time::UNIX_EPOCH.checked_add(since_epoch)
        });
        Ok(AccessToken {
            secret: token.access_token.into(),
            install,
            expires_at,
        })
    }

    /// Does it expire within `margin` (or is its expiry unknown)? A token held while waiting for
    /// a permit may have run out meanwhile.
    pub fn expires_within(&self, margin: Duration) -> bool {
        self.expires_at
            .is_none_or(|at| at < std::time::SystemTime::now() + margin)
    }
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
    pub async fn get(&self, target: Target) -> Result<AccessToken, TokenError> {
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
        AccessToken::from_wire(token.into_inner())
    }

    /// Snyk answered 401 to `rejected`: a newer token (token-service refreshes at most once).
    pub async fn force_refresh(
        &self,
        target: Target,
        rejected: &AccessToken,
    ) -> Result<AccessToken, TokenError> {
        let req = pb::ForceRefreshRequest {
            target: Some(target.for_refresh()),
            rejected_access_token: rejected.secret.expose_secret().to_owned(),
        };
        let token = self
            .channel
            .call(req, |channel, req| async move {
                TokenServiceClient::new(channel).force_refresh(req).await
            })
            .await
            .map_err(|s| map_status(target, s))?;
        AccessToken::from_wire(token.into_inner())
    }

    /// Waits, until `deadline` at the latest, for a permit to send one Snyk request with
    /// `install`'s token. `rate_limited`: the previous request was answered 429 with this
    /// `Retry-After` (None: Snyk sent none), which pauses every replica's requests for the install.
    pub async fn permit(
        &self,
        install: InstallId,
        deadline: Instant,
        rate_limited: Option<Option<Duration>>,
    ) -> Result<(), TokenError> {
        let req = pb::AcquireSnykPermitRequest {
            install_id: install.to_string(),
            // 0 on the wire is "nothing to report"; a 429 without Retry-After is a minute's
            // pause (Snyk: "until a quiet minute passes"), as the contract says.
            rate_limited_retry_after_seconds: rate_limited.map_or(0, |after| {
                after.map_or(60, |d| {
                    u32::try_from(d.as_secs()).unwrap_or(u32::MAX).max(1)
                })
            }),
        };
        let timeout = deadline.saturating_duration_since(Instant::now());
        self.channel
            .call_within(req, timeout, |channel, req| async move {
                TokenServiceClient::new(channel)
                    .acquire_snyk_permit(req)
                    .await
            })
            .await
            .map_err(|s| map_status(Target::Install(install), s))?;
        Ok(())
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
        Code::ResourceExhausted => TokenError::RateLimited {
            retry_after: s
                .metadata()
                .get(token_service::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .map_or(Duration::from_secs(1), Duration::from_secs),
        },
        Code::Unauthenticated | Code::InvalidArgument | Code::PermissionDenied => {
            TokenError::Misconfigured(s.message().to_owned())
        }
        _ => TokenError::Unavailable(format!("{:?}: {}", s.code(), s.message())),
    }
}
