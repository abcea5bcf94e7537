//! The tonic service: parses each request into typed values once, at the top of its RPC, hands
//! them to the domain, and maps the result to the wire, with one audit line per call. Thin on
//! purpose; the decisions live in `refresh` (when to call Snyk), `install` (how an install comes
//! to be) and `store` (how to write).

use std::{sync::Arc, time::Duration};

use futures::StreamExt as _;
use snykapps_proto::token_v1::{self as pb, token_service_server::TokenService};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    audit::{self, AuditTrail, Entry, Outcome},
    budget::SnykBudget,
    caller::{AuthenticatedCaller, Rpc},
    error::Error,
    events::{BadEventId, Start},
    grant::{InstallId, Need, OrgId},
    install::{Consent, Installer},
    metrics::Metrics,
    page_token::PageToken,
    refresh::{Answer, Refresher},
    snyk::SnykClient,
    store::Store,
    watch::{self, Cursor, MAX_WATCHERS, WatchError},
};

/// Upper bound of any string field we accept (codes, tokens, URIs): far above real values, far
/// below anything that could hurt.
const MAX_FIELD: usize = 4096;
const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 500;

/// The `snykapps.token.v1.TokenService` implementation.
#[derive(Debug, Clone)]
pub struct TokenApi {
    store: Store,
    refresher: Arc<Refresher>,
    installer: Installer,
    metrics: Arc<Metrics>,
    /// One permit per WatchInstallEvents stream (each holds a Redis connection of its own).
    watchers: Arc<Semaphore>,
    /// Ends every watch at shutdown (a stream never ends by itself, and a graceful shutdown
    /// waits for every open stream).
    stop_watches: CancellationToken,
    /// Where token hand-outs are counted and written.
    audit: Arc<AuditTrail>,
    /// Every install's Snyk request budget.
    budget: SnykBudget,
}

impl TokenApi {
    pub fn new(
        store: Store,
        refresher: Arc<Refresher>,
        snyk: SnykClient,
        metrics: Arc<Metrics>,
        audit: Arc<AuditTrail>,
        budget: SnykBudget,
    ) -> Self {
        TokenApi {
            installer: Installer::new(store.clone(), snyk, budget.clone()),
            budget,
            store,
            refresher,
            metrics,
            watchers: Arc::new(Semaphore::new(MAX_WATCHERS)),
            stop_watches: CancellationToken::new(),
            audit,
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
    /// replays and follows on a task of its own that ends when the client goes away. A start
    /// that did not parse counts only where the stream exists: on a cluster the answer says so.
    async fn start_watch(
        &self,
        start: Result<Start, BadEventId>,
    ) -> Result<WatchStream, WatchError> {
        if !self.store.events_enabled() {
            return Err(WatchError::Cluster);
        }
        let start = start?;
        let permit = Arc::clone(&self.watchers)
            .try_acquire_owned()
            .map_err(|_| WatchError::TooManyWatchers)?;
        let cursor = Cursor::open(&self.store, start).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let (store, stop) = (self.store.clone(), self.stop_watches.clone());
        tokio::spawn(async move {
            watch::watch(store, cursor, tx, stop).await;
            drop(permit);
        });
        Ok(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx).map(|item| match item {
                Ok(event) => Ok(pb::InstallEvent::from(&event)),
                Err(e) => Err(Status::from(e)),
            }),
        ))
    }

    /// A token for `target`, refreshed first when `need` requires it.
    async fn token_for(&self, target: Target, need: Need) -> Result<Answer, Error> {
        match target {
            Target::Install(id) => self.refresher.token(id, need).await,
            Target::Org(org) => self.refresher.token_by_org(org, need).await,
        }
    }

    /// The answer to a token hand-out (GetAccessToken, ForceRefresh): counted in the audit trail
    /// (by the install that served, and the org when asked by org, else by what was asked for),
    /// and for the caller by how it was served or by its status, and by the spin it was refused.
    fn handed_out(
        &self,
        caller: &AuthenticatedCaller,
        rpc: Rpc,
        target: Option<Target>,
        result: Result<Answer, Error>,
    ) -> Result<Response<pb::AccessToken>, Status> {
        let install = match &result {
            Ok(answer) => Some(answer.handout.install_id),
            Err(_) => target.and_then(Target::install_id),
        };
        let org = target.and_then(Target::org_id);
        let answer = audited(caller, rpc, install, org, result, |entry| {
            self.audit.handed_out(entry);
        });
        match &answer {
            Ok(answer) => {
                self.metrics.token_served(&caller.0, answer.served);
                if answer.spin_refused {
                    self.metrics.spin_refused(&caller.0, rpc);
                }
            }
            Err(status) => self.metrics.token_failed(&caller.0, status.code()),
        }
        answer.map(|answer| Response::new(pb::AccessToken::from(&*answer.handout)))
    }

    async fn list_installs(&self, page: Page) -> Result<pb::ListInstallsResponse, Error> {
        let Page { size, after } = page;
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

/// The install or org a token request names, parsed.
#[derive(Debug, Clone, Copy)]
enum Target {
    Install(InstallId),
    Org(OrgId),
}

/// A token request's target as the wire has it (GetAccessToken and ForceRefresh each generate
/// their own oneof type for the same two fields).
enum Named<'a> {
    Install(&'a str),
    Org(&'a str),
}

impl Target {
    fn parse(named: Option<Named<'_>>) -> Result<Target, Error> {
        match named {
            Some(Named::Install(s)) => Ok(Target::Install(InstallId::parse(s)?)),
            Some(Named::Org(s)) => Ok(Target::Org(OrgId::parse(s)?)),
            None => Err(Error::InvalidArgument(
                "target must be set: install_id or org_id".into(),
            )),
        }
    }

    fn install_id(self) -> Option<InstallId> {
        match self {
            Target::Install(id) => Some(id),
            Target::Org(_) => None,
        }
    }

    fn org_id(self) -> Option<OrgId> {
        match self {
            Target::Org(org) => Some(org),
            Target::Install(_) => None,
        }
    }
}

fn access_target(t: &Option<pb::get_access_token_request::Target>) -> Result<Target, Error> {
    use pb::get_access_token_request::Target as T;
    Target::parse(t.as_ref().map(|t| match t {
        T::InstallId(s) => Named::Install(s),
        T::OrgId(s) => Named::Org(s),
    }))
}

fn force_target(t: &Option<pb::force_refresh_request::Target>) -> Result<Target, Error> {
    use pb::force_refresh_request::Target as T;
    Target::parse(t.as_ref().map(|t| match t {
        T::InstallId(s) => Named::Install(s),
        T::OrgId(s) => Named::Org(s),
    }))
}

/// A CompleteInstall request, checked: the code, its verifier and redirect URI, and the install
/// it reconnects.
fn consent(req: pb::CompleteInstallRequest) -> Result<Consent, Error> {
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
    Ok(Consent {
        code: req.code,
        code_verifier: req.code_verifier,
        redirect_uri: req.redirect_uri,
        reconnect,
    })
}

/// Which page of ListInstalls: how many installs, after which one.
struct Page {
    size: usize,
    after: Option<InstallId>,
}

fn page(req: &pb::ListInstallsRequest) -> Result<Page, Error> {
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
    Ok(Page { size, after })
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

/// `result` as the RPC answers it, once its audit entry is written by `write` (`audit::write`, or
/// the trail's hand-out count): which install and org the call was about (a malformed id is
/// never logged), and how it ended.
fn audited<T, E>(
    caller: &AuthenticatedCaller,
    rpc: Rpc,
    install: Option<InstallId>,
    org: Option<OrgId>,
    result: Result<T, E>,
    write: impl FnOnce(Entry<'_>),
) -> Result<T, Status>
where
    Status: From<E>,
{
    let answer = result.map_err(Status::from);
    write(
        Entry::new(caller, rpc, Outcome::of(&answer))
            .install(install)
            .org(org),
    );
    answer
}

#[tonic::async_trait]
impl TokenService for TokenApi {
    #[tracing::instrument(skip_all, fields(rpc = "CompleteInstall", caller = tracing::field::Empty, install_id = tracing::field::Empty))]
    async fn complete_install(
        &self,
        req: Request<pb::CompleteInstallRequest>,
    ) -> Result<Response<pb::Install>, Status> {
        let caller = caller_of(&req)?;
        let deadline = deadline_of(&req);
        let consent = consent(req.into_inner());
        let result = async { self.installer.complete(&consent?, deadline).await }.await;
        let install = result.as_ref().ok().map(|grant| grant.install_id);
        audited(
            &caller,
            Rpc::CompleteInstall,
            install,
            None,
            result,
            audit::write,
        )
        .map(|grant| Response::new(pb::Install::from(&grant)))
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
        let named = target.as_ref().ok().copied();
        let result = async { self.token_for(target?, need).await }.await;
        self.handed_out(&caller, Rpc::GetAccessToken, named, result)
    }

    #[tracing::instrument(skip_all, fields(rpc = "ForceRefresh", caller = tracing::field::Empty))]
    async fn force_refresh(
        &self,
        req: Request<pb::ForceRefreshRequest>,
    ) -> Result<Response<pb::AccessToken>, Status> {
        let caller = caller_of(&req)?;
        let req = req.into_inner();
        let target = force_target(&req.target);
        let named = target.as_ref().ok().copied();
        let result = async {
            check_field("rejected_access_token", &req.rejected_access_token, 1)?;
            let need = Need::Replace(req.rejected_access_token.into());
            self.token_for(target?, need).await
        }
        .await;
        self.handed_out(&caller, Rpc::ForceRefresh, named, result)
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetInstall", caller = tracing::field::Empty))]
    async fn get_install(
        &self,
        req: Request<pb::GetInstallRequest>,
    ) -> Result<Response<pb::Install>, Status> {
        let caller = caller_of(&req)?;
        let id = InstallId::parse(&req.get_ref().install_id);
        let install = id.as_ref().ok().copied();
        let result = async {
            let id = id?;
            self.store.load(&id).await?.ok_or(Error::UnknownInstall(id))
        }
        .await;
        audited(
            &caller,
            Rpc::GetInstall,
            install,
            None,
            result,
            audit::write,
        )
        .map(|v| Response::new(pb::Install::from(&v.grant)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "ListInstalls", caller = tracing::field::Empty))]
    async fn list_installs(
        &self,
        req: Request<pb::ListInstallsRequest>,
    ) -> Result<Response<pb::ListInstallsResponse>, Status> {
        let caller = caller_of(&req)?;
        let page = page(req.get_ref());
        let result = async { self.list_installs(page?).await }.await;
        audited(&caller, Rpc::ListInstalls, None, None, result, audit::write).map(Response::new)
    }

    #[tracing::instrument(skip_all, fields(rpc = "DeleteInstall", caller = tracing::field::Empty))]
    async fn delete_install(
        &self,
        req: Request<pb::DeleteInstallRequest>,
    ) -> Result<Response<pb::DeleteInstallResponse>, Status> {
        let caller = caller_of(&req)?;
        let id = InstallId::parse(&req.get_ref().install_id);
        let install = id.as_ref().ok().copied();
        let result = async { self.refresher.delete(id?).await }.await;
        audited(
            &caller,
            Rpc::DeleteInstall,
            install,
            None,
            result,
            audit::write,
        )
        .map(|()| Response::new(pb::DeleteInstallResponse {}))
    }

    type WatchInstallEventsStream = WatchStream;

    #[tracing::instrument(skip_all, fields(rpc = "WatchInstallEvents", caller = tracing::field::Empty))]
    async fn watch_install_events(
        &self,
        req: Request<pb::WatchInstallEventsRequest>,
    ) -> Result<Response<Self::WatchInstallEventsStream>, Status> {
        let caller = caller_of(&req)?;
        let start = Start::parse(&req.get_ref().after_event_id);
        let result = self.start_watch(start).await;
        audited(
            &caller,
            Rpc::WatchInstallEvents,
            None,
            None,
            result,
            audit::write,
        )
        .map(Response::new)
    }

    #[tracing::instrument(skip_all, fields(rpc = "AcquireSnykPermit", caller = tracing::field::Empty, install_id = tracing::field::Empty))]
    async fn acquire_snyk_permit(
        &self,
        req: Request<pb::AcquireSnykPermitRequest>,
    ) -> Result<Response<pb::SnykPermit>, Status> {
        caller_of(&req)?;
        let deadline = deadline_of(&req);
        let req = req.into_inner();
        let id = InstallId::parse(&req.install_id).map_err(Error::from)?;
        tracing::Span::current().record("install_id", tracing::field::display(&id));
        // The budget of an install that does not exist is not kept: its key would only expire.
        if self.store.load(&id).await.map_err(Error::from)?.is_none() {
            return Err(Error::UnknownInstall(id).into());
        }
        let rate_limited = match req.rate_limited_retry_after_seconds {
            0 => None,
            s => Some(Some(Duration::from_secs(s.into()))),
        };
        let permit = self.budget.acquire(&id, deadline, rate_limited).await?;
        Ok(Response::new(pb::SnykPermit {
            waited_ms: u32::try_from(permit.waited.as_millis()).unwrap_or(u32::MAX),
        }))
    }
}

/// When the caller stops waiting for this call: its `grpc-timeout` from the time the request
/// arrived. None when it set none.
fn deadline_of<T>(req: &Request<T>) -> Option<tokio::time::Instant> {
    let raw = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    grpc_timeout(raw).map(|t| tokio::time::Instant::now() + t)
}

/// A `grpc-timeout` value: at most 8 digits and a unit (gRPC over HTTP/2).
fn grpc_timeout(raw: &str) -> Option<Duration> {
    let unit = raw.len().checked_sub(1).filter(|&n| (1..=8).contains(&n))?;
    let (digits, unit) = raw.split_at(unit);
    let value: u64 = digits
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| digits.parse().ok())??;
    Some(match unit {
        "H" => Duration::from_secs(value * 3600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_as_the_protocol_writes_them() {
        assert_eq!(grpc_timeout("59999m"), Some(Duration::from_millis(59_999)));
        assert_eq!(grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(grpc_timeout("15000000u"), Some(Duration::from_secs(15)));
        for bad in ["", "m", "123456789m", "12x", "-1S", "1.5S", "+1S"] {
            assert_eq!(grpc_timeout(bad), None, "{bad:?}");
        }
    }
}
