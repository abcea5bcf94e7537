//! The tonic service: validates and translates requests, then hands them to the domain. Thin on
//! purpose; the decisions live in `refresh` (when to call Snyk) and `store` (how to write).

use std::{sync::Arc, time::Duration};

use futures::StreamExt as _;
use snykapps_proto::token_v1::{self as pb, token_service_server::TokenService};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    backoff::Backoff,
    caller::{AuthenticatedCaller, Rpc},
    error::Error,
    events::{self, Cursor, MAX_WATCHERS, Start, WatchError},
    grant::{Grant, Handout, InstallId, Need, OrgId, now_millis},
    metrics::{Metrics, Served},
    page_token::PageToken,
    refresh::Refresher,
    snyk::{OAuthError, SnykClient, SnykError},
    store::Store,
};

/// Upper bound of any string field we accept (codes, tokens, URIs): far above real values, far
/// below anything that could hurt.
const MAX_FIELD: usize = 4096;
const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 500;

/// Pauses between tries of a new install's org listing when Snyk asks for no particular pause.
const LIST_ORGS_BACKOFF: Backoff = Backoff::constant(Duration::from_millis(300));
/// The longest pause of that listing, also when Snyk asks for a longer one.
const LIST_ORGS_MAX_PAUSE: Duration = Duration::from_secs(3);

/// The `snykapps.token.v1.TokenService` implementation.
#[derive(Debug, Clone)]
pub struct TokenApi {
    store: Store,
    refresher: Arc<Refresher>,
    snyk: SnykClient,
    metrics: Arc<Metrics>,
    /// One permit per WatchInstallEvents stream (each holds a Redis connection of its own).
    watchers: Arc<Semaphore>,
    /// Ends every watch at shutdown (a stream never ends by itself, and a graceful shutdown
    /// waits for every open stream).
    stop_watches: CancellationToken,
}

impl TokenApi {
    pub fn new(
        store: Store,
        refresher: Arc<Refresher>,
        snyk: SnykClient,
        metrics: Arc<Metrics>,
    ) -> Self {
        TokenApi {
            store,
            refresher,
            snyk,
            metrics,
            watchers: Arc::new(Semaphore::new(MAX_WATCHERS)),
            stop_watches: CancellationToken::new(),
        }
    }

    /// The same service, whose watches end (UNAVAILABLE: resume elsewhere) when `stop` fires.
    pub fn with_watch_stop(self, stop: CancellationToken) -> Self {
        TokenApi {
            stop_watches: stop,
            ..self
        }
    }

    /// Checks the start against the stream (so a bad or trimmed start is the RPC's status), then
    /// replays and follows on a task of its own that ends when the client goes away.
    async fn start_watch(&self, after: &str) -> Result<WatchStream, WatchError> {
        if !self.store.events_enabled() {
            return Err(WatchError::Cluster);
        }
        let start = Start::parse(after)?;
        let permit = Arc::clone(&self.watchers)
            .try_acquire_owned()
            .map_err(|_| WatchError::TooManyWatchers)?;
        let cursor = Cursor::open(&self.store, start).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let (store, stop) = (self.store.clone(), self.stop_watches.clone());
        tokio::spawn(async move {
            events::watch(store, cursor, tx, stop).await;
            drop(permit);
        });
        Ok(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx).map(|item| match item {
                Ok(event) => Ok(pb::InstallEvent::from(&event)),
                Err(e) => Err(Status::from(e)),
            }),
        ))
    }

    /// The answer to a token hand-out (GetAccessToken, ForceRefresh): counts it for the caller,
    /// by how it was served or by its status, and writes the audit line either way.
    fn handed_out(
        &self,
        caller: &AuthenticatedCaller,
        rpc: Rpc,
        target: Option<Target<'_>>,
        result: Result<(Arc<Handout>, Served), Error>,
    ) -> Result<Response<pb::AccessToken>, Status> {
        match result {
            Ok((handout, how)) => {
                self.metrics.token_served(&caller.0, how);
                // The install that served; the org only when asked by org (no id parsed twice
                // on the hot path).
                let org_id = match target {
                    Some(Target::Org(s)) => OrgId::parse(s).ok(),
                    _ => None,
                };
                audit(caller, rpc, Some(handout.install_id), org_id, Ok(()));
                Ok(Response::new(pb::AccessToken::from(&*handout)))
            }
            Err(e) => {
                let (install_id, org_id) = target_ids(target);
                let status = Status::from(e);
                self.metrics.token_failed(&caller.0, status.code());
                audit(caller, rpc, install_id, org_id, Err(status.code()));
                Err(status)
            }
        }
    }

    /// A token for `target`, refreshed first when `need` requires it. An org is served by its
    /// newest ACTIVE install (an org keeps every install that covers it, newest first), so
    /// deleting an install or its needing re-authorization falls back to the next one. The org's
    /// installs come from the grant cache like the grants do (`Store::installs_for_org`), so a
    /// hit by org touches Redis no more than a hit by install.
    async fn token_for(
        &self,
        target: Option<Target<'_>>,
        need: Need,
    ) -> Result<(Arc<Handout>, Served), Error> {
        let org = match target {
            Some(Target::Install(s)) => {
                return self.refresher.token(InstallId::parse(s)?, need).await;
            }
            Some(Target::Org(s)) => OrgId::parse(s)?,
            None => {
                return Err(Error::InvalidArgument(
                    "target must be set: install_id or org_id".into(),
                ));
            }
        };
        let mut needs_reauth = None;
        for id in self.store.installs_for_org(&org).await?.iter() {
            match self.refresher.token(*id, need.clone()).await {
                Ok(served) => return Ok(served),
                Err(Error::UnknownInstall(_)) => {
                    // The grant is gone; its index entry lagged.
                    self.store.unindex_org(&org, id).await?;
                }
                Err(e @ Error::NeedsReauth(..)) => {
                    needs_reauth.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(needs_reauth.unwrap_or(Error::UnknownOrg(org)))
    }

    async fn complete_install(&self, req: pb::CompleteInstallRequest) -> Result<Grant, Error> {
        check_field("code", &req.code, 1)?;
        check_verifier(&req.code_verifier)?;
        check_redirect_uri(&req.redirect_uri)?;
        let reconnect = match req.reauthorize_install_id.as_str() {
            "" => None,
            id => Some(
                InstallId::parse(id)
                    .map_err(|e| Error::InvalidArgument(format!("reauthorize_install_id: {e}")))?,
            ),
        };
        let pair = self
            .snyk
            .exchange_code(&req.code, &req.code_verifier, &req.redirect_uri)
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
        let install_id = reconnect.unwrap_or_else(InstallId::new_random);
        let span = tracing::Span::current();
        span.record("install_id", tracing::field::display(&install_id));

        // From here on a live grant exists at Snyk: if we cannot keep it, revoke it, so a failed
        // install leaves nothing behind and the user simply installs again.
        let result = async {
            let orgs = self.list_orgs_with_retry(&pair.access_token).await?;
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
        let rejected = old.status
            == crate::grant::Status::NeedsReauth(crate::grant::ReauthReason::RefreshTokenRejected);
        let expired = old.refresh_expires_at.is_some_and(|at| at <= now_millis());
        if rejected || expired {
            return;
        }
        if let Err(e) = self.snyk.revoke(&old.refresh_token).await {
            tracing::warn!(install_id = %old.install_id, error = %e, "could not revoke the replaced grant at Snyk");
        }
    }

    async fn list_orgs_with_retry(
        &self,
        token: &secrecy::SecretString,
    ) -> Result<Vec<crate::grant::Org>, Error> {
        let mut attempt = 0;
        loop {
            match self.snyk.list_orgs(token).await {
                Ok(orgs) => return Ok(orgs),
                Err(SnykError::Transient { retry_after, .. }) if attempt < 2 => {
                    attempt += 1;
                    let pause = retry_after.unwrap_or_else(|| LIST_ORGS_BACKOFF.delay(attempt));
                    tokio::time::sleep(pause.min(LIST_ORGS_MAX_PAUSE)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn delete_install(&self, id: InstallId) -> Result<(), Error> {
        self.refresher.delete(id).await?;
        tracing::info!(install_id = %id, "install deleted");
        Ok(())
    }

    async fn list_installs(
        &self,
        req: pb::ListInstallsRequest,
    ) -> Result<pb::ListInstallsResponse, Error> {
        let size = match req.page_size as usize {
            0 => DEFAULT_PAGE_SIZE,
            n if n <= MAX_PAGE_SIZE => n,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "page_size must be at most {MAX_PAGE_SIZE}"
                )));
            }
        };
        let after = PageToken::decode(&req.page_token)?.map(PageToken::last);
        let ids = self.store.list_ids(after.as_ref(), size + 1).await?;
        let more = ids.len() > size;
        let mut installs = Vec::with_capacity(size);
        for id in ids.iter().take(size) {
            // An install deleted between the index read and this one is simply skipped.
            if let Some(v) = self.store.load(id).await? {
                installs.push(pb::Install::from(&v.grant));
            }
        }
        let next_page_token = match (more, ids.get(size - 1)) {
            (true, Some(last)) => PageToken::after(*last).encode(),
            _ => String::new(),
        };
        Ok(pb::ListInstallsResponse {
            installs,
            next_page_token,
        })
    }
}

type WatchStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<pb::InstallEvent, Status>> + Send + 'static>,
>;

enum Target<'a> {
    Install(&'a str),
    Org(&'a str),
}

fn access_target(t: &Option<pb::get_access_token_request::Target>) -> Option<Target<'_>> {
    use pb::get_access_token_request::Target as T;
    t.as_ref().map(|t| match t {
        T::InstallId(s) => Target::Install(s),
        T::OrgId(s) => Target::Org(s),
    })
}

fn force_target(t: &Option<pb::force_refresh_request::Target>) -> Option<Target<'_>> {
    use pb::force_refresh_request::Target as T;
    t.as_ref().map(|t| match t {
        T::InstallId(s) => Target::Install(s),
        T::OrgId(s) => Target::Org(s),
    })
}

fn check_field(name: &str, value: &str, min: usize) -> Result<(), Error> {
    if value.len() < min {
        return Err(Error::InvalidArgument(format!("{name} must not be empty")));
    }
    if value.len() > MAX_FIELD {
        return Err(Error::InvalidArgument(format!(
            "{name} is longer than {MAX_FIELD} bytes"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "{name} contains control characters"
        )));
    }
    Ok(())
}

/// RFC 7636: 43-128 characters of `[A-Za-z0-9-._~]`.
fn check_verifier(v: &str) -> Result<(), Error> {
    let ok = (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(
            "code_verifier must be 43-128 characters of [A-Za-z0-9-._~]".into(),
        ))
    }
}

fn check_redirect_uri(v: &str) -> Result<(), Error> {
    check_field("redirect_uri", v, 1)?;
    match url::Url::parse(v) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        _ => Err(Error::InvalidArgument(
            "redirect_uri must be an absolute http(s) URL".into(),
        )),
    }
}

/// The caller `caller::Authorize` authenticated, recorded on the RPC's span. Its absence means
/// the service was wired without that layer: refused, never served anonymously.
fn caller_of<T>(req: &Request<T>) -> Result<AuthenticatedCaller, Error> {
    let caller = req
        .extensions()
        .get::<AuthenticatedCaller>()
        .cloned()
        .ok_or_else(|| {
            Error::Internal(
                "no authenticated caller: TokenService is served without caller::Authorize".into(),
            )
        })?;
    tracing::Span::current().record("caller", caller.name());
    Ok(caller)
}

/// The install or org a request names, when it parses (a malformed id is never logged).
fn target_ids(target: Option<Target<'_>>) -> (Option<InstallId>, Option<OrgId>) {
    match target {
        Some(Target::Install(s)) => (InstallId::parse(s).ok(), None),
        Some(Target::Org(s)) => (None, OrgId::parse(s).ok()),
        None => (None, None),
    }
}

/// One line at tracing target `audit` per token hand-out, install read and install change: who,
/// which RPC, which install (and org, when asked by org) and how it ended (`ok` or the gRPC
/// code). Never a token: nothing here can hold one.
fn audit(
    caller: &AuthenticatedCaller,
    rpc: Rpc,
    install_id: Option<InstallId>,
    org_id: Option<OrgId>,
    outcome: Result<(), tonic::Code>,
) {
    tracing::info!(
        target: "audit",
        caller = caller.name(),
        rpc = rpc.name(),
        install_id = install_id.map(tracing::field::display),
        org_id = org_id.map(tracing::field::display),
        outcome = %Outcome(outcome),
        "audit"
    );
}

/// `ok`, or the gRPC code's name (`PermissionDenied`), formatted only when the line is written:
/// the audit line sits on the hot path of every hand-out.
struct Outcome(Result<(), tonic::Code>);

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Ok(()) => f.write_str("ok"),
            Err(code) => write!(f, "{code:?}"),
        }
    }
}

#[tonic::async_trait]
impl TokenService for TokenApi {
    #[tracing::instrument(skip_all, fields(rpc = "CompleteInstall", caller = tracing::field::Empty, install_id = tracing::field::Empty))]
    async fn complete_install(
        &self,
        req: Request<pb::CompleteInstallRequest>,
    ) -> Result<Response<pb::Install>, Status> {
        let caller = caller_of(&req)?;
        match self.complete_install(req.into_inner()).await {
            Ok(grant) => {
                audit(
                    &caller,
                    Rpc::CompleteInstall,
                    Some(grant.install_id),
                    None,
                    Ok(()),
                );
                Ok(Response::new(pb::Install::from(&grant)))
            }
            Err(e) => {
                let status = Status::from(e);
                audit(
                    &caller,
                    Rpc::CompleteInstall,
                    None,
                    None,
                    Err(status.code()),
                );
                Err(status)
            }
        }
    }

    // At debug level: the hot path has no span of its own at the default level (see
    // `startup::grpc_span` for the RPC's span, which sampled traces still get).
    #[tracing::instrument(level = "debug", skip_all, fields(rpc = "GetAccessToken", caller = tracing::field::Empty))]
    async fn get_access_token(
        &self,
        req: Request<pb::GetAccessTokenRequest>,
    ) -> Result<Response<pb::AccessToken>, Status> {
        let caller = caller_of(&req)?;
        let req = req.into_inner();
        let target = access_target(&req.target);
        let need = Need::Validity(Duration::from_secs(req.min_validity_seconds.into()));
        let result = self.token_for(target, need).await;
        self.handed_out(
            &caller,
            Rpc::GetAccessToken,
            access_target(&req.target),
            result,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "ForceRefresh", caller = tracing::field::Empty))]
    async fn force_refresh(
        &self,
        req: Request<pb::ForceRefreshRequest>,
    ) -> Result<Response<pb::AccessToken>, Status> {
        let caller = caller_of(&req)?;
        let req = req.into_inner();
        let target = force_target(&req.target);
        let result = async {
            check_field("rejected_access_token", &req.rejected_access_token, 1)?;
            self.token_for(
                target,
                Need::Replace(req.rejected_access_token.clone().into()),
            )
            .await
        }
        .await;
        self.handed_out(
            &caller,
            Rpc::ForceRefresh,
            force_target(&req.target),
            result,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetInstall", caller = tracing::field::Empty))]
    async fn get_install(
        &self,
        req: Request<pb::GetInstallRequest>,
    ) -> Result<Response<pb::Install>, Status> {
        let caller = caller_of(&req)?;
        let (id, result) = match InstallId::parse(&req.get_ref().install_id) {
            Ok(id) => (
                Some(id),
                async { self.store.load(&id).await?.ok_or(Error::UnknownInstall(id)) }.await,
            ),
            Err(e) => (None, Err(Error::from(e))),
        };
        let outcome = result.map_err(Status::from);
        audit(
            &caller,
            Rpc::GetInstall,
            id,
            None,
            outcome.as_ref().map(drop).map_err(Status::code),
        );
        outcome.map(|v| Response::new(pb::Install::from(&v.grant)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "ListInstalls", caller = tracing::field::Empty))]
    async fn list_installs(
        &self,
        req: Request<pb::ListInstallsRequest>,
    ) -> Result<Response<pb::ListInstallsResponse>, Status> {
        let caller = caller_of(&req)?;
        let outcome = self
            .list_installs(req.into_inner())
            .await
            .map_err(Status::from);
        audit(
            &caller,
            Rpc::ListInstalls,
            None,
            None,
            outcome.as_ref().map(drop).map_err(Status::code),
        );
        outcome.map(Response::new)
    }

    #[tracing::instrument(skip_all, fields(rpc = "DeleteInstall", caller = tracing::field::Empty))]
    async fn delete_install(
        &self,
        req: Request<pb::DeleteInstallRequest>,
    ) -> Result<Response<pb::DeleteInstallResponse>, Status> {
        let caller = caller_of(&req)?;
        let (id, result) = match InstallId::parse(&req.get_ref().install_id) {
            Ok(id) => (Some(id), self.delete_install(id).await),
            Err(e) => (None, Err(Error::from(e))),
        };
        let outcome = result.map_err(Status::from);
        audit(
            &caller,
            Rpc::DeleteInstall,
            id,
            None,
            outcome.as_ref().map(drop).map_err(Status::code),
        );
        outcome.map(|()| Response::new(pb::DeleteInstallResponse {}))
    }

    type WatchInstallEventsStream = WatchStream;

    #[tracing::instrument(skip_all, fields(rpc = "WatchInstallEvents", caller = tracing::field::Empty))]
    async fn watch_install_events(
        &self,
        req: Request<pb::WatchInstallEventsRequest>,
    ) -> Result<Response<Self::WatchInstallEventsStream>, Status> {
        let caller = caller_of(&req)?;
        let outcome = self
            .start_watch(&req.get_ref().after_event_id)
            .await
            .map_err(Status::from);
        audit(
            &caller,
            Rpc::WatchInstallEvents,
            None,
            None,
            outcome.as_ref().map(drop).map_err(Status::code),
        );
        outcome.map(Response::new)
    }
}
