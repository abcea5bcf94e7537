//! auth-service, the browser side of the install, against a private Redis, the fake Snyk, a real
//! token-service and a real projects-service. A `Browser` (cookies, no automatic redirects) walks
//! every branch of `/auth` and `/callback` and the install page.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use fake_snyk::OrgSeed;
use serde_json::Value;
use snykapps_proto::token_v1 as pb;
use system_tests::*;

const CANCELLED: &str = "You cancelled the installation";
const EXPIRED: &str = "This sign-in link has expired or was already used; start again.";
const OTHER_BROWSER: &str = "started in another browser";
const REJECTED: &str = "Snyk did not accept the authorization";
const UNAVAILABLE: &str = "Temporarily unavailable";
const RECONNECT_BANNER: &str = "Snyk access was lost; reconnect.";
const REFUSED: &str = "Request refused";
const NOT_YOURS: &str = "This installation cannot be changed from here";

/// The Reconnect button of install `id`'s page: a form post for that install, never a link to
/// `/auth` (which would make a new install).
fn reconnect_button(id: &str) -> String {
    format!(
        "<form class=\"reconnect\" method=\"post\" action=\"/installs/{id}/reconnect\">\
         <button class=\"button\" type=\"submit\" id=\"reconnect\">Reconnect</button></form>"
    )
}

async fn page(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let html = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = res.text().await.unwrap();
    assert!(
        html.starts_with("text/html"),
        "an HTML page, got {status} {html:?}: {body}"
    );
    (status, body)
}

fn query(url: &reqwest::Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

fn set_cookies(res: &reqwest::Response) -> Vec<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

async fn installs(app: &AuthStack) -> Vec<pb::Install> {
    let mut c = app.token_client().await;
    c.list_installs(pb::ListInstallsRequest {
        page_size: 100,
        page_token: String::new(),
    })
    .await
    .unwrap()
    .into_inner()
    .installs
}

async fn get_install(app: &AuthStack, id: &str) -> pb::Install {
    let mut c = app.token_client().await;
    c.get_install(pb::GetInstallRequest {
        install_id: id.into(),
    })
    .await
    .unwrap()
    .into_inner()
}

/// The names of `org`'s projects, as projects-service lists them.
async fn project_names(app: &AuthStack, org: &str) -> Vec<String> {
    let body: Value = app
        .projects
        .get(&format!("/v1/orgs/{org}/projects"))
        .await
        .json()
        .await
        .unwrap();
    body["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn state_ttl(app: &AuthStack, state: &str) -> i64 {
    let mut c = app.auth_redis.conn().await;
    redis::cmd("TTL")
        .arg(format!("auth:state:{state}"))
        .query_async(&mut c)
        .await
        .unwrap()
}

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
    assert!(browser.cookie("snykapps_binding").is_some());

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
    assert!(victim.cookie("snykapps_binding").is_some());
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
    forger.set_cookie("snykapps_session", &id);
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
    let binding = browser.cookie("snykapps_binding").unwrap();
    let session = browser.cookie("snykapps_session").unwrap();
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

// ---- sessions: expiry, key rotation, logout --------------------------------------------------

/// A second 64-byte key (63..=0), base64: not the stack's.
const OTHER_COOKIE_KEY: &str =
    "Pz49PDs6OTg3NjU0MzIxMC8uLSwrKikoJyYlJCMiISAfHh0cGxoZGBcWFRQTEhEQDw4NDAsKCQgHBgUEAwIBAA==";

/// The value of a session cookie listing `install_id`, sealed with `key` at `sealed_at` for `ttl`.
fn sealed_session(key: &str, install_id: &str, sealed_at: u64, ttl: u64) -> String {
    let cookies = auth_service::session::Cookies::new(
        auth_service::config::CookieKey::parse(key)
            .unwrap()
            .key()
            .clone(),
        vec![],
        false,
        std::time::Duration::from_secs(ttl),
    );
    let mut session = auth_service::session::Session::default();
    session.add(snykapps_ids::InstallId::parse(install_id).unwrap());
    cookies
        .session_cookie_at(&session, sealed_at)
        .value()
        .to_owned()
}

#[tokio::test]
async fn expired_and_foreign_session_cookies_are_refused() {
    let app =
        AuthStack::start_with(hour_long_tokens(), &[("AUTH_SESSION_TTL_SECONDS", "600")]).await;
    let owner = Browser::new();
    let id = app.install(&owner).await;
    let page_url = app.url(&format!("/installs/{id}"));
    let now = auth_service::state::unix_now();

    // The cookie the service set lives as long as AUTH_SESSION_TTL_SECONDS says.
    let callback = app.approved_callback(&owner).await;
    let res = owner.get(callback.as_str()).await;
    let session = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with("snykapps_session="))
        .expect("a session");
    assert!(session.contains("Max-Age=600"), "{session}");

    let presenting = |value: String| {
        let b = Browser::new();
        b.set_cookie("snykapps_session", &value);
        b
    };
    // Sealed with the right key a moment ago: opens (the forging method works).
    let fresh = presenting(sealed_session(AUTH_COOKIE_KEY, &id, now, 600));
    assert_eq!(page(fresh.get(&page_url).await).await.0, 200);
    // Sealed with the right key, but its sealed expiry has passed: whatever the browser keeps.
    let expired = presenting(sealed_session(AUTH_COOKIE_KEY, &id, now - 601, 600));
    assert_eq!(page(expired.get(&page_url).await).await.0, 404, "expired");
    let long_ago = presenting(sealed_session(
        AUTH_COOKIE_KEY,
        &id,
        now - 86_400 * 31,
        86_400 * 30,
    ));
    assert_eq!(page(long_ago.get(&page_url).await).await.0, 404, "expired");
    // Sealed with a key the service does not hold.
    let foreign = presenting(sealed_session(OTHER_COOKIE_KEY, &id, now, 600));
    assert_eq!(
        page(foreign.get(&page_url).await).await.0,
        404,
        "foreign key"
    );
}

#[tokio::test]
async fn cookie_keys_rotate_without_signing_anyone_out() {
    let app = AuthStack::start().await;
    let browser = Browser::new();
    let first = app.install(&browser).await;
    // A service instance with the new key first and the old one kept, and one with only the new
    // key; both share the stack's Redis and token-service (the browser's cookies follow the host).
    let spawn = |keys: String| {
        let vars = app.auth_vars(&[
            ("AUTH_SERVICE_ADDR", "127.0.0.1:0"),
            ("AUTH_COOKIE_KEY", keys.as_str()),
        ]);
        AuthService::spawn(auth_service::Settings::from_lookup(lookup(&vars)).unwrap())
    };
    let rotated = spawn(format!("{OTHER_COOKIE_KEY},{AUTH_COOKIE_KEY}"))
        .await
        .unwrap();
    let only_new = spawn(OTHER_COOKIE_KEY.to_owned()).await.unwrap();
    let on = |svc: &AuthService, id: &str| format!("{}/installs/{id}", svc.url);

    // The cookie sealed with the old key opens after the rotation...
    assert_eq!(page(browser.get(&on(&rotated, &first)).await).await.0, 200);
    // ... but not where the old key is gone.
    assert_eq!(page(browser.get(&on(&only_new, &first)).await).await.0, 404);

    // The rotated service seals with the new key: its cookie opens with the new key alone.
    let mut callback = app.approved_callback(&browser).await;
    callback
        .set_port(reqwest::Url::parse(&rotated.url).unwrap().port())
        .unwrap();
    let res = browser.get(callback.as_str()).await;
    assert_eq!(res.status(), 303);
    let second = res.headers()["location"].to_str().unwrap()["/installs/".len()..].to_owned();
    for id in [&first, &second] {
        assert_eq!(
            page(browser.get(&on(&only_new, id)).await).await.0,
            200,
            "{id}"
        );
    }
    assert_eq!(
        page(browser.get(&app.url(&format!("/installs/{second}"))).await)
            .await
            .0,
        404,
        "the old-key-only service cannot open a cookie sealed with the new key"
    );
    rotated.stop().await.unwrap();
    only_new.stop().await.unwrap();
}

#[tokio::test]
async fn logout_clears_the_session_and_refuses_cross_site_posts() {
    let app = AuthStack::start().await;
    let browser = Browser::new();
    let id = app.install(&browser).await;
    let page_url = app.url(&format!("/installs/{id}"));
    let (status, body) = page(browser.get(&page_url).await).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("<form class=\"logout\" method=\"post\" action=\"/logout\">")
            && body.contains("id=\"logout\">Log out</button>"),
        "a Logout button: {body}"
    );
    let origin = app.auth.url.clone();

    // Another site's form, or a post that cannot be told apart from one: refused, nothing cleared.
    for headers in [
        &[
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ][..],
        &[("origin", "https://evil.example")],
        &[("origin", "null")],
        &[("sec-fetch-site", "cross-site")],
        &[],
    ] {
        let res = browser.post(&app.url("/logout"), headers).await;
        assert!(set_cookies(&res).is_empty(), "{headers:?}");
        let (status, body) = page(res).await;
        assert_eq!(status, 403, "{headers:?}");
        assert!(body.contains("Request refused"), "{body}");
        assert_eq!(
            page(browser.get(&page_url).await).await.0,
            200,
            "still signed in"
        );
    }

    // Our own page's form.
    let res = browser
        .post(
            &app.url("/logout"),
            &[
                ("origin", origin.as_str()),
                ("sec-fetch-site", "same-origin"),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/");
    assert_eq!(res.headers()["cache-control"], "no-store");
    let cleared = set_cookies(&res);
    for name in ["snykapps_session=", "snykapps_binding="] {
        let c = cleared
            .iter()
            .find(|c| c.starts_with(name))
            .unwrap_or_else(|| panic!("{name} cleared: {cleared:?}"));
        assert!(c.contains("Max-Age=0") && c.contains("Path=/"), "{c}");
    }
    assert!(browser.cookie("snykapps_session").is_none());
    let (status, _) = page(browser.get(&page_url).await).await;
    assert_eq!(
        status, 404,
        "signed out: the install page is gone for this browser"
    );
    let (status, body) = page(browser.get(&app.url("/")).await).await;
    assert_eq!(status, 200);
    assert!(body.contains("id=\"install\""), "{body}");
}

// ---- /auth rate limit ----------------------------------------------------------------------

#[tokio::test]
async fn an_auth_flood_gets_429_while_an_install_in_progress_completes() {
    let app =
        AuthStack::start_with(hour_long_tokens(), &[("AUTH_RATE_LIMIT_PER_MINUTE", "5")]).await;
    let user = Browser::new();
    // A sign-in under way: Snyk's consent page is open.
    let consent = app.begin(&user).await;

    // The same address floods /auth.
    let flooder = Browser::new();
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..20 {
        let res = flooder.get(&app.url("/auth")).await;
        statuses.push(res.status().as_u16());
        if res.status() == 429 {
            limited = Some(res);
        }
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 302).count(),
        4,
        "the burst is the per-minute limit (the user's /auth used one): {statuses:?}"
    );
    assert!(statuses[4..].iter().all(|s| *s == 429), "{statuses:?}");
    let res = limited.expect("a 429");
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!(
        (1..=60).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    assert_eq!(res.headers()["cache-control"], "no-store");
    let (_, body) = page(res).await;
    assert!(body.contains("Too many sign-ins"), "{body}");
    let mut c = app.auth_redis.conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("auth:state:*")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(keys.len(), 5, "refused requests write no state");

    // The user's install, started before the flood, still completes.
    let callback = app.decide(&user, &consent, "approve").await;
    assert_eq!(user.get(callback.as_str()).await.status(), 303);
    // And the rest of the app is not limited.
    assert_eq!(page(user.get(&app.url("/")).await).await.0, 200);
}

// ---- state store: single use under races -------------------------------------------------------

#[tokio::test]
async fn of_hundreds_of_concurrent_consumers_of_one_state_exactly_one_wins() {
    let app = AuthStack::start().await;
    let states = auth_service::state::StateStore::connect(
        &service_runtime::redis::RedisTarget::parse(&app.auth_redis.url()).unwrap(),
        std::time::Duration::from_secs(2),
    )
    .await
    .unwrap();
    let binding = auth_service::state::Binding::generate();
    let verifier = auth_service::pkce::new_verifier();
    for _ in 0..5 {
        let state = states
            .begin(&binding, &verifier, auth_service::state::Purpose::Install)
            .await
            .unwrap();
        let pending = states.peek(&state).await.unwrap().expect("pending");
        assert!(pending.is_bound_to(Some(&binding)));
        let consumers = (0..200).map(|_| {
            let states = states.clone();
            let state = state.clone();
            async move {
                let pending = states.peek(&state).await.unwrap();
                match pending {
                    Some(p) => states.consume(&state, &p).await.unwrap(),
                    None => false,
                }
            }
        });
        let won = futures::future::join_all(consumers)
            .await
            .into_iter()
            .filter(|w| *w)
            .count();
        assert_eq!(won, 1);
        assert!(states.peek(&state).await.unwrap().is_none(), "consumed");
        assert!(
            !states.consume(&state, &pending).await.unwrap(),
            "a stale read cannot consume it again"
        );
    }
}

// ---- /metrics on its own port ------------------------------------------------------------------

#[tokio::test]
async fn metrics_are_served_on_their_own_port_only() {
    let app = AuthStack::start().await;
    let http = reqwest::Client::new();

    let (status, _) = page(http.get(app.url("/metrics")).send().await.unwrap()).await;
    assert_eq!(status, 404, "not on the public port");

    let res = http
        .get(format!("{}/metrics", app.auth.metrics_url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/plain; version=0.0.4");
    let res = http
        .get(format!("{}/installs/x", app.auth.metrics_url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404, "only /metrics on the metrics port");
    // The probes stay on the main port.
    assert_eq!(
        http.get(app.url("/readyz")).send().await.unwrap().status(),
        200
    );
}

// ---- Reconnect and Disconnect (issue 14) ---------------------------------------------------

/// An installed browser whose install Snyk no longer accepts (revoked at the fake, found out by
/// projects-service's forced refresh): the install is NEEDS_REAUTH.
async fn revoked_install(app: &AuthStack) -> (Browser, String) {
    let browser = Browser::new();
    let id = app.install(&browser).await;
    let mut c = app.token_client().await;
    let token = access_token(&mut c, &id).await;
    app.stack.revoke_at_snyk(&token).await;
    let (status, body) = page(browser.get(&app.url(&format!("/installs/{id}"))).await).await;
    assert_eq!(status, 200);
    assert!(body.contains(&reconnect_button(&id)), "{body}");
    assert_eq!(
        get_install(app, &id).await.status(),
        pb::InstallStatus::NeedsReauth
    );
    (browser, id)
}

#[tokio::test]
async fn reconnect_keeps_the_install_id_and_shows_the_new_orgs() {
    let first = OrgSeed::new("Demo Org", 25);
    let second = OrgSeed::new("Second Org", 3);
    let mut fake = hour_long_tokens();
    fake.orgs = vec![first.clone(), second.clone()];
    let app = AuthStack::start_with(fake, &[]).await;
    let (browser, id) = revoked_install(&app).await;
    let before = get_install(&app, &id).await;
    assert_eq!(before.orgs.len(), 2, "{before:?}");

    // Reconnect; at Snyk the user now grants the first org only.
    let consent = app.begin_reconnect(&browser, &id).await;
    let callback = app.approve_for_orgs(&consent, &[&first]);
    let res = browser.get(callback.as_str()).await;

    assert_eq!(res.status(), 303, "the callback completes the reconnect");
    assert_eq!(
        res.headers()["location"].to_str().unwrap(),
        format!("/installs/{id}"),
        "the same install"
    );
    let after = get_install(&app, &id).await;
    assert_eq!(after.status(), pb::InstallStatus::Active);
    let orgs: Vec<&str> = after.orgs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        orgs,
        ["Demo Org"],
        "the install's orgs follow the new grant"
    );
    assert_eq!(installs(&app).await.len(), 1, "no second install");
    let (status, body) = page(browser.get(&app.url(&format!("/installs/{id}"))).await).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("<h2>Demo Org</h2>") && body.contains("25 projects"),
        "{body}"
    );
    assert!(
        !body.contains("Second Org"),
        "the org no longer granted: {body}"
    );
    assert!(!body.contains(RECONNECT_BANNER), "{body}");
    assert!(
        pending_sign_ins(&app.auth_redis).await.is_empty(),
        "the state is spent"
    );
}

#[tokio::test]
async fn only_the_owning_session_can_start_a_reconnect() {
    let app = AuthStack::start().await;
    let (owner, id) = revoked_install(&app).await;
    let other_install = Browser::new();
    let other_id = app.install(&other_install).await;
    let path = format!("/installs/{id}/reconnect");

    // No session, another install's session, a forged session cookie: the same clear 403.
    let forger = Browser::new();
    forger.set_cookie("snykapps_session", &id);
    for (who, browser) in [
        ("no session", &Browser::new()),
        ("another install's session", &other_install),
        ("a forged session", &forger),
    ] {
        let (status, body) = page(app.post_from_our_page(browser, &path).await).await;
        assert_eq!(status, 403, "{who}");
        assert!(body.contains(NOT_YOURS), "{who}: {body}");
    }
    // The owner's browser, but a post from another site (or one that cannot be told apart).
    for headers in [
        &[
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ][..],
        &[("origin", "null")],
        &[],
    ] {
        let (status, body) = page(owner.post(&app.url(&path), headers).await).await;
        assert_eq!(status, 403, "{headers:?}");
        assert!(body.contains(REFUSED), "{body}");
    }
    // An id that is not an id, and a GET.
    let (status, body) = page(
        app.post_from_our_page(&owner, "/installs/not-an-id/reconnect")
            .await,
    )
    .await;
    assert_eq!((status, body.contains(NOT_YOURS)), (403, true), "{body}");
    let res = owner.get(&app.url(&path)).await;
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "POST");

    assert!(
        pending_sign_ins(&app.auth_redis).await.is_empty(),
        "no refused attempt created a sign-in"
    );
    assert_eq!(
        get_install(&app, &id).await.status(),
        pb::InstallStatus::NeedsReauth
    );
    assert_eq!(
        get_install(&app, &other_id).await.status(),
        pb::InstallStatus::Active
    );
    // The owner can.
    app.begin_reconnect(&owner, &id).await;
    assert_eq!(pending_sign_ins(&app.auth_redis).await.len(), 1);
}

#[tokio::test]
async fn a_reconnect_finished_after_the_session_ended_changes_nothing() {
    let app = AuthStack::start().await;
    let (browser, id) = revoked_install(&app).await;

    // Logged out while at Snyk: the binding goes with the session, so the state is not this
    // browser's any more.
    let callback = app.approved_reconnect(&browser, &id).await;
    let res = app.post_from_our_page(&browser, "/logout").await;
    assert_eq!(res.status(), 303);
    let (status, body) = page(browser.get(callback.as_str()).await).await;
    assert_eq!(status, 400);
    assert!(body.contains(OTHER_BROWSER), "{body}");

    // The session ended but the binding survived (an expired session, another user of this
    // browser): the state is consumed and the install left alone.
    let (browser, id) = revoked_install(&app).await;
    let callback = app.approved_reconnect(&browser, &id).await;
    browser.set_cookie("snykapps_session", "not-a-sealed-session");
    let (status, body) = page(browser.get(callback.as_str()).await).await;
    assert_eq!(status, 403);
    assert!(body.contains(NOT_YOURS), "{body}");
    let (status, body) = page(browser.get(callback.as_str()).await).await;
    assert_eq!(status, 400, "the state was spent");
    assert!(body.contains(EXPIRED), "{body}");

    for install in installs(&app).await {
        assert_eq!(
            install.status(),
            pb::InstallStatus::NeedsReauth,
            "neither install was reconnected, none was added: {install:?}"
        );
    }
    assert_eq!(installs(&app).await.len(), 2);
}

#[tokio::test]
async fn a_reconnect_of_an_install_deleted_meanwhile_is_a_clear_page() {
    let app = AuthStack::start().await;
    let (browser, id) = revoked_install(&app).await;
    let callback = app.approved_reconnect(&browser, &id).await;
    let mut ops = app.token_client().await;
    ops.delete_install(pb::DeleteInstallRequest {
        install_id: id.clone(),
    })
    .await
    .unwrap();

    let (status, body) = page(browser.get(callback.as_str()).await).await;

    assert_eq!(status, 410);
    assert!(
        body.contains("This installation no longer exists"),
        "{body}"
    );
    assert!(installs(&app).await.is_empty(), "nothing was re-created");
}

#[tokio::test]
async fn disconnect_asks_first_then_deletes_the_install_and_revokes_it_at_snyk() {
    let app = AuthStack::start().await;
    let browser = Browser::new();
    let id = app.install(&browser).await;
    let mut ops = app.token_client().await;
    let token = access_token(&mut ops, &id).await;
    let page_url = app.url(&format!("/installs/{id}"));
    let confirm_url = app.url(&format!("/installs/{id}/disconnect"));

    // The install page links to the confirmation page, which changes nothing.
    let (_, body) = page(browser.get(&page_url).await).await;
    assert!(
        body.contains(&format!(
            "<a class=\"button secondary\" id=\"disconnect\" href=\"/installs/{id}/disconnect\">Disconnect</a>"
        )),
        "{body}"
    );
    let res = browser.get(&confirm_url).await;
    assert_eq!(res.headers()["cache-control"], "no-store");
    let (status, body) = page(res).await;
    assert_eq!(status, 200);
    assert!(
        body.contains(&format!(
            "<form class=\"disconnect\" method=\"post\" action=\"/installs/{id}/disconnect\">"
        )) && body.contains("id=\"confirm-disconnect\""),
        "{body}"
    );
    assert!(
        body.contains("revoked at once") && body.contains("stays listed"),
        "says what happens at Snyk: {body}"
    );
    assert_eq!(
        get_install(&app, &id).await.status(),
        pb::InstallStatus::Active
    );
    let (status, _) = page(Browser::new().get(&confirm_url).await).await;
    assert_eq!(
        status, 404,
        "another browser does not even see the question"
    );
    let res = reqwest::Client::new()
        .delete(&confirm_url)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["allow"], "GET, HEAD, POST");
    assert_eq!(page(res).await.0, 405);

    // Refused: another site's post, and another browser's.
    let res = browser
        .post(
            &confirm_url,
            &[
                ("origin", "https://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ],
        )
        .await;
    assert!(set_cookies(&res).is_empty());
    let (status, body) = page(res).await;
    assert_eq!((status, body.contains(REFUSED)), (403, true), "{body}");
    let (status, body) = page(
        app.post_from_our_page(&Browser::new(), &format!("/installs/{id}/disconnect"))
            .await,
    )
    .await;
    assert_eq!((status, body.contains(NOT_YOURS)), (403, true), "{body}");
    assert_eq!(
        get_install(&app, &id).await.status(),
        pb::InstallStatus::Active,
        "refused posts delete nothing"
    );
    assert!(app.stack.token_works(&token).await);

    // Confirmed.
    let res = app
        .post_from_our_page(&browser, &format!("/installs/{id}/disconnect"))
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/disconnected");
    let cleared = set_cookies(&res);
    for cookie in ["snykapps_session=", "snykapps_binding="] {
        assert!(
            cleared
                .iter()
                .any(|c| c.starts_with(cookie) && c.contains("Max-Age=0")),
            "its only install: the session ends, as after Log out ({cookie}): {cleared:?}"
        );
    }
    let err = ops
        .get_install(pb::GetInstallRequest {
            install_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert!(
        !app.stack.token_works(&token).await,
        "the grant is revoked at Snyk"
    );
    let (status, body) = page(browser.get(&app.url("/disconnected")).await).await;
    assert_eq!(status, 200);
    assert!(body.contains("<h1>Disconnected</h1>"), "{body}");
    assert_eq!(page(browser.get(&page_url).await).await.0, 404);
}

#[tokio::test]
async fn disconnecting_one_of_two_installs_keeps_the_other() {
    let app = AuthStack::start().await;
    let browser = Browser::new();
    let first = app.install(&browser).await;
    let second = app.install(&browser).await;

    let res = app
        .post_from_our_page(&browser, &format!("/installs/{first}/disconnect"))
        .await;

    assert_eq!(res.status(), 303);
    assert!(
        browser.cookie("snykapps_session").is_some(),
        "still signed in"
    );
    assert_eq!(
        page(browser.get(&app.url(&format!("/installs/{first}"))).await)
            .await
            .0,
        404
    );
    assert_eq!(
        page(browser.get(&app.url(&format!("/installs/{second}"))).await)
            .await
            .0,
        200
    );
    let left: Vec<String> = installs(&app)
        .await
        .into_iter()
        .map(|i| i.install_id)
        .collect();
    assert_eq!(left, [second]);
}

#[tokio::test]
async fn disconnect_is_a_503_when_token_service_is_down_and_keeps_the_session() {
    let mut app = AuthStack::start().await;
    let browser = Browser::new();
    let id = app.install(&browser).await;
    app.stop_token_service().await;

    let res = app
        .post_from_our_page(&browser, &format!("/installs/{id}/disconnect"))
        .await;

    assert!(set_cookies(&res).is_empty(), "the session is kept to retry");
    let (status, body) = page(res).await;
    assert_eq!(status, 503);
    assert!(body.contains(UNAVAILABLE), "{body}");
}
