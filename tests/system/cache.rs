//! The grant cache (docs/design.md, "The grant cache"): hits are counted, a change on one
//! replica reaches every other replica's cache, a stale entry costs a caller one 401 and a
//! conditional ForceRefresh that finds the newer token without a refresh, and valid tokens are
//! served through a Redis outage.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use snykapps_proto::token_v1 as pb;
use system_tests::*;
use token_service::cache::CacheStats;
use tonic::Code;

/// The access token `replica` hands out for `id` once it differs from `old` (a change reached
/// its cache), or the one it still hands out after 2 s.
async fn token_after_change(c: &mut Client, id: &str, old: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let t = access_token(c, id).await;
        if t != old || Instant::now() > deadline {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn hits_come_from_memory_and_a_change_elsewhere_reaches_every_cache() {
    let stack = Stack::start(hour_long_tokens()).await;
    let (a, b) = (stack.replica(&[]).await, stack.replica(&[]).await);
    a.until_cache_tracked().await;
    b.until_cache_tracked().await;
    let (mut ca, mut cb) = (client(&a).await, client(&b).await);
    let install = stack.install(&mut ca).await;
    let id = &install.install_id;
    let org = &install.orgs[0].id;

    // Warm B's cache; then B answers by install and by org from it (no Redis command at all:
    // `token_service::the_hot_path_sends_no_redis_command_by_install_or_by_org`).
    let t1 = access_token(&mut cb, id).await;
    cb.get_access_token(by_org(org)).await.unwrap();
    let hits_before = b.cache.stats().hits;
    for _ in 0..100 {
        assert_eq!(access_token(&mut cb, id).await, t1);
        let by_org = cb.get_access_token(by_org(org)).await.unwrap().into_inner();
        assert_eq!(by_org.access_token, t1);
    }
    assert!(
        b.cache.stats().hits - hits_before >= 200,
        "{:?}",
        b.cache.stats()
    );

    // A refreshes: B hands out the new token, not its cached one.
    let t2 = forced_token(&mut ca, id, &t1).await;
    assert_ne!(t2, t1);
    assert_eq!(
        token_after_change(&mut cb, id, &t1).await,
        t2,
        "B's entry was dropped"
    );

    // A deletes: B knows at once.
    ca.delete_install(pb::DeleteInstallRequest {
        install_id: id.clone(),
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match cb.get_access_token(by_install(id)).await {
            Err(e) if e.code() == Code::NotFound => break,
            other => assert!(
                Instant::now() < deadline,
                "B still serves a deleted install: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        cb.get_access_token(by_org(org)).await.unwrap_err().code(),
        Code::NotFound,
        "the org's cached install list was dropped too"
    );
    assert_eq!(stack.fake.stats().spent_refresh_token_reuses, 0);
}

/// The worst a stale entry does: B's cache still holds T1 after A replaced it (its invalidation
/// not yet arrived: here, B's tracking is cut off on purpose and B is told it is tracked). The
/// caller gets T1, Snyk rejects it, the caller's ForceRefresh(T1) finds T2 in Redis and hands it
/// out without a second refresh; one refresh at Snyk in all, no token presented twice.
#[tokio::test]
async fn a_stale_entry_costs_one_rejected_call_and_no_refresh() {
    let stack = Stack::start(hour_long_tokens()).await;
    let a = stack.replica(&[]).await;
    // B without a tracking connection: nothing will ever invalidate its entries.
    let b = stack.replica(&[("TOKEN_CACHE_TRACKING", "false")]).await;
    b.cache.tracking_started(u64::MAX);
    let (mut ca, mut cb) = (client(&a).await, client(&b).await);
    let install = stack.install(&mut ca).await;
    let id = &install.install_id;
    let t1 = access_token(&mut cb, id).await; // cached in B

    let t2 = forced_token(&mut ca, id, &t1).await;
    assert_ne!(t2, t1);
    assert_eq!(
        access_token(&mut cb, id).await,
        t1,
        "B's stale entry answers"
    );
    // Snyk (and the fake) keep a replaced access token valid until it expires, so usually the
    // stale token simply works; the caller that does get a 401 for it asks for a ForceRefresh:

    let refreshes = stack.refresh_calls();
    let got = cb.force_refresh(force(id, &t1)).await.unwrap().into_inner();
    assert_eq!(got.access_token, t2, "the newer token, from Redis");
    assert_eq!(stack.refresh_calls(), refreshes, "no refresh for it");
    assert_eq!(
        access_token(&mut cb, id).await,
        t2,
        "and B's entry is the newer one now"
    );
    assert!(stack.token_works(&t2).await);
    let stats = stack.fake.stats();
    assert_eq!(
        (stack.refresh_calls(), stats.spent_refresh_token_reuses),
        (1, 0),
        "{stats:?}"
    );
}

/// Redis stopped for 10 s under load: installs whose cached token is valid see no error at all;
/// a refresh that falls due meanwhile is UNAVAILABLE; once Redis is back the refresh goes
/// through (exactly once) and the cache is trusted again.
#[tokio::test]
async fn valid_tokens_are_served_through_a_redis_outage() {
    let mut stack = Stack::start(hour_long_tokens()).await;
    let redis = RestartableRedis::replace(&mut stack);
    let on_tcp: &[(&str, &str)] = &[("REDIS_URL", &redis.url), ("REDIS_TIMEOUT_MS", "500")];
    let replicas = [stack.replica(on_tcp).await, stack.replica(on_tcp).await];
    for r in &replicas {
        r.until_cache_tracked().await;
    }
    let mut c = client(&replicas[0]).await;
    let mut installs = Vec::new();
    for _ in 0..3 {
        let install = stack.install(&mut c).await;
        installs.push((install.install_id, install.orgs[0].id.clone()));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Arc<std::sync::Mutex<HashMap<String, u64>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..8 {
        let mut c = client(&replicas[w % 2]).await;
        let (stop, outcomes, installs) = (stop.clone(), outcomes.clone(), installs.clone());
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let (id, org) = &installs[i % installs.len()];
                let req = if i % 2 == 0 {
                    by_install(id)
                } else {
                    by_org(org)
                };
                let key = match c.get_access_token(req).await {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => format!("{:?}: {}", e.code(), e.message()),
                };
                *outcomes.lock().unwrap().entry(key).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.redis.kill();
    let down = Instant::now();
    // A refresh that falls due during the outage cannot be done (nowhere to store it).
    let (id0, _) = &installs[0];
    let t0 = access_token(&mut c, id0).await;
    let err = c.force_refresh(force(id0, &t0)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(down.elapsed())).await;
    redis.restart(&mut stack);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }

    let outcomes = outcomes.lock().unwrap().clone();
    assert_eq!(
        outcomes.keys().collect::<Vec<_>>(),
        vec!["ok"],
        "no caller error through the outage: {outcomes:?}"
    );
    assert!(outcomes["ok"] > 1_000, "the load went on: {outcomes:?}");
    let served: u64 = replicas
        .iter()
        .map(|r| r.cache.stats().served_in_outage)
        .sum();
    assert!(
        served > 0,
        "the cache stood in for Redis: {:?}",
        stats(&replicas)
    );

    // Redis is back: the refresh goes through, once, and both caches track again.
    for r in &replicas {
        r.until_cache_tracked().await;
    }
    let t1 = forced_token(&mut c, id0, &t0).await;
    assert_ne!(t1, t0);
    assert!(stack.token_works(&t1).await);
    let mut other = client(&replicas[1]).await;
    assert_eq!(token_after_change(&mut other, id0, &t0).await, t1);
    let fake = stack.fake.stats();
    assert_eq!(
        (stack.refresh_calls(), fake.spent_refresh_token_reuses),
        (1, 0),
        "{fake:?}"
    );
}

fn stats(replicas: &[Replica]) -> Vec<CacheStats> {
    replicas.iter().map(|r| r.cache.stats()).collect()
}

/// The cache never holds an install's refresh token, and a ForceRefresh by org through a cached
/// org list refreshes the org's install.
#[tokio::test]
async fn a_forced_refresh_by_org_goes_through_the_cached_org_list() {
    let stack = Stack::start(hour_long_tokens()).await;
    let a = stack.replica(&[]).await;
    a.until_cache_tracked().await;
    let mut c = client(&a).await;
    let install = stack.install(&mut c).await;
    let org = &install.orgs[0].id;
    let t1 = c
        .get_access_token(by_org(org))
        .await
        .unwrap()
        .into_inner()
        .access_token;
    let got = c
        .force_refresh(pb::ForceRefreshRequest {
            target: Some(pb::force_refresh_request::Target::OrgId(org.clone())),
            rejected_access_token: t1.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(got.access_token, t1);
    assert_eq!(
        c.get_access_token(by_org(org))
            .await
            .unwrap()
            .into_inner()
            .access_token,
        got.access_token
    );
    assert_eq!(stack.refresh_calls(), 1);
}
