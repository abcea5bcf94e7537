//! Refreshing a grant over replicas: once for any number of callers, retried when Snyk fails
//! for a while, never twice when an answer is lost or a holder stalls, and finished even when
//! the caller hangs up or the replica shuts down.

use super::*;

#[tokio::test]
async fn concurrent_get_access_token_over_three_replicas_refreshes_once() {
    let stack = Stack::start(fake_config()).await;
    let replicas = stack.replicas(3, &[]).await;
    let mut clients = Vec::new();
    for r in &replicas {
        clients.push(client(r).await);
    }
    let install = stack.install(&mut clients[0]).await;
    let old = clients[0]
        .get_access_token(by_install(&install.install_id))
        .await
        .unwrap()
        .into_inner();
    until_refresh_due().await;

    let calls = (0..500).map(|i| {
        let mut c = clients[i % 3].clone();
        let id = install.install_id.clone();
        async move {
            c.get_access_token(by_install(&id))
                .await
                .map(|r| r.into_inner().access_token)
        }
    });
    let results = join_all(calls).await;

    let tokens: HashSet<String> = results
        .into_iter()
        .map(|r| r.expect("every caller gets a token"))
        .collect();
    assert_eq!(tokens.len(), 1, "all callers get the same new token");
    assert!(!tokens.contains(&old.access_token));
    let stats = stack.fake.stats();
    assert_eq!(stats.successful_refreshes, 1, "{stats:?}");
    assert_eq!(stack.refresh_calls(), 1, "{stats:?}");
    assert_eq!(stats.spent_refresh_token_reuses, 0);
    assert!(stack.token_works(tokens.iter().next().unwrap()).await);
}

#[tokio::test]
async fn concurrent_force_refresh_and_mixed_callers_refresh_once() {
    let stack = Stack::start(fake_config()).await;
    let replicas = stack.replicas(3, &[]).await;
    let mut clients = Vec::new();
    for r in &replicas {
        clients.push(client(r).await);
    }
    let install = stack.install(&mut clients[0]).await;
    let id = install.install_id.clone();

    // 1) ForceRefresh only: the token is not expired, Snyk "rejected" it.
    let rejected = clients[0]
        .get_access_token(by_install(&id))
        .await
        .unwrap()
        .into_inner()
        .access_token;
    let calls = (0..500).map(|i| {
        let mut c = clients[i % 3].clone();
        let req = force(&id, &rejected);
        async move {
            c.force_refresh(req)
                .await
                .map(|r| r.into_inner().access_token)
        }
    });
    let tokens: HashSet<String> = join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(tokens.len(), 1);
    assert!(!tokens.contains(&rejected));
    assert_eq!(stack.fake.stats().successful_refreshes, 1);

    // 2) A mix after expiry: GetAccessToken callers and ForceRefresh callers holding the token
    // that is now due.
    let current = tokens.into_iter().next().unwrap();
    until_refresh_due().await;
    let calls = (0..500).map(|i| {
        let mut c = clients[i % 3].clone();
        let id = id.clone();
        let current = current.clone();
        async move {
            if i % 2 == 0 {
                c.get_access_token(by_install(&id))
                    .await
                    .map(|r| r.into_inner().access_token)
            } else {
                c.force_refresh(force(&id, &current))
                    .await
                    .map(|r| r.into_inner().access_token)
            }
        }
    });
    let tokens: HashSet<String> = join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    let stats = stack.fake.stats();
    assert_eq!(stats.successful_refreshes, 2, "{stats:?}");
    assert_eq!(stack.refresh_calls(), 2);
    assert_eq!(stats.spent_refresh_token_reuses, 0);
}

#[tokio::test]
async fn force_refresh_with_an_outdated_token_returns_the_stored_one() {
    let stack = Stack::start(fake_config()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let first = c
        .get_access_token(by_install(&install.install_id))
        .await
        .unwrap()
        .into_inner();
    let second = c
        .force_refresh(force(&install.install_id, &first.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(first.access_token, second.access_token);
    // A late caller still holding the first token does not cause another refresh.
    let third = c
        .force_refresh(force(&install.install_id, &first.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(third.access_token, second.access_token);
    assert_eq!(stack.refresh_calls(), 1);
}

#[tokio::test]
async fn invalid_grant_moves_the_install_to_needs_reauth() {
    let stack = Stack::start(fake_config()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let token = c
        .get_access_token(by_install(&install.install_id))
        .await
        .unwrap()
        .into_inner();
    // The user revokes the app at Snyk: the whole grant dies.
    stack.revoke_at_snyk(&token.access_token).await;

    let err = c
        .force_refresh(force(&install.install_id, &token.access_token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("refresh_token_rejected"),
        "{}",
        err.message()
    );
    let got = c
        .get_install(pb::GetInstallRequest {
            install_id: install.install_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.status(), pb::InstallStatus::NeedsReauth);
    assert_eq!(got.needs_reauth_reason, "refresh_token_rejected");
    assert_eq!(replica.metrics.snapshot().needs_reauth_rejected, 1);

    // Not retried: further calls fail at once without calling Snyk.
    let before = stack.refresh_calls();
    for _ in 0..5 {
        let err = c
            .get_access_token(by_install(&install.install_id))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
    }
    assert_eq!(stack.refresh_calls(), before);
}

#[tokio::test]
async fn transient_errors_are_retried_then_succeed() {
    let stack = Stack::start(fake_config()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let t0 = c
        .get_access_token(by_install(&install.install_id))
        .await
        .unwrap()
        .into_inner();

    stack.fake.inject(Fault::TokenErrors {
        status: 500,
        count: 1,
        retry_after: None,
    });
    let t1 = c
        .force_refresh(force(&install.install_id, &t0.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(t1.access_token, t0.access_token);
    assert_eq!(stack.refresh_calls(), 2);

    stack.fake.inject(Fault::TokenErrors {
        status: 429,
        count: 1,
        retry_after: Some(1),
    });
    let started = std::time::Instant::now();
    let t2 = c
        .force_refresh(force(&install.install_id, &t1.access_token))
        .await
        .unwrap()
        .into_inner();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_ne!(t2.access_token, t1.access_token);

    let stats = stack.fake.stats();
    assert_eq!(stats.successful_refreshes, 2);
    assert_eq!(stats.spent_refresh_token_reuses, 0);
    assert!(stack.token_works(&t2.access_token).await);
}

#[tokio::test]
async fn snyk_down_is_unavailable_and_never_needs_reauth() {
    let stack = Stack::start(fake_config()).await;
    let replica = stack.replica(&[("SNYK_TOKEN_RETRIES", "1")]).await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let t0 = c
        .get_access_token(by_install(&install.install_id))
        .await
        .unwrap()
        .into_inner();

    // 503 with Retry-After: Snyk declined the request, the refresh token is still good.
    stack.fake.inject(Fault::TokenErrors {
        status: 503,
        count: 4,
        retry_after: Some(1),
    });
    for _ in 0..2 {
        let err = c
            .force_refresh(force(&install.install_id, &t0.access_token))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    }
    let got = c
        .get_install(pb::GetInstallRequest {
            install_id: install.install_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.status(), pb::InstallStatus::Active);
    // Once Snyk is back, the same refresh token still works.
    let t1 = c
        .force_refresh(force(&install.install_id, &t0.access_token))
        .await
        .unwrap()
        .into_inner();
    assert!(stack.token_works(&t1.access_token).await);
    assert_eq!(stack.fake.stats().spent_refresh_token_reuses, 0);
}

#[tokio::test]
async fn lost_refresh_answer_takes_the_in_doubt_path() {
    let stack = Stack::start(fake_config()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let t0 = c
        .get_access_token(by_install(&install.install_id))
        .await
        .unwrap()
        .into_inner();

    // Snyk rotates the pair but the answer never arrives; the retry with the same token is a
    // reuse, which (worst case) revokes the grant.
    stack.fake.inject(Fault::LoseRefreshResponses(1));
    let err = c
        .force_refresh(force(&install.install_id, &t0.access_token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("refresh_in_doubt"),
        "{}",
        err.message()
    );

    let got = c
        .get_install(pb::GetInstallRequest {
            install_id: install.install_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.status(), pb::InstallStatus::NeedsReauth);
    assert_eq!(got.needs_reauth_reason, "refresh_in_doubt");
    let m = replica.metrics.snapshot();
    assert_eq!(m.in_doubt_events, 1, "{m:?}");
    assert_eq!(m.needs_reauth_in_doubt, 1, "{m:?}");
    let stats = stack.fake.stats();
    assert_eq!(
        (
            stats.lost_responses,
            stats.spent_refresh_token_reuses,
            stack.refresh_calls()
        ),
        (1, 1, 2)
    );
}

#[tokio::test]
async fn a_holder_that_died_before_reaching_snyk_is_recovered_by_the_next_one() {
    let stack = Stack::start(fake_config()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let t0 = c
        .get_access_token(by_install(&install.install_id))
        .await
        .unwrap()
        .into_inner();

    // Leave the "refresh started" mark exactly as a holder killed before its request left would:
    // "started" without "sending" means nothing went out, so the next holder simply refreshes.
    let store = stack.store(&[]).await;
    let id = token_service::grant::InstallId::parse(&install.install_id).unwrap();
    let v = store.load(&id).await.unwrap().unwrap();
    let mut marked = v.grant.clone();
    marked.refresh_started_at = Some(token_service::grant::now_millis());
    store
        .write_fenced(v.generation, &marked, None)
        .await
        .unwrap();

    let t1 = c
        .force_refresh(force(&install.install_id, &t0.access_token))
        .await
        .unwrap()
        .into_inner();
    assert!(stack.token_works(&t1.access_token).await);
    assert_eq!(replica.metrics.snapshot().in_doubt_events, 0);
    assert_eq!(stack.fake.stats().spent_refresh_token_reuses, 0);
    let got = c
        .get_install(pb::GetInstallRequest {
            install_id: install.install_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.status(), pb::InstallStatus::Active);
}

#[tokio::test]
async fn a_stale_writer_cannot_overwrite_a_newer_grant() {
    let stack = Stack::start(fake_config()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let store = stack.store(&[]).await;
    let id = token_service::grant::InstallId::parse(&install.install_id).unwrap();

    let stale = store.load(&id).await.unwrap().unwrap();
    let t0 = c
        .get_access_token(by_install(&install.install_id))
        .await
        .unwrap()
        .into_inner();
    let t1 = c
        .force_refresh(force(&install.install_id, &t0.access_token))
        .await
        .unwrap()
        .into_inner();

    // A holder that read the grant before the refresh tries to write its (older) view back.
    let outcome = store
        .write_fenced(stale.generation, &stale.grant, None)
        .await
        .unwrap();
    assert_eq!(outcome, token_service::store::Fenced::Stale);
    let now = c
        .get_access_token(by_install(&install.install_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.access_token, t1.access_token);
}

#[tokio::test]
async fn a_lease_holder_stalled_past_its_lease_cannot_redeem_twice() {
    let stack = Stack::start(fake_config()).await;
    // Attempts of 300 ms with no transient retries fit a 1.7 s lease. The forced refreshes start
    // at once, as the timing below assumes: a token minted moments ago is not held to the
    // minimum refresh interval (tests/system/spinning.rs covers that rule).
    let tight: &[(&str, &str)] = &[
        ("SNYK_TOKEN_TIMEOUT_MS", "300"),
        ("SNYK_TOKEN_RETRIES", "0"),
        ("TOKEN_REFRESH_LEASE_MS", "1700"),
        ("TOKEN_MIN_REFRESH_INTERVAL_SECONDS", "0"),
    ];
    let a = stack.replica(tight).await;
    let b = stack.replica(tight).await;
    let (mut ca, mut cb) = (client(&a).await, client(&b).await);
    let install = stack.install(&mut ca).await;
    let t0 = ca
        .get_access_token(by_install(&install.install_id))
        .await
        .unwrap()
        .into_inner();

    // Snyk stalls far beyond every deadline; both replicas push for a refresh.
    stack
        .fake
        .inject(Fault::TokenLatency(Duration::from_secs(3)));
    let (ra, rb) = tokio::join!(
        ca.force_refresh(force(&install.install_id, &t0.access_token)),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            cb.force_refresh(force(&install.install_id, &t0.access_token))
                .await
        }
    );
    for r in [&ra, &rb] {
        assert_eq!(r.as_ref().unwrap_err().code(), Code::Unavailable, "{r:?}");
    }
    // Let every abandoned request at the fake play out, then heal Snyk.
    tokio::time::sleep(Duration::from_secs(4)).await;
    stack.fake.clear_faults();

    let after = ca
        .force_refresh(force(&install.install_id, &t0.access_token))
        .await;
    let stats = stack.fake.stats();
    assert!(stats.successful_refreshes <= 1, "{stats:?}");
    match after {
        // Either the stalled requests never counted and the refresh now succeeds ...
        Ok(t) => {
            assert!(stack.token_works(&t.into_inner().access_token).await);
            assert_eq!(stats.spent_refresh_token_reuses, 0, "{stats:?}");
        }
        // ... or one was redeemed without an answer reaching us: that is reported, never hidden.
        Err(e) => {
            assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
            assert!(e.message().contains("refresh_in_doubt"), "{}", e.message());
        }
    }
}

#[tokio::test]
async fn a_caller_hanging_up_does_not_cancel_the_refresh() {
    let stack = Stack::start(fake_config()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let t0 = c
        .get_access_token(by_install(&install.install_id))
        .await
        .unwrap()
        .into_inner();

    stack
        .fake
        .inject(Fault::TokenLatency(Duration::from_millis(500)));
    let mut req = tonic::Request::new(force(&install.install_id, &t0.access_token));
    req.set_timeout(Duration::from_millis(100));
    let err = c.force_refresh(req).await.unwrap_err();
    assert!(
        matches!(err.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{err:?}"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    stack.fake.clear_faults();

    // The refresh finished and was stored: the next caller gets its result without another one.
    let t1 = c
        .force_refresh(force(&install.install_id, &t0.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(t1.access_token, t0.access_token);
    assert_eq!(stack.refresh_calls(), 1);
    assert!(stack.token_works(&t1.access_token).await);
}

#[tokio::test]
async fn shutdown_waits_for_in_flight_refreshes_to_persist() {
    let stack = Stack::start(fake_config()).await;
    let mut replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let t0 = c
        .get_access_token(by_install(&install.install_id))
        .await
        .unwrap()
        .into_inner();

    stack
        .fake
        .inject(Fault::TokenLatency(Duration::from_millis(600)));
    let id = install.install_id.clone();
    let mut c2 = c.clone();
    let call = tokio::spawn(async move { c2.force_refresh(force(&id, &t0.access_token)).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    replica.begin_stop();
    replica.join().await.unwrap();

    let t1 = call
        .await
        .unwrap()
        .expect("the in-flight call completes")
        .into_inner();
    let store = stack.store(&[]).await;
    let id = token_service::grant::InstallId::parse(&install.install_id).unwrap();
    let stored = store.load(&id).await.unwrap().unwrap();
    assert!(
        stored
            .grant
            .has_access_token(&t1.access_token.clone().into()),
        "persisted before exit"
    );
    assert!(stored.grant.refresh_started_at.is_none());
}
