//! The browser part of `loadgen install` against the real fake Snyk (in-process, port 0): the
//! consent page it renders is read, Approve is posted, and the code it redirects with is good for
//! a token with our PKCE verifier.

use loadgen::args::LocalUrl;
use loadgen::install::{Pkce, authorize, http_client};

const CLIENT_ID: &str = "loadgen-test-client";
const SECRET: &str = "loadgen-test-secret";
const REDIRECT: &str = "http://localhost:8080/callback";

#[tokio::test]
async fn the_fake_consent_page_yields_a_code_that_redeems_with_our_verifier() {
    let fake = fake_snyk::FakeSnyk::start(fake_snyk::Config::new(CLIENT_ID, SECRET, REDIRECT))
        .await
        .expect("fake starts");
    let fake_url = LocalUrl::parse_target(&fake.url()).expect("fake is on 127.0.0.1");
    let http = http_client().expect("client");
    let pkce = Pkce::generate();

    let code = authorize(&http, &fake_url, CLIENT_ID, REDIRECT, &pkce)
        .await
        .expect("approved");

    let token = http
        .post(fake_url.url().join("/oauth2/token").expect("url"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "authorization_code")
                .append_pair("code", &code)
                .append_pair("code_verifier", &pkce.verifier)
                .append_pair("redirect_uri", REDIRECT)
                .append_pair("client_id", CLIENT_ID)
                .append_pair("client_secret", SECRET)
                .finish(),
        )
        .send()
        .await
        .expect("token endpoint answers");
    assert_eq!(token.status(), 200, "{:?}", token.text().await);
    assert_eq!(fake.stats().codes_exchanged, 1);

    // An unregistered redirect URI gets the fake's error page, and a clear error here.
    let err = authorize(
        &http,
        &fake_url,
        CLIENT_ID,
        "http://localhost:1/nope",
        &pkce,
    )
    .await
    .expect_err("refused");
    assert!(
        format!("{err:#}").contains("consent page answered 400"),
        "{err:#}"
    );
    fake.shutdown().await;
}
