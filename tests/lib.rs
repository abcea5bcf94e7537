//! Helpers for the system tests in `system/`: a private Redis, the fake Snyk and any number of
//! real token-service replicas (their `Application`s, on port 0), plus typed clients.
//! (Test scaffolding: `Debug` would add nothing here.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_debug_implementations
)]

use std::{net::SocketAddr, sync::Arc};

use base64::Engine as _;
use fake_snyk::FakeSnyk;
use rand::Rng as _;
use sha2::{Digest, Sha256};
use snykapps_proto::token_v1::{self as pb, token_service_client::TokenServiceClient};
use test_support::RedisServer;
use token_service::{Application, Settings, metrics::Metrics};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{
    Request, Status,
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

pub const CLIENT_ID: &str = "test-client-id";
pub const CLIENT_SECRET: &str = "test-client-secret";
pub const REDIRECT_URI: &str = "http://localhost:8080/callback";
/// The key projects-service would present to token-service.
pub const CALLER_KEY: &str = "projects-service-key-0123456789";
pub const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

/// The fake's configuration every test starts from (2-second access tokens: a margin of 1 s).
pub fn fake_config() -> fake_snyk::Config {
    let mut c = fake_snyk::Config::new(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI);
    c.access_token_ttl = std::time::Duration::from_secs(2);
    c
}

/// Redis + fake Snyk, shared by the replicas a test starts.
pub struct Stack {
    pub redis: RedisServer,
    pub fake: FakeSnyk,
}

/// One running token-service.
pub struct Replica {
    pub addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl Replica {
    /// Graceful stop: returns once in-flight calls and refreshes are done.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.handle.await?
    }

    /// Sends the shutdown signal without waiting.
    pub fn begin_stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub async fn join(self) -> anyhow::Result<()> {
        self.handle.await?
    }
}

/// Adds `authorization: Bearer <key>` to every call.
#[derive(Clone)]
pub struct BearerKey(pub MetadataValue<tonic::metadata::Ascii>);

impl Interceptor for BearerKey {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

pub type Client = TokenServiceClient<InterceptedService<Channel, BearerKey>>;

impl Stack {
    pub async fn start(fake: fake_snyk::Config) -> Stack {
        let redis = RedisServer::start().expect("redis-server starts");
        let fake = FakeSnyk::start(fake).await.expect("fake Snyk starts");
        Stack { redis, fake }
    }

    /// token-service settings pointing at this stack; `overrides` win over the defaults.
    pub fn settings(&self, overrides: &[(&str, &str)]) -> Settings {
        let redis_url = self.redis.url();
        let api = self.fake.url();
        let base: Vec<(&str, String)> = vec![
            ("TOKEN_SERVICE_ADDR", "127.0.0.1:0".into()),
            ("TOKEN_SERVICE_METRICS_ADDR", "127.0.0.1:0".into()),
            ("REDIS_URL", redis_url),
            ("SNYK_API_URL", api),
            ("SNYK_CLIENT_ID", CLIENT_ID.into()),
            ("SNYK_CLIENT_SECRET", CLIENT_SECRET.into()),
            ("TOKEN_ENCRYPTION_KEYS", K1.into()),
            (
                "TOKEN_SERVICE_CLIENT_KEYS",
                format!("projects-service={CALLER_KEY}"),
            ),
            ("SNYK_TOKEN_BACKOFF_MS", "50".into()),
        ];
        Settings::from_lookup(|k| {
            overrides
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
                .or_else(|| base.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
        })
        .expect("valid test settings")
    }

    pub async fn replica(&self, overrides: &[(&str, &str)]) -> Replica {
        spawn(self.settings(overrides)).await
    }

    /// Completes an install through the fake's consent shortcut and `CompleteInstall`.
    pub async fn install(&self, client: &mut Client) -> pb::Install {
        let (verifier, challenge) = pkce();
        let code = self
            .fake
            .approve(CLIENT_ID, REDIRECT_URI, &challenge, None)
            .expect("approved");
        client
            .complete_install(pb::CompleteInstallRequest {
                code,
                code_verifier: verifier,
                redirect_uri: REDIRECT_URI.into(),
            })
            .await
            .expect("install completes")
            .into_inner()
    }

    /// Does Snyk (the fake) accept this access token right now?
    pub async fn token_works(&self, access_token: &str) -> bool {
        let status = reqwest::Client::new()
            .get(format!("{}/rest/self?version=2024-05-31", self.fake.url()))
            .header("authorization", format!("bearer {access_token}"))
            .send()
            .await
            .expect("fake answers")
            .status();
        status.is_success()
    }

    /// Every key and value in Redis, as raw bytes (to prove no token is stored in clear).
    pub async fn redis_dump(&self) -> Vec<u8> {
        let mut c = redis::Client::open(self.redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut c)
            .await
            .unwrap();
        let mut out = Vec::new();
        for k in keys {
            out.extend_from_slice(k.as_bytes());
            let t: String = redis::cmd("TYPE")
                .arg(&k)
                .query_async(&mut c)
                .await
                .unwrap();
            let vals: Vec<Vec<u8>> = match t.as_str() {
                "string" => vec![redis::cmd("GET").arg(&k).query_async(&mut c).await.unwrap()],
                "hash" => redis::cmd("HGETALL")
                    .arg(&k)
                    .query_async(&mut c)
                    .await
                    .unwrap(),
                "zset" => redis::cmd("ZRANGE")
                    .arg(&k)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut c)
                    .await
                    .unwrap(),
                other => panic!("unexpected key type {other}"),
            };
            for v in vals {
                out.extend_from_slice(&v);
            }
        }
        out
    }

    /// A raw Redis connection to this stack's server.
    pub async fn redis_conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

/// Starts a token-service with `settings` on its own task.
pub async fn spawn(settings: Settings) -> Replica {
    let app = Application::build(settings)
        .await
        .expect("token-service builds");
    let addr = app.local_addr();
    let metrics = app.metrics();
    let (tx, rx) = oneshot::channel();
    let handle = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    Replica {
        addr,
        metrics,
        shutdown: Some(tx),
        handle,
    }
}

/// A client of `addr` that presents `key`.
pub async fn client_with_key(addr: SocketAddr, key: &str) -> Client {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connects");
    TokenServiceClient::with_interceptor(
        channel,
        BearerKey(format!("Bearer {key}").parse().unwrap()),
    )
}

/// A client of `replica` with the valid caller key.
pub async fn client(replica: &Replica) -> Client {
    client_with_key(replica.addr, CALLER_KEY).await
}

/// The key auth-service presents to projects-service.
pub const PROJECTS_KEY: &str = "auth-service-key-0123456789abcdef";

/// One running projects-service.
pub struct ProjectsService {
    pub url: String,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl ProjectsService {
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.handle.await?
    }

    /// `GET {url}{path}` with the valid caller key (the future borrows nothing).
    pub fn get(
        &self,
        path: &str,
    ) -> impl std::future::Future<Output = reqwest::Response> + Send + use<> {
        let url = format!("{}{path}", self.url);
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(PROJECTS_KEY)
                .send()
                .await
                .expect("projects-service answers")
        }
    }
}

impl Stack {
    /// projects-service settings that use token-service at `token_service` and this stack's fake.
    pub fn projects_settings(
        &self,
        token_service: SocketAddr,
        overrides: &[(&str, &str)],
    ) -> projects_service::Settings {
        let base: Vec<(&str, String)> = vec![
            ("PROJECTS_SERVICE_ADDR", "127.0.0.1:0".into()),
            ("SNYK_API_URL", self.fake.url()),
            ("TOKEN_SERVICE_URL", format!("http://{token_service}")),
            ("TOKEN_SERVICE_API_KEY", CALLER_KEY.into()),
            (
                "PROJECTS_SERVICE_CLIENT_KEYS",
                format!("auth-service={PROJECTS_KEY}"),
            ),
        ];
        projects_service::Settings::from_lookup(|k| {
            overrides
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
                .or_else(|| base.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
        })
        .expect("valid projects-service settings")
    }

    /// Starts a projects-service in front of `token_service`.
    pub async fn projects(
        &self,
        token_service: SocketAddr,
        overrides: &[(&str, &str)],
    ) -> ProjectsService {
        let app =
            projects_service::Application::build(self.projects_settings(token_service, overrides))
                .expect("projects-service builds");
        let url = format!("http://{}", app.local_addr());
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        ProjectsService {
            url,
            shutdown: Some(tx),
            handle,
        }
    }
}

/// A fresh PKCE pair: (verifier, S256 challenge).
pub fn pkce() -> (String, String) {
    let bytes: [u8; 48] = rand::rng().random();
    let verifier = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub fn by_install(install_id: &str) -> pb::GetAccessTokenRequest {
    pb::GetAccessTokenRequest {
        target: Some(pb::get_access_token_request::Target::InstallId(
            install_id.into(),
        )),
        min_validity_seconds: 0,
    }
}

pub fn force(install_id: &str, rejected: &str) -> pb::ForceRefreshRequest {
    pb::ForceRefreshRequest {
        target: Some(pb::force_refresh_request::Target::InstallId(
            install_id.into(),
        )),
        rejected_access_token: rejected.into(),
    }
}

/// Sleeps until a 2-second token is inside its 1-second refresh margin.
pub async fn until_refresh_due() {
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
}
