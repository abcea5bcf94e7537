//! Shared arrange steps: a fake per test, a reqwest client that does not follow redirects, PKCE
//! pairs, and typed calls to each endpoint.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fake_snyk::{Config, FakeSnyk, OrgSeed};
use reqwest::{Response, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const CLIENT_ID: &str = "test-client-id";
pub const CLIENT_SECRET: &str = "test-client-secret";
pub const REDIRECT_URI: &str = "http://localhost:3000/callback";
pub const VERSION: &str = "2024-05-31";

pub fn config() -> Config {
    let mut config = Config::new(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI);
    config.orgs = vec![OrgSeed::new("Demo Org", 25), OrgSeed::new("Big Org", 1234)];
    config
}

pub struct TestApp {
    pub fake: FakeSnyk,
    pub client: reqwest::Client,
    pub base: String,
}

pub async fn spawn() -> TestApp {
    spawn_with(config()).await
}

pub async fn spawn_with(config: Config) -> TestApp {
    let fake = FakeSnyk::start(config).await.expect("fake starts");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client builds");
    let base = fake.url();
    TestApp { fake, client, base }
}

pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        let verifier = URL_SAFE_NO_PAD.encode(bytes);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Self {
            verifier,
            challenge,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokens {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: String,
    pub refresh_expires_in: u64,
    pub token_type: String,
    pub scope: String,
    pub bot_id: uuid::Uuid,
}

/// Asserts an OAuth error answer and returns its description.
pub async fn assert_oauth_error(response: Response, status: StatusCode, error: &str) -> String {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("JSON error body");
    assert_eq!(body["error"], error, "{body}");
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["error", "error_description"], "{body}");
    body["error_description"]
        .as_str()
        .expect("description")
        .to_owned()
}

/// Asserts a JSON:API error document and returns it.
pub async fn assert_rest_error(response: Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.api+json"
    );
    assert!(response.headers().contains_key("snyk-request-id"));
    let body: Value = response.json().await.expect("JSON:API body");
    assert_eq!(body["jsonapi"]["version"], "1.0");
    assert_eq!(body["errors"][0]["status"], status.to_string(), "{body}");
    body
}

impl TestApp {
    pub fn org_id(&self, name: &str) -> uuid::Uuid {
        OrgSeed::new(name, 0).id
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Response {
        self.client
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .expect("request completes")
    }

    pub async fn token(&self, form: &[(&str, &str)]) -> Response {
        self.post_form("/oauth2/token", form).await
    }

    pub async fn exchange(&self, code: &str, verifier: &str) -> Response {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("code_verifier", verifier),
        ])
        .await
    }

    pub fn approve(&self, pkce: &Pkce) -> String {
        self.fake
            .approve(CLIENT_ID, REDIRECT_URI, &pkce.challenge, None)
            .expect("approve")
    }

    /// A completed install: approve plus code exchange.
    pub async fn install(&self) -> Tokens {
        let pkce = Pkce::generate();
        let code = self.approve(&pkce);
        let response = self.exchange(&code, &pkce.verifier).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("token JSON")
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .await
    }

    pub async fn refresh_ok(&self, refresh_token: &str) -> Tokens {
        let response = self.refresh(refresh_token).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("token JSON")
    }

    pub async fn revoke(&self, token: &str) -> Response {
        self.post_form(
            "/oauth2/revoke",
            &[
                ("token", token),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
            ],
        )
        .await
    }

    /// `GET /rest{path_and_query}` with a bearer token.
    pub async fn rest(&self, path_and_query: &str, token: &str) -> Response {
        self.client
            .get(format!("{}/rest{path_and_query}", self.base))
            .header("authorization", format!("bearer {token}"))
            .send()
            .await
            .expect("request completes")
    }

    pub async fn rest_json(&self, path_and_query: &str, token: &str) -> Value {
        let response = self.rest(path_and_query, token).await;
        assert_eq!(response.status(), StatusCode::OK, "{path_and_query}");
        response.json().await.expect("JSON body")
    }

    pub async fn projects_page(&self, org: uuid::Uuid, query: &str, token: &str) -> Value {
        self.rest_json(&format!("/orgs/{org}/projects?{query}"), token)
            .await
    }

    pub async fn get(&self, path_and_query: &str) -> Response {
        self.client
            .get(format!("{}{path_and_query}", self.base))
            .send()
            .await
            .expect("request completes")
    }

    /// `POST {path}` with `body` declared as `content_type` (a control endpoint's JSON, or not).
    pub async fn post_body(&self, path: &str, content_type: &str, body: &str) -> Response {
        self.client
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body.to_owned())
            .send()
            .await
            .expect("request completes")
    }
}

/// The query of an authorize request, as `(name, value)` pairs.
pub fn authorize_query(pkce: &Pkce, state: &str) -> Vec<(String, String)> {
    [
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT_URI),
        ("state", state),
        ("code_challenge", pkce.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

/// The query pairs of a redirect's `Location`, checking that it goes to `redirect_uri`.
pub fn redirect_params(response: &Response, redirect_uri: &str) -> HashMap<String, String> {
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()["location"].to_str().expect("ASCII");
    assert!(
        location.starts_with(redirect_uri),
        "{location} does not go to {redirect_uri}"
    );
    url::Url::parse(location)
        .expect("absolute Location")
        .query_pairs()
        .into_owned()
        .collect()
}

/// The hidden `<input>` fields of the consent page's form, values unescaped, read as the system
/// tests and loadgen read the page.
pub fn hidden_fields(html: &str) -> Vec<(String, String)> {
    fake_snyk_consent::ConsentPage::parse(html)
        .expect("the consent form")
        .hidden
}
