//! The install in a real browser: headless Chromium, driven through chromedriver (WebDriver),
//! against the whole stack. chromedriver and Chromium come from Debian's `chromium-driver` and
//! `chromium` packages; when they are missing this test fails (CI installs them, see `.ci/run`).

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use system_tests::*;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// A chromedriver child process, in a process group of its own so that it and the browsers it
/// started die together on drop, whatever the test's outcome.
struct ChromeDriver {
    child: Child,
    url: String,
    profile: tempfile::TempDir,
}

impl ChromeDriver {
    async fn start() -> ChromeDriver {
        for (path, package) in [(CHROMEDRIVER, "chromium-driver"), (CHROMIUM, "chromium")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: install Debian's `chromium` and `chromium-driver` packages \
                 (apt-get install -y chromium chromium-driver; {package} provides it). \
                 .ci/run installs them; this test never skips."
            );
        }
        let port = test_support::free_port().unwrap();
        let profile = tempfile::Builder::new()
            .prefix("chromium-profile-")
            .tempdir()
            .unwrap();
        let child = {
            use std::os::unix::process::CommandExt as _;
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("chromedriver starts")
        };
        let driver = ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile,
        };
        driver.wait_ready().await;
        driver
    }

    /// Polls `/status` until chromedriver says it is ready.
    async fn wait_ready(&self) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(res) = http.get(format!("{}/status", self.url)).send().await
                && let Ok(status) = res.json::<Value>().await
                && status["value"]["ready"] == true
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver was not ready within {READY_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn session(&self) -> Client {
        let options = json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                format!("--user-data-dir={}", self.profile.path().display()),
            ],
        });
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a WebDriver session")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The whole group: chromedriver and every Chromium process it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The element `locator` once it is there (the page may still be loading after a click).
async fn find(browser: &Client, locator: Locator<'_>) -> fantoccini::elements::Element {
    browser
        .wait()
        .at_most(STEP_TIMEOUT)
        .for_element(locator)
        .await
        .unwrap_or_else(|e| {
            panic!("the element {locator:?} does not appear ({e}) on this page");
        })
}

#[tokio::test]
async fn install_in_a_real_browser_shows_the_projects() {
    let app = AuthStack::start().await;
    let driver = ChromeDriver::start().await;
    let browser = driver.session().await;

    // The landing page; Install.
    browser.goto(&app.url("/")).await.unwrap();
    find(&browser, Locator::Id("install"))
        .await
        .click()
        .await
        .unwrap();

    // Snyk's (the fake's) consent page; Approve.
    find(&browser, Locator::Id("approve"))
        .await
        .click()
        .await
        .unwrap();

    // Back on the app: the install's page with the seeded org and its projects.
    let org = find(&browser, Locator::Css("section.org")).await;
    let url = browser.current_url().await.unwrap();
    assert!(url.as_str().starts_with(&app.url("/installs/")), "{url}");
    let text = org.text().await.unwrap();
    assert!(
        text.contains("Demo Org") && text.contains("25 projects"),
        "{text}"
    );
    let install_id = url.path().trim_start_matches("/installs/").to_owned();
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
