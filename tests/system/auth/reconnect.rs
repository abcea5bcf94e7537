//! Reconnect and Disconnect on an install's page: who may start them, what a late or stale one
//! changes (nothing), and what Disconnect deletes at token-service and revokes at Snyk.

use super::*;

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
    forger.set_cookie(&app.url("/"), "snykapps_session", &id);
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
    browser.set_cookie(&app.url("/"), "snykapps_session", "not-a-sealed-session");
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
        browser.cookie(&app.url("/"), "snykapps_session").is_some(),
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
