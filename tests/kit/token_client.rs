//! token-service's gRPC API as the tests call it: a client that presents a caller key, request
//! builders, the calls unwrapped to what a test asserts on, and a raw codec for hand-made bytes.

use std::net::SocketAddr;

use snykapps_proto::token_v1::{self as pb, token_service_client::TokenServiceClient};
use tonic::{
    Request, Status,
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

use crate::{
    CALLER_KEY, CLIENT_ID, REDIRECT_URI,
    fake::pkce,
    stack::{Replica, Stack},
};

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
pub(crate) async fn complete_install(
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
