//! The in-process stack: a private Redis, the fake Snyk, and any number of real token-service
//! replicas and projects-services (their `Application`s, on port 0) over them.

use std::{net::SocketAddr, sync::Arc};

use fake_snyk::FakeSnyk;
use snykapps_proto::token_v1 as pb;
use test_support::RedisServer;
use token_service::{Application, Settings, metrics::Metrics};
use tokio::{sync::oneshot, task::JoinHandle};

use crate::{
    AUTH_SERVICE_RPCS, AUTH_TOKEN_KEY, CALLER_KEY, CLIENT_ID, CLIENT_SECRET, K1, PROJECTS_KEY,
    PROJECTS_OPS_KEY, PROJECTS_SERVICE_RPCS, PROJECTS_TOKEN_KEY, process,
    redis_servers::{TOKEN_SERVICE_USER, grants_redis},
    token_client::{Client, complete_install},
};

/// Redis + fake Snyk, shared by the replicas a test starts.
pub struct Stack {
    pub redis: RedisServer,
    pub fake: FakeSnyk,
}

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
                // Nobody here reads it: let the OS pick, so it cannot collide with the free port
                // another test picked for its own server.
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
        ProjectsService {
            url,
            metrics_url,
            running: Running::spawn(|stop| app.run_until_stopped(stop)),
        }
    }
}

/// What a service's `run_until_stopped` waits for: the test's stop signal.
pub type StopSignal = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A service's `run_until_stopped` on a task of its own, and the signal that stops it gracefully.
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Spawns `run(stop)`, where `stop` completes when the test stops the service.
    pub fn spawn<F>(run: impl FnOnce(StopSignal) -> F) -> Running
    where
        F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(run(Box::pin(async {
            let _ = rx.await;
        })));
        Running {
            stop: Some(tx),
            task,
        }
    }

    /// Sends the stop signal without waiting.
    pub fn begin_stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for the service to end; its result.
    pub async fn join(self) -> anyhow::Result<()> {
        self.task.await?
    }

    /// Sends the stop signal and waits for the service to end.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.begin_stop();
        self.join().await
    }
}

/// One running token-service.
pub struct Replica {
    pub addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    /// Its grant cache (tests read its coherence and counters).
    pub cache: Arc<token_service::cache::GrantCache>,
    running: Running,
}

impl Replica {
    /// Graceful stop: returns once in-flight calls and refreshes are done.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.running.stop().await
    }

    /// Sends the shutdown signal without waiting.
    pub fn begin_stop(&mut self) {
        self.running.begin_stop();
    }

    /// Waits for the replica to end (after [`Replica::begin_stop`]).
    pub async fn join(self) -> anyhow::Result<()> {
        self.running.join().await
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

/// Starts a token-service with `settings` on its own task.
pub async fn spawn(settings: Settings) -> Replica {
    let app = Application::build(settings)
        .await
        .expect("token-service builds");
    let addr = app.local_addr();
    let metrics = app.metrics();
    let cache = Arc::clone(app.store().cache());
    Replica {
        addr,
        metrics,
        cache,
        running: Running::spawn(|stop| app.run_until_stopped(stop)),
    }
}

/// One running projects-service.
pub struct ProjectsService {
    pub url: String,
    /// `http://{PROJECTS_SERVICE_METRICS_ADDR}` when `/metrics` has a port of its own.
    pub metrics_url: Option<String>,
    running: Running,
}

impl ProjectsService {
    /// Graceful stop: returns once in-flight requests are done.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.running.stop().await
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
