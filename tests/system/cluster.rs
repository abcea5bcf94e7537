//! token-service on a local three-master Redis Cluster: the refresh storm still redeems once.

use std::collections::HashSet;

use futures::future::join_all;
use snykapps_proto::token_v1 as pb;
use system_tests::*;
use test_support::RedisCluster;

#[tokio::test]
async fn refresh_storm_over_three_replicas_on_redis_cluster() {
    let cluster = RedisCluster::start_with_acl(grants_redis().acl).expect("redis cluster starts");
    let urls = cluster.urls_as(TOKEN_SERVICE_USER).join(",");
    let stack = Stack::start(fake_config()).await;
    let on_cluster: &[(&str, &str)] = &[("REDIS_CLUSTER_URLS", &urls)];
    let replicas = stack.replicas(3, on_cluster).await;
    let mut clients = Vec::new();
    for r in &replicas {
        clients.push(client(r).await);
    }
    // Several installs, so their keys land on different slots and masters.
    let mut installs = Vec::new();
    for _ in 0..3 {
        installs.push(stack.install(&mut clients[0]).await.install_id);
    }
    until_refresh_due().await;

    let calls = (0..600).map(|i| {
        let mut c = clients[i % 3].clone();
        let id = installs[i % installs.len()].clone();
        async move {
            (
                id.clone(),
                c.get_access_token(by_install(&id))
                    .await
                    .map(|r| r.into_inner().access_token),
            )
        }
    });
    let results = join_all(calls).await;

    let mut per_install: std::collections::HashMap<String, HashSet<String>> = Default::default();
    for (id, r) in results {
        per_install
            .entry(id)
            .or_default()
            .insert(r.expect("every caller gets a token"));
    }
    assert!(
        per_install.values().all(|t| t.len() == 1),
        "one new token per install: {per_install:?}"
    );
    let stats = stack.fake.stats();
    assert_eq!(
        stats.successful_refreshes, 3,
        "exactly one refresh per install: {stats:?}"
    );
    assert_eq!(stats.spent_refresh_token_reuses, 0);

    // The indexes work across slots too.
    let listed = clients[1]
        .list_installs(pb::ListInstallsRequest {
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.installs.len(), 3);
    clients[2]
        .delete_install(pb::DeleteInstallRequest {
            install_id: installs[0].clone(),
        })
        .await
        .unwrap();
    let err = clients[0]
        .get_install(pb::GetInstallRequest {
            install_id: installs[0].clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}
