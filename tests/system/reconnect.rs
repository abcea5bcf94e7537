//! Reconnect keeps the install (docs/design.md, "Reconnect"): `CompleteInstall` with
//! `reauthorize_install_id` replaces the grant under the same id, revokes the old grant at Snyk,
//! updates the orgs, and wins against a refresh that was already at Snyk when it committed.

use std::time::{Duration, Instant};

use fake_snyk::{Fault, OrgSeed};
use snykapps_proto::token_v1 as pb;
use system_tests::*;
use tonic::Code;

/// Two orgs, hour-long access tokens: no refresh falls due by itself.
fn two_orgs() -> (fake_snyk::Config, OrgSeed, OrgSeed) {
    let mut c = hour_long_tokens();
    let (a, b) = (OrgSeed::new("Org A", 1), OrgSeed::new("Org B", 1));
    c.orgs = vec![a.clone(), b.clone()];
    (c, a, b)
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The same install id serves the new grant; the old grant is revoked at Snyk; an org the new
/// grant no longer covers is gone from the install and from the by-org lookup.
#[tokio::test]
async fn reconnect_keeps_the_id_revokes_the_old_grant_and_updates_the_orgs() {
    let (config, a, b) = two_orgs();
    let stack = Stack::start(config).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let id = install.install_id.clone();
    assert_eq!(install.orgs.len(), 2, "{install:?}");
    let t0 = access_token(&mut c, &id).await;
    assert_eq!(
        c.get_access_token(by_org(&a.id.to_string()))
            .await
            .unwrap()
            .into_inner()
            .install_id,
        id
    );

    let got = reconnect(&stack, &mut c, &id, Some(&[&b])).await.unwrap();
    assert_eq!(got.install_id, id, "the same install");
    assert_eq!(got.status(), pb::InstallStatus::Active);
    let orgs: Vec<_> = got.orgs.iter().map(|o| o.id.clone()).collect();
    assert_eq!(orgs, vec![b.id.to_string()], "{got:?}");

    let t1 = access_token(&mut c, &id).await;
    assert_ne!(t1, t0, "the new grant is served");
    assert!(stack.token_works(&t1).await, "the new token works");
    assert!(!stack.token_works(&t0).await, "the old grant is revoked");
    assert_eq!(
        stack.fake.live_refresh_tokens(),
        1,
        "only the new grant lives"
    );

    let shown = install_status(&mut c, &id).await;
    assert_eq!(
        shown.orgs.iter().map(|o| o.id.clone()).collect::<Vec<_>>(),
        vec![b.id.to_string()]
    );
    let err = c
        .get_access_token(by_org(&a.id.to_string()))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::NotFound,
        "org A is no longer served: {err:?}"
    );
    let by_b = c
        .get_access_token(by_org(&b.id.to_string()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (by_b.install_id.as_str(), by_b.access_token.as_str()),
        (id.as_str(), t1.as_str())
    );
    let list = c
        .list_installs(pb::ListInstallsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.installs.len(), 1, "no second install: {list:?}");
}

/// The user's case: an install that needs re-authorization is reconnected, is ACTIVE again with
/// no reason, and its stored refresh token is the live one.
#[tokio::test]
async fn a_needs_reauth_install_is_active_again_after_reconnect() {
    let stack = Stack::start(hour_long_tokens()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let id = install.install_id.clone();
    let t0 = access_token(&mut c, &id).await;
    stack.revoke_at_snyk(&t0).await;
    let err = c.force_refresh(force(&id, &t0)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(
        install_status(&mut c, &id).await.needs_reauth_reason,
        "refresh_token_rejected"
    );

    let got = reconnect(&stack, &mut c, &id, None).await.unwrap();
    assert_eq!(got.status(), pb::InstallStatus::Active);
    assert_eq!(got.needs_reauth_reason, "");
    let t1 = access_token(&mut c, &id).await;
    assert!(stack.token_works(&t1).await);
    let t2 = c.force_refresh(force(&id, &t1)).await.unwrap().into_inner();
    assert!(
        stack.token_works(&t2.access_token).await,
        "the stored refresh token is live"
    );
}

/// NOT_FOUND for an install that does not exist, and the pair obtained for it is revoked at
/// Snyk; a malformed id is INVALID_ARGUMENT before any code is spent.
#[tokio::test]
async fn reconnecting_an_unknown_install_is_not_found_and_leaves_no_grant_alive() {
    let stack = Stack::start(hour_long_tokens()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let unknown = "3f0c9a59-3a5e-4d8e-9b1e-7a1f0e2c4b6d";
    let err = reconnect(&stack, &mut c, unknown, None).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains(unknown), "{err:?}");
    assert_eq!(stack.fake.stats().codes_exchanged, 1);
    assert_eq!(
        stack.fake.live_refresh_tokens(),
        0,
        "the unused pair is revoked"
    );

    let err = reconnect(&stack, &mut c, "not-an-id", None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("reauthorize_install_id"), "{err:?}");
    assert_eq!(
        stack.fake.stats().codes_exchanged,
        1,
        "no code spent on a bad id"
    );
}

/// The interleaving of docs/design.md ("Reconnect"): a replica sends a refresh and freezes with
/// Snyk's answer unread; the user reconnects meanwhile; the sender thaws and tries to store its
/// pair. The reconnected grant stays, and the late pair is revoked at Snyk, not stored.
#[tokio::test]
async fn a_late_refresh_outcome_never_overwrites_a_reconnected_grant() {
    const TIGHT: &[(&str, &str)] = &[
        ("TOKEN_REFRESH_LEASE_MS", "3000"),
        ("SNYK_TOKEN_TIMEOUT_MS", "1000"),
        ("SNYK_TOKEN_RETRIES", "0"),
        ("TOKEN_REFRESH_IN_DOUBT_SECONDS", "4"),
    ];
    let stack = Stack::start(hour_long_tokens()).await;
    let (frozen, frozen_addr) = stack.replica_process(TIGHT).await;
    let other = stack.replica(TIGHT).await;
    let mut c = client(&other).await;
    let install = stack.install(&mut c).await;
    let id = install.install_id.clone();
    let t0 = access_token(&mut c, &id).await;

    // Snyk rotates at once and answers 300 ms later; the sender is frozen in between.
    stack
        .fake
        .inject(Fault::TokenAnswerDelay(Duration::from_millis(300)));
    let mut frozen_client = client_with_key(frozen_addr, CALLER_KEY).await;
    let req = force(&id, &t0);
    let call = tokio::spawn(async move { frozen_client.force_refresh(req).await });
    wait_for("Snyk to rotate the pair", || {
        stack.fake.stats().successful_refreshes == 1
    })
    .await;
    frozen.freeze();
    stack.fake.clear_faults();

    // The user reconnects while the sender's request is out: it commits at once (no lease).
    let got = reconnect(&stack, &mut c, &id, None).await.unwrap();
    assert_eq!(got.status(), pb::InstallStatus::Active);
    let t1 = access_token(&mut c, &id).await;
    assert!(stack.token_works(&t1).await);

    // The sender thaws, reads Snyk's answer and tries to store it: fenced out, revoked.
    frozen.thaw();
    let late = call.await.unwrap();
    let err = late.expect_err("the late refresh must not succeed");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    wait_for("the late pair to be revoked", || {
        stack.fake.live_refresh_tokens() == 1
    })
    .await;

    assert_eq!(
        access_token(&mut c, &id).await,
        t1,
        "the reconnected grant stays"
    );
    let shown = install_status(&mut c, &id).await;
    assert_eq!(shown.status(), pb::InstallStatus::Active, "{shown:?}");
    let t2 = c.force_refresh(force(&id, &t1)).await.unwrap().into_inner();
    assert!(
        stack.token_works(&t2.access_token).await,
        "the stored refresh token is live"
    );
    let stats = stack.fake.stats();
    assert_eq!(stats.spent_refresh_token_reuses, 0, "{stats:?}");
    let kinds: Vec<String> = stored_events(&stack)
        .await
        .into_iter()
        .map(|e| e.1)
        .collect();
    assert_eq!(
        kinds,
        ["installed", "reauthorized", "refreshed"],
        "the fenced-out late pair wrote no event"
    );
}
