//! The `healthcheck` subcommand every binary offers to container healthchecks (the image has no
//! curl): it asks the service running next to it, at the address that service listens on, whether
//! it is healthy. It reads nothing but that address (and, for a TLS server, its certificate), so
//! it works with an incomplete configuration, and it gives up after [`TIMEOUT`].
//!
//! ```no_run
//! # async fn demo() -> std::process::ExitCode {
//! use service_runtime::healthcheck;
//! let result = healthcheck::http("PROJECTS_SERVICE_ADDR", "0.0.0.0:8081", "/readyz").await;
//! healthcheck::report("projects-service", &result)
//! # }
//! ```

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context as _, bail};
use tokio::{
    io::{
        AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _,
        BufReader,
    },
    net::TcpStream,
};

/// The whole check (connect, ask, answer) must fit in this.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Longest status line we read; a real one is a few dozen bytes.
const MAX_STATUS_LINE: u64 = 1024;

/// `GET {path}` over plain HTTP/1.1 to the address in `addr_env` (or `default_addr`); healthy on
/// `200` only.
pub async fn http(addr_env: &str, default_addr: &str, path: &str) -> anyhow::Result<()> {
    let addr = resolve(addr_env, default_addr, |k| std::env::var(k).ok())?;
    http_at(addr, path).await
}

/// [`http`], or, when `cert_env` names the server's certificate (its TLS is on), the same over
/// HTTPS trusting exactly that certificate (the first one of the file): the check goes to the
/// server's own address, which its certificate need not name, and needs no CA. The pinned check
/// ignores the certificate's validity dates: a server whose certificate has expired is still
/// healthy here (restarting it would not renew the certificate); its clients refuse it.
pub async fn http_or_https(
    addr_env: &str,
    default_addr: &str,
    path: &str,
    cert_env: &str,
) -> anyhow::Result<()> {
    let Some((file, pem)) = crate::config::Env::process().named_file(cert_env)? else {
        return http(addr_env, default_addr, path).await;
    };
    let addr = resolve(addr_env, default_addr, |k| std::env::var(k).ok())?;
    let cert = crate::tls::certificates(cert_env, &file, &pem)?.swap_remove(0);
    https_at(addr, path, cert).await
}

/// How a process on this machine reaches the gRPC server that listens on the address in
/// `addr_env` (or `default_addr`): in the clear at that address on loopback, or, when the server
/// serves TLS (`TOKEN_SERVICE_TLS_CERT` set, read as the server reads it), https to `localhost` at
/// its port (the certificate must name `localhost`; it does not name an IP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalGrpc {
    pub addr: SocketAddr,
    pub url: url::Url,
}

impl LocalGrpc {
    pub fn resolve(
        env: &crate::config::Env<'_>,
        addr_env: &str,
        default_addr: &str,
    ) -> anyhow::Result<LocalGrpc> {
        let addr = resolve(addr_env, default_addr, |k| env.optional(k))?;
        let url = if env.optional("TOKEN_SERVICE_TLS_CERT").is_some() {
            format!("https://localhost:{}", addr.port())
        } else {
            format!("http://{addr}")
        };
        Ok(LocalGrpc {
            addr,
            url: url.parse()?,
        })
    }

    pub fn tls(&self) -> bool {
        self.url.scheme() == "https"
    }
}

/// The gRPC health check (`grpc.health.v1.Health/Check`) of `service` at [`LocalGrpc`]; healthy
/// on `SERVING` only. Over TLS it trusts `TOKEN_SERVICE_CA_CERT` (or the public roots).
pub async fn grpc(addr_env: &str, default_addr: &str, service: &str) -> anyhow::Result<()> {
    let env = crate::config::Env::process();
    let local = LocalGrpc::resolve(&env, addr_env, default_addr)?;
    if !local.tls() {
        return grpc_at(local.addr, service).await;
    }
    let ca = env.file("TOKEN_SERVICE_CA_CERT")?;
    let channel = crate::grpc::channel(&local.url, ca.as_deref(), TIMEOUT)?;
    let what = format!("gRPC health of {service:?} at {}", local.url);
    check(channel, what, service).await
}

/// Prints one line on stderr and turns the result into the exit code (0 healthy, 1 otherwise).
pub fn report(binary: &str, result: &anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => {
            eprintln!("{binary}: healthy");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{binary}: unhealthy: {}", one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// The address to check: the service's listen address, with an unspecified IP (`0.0.0.0`, `::`)
/// replaced by the loopback address of the same family.
pub fn resolve(
    addr_env: &str,
    default_addr: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<SocketAddr> {
    let raw = lookup(addr_env).unwrap_or_else(|| default_addr.to_owned());
    let mut addr: SocketAddr = raw
        .trim()
        .parse()
        .with_context(|| format!("{addr_env} must be host:port (an IP address and a port)"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(addr)
}

/// [`http`] against a known address.
pub async fn http_at(addr: SocketAddr, path: &str) -> anyhow::Result<()> {
    let exchange = async {
        let stream = TcpStream::connect(addr).await.context("cannot connect")?;
        get_status(stream, addr, path).await
    };
    judge(&format!("http://{addr}{path}"), exchange).await
}

/// [`http_or_https`] over TLS against a known address, trusting exactly `cert` (expired or not).
async fn https_at(
    addr: SocketAddr,
    path: &str,
    cert: rustls::pki_types::CertificateDer<'static>,
) -> anyhow::Result<()> {
    let connector =
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(crate::tls::pinned_client(cert)?));
    let exchange = async {
        let tcp = TcpStream::connect(addr).await.context("cannot connect")?;
        let tls = connector
            .connect(addr.ip().into(), tcp)
            .await
            .context("TLS handshake failed")?;
        get_status(tls, addr, path).await
    };
    judge(&format!("https://{addr}{path}"), exchange).await
}

/// Healthy on `200` from `exchange` within [`TIMEOUT`]; otherwise an error naming `url`.
async fn judge(
    url: &str,
    exchange: impl std::future::Future<Output = anyhow::Result<(u16, String)>>,
) -> anyhow::Result<()> {
    match tokio::time::timeout(TIMEOUT, exchange).await {
        Err(_) => bail!("GET {url}: no answer within {} s", TIMEOUT.as_secs()),
        Ok(Err(e)) => Err(e.context(format!("GET {url}"))),
        Ok(Ok((200, _))) => Ok(()),
        Ok(Ok((code, reason))) => bail!("GET {url} answered {code} {reason}"),
    }
}

/// Sends the request over `stream` and reads the status line: `(code, reason phrase)`.
async fn get_status(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    addr: SocketAddr,
    path: &str,
) -> anyhow::Result<(u16, String)> {
    if !path.starts_with('/') || path.bytes().any(|b| !b.is_ascii_graphic()) {
        bail!("the path must start with '/' and be printable ASCII");
    }
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: healthcheck\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .context("cannot send the request")?;
    let mut line = String::new();
    BufReader::new(stream.take(MAX_STATUS_LINE))
        .read_line(&mut line)
        .await
        .context("cannot read the answer")?;
    parse_status_line(&line)
}

/// `HTTP/1.1 200 OK\r\n` → `(200, "OK")`.
fn parse_status_line(line: &str) -> anyhow::Result<(u16, String)> {
    if line.is_empty() {
        bail!("the connection was closed without an answer");
    }
    let Some(line) = line.strip_suffix('\n') else {
        bail!("the status line is longer than {MAX_STATUS_LINE} bytes");
    };
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        bail!("not an HTTP/1.x answer: {:?}", truncate(line, 80));
    }
    let code: u16 = code
        .parse()
        .with_context(|| format!("not an HTTP/1.x answer: {:?}", truncate(line, 80)))?;
    Ok((
        code,
        truncate(parts.next().unwrap_or_default(), 80).to_owned(),
    ))
}

/// [`grpc`] against a known address.
pub async fn grpc_at(addr: SocketAddr, service: &str) -> anyhow::Result<()> {
    let what = format!("gRPC health of {service:?} at {addr}");
    let connect = async {
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .context("invalid address")?
            .connect_timeout(TIMEOUT)
            .timeout(TIMEOUT)
            .connect()
            .await
            .context("cannot connect")
    };
    let channel = connect
        .await
        .map_err(|e: anyhow::Error| e.context(what.clone()))?;
    check(channel, what, service).await
}

pub(crate) async fn check(
    channel: tonic::transport::Channel,
    what: String,
    service: &str,
) -> anyhow::Result<()> {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let check = async {
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await;
        match answer {
            Ok(answer) => Ok(answer.into_inner().status()),
            Err(s) if s.code() == tonic::Code::NotFound => {
                bail!("the server does not know this service")
            }
            Err(s) => bail!("{:?}: {}", s.code(), s.message()),
        }
    };
    match tokio::time::timeout(TIMEOUT, check).await {
        Err(_) => bail!("{what}: no answer within {} s", TIMEOUT.as_secs()),
        Ok(Err(e)) => Err(e.context(what)),
        Ok(Ok(ServingStatus::Serving)) => Ok(()),
        Ok(Ok(status)) => bail!("{what}: {}", status.as_str_name()),
    }
}

fn truncate(s: &str, max_chars: usize) -> &str {
    s.char_indices().nth(max_chars).map_or(s, |(i, _)| &s[..i])
}

/// Control characters (newlines included) become spaces: a healthcheck says one line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;
    use tokio::{net::TcpListener, sync::oneshot};

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_address_comes_from_the_variable_or_the_default() {
        let a = resolve("X_ADDR", "0.0.0.0:8080", env(&[])).unwrap();
        assert_eq!(a, "127.0.0.1:8080".parse().unwrap());
        let a = resolve("X_ADDR", "0.0.0.0:8080", env(&[("X_ADDR", " 10.1.2.3:9 ")])).unwrap();
        assert_eq!(a, "10.1.2.3:9".parse().unwrap());
        let a = resolve("X_ADDR", "0.0.0.0:1", env(&[("X_ADDR", "[::]:50051")])).unwrap();
        assert_eq!(a, "[::1]:50051".parse().unwrap());
        let a = resolve("X_ADDR", "0.0.0.0:1", env(&[("X_ADDR", "[::1]:7")])).unwrap();
        assert_eq!(a, "[::1]:7".parse().unwrap());
    }

    /// TLS exactly when the server serves it: `TOKEN_SERVICE_TLS_CERT` read as the server reads
    /// it, so a blank value is plain gRPC for both.
    #[test]
    fn the_local_grpc_server_is_reached_as_it_serves() {
        let local = |pairs: &[(&str, &str)]| {
            let env = crate::config::Env::new(env(pairs));
            let l = LocalGrpc::resolve(&env, "X_ADDR", "0.0.0.0:50051").unwrap();
            (l.url.to_string(), l.tls())
        };
        assert_eq!(local(&[]), ("http://127.0.0.1:50051/".into(), false));
        let cert = ("TOKEN_SERVICE_TLS_CERT", "/etc/tls/cert.pem");
        assert_eq!(
            local(&[("X_ADDR", "0.0.0.0:7000"), cert]),
            ("https://localhost:7000/".into(), true)
        );
        assert_eq!(
            local(&[("TOKEN_SERVICE_TLS_CERT", "  ")]),
            ("http://127.0.0.1:50051/".into(), false)
        );
    }

    #[test]
    fn a_bad_address_names_the_variable() {
        for bad in ["localhost:8080", "8080", "", "1.2.3.4"] {
            let err = resolve("X_ADDR", "0.0.0.0:1", env(&[("X_ADDR", bad)])).unwrap_err();
            assert!(format!("{err:#}").contains("X_ADDR"), "{bad}: {err:#}");
        }
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(
            parse_status_line("HTTP/1.1 200 OK\r\n").unwrap(),
            (200, "OK".into())
        );
        assert_eq!(
            parse_status_line("HTTP/1.0 503 Service Unavailable\r\n").unwrap(),
            (503, "Service Unavailable".into())
        );
        assert_eq!(
            parse_status_line("HTTP/1.1 204\n").unwrap(),
            (204, String::new())
        );
        for bad in [
            "",
            "HTTP/1.1 200 OK",
            "SSH-2.0-OpenSSH\r\n",
            "HTTP/1.1 2x0 OK\r\n",
            "HTTP/2 200\r\n",
        ] {
            assert!(parse_status_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_report_is_one_line() {
        assert_eq!(one_line("a\nb\r\tc"), "a b  c");
    }

    /// Answers every connection with `response` after reading the request head; returns its
    /// address and the first request it read.
    async fn canned(response: &'static str) -> (SocketAddr, oneshot::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            while let Ok((stream, _)) = listener.accept().await {
                let mut reader = BufReader::new(stream);
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                if let Some(tx) = tx.take() {
                    let _ = tx.send(head);
                }
                let _ = reader.get_mut().write_all(response.as_bytes()).await;
                let _ = reader.get_mut().shutdown().await;
            }
        });
        (addr, rx)
    }

    #[tokio::test]
    async fn http_200_is_healthy_and_the_request_is_plain_http_1_1() {
        let (addr, head) =
            canned("HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\n{\"status\":\"ok\"}").await;
        http_at(addr, "/healthz").await.expect("healthy");
        let head = head.await.unwrap();
        assert!(head.starts_with("GET /healthz HTTP/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("Host: {addr}\r\n")), "{head}");
    }

    #[tokio::test]
    async fn http_through_the_default_address_with_an_unspecified_ip() {
        let (addr, _) = canned("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        let default = format!("0.0.0.0:{}", addr.port());
        http("SERVICE_RUNTIME_TEST_UNSET_ADDR", &default, "/")
            .await
            .expect("healthy");
    }

    #[tokio::test]
    async fn http_other_statuses_are_unhealthy_with_the_status_in_the_message() {
        for (response, expected) in [
            (
                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
                "answered 503 Service Unavailable",
            ),
            ("HTTP/1.1 204 No Content\r\n\r\n", "answered 204 No Content"),
            (
                "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
                "answered 404",
            ),
            ("garbage\r\n", "not an HTTP/1.x answer"),
            ("", "closed without an answer"),
        ] {
            let (addr, _) = canned(response).await;
            let err = http_at(addr, "/readyz").await.expect_err(response);
            let msg = format!("{err:#}");
            assert!(msg.contains(expected), "{msg}");
            assert!(msg.contains(&format!("http://{addr}/readyz")), "{msg}");
        }
    }

    #[tokio::test]
    async fn http_nobody_listening_is_unhealthy() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = http_at(addr, "/healthz").await.expect_err("refused");
        assert!(format!("{err:#}").contains("cannot connect"), "{err:#}");
    }

    #[tokio::test]
    async fn http_a_silent_server_times_out() {
        let addr = test_support::silent_listener().await.unwrap();
        let started = std::time::Instant::now();
        let err = http_at(addr, "/healthz").await.expect_err("times out");
        assert!(
            format!("{err:#}").contains("no answer within 2 s"),
            "{err:#}"
        );
        assert!(started.elapsed() < TIMEOUT + Duration::from_secs(1));
    }

    /// A tonic-health server with "svc.Up" serving and "svc.Down" not serving; it stops when
    /// the sender is dropped.
    pub(crate) async fn health_server() -> (SocketAddr, oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("svc.Up", tonic_health::ServingStatus::Serving)
            .await;
        reporter
            .set_service_status("svc.Down", tonic_health::ServingStatus::NotServing)
            .await;
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _reporter = reporter;
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
        });
        (addr, stop)
    }

    #[tokio::test]
    async fn grpc_serving_is_healthy_and_anything_else_is_not() {
        let (addr, _stop) = health_server().await;
        grpc_at(addr, "svc.Up").await.expect("serving");
        grpc_at(addr, "")
            .await
            .expect("the server as a whole serves");

        let err = grpc_at(addr, "svc.Down").await.expect_err("not serving");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("NOT_SERVING") && msg.contains("svc.Down"),
            "{msg}"
        );

        let err = grpc_at(addr, "svc.Unknown").await.expect_err("unknown");
        assert!(
            format!("{err:#}").contains("does not know this service"),
            "{err:#}"
        );
    }

    #[tokio::test]
    async fn grpc_through_the_default_address_with_an_unspecified_ip() {
        let (addr, _stop) = health_server().await;
        let default = format!("0.0.0.0:{}", addr.port());
        grpc("SERVICE_RUNTIME_TEST_UNSET_ADDR", &default, "svc.Up")
            .await
            .expect("serving");
    }

    #[tokio::test]
    async fn grpc_nobody_listening_or_not_grpc_is_unhealthy() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = grpc_at(addr, "svc.Up").await.expect_err("refused");
        assert!(format!("{err:#}").contains("cannot connect"), "{err:#}");

        let (addr, _) = canned("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        let err = grpc_at(addr, "svc.Up").await.expect_err("not gRPC");
        assert!(format!("{err:#}").contains(&addr.to_string()), "{err:#}");
    }
}
