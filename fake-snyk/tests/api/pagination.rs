//! Cursor pagination over the REST collections.

use std::collections::HashSet;

use serde_json::Value;

use crate::helpers::{TestApp, VERSION, spawn};

/// Follows `links.next` from `first` to the end; returns every page.
async fn walk(app: &TestApp, first: &str, token: &str) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut next = Some(first.to_owned());
    while let Some(link) = next {
        assert!(pages.len() < 1000, "runaway pagination");
        let page = app.rest_json(&link, token).await;
        next = page["links"].get("next").map(|n| {
            let n = n.as_str().expect("next is a string");
            assert!(n.starts_with('/') && !n.starts_with("/rest"), "{n}");
            n.to_owned()
        });
        pages.push(page);
    }
    pages
}

fn names(pages: &[Value]) -> Vec<String> {
    pages
        .iter()
        .flat_map(|p| p["data"].as_array().unwrap().clone())
        .map(|p| p["attributes"]["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn following_next_returns_every_project_once_and_in_order() {
    let app = spawn().await;
    let tokens = app.install().await;
    let org = app.org_id("Big Org");

    let pages = walk(
        &app,
        &format!("/orgs/{org}/projects?version={VERSION}&limit=100"),
        &tokens.access_token,
    )
    .await;

    assert_eq!(pages.len(), 13);
    let ids: Vec<String> = pages
        .iter()
        .flat_map(|p| p["data"].as_array().unwrap().clone())
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1234);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 1234);
    let names = names(&pages);
    let expected: Vec<String> = (1..=1234)
        .map(|i| names[i - 1].split(':').next().unwrap().to_owned())
        .collect();
    for (i, name) in expected.iter().enumerate() {
        assert_eq!(name, &format!("big-org/service-{:04}", i + 1));
    }
    assert_eq!(pages[12]["data"].as_array().unwrap().len(), 34);
    assert!(pages[12]["links"].get("next").is_none());
    let next = pages[0]["links"]["next"].as_str().unwrap();
    assert!(
        next.starts_with(&format!(
            "/orgs/{org}/projects?version={VERSION}&limit=100&starting_after=v1."
        )),
        "{next}"
    );
}

#[tokio::test]
async fn prev_leads_back_to_the_previous_page() {
    let app = spawn().await;
    let tokens = app.install().await;
    let org = app.org_id("Demo Org");
    let first = app
        .projects_page(org, &format!("version={VERSION}"), &tokens.access_token)
        .await;
    assert!(first["links"].get("prev").is_none());
    let second = app
        .rest_json(
            first["links"]["next"].as_str().unwrap(),
            &tokens.access_token,
        )
        .await;

    let back = app
        .rest_json(
            second["links"]["prev"].as_str().unwrap(),
            &tokens.access_token,
        )
        .await;

    assert_eq!(back["data"], first["data"]);
    assert!(back["links"].get("prev").is_none());
}

#[tokio::test]
async fn orgs_paginate_the_same_way() {
    let app = crate::helpers::spawn_with(fake_snyk::Config {
        orgs: (0..25)
            .map(|i| fake_snyk::OrgSeed::new(&format!("Org {i:02}"), 1))
            .collect(),
        ..crate::helpers::config()
    })
    .await;
    let tokens = app.install().await;

    let pages = walk(
        &app,
        &format!("/orgs?version={VERSION}"),
        &tokens.access_token,
    )
    .await;

    assert_eq!(pages.len(), 3);
    let names: Vec<String> = pages
        .iter()
        .flat_map(|p| p["data"].as_array().unwrap().clone())
        .map(|o| o["attributes"]["name"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..25).map(|i| format!("Org {i:02}")).collect();
    assert_eq!(names, expected);
}
