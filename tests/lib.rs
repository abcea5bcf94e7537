//! Helpers for the system tests in `system/`: a private Redis, the fake Snyk and any number of
//! real token-service replicas (their `Application`s, on port 0), plus typed clients.
//! (Test scaffolding: `Debug` would add nothing here.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_debug_implementations
)]

pub mod browser;
pub mod process;

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
/// The key of the tests' own token-service caller, `ops`: granted every RPC, because the tests
/// install, inspect and delete installs as an operator would. The real services get their real
/// grants ([`PROJECTS_TOKEN_KEY`], [`AUTH_TOKEN_KEY`]).
pub const CALLER_KEY: &str = "ops-test-caller-key-0123456789";
/// The key projects-service presents to token-service (granted [`PROJECTS_SERVICE_RPCS`]).
pub const PROJECTS_TOKEN_KEY: &str = "projects-service-key-0123456789";
/// What projects-service may call on token-service (as in docker-compose.yml).
pub const PROJECTS_SERVICE_RPCS: &str = "GetAccessToken+ForceRefresh";
/// What auth-service may call on token-service (as in docker-compose.yml).
pub const AUTH_SERVICE_RPCS: &str = "CompleteInstall+GetInstall+DeleteInstall";
pub const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

/// The fake's configuration every test starts from (2-second access tokens: a margin of 1 s).
/// [`fake_config`] with access tokens that live an hour: no refresh falls due by itself.
pub fn hour_long_tokens() -> fake_snyk::Config {
    let mut c = fake_config();
    c.access_token_ttl = std::time::Duration::from_secs(3600);
    c
}

/// A Redis that a test kills and starts again: persistent (AOF in a temp dir) on a fixed TCP
/// port, so a restart finds its data and its clients find it.
pub struct RestartableRedis {
    _dir: tempfile::TempDir,
    options: test_support::RedisOptions,
    /// `redis://token-service:…@127.0.0.1:<port>`, for `REDIS_URL`.
    pub url: String,
}

impl RestartableRedis {
    /// Starts one and makes it the stack's Redis.
    pub fn replace(stack: &mut Stack) -> RestartableRedis {
        let dir = tempfile::tempdir().unwrap();
        let options = test_support::RedisOptions {
            tcp: true,
            persistent: true,
            dir: Some(dir.path().into()),
            ..grants_redis()
        };
        stack.redis = RedisServer::start_with(options.clone()).unwrap();
        let options = test_support::RedisOptions {
            port: stack.redis.port(),
            ..options
        };
        let url = stack.redis.tcp_url_as(TOKEN_SERVICE_USER).unwrap();
        RestartableRedis {
            _dir: dir,
            options,
            url,
        }
    }

    /// Starts it again (after `stack.redis.kill()`), same port, same data.
    pub fn restart(&self, stack: &mut Stack) {
        stack.redis = RedisServer::start_with(self.options.clone()).unwrap();
    }
}

pub fn fake_config() -> fake_snyk::Config {
    let mut c = fake_snyk::Config::new(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI);
    c.access_token_ttl = std::time::Duration::from_secs(2);
    c
}

/// token-service's user in the grants' Redis (`deploy/redis/redis.acl`).
pub const TOKEN_SERVICE_USER: &str = "token-service";
/// auth-service's user in its own Redis (`deploy/redis/redis-auth.acl`).
pub const AUTH_SERVICE_USER: &str = "auth-service";

/// The grants' Redis as compose runs it: under the repository's ACL file, so token-service
/// connects as its own user and the test reads as [`test_support::ADMIN_USER`].
pub fn grants_redis() -> test_support::RedisOptions {
    test_support::RedisOptions {
        acl: Some(test_support::acl_file("redis")),
        ..test_support::RedisOptions::default()
    }
}

/// auth-service's own Redis, under its ACL file.
pub fn auth_redis() -> RedisServer {
    RedisServer::start_with(test_support::RedisOptions {
        acl: Some(test_support::acl_file("redis-auth")),
        ..test_support::RedisOptions::default()
    })
    .expect("auth-service's redis-server starts")
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
    /// Its grant cache (tests read its coherence and counters).
    pub cache: Arc<token_service::cache::GrantCache>,
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

    /// Until its grant cache tracks changes (the tracking connection is up) and so answers
    /// first; fails the test after 10 s.
    pub async fn until_cache_tracked(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.cache.coherence() != token_service::cache::Coherence::Tracked {
            assert!(
                std::time::Instant::now() < deadline,
                "the grant cache never tracked"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
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
        let redis = RedisServer::start_with(grants_redis()).expect("redis-server starts");
        let fake = FakeSnyk::start(fake).await.expect("fake Snyk starts");
        Stack { redis, fake }
    }

    /// `n` token-service replicas with the same `overrides`, started one after another.
    pub async fn replicas(&self, n: usize, overrides: &[(&str, &str)]) -> Vec<Replica> {
        let mut replicas = Vec::with_capacity(n);
        for _ in 0..n {
            replicas.push(self.replica(overrides).await);
        }
        replicas
    }

    /// `n` installs completed through `client`: their ids.
    pub async fn installs(&self, client: &mut Client, n: usize) -> Vec<String> {
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            ids.push(self.install(client).await.install_id);
        }
        ids
    }

    /// token-service's environment for this stack; `overrides` win over the defaults.
    pub fn token_env(&self, overrides: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = overrides
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let base = [
            ("TOKEN_SERVICE_ADDR", "127.0.0.1:0".to_owned()),
            ("TOKEN_SERVICE_METRICS_ADDR", "127.0.0.1:0".to_owned()),
            ("REDIS_URL", self.redis.url_as(TOKEN_SERVICE_USER)),
            ("SNYK_API_URL", self.fake.url()),
            ("SNYK_CLIENT_ID", CLIENT_ID.to_owned()),
            ("SNYK_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ("TOKEN_ENCRYPTION_KEYS", K1.to_owned()),
            (
                "TOKEN_SERVICE_CLIENT_KEYS",
                format!(
                    "ops={CALLER_KEY},projects-service={PROJECTS_TOKEN_KEY},auth-service={AUTH_TOKEN_KEY}"
                ),
            ),
            (
                "TOKEN_SERVICE_CALLER_RPCS",
                format!(
                    "ops=*,projects-service={PROJECTS_SERVICE_RPCS},auth-service={AUTH_SERVICE_RPCS}"
                ),
            ),
            ("SNYK_TOKEN_BACKOFF_MS", "50".to_owned()),
        ];
        for (k, v) in base {
            if !env.iter().any(|(n, _)| n == k) {
                env.push((k.to_owned(), v));
            }
        }
        env
    }

    /// token-service settings pointing at this stack; `overrides` win over the defaults.
    pub fn settings(&self, overrides: &[(&str, &str)]) -> Settings {
        let env = self.token_env(overrides);
        Settings::from_lookup(|k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
            .expect("valid test settings")
    }

    /// A token-service as its own process (the real binary), ready to serve.
    pub async fn replica_process(
        &self,
        overrides: &[(&str, &str)],
    ) -> (process::Process, SocketAddr) {
        let port = test_support::free_port().expect("free port");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut env = self.token_env(overrides);
        for (k, v) in env.iter_mut() {
            match k.as_str() {
                "TOKEN_SERVICE_ADDR" => *v = addr.to_string(),
                // Nobody here reads it: let the OS pick, so it cannot collide with another
                // test's pick (a CI run once failed on exactly that).
                "TOKEN_SERVICE_METRICS_ADDR" => *v = "127.0.0.1:0".into(),
                _ => {}
            }
        }
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let mut p = process::Process::spawn("token-service", &env);
        process::wait_grpc_serving(&mut p, addr, "snykapps.token.v1.TokenService").await;
        (p, addr)
    }

    pub async fn replica(&self, overrides: &[(&str, &str)]) -> Replica {
        spawn(self.settings(overrides)).await
    }

    /// Completes an install through the fake's consent shortcut and `CompleteInstall`.
    pub async fn install(&self, client: &mut Client) -> pb::Install {
        complete_install(self, client, "", None)
            .await
            .expect("install completes")
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
        let keys = self.redis_keys("*").await;
        let mut c = self.redis_conn().await;
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
                // The lifecycle events (`snykapps:events`): every field of every entry.
                "stream" => {
                    let entries: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
                        .arg(&k)
                        .arg("-")
                        .arg("+")
                        .query_async(&mut c)
                        .await
                        .unwrap();
                    entries.into_iter().flat_map(|(_, fields)| fields).collect()
                }
                other => panic!("unexpected key type {other}"),
            };
            for v in vals {
                out.extend_from_slice(&v);
            }
        }
        out
    }

    /// token-service's own store over this stack's Redis (to set up or inspect records as a
    /// replica would).
    pub async fn store(&self, overrides: &[(&str, &str)]) -> token_service::store::Store {
        let settings = self.settings(overrides);
        token_service::store::Store::connect(
            &settings.redis,
            settings.keyring,
            std::time::Duration::from_secs(2),
            0,
        )
        .await
        .unwrap()
    }

    /// The user removes the app at Snyk: the whole grant of `token` (any of its tokens) is
    /// revoked at the fake, through its real `/oauth2/revoke`. token-service does not know until
    /// Snyk refuses a token of it.
    pub async fn revoke_at_snyk(&self, token: &str) {
        let res = reqwest::Client::new()
            .post(format!("{}/oauth2/revoke", self.fake.url()))
            .form(&[
                ("token", token),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
            ])
            .send()
            .await
            .expect("the fake answers");
        assert_eq!(res.status(), 200, "revoked at the fake");
    }

    /// How many `grant_type=refresh_token` requests reached the fake (redeemed or not).
    pub fn refresh_calls(&self) -> u64 {
        self.fake
            .stats()
            .token_calls
            .get("refresh_token")
            .copied()
            .unwrap_or(0)
    }

    /// A raw Redis connection to this stack's server.
    pub async fn redis_conn(&self) -> redis::aio::MultiplexedConnection {
        self.redis.conn().await
    }

    /// The keys in Redis that match `pattern` (`KEYS`: a test's own small database).
    pub async fn redis_keys(&self, pattern: &str) -> Vec<String> {
        self.redis.keys(pattern).await
    }
}

/// Starts a token-service with `settings` on its own task.
pub async fn spawn(settings: Settings) -> Replica {
    let app = Application::build(settings)
        .await
        .expect("token-service builds");
    let addr = app.local_addr();
    let metrics = app.metrics();
    let cache = Arc::clone(app.store().cache());
    let (tx, rx) = oneshot::channel();
    let handle = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    Replica {
        addr,
        metrics,
        cache,
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

/// A client of `replica` with the tests' own caller key ([`CALLER_KEY`], every RPC).
pub async fn client(replica: &Replica) -> Client {
    client_with_key(replica.addr, CALLER_KEY).await
}

/// The key auth-service presents to projects-service.
pub const PROJECTS_KEY: &str = "auth-service-key-0123456789abcdef";
/// The tests' own caller of projects-service (`tests`): the only one granted the org route.
pub const PROJECTS_OPS_KEY: &str = "tests-ops-projects-key-0123456789";

/// One running projects-service.
pub struct ProjectsService {
    pub url: String,
    /// `http://{PROJECTS_SERVICE_METRICS_ADDR}` when `/metrics` has a port of its own.
    pub metrics_url: Option<String>,
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
                .bearer_auth(PROJECTS_OPS_KEY)
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
            ("TOKEN_SERVICE_API_KEY", PROJECTS_TOKEN_KEY.into()),
            (
                "PROJECTS_SERVICE_CLIENT_KEYS",
                format!("auth-service={PROJECTS_KEY},tests={PROJECTS_OPS_KEY}"),
            ),
            // As in compose: auth-service lists by install only.
            ("PROJECTS_SERVICE_ORG_ROUTE_CALLERS", "tests".into()),
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

    /// Starts a projects-service in front of `token_service`; its `url` is https to `localhost`
    /// when `overrides` give it a certificate (`PROJECTS_SERVICE_TLS_CERT`/`_KEY`).
    pub async fn projects(
        &self,
        token_service: SocketAddr,
        overrides: &[(&str, &str)],
    ) -> ProjectsService {
        let settings = self.projects_settings(token_service, overrides);
        // Over HTTPS by the name its certificate holds (the tests' certificates name localhost).
        let url = if settings.tls.is_some() {
            "https://localhost"
        } else {
            "http://127.0.0.1"
        };
        let app = projects_service::Application::build(settings).expect("projects-service builds");
        let url = format!("{url}:{}", app.local_addr().port());
        let metrics_url = app.metrics_addr().map(|a| format!("http://{a}"));
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        ProjectsService {
            url,
            metrics_url,
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

pub fn by_org(org_id: &str) -> pb::GetAccessTokenRequest {
    pb::GetAccessTokenRequest {
        target: Some(pb::get_access_token_request::Target::OrgId(org_id.into())),
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

/// The install as token-service reports it.
pub async fn install_status(c: &mut Client, id: &str) -> pb::Install {
    c.get_install(pb::GetInstallRequest {
        install_id: id.into(),
    })
    .await
    .unwrap()
    .into_inner()
}

/// `GetAccessToken` by install id, unwrapped to the token.
pub async fn access_token(c: &mut Client, id: &str) -> String {
    c.get_access_token(by_install(id))
        .await
        .unwrap()
        .into_inner()
        .access_token
}

/// `ForceRefresh` of install `id` with `rejected` as the token Snyk refused, unwrapped to the
/// token it answers with.
pub async fn forced_token(c: &mut Client, id: &str, rejected: &str) -> String {
    c.force_refresh(force(id, rejected))
        .await
        .unwrap()
        .into_inner()
        .access_token
}

/// Sleeps until a 2-second token is below its validity floor (a quarter of its lifetime,
/// 0.5 s): callers then wait for the refresh instead of getting the stored token.
pub async fn until_refresh_due() {
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
}

/// Sleeps until a 2-second token is inside its 1-second refresh margin but above its 0.5 s
/// floor: callers get the stored token at once and the refresh runs in the background.
pub async fn until_inside_margin() {
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
}

// ---- auth-service: the browser install flow (system/auth.rs, system/browser.rs) ----------------

/// The key auth-service presents to token-service.
pub const AUTH_TOKEN_KEY: &str = "auth-service-token-key-0123456789";
/// `AUTH_COOKIE_KEY` of the test auth-services: the 64 bytes 0..=63, base64.
pub const AUTH_COOKIE_KEY: &str =
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==";

/// The fake's configuration for browser-flow tests: `fake_config()` with hour-long access tokens,
/// so no refresh happens unless a test asks for one.
pub fn auth_fake_config() -> fake_snyk::Config {
    let mut c = fake_config();
    c.access_token_ttl = std::time::Duration::from_secs(3600);
    c
}

/// One running auth-service (its `Application`, on its own task).
pub struct AuthService {
    pub url: String,
    /// `http://{AUTH_SERVICE_METRICS_ADDR}`, where `/metrics` is served.
    pub metrics_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl AuthService {
    /// Builds and starts an auth-service with `settings`.
    pub async fn spawn(settings: auth_service::Settings) -> anyhow::Result<AuthService> {
        let app = auth_service::Application::build(settings).await?;
        let url = format!("http://{}", app.local_addr());
        let metrics_url = format!("http://{}", app.metrics_addr());
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        Ok(AuthService {
            url,
            metrics_url,
            shutdown: Some(tx),
            handle,
        })
    }

    /// Graceful stop: returns once in-flight requests are done.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.handle.await?
    }
}

/// The whole system behind a browser: Redis, the fake Snyk, token-service, projects-service and
/// auth-service, wired as in production. The fake checks redirect URIs exactly, so
/// auth-service's port is chosen first and the fake registers `http://127.0.0.1:{port}/callback`.
pub struct AuthStack {
    pub stack: Stack,
    /// auth-service's own Redis (pending sign-ins), as compose runs it.
    pub auth_redis: RedisServer,
    /// `None` once [`AuthStack::stop_token_service`] ran.
    pub replica: Option<Replica>,
    pub token_addr: SocketAddr,
    pub projects: ProjectsService,
    pub auth: AuthService,
    /// auth-service's `SNYK_REDIRECT_URI`, registered at the fake.
    pub redirect_uri: String,
    /// The stopped token-service's port, held closed (see [`hold_port`]).
    token_port_hold: Option<tokio::net::TcpSocket>,
}

impl AuthStack {
    /// The stack with [`auth_fake_config`] and auth-service's default test settings.
    pub async fn start() -> AuthStack {
        Self::start_with(auth_fake_config(), &[]).await
    }

    /// The stack with `fake` (its redirect URIs get auth-service's added) and auth-service
    /// settings `overrides`.
    pub async fn start_with(mut fake: fake_snyk::Config, overrides: &[(&str, &str)]) -> AuthStack {
        let port = test_support::free_port().expect("a free port");
        fake.redirect_uris.push(auth_redirect_uri(port));
        let stack = Stack::start(fake).await;
        Self::assemble(stack, auth_redis(), port, &[], overrides).await
    }

    /// The services over `stack` (whose fake registered [`auth_redirect_uri`] of `port`) and
    /// auth-service's Redis `auth_redis`: token-service with `token_overrides`, auth-service on
    /// `port` with `auth_overrides`.
    pub async fn assemble(
        stack: Stack,
        auth_redis: RedisServer,
        port: u16,
        token_overrides: &[(&str, &str)],
        auth_overrides: &[(&str, &str)],
    ) -> AuthStack {
        // The default token-service env has auth-service's key and real grant.
        let replica = stack.replica(token_overrides).await;
        let token_addr = replica.addr;
        let projects = stack.projects(token_addr, &[]).await;
        let vars = auth_vars(
            &stack,
            &auth_redis,
            port,
            token_addr,
            &projects.url,
            auth_overrides,
        );
        let settings = auth_service::Settings::from_lookup(lookup(&vars))
            .expect("valid auth-service settings");
        let auth = AuthService::spawn(settings)
            .await
            .expect("auth-service starts");
        AuthStack {
            stack,
            auth_redis,
            replica: Some(replica),
            token_addr,
            projects,
            auth,
            redirect_uri: auth_redirect_uri(port),
            token_port_hold: None,
        }
    }

    /// The environment auth-service runs with in this stack, `overrides` applied.
    pub fn auth_vars(&self, overrides: &[(&str, &str)]) -> Vec<(String, String)> {
        let port = reqwest::Url::parse(&self.auth.url).unwrap().port().unwrap();
        auth_vars(
            &self.stack,
            &self.auth_redis,
            port,
            self.token_addr,
            &self.projects.url,
            overrides,
        )
    }

    /// `{auth-service}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.auth.url)
    }

    /// Stops token-service (gracefully) and keeps its port closed; auth-service keeps running.
    pub async fn stop_token_service(&mut self) {
        if let Some(replica) = self.replica.take() {
            replica.stop().await.expect("token-service stops");
            self.token_port_hold = Some(hold_port(self.token_addr));
        }
    }

    /// A token-service client with the tests' own `ops` key (to inspect installs and tokens).
    pub async fn token_client(&self) -> Client {
        client_with_key(self.token_addr, CALLER_KEY).await
    }

    /// `GET /auth`: asserts the 302 to the fake's consent page and returns its URL.
    pub async fn begin(&self, browser: &Browser) -> reqwest::Url {
        let res = browser.get(&self.url("/auth")).await;
        assert_eq!(res.status(), 302, "GET /auth redirects to Snyk");
        self.consent_page_of(&res)
    }

    /// The redirect `res` gives: asserts that it is Snyk's (the fake's) consent page.
    fn consent_page_of(&self, res: &reqwest::Response) -> reqwest::Url {
        let location = res
            .headers()
            .get("location")
            .expect("a Location")
            .to_str()
            .unwrap();
        let url = reqwest::Url::parse(location).expect("an absolute URL");
        assert!(
            url.as_str()
                .starts_with(&format!("{}/oauth2/authorize?", self.stack.fake.url())),
            "{url}"
        );
        url
    }

    /// On the consent page at `consent`, presses the button with id `button` (`approve` or
    /// `deny`) as a browser would; returns where Snyk sends the browser back to (not visited).
    pub async fn decide(
        &self,
        browser: &Browser,
        consent: &reqwest::Url,
        button: &str,
    ) -> reqwest::Url {
        let res = browser.get(consent.as_str()).await;
        assert_eq!(res.status(), 200, "the consent page shows");
        let form = HtmlForm::parse(&res.text().await.unwrap(), button);
        let res = browser.submit(consent, &form).await;
        assert_eq!(res.status(), 302, "the decision redirects back to the app");
        let location = res
            .headers()
            .get("location")
            .expect("a Location")
            .to_str()
            .unwrap();
        let url = reqwest::Url::parse(location).expect("an absolute URL");
        assert!(
            url.as_str().starts_with(&format!("{}?", self.redirect_uri)),
            "{url}"
        );
        url
    }

    /// `/auth`, then Approve: the callback URL the browser is sent to (not visited yet).
    pub async fn approved_callback(&self, browser: &Browser) -> reqwest::Url {
        let consent = self.begin(browser).await;
        self.decide(browser, &consent, "approve").await
    }

    /// The whole install in `browser`; asserts the 303 to the install's page, returns its id.
    pub async fn install(&self, browser: &Browser) -> String {
        let callback = self.approved_callback(browser).await;
        let res = browser.get(callback.as_str()).await;
        assert_eq!(res.status(), 303, "the callback completes the install");
        let location = res
            .headers()
            .get("location")
            .expect("a Location")
            .to_str()
            .unwrap()
            .to_owned();
        location
            .strip_prefix("/installs/")
            .expect("redirects to the install's page")
            .to_owned()
    }
}

/// The whole install as a browser makes it over HTTP, against the app at `app_url` wherever it
/// runs (in-process or in containers): `/auth`, Approve on Snyk's consent page, the callback.
/// Asserts each step's status; returns the install's id.
pub async fn install_over_http(browser: &Browser, app_url: &str) -> String {
    let location = |res: &reqwest::Response| {
        res.headers()
            .get("location")
            .expect("a Location")
            .to_str()
            .unwrap()
            .to_owned()
    };
    let res = browser.get(&format!("{app_url}/auth")).await;
    assert_eq!(res.status(), 302, "GET {app_url}/auth redirects to Snyk");
    let consent = reqwest::Url::parse(&location(&res)).expect("an absolute URL");
    let res = browser.get(consent.as_str()).await;
    assert_eq!(res.status(), 200, "Snyk's consent page shows: {consent}");
    let form = HtmlForm::parse(&res.text().await.unwrap(), "approve");
    let res = browser.submit(&consent, &form).await;
    assert_eq!(res.status(), 302, "Approve redirects back to the app");
    let res = browser.get(&location(&res)).await;
    assert_eq!(res.status(), 303, "the callback completes the install");
    location(&res)
        .strip_prefix("/installs/")
        .expect("redirects to the install's page")
        .to_owned()
}

/// The redirect URI auth-service on `port` registers at the fake.
pub fn auth_redirect_uri(port: u16) -> String {
    format!("http://127.0.0.1:{port}/callback")
}

fn auth_vars(
    stack: &Stack,
    auth_redis: &RedisServer,
    port: u16,
    token_service: SocketAddr,
    projects_url: &str,
    overrides: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = vec![
        ("AUTH_SERVICE_ADDR".into(), format!("127.0.0.1:{port}")),
        // Port 0: the OS picks a free one (read back from `AuthService::metrics_url`).
        ("AUTH_SERVICE_METRICS_ADDR".into(), "127.0.0.1:0".into()),
        ("SNYK_APP_URL".into(), stack.fake.url()),
        ("SNYK_CLIENT_ID".into(), CLIENT_ID.into()),
        ("SNYK_REDIRECT_URI".into(), auth_redirect_uri(port)),
        (
            "TOKEN_SERVICE_URL".into(),
            format!("http://{token_service}"),
        ),
        ("TOKEN_SERVICE_API_KEY".into(), AUTH_TOKEN_KEY.into()),
        ("PROJECTS_SERVICE_URL".into(), projects_url.to_owned()),
        ("PROJECTS_SERVICE_API_KEY".into(), PROJECTS_KEY.into()),
        (
            "AUTH_REDIS_URL".into(),
            auth_redis.url_as(AUTH_SERVICE_USER),
        ),
        ("AUTH_COOKIE_KEY".into(), AUTH_COOKIE_KEY.into()),
    ];
    for (k, v) in overrides {
        vars.retain(|(n, _)| n != k);
        vars.push(((*k).to_owned(), (*v).to_owned()));
    }
    vars
}

/// A settings lookup over `vars`.
pub fn lookup(vars: &[(String, String)]) -> impl Fn(&str) -> Option<String> + '_ {
    move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

/// What a browser does that the flow depends on: it keeps cookies per host (ports do not separate
/// cookies, as in real browsers) and sends them back; it does not follow redirects by itself, so
/// tests see each one.
pub struct Browser {
    http: reqwest::Client,
    jar: std::sync::Mutex<Vec<(String, String)>>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        Browser::with_client(reqwest::Client::builder())
    }

    /// A browser that trusts the CA certificates of `ca_pem` besides the platform's roots.
    pub fn trusting(ca_pem: &[u8]) -> Browser {
        Browser::with_client(client_trusting(ca_pem))
    }

    /// A browser over `http` (e.g. one that trusts a test CA), redirects turned off.
    pub fn with_client(http: reqwest::ClientBuilder) -> Browser {
        let http = http
            .redirect(reqwest::redirect::Policy::none())
            // A fresh connection per request: a pooled one that the server closes as idle at
            // the moment it is reused fails the request (`IncompleteMessage`), which no browser
            // would show and no test should fail on.
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        Browser {
            http,
            jar: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        let res = self
            .with_cookies(self.http.get(url))
            .send()
            .await
            .expect("the server answers");
        self.remember(&res);
        res
    }

    /// Posts `form` (urlencoded) to its action, resolved against `page`.
    pub async fn submit(&self, page: &reqwest::Url, form: &HtmlForm) -> reqwest::Response {
        let action = page.join(&form.action).expect("a valid form action");
        let res = self
            .with_cookies(self.http.post(action).form(&form.fields))
            .send()
            .await
            .expect("the server answers");
        self.remember(&res);
        res
    }

    /// An empty form `POST` to `url` with extra request `headers` (`Origin`, `Sec-Fetch-Site`: what
    /// a real browser adds, or what a cross-site page makes it add).
    pub async fn post(&self, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.with_cookies(self.http.post(url)).form(&[("", ""); 0]);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.expect("the server answers");
        self.remember(&res);
        res
    }

    /// The value of cookie `name`, if the browser holds it.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar
            .lock()
            .unwrap()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    /// Puts a cookie in the jar as if a server had set it (to forge one).
    pub fn set_cookie(&self, name: &str, value: &str) {
        let mut jar = self.jar.lock().unwrap();
        jar.retain(|(n, _)| n != name);
        jar.push((name.to_owned(), value.to_owned()));
    }

    fn with_cookies(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let jar = self.jar.lock().unwrap();
        if jar.is_empty() {
            return req;
        }
        let header = jar
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        req.header("cookie", header)
    }

    fn remember(&self, res: &reqwest::Response) {
        for value in res.headers().get_all("set-cookie") {
            let value = value.to_str().unwrap();
            let (pair, attrs) = value.split_once(';').unwrap_or((value, ""));
            let (name, val) = pair.split_once('=').unwrap();
            let deleted = attrs
                .split(';')
                .any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            let mut jar = self.jar.lock().unwrap();
            jar.retain(|(n, _)| n != name.trim());
            if !deleted {
                jar.push((name.trim().to_owned(), val.trim().to_owned()));
            }
        }
    }
}

/// What a browser submits for an HTML form when the button with a given id is pressed: the
/// action, every named `<input>` and the pressed button's `name=value`.
pub struct HtmlForm {
    pub action: String,
    pub fields: Vec<(String, String)>,
}

impl HtmlForm {
    /// Parses the (first) form of `html`. Enough HTML for the fake's consent page, not more.
    pub fn parse(html: &str, button_id: &str) -> HtmlForm {
        let form_tag = *tags(html, "form").first().expect("a <form>");
        let action = attr(form_tag, "action").unwrap_or_default();
        let mut fields = Vec::new();
        for input in tags(html, "input") {
            let kind = attr(input, "type").unwrap_or_else(|| "text".into());
            if let Some(name) = attr(input, "name")
                && !matches!(kind.as_str(), "submit" | "button" | "image")
            {
                fields.push((name, attr(input, "value").unwrap_or_default()));
            }
        }
        let button = tags(html, "button")
            .into_iter()
            .find(|b| attr(b, "id").as_deref() == Some(button_id))
            .unwrap_or_else(|| panic!("no button with id {button_id}"));
        if let Some(name) = attr(button, "name") {
            fields.push((name, attr(button, "value").unwrap_or_default()));
        }
        HtmlForm { action, fields }
    }
}

/// The text of the opening tags `<name …>` of `html`.
fn tags<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name}");
    html.match_indices(&open)
        .filter_map(|(i, _)| {
            let rest = &html[i + open.len()..];
            if !rest.starts_with([' ', '>', '\n', '\t']) {
                return None;
            }
            rest.find('>').map(|end| &rest[..end])
        })
        .collect()
}

/// The value of attribute `name="…"` in a tag's text, HTML entities decoded.
fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(
        tag[start..end]
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

pub use test_support::{Certificates, certificates, certificates_for};

/// An HTTP client builder that trusts the CA certificates of `ca_pem` besides the platform's
/// roots (as the services do with `SNYK_CA_CERT`).
pub fn client_trusting(ca_pem: &[u8]) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_certs_merge(reqwest::Certificate::from_pem_bundle(ca_pem).expect("PEM certificates"))
}

/// Keeps the port of a stopped server closed: bound but not listening, so connections to it are
/// refused (as to a server that is down) and no other test's server, binding port 0, can get it.
pub fn hold_port(addr: SocketAddr) -> tokio::net::TcpSocket {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // The stopped server's connections may linger in TIME_WAIT.
    socket.set_reuseaddr(true).unwrap();
    socket
        .bind(addr)
        .unwrap_or_else(|e| panic!("cannot hold {addr} closed (another server took it?): {e}"));
    socket
}

/// A gRPC codec that sends and receives raw bytes, bypassing prost: what a broken or hostile
/// client sends, or a hand-written request (reflection) needs.
#[derive(Clone, Default)]
pub struct RawCodec;

pub struct RawEncoder;
pub struct RawDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        use bytes::BufMut as _;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        use bytes::Buf as _;
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

// ---- Reconnect and Disconnect (issue 14) ------------------------------------------------------

/// The pending sign-ins in auth-service's Redis: each `auth:state:*` key's JSON record.
pub async fn pending_sign_ins(auth_redis: &RedisServer) -> Vec<serde_json::Value> {
    let keys = auth_redis.keys("auth:state:*").await;
    let mut c = auth_redis.conn().await;
    let mut records = Vec::new();
    for key in keys {
        let raw: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut c)
            .await
            .unwrap();
        if let Some(raw) = raw {
            records.push(serde_json::from_str(&raw).expect("a JSON sign-in record"));
        }
    }
    records
}

impl AuthStack {
    /// A form post from auth-service's own page, as a browser labels it (`Origin` and
    /// `Sec-Fetch-Site: same-origin`).
    pub async fn post_from_our_page(&self, browser: &Browser, path: &str) -> reqwest::Response {
        let origin = self.auth.url.clone();
        browser
            .post(
                &self.url(path),
                &[
                    ("origin", origin.as_str()),
                    ("sec-fetch-site", "same-origin"),
                ],
            )
            .await
    }

    /// Presses Reconnect on install `id`'s page: asserts the 303 to the fake's consent page and
    /// returns its URL.
    pub async fn begin_reconnect(&self, browser: &Browser, id: &str) -> reqwest::Url {
        let res = self
            .post_from_our_page(browser, &format!("/installs/{id}/reconnect"))
            .await;
        assert_eq!(res.status(), 303, "Reconnect redirects to Snyk");
        self.consent_page_of(&res)
    }

    /// Reconnect on install `id`'s page, then Approve at Snyk: the callback URL the browser is
    /// sent to (not visited yet).
    pub async fn approved_reconnect(&self, browser: &Browser, id: &str) -> reqwest::Url {
        let consent = self.begin_reconnect(browser, id).await;
        self.decide(browser, &consent, "approve").await
    }

    /// The user approves at Snyk's consent page `consent` but picks only `orgs`: the callback URL
    /// (with the consent page's state) the browser is sent to, not visited.
    pub fn approve_for_orgs(
        &self,
        consent: &reqwest::Url,
        orgs: &[&fake_snyk::OrgSeed],
    ) -> reqwest::Url {
        let q: std::collections::HashMap<String, String> =
            consent.query_pairs().into_owned().collect();
        let ids: Vec<_> = orgs.iter().map(|o| o.id).collect();
        let code = self
            .stack
            .fake
            .approve_for_orgs(
                CLIENT_ID,
                &self.redirect_uri,
                &q["code_challenge"],
                None,
                &ids,
            )
            .expect("approved");
        let mut url = reqwest::Url::parse(&self.redirect_uri).unwrap();
        url.query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &q["state"]);
        url
    }
}

// ---- Lifecycle events and reconnect (issue 14: tests/system/events.rs, reconnect.rs) ----

/// `CompleteInstall` with `reauthorize_install_id`: the user approves again (all orgs, or only
/// `orgs` when given) and the new grant replaces `install_id`'s.
pub async fn reconnect(
    stack: &Stack,
    client: &mut Client,
    install_id: &str,
    orgs: Option<&[&fake_snyk::OrgSeed]>,
) -> Result<pb::Install, Status> {
    complete_install(stack, client, install_id, orgs).await
}

/// The fake's consent shortcut (all orgs, or only `orgs`), then `CompleteInstall` with
/// `reauthorize_install_id` (`""`: a new install).
async fn complete_install(
    stack: &Stack,
    client: &mut Client,
    reauthorize_install_id: &str,
    orgs: Option<&[&fake_snyk::OrgSeed]>,
) -> Result<pb::Install, Status> {
    let (verifier, challenge) = pkce();
    let code = match orgs {
        Some(orgs) => {
            let ids: Vec<_> = orgs.iter().map(|o| o.id).collect();
            stack
                .fake
                .approve_for_orgs(CLIENT_ID, REDIRECT_URI, &challenge, None, &ids)
        }
        None => stack
            .fake
            .approve(CLIENT_ID, REDIRECT_URI, &challenge, None),
    }
    .expect("approved");
    client
        .complete_install(pb::CompleteInstallRequest {
            code,
            code_verifier: verifier,
            redirect_uri: REDIRECT_URI.into(),
            reauthorize_install_id: reauthorize_install_id.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// `WatchInstallEvents(after_event_id)`: the stream, or the status the RPC answered.
pub async fn watch_events(
    client: &mut Client,
    after: &str,
) -> Result<tonic::Streaming<pb::InstallEvent>, Status> {
    client
        .watch_install_events(pb::WatchInstallEventsRequest {
            after_event_id: after.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// The next `n` events of a watch; fails the test after 10 s, naming what arrived.
pub async fn next_events(
    stream: &mut tonic::Streaming<pb::InstallEvent>,
    n: usize,
) -> Vec<pb::InstallEvent> {
    let mut got = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while got.len() < n {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Ok(Ok(Some(e))) => got.push(e),
            Ok(Ok(None)) => panic!("the watch ended after {got:?}"),
            Ok(Err(status)) => panic!("the watch failed with {status:?} after {got:?}"),
            Err(_) => panic!("waited 10 s for {n} events, got {}: {got:?}", got.len()),
        }
    }
    got
}

/// The kind names of `events`, for readable assertions.
pub fn kinds(events: &[pb::InstallEvent]) -> Vec<pb::InstallEventKind> {
    events.iter().map(pb::InstallEvent::kind).collect()
}

/// Every entry of the event stream as Redis holds it: (id, kind, install id).
pub async fn stored_events(stack: &Stack) -> Vec<(String, String, String)> {
    let mut c = stack.redis_conn().await;
    let entries: Vec<(String, std::collections::HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg("snykapps:events")
        .arg("-")
        .arg("+")
        .query_async(&mut c)
        .await
        .unwrap();
    entries
        .into_iter()
        .map(|(id, f)| (id, f["kind"].clone(), f["install_id"].clone()))
        .collect()
}
