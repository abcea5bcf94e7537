//! Refresh-token lifetimes: the configured one, and changes at run time through
//! `FakeSnyk::set_refresh_token_ttl` and `POST /_fake/refresh-token-ttl`.

use std::time::Duration;

use fake_snyk::Config;
use reqwest::{Response, StatusCode};
use serde_json::Value;

use crate::helpers::{TestApp, assert_oauth_error, config, spawn, spawn_with};

/// Longer than a one-second lifetime, with room for a slow test machine.
const PAST_ONE_SECOND: Duration = Duration::from_millis(1200);

/// `POST /_fake/refresh-token-ttl` with `body` declared as `content_type`.
async fn post_ttl(app: &TestApp, content_type: &str, body: &str) -> Response {
    app.post_body("/_fake/refresh-token-ttl", content_type, body)
        .await
}

#[tokio::test]
async fn with_a_one_second_ttl_a_refresh_after_1_2_s_is_invalid_grant() {
    let app = spawn_with(Config {
        refresh_token_ttl: Duration::from_secs(1),
        ..config()
    })
    .await;
    let tokens = app.install().await;
    assert_eq!(tokens.refresh_expires_in, 1);
    // Within the second the token works, and the rotated pair says the same lifetime.
    let rotated = app.refresh_ok(&tokens.refresh_token).await;
    assert_eq!(rotated.refresh_expires_in, 1);

    tokio::time::sleep(PAST_ONE_SECOND).await;

    assert_eq!(app.fake.live_refresh_tokens(), 0);
    let response = app.refresh(&rotated.refresh_token).await;
    let description = assert_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert!(description.contains("expired"), "{description}");
    // An expired token is not a replay: nothing was spent, nothing counted as reuse.
    let stats = app.fake.stats();
    assert_eq!(stats.spent_refresh_token_reuses, 0);
    assert_eq!(stats.successful_refreshes, 1);
}

#[tokio::test]
async fn the_library_method_changes_the_ttl_of_tokens_issued_afterwards_only() {
    let app = spawn().await;
    let before = app.install().await;
    assert_eq!(before.refresh_expires_in, 180 * 24 * 3600);

    app.fake.set_refresh_token_ttl(Duration::from_secs(1));

    let after = app.install().await;
    assert_eq!(after.refresh_expires_in, 1);
    tokio::time::sleep(PAST_ONE_SECOND).await;
    assert_oauth_error(
        app.refresh(&after.refresh_token).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    // Issued before the change: keeps its 180 days; its rotation gets the new lifetime.
    let rotated = app.refresh_ok(&before.refresh_token).await;
    assert_eq!(rotated.refresh_expires_in, 1);

    app.fake.set_refresh_token_ttl(Duration::from_secs(3600));

    let again = app.refresh_ok(&rotated.refresh_token).await;
    assert_eq!(again.refresh_expires_in, 3600);
    assert_eq!(app.fake.live_refresh_tokens(), 1);
}

#[tokio::test]
async fn the_control_endpoint_changes_the_ttl_of_tokens_issued_afterwards() {
    let app = spawn().await;
    let before = app.install().await;

    let response = post_ttl(&app, "application/json", r#"{"seconds":1}"#).await;

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let after = app.install().await;
    assert_eq!(after.refresh_expires_in, 1);
    tokio::time::sleep(PAST_ONE_SECOND).await;
    assert_oauth_error(
        app.refresh(&after.refresh_token).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    let rotated = app.refresh_ok(&before.refresh_token).await;
    assert_eq!(rotated.refresh_expires_in, 1);

    let response = post_ttl(&app, "application/json", r#"{"seconds": 7200}"#).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.install().await.refresh_expires_in, 7200);
}

#[tokio::test]
async fn the_control_endpoint_refuses_other_bodies_with_a_json_error_and_changes_nothing() {
    let app = spawn().await;
    let too_long = format!(r#"{{"seconds":{}}}"#, 100_u64 * 365 * 24 * 3600 + 1);
    // (content type, body, what the error description must mention)
    let cases: Vec<(&str, &str, &str)> = vec![
        ("application/json", r#"{"seconds":0}"#, "at least 1"),
        ("application/json", &too_long, "at most"),
        ("application/json", r#"{"seconds":-1}"#, "-1"),
        ("application/json", r#"{"seconds":1.5}"#, "1.5"),
        ("application/json", r#"{"seconds":"60"}"#, "string"),
        ("application/json", r#"{"seconds":null}"#, "null"),
        ("application/json", r#"{}"#, "missing field `seconds`"),
        (
            "application/json",
            r#"{"seconds":60,"extra":1}"#,
            "unknown field `extra`",
        ),
        ("application/json", r#"[60]"#, "not a JSON object"),
        ("application/json", "60", "not a JSON object"),
        ("application/json", "not json", "JSON"),
        ("application/json", "", "EOF"),
        ("text/plain", r#"{"seconds":60}"#, "Content-Type"),
    ];
    for (content_type, body, mentions) in cases {
        let response = post_ttl(&app, content_type, body).await;

        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body:?}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{body:?}"
        );
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "invalid_request", "{body:?}: {error}");
        let description = error["error_description"].as_str().unwrap();
        assert!(
            description.contains(mentions),
            "{body:?}: {description:?} does not mention {mentions:?}"
        );
    }

    let tokens = app.install().await;
    assert_eq!(tokens.refresh_expires_in, 180 * 24 * 3600);
}
