//! A bare tonic server for the same `snykapps.token.v1.TokenService`: `GetAccessToken` answers a
//! constant token, with no key check, no Redis and no logic. Benchmarked next to token-service,
//! it says what our logic costs over plain gRPC on the same machine.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context as _;
use snykapps_proto::token_v1 as pb;
use snykapps_proto::token_v1::token_service_server::{TokenService, TokenServiceServer};
use tokio::net::TcpListener;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// The echo service: one prebuilt answer, cloned per call.
#[derive(Debug, Clone)]
pub struct Echo {
    answer: pb::AccessToken,
}

impl Default for Echo {
    fn default() -> Self {
        Self {
            answer: pb::AccessToken {
                // As long as a fake-snyk access token (`snyk_at_` + 43), so both answers weigh the same.
                access_token: "echo_at_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG".into(),
                token_type: "bearer".into(),
                expires_at: Some(prost_types::Timestamp {
                    seconds: 4_102_444_800, // 2100-01-01
                    nanos: 0,
                }),
                install_id: "00000000-0000-4000-8000-000000000000".into(),
            },
        }
    }
}

/// What every RPC but `GetAccessToken` answers.
fn only_get_access_token() -> Status {
    Status::unimplemented("the echo server only answers GetAccessToken")
}

#[tonic::async_trait]
impl TokenService for Echo {
    async fn complete_install(
        &self,
        _req: Request<pb::CompleteInstallRequest>,
    ) -> Result<Response<pb::Install>, Status> {
        Err(only_get_access_token())
    }

    async fn get_access_token(
        &self,
        _req: Request<pb::GetAccessTokenRequest>,
    ) -> Result<Response<pb::AccessToken>, Status> {
        Ok(Response::new(self.answer.clone()))
    }

    async fn force_refresh(
        &self,
        _req: Request<pb::ForceRefreshRequest>,
    ) -> Result<Response<pb::AccessToken>, Status> {
        Err(only_get_access_token())
    }

    async fn get_install(
        &self,
        _req: Request<pb::GetInstallRequest>,
    ) -> Result<Response<pb::Install>, Status> {
        Err(only_get_access_token())
    }

    async fn list_installs(
        &self,
        _req: Request<pb::ListInstallsRequest>,
    ) -> Result<Response<pb::ListInstallsResponse>, Status> {
        Err(only_get_access_token())
    }

    async fn delete_install(
        &self,
        _req: Request<pb::DeleteInstallRequest>,
    ) -> Result<Response<pb::DeleteInstallResponse>, Status> {
        Err(only_get_access_token())
    }

    async fn acquire_snyk_permit(
        &self,
        _req: Request<pb::AcquireSnykPermitRequest>,
    ) -> Result<Response<pb::SnykPermit>, Status> {
        Err(only_get_access_token())
    }

    type WatchInstallEventsStream = futures::stream::Empty<Result<pb::InstallEvent, Status>>;

    async fn watch_install_events(
        &self,
        _req: Request<pb::WatchInstallEventsRequest>,
    ) -> Result<Response<Self::WatchInstallEventsStream>, Status> {
        Err(only_get_access_token())
    }
}

/// A bound, not yet serving echo server (bind port 0 and read [`EchoServer::local_addr`]).
#[derive(Debug)]
pub struct EchoServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    nodelay: bool,
}

impl EchoServer {
    /// Binds `addr` (the caller has checked it is on 127.0.0.1).
    pub async fn bind(addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind {addr}"))?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            local_addr,
            nodelay: false,
        })
    }

    /// Sets `TCP_NODELAY` on accepted connections. Off by default, like token-service: tonic
    /// ignores its own `tcp_nodelay` setting when it is handed a listener stream, as both do, so
    /// the accepted sockets keep Nagle's algorithm; the default keeps the comparison fair.
    pub fn nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then finishes the calls in flight.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let nodelay = self.nodelay;
        let incoming = TcpListenerStream::new(self.listener).map(move |accepted| {
            let stream = accepted?;
            if nodelay {
                stream.set_nodelay(true)?;
            }
            Ok::<_, std::io::Error>(stream)
        });
        // Plain `Server::builder()`, no layers: the point is to measure bare tonic.
        tonic::transport::Server::builder()
            .add_service(TokenServiceServer::new(Echo::default()))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .context("echo server failed")
    }
}
