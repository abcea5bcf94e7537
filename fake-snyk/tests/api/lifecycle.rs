//! Starting and stopping the fake.

use std::time::Duration;

use fake_snyk::{Config, FakeSnyk, Fault};
use reqwest::StatusCode;

use crate::helpers::{CLIENT_ID, CLIENT_SECRET, config, spawn};

#[tokio::test]
async fn url_and_local_addr_name_the_bound_port() {
    let app = spawn().await;
    let addr = app.fake.local_addr();
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0);
    assert_eq!(app.fake.url(), format!("http://127.0.0.1:{}", addr.port()));
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_then_stops_listening() {
    let app = spawn().await;
    let tokens = app.install().await;
    app.fake
        .inject(Fault::TokenLatency(Duration::from_millis(400)));
    let (client, url) = (app.client.clone(), format!("{}/oauth2/token", app.base));
    let in_flight = tokio::spawn(async move {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens.refresh_token.as_str()),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ];
        client
            .post(url)
            .form(&form)
            .send()
            .await
            .map(|r| r.status())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    app.fake.clone().shutdown().await;

    assert_eq!(in_flight.await.unwrap().unwrap(), StatusCode::OK);
    let after = reqwest::Client::new()
        .get(format!("{}/_fake/stats", app.base))
        .send()
        .await;
    assert!(after.unwrap_err().is_connect());
}

#[tokio::test]
async fn an_unusable_config_is_refused_at_start() {
    for config in [
        Config {
            redirect_uris: vec![],
            ..config()
        },
        Config {
            redirect_uris: vec!["not a url".to_owned()],
            ..config()
        },
        Config {
            client_id: String::new(),
            ..config()
        },
        Config {
            scope: " ".to_owned(),
            ..config()
        },
        Config {
            orgs: vec![
                fake_snyk::OrgSeed::new("A", 1),
                fake_snyk::OrgSeed::new("A", 2),
            ],
            ..config()
        },
    ] {
        let error = FakeSnyk::start(config).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    }
}

#[tokio::test]
async fn the_default_config_seeds_demo_org() {
    let config = Config::new("id", "secret", "http://localhost:8080/callback");
    assert_eq!(config.orgs.len(), 1);
    assert_eq!(config.orgs[0].name, "Demo Org");
    assert_eq!(config.orgs[0].projects, 25);
    assert_eq!(config.access_token_ttl, Duration::from_secs(3600));
    assert_eq!(config.code_ttl, Duration::from_secs(600));
    assert_eq!(
        config.refresh_token_ttl,
        Duration::from_secs(180 * 24 * 3600)
    );
    assert_eq!(config.scope, "org.read org.project.read");
}
