//! Installs that live for months (docs/design.md, invariant 7): the keep-alive sweeper refreshes
//! idle installs before their refresh token expires, a frozen sender's late outcome still lands,
//! and a rotated pair survives a Redis crash.

use std::time::{Duration, Instant};

use fake_snyk::Fault;
use snykapps_proto::token_v1 as pb;
use system_tests::*;
use test_support::{RedisOptions, RedisServer};
use token_service::{
    grant::{InstallId, now_millis},
    metrics::Metrics,
    snyk::SnykClient,
    store::{Fenced, SendingMark, Settled},
};
use tonic::Code;

fn refresh_tokens_living(ttl: Duration) -> fake_snyk::Config {
    let mut c = fake_config();
    c.access_token_ttl = Duration::from_secs(3600);
    c.refresh_token_ttl = ttl;
    c
}

/// Refresh tokens of 6 s: the keep-alive margin is capped at half of that, so an install is due
/// 3 s after each refresh. Two replicas sweep every second (jittered); nobody calls.
#[tokio::test]
async fn idle_installs_outlive_their_refresh_tokens_with_one_refresh_per_due_install() {
    let stack = Stack::start(refresh_tokens_living(Duration::from_secs(6))).await;
    let sweeping: &[(&str, &str)] = &[("TOKEN_KEEPALIVE_INTERVAL_SECONDS", "1")];
    let replicas = [stack.replica(sweeping).await, stack.replica(sweeping).await];
    let mut c = client(&replicas[0]).await;
    let created = Instant::now();
    let installs = stack.installs(&mut c, 3).await;

    // Due at 3 s; a sweep within about 1.2 s after that refreshes each install once; the next
    // refresh is due at about 6 s. Between the two, each install has exactly one refresh.
    tokio::time::sleep(Duration::from_millis(5300).saturating_sub(created.elapsed())).await;
    let stats = stack.fake.stats();
    assert_eq!(
        (stats.successful_refreshes, stats.spent_refresh_token_reuses),
        (3, 0),
        "one refresh per due install across two sweeping replicas: {stats:?}"
    );
    let swept: u64 = replicas
        .iter()
        .map(|r| r.metrics.snapshot().keepalive_refreshed)
        .sum();
    assert!(
        swept >= 3,
        "the sweepers saw every install fresh again: {swept}"
    );
    let remaining = replicas[0]
        .metrics
        .min_refresh_remaining()
        .expect("the gauge is set by a sweep");
    assert!((0..=6).contains(&remaining), "{remaining}");

    // Well past two refresh-token lifetimes, untouched: still alive, still refreshable.
    tokio::time::sleep(Duration::from_secs(13).saturating_sub(created.elapsed())).await;
    for id in &installs {
        assert_eq!(
            install_status(&mut c, id).await.status(),
            pb::InstallStatus::Active
        );
        let t = access_token(&mut c, id).await;
        let fresh = c
            .force_refresh(force(id, &t))
            .await
            .expect("the refresh token is still valid")
            .into_inner();
        assert!(stack.token_works(&fresh.access_token).await);
    }
    assert_eq!(stack.fake.stats().spent_refresh_token_reuses, 0);
}

/// The frozen-sender rescue, step by step on the real store, so that the late outcome does land
/// (tests/system/chaos.rs freezes a real process, where it may instead be lost on thaw): a
/// sender's "sending" mark outlives its lease, another replica waits for it and then declares
/// the install in doubt, and the sender's pair, stored late and fenced on its own mark, wins.
#[tokio::test]
async fn a_late_outcome_lands_over_the_in_doubt_verdict() {
    let stack = Stack::start(refresh_tokens_living(Duration::from_secs(3600))).await;
    let tight: &[(&str, &str)] = &[
        ("TOKEN_REFRESH_LEASE_MS", "1500"),
        ("SNYK_TOKEN_TIMEOUT_MS", "200"),
        ("SNYK_TOKEN_RETRIES", "0"),
        ("TOKEN_REFRESH_IN_DOUBT_SECONDS", "2"),
    ];
    let replica = stack.replica(tight).await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let id = InstallId::parse(&install.install_id).unwrap();
    let t0 = access_token(&mut c, &install.install_id).await;

    // The "frozen" sender: lease, "started", "sending", then its request is redeemed at Snyk.
    let store = stack.store(tight).await;
    let owner = "frozen-sender-lease-owner";
    assert!(
        store
            .try_lease(&id, owner, Duration::from_millis(300))
            .await
            .unwrap()
    );
    let v = store.load(&id).await.unwrap().unwrap();
    let mut marked = v.grant.clone();
    marked.refresh_started_at = Some(now_millis());
    let Fenced::Written(generation) = store
        .write_fenced(v.generation, &marked, Some(owner))
        .await
        .unwrap()
    else {
        panic!("started mark not written");
    };
    let mark = SendingMark {
        replica: "frozen-replica".into(),
        flight: owner.into(),
        at: now_millis(),
    };
    assert_eq!(
        store
            .mark_sending(&id, generation, owner, &mark)
            .await
            .unwrap(),
        Fenced::Written(generation)
    );
    let settings = stack.settings(tight);
    let snyk = SnykClient::new(
        settings.snyk_api_url.clone(),
        settings.client_id.clone(),
        settings.client_secret.clone(),
        settings.rest_version.clone(),
        Duration::from_secs(2),
        settings.snyk_ca.certificates(),
        std::sync::Arc::new(Metrics::default()),
    )
    .unwrap();
    let pair = snyk.refresh(&marked.refresh_token).await.unwrap();

    // The sender is frozen; its lease runs out. Another replica must not present the token: it
    // waits for the mark, then declares the install in doubt.
    let err = c
        .force_refresh(force(&install.install_id, &t0))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let got = install_status(&mut c, &install.install_id).await;
    assert_eq!(got.needs_reauth_reason, "refresh_in_doubt");
    assert_eq!(stack.fake.stats().spent_refresh_token_reuses, 0);

    // The sender thaws and stores its pair: it lands over the verdict.
    let fresh = marked.with_new_pair(pair, now_millis());
    assert!(matches!(
        store.settle(&mark, generation, &fresh).await.unwrap(),
        Settled::Written(_)
    ));
    let got = install_status(&mut c, &install.install_id).await;
    assert_eq!(got.status(), pb::InstallStatus::Active, "{got:?}");
    let t1 = access_token(&mut c, &install.install_id).await;
    assert_ne!(t1, t0);
    assert!(stack.token_works(&t1).await);
    // A second settle with the same mark finds it gone: an outcome is stored once.
    assert_eq!(
        store.settle(&mark, generation, &fresh).await.unwrap(),
        Settled::Orphaned
    );
    // And the stored refresh token is the live one.
    let t2 = c
        .force_refresh(force(&install.install_id, &t1))
        .await
        .unwrap()
        .into_inner();
    assert!(stack.token_works(&t2.access_token).await);
    let stats = stack.fake.stats();
    assert_eq!(
        (stats.successful_refreshes, stats.spent_refresh_token_reuses),
        (2, 0),
        "{stats:?}"
    );
}

/// Refreshes, kills Redis with SIGKILL at once, restarts it from its AOF: is the rotated pair
/// there? Returns the replica's durable-commits gauge.
async fn refresh_then_kill_redis(fsync_everysec: bool) -> Option<bool> {
    let mut stack = Stack::start(refresh_tokens_living(Duration::from_secs(3600))).await;
    let dir = tempfile::tempdir().unwrap();
    let opts = RedisOptions {
        tcp: true,
        persistent: true,
        fsync_everysec,
        dir: Some(dir.path().into()),
        ..grants_redis()
    };
    stack.redis = RedisServer::start_with(opts.clone()).unwrap();
    let port = stack.redis.port().unwrap();
    let url = stack.redis.tcp_url_as(TOKEN_SERVICE_USER).unwrap();
    // The forced refresh goes out right after the install: the minimum refresh interval is
    // turned off (0). Held for it, the refresh would come after a second of quiet, when Redis's
    // first write starts a background fsync and `everysec` may postpone the writes behind it
    // past their answers (Redis's `flushAppendOnlyFile`): the kill would race that, which is not
    // what this test shows.
    let replica = stack
        .replica(&[
            ("REDIS_URL", &url),
            ("REDIS_TIMEOUT_MS", "500"),
            ("TOKEN_MIN_REFRESH_INTERVAL_SECONDS", "0"),
        ])
        .await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let t0 = access_token(&mut c, &install.install_id).await;
    let t1 = forced_token(&mut c, &install.install_id, &t0).await;
    stack.redis.kill();
    stack.redis = RedisServer::start_with(RedisOptions {
        port: Some(port),
        ..opts
    })
    .unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let stored = loop {
        match c.get_access_token(by_install(&install.install_id)).await {
            Ok(t) => break t.into_inner().access_token,
            Err(e) if e.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("after the restart: {e:?}"),
        }
    };
    assert_eq!(stored, t1, "the rotated pair survived the crash");
    let t2 = c
        .force_refresh(force(&install.install_id, &t1))
        .await
        .expect("the stored refresh token is the live one")
        .into_inner();
    assert!(stack.token_works(&t2.access_token).await);
    assert_eq!(stack.fake.stats().spent_refresh_token_reuses, 0);
    replica.metrics.durable_commits()
}

#[tokio::test]
async fn a_rotated_pair_survives_a_redis_crash_with_appendfsync_always() {
    assert_eq!(refresh_then_kill_redis(false).await, Some(true));
}

/// What `appendfsync everysec` loses, documented: nothing when only redis-server dies (its
/// write(2) of the AOF happened before it answered; the page cache keeps it), which is what this
/// test shows. A crash of the host (power, kernel, VM) loses the writes of the last second, which
/// no test on one machine can produce; token-service reports that risk at start-up (a warning and
/// `snykapps_redis_durable_commits 0`), and compose runs `appendfsync always`.
#[tokio::test]
async fn with_appendfsync_everysec_a_process_crash_loses_nothing_and_the_risk_is_reported() {
    assert_eq!(refresh_then_kill_redis(true).await, Some(false));
}

/// A Redis without an append-only file is reported the same way.
#[tokio::test]
async fn redis_without_aof_is_reported_not_durable() {
    let stack = Stack::start(fake_config()).await;
    let replica = stack.replica(&[]).await;
    assert_eq!(replica.metrics.durable_commits(), Some(false));
}

/// The gauge also reaches `/metrics` (Prometheus names) with the warning in the log.
#[tokio::test]
async fn the_durability_warning_names_the_risk() {
    let stack = Stack::start(fake_config()).await;
    let (p, _addr) = stack.replica_process(&[]).await;
    let log = p.log();
    assert!(
        log.contains("can lose a rotated token pair") && log.contains("appendonly is off"),
        "{log}"
    );
}

/// An outage of Snyk's token endpoint inside the margin (503s with Retry-After) leaves callers
/// with the stored token; once it ends, the keep-alive or the next caller refreshes.
#[tokio::test]
async fn keepalive_refreshes_survive_a_snyk_outage() {
    let stack = Stack::start(refresh_tokens_living(Duration::from_secs(6))).await;
    let replica = stack
        .replica(&[("TOKEN_KEEPALIVE_INTERVAL_SECONDS", "1")])
        .await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    stack.fake.inject(Fault::TokenErrors {
        status: 503,
        count: 1000,
        retry_after: Some(1),
    });
    // Due at 3 s; the sweeper fails for a while, the install stays ACTIVE.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(
        install_status(&mut c, &install.install_id).await.status(),
        pb::InstallStatus::Active
    );
    assert_eq!(stack.fake.stats().successful_refreshes, 0);
    stack.fake.clear_faults();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let stats = stack.fake.stats();
    assert_eq!(
        (stats.successful_refreshes, stats.spent_refresh_token_reuses),
        (1, 0),
        "refreshed by the sweeper once Snyk was back: {stats:?}"
    );
}
