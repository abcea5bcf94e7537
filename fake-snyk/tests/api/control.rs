//! The `/_fake/*` control endpoints used by benchmarks and the demo.

use fake_snyk::Stats;
use reqwest::StatusCode;

use crate::helpers::{VERSION, assert_oauth_error, assert_rest_error, spawn};

#[tokio::test]
async fn stats_endpoint_serves_the_same_snapshot() {
    let app = spawn().await;
    let tokens = app.install().await;
    app.refresh_ok(&tokens.refresh_token).await;
    app.rest(&format!("/orgs?version={VERSION}"), "nope").await;

    let response = app.get("/_fake/stats").await;

    assert_eq!(response.status(), StatusCode::OK);
    let served: Stats = response.json().await.unwrap();
    assert_eq!(served, app.fake.stats());
    assert_eq!(served.successful_refreshes, 1);
    assert_eq!(served.rest_calls[&401], 1);
}

#[tokio::test]
async fn faults_can_be_injected_and_cleared_over_http() {
    let app = spawn().await;
    let tokens = app.install().await;
    let faults = format!("{}/_fake/faults", app.base);

    let injected = app
        .client
        .post(&faults)
        .header("content-type", "application/json")
        .body(r#"{"token_errors":{"status":500,"count":2,"retry_after":null}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(injected.status(), StatusCode::NO_CONTENT);
    assert_oauth_error(
        app.refresh(&tokens.refresh_token).await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
    )
    .await;

    let cleared = app.client.delete(&faults).send().await.unwrap();
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    let rotated = app.refresh_ok(&tokens.refresh_token).await;

    let lose = app
        .client
        .post(&faults)
        .json(&serde_json::json!({"lose_refresh_responses": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(lose.status(), StatusCode::NO_CONTENT);
    let lost = app
        .client
        .post(format!("{}/oauth2/token", app.base))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rotated.refresh_token.as_str()),
            ("client_id", crate::helpers::CLIENT_ID),
            ("client_secret", crate::helpers::CLIENT_SECRET),
        ])
        .send()
        .await;
    assert!(lost.is_err());
    assert_eq!(app.fake.stats().lost_responses, 1);
}

#[tokio::test]
async fn malformed_faults_are_refused() {
    let app = spawn().await;
    let response = app
        .client
        .post(format!("{}/_fake/faults", app.base))
        .header("content-type", "application/json")
        .body(r#"{"explode":true}"#)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error());
}

#[tokio::test]
async fn access_tokens_can_be_expired_over_http() {
    let app = spawn().await;
    let tokens = app.install().await;

    let response = app
        .client
        .post(format!("{}/_fake/expire-access-tokens", app.base))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_rest_error(
        app.rest(&format!("/orgs?version={VERSION}"), &tokens.access_token)
            .await,
        401,
    )
    .await;
}
