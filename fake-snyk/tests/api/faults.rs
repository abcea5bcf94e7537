//! Every injected fault, and that faults are applied in order and can be cleared.

use std::time::{Duration, Instant};

use fake_snyk::Fault;
use reqwest::StatusCode;

use crate::helpers::{
    CLIENT_ID, CLIENT_SECRET, VERSION, assert_oauth_error, assert_rest_error, spawn,
};

#[tokio::test]
async fn token_errors_answer_in_order_without_touching_state() {
    let app = spawn().await;
    let tokens = app.install().await;
    app.fake.inject(Fault::TokenErrors {
        status: 500,
        count: 2,
        retry_after: None,
    });
    app.fake.inject(Fault::TokenErrors {
        status: 429,
        count: 1,
        retry_after: Some(7),
    });

    let first = app.refresh(&tokens.refresh_token).await;
    let second = app.refresh(&tokens.refresh_token).await;
    let third = app.refresh(&tokens.refresh_token).await;

    assert!(first.headers().get("retry-after").is_none());
    assert_oauth_error(first, StatusCode::INTERNAL_SERVER_ERROR, "server_error").await;
    assert_oauth_error(second, StatusCode::INTERNAL_SERVER_ERROR, "server_error").await;
    assert_eq!(third.headers()["retry-after"], "7");
    assert_oauth_error(
        third,
        StatusCode::TOO_MANY_REQUESTS,
        "temporarily_unavailable",
    )
    .await;
    // The same refresh token still works: the errors changed nothing.
    app.refresh_ok(&tokens.refresh_token).await;
    let stats = app.fake.stats();
    assert_eq!(stats.token_calls["refresh_token"], 4);
    assert_eq!(stats.successful_refreshes, 1);
    assert_eq!(stats.spent_refresh_token_reuses, 0);
}

#[tokio::test]
async fn rest_errors_answer_json_api_documents_with_retry_after() {
    let app = spawn().await;
    let tokens = app.install().await;
    app.fake.inject(Fault::RestErrors {
        status: 503,
        count: 2,
        retry_after: Some(2),
    });
    let url = format!("/orgs?version={VERSION}");

    for _ in 0..2 {
        let response = app.rest(&url, &tokens.access_token).await;
        assert_eq!(response.headers()["retry-after"], "2");
        assert_rest_error(response, 503).await;
    }
    assert_eq!(
        app.rest(&url, &tokens.access_token).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.fake.stats().rest_calls[&503], 2);
}

#[tokio::test]
async fn token_latency_delays_answers_until_cleared() {
    let app = spawn().await;
    let tokens = app.install().await;
    app.fake
        .inject(Fault::TokenLatency(Duration::from_millis(300)));

    let started = Instant::now();
    let rotated = app.refresh_ok(&tokens.refresh_token).await;
    assert!(started.elapsed() >= Duration::from_millis(300));

    app.fake.inject(Fault::TokenLatency(Duration::ZERO));
    let started = Instant::now();
    app.refresh_ok(&rotated.refresh_token).await;
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn a_client_that_gives_up_during_the_latency_leaves_the_token_unspent() {
    let app = spawn().await;
    let tokens = app.install().await;
    app.fake
        .inject(Fault::TokenLatency(Duration::from_millis(800)));

    let result = app
        .client
        .post(format!("{}/oauth2/token", app.base))
        .timeout(Duration::from_millis(150))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens.refresh_token.as_str()),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .send()
        .await;
    assert!(result.unwrap_err().is_timeout());
    // Well past the latency: had the handler carried on, the rotation would have happened.
    tokio::time::sleep(Duration::from_millis(1000)).await;

    assert_eq!(app.fake.stats().successful_refreshes, 0);
    app.fake.clear_faults();
    app.refresh_ok(&tokens.refresh_token).await;
}

#[tokio::test]
async fn a_client_that_gives_up_during_the_answer_delay_has_spent_its_token() {
    let app = spawn().await;
    let tokens = app.install().await;
    app.fake
        .inject(Fault::TokenAnswerDelay(Duration::from_millis(800)));

    let result = app
        .client
        .post(format!("{}/oauth2/token", app.base))
        .timeout(Duration::from_millis(150))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens.refresh_token.as_str()),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .send()
        .await;
    assert!(result.unwrap_err().is_timeout());

    // The rotation happened before the wait: the old refresh token is now spent.
    assert_eq!(app.fake.stats().successful_refreshes, 1);
    app.fake.clear_faults();
    let replay = app.refresh(&tokens.refresh_token).await;
    assert_oauth_error(replay, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert_eq!(app.fake.stats().spent_refresh_token_reuses, 1);
}

#[tokio::test]
async fn a_lost_refresh_response_closes_the_connection_after_rotating() {
    let app = spawn().await;
    let tokens = app.install().await;
    app.fake.inject(Fault::LoseRefreshResponses(1));

    let lost = app
        .client
        .post(format!("{}/oauth2/token", app.base))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens.refresh_token.as_str()),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .send()
        .await;

    // No status, no body: the connection closed without an answer.
    let error = lost.unwrap_err();
    assert!(error.status().is_none() && !error.is_timeout(), "{error:?}");
    let stats = app.fake.stats();
    assert_eq!(stats.lost_responses, 1);
    assert_eq!(stats.successful_refreshes, 1);
    assert_eq!(
        stats.token_calls["refresh_token"], 1,
        "the client must not have retried"
    );
    // The rotation was applied: the old token is spent, and presenting it kills the grant.
    let replay = app.refresh(&tokens.refresh_token).await;
    assert_oauth_error(replay, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert_eq!(app.fake.stats().spent_refresh_token_reuses, 1);
    assert_eq!(app.fake.live_refresh_tokens(), 0);

    // Only one response was lost.
    let fresh = app.install().await;
    app.refresh_ok(&fresh.refresh_token).await;
}

#[tokio::test]
async fn access_tokens_expire_after_n_rest_calls() {
    let app = spawn().await;
    let tokens = app.install().await;
    let url = format!("/orgs?version={VERSION}");
    app.fake.inject(Fault::ExpireAccessTokensAfterRestCalls(2));

    // Failed calls do not count.
    assert_rest_error(app.rest("/orgs", &tokens.access_token).await, 400).await;
    assert_eq!(
        app.rest(&url, &tokens.access_token).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.rest(&url, &tokens.access_token).await.status(),
        StatusCode::OK
    );
    assert_rest_error(app.rest(&url, &tokens.access_token).await, 401).await;

    let fresh = app.refresh_ok(&tokens.refresh_token).await;
    assert_eq!(
        app.rest(&url, &fresh.access_token).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.rest(&url, &fresh.access_token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn clear_faults_disarms_everything() {
    let app = spawn().await;
    let tokens = app.install().await;
    app.fake.inject(Fault::TokenErrors {
        status: 500,
        count: 5,
        retry_after: None,
    });
    app.fake.inject(Fault::RestErrors {
        status: 500,
        count: 5,
        retry_after: None,
    });
    app.fake.inject(Fault::LoseRefreshResponses(5));
    app.fake.inject(Fault::ExpireAccessTokensAfterRestCalls(1));
    app.fake.inject(Fault::TokenLatency(Duration::from_secs(5)));

    app.fake.clear_faults();

    let url = format!("/orgs?version={VERSION}");
    assert_eq!(
        app.rest(&url, &tokens.access_token).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.rest(&url, &tokens.access_token).await.status(),
        StatusCode::OK
    );
    let started = Instant::now();
    app.refresh_ok(&tokens.refresh_token).await;
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn redirects_answer_307_with_the_location_without_touching_state() {
    let app = spawn().await;
    let tokens = app.install().await;
    app.fake.inject(Fault::TokenRedirects {
        location: "http://127.0.0.1:9/oauth2/token".into(),
        count: 1,
    });
    app.fake.inject(Fault::RestRedirects {
        location: "http://127.0.0.1:9/rest/orgs".into(),
        count: 1,
    });

    // The helpers' client follows no redirect: we see the 307 itself.
    let redirected = app.refresh(&tokens.refresh_token).await;
    assert_eq!(redirected.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        redirected.headers()["location"],
        "http://127.0.0.1:9/oauth2/token"
    );
    let url = format!("/orgs?version={VERSION}");
    let redirected = app.rest(&url, &tokens.access_token).await;
    assert_eq!(redirected.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        redirected.headers()["location"],
        "http://127.0.0.1:9/rest/orgs"
    );

    // Used up, and nothing was spent: the same refresh token still works.
    assert_eq!(
        app.rest(&url, &tokens.access_token).await.status(),
        StatusCode::OK
    );
    app.refresh_ok(&tokens.refresh_token).await;
    let stats = app.fake.stats();
    assert_eq!(stats.token_calls["refresh_token"], 2);
    assert_eq!(stats.successful_refreshes, 1);
    assert_eq!(stats.rest_calls[&307], 1);
}

#[tokio::test]
async fn org_latency_slows_only_that_orgs_projects_while_requests_in_flight_are_counted() {
    let app = spawn().await;
    let tokens = app.install().await;
    let (slow, fast) = (app.org_id("Big Org"), app.org_id("Demo Org"));
    let latency = Duration::from_millis(500);
    app.fake.inject(Fault::OrgLatency {
        org_id: slow,
        latency,
    });
    let timed = async |org| {
        let started = Instant::now();
        let page = app
            .projects_page(org, &format!("version={VERSION}"), &tokens.access_token)
            .await;
        assert!(!page["data"].as_array().unwrap().is_empty(), "{page}");
        started.elapsed()
    };

    let (slow_took, fast_took) = tokio::join!(timed(slow), timed(fast));

    assert!(slow_took >= latency, "{slow_took:?}");
    assert!(fast_took < latency, "{fast_took:?}");
    assert_eq!(app.fake.stats().rest_in_flight_max, 2, "both at once");
    app.fake.inject(Fault::OrgLatency {
        org_id: slow,
        latency: Duration::ZERO,
    });
    assert!(timed(slow).await < latency, "zero clears it");
    assert_eq!(app.fake.stats().rest_in_flight_max, 2);
}
