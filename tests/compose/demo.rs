//! Demo mode as the README starts it: `docker compose up` with no `.env`.

use std::time::Duration;

use system_tests::browser::{ChromeDriver, install_in_browser};

use crate::harness::{Compose, fake_stats};

/// Where the demo stack publishes the app (docker-compose.yml).
const APP: &str = "http://localhost:8080";

#[tokio::test]
#[ignore = "needs a Docker engine and the images; run by scripts/compose-test"]
async fn the_demo_stack_installs_in_a_real_browser_and_shows_the_projects() {
    let stack = Compose::new(&["docker-compose.yml"], &[]);
    stack.up(&[]).await;
    let landing = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("{APP}/"))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!("auth-service does not answer on its published port {APP}: {e}")
        });
    assert_eq!(landing.status(), 200, "auth-service's landing page");

    let driver = ChromeDriver::start().await;
    let browser = driver.session().await;
    let (install_id, text) = install_in_browser(&browser, APP).await;
    assert!(
        text.contains("Demo Org") && text.contains("25 projects"),
        "the install's page lists the demo org's 25 projects:\n{text}"
    );
    browser.close().await.unwrap();
    eprintln!("compose demo: install {install_id} shows its projects");

    let stats = fake_stats().await;
    assert_eq!(
        stats["token_calls"]["authorization_code"], 1,
        "one code exchange: {stats}"
    );
    assert_eq!(stats["spent_refresh_token_reuses"], 0, "{stats}");
    stack.down();
}

/// The waiter fails, and says which service, when a healthcheck never passes: the compose test
/// cannot pass over a broken container.
#[tokio::test]
#[ignore = "needs a Docker engine and the images; run by scripts/compose-test"]
async fn a_failing_healthcheck_is_reported_with_its_service_name() {
    let stack = Compose::new(
        &["docker-compose.yml", "tests/compose/broken-healthcheck.yml"],
        &[],
    );
    let (_, up) = stack.try_run(&["up", "-d", "--no-build"]);
    let err = stack
        .wait_healthy(Duration::from_secs(60))
        .await
        .expect_err("a stack with a failing healthcheck is not healthy");
    assert!(
        err.contains("service fake-snyk") && err.contains("unhealthy"),
        "the report names the broken service:\n{err}\ncompose up said:\n{up}"
    );
    assert!(
        !err.contains("service auth-service"),
        "only the broken service is blamed:\n{err}"
    );
}
