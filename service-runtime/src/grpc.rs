//! The gRPC channel every caller of token-service builds the same way: lazy connect, deadlines,
//! and TLS when the URL is https (trusting `TOKEN_SERVICE_CA_CERT` when given, else the public
//! web PKI roots).

use std::time::Duration;

use anyhow::Context;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
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
