//! The REST API: authentication, version negotiation, parameters, bodies and counters.

use std::time::Duration;

use fake_snyk::Config;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{VERSION, assert_rest_error, config, spawn, spawn_with};

#[tokio::test]
async fn self_returns_the_app_instance_with_snyk_headers() {
    let app = spawn().await;
    let tokens = app.install().await;

    let response = app
        .rest(&format!("/self?version={VERSION}"), &tokens.access_token)
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/vnd.api+json");
    assert!(uuid::Uuid::parse_str(headers["snyk-request-id"].to_str().unwrap()).is_ok());
    assert_eq!(headers["snyk-version-requested"], VERSION);
    assert_eq!(headers["snyk-version-served"], "2024-04-22");
    assert_eq!(headers["snyk-version-lifecycle-stage"], "ga");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["type"], "app_instance");
    assert_eq!(body["data"]["id"], tokens.bot_id.to_string());
    assert_eq!(body["links"]["self"], format!("/self?version={VERSION}"));
}

#[tokio::test]
async fn orgs_lists_the_seeded_orgs() {
    let app = spawn().await;
    let tokens = app.install().await;

    let body = app
        .rest_json(&format!("/orgs?version={VERSION}"), &tokens.access_token)
        .await;

    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["type"], "org");
    assert_eq!(data[0]["id"], app.org_id("Demo Org").to_string());
    assert_eq!(data[0]["attributes"]["name"], "Demo Org");
    assert_eq!(data[0]["attributes"]["slug"], "demo-org");
    assert_eq!(data[0]["attributes"]["is_personal"], false);
    assert_eq!(data[1]["attributes"]["name"], "Big Org");
    assert!(body["links"].get("next").is_none());
    assert_eq!(body["jsonapi"]["version"], "1.0");

    let filtered = app
        .rest_json(
            &format!("/orgs?version={VERSION}&slug=big-org"),
            &tokens.access_token,
        )
        .await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn missing_or_unknown_credentials_get_401() {
    let app = spawn().await;
    let tokens = app.install().await;
    let url = format!("{}/rest/orgs?version={VERSION}", app.base);

    let none = app.client.get(&url).send().await.unwrap();
    assert_rest_error(none, 401).await;
    for value in [
        format!("token {}", tokens.access_token),
        "bearer snyk_at_made_up".to_owned(),
        tokens.access_token.clone(),
        format!("bearer {}", tokens.refresh_token),
    ] {
        let response = app
            .client
            .get(&url)
            .header("authorization", value.clone())
            .send()
            .await
            .unwrap();
        assert_rest_error(response, 401).await;
    }
    // The scheme is case-insensitive.
    for scheme in ["Bearer", "BEARER", "bearer"] {
        let response = app
            .client
            .get(&url)
            .header("authorization", format!("{scheme} {}", tokens.access_token))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{scheme}");
    }
}

#[tokio::test]
async fn an_access_token_expires_after_its_ttl() {
    let app = spawn_with(Config {
        access_token_ttl: Duration::from_secs(1),
        ..config()
    })
    .await;
    let tokens = app.install().await;
    assert_eq!(tokens.expires_in, 1);
    let url = format!("/orgs?version={VERSION}");
    assert_eq!(
        app.rest(&url, &tokens.access_token).await.status(),
        StatusCode::OK
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;

    assert_rest_error(app.rest(&url, &tokens.access_token).await, 401).await;
    let fresh = app.refresh_ok(&tokens.refresh_token).await;
    assert_eq!(
        app.rest(&url, &fresh.access_token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn expire_access_tokens_makes_rest_answer_401_until_a_refresh() {
    let app = spawn().await;
    let tokens = app.install().await;
    let url = format!("/orgs?version={VERSION}");

    app.fake.expire_access_tokens();

    assert_rest_error(app.rest(&url, &tokens.access_token).await, 401).await;
    assert_eq!(app.fake.live_refresh_tokens(), 1);
    let fresh = app.refresh_ok(&tokens.refresh_token).await;
    assert_eq!(
        app.rest(&url, &fresh.access_token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn version_is_required_and_must_be_well_formed() {
    let app = spawn().await;
    let tokens = app.install().await;
    for query in [
        "",
        "?version=",
        "?version=2024-5-31",
        "?version=2024-02-30",
        "?version=latest",
        "?version=beta",
        "?version=2024-05-31~gamma",
        "?version=2999-01-01",
        "?version=2024-05-31&version=2024-05-31",
    ] {
        let response = app
            .rest(&format!("/orgs{query}"), &tokens.access_token)
            .await;
        let body = assert_rest_error(response, 400).await;
        assert_eq!(
            body["errors"][0]["source"]["parameter"], "version",
            "{query}"
        );
    }
}

#[tokio::test]
async fn the_newest_release_on_or_before_the_date_is_served() {
    let app = spawn().await;
    let tokens = app.install().await;
    let org = app.org_id("Demo Org");
    for (version, served, stage) in [
        ("2024-05-31", "2024-05-31", "ga"),
        ("2025-01-15", "2024-05-31", "ga"),
        ("2023-10-01", "2023-09-11", "ga"),
        ("2023-10-01~beta", "2023-09-11", "ga"),
        (
            "2022-12-31~experimental",
            "2022-12-21~experimental",
            "experimental",
        ),
        ("2022-12-31~beta", "2021-06-04~beta", "beta"),
    ] {
        let response = app
            .rest(
                &format!("/orgs/{org}/projects?version={version}"),
                &tokens.access_token,
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{version}");
        assert_eq!(
            response.headers()["snyk-version-served"],
            served,
            "{version}"
        );
        assert_eq!(response.headers()["snyk-version-lifecycle-stage"], stage);
    }
    // Before the endpoint's first matching release: 404.
    let response = app
        .rest(
            &format!("/orgs/{org}/projects?version=2023-01-01"),
            &tokens.access_token,
        )
        .await;
    let body = assert_rest_error(response, 404).await;
    assert_eq!(body["errors"][0]["source"]["parameter"], "version");
}

#[tokio::test]
async fn limit_must_be_a_multiple_of_ten_from_10_to_100() {
    let app = spawn().await;
    let tokens = app.install().await;
    let org = app.org_id("Big Org");
    for limit in ["0", "5", "15", "110", "1000", "abc", "-10", "20.0"] {
        let response = app
            .rest(
                &format!("/orgs/{org}/projects?version={VERSION}&limit={limit}"),
                &tokens.access_token,
            )
            .await;
        let body = assert_rest_error(response, 400).await;
        assert_eq!(body["errors"][0]["source"]["parameter"], "limit", "{limit}");
    }
    for (limit, expected) in [("10", 10), ("100", 100)] {
        let body = app
            .projects_page(
                org,
                &format!("version={VERSION}&limit={limit}"),
                &tokens.access_token,
            )
            .await;
        assert_eq!(body["data"].as_array().unwrap().len(), expected);
    }
    let default = app
        .projects_page(org, &format!("version={VERSION}"), &tokens.access_token)
        .await;
    assert_eq!(default["data"].as_array().unwrap().len(), 10);
}

#[tokio::test]
async fn org_id_must_be_a_known_uuid() {
    let app = spawn().await;
    let tokens = app.install().await;

    let bad = app
        .rest(
            &format!("/orgs/not-a-uuid/projects?version={VERSION}"),
            &tokens.access_token,
        )
        .await;
    let body = assert_rest_error(bad, 400).await;
    assert_eq!(body["errors"][0]["source"]["parameter"], "org_id");

    let unknown = uuid::Uuid::new_v4();
    let missing = app
        .rest(
            &format!("/orgs/{unknown}/projects?version={VERSION}"),
            &tokens.access_token,
        )
        .await;
    assert_rest_error(missing, 404).await;
}

#[tokio::test]
async fn malformed_cursors_and_unknown_paths_are_refused() {
    let app = spawn().await;
    let tokens = app.install().await;
    let org = app.org_id("Demo Org");
    for cursor in ["garbage", "v1.", "v1.e30", "v2.eyJpIjoxfQ"] {
        let response = app
            .rest(
                &format!("/orgs/{org}/projects?version={VERSION}&starting_after={cursor}"),
                &tokens.access_token,
            )
            .await;
        let body = assert_rest_error(response, 400).await;
        assert_eq!(body["errors"][0]["source"]["parameter"], "starting_after");
    }

    let unknown = app
        .rest(
            &format!("/orgs/{org}/targets?version={VERSION}"),
            &tokens.access_token,
        )
        .await;
    assert_rest_error(unknown, 404).await;
}

#[tokio::test]
async fn unknown_query_parameters_are_ignored() {
    let app = spawn().await;
    let tokens = app.install().await;
    let org = app.org_id("Demo Org");
    let body = app
        .projects_page(
            org,
            &format!("version={VERSION}&tags=a:b&lifecycle=production&expand=target&whatever=1"),
            &tokens.access_token,
        )
        .await;
    assert_eq!(body["data"].as_array().unwrap().len(), 10);
}

#[tokio::test]
async fn project_attributes_are_complete_and_deterministic() {
    let app = spawn().await;
    let tokens = app.install().await;
    let org = app.org_id("Demo Org");

    let first = app
        .projects_page(org, &format!("version={VERSION}"), &tokens.access_token)
        .await;
    let again = app
        .projects_page(org, &format!("version={VERSION}"), &tokens.access_token)
        .await;

    assert_eq!(first["data"], again["data"]);
    let project = &first["data"][0];
    assert_eq!(project["type"], "project");
    assert_eq!(
        project["attributes"]["name"],
        "demo-org/service-0001:package.json"
    );
    for field in [
        "name",
        "type",
        "target_file",
        "target_reference",
        "origin",
        "created",
        "status",
        "read_only",
        "settings",
    ] {
        assert!(project["attributes"].get(field).is_some(), "{field}");
    }
    assert_eq!(project["attributes"]["status"], "active");
    assert_eq!(
        project["relationships"]["organization"]["data"]["id"],
        org.to_string()
    );
    let types: std::collections::BTreeSet<&str> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["attributes"]["type"].as_str().unwrap())
        .collect();
    assert!(types.len() > 3, "{types:?}");
}

#[tokio::test]
async fn filters_select_projects() {
    let app = spawn().await;
    let tokens = app.install().await;
    let org = app.org_id("Big Org");
    let all_of = |body: &Value, field: &str, allowed: &[&str]| {
        let data = body["data"].as_array().unwrap();
        assert!(!data.is_empty());
        for p in data {
            let value = p["attributes"][field].as_str().unwrap();
            assert!(
                allowed.iter().any(|a| value.starts_with(a)),
                "{field}={value}"
            );
        }
    };
    let q = |extra: &str| format!("version={VERSION}&limit=100&{extra}");

    let npm = app
        .projects_page(org, &q("types=npm,pip"), &tokens.access_token)
        .await;
    all_of(&npm, "type", &["npm", "pip"]);
    let cli = app
        .projects_page(org, &q("origins=cli"), &tokens.access_token)
        .await;
    all_of(&cli, "origin", &["cli"]);
    let prefix = app
        .projects_page(
            org,
            &q("names_start_with=big-org/service-0"),
            &tokens.access_token,
        )
        .await;
    all_of(&prefix, "name", &["big-org/service-0"]);
    assert_eq!(prefix["data"].as_array().unwrap().len(), 100);
    // Filters travel with the next link.
    assert!(
        prefix["links"]["next"]
            .as_str()
            .unwrap()
            .contains("names_start_with=")
    );

    let count = app
        .projects_page(
            org,
            &format!("version={VERSION}&meta_count=only"),
            &tokens.access_token,
        )
        .await;
    assert_eq!(count["meta"]["count"], 1234);
}

#[tokio::test]
async fn rest_calls_are_counted_by_status_and_path() {
    let app = spawn().await;
    let tokens = app.install().await;
    let org = app.org_id("Demo Org");
    app.rest(&format!("/orgs?version={VERSION}"), &tokens.access_token)
        .await;
    app.rest(
        &format!("/orgs/{org}/projects?version={VERSION}"),
        &tokens.access_token,
    )
    .await;
    app.rest(&format!("/orgs/{org}/projects?version={VERSION}"), "nope")
        .await;
    app.rest(&format!("/self?version={VERSION}"), &tokens.access_token)
        .await;
    app.rest("/orgs", &tokens.access_token).await;

    let stats = app.fake.stats();
    assert_eq!(stats.rest_calls.get(&200), Some(&3));
    assert_eq!(stats.rest_calls.get(&401), Some(&1));
    assert_eq!(stats.rest_calls.get(&400), Some(&1));
    assert_eq!(stats.rest_calls_by_path["orgs"], 2);
    assert_eq!(stats.rest_calls_by_path["projects"], 2);
    assert_eq!(stats.rest_calls_by_path["self"], 1);
}

#[tokio::test]
async fn an_install_in_chosen_orgs_sees_those_orgs_only() {
    let app = spawn().await;
    let (demo, big) = (app.org_id("Demo Org"), app.org_id("Big Org"));
    let pkce = crate::helpers::Pkce::generate();
    let code = app
        .fake
        .approve_for_orgs(
            crate::helpers::CLIENT_ID,
            crate::helpers::REDIRECT_URI,
            &pkce.challenge,
            None,
            &[big],
        )
        .unwrap();
    let response = app.exchange(&code, &pkce.verifier).await;
    assert_eq!(response.status(), StatusCode::OK);
    let narrow: crate::helpers::Tokens = response.json().await.unwrap();
    let everywhere = app.install().await;

    let orgs = app
        .rest_json(&format!("/orgs?version={VERSION}"), &narrow.access_token)
        .await;
    let ids: Vec<&str> = orgs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [big.to_string()]);
    let me = app
        .rest_json(&format!("/self?version={VERSION}"), &narrow.access_token)
        .await;
    assert_eq!(
        me["data"]["attributes"]["default_org_context"],
        big.to_string()
    );
    let page = app
        .projects_page(big, &format!("version={VERSION}"), &narrow.access_token)
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 10);

    // Outside the install: the same 404 as an org that does not exist.
    let hidden = app
        .rest(
            &format!("/orgs/{demo}/projects?version={VERSION}"),
            &narrow.access_token,
        )
        .await;
    assert_rest_error(hidden, 404).await;

    // Another install of the same app still sees every org.
    let page = app
        .projects_page(
            demo,
            &format!("version={VERSION}"),
            &everywhere.access_token,
        )
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 10);
    let all = app
        .rest_json(
            &format!("/orgs?version={VERSION}"),
            &everywhere.access_token,
        )
        .await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
}
