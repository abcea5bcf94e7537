//! Orgs added at run time: `POST /_fake/orgs` and `FakeSnyk::add_orgs`, so that one fake can
//! serve an install of many large orgs (the install page's benchmark) without a long
//! `FAKE_SNYK_ORGS`.

use fake_snyk::{AddOrgsError, MAX_ORGS, OrgSeed};
use reqwest::{Response, StatusCode};
use serde_json::Value;

use crate::helpers::{TestApp, VERSION, assert_oauth_error, spawn};

/// `POST /_fake/orgs` with `body` declared as `content_type`.
async fn post_orgs(app: &TestApp, content_type: &str, body: &str) -> Response {
    app.post_body("/_fake/orgs", content_type, body).await
}

/// The names of the orgs `token` sees (one page of up to 100).
async fn org_names(app: &TestApp, token: &str) -> Vec<String> {
    let page = app
        .rest_json(&format!("/orgs?version={VERSION}&limit=100"), token)
        .await;
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["attributes"]["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Every project of `org`, paged 100 at a time.
async fn project_count(app: &TestApp, org: uuid::Uuid, token: &str) -> usize {
    let mut count = 0;
    let mut next = Some(format!("/orgs/{org}/projects?version={VERSION}&limit=100"));
    while let Some(path) = next.take() {
        let page = app.rest_json(&path, token).await;
        count += page["data"].as_array().unwrap().len();
        next = page["links"]["next"].as_str().map(str::to_owned);
    }
    count
}

#[tokio::test]
async fn numbered_orgs_are_added_and_listed_with_their_projects() {
    let app = spawn().await;
    let before = app.install().await;

    let response = post_orgs(
        &app,
        "application/json",
        r#"{"name":"Page Org","projects":250,"count":3}"#,
    )
    .await;

    assert_eq!(response.status(), StatusCode::OK);
    let added: Value = response.json().await.unwrap();
    let added = added["orgs"].as_array().unwrap();
    assert_eq!(added.len(), 3);
    assert_eq!(added[0]["name"], "Page Org 1");
    assert_eq!(added[2]["slug"], "page-org-3");
    assert_eq!(added[1]["projects"], 250);
    assert_eq!(added[1]["id"], app.org_id("Page Org 2").to_string());

    // An install covers every org: one made before sees the new orgs too, after the seeded ones.
    let after = app.install().await;
    for token in [&before.access_token, &after.access_token] {
        assert_eq!(
            org_names(&app, token).await,
            [
                "Demo Org",
                "Big Org",
                "Page Org 1",
                "Page Org 2",
                "Page Org 3"
            ]
        );
    }
    let org = app.org_id("Page Org 3");
    assert_eq!(project_count(&app, org, &after.access_token).await, 250);

    // Without a count, one org of that very name.
    let single = post_orgs(&app, "application/json", r#"{"name":"Solo","projects":0}"#).await;
    assert_eq!(single.status(), StatusCode::OK);
    let solo = app.org_id("Solo");
    assert_eq!(project_count(&app, solo, &after.access_token).await, 0);
}

#[tokio::test]
async fn the_library_method_adds_orgs_all_or_none() {
    let app = spawn().await;
    let tokens = app.install().await;

    app.fake
        .add_orgs(&[OrgSeed::new("Extra", 7), OrgSeed::new("More", 1)])
        .unwrap();
    assert_eq!(
        app.fake
            .add_orgs(&[OrgSeed::new("Fresh", 1), OrgSeed::new("Extra", 9)]),
        Err(AddOrgsError::Duplicate {
            name: "Extra".into(),
            id: app.org_id("Extra"),
        })
    );

    assert_eq!(
        org_names(&app, &tokens.access_token).await,
        ["Demo Org", "Big Org", "Extra", "More"]
    );
    let extra = app.org_id("Extra");
    assert_eq!(project_count(&app, extra, &tokens.access_token).await, 7);
}

#[tokio::test]
async fn a_name_served_already_is_a_conflict_and_adds_nothing() {
    let app = spawn().await;
    let numbered = r#"{"name":"Page Org","projects":1,"count":2}"#;
    assert_eq!(
        post_orgs(&app, "application/json", numbered).await.status(),
        StatusCode::OK
    );
    // "Demo Org" is seeded by the config; "Page Org 1" and "2" were just added; "Page Org 3"
    // would be new, but the batch is refused whole.
    for body in [
        r#"{"name":"Demo Org","projects":1}"#,
        numbered,
        r#"{"name":"Page Org","projects":1,"count":3}"#,
    ] {
        let response = post_orgs(&app, "application/json", body).await;
        let description = assert_oauth_error(response, StatusCode::CONFLICT, "conflict").await;
        assert!(
            description.contains("seeded already"),
            "{body}: {description}"
        );
    }
    let too_many = format!(r#"{{"name":"Many","projects":1,"count":{MAX_ORGS}}}"#);
    let response = post_orgs(&app, "application/json", &too_many).await;
    let description = assert_oauth_error(response, StatusCode::CONFLICT, "conflict").await;
    assert!(description.contains("at most"), "{description}");

    let tokens = app.install().await;
    assert_eq!(
        org_names(&app, &tokens.access_token).await,
        ["Demo Org", "Big Org", "Page Org 1", "Page Org 2"]
    );
}

#[tokio::test]
async fn other_bodies_are_a_json_400_and_add_nothing() {
    let app = spawn().await;
    let over = format!(r#"{{"name":"X","projects":1,"count":{}}}"#, MAX_ORGS + 1);
    // (content type, body, what the error description must mention)
    let cases: Vec<(&str, &str, &str)> = vec![
        ("application/json", r#"{"name":" ","projects":1}"#, "name"),
        (
            "application/json",
            r#"{"name":"X","projects":1,"count":0}"#,
            "count must be 1",
        ),
        ("application/json", &over, "count must be 1"),
        ("application/json", r#"{"name":"X","projects":-1}"#, "-1"),
        (
            "application/json",
            r#"{"name":"X"}"#,
            "missing field `projects`",
        ),
        (
            "application/json",
            r#"{"projects":1}"#,
            "missing field `name`",
        ),
        (
            "application/json",
            r#"{"name":"X","projects":1,"extra":1}"#,
            "unknown field `extra`",
        ),
        ("application/json", r#"["X",1]"#, "not a JSON object"),
        ("application/json", "not json", "JSON"),
        ("text/plain", r#"{"name":"X","projects":1}"#, "Content-Type"),
    ];
    for (content_type, body, mentions) in cases {
        let response = post_orgs(&app, content_type, body).await;

        let description =
            assert_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert!(
            description.contains(mentions),
            "{body:?}: {description:?} does not mention {mentions:?}"
        );
    }

    let tokens = app.install().await;
    assert_eq!(
        org_names(&app, &tokens.access_token).await,
        ["Demo Org", "Big Org"]
    );
}
