//! `/oauth2/token` with `grant_type=authorization_code`, and the endpoint's request checks.

use std::collections::BTreeSet;
use std::time::Duration;

use fake_snyk::Config;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    CLIENT_ID, CLIENT_SECRET, Pkce, REDIRECT_URI, VERSION, assert_oauth_error, assert_rest_error,
    config, spawn, spawn_with,
};

#[tokio::test]
async fn code_exchange_with_pkce_returns_exactly_the_documented_fields() {
    let app = spawn().await;
    let pkce = Pkce::generate();
    let code = app.approve(&pkce);

    let response = app.exchange(&code, &pkce.verifier).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    let keys: BTreeSet<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "access_token",
            "expires_in",
            "refresh_token",
            "refresh_expires_in",
            "token_type",
            "scope",
            "bot_id"
        ])
    );
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["refresh_expires_in"], 180 * 24 * 3600);
    assert_eq!(body["scope"], "org.read org.project.read");
    assert!(uuid::Uuid::parse_str(body["bot_id"].as_str().unwrap()).is_ok());
    assert_ne!(body["access_token"], body["refresh_token"]);
    let stats = app.fake.stats();
    assert_eq!(stats.codes_exchanged, 1);
    assert_eq!(stats.token_calls["authorization_code"], 1);
    assert_eq!(app.fake.live_refresh_tokens(), 1);
}

#[tokio::test]
async fn wrong_or_malformed_verifier_is_invalid_grant() {
    let app = spawn().await;
    for verifier in [
        Pkce::generate().verifier,      // well formed, wrong
        "short".to_owned(),             // under 43 characters
        format!("{}!", "a".repeat(50)), // outside [A-Za-z0-9-._~]
    ] {
        let pkce = Pkce::generate();
        let code = app.approve(&pkce);
        let response = app.exchange(&code, &verifier).await;
        assert_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
    }
    assert_eq!(app.fake.stats().codes_exchanged, 0);
    assert_eq!(app.fake.live_refresh_tokens(), 0);
}

#[tokio::test]
async fn redirect_uri_must_equal_the_authorize_one() {
    let second = "http://localhost:3000/other";
    let app = spawn_with(Config {
        redirect_uris: vec![REDIRECT_URI.to_owned(), second.to_owned()],
        ..config()
    })
    .await;
    let pkce = Pkce::generate();
    let code = app.approve(&pkce);

    // Registered, but not the one the code was issued for.
    let response = app
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", second),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("code_verifier", &pkce.verifier),
        ])
        .await;

    let description = assert_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert!(description.contains("redirect_uri"), "{description}");
}

#[tokio::test]
async fn a_reused_code_fails_and_revokes_the_grant_it_produced() {
    let app = spawn().await;
    let pkce = Pkce::generate();
    let code = app.approve(&pkce);
    let first: crate::helpers::Tokens = app
        .exchange(&code, &pkce.verifier)
        .await
        .json()
        .await
        .unwrap();

    let second = app.exchange(&code, &pkce.verifier).await;

    assert_oauth_error(second, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let rest = app
        .rest(&format!("/orgs?version={VERSION}"), &first.access_token)
        .await;
    assert_rest_error(rest, 401).await;
    let refresh = app.refresh(&first.refresh_token).await;
    assert_oauth_error(refresh, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert_eq!(app.fake.live_refresh_tokens(), 0);
}

#[tokio::test]
async fn an_expired_code_is_invalid_grant() {
    let app = spawn_with(Config {
        code_ttl: Duration::from_millis(100),
        ..config()
    })
    .await;
    let pkce = Pkce::generate();
    let code = app.approve(&pkce);
    tokio::time::sleep(Duration::from_millis(250)).await;

    let response = app.exchange(&code, &pkce.verifier).await;

    let description = assert_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert!(description.contains("expired"), "{description}");
}

#[tokio::test]
async fn an_unknown_code_is_invalid_grant() {
    let app = spawn().await;
    let response = app.exchange("made-up", &Pkce::generate().verifier).await;
    assert_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn bad_client_credentials_are_invalid_client_and_leave_the_code_usable() {
    let app = spawn().await;
    let pkce = Pkce::generate();
    let code = app.approve(&pkce);
    let base = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", pkce.verifier.as_str()),
    ];
    for creds in [
        vec![("client_id", CLIENT_ID), ("client_secret", "wrong")],
        vec![("client_id", "other"), ("client_secret", CLIENT_SECRET)],
        vec![("client_id", CLIENT_ID)],
        vec![],
    ] {
        let mut form = base.to_vec();
        form.extend(creds.iter().copied());
        let response = app.token(&form).await;
        assert_oauth_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
    }

    let response = app.exchange(&code, &pkce.verifier).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_non_form_body_is_invalid_request() {
    let app = spawn().await;
    let response = app
        .client
        .post(format!("{}/oauth2/token", app.base))
        .json(&serde_json::json!({
            "grant_type": "refresh_token", "refresh_token": "x",
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET
        }))
        .send()
        .await
        .unwrap();

    assert_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_eq!(app.fake.stats().token_calls["missing"], 1);
}

#[tokio::test]
async fn missing_or_repeated_parameters_are_invalid_request() {
    let app = spawn().await;
    let creds = [("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)];
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![
            ("grant_type", "authorization_code"),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", "v"),
        ],
        vec![
            ("grant_type", "authorization_code"),
            ("code", "c"),
            ("code_verifier", "v"),
        ],
        vec![
            ("grant_type", "authorization_code"),
            ("code", "c"),
            ("redirect_uri", REDIRECT_URI),
        ],
        vec![("grant_type", "refresh_token")],
        vec![("grant_type", "refresh_token"), ("refresh_token", "")],
        vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", "a"),
            ("refresh_token", "b"),
        ],
    ];
    for case in cases {
        let mut form = case.clone();
        form.extend(creds);
        let response = app.token(&form).await;
        assert_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
}

#[tokio::test]
async fn other_grant_types_are_unsupported_and_counted_as_sent() {
    let app = spawn().await;
    let response = app
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .await;

    assert_oauth_error(response, StatusCode::BAD_REQUEST, "unsupported_grant_type").await;
    let stats = app.fake.stats();
    assert_eq!(stats.token_calls["client_credentials"], 1);
    assert_eq!(stats.token_calls.len(), 1);
}

#[tokio::test]
async fn a_narrower_scope_limits_the_rest_api() {
    let app = spawn().await;
    let pkce = Pkce::generate();
    let code = app
        .fake
        .approve(CLIENT_ID, REDIRECT_URI, &pkce.challenge, Some("org.read"))
        .unwrap();
    let tokens: crate::helpers::Tokens = app
        .exchange(&code, &pkce.verifier)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tokens.scope, "org.read");

    let orgs = app
        .rest(&format!("/orgs?version={VERSION}"), &tokens.access_token)
        .await;
    assert_eq!(orgs.status(), StatusCode::OK);
    let org = app.org_id("Demo Org");
    let projects = app
        .rest(
            &format!("/orgs/{org}/projects?version={VERSION}"),
            &tokens.access_token,
        )
        .await;
    assert_rest_error(projects, 403).await;
}
