//! The gRPC channel every caller of token-service builds the same way: lazy connect, deadlines,
//! TLS when a URL is https (trusting `TOKEN_SERVICE_CA_CERT` when given, else the public web PKI
//! roots), and, when `TOKEN_SERVICE_URL` lists several replicas, calls spread over them round
//! robin, with a replica that cannot be reached skipped for the others.
//!
//! Why not tonic's `Channel::balance_list`: its endpoints connect lazily, and a lazy endpoint
//! whose connection fails still reports itself ready (tonic's `Reconnect` keeps the error for
//! the next call), so the balancer keeps handing it calls that fail at once: with one replica of
//! two down, about half the calls would fail (hyperium/tonic#2839). Here the caller sees which
//! replica failed to connect, and only a call that certainly never left is sent again.

use std::{
    future::Future,
    sync::{
        Arc, Mutex, PoisonError,
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

use crate::config::{Env, parse_http_url};

/// How long a replica that could not be reached is tried only after every other one.
pub const HOLD_OFF: Duration = Duration::from_secs(2);

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
pub fn channel(url: &Url, ca_pem: Option<&[u8]>, timeout: Duration) -> anyhow::Result<Channel> {
    let mut endpoint = Channel::from_shared(url.to_string())
        .map_err(|_| anyhow::anyhow!("TOKEN_SERVICE_URL is not a usable gRPC endpoint"))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(timeout)
        .tcp_nodelay(true);
    if url.scheme() == "https" {
        let mut tls = ClientTlsConfig::new().domain_name(url.host_str().unwrap_or_default());
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

/// One token-service replica: its channel, and until when it is tried last.
struct Replica {
    url: Url,
    channel: Channel,
    /// Set when a connection to it failed; a std `Mutex` because it is held for a read or a
    /// write, never across an `.await`.
    held_off_until: Mutex<Option<Instant>>,
}

impl Replica {
    fn held_off(&self, now: Instant) -> bool {
        self.held_off_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|until| until > now)
    }

    fn set_held_off(&self, until: Option<Instant>) {
        *self
            .held_off_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = until;
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

impl TokenServiceChannel {
    /// A lazily connecting caller of every replica in `urls`, presenting `api_key`
    /// (`TOKEN_SERVICE_API_KEY`); `ca_pem` (`TOKEN_SERVICE_CA_CERT`) applies to each https URL.
    pub fn new(
        urls: &TokenServiceUrls,
        ca_pem: Option<&[u8]>,
        api_key: &SecretString,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut authorization: MetadataValue<Ascii> = format!("Bearer {}", api_key.expose_secret())
            .parse()
            .map_err(|_| {
                anyhow::anyhow!("TOKEN_SERVICE_API_KEY contains characters not allowed in a header")
            })?;
        authorization.set_sensitive(true);
        let replicas = urls
            .iter()
            .map(|url| {
                Ok(Replica {
                    url: url.clone(),
                    channel: channel(url, ca_pem, timeout)?,
                    held_off_until: Mutex::new(None),
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
    /// key, the deadline and `traceparent`. When that replica cannot be reached ([`never_sent`]),
    /// the same call goes to the next one, and the unreachable replica is tried last for
    /// [`HOLD_OFF`]. Any other outcome (an answer, an error status, a failure after the request
    /// may have been sent) is returned as it is: only a request that certainly never left is
    /// sent again.
    pub async fn call<M, T, F, Fut>(&self, msg: M, mut rpc: F) -> Result<T, Status>
    where
        M: Clone,
        F: FnMut(Channel, Request<M>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let order = self.order();
        let mut unreachable = None;
        for (i, replica) in order.iter().enumerate() {
            match rpc(replica.channel.clone(), self.request(msg.clone())).await {
                Err(status) if never_sent(&status) => {
                    replica.set_held_off(Some(Instant::now() + HOLD_OFF));
                    if i + 1 < order.len() {
                        tracing::warn!(
                            replica = %replica.url,
                            error = %status.message(),
                            "cannot reach this token-service replica; trying the next one"
                        );
                    }
                    unreachable = Some(status);
                }
                answered => {
                    replica.set_held_off(None);
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
    fn request<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        req.set_timeout(self.timeout);
        req.metadata_mut()
            .insert("authorization", self.authorization.clone());
        crate::telemetry::inject_into_metadata(req.metadata_mut());
        req
    }

    /// Does some replica answer SERVING for `service` on its gRPC health check?
    pub async fn serving(&self, service: &str) -> bool {
        for replica in self.order() {
            if crate::healthcheck::check(replica.channel.clone(), String::new(), service)
                .await
                .is_ok()
            {
                return true;
            }
        }
        false
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
        ] {
            let err = format!("{:#}", urls(raw).unwrap_err());
            assert!(err.starts_with(expected), "{raw:?}: {err}");
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
        TokenServiceChannel::new(
            &urls(&list).unwrap(),
            None,
            &SecretString::from("key"),
            Duration::from_secs(5),
        )
        .unwrap()
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
