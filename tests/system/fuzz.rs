//! Generated inputs against a real token-service: whatever a caller sends, well-formed messages
//! with hostile fields or raw bytes that are not a message at all, the answer is a clear client
//! error and the service keeps serving. Never INTERNAL, UNKNOWN, a panic or a hang.

use std::time::Duration;

use proptest::prelude::*;
use snykapps_proto::token_v1 as pb;
use system_tests::*;
use tonic::{Code, Status};

/// Codes a caller may get for bad input. INTERNAL and UNKNOWN are never among them.
const CLIENT_ERRORS: &[Code] = &[Code::InvalidArgument, Code::NotFound, Code::OutOfRange];

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-f0-9-]{0,40}",
        ".{0,64}",
        "\\PC{0,300}",
        Just("123e4567-e89b-12d3-a456-426614174000".to_owned()),
        Just("123E4567-E89B-12D3-A456-426614174000".to_owned()),
        Just("\u{0}\u{1}\u{7f}".to_owned()),
        (0usize..20_000).prop_map(|n| "x".repeat(n)),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn assert_client_error(what: &str, result: Result<(), Status>) -> Result<(), TestCaseError> {
    if let Err(status) = result {
        prop_assert!(
            CLIENT_ERRORS.contains(&status.code()),
            "{what}: {:?} {}",
            status.code(),
            status.message()
        );
    }
    Ok(())
}

#[test]
fn generated_requests_get_clear_client_errors() {
    let rt = runtime();
    let (stack, replica, client) = rt.block_on(async {
        let stack = Stack::start(fake_config()).await;
        let replica = stack.replica(&[]).await;
        let c = client(&replica).await;
        (stack, replica, c)
    });
    let config = ProptestConfig {
        cases: 150,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(a in hostile_string(), b in hostile_string(), c in hostile_string(), n in any::<u32>(), by_org in any::<bool>())| {
        let mut client = client.clone();
        rt.block_on(async {
            let target = if by_org {
                pb::get_access_token_request::Target::OrgId(a.clone())
            } else {
                pb::get_access_token_request::Target::InstallId(a.clone())
            };
            let r = client.get_access_token(pb::GetAccessTokenRequest { target: Some(target), min_validity_seconds: n }).await;
            assert_client_error("GetAccessToken", r.map(drop))?;
            let r = client.force_refresh(pb::ForceRefreshRequest {
                target: Some(pb::force_refresh_request::Target::InstallId(a.clone())),
                rejected_access_token: b.clone(),
            }).await;
            assert_client_error("ForceRefresh", r.map(drop))?;
            let r = client.complete_install(pb::CompleteInstallRequest { code: a.clone(), code_verifier: b.clone(), redirect_uri: c.clone() ,..Default::default()}).await;
            assert_client_error("CompleteInstall", r.map(drop))?;
            let r = client.get_install(pb::GetInstallRequest { install_id: a.clone() }).await;
            assert_client_error("GetInstall", r.map(drop))?;
            let r = client.delete_install(pb::DeleteInstallRequest { install_id: b.clone() }).await;
            assert_client_error("DeleteInstall", r.map(drop))?;
            let r = client.list_installs(pb::ListInstallsRequest { page_size: n % 1000, page_token: c.clone() }).await;
            assert_client_error("ListInstalls", r.map(drop))?;
            Ok::<(), TestCaseError>(())
        })?;
    });
    rt.block_on(async {
        // Still serving, and nothing reached Snyk's token endpoint with garbage it should have refused.
        let mut c = client.clone();
        stack.install(&mut c).await;
        let stats = stack.fake.stats();
        assert!(
            stats.successful_refreshes == 0 && stats.spent_refresh_token_reuses == 0,
            "{stats:?}"
        );
        drop(replica);
    });
}

#[test]
fn raw_bytes_that_are_not_a_message_are_refused_cleanly() {
    let rt = runtime();
    let (_stack, replica) = rt.block_on(async {
        let stack = Stack::start(fake_config()).await;
        let replica = stack.replica(&[]).await;
        (stack, replica)
    });
    let channel = rt.block_on(async {
        tonic::transport::Channel::from_shared(format!("http://{}", replica.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    });
    let config = ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(body in proptest::collection::vec(any::<u8>(), 0..2048), method in 0usize..6)| {
        let path = [
            "CompleteInstall", "GetAccessToken", "ForceRefresh", "GetInstall", "ListInstalls", "DeleteInstall",
        ][method];
        let result: Result<(), Status> = rt.block_on(async {
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
            let mut req = tonic::Request::new(body.clone());
            req.metadata_mut().insert("authorization", format!("Bearer {CALLER_KEY}").parse().unwrap());
            req.set_timeout(Duration::from_secs(5));
            let path = format!("/snykapps.token.v1.TokenService/{path}").parse().unwrap();
            grpc.unary(req, path, RawCodec).await.map(drop)
        });
        // Bytes that happen to decode are ordinary (if odd) requests; the rest must be refused
        // as the client's fault.
        if let Err(status) = result {
            prop_assert!(
                CLIENT_ERRORS.contains(&status.code()),
                "{path} with {} bytes: {:?} {}", body.len(), status.code(), status.message()
            );
        }
    });
}
