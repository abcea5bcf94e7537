//! Faults on purpose: a replica killed with SIGKILL while it holds the refresh lease, Redis
//! restarted under load, Snyk failing and hanging, and a bounded soak.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use fake_snyk::Fault;
use snykapps_proto::token_v1 as pb;
use system_tests::*;
use tonic::Code;

/// Short lease, attempt and in-doubt deadlines, so a dead holder's lease runs out quickly.
const TIGHT: &[(&str, &str)] = &[
    ("TOKEN_REFRESH_LEASE_MS", "3000"),
    ("SNYK_TOKEN_TIMEOUT_MS", "1000"),
    ("SNYK_TOKEN_RETRIES", "0"),
    ("TOKEN_REFRESH_IN_DOUBT_SECONDS", "4"),
];

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The doomed replica's request is at the fake (held by `fault`) when it is killed.
async fn kill_the_sender(stack: &Stack, fault: Fault) -> (Replica, pb::Install) {
    let (mut doomed, doomed_addr) = stack.replica_process(TIGHT).await;
    let survivor = stack.replica(TIGHT).await;
    let mut c = client(&survivor).await;
    let install = stack.install(&mut c).await;
    let t0 = access_token(&mut c, &install.install_id).await;
    stack.fake.inject(fault);
    let mut doomed_client = client_with_key(doomed_addr, CALLER_KEY).await;
    let req = force(&install.install_id, &t0);
    let call = tokio::spawn(async move { doomed_client.force_refresh(req).await });
    wait_for("the refresh to reach the fake", || {
        stack.fake.stats().token_calls.get("refresh_token") == Some(&1)
    })
    .await;
    // Give the fake's state change (if the fault lets it happen) a moment, then kill.
    tokio::time::sleep(Duration::from_millis(100)).await;
    doomed.kill9();
    assert!(call.await.unwrap().is_err());
    stack.fake.clear_faults();
    (survivor, install)
}

/// A sender killed after its request left is indistinguishable from one that is frozen: nobody
/// presents its refresh token again, and once `TOKEN_REFRESH_IN_DOUBT_SECONDS` have passed the
/// install is reported NEEDS_REAUTH(`refresh_in_doubt`) instead of looking fine and failing later.
async fn after_a_dead_sender(stack: &Stack, survivor: &Replica, install: &pb::Install) {
    let mut c = client(survivor).await;
    let t0 = access_token(&mut c, &install.install_id).await;
    let err = c
        .force_refresh(force(&install.install_id, &t0))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let got = install_status(&mut c, &install.install_id).await;
    assert_eq!(got.status(), pb::InstallStatus::NeedsReauth);
    assert_eq!(got.needs_reauth_reason, "refresh_in_doubt");
    let m = survivor.metrics.snapshot();
    assert_eq!(
        (m.in_doubt_events, m.needs_reauth_in_doubt),
        (0, 1),
        "{m:?}"
    );
    let stats = stack.fake.stats();
    assert_eq!(
        (stack.refresh_calls(), stats.spent_refresh_token_reuses),
        (1, 0),
        "the survivor never presented the token: {stats:?}"
    );
}

#[tokio::test]
async fn killing_the_sender_before_snyk_acted_never_presents_its_token_again() {
    let stack = Stack::start(hour_long_tokens()).await;
    // The fake holds the request before acting on it; the kill drops it unredeemed.
    let (survivor, install) =
        kill_the_sender(&stack, Fault::TokenLatency(Duration::from_secs(5))).await;
    after_a_dead_sender(&stack, &survivor, &install).await;
    assert_eq!(stack.fake.stats().successful_refreshes, 0);
}

#[tokio::test]
async fn killing_the_sender_after_snyk_answered_never_presents_its_token_again() {
    let stack = Stack::start(hour_long_tokens()).await;
    // The fake rotates the pair, then holds the answer: the new pair dies with the process.
    let (survivor, install) =
        kill_the_sender(&stack, Fault::TokenAnswerDelay(Duration::from_secs(5))).await;
    after_a_dead_sender(&stack, &survivor, &install).await;
    assert_eq!(stack.fake.stats().successful_refreshes, 1);
}

/// Invariant 7 (docs/design.md): a replica frozen after sending a refresh, past its lease, is the
/// only one that ever presents that token. The install ends ACTIVE (its late outcome landed) or
/// NEEDS_REAUTH(`refresh_in_doubt`), never silently dead.
#[tokio::test]
async fn a_sender_frozen_past_its_lease_is_never_second_guessed() {
    let stack = Stack::start(hour_long_tokens()).await;
    let (frozen, frozen_addr) = stack.replica_process(TIGHT).await;
    let other = stack.replica(TIGHT).await;
    let mut c = client(&other).await;
    let install = stack.install(&mut c).await;
    let t0 = access_token(&mut c, &install.install_id).await;

    // Snyk redeems at once and answers 300 ms later; freeze the sender in between.
    stack
        .fake
        .inject(Fault::TokenAnswerDelay(Duration::from_millis(300)));
    let mut frozen_client = client_with_key(frozen_addr, CALLER_KEY).await;
    let req = force(&install.install_id, &t0);
    let call = tokio::spawn(async move { frozen_client.force_refresh(req).await });
    wait_for("Snyk to rotate the pair", || {
        stack.fake.stats().successful_refreshes == 1
    })
    .await;
    frozen.freeze();
    let frozen_at = Instant::now();

    // Past the sender's lease, another replica is asked: it serves the still-valid stored token
    // at once, and a forced refresh waits for the sender, then reports the install in doubt.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let served = access_token(&mut c, &install.install_id).await;
    assert_eq!(served, t0);
    let err = c
        .force_refresh(force(&install.install_id, &t0))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    // The in-doubt time (4 s) counts from the request, which went out just before the freeze;
    // what matters is that the sender was frozen past its lease (3 s) the whole time.
    assert!(
        frozen_at.elapsed() > Duration::from_millis(3500),
        "frozen past the lease"
    );
    frozen.thaw();
    let _ = call.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let stats = stack.fake.stats();
    assert_eq!(
        (stack.refresh_calls(), stats.spent_refresh_token_reuses),
        (1, 0),
        "no second presentation: {stats:?}"
    );
    // Snyk's answer arrived (300 ms) while the sender was frozen: on thaw the sender reads it,
    // although its deadline has long passed, and its late outcome lands (token-service's
    // `answer_within`). Without that, its deadline would win, the answer would be lost, and the
    // install would end NEEDS_REAUTH(refresh_in_doubt), one re-authorization too many.
    let got = install_status(&mut c, &install.install_id).await;
    assert_eq!(got.status(), pb::InstallStatus::Active, "{got:?}");
    let t1 = access_token(&mut c, &install.install_id).await;
    assert_ne!(t1, t0, "the late pair landed");
    assert!(stack.token_works(&t1).await, "the late pair works");
}

#[tokio::test]
async fn redis_restart_under_load_loses_no_grant_and_redeems_nothing_twice() {
    let mut stack = Stack::start(fake_config()).await;
    let redis = RestartableRedis::replace(&mut stack);
    let on_tcp: &[(&str, &str)] = &[("REDIS_URL", &redis.url), ("REDIS_TIMEOUT_MS", "500")];
    let replicas = [stack.replica(on_tcp).await, stack.replica(on_tcp).await];
    let mut c = client(&replicas[0]).await;
    let installs = stack.installs(&mut c, 3).await;

    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Arc<std::sync::Mutex<HashMap<String, u64>>> = Arc::default();
    let last_error_at = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..8 {
        let mut c = client(&replicas[w % 2]).await;
        let (stop, outcomes, last_error_at, installs) = (
            stop.clone(),
            outcomes.clone(),
            last_error_at.clone(),
            installs.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let id = &installs[i % installs.len()];
                let key = match c.get_access_token(by_install(id)).await {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => {
                        last_error_at
                            .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                        format!("{:?}", e.code())
                    }
                };
                *outcomes.lock().unwrap().entry(key).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(1500)).await;
    stack.redis.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.restart(&mut stack);
    let restarted_at = started.elapsed();
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }

    let outcomes = outcomes.lock().unwrap().clone();
    let unexpected: Vec<_> = outcomes
        .keys()
        .filter(|k| *k != "ok" && *k != "Unavailable")
        .collect();
    assert!(
        unexpected.is_empty(),
        "only OK or UNAVAILABLE: {outcomes:?}"
    );
    assert!(
        outcomes.get("Unavailable").copied().unwrap_or(0) > 0,
        "the outage was seen: {outcomes:?}"
    );
    let last_error = Duration::from_millis(last_error_at.load(Ordering::Relaxed));
    assert!(
        last_error < restarted_at + Duration::from_secs(3),
        "callers recovered by themselves: {last_error:?}"
    );
    for id in &installs {
        let install = install_status(&mut c, id).await;
        assert_eq!(install.status(), pb::InstallStatus::Active, "{install:?}");
        let t = c
            .get_access_token(by_install(id))
            .await
            .unwrap()
            .into_inner();
        assert!(stack.token_works(&t.access_token).await);
    }
    let stats = stack.fake.stats();
    assert_eq!(stats.spent_refresh_token_reuses, 0, "{stats:?}");
    assert!(
        stats.successful_refreshes >= 3,
        "refreshes happened around the outage: {stats:?}"
    );
}

#[tokio::test]
async fn snyk_failing_or_hanging_never_marks_an_install_for_reauth() {
    let stack = Stack::start(hour_long_tokens()).await;
    let replica = stack
        .replica(&[
            ("SNYK_TOKEN_TIMEOUT_MS", "300"),
            ("SNYK_TOKEN_RETRIES", "1"),
            ("TOKEN_REFRESH_LEASE_MS", "5000"),
        ])
        .await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let t0 = c
        .get_access_token(by_install(&install.install_id))
        .await
        .unwrap()
        .into_inner()
        .access_token;

    for fault in [
        Fault::TokenErrors {
            status: 500,
            count: 10,
            retry_after: None,
        },
        Fault::TokenErrors {
            status: 429,
            count: 10,
            retry_after: Some(1),
        },
        Fault::TokenLatency(Duration::from_secs(2)),
    ] {
        stack.fake.inject(fault.clone());
        let err = c
            .force_refresh(force(&install.install_id, &t0))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{fault:?}: {err:?}");
        assert_eq!(
            install_status(&mut c, &install.install_id).await.status(),
            pb::InstallStatus::Active,
            "{fault:?}"
        );
        stack.fake.clear_faults();
    }
    // Let the abandoned, held requests at the fake play out (they are dropped, never applied).
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let t1 = c
        .force_refresh(force(&install.install_id, &t0))
        .await
        .expect("recovers")
        .into_inner();
    assert!(stack.token_works(&t1.access_token).await);
    let stats = stack.fake.stats();
    assert_eq!(
        (stats.successful_refreshes, stats.spent_refresh_token_reuses),
        (1, 0),
        "{stats:?}"
    );
}

/// Steady load over three replicas with 2-second tokens: every install refreshes about once a
/// second. `SOAK_SECONDS` (default 30) sets the length; the published 5-minute run uses 300.
#[tokio::test]
async fn soak_with_two_second_tokens_over_three_replicas() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let stack = Stack::start(fake_config()).await;
    let replicas = stack.replicas(3, &[]).await;
    let mut c = client(&replicas[0]).await;
    let installs = stack.installs(&mut c, 5).await;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let failures = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..12 {
        let mut c = client(&replicas[w % 3]).await;
        let (failures, calls, installs) = (failures.clone(), calls.clone(), installs.clone());
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while Instant::now() < deadline {
                i += 1;
                let id = &installs[i % installs.len()];
                let ok = match c.get_access_token(by_install(id)).await {
                    // Half the time, play a caller whose request Snyk rejected.
                    Ok(t) if i % 7 == 0 => c
                        .force_refresh(force(id, &t.into_inner().access_token))
                        .await
                        .is_ok(),
                    Ok(_) => true,
                    Err(_) => false,
                };
                calls.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }

    let stats = stack.fake.stats();
    assert_eq!(stats.spent_refresh_token_reuses, 0, "{stats:?}");
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "calls: {}",
        calls.load(Ordering::Relaxed)
    );
    assert!(
        stats.successful_refreshes >= seconds * installs.len() as u64 / 2,
        "expected about one refresh per install per second: {stats:?}"
    );
    for id in &installs {
        let got = install_status(&mut c, id).await;
        assert_eq!(got.status(), pb::InstallStatus::Active);
        let t = c
            .get_access_token(by_install(id))
            .await
            .unwrap()
            .into_inner();
        assert!(
            stack.token_works(&t.access_token).await,
            "install {id} lost"
        );
    }
    eprintln!(
        "soak: {seconds} s, {} calls, {} refreshes, {} spent-token reuses",
        calls.load(Ordering::Relaxed),
        stats.successful_refreshes,
        stats.spent_refresh_token_reuses
    );
}
