//! The whole system behind a browser: the stack, projects-service and auth-service wired as in
//! production, and the install flow as a browser walks it over HTTP.

use std::net::SocketAddr;

use test_support::RedisServer;

use crate::{
    AUTH_COOKIE_KEY, AUTH_TOKEN_KEY, CALLER_KEY, CLIENT_ID, PROJECTS_KEY,
    fake::hour_long_tokens,
    http_browser::{Browser, location},
    redis_servers::{AUTH_SERVICE_USER, auth_redis},
    stack::{ProjectsService, Replica, Running, Stack, hold_port},
    token_client::{Client, client_with_key},
};

/// One running auth-service (its `Application`, on its own task).
pub struct AuthService {
    pub url: String,
    /// `http://{AUTH_SERVICE_METRICS_ADDR}`, where `/metrics` is served.
    pub metrics_url: String,
    running: Running,
}

impl AuthService {
    /// Builds and starts an auth-service with `settings`.
    pub async fn spawn(settings: auth_service::Settings) -> anyhow::Result<AuthService> {
        let app = auth_service::Application::build(settings).await?;
        let url = format!("http://{}", app.local_addr());
        let metrics_url = format!("http://{}", app.metrics_addr());
        Ok(AuthService {
            url,
            metrics_url,
            running: Running::spawn(|stop| app.run_until_stopped(stop)),
        })
    }

    /// Graceful stop: returns once in-flight requests are done.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.running.stop().await
    }
}

/// The whole system behind a browser: Redis, the fake Snyk, token-service, projects-service and
/// auth-service, wired as in production. The fake checks redirect URIs exactly, so
/// auth-service's port is chosen first and the fake registers `http://127.0.0.1:{port}/callback`.
pub struct AuthStack {
    pub stack: Stack,
    /// auth-service's own Redis (pending sign-ins), as compose runs it.
    pub auth_redis: RedisServer,
    /// `None` once [`AuthStack::stop_token_service`] ran.
    pub replica: Option<Replica>,
    pub token_addr: SocketAddr,
    pub projects: ProjectsService,
    pub auth: AuthService,
    /// auth-service's `SNYK_REDIRECT_URI`, registered at the fake.
    pub redirect_uri: String,
    /// The stopped token-service's port, held closed (see [`hold_port`]).
    token_port_hold: Option<tokio::net::TcpSocket>,
}

impl AuthStack {
    /// The stack with [`hour_long_tokens`] and auth-service's default test settings.
    pub async fn start() -> AuthStack {
        Self::start_with(hour_long_tokens(), &[]).await
    }

    /// The stack with `fake` (its redirect URIs get auth-service's added) and auth-service
    /// settings `overrides`.
    pub async fn start_with(fake: fake_snyk::Config, overrides: &[(&str, &str)]) -> AuthStack {
        Self::start_with_projects(fake, &[], overrides).await
    }

    /// [`AuthStack::start_with`], projects-service with settings `projects_overrides`.
    pub async fn start_with_projects(
        mut fake: fake_snyk::Config,
        projects_overrides: &[(&str, &str)],
        auth_overrides: &[(&str, &str)],
    ) -> AuthStack {
        let port = test_support::free_port().expect("a free port");
        fake.redirect_uris.push(auth_redirect_uri(port));
        let stack = Stack::start(fake).await;
        Self::assemble(
            stack,
            auth_redis(),
            port,
            &[],
            projects_overrides,
            auth_overrides,
        )
        .await
    }

    /// The services over `stack` (whose fake registered [`auth_redirect_uri`] of `port`) and
    /// auth-service's Redis `auth_redis`: token-service with `token_overrides`, projects-service
    /// with `projects_overrides`, auth-service on `port` with `auth_overrides`.
    pub async fn assemble(
        stack: Stack,
        auth_redis: RedisServer,
        port: u16,
        token_overrides: &[(&str, &str)],
        projects_overrides: &[(&str, &str)],
        auth_overrides: &[(&str, &str)],
    ) -> AuthStack {
        // The default token-service env has auth-service's key and real grant.
        let replica = stack.replica(token_overrides).await;
        let token_addr = replica.addr;
        let projects = stack.projects(token_addr, projects_overrides).await;
        let vars = auth_vars(
            &stack,
            &auth_redis,
            port,
            token_addr,
            &projects.url,
            auth_overrides,
        );
        let settings = auth_service::Settings::from_lookup(lookup(&vars))
            .expect("valid auth-service settings");
        let auth = AuthService::spawn(settings)
            .await
            .expect("auth-service starts");
        AuthStack {
            stack,
            auth_redis,
            replica: Some(replica),
            token_addr,
            projects,
            auth,
            redirect_uri: auth_redirect_uri(port),
            token_port_hold: None,
        }
    }

    /// The environment auth-service runs with in this stack, `overrides` applied.
    pub fn auth_vars(&self, overrides: &[(&str, &str)]) -> Vec<(String, String)> {
        let port = reqwest::Url::parse(&self.auth.url).unwrap().port().unwrap();
        auth_vars(
            &self.stack,
            &self.auth_redis,
            port,
            self.token_addr,
            &self.projects.url,
            overrides,
        )
    }

    /// `{auth-service}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.auth.url)
    }

    /// Stops token-service (gracefully) and keeps its port closed; auth-service keeps running.
    pub async fn stop_token_service(&mut self) {
        if let Some(replica) = self.replica.take() {
            replica.stop().await.expect("token-service stops");
            self.token_port_hold = Some(hold_port(self.token_addr));
        }
    }

    /// A token-service client with the tests' own `ops` key (to inspect installs and tokens).
    pub async fn token_client(&self) -> Client {
        client_with_key(self.token_addr, CALLER_KEY).await
    }

    /// `GET /auth`: asserts the 302 to the fake's consent page and returns its URL.
    pub async fn begin(&self, browser: &Browser) -> reqwest::Url {
        let res = browser.get(&self.url("/auth")).await;
        assert_eq!(res.status(), 302, "GET /auth redirects to Snyk");
        self.consent_page_of(&res)
    }

    /// The redirect `res` gives: asserts that it is Snyk's (the fake's) consent page.
    fn consent_page_of(&self, res: &reqwest::Response) -> reqwest::Url {
        let url = reqwest::Url::parse(&location(res)).expect("an absolute URL");
        assert!(
            url.as_str()
                .starts_with(&format!("{}/oauth2/authorize?", self.stack.fake.url())),
            "{url}"
        );
        url
    }

    /// On the consent page at `consent`, presses the button with id `button` (`approve` or
    /// `deny`) as a browser would; returns where Snyk sends the browser back to (not visited).
    pub async fn decide(
        &self,
        browser: &Browser,
        consent: &reqwest::Url,
        button: &str,
    ) -> reqwest::Url {
        let res = browser.get(consent.as_str()).await;
        assert_eq!(res.status(), 200, "the consent page shows");
        let html = res.text().await.unwrap();
        let res = browser.press(consent, &html, button).await;
        assert_eq!(res.status(), 302, "the decision redirects back to the app");
        let url = reqwest::Url::parse(&location(&res)).expect("an absolute URL");
        assert!(
            url.as_str().starts_with(&format!("{}?", self.redirect_uri)),
            "{url}"
        );
        url
    }

    /// `/auth`, then Approve: the callback URL the browser is sent to (not visited yet).
    pub async fn approved_callback(&self, browser: &Browser) -> reqwest::Url {
        let consent = self.begin(browser).await;
        self.decide(browser, &consent, "approve").await
    }

    /// The whole install in `browser`; asserts the 303 to the install's page, returns its id.
    pub async fn install(&self, browser: &Browser) -> String {
        let callback = self.approved_callback(browser).await;
        let res = browser.get(callback.as_str()).await;
        assert_eq!(res.status(), 303, "the callback completes the install");
        location(&res)
            .strip_prefix("/installs/")
            .expect("redirects to the install's page")
            .to_owned()
    }

    /// A form post from auth-service's own page, as a browser labels it (`Origin` and
    /// `Sec-Fetch-Site: same-origin`).
    pub async fn post_from_our_page(&self, browser: &Browser, path: &str) -> reqwest::Response {
        let origin = self.auth.url.clone();
        browser
            .post(
                &self.url(path),
                &[
                    ("origin", origin.as_str()),
                    ("sec-fetch-site", "same-origin"),
                ],
            )
            .await
    }

    /// Presses Reconnect on install `id`'s page: asserts the 303 to the fake's consent page and
    /// returns its URL.
    pub async fn begin_reconnect(&self, browser: &Browser, id: &str) -> reqwest::Url {
        let res = self
            .post_from_our_page(browser, &format!("/installs/{id}/reconnect"))
            .await;
        assert_eq!(res.status(), 303, "Reconnect redirects to Snyk");
        self.consent_page_of(&res)
    }

    /// Reconnect on install `id`'s page, then Approve at Snyk: the callback URL the browser is
    /// sent to (not visited yet).
    pub async fn approved_reconnect(&self, browser: &Browser, id: &str) -> reqwest::Url {
        let consent = self.begin_reconnect(browser, id).await;
        self.decide(browser, &consent, "approve").await
    }

    /// The user approves at Snyk's consent page `consent` but picks only `orgs`: the callback URL
    /// (with the consent page's state) the browser is sent to, not visited.
    pub fn approve_for_orgs(
        &self,
        consent: &reqwest::Url,
        orgs: &[&fake_snyk::OrgSeed],
    ) -> reqwest::Url {
        let q: std::collections::HashMap<String, String> =
            consent.query_pairs().into_owned().collect();
        let ids: Vec<_> = orgs.iter().map(|o| o.id).collect();
        let code = self
            .stack
            .fake
            .approve_for_orgs(
                CLIENT_ID,
                &self.redirect_uri,
                &q["code_challenge"],
                None,
                &ids,
            )
            .expect("approved");
        let mut url = reqwest::Url::parse(&self.redirect_uri).unwrap();
        url.query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &q["state"]);
        url
    }
}

/// The whole install as a browser makes it over HTTP, against the app at `app_url` wherever it
/// runs (in-process or in containers): `/auth`, Approve on Snyk's consent page, the callback.
/// Asserts each step's status; returns the install's id.
pub async fn install_over_http(browser: &Browser, app_url: &str) -> String {
    let res = browser.get(&format!("{app_url}/auth")).await;
    assert_eq!(res.status(), 302, "GET {app_url}/auth redirects to Snyk");
    let consent = reqwest::Url::parse(&location(&res)).expect("an absolute URL");
    let res = browser.get(consent.as_str()).await;
    assert_eq!(res.status(), 200, "Snyk's consent page shows: {consent}");
    let html = res.text().await.unwrap();
    let res = browser.press(&consent, &html, "approve").await;
    assert_eq!(res.status(), 302, "Approve redirects back to the app");
    let res = browser.get(&location(&res)).await;
    assert_eq!(res.status(), 303, "the callback completes the install");
    location(&res)
        .strip_prefix("/installs/")
        .expect("redirects to the install's page")
        .to_owned()
}

/// The redirect URI auth-service on `port` registers at the fake.
pub fn auth_redirect_uri(port: u16) -> String {
    format!("http://127.0.0.1:{port}/callback")
}

fn auth_vars(
    stack: &Stack,
    auth_redis: &RedisServer,
    port: u16,
    token_service: SocketAddr,
    projects_url: &str,
    overrides: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = vec![
        ("AUTH_SERVICE_ADDR".into(), format!("127.0.0.1:{port}")),
        // Port 0: the OS picks a free one (read back from `AuthService::metrics_url`).
        ("AUTH_SERVICE_METRICS_ADDR".into(), "127.0.0.1:0".into()),
        ("SNYK_APP_URL".into(), stack.fake.url()),
        ("SNYK_CLIENT_ID".into(), CLIENT_ID.into()),
        ("SNYK_REDIRECT_URI".into(), auth_redirect_uri(port)),
        (
            "TOKEN_SERVICE_URL".into(),
            format!("http://{token_service}"),
        ),
        ("TOKEN_SERVICE_API_KEY".into(), AUTH_TOKEN_KEY.into()),
        ("PROJECTS_SERVICE_URL".into(), projects_url.to_owned()),
        ("PROJECTS_SERVICE_API_KEY".into(), PROJECTS_KEY.into()),
        (
            "AUTH_REDIS_URL".into(),
            auth_redis.url_as(AUTH_SERVICE_USER),
        ),
        ("AUTH_COOKIE_KEY".into(), AUTH_COOKIE_KEY.into()),
    ];
    for (k, v) in overrides {
        vars.retain(|(n, _)| n != k);
        vars.push(((*k).to_owned(), (*v).to_owned()));
    }
    vars
}

/// A settings lookup over `vars`.
pub fn lookup(vars: &[(String, String)]) -> impl Fn(&str) -> Option<String> + '_ {
    move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}
