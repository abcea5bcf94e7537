//! The install in a real browser (headless Chromium, see `system_tests::browser`) against the
//! whole stack in-process.

use fantoccini::Locator;
use serde_json::Value;
use system_tests::{
    browser::{ChromeDriver, find, install_in_browser},
    *,
};

#[tokio::test]
async fn install_in_a_real_browser_shows_the_projects() {
    let app = AuthStack::start().await;
    let driver = ChromeDriver::start().await;
    let browser = driver.session().await;

    let (install_id, text) = install_in_browser(&browser, &app.url("")).await;
    assert!(
        text.contains("Demo Org") && text.contains("25 projects"),
        "{text}"
    );
    let url = app.url(&format!("/installs/{install_id}"));
    let mut c = app.token_client().await;
    let install = c
        .get_install(snykapps_proto::token_v1::GetInstallRequest { install_id })
        .await
        .expect("token-service has the install")
        .into_inner();
    let listing: Value = app
        .projects
        .get(&format!("/v1/orgs/{}/projects", install.orgs[0].id))
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listing["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 25);
    for name in names {
        assert!(text.contains(name), "{name} is not on the page:\n{text}");
    }
    // The stylesheet loaded under the page's CSP (a blocked one would leave the default margin).
    let margin = browser
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .css_value("margin")
        .await
        .unwrap();
    assert_eq!(margin, "0px", "style.css applies");

    // Log out: a form post from our own page (the browser adds our Origin), back to the landing
    // page, and the install's page is gone for this browser.
    find(&browser, Locator::Id("logout"))
        .await
        .click()
        .await
        .unwrap();
    find(&browser, Locator::Id("install")).await;
    let landing = browser.current_url().await.unwrap();
    assert_eq!(
        landing.as_str(),
        app.url("/"),
        "logout lands on the start page"
    );
    browser.goto(url.as_str()).await.unwrap();
    let text = find(&browser, Locator::Css("main"))
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains("Page not found"), "signed out: {text}");

    browser.close().await.unwrap();
}
