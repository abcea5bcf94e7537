//! The Snyk clients follow no redirect: a 3xx from the token endpoint or the REST API is an error,
//! and the form (client secret, refresh token) or the bearer token never reaches the `Location`.
//! A recorder stands where the redirect points and proves nothing arrived there.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use fake_snyk::Fault;
use snykapps_proto::token_v1 as pb;
use system_tests::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tonic::Code;

/// A plain HTTP server that records every request it gets and answers each with 200 and a body
/// that would pass for both a token answer and an empty REST page, so a client that followed the
/// redirect would seem to succeed.
struct Recorder {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or(0);
                    // A connection counts even if nothing readable came: it should not exist.
                    seen.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                    let body = r#"{"access_token":"stolen","expires_in":3600,"refresh_token":"stolen-r","token_type":"bearer","scope":"org.read","bot_id":"x","data":[]}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        Recorder { addr, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_redirected_refresh_fails_sends_nothing_elsewhere_and_keeps_the_install() {
    let recorder = Recorder::start().await;
    let stack = Stack::start(fake_config()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let t0 = access_token(&mut c, &install.install_id).await;
    stack.fake.inject(Fault::TokenRedirects {
        location: recorder.url("/oauth2/token"),
        count: 100,
    });

    let err = c
        .force_refresh(force(&install.install_id, &t0))
        .await
        .unwrap_err();

    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert!(err.message().contains("redirect"), "{}", err.message());
    assert_eq!(recorder.requests(), Vec::<String>::new());
    // One request, not retried: a redirect is a definite answer.
    assert_eq!(stack.refresh_calls(), 1);
    assert_eq!(
        install_status(&mut c, &install.install_id).await.status(),
        pb::InstallStatus::Active
    );

    // The refresh token was not spent: once the host stops redirecting, it refreshes.
    stack.fake.clear_faults();
    let t1 = forced_token(&mut c, &install.install_id, &t0).await;
    assert_ne!(t1, t0);
    assert!(stack.token_works(&t1).await);
    assert_eq!(stack.fake.stats().spent_refresh_token_reuses, 0);
    assert_eq!(recorder.requests(), Vec::<String>::new());
}

#[tokio::test]
async fn a_redirected_orgs_listing_fails_the_install_without_following() {
    let recorder = Recorder::start().await;
    let stack = Stack::start(fake_config()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    stack.fake.inject(Fault::RestRedirects {
        location: recorder.url("/rest/orgs"),
        count: 100,
    });
    let (verifier, challenge) = pkce();
    let code = stack
        .fake
        .approve(CLIENT_ID, REDIRECT_URI, &challenge, None)
        .unwrap();

    let err = c
        .complete_install(pb::CompleteInstallRequest {
            code,
            code_verifier: verifier,
            redirect_uri: REDIRECT_URI.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();

    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert_eq!(recorder.requests(), Vec::<String>::new());
    let stats = stack.fake.stats();
    assert_eq!(stats.rest_calls[&307], 1, "one request, not retried");
    // The grant it could not keep is revoked (at the API host, not at the redirect's target).
    assert_eq!(stats.revocations, 1);
}

#[tokio::test]
async fn a_redirected_projects_listing_fails_without_following() {
    let recorder = Recorder::start().await;
    let stack = Stack::start(fake_config()).await;
    let replica = stack.replica(&[]).await;
    let mut c = client(&replica).await;
    let install = stack.install(&mut c).await;
    let org = install.orgs[0].id.clone();
    let projects = stack.projects(replica.addr, &[]).await;
    stack.fake.inject(Fault::RestRedirects {
        location: recorder.url(&format!("/rest/orgs/{org}/projects")),
        count: 100,
    });

    let res = projects.get(&format!("/v1/orgs/{org}/projects")).await;

    assert_eq!(res.status().as_u16(), 502);
    let body = res.text().await.unwrap();
    assert!(body.contains("redirect"), "{body}");
    assert_eq!(recorder.requests(), Vec::<String>::new());
    assert_eq!(stack.fake.stats().rest_calls[&307], 1, "not retried");
    assert_eq!(
        install_status(&mut c, &install.install_id).await.status(),
        pb::InstallStatus::Active
    );
}
