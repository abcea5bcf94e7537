//! The gRPC channel every caller of token-service builds the same way: lazy connect, deadlines,
//! TLS when a URL is https (trusting `TOKEN_SERVICE_CA_CERT` when given, else the public web PKI
//! roots), and, when `TOKEN_SERVICE_URL` lists several replicas, calls spread over them round
//! robin, with a replica that cannot be reached skipped for the others and a replica that fails a
//! call tried last for a while ([`HOLD_OFF`]).
//!
//! Why not tonic's `Channel::balance_list`: its endpoints connect lazily, and a lazy endpoint
//! whose connection fails still reports itself ready (tonic's `Reconnect` keeps the error for
//! the next call), so the balancer keeps handing it calls that fail at once: with one replica of
//! two down, about half the calls would fail (hyperium/tonic#2839). Here the caller sees which
//! replica failed to connect, and only a call that certainly never left is sent again.

use std::{
    future::Future,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use tonic::{
    Request, Status,
    metadata::{Ascii, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig},
};
use url::Url;

use crate::config::{Env, header_safe, parse_http_url};

/// How long a replica that failed a call (could not be reached, or did not answer in time) is
/// tried only after every other one.
pub const HOLD_OFF: Duration = Duration::from_secs(2);

/// How long the TCP connection to a replica may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long the TLS handshake may take once TCP is connected. Without it a replica that accepts
/// connections but never answers the handshake (a frozen process behind a live kernel) holds an
/// https call forever: tonic's per-call deadline starts only once the connection is ready. Its
/// expiry is a connection failure (`ConnectError`): no request left, so the call moves on.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// HTTP/2 PINGs on every connection, idle or not. Without them, a connection to a replica that
/// froze or vanished without closing it (`docker pause`, a host gone, a NAT that forgot the flow)
/// stays "open", and every call sent on it after the hold-off waits out its whole deadline again.
/// With them it is closed within interval + timeout (15 s, about the default 15 s deadline); the
/// next call then opens a new one, and a connection that cannot be made is passed over at once.
/// The cost is one small frame each way per 10 s per replica per caller. tonic's server answers
/// PINGs at any rate; a gRPC-core server or proxy put in between would refuse idle PINGs more
/// often than every 5 min (GOAWAY `ENHANCE_YOUR_CALM`) unless its policy allows them. The 5 s
/// timeout is far beyond a PING round trip to a live server (microseconds to milliseconds).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// `TOKEN_SERVICE_URL`: where token-service is, as one URL or a comma-separated list of replica
/// URLs (`http://token-1:50051,http://token-2:50051`). Every entry is an absolute http(s) URL
/// that tonic accepts as an endpoint; there is at least one and none is listed twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenServiceUrls(Vec<Url>);

impl TokenServiceUrls {
    /// The variable this is read from.
    pub const VAR: &'static str = "TOKEN_SERVICE_URL";
    /// Its default: one token-service on this machine.
    pub const DEFAULT: &'static str = "http://127.0.0.1:50051";

    /// `TOKEN_SERVICE_URL`, or [`Self::DEFAULT`] when unset.
    pub fn from_env(env: &Env) -> anyhow::Result<Self> {
        Self::parse(Self::VAR, &env.var(Self::VAR, Self::DEFAULT))
    }

    /// The comma-separated list `raw`; errors name `var` and which entry is at fault.
    pub fn parse(var: &str, raw: &str) -> anyhow::Result<Self> {
        let entries: Vec<&str> = raw.split(',').map(str::trim).collect();
        let count = entries.len();
        let mut urls: Vec<Url> = Vec::with_capacity(count);
        for (i, entry) in entries.into_iter().enumerate() {
            let what = if count == 1 {
                var.to_owned()
            } else {
                format!("{var} (URL {} of {count})", i + 1)
            };
            if entry.is_empty() {
                bail!("{what} is empty: expected one URL or a comma-separated list of URLs");
            }
            let url = parse_http_url(&what, entry)?;
            Channel::from_shared(url.to_string())
                .map_err(|_| anyhow::anyhow!("{what} is not a usable gRPC endpoint"))?;
            if urls.contains(&url) {
                bail!("{what} repeats an earlier URL");
            }
            urls.push(url);
        }
        Ok(TokenServiceUrls(urls))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Url> {
        self.0.iter()
    }

    /// How many replicas are listed (at least one).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: there is at least one URL.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Url> for TokenServiceUrls {
    fn from(url: Url) -> Self {
        TokenServiceUrls(vec![url])
    }
}

/// A lazily connecting channel to `url`; calls fail with UNAVAILABLE while the server is down.
/// Connecting is bounded ([`CONNECT_TIMEOUT`], then [`TLS_HANDSHAKE_TIMEOUT`] for https), each
/// call once sent by `timeout`, and an open connection is watched by HTTP/2 keepalive.
pub fn channel(url: &Url, ca_pem: Option<&[u8]>, timeout: Duration) -> anyhow::Result<Channel> {
    lazy_channel(url, ca_pem, Some(timeout))
}

/// [`channel`], with `timeout` on every call when set; without, each call's own deadline
/// (`grpc-timeout`, which tonic enforces on this side too) is the only one.
fn lazy_channel(
    url: &Url,
    ca_pem: Option<&[u8]>,
    timeout: Option<Duration>,
) -> anyhow::Result<Channel> {
    let mut endpoint = Channel::from_shared(url.to_string())
        .map_err(|_| anyhow::anyhow!("TOKEN_SERVICE_URL is not a usable gRPC endpoint"))?
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(timeout) = timeout {
        endpoint = endpoint.timeout(timeout);
    }
    endpoint = endpoint
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    if url.scheme() == "https" {
        let mut tls = ClientTlsConfig::new()
            .domain_name(url.host_str().unwrap_or_default())
            .timeout(TLS_HANDSHAKE_TIMEOUT);
        tls = match ca_pem {
            Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
            None => tls.with_webpki_roots(),
        };
        endpoint = endpoint
            .tls_config(tls)
            .context("TOKEN_SERVICE_CA_CERT is not a usable certificate")?;
    }
    Ok(endpoint.connect_lazy())
}

/// Did this call fail before its request left, because no connection to the server could be
/// made (refused, unreachable, DNS, connect timeout, TLS handshake)? Then no server saw it and
/// sending it elsewhere cannot do anything twice.
pub fn never_sent(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Did the server itself send this status (in its headers or trailers), OK or not? A status
/// tonic makes up on this side (the deadline expired, the connection was lost or reset, a frame
/// could not be read) carries the transport error behind it as its source; one decoded from the
/// server's answer carries none.
fn sent_by_server(status: &Status) -> bool {
    std::error::Error::source(status).is_none()
}

/// A call failed on `replica` after it may have been sent: said once here, where the replica is
/// known (the caller sees only the status).
fn warn_failed(replica: &Replica, status: &Status) {
    tracing::warn!(
        replica = %replica.url,
        code = ?status.code(),
        error = %status.message(),
        "no answer from this token-service replica; not sent again, and trying it last for {} s",
        HOLD_OFF.as_secs()
    );
}

/// One token-service replica: its channel, and until when it is tried last.
struct Replica {
    url: Url,
    channel: Channel,
    /// A std `Mutex` because it is held for a read or a write, never across an `.await`.
    hold_off: Mutex<HoldOff>,
}

/// Until when a replica is tried last, and how many times that was set: an answer lifts the
/// hold-off only if no failure set it anew while the answered call was under way.
#[derive(Default)]
struct HoldOff {
    until: Option<Instant>,
    times_set: u64,
}

impl Replica {
    fn lock(&self) -> MutexGuard<'_, HoldOff> {
        self.hold_off.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn held_off(&self, now: Instant) -> bool {
        self.lock().until.is_some_and(|until| until > now)
    }

    /// A call to this replica failed: try it last for [`HOLD_OFF`].
    fn hold_off(&self) {
        let mut h = self.lock();
        h.until = Some(Instant::now() + HOLD_OFF);
        h.times_set += 1;
    }

    /// Which hold-off is current, taken when a call starts, for [`Self::lift_hold_off`].
    fn hold_off_mark(&self) -> u64 {
        self.lock().times_set
    }

    /// The server answered a call that started when `mark` was current: it is back, unless a
    /// failure since (a newer call's) says otherwise.
    fn lift_hold_off(&self, mark: u64) {
        let mut h = self.lock();
        if h.times_set == mark {
            h.until = None;
        }
    }
}

/// The outgoing side: lazily connecting channels to token-service's replicas plus what every
/// internal caller sends with each call (its key, a deadline, the current trace context). Not to
/// be confused with token-service's `AuthenticatedCaller`, the incoming side. Cheap to clone.
#[derive(Clone)]
pub struct TokenServiceChannel {
    replicas: Arc<[Replica]>,
    next: Arc<AtomicUsize>,
    authorization: MetadataValue<Ascii>,
    /// Every call's deadline, unless [`TokenServiceChannel::call_within`] sets its own.
    timeout: Duration,
}

impl std::fmt::Debug for TokenServiceChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServiceChannel")
            .field(
                "replicas",
                &self
                    .replicas
                    .iter()
                    .map(|r| r.url.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// `Bearer <key>`, the `authorization` value every caller of token-service presents, marked
/// sensitive (tonic and hyper never show it). `None` when the key cannot travel in a header
/// ([`header_safe`]).
pub fn bearer(key: &SecretString) -> Option<MetadataValue<Ascii>> {
    let key = key.expose_secret();
    if !header_safe(key) {
        return None;
    }
    let mut value: MetadataValue<Ascii> = format!("Bearer {key}").parse().ok()?;
    value.set_sensitive(true);
    Some(value)
}

impl TokenServiceChannel {
    /// A lazily connecting caller of every replica in `urls`, presenting `api_key`
    /// (`TOKEN_SERVICE_API_KEY`); `ca_pem` (`TOKEN_SERVICE_CA_CERT`) applies to each https URL.
    pub fn new(
        urls: &TokenServiceUrls,
        ca_pem: Option<&[u8]>,
        api_key: &SecretString,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let authorization = bearer(api_key).ok_or_else(|| {
            anyhow::anyhow!("TOKEN_SERVICE_API_KEY must be printable ASCII without spaces")
        })?;
        let replicas = urls
            .iter()
            .map(|url| {
                Ok(Replica {
                    url: url.clone(),
                    // No channel-wide timeout: it would cap a call that sets a longer deadline.
                    channel: lazy_channel(url, ca_pem, None)?,
                    hold_off: Mutex::default(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(TokenServiceChannel {
            replicas: replicas.into(),
            next: Arc::new(AtomicUsize::new(0)),
            authorization,
            timeout,
        })
    }

    /// One RPC: `rpc` gets a replica's channel (round robin) and `msg` as a request with the
    /// key, the deadline and `traceparent`. Only a request that certainly never left is sent
    /// again:
    ///
    /// - the replica cannot be reached ([`never_sent`]: refused, connect or TLS handshake timed
    ///   out): the same call goes to the next replica, and this one is tried last for
    ///   [`HOLD_OFF`];
    /// - the server answered, with OK or with any status it sent: that is the result, and a
    ///   hold-off set before this call started is lifted;
    /// - the call failed on this side after it may have been sent (deadline expired, connection
    ///   lost, or the attempt outlived `attempt_limit`): that failure is the result, and this
    ///   replica is tried last for [`HOLD_OFF`], so a frozen replica costs one failed call per
    ///   hold-off rather than one call in n.
    pub async fn call<M, T, F, Fut>(&self, msg: M, rpc: F) -> Result<T, Status>
    where
        M: Clone,
        F: FnMut(Channel, Request<M>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call_within(msg, self.timeout, rpc).await
    }

    /// [`Self::call`] with a deadline of its own instead of the channel's: for a call whose
    /// server waits on purpose (a permit of Snyk's request budget) up to the caller's deadline.
    pub async fn call_within<M, T, F, Fut>(
        &self,
        msg: M,
        timeout: Duration,
        mut rpc: F,
    ) -> Result<T, Status>
    where
        M: Clone,
        F: FnMut(Channel, Request<M>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        // The most one attempt on one replica can take when tonic's own timers work: connect,
        // TLS handshake, then the call's deadline. Past it, the attempt is abandoned anyway.
        let attempt_limit = CONNECT_TIMEOUT + TLS_HANDSHAKE_TIMEOUT + timeout;
        let order = self.order();
        let mut unreachable = None;
        for (i, replica) in order.iter().enumerate() {
            let mark = replica.hold_off_mark();
            let attempt = rpc(replica.channel.clone(), self.request(msg.clone(), timeout));
            // A backstop: tonic bounds connecting and, once sent, the call; should anything
            // still hang, the attempt ends here. The request may have left: not sent again.
            let Ok(outcome) = tokio::time::timeout(attempt_limit, attempt).await else {
                replica.hold_off();
                let status = Status::deadline_exceeded(format!(
                    "no answer from token-service within {} ms",
                    attempt_limit.as_millis()
                ));
                warn_failed(replica, &status);
                return Err(status);
            };
            match outcome {
                Err(status) if never_sent(&status) => {
                    replica.hold_off();
                    if i + 1 < order.len() {
                        tracing::warn!(
                            replica = %replica.url,
                            error = %status.message(),
                            "cannot reach this token-service replica; trying the next one"
                        );
                    }
                    unreachable = Some(status);
                }
                Err(status) if !sent_by_server(&status) => {
                    replica.hold_off();
                    warn_failed(replica, &status);
                    return Err(status);
                }
                answered => {
                    replica.lift_hold_off(mark);
                    return answered;
                }
            }
        }
        Err(unreachable.unwrap_or_else(|| Status::unavailable("no token-service replica")))
    }

    /// Every replica once: round robin from the next one, those held off last.
    fn order(&self) -> Vec<&Replica> {
        let n = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let (mut ready, held_off): (Vec<&Replica>, Vec<&Replica>) = (0..n)
            .map(|i| &self.replicas[(start + i) % n])
            .partition(|r| !r.held_off(now));
        ready.extend(held_off);
        ready
    }

    /// `msg` with the key, the deadline and `traceparent`.
    fn request<T>(&self, msg: T, timeout: Duration) -> Request<T> {
        let mut req = Request::new(msg);
        req.set_timeout(timeout);
        req.metadata_mut()
            .insert("authorization", self.authorization.clone());
        crate::telemetry::inject_into_metadata(req.metadata_mut());
        req
    }

    /// Does some replica answer SERVING for `service` on its gRPC health check? Every replica is
    /// asked at once, and the answer comes within [`crate::healthcheck::TIMEOUT`] in all, so a
    /// readiness probe is not held by replicas that do not answer.
    pub async fn serving(&self, service: &str) -> bool {
        let mut checks = tokio::task::JoinSet::new();
        for replica in self.replicas.iter() {
            let (channel, service) = (replica.channel.clone(), service.to_owned());
            checks.spawn(async move {
                crate::healthcheck::check(channel, String::new(), &service)
                    .await
                    .is_ok()
            });
        }
        let any_serving = async {
            while let Some(done) = checks.join_next().await {
                if matches!(done, Ok(true)) {
                    return true;
                }
            }
            false
        };
        // Dropping `checks` (on the first SERVING, or at the cap) aborts the checks still out.
        tokio::time::timeout(crate::healthcheck::TIMEOUT, any_serving)
            .await
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::healthcheck::tests::health_server;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    fn urls(raw: &str) -> anyhow::Result<TokenServiceUrls> {
        TokenServiceUrls::parse("TOKEN_SERVICE_URL", raw)
    }

    #[test]
    fn one_url_or_a_list() {
        let one = urls(" http://127.0.0.1:50051 ").unwrap();
        assert_eq!(one.len(), 1);
        let three = urls("http://a:1, https://b:2 ,http://[::1]:3").unwrap();
        let hosts: Vec<_> = three.iter().map(|u| u.host_str().unwrap()).collect();
        assert_eq!(hosts, ["a", "b", "[::1]"]);
        let env = Env::new(|_| None);
        assert_eq!(
            TokenServiceUrls::from_env(&env).unwrap(),
            TokenServiceUrls::from(Url::parse(TokenServiceUrls::DEFAULT).unwrap())
        );
    }

    #[test]
    fn every_url_must_parse_and_the_error_says_which() {
        for (raw, expected) in [
            ("", "TOKEN_SERVICE_URL is empty"),
            ("::", "TOKEN_SERVICE_URL is not a valid URL"),
            ("grpc://x:1", "TOKEN_SERVICE_URL must be an http(s) URL"),
            (
                "http://a:1,not a url",
                "TOKEN_SERVICE_URL (URL 2 of 2) is not a valid URL",
            ),
            (
                "http://a:1,,http://b:1",
                "TOKEN_SERVICE_URL (URL 2 of 3) is empty",
            ),
            ("http://a:1,", "TOKEN_SERVICE_URL (URL 2 of 2) is empty"),
            (
                "ftp://a:1,http://b:1",
                "TOKEN_SERVICE_URL (URL 1 of 2) must be an http(s) URL",
            ),
            (
                "http://a:1,http://b:1/#x",
                "TOKEN_SERVICE_URL (URL 2 of 2) must not have a fragment",
            ),
            (
                "http://a:1,http://a:1/",
                "TOKEN_SERVICE_URL (URL 2 of 2) repeats an earlier URL",
            ),
            (
                "http://a:1,https://svc:s3cret@b:1",
                "TOKEN_SERVICE_URL (URL 2 of 2) must not carry a user name or password",
            ),
            (
                "http://s3cret@a:1",
                "TOKEN_SERVICE_URL must not carry a user name or password",
            ),
        ] {
            let err = format!("{:#}", urls(raw).unwrap_err());
            assert!(err.starts_with(expected), "{raw:?}: {err}");
            assert!(!err.contains("s3cret"), "the error repeats a secret: {err}");
        }
    }

    /// An address nothing listens on (connections are refused).
    async fn closed_port() -> (std::net::SocketAddr, tokio::net::TcpSocket) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        (socket.local_addr().unwrap(), socket)
    }

    fn caller(addrs: &[std::net::SocketAddr]) -> TokenServiceChannel {
        let list = addrs
            .iter()
            .map(|a| format!("http://{a}"))
            .collect::<Vec<_>>()
            .join(",");
        caller_of(&list, Duration::from_secs(5))
    }

    fn caller_of(list: &str, timeout: Duration) -> TokenServiceChannel {
        TokenServiceChannel::new(
            &urls(list).unwrap(),
            None,
            &SecretString::from("key"),
            timeout,
        )
        .unwrap()
    }

    /// A TCP proxy to `upstream` that forwards nothing either way while the returned sender
    /// holds `true`: a replica frozen (`docker pause`) behind a connection already open.
    async fn pausable_proxy(
        upstream: std::net::SocketAddr,
    ) -> (std::net::SocketAddr, tokio::sync::watch::Sender<bool>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        async fn pipe(
            mut from: tokio::net::tcp::OwnedReadHalf,
            mut to: tokio::net::tcp::OwnedWriteHalf,
            mut paused: tokio::sync::watch::Receiver<bool>,
        ) {
            let mut buf = vec![0; 16 * 1024];
            while let Ok(n @ 1..) = from.read(&mut buf).await {
                if paused.wait_for(|p| !*p).await.is_err() || to.write_all(&buf[..n]).await.is_err()
                {
                    return;
                }
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (pause, paused) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, paused.clone()));
                tokio::spawn(pipe(server_read, client_write, paused.clone()));
            }
        });
        (addr, pause)
    }

    async fn check(channel: &TokenServiceChannel) -> Result<(), Status> {
        channel
            .call(
                HealthCheckRequest {
                    service: "svc.Up".into(),
                },
                |ch, req| async move { HealthClient::new(ch).check(req).await.map(|_| ()) },
            )
            .await
    }

    #[tokio::test]
    async fn a_refused_connection_is_never_sent_and_an_answer_is() {
        let (down, _hold) = closed_port().await;
        let err = check(&caller(&[down])).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert!(never_sent(&err), "{err:?}");
        assert!(!never_sent(&Status::unavailable("from the server")));

        let (up, _stop) = health_server().await;
        let unknown = caller(&[up])
            .call(
                HealthCheckRequest {
                    service: "other".into(),
                },
                |ch, req| async move { HealthClient::new(ch).check(req).await.map(|_| ()) },
            )
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);
        assert!(!never_sent(&unknown));
        assert!(sent_by_server(&unknown), "{unknown:?}");
        assert!(!sent_by_server(&err), "{err:?}");
    }

    #[tokio::test]
    async fn calls_go_round_robin_and_skip_a_replica_that_is_down() {
        let (up, _stop) = health_server().await;
        let (down, _hold) = closed_port().await;
        let channel = caller(&[down, up]);
        // Whichever replica the rotation starts at, every call succeeds: the one that is down
        // is passed over, then tried last.
        for _ in 0..20 {
            check(&channel)
                .await
                .expect("served by the replica that is up");
        }
        assert!(channel.replicas[0].held_off(Instant::now()));
        assert!(!channel.replicas[1].held_off(Instant::now()));
        assert!(channel.serving("svc.Up").await);

        // Every replica down: the call fails as unavailable, after trying each.
        let (down2, _hold2) = closed_port().await;
        let err = check(&caller(&[down, down2])).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert!(!caller(&[down, down2]).serving("svc.Up").await);
    }

    #[tokio::test]
    async fn an_https_replica_that_never_completes_the_handshake_is_passed_over() {
        // The TCP connection is accepted at once; the TLS handshake is never answered. It must
        // fail as a connection failure (the request never left), so the call moves on.
        let silent = test_support::silent_listener().await.unwrap();
        let (up, _stop) = health_server().await;
        let channel = caller_of(
            &format!("https://{silent},http://{up}"),
            Duration::from_millis(500),
        );
        let calls = async {
            // Two calls: whichever replica the rotation starts at, one of them meets the
            // silent one first.
            for _ in 0..2 {
                check(&channel)
                    .await
                    .expect("served by the replica that is up");
            }
        };
        tokio::time::timeout(Duration::from_secs(15), calls)
            .await
            .expect("a call hung on a TLS handshake that never ends");
        assert!(channel.replicas[0].held_off(Instant::now()));
        assert!(!channel.replicas[1].held_off(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_that_never_ends_is_cut_off_and_not_sent_elsewhere() {
        // Whatever hangs below tonic's own timers (here, an RPC that never completes), the
        // attempt ends; it may have reached the replica, so it is not sent to another one.
        let addrs: Vec<std::net::SocketAddr> =
            (1..=2).map(|port| ([127, 0, 0, 1], port).into()).collect();
        let channel = caller(&addrs);
        let mut attempts = 0;
        let result = tokio::time::timeout(
            Duration::from_secs(3600),
            channel.call((), |_, _| {
                attempts += 1;
                std::future::pending::<Result<(), Status>>()
            }),
        )
        .await
        .expect("the attempt was never cut off");
        let err = result.unwrap_err();
        assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
        assert_eq!(attempts, 1, "sent to a second replica");
        assert!(channel.replicas[0].held_off(Instant::now()));
        assert!(!channel.replicas[1].held_off(Instant::now()));
    }

    #[tokio::test]
    async fn a_replica_frozen_behind_an_open_connection_fails_one_call_then_is_held_off() {
        let (a, _stop_a) = health_server().await;
        let (b, _stop_b) = health_server().await;
        let (frozen, pause) = pausable_proxy(a).await;
        let channel = caller_of(
            &format!("http://{frozen},http://{b}"),
            Duration::from_millis(500),
        );
        // Both connections open (the rotation starts once at each replica).
        for _ in 0..2 {
            check(&channel).await.expect("both replicas answer");
        }

        pause.send_replace(true);
        let mut failures = Vec::new();
        for _ in 0..8 {
            if let Err(status) = check(&channel).await {
                failures.push(status);
            }
        }
        // The first call that meets the frozen replica waits out its deadline and fails (it
        // may have reached the server: not sent again); the replica is then tried last, so
        // the calls that follow within the hold-off go to the other one.
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(!never_sent(&failures[0]), "{:?}", failures[0]);
        assert!(!sent_by_server(&failures[0]), "{:?}", failures[0]);
        assert!(channel.replicas[0].held_off(Instant::now()));
        assert!(!channel.replicas[1].held_off(Instant::now()));
    }

    #[tokio::test]
    async fn an_answer_to_an_older_call_does_not_lift_a_newer_hold_off() {
        let channel = caller(&[([127, 0, 0, 1], 1).into()]);
        let replica = &channel.replicas[0];

        // An answer lifts the hold-off that was there when its call started.
        replica.hold_off();
        channel.call((), |_, _| async { Ok(()) }).await.unwrap();
        assert!(!replica.held_off(Instant::now()));

        // A call starts; while it waits, another call fails and holds the replica off; then
        // the first one is answered. Its answer predates the failure: the hold-off stays.
        let started = Arc::new(tokio::sync::Notify::new());
        let answer = Arc::new(tokio::sync::Notify::new());
        let slow = {
            let (channel, started, answer) = (channel.clone(), started.clone(), answer.clone());
            tokio::spawn(async move {
                channel
                    .call((), |_, _| {
                        let (started, answer) = (started.clone(), answer.clone());
                        async move {
                            started.notify_one();
                            answer.notified().await;
                            Ok(())
                        }
                    })
                    .await
            })
        };
        started.notified().await;
        replica.hold_off();
        answer.notify_one();
        slow.await.unwrap().unwrap();
        assert!(
            replica.held_off(Instant::now()),
            "a stale answer lifted the hold-off"
        );
    }

    #[tokio::test]
    async fn serving_asks_every_replica_at_once_within_one_timeout() {
        let (up, _stop) = health_server().await;
        let silent = [
            test_support::silent_listener().await.unwrap(),
            test_support::silent_listener().await.unwrap(),
            test_support::silent_listener().await.unwrap(),
        ];
        let some_up = caller(&[silent[0], silent[1], up]);
        // The serving replica's answer comes at once, however the others are asked: three
        // times, so that asking in turn from a rotating start would be caught.
        for _ in 0..3 {
            let started = std::time::Instant::now();
            assert!(some_up.serving("svc.Up").await);
            assert!(
                started.elapsed() < Duration::from_millis(1500),
                "{:?}",
                started.elapsed()
            );
        }
        // None serving: one timeout in all, not one per replica.
        let started = std::time::Instant::now();
        assert!(!caller(&silent).serving("svc.Up").await);
        let took = started.elapsed();
        assert!(
            took < crate::healthcheck::TIMEOUT + Duration::from_secs(1),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn the_rotation_spreads_calls_over_every_replica() {
        // Choosing a replica connects nothing: the addresses need no server.
        let addrs: Vec<std::net::SocketAddr> =
            (1..=3).map(|port| ([127, 0, 0, 1], port).into()).collect();
        let channel = caller(&addrs);
        let firsts: std::collections::BTreeSet<_> =
            (0..6).map(|_| channel.order()[0].url.clone()).collect();
        assert_eq!(firsts.len(), 3, "{firsts:?}");
    }
}
