//! token-service against a private Redis and the fake Snyk: invariants 1-6 of docs/design.md.

use std::{collections::HashSet, time::Duration};

use fake_snyk::Fault;
use futures::future::join_all;
use snykapps_proto::token_v1 as pb;
use system_tests::*;
use tonic::Code;

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
    // Attempts of 300 ms with no transient retries fit a 1.7 s lease.
    let tight: &[(&str, &str)] = &[
        ("SNYK_TOKEN_TIMEOUT_MS", "300"),
        ("SNYK_TOKEN_RETRIES", "0"),
        ("TOKEN_REFRESH_LEASE_MS", "1700"),
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

#[tokio::test]
async fn redis_holds_no_token_in_clear() {
    let stack = Stack::start(fake_config()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let t = c
        .get_access_token(by_install(&install.install_id))
        .await
        .unwrap()
        .into_inner();
    let t = c
        .force_refresh(force(&install.install_id, &t.access_token))
        .await
        .unwrap()
        .into_inner();

    let dump = stack.redis_dump().await;
    assert!(!dump.is_empty());
    let contains = |needle: &[u8]| dump.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(t.access_token.as_bytes()));
    // Every token the fake issues starts with these prefixes; none may appear in Redis.
    assert!(!contains(b"snyk_at_") && !contains(b"snyk_rt_"));
    assert!(
        contains(install.install_id.as_bytes()),
        "the dump does cover the install"
    );
}

#[tokio::test]
async fn unreadable_records_fail_only_their_install_and_keys_rotate() {
    let stack = Stack::start(fake_config()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let a = stack.install(&mut c).await;
    let b = stack.install(&mut c).await;

    // Tamper with install A's ciphertext: A fails with an opaque INTERNAL, B is untouched.
    let mut conn = stack.redis_conn().await;
    let key = format!("snykapps:grant:{{{}}}", a.install_id);
    let mut rec: Vec<u8> = redis::cmd("HGET")
        .arg(&key)
        .arg("rec")
        .query_async(&mut conn)
        .await
        .unwrap();
    let last = rec.len() - 1;
    rec[last] ^= 0x55;
    let original_a = {
        let mut r = rec.clone();
        r[last] ^= 0x55;
        r
    };
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("rec")
        .arg(&rec)
        .query_async(&mut conn)
        .await
        .unwrap();
    let err = c
        .get_access_token(by_install(&a.install_id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert_eq!(err.message(), "internal error");
    c.get_access_token(by_install(&b.install_id))
        .await
        .expect("B unaffected");
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("rec")
        .arg(&original_a)
        .query_async(&mut conn)
        .await
        .unwrap();
    replica.stop().await.unwrap();

    // Restart with only a new key: old records cannot be opened (unknown key id).
    let only_new = stack.replica(&[("TOKEN_ENCRYPTION_KEYS", K2)]).await;
    let mut c = client(&only_new).await;
    assert_eq!(
        c.get_access_token(by_install(&a.install_id))
            .await
            .unwrap_err()
            .code(),
        Code::Internal
    );
    only_new.stop().await.unwrap();

    // The same id with other key material: authentication fails.
    let impostor = "k1:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
    let wrong = stack.replica(&[("TOKEN_ENCRYPTION_KEYS", impostor)]).await;
    let mut c = client(&wrong).await;
    assert_eq!(
        c.get_access_token(by_install(&b.install_id))
            .await
            .unwrap_err()
            .code(),
        Code::Internal
    );
    wrong.stop().await.unwrap();

    // Rotation: new key first, old key kept. Old records open; a write re-seals; `reseal` does the rest.
    let rotated_keys = format!("{K2},{K1}");
    let rotated = stack
        .replica(&[("TOKEN_ENCRYPTION_KEYS", &rotated_keys)])
        .await;
    let mut c = client(&rotated).await;
    let ta = c
        .get_access_token(by_install(&a.install_id))
        .await
        .unwrap()
        .into_inner();
    c.force_refresh(force(&a.install_id, &ta.access_token))
        .await
        .unwrap();
    let store = token_service::store::Store::connect(
        &token_service::store::RedisTarget::parse(&stack.redis.url()).unwrap(),
        stack
            .settings(&[("TOKEN_ENCRYPTION_KEYS", &rotated_keys)])
            .keyring,
        Duration::from_secs(2),
        0,
    )
    .await
    .unwrap();
    let report = token_service::reseal::reseal_all(&store).await.unwrap();
    assert_eq!(
        (report.resealed, report.already_current, report.unreadable),
        (1, 1, 0),
        "{report:?}"
    );
    rotated.stop().await.unwrap();

    let only_new = stack.replica(&[("TOKEN_ENCRYPTION_KEYS", K2)]).await;
    let mut c = client(&only_new).await;
    for id in [&a.install_id, &b.install_id] {
        c.get_access_token(by_install(id))
            .await
            .expect("readable with the new key alone");
    }
}

#[tokio::test]
async fn list_and_delete_installs() {
    let stack = Stack::start(fake_config()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let mut ids = HashSet::new();
    for _ in 0..3 {
        ids.insert(stack.install(&mut c).await.install_id);
    }

    let page1 = c
        .list_installs(pb::ListInstallsRequest {
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page1.installs.len(), 2);
    assert!(!page1.next_page_token.is_empty());
    let page2 = c
        .list_installs(pb::ListInstallsRequest {
            page_size: 2,
            page_token: page1.next_page_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page2.installs.len(), 1);
    assert!(page2.next_page_token.is_empty());
    let listed: HashSet<_> = page1
        .installs
        .iter()
        .chain(&page2.installs)
        .map(|i| i.install_id.clone())
        .collect();
    assert_eq!(listed, ids);

    let victim = page1.installs[0].install_id.clone();
    let token = c
        .get_access_token(by_install(&victim))
        .await
        .unwrap()
        .into_inner();
    c.delete_install(pb::DeleteInstallRequest {
        install_id: victim.clone(),
    })
    .await
    .unwrap();
    assert_eq!(stack.fake.stats().revocations, 1);
    assert!(
        !stack.token_works(&token.access_token).await,
        "revoked at Snyk"
    );
    let err = c
        .get_install(pb::GetInstallRequest {
            install_id: victim.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // Idempotent.
    c.delete_install(pb::DeleteInstallRequest {
        install_id: victim.clone(),
    })
    .await
    .unwrap();
    assert_eq!(stack.fake.stats().revocations, 1);
    let all = c
        .list_installs(pb::ListInstallsRequest {
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.installs.len(), 2);
    // The org now maps to a remaining install (the newest install of the org wins the index).
    let org = page1.installs[0].orgs[0].id.clone();
    let by_org = c
        .get_access_token(pb::GetAccessTokenRequest {
            target: Some(pb::get_access_token_request::Target::OrgId(org)),
            min_validity_seconds: 0,
        })
        .await;
    let served = by_org
        .expect("the org falls back to a remaining install")
        .into_inner()
        .install_id;
    assert_ne!(served, victim, "the deleted install does not serve the org");
    assert!(
        ids.contains(&served),
        "{served} is one of the remaining installs"
    );
}

#[tokio::test]
async fn min_validity_beyond_the_lifetime_is_refused() {
    let stack = Stack::start(fake_config()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let err = c
        .get_access_token(pb::GetAccessTokenRequest {
            target: Some(pb::get_access_token_request::Target::InstallId(
                install.install_id.clone(),
            )),
            min_validity_seconds: 7200,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("min_validity_seconds"));
    assert_eq!(stack.refresh_calls(), 0);
}

/// Sum of `calls=` over Redis's command statistics (every command but INFO itself), read on the
/// test's own `conn` (opened once: a new connection's AUTH would count).
async fn redis_calls(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        // INFO is this helper's own; PING is the grant cache's tracking connection proving it
        // is alive (once a second).
        .filter(|l| {
            l.starts_with("cmdstat_")
                && !l.starts_with("cmdstat_info:")
                && !l.starts_with("cmdstat_ping:")
        })
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[tokio::test]
async fn the_hot_path_sends_no_redis_command_by_install_or_by_org() {
    let mut config = fake_config();
    config.access_token_ttl = Duration::from_secs(3600);
    let stack = Stack::start(config).await;
    let replica = stack.replica(&[]).await;
    replica.until_cache_tracked().await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let by_org = || pb::GetAccessTokenRequest {
        target: Some(pb::get_access_token_request::Target::OrgId(
            install.orgs[0].id.clone(),
        )),
        min_validity_seconds: 0,
    };
    // Warms the grant cache: the org's installs and the install's hand-out.
    c.get_access_token(by_org()).await.unwrap();

    let mut conn = stack.redis_conn().await;
    let before = redis_calls(&mut conn).await;
    for _ in 0..100 {
        c.get_access_token(by_org()).await.unwrap();
        c.get_access_token(by_install(&install.install_id))
            .await
            .unwrap();
    }
    let after = redis_calls(&mut conn).await;

    assert_eq!(
        after - before,
        0,
        "200 token requests answered from the grant cache"
    );
}

#[tokio::test]
async fn a_cached_org_mapping_follows_a_deletion_on_another_replica() {
    let stack = Stack::start(fake_config()).await;
    let (a, b) = (stack.replica(&[]).await, stack.replica(&[]).await);
    let (mut ca, mut cb) = (client(&a).await, client(&b).await);
    let install = stack.install(&mut ca).await;
    let by_org = || pb::GetAccessTokenRequest {
        target: Some(pb::get_access_token_request::Target::OrgId(
            install.orgs[0].id.clone(),
        )),
        min_validity_seconds: 0,
    };
    ca.get_access_token(by_org()).await.unwrap(); // A now caches org -> install

    // A hears of B's changes through Redis's push, which may trail B's answer by a moment
    // (docs/design.md, "The grant cache"): each change shows within a bounded wait.
    cb.delete_install(pb::DeleteInstallRequest {
        install_id: install.install_id.clone(),
    })
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        match ca.get_access_token(by_org()).await {
            Err(e) if e.code() == Code::NotFound => break,
            other => assert!(std::time::Instant::now() < deadline, "{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // A fresh install of the same org is found, too.
    let again = stack.install(&mut cb).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        match ca.get_access_token(by_org()).await {
            Ok(t) if t.get_ref().install_id == again.install_id => break,
            other => assert!(std::time::Instant::now() < deadline, "{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
