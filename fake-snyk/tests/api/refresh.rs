//! `/oauth2/token` with `grant_type=refresh_token`: rotation, single use, replay detection.

use std::time::Duration;

use fake_snyk::Config;
use reqwest::StatusCode;

use crate::helpers::{
    CLIENT_ID, VERSION, assert_oauth_error, assert_rest_error, config, spawn, spawn_with,
};

#[tokio::test]
async fn refresh_rotates_the_pair_and_keeps_the_bot_id() {
    let app = spawn().await;
    let first = app.install().await;

    let second = app.refresh_ok(&first.refresh_token).await;

    assert_ne!(second.access_token, first.access_token);
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(second.bot_id, first.bot_id);
    assert_eq!(second.scope, first.scope);
    assert_eq!(second.token_type, "bearer");
    assert_eq!(second.expires_in, 3600);
    assert_eq!(second.refresh_expires_in, 180 * 24 * 3600);
    let orgs = app
        .rest(&format!("/orgs?version={VERSION}"), &second.access_token)
        .await;
    assert_eq!(orgs.status(), StatusCode::OK);
    // Chained rotation works from the newest token.
    let third = app.refresh_ok(&second.refresh_token).await;
    assert_eq!(third.bot_id, first.bot_id);
    let stats = app.fake.stats();
    assert_eq!(stats.successful_refreshes, 2);
    assert_eq!(stats.token_calls["refresh_token"], 2);
    assert_eq!(app.fake.live_refresh_tokens(), 1);
}

#[tokio::test]
async fn the_previous_access_token_lives_until_its_own_expiry() {
    let app = spawn().await;
    let first = app.install().await;
    app.refresh_ok(&first.refresh_token).await;

    let orgs = app
        .rest(&format!("/orgs?version={VERSION}"), &first.access_token)
        .await;

    assert_eq!(orgs.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_second_use_of_a_refresh_token_fails_and_kills_the_grant() {
    let app = spawn().await;
    let first = app.install().await;
    let second = app.refresh_ok(&first.refresh_token).await;

    let replay = app.refresh(&first.refresh_token).await;

    let description = assert_oauth_error(replay, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert!(description.contains("already been used"), "{description}");
    // The newer pair died with the grant.
    let orgs = app
        .rest(&format!("/orgs?version={VERSION}"), &second.access_token)
        .await;
    assert_rest_error(orgs, 401).await;
    let newer = app.refresh(&second.refresh_token).await;
    assert_oauth_error(newer, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let stats = app.fake.stats();
    assert_eq!(stats.spent_refresh_token_reuses, 1);
    assert_eq!(stats.successful_refreshes, 1);
    assert_eq!(app.fake.live_refresh_tokens(), 0);
}

#[tokio::test]
async fn a_replay_only_kills_its_own_grant() {
    let app = spawn().await;
    let victim = app.install().await;
    let bystander = app.install().await;
    app.refresh_ok(&victim.refresh_token).await;

    app.refresh(&victim.refresh_token).await;

    assert_eq!(app.fake.live_refresh_tokens(), 1);
    app.refresh_ok(&bystander.refresh_token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_of_one_token_let_exactly_one_win_then_kill_the_grant() {
    let app = spawn().await;
    let tokens = app.install().await;

    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (client, url) = (app.client.clone(), format!("{}/oauth2/token", app.base));
        let refresh_token = tokens.refresh_token.clone();
        attempts.spawn(async move {
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.as_str()),
                ("client_id", CLIENT_ID),
                ("client_secret", crate::helpers::CLIENT_SECRET),
            ];
            client.post(url).form(&form).send().await.unwrap().status()
        });
    }
    let statuses: Vec<StatusCode> = attempts.join_all().await;

    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::BAD_REQUEST)
            .count(),
        19
    );
    assert_eq!(app.fake.stats().spent_refresh_token_reuses, 19);
    assert_eq!(app.fake.live_refresh_tokens(), 0);
}

#[tokio::test]
async fn unknown_refresh_token_is_invalid_grant() {
    let app = spawn().await;
    let response = app.refresh("snyk_rt_made_up").await;
    assert_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert_eq!(app.fake.stats().spent_refresh_token_reuses, 0);
}

#[tokio::test]
async fn an_expired_refresh_token_is_invalid_grant() {
    let app = spawn_with(Config {
        refresh_token_ttl: Duration::from_millis(200),
        ..config()
    })
    .await;
    let tokens = app.install().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.fake.live_refresh_tokens(), 0);

    let response = app.refresh(&tokens.refresh_token).await;

    let description = assert_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert!(description.contains("expired"), "{description}");
}

#[tokio::test]
async fn a_scope_beyond_the_grant_is_invalid_scope_and_spends_nothing() {
    let app = spawn().await;
    let tokens = app.install().await;
    let response = app
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &tokens.refresh_token),
            ("client_id", CLIENT_ID),
            ("client_secret", crate::helpers::CLIENT_SECRET),
            ("scope", "org.read org.admin"),
        ])
        .await;

    assert_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_scope").await;
    app.refresh_ok(&tokens.refresh_token).await;
}
