//! token-service over TLS (`TOKEN_SERVICE_TLS_CERT`/`_KEY`), with projects-service trusting its
//! CA through `TOKEN_SERVICE_CA_CERT`.

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
