//! Install-scoped listing: `GET /v1/installs/{install_id}/orgs/{org_id}/projects` lists
//! with that install's token and no other's, and auth-service's install page lists through it, so
//! the holder of an older install never sees an org through a newer install's grant.

use std::{collections::HashSet, time::Duration};

use fake_snyk::{Fault, OrgSeed};
use serde_json::Value;
use snykapps_proto::token_v1 as pb;
use system_tests::*;

const RECONNECT_BANNER: &str = "Snyk access was lost; reconnect.";

/// The fake with hour-long access tokens: no refresh happens unless a test causes one, so every
/// refresh counted below is the one under test.
fn quiet_fake(orgs: Vec<OrgSeed>) -> fake_snyk::Config {
    let mut config = fake_config();
    config.access_token_ttl = Duration::from_secs(3600);
    config.orgs = orgs;
    config
}

/// An install whose user picked `orgs` only at Snyk's consent page.
async fn install_for_orgs(stack: &Stack, c: &mut Client, orgs: &[&OrgSeed]) -> pb::Install {
    let (verifier, challenge) = pkce();
    let ids: Vec<_> = orgs.iter().map(|o| o.id).collect();
    let code = stack
        .fake
        .approve_for_orgs(CLIENT_ID, REDIRECT_URI, &challenge, None, &ids)
        .expect("approved");
    c.complete_install(pb::CompleteInstallRequest {
        code,
        code_verifier: verifier,
        redirect_uri: REDIRECT_URI.into(),
        ..Default::default()
    })
    .await
    .expect("install completes")
    .into_inner()
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

fn rest_401s(stack: &Stack) -> u64 {
    stack
        .fake
        .stats()
        .rest_calls
        .get(&401)
        .copied()
        .unwrap_or(0)
}

async fn json(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    (status, res.json().await.expect("JSON body"))
}

fn ids(body: &Value) -> Vec<String> {
    body["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

fn by_install_path(install: &str, org: &str) -> String {
    format!("/v1/installs/{install}/orgs/{org}/projects")
}

#[tokio::test]
async fn the_install_route_lists_an_install_s_projects_whole() {
    let stack = Stack::start(quiet_fake(vec![OrgSeed::new("Big Org", 1234)])).await;
    let replica = stack.replica(&[]).await;
    let install = stack.install(&mut client(&replica).await).await;
    let org = install.orgs[0].id.clone();
    let projects = stack.projects(replica.addr, &[]).await;

    // Upper case ids are the same ids.
    let (status, body) = json(
        projects
            .get(&by_install_path(
                &install.install_id.to_uppercase(),
                &org.to_uppercase(),
            ))
            .await,
    )
    .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["install_id"], install.install_id.as_str());
    assert_eq!(body["org_id"], org.as_str());
    assert_eq!(body["count"], 1234);
    let got = ids(&body);
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), 1234);
    assert_eq!(project_calls(&stack), 13, "13 pages of 100");
    // The same listing, in the same order, as the org route's (one install: the same grant).
    let (status, by_org) = json(projects.get(&format!("/v1/orgs/{org}/projects")).await).await;
    assert_eq!(status, 200, "{by_org}");
    assert_eq!(got, ids(&by_org));
    assert!(by_org.get("install_id").is_none(), "{by_org}");
    // Filters pass through as on the org route.
    let (status, filtered) = json(
        projects
            .get(&format!(
                "{}?origin=cli",
                by_install_path(&install.install_id, &org)
            ))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{filtered}");
    let expected = by_org["projects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["origin"] == "cli")
        .count();
    assert!(0 < expected && expected < 1234);
    assert_eq!(filtered["count"].as_u64().unwrap() as usize, expected);
}

#[tokio::test]
async fn an_org_the_install_does_not_cover_is_404_unknown_org() {
    let (a, b) = (OrgSeed::new("Org A", 30), OrgSeed::new("Org B", 40));
    let stack = Stack::start(quiet_fake(vec![a.clone(), b.clone()])).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    // The user of the first install picked Org A only; a second install covers both.
    let narrow = install_for_orgs(&stack, &mut c, &[&a]).await;
    let wide = stack.install(&mut c).await;
    let org_ids = |i: &pb::Install| i.orgs.iter().map(|o| o.id.clone()).collect::<Vec<_>>();
    assert_eq!(org_ids(&narrow), [a.id.to_string()]);
    assert_eq!(org_ids(&wide).len(), 2);
    let projects = stack.projects(replica.addr, &[]).await;

    let (status, body) = json(
        projects
            .get(&by_install_path(&narrow.install_id, &b.id.to_string()))
            .await,
    )
    .await;

    assert_eq!((status, body["code"].as_str()), (404, Some("unknown_org")));
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    // Org B exists and is served, through the other install: the org route lists it.
    let (status, body) = json(projects.get(&format!("/v1/orgs/{}/projects", b.id)).await).await;
    assert_eq!((status, body["count"].as_u64()), (200, Some(40)), "{body}");
    // And the narrow install lists the org it covers.
    let (status, body) = json(
        projects
            .get(&by_install_path(&narrow.install_id, &a.id.to_string()))
            .await,
    )
    .await;
    assert_eq!((status, body["count"].as_u64()), (200, Some(30)), "{body}");
    assert_eq!(stack.fake.stats().successful_refreshes, 0);
}

#[tokio::test]
async fn bad_or_unknown_install_ids_get_stable_error_bodies() {
    let stack = Stack::start(quiet_fake(vec![OrgSeed::new("Org A", 10)])).await;
    let replica = stack.replica(&[]).await;
    let install = stack.install(&mut client(&replica).await).await;
    let org = install.orgs[0].id.clone();
    let id = install.install_id.clone();
    let projects = stack.projects(replica.addr, &[]).await;
    let unknown = "123e4567-e89b-12d3-a456-426614174000";
    let http = reqwest::Client::new();
    let url = |path: String| format!("{}{path}", projects.url);

    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            http.get(url(by_install_path(&id, &org))),
            401,
            "unauthorized",
        ),
        (
            http.get(url(by_install_path("not-a-uuid", &org)))
                .bearer_auth(PROJECTS_KEY),
            400,
            "bad_request",
        ),
        (
            // A UUID without hyphens is not the form token-service knows.
            http.get(url(by_install_path(&id.replace('-', ""), &org)))
                .bearer_auth(PROJECTS_KEY),
            400,
            "bad_request",
        ),
        (
            http.get(url(by_install_path(&id, "not-a-uuid")))
                .bearer_auth(PROJECTS_KEY),
            400,
            "bad_request",
        ),
        (
            http.get(url(format!("{}?unknown=1", by_install_path(&id, &org))))
                .bearer_auth(PROJECTS_KEY),
            400,
            "bad_request",
        ),
        (
            http.get(url(by_install_path(unknown, &org)))
                .bearer_auth(PROJECTS_KEY),
            404,
            "unknown_install",
        ),
        (
            http.get(url(format!("/v1/installs/{id}/projects")))
                .bearer_auth(PROJECTS_KEY),
            404,
            "not_found",
        ),
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
    assert_eq!(project_calls(&stack), 0, "bad input never reaches Snyk");
}

#[tokio::test]
async fn a_401_mid_listing_costs_one_forced_refresh_of_that_install() {
    let stack = Stack::start(quiet_fake(vec![OrgSeed::new("Big Org", 1234)])).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    // Two installs of the same org: a refresh by org would refresh the newer one.
    let older = stack.install(&mut c).await;
    let newer = stack.install(&mut c).await;
    let org = older.orgs[0].id.clone();
    let older_t0 = access_token(&mut c, &older.install_id).await;
    let newer_t0 = access_token(&mut c, &newer.install_id).await;
    let projects = stack.projects(replica.addr, &[]).await;
    stack
        .fake
        .inject(Fault::ExpireAccessTokensAfterRestCalls(5));

    let (status, body) = json(
        projects
            .get(&by_install_path(&older.install_id, &org))
            .await,
    )
    .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"], 1234);
    let stats = stack.fake.stats();
    assert_eq!(stats.successful_refreshes, 1, "{stats:?}");
    assert_eq!(stats.spent_refresh_token_reuses, 0);
    assert_eq!(stats.rest_calls.get(&401), Some(&1), "{stats:?}");
    // 13 pages plus the one that was rejected: paging resumed at the failed page.
    assert_eq!(project_calls(&stack), 14);
    // The refresh was the older install's: its token changed, the newer one's did not.
    // (Compared, never printed: tokens stay out of test output too.)
    assert!(
        access_token(&mut c, &older.install_id).await != older_t0,
        "the older install's token was refreshed"
    );
    assert!(
        access_token(&mut c, &newer.install_id).await == newer_t0,
        "the newer install's token was left alone"
    );
}

#[tokio::test]
async fn an_older_install_lists_with_its_own_token_not_the_newest_one() {
    let stack = Stack::start(quiet_fake(vec![OrgSeed::new("Shared Org", 120)])).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let older = stack.install(&mut c).await;
    let newer = stack.install(&mut c).await;
    let org = older.orgs[0].id.clone();
    assert_eq!(newer.orgs[0].id, org, "both installs cover the org");
    // The newer install, the one that serves the org, is removed at Snyk.
    stack
        .revoke_at_snyk(&access_token(&mut c, &newer.install_id).await)
        .await;
    let projects = stack.projects(replica.addr, &[]).await;

    let (status, body) = json(
        projects
            .get(&by_install_path(&older.install_id, &org))
            .await,
    )
    .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"], 120);
    assert_eq!(
        rest_401s(&stack),
        0,
        "the revoked newer token never reached Snyk"
    );
    assert_eq!(stack.refresh_calls(), 0);
    assert_eq!(
        install_status(&mut c, &newer.install_id).await.status,
        pb::InstallStatus::Active as i32,
        "nothing touched the newer install"
    );
    // The test can tell: the org route presents the newer install's token first, meets Snyk's
    // 401, and its forced refresh finds the grant revoked (token-service then falls back to the
    // older install for the org).
    let (status, body) = json(projects.get(&format!("/v1/orgs/{org}/projects")).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(rest_401s(&stack), 1);
    assert_eq!(
        install_status(&mut c, &newer.install_id).await.status,
        pb::InstallStatus::NeedsReauth as i32
    );
}

/// auth-service's install page of the older of two installs of the same org lists through its
/// own install: revoking the newer install at Snyk does not disturb it.
#[tokio::test]
async fn the_install_page_of_an_older_install_lists_through_its_own_install() {
    let app = AuthStack::start().await;
    let (first, second) = (Browser::new(), Browser::new());
    let older = app.install(&first).await;
    let newer = app.install(&second).await;
    let mut c = app.token_client().await;
    let newer_token = c
        .get_access_token(by_install(&newer))
        .await
        .unwrap()
        .into_inner()
        .access_token;
    app.stack.revoke_at_snyk(&newer_token).await;

    let res = first.get(&app.url(&format!("/installs/{older}"))).await;
    let status = res.status().as_u16();
    let body = res.text().await.unwrap();

    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<h2>Demo Org</h2>"), "{body}");
    assert!(body.contains("25 projects"), "{body}");
    assert!(!body.contains(RECONNECT_BANNER), "{body}");
    assert_eq!(
        rest_401s(&app.stack),
        0,
        "the newer token never reached Snyk"
    );
    assert_eq!(
        install_status(&mut c, &newer).await.status,
        pb::InstallStatus::Active as i32
    );
    // The newer install's own page does meet its revocation.
    let res = second.get(&app.url(&format!("/installs/{newer}"))).await;
    assert_eq!(res.status(), 200);
    let body = res.text().await.unwrap();
    assert!(body.contains(RECONNECT_BANNER), "{body}");
}
