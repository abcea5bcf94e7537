//! The client against wiremock: the JSON:API edge cases Snyk's documents allow.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use secrecy::SecretString;
use snyk_rest::{ProjectAttributes, RestClient, RestError};
use url::Url;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{header, method, path, query_param},
};

fn project(id: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id, "type": "project",
        "attributes": {"name": format!("acme/{id}"), "type": "npm", "origin": "github", "status": "active",
            "target_file": "package.json", "target_reference": "main", "created": "2024-01-01T00:00:00Z",
            "read_only": false, "settings": {}, "unknown_future_field": 1},
        "relationships": {}, "meta": {}
    })
}

async fn client(server: &MockServer, base_path: &str) -> RestClient {
    RestClient::new(
        Url::parse(&format!("{}{base_path}", server.uri())).unwrap(),
        "2024-05-31",
        Duration::from_secs(5),
        &[],
    )
    .unwrap()
}

fn token() -> SecretString {
    SecretString::from("tok".to_owned())
}

#[tokio::test]
async fn next_link_forms_all_resolve() {
    let server = MockServer::start().await;
    let c = client(&server, "").await;
    let cases = [
        serde_json::json!("/orgs/o/projects?version=2024-05-31&starting_after=abc"),
        serde_json::json!("/rest/orgs/o/projects?version=2024-05-31&starting_after=abc"),
        serde_json::json!({"href": "/orgs/o/projects?version=2024-05-31&starting_after=abc"}),
        serde_json::json!(format!(
            "{}/rest/orgs/o/projects?version=2024-05-31&starting_after=abc",
            server.uri()
        )),
    ];
    for next in cases {
        server.reset().await;
        Mock::given(method("GET"))
            .and(path("/rest/orgs/o/projects"))
            .and(header("authorization", "bearer tok"))
            .and(header("accept", "application/vnd.api+json"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "jsonapi": {"version": "1.0"}, "data": [project("p1")], "links": {"self": "/x", "next": next}
            })))
            .mount(&server)
            .await;
        let page = c
            .get_page::<ProjectAttributes>(&c.url("/orgs/o/projects", 100, &[]), &token(), &[])
            .await
            .unwrap();
        let next = page.next.expect("has next");
        assert_eq!(next.path(), "/rest/orgs/o/projects", "{next}");
        assert_eq!(next.query(), Some("version=2024-05-31&starting_after=abc"));
        assert_eq!(page.data[0].attributes.kind, "npm");
    }
}

#[tokio::test]
async fn api_base_with_a_path_prefix_is_kept() {
    let server = MockServer::start().await;
    let c = client(&server, "/proxy").await;
    assert_eq!(
        c.url("/orgs", 10, &[("origins", "github")]).path(),
        "/proxy/rest/orgs"
    );
    assert_eq!(
        c.resolve_next("/orgs?x=1").unwrap().as_str(),
        format!("{}/proxy/rest/orgs?x=1", server.uri())
    );
}

#[tokio::test]
async fn foreign_or_unrooted_next_links_are_refused() {
    let server = MockServer::start().await;
    let c = client(&server, "").await;
    assert!(matches!(
        c.resolve_next("https://evil.example/rest/orgs"),
        Err(RestError::Unexpected(_))
    ));
    assert!(matches!(
        c.resolve_next("orgs?x"),
        Err(RestError::Unexpected(_))
    ));
}

#[tokio::test]
async fn last_page_has_no_next_and_optional_fields_may_be_absent() {
    let server = MockServer::start().await;
    let mut p = project("p1");
    p["attributes"]
        .as_object_mut()
        .unwrap()
        .remove("target_file");
    Mock::given(method("GET"))
        .and(query_param("version", "2024-05-31"))
        .and(query_param("limit", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "jsonapi": {"version": "1.0"}, "data": [p], "links": {"self": "/orgs/o/projects"}
        })))
        .mount(&server)
        .await;
    let c = client(&server, "").await;
    let page = c
        .get_page::<ProjectAttributes>(&c.url("/orgs/o/projects", 100, &[]), &token(), &[])
        .await
        .unwrap();
    assert!(page.next.is_none());
    assert_eq!(page.data[0].attributes.target_file, None);
}

#[tokio::test]
async fn errors_are_classified() {
    let server = MockServer::start().await;
    let err_doc = |status: &str, detail: &str| serde_json::json!({"jsonapi": {"version": "1.0"}, "errors": [{"status": status, "detail": detail}]});
    let c = client(&server, "").await;
    let cases: Vec<(ResponseTemplate, RestError)> = vec![
        (
            ResponseTemplate::new(401).set_body_json(err_doc("401", "token expired")),
            RestError::Unauthorized("token expired".into()),
        ),
        (
            ResponseTemplate::new(404).set_body_json(err_doc("404", "no org")),
            RestError::NotFound {
                status: 404,
                detail: "no org".into(),
            },
        ),
        (
            ResponseTemplate::new(400).set_body_json(err_doc("400", "bad version")),
            RestError::BadRequest {
                status: 400,
                detail: "bad version".into(),
            },
        ),
        (
            ResponseTemplate::new(429).insert_header("retry-after", "7"),
            RestError::Retryable {
                status: 429,
                retry_after: Some(Duration::from_secs(7)),
            },
        ),
        (
            ResponseTemplate::new(503).set_body_string("<html>"),
            RestError::Retryable {
                status: 503,
                retry_after: None,
            },
        ),
        (
            ResponseTemplate::new(401).set_body_string("not json"),
            RestError::Unauthorized("Unauthorized".into()),
        ),
    ];
    for (response, expected) in cases {
        server.reset().await;
        Mock::given(method("GET"))
            .respond_with(response)
            .mount(&server)
            .await;
        let err = c
            .get_page::<ProjectAttributes>(&c.url("/orgs/o/projects", 100, &[]), &token(), &[])
            .await
            .unwrap_err();
        assert_eq!(err, expected);
    }
    server.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"data\": 5}"))
        .mount(&server)
        .await;
    let err = c
        .get_page::<ProjectAttributes>(&c.url("/orgs/o/projects", 100, &[]), &token(), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, RestError::Unexpected(_)));
}

#[tokio::test]
async fn a_redirect_is_an_error_and_is_never_followed() {
    let server = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    // Where the redirect points: would serve a page, and must see no request (no bearer token).
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"data": []})))
        .expect(0)
        .mount(&elsewhere)
        .await;
    let c = client(&server, "").await;
    for status in [301, 302, 307, 308] {
        server.reset().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(status)
                    .insert_header("location", format!("{}/rest/orgs", elsewhere.uri())),
            )
            .mount(&server)
            .await;
        let err = c
            .get_page::<ProjectAttributes>(&c.url("/orgs", 10, &[]), &token(), &[])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RestError::Unexpected(m) if m.contains("redirect"))
                && !err.is_retryable(),
            "{status}: {err:?}"
        );
    }
    elsewhere.verify().await;
}

#[tokio::test]
async fn unreachable_is_a_transport_error() {
    let url = Url::parse("http://127.0.0.1:1").unwrap();
    let c = RestClient::new(url, "2024-05-31", Duration::from_secs(2), &[]).unwrap();
    let err = c
        .get_page::<ProjectAttributes>(&c.url("/orgs", 10, &[]), &token(), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, RestError::Transport(_)) && err.is_retryable());
}

#[test]
fn backoff_grows_is_capped_and_honours_retry_after() {
    let b = |n, ra| snyk_rest::backoff(Duration::from_millis(100), n, Duration::from_secs(2), ra);
    assert_eq!(b(1, None), Duration::from_millis(100));
    assert_eq!(b(3, None), Duration::from_millis(400));
    assert_eq!(b(10, None), Duration::from_secs(2));
    assert_eq!(b(1, Some(Duration::from_secs(5))), Duration::from_secs(5));
}
