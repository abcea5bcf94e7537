//! The HTTP server: a hand-written hyper accept loop with graceful shutdown (HTTPS through rustls
//! when [`Config::tls`] is set), and the [`FakeSnyk`] handle that tests hold.
//!
//! The loop is hand-written (rather than `axum::serve`) for the "lost response" fault: a handler
//! marks its response with [`DropConnection`] and the per-connection service turns it into an
//! error, on which hyper closes the connection without writing a byte of the answer. The state
//! change the request made has happened all the same, which is exactly the failure a client must
//! survive when a refresh's answer is lost.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::app::{AppState, SharedState, router};
use crate::authorize::{self, AuthorizeError};
use crate::catalog::AddOrgsError;
use crate::config::{Config, OrgSeed};
use crate::faults::Fault;
use crate::secrets::{ClientSecretError, SecretChange};
use crate::stats::Stats;
use crate::store::Orgs;

/// Response extension: do not send this response, close the connection instead.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DropConnection;

/// The error hyper gets instead of a marked response.
#[derive(Debug, thiserror::Error)]
#[error("response deliberately lost (injected fault)")]
struct LostResponse;

/// How long shutdown waits for in-flight requests before cutting connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A running fake Snyk. Cheap to clone; dropping the handles does not stop the server (the
/// runtime ending does), [`FakeSnyk::shutdown`] does.
#[derive(Debug, Clone)]
pub struct FakeSnyk {
    state: SharedState,
    addr: SocketAddr,
    https: bool,
    stop: Arc<watch::Sender<bool>>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl FakeSnyk {
    /// Starts a fake on `127.0.0.1` and a free port.
    pub async fn start(config: Config) -> io::Result<FakeSnyk> {
        Self::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    /// Starts a fake on `addr`. Fails with `InvalidInput` if the config is unusable (no redirect
    /// URI, a URI that does not parse, …).
    pub async fn bind(addr: SocketAddr, config: Config) -> io::Result<FakeSnyk> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let tls = config
            .tls
            .as_ref()
            .map(|identity| TlsAcceptor::from(Arc::clone(&identity.server)));
        let https = tls.is_some();
        let state = Arc::new(AppState::new(config));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, tls, router(state.clone()), stopped));
        tracing::info!(%addr, https, "fake Snyk listening");
        Ok(FakeSnyk {
            state,
            addr,
            https,
            stop: Arc::new(stop),
            task: Arc::new(Mutex::new(Some(task))),
        })
    }

    /// The base URL of both the app host and the API host, without a trailing slash:
    /// `https://` when the fake serves TLS.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.state.lock().stats.clone()
    }

    /// Arms a fault; see [`Fault`] for what each one does.
    pub fn inject(&self, fault: Fault) {
        self.state.inject(fault);
    }

    /// Disarms every fault, token latency included.
    pub fn clear_faults(&self) {
        self.state.lock().faults.clear();
    }

    /// Test shortcut for the consent page: validates exactly like `GET /oauth2/authorize` followed
    /// by Approve (with `response_type=code` and `code_challenge_method=S256`) and returns the code
    /// the redirect would carry.
    pub fn approve(
        &self,
        client_id: &str,
        redirect_uri: &str,
        code_challenge: &str,
        scope: Option<&str>,
    ) -> Result<String, AuthorizeError> {
        authorize::approve(
            &self.state,
            client_id,
            redirect_uri,
            code_challenge,
            scope,
            Orgs::All,
        )
    }

    /// [`FakeSnyk::approve`] by a user who installs the app in `orgs` only (Snyk's org picker on
    /// the consent page): the grant's tokens see those orgs and no other. `GET /rest/orgs` lists
    /// only them and `GET /rest/orgs/{other}/projects` is a 404, as for an org that does not exist.
    /// Ids that are not seeded orgs add nothing.
    pub fn approve_for_orgs(
        &self,
        client_id: &str,
        redirect_uri: &str,
        code_challenge: &str,
        scope: Option<&str>,
        orgs: &[uuid::Uuid],
    ) -> Result<String, AuthorizeError> {
        authorize::approve(
            &self.state,
            client_id,
            redirect_uri,
            code_challenge,
            scope,
            Orgs::Only(orgs.to_vec()),
        )
    }

    /// Every live access token expires now (REST then answers 401); refresh tokens stay usable.
    pub fn expire_access_tokens(&self) {
        self.state.lock().store.expire_access_tokens(Instant::now());
    }

    /// Refresh tokens issued from now on (by code exchanges and refreshes) live `ttl`, and their
    /// token answers say so in `refresh_expires_in` (whole seconds, rounded down); tokens already
    /// issued keep their expiry. A zero `ttl` issues refresh tokens that are already expired; one
    /// beyond 100 years is capped at 100 years. The same as `POST /_fake/refresh-token-ttl`.
    pub fn set_refresh_token_ttl(&self, ttl: Duration) {
        self.state.lock().store.set_refresh_ttl(ttl);
    }

    /// Changes the client's secrets as Snyk's
    /// `POST /rest/orgs/{org_id}/apps/creations/{app_id}/secrets` does (the same as
    /// `POST /_fake/client-secrets`): [`SecretChange::Create`] adds a generated secret (at most
    /// [`crate::MAX_CLIENT_SECRETS`] are active), [`SecretChange::Replace`] leaves one new secret
    /// only, [`SecretChange::Delete`] removes one (never the last). Returns the new secret when
    /// one was generated. Grants and tokens issued before stay valid: they belong to the client,
    /// not to the secret it authenticated with.
    pub fn change_client_secret(
        &self,
        change: SecretChange,
    ) -> Result<Option<String>, ClientSecretError> {
        self.state.change_client_secret(&change)
    }

    /// Adds `orgs` after those served (all or none): every install that covers all orgs sees
    /// them at once, and installs made afterwards list them. An org served already (the same id)
    /// or more than [`crate::MAX_ORGS`] in all is refused. The same as `POST /_fake/orgs`.
    pub fn add_orgs(&self, orgs: &[OrgSeed]) -> Result<(), AddOrgsError> {
        self.state.add_orgs(orgs)
    }

    /// How many client secrets are active (1 or 2).
    pub fn active_client_secrets(&self) -> usize {
        self.state.lock().secrets.len()
    }

    /// How many grants have a current refresh token that could be redeemed now.
    pub fn live_refresh_tokens(&self) -> usize {
        self.state.lock().store.live_refresh_tokens(Instant::now())
    }

    /// Stops accepting connections, lets in-flight requests finish (up to 10 s) and returns.
    /// Stops the server for every clone of this handle.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task
            && let Err(error) = task.await
        {
            tracing::error!(%error, "fake Snyk server task failed");
        }
    }

    /// Serves until `signal` completes, then shuts down gracefully (what the binary does with
    /// SIGINT/SIGTERM).
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

/// Completes when a stop was requested. If every handle is gone without asking, never completes:
/// dropping the handle is not a request to stop.
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The accept loop: one task per connection; on stop, stop accepting and drain.
async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stop_requested(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(accept_connection(
                        stream,
                        tls.clone(),
                        app.clone(),
                        stop.clone(),
                    ));
                }
                Err(error) => {
                    // Typically EMFILE under a benchmark's load: back off instead of spinning,
                    // and keep serving the connections already open.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        tracing::warn!("connections still open after the drain timeout; closing them");
        connections.shutdown().await;
    }
}

/// Plain HTTP on `stream`, or HTTP over TLS once the handshake is done.
async fn accept_connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    app: Router,
    stop: watch::Receiver<bool>,
) {
    // Small request/response exchanges: do not let Nagle delay them (latency benchmarks).
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "set_nodelay failed");
    }
    let Some(tls) = tls else {
        return serve_connection(stream, app, stop).await;
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
        Ok(Ok(stream)) => serve_connection(stream, app, stop).await,
        // Typically a client that does not trust the certificate: it aborts the handshake.
        Ok(Err(error)) => tracing::info!(%error, "TLS handshake failed"),
        Err(_) => tracing::info!("TLS handshake timed out"),
    }
}

async fn serve_connection(
    stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    app: Router,
    mut stop: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let app = app.clone();
        async move {
            let response = match app.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            if response.extensions().get::<DropConnection>().is_some() {
                Err(LostResponse)
            } else {
                Ok(response)
            }
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stop_requested(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}
