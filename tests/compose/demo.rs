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

    // The operator tools as docs/operations.md runs them: inside the container, with its environment.
    let ops = |args: &[&str]| {
        let mut command = vec!["exec", "-T", "token-service", "token-service"];
        command.extend_from_slice(args);
        let (ok, out) = stack.try_run(&command);
        assert!(ok, "`{}` failed:\n{out}", args.join(" "));
        out
    };
    let listed: serde_json::Value =
        json_in(&ops(&["installs", "list", "--json"])).expect("installs list --json");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["install_id"], install_id.as_str(), "{listed}");
    assert_eq!(listed[0]["status"], "active", "{listed}");
    let shown = ops(&["installs", "show", &install_id]);
    assert!(shown.contains("Demo Org"), "{shown}");
    let events = ops(&["events", "tail", "--from", "0", "--count", "1", "--json"]);
    let first: serde_json::Value = json_in(&events).expect("events tail --json");
    assert_eq!(first["kind"], "installed", "{events}");
    assert_eq!(first["install_id"], install_id.as_str(), "{events}");
    stack.down();
}

/// The JSON document in a command's output (Compose may add lines of its own around it).
fn json_in(out: &str) -> Option<serde_json::Value> {
    out.lines()
        .map(str::trim)
        .position(|l| l.starts_with('[') || l.starts_with('{'))
        .and_then(|start| {
            let rest: Vec<&str> = out.lines().skip(start).collect();
            serde_json::Deserializer::from_str(&rest.join("\n"))
                .into_iter()
                .next()?
                .ok()
        })
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
