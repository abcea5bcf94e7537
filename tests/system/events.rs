//! Lifecycle events (docs/design.md, "Events"): every change of an install is
//! appended to `snykapps:events` by the script that makes it, and `WatchInstallEvents` replays
//! and follows them with no gap and no duplicate.

use std::time::{Duration, Instant};

use snykapps_proto::token_v1::{self as pb, InstallEventKind as K};
use system_tests::*;
use test_support::RedisCluster;
use token_service::{
    grant::{InstallId, ReauthReason, Status, now_millis},
    store::{Deleted, Fenced, SendingMark, Settled},
};
use tonic::Code;

/// install -> refresh -> needs_reauth -> reconnect -> delete, live and replayed, in order, with
/// their reasons, orgs and generations, and no token in any of them.
#[tokio::test]
async fn an_install_s_life_arrives_in_order_live_and_replayed() {
    let stack = Stack::start(hour_long_tokens()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let mut live = watch_events(&mut c, "").await.unwrap();

    let install = stack.install(&mut c).await;
    let id = install.install_id.clone();
    let t0 = access_token(&mut c, &id).await;
    let t1 = forced_token(&mut c, &id, &t0).await;
    stack.revoke_at_snyk(&t1).await;
    let err = c.force_refresh(force(&id, &t1)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    reconnect(&stack, &mut c, &id, None).await.unwrap();
    let t2 = access_token(&mut c, &id).await;
    c.delete_install(pb::DeleteInstallRequest {
        install_id: id.clone(),
    })
    .await
    .unwrap();

    let events = next_events(&mut live, 5).await;
    assert_eq!(
        kinds(&events),
        [
            K::Installed,
            K::Refreshed,
            K::NeedsReauth,
            K::Reauthorized,
            K::Deleted
        ]
    );
    assert!(events.iter().all(|e| e.install_id == id), "{events:?}");
    assert_eq!(events[2].reason, "refresh_token_rejected");
    let org = install.orgs[0].id.clone();
    assert_eq!(events[0].org_ids, vec![org.clone()]);
    assert_eq!(events[3].org_ids, vec![org]);
    assert!(events[1].org_ids.is_empty() && events[1].reason.is_empty());
    let gens: Vec<u64> = events.iter().map(|e| e.generation).collect();
    assert_eq!(gens[0], 1);
    assert!(gens[..4].windows(2).all(|w| w[0] < w[1]), "{gens:?}");
    assert_eq!(gens[4], 0, "a deletion has no generation");
    assert!(events.iter().all(|e| e.at.is_some()));
    let printed = format!("{events:?}");
    for token in [&t0, &t1, &t2] {
        assert!(
            !printed.contains(token.as_str()),
            "an event carries a token"
        );
    }
    let stored: Vec<String> = stored_events(&stack)
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(ids, stored, "the watch delivers exactly the stream");

    // "0" replays every retained event, then follows.
    let mut replay = watch_events(&mut c, "0").await.unwrap();
    let again = next_events(&mut replay, 5).await;
    assert_eq!(again, events);
}

/// A consumer that disconnects mid-way and resumes from its last id sees every event exactly
/// once: the ones appended while it was away are replayed, then live ones follow with no
/// duplicate at the switch.
#[tokio::test]
async fn a_consumer_resuming_from_its_last_id_sees_each_event_once() {
    let stack = Stack::start(hour_long_tokens()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let id = install.install_id.clone();
    let t0 = access_token(&mut c, &id).await;
    let t1 = forced_token(&mut c, &id, &t0).await;

    let mut seen = Vec::new();
    {
        let mut first = watch_events(&mut c, "0").await.unwrap();
        seen.extend(next_events(&mut first, 2).await);
        // The consumer goes away.
    }
    let last = seen.last().unwrap().event_id.clone();
    // Changes while it is away.
    let t2 = forced_token(&mut c, &id, &t1).await;
    c.force_refresh(force(&id, &t2)).await.unwrap();
    let mut resumed = watch_events(&mut c, &last).await.unwrap();
    seen.extend(next_events(&mut resumed, 2).await);
    // A live change after the replay: the next event is that one, nothing twice.
    let second = stack.install(&mut c).await;
    seen.extend(next_events(&mut resumed, 1).await);

    assert_eq!(
        kinds(&seen),
        [
            K::Installed,
            K::Refreshed,
            K::Refreshed,
            K::Refreshed,
            K::Installed
        ]
    );
    assert_eq!(seen[4].install_id, second.install_id);
    let ids: Vec<String> = seen.iter().map(|e| e.event_id.clone()).collect();
    let stored: Vec<String> = stored_events(&stack)
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(ids, stored, "every event once, in order");
}

/// An event exists only for a change that happened: writes fenced out on the real store (a
/// settle with a mark that is not its own, a verdict over an old generation or without the
/// lease, a delete without the lease or over a moved grant) append nothing, and the same writes
/// when their fence passes append exactly one event each.
#[tokio::test]
async fn a_fenced_out_change_writes_no_event() {
    let stack = Stack::start(hour_long_tokens()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let id = InstallId::parse(&install.install_id).unwrap();
    let store = stack.store(&[]).await;
    let count = || async { stored_events(&stack).await.len() };
    assert_eq!(count().await, 1, "installed");

    let v = store.load(&id).await.unwrap().unwrap();
    let mut dead = v.grant.clone();
    dead.status = Status::NeedsReauth(ReauthReason::RefreshInDoubt);

    // A stale settle: the mark is not its own (nobody is sending).
    let stranger = SendingMark {
        replica: "stale-replica".into(),
        flight: "stale-flight".into(),
        at: now_millis(),
    };
    assert_eq!(
        store
            .settle(&stranger, v.generation, &v.grant)
            .await
            .unwrap(),
        Settled::Orphaned
    );
    assert_eq!(count().await, 1, "a fenced-out settle wrote an event");

    // A verdict without the lease, then over an old generation.
    assert_eq!(
        store
            .write_verdict(v.generation, &dead, "not-the-holder")
            .await
            .unwrap(),
        Fenced::NotLeaseHolder
    );
    assert!(
        store
            .try_lease(&id, "holder", Duration::from_secs(5))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .write_verdict(v.generation - 1, &dead, "holder")
            .await
            .unwrap(),
        Fenced::Stale
    );
    assert_eq!(count().await, 1, "a fenced-out verdict wrote an event");

    // A delete without the lease, and one over a generation that moved.
    assert_eq!(
        store
            .delete(&v.grant, v.generation, "not-the-holder")
            .await
            .unwrap(),
        Deleted::NotLeaseHolder
    );
    assert_eq!(
        store
            .delete(&v.grant, v.generation + 1, "holder")
            .await
            .unwrap(),
        Deleted::Moved
    );
    // Releasing a lease is no lifecycle change either.
    store.release_lease(&id, "holder").await.unwrap();
    assert_eq!(
        count().await,
        1,
        "a fenced-out delete or a release wrote an event"
    );

    // The same writes with their fences passing: one event each.
    assert!(
        store
            .try_lease(&id, "holder", Duration::from_secs(5))
            .await
            .unwrap()
    );
    let Fenced::Written(g) = store
        .write_verdict(v.generation, &dead, "holder")
        .await
        .unwrap()
    else {
        panic!("the verdict should land");
    };
    assert_eq!(count().await, 2);
    assert_eq!(
        store.delete(&dead, g, "holder").await.unwrap(),
        Deleted::Done
    );
    let stored = stored_events(&stack).await;
    let kinds: Vec<&str> = stored.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(kinds, ["installed", "in_doubt", "deleted"]);
}

/// The stream is trimmed to about TOKEN_EVENTS_MAXLEN; a watcher whose next events were trimmed
/// gets OUT_OF_RANGE (it must reconcile), "0" still replays what is retained, and a malformed
/// or foreign id is refused.
#[tokio::test]
async fn trimmed_history_is_out_of_range_and_bad_ids_are_refused() {
    let stack = Stack::start(hour_long_tokens()).await;
    // Small stream nodes, so the approximate trim (whole nodes) bites at a small length.
    let mut r = stack.redis_conn().await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("stream-node-max-entries")
        .arg(2)
        .query_async(&mut r)
        .await
        .unwrap();
    let replica = stack.replica(&[("TOKEN_EVENTS_MAXLEN", "2")]).await;
    let mut c = client(&replica).await;
    let first = stack.install(&mut c).await;
    let mut first_watch = watch_events(&mut c, "0").await.unwrap();
    let oldest = next_events(&mut first_watch, 1).await.remove(0);
    assert_eq!(oldest.install_id, first.install_id);
    for _ in 0..7 {
        stack.install(&mut c).await;
    }
    let retained = stored_events(&stack).await;
    assert!(
        (2..=4).contains(&retained.len()),
        "trimmed to about 2: {}",
        retained.len()
    );

    let err = watch_events(&mut c, &oldest.event_id).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(err.message().contains("trimmed"), "{err:?}");

    let mut all = watch_events(&mut c, "0").await.unwrap();
    let got = next_events(&mut all, retained.len()).await;
    let ids: Vec<String> = got.iter().map(|e| e.event_id.clone()).collect();
    let want: Vec<String> = retained.into_iter().map(|e| e.0).collect();
    assert_eq!(ids, want);

    for bad in ["latest", "1-", "-1", "1-2-3", "x"] {
        let err = watch_events(&mut c, bad).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}: {err:?}");
        assert!(err.message().contains("after_event_id"), "{err:?}");
    }
    let future = format!("{}-0", now_millis() + 86_400_000);
    let err = watch_events(&mut c, &future).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
}

/// A watcher holds one Redis connection of its own while it waits; when its client goes away,
/// the connection is closed.
#[tokio::test]
async fn a_watcher_whose_client_goes_away_releases_its_connection() {
    let stack = Stack::start(hour_long_tokens()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let r = stack.redis_conn().await;
    let blocked = || {
        let mut r = r.clone();
        async move {
            let list: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query_async(&mut r)
                .await
                .unwrap();
            list.lines().filter(|l| l.contains("cmd=xread")).count()
        }
    };
    let until = |want: usize| {
        let blocked = &blocked;
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let n = blocked().await;
                if n == want {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{n} watcher connections, expected {want}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let watch = watch_events(&mut c, "").await.unwrap();
    until(1).await;
    drop(watch);
    until(0).await;
}

/// WatchInstallEvents is granted like any other RPC.
#[tokio::test]
async fn watching_needs_its_own_grant() {
    let stack = Stack::start(hour_long_tokens()).await;
    const READER: &str = "reader-key-0123456789abcdef0123";
    let keys = format!("ops={CALLER_KEY},reader={READER}");
    let replica = stack
        .replica(&[
            ("TOKEN_SERVICE_CLIENT_KEYS", &keys),
            (
                "TOKEN_SERVICE_CALLER_RPCS",
                "ops=*,reader=GetInstall+ListInstalls",
            ),
        ])
        .await;
    let mut reader = client_with_key(replica.addr, READER).await;
    let err = watch_events(&mut reader, "0").await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("WatchInstallEvents"), "{err:?}");
    let mut ops = client(&replica).await;
    assert!(watch_events(&mut ops, "0").await.is_ok());
}

/// On Redis Cluster no event can be written in the script that makes the change (the stream
/// and an install's keys live on different slots): no events, and a clear FAILED_PRECONDITION.
#[tokio::test]
async fn on_redis_cluster_watching_is_a_failed_precondition() {
    let cluster = RedisCluster::start_with_acl(grants_redis().acl).expect("redis cluster starts");
    let urls = cluster.urls_as(TOKEN_SERVICE_USER).join(",");
    let stack = Stack::start(hour_long_tokens()).await;
    let replica = stack.replica(&[("REDIS_CLUSTER_URLS", &urls)]).await;
    let mut c = client(&replica).await;
    stack.install(&mut c).await;
    let err = watch_events(&mut c, "0").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("Redis Cluster"), "{err:?}");
}

/// A keep-alive refresh that Snyk does not redeem (503 with Retry-After) changes no status: its
/// marks are cleared with a `keepalive_failed` event, and the refresh once Snyk is back is a
/// `refreshed` one. A caller's refresh failing the same way is no event.
#[tokio::test]
async fn a_keepalive_refresh_snyk_did_not_redeem_is_a_keepalive_failed_event() {
    let mut config = fake_config();
    config.access_token_ttl = Duration::from_secs(3600);
    config.refresh_token_ttl = Duration::from_secs(6);
    let stack = Stack::start(config).await;
    let replica = stack
        .replica(&[
            ("TOKEN_KEEPALIVE_INTERVAL_SECONDS", "1"),
            ("SNYK_TOKEN_RETRIES", "0"),
        ])
        .await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let mut watch = watch_events(&mut c, "0").await.unwrap();
    assert_eq!(kinds(&next_events(&mut watch, 1).await), [K::Installed]);
    stack.fake.inject(fake_snyk::Fault::TokenErrors {
        status: 503,
        count: 1000,
        retry_after: Some(1),
    });
    // A caller's forced refresh fails the same way: UNAVAILABLE, and no event.
    let t0 = access_token(&mut c, &install.install_id).await;
    let err = c
        .force_refresh(force(&install.install_id, &t0))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    // Due 3 s after the install; the sweeper's attempt fails.
    let failed = next_events(&mut watch, 1).await.remove(0);
    assert_eq!(failed.kind(), K::KeepaliveFailed, "{failed:?}");
    assert_eq!(failed.reason, "snyk_unavailable");
    assert_eq!(failed.install_id, install.install_id);
    assert_eq!(
        install_status(&mut c, &install.install_id).await.status(),
        pb::InstallStatus::Active
    );
    stack.fake.clear_faults();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let e = next_events(&mut watch, 1).await.remove(0);
        if e.kind() == K::Refreshed {
            break;
        }
        assert_eq!(e.kind(), K::KeepaliveFailed, "{e:?}");
        assert!(Instant::now() < deadline, "no refresh after the outage");
    }
}
