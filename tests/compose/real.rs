//! Real mode as the README sets it up: `.env` from `.env.example` with every `REPLACE-ME`
//! filled in (test values, none of them a demo default), `compose.real.yml` over
//! docker-compose.yml, and Snyk at a non-demo HTTPS address: a stand-in (fake-snyk without demo
//! mode) with a throwaway CA that the services trust through compose.ca.yml (`SNYK_CA_CERT`),
//! tests/compose/standin.yml. Every internal hop runs over TLS with the certificates that
//! compose.real.yml's `internal-certs` job makes.

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

    every_internal_hop_is_tls(&stack);
    stack.down();
}

/// The install above went auth-service → token-service and → projects-service → token-service:
/// those hops are configured https, the servers refuse plain text, and the certificates came
/// from the `internal-certs` job, which keeps them when run again.
fn every_internal_hop_is_tls(stack: &Compose) {
    let env_of = |service: &str| -> String {
        crate::harness::docker(&[
            "inspect",
            "-f",
            "{{range .Config.Env}}{{println .}}{{end}}",
            &stack.one(service).id,
        ])
    };
    for (service, var, url) in [
        (
            "projects-service",
            "TOKEN_SERVICE_URL",
            "https://token-service:50051",
        ),
        (
            "auth-service",
            "TOKEN_SERVICE_URL",
            "https://token-service:50051",
        ),
        (
            "auth-service",
            "PROJECTS_SERVICE_URL",
            "https://projects-service:8081",
        ),
    ] {
        let env = env_of(service);
        assert!(
            env.lines().any(|l| l == format!("{var}={url}")),
            "{service} calls {var}={url}:\n{env}"
        );
    }

    // A plain-text client on the services' network (the healthchecks of our image, from
    // auth-service's container, which has no server certificate) gets no answer.
    let auth = stack.one("auth-service").id;
    let token_ip = stack.ip("token-service", "default");
    let projects_ip = stack.ip("projects-service", "default");
    for (binary, var, addr) in [
        (
            "token-service",
            "TOKEN_SERVICE_ADDR",
            format!("{token_ip}:50051"),
        ),
        (
            "projects-service",
            "PROJECTS_SERVICE_ADDR",
            format!("{projects_ip}:8081"),
        ),
    ] {
        let (healthy, out) = stack.exec(&auth, &[(var, &addr)], &[binary, "healthcheck"]);
        assert!(!healthy, "{binary} answered plain text at {addr}: {out}");
        eprintln!(
            "compose real mode: plain text to {binary} refused: {}",
            out.trim()
        );
    }

    // The job made the certificates; each key is the services' user's alone; a second run
    // keeps them.
    let certs = stack.one("internal-certs");
    assert_eq!((certs.state.as_str(), certs.exit_code), ("exited", 0));
    let log = stack.logs(&certs.id);
    assert!(log.contains("certs: token-service: made"), "{log}");
    let (ok, listing) = stack.exec(
        &stack.one("token-service").id,
        &[],
        &["ls", "-ln", "/var/lib/snykapps/tls/token-service"],
    );
    assert!(ok, "{listing}");
    let key = listing
        .lines()
        .find(|l| l.ends_with(" key.pem"))
        .unwrap_or_else(|| panic!("no key.pem: {listing}"));
    let fields: Vec<&str> = key.split_whitespace().collect();
    assert_eq!(fields[0], "-rw-r-----", "{key}");
    assert_eq!((fields[2], fields[3]), ("10001", "10001"), "{key}");
    let (ok, again) = stack.try_run(&["run", "--rm", "internal-certs"]);
    assert!(
        ok && again.contains("certs: CA: kept") && again.contains("certs: token-service: kept"),
        "a second run keeps valid certificates:\n{again}"
    );
}
