//! `/oauth2/revoke`.

use reqwest::StatusCode;

use crate::helpers::{CLIENT_ID, VERSION, assert_oauth_error, assert_rest_error, spawn};

#[tokio::test]
async fn revoking_the_refresh_token_kills_the_grant() {
    let app = spawn().await;
    let tokens = app.install().await;

    let response = app.revoke(&tokens.refresh_token).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.unwrap().is_empty());
    let orgs = app
        .rest(&format!("/orgs?version={VERSION}"), &tokens.access_token)
        .await;
    assert_rest_error(orgs, 401).await;
    let refresh = app.refresh(&tokens.refresh_token).await;
    assert_oauth_error(refresh, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert_eq!(app.fake.live_refresh_tokens(), 0);
    let stats = app.fake.stats();
    assert_eq!(stats.revocations, 1);
    // Refusing a revoked token is not a replay.
    assert_eq!(stats.spent_refresh_token_reuses, 0);
}

#[tokio::test]
async fn revoking_the_access_token_kills_the_grant_too() {
    let app = spawn().await;
    let tokens = app.install().await;

    let response = app.revoke(&tokens.access_token).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.fake.live_refresh_tokens(), 0);
    let refresh = app.refresh(&tokens.refresh_token).await;
    assert_oauth_error(refresh, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn unknown_tokens_get_200_with_an_empty_body() {
    let app = spawn().await;
    let tokens = app.install().await;

    let response = app.revoke("snyk_rt_not_a_token").await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.unwrap().is_empty());
    assert_eq!(app.fake.live_refresh_tokens(), 1);
    app.refresh_ok(&tokens.refresh_token).await;
}

#[tokio::test]
async fn a_bad_client_is_invalid_client_and_revokes_nothing() {
    let app = spawn().await;
    let tokens = app.install().await;

    let response = app
        .post_form(
            "/oauth2/revoke",
            &[
                ("token", &tokens.refresh_token),
                ("client_id", CLIENT_ID),
                ("client_secret", "wrong"),
            ],
        )
        .await;

    assert_oauth_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert_eq!(app.fake.live_refresh_tokens(), 1);
    assert_eq!(app.fake.stats().revocations, 0);
}

#[tokio::test]
async fn a_missing_token_is_invalid_request() {
    let app = spawn().await;
    let response = app
        .post_form(
            "/oauth2/revoke",
            &[
                ("client_id", CLIENT_ID),
                ("client_secret", crate::helpers::CLIENT_SECRET),
            ],
        )
        .await;
    assert_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
}
