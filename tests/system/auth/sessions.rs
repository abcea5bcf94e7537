//! Sessions (expiry, key rotation, logout), the `/auth` rate limit, single use of a state under
//! races, and `/metrics` on its own port.

use super::*;

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
        b.set_cookie(&app.url("/"), "snykapps_session", &value);
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
    assert!(browser.cookie(&app.url("/"), "snykapps_session").is_none());
    let (status, _) = page(browser.get(&page_url).await).await;
    assert_eq!(
        status, 404,
        "signed out: the install page is gone for this browser"
    );
    let (status, body) = page(browser.get(&app.url("/")).await).await;
    assert_eq!(status, 200);
    assert!(body.contains("id=\"install\""), "{body}");
}

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
