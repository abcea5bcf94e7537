//! What token-service keeps in Redis: nothing in clear, unreadable records fail only their
//! install, keys rotate, installs are listed and deleted, and the hot path reads the cache.

use super::*;

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
