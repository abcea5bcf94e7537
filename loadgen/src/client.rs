//! token-service clients: one HTTP/2 connection each, every call carrying
//! `authorization: Bearer <key>`. [`Client`] adds the header with an interceptor (for the few
//! calls of `install`, `storm`, `page`); the closed loops (`get-token`, `lean-get-token`) use bare
//! [`Channel`]s from [`connect_channels`] and put the prebuilt header on each request themselves.

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

    /// The header value (`Bearer <key>`); cloning it clones a reference-counted buffer.
    pub fn value(&self) -> &MetadataValue<Ascii> {
        &self.0
    }

    /// An equal value in a buffer of its own: a closed-loop worker clones its header once per
    /// call, and a buffer shared by every worker would be one reference count they all bump.
    pub fn unshared(&self) -> Self {
        Self(MetadataValue::try_from(self.0.as_bytes()).unwrap_or_else(|_| self.0.clone()))
    }

    /// `message` as a request carrying the `authorization` header, without an interceptor.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        request
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
    Ok(TokenServiceClient::with_interceptor(
        connect_channel(target).await?,
        bearer.clone(),
    ))
}

/// One HTTP/2 connection to `target`, opened eagerly, with `TCP_NODELAY`.
pub async fn connect_channel(target: &LocalUrl) -> anyhow::Result<Channel> {
    Endpoint::from_shared(target.origin())
        .with_context(|| format!("{target} is not a valid endpoint"))?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {target}"))
}

/// `per_target` connections to each target, ordered as [`connect_all`]'s clients: channel `i`
/// talks to target `i % targets.len()`.
pub async fn connect_channels(
    targets: &[LocalUrl],
    per_target: usize,
) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(targets.len() * per_target);
    for _ in 0..per_target.max(1) {
        for target in targets {
            channels.push(connect_channel(target).await?);
        }
    }
    Ok(channels)
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
        let request = b.request(());
        assert_eq!(
            request.metadata().get("authorization"),
            Some(b.value()),
            "the header is on the request"
        );
        assert_eq!(b.unshared().value(), b.value());
        assert!(Bearer::new("  ").is_err());
        assert!(Bearer::new("bad\nkey").is_err());
    }
}
