//! A real browser for the tests: headless Chromium driven through chromedriver (WebDriver), and
//! the install as a user clicks it. chromedriver and Chromium come from Debian's `chromium-driver`
//! and `chromium` packages; when they are missing the tests that use them fail, never skip
//! (`.ci/run` installs them). Used by the in-process stack (`system/browser.rs`) and by the
//! containers of docker-compose.yml (`compose/`).

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// A chromedriver child process, in a process group of its own so that it and the browsers it
/// started die together on drop, whatever the test's outcome.
pub struct ChromeDriver {
    child: Child,
    url: String,
    profile: tempfile::TempDir,
    /// Sessions started so far: each gets a profile of its own (its own cookies), so two
    /// sessions are two browsers.
    sessions: AtomicUsize,
}

impl ChromeDriver {
    pub async fn start() -> ChromeDriver {
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
            sessions: AtomicUsize::new(0),
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

    /// A new browser: its own profile, so it shares no cookie with any other session.
    pub async fn session(&self) -> Client {
        let n = self.sessions.fetch_add(1, Ordering::Relaxed);
        let profile = self.profile.path().join(format!("session-{n}"));
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
                format!("--user-data-dir={}", profile.display()),
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
pub async fn find(browser: &Client, locator: Locator<'_>) -> fantoccini::elements::Element {
    browser
        .wait()
        .at_most(STEP_TIMEOUT)
        .for_element(locator)
        .await
        .unwrap_or_else(|e| {
            panic!("the element {locator:?} does not appear ({e}) on this page");
        })
}

/// The install as a user clicks it, in `browser`, from the app's landing page at `app_url`:
/// Install, then Approve on Snyk's consent page, then the install's page. Returns the install's
/// id (from the page's URL) and the text of its first org's section.
pub async fn install_in_browser(browser: &Client, app_url: &str) -> (String, String) {
    browser
        .goto(&format!("{app_url}/"))
        .await
        .unwrap_or_else(|e| {
            panic!("the app's landing page {app_url}/ does not load ({e})");
        });
    find(browser, Locator::Id("install"))
        .await
        .click()
        .await
        .unwrap();
    // Snyk's (the fake's) consent page; Approve.
    find(browser, Locator::Id("approve"))
        .await
        .click()
        .await
        .unwrap();
    // Back on the app: the install's page with its orgs and their projects.
    let org = find(browser, Locator::Css("section.org")).await;
    let url = browser.current_url().await.unwrap();
    let install_id = url
        .as_str()
        .strip_prefix(&format!("{app_url}/installs/"))
        .unwrap_or_else(|| panic!("the install ends on {app_url}/installs/…, not on {url}"))
        .to_owned();
    (install_id, org.text().await.unwrap())
}

/// Another site (`http://localhost:{port}`, while the app is on 127.0.0.1: another origin and
/// another site): it serves one page, a form that posts to `action` on the app with a button
/// `id="forged"`, as a CSRF attack would. Served until dropped.
pub struct CrossSitePage {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl CrossSitePage {
    pub async fn serve(action: &str) -> CrossSitePage {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let html = format!(
            "<!DOCTYPE html><html><head><title>Win a prize</title></head><body>\
             <form method=\"post\" action=\"{action}\">\
             <button type=\"submit\" id=\"forged\">Claim</button></form></body></html>"
        );
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{html}",
            html.len()
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let response = response.clone();
                tokio::spawn(async move {
                    // Read the request head (any path gets the page), then answer and close.
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let _ = conn.write_all(response.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        CrossSitePage {
            url: format!("http://localhost:{port}/"),
            task,
        }
    }
}

impl Drop for CrossSitePage {
    fn drop(&mut self) {
        self.task.abort();
    }
}
