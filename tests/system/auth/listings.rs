//! The install page's org listings: at most four at a time, in the page's order, each within
//! `PROJECTS_SERVICE_TIMEOUT_MS`; an org not listed in time, or with more projects than
//! projects-service lists at once, says so in its own section while the others are listed, and
//! the page stays a 200.

use std::time::{Duration, Instant};

use fake_snyk::{Fault, OrgSeed};
use system_tests::*;

use super::{NOT_IN_TIME, RATE_LIMITED, TOO_MANY_PROJECTS, get_install, page};

/// Six orgs, more than are listed at once: `Org 1` to `Org 6`, with 11 to 16 projects, so that
/// each section's count is its own.
fn six_orgs() -> fake_snyk::Config {
    let mut fake = hour_long_tokens();
    fake.orgs = (1..=6)
        .map(|i| OrgSeed::new(&format!("Org {i}"), 10 + i))
        .collect();
    fake
}

/// Every projects request of `org` waits `latency` at the fake.
fn slow_down(app: &AuthStack, org: &str, latency: Duration) {
    app.stack.fake.inject(Fault::OrgLatency {
        org_id: OrgSeed::new(org, 0).id,
        latency,
    });
}

/// The org sections of an install page, in its order: each org's name and its section's HTML.
fn sections(body: &str) -> Vec<(String, String)> {
    body.split("<section class=\"org\"")
        .skip(1)
        .map(|section| {
            let section = &section[..section.find("</section>").expect("a closed section")];
            let name = section
                .split_once("<h2>")
                .and_then(|(_, rest)| rest.split_once("</h2>"))
                .expect("a heading")
                .0;
            (name.to_owned(), section.to_owned())
        })
        .collect()
}

/// A browser that installed the app over `app`, its install's page, and the install's orgs in
/// the order token-service keeps them.
async fn installed(app: &AuthStack) -> (Browser, String, Vec<String>) {
    let browser = Browser::new();
    let id = app.install(&browser).await;
    let orgs = get_install(app, &id)
        .await
        .orgs
        .into_iter()
        .map(|o| o.name)
        .collect();
    (browser, app.url(&format!("/installs/{id}")), orgs)
}

#[tokio::test]
async fn an_org_not_listed_in_time_says_so_and_the_others_are_listed_in_order() {
    let app = AuthStack::start_with(six_orgs(), &[("PROJECTS_SERVICE_TIMEOUT_MS", "2000")]).await;
    let (browser, url, orgs) = installed(&app).await;
    slow_down(&app, "Org 2", Duration::from_secs(30));

    let started = Instant::now();
    let (status, body) = page(browser.get(&url).await).await;

    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the slow org held the page for {:?}",
        started.elapsed()
    );
    let sections = sections(&body);
    let names: Vec<&str> = sections.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, orgs, "the install's order");
    assert_eq!(
        names,
        ["Org 1", "Org 2", "Org 3", "Org 4", "Org 5", "Org 6"]
    );
    for (i, (name, html)) in sections.iter().enumerate() {
        if name == "Org 2" {
            assert!(
                html.contains(NOT_IN_TIME) && !html.contains("<table>"),
                "{html}"
            );
        } else {
            assert!(html.contains(&format!("{} projects", 11 + i)), "{html}");
            assert!(!html.contains(NOT_IN_TIME), "{html}");
        }
    }
}

#[tokio::test]
async fn at_most_four_org_listings_are_in_flight_at_once() {
    let app = AuthStack::start_with(six_orgs(), &[]).await;
    let (browser, url, _) = installed(&app).await;
    // Every listing takes a second at Snyk, so the page's listings overlap as far as it lets
    // them.
    for i in 1..=6 {
        slow_down(&app, &format!("Org {i}"), Duration::from_secs(1));
    }

    let (status, body) = page(browser.get(&url).await).await;

    assert_eq!(status, 200, "{body}");
    for i in 1..=6 {
        assert!(body.contains(&format!("{} projects", 10 + i)), "{body}");
    }
    let stats = app.stack.fake.stats();
    assert_eq!(stats.rest_calls_by_path["projects"], 6, "{stats:?}");
    assert_eq!(stats.rest_in_flight_max, 4, "{stats:?}");
}

#[tokio::test]
async fn an_org_with_more_projects_than_projects_service_lists_says_so() {
    let mut fake = hour_long_tokens();
    fake.orgs = vec![OrgSeed::new("Small Org", 25), OrgSeed::new("Big Org", 250)];
    let app =
        AuthStack::start_with_projects(fake, &[("PROJECTS_SERVICE_MAX_PROJECTS", "100")], &[])
            .await;
    let (browser, url, _) = installed(&app).await;

    let (status, body) = page(browser.get(&url).await).await;

    assert_eq!(status, 200, "{body}");
    let sections = sections(&body);
    assert_eq!(sections[0].0, "Small Org");
    assert!(sections[0].1.contains("25 projects"), "{body}");
    assert_eq!(sections[1].0, "Big Org");
    assert!(
        sections[1].1.contains(TOO_MANY_PROJECTS) && !sections[1].1.contains("<table>"),
        "{body}"
    );
}

#[tokio::test]
async fn an_org_the_snyk_budget_has_no_room_for_says_so() {
    // One Snyk request a minute for the install, which its org listing took at install time:
    // the page's listings get no permit within projects-service's 2 s deadline.
    let mut fake = hour_long_tokens();
    fake.orgs = vec![OrgSeed::new("Org A", 3), OrgSeed::new("Org B", 4)];
    let port = test_support::free_port().expect("a free port");
    fake.redirect_uris.push(auth_redirect_uri(port));
    let app = AuthStack::assemble(
        Stack::start(fake).await,
        auth_redis(),
        port,
        &[("SNYK_RATE_LIMIT_PER_MINUTE", "1")],
        &[("PROJECTS_SERVICE_DEADLINE_SECONDS", "2")],
        &[],
    )
    .await;
    let (browser, url, _) = installed(&app).await;

    let started = Instant::now();
    let (status, body) = page(browser.get(&url).await).await;

    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for (name, section) in sections(&body) {
        assert!(section.contains(RATE_LIMITED), "{name}: {body}");
    }
    assert_eq!(
        app.stack.fake.stats().rest_calls_by_path.get("projects"),
        None
    );
}
