//! The client's secrets: two at most, changed through `POST /_fake/client-secrets` as Snyk's
//! `POST /rest/orgs/{org_id}/apps/creations/{app_id}/secrets` changes them, and checked before
//! any code or refresh token is looked at.

use fake_snyk::{ClientSecretError, SecretChange};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    CLIENT_ID, CLIENT_SECRET, Pkce, REDIRECT_URI, TestApp, assert_oauth_error, spawn,
};

impl TestApp {
    async fn change_secret(&self, attributes: Value) -> Response {
        self.client
            .post(format!("{}/_fake/client-secrets", self.base))
            .json(&json!({"data": {"type": "app", "attributes": attributes}}))
            .send()
            .await
            .unwrap()
    }

    /// `create` or `replace` over HTTP: the new secret from the answer.
    async fn new_secret(&self, mode: &str) -> String {
        let response = self.change_secret(json!({ "mode": mode })).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["data"]["type"], "app");
        assert_eq!(body["data"]["attributes"]["client_id"], CLIENT_ID);
        body["data"]["attributes"]["client_secret"]
            .as_str()
            .expect("the new secret is shown")
            .to_owned()
    }

    async fn refresh_with(&self, refresh_token: &str, secret: &str) -> Response {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", CLIENT_ID),
            ("client_secret", secret),
        ])
        .await
    }
}

#[tokio::test]
async fn a_second_secret_works_beside_the_first_until_the_first_is_deleted() {
    let app = spawn().await;
    let tokens = app.install().await;

    let second = app.new_secret("create").await;
    assert_ne!(second, CLIENT_SECRET);
    assert_eq!(app.fake.active_client_secrets(), 2);
    let rotated = app.refresh_with(&tokens.refresh_token, &second).await;
    assert_eq!(rotated.status(), StatusCode::OK);
    let rotated: crate::helpers::Tokens = rotated.json().await.unwrap();
    let rotated = app.refresh_ok(&rotated.refresh_token).await;

    let deleted = app
        .change_secret(json!({"mode": "delete", "secret": CLIENT_SECRET}))
        .await;
    assert_eq!(deleted.status(), StatusCode::OK);
    let body: Value = deleted.json().await.unwrap();
    assert!(
        body["data"]["attributes"].get("client_secret").is_none(),
        "{body}"
    );
    assert_eq!(app.fake.active_client_secrets(), 1);

    // The deleted secret is refused before the refresh token is looked at: the token is not
    // spent, and the other secret redeems it afterwards without a replay.
    let refused = app.refresh(&rotated.refresh_token).await;
    assert_oauth_error(refused, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let ok = app.refresh_with(&rotated.refresh_token, &second).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let stats = app.fake.stats();
    assert_eq!(stats.client_authentication_failures, 1, "{stats:?}");
    assert_eq!(stats.spent_refresh_token_reuses, 0, "{stats:?}");
    assert_eq!(stats.successful_refreshes, 3, "{stats:?}");
}

#[tokio::test]
async fn a_refused_client_spends_no_code_and_revokes_nothing() {
    let app = spawn().await;
    let tokens = app.install().await;
    let second = app.new_secret("create").await;
    app.fake
        .change_client_secret(SecretChange::Delete {
            secret: CLIENT_SECRET.into(),
        })
        .unwrap();

    let pkce = Pkce::generate();
    let code = app.approve(&pkce);
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", pkce.verifier.as_str()),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
    ];
    assert_oauth_error(
        app.token(&form).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    assert_oauth_error(
        app.revoke(&tokens.refresh_token).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    )
    .await;
    assert_eq!(app.fake.live_refresh_tokens(), 1, "nothing revoked");

    form.pop();
    form.push(("client_secret", &second));
    assert_eq!(
        app.token(&form).await.status(),
        StatusCode::OK,
        "the code still works"
    );
    let stats = app.fake.stats();
    assert_eq!(
        (
            stats.client_authentication_failures,
            stats.revocations,
            stats.codes_exchanged
        ),
        (2, 0, 2),
        "{stats:?}"
    );
}

#[tokio::test]
async fn replace_leaves_one_new_secret() {
    let app = spawn().await;
    let tokens = app.install().await;
    let second = app.new_secret("create").await;
    let replaced = app.new_secret("replace").await;
    assert_eq!(app.fake.active_client_secrets(), 1);
    for old in [CLIENT_SECRET, second.as_str()] {
        let refused = app.refresh_with(&tokens.refresh_token, old).await;
        assert_oauth_error(refused, StatusCode::UNAUTHORIZED, "invalid_client").await;
    }
    let ok = app.refresh_with(&tokens.refresh_token, &replaced).await;
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_third_secret_the_last_secret_or_an_unknown_one_is_refused_and_changes_nothing() {
    let app = spawn().await;
    let tokens = app.install().await;

    // Deleting the only secret would leave the client unable to authenticate at all.
    let last = app
        .change_secret(json!({"mode": "delete", "secret": CLIENT_SECRET}))
        .await;
    assert_oauth_error(last, StatusCode::CONFLICT, "conflict").await;
    let second = app.new_secret("create").await;
    let third = app.change_secret(json!({"mode": "create"})).await;
    let why = assert_oauth_error(third, StatusCode::CONFLICT, "conflict").await;
    assert!(why.contains("2 active secrets"), "{why}");
    let unknown = app
        .change_secret(json!({"mode": "delete", "secret": "snyk_cs_not-one-of-them"}))
        .await;
    assert_oauth_error(unknown, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(
        app.fake.change_client_secret(SecretChange::Create),
        Err(ClientSecretError::TooMany)
    );

    for bad in [
        json!({"mode": "rotate"}),
        json!({"mode": "delete"}),
        json!({}),
        json!("create"),
    ] {
        let response = app.change_secret(bad.clone()).await;
        assert_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    let wrong_type = app
        .client
        .post(format!("{}/_fake/client-secrets", app.base))
        .json(&json!({"data": {"type": "user", "attributes": {"mode": "replace"}}}))
        .send()
        .await
        .unwrap();
    assert_oauth_error(wrong_type, StatusCode::BAD_REQUEST, "invalid_request").await;

    // Both secrets still work.
    let rotated = app.refresh_ok(&tokens.refresh_token).await;
    let ok = app.refresh_with(&rotated.refresh_token, &second).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(app.fake.active_client_secrets(), 2);
}
