//! The per-token rate limit of `/rest/*` (`Config::rate_limit_per_minute`,
//! `FAKE_SNYK_RATE_LIMIT_PER_MINUTE`, `Fault::RateLimitPerMinute`): 429 with `Retry-After` past
//! it, as Snyk answers, counted in `Stats::rate_limited`. The body's schema is checked in
//! `openapi.rs`; the window's arithmetic in the crate's unit tests.

use fake_snyk::{Config, Fault, Stats};
use reqwest::{Response, StatusCode};

use crate::helpers::{TestApp, VERSION, assert_rest_error, config, spawn, spawn_with};

async fn limited_to(per_minute: u32) -> TestApp {
    spawn_with(Config {
        rate_limit_per_minute: per_minute,
        ..config()
    })
    .await
}

async fn orgs(app: &TestApp, token: &str) -> Response {
    app.rest(&format!("/orgs?version={VERSION}"), token).await
}

/// `GET /rest/orgs` with `token`, which must pass.
async fn orgs_ok(app: &TestApp, token: &str) {
    let response = orgs(app, token).await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// The statuses of `n` concurrent `GET /rest/orgs` with `token`.
async fn concurrent_orgs(app: &TestApp, token: &str, n: usize) -> Vec<StatusCode> {
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..n {
        let url = format!("{}/rest/orgs?version={VERSION}", app.base);
        let request = app.client.get(url).bearer_auth(token);
        requests.spawn(async move { request.send().await.unwrap().status() });
    }
    requests.join_all().await
}

/// Asserts the limit's 429 and returns its `Retry-After` in seconds.
pub async fn assert_rate_limited(response: Response) -> u64 {
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in whole seconds");
    assert!(
        (1..=60).contains(&retry_after),
        "Retry-After {retry_after} is not within the minute"
    );
    let body = assert_rest_error(response, 429).await;
    assert_eq!(body["errors"][0]["code"], "too_many_requests", "{body}");
    retry_after
}

#[tokio::test]
async fn requests_under_the_limit_pass_and_the_next_one_is_refused() {
    let app = limited_to(3).await;
    let tokens = app.install().await;
    let org = app.org_id("Demo Org");

    // Every REST endpoint draws on the same token's window.
    for path in [
        format!("/self?version={VERSION}"),
        format!("/orgs?version={VERSION}"),
        format!("/orgs/{org}/projects?version={VERSION}"),
    ] {
        app.rest_json(&path, &tokens.access_token).await;
    }
    assert_rate_limited(orgs(&app, &tokens.access_token).await).await;

    let stats = app.fake.stats();
    assert_eq!(stats.rate_limited, 1);
    assert_eq!(stats.rest_calls[&200], 3);
    assert_eq!(stats.rest_calls[&429], 1);
}

#[tokio::test]
async fn another_token_is_not_limited() {
    let app = limited_to(2).await;
    let first = app.install().await;
    let second = app.install().await;
    for _ in 0..2 {
        orgs_ok(&app, &first.access_token).await;
    }
    assert_rate_limited(orgs(&app, &first.access_token).await).await;

    orgs_ok(&app, &second.access_token).await;
    // A refreshed access token is another token, with a window of its own.
    let refreshed = app.refresh_ok(&first.refresh_token).await;
    orgs_ok(&app, &refreshed.access_token).await;
    assert_eq!(app.fake.stats().rate_limited, 1);
}

#[tokio::test]
async fn the_counter_counts_each_refusal_and_is_served_over_http() {
    let app = limited_to(1).await;
    let tokens = app.install().await;
    orgs_ok(&app, &tokens.access_token).await;
    let mut sent = std::collections::BTreeMap::<u32, u64>::new();
    for _ in 0..3 {
        let retry_after = assert_rate_limited(orgs(&app, &tokens.access_token).await).await;
        *sent.entry(u32::try_from(retry_after).unwrap()).or_default() += 1;
    }
    // An injected 429 is not the limit's.
    app.fake.inject(Fault::RestErrors {
        status: 429,
        count: 1,
        retry_after: Some(5),
    });
    assert_rest_error(orgs(&app, &tokens.access_token).await, 429).await;

    let served: Stats = app.get("/_fake/stats").await.json().await.unwrap();
    assert_eq!(served.rate_limited, 3);
    assert_eq!(served.rest_calls[&429], 4);
    // Each refusal's Retry-After, counted by value (the injected one's 5 s is not among them).
    assert_eq!(served.rate_limited_retry_after, sent);
    assert_eq!(served, app.fake.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_get_exactly_the_limit() {
    let app = limited_to(5).await;
    let tokens = app.install().await;
    let statuses = concurrent_orgs(&app, &tokens.access_token, 20).await;
    let count = |wanted: StatusCode| statuses.iter().filter(|s| **s == wanted).count();
    let (passed, refused) = (count(StatusCode::OK), count(StatusCode::TOO_MANY_REQUESTS));
    assert_eq!((passed, refused), (5, 15));
    assert_eq!(app.fake.stats().rate_limited, 15);
}

#[tokio::test]
async fn only_authenticated_rest_requests_are_limited() {
    let app = limited_to(1).await;
    let tokens = app.install().await;
    orgs_ok(&app, &tokens.access_token).await;
    // The OAuth token endpoint is not a REST route: refreshes go on.
    let mut refresh_token = tokens.refresh_token.clone();
    for _ in 0..3 {
        refresh_token = app.refresh_ok(&refresh_token).await.refresh_token;
    }
    // A token the fake does not know is a 401, whatever the limit.
    for _ in 0..3 {
        assert_rest_error(orgs(&app, "not-a-token").await, 401).await;
    }
    assert_eq!(app.fake.stats().rate_limited, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn there_is_no_limit_by_default() {
    assert_eq!(config().rate_limit_per_minute, 0);
    let app = spawn().await;
    let tokens = app.install().await;
    let statuses = concurrent_orgs(&app, &tokens.access_token, 200).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    let stats = app.fake.stats();
    assert_eq!(stats.rate_limited, 0);
    assert_eq!(stats.rest_calls[&200], 200);
}

#[tokio::test]
async fn the_limit_is_set_and_lifted_at_run_time_over_http() {
    let app = spawn().await;
    let tokens = app.install().await;
    let faults = format!("{}/_fake/faults", app.base);
    let set = |per_minute: u32| {
        app.client
            .post(&faults)
            .json(&serde_json::json!({ "rate_limit_per_minute": per_minute }))
            .send()
    };

    assert_eq!(set(2).await.unwrap().status(), StatusCode::NO_CONTENT);
    for _ in 0..2 {
        orgs_ok(&app, &tokens.access_token).await;
    }
    assert_rate_limited(orgs(&app, &tokens.access_token).await).await;

    // Zero lifts it.
    assert_eq!(set(0).await.unwrap().status(), StatusCode::NO_CONTENT);
    orgs_ok(&app, &tokens.access_token).await;

    // Clearing the faults lifts it too, as it lifts a configured token latency.
    assert_eq!(set(1).await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_rate_limited(orgs(&app, &tokens.access_token).await).await;
    let cleared = app.client.delete(&faults).send().await.unwrap();
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    orgs_ok(&app, &tokens.access_token).await;
    assert_eq!(app.fake.stats().rate_limited, 2);
}
