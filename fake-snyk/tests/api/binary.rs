//! The `fake-snyk` binary: configuration from the environment, readiness, graceful stop.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const VARS: &[&str] = &[
    "FAKE_SNYK_ADDR",
    "FAKE_SNYK_CLIENT_ID",
    "FAKE_SNYK_CLIENT_SECRET",
    "FAKE_SNYK_REDIRECT_URIS",
    "FAKE_SNYK_ACCESS_TOKEN_TTL_SECONDS",
    "FAKE_SNYK_REFRESH_TOKEN_TTL_SECONDS",
    "FAKE_SNYK_ORGS",
    "FAKE_SNYK_TOKEN_LATENCY_MS",
    "FAKE_SNYK_RATE_LIMIT_PER_MINUTE",
    "DEMO_MODE",
];

fn command(vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fake-snyk"));
    for var in VARS {
        command.env_remove(var);
    }
    command
        .envs(vars.iter().copied())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Reads the log until the "ready" line and returns the URL it names.
async fn wait_ready(child: &mut Child) -> String {
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let find = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((_, rest)) = line.split_once("url=") {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("the binary exited before it was ready");
    };
    tokio::time::timeout(Duration::from_secs(20), find)
        .await
        .expect("ready within 20 s")
}

#[tokio::test]
async fn the_binary_serves_and_stops_on_sigterm() {
    let mut child = command(&[
        ("FAKE_SNYK_ADDR", "127.0.0.1:0"),
        ("FAKE_SNYK_ORGS", "Acme:3"),
    ])
    .spawn()
    .unwrap();
    let url = wait_ready(&mut child).await;

    let health = reqwest::get(format!("{url}/healthz")).await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    // Not in demo mode: nobody may steer or read the fake.
    let stats = reqwest::get(format!("{url}/_fake/stats")).await.unwrap();
    assert_eq!(stats.status(), reqwest::StatusCode::NOT_FOUND);
    let faults = reqwest::Client::new()
        .post(format!("{url}/_fake/faults"))
        .json(&serde_json::json!({"token_latency": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(faults.status(), reqwest::StatusCode::NOT_FOUND);

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("stops within 15 s")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn the_control_endpoints_are_served_in_demo_mode_only() {
    let mut child = command(&[("FAKE_SNYK_ADDR", "127.0.0.1:0"), ("DEMO_MODE", "true")])
        .spawn()
        .unwrap();
    let url = wait_ready(&mut child).await;
    let stats = reqwest::get(format!("{url}/_fake/stats")).await.unwrap();
    assert_eq!(stats.status(), reqwest::StatusCode::OK);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn an_invalid_variable_is_named_and_fails_the_start() {
    for (var, value) in [
        ("FAKE_SNYK_ACCESS_TOKEN_TTL_SECONDS", "soon"),
        ("FAKE_SNYK_REFRESH_TOKEN_TTL_SECONDS", "0"),
        ("FAKE_SNYK_RATE_LIMIT_PER_MINUTE", "lots"),
        ("DEMO_MODE", "sometimes"),
    ] {
        let output = command(&[(var, value)]).output().await.unwrap();

        assert!(!output.status.success(), "{var}={value:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(var), "{stderr}");
    }
}
