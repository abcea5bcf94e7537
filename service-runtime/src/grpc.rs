//! The gRPC channel every caller of token-service builds the same way: lazy connect, deadlines,
//! and TLS when the URL is https (trusting `TOKEN_SERVICE_CA_CERT` when given, else the public
//! web PKI roots).

use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use tonic::{
    Request,
    metadata::{Ascii, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig},
};
use url::Url;

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

/// The outgoing side: a lazily connecting channel to token-service plus what every internal
/// caller sends with each call (its key, a deadline, the current trace context). Not to be
/// confused with token-service's `AuthenticatedCaller`, the incoming side. Cheap to clone.
#[derive(Clone)]
pub struct TokenServiceChannel {
    channel: Channel,
    authorization: MetadataValue<Ascii>,
    timeout: Duration,
}

impl std::fmt::Debug for TokenServiceChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServiceChannel")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl TokenServiceChannel {
    /// A lazily connecting caller of `url` presenting `api_key` (`TOKEN_SERVICE_API_KEY`).
    pub fn new(
        url: &Url,
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
        Ok(TokenServiceChannel {
            channel: channel(url, ca_pem, timeout)?,
            authorization,
            timeout,
        })
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// `msg` with the key, the deadline and `traceparent`.
    pub fn request<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        req.set_timeout(self.timeout);
        req.metadata_mut()
            .insert("authorization", self.authorization.clone());
        crate::telemetry::inject_into_metadata(req.metadata_mut());
        req
    }

    /// Does the server answer SERVING for `service` on its gRPC health check?
    pub async fn serving(&self, service: &str) -> bool {
        crate::healthcheck::check(self.channel(), String::new(), service)
            .await
            .is_ok()
    }
}
