//! The sign-in as a browser walks it: the landing page, `/auth`, Snyk's consent and `/callback`,
//! and every way a state can be refused (reused, raced, from another browser, expired, missing).

use super::*;

#[tokio::test]
async fn landing_page_offers_install_without_javascript() {
    let app = AuthStack::start().await;
    let browser = Browser::new();

    let (status, body) = page(browser.get(&app.url("/")).await).await;

    assert_eq!(status, 200);
    assert!(
        body.contains("<a class=\"button\" id=\"install\" href=\"/auth\">Install</a>"),
        "{body}"
    );
    assert!(body.contains("<link rel=\"stylesheet\" href=\"/static/style.css\">"));
    assert!(
        !body.contains("<script") && !body.contains("style="),
        "no inline script or style"
    );
    let css = browser.get(&app.url("/static/style.css")).await;
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    let icon = browser.get(&app.url("/static/favicon.svg")).await;
    assert_eq!(
        (
            icon.status().as_u16(),
            icon.headers()["content-type"].to_str().unwrap()
        ),
        (200, "image/svg+xml")
    );
}

#[tokio::test]
async fn happy_path_installs_and_shows_the_orgs_projects() {
    let app = AuthStack::start().await;
    let browser = Browser::new();

    // /auth: a state, a PKCE challenge, a binding cookie, and the redirect to Snyk.
    let consent = app.begin(&browser).await;
    let q = query(&consent);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["redirect_uri"], app.redirect_uri);
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    assert!(q["state"].len() >= 22, "at least 128 bits");
    assert!(!q.contains_key("scope"), "no SNYK_SCOPES, no scope");
    assert!(browser.cookie(&app.url("/"), "snykapps_binding").is_some());

    // Approve at Snyk, then the callback.
    let callback = app.decide(&browser, &consent, "approve").await;
    let res = browser.get(callback.as_str()).await;
    assert_eq!(res.status(), 303);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let session = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with("snykapps_session="))
        .expect("a session");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session.contains(attr), "{attr} in {session}");
    }
    assert!(
        !session.contains("Secure"),
        "http redirect URI: no Secure: {session}"
    );
    let install_id = location
        .strip_prefix("/installs/")
        .expect("the install's page")
        .to_owned();

    // The install's page.
    let (status, body) = page(browser.get(&app.url(&location)).await).await;
    assert_eq!(status, 200, "{body}");
    let install = get_install(&app, &install_id).await;
    assert_eq!(install.status, pb::InstallStatus::Active as i32);
    assert_eq!(install.orgs.len(), 1);
    assert_eq!(install.orgs[0].name, "Demo Org");
    assert!(body.contains("<h2>Demo Org</h2>"), "{body}");
    assert!(body.contains("25 projects"), "{body}");
    let names = project_names(&app, &install.orgs[0].id).await;
    assert_eq!(names.len(), 25);
    for name in names {
        assert!(
            body.contains(&auth_service::templates::escape(&name)),
            "{name} missing"
        );
    }
    assert!(!body.contains(RECONNECT_BANNER));
}

#[tokio::test]
async fn configured_scopes_are_requested() {
    let app = AuthStack::start_with(
        hour_long_tokens(),
        &[("SNYK_SCOPES", "org.read  org.project.read")],
    )
    .await;
    let browser = Browser::new();

    let consent = app.begin(&browser).await;
    assert_eq!(query(&consent)["scope"], "org.read org.project.read");
    let id = app.install(&browser).await;

    assert_eq!(
        get_install(&app, &id).await.scope,
        "org.read org.project.read"
    );
}

#[tokio::test]
async fn a_state_is_single_use() {
    let app = AuthStack::start().await;
    let browser = Browser::new();
    let callback = app.approved_callback(&browser).await;
    assert_eq!(browser.get(callback.as_str()).await.status(), 303);

    let (status, body) = page(browser.get(callback.as_str()).await).await;

    assert_eq!(status, 400);
    assert!(body.contains(EXPIRED), "{body}");
    assert!(body.contains("href=\"/auth\""), "a way to start again");
    assert_eq!(installs(&app).await.len(), 1);
    assert_eq!(
        app.stack.fake.stats().codes_exchanged,
        1,
        "the replay never reached Snyk"
    );
}

#[tokio::test]
async fn concurrent_callbacks_with_one_state_install_once() {
    let app = AuthStack::start().await;
    let browser = Browser::new();
    let callback = app.approved_callback(&browser).await;

    let (a, b) = tokio::join!(
        browser.get(callback.as_str()),
        browser.get(callback.as_str())
    );

    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [303, 400]);
    assert_eq!(installs(&app).await.len(), 1);
}

#[tokio::test]
async fn a_state_started_in_another_browser_is_refused() {
    let app = AuthStack::start().await;
    let attacker = Browser::new();
    // Login CSRF: the attacker approves in their own browser and sends the callback link on.
    let first = app.approved_callback(&attacker).await;
    let second = app.approved_callback(&attacker).await;

    // A victim without any cookie of ours.
    let fresh = Browser::new();
    let (status, body) = page(fresh.get(first.as_str()).await).await;
    assert_eq!(status, 400);
    assert!(body.contains(OTHER_BROWSER), "{body}");

    // A victim with a binding of their own (they had started a sign-in too).
    let victim = Browser::new();
    app.begin(&victim).await;
    assert!(victim.cookie(&app.url("/"), "snykapps_binding").is_some());
    let (status, body) = page(victim.get(second.as_str()).await).await;
    assert_eq!(status, 400);
    assert!(body.contains(OTHER_BROWSER), "{body}");

    assert!(installs(&app).await.is_empty(), "no code was redeemed");
    assert_eq!(app.stack.fake.stats().codes_exchanged, 0);
    // The binding is checked before the state is consumed: a callback opened in the wrong browser
    // does not spend the sign-in of the browser that started it (which may be the victim's own,
    // when the link leaked the other way round).
    for callback in [&first, &second] {
        assert_eq!(
            attacker.get(callback.as_str()).await.status(),
            303,
            "the right browser still finishes"
        );
    }
    assert_eq!(installs(&app).await.len(), 2);
}

#[tokio::test]
async fn an_expired_state_is_refused() {
    let app = AuthStack::start().await;
    let browser = Browser::new();
    let consent = app.begin(&browser).await;
    let state = query(&consent)["state"].clone();
    let ttl = state_ttl(&app, &state).await;
    assert!(
        (590..=600).contains(&ttl),
        "kept for ten minutes, got TTL {ttl}"
    );
    // Ten minutes pass: Redis drops the key.
    let mut c = app.auth_redis.conn().await;
    let _: () = redis::cmd("DEL")
        .arg(format!("auth:state:{state}"))
        .query_async(&mut c)
        .await
        .unwrap();
    let callback = app.decide(&browser, &consent, "approve").await;

    let (status, body) = page(browser.get(callback.as_str()).await).await;

    assert_eq!(status, 400);
    assert!(body.contains(EXPIRED), "{body}");
    assert!(installs(&app).await.is_empty());
}

#[tokio::test]
async fn missing_code_or_state_is_a_400_page() {
    let app = AuthStack::start().await;
    let browser = Browser::new();
    let consent = app.begin(&browser).await;
    let state = query(&consent)["state"].clone();

    for (path, says) in [
        (
            format!("/callback?state={state}"),
            "the code parameter is missing",
        ),
        (
            format!("/callback?state={state}&code="),
            "the code parameter is missing",
        ),
        (
            "/callback?code=abc".to_owned(),
            "the state parameter is missing",
        ),
        ("/callback".to_owned(), "the state parameter is missing"),
    ] {
        let (status, body) = page(browser.get(&app.url(&path)).await).await;
        assert_eq!(status, 400, "{path}");
        assert!(body.contains(says), "{path}: {body}");
    }

    // Bad input is refused before the state is looked at: the sign-in can still finish.
    let callback = app.decide(&browser, &consent, "approve").await;
    assert_eq!(browser.get(callback.as_str()).await.status(), 303);
}

#[tokio::test]
async fn denying_at_snyk_shows_a_cancelled_page() {
    let app = AuthStack::start().await;
    let browser = Browser::new();
    let consent = app.begin(&browser).await;
    let state = query(&consent)["state"].clone();
    let callback = app.decide(&browser, &consent, "deny").await;
    assert_eq!(query(&callback)["error"], "access_denied");

    let (status, body) = page(browser.get(callback.as_str()).await).await;

    assert_eq!(status, 200, "the user's choice, not an error");
    assert!(body.contains(CANCELLED), "{body}");
    assert!(
        body.contains("<a class=\"button\" id=\"try-again\" href=\"/auth\">Try again</a>"),
        "{body}"
    );
    assert_eq!(state_ttl(&app, &state).await, -2, "the state is consumed");
    assert!(installs(&app).await.is_empty());
}

#[tokio::test]
async fn other_snyk_errors_show_code_and_description_escaped() {
    // Asking for a scope the app does not have: Snyk redirects back with invalid_scope.
    let app = AuthStack::start_with(
        hour_long_tokens(),
        &[("SNYK_SCOPES", "org.read no.such.scope")],
    )
    .await;
    let browser = Browser::new();
    let consent = app.begin(&browser).await;
    let state = query(&consent)["state"].clone();
    let res = browser.get(consent.as_str()).await;
    assert_eq!(res.status(), 302, "the fake refuses at once");
    let callback = reqwest::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(query(&callback)["error"], "invalid_scope");

    let (status, body) = page(browser.get(callback.as_str()).await).await;

    assert_eq!(status, 400);
    assert!(
        body.contains("<code id=\"error-code\">invalid_scope</code>"),
        "{body}"
    );
    assert!(
        body.contains("scope &quot;no.such.scope&quot; is not available"),
        "{body}"
    );
    assert!(body.contains("href=\"/auth\">Try again</a>"));
    assert_eq!(state_ttl(&app, &state).await, -2, "the state is consumed");

    // Whatever Snyk puts in the description of this browser's own sign-in is shown as text.
    let consent = app.begin(&browser).await;
    let state = query(&consent)["state"].clone();
    let path = format!(
        "/callback?state={state}&error=server_error&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E"
    );
    let (status, body) = page(browser.get(&app.url(&path)).await).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{body}"
    );
    assert!(!body.contains("<script"), "{body}");
}
