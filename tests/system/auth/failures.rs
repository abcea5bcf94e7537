//! What the browser is shown when Snyk or a service refuses or fails: Snyk's errors, codes it
//! refuses, token-service or projects-service down, malformed input, revoked installs.

use super::*;

const UNVERIFIED: &str = "The installation was not completed";

#[tokio::test]
async fn snyk_error_text_is_shown_only_for_this_browsers_own_state() {
    let app = AuthStack::start().await;
    let owner = Browser::new();
    let consent = app.begin(&owner).await;
    let state = query(&consent)["state"].clone();
    let phish = "error=server_error&error_description=Call+%2B1-555-0100+to+restore+access";
    let unknown = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    // Anyone can craft these links: no state, a state never issued, another browser's state.
    let stranger = Browser::new();
    for (browser, path) in [
        (&owner, format!("/callback?{phish}")),
        (&owner, format!("/callback?state={unknown}&{phish}")),
        (&owner, format!("/callback?state=not-a-state&{phish}")),
        (&stranger, format!("/callback?state={state}&{phish}")),
        (
            &stranger,
            format!("/callback?state={state}&error=access_denied"),
        ),
    ] {
        let (status, body) = page(browser.get(&app.url(&path)).await).await;
        assert_eq!(status, 400, "{path}");
        assert!(body.contains(UNVERIFIED), "{path}: {body}");
        assert!(
            !body.contains("555-0100") && !body.contains("server_error"),
            "Snyk's (the link's) text is not shown: {body}"
        );
        assert!(!body.contains(CANCELLED), "{body}");
    }
    assert!(
        state_ttl(&app, &state).await > 0,
        "the owner's state was not spent by the stranger's error callback"
    );

    // The owner's own state: Snyk's text, and the state is spent.
    let path = format!("/callback?state={state}&{phish}");
    let (status, body) = page(owner.get(&app.url(&path)).await).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("<code id=\"error-code\">server_error</code>")
            && body.contains("Call +1-555-0100 to restore access"),
        "{body}"
    );
    assert_eq!(state_ttl(&app, &state).await, -2, "the state is consumed");
}

#[tokio::test]
async fn a_code_snyk_refuses_is_a_400_page() {
    let app = AuthStack::start().await;
    let browser = Browser::new();
    let callback = app.approved_callback(&browser).await;
    // Someone redeems the code first (with a wrong verifier): Snyk burns it.
    let burn = reqwest::Client::new()
        .post(format!("{}/oauth2/token", app.stack.fake.url()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", query(&callback)["code"].as_str()),
            ("redirect_uri", app.redirect_uri.as_str()),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("code_verifier", &"x".repeat(64)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(burn.status(), 400);

    let (status, body) = page(browser.get(callback.as_str()).await).await;

    assert_eq!(status, 400);
    assert!(body.contains(REJECTED), "{body}");
    assert!(body.contains("href=\"/auth\">Try again</a>"));
    assert!(installs(&app).await.is_empty());
}

#[tokio::test]
async fn token_service_down_is_a_503_page() {
    let mut app = AuthStack::start().await;
    let browser = Browser::new();
    let callback = app.approved_callback(&browser).await;
    app.stop_token_service().await;

    let res = browser.get(callback.as_str()).await;
    assert_eq!(res.headers()["retry-after"], "5");
    let (status, body) = page(res).await;

    assert_eq!(status, 503);
    assert!(
        body.contains(UNAVAILABLE) && body.contains("installation service is unavailable"),
        "{body}"
    );
    assert!(body.contains("href=\"/auth\">Try again</a>"));
}

#[tokio::test]
async fn oversized_and_malformed_parameters_are_400_pages() {
    let app = AuthStack::start().await;
    let browser = Browser::new();
    let consent = app.begin(&browser).await;
    let state = query(&consent)["state"].clone();

    let cases = [
        format!("/callback?code=abc&state={}", "a".repeat(10 * 1024)),
        format!("/callback?code={}&state={state}", "c".repeat(3000)),
        format!(
            "/callback?error=access_denied&error_description={}",
            "d".repeat(3000)
        ),
        "/callback?code=abc&state=%FF%FE%FD".into(),
        format!("/callback?code=%C3%28&state={state}"),
        format!("/callback?code=a%00b&state={state}"),
        format!("/callback?code=a%0D%0ASet-Cookie:x=y&state={state}"),
        format!("/callback?code=abc&state={state}&state={state}"),
        "/callback?error=%FF%FE".into(),
        "/callback?code=abc&state=%zz%".into(),
        "/callback?code=abc&state=not-a-state-this-service-issued".into(),
        format!("/callback?x={}", "%".repeat(12 * 1024)),
    ];
    for path in &cases {
        let (status, body) = page(browser.get(&app.url(path)).await).await;
        assert_eq!(status, 400, "{}: {body}", &path[..path.len().min(80)]);
        assert!(body.contains("href=\"/auth\">Try again</a>"), "a way out");
    }
    // A query too long for any page: refused before the handler, still not a 5xx.
    let res = browser
        .get(&app.url(&format!("/callback?x={}", "a".repeat(40 * 1024))))
        .await;
    assert!(res.status().is_client_error(), "{}", res.status());

    // None of it touched the pending sign-in, which still completes.
    let callback = app.decide(&browser, &consent, "approve").await;
    assert_eq!(browser.get(callback.as_str()).await.status(), 303);
}

#[tokio::test]
async fn an_install_page_is_visible_only_to_its_browser() {
    let app = AuthStack::start().await;
    let owner = Browser::new();
    let id = app.install(&owner).await;
    let (status, _) = page(owner.get(&app.url(&format!("/installs/{id}"))).await).await;
    assert_eq!(status, 200);

    let stranger = Browser::new();
    let (status, theirs) = page(stranger.get(&app.url(&format!("/installs/{id}"))).await).await;
    assert_eq!(status, 404);
    let (status, unknown) = page(
        stranger
            .get(&app.url("/installs/3f1a0b9e-8f5c-4f4e-9a51-6f1f6f0f1a2b"))
            .await,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        theirs, unknown,
        "an install of someone else looks exactly like no install"
    );
    let (status, garbage) = page(stranger.get(&app.url("/installs/..%2F..%2Fetc")).await).await;
    assert_eq!((status, garbage), (404, unknown.clone()));

    // A session cookie cannot be forged: the plain id, or the owner's cookie sealed by another key.
    let forger = Browser::new();
    forger.set_cookie(&app.url("/"), "snykapps_session", &id);
    let (status, body) = page(forger.get(&app.url(&format!("/installs/{id}"))).await).await;
    assert_eq!((status, body), (404, unknown));
}

#[tokio::test]
async fn sign_ins_in_two_tabs_both_finish() {
    let app = AuthStack::start().await;
    let browser = Browser::new();
    let first = app.approved_callback(&browser).await;
    let second = app.approved_callback(&browser).await;

    let a = browser.get(first.as_str()).await;
    let b = browser.get(second.as_str()).await;

    assert_eq!((a.status().as_u16(), b.status().as_u16()), (303, 303));
    for res in [a, b] {
        let location = res.headers()["location"].to_str().unwrap().to_owned();
        // The last cookie lists both installs.
        let (status, _) = page(browser.get(&app.url(&location)).await).await;
        assert_eq!(status, 200, "{location}");
    }
    assert_eq!(installs(&app).await.len(), 2);
}

#[tokio::test]
async fn a_revoked_install_offers_reconnect() {
    let app = AuthStack::start().await;
    let browser = Browser::new();
    let id = app.install(&browser).await;
    let mut c = app.token_client().await;
    let token = c
        .get_access_token(by_install(&id))
        .await
        .unwrap()
        .into_inner()
        .access_token;
    // The user removes the app in Snyk: the grant is revoked.
    app.stack.revoke_at_snyk(&token).await;
    let page_url = app.url(&format!("/installs/{id}"));

    // token-service does not know yet: projects-service meets the 401, its forced refresh is
    // refused, and it answers 409 needs_reauth.
    let (status, body) = page(browser.get(&page_url).await).await;
    assert_eq!(status, 200);
    assert!(
        body.contains(RECONNECT_BANNER) && body.contains(&reconnect_button(&id)),
        "{body}"
    );

    // From then on the install itself says so.
    assert_eq!(
        get_install(&app, &id).await.status,
        pb::InstallStatus::NeedsReauth as i32
    );
    let (status, body) = page(browser.get(&page_url).await).await;
    assert_eq!(status, 200);
    assert!(
        body.contains(RECONNECT_BANNER) && body.contains(&reconnect_button(&id)),
        "{body}"
    );
    assert!(
        body.contains("<h2>Demo Org</h2>") && !body.contains("<table>"),
        "{body}"
    );
    assert!(
        !body.contains("href=\"/auth\""),
        "no link to a new install: {body}"
    );
    let consent = app.begin_reconnect(&browser, &id).await;
    let pending = pending_sign_ins(&app.auth_redis).await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(
        pending[0]["reconnect"], id,
        "the install travels in the server-side state: {pending:?}"
    );
    assert!(
        !consent.as_str().contains(&id),
        "and never in a URL: {consent}"
    );
}

#[tokio::test]
async fn a_revoked_install_found_by_force_refresh_offers_reconnect() {
    let app = AuthStack::start().await;
    let browser = Browser::new();
    let id = app.install(&browser).await;
    let mut c = app.token_client().await;
    let token = c
        .get_access_token(by_install(&id))
        .await
        .unwrap()
        .into_inner()
        .access_token;
    app.stack.revoke_at_snyk(&token).await;
    let err = c.force_refresh(force(&id, &token)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    let rest_before = app
        .stack
        .fake
        .stats()
        .rest_calls_by_path
        .get("projects")
        .copied()
        .unwrap_or(0);

    let (status, body) = page(browser.get(&app.url(&format!("/installs/{id}"))).await).await;

    assert_eq!(status, 200);
    assert!(
        body.contains(RECONNECT_BANNER) && body.contains(&reconnect_button(&id)),
        "{body}"
    );
    let rest_after = app
        .stack
        .fake
        .stats()
        .rest_calls_by_path
        .get("projects")
        .copied()
        .unwrap_or(0);
    assert_eq!(
        rest_before, rest_after,
        "no listing is attempted for an install that needs re-authorization"
    );
}

#[tokio::test]
async fn projects_service_down_leaves_the_page_up() {
    let app = AuthStack::start().await;
    let browser = Browser::new();
    let id = app.install(&browser).await;
    let page_url = app.url(&format!("/installs/{id}"));
    let projects_addr = reqwest::Url::parse(&app.projects.url)
        .unwrap()
        .socket_addrs(|| None)
        .unwrap()[0];
    app.projects.stop().await.unwrap();
    let _closed = hold_port(projects_addr);

    let (status, body) = page(browser.get(&page_url).await).await;

    assert_eq!(status, 200);
    assert!(body.contains("<h2>Demo Org</h2>"), "{body}");
    assert!(
        body.contains("The project list is unavailable right now"),
        "{body}"
    );
}

#[tokio::test]
async fn the_install_page_is_a_503_when_token_service_is_down() {
    let mut app = AuthStack::start().await;
    let browser = Browser::new();
    let id = app.install(&browser).await;
    app.stop_token_service().await;

    let (status, body) = page(browser.get(&app.url(&format!("/installs/{id}"))).await).await;

    assert_eq!(status, 503);
    assert!(body.contains(UNAVAILABLE), "{body}");
}
