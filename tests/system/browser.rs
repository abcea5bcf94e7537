//! The install in a real browser (headless Chromium, see `system_tests::browser`) against the
//! whole stack in-process.

use fantoccini::{Client as WebBrowser, Locator};
use serde_json::Value;
use snykapps_proto::token_v1 as pb;
use system_tests::{
    browser::{ChromeDriver, CrossSitePage, find, install_in_browser},
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

/// The text of the page's `<main>` once it shows `expected` (a click may still be loading it).
async fn main_text_with(browser: &WebBrowser, expected: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = find(browser, Locator::Css("main"))
            .await
            .text()
            .await
            .unwrap_or_default();
        if text.contains(expected) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the page never showed {expected:?}; it shows:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn install_of(app: &AuthStack, id: &str) -> Result<pb::Install, tonic::Status> {
    app.token_client()
        .await
        .get_install(pb::GetInstallRequest {
            install_id: id.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn reconnect_in_a_real_browser_keeps_the_install_and_shows_projects_again() {
    let app = AuthStack::start().await;
    let driver = ChromeDriver::start().await;
    let owner = driver.session().await;
    let (id, _) = install_in_browser(&owner, &app.url("")).await;
    let page_url = app.url(&format!("/installs/{id}"));
    // The user removes the app at Snyk; the next page view finds out.
    let mut ops = app.token_client().await;
    let token = access_token(&mut ops, &id).await;
    app.stack.revoke_at_snyk(&token).await;
    owner.goto(&page_url).await.unwrap();
    main_text_with(&owner, "Snyk access was lost; reconnect.").await;
    assert_eq!(
        install_of(&app, &id).await.unwrap().status(),
        pb::InstallStatus::NeedsReauth
    );

    // Another browser cannot reconnect it: the page is not there for it, and a form that posts
    // to Reconnect from another site is refused before any sign-in is created.
    let stranger = driver.session().await;
    stranger.goto(&page_url).await.unwrap();
    main_text_with(&stranger, "Page not found").await;
    let forged = CrossSitePage::serve(&app.url(&format!("/installs/{id}/reconnect"))).await;
    stranger.goto(&forged.url).await.unwrap();
    find(&stranger, Locator::Id("forged"))
        .await
        .click()
        .await
        .unwrap();
    main_text_with(&stranger, "Request refused").await;
    assert!(
        pending_sign_ins(&app.auth_redis).await.is_empty(),
        "no sign-in was started for the stranger"
    );
    stranger.close().await.unwrap();

    // The owner reconnects: Snyk's consent page, Approve, back on the same install's page.
    find(&owner, Locator::Id("reconnect"))
        .await
        .click()
        .await
        .unwrap();
    find(&owner, Locator::Id("approve"))
        .await
        .click()
        .await
        .unwrap();
    let text = main_text_with(&owner, "25 projects").await;
    assert_eq!(
        owner.current_url().await.unwrap().as_str(),
        page_url,
        "the same install's page"
    );
    assert!(!text.contains("Snyk access was lost"), "{text}");
    let install = install_of(&app, &id).await.unwrap();
    assert_eq!(install.status(), pb::InstallStatus::Active);
    assert_eq!(install.install_id, id);
    let all = ops
        .list_installs(pb::ListInstallsRequest {
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .installs;
    assert_eq!(all.len(), 1, "no new install: {all:?}");
    owner.close().await.unwrap();
}

#[tokio::test]
async fn disconnect_in_a_real_browser_asks_then_deletes_and_refuses_a_forged_post() {
    let app = AuthStack::start().await;
    let driver = ChromeDriver::start().await;
    let browser = driver.session().await;
    let (id, _) = install_in_browser(&browser, &app.url("")).await;
    let page_url = app.url(&format!("/installs/{id}"));

    // Another site's form, submitted in the signed-in browser: refused, the install stays.
    let forged = CrossSitePage::serve(&app.url(&format!("/installs/{id}/disconnect"))).await;
    browser.goto(&forged.url).await.unwrap();
    find(&browser, Locator::Id("forged"))
        .await
        .click()
        .await
        .unwrap();
    main_text_with(&browser, "Request refused").await;
    assert!(install_of(&app, &id).await.is_ok(), "the install survives");

    // Disconnect, which first asks and says what it does at Snyk.
    browser.goto(&page_url).await.unwrap();
    find(&browser, Locator::Id("disconnect"))
        .await
        .click()
        .await
        .unwrap();
    let question = main_text_with(&browser, "Disconnect this installation?").await;
    assert!(
        question.contains("revoked at once") && question.contains("stays listed"),
        "{question}"
    );
    assert!(
        install_of(&app, &id).await.is_ok(),
        "asking deletes nothing"
    );
    find(&browser, Locator::Id("confirm-disconnect"))
        .await
        .click()
        .await
        .unwrap();
    main_text_with(&browser, "The installation was disconnected").await;
    assert_eq!(
        browser.current_url().await.unwrap().as_str(),
        app.url("/disconnected")
    );
    let err = install_of(&app, &id).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    browser.goto(&page_url).await.unwrap();
    main_text_with(&browser, "Page not found").await;
    browser.close().await.unwrap();
}
