//! token-service over an install's life: an org falls back to its next install when the newest
//! one is deleted or needs re-authorization, a delete waits for a refresh in progress and leaves
//! nothing alive at Snyk, and refresh ahead of need hides a Snyk outage inside the margin.

use std::time::{Duration, Instant};

use fake_snyk::Fault;
use snykapps_proto::token_v1 as pb;
use system_tests::*;
use tonic::Code;

/// The one org the fake gives every install (`fake_config()` seeds one org).
fn the_org(a: &pb::Install, b: &pb::Install) -> String {
    assert_eq!(a.orgs, b.orgs, "the fake gives every install the same orgs");
    assert_eq!(a.orgs.len(), 1, "{:?}", a.orgs);
    a.orgs[0].id.clone()
}

/// Two installs of the same org, `a` created before `b`.
async fn two_installs(stack: &Stack, c: &mut Client) -> (pb::Install, pb::Install) {
    let a = stack.install(c).await;
    // Creation times are kept in milliseconds: keep the two apart.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let b = stack.install(c).await;
    (a, b)
}

/// The user revokes the app at Snyk (the whole grant dies), then a refresh meets `invalid_grant`:
/// the install is NEEDS_REAUTH (as in `token_service::invalid_grant_moves_the_install_to_needs_reauth`).
async fn make_needs_reauth(stack: &Stack, c: &mut Client, install_id: &str) {
    let token = c
        .get_access_token(by_install(install_id))
        .await
        .expect("a token before the revocation")
        .into_inner();
    stack.revoke_at_snyk(&token.access_token).await;
    let err = c
        .force_refresh(force(install_id, &token.access_token))
        .await
        .expect_err("a refresh of a revoked grant fails");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(
        install_status(c, install_id).await.status(),
        pb::InstallStatus::NeedsReauth,
        "invalid_grant moved the install to NEEDS_REAUTH"
    );
}

#[tokio::test]
async fn deleting_the_newest_install_of_an_org_falls_back_to_the_older_one() {
    let stack = Stack::start(fake_config()).await;
    let (r1, r2) = (stack.replica(&[]).await, stack.replica(&[]).await);
    let (mut c1, mut c2) = (client(&r1).await, client(&r2).await);
    let (a, b) = two_installs(&stack, &mut c1).await;
    let org = the_org(&a, &b);

    // Replica 1 now has org -> B in its in-process cache.
    let served = c1
        .get_access_token(by_org(&org))
        .await
        .expect("the org is served")
        .into_inner();
    assert_eq!(
        served.install_id, b.install_id,
        "the newest install serves the org"
    );

    c2.delete_install(pb::DeleteInstallRequest {
        install_id: b.install_id.clone(),
    })
    .await
    .expect("B is deleted");

    for (replica, c) in [("replica 1 (cached B)", &mut c1), ("replica 2", &mut c2)] {
        let t = c
            .get_access_token(by_org(&org))
            .await
            .unwrap_or_else(|e| panic!("{replica}: the org falls back to A, got {e:?}"))
            .into_inner();
        assert_eq!(
            t.install_id, a.install_id,
            "{replica}: the org is served by the older install once the newest is deleted"
        );
        assert!(
            stack.token_works(&t.access_token).await,
            "{replica}: A's token works at Snyk"
        );
    }
    assert!(
        !stack.token_works(&served.access_token).await,
        "B's grant was revoked at Snyk"
    );

    c2.delete_install(pb::DeleteInstallRequest {
        install_id: a.install_id.clone(),
    })
    .await
    .expect("A is deleted");
    for (replica, c) in [("replica 1 (cached A)", &mut c1), ("replica 2", &mut c2)] {
        let err = c
            .get_access_token(by_org(&org))
            .await
            .expect_err("no install serves the org any more");
        assert_eq!(err.code(), Code::NotFound, "{replica}: {err:?}");
    }
}

#[tokio::test]
async fn an_install_needing_reauth_falls_back_to_the_next_one() {
    let stack = Stack::start(fake_config()).await;
    let (r1, r2) = (stack.replica(&[]).await, stack.replica(&[]).await);
    let (mut c1, mut c2) = (client(&r1).await, client(&r2).await);
    let (a, b) = two_installs(&stack, &mut c1).await;
    let org = the_org(&a, &b);
    let served = c1
        .get_access_token(by_org(&org))
        .await
        .expect("the org is served")
        .into_inner();
    assert_eq!(
        served.install_id, b.install_id,
        "the newest install serves the org"
    );

    make_needs_reauth(&stack, &mut c2, &b.install_id).await;

    for (replica, c) in [("replica 1 (cached B)", &mut c1), ("replica 2", &mut c2)] {
        let t = c
            .get_access_token(by_org(&org))
            .await
            .unwrap_or_else(|e| panic!("{replica}: the org falls back to A, got {e:?}"))
            .into_inner();
        assert_eq!(
            t.install_id, a.install_id,
            "{replica}: the org skips the install that needs re-authorization"
        );
        assert!(
            stack.token_works(&t.access_token).await,
            "{replica}: A's token works at Snyk"
        );
    }
    assert_eq!(
        install_status(&mut c1, &a.install_id).await.status(),
        pb::InstallStatus::Active
    );

    make_needs_reauth(&stack, &mut c2, &a.install_id).await;
    let before = stack.refresh_calls();
    for (replica, c) in [("replica 1 (cached A)", &mut c1), ("replica 2", &mut c2)] {
        let err = c
            .get_access_token(by_org(&org))
            .await
            .expect_err("no ACTIVE install serves the org");
        assert_eq!(
            err.code(),
            Code::FailedPrecondition,
            "{replica}: every install of the org needs re-authorization, which is not NOT_FOUND: {err:?}"
        );
        assert!(
            err.message().contains("re-authorization"),
            "{replica}: {}",
            err.message()
        );
    }
    assert_eq!(
        stack.refresh_calls(),
        before,
        "installs that need re-authorization are not refreshed again"
    );
}

#[tokio::test]
async fn delete_waits_for_a_refresh_in_progress_and_leaves_nothing_alive_at_snyk() {
    // A stack of its own with one install, so "no live refresh token at Snyk" is a count of 0.
    let stack = Stack::start(fake_config()).await;
    let (r1, r2) = (stack.replica(&[]).await, stack.replica(&[]).await);
    let (mut c1, mut c2) = (client(&r1).await, client(&r2).await);
    let install = stack.install(&mut c1).await;
    let id = install.install_id.clone();
    let t0 = c1
        .get_access_token(by_install(&id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stack.fake.live_refresh_tokens(), 1);
    // A forced refresh of a token that new would wait until it is inside its margin
    // (docs/design.md, "No spinning refreshes"): let it get there, so the refresh goes out at
    // once.
    until_inside_margin().await;

    // Snyk holds every token request for 500 ms before redeeming anything.
    stack
        .fake
        .inject(Fault::TokenLatency(Duration::from_millis(500)));
    let started = Instant::now();
    let refresh = {
        let (id, rejected) = (id.clone(), t0.access_token.clone());
        tokio::spawn(async move { c1.force_refresh(force(&id, &rejected)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The refresh is at Snyk (holding the install's lease) when the delete comes.
    while stack.refresh_calls() == 0 {
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "the refresh did not reach Snyk in time"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!refresh.is_finished(), "the refresh is still in progress");

    c2.delete_install(pb::DeleteInstallRequest {
        install_id: id.clone(),
    })
    .await
    .expect("the delete succeeds once the refresh is done");
    let deleted_after = started.elapsed();
    // A lower bound only (a slow machine makes it larger): Snyk cannot have answered the refresh
    // before 500 ms, so a delete that waited for it cannot have finished earlier.
    assert!(
        deleted_after >= Duration::from_millis(500),
        "the delete waited for the refresh in progress: done after {deleted_after:?}"
    );

    // Deleted under it, the refresh may also fail: whatever it answers, the delete decides.
    if let Ok(t) = refresh.await.unwrap() {
        let t = t.into_inner();
        assert_ne!(t.access_token, t0.access_token);
        assert!(
            !stack.token_works(&t.access_token).await,
            "the refreshed pair was revoked by the delete"
        );
    }
    stack.fake.clear_faults();

    for c in [&mut c2, &mut client(&r1).await] {
        let err = c
            .get_install(pb::GetInstallRequest {
                install_id: id.clone(),
            })
            .await
            .expect_err("the install is gone");
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
    }
    let stats = stack.fake.stats();
    assert_eq!(
        stack.fake.live_refresh_tokens(),
        0,
        "no refresh token of the deleted install is alive at Snyk: {stats:?}"
    );
    assert_eq!(stats.spent_refresh_token_reuses, 0, "{stats:?}");
    assert!(
        !stack.token_works(&t0.access_token).await,
        "the first pair is dead too"
    );
}

#[tokio::test]
async fn a_snyk_outage_inside_the_margin_is_invisible_to_callers() {
    let stack = Stack::start(fake_config()).await;
    // No retries inside a refresh: every request at the fake is a background refresh started
    // by a caller, so the count below measures the cooldown.
    let replica = stack.replica(&[("SNYK_TOKEN_RETRIES", "0")]).await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let id = install.install_id.clone();
    let old = c
        .get_access_token(by_install(&id))
        .await
        .unwrap()
        .into_inner()
        .access_token;
    until_inside_margin().await;

    // Snyk declines every refresh, asking to come back in a second.
    stack.fake.inject(Fault::TokenErrors {
        status: 503,
        count: 1000,
        retry_after: Some(1),
    });
    for i in 0..50 {
        let t = Instant::now();
        let got = c
            .get_access_token(by_install(&id))
            .await
            .unwrap_or_else(|e| panic!("call {i} failed during the outage: {e:?}"))
            .into_inner();
        let took = t.elapsed();
        assert_eq!(got.access_token, old, "call {i} gets the stored token");
        // 50 ms is generous for a local call that answers from Redis (a few ms here, even on a
        // loaded machine); a call that waited for Snyk would wait for its Retry-After of 1 s.
        assert!(
            took < Duration::from_millis(50),
            "call {i} waited for Snyk: {took:?}"
        );
    }
    let calls = stack.refresh_calls();
    // A failed background refresh is not started again for 2 s: one request, not one per call
    // (16 here without the cooldown).
    assert_eq!(calls, 1, "refresh_token calls during the outage");
    assert_eq!(
        install_status(&mut c, &id).await.status(),
        pb::InstallStatus::Active
    );

    stack.fake.clear_faults();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        install_status(&mut c, &id).await.status(),
        pb::InstallStatus::Active
    );
    let new = c
        .get_access_token(by_install(&id))
        .await
        .expect("a token once Snyk is back")
        .into_inner()
        .access_token;
    assert_ne!(new, old, "the token was refreshed once Snyk was back");
    assert!(stack.token_works(&new).await, "the new token works");
    let stats = stack.fake.stats();
    assert!(stack.refresh_calls() >= 1, "{stats:?}");
    assert_eq!(stats.spent_refresh_token_reuses, 0, "{stats:?}");
    assert_eq!(
        install_status(&mut c, &id).await.status(),
        pb::InstallStatus::Active
    );
}

#[tokio::test]
async fn below_the_floor_callers_wait_for_the_refresh() {
    let stack = Stack::start(fake_config()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let stored = c
        .get_access_token(by_install(&install.install_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stack.refresh_calls(), 0);
    until_refresh_due().await;

    let got = c
        .get_access_token(by_install(&install.install_id))
        .await
        .expect("a token after the refresh")
        .into_inner();
    assert_ne!(
        got.access_token, stored.access_token,
        "below the floor the caller gets the new token, not the stored one"
    );
    assert!(stack.token_works(&got.access_token).await);
    let stats = stack.fake.stats();
    assert_eq!(stats.successful_refreshes, 1, "{stats:?}");
}
