//! auth-service, the browser side of the install, against a private Redis, the fake Snyk, a real
//! token-service and a real projects-service. A `Browser` (cookies, no automatic redirects) walks
//! every branch of `/auth` and `/callback` and the install page. This file holds what the groups
//! below share: the texts the pages show and readers of a stack's state.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use fake_snyk::OrgSeed;
use serde_json::Value;
use snykapps_proto::token_v1 as pb;
use system_tests::*;

mod failures;
mod hardening;
mod listings;
mod reconnect;
mod sessions;
mod sign_in;

const CANCELLED: &str = "You cancelled the installation";
const EXPIRED: &str = "This sign-in link has expired or was already used; start again.";
const OTHER_BROWSER: &str = "started in another browser";
const REJECTED: &str = "Snyk did not accept the authorization";
const UNAVAILABLE: &str = "Temporarily unavailable";
const RECONNECT_BANNER: &str = "Snyk access was lost; reconnect.";
const REFUSED: &str = "Request refused";
const NOT_YOURS: &str = "This installation cannot be changed from here";
const NOT_IN_TIME: &str = "The project list was not ready in time. Reload the page to try again.";
const RATE_LIMITED: &str =
    "Snyk's request limit for this install is reached for now. Reload the page in a minute.";
const TOO_MANY_PROJECTS: &str =
    "This organization has more projects than the app lists at once, so they are not shown here.";

/// The Reconnect button of install `id`'s page: a form post for that install, never a link to
/// `/auth` (which would make a new install).
fn reconnect_button(id: &str) -> String {
    format!(
        "<form class=\"reconnect\" method=\"post\" action=\"/installs/{id}/reconnect\">\
         <button class=\"button\" type=\"submit\" id=\"reconnect\">Reconnect</button></form>"
    )
}

async fn page(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let html = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = res.text().await.unwrap();
    assert!(
        html.starts_with("text/html"),
        "an HTML page, got {status} {html:?}: {body}"
    );
    (status, body)
}

fn query(url: &reqwest::Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

fn set_cookies(res: &reqwest::Response) -> Vec<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

async fn installs(app: &AuthStack) -> Vec<pb::Install> {
    let mut c = app.token_client().await;
    c.list_installs(pb::ListInstallsRequest {
        page_size: 100,
        page_token: String::new(),
    })
    .await
    .unwrap()
    .into_inner()
    .installs
}

async fn get_install(app: &AuthStack, id: &str) -> pb::Install {
    let mut c = app.token_client().await;
    c.get_install(pb::GetInstallRequest {
        install_id: id.into(),
    })
    .await
    .unwrap()
    .into_inner()
}

/// The names of `org`'s projects, as projects-service lists them.
async fn project_names(app: &AuthStack, org: &str) -> Vec<String> {
    let body: Value = app
        .projects
        .get(&format!("/v1/orgs/{org}/projects"))
        .await
        .json()
        .await
        .unwrap();
    body["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn state_ttl(app: &AuthStack, state: &str) -> i64 {
    let mut c = app.auth_redis.conn().await;
    redis::cmd("TTL")
        .arg(format!("auth:state:{state}"))
        .query_async(&mut c)
        .await
        .unwrap()
}
