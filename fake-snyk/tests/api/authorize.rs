//! `/oauth2/authorize`: validation, the consent page, Approve and Deny.

use fake_snyk::{AuthorizeError, Config};
use reqwest::StatusCode;

use crate::helpers::{
    CLIENT_ID, Pkce, REDIRECT_URI, authorize_query, config, hidden_fields, redirect_params, spawn,
    spawn_with,
};

async fn get_authorize(
    app: &crate::helpers::TestApp,
    query: &[(String, String)],
) -> reqwest::Response {
    app.client
        .get(format!("{}/oauth2/authorize", app.base))
        .query(query)
        .send()
        .await
        .unwrap()
}

fn with(query: &[(String, String)], name: &str, value: Option<&str>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = query.iter().filter(|(k, _)| k != name).cloned().collect();
    if let Some(value) = value {
        out.push((name.to_owned(), value.to_owned()));
    }
    out
}

#[tokio::test]
async fn valid_request_shows_a_consent_form_without_javascript() {
    let app = spawn().await;
    let pkce = Pkce::generate();
    let state = r#"st<"&'>ate"#;

    let response = get_authorize(&app, &authorize_query(&pkce, state)).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = response.text().await.unwrap();
    assert!(html.contains(r#"id="approve""#) && html.contains(r#"id="deny""#));
    assert!(html.contains(r#"action="/oauth2/authorize/decision""#));
    assert!(!html.to_lowercase().contains("<script"));
    // The state is echoed escaped, never raw.
    assert!(!html.contains(state));
    let fields = hidden_fields(&html);
    assert!(
        fields.contains(&("state".to_owned(), state.to_owned())),
        "{fields:?}"
    );
    assert!(fields.contains(&("code_challenge".to_owned(), pkce.challenge.clone())));
    assert!(fields.contains(&("redirect_uri".to_owned(), REDIRECT_URI.to_owned())));
}

#[tokio::test]
async fn bad_client_or_redirect_uri_gets_an_error_page_never_a_redirect() {
    let app = spawn().await;
    let query = authorize_query(&Pkce::generate(), "s");
    for bad in [
        with(&query, "client_id", Some("someone-else")),
        with(&query, "client_id", None),
        with(&query, "redirect_uri", Some("http://evil.test/callback")),
        // Exact match only: no trailing slash, no extra query, no case games.
        with(&query, "redirect_uri", Some(&format!("{REDIRECT_URI}/"))),
        with(&query, "redirect_uri", Some(&format!("{REDIRECT_URI}?x=1"))),
        with(
            &query,
            "redirect_uri",
            Some("http://LOCALHOST:3000/callback"),
        ),
        with(&query, "redirect_uri", None),
    ] {
        let response = get_authorize(&app, &bad).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        assert!(response.headers().get("location").is_none());
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let html = response.text().await.unwrap();
        assert!(!html.contains("evil.test/callback\""), "{html}");
    }
}

#[tokio::test]
async fn other_errors_redirect_with_error_and_state() {
    let app = spawn().await;
    let query = authorize_query(&Pkce::generate(), "the-state");
    let cases = [
        (with(&query, "response_type", None), "invalid_request"),
        (
            with(&query, "response_type", Some("token")),
            "unsupported_response_type",
        ),
        (with(&query, "code_challenge", None), "invalid_request"),
        (
            with(&query, "code_challenge", Some("short")),
            "invalid_request",
        ),
        (
            with(&query, "code_challenge", Some(&"+".repeat(43))),
            "invalid_request",
        ),
        (
            with(&query, "code_challenge_method", None),
            "invalid_request",
        ),
        (
            with(&query, "code_challenge_method", Some("plain")),
            "invalid_request",
        ),
        (
            with(&query, "scope", Some("org.read org.admin")),
            "invalid_scope",
        ),
        (
            {
                let mut q = query.clone();
                q.push(("code_challenge".to_owned(), "x".repeat(43)));
                q
            },
            "invalid_request",
        ),
    ];
    for (bad, error) in cases {
        let response = get_authorize(&app, &bad).await;
        let params = redirect_params(&response, REDIRECT_URI);
        assert_eq!(params["error"], error, "{bad:?}");
        assert!(!params["error_description"].is_empty());
        assert_eq!(params["state"], "the-state");
        assert!(!params.contains_key("code"));
    }

    // Without state the redirect carries none.
    let response = get_authorize(&app, &with(&query, "state", None)).await;
    let params = redirect_params(&response, REDIRECT_URI);
    assert_eq!(params["error"], "invalid_request");
    assert!(params["error_description"].contains("state"));
    assert!(!params.contains_key("state"));
}

#[tokio::test]
async fn approve_through_the_form_redirects_with_a_code_that_exchanges() {
    let app = spawn().await;
    let pkce = Pkce::generate();
    let mut query = authorize_query(&pkce, "abc&def=1");
    query.push(("scope".to_owned(), "org.read org.project.read".to_owned()));
    let html = get_authorize(&app, &query).await.text().await.unwrap();
    let mut form = hidden_fields(&html);
    form.push(("decision".to_owned(), "approve".to_owned()));

    let response = app
        .client
        .post(format!("{}/oauth2/authorize/decision", app.base))
        .form(&form)
        .send()
        .await
        .unwrap();

    let params = redirect_params(&response, REDIRECT_URI);
    assert_eq!(params["state"], "abc&def=1");
    let tokens = app.exchange(&params["code"], &pkce.verifier).await;
    assert_eq!(tokens.status(), StatusCode::OK);
}

#[tokio::test]
async fn deny_redirects_with_access_denied() {
    let app = spawn().await;
    let pkce = Pkce::generate();
    let html = get_authorize(&app, &authorize_query(&pkce, "s1"))
        .await
        .text()
        .await
        .unwrap();
    let mut form = hidden_fields(&html);
    form.push(("decision".to_owned(), "deny".to_owned()));

    let response = app
        .client
        .post(format!("{}/oauth2/authorize/decision", app.base))
        .form(&form)
        .send()
        .await
        .unwrap();

    let params = redirect_params(&response, REDIRECT_URI);
    assert_eq!(params["error"], "access_denied");
    assert!(!params["error_description"].is_empty());
    assert_eq!(params["state"], "s1");
    assert!(!params.contains_key("code"));
}

#[tokio::test]
async fn the_decision_is_validated_again() {
    let app = spawn().await;
    let pkce = Pkce::generate();
    let html = get_authorize(&app, &authorize_query(&pkce, "s"))
        .await
        .text()
        .await
        .unwrap();
    let form = hidden_fields(&html);
    let post = |form: Vec<(String, String)>| {
        app.client
            .post(format!("{}/oauth2/authorize/decision", app.base))
            .form(&form)
            .send()
    };

    // A tampered redirect URI: error page, no redirect.
    let mut tampered = with(&form, "redirect_uri", Some("http://evil.test/cb"));
    tampered.push(("decision".to_owned(), "approve".to_owned()));
    let response = post(tampered).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get("location").is_none());

    // A tampered challenge: redirect with invalid_request.
    let mut tampered = with(&form, "code_challenge_method", Some("plain"));
    tampered.push(("decision".to_owned(), "approve".to_owned()));
    let params = redirect_params(&post(tampered).await.unwrap(), REDIRECT_URI);
    assert_eq!(params["error"], "invalid_request");

    // No decision at all.
    let params = redirect_params(&post(form.clone()).await.unwrap(), REDIRECT_URI);
    assert_eq!(params["error"], "invalid_request");
    assert!(!params.contains_key("code"));
}

#[tokio::test]
async fn redirect_uri_query_is_kept() {
    let uri = "http://localhost:3000/callback?tenant=a%20b";
    let app = spawn_with(Config {
        redirect_uris: vec![REDIRECT_URI.to_owned(), uri.to_owned()],
        ..config()
    })
    .await;
    let pkce = Pkce::generate();
    let query = with(&authorize_query(&pkce, "s"), "redirect_uri", Some(uri));
    let html = get_authorize(&app, &query).await.text().await.unwrap();
    let mut form = hidden_fields(&html);
    form.push(("decision".to_owned(), "approve".to_owned()));

    let response = app
        .client
        .post(format!("{}/oauth2/authorize/decision", app.base))
        .form(&form)
        .send()
        .await
        .unwrap();

    let params = redirect_params(&response, "http://localhost:3000/callback?tenant=a%20b&");
    assert_eq!(params["tenant"], "a b");
    assert!(params.contains_key("code"));
}

#[tokio::test]
async fn approve_shortcut_validates_like_the_page() {
    let app = spawn().await;
    let pkce = Pkce::generate();
    let fake = &app.fake;

    assert_eq!(
        fake.approve("nope", REDIRECT_URI, &pkce.challenge, None),
        Err(AuthorizeError::UnknownClient("nope".to_owned()))
    );
    assert_eq!(
        fake.approve(CLIENT_ID, "http://evil.test/cb", &pkce.challenge, None),
        Err(AuthorizeError::UnregisteredRedirectUri(
            "http://evil.test/cb".to_owned()
        ))
    );
    let err = fake
        .approve(CLIENT_ID, REDIRECT_URI, "too-short", None)
        .unwrap_err();
    assert_eq!(err, AuthorizeError::InvalidCodeChallenge);
    assert!(err.redirects());
    assert_eq!(err.error_code(), "invalid_request");
    assert_eq!(
        fake.approve(CLIENT_ID, REDIRECT_URI, &pkce.challenge, Some("admin")),
        Err(AuthorizeError::InvalidScope("admin".to_owned()))
    );
    assert!(!AuthorizeError::UnknownClient(String::new()).redirects());

    let code = fake
        .approve(CLIENT_ID, REDIRECT_URI, &pkce.challenge, Some("org.read"))
        .unwrap();
    let response = app.exchange(&code, &pkce.verifier).await;
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["scope"], "org.read");
}
