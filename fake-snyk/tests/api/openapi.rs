//! Bodies of `/orgs`, `/orgs/{org_id}/projects` and `/self`, and the error documents, validated
//! against the JSON Schemas that Snyk's REST OpenAPI document (rest.json) declares for them.
//!
//! rest.json is OpenAPI 3.0: its schemas are JSON Schema plus `nullable`. They are checked as
//! draft 2020-12 with formats (uuid, date-time) enforced, after turning `nullable: true` into an
//! explicit `null` type. `$ref`s point into `#/components/...`, so each validator's root schema
//! carries the document's `components` beside the response schema.

use std::path::PathBuf;
use std::sync::OnceLock;

use fake_snyk::{Config, Fault, OrgSeed};
use jsonschema::{Draft, Validator};
use serde_json::{Value, json};

use crate::helpers::{CLIENT_ID, Pkce, REDIRECT_URI, TestApp, VERSION, config, spawn, spawn_with};

const PROJECTS: &str = "/orgs/{org_id}/projects";

fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = std::env::var_os("SNYK_OPENAPI_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/snyk-openapi/rest.json")
            });
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read Snyk's OpenAPI document at {} ({e}); set SNYK_OPENAPI_PATH to rest.json",
                path.display()
            )
        });
        let mut doc: Value = serde_json::from_str(&text).expect("rest.json is JSON");
        openapi_nullable_to_json_schema(&mut doc);
        doc
    })
}

/// OpenAPI 3.0's `nullable: true` means "or null"; JSON Schema spells that in `type`.
fn openapi_nullable_to_json_schema(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("nullable") == Some(&Value::Bool(true)) {
                map.remove("nullable");
                match map.get("type").cloned() {
                    Some(Value::String(t)) => {
                        map.insert("type".to_owned(), json!([t, "null"]));
                    }
                    _ => {
                        let inner = Value::Object(std::mem::take(map));
                        map.insert("anyOf".to_owned(), json!([inner, {"type": "null"}]));
                    }
                }
            }
            for child in map.values_mut() {
                openapi_nullable_to_json_schema(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(openapi_nullable_to_json_schema),
        _ => {}
    }
}

fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(pointer) => doc
            .pointer(pointer.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling $ref {pointer}")),
        None => value,
    }
}

/// A validator for the body of `GET {path}` answering `status`, as rest.json declares it.
fn response_validator(path: &str, status: &str) -> Validator {
    let doc = document();
    let declared = &doc["paths"][path]["get"]["responses"][status];
    assert!(
        !declared.is_null(),
        "rest.json declares no {status} for GET {path}"
    );
    let response = resolve(doc, declared);
    let schema = response["content"]["application/vnd.api+json"]["schema"].clone();
    assert!(
        schema.is_object(),
        "no JSON:API schema for {status} of {path}"
    );
    validator_for(schema)
}

/// A validator for a response rest.json declares once under `#/components/responses` (such as
/// `TooManyRequests`, which the listed paths do not name but every REST endpoint may answer).
fn component_response_validator(name: &str) -> Validator {
    let response = &document()["components"]["responses"][name];
    let schema = response["content"]["application/vnd.api+json"]["schema"].clone();
    assert!(schema.is_object(), "no JSON:API schema for response {name}");
    validator_for(schema)
}

fn validator_for(schema: Value) -> Validator {
    let mut root = schema;
    root["components"] = document()["components"].clone();
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root)
        .expect("rest.json schema compiles")
}

fn errors(validator: &Validator, body: &Value) -> Vec<String> {
    validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

fn assert_valid(path: &str, status: &str, body: &Value) {
    let problems = errors(&response_validator(path, status), body);
    assert!(
        problems.is_empty(),
        "{status} of {path} does not match rest.json: {problems:#?}\n{body:#}"
    );
}

fn assert_headers_valid(response: &reqwest::Response) {
    let served = response.headers()["snyk-version-served"].to_str().unwrap();
    let version = validator_for(json!({"$ref": "#/components/schemas/ActualVersion"}));
    assert!(version.is_valid(&json!(served)), "{served}");
    let request_id = response.headers()["snyk-request-id"].to_str().unwrap();
    let uuid = validator_for(json!({"type": "string", "format": "uuid"}));
    assert!(uuid.is_valid(&json!(request_id)), "{request_id}");
}

async fn get(app: &TestApp, path_and_query: &str, token: &str) -> (u16, Value) {
    let response = app.rest(path_and_query, token).await;
    let status = response.status().as_u16();
    if status == 200 {
        assert_headers_valid(&response);
    }
    (status, response.json().await.unwrap())
}

#[test]
fn nullable_becomes_a_null_type() {
    let mut schema = json!({"type": "string", "nullable": true, "properties": {"nullable": {"type": "boolean"}}});
    openapi_nullable_to_json_schema(&mut schema);
    assert_eq!(schema["type"], json!(["string", "null"]));
    assert_eq!(schema["properties"]["nullable"]["type"], "boolean");
}

#[tokio::test]
async fn orgs_pages_match_the_schema() {
    let app = spawn_with(Config {
        orgs: (0..25)
            .map(|i| OrgSeed::new(&format!("Org {i}"), 1))
            .collect(),
        ..config()
    })
    .await;
    let tokens = app.install().await;

    let (status, first) = get(
        &app,
        &format!("/orgs?version={VERSION}"),
        &tokens.access_token,
    )
    .await;
    assert_eq!(status, 200);
    assert_valid("/orgs", "200", &first);
    let (_, second) = get(
        &app,
        first["links"]["next"].as_str().unwrap(),
        &tokens.access_token,
    )
    .await;
    assert!(second["links"].get("prev").is_some() && second["links"].get("next").is_some());
    assert_valid("/orgs", "200", &second);
}

#[tokio::test]
async fn project_pages_match_the_schema() {
    let app = spawn().await;
    let tokens = app.install().await;
    let org = app.org_id("Big Org");

    let (status, first) = get(
        &app,
        &format!("/orgs/{org}/projects?version={VERSION}&limit=100"),
        &tokens.access_token,
    )
    .await;
    assert_eq!(status, 200);
    assert_valid(PROJECTS, "200", &first);

    let mut page = first;
    while let Some(next) = page["links"]
        .get("next")
        .and_then(Value::as_str)
        .map(str::to_owned)
    {
        page = get(&app, &next, &tokens.access_token).await.1;
    }
    assert_eq!(page["data"].as_array().unwrap().len(), 34, "the last page");
    assert_valid(PROJECTS, "200", &page);

    let (_, count) = get(
        &app,
        &format!("/orgs/{org}/projects?version={VERSION}&meta_count=only"),
        &tokens.access_token,
    )
    .await;
    assert_valid(PROJECTS, "200", &count);
}

#[tokio::test]
async fn self_matches_the_schema() {
    let app = spawn().await;
    let tokens = app.install().await;
    let (status, body) = get(
        &app,
        &format!("/self?version={VERSION}"),
        &tokens.access_token,
    )
    .await;
    assert_eq!(status, 200);
    assert_valid("/self", "200", &body);
}

#[tokio::test]
async fn error_documents_match_the_schema() {
    let app = spawn().await;
    let tokens = app.install().await;
    let org = app.org_id("Demo Org");
    let projects = |query: &str| format!("/orgs/{org}/projects?version={VERSION}{query}");

    let (status, bad_limit) = get(&app, &projects("&limit=7"), &tokens.access_token).await;
    assert_eq!(status, 400);
    assert_valid(PROJECTS, "400", &bad_limit);
    let (status, no_version) = get(&app, "/orgs", &tokens.access_token).await;
    assert_eq!(status, 400);
    assert_valid("/orgs", "400", &no_version);

    let (status, unauthorized) = get(&app, &projects(""), "not-a-token").await;
    assert_eq!(status, 401);
    assert_valid(PROJECTS, "401", &unauthorized);
    let (status, unauthorized) =
        get(&app, &format!("/orgs?version={VERSION}"), "not-a-token").await;
    assert_eq!(status, 401);
    assert_valid("/orgs", "401", &unauthorized);

    let unknown = uuid::Uuid::new_v4();
    let (status, not_found) = get(
        &app,
        &format!("/orgs/{unknown}/projects?version={VERSION}"),
        &tokens.access_token,
    )
    .await;
    assert_eq!(status, 404);
    assert_valid(PROJECTS, "404", &not_found);

    let pkce = Pkce::generate();
    let code = app
        .fake
        .approve(CLIENT_ID, REDIRECT_URI, &pkce.challenge, Some("org.read"))
        .unwrap();
    let narrow: crate::helpers::Tokens = app
        .exchange(&code, &pkce.verifier)
        .await
        .json()
        .await
        .unwrap();
    let (status, forbidden) = get(&app, &projects(""), &narrow.access_token).await;
    assert_eq!(status, 403);
    assert_valid(PROJECTS, "403", &forbidden);

    app.fake.inject(Fault::RestErrors {
        status: 500,
        count: 1,
        retry_after: None,
    });
    let (status, server_error) = get(&app, &projects(""), &tokens.access_token).await;
    assert_eq!(status, 500);
    assert_valid(PROJECTS, "500", &server_error);
}

#[tokio::test]
async fn the_rate_limit_answer_matches_the_schema() {
    let app = spawn_with(Config {
        rate_limit_per_minute: 1,
        ..config()
    })
    .await;
    let tokens = app.install().await;
    let org = app.org_id("Demo Org");
    let projects = format!("/orgs/{org}/projects?version={VERSION}");
    assert_eq!(get(&app, &projects, &tokens.access_token).await.0, 200);

    let response = app.rest(&projects, &tokens.access_token).await;
    assert_eq!(response.status().as_u16(), 429);
    let retry_after = response.headers()["retry-after"].to_str().unwrap();
    let header = validator_for(document()["components"]["headers"]["RetryAfter"]["schema"].clone());
    let seconds: Value = serde_json::from_str(retry_after).unwrap();
    assert!(header.is_valid(&seconds), "Retry-After {retry_after}");
    let body: Value = response.json().await.unwrap();
    let problems = errors(&component_response_validator("TooManyRequests"), &body);
    assert!(problems.is_empty(), "{problems:#?}\n{body:#}");
}

#[tokio::test]
async fn the_check_rejects_broken_bodies() {
    let app = spawn().await;
    let tokens = app.install().await;
    let org = app.org_id("Demo Org");
    let (_, page) = get(
        &app,
        &format!("/orgs/{org}/projects?version={VERSION}"),
        &tokens.access_token,
    )
    .await;
    let projects = response_validator(PROJECTS, "200");
    assert!(errors(&projects, &page).is_empty());

    let mut without_type = page.clone();
    without_type["data"][0]["attributes"]
        .as_object_mut()
        .unwrap()
        .remove("type");
    assert!(
        !errors(&projects, &without_type).is_empty(),
        "a project without type passed"
    );

    let mut bad_id = page.clone();
    bad_id["data"][0]["id"] = json!("not-a-uuid");
    assert!(
        !errors(&projects, &bad_id).is_empty(),
        "a non-UUID id passed"
    );

    let mut extra = page;
    extra["data"][0]["attributes"]["colour"] = json!("blue");
    assert!(
        !errors(&projects, &extra).is_empty(),
        "an unknown attribute passed"
    );

    let error_document = response_validator(PROJECTS, "401");
    let (_, unauthorized) = get(
        &app,
        &format!("/orgs/{org}/projects?version={VERSION}"),
        "x",
    )
    .await;
    let mut numeric_status = unauthorized;
    numeric_status["errors"][0]["status"] = json!(401);
    assert!(
        !errors(&error_document, &numeric_status).is_empty(),
        "a numeric status passed"
    );
}
