//! What every response carries and what never leaks: security headers, secure cookies, error
//! pages for wrong methods, readiness, configuration errors, and logs without secrets.

use super::*;

#[tokio::test]
async fn security_headers_on_every_response() {
    let app = AuthStack::start().await;
    let browser = Browser::new();
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' {}; frame-ancestors 'none'; \
         base-uri 'none'",
        app.stack.fake.url()
    );
    for (path, private) in [
        ("/", false),
        ("/static/style.css", false),
        ("/auth", true),
        ("/callback", true),
        ("/callback?code=a&state=b", true),
        ("/installs/x", true),
        ("/healthz", false),
        ("/readyz", false),
        ("/no/such/page", false),
    ] {
        let res = browser.get(&app.url(path)).await;
        let h = res.headers();
        assert_eq!(h["content-security-policy"], csp.as_str(), "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert!(
            h.get("strict-transport-security").is_none(),
            "no HSTS over http: {path}"
        );
        if private {
            assert_eq!(h["cache-control"], "no-store", "{path}");
        }
    }
    let res = browser.get(&app.url("/auth")).await;
    let binding = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with("snykapps_binding="))
        .expect("binding");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=660"] {
        assert!(binding.contains(attr), "{attr} in {binding}");
    }
    assert!(!binding.contains("Secure"), "{binding}");
}

#[tokio::test]
async fn cookies_are_secure_when_the_public_url_is_https() {
    let port = test_support::free_port().unwrap();
    let uri = format!("https://127.0.0.1:{port}/callback");
    let app =
        AuthStack::start_with(hour_long_tokens(), &[("SNYK_REDIRECT_URI", uri.as_str())]).await;

    let res = Browser::new().get(&app.url("/auth")).await;

    assert_eq!(res.status(), 302);
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=31536000",
        "HSTS when the public URL is https"
    );
    let binding = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with("__Host-snykapps_binding="))
        .expect("a __Host- binding cookie");
    for attr in ["Secure", "Path=/", "HttpOnly"] {
        assert!(binding.contains(attr), "{attr} in {binding}");
    }
    assert!(!binding.contains("Domain"), "{binding}");
    let (status, _) = page(Browser::new().get(&app.url("/")).await).await;
    assert_eq!(status, 200);
    assert!(
        Browser::new().get(&app.url("/")).await.headers()["strict-transport-security"]
            == "max-age=31536000"
    );
}

#[tokio::test]
async fn wrong_methods_and_unknown_paths_get_error_pages() {
    let app = AuthStack::start().await;
    let http = reqwest::Client::new();

    let res = http.post(app.url("/auth")).send().await.unwrap();
    assert_eq!(res.headers()["allow"], "GET, HEAD");
    let (status, _) = page(res).await;
    assert_eq!(status, 405);

    let res = http.get(app.url("/logout")).send().await.unwrap();
    assert_eq!(res.headers()["allow"], "POST");
    let (status, _) = page(res).await;
    assert_eq!(status, 405, "logout is a POST only");

    let head = http.head(app.url("/")).send().await.unwrap();
    assert_eq!(head.status(), 200, "HEAD works where GET does");

    let (status, body) = page(http.get(app.url("/no/such/page")).send().await.unwrap()).await;
    assert_eq!(status, 404);
    assert!(body.contains("Page not found"), "{body}");
}

#[tokio::test]
async fn readiness_follows_token_service() {
    let mut app = AuthStack::start().await;
    let http = reqwest::Client::new();
    let res = http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ready");

    app.stop_token_service().await;

    let res = http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (body["token_service"].as_str(), body["redis"].as_str()),
        (Some("unavailable"), Some("ok")),
        "{body}"
    );
    assert_eq!(
        http.get(app.url("/healthz")).send().await.unwrap().status(),
        200,
        "still alive"
    );
}

#[tokio::test]
async fn readiness_follows_redis_and_sign_ins_need_it() {
    let mut app = AuthStack::start().await;
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(app.url("/readyz")).send().await.unwrap().status(),
        200
    );

    app.auth_redis.kill();

    let res = http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["redis"], "unavailable", "{body}");
    let (status, body) = page(Browser::new().get(&app.url("/auth")).await).await;
    assert_eq!(status, 503);
    assert!(body.contains(UNAVAILABLE), "{body}");
}

#[tokio::test]
async fn configuration_errors_name_the_variable() {
    let app = AuthStack::start().await;

    for name in [
        "SNYK_CLIENT_ID",
        "TOKEN_SERVICE_API_KEY",
        "PROJECTS_SERVICE_API_KEY",
        "AUTH_COOKIE_KEY",
    ] {
        let mut vars = app.auth_vars(&[]);
        vars.retain(|(n, _)| n != name);
        let err = auth_service::Settings::from_lookup(lookup(&vars)).expect_err(name);
        assert!(format!("{err:#}").contains(name), "{name}: {err:#}");
    }
    for (name, value) in [
        ("AUTH_COOKIE_KEY", "dG9vIHNob3J0"),
        ("SNYK_APP_URL", "app.snyk.io"),
        ("SNYK_REDIRECT_URI", "localhost:8080/callback"),
        ("TOKEN_SERVICE_URL", "grpc://x"),
        ("AUTH_SERVICE_ADDR", "8080"),
    ] {
        let err = auth_service::Settings::from_lookup(lookup(&app.auth_vars(&[(name, value)])))
            .expect_err(name);
        assert!(format!("{err:#}").contains(name), "{name}: {err:#}");
    }

    // Start-up fails fast, naming the variable, when its Redis is unreachable...
    let vars = app.auth_vars(&[
        (
            "AUTH_REDIS_URL",
            "redis+unix:///nonexistent/auth-redis.sock",
        ),
        ("AUTH_SERVICE_ADDR", "127.0.0.1:0"),
    ]);
    let err = AuthService::spawn(auth_service::Settings::from_lookup(lookup(&vars)).unwrap())
        .await
        .err()
        .expect("fails");
    assert!(format!("{err:#}").contains("AUTH_REDIS_URL"), "{err:#}");
    // ... or when the port is taken (here by the running auth-service).
    let settings = auth_service::Settings::from_lookup(lookup(&app.auth_vars(&[]))).unwrap();
    let err = AuthService::spawn(settings).await.err().expect("fails");
    assert!(format!("{err:#}").contains("AUTH_SERVICE_ADDR"), "{err:#}");
    // ... or the metrics port.
    let taken = reqwest::Url::parse(&app.auth.metrics_url).unwrap();
    let taken = format!("127.0.0.1:{}", taken.port().unwrap());
    let vars = app.auth_vars(&[
        ("AUTH_SERVICE_ADDR", "127.0.0.1:0"),
        ("AUTH_SERVICE_METRICS_ADDR", taken.as_str()),
    ]);
    let err = AuthService::spawn(auth_service::Settings::from_lookup(lookup(&vars)).unwrap())
        .await
        .err()
        .expect("fails");
    assert!(
        format!("{err:#}").contains("AUTH_SERVICE_METRICS_ADDR"),
        "{err:#}"
    );
}

/// Everything auth-service logs, whatever thread it logs from.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn code_verifier_state_and_cookies_never_reach_the_logs() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "auth_service=trace,tracing_actix_web=trace",
        ))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("this test owns its process's subscriber (nextest runs each test alone)");
    let app = AuthStack::start().await;
    let browser = Browser::new();

    let consent = app.begin(&browser).await;
    let state = query(&consent)["state"].clone();
    let mut c = app.auth_redis.conn().await;
    let record: String = redis::cmd("GET")
        .arg(format!("auth:state:{state}"))
        .query_async(&mut c)
        .await
        .unwrap();
    let verifier = serde_json::from_str::<Value>(&record).unwrap()["verifier"]
        .as_str()
        .unwrap()
        .to_owned();
    let callback = app.decide(&browser, &consent, "approve").await;
    let code = query(&callback)["code"].clone();
    let res = browser.get(callback.as_str()).await;
    assert_eq!(res.status(), 303);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(browser.get(&app.url(&location)).await.status(), 200);
    // The error paths log too: a replay, and a refused parameter.
    assert_eq!(browser.get(callback.as_str()).await.status(), 400);
    let bad = format!("/callback?code={code}&state={state}%00");
    assert_eq!(browser.get(&app.url(&bad)).await.status(), 400);

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("install completed") && text.contains("/callback"),
        "logging works: {text}"
    );
    let binding = browser.cookie(&app.url("/"), "snykapps_binding").unwrap();
    let session = browser.cookie(&app.url("/"), "snykapps_session").unwrap();
    for (what, secret) in [
        ("code", &code),
        ("verifier", &verifier),
        ("state", &state),
        ("binding", &binding),
        ("session", &session),
    ] {
        assert!(
            !text.contains(secret.as_str()),
            "the {what} is in the logs:\n{text}"
        );
    }
}
