//! The internal hops over TLS: token-service (`TOKEN_SERVICE_TLS_CERT`/`_KEY`), with
//! projects-service trusting its CA through `TOKEN_SERVICE_CA_CERT`; projects-service over HTTPS
//! (`PROJECTS_SERVICE_TLS_CERT`/`_KEY`) with auth-service trusting `PROJECTS_SERVICE_CA_CERT`,
//! both with certificates made by `token-service certs` (as compose's real mode makes them); and
//! outside demo mode, plain http to another host refused unless `INTERNAL_PLAINTEXT=allow`.

use std::time::Duration;

use snykapps_proto::token_v1::token_service_client::TokenServiceClient;
use system_tests::*;

#[tokio::test]
async fn token_service_serves_grpc_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let Certificates {
        ca: ca_path,
        cert,
        key,
    } = certificates(dir.path());
    let stack = Stack::start(fake_config()).await;
    let replica = stack
        .replica(&[
            ("TOKEN_SERVICE_TLS_CERT", &cert),
            ("TOKEN_SERVICE_TLS_KEY", &key),
        ])
        .await;
    let url = format!("https://localhost:{}", replica.addr.port());

    // A client that trusts the CA gets through.
    let ca = std::fs::read(&ca_path).unwrap();
    let channel =
        service_runtime::grpc::channel(&url.parse().unwrap(), Some(&ca), Duration::from_secs(5))
            .unwrap();
    let mut tls_client = TokenServiceClient::with_interceptor(
        channel,
        BearerKey(format!("Bearer {CALLER_KEY}").parse().unwrap()),
    );
    let install = stack.install(&mut tls_client).await;

    // projects-service reaches it over TLS too.
    let projects = stack
        .projects(
            replica.addr,
            &[
                ("TOKEN_SERVICE_URL", &url),
                ("TOKEN_SERVICE_CA_CERT", &ca_path),
            ],
        )
        .await;
    let res = projects
        .get(&format!("/v1/orgs/{}/projects", install.orgs[0].id))
        .await;
    assert_eq!(res.status(), 200);

    // Plain text is refused.
    let mut plain = client_with_key_lazy(replica.addr).await;
    assert!(
        plain
            .get_install(snykapps_proto::token_v1::GetInstallRequest {
                install_id: install.install_id
            })
            .await
            .is_err()
    );
}

async fn client_with_key_lazy(addr: std::net::SocketAddr) -> Client {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    TokenServiceClient::with_interceptor(
        channel,
        BearerKey(format!("Bearer {CALLER_KEY}").parse().unwrap()),
    )
}

#[tokio::test]
async fn the_healthcheck_subcommand_speaks_tls_when_the_service_does() {
    let dir = tempfile::tempdir().unwrap();
    let Certificates { ca, cert, key } = certificates(dir.path());
    let stack = Stack::start(fake_config()).await;
    let port = test_support::free_port().unwrap();
    let overrides = [
        ("TOKEN_SERVICE_TLS_CERT", cert.as_str()),
        ("TOKEN_SERVICE_TLS_KEY", key.as_str()),
        ("TOKEN_SERVICE_CA_CERT", ca.as_str()),
    ];
    let mut env: Vec<(String, String)> = stack.token_env(&overrides);
    for (k, v) in env.iter_mut() {
        match k.as_str() {
            "TOKEN_SERVICE_ADDR" => *v = format!("127.0.0.1:{port}"),
            "TOKEN_SERVICE_METRICS_ADDR" => {
                *v = format!("127.0.0.1:{}", test_support::free_port().unwrap())
            }
            _ => {}
        }
    }
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let mut service = system_tests::process::Process::spawn("token-service", &env);

    system_tests::process::wait_healthcheck(&mut service, &env).await;
    // And without the CA it cannot trust the server: unhealthy, not a false "ok".
    let untrusting: Vec<(&str, String)> = env
        .iter()
        .filter(|(k, _)| *k != "TOKEN_SERVICE_CA_CERT")
        .cloned()
        .collect();
    assert!(!system_tests::process::healthcheck(
        "token-service",
        &untrusting
    ));
}

/// `token-service certs` (the real binary) for `names` into `dir/tls` (the CA's key in `dir/ca`):
/// `ca.pem` there, and each name's `NAME/cert.pem` and `NAME/key.pem`.
fn internal_certs(dir: &std::path::Path, names: &str) -> std::path::PathBuf {
    let tls = dir.join("tls");
    let out = std::process::Command::new(system_tests::process::binary("token-service"))
        .args(["certs", "--dir"])
        .arg(&tls)
        .arg("--ca-dir")
        .arg(dir.join("ca"))
        .args(["--names", names])
        .env_clear()
        .output()
        .expect("token-service certs runs");
    assert!(
        out.status.success(),
        "token-service certs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tls
}

#[tokio::test]
async fn auth_service_lists_projects_over_https_trusting_the_internal_ca_and_not_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let tls = internal_certs(dir.path(), "token-service,projects-service");
    let file = |name: &str| tls.join(name).display().to_string();
    let app = AuthStack::start().await;
    let browser = Browser::new();
    let id = app.install(&browser).await;

    let https = app
        .stack
        .projects(
            app.token_addr,
            &[
                (
                    "PROJECTS_SERVICE_TLS_CERT",
                    &file("projects-service/cert.pem"),
                ),
                (
                    "PROJECTS_SERVICE_TLS_KEY",
                    &file("projects-service/key.pem"),
                ),
                ("PROJECTS_SERVICE_METRICS_ADDR", "127.0.0.1:0"),
            ],
        )
        .await;
    assert!(https.url.starts_with("https://localhost:"), "{}", https.url);
    // /metrics moved to its own plain port, for a scraper without the CA (compose's Prometheus).
    let metrics = reqwest::get(format!("{}/metrics", https.metrics_url.as_ref().unwrap()))
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    // A second auth-service in front of it (same cookie key: the browser's session holds).
    let auth_with = |extra: &[(&str, &str)]| {
        let mut overrides = vec![
            ("AUTH_SERVICE_ADDR", "127.0.0.1:0"),
            ("PROJECTS_SERVICE_URL", https.url.as_str()),
        ];
        overrides.extend_from_slice(extra);
        auth_service::Settings::from_lookup(lookup(&app.auth_vars(&overrides)))
            .expect("valid auth-service settings")
    };
    let ca = file("ca.pem");
    let trusting = AuthService::spawn(auth_with(&[("PROJECTS_SERVICE_CA_CERT", &ca)]))
        .await
        .unwrap();
    let (status, body) = page(&browser, &format!("{}/installs/{id}", trusting.url)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("25 projects"), "listed over HTTPS: {body}");

    // Without the CA (the public roots only), the private certificate is not trusted.
    let untrusting = AuthService::spawn(auth_with(&[])).await.unwrap();
    let (status, body) = page(&browser, &format!("{}/installs/{id}", untrusting.url)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("The project list is unavailable right now") && !body.contains("25 projects"),
        "{body}"
    );

    // And plain http to the HTTPS port gets no answer.
    let plain = https.url.replace("https://localhost", "http://127.0.0.1");
    let res = reqwest::Client::new()
        .get(format!("{plain}/readyz"))
        .send()
        .await;
    assert!(
        res.as_ref().map_or(true, |r| !r.status().is_success()),
        "plain http answered: {res:?}"
    );
}

async fn page(browser: &Browser, url: &str) -> (u16, String) {
    let res = browser.get(url).await;
    (res.status().as_u16(), res.text().await.unwrap())
}

// Multi-threaded: the healthcheck blocks a thread while the in-process token-service answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_service_healthcheck_speaks_https_when_the_service_does() {
    let dir = tempfile::tempdir().unwrap();
    let tls = internal_certs(dir.path(), "projects-service");
    let stack = Stack::start(fake_config()).await;
    let replica = stack.replica(&[]).await;
    let port = test_support::free_port().unwrap();
    let env: Vec<(&str, String)> = vec![
        ("PROJECTS_SERVICE_ADDR", format!("127.0.0.1:{port}")),
        ("SNYK_API_URL", stack.fake.url()),
        ("TOKEN_SERVICE_URL", format!("http://{}", replica.addr)),
        ("TOKEN_SERVICE_API_KEY", PROJECTS_TOKEN_KEY.into()),
        (
            "PROJECTS_SERVICE_CLIENT_KEYS",
            format!("auth-service={PROJECTS_KEY}"),
        ),
        (
            "PROJECTS_SERVICE_TLS_CERT",
            tls.join("projects-service/cert.pem").display().to_string(),
        ),
        (
            "PROJECTS_SERVICE_TLS_KEY",
            tls.join("projects-service/key.pem").display().to_string(),
        ),
    ];
    let mut service = system_tests::process::Process::spawn("projects-service", &env);
    system_tests::process::wait_healthcheck(&mut service, &env).await;
    // The same check in plain http fails against the HTTPS server: it did speak TLS above.
    let plain: Vec<(&str, String)> = env
        .iter()
        .filter(|(k, _)| *k != "PROJECTS_SERVICE_TLS_CERT")
        .cloned()
        .collect();
    assert!(!system_tests::process::healthcheck(
        "projects-service",
        &plain
    ));
}

/// Real mode (no `DEMO_MODE`) as compose.real.yml had it before: a caller given
/// `http://token-service:50051` refuses to start, naming the variable and the opt-out; with
/// `INTERNAL_PLAINTEXT=allow` it starts and says so in its log.
#[tokio::test]
async fn real_mode_refuses_plain_http_to_another_host_unless_a_mesh_is_declared() {
    let stack = Stack::start(fake_config()).await;
    let port = test_support::free_port().unwrap();
    let env: Vec<(&str, String)> = vec![
        ("PROJECTS_SERVICE_ADDR", format!("127.0.0.1:{port}")),
        ("SNYK_API_URL", stack.fake.url()),
        ("TOKEN_SERVICE_URL", "http://token-service:50051".into()),
        ("TOKEN_SERVICE_API_KEY", PROJECTS_TOKEN_KEY.into()),
        (
            "PROJECTS_SERVICE_CLIENT_KEYS",
            format!("auth-service={PROJECTS_KEY}"),
        ),
    ];
    let refused = tokio::process::Command::new(system_tests::process::binary("projects-service"))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), refused)
        .await
        .expect("projects-service started (and kept running) with plain text to token-service")
        .expect("projects-service runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with plain text: {stderr}");
    assert!(
        stderr.contains("TOKEN_SERVICE_URL") && stderr.contains("INTERNAL_PLAINTEXT=allow"),
        "{stderr}"
    );

    let mut allowed = env.clone();
    allowed.push(("INTERNAL_PLAINTEXT", "allow".into()));
    let mut service = system_tests::process::Process::spawn("projects-service", &allowed);
    let warned = |log: &str| log.contains("INTERNAL_PLAINTEXT=allow") && log.contains("WARN");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !warned(&service.log()) && std::time::Instant::now() < deadline {
        service.assert_running();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    service.assert_running();
    let log = service.log();
    assert!(
        warned(&log) && log.contains("token-service"),
        "the start-up log says plain text is allowed: {log}"
    );
}
