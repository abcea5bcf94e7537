//! A new install, or a reconnect of one that exists (docs/design.md, "Reconnect"): the
//! authorization code is exchanged at Snyk, the orgs the new grant may see are listed, and the
//! install is created or its grant replaced. From the exchange on, a live grant exists at Snyk:
//! one this flow cannot keep is revoked, so a failed install leaves nothing behind, and so is the
//! grant a reconnect replaced, while it may still be alive.

use std::{fmt, time::Duration};

use secrecy::SecretString;
use tokio::time::Instant;

use crate::{
    backoff::Backoff,
    budget::SnykBudget,
    error::Error,
    grant::{Grant, InstallId, Org, ReauthReason, Status, now_millis},
    snyk::{OAuthError, SnykClient, SnykError},
    store::Store,
};

/// Pauses between tries of a new install's org listing when Snyk asks for no particular pause.
const LIST_ORGS_BACKOFF: Backoff = Backoff::constant(Duration::from_millis(300));
/// The longest pause of that listing, also when Snyk asks for a longer one.
const LIST_ORGS_MAX_PAUSE: Duration = Duration::from_secs(3);

/// What came back from a user's consent, checked by the service: the authorization code with the
/// PKCE verifier and the redirect URI it was issued for, and the install it reconnects (None: a
/// new install). `Debug` leaves out the code and the verifier: a credential until exchanged.
pub struct Consent {
    pub code: String,
    pub code_verifier: String,
    pub redirect_uri: String,
    pub reconnect: Option<InstallId>,
}

impl fmt::Debug for Consent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consent")
            .field("redirect_uri", &self.redirect_uri)
            .field("reconnect", &self.reconnect)
            .finish_non_exhaustive()
    }
}

/// Why an org listing stopped: Snyk's answer, or no permit from the install's budget in time.
#[derive(Debug)]
enum ListingFailed {
    Snyk(SnykError),
    Budget(Error),
}

impl From<SnykError> for ListingFailed {
    fn from(e: SnykError) -> Self {
        ListingFailed::Snyk(e)
    }
}

impl From<ListingFailed> for Error {
    fn from(e: ListingFailed) -> Self {
        match e {
            ListingFailed::Snyk(e) => e.into(),
            ListingFailed::Budget(e) => e,
        }
    }
}

/// Completes installs: the one place a grant comes into being.
#[derive(Debug, Clone)]
pub struct Installer {
    store: Store,
    snyk: SnykClient,
    /// The org listing's requests take their permits from the new grant's install budget.
    budget: SnykBudget,
}

impl Installer {
    pub fn new(store: Store, snyk: SnykClient, budget: SnykBudget) -> Self {
        Installer {
            store,
            snyk,
            budget,
        }
    }

    /// The grant of the install `consent` completes, as stored. The install id (new, or the one
    /// reconnected) is recorded on the current span as soon as it is known. `deadline` is the
    /// caller's: the org listing waits for its Snyk permits until then at most.
    pub async fn complete(
        &self,
        consent: &Consent,
        deadline: Option<Instant>,
    ) -> Result<Grant, Error> {
        let pair = self
            .snyk
            .exchange_code(&consent.code, &consent.code_verifier, &consent.redirect_uri)
            .await
            .map_err(|e| match e {
                SnykError::Rejected {
                    ref error,
                    ref description,
                    ..
                } if matches!(error, OAuthError::InvalidGrant | OAuthError::InvalidRequest) => {
                    Error::CodeRejected(description.clone().unwrap_or_else(|| error.to_string()))
                }
                e => Error::from(e),
            })?;
        let reconnect = consent.reconnect;
        let install_id = reconnect.unwrap_or_else(InstallId::new_random);
        let span = tracing::Span::current();
        span.record("install_id", tracing::field::display(&install_id));

        // From here on a live grant exists at Snyk: if we cannot keep it, revoke it, so a failed
        // install leaves nothing behind and the user simply installs again.
        let result = async {
            let orgs = self
                .list_orgs_with_retry(install_id, &pair.access_token, deadline)
                .await?;
            let grant = Grant::from_pair(install_id, orgs, pair.clone(), now_millis());
            if reconnect.is_none() {
                self.store.create(&grant).await?;
                return Ok::<_, Error>(grant);
            }
            let replaced = self
                .store
                .reauthorize(&grant)
                .await?
                .ok_or(Error::UnknownInstall(install_id))?;
            self.revoke_replaced(&replaced.old).await;
            Ok(replaced.grant)
        }
        .await;
        match result {
            Ok(grant) => {
                // The newest install now serves its orgs: the store's write dropped their cached
                // install lists here, and the tracking connections of other replicas drop theirs.
                if reconnect.is_some() {
                    tracing::info!(install_id = %install_id, orgs = grant.orgs.len(), "install re-authorized");
                } else {
                    tracing::info!(install_id = %install_id, orgs = grant.orgs.len(), "install completed");
                }
                Ok(grant)
            }
            Err(e) => {
                if let Err(revoke) = self.snyk.revoke(&pair.refresh_token).await {
                    tracing::error!(error = %revoke, "could not revoke the grant of a failed install");
                }
                Err(e)
            }
        }
    }

    /// After a reconnect: revokes the replaced grant's refresh token at Snyk when it may still
    /// be alive (best effort: the install already works with its new grant). A token Snyk
    /// rejected, or one past its expiry, is dead already. Revoking the whole old grant also
    /// revokes a pair a frozen sender may still hold; that sender's late settle finds no mark
    /// and revokes its pair itself (docs/design.md, "Reconnect").
    async fn revoke_replaced(&self, old: &Grant) {
        let rejected = old.status == Status::NeedsReauth(ReauthReason::RefreshTokenRejected);
        let expired = old.refresh_expires_at.is_some_and(|at| at <= now_millis());
        if rejected || expired {
            return;
        }
        if let Err(e) = self.snyk.revoke(&old.refresh_token).await {
            tracing::warn!(install_id = %old.install_id, error = %e, "could not revoke the replaced grant at Snyk");
        }
    }

    /// The orgs `token` may see, each page sent with a permit of `install`'s budget. A 429 is
    /// reported to the budget (every replica pauses the install), whose next permit comes after
    /// the pause or not before `deadline`; other transient failures are retried after a pause.
    async fn list_orgs_with_retry(
        &self,
        install: InstallId,
        token: &SecretString,
        deadline: Option<Instant>,
    ) -> Result<Vec<Org>, Error> {
        let mut attempt = 0;
        let mut rate_limited = None;
        loop {
            let budget = &self.budget;
            let permit = || {
                let reported = rate_limited.take();
                async move {
                    budget
                        .acquire(&install, deadline, reported)
                        .await
                        .map(drop)
                        .map_err(ListingFailed::Budget)
                }
            };
            match self.snyk.list_orgs(token, permit).await {
                Ok(orgs) => return Ok(orgs),
                Err(ListingFailed::Snyk(SnykError::Transient {
                    status: 429,
                    retry_after,
                })) if attempt < 2 => {
                    attempt += 1;
                    rate_limited = Some(retry_after);
                }
                Err(ListingFailed::Snyk(SnykError::Transient { retry_after, .. }))
                    if attempt < 2 =>
                {
                    attempt += 1;
                    let pause = retry_after.unwrap_or_else(|| LIST_ORGS_BACKOFF.delay(attempt));
                    tokio::time::sleep(pause.min(LIST_ORGS_MAX_PAUSE)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
