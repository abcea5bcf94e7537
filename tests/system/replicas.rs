//! One caller, several token-service replicas: `TOKEN_SERVICE_URL` as a comma-separated list.
//! Calls are spread over every replica, a replica that is down is passed over, and one that takes
//! calls without answering them fails one call and is then tried last.

use futures::future::join_all;
use system_tests::*;

/// Tokens handed out by `replica` so far (every `GetAccessToken` that succeeded).
fn served(replica: &Replica) -> u64 {
    let m = replica.metrics.snapshot();
    m.tokens_cached + m.tokens_ahead + m.tokens_after_refresh
}

#[tokio::test]
async fn projects_service_spreads_token_calls_over_the_listed_replicas_and_survives_one_stopping() {
    // Hour-long tokens: every listing asks token-service once and nothing refreshes.
    let stack = Stack::start(hour_long_tokens()).await;
    let mut replicas = stack.replicas(3, &[]).await;
    let install = stack.install(&mut client(&replicas[0]).await).await;
    let list = replicas
        .iter()
        .map(|r| format!("http://{}", r.addr))
        .collect::<Vec<_>>()
        .join(",");
    let projects = stack
        .projects(replicas[0].addr, &[("TOKEN_SERVICE_URL", &list)])
        .await;
    let path = format!(
        "/v1/installs/{}/orgs/{}/projects",
        install.install_id, install.orgs[0].id
    );
    let burst = |n: usize| join_all((0..n).map(|_| projects.get(&path)));

    // A burst of listings reaches every replica.
    for res in burst(30).await {
        assert_eq!(res.status(), 200);
    }
    let counts: Vec<u64> = replicas.iter().map(served).collect();
    assert_eq!(counts.iter().sum::<u64>(), 30, "{counts:?}");
    assert!(
        counts.iter().all(|&c| c > 0),
        "every replica served some: {counts:?}"
    );

    // One replica stops; its port stays closed, as a dead replica's is. Listings keep
    // succeeding through the other two.
    let stopped = replicas.pop().unwrap();
    let stopped_addr = stopped.addr;
    stopped.stop().await.unwrap();
    let _closed = hold_port(stopped_addr);
    let before: Vec<u64> = replicas.iter().map(served).collect();
    for res in burst(30).await {
        assert_eq!(res.status(), 200, "a listing failed with one replica down");
    }
    let after: Vec<u64> = replicas.iter().map(served).collect();
    let gained: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(gained.iter().sum::<u64>(), 30, "{gained:?}");
    assert!(
        gained.iter().all(|&g| g > 0),
        "both survivors served: {gained:?}"
    );
}

#[tokio::test]
async fn a_replica_that_takes_calls_but_never_answers_fails_one_listing_then_is_tried_last() {
    let stack = Stack::start(hour_long_tokens()).await;
    let replica = stack.replica(&[]).await;
    let install = stack.install(&mut client(&replica).await).await;
    // Takes connections, never answers: frozen behind a live kernel, or blackholed.
    let silent = test_support::silent_listener().await.unwrap();
    // The silent replica first: the rotation starts there.
    let list = format!("http://{silent},http://{}", replica.addr);
    let projects = stack
        .projects(
            replica.addr,
            &[
                ("TOKEN_SERVICE_URL", &list),
                ("TOKEN_SERVICE_TIMEOUT_MS", "500"),
            ],
        )
        .await;
    let path = format!(
        "/v1/installs/{}/orgs/{}/projects",
        install.install_id, install.orgs[0].id
    );

    // One listing after another, well within the 2 s hold-off. The first token call goes to the
    // silent replica, waits out its deadline and fails: it may have been received, so it is not
    // sent again, and the listing is a 503 saying when to retry. The silent replica is then
    // tried last, so the listings that follow are served by the other one, not one in two
    // failing.
    let first = projects.get(&path).await;
    assert_eq!(first.status(), 503);
    assert_eq!(first.headers()["retry-after"], "2");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(projects.get(&path).await.status().as_u16());
    }
    assert_eq!(statuses, [200; 6]);
    assert_eq!(served(&replica), 6);
}
