//! HTTPS to Snyk: the fake-snyk binary serving TLS (`FAKE_SNYK_TLS_CERT`/`_KEY`) with a throwaway
//! CA, its healthcheck over TLS, and token-service and projects-service trusting the CA through
//! `SNYK_CA_CERT`, in addition to the platform's roots, never instead of them.

use snykapps_proto::token_v1 as pb;
use system_tests::{process::Process, *};

/// The fake-snyk binary serving HTTPS on a free port of 127.0.0.1 with a certificate of
/// [`certificates`], healthy by its own (TLS) healthcheck.
struct TlsFake {
    /// `https://127.0.0.1:{port}`.
    url: String,
    env: Vec<(&'static str, String)>,
    process: Process,
}

impl TlsFake {
    async fn start(certs: &Certificates) -> TlsFake {
        let port = test_support::free_port().unwrap();
        let env = vec![
            ("FAKE_SNYK_ADDR", format!("127.0.0.1:{port}")),
            ("FAKE_SNYK_CLIENT_ID", CLIENT_ID.to_owned()),
            ("FAKE_SNYK_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ("FAKE_SNYK_REDIRECT_URIS", REDIRECT_URI.to_owned()),
            ("FAKE_SNYK_TLS_CERT", certs.cert.clone()),
            ("FAKE_SNYK_TLS_KEY", certs.key.clone()),
        ];
        let mut fake = TlsFake {
            url: format!("https://127.0.0.1:{port}"),
            process: Process::spawn("fake-snyk", &env),
            env,
        };
        process::wait_healthcheck(&mut fake.process, &fake.env).await;
        fake
    }

    /// Does `fake-snyk healthcheck`, run with the fake's environment and `changes` (a value, or
    /// `None` to leave the variable out), report it healthy?
    fn healthcheck(&self, changes: &[(&str, Option<&str>)]) -> bool {
        let mut env: Vec<(&str, String)> = self
            .env
            .iter()
            .filter(|(k, _)| !changes.iter().any(|(c, _)| c == k))
            .cloned()
            .collect();
        env.extend(
            changes
                .iter()
                .filter_map(|(k, v)| v.map(|v| (*k, v.to_owned()))),
        );
        process::healthcheck("fake-snyk", &env)
    }

    /// A user approves an install on the consent page, over HTTPS in a browser that trusts
    /// `ca`: the authorization code and its PKCE verifier.
    async fn approve(&self, ca: &str) -> (String, String) {
        let browser = Browser::trusting(&std::fs::read(ca).unwrap());
        let (verifier, challenge) = pkce();
        let mut consent = reqwest::Url::parse(&format!("{}/oauth2/authorize", self.url)).unwrap();
        consent
            .query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", CLIENT_ID)
            .append_pair("redirect_uri", REDIRECT_URI)
            .append_pair("state", "tls-test-state")
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let page = browser.get(consent.as_str()).await;
        assert_eq!(page.status(), 200, "the consent page shows over HTTPS");
        let html = page.text().await.unwrap();
        let back = browser.press(&consent, &html, "approve").await;
        assert_eq!(back.status(), 302, "Approve redirects back to the app");
        let location = back.headers()["location"].to_str().unwrap();
        let code = reqwest::Url::parse(location)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .expect("a code");
        (code, verifier)
    }
}

fn complete_install(code: String, code_verifier: String) -> pb::CompleteInstallRequest {
    pb::CompleteInstallRequest {
        code,
        code_verifier,
        redirect_uri: REDIRECT_URI.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_services_reach_a_snyk_served_over_tls_with_snyk_ca_cert_and_refuse_it_without() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(dir.path());
    let fake = TlsFake::start(&certs).await;
    let stack = Stack::start(fake_config()).await;

    // token-service trusting the CA: the install completes over HTTPS (code exchange and
    // /rest/orgs) and its token is good at the fake.
    let trusting_replica = stack
        .replica(&[
            ("SNYK_API_URL", fake.url.as_str()),
            ("SNYK_CA_CERT", certs.ca.as_str()),
        ])
        .await;
    let mut tokens = client(&trusting_replica).await;
    let (code, verifier) = fake.approve(&certs.ca).await;
    let install = tokens
        .complete_install(complete_install(code, verifier))
        .await
        .expect("the install completes over TLS")
        .into_inner();
    assert_eq!(install.orgs.len(), 2, "/rest/orgs read over TLS");
    let token = access_token(&mut tokens, &install.install_id).await;
    let at_snyk = client_trusting(&std::fs::read(&certs.ca).unwrap())
        .build()
        .unwrap()
        .get(format!("{}/rest/self?version=2024-05-31", fake.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(at_snyk.status(), 200, "the token works at the fake");

    // projects-service trusting the CA lists over HTTPS (the REST client).
    let org = &install.orgs[0].id;
    let path = format!("/v1/installs/{}/orgs/{org}/projects", install.install_id);
    let projects = stack
        .projects(
            trusting_replica.addr,
            &[
                ("SNYK_API_URL", fake.url.as_str()),
                ("SNYK_CA_CERT", certs.ca.as_str()),
            ],
        )
        .await;
    let listing = projects.get(&path).await;
    assert_eq!(listing.status(), 200);
    let body: serde_json::Value = listing.json().await.unwrap();
    assert_eq!(body["count"], 25, "{body}");

    // Without SNYK_CA_CERT the same calls fail, and say why: a certificate nobody vouches for.
    let untrusting_replica = stack.replica(&[("SNYK_API_URL", fake.url.as_str())]).await;
    let (code, verifier) = fake.approve(&certs.ca).await;
    let refused = client(&untrusting_replica)
        .await
        .complete_install(complete_install(code, verifier))
        .await
        .expect_err("an untrusted certificate is refused");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("certificate"),
        "the TLS failure is named: {refused:?}"
    );
    let untrusting_projects = stack
        .projects(
            trusting_replica.addr,
            &[("SNYK_API_URL", fake.url.as_str())],
        )
        .await;
    let listing = untrusting_projects.get(&path).await;
    assert_eq!(listing.status(), 503, "Snyk unreachable over untrusted TLS");
}

#[tokio::test]
async fn the_fake_healthcheck_speaks_tls_pinned_to_its_own_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(dir.path());
    // TlsFake::start has waited for the healthcheck over TLS to pass.
    let fake = TlsFake::start(&certs).await;
    assert!(fake.healthcheck(&[]));
    // Plain HTTP to the TLS port is not a false "healthy".
    assert!(!fake.healthcheck(&[("FAKE_SNYK_TLS_CERT", None), ("FAKE_SNYK_TLS_KEY", None)]));
    // Another certificate (another CA's, same names) is not the one the server holds.
    let other_dir = tempfile::tempdir().unwrap();
    let other = certificates(other_dir.path());
    assert!(!fake.healthcheck(&[("FAKE_SNYK_TLS_CERT", Some(other.cert.as_str()))]));
    // The CA itself is not pinned either: the healthcheck trusts the server's own certificate.
    assert!(!fake.healthcheck(&[("FAKE_SNYK_TLS_CERT", Some(certs.ca.as_str()))]));
}

#[tokio::test]
async fn snyk_ca_cert_adds_to_the_platform_roots_instead_of_replacing_them() {
    // Two unrelated CAs: "platform" stands in for the system's public roots (token-service reads
    // them from SSL_CERT_FILE, as rustls-native-certs does on Linux), "extra" is SNYK_CA_CERT.
    let platform_dir = tempfile::tempdir().unwrap();
    let platform = certificates(platform_dir.path());
    let extra_dir = tempfile::tempdir().unwrap();
    let extra = certificates(extra_dir.path());
    // Snyk's certificate is signed by a platform root.
    let fake = TlsFake::start(&platform).await;
    let stack = Stack::start(fake_config()).await;

    let (_service, addr) = stack
        .replica_process(&[
            ("SNYK_API_URL", fake.url.as_str()),
            ("SSL_CERT_FILE", platform.ca.as_str()),
            ("SNYK_CA_CERT", extra.ca.as_str()),
        ])
        .await;
    let (code, verifier) = fake.approve(&platform.ca).await;
    let install = client_with_key(addr, CALLER_KEY)
        .await
        .complete_install(complete_install(code, verifier))
        .await
        .expect("a platform root is still trusted with SNYK_CA_CERT set")
        .into_inner();
    assert!(!install.install_id.is_empty());
}
