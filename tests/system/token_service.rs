//! token-service against a private Redis and the fake Snyk: invariants 1-6 of docs/design.md.

use std::{collections::HashSet, time::Duration};

use fake_snyk::Fault;
use futures::future::join_all;
use snykapps_proto::token_v1 as pb;
use system_tests::*;
use tonic::Code;

mod refresh;
mod storage;

#[tokio::test]
async fn complete_install_stores_the_grant_and_indexes_orgs() {
    let stack = Stack::start(fake_config()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;

    let install = stack.install(&mut c).await;

    assert_eq!(install.status(), pb::InstallStatus::Active);
    assert_eq!(install.orgs.len(), 1);
    assert_eq!(install.orgs[0].name, "Demo Org");
    assert!(!install.bot_id.is_empty());
    assert_eq!(install.scope, "org.read org.project.read");
    let got = c
        .get_install(pb::GetInstallRequest {
            install_id: install.install_id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(got.into_inner(), install);

    // By org id, one token, no refresh needed.
    let by_org = c
        .get_access_token(pb::GetAccessTokenRequest {
            target: Some(pb::get_access_token_request::Target::OrgId(
                install.orgs[0].id.clone(),
            )),
            min_validity_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_org.install_id, install.install_id);
    assert_eq!(by_org.token_type, "bearer");
    assert!(stack.token_works(&by_org.access_token).await);
    assert_eq!(stack.refresh_calls(), 0);
}

#[tokio::test]
async fn bad_codes_are_invalid_argument_with_snyks_description() {
    let stack = Stack::start(fake_config()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let (verifier, challenge) = pkce();
    let code = stack
        .fake
        .approve(CLIENT_ID, REDIRECT_URI, &challenge, None)
        .unwrap();
    let (other_verifier, _) = pkce();

    let err = c
        .complete_install(pb::CompleteInstallRequest {
            code: code.clone(),
            code_verifier: other_verifier,
            redirect_uri: REDIRECT_URI.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message()
            .starts_with("Snyk rejected the authorization code"),
        "{}",
        err.message()
    );

    let err = c
        .complete_install(pb::CompleteInstallRequest {
            code: "no-such-code".into(),
            code_verifier: verifier,
            redirect_uri: REDIRECT_URI.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(stack.fake.stats().codes_exchanged, 0);
}

#[tokio::test]
async fn bad_input_gets_clear_statuses() {
    let stack = Stack::start(fake_config()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let long = "a".repeat(5_000);

    for (target, code) in [
        (None, Code::InvalidArgument),
        (
            Some(pb::get_access_token_request::Target::InstallId(
                String::new(),
            )),
            Code::InvalidArgument,
        ),
        (
            Some(pb::get_access_token_request::Target::InstallId(
                "nope".into(),
            )),
            Code::InvalidArgument,
        ),
        (
            Some(pb::get_access_token_request::Target::InstallId(
                long.clone(),
            )),
            Code::InvalidArgument,
        ),
        (
            Some(pb::get_access_token_request::Target::OrgId(
                "../../etc".into(),
            )),
            Code::InvalidArgument,
        ),
        (
            Some(pb::get_access_token_request::Target::InstallId(
                "123e4567-e89b-12d3-a456-426614174000".into(),
            )),
            Code::NotFound,
        ),
        (
            Some(pb::get_access_token_request::Target::OrgId(
                "123e4567-e89b-12d3-a456-426614174000".into(),
            )),
            Code::NotFound,
        ),
    ] {
        let err = c
            .get_access_token(pb::GetAccessTokenRequest {
                target: target.clone(),
                min_validity_seconds: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{}", err.message());
    }

    let err = c
        .force_refresh(force("123e4567-e89b-12d3-a456-426614174000", ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("rejected_access_token"));

    let err = c
        .complete_install(pb::CompleteInstallRequest {
            code: "c".into(),
            code_verifier: "short".into(),
            redirect_uri: REDIRECT_URI.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("code_verifier"));
    let err = c
        .complete_install(pb::CompleteInstallRequest {
            code: String::new(),
            code_verifier: pkce().0,
            redirect_uri: REDIRECT_URI.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = c
        .complete_install(pb::CompleteInstallRequest {
            code: "c".into(),
            code_verifier: pkce().0,
            redirect_uri: "javascript:alert(1)".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // A message far over the decoding limit is refused, not buffered.
    let err = c
        .complete_install(pb::CompleteInstallRequest {
            code: "c".repeat(1_000_000),
            code_verifier: pkce().0,
            redirect_uri: REDIRECT_URI.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");

    let err = c
        .list_installs(pb::ListInstallsRequest {
            page_size: 0,
            page_token: "!!".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = c
        .list_installs(pb::ListInstallsRequest {
            page_size: 10_000,
            page_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        stack.fake.stats().token_calls.values().sum::<u64>(),
        0,
        "bad input never reaches Snyk"
    );
}

#[tokio::test]
async fn callers_must_present_a_known_key() {
    let stack = Stack::start(fake_config()).await;
    let replica = stack.replica(&[]).await;
    let req = || by_install("123e4567-e89b-12d3-a456-426614174000");

    let mut wrong = client_with_key(replica.addr, "not-the-key-0000000000").await;
    let err = wrong.get_access_token(req()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", replica.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut anonymous = pb::token_service_client::TokenServiceClient::new(channel);
    let err = anonymous.get_access_token(req()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("authorization"));
}
