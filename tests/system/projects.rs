//! projects-service against a real token-service, a private Redis and the fake Snyk.

use std::{collections::HashSet, time::Duration};

use fake_snyk::{Fault, OrgSeed};
use futures::future::join_all;
use serde_json::Value;
use snykapps_proto::token_v1 as pb;
use system_tests::*;

/// A stack whose install sees one org of `projects` projects; returns the org id too.
async fn stack_with_org(projects: usize) -> (Stack, Replica, String) {
    stack_with_org_config(projects, fake_config()).await
}

async fn stack_with_org_config(
    projects: usize,
    mut config: fake_snyk::Config,
) -> (Stack, Replica, String) {
    config.orgs = vec![OrgSeed::new("Big Org", projects)];
    let stack = Stack::start(config).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let org = install.orgs[0].id.clone();
    (stack, replica, org)
}

fn project_calls(stack: &Stack) -> u64 {
    stack
        .fake
        .stats()
        .rest_calls_by_path
        .get("projects")
        .copied()
        .unwrap_or(0)
}

async fn json(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    (status, res.json().await.expect("JSON body"))
}

/// The projects of `org` straight from the fake, in Snyk's order. A token for each page: the
/// stack's tokens live 2 s, less than a whole listing may take on a loaded machine.
async fn direct_listing(stack: &Stack, replica: &Replica, org: &str) -> Vec<String> {
    let mut c = client(replica).await;
    let http = reqwest::Client::new();
    let mut url = format!(
        "{}/rest/orgs/{org}/projects?version=2024-05-31&limit=100",
        stack.fake.url()
    );
    let mut ids = Vec::new();
    loop {
        let token = c
            .get_access_token(pb::GetAccessTokenRequest {
                target: Some(pb::get_access_token_request::Target::OrgId(org.into())),
                min_validity_seconds: 1,
            })
            .await
            .unwrap()
            .into_inner()
            .access_token;
        let page: Value = http
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_str().unwrap().to_owned()),
        );
        match page["links"]["next"].as_str() {
            Some(next) => url = format!("{}/rest{next}", stack.fake.url()),
            None => return ids,
        }
    }
}

#[tokio::test]
async fn lists_every_project_in_order() {
    let (stack, replica, org) = stack_with_org(1234).await;
    let projects = stack.projects(replica.addr, &[]).await;

    let (status, body) = json(projects.get(&format!("/v1/orgs/{org}/projects")).await).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["org_id"], org.as_str());
    assert_eq!(body["count"], 1234);
    let got: Vec<String> = body["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    let expected = direct_listing(&stack, &replica, &org).await;
    assert_eq!(got, expected, "whole and in Snyk's order");
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), 1234);
    let first = &body["projects"][0];
    for field in [
        "id",
        "name",
        "type",
        "origin",
        "status",
        "target_file",
        "target_reference",
        "created",
    ] {
        assert!(first.get(field).is_some(), "{field} missing in {first}");
    }
    assert_eq!(
        project_calls(&stack),
        13 * 2,
        "13 pages through the service, 13 directly"
    );
}

/// `PROJECTS_SERVICE_MAX_PROJECTS`: a listing that would pass it fetches no page after the one
/// that passed it and answers 422 `too_many_projects`, saying to narrow it; narrowed by a
/// filter, or exactly at the cap, it is whole.
#[tokio::test]
async fn a_listing_over_the_project_cap_stops_at_the_page_that_passed_it() {
    let (stack, replica, org) = stack_with_org(1234).await;
    let capped = stack
        .projects(replica.addr, &[("PROJECTS_SERVICE_MAX_PROJECTS", "250")])
        .await;
    let path = format!("/v1/orgs/{org}/projects");

    let (status, body) = json(capped.get(&path).await).await;

    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "too_many_projects");
    let message = body["message"].as_str().unwrap();
    for part in [
        "more than 250 projects",
        "PROJECTS_SERVICE_MAX_PROJECTS",
        "names_start_with",
    ] {
        assert!(message.contains(part), "{part} in {message}");
    }
    assert_eq!(
        project_calls(&stack),
        3,
        "pages 1 and 2 (200 projects), then page 3 passed the cap: no page after it"
    );

    // One origin in five: 247 projects, under the cap.
    let (status, body) = json(capped.get(&format!("{path}?origin=github")).await).await;
    assert_eq!((status, &body["count"]), (200, &serde_json::json!(247)));
    let at_cap = stack
        .projects(replica.addr, &[("PROJECTS_SERVICE_MAX_PROJECTS", "1234")])
        .await;
    let (status, body) = json(at_cap.get(&path).await).await;
    assert_eq!((status, &body["count"]), (200, &serde_json::json!(1234)));
}

#[tokio::test]
async fn filters_pass_through() {
    let (stack, replica, org) = stack_with_org(120).await;
    let projects = stack.projects(replica.addr, &[]).await;
    let (status, all) = json(projects.get(&format!("/v1/orgs/{org}/projects")).await).await;
    assert_eq!(status, 200);
    let origin = all["projects"][0]["origin"].as_str().unwrap().to_owned();
    let expected = all["projects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["origin"] == origin.as_str())
        .count();

    let (status, filtered) = json(
        projects
            .get(&format!("/v1/orgs/{org}/projects?origin={origin}"))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{filtered}");
    assert_eq!(filtered["count"].as_u64().unwrap() as usize, expected);
    assert!(
        expected < 120,
        "the filter must narrow something for this test to mean anything"
    );
}

#[tokio::test]
async fn token_revoked_mid_listing_costs_exactly_one_refresh() {
    let (stack, replica, org) = stack_with_org(1234).await;
    let projects = stack.projects(replica.addr, &[]).await;
    stack
        .fake
        .inject(Fault::ExpireAccessTokensAfterRestCalls(5));

    let (status, body) = json(projects.get(&format!("/v1/orgs/{org}/projects")).await).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"], 1234);
    let stats = stack.fake.stats();
    assert_eq!(stats.successful_refreshes, 1, "{stats:?}");
    assert_eq!(stats.spent_refresh_token_reuses, 0);
    assert_eq!(stats.rest_calls.get(&401), Some(&1), "{stats:?}");
    // 13 pages plus the one that was rejected: paging resumed at the failed page.
    assert_eq!(project_calls(&stack), 14);
}

#[tokio::test]
async fn fifty_concurrent_listings_on_an_expired_token_refresh_once() {
    // Hour-long tokens, expired at Snyk all at once: every listing's first page gets a 401 with
    // the same token, and all of them ask for a forced refresh together. (With 2-second tokens a
    // listing this long on a debug build legitimately needs a second refresh.)
    let mut config = fake_config();
    config.access_token_ttl = Duration::from_secs(3600);
    let (stack, replica, org) = stack_with_org_config(250, config).await;
    let projects = stack.projects(replica.addr, &[]).await;
    stack.fake.expire_access_tokens();

    let calls = (0..50).map(|_| projects.get(&format!("/v1/orgs/{org}/projects")));
    let responses = join_all(calls).await;

    for res in responses {
        let (status, body) = json(res).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["count"], 250);
    }
    let stats = stack.fake.stats();
    assert_eq!(stats.successful_refreshes, 1, "{stats:?}");
    assert_eq!(stats.spent_refresh_token_reuses, 0);
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried() {
    let (stack, replica, org) = stack_with_org(250).await;
    let projects = stack.projects(replica.addr, &[]).await;

    stack.fake.inject(Fault::RestErrors {
        status: 429,
        count: 1,
        retry_after: Some(1),
    });
    stack.fake.inject(Fault::RestErrors {
        status: 500,
        count: 1,
        retry_after: None,
    });
    let started = std::time::Instant::now();
    let (status, body) = json(projects.get(&format!("/v1/orgs/{org}/projects")).await).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"], 250);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(
        project_calls(&stack),
        3 + 2,
        "3 pages plus the two failed attempts"
    );
}

#[tokio::test]
async fn snyk_down_beyond_the_budget_is_503_with_retry_after() {
    let (stack, replica, org) = stack_with_org(10).await;
    let projects = stack
        .projects(replica.addr, &[("SNYK_REST_RETRIES", "1")])
        .await;
    stack.fake.inject(Fault::RestErrors {
        status: 503,
        count: 5,
        retry_after: None,
    });

    let res = projects.get(&format!("/v1/orgs/{org}/projects")).await;
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let (status, body) = json(res).await;

    assert_eq!(status, 503);
    assert_eq!(body["code"], "unavailable");
    assert!(retry_after.is_some());
}

#[tokio::test]
async fn needs_reauth_is_409() {
    let (stack, replica, org) = stack_with_org(10).await;
    let projects = stack.projects(replica.addr, &[]).await;
    // The user revokes the app at Snyk; the next refresh gets invalid_grant.
    let mut c = client(&replica).await;
    let token = c
        .get_access_token(pb::GetAccessTokenRequest {
            target: Some(pb::get_access_token_request::Target::OrgId(org.clone())),
            min_validity_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner();
    stack.revoke_at_snyk(&token.access_token).await;

    let (status, body) = json(projects.get(&format!("/v1/orgs/{org}/projects")).await).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "needs_reauth");
    // And stays 409 without another refresh attempt.
    let before = stack.fake.stats().token_calls.get("refresh_token").copied();
    let (status, _) = json(projects.get(&format!("/v1/orgs/{org}/projects")).await).await;
    assert_eq!(status, 409);
    assert_eq!(
        stack.fake.stats().token_calls.get("refresh_token").copied(),
        before
    );
}

#[tokio::test]
async fn bad_requests_get_stable_error_bodies() {
    let (stack, replica, org) = stack_with_org(10).await;
    let projects = stack.projects(replica.addr, &[]).await;
    let http = reqwest::Client::new();

    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            http.get(format!("{}/v1/orgs/{org}/projects", projects.url)),
            401,
            "unauthorized",
        ),
        (
            http.get(format!("{}/v1/orgs/{org}/projects", projects.url))
                .bearer_auth("wrong-key-000000000000"),
            401,
            "unauthorized",
        ),
        (
            // auth-service's key lists by install only.
            http.get(format!("{}/v1/orgs/{org}/projects", projects.url))
                .bearer_auth(PROJECTS_KEY),
            403,
            "forbidden",
        ),
        (
            http.get(format!("{}/v1/orgs/not-a-uuid/projects", projects.url))
                .bearer_auth(PROJECTS_OPS_KEY),
            400,
            "bad_request",
        ),
        (
            http.get(format!(
                "{}/v1/orgs/{org}/projects?origin=a%20b",
                projects.url
            ))
            .bearer_auth(PROJECTS_OPS_KEY),
            400,
            "bad_request",
        ),
        (
            http.get(format!("{}/v1/orgs/{org}/projects?unknown=1", projects.url))
                .bearer_auth(PROJECTS_OPS_KEY),
            400,
            "bad_request",
        ),
        (
            http.get(format!(
                "{}/v1/orgs/{org}/projects?names_start_with={}",
                projects.url,
                "a".repeat(300)
            ))
            .bearer_auth(PROJECTS_OPS_KEY),
            400,
            "bad_request",
        ),
        (
            http.get(format!(
                "{}/v1/orgs/123e4567-e89b-12d3-a456-426614174000/projects",
                projects.url
            ))
            .bearer_auth(PROJECTS_OPS_KEY),
            404,
            "unknown_org",
        ),
        (http.get(format!("{}/nope", projects.url)), 404, "not_found"),
    ];
    for (req, status, code) in cases {
        let (got, body) = json(req.send().await.unwrap()).await;
        assert_eq!(
            (got, body["code"].as_str().unwrap()),
            (status, code),
            "{body}"
        );
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(
        stack.fake.stats().rest_calls_by_path.get("projects"),
        None,
        "bad input never reaches Snyk"
    );
}

#[tokio::test]
async fn token_service_down_is_503_and_readyz_says_so() {
    let (stack, replica, org) = stack_with_org(10).await;
    let projects = stack.projects(replica.addr, &[]).await;
    let ready = reqwest::get(format!("{}/readyz", projects.url))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    replica.stop().await.unwrap();

    let res = projects.get(&format!("/v1/orgs/{org}/projects")).await;
    assert!(res.headers().contains_key("retry-after"));
    let (status, body) = json(res).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "unavailable");
    let ready = reqwest::get(format!("{}/readyz", projects.url))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let health = reqwest::get(format!("{}/healthz", projects.url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn several_orgs_concurrently_still_refresh_once_per_install() {
    let mut config = fake_config();
    config.access_token_ttl = Duration::from_secs(3600);
    config.orgs = vec![
        OrgSeed::new("Org A", 150),
        OrgSeed::new("Org B", 150),
        OrgSeed::new("Org C", 150),
    ];
    let stack = Stack::start(config).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let projects = stack.projects(replica.addr, &[]).await;
    stack.fake.expire_access_tokens();

    let calls = install
        .orgs
        .iter()
        .cycle()
        .take(30)
        .map(|o| projects.get(&format!("/v1/orgs/{}/projects", o.id)));
    for res in join_all(calls).await {
        let (status, body) = json(res).await;
        assert_eq!((status, body["count"].as_u64()), (200, Some(150)), "{body}");
    }
    let stats = stack.fake.stats();
    assert_eq!(stats.successful_refreshes, 1, "{stats:?}");
    assert_eq!(stats.spent_refresh_token_reuses, 0);
}

#[tokio::test]
async fn a_second_401_after_the_refresh_is_an_error_not_a_loop() {
    let (stack, replica, org) = stack_with_org(10).await;
    let projects = stack.projects(replica.addr, &[]).await;
    stack.fake.inject(Fault::RestErrors {
        status: 401,
        count: 3,
        retry_after: None,
    });

    let (status, body) = json(projects.get(&format!("/v1/orgs/{org}/projects")).await).await;

    assert_eq!(status, 502, "{body}");
    assert_eq!(body["code"], "upstream_error");
    assert_eq!(
        project_calls(&stack),
        2,
        "one attempt, one retry after the refresh"
    );
    assert_eq!(stack.fake.stats().successful_refreshes, 1);
}
