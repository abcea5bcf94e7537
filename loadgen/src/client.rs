//! token-service clients: one HTTP/2 connection each, every call carrying
//! `authorization: Bearer <key>`.

use std::fmt;

use anyhow::Context as _;
use snykapps_proto::token_v1::token_service_client::TokenServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::args::LocalUrl;

/// A client of one connection to one token-service (or echo server).
pub type Client = TokenServiceClient<InterceptedService<Channel, Bearer>>;

/// The `authorization` header value, built once; `Debug` never shows the key.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Bearer {
    /// `Bearer <key>`; the key must be non-empty printable ASCII.
    pub fn new(key: &str) -> anyhow::Result<Self> {
        let key = key.trim();
        if key.is_empty() {
            anyhow::bail!("the key must not be empty");
        }
        let value = format!("Bearer {key}")
            .parse()
            .map_err(|_| anyhow::anyhow!("the key must be printable ASCII"))?;
        Ok(Self(value))
    }
}

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bearer([redacted])")
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

/// Opens one connection to `target` (eagerly, so that a wrong port fails here and not in the
/// middle of a measurement).
pub async fn connect(target: &LocalUrl, bearer: &Bearer) -> anyhow::Result<Client> {
    let channel = Endpoint::from_shared(target.origin())
        .with_context(|| format!("{target} is not a valid endpoint"))?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {target}"))?;
    Ok(TokenServiceClient::with_interceptor(
        channel,
        bearer.clone(),
    ))
}

/// `per_target` connections to each target, ordered so that client `i` talks to target
/// `i % targets.len()`: handing clients out in order round-robins over the targets.
pub async fn connect_all(
    targets: &[LocalUrl],
    per_target: usize,
    bearer: &Bearer,
) -> anyhow::Result<Vec<Client>> {
    let mut clients = Vec::with_capacity(targets.len() * per_target);
    for _ in 0..per_target.max(1) {
        for target in targets {
            clients.push(connect(target, bearer).await?);
        }
    }
    Ok(clients)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bearer_hides_the_key_and_refuses_bad_ones() {
        let b = Bearer::new("0123456789abcdef-secret").unwrap();
        assert_eq!(format!("{b:?}"), "Bearer([redacted])");
        assert_eq!(b.0.to_str().unwrap(), "Bearer 0123456789abcdef-secret");
        assert!(Bearer::new("  ").is_err());
        assert!(Bearer::new("bad\nkey").is_err());
    }
}
