//! Real mode as the README sets it up: `.env` from `.env.example` with every `REPLACE-ME`
//! filled in (test values, none of them a demo default), `compose.real.yml` over
//! docker-compose.yml, and Snyk at a non-demo HTTPS address: a stand-in (fake-snyk without demo
//! mode) with a throwaway CA that the services trust through compose.ca.yml (`SNYK_CA_CERT`),
//! tests/compose/standin.yml.

use std::os::unix::fs::PermissionsExt as _;

use base64::Engine as _;
use rand::Rng as _;
use system_tests::{Browser, certificates_for, install_over_http};

use crate::harness::Compose;

const APP: &str = "http://localhost:8080";

fn random_key(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::rng().fill(&mut raw[..]);
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// `.env.example`, every `REPLACE-ME` filled with a fresh random value and Snyk's addresses
/// pointed at the stand-in; plus `STANDIN_CERTS`.
fn dot_env(certs: &str) -> Vec<(String, String)> {
    let example = std::fs::read_to_string(crate::harness::repo().join(".env.example")).unwrap();
    let mut vars: Vec<(String, String)> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            let v = match k {
                "SNYK_APP_URL" => "https://localhost:8443".to_owned(),
                "SNYK_API_URL" => "https://snyk-standin:8443".to_owned(),
                "TOKEN_ENCRYPTION_KEYS" => format!("k1:{}", random_key(32)),
                "AUTH_COOKIE_KEY" => random_key(64),
                _ if v.contains("REPLACE-ME") => {
                    format!("real-mode-test-{}", random_key(24)).replace(['+', '/', '='], "x")
                }
                _ => v.to_owned(),
            };
            (k.to_owned(), v)
        })
        .collect();
    assert!(
        vars.iter().any(|(k, _)| k == "SNYK_CLIENT_SECRET"),
        ".env.example lists SNYK_CLIENT_SECRET"
    );
    vars.push(("STANDIN_CERTS".into(), certs.to_owned()));
    vars.push(("SNYK_CA_CERT_FILE".into(), format!("{certs}/ca.pem")));
    vars
}

#[tokio::test]
#[ignore = "needs a Docker engine and the images; run by scripts/compose-test"]
async fn real_mode_installs_against_snyk_over_tls_without_any_demo_default() {
    // Readable by the containers' user (uid 10001): a throwaway CA, nothing else in there.
    let dir = tempfile::Builder::new()
        .prefix("standin-certs-")
        .tempdir()
        .unwrap();
    let certs = certificates_for(dir.path(), &["snyk-standin"]);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    let env = dot_env(&dir.path().display().to_string());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let stack = Compose::new(
        &[
            "docker-compose.yml",
            "compose.real.yml",
            "compose.ca.yml",
            "tests/compose/standin.yml",
        ],
        &env,
    );
    stack.up(&[]).await;

    let services: Vec<String> = stack.containers().into_iter().map(|c| c.service).collect();
    assert!(
        !services.iter().any(|s| s == "fake-snyk"),
        "real mode does not start the demo fake: {services:?}"
    );
    for service in ["token-service", "projects-service", "auth-service"] {
        let logs = stack.logs(&stack.one(service).id);
        assert!(
            !logs.contains("DEMO MODE"),
            "{service} runs without demo mode:\n{logs}"
        );
    }

    let ca = std::fs::read(&certs.ca).unwrap();
    let browser = Browser::trusting(&ca);
    let install_id = install_over_http(&browser, APP).await;
    let page = browser.get(&format!("{APP}/installs/{install_id}")).await;
    assert_eq!(page.status(), 200, "the install's page");
    let text = page.text().await.unwrap();
    assert!(
        text.contains("Demo Org") && text.contains("25 projects"),
        "the install's page lists the stand-in's projects:\n{text}"
    );
    eprintln!("compose real mode: install {install_id} over TLS to the stand-in");
    stack.down();
}
